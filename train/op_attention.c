/* train/op_attention.c — causal self-attention with grouped-query heads (see ops.h).
 *
 * q [B*T, H*D], k and v [B*T, G*D], out [B*T, H*D]; H = n_head, G = n_head_kv,
 * D = head_dim, query head h uses key/value head g = h / (H/G); scale = 1/sqrt(D).
 * For sequence b, head h, query row i and keys j <= i:
 *   s_ij = scale q_i . k_j,   L_i = logsumexp_j s_ij,   p_ij = exp(s_ij - L_i)
 *   out_i = sum_j p_ij v_j
 * Only L [B, H, T] is saved.  Backward (FlashAttention-2, Dao 2023, Alg. 2,
 * one query row at a time) recomputes p_ij from q, k and L:
 *   Delta_i = dout_i . out_i
 *   dp_ij = dout_i . v_j,   ds_ij = p_ij (dp_ij - Delta_i)
 *   dq_i += scale sum_j ds_ij k_j
 *   dk_j += scale sum_{h in group, i >= j} ds_ij q_i
 *   dv_j += sum_{h in group, i >= j} p_ij dout_i
 * Layout for speed: k and v of each (b, g) are first transposed to [D, T], so
 * every inner loop runs over keys j with unit stride and vectorizes
 * (`omp simd`, et_vexpf) for any head_dim.  One row of scores lives in a
 * per-thread buffer: nothing of size T*T is ever held.
 * Threads: forward in parallel over (b, h, i); backward over (b, g), each
 * task owning its dk/dv rows and the dq rows of its query heads, so no two
 * threads write the same memory and every sum runs in a fixed order
 * (results independent of the thread count). */
#include <math.h>
#include <omp.h>

#include "ops.h"
#include "vexp.h"

typedef struct {
    int B, T, H, G, D;
    float *lse;   /* [B, H, T] */
} attn_saved;

/* dst[(b*G + g)*D + d][t] = src[(b*T + t)*G*D + g*D + d] */
static void transpose_heads(const float *src, float *dst, int B, int T, int G, int D) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++)
            for (int t = 0; t < T; t++)
                for (int d = 0; d < D; d++)
                    dst[(((size_t)b * G + g) * D + d) * T + t] = src[((size_t)b * T + t) * G * D + (size_t)g * D + d];
}

/* s[0..n) = sum_d a[d] * mt[d*T + j]  (a row times a [D, T] matrix) */
static void row_times(const float *a, const float *mt, int D, int T, int n, float *s) {
    #pragma omp simd
    for (int j = 0; j < n; j++) s[j] = 0.0f;
    for (int d = 0; d < D; d++) {
        const float ad = a[d], *m = mt + (size_t)d * T;
        #pragma omp simd
        for (int j = 0; j < n; j++) s[j] += ad * m[j];
    }
}

static float dot_n(const float *a, const float *b, int n) {
    float acc = 0.0f;
    #pragma omp simd reduction(+ : acc)
    for (int j = 0; j < n; j++) acc += a[j] * b[j];
    return acc;
}

