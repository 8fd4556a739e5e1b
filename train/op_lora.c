/* train/op_lora.c — frozen (possibly quantized) linear layer with an
 * optional LoRA branch; see op_lora.h for the formulas and sources.
 *
 * Shapes: x [M, K] (K = n_in), W [N, K] (N = n_out) in its own type,
 * A [r, K], B [N, r], u = drop(x) A^T [M, r], y [M, N].
 *   forward:  y  = x W^T                per tile of W rows: et_gemm(NoTrans, Trans)
 *             u  = drop(x) A^T          rank_xat   M x r x K
 *             y += s u B^T              rank_ua    M x N x r
 *   backward: dB += s dy^T u            rank_utx   N x r x M
 *             du  = s dy B              rank_xat   M x r x N
 *             dA += du^T drop(x)        rank_utx   r x K x M
 *             dx += dy W                per tile of W rows: et_gemm(NoTrans, NoTrans), beta 1
 *             dx += drop'(du A)         rank_ua    M x K x r
 * With dropout, drop(x) is formed a chunk of rows at a time in the scratch
 * buffer (never a full [M, K] copy), and the mask is recomputed in backward.
 * The two products with W go through et_gemm (train/gemm.h) in the tape's
 * precision; the rank-r ones are plain OpenMP loops in f32 (below). */
#include <math.h>
#include <string.h>

#include "../quant/quant.h"
#include "gemm.h"
#include "simd.h"
#include "op_lora.h"

#define DEFAULT_TILE_ROWS 256

/* ---- dropout mask: the i-th output of a splitmix64 stream at `seed` ---- */
static inline uint64_t splitmix64_at(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* keep when the top 24 bits of the hash are >= p * 2^24 */
static inline uint32_t drop_threshold(float p) { return (uint32_t)llround((double)p * 16777216.0); }

float et_lora_dropout_mult(uint64_t seed, uint64_t i, float p) {
    if (!(p > 0.0f)) return 1.0f;
    return (uint32_t)(splitmix64_at(seed, i) >> 40) >= drop_threshold(p) ? 1.0f / (1.0f - p) : 0.0f;
}

/* dst[rows, K] = src[rows, K] * mult(element index base + k) */
static void apply_dropout(float *dst, const float *src, size_t n, uint64_t base, uint64_t seed, float p, int add) {
    const uint32_t th = drop_threshold(p);
    const float inv = 1.0f / (1.0f - p);
    #pragma omp parallel for schedule(static)
    for (size_t k = 0; k < n; k++) {
        float m = (uint32_t)(splitmix64_at(seed, base + k) >> 40) >= th ? inv : 0.0f;
        if (add) dst[k] += src[k] * m;
        else dst[k] = src[k] * m;
    }
}

uint64_t et_frozen_w_bytes(const et_frozen_w *w) {
    if (!w || w->n_out < 1 || w->n_in < 1) return 0;
    uint64_t row = et_quant_row_bytes(w->type, w->n_in);
    if (!row || (uint64_t)w->n_out > UINT64_MAX / row) return 0;
    return row * (uint64_t)w->n_out;
}

size_t et_lora_scratch_floats(int64_t n_in_max) {
    return (size_t)DEFAULT_TILE_ROWS * (size_t)(n_in_max > 0 ? n_in_max : 1);
}

/* ---- products with W ---- */
/* Rows [r0, r0+nr) of W as floats: in place for F32, else dequantized into
 * tile (nr * n_in floats). */
static const float *w_rows(const et_frozen_w *w, int64_t r0, int64_t nr, float *tile) {
    const int64_t K = w->n_in;
    if (w->type == GGML_TYPE_F32) return (const float *)w->data + r0 * K;
    const size_t rb = (size_t)et_quant_row_bytes(w->type, K);
    const uint8_t *base = (const uint8_t *)w->data;
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < nr; r++)
        et_dequantize_row(w->type, base + (size_t)(r0 + r) * rb, tile + (size_t)r * (size_t)K, K);
    return tile;
}

