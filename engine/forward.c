/* engine/forward.c — the state (KV cache, scratch, threads) and the forward
 * pass of llama.cpp's llm_build_llama / llm_build_deci, op by op with
 * ggml-cpu's numerics:
 *   rms_norm   ggml_compute_forward_rms_norm_f32: sum of x*x in double,
 *              scale = 1/sqrtf(mean + eps), then * weight
 *   rope       ggml_rope_cache_init + rope_f32, mode NORM: pairs (x[2i], x[2i+1]),
 *              theta_i = pos * freq_base^(-2i/n_rot) by repeated multiplication
 *   attention  K, V cached in F16 (or F32); KQ with q converted to the cache
 *              type; soft_max_ext(scale = 1/sqrt(head_dim)) with the sum in
 *              double; probabilities converted to the cache type; V^T p
 *   ffn        silu(gate) * up, then down (LLM_FFN_SILU, LLM_FFN_PAR)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "f16row.h"
#include "internal.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

et_state_opts et_state_default_opts(void) {
    et_state_opts o = {0, 1, 64, GGML_TYPE_F16, NULL};
    return o;
}

static void *xcalloc(size_t n, size_t sz, int *bad) {
    void *p = calloc(n ? n : 1, sz);
    if (!p) *bad = 1;
    return p;
}

int et_state_new(et_state **out, const et_engine *m, const et_state_opts *opts, et_err *e) {
    *out = NULL;
    et_state_opts o = opts ? *opts : et_state_default_opts();
    if (o.n_ctx <= 0) o.n_ctx = m->hp.n_ctx < 4096 ? m->hp.n_ctx : 4096;
    if (o.n_threads <= 0) o.n_threads = 1;
    if (o.n_batch <= 0) o.n_batch = 64;
    if (o.n_batch > o.n_ctx) o.n_batch = o.n_ctx;
    if (o.n_ctx > (1 << 22)) return et_fail(e, ET_EUSAGE, "engine: n_ctx %d is too large", o.n_ctx);
    if (o.n_threads > 256) return et_fail(e, ET_EUSAGE, "engine: %d threads is too many", o.n_threads);
    if (o.kv_type != GGML_TYPE_F16 && o.kv_type != GGML_TYPE_F32)
        return et_fail(e, ET_EUSAGE, "engine: the KV cache type must be F16 or F32");
    const et_kernels *k = o.isa ? et_kernels_get(o.isa) : et_kernels_best();
    if (!k) return et_fail(e, ET_EUSAGE, "engine: SIMD path '%s' is not available on this CPU/build", o.isa);

    et_state *s = calloc(1, sizeof *s);
    if (!s) return et_fail(e, ET_ERUN, "engine: out of memory");
    s->m = m;
    s->k = k;
    s->n_ctx = o.n_ctx;
    s->n_batch = o.n_batch;
    s->kv_type = o.kv_type;
    s->kv_elt = o.kv_type == GGML_TYPE_F16 ? 2 : 4;
    const et_hparams *hp = &m->hp;
    int B = o.n_batch, bad = 0;
    size_t nq = (size_t)et_engine_max_q(m), nkv = (size_t)et_engine_max_kv(m), nff = (size_t)et_engine_max_ff(m);
    s->k_cache = xcalloc((size_t)hp->n_layer, sizeof(void *), &bad);
    s->v_cache = xcalloc((size_t)hp->n_layer, sizeof(void *), &bad);
    for (int l = 0; !bad && l < hp->n_layer; l++) {
        size_t n = (size_t)m->layers[l].n_head_kv * (size_t)hp->head_dim * (size_t)s->n_ctx;
        if (!n) continue;
        s->k_cache[l] = xcalloc(n, s->kv_elt, &bad);
        s->v_cache[l] = xcalloc(n, s->kv_elt, &bad);
    }
    s->x = xcalloc((size_t)B * (size_t)hp->n_embd, sizeof(float), &bad);
    s->xb = xcalloc((size_t)B * (size_t)hp->n_embd, sizeof(float), &bad);
    s->q = xcalloc((size_t)B * nq, sizeof(float), &bad);
    s->att = xcalloc((size_t)B * nq, sizeof(float), &bad);
    s->kk = xcalloc((size_t)B * nkv, sizeof(float), &bad);
    s->vv = xcalloc((size_t)B * nkv, sizeof(float), &bad);
    s->hb = xcalloc((size_t)B * nff, sizeof(float), &bad);
    s->hb2 = xcalloc((size_t)B * nff, sizeof(float), &bad);
    s->rope = xcalloc((size_t)B * (size_t)(m->n_rot + 1), sizeof(float), &bad);
    size_t st = (size_t)s->n_ctx * (4 + s->kv_elt) + (size_t)hp->head_dim * s->kv_elt + 64;
    s->att_tmp_stride = (st + 63) & ~(size_t)63;
    s->att_tmp = xcalloc((size_t)o.n_threads, s->att_tmp_stride, &bad);
    if (!bad) {
        s->pool = et_pool_new(o.n_threads);
        if (!s->pool) bad = 1;
    }
    if (bad) {
        et_state_free(s);
        return et_fail(e, ET_ERUN, "engine: out of memory for a %d-token context", o.n_ctx);
    }
    *out = s;
    return 0;
}

void et_state_free(et_state *s) {
    if (!s) return;
    et_pool_free(s->pool);
    if (s->k_cache)
        for (int l = 0; l < s->m->hp.n_layer; l++) {
            free(s->k_cache[l]);
            free(s->v_cache[l]);
        }
    free(s->k_cache);
    free(s->v_cache);
    free(s->x); free(s->xb); free(s->q); free(s->att); free(s->kk); free(s->vv);
    free(s->hb); free(s->hb2); free(s->rope); free(s->act); free(s->lora_t); free(s->att_tmp);
    free(s);
}

void et_state_reset(et_state *s) { s->n_past = 0; }
int et_state_n_past(const et_state *s) { return s->n_past; }
int et_state_n_ctx(const et_state *s) { return s->n_ctx; }
const char *et_state_isa(const et_state *s) { return s->k->name; }

int et_state_truncate(et_state *s, int n_past, et_err *e) {
    if (n_past < 0 || n_past > s->n_past)
        return et_fail(e, ET_EUSAGE, "engine: cannot truncate to %d cached tokens (have %d)", n_past, s->n_past);
    s->n_past = n_past;
    return 0;
}

/* ------------------------------------------------------------ element-wise ops */

