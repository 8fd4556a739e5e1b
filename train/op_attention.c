/* train/op_attention.c — causal self-attention with grouped-query heads (see ops.h).
 *
 * q [B*T, H*D], k and v [B*T, G*D], out [B*T, H*D]; H = n_head, G = n_head_kv,
 * D = head_dim, query head h uses key/value head g = h / (H/G); scale = 1/sqrt(D).
 * For sequence b, head h, query row i and keys j <= i:
 *   s_ij = scale q_i . k_j,   L_i = logsumexp_j s_ij,   p_ij = exp(s_ij - L_i)
 *   out_i = sum_j p_ij v_j
 * Forward uses the online softmax (Milakov & Gimelshein 2018) so each row
 * needs no scratch; only L [B, H, T] is saved.  Backward (FlashAttention-2,
 * Dao 2023, Algorithm 2, done row by row):
 *   Delta_i = dout_i . out_i
 *   dp_ij = dout_i . v_j,   ds_ij = p_ij (dp_ij - Delta_i)
 *   dq_i += scale sum_j ds_ij k_j
 *   dk_j += scale sum_{h in group, i >= j} ds_ij q_i
 *   dv_j += sum_{h in group, i >= j} p_ij dout_i
 * p_ij is recomputed from q, k and L.  dq is computed in parallel over query
 * rows, dk/dv in a second pass in parallel over key rows, so no two threads
 * write the same row and the sums run in a fixed order (thread-count
 * independent results). */
#include <math.h>

#include "ops.h"

typedef struct {
    int B, T, H, G, D;
    float *lse;   /* [B, H, T] */
} attn_saved;

static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void attention_backward(et_tape *t, const et_node *nd) {
    et_tensor *q = nd->in[0], *k = nd->in[1], *v = nd->in[2], *o = nd->out;
    const attn_saved *s = nd->saved;
    const int B = s->B, T = s->T, H = s->H, G = s->G, D = s->D, grp = H / G;
    const long Cq = (long)H * D, Ck = (long)G * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float *dO = o->grad, *lse = s->lse;
    float *dq = et_grad(t, q), *dk = et_grad(t, k), *dv = et_grad(t, v);
    float *delta = et_tape_alloc(t, (size_t)B * H * T * sizeof(float));
    if (t->code) return;

    /* Delta[b, h, i] = dout_i . out_i */
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            for (int h = 0; h < H; h++) {
                const long r = (long)b * T + i;
                delta[((long)b * H + h) * T + i] = dot(dO + r * Cq + (long)h * D, o->data + r * Cq + (long)h * D, D);
            }

    if (dq) {
        #pragma omp parallel for collapse(3) schedule(dynamic, 16)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < T; i++) {
                    const int g = h / grp;
                    const long ri = (long)b * T + i, bh = ((long)b * H + h) * T;
                    const float *qi = q->data + ri * Cq + (long)h * D, *doi = dO + ri * Cq + (long)h * D;
                    float *dqi = dq + ri * Cq + (long)h * D;
                    const float L = lse[bh + i], Di = delta[bh + i];
                    for (int j = 0; j <= i; j++) {
                        const long rj = (long)b * T + j;
                        const float *kj = k->data + rj * Ck + (long)g * D, *vj = v->data + rj * Ck + (long)g * D;
                        const float p = expf(scale * dot(qi, kj, D) - L);
                        const float ds = p * (dot(doi, vj, D) - Di) * scale;
                        for (int d = 0; d < D; d++) dqi[d] += ds * kj[d];
                    }
                }
    }
    if (dk || dv) {
        #pragma omp parallel for collapse(3) schedule(dynamic, 16)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < G; g++)
                for (int j = 0; j < T; j++) {
                    const long rj = (long)b * T + j;
                    const float *kj = k->data + rj * Ck + (long)g * D, *vj = v->data + rj * Ck + (long)g * D;
                    float *dkj = dk ? dk + rj * Ck + (long)g * D : NULL;
                    float *dvj = dv ? dv + rj * Ck + (long)g * D : NULL;
                    for (int h = g * grp; h < (g + 1) * grp; h++) {
                        const long bh = ((long)b * H + h) * T;
                        for (int i = j; i < T; i++) {
                            const long ri = (long)b * T + i;
                            const float *qi = q->data + ri * Cq + (long)h * D, *doi = dO + ri * Cq + (long)h * D;
                            const float p = expf(scale * dot(qi, kj, D) - lse[bh + i]);
                            if (dvj)
                                for (int d = 0; d < D; d++) dvj[d] += p * doi[d];
                            if (dkj) {
                                const float ds = p * (dot(doi, vj, D) - delta[bh + i]) * scale;
                                for (int d = 0; d < D; d++) dkj[d] += ds * qi[d];
                            }
                        }
                    }
                }
    }
}