/* W used whole, without a tile: F32 (in place, in either precision) and
 * BF16 in bf16 precision (its bits go straight to et_gemm_bf16w). */
static int w_whole(const et_frozen_w *w, int precision) {
    return w->type == GGML_TYPE_F32 || (w->type == GGML_TYPE_BF16 && precision == ET_GEMM_BF16);
}

int et_frozen_w_needs_tile(const et_frozen_w *w, int precision) { return !w_whole(w, precision); }

void et_frozen_w_forward(const et_frozen_w *w, int precision, const float *x, int M, float beta, float *y,
                         float *tile, int64_t tile_rows) {
    const int N = (int)w->n_out, K = (int)w->n_in;
    if (w->type == GGML_TYPE_BF16 && precision == ET_GEMM_BF16) {
        et_gemm_bf16w(0, 1, M, N, K, 1.0f, x, K, w->data, K, beta, y, N);
        return;
    }
    const int64_t step = w_whole(w, precision) ? N : tile_rows;
    for (int64_t r0 = 0; r0 < N; r0 += step) {
        const int nr = (int)(N - r0 < step ? N - r0 : step);
        const float *wt = w_rows(w, r0, nr, tile);
        et_gemm(precision, 0, 1, M, nr, K, 1.0f, x, K, wt, K, beta, y + r0, N);
    }
}

void et_frozen_w_backward(const et_frozen_w *w, int precision, const float *dy, int M, float beta, float *dx,
                          float *tile, int64_t tile_rows) {
    const int N = (int)w->n_out, K = (int)w->n_in;
    if (w->type == GGML_TYPE_BF16 && precision == ET_GEMM_BF16) {
        et_gemm_bf16w(0, 0, M, K, N, 1.0f, dy, N, w->data, K, beta, dx, K);
        return;
    }
    const int64_t step = w_whole(w, precision) ? N : tile_rows;
    for (int64_t r0 = 0; r0 < N; r0 += step) {
        const int nr = (int)(N - r0 < step ? N - r0 : step);
        const float *wt = w_rows(w, r0, nr, tile);
        et_gemm(precision, 0, 0, M, K, nr, 1.0f, dy + r0, N, wt, K, r0 ? 1.0f : beta, dx, K);
    }
}

/* ---- rank-r products ----
 * Plain OpenMP loops instead of BLAS: with r ~ 8 each product is a few
 * MFLOP, and a cblas_sgemm call would wake OpenBLAS's worker threads, which
 * then spin (sched_yield) on the cores the OpenMP GEMM and the other ops
 * need.  The row kernels are compiled per CPU (ET_SIMD_CLONES); the OpenMP
 * regions sit in plain functions (outlined bodies do not inherit a target).
 * Every sum runs in a fixed order: the same result on any thread count. */
#define COL_BLOCK 64 /* columns per thread task of the column-blocked products */

ET_SIMD_CLONES
static float dot_n(const float *a, const float *b, int n) {
    float s = 0.0f;
    #pragma omp simd reduction(+ : s)
    for (int k = 0; k < n; k++) s += a[k] * b[k];
    return s;
}

ET_SIMD_CLONES
static void axpy_n(float *y, float a, const float *x, int n) {
    #pragma omp simd
    for (int k = 0; k < n; k++) y[k] += a * x[k];
}

/* D[q, 0:len] += sum_i U[i, q] X[i, 0:len] for q < r (D rows ld apart,
 * X rows ldx apart): one column block of U^T X. */
ET_SIMD_CLONES
static void outer_acc(float *D, int ld, int r, const float *U, const float *X, int ldx, int rows, int len) {
    for (int i = 0; i < rows; i++) {
        const float *xi = X + (size_t)i * ldx;
        for (int q = 0; q < r; q++) {
            const float u = U[(size_t)i * r + q];
            float *d = D + (size_t)q * ld;
            #pragma omp simd
            for (int k = 0; k < len; k++) d[k] += u * xi[k];
        }
    }
}