/* y = x / sqrt(mean(x^2) + eps) * w over n (ggml rms_norm + mul). */
static void rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        float p = x[i] * x[i];
        sum += (double)p;
    }
    float mean = (float)(sum / n);
    float scale = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++) {
        float v = x[i] * scale;
        y[i] = v * w[i];
    }
}

/* cos/sin table for one position: cs[2i], cs[2i+1] for pair i < n_rot/2. */
static void rope_table(float *cs, int pos, int n_rot, float freq_base, float freq_scale, const float *factors) {
    float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        float ff = factors ? factors[i] : 1.0f;
        float th = freq_scale * (theta / ff);
        cs[2 * i] = cosf(th);
        cs[2 * i + 1] = sinf(th);
        theta *= theta_scale;
    }
}

/* Rotate the first n_rot dims of each of n_heads heads of size hd. */
static void rope_apply(float *v, int n_heads, int hd, int n_rot, const float *cs) {
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * hd;
        for (int i = 0; i < n_rot; i += 2) {
            float c = cs[i], sn = cs[i + 1];
            float x0 = x[i], x1 = x[i + 1];
            float a = x0 * c, b = x1 * sn, d = x0 * sn, f = x1 * c;
            x[i] = a - b;
            x[i + 1] = d + f;
        }
    }
}

static inline void store_kv(void *dst, size_t i, float v, uint32_t type) {
    if (type == GGML_TYPE_F16) ((uint16_t *)dst)[i] = et_fp32_to_fp16(v);
    else ((float *)dst)[i] = v;
}