et_tensor *et_attention(et_tape *t, const char *name, et_tensor *q, et_tensor *k, et_tensor *v,
                        int T, int n_head, int n_head_kv, int head_dim) {
    if (t->code) return NULL;
    const char *nm = name ? name : "";
    if (!q || !k || !v) return et_tape_fail(t, ET_EINPUT, "attention %s: NULL input", nm);
    if (T < 1 || n_head < 1 || n_head_kv < 1 || head_dim < 1 || n_head % n_head_kv)
        return et_tape_fail(t, ET_EINPUT, "attention %s: T %d, n_head %d, n_head_kv %d, head_dim %d "
                            "(n_head must be a multiple of n_head_kv)", nm, T, n_head, n_head_kv, head_dim);
    const size_t rows = et_rows(q);
    if (rows % (size_t)T || et_cols(q) != (size_t)n_head * head_dim ||
        et_rows(k) != rows || et_cols(k) != (size_t)n_head_kv * head_dim ||
        et_rows(v) != rows || et_cols(v) != (size_t)n_head_kv * head_dim)
        return et_tape_fail(t, ET_EINPUT, "attention %s: q [%zu, %zu], k [%zu, %zu], v [%zu, %zu] do not fit "
                            "T %d, n_head %d, n_head_kv %d, head_dim %d", nm, et_rows(q), et_cols(q),
                            et_rows(k), et_cols(k), et_rows(v), et_cols(v), T, n_head, n_head_kv, head_dim);
    const int B = (int)(rows / (size_t)T), H = n_head, G = n_head_kv, D = head_dim, grp = H / G;
    const long Cq = (long)H * D, Ck = (long)G * D;
    const float scale = 1.0f / sqrtf((float)D);
    et_tensor *in[3] = {q, k, v};
    int wants = et_tape_wants_grad(t, in, 3);
    et_tensor *out = et_tensor_2d(t, name, (int64_t)rows, Cq, wants);
    attn_saved *s = out ? et_tape_alloc(t, sizeof *s) : NULL;
    float *lse = s ? et_tape_alloc(t, (size_t)B * H * T * sizeof(float)) : NULL;
    if (!lse) return NULL;

    #pragma omp parallel for collapse(3) schedule(dynamic, 16)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                const int g = h / grp;
                const long ri = (long)b * T + i;
                const float *qi = q->data + ri * Cq + (long)h * D;
                float *oi = out->data + ri * Cq + (long)h * D;
                float m = -INFINITY, l = 0.0f;
                for (int d = 0; d < D; d++) oi[d] = 0.0f;
                for (int j = 0; j <= i; j++) {
                    const long rj = (long)b * T + j;
                    const float *kj = k->data + rj * Ck + (long)g * D, *vj = v->data + rj * Ck + (long)g * D;
                    const float sij = scale * dot(qi, kj, D);
                    if (sij > m) { /* new running max: rescale what we have */
                        const float f = expf(m - sij);
                        l *= f;
                        for (int d = 0; d < D; d++) oi[d] *= f;
                        m = sij;
                    }
                    const float p = expf(sij - m);
                    l += p;
                    for (int d = 0; d < D; d++) oi[d] += p * vj[d];
                }
                for (int d = 0; d < D; d++) oi[d] /= l;
                lse[((long)b * H + h) * T + i] = m + logf(l);
            }

    s->B = B; s->T = T; s->H = H; s->G = G; s->D = D;
    s->lse = lse;
    if (wants && !et_tape_push(t, "attention", attention_backward, out, in, 3, s)) return NULL;
    return out;
}