/* U[rows, r] = alpha * X[rows, K] @ A[r, K]^T */
static void rank_xat(const float *X, int rows, int K, const float *A, int r, float alpha, float *U) {
    #pragma omp parallel for schedule(static) if ((size_t)rows * K * r > ET_OMP_MIN_WORK)
    for (int i = 0; i < rows; i++)
        for (int q = 0; q < r; q++) U[(size_t)i * r + q] = alpha * dot_n(X + (size_t)i * K, A + (size_t)q * K, K);
}

/* Y[rows, K] (+)= U[rows, r] @ A[r, K] (add 0: Y overwritten) */
static void rank_ua(const float *U, int rows, int r, const float *A, int K, float *Y, int add) {
    #pragma omp parallel for schedule(static) if ((size_t)rows * K * r > ET_OMP_MIN_WORK)
    for (int i = 0; i < rows; i++) {
        float *yi = Y + (size_t)i * K;
        if (!add) memset(yi, 0, (size_t)K * sizeof(float));
        for (int q = 0; q < r; q++) axpy_n(yi, U[(size_t)i * r + q], A + (size_t)q * K, K);
    }
}

/* D[r, K] += U[rows, r]^T @ X[rows, K], column blocks in parallel */
static void rank_utx(const float *U, int rows, int r, const float *X, int K, float *D) {
    const int nb = (K + COL_BLOCK - 1) / COL_BLOCK;
    #pragma omp parallel for schedule(static) if ((size_t)rows * K * r > ET_OMP_MIN_WORK)
    for (int b = 0; b < nb; b++) {
        const int k0 = b * COL_BLOCK, len = K - k0 < COL_BLOCK ? K - k0 : COL_BLOCK;
        outer_acc(D + k0, K, r, U, X + k0, K, rows, len);
    }
}

/* Bt[r, N] = B[N, r]^T */
static void transpose_nr(const float *B, int N, int r, float *Bt) {
    for (int j = 0; j < N; j++)
        for (int q = 0; q < r; q++) Bt[(size_t)q * N + j] = B[(size_t)j * r + q];
}

/* ---- the op ---- */
typedef struct lora_saved {
    et_frozen_w w;
    int precision;        /* of the products with W (the tape's at the forward) */
    float scale, dropout;
    uint64_t seed;
    float *scratch;       /* tile_rows * K floats (NULL when not needed) */
    int64_t tile_rows;
    float *u;             /* [M, r], NULL without a LoRA branch */
} lora_saved;

static void lora_backward(et_tape *t, const et_node *nd) {
    const lora_saved *s = nd->saved;
    et_tensor *x = nd->in[0], *b = nd->in[1], *A = nd->in[2], *B = nd->in[3], *y = nd->out;
    const int M = (int)et_rows(x), K = (int)s->w.n_in, N = (int)s->w.n_out;
    const float *dy = y->grad;
    int fresh = 0;
    float *dx = et_grad_fresh(t, x, &fresh); /* the product with W writes all of it first */
    if (dx) et_frozen_w_backward(&s->w, s->precision, dy, M, fresh ? 0.0f : 1.0f, dx, s->scratch, s->tile_rows);
    float *db = b ? et_grad(t, b) : NULL;
    if (db) {
        #pragma omp parallel for schedule(static)
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            for (int i = 0; i < M; i++) acc += dy[(size_t)i * N + j];
            db[j] += acc;
        }
    }
    if (A) {
        const int r = (int)A->shape[0];
        float *dA = et_grad(t, A), *dB = et_grad(t, B);
        /* Bt [r, N]: B transposed, then dB^T [r, N] accumulated in it */
        float *Bt = et_tape_scratch(t, ((size_t)M + (size_t)N) * (size_t)r * sizeof(float));
        if (!Bt) return;
        float *du = (dA || dx) ? Bt + (size_t)N * (size_t)r : NULL;
        if (du) {
            transpose_nr(B->data, N, r, Bt);
            rank_xat(dy, M, N, Bt, r, s->scale, du); /* du = s dy B */
        }
        if (dB) {
            memset(Bt, 0, (size_t)N * (size_t)r * sizeof(float));
            rank_utx(s->u, M, r, dy, N, Bt); /* dB^T = u^T dy */
            for (int j = 0; j < N; j++)
                for (int q = 0; q < r; q++) dB[(size_t)j * r + q] += s->scale * Bt[(size_t)q * N + j];
        }
        if (du && s->dropout <= 0.0f) {
            if (dA) rank_utx(du, M, r, x->data, K, dA);
            if (dx) rank_ua(du, M, r, A->data, K, dx, 1);
        } else if (du) {
            for (int64_t c0 = 0; c0 < M; c0 += s->tile_rows) {
                const int mc = (int)(M - c0 < s->tile_rows ? M - c0 : s->tile_rows);
                const size_t off = (size_t)c0 * (size_t)K, n = (size_t)mc * (size_t)K;
                const float *duc = du + (size_t)c0 * r;
                if (dA) {
                    apply_dropout(s->scratch, x->data + off, n, off, s->seed, s->dropout, 0);
                    rank_utx(duc, mc, r, s->scratch, K, dA);
                }
                if (dx) {
                    rank_ua(duc, mc, r, A->data, K, s->scratch, 0);
                    apply_dropout(dx + off, s->scratch, n, off, s->seed, s->dropout, 1);
                }
            }
        }
    }
}