/* n values to the cache type (et_fp32_to_fp16 per value for F16). */
static void store_row(void *dst, const float *x, size_t n, uint32_t type) {
    if (type == GGML_TYPE_F16) et_fp32_to_fp16_row(x, dst, n);
    else memcpy(dst, x, n * sizeof(float));
}

/* ------------------------------------------------------------ attention */

typedef struct att_job {
    et_state *s;
    int layer, n_tok, pos0;
    int n_head, n_head_kv;
    int n_chunks;            /* the (token, head) tasks are cut into this many chunks */
} att_job;

static void att_work(void *arg, int ith, int chunk) {
    const att_job *j = arg;
    et_state *s = j->s;
    const et_engine *m = s->m;
    int hd = m->hp.head_dim, n_ctx = s->n_ctx;
    int nq = j->n_head * hd, nkv = j->n_head_kv * hd, group = j->n_head / j->n_head_kv;
    et_dot_fn dot = s->kv_type == GGML_TYPE_F16 ? s->k->dot_f16 : s->k->dot_f32;
    uint8_t *tmp = (uint8_t *)s->att_tmp + (size_t)ith * s->att_tmp_stride;
    float *sc = (float *)tmp;
    void *pr = tmp + (size_t)n_ctx * 4;
    void *qc = (uint8_t *)pr + (size_t)n_ctx * s->kv_elt;
    const uint8_t *kc = s->k_cache[j->layer], *vc = s->v_cache[j->layer];
    const float scale = 1.0f / sqrtf((float)hd);
    int n_tasks = j->n_tok * j->n_head;
    int i0 = (int)((int64_t)n_tasks * chunk / j->n_chunks), i1 = (int)((int64_t)n_tasks * (chunk + 1) / j->n_chunks);
    for (int task = i0; task < i1; task++) {
        int t = task / j->n_head, h = task % j->n_head, kvh = h / group;
        int n_kv = j->pos0 + t + 1;
        const float *q = s->q + (size_t)t * nq + (size_t)h * hd;
        store_row(qc, q, (size_t)hd, s->kv_type);
        int fast = s->kv_type == GGML_TYPE_F16 && hd <= 512 && !strncmp(s->k->name, "avx512", 6) && et_att_f16_fast();
        if (fast) {   /* the same dots without a call each (f16row.h) */
            float qf[512];
            for (int d = 0; d < hd; d++) qf[d] = et_f16_table[((const uint16_t *)qc)[d]];
            et_att_scores_f16(hd, n_kv, (const uint16_t *)(const void *)kc + (size_t)kvh * hd, (size_t)nkv, qf, sc);
        } else
            for (int p = 0; p < n_kv; p++) sc[p] = dot(hd, kc + ((size_t)p * nkv + (size_t)kvh * hd) * s->kv_elt, qc);
        float mx = -INFINITY;
        for (int p = 0; p < n_kv; p++) {
            sc[p] = sc[p] * scale;
            if (sc[p] > mx) mx = sc[p];
        }
        double sum = 0.0;
        for (int p = 0; p < n_kv; p++) {
            float v = expf(sc[p] - mx);
            sum += (double)v;
            sc[p] = v;
        }
        float inv = (float)(1.0 / sum);
        for (int p = 0; p < n_kv; p++) sc[p] = sc[p] * inv;
        store_row(pr, sc, (size_t)n_kv, s->kv_type);
        float *o = s->att + (size_t)t * nq + (size_t)h * hd;
        /* o[d] = dot(n_kv, V row d, pr), with the products past the last
         * whole 32 (added in order after the fold, kernels.h) taken position
         * by position across d: the same sums, without a serial chain per d */
        const uint8_t *vh = vc + (size_t)kvh * hd * n_ctx * s->kv_elt;
        if (fast) {
            for (int p = 0; p < n_kv; p++) sc[p] = et_f16_table[((const uint16_t *)pr)[p]];
            et_att_values_f16(hd, n_kv, (const uint16_t *)(const void *)vh, (size_t)n_ctx, sc, o);
            continue;
        }
        int n_main = n_kv / 32 * 32;
        for (int d = 0; d < hd; d++) o[d] = dot(n_main, vh + (size_t)d * n_ctx * s->kv_elt, pr);
        for (int p = n_main; p < n_kv; p++) {
            if (s->kv_type == GGML_TYPE_F16) {
                float pp = et_f16_table[((const uint16_t *)pr)[p]];
                const uint16_t *v = (const uint16_t *)(const void *)vh + p;
                for (int d = 0; d < hd; d++) {
                    float prod = et_f16_table[v[(size_t)d * n_ctx]] * pp;
                    o[d] = o[d] + prod;
                }
            } else {
                float pp = ((const float *)pr)[p];
                const float *v = (const float *)(const void *)vh + p;
                for (int d = 0; d < hd; d++) {
                    float prod = v[(size_t)d * n_ctx] * pp;
                    o[d] = o[d] + prod;
                }
            }
        }
    }
}