static void attention_backward(et_tape *t, const et_node *nd) {
    et_tensor *q = nd->in[0], *k = nd->in[1], *v = nd->in[2], *o = nd->out;
    const attn_saved *s = nd->saved;
    const int B = s->B, T = s->T, H = s->H, G = s->G, D = s->D, grp = H / G;
    const size_t Cq = (size_t)H * D, Ck = (size_t)G * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float *dO = o->grad, *lse = s->lse;
    float *dq = et_grad(t, q), *dk = et_grad(t, k), *dv = et_grad(t, v);
    const int nth = omp_get_max_threads();
    const size_t kv = (size_t)B * T * Ck;
    float *kt = et_tape_alloc(t, kv * sizeof(float));
    float *vt = et_tape_alloc(t, kv * sizeof(float));
    /* per thread: p[T], ds[T], dkt[D*T], dvt[D*T] */
    const size_t per = 2 * (size_t)T + 2 * (size_t)D * T;
    float *scratch = et_tape_alloc(t, (size_t)nth * per * sizeof(float));
    if (t->code) return;
    transpose_heads(k->data, kt, B, T, G, D);
    transpose_heads(v->data, vt, B, T, G, D);

    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            float *p = scratch + (size_t)omp_get_thread_num() * per, *ds = p + T;
            float *dkt = ds + T, *dvt = dkt + (size_t)D * T;
            const float *ktb = kt + ((size_t)b * G + g) * D * T, *vtb = vt + ((size_t)b * G + g) * D * T;
            for (size_t x = 0; x < 2 * (size_t)D * T; x++) dkt[x] = 0.0f;
            for (int h = g * grp; h < (g + 1) * grp; h++)
                for (int i = 0; i < T; i++) {
                    const int n = i + 1;
                    const size_t ri = (size_t)b * T + i;
                    const float *qi = q->data + ri * Cq + (size_t)h * D, *doi = dO + ri * Cq + (size_t)h * D;
                    const float *oi = o->data + ri * Cq + (size_t)h * D;
                    const float L = lse[((size_t)b * H + h) * T + i];
                    float delta = 0.0f;
                    for (int d = 0; d < D; d++) delta += doi[d] * oi[d];
                    row_times(qi, ktb, D, T, n, p);
                    #pragma omp simd
                    for (int j = 0; j < n; j++) p[j] = et_vexpf(scale * p[j] - L);
                    row_times(doi, vtb, D, T, n, ds);
                    #pragma omp simd
                    for (int j = 0; j < n; j++) ds[j] = p[j] * (ds[j] - delta) * scale;
                    if (dq) {
                        float *dqi = dq + ri * Cq + (size_t)h * D;
                        for (int d = 0; d < D; d++) dqi[d] += dot_n(ds, ktb + (size_t)d * T, n);
                    }
                    for (int d = 0; d < D; d++) {
                        const float qd = qi[d], dod = doi[d];
                        float *dk_d = dkt + (size_t)d * T, *dv_d = dvt + (size_t)d * T;
                        #pragma omp simd
                        for (int j = 0; j < n; j++) {
                            dk_d[j] += ds[j] * qd;
                            dv_d[j] += p[j] * dod;
                        }
                    }
                }
            for (int j = 0; j < T; j++) {
                const size_t rj = ((size_t)b * T + j) * Ck + (size_t)g * D;
                for (int d = 0; d < D; d++) {
                    if (dk) dk[rj + d] += dkt[(size_t)d * T + j];
                    if (dv) dv[rj + d] += dvt[(size_t)d * T + j];
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
    const size_t Cq = (size_t)H * D, Ck = (size_t)G * D;
    const float scale = 1.0f / sqrtf((float)D);
    et_tensor *in[3] = {q, k, v};
    int wants = et_tape_wants_grad(t, in, 3);
    const int nth = omp_get_max_threads();
    et_tensor *out = et_tensor_2d(t, name, (int64_t)rows, (int64_t)Cq, wants);
    attn_saved *s = out ? et_tape_alloc(t, sizeof *s) : NULL;
    float *lse = s ? et_tape_alloc(t, (size_t)B * H * T * sizeof(float)) : NULL;
    /* the transposes and the row buffers are scratch: reclaimed at the next reset */
    float *kt = lse ? et_tape_alloc(t, rows * Ck * sizeof(float)) : NULL;
    float *vt = kt ? et_tape_alloc(t, rows * Ck * sizeof(float)) : NULL;
    float *scratch = vt ? et_tape_alloc(t, (size_t)nth * T * sizeof(float)) : NULL;
    if (!scratch) return NULL;
    transpose_heads(k->data, kt, B, T, G, D);
    transpose_heads(v->data, vt, B, T, G, D);

    #pragma omp parallel for collapse(3) schedule(dynamic, 16)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                const int g = h / grp, n = i + 1;
                const size_t ri = (size_t)b * T + i;
                const float *ktb = kt + ((size_t)b * G + g) * D * T, *vtb = vt + ((size_t)b * G + g) * D * T;
                float *p = scratch + (size_t)omp_get_thread_num() * T;
                row_times(q->data + ri * Cq + (size_t)h * D, ktb, D, T, n, p);
                float m = -INFINITY;
                for (int j = 0; j < n; j++) {
                    p[j] *= scale;
                    m = p[j] > m ? p[j] : m;
                }
                float l = 0.0f;
                #pragma omp simd reduction(+ : l)
                for (int j = 0; j < n; j++) {
                    p[j] = et_vexpf(p[j] - m);
                    l += p[j];
                }
                float *oi = out->data + ri * Cq + (size_t)h * D;
                for (int d = 0; d < D; d++) oi[d] = dot_n(p, vtb + (size_t)d * T, n) / l;
                lse[((size_t)b * H + h) * T + i] = m + logf(l);
            }

    s->B = B; s->T = T; s->H = H; s->G = G; s->D = D;
    s->lse = lse;
    if (wants && !et_tape_push(t, "attention", attention_backward, out, in, 3, s)) return NULL;
    return out;
}