static et_tensor *check_args(et_tape *t, const char *name, et_tensor *x, const et_frozen_w *w, et_tensor *b,
                             et_tensor *A, et_tensor *B, const et_lora_opts *o) {
    if (!x || !w) return et_tape_fail(t, ET_EINPUT, "lora_linear %s: NULL input", name);
    if ((!A) != (!B)) return et_tape_fail(t, ET_EINPUT, "lora_linear %s: lora_a and lora_b must both be set", name);
    if (!et_quant_supported(w->type) || !w->data || w->n_out < 1 || w->n_in < 1 || !et_frozen_w_bytes(w))
        return et_tape_fail(t, ET_EINPUT, "lora_linear %s: frozen weight [%lld, %lld] of type %u is not usable "
                            "(unsupported type, or rows not a multiple of its block)",
                            name, (long long)w->n_out, (long long)w->n_in, w->type);
    if ((size_t)w->n_in != et_cols(x))
        return et_tape_fail(t, ET_EINPUT, "lora_linear %s: x has %zu columns, frozen weight is [%lld, %lld]", name,
                            et_cols(x), (long long)w->n_out, (long long)w->n_in);
    if (et_rows(x) > INT32_MAX || w->n_out > INT32_MAX || w->n_in > INT32_MAX)
        return et_tape_fail(t, ET_EINPUT, "lora_linear %s: dimensions exceed the BLAS int range", name);
    if (b && b->n != (size_t)w->n_out)
        return et_tape_fail(t, ET_EINPUT, "lora_linear %s: bias %s has %zu elements, weight has %lld rows", name,
                            b->name, b->n, (long long)w->n_out);
    if (A) {
        if (A->ndim != 2 || B->ndim != 2 || A->shape[1] != w->n_in || B->shape[0] != w->n_out ||
            B->shape[1] != A->shape[0])
            return et_tape_fail(t, ET_EINPUT, "lora_linear %s: lora_a %s must be [rank, %lld] and lora_b %s "
                                "[%lld, rank]", name, A->name, (long long)w->n_in, B->name, (long long)w->n_out);
        if (o && !(o->dropout >= 0.0f && o->dropout < 1.0f))
            return et_tape_fail(t, ET_EINPUT, "lora_linear %s: dropout %g outside [0, 1)", name, (double)o->dropout);
    }
    if (o && o->scratch && o->scratch_floats < (size_t)w->n_in)
        return et_tape_fail(t, ET_EINPUT, "lora_linear %s: scratch of %zu floats holds no row of %lld", name,
                            o->scratch_floats, (long long)w->n_in);
    return x;
}