/* ------------------------------------------------------------ per-token steps, split over the pool */

enum {
    STEP_ATTN_NORM,    /* [the pending residual,] xb = attn_norm(x) */
    STEP_QKV,          /* biases, RoPE of q and k, k and v into the cache */
    STEP_FFN_NORM,     /* [the pending residual,] xb = ffn_norm(x) */
    STEP_SILU,         /* hb = silu(hb) * hb2 */
    STEP_RESID,        /* the pending residual */
};

typedef struct tok_job {
    et_state *s;
    int step, layer, n, pos0;
    int add_prev;            /* the pending residual: xb (+ bias) is added to x first */
    const float *bias;       /* NULL, or the attention output's bias bo */
    int n_chunks;
} tok_job;

/* x += xb, after xb += bias (llama.cpp: wo x + bo, then the residual add). */
static void residual(float *x, float *xb, const float *bias, int d) {
    if (bias) for (int i = 0; i < d; i++) xb[i] += bias[i];
    for (int i = 0; i < d; i++) x[i] = xb[i] + x[i];
}

static void tok_step(const tok_job *j, int t) {
    et_state *s = j->s;
    const et_engine *m = s->m;
    const et_hparams *hp = &m->hp;
    const et_engine_layer *ly = &m->layers[j->layer];
    int d = hp->n_embd, hd = hp->head_dim;
    float *x = s->x + (size_t)t * d, *xb = s->xb + (size_t)t * d;
    switch (j->step) {
    case STEP_ATTN_NORM:
        if (j->add_prev) residual(x, xb, j->bias, d);
        rmsnorm(xb, x, ly->attn_norm, d, hp->rms_eps);
        break;
    case STEP_QKV: {
        int nq = ly->n_head * hd, nkv = ly->n_head_kv * hd;
        float *q = s->q + (size_t)t * nq, *k = s->kk + (size_t)t * nkv, *v = s->vv + (size_t)t * nkv;
        if (ly->bq) for (int i = 0; i < nq; i++) q[i] += ly->bq[i];
        if (ly->bk) for (int i = 0; i < nkv; i++) k[i] += ly->bk[i];
        if (ly->bv) for (int i = 0; i < nkv; i++) v[i] += ly->bv[i];
        const float *cs = s->rope + (size_t)t * (m->n_rot + 1);
        rope_apply(q, ly->n_head, hd, m->n_rot, cs);
        rope_apply(k, ly->n_head_kv, hd, m->n_rot, cs);
        size_t pos = (size_t)(j->pos0 + t);
        store_row((uint8_t *)s->k_cache[j->layer] + pos * (size_t)nkv * s->kv_elt, k, (size_t)nkv, s->kv_type);
        for (int i0 = 0; i0 < nkv; i0 += 256) {   /* v transposed: converted 256 at a time, then scattered */
            int m = nkv - i0 < 256 ? nkv - i0 : 256;
            uint16_t h[256];
            if (s->kv_type == GGML_TYPE_F16) {
                et_fp32_to_fp16_row(v + i0, h, (size_t)m);
                for (int i = 0; i < m; i++) ((uint16_t *)s->v_cache[j->layer])[(size_t)(i0 + i) * (size_t)s->n_ctx + pos] = h[i];
            } else
                for (int i = 0; i < m; i++) store_kv(s->v_cache[j->layer], (size_t)(i0 + i) * (size_t)s->n_ctx + pos, v[i0 + i], s->kv_type);
        }
        break;
    }
    case STEP_FFN_NORM:
        if (j->add_prev) residual(x, xb, j->bias, d);
        rmsnorm(xb, x, ly->ffn_norm, d, hp->rms_eps);
        break;
    case STEP_SILU: {
        size_t nff = (size_t)ly->n_ff;
        float *g = s->hb + (size_t)t * nff, *u = s->hb2 + (size_t)t * nff;
        for (size_t i = 0; i < nff; i++) {
            float sg = g[i] / (1.0f + expf(-g[i]));
            g[i] = sg * u[i];
        }
        break;
    }
    case STEP_RESID:
        residual(x, xb, j->bias, d);
        break;
    }
}