et_tensor *et_lora_linear(et_tape *t, const char *name, et_tensor *x, const et_frozen_w *w, et_tensor *b,
                          et_tensor *lora_a, et_tensor *lora_b, const et_lora_opts *o) {
    if (t->code) return NULL;
    if (!name) name = "";
    if (!check_args(t, name, x, w, b, lora_a, lora_b, o)) return NULL;
    const int M = (int)et_rows(x), K = (int)w->n_in, N = (int)w->n_out;
    const int lora = lora_a != NULL;
    const float dropout = lora && o ? o->dropout : 0.0f;
    et_tensor *in[4] = {x, b, lora_a, lora_b};
    const int wants = et_tape_wants_grad(t, in, 4);
    int64_t shape[ET_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = N;
    et_tensor *y = et_tensor_new(t, name, x->ndim, shape, wants);
    if (!y) return NULL;

    lora_saved *s = et_tape_alloc(t, sizeof *s);
    if (!s) return NULL;
    const int precision = t->gemm_precision == ET_GEMM_BF16 ? ET_GEMM_BF16 : ET_GEMM_F32;
    *s = (lora_saved){.w = *w, .precision = precision, .scale = lora && o ? o->scale : 0.0f, .dropout = dropout,
                      .seed = o ? o->seed : 0};
    /* scratch: W tiles (non-F32) and dropout chunks share it */
    if (!w_whole(w, precision) || dropout > 0.0f) {
        if (o && o->scratch) {
            s->scratch = o->scratch;
            s->tile_rows = (int64_t)(o->scratch_floats / (size_t)K);
        } else {
            s->tile_rows = DEFAULT_TILE_ROWS;
            s->scratch = et_tape_alloc(t, (size_t)s->tile_rows * (size_t)K * sizeof(float));
            if (!s->scratch) return NULL;
        }
    }

    et_frozen_w_forward(w, precision, x->data, M, 0.0f, y->data, s->scratch, s->tile_rows);
    if (b) {
        #pragma omp parallel for schedule(static)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) y->data[(size_t)i * N + j] += b->data[j];
    }
    if (lora) {
        const int r = (int)lora_a->shape[0];
        s->u = et_tape_alloc(t, (size_t)M * (size_t)r * sizeof(float));
        if (!s->u) return NULL;
        if (dropout <= 0.0f) {
            rank_xat(x->data, M, K, lora_a->data, r, 1.0f, s->u);
        } else {
            for (int64_t c0 = 0; c0 < M; c0 += s->tile_rows) {
                const int mc = (int)(M - c0 < s->tile_rows ? M - c0 : s->tile_rows);
                const size_t off = (size_t)c0 * (size_t)K;
                apply_dropout(s->scratch, x->data + off, (size_t)mc * (size_t)K, off, s->seed, dropout, 0);
                rank_xat(s->scratch, mc, K, lora_a->data, r, 1.0f, s->u + (size_t)c0 * r);
            }
        }
        /* y += s u B^T, with u scaled by s first (u is saved unscaled: copy) */
        float *us = et_tape_scratch(t, ((size_t)M + (size_t)N) * (size_t)r * sizeof(float));
        if (!us) return NULL;
        float *Bt = us + (size_t)M * (size_t)r;
        for (size_t k = 0; k < (size_t)M * (size_t)r; k++) us[k] = s->scale * s->u[k];
        transpose_nr(lora_b->data, N, r, Bt);
        rank_ua(us, M, r, Bt, N, y->data, 1);
    }
    if (wants && !et_tape_push(t, lora ? "lora_linear" : "frozen_matmul", lora_backward, y, in, 4, s)) return NULL;
    return y;
}

et_tensor *et_frozen_matmul(et_tape *t, const char *name, et_tensor *x, const et_frozen_w *w, et_tensor *b,
                            const et_lora_opts *o) {
    return et_lora_linear(t, name, x, w, b, NULL, NULL, o);
}