static void tok_work(void *arg, int ith, int chunk) {
    (void)ith;
    const tok_job *j = arg;
    int t0 = (int)((int64_t)j->n * chunk / j->n_chunks), t1 = (int)((int64_t)j->n * (chunk + 1) / j->n_chunks);
    for (int t = t0; t < t1; t++) tok_step(j, t);
}

/* One step for tokens [0, n), on the pool when there are enough of them. */
static void run_step(et_state *s, int step, int layer, int n, int pos0, int add_prev, const float *bias) {
    int nth = et_pool_size(s->pool);
    tok_job j = {s, step, layer, n, pos0, add_prev, bias, 1};
    if (nth == 1 || n < 2 * nth) {
        for (int t = 0; t < n; t++) tok_step(&j, t);
        return;
    }
    j.n_chunks = n < 4 * nth ? n : 4 * nth;
    et_pool_run(s->pool, tok_work, &j, j.n_chunks);
}

/* ------------------------------------------------------------ one chunk of tokens */

/* Logits [nt][n_vocab] of positions pos0 .. pos0+nt-1 must be finite: a NaN
 * or Inf (NaN/Inf weights in the model or an adapter, or an overflow) would
 * otherwise reach the samplers and the scores as garbage.  ET_ERUN naming
 * the first position and token id. */
static int check_logits(const et_engine *m, const float *logits, int nt, int pos0, et_err *e) {
    size_t nv = (size_t)m->hp.n_vocab;
    for (int t = 0; t < nt; t++) {
        const float *row = logits + (size_t)t * nv;
        float acc = 0;
        for (size_t i = 0; i < nv; i++) acc += row[i] * 0.0f;   /* 0 unless some value is NaN or Inf */
        if (acc == 0) continue;
        for (size_t i = 0; i < nv; i++)
            if (!isfinite(row[i]))
                return et_fail(e, ET_ERUN,
                               "%s: the logits at position %d are not finite (%s for token id %zu): the model or an "
                               "adapter holds NaN/Inf weights, or the activations overflowed",
                               m->path ? m->path : "engine", pos0 + t, isnan(row[i]) ? "NaN" : "Inf", i);
    }
    return 0;
}

static int forward_chunk(et_state *s, const int32_t *tok, int n, float *logits, int all_logits, int want_logits,
                         et_err *e) {
    const et_engine *m = s->m;
    const et_hparams *hp = &m->hp;
    int d = hp->n_embd, pos0 = s->n_past, rc;
    for (int t = 0; t < n; t++) {
        const et_wmat *te = &m->tok_embd;
        _Alignas(64) uint8_t buf[ET_WMAT_ROW_MAX];   /* a row dropped at load (engine_repack), rebuilt */
        et_dequantize_row(te->type, et_wmat_row(te, tok[t], buf), s->x + (size_t)t * d, d);
    }
    for (int t = 0; t < n; t++)
        rope_table(s->rope + (size_t)t * (m->n_rot + 1), pos0 + t, m->n_rot, hp->rope_theta, m->rope_freq_scale,
                   m->rope_freqs);

    int pending = 0;            /* xb holds a sublayer's output not yet added to x */
    const float *bias = NULL;   /* and its bias (the attention's bo) */
    for (int l = 0; l < hp->n_layer; l++) {
        const et_engine_layer *ly = &m->layers[l];
        if (ly->n_head > 0) {
            run_step(s, STEP_ATTN_NORM, l, n, pos0, pending, bias);
            const et_wmat *qkv[3] = {&ly->wq, &ly->wk, &ly->wv};
            float *qkv_out[3] = {s->q, s->kk, s->vv};
            if ((rc = et_wmat_matmul_multi(s, 3, qkv, s->xb, n, qkv_out, e))) return rc;
            run_step(s, STEP_QKV, l, n, pos0, 0, NULL);
            int n_tasks = n * ly->n_head, nth = et_pool_size(s->pool);
            att_job aj = {s, l, n, pos0, ly->n_head, ly->n_head_kv, n_tasks < 4 * nth ? n_tasks : 4 * nth};
            et_pool_run(s->pool, att_work, &aj, aj.n_chunks);
            if ((rc = et_wmat_matmul(s, &ly->wo, s->att, n, s->xb, 0, 1.0f, 1, e))) return rc;
            pending = 1;
            bias = ly->bo;
        }
        if (ly->n_ff > 0) {
            run_step(s, STEP_FFN_NORM, l, n, pos0, pending, bias);
            const et_wmat *gu[2] = {&ly->w_gate, &ly->w_up};
            float *gu_out[2] = {s->hb, s->hb2};
            if ((rc = et_wmat_matmul_multi(s, 2, gu, s->xb, n, gu_out, e))) return rc;
            run_step(s, STEP_SILU, l, n, pos0, 0, NULL);
            if ((rc = et_wmat_matmul(s, &ly->w_down, s->hb, n, s->xb, 0, 1.0f, 1, e))) return rc;
            pending = 1;
            bias = NULL;
        }
    }
    if (pending) run_step(s, STEP_RESID, 0, n, pos0, 1, bias);
    s->n_past += n;
    if (!want_logits) return 0;
    int t0 = all_logits ? 0 : n - 1, nt = all_logits ? n : 1;
    for (int t = t0; t < n; t++)
        rmsnorm(s->xb + (size_t)t * d, s->x + (size_t)t * d, m->output_norm, d, hp->rms_eps);
    if ((rc = et_wmat_matmul(s, &m->output, s->xb + (size_t)t0 * d, nt, logits, 0, 1.0f, 1, e))) return rc;
    return check_logits(m, logits, nt, pos0 + t0, e);
}

int et_forward(et_state *s, const int32_t *tokens, int n, float *logits, int all_logits, et_err *e) {
    const et_engine *m = s->m;
    if (n <= 0) return n == 0 ? 0 : et_fail(e, ET_EUSAGE, "engine: negative token count");
    if (n > s->n_ctx - s->n_past)
        return et_fail(e, ET_EUSAGE, "engine: %d more tokens would overflow the context of %d (%d cached)", n,
                       s->n_ctx, s->n_past);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->hp.n_vocab)
            return et_fail(e, ET_EUSAGE, "engine: token %d at index %d is outside [0, %d)", tokens[i], i,
                           m->hp.n_vocab);
    for (int i = 0; i < n; i += s->n_batch) {
        int c = n - i < s->n_batch ? n - i : s->n_batch;
        int last = i + c == n;
        float *lg = NULL;
        if (logits) lg = all_logits ? logits + (size_t)i * (size_t)m->hp.n_vocab : logits;
        int rc = forward_chunk(s, tokens + i, c, lg, all_logits, logits && (all_logits || last), e);
        if (rc) return rc;
    }
    return 0;
}
