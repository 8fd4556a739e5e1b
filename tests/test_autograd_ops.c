/* tests/test_autograd_ops.c — every op of train/ops.h against an independent
 * double-precision reference: the float forward must match the reference,
 * and the float backward must match central finite differences of the
 * reference (in double, so the differences themselves are accurate to ~1e-10).
 *
 * Objective for an op with output y: J = sum_k R_k y_k with fixed random R;
 * backward is seeded with dJ/dy = R, and for every input element
 * dJ/dx ~ (J(x + h) - J(x - h)) / 2h on the double reference.
 * Error measure per input: max_i |g_i - fd_i| / max_i |fd_i|; must be < 1e-5.
 * The measure is shown to fail on a perturbed gradient and on an op with a
 * deliberately wrong backward (test_fd_catches_*). */
#include "testutil.h"

#include <math.h>
#include <omp.h>

#include "../train/ops.h"
#include "../train/simd.h"

#define MAX_IN 6
#define GRAD_TOL 1e-5
#define FWD_TOL 2e-5

/* ---- deterministic random numbers ---- */
static uint64_t rng_state = 88172645463325252ull;
static double urand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* ---- one op case ---- */
typedef struct opcase opcase;
struct opcase {
    const char *name;
    int n_in;
    int ndim[MAX_IN];
    int64_t shape[MAX_IN][ET_MAX_DIMS];
    int needs_grad[MAX_IN];      /* 0: input stays constant (e.g. frozen) */
    double lo[MAX_IN], hi[MAX_IN]; /* init range (default [-1, 1]) */
    size_t n_out;
    /* the float op under test */
    et_tensor *(*build)(et_tape *t, et_tensor **in, const opcase *c);
    /* double reference: out[n_out] from x[i][n_i] */
    void (*ref)(const double *const *x, double *out, const opcase *c);
    /* op parameters */
    int B, T, H, G, D, N, C, V, chunk, fused;
    float eps, theta, s;
    const int32_t *ids, *pos;
    const uint8_t *mask;
    double norm;
    const et_kd_opts *kd;        /* et_kd_loss cases: inputs x, w (and teacher x, w) */
};

static size_t numel(const opcase *c, int i) {
    size_t n = 1;
    for (int d = 0; d < c->ndim[i]; d++) n *= (size_t)c->shape[i][d];
    return n;
}

typedef struct {
    double fwd_err;              /* max |y - y_ref| / max(1, max |y_ref|) */
    double grad_err[MAX_IN];     /* per input, see the file comment */
    double worst;                /* max of grad_err */
} result;

/* corrupt: 0 = none; 1 = add 1% of max|g| to one element of input 0's grad */
static result run_case(opcase *c, int corrupt) {
    result r = {0};
    double *xd[MAX_IN];
    float *xf[MAX_IN], *gf[MAX_IN];
    et_tensor wrap[MAX_IN], *in[MAX_IN];
    for (int i = 0; i < c->n_in; i++) {
        size_t n = numel(c, i);
        xd[i] = malloc(n * sizeof(double));
        xf[i] = malloc(n * sizeof(float));
        gf[i] = calloc(n, sizeof(float));
        double lo = c->lo[i], hi = c->hi[i];
        if (lo == 0 && hi == 0) lo = -1, hi = 1;
        for (size_t k = 0; k < n; k++) {
            xf[i][k] = (float)(lo + (hi - lo) * (urand() + 1) / 2);
            xd[i][k] = xf[i][k]; /* the reference sees exactly the float inputs */
        }
        et_tensor_wrap(&wrap[i], "in", xf[i], c->needs_grad[i] ? gf[i] : NULL, c->ndim[i], c->shape[i]);
        in[i] = &wrap[i];
    }
    double *R = malloc(c->n_out * sizeof(double));
    float *Rf = malloc(c->n_out * sizeof(float));
    for (size_t k = 0; k < c->n_out; k++) Rf[k] = (float)urand(), R[k] = Rf[k];

    et_tape t;
    assert_int_equal(et_tape_init(&t, 0, NULL), 0);
    et_tensor *y = c->build(&t, in, c);
    et_err e = {0};
    if (et_tape_status(&t, &e)) fail_msg("%s: %s", c->name, e.msg);
    assert_non_null(y);
    assert_int_equal(y->n, c->n_out);

    double *yref = malloc(c->n_out * sizeof(double));
    c->ref((const double *const *)xd, yref, c);
    double ymax = 1.0, dmax = 0.0;
    for (size_t k = 0; k < c->n_out; k++) ymax = fmax(ymax, fabs(yref[k]));
    for (size_t k = 0; k < c->n_out; k++) dmax = fmax(dmax, fabs(y->data[k] - yref[k]));
    r.fwd_err = dmax / ymax;

    assert_int_equal(et_tape_backward_seed(&t, y, Rf), 0);

    for (int i = 0; i < c->n_in; i++) {
        if (!c->needs_grad[i]) continue;
        size_t n = numel(c, i);
        double *fd = malloc(n * sizeof(double));
        for (size_t k = 0; k < n; k++) {
            const double x0 = xd[i][k], h = 1e-5 * fmax(1.0, fabs(x0));
            double jp = 0, jm = 0;
            xd[i][k] = x0 + h;
            c->ref((const double *const *)xd, yref, c);
            for (size_t o = 0; o < c->n_out; o++) jp += R[o] * yref[o];
            xd[i][k] = x0 - h;
            c->ref((const double *const *)xd, yref, c);
            for (size_t o = 0; o < c->n_out; o++) jm += R[o] * yref[o];
            xd[i][k] = x0;
            fd[k] = (jp - jm) / (2 * h);
        }
        double fmaxv = 0, emax = 0;
        for (size_t k = 0; k < n; k++) fmaxv = fmax(fmaxv, fabs(fd[k]));
        if (corrupt == 1 && i == 0) gf[i][n / 2] += (float)(0.01 * fmaxv);
        for (size_t k = 0; k < n; k++) emax = fmax(emax, fabs(gf[i][k] - fd[k]));
        r.grad_err[i] = fmaxv > 0 ? emax / fmaxv : emax;
        if (fmaxv == 0) r.grad_err[i] = emax > 1e-12 ? 1.0 : 0.0;
        r.worst = fmax(r.worst, r.grad_err[i]);
        free(fd);
    }
    et_tape_free(&t);
    for (int i = 0; i < c->n_in; i++) free(xd[i]), free(xf[i]), free(gf[i]);
    free(R), free(Rf), free(yref);
    return r;
}

static void expect_ok(opcase *c) {
    result r = run_case(c, 0);
    printf("  %-22s forward err %.2e   grad err", c->name, r.fwd_err);
    for (int i = 0; i < c->n_in; i++)
        if (c->needs_grad[i]) printf(" %.2e", r.grad_err[i]);
    printf("\n");
    if (r.fwd_err > FWD_TOL) fail_msg("%s: forward differs from the double reference by %.3e", c->name, r.fwd_err);
    if (r.worst > GRAD_TOL) fail_msg("%s: gradient differs from finite differences by %.3e", c->name, r.worst);
}

/* ================= embedding ================= */
static et_tensor *b_embedding(et_tape *t, et_tensor **in, const opcase *c) {
    return et_embedding(t, "emb", in[0], c->ids, c->N);
}
static void r_embedding(const double *const *x, double *out, const opcase *c) {
    for (int i = 0; i < c->N; i++)
        for (int j = 0; j < c->C; j++) out[i * c->C + j] = x[0][c->ids[i] * c->C + j];
}
static void test_embedding(void **state) {
    (void)state;
    static const int32_t ids[7] = {3, 0, 5, 3, 3, 1, 5}; /* repeats: grads add up */
    opcase c = {.name = "embedding", .n_in = 1, .ndim = {2}, .shape = {{6, 5}}, .needs_grad = {1},
                .build = b_embedding, .ref = r_embedding, .N = 7, .C = 5, .ids = ids};
    c.n_out = 7 * 5;
    expect_ok(&c);
}

/* ================= matmul ================= */
static et_tensor *b_matmul(et_tape *t, et_tensor **in, const opcase *c) {
    return et_matmul(t, "y", in[0], in[1], c->n_in > 2 ? in[2] : NULL);
}
static void r_matmul(const double *const *x, double *out, const opcase *c) {
    const int M = c->N, K = c->C, N = c->V;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = c->n_in > 2 ? x[2][j] : 0.0;
            for (int k = 0; k < K; k++) s += x[0][i * K + k] * x[1][j * K + k];
            out[i * N + j] = s;
        }
}
static void test_matmul(void **state) {
    (void)state;
    /* x as a 3-d [2, 3, 7] tensor (rows = 6), w [5, 7], b [5] */
    opcase c = {.name = "matmul+bias", .n_in = 3, .ndim = {3, 2, 1},
                .shape = {{2, 3, 7}, {5, 7}, {5}}, .needs_grad = {1, 1, 1},
                .build = b_matmul, .ref = r_matmul, .N = 6, .C = 7, .V = 5};
    c.n_out = 6 * 5;
    expect_ok(&c);
    /* frozen weight (LoRA base): only dx flows */
    opcase f = {.name = "matmul frozen w", .n_in = 2, .ndim = {2, 2}, .shape = {{4, 9}, {3, 9}},
                .needs_grad = {1, 0}, .build = b_matmul, .ref = r_matmul, .N = 4, .C = 9, .V = 3};
    f.n_out = 4 * 3;
    expect_ok(&f);
}

static et_tensor *b_matmul_add(et_tape *t, et_tensor **in, const opcase *c) {
    (void)c;
    return et_matmul_add(t, "y", in[0], in[1], in[2], in[3]);
}
static void r_matmul_add(const double *const *x, double *out, const opcase *c) {
    r_matmul(x, out, c); /* n_in > 2: with the bias */
    for (size_t i = 0; i < c->n_out; i++) out[i] += x[3][i];
}
/* the residual is x itself: y = x + x @ w^T (x [M, K], w [K, K]) */
static et_tensor *b_matmul_add_self(et_tape *t, et_tensor **in, const opcase *c) {
    (void)c;
    return et_matmul_add(t, "y", in[0], in[1], NULL, in[0]);
}
static void r_matmul_add_self(const double *const *x, double *out, const opcase *c) {
    r_matmul(x, out, c);
    for (size_t i = 0; i < c->n_out; i++) out[i] += x[0][i];
}
static void test_matmul_add(void **state) {
    (void)state;
    /* residual r [6, 5] added inside the GEMM */
    opcase c = {.name = "matmul+bias+residual", .n_in = 4, .ndim = {2, 2, 1, 2},
                .shape = {{6, 7}, {5, 7}, {5}, {6, 5}}, .needs_grad = {1, 1, 1, 1},
                .build = b_matmul_add, .ref = r_matmul_add, .N = 6, .C = 7, .V = 5};
    c.n_out = 6 * 5;
    expect_ok(&c);
    /* dr = dy is taken over without a copy, except when r is x */
    opcase s = {.name = "matmul+residual x", .n_in = 2, .ndim = {2, 2}, .shape = {{4, 5}, {5, 5}},
                .needs_grad = {1, 1}, .build = b_matmul_add_self, .ref = r_matmul_add_self, .N = 4, .C = 5, .V = 5};
    s.n_out = 4 * 5;
    expect_ok(&s);
}

/* ================= rmsnorm ================= */
static et_tensor *b_rmsnorm(et_tape *t, et_tensor **in, const opcase *c) {
    return et_rmsnorm(t, "n", in[0], in[1], c->eps);
}
static void r_rmsnorm(const double *const *x, double *out, const opcase *c) {
    for (int i = 0; i < c->N; i++) {
        double ss = 0;
        for (int j = 0; j < c->C; j++) ss += x[0][i * c->C + j] * x[0][i * c->C + j];
        double r = 1.0 / sqrt(ss / c->C + (double)c->eps);
        for (int j = 0; j < c->C; j++) out[i * c->C + j] = x[0][i * c->C + j] * r * x[1][j];
    }
}
static void test_rmsnorm(void **state) {
    (void)state;
    opcase c = {.name = "rmsnorm", .n_in = 2, .ndim = {2, 1}, .shape = {{5, 12}, {12}},
                .needs_grad = {1, 1}, .lo = {-1, 0.5}, .hi = {1, 1.5},
                .build = b_rmsnorm, .ref = r_rmsnorm, .N = 5, .C = 12, .eps = 1e-5f};
    c.n_out = 5 * 12;
    expect_ok(&c);
    /* 70 columns: a remainder after the 8-lane row sums, two blocks of dw */
    opcase w = c;
    w.name = "rmsnorm 70 columns";
    w.N = 3, w.C = 70;
    w.shape[0][0] = 3, w.shape[0][1] = 70, w.shape[1][0] = 70;
    w.n_out = 3 * 70;
    expect_ok(&w);
}

/* ================= rope ================= */
static et_tensor *b_rope(et_tape *t, et_tensor **in, const opcase *c) {
    return et_rope(t, "r", in[0], c->T, c->H, c->D, c->pos, c->theta);
}
/* in place: the float input is overwritten (the reference keeps its copy) */
static et_tensor *b_rope_inplace(et_tape *t, et_tensor **in, const opcase *c) {
    et_tensor *y = et_rope_inplace(t, "r", in[0], c->T, c->H, c->D, c->pos, c->theta);
    assert_ptr_equal(y->data, in[0]->data);
    return y;
}
static void r_rope(const double *const *x, double *out, const opcase *c) {
    const int C = c->H * c->D;
    for (int r = 0; r < c->B * c->T; r++) {
        double p = c->pos ? c->pos[r] : r % c->T;
        for (int h = 0; h < c->H; h++)
            for (int i = 0; i < c->D / 2; i++) {
                double a = p / pow((double)c->theta, 2.0 * i / c->D);
                const double *xi = x[0] + r * C + h * c->D + 2 * i;
                out[r * C + h * c->D + 2 * i] = xi[0] * cos(a) - xi[1] * sin(a);
                out[r * C + h * c->D + 2 * i + 1] = xi[0] * sin(a) + xi[1] * cos(a);
            }
    }
}
static void test_rope(void **state) {
    (void)state;
    opcase c = {.name = "rope", .n_in = 1, .ndim = {2}, .shape = {{2 * 5, 3 * 8}}, .needs_grad = {1},
                .build = b_rope, .ref = r_rope, .B = 2, .T = 5, .H = 3, .D = 8, .theta = 10000.0f};
    c.n_out = 10 * 24;
    expect_ok(&c);
    /* explicit positions (packed documents restart at 0) and another theta */
    static const int32_t pos[8] = {0, 1, 2, 0, 1, 7, 100, 3};
    opcase p = {.name = "rope positions", .n_in = 1, .ndim = {2}, .shape = {{8, 2 * 6}}, .needs_grad = {1},
                .build = b_rope, .ref = r_rope, .B = 2, .T = 4, .H = 2, .D = 6, .theta = 500000.0f, .pos = pos};
    p.n_out = 8 * 12;
    expect_ok(&p);
    p.name = "rope in place";
    p.build = b_rope_inplace;
    expect_ok(&p);
}

/* Four ropes in one tape: the cos/sin tables are made once per (positions,
 * head_dim, theta) and shared until et_tape_reset (train/op_rope.c); each
 * call must still get its own. */
static const int32_t chain_pos_a[10] = {0, 1, 2, 0, 1, 7, 100, 3, 4, 2};
static const int32_t chain_pos_b[10] = {0, 1, 2, 0, 1, 7, 100, 3, 4, 5}; /* differs in the last */
static et_tensor *b_rope_chain(et_tape *t, et_tensor **in, const opcase *c) {
    et_tensor *y = et_rope(t, "r1", in[0], c->T, c->H, c->D, NULL, c->theta);
    y = et_rope(t, "r2", y, c->T, c->H, c->D, NULL, 500000.0f); /* another theta */
    y = et_rope(t, "r2b", y, c->T, c->H, c->D, chain_pos_a, 500000.0f);
    y = et_rope_inplace(t, "r3", y, c->T, c->H, c->D, NULL, c->theta);
    y = et_rope(t, "r4", y, c->T, c->H, c->D, chain_pos_b, 500000.0f);
    return et_rope(t, "r5", y, 2 * c->T, c->H, c->D, NULL, c->theta); /* another T */
}
static void r_rope_chain(const double *const *x, double *out, const opcase *c) {
    const size_t n = c->n_out;
    double *a = malloc(n * sizeof(double)), *b = malloc(n * sizeof(double));
    opcase k = *c;
    const double *src[1] = {x[0]};
    r_rope(src, b, &k);
    k.theta = 500000.0f, src[0] = b;
    r_rope(src, a, &k);
    k.pos = chain_pos_a, src[0] = a;
    r_rope(src, b, &k);
    k.pos = NULL, k.theta = c->theta, src[0] = b;
    r_rope(src, a, &k);
    k.pos = chain_pos_b, k.theta = 500000.0f, src[0] = a;
    r_rope(src, b, &k);
    k.pos = NULL, k.theta = c->theta, k.T = 2 * c->T, k.B = c->B / 2, src[0] = b;
    r_rope(src, out, &k);
    free(a), free(b);
}
static void test_rope_shared_tables(void **state) {
    (void)state;
    opcase c = {.name = "rope tables shared", .n_in = 1, .ndim = {2}, .shape = {{2 * 5, 2 * 6}}, .needs_grad = {1},
                .build = b_rope_chain, .ref = r_rope_chain, .B = 2, .T = 5, .H = 2, .D = 6, .theta = 10000.0f};
    c.n_out = 10 * 12;
    expect_ok(&c);
}

/* ================= attention ================= */
static et_tensor *b_attention(et_tape *t, et_tensor **in, const opcase *c) {
    return et_attention(t, "att", in[0], in[1], in[2], c->T, c->H, c->G, c->D);
}
/* Plain softmax over the masked score matrix, one (b, h) at a time. */
static void r_attention(const double *const *x, double *out, const opcase *c) {
    const int T = c->T, H = c->H, G = c->G, D = c->D, Cq = H * D, Ck = G * D;
    double sc[64];
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < H; h++) {
            const int g = h / (H / G);
            for (int i = 0; i < T; i++) {
                double m = -1e300, z = 0;
                for (int j = 0; j <= i; j++) {
                    double s = 0;
                    for (int d = 0; d < D; d++)
                        s += x[0][(b * T + i) * Cq + h * D + d] * x[1][(b * T + j) * Ck + g * D + d];
                    sc[j] = s / sqrt((double)D);
                    m = fmax(m, sc[j]);
                }
                for (int j = 0; j <= i; j++) z += (sc[j] = exp(sc[j] - m));
                for (int d = 0; d < D; d++) {
                    double o = 0;
                    for (int j = 0; j <= i; j++) o += sc[j] / z * x[2][(b * T + j) * Ck + g * D + d];
                    out[(b * T + i) * Cq + h * D + d] = o;
                }
            }
        }
}
static void test_attention(void **state) {
    (void)state;
    /* GQA: 4 query heads on 2 kv heads; scores of size ~ +-6 so softmax is peaked */
    opcase c = {.name = "attention gqa", .n_in = 3, .ndim = {2, 2, 2},
                .shape = {{2 * 6, 4 * 4}, {2 * 6, 2 * 4}, {2 * 6, 2 * 4}}, .needs_grad = {1, 1, 1},
                .lo = {-2, -2, -1}, .hi = {2, 2, 1},
                .build = b_attention, .ref = r_attention, .B = 2, .T = 6, .H = 4, .G = 2, .D = 4};
    c.n_out = 12 * 16;
    expect_ok(&c);
    /* multi-head (G = H) and multi-query (G = 1) */
    opcase m = c;
    m.name = "attention mha";
    m.G = 3, m.H = 3, m.D = 2, m.T = 5, m.B = 1;
    m.shape[0][0] = m.shape[1][0] = m.shape[2][0] = 5;
    m.shape[0][1] = m.shape[1][1] = m.shape[2][1] = 6;
    m.n_out = 5 * 6;
    expect_ok(&m);
    opcase q = c;
    q.name = "attention mqa";
    q.G = 1;
    q.shape[1][1] = q.shape[2][1] = 4;
    expect_ok(&q);
    /* head_dim 8 takes the fused kernels of op_attention.c (KD); T = 37 and
       T = 17 end rows inside a block of 16 keys (the causal mask and the
       padding), B = 2 checks the sequence offsets */
    opcase k8 = c;
    k8.name = "attention gqa head_dim 8";
    k8.T = 37, k8.D = 8;
    k8.shape[0][0] = k8.shape[1][0] = k8.shape[2][0] = 2 * 37;
    k8.shape[0][1] = 4 * 8, k8.shape[1][1] = k8.shape[2][1] = 2 * 8;
    k8.lo[0] = k8.lo[1] = -1, k8.hi[0] = k8.hi[1] = 1;
    k8.n_out = 2 * 37 * 4 * 8;
    expect_ok(&k8);
    opcase m8 = k8;
    m8.name = "attention mha head_dim 8";
    m8.B = 1, m8.T = 17, m8.H = m8.G = 3;
    m8.shape[0][0] = m8.shape[1][0] = m8.shape[2][0] = 17;
    m8.shape[0][1] = m8.shape[1][1] = m8.shape[2][1] = 3 * 8;
    m8.n_out = 17 * 3 * 8;
    expect_ok(&m8);
    /* the same at head_dim 8 on the portable row kernels (on an AVX-512 CPU
       the cases above ran the tiles of train/attn_kd8.h); T = 16 and 32 end
       exactly on a tile */
    et_attention_force_portable(1);
    expect_ok(&k8);
    expect_ok(&m8);
    et_attention_force_portable(0);
    opcase t16 = m8;
    t16.name = "attention mha head_dim 8, T 32";
    t16.T = 32, t16.H = t16.G = 1;
    t16.shape[0][0] = t16.shape[1][0] = t16.shape[2][0] = 32;
    t16.shape[0][1] = t16.shape[1][1] = t16.shape[2][1] = 8;
    t16.n_out = 32 * 8;
    expect_ok(&t16);
    opcase g16 = k8;
    g16.name = "attention gqa head_dim 8, T 16, 4 heads per kv head";
    g16.T = 16, g16.H = 4, g16.G = 1;
    g16.shape[0][0] = g16.shape[1][0] = g16.shape[2][0] = 2 * 16;
    g16.shape[0][1] = 4 * 8, g16.shape[1][1] = g16.shape[2][1] = 8;
    g16.n_out = 2 * 16 * 4 * 8;
    expect_ok(&g16);
    /* head_dim 16 takes attn_rows_backward (four query rows at a time):
       T = 7 and 13 end inside a block of four rows */
    opcase h16 = c;
    h16.name = "attention gqa head_dim 16, T 7";
    h16.T = 7, h16.D = 16;
    h16.shape[0][0] = h16.shape[1][0] = h16.shape[2][0] = 2 * 7;
    h16.shape[0][1] = 4 * 16, h16.shape[1][1] = h16.shape[2][1] = 2 * 16;
    h16.lo[0] = h16.lo[1] = -1, h16.hi[0] = h16.hi[1] = 1;
    h16.n_out = 2 * 7 * 4 * 16;
    expect_ok(&h16);
    opcase m16 = h16;
    m16.name = "attention mha head_dim 16, T 13";
    m16.B = 1, m16.T = 13, m16.H = m16.G = 2;
    m16.shape[0][0] = m16.shape[1][0] = m16.shape[2][0] = 13;
    m16.shape[0][1] = m16.shape[1][1] = m16.shape[2][1] = 2 * 16;
    m16.n_out = 13 * 2 * 16;
    expect_ok(&m16);
}

/* ================= rope of q and k in one pass, then attention ================= */
static et_tensor *b_rope_qk_attention(et_tape *t, et_tensor **in, const opcase *c) {
    et_tensor *q, *k;
    if (et_rope_qk_inplace(t, "qr", "kr", in[0], in[1], c->T, c->H, c->G, c->D, c->pos, c->theta, &q, &k))
        return NULL;
    return et_attention(t, "att", q, k, in[2], c->T, c->H, c->G, c->D);
}
static void r_rope_qk_attention(const double *const *x, double *out, const opcase *c) {
    const size_t nq = (size_t)c->B * c->T * c->H * c->D, nk = (size_t)c->B * c->T * c->G * c->D;
    double *q = malloc(nq * sizeof(double)), *k = malloc(nk * sizeof(double));
    opcase kc = *c;
    kc.H = c->G;
    const double *src[1] = {x[0]};
    r_rope(src, q, c);
    src[0] = x[1];
    r_rope(src, k, &kc);
    const double *qkv[3] = {q, k, x[2]};
    r_attention(qkv, out, c);
    free(q), free(k);
}
static void test_rope_qk(void **state) {
    (void)state;
    opcase c = {.name = "rope q,k + attention", .n_in = 3, .ndim = {2, 2, 2},
                .shape = {{2 * 6, 4 * 4}, {2 * 6, 2 * 4}, {2 * 6, 2 * 4}}, .needs_grad = {1, 1, 1},
                .lo = {-2, -2, -1}, .hi = {2, 2, 1}, .build = b_rope_qk_attention, .ref = r_rope_qk_attention,
                .B = 2, .T = 6, .H = 4, .G = 2, .D = 4, .theta = 10000.0f};
    c.n_out = 12 * 16;
    expect_ok(&c);
    static const int32_t pos[12] = {0, 1, 2, 3, 4, 5, 0, 1, 2, 0, 1, 2}; /* packed documents */
    c.name = "rope q,k positions", c.pos = pos;
    expect_ok(&c);
    /* k frozen: q's node alone (no pairing) */
    c.name = "rope q,k; k frozen", c.needs_grad[1] = 0;
    expect_ok(&c);
    /* q frozen: k's node alone */
    c.name = "rope q,k; q frozen", c.needs_grad[1] = 1, c.needs_grad[0] = 0;
    expect_ok(&c);
}

/* ================= swiglu, add, scale ================= */
static et_tensor *b_swiglu(et_tape *t, et_tensor **in, const opcase *c) {
    (void)c;
    return et_swiglu(t, "sw", in[0], in[1]);
}
static void r_swiglu(const double *const *x, double *out, const opcase *c) {
    for (size_t i = 0; i < c->n_out; i++) out[i] = x[0][i] / (1 + exp(-x[0][i])) * x[1][i];
}
static opcase swiglu_case(void) {
    opcase c = {.name = "swiglu", .n_in = 2, .ndim = {2, 2}, .shape = {{4, 9}, {4, 9}}, .needs_grad = {1, 1},
                .lo = {-4, -1}, .hi = {4, 1}, .build = b_swiglu, .ref = r_swiglu};
    c.n_out = 36;
    return c;
}
static void test_swiglu(void **state) {
    (void)state;
    opcase c = swiglu_case();
    expect_ok(&c);
}

static et_tensor *b_add_scale(et_tape *t, et_tensor **in, const opcase *c) {
    /* a + s*a + b: a used twice, so its gradient must accumulate */
    return et_add(t, "sum", et_add(t, "ab", in[0], in[1]), et_scale(t, "sa", in[0], c->s));
}
static void r_add_scale(const double *const *x, double *out, const opcase *c) {
    for (size_t i = 0; i < c->n_out; i++) out[i] = x[0][i] + x[1][i] + (double)c->s * x[0][i];
}
static void test_add_scale(void **state) {
    (void)state;
    opcase c = {.name = "add+scale (reuse)", .n_in = 2, .ndim = {2, 2}, .shape = {{3, 5}, {3, 5}},
                .needs_grad = {1, 1}, .build = b_add_scale, .ref = r_add_scale, .s = -0.75f};
    c.n_out = 15;
    expect_ok(&c);
}

/* ================= cross-entropy ================= */
static et_tensor *b_xent(et_tape *t, et_tensor **in, const opcase *c) {
    et_xent_opts o = {.mask = c->mask, .norm = c->norm, .chunk_rows = c->chunk, .grad_in_forward = c->fused};
    return et_cross_entropy(t, "loss", in[0], in[1], c->ids, &o);
}
static void r_xent(const double *const *x, double *out, const opcase *c) {
    double total = 0;
    int n_in = 0;
    double z[64];
    for (int i = 0; i < c->N; i++) {
        if (c->ids[i] < 0 || (c->mask && !c->mask[i])) continue;
        n_in++;
        double m = -1e300, se = 0;
        for (int v = 0; v < c->V; v++) {
            z[v] = 0;
            for (int k = 0; k < c->C; k++) z[v] += x[0][i * c->C + k] * x[1][v * c->C + k];
            m = fmax(m, z[v]);
        }
        for (int v = 0; v < c->V; v++) se += exp(z[v] - m);
        total += m + log(se) - z[c->ids[i]];
    }
    out[0] = total / (c->norm > 0 ? c->norm : n_in);
}
static void test_cross_entropy(void **state) {
    (void)state;
    static const int32_t tg[7] = {2, 9, 0, -1, 5, 5, 1};
    static const uint8_t mask[7] = {1, 1, 1, 1, 0, 1, 1};
    /* chunks of 3 rows over 7 rows (the last chunk is short), a masked row
       and a row with target -1 */
    opcase c = {.name = "cross_entropy", .n_in = 2, .ndim = {2, 2}, .shape = {{7, 6}, {10, 6}},
                .needs_grad = {1, 1}, .lo = {-2, -1}, .hi = {2, 1},
                .build = b_xent, .ref = r_xent, .N = 7, .C = 6, .V = 10, .chunk = 3,
                .ids = tg, .mask = mask};
    c.n_out = 1;
    expect_ok(&c);
    c.name = "cross_entropy norm";
    c.norm = 11.0; /* gradient accumulation: divide by a global count */
    c.chunk = 0;
    expect_ok(&c);
    /* gradients made in the forward for dloss = 1; the random seed here is
       not 1, so backward's dw correction runs too */
    c.name = "cross_entropy grad_in_forward";
    c.fused = 1;
    c.chunk = 3;
    expect_ok(&c);
}

/* Chunking changes nothing; logits_out and row_loss_out are right;
 * grad_in_forward (seeded with 1, as the trainer) gives the same gradients. */
static void test_cross_entropy_options(void **state) {
    (void)state;
    enum { N = 9, C = 5, V = 13 };
    float x[N * C], w[V * C], gx[4][N * C], gw[4][V * C], logits[N * V], rl[N];
    int32_t tg[N];
    for (int i = 0; i < N * C; i++) x[i] = (float)urand();
    for (int i = 0; i < V * C; i++) w[i] = (float)urand();
    for (int i = 0; i < N; i++) tg[i] = (i * 7) % V;
    float loss[4];
    const int chunks[4] = {1, 4, 0, 4};
    for (int k = 0; k < 4; k++) {
        memset(gx[k], 0, sizeof gx[k]);
        memset(gw[k], 0, sizeof gw[k]);
        et_tensor X, W;
        et_tensor_wrap(&X, "x", x, gx[k], 2, (int64_t[]){N, C});
        et_tensor_wrap(&W, "w", w, gw[k], 2, (int64_t[]){V, C});
        et_tape t;
        et_tape_init(&t, 0, NULL);
        et_xent_opts o = {.chunk_rows = chunks[k], .logits_out = k == 2 ? logits : NULL,
                          .row_loss_out = k == 2 ? rl : NULL, .grad_in_forward = k == 3};
        et_tensor *l = et_cross_entropy(&t, "loss", &X, &W, tg, &o);
        assert_non_null(l);
        loss[k] = l->data[0];
        assert_int_equal(et_tape_backward(&t, l), 0);
        et_tape_free(&t);
    }
    assert_true(fabsf(loss[0] - loss[2]) < 1e-6f && fabsf(loss[1] - loss[2]) < 1e-6f);
    for (int i = 0; i < N * C; i++) assert_true(fabsf(gx[0][i] - gx[2][i]) < 1e-6f);
    for (int i = 0; i < V * C; i++) assert_true(fabsf(gw[1][i] - gw[2][i]) < 1e-6f);
    assert_true(loss[3] == loss[1]);
    for (int i = 0; i < N * C; i++) assert_true(fabsf(gx[3][i] - gx[1][i]) < 1e-6f);
    for (int i = 0; i < V * C; i++) assert_true(fabsf(gw[3][i] - gw[1][i]) < 1e-6f);
    double mean = 0;
    for (int i = 0; i < N; i++) {
        double m = -1e30, se = 0;
        for (int v = 0; v < V; v++) {
            double z = 0;
            for (int k = 0; k < C; k++) z += (double)x[i * C + k] * w[v * C + k];
            assert_true(fabs(z - logits[i * V + v]) < 1e-5);
            m = fmax(m, z);
        }
        for (int v = 0; v < V; v++) se += exp(logits[i * V + v] - m);
        double li = m + log(se) - logits[i * V + tg[i]];
        assert_true(fabs(li - rl[i]) < 1e-5);
        mean += li / N;
    }
    assert_true(fabs(mean - loss[2]) < 1e-5);
}

/* ================= distillation loss ================= */
static et_tensor *b_kd(et_tape *t, et_tensor **in, const opcase *c) {
    et_kd_opts o = *c->kd;
    o.mask = c->mask, o.norm = c->norm, o.chunk_rows = c->chunk, o.grad_in_forward = c->fused;
    if (c->n_in == 4) o.teacher_x = in[2], o.teacher_w = in[3];
    return et_kd_loss(t, "loss", in[0], in[1], c->ids, &o);
}
/* log-softmax of s z (z = x_i w^T, [V]) in double */
static void ref_logsoftmax(const double *x, const double *w, int C, int V, double s, double *lq) {
    double m = -1e300, se = 0;
    for (int v = 0; v < V; v++) {
        double z = 0;
        for (int k = 0; k < C; k++) z += x[k] * w[v * C + k];
        lq[v] = s * z;
        m = fmax(m, lq[v]);
    }
    for (int v = 0; v < V; v++) se += exp(lq[v] - m);
    for (int v = 0; v < V; v++) lq[v] -= m + log(se);
}
/* The definitions of op_kd.c written out directly, per row, in double. */
static void r_kd(const double *const *x, double *out, const opcase *c) {
    const et_kd_opts *o = c->kd;
    const int C = c->C, V = c->V, k = o->k;
    const double T = o->temperature, s = 1.0 / T;
    double lq[64], l1[64], lp[64], ce = 0, kd = 0;
    int n_in = 0;
    for (int i = 0; i < c->N; i++) {
        if (c->mask && !c->mask[i]) continue;
        const int has_kd = !o->kd_mask || o->kd_mask[i];
        if (c->ids[i] < 0 && !has_kd) continue;
        n_in++;
        ref_logsoftmax(x[0] + i * C, x[1], C, V, 1.0, l1);
        ref_logsoftmax(x[0] + i * C, x[1], C, V, s, lq);
        if (c->ids[i] >= 0) ce -= l1[c->ids[i]];
        if (!has_kd) continue;
        if (c->n_in == 4) { /* dense teacher */
            const int Ct = (int)c->shape[2][1];
            ref_logsoftmax(x[2] + i * Ct, x[3], Ct, V, s, lp);
            for (int v = 0; v < V; v++)
                kd += o->kind == ET_KD_FORWARD ? exp(lp[v]) * (lp[v] - lq[v]) : exp(lq[v]) * (lq[v] - lp[v]);
            continue;
        }
        const int32_t *id = o->ids + i * k;
        const float *lpk = o->logprobs + i * k;
        if (o->weights) {
            for (int j = 0; j < k; j++) kd += o->weights[i * k + j] * (lpk[j] - lq[id[j]]);
            continue;
        }
        double zp = 0, zq = 0;
        for (int j = 0; j < k; j++) zp += exp(lpk[j]), zq += exp(lq[id[j]]);
        for (int j = 0; j < k; j++) {
            const double pn = exp(lpk[j]) / zp, qn = exp(lq[id[j]]) / zq;
            kd += o->kind == ET_KD_FORWARD ? pn * (log(pn) - lq[id[j]]) : qn * (log(qn) - log(pn));
        }
    }
    const double norm = c->norm > 0 ? c->norm : n_in;
    out[0] = (o->alpha * T * T * kd + (1 - o->alpha) * ce) / norm;
}
/* hidden-state loss: x = in[0], the teacher's y = in[1] (no gradient) */
static et_tensor *b_hid(et_tape *t, et_tensor **in, const opcase *c) {
    return et_hidden_loss(t, "h", in[0], in[1]->data, c->mask, c->G, c->norm);
}
static void r_hid(const double *const *x, double *out, const opcase *c) {
    double total = 0;
    int n_in = 0;
    for (int r = 0; r < c->N; r++) {
        if (c->mask && !c->mask[r]) continue;
        n_in++;
        double a = 0, xx = 0, yy = 0, xy = 0;
        for (int k = 0; k < c->C; k++) {
            const double u = x[0][r * c->C + k], v = x[1][r * c->C + k];
            a += (u - v) * (u - v), xx += u * u, yy += v * v, xy += u * v;
        }
        total += c->G == ET_HIDDEN_MSE ? a / c->C : 1 - xy / sqrt(xx * yy);
    }
    out[0] = total / (c->norm > 0 ? c->norm : n_in);
}
static void test_hidden_loss(void **state) {
    (void)state;
    static const uint8_t mask[5] = {1, 0, 1, 1, 1};
    opcase c = {.name = "hidden mse", .n_in = 2, .ndim = {2, 2}, .shape = {{5, 6}, {5, 6}}, .needs_grad = {1, 0},
                .build = b_hid, .ref = r_hid, .N = 5, .C = 6, .G = ET_HIDDEN_MSE, .mask = mask};
    c.n_out = 1;
    expect_ok(&c);
    c.name = "hidden cosine", c.G = ET_HIDDEN_COSINE, c.norm = 7;
    expect_ok(&c);
}

static void test_kd_loss(void **state) {
    (void)state;
    enum { N = 7, C = 5, V = 11, K = 4 };
    static const int32_t tg[N] = {2, 9, 0, -1, 5, 5, 1};
    static const uint8_t mask[N] = {1, 1, 1, 1, 0, 1, 1};
    static const uint8_t kdm[N] = {1, 0, 1, 1, 1, 1, 1};
    int32_t ids[N * K];
    float lp[N * K], wt[N * K];
    for (int i = 0; i < N; i++) { /* a teacher: distinct ids, log-probs of a random softmax */
        double z[V], m = -1e300, se = 0;
        for (int v = 0; v < V; v++) z[v] = 2.0 * urand(), m = fmax(m, z[v]);
        for (int v = 0; v < V; v++) se += exp(z[v] - m);
        for (int j = 0; j < K; j++) {
            ids[i * K + j] = (i * 3 + j * 5) % V;
            lp[i * K + j] = (float)(z[ids[i * K + j]] - m - log(se));
        }
        const int draws[K] = {5, 3, 0, 4}; /* sampled: counts of 12 draws (one slot unused) */
        for (int j = 0; j < K; j++) wt[i * K + j] = (float)draws[(j + i) % K] / 12.0f;
    }
    et_kd_opts fw = {.kind = ET_KD_FORWARD, .temperature = 2.0f, .alpha = 0.6f, .k = K, .ids = ids, .logprobs = lp,
                     .kd_mask = kdm};
    opcase c = {.name = "kd forward top-k", .n_in = 2, .ndim = {2, 2}, .shape = {{N, C}, {V, C}}, .needs_grad = {1, 1},
                .lo = {-2, -1}, .hi = {2, 1}, .build = b_kd, .ref = r_kd, .N = N, .C = C, .V = V, .chunk = 3,
                .ids = tg, .mask = mask, .kd = &fw};
    c.n_out = 1;
    expect_ok(&c);
    et_kd_opts rv = fw;
    rv.kind = ET_KD_REVERSE, rv.temperature = 1.5f, rv.alpha = 0.8f;
    c.name = "kd reverse top-k", c.kd = &rv, c.norm = 13.0;
    expect_ok(&c);
    et_kd_opts sm = fw;
    sm.weights = wt, sm.temperature = 1.0f, sm.alpha = 1.0f;
    c.name = "kd sampled", c.kd = &sm, c.norm = 0;
    expect_ok(&c);
    c.name = "kd sampled fused", c.fused = 1;
    expect_ok(&c);
    /* an online teacher: its hidden states and output weight are inputs without gradients */
    et_kd_opts dn = {.kind = ET_KD_FORWARD, .temperature = 2.0f, .alpha = 0.5f, .kd_mask = kdm};
    opcase d = {.name = "kd dense forward", .n_in = 4, .ndim = {2, 2, 2, 2}, .shape = {{N, C}, {V, C}, {N, 3}, {V, 3}},
                .needs_grad = {1, 1, 0, 0}, .lo = {-2, -1, -2, -1}, .hi = {2, 1, 2, 1}, .build = b_kd, .ref = r_kd,
                .N = N, .C = C, .V = V, .chunk = 4, .ids = tg, .mask = mask, .kd = &dn};
    d.n_out = 1;
    expect_ok(&d);
    et_kd_opts dr = dn;
    dr.kind = ET_KD_REVERSE, dr.temperature = 0.7f;
    d.name = "kd dense reverse", d.kd = &dr, d.fused = 1;
    expect_ok(&d);
}

/* ================= the checker can fail ================= */
/* A deliberately wrong SwiGLU backward: uses silu'(g) = sigmoid(g) (forgets
 * the g s (1 - s) term).  Also shows an op written outside train/. */
static void bad_swiglu_backward(et_tape *t, const et_node *nd) {
    et_tensor *g = nd->in[0], *u = nd->in[1];
    float *dg = et_grad(t, g), *du = et_grad(t, u);
    for (size_t i = 0; i < g->n; i++) {
        const float s = 1.0f / (1.0f + expf(-g->data[i]));
        dg[i] += nd->out->grad[i] * u->data[i] * s;
        du[i] += nd->out->grad[i] * g->data[i] * s;
    }
}
static et_tensor *b_bad_swiglu(et_tape *t, et_tensor **in, const opcase *c) {
    (void)c;
    et_tensor *out = et_tensor_new(t, "bad", in[0]->ndim, in[0]->shape, 1);
    for (size_t i = 0; i < out->n; i++)
        out->data[i] = in[0]->data[i] / (1.0f + expf(-in[0]->data[i])) * in[1]->data[i];
    et_tape_push(t, "bad_swiglu", bad_swiglu_backward, out, in, 2, NULL);
    return out;
}
static void test_fd_catches_wrong_backward(void **state) {
    (void)state;
    opcase c = swiglu_case();
    c.build = b_bad_swiglu;
    result r = run_case(&c, 0);
    printf("  wrong swiglu backward: forward err %.2e, grad err %.2e (must be > %.0e)\n", r.fwd_err,
           r.grad_err[0], GRAD_TOL);
    assert_true(r.fwd_err < FWD_TOL);
    assert_true(r.grad_err[0] > GRAD_TOL);  /* the wrong dg is caught */
    assert_true(r.grad_err[1] < GRAD_TOL);  /* the right du passes */
}
static void test_fd_catches_perturbed_gradient(void **state) {
    (void)state;
    opcase c = {.name = "rmsnorm", .n_in = 2, .ndim = {2, 1}, .shape = {{5, 12}, {12}},
                .needs_grad = {1, 1}, .lo = {-1, 0.5}, .hi = {1, 1.5},
                .build = b_rmsnorm, .ref = r_rmsnorm, .N = 5, .C = 12, .eps = 1e-5f};
    c.n_out = 60;
    result r = run_case(&c, 1);
    printf("  one element off by 1%% of max|g|: grad err %.2e\n", r.grad_err[0]);
    assert_true(r.grad_err[0] > GRAD_TOL);
}

/* ================= vectorizable exp ================= */
static void test_vexpf(void **state) {
    (void)state;
    double worst = 0;
    for (double x = -87.3; x <= 88.0; x += 0.000731) {
        const float xf = (float)x;
        worst = fmax(worst, fabs(et_vexpf(xf) / exp((double)xf) - 1.0));
    }
    printf("  et_vexpf max relative error %.2e on [-87.3, 88]\n", worst);
    assert_true(worst < 3e-7);
    assert_true(et_vexpf(-1000.0f) < 2e-38f && et_vexpf(-1000.0f) >= 0.0f);
    assert_true(isfinite(et_vexpf(1000.0f)));
}

/* ================= tape mechanics ================= */
static void test_errors_are_sticky(void **state) {
    (void)state;
    float a[6] = {0}, w[4] = {0};
    et_tensor A, W;
    et_tensor_wrap(&A, "a", a, NULL, 2, (int64_t[]){2, 3});
    et_tensor_wrap(&W, "w", w, NULL, 2, (int64_t[]){2, 2});
    et_tape t;
    et_tape_init(&t, 0, NULL);
    et_tensor *y = et_matmul(&t, "y", &A, &W, NULL); /* 3 columns vs [2, 2] */
    assert_null(y);
    assert_null(et_rmsnorm(&t, "n", y, &W, 1e-5f));  /* NULL in, NULL out */
    et_err e = {0};
    assert_int_equal(et_tape_status(&t, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "matmul y"));       /* the first error wins */
    int32_t bad_id = 7;
    et_tape_reset(&t);
    assert_int_equal(et_tape_status(&t, NULL), 0);
    assert_null(et_embedding(&t, "e", &A, &bad_id, 1));
    assert_int_equal(et_tape_status(&t, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "token id 7"));
    et_tape_reset(&t);
    assert_null(et_attention(&t, "att", &A, &A, &A, 2, 3, 2, 1)); /* 3 % 2 != 0 */
    assert_int_equal(et_tape_status(&t, NULL), ET_EINPUT);
    et_tape_free(&t);
}

/* After the first step the arena is one block: later steps do not malloc.
 * Recycling activation gradients changes no result and lowers the peak. */
static void test_arena_steady_state(void **state) {
    (void)state;
    enum { M = 128, K = 300, N = 200, L = 12 };
    float *x = malloc(M * K * sizeof(float)), *w = malloc(N * K * sizeof(float));
    float *gw[2] = {calloc(N * K, sizeof(float)), calloc(N * K, sizeof(float))};
    float *seed = malloc(M * N * sizeof(float));
    for (int i = 0; i < M * K; i++) x[i] = (float)urand();
    for (int i = 0; i < N * K; i++) w[i] = (float)urand() * 0.1f;
    for (int i = 0; i < M * N; i++) seed[i] = (float)urand();
    size_t peak[2];
    for (int keep = 0; keep < 2; keep++) {
        et_tensor X, W;
        et_tensor_wrap(&X, "x", x, NULL, 2, (int64_t[]){M, K});
        et_tensor_wrap(&W, "w", w, gw[keep], 2, (int64_t[]){N, K});
        et_tape t;
        et_tape_init(&t, 0, NULL);
        t.keep_grads = keep;
        size_t steady = 0;
        for (int step = 0; step < 3; step++) {
            et_tensor *y = NULL, *y0 = NULL;
            for (int l = 0; l < L; l++) { /* a few MB per step: more than the first 1 MB chunk */
                et_tensor *z = et_matmul(&t, "y", &X, &W, NULL);
                if (!y0) y0 = y = z;
                else y = et_swiglu(&t, "s", z, y);
            }
            memset(gw[keep], 0, N * K * sizeof(float));
            assert_int_equal(et_tape_backward_seed(&t, y, seed), 0);
            assert_true(keep ? y0->grad != NULL : y0->grad == NULL); /* recycled */
            assert_non_null(et_tape_find(&t, "s"));
            if (step == 0) assert_true(t.arena.n_mallocs > 1); /* it did grow */
            peak[keep] = t.arena.peak;
            et_tape_reset(&t);
            if (step == 0) steady = t.arena.n_mallocs;        /* + one consolidated block */
            else assert_int_equal(t.arena.n_mallocs, steady);
        }
        et_tape_free(&t);
    }
    assert_memory_equal(gw[0], gw[1], N * K * sizeof(float));
    printf("  arena peak %zu KiB recycling gradients, %zu KiB keeping them\n", peak[0] >> 10, peak[1] >> 10);
    assert_true(peak[0] < peak[1]);
    free(x), free(w), free(gw[0]), free(gw[1]), free(seed);
}

/* The rematerialisation pool (train/tape.h): a dropped output has no data
 * until backward, a drop of an arena tensor does nothing, too many
 * outputs alive at once is a clear error, and an eval tape never pools. */
static void test_remat_pool(void **state) {
    (void)state;
    enum { M = 4, C = 8 };
    float x[M * C], w[C], gx[M * C], gw[C], wm[C * C], gwm[C * C];
    for (int i = 0; i < M * C; i++) x[i] = (float)urand();
    for (int i = 0; i < C; i++) w[i] = 1.0f + 0.1f * (float)urand();
    for (int i = 0; i < C * C; i++) wm[i] = (float)urand();
    et_tensor X, W, WM;
    et_tensor_wrap(&X, "x", x, gx, 2, (int64_t[]){M, C});
    et_tensor_wrap(&W, "w", w, gw, 1, (int64_t[]){C});
    et_tensor_wrap(&WM, "wm", wm, gwm, 2, (int64_t[]){C, C});
    et_tape t;
    et_tape_init(&t, 0, NULL);
    et_tensor *h[ET_REMAT_POOL];
    for (int i = 0; i < ET_REMAT_POOL; i++) assert_non_null(h[i] = et_rmsnorm_remat(&t, "h", &X, &W, 1e-5f));
    assert_null(et_rmsnorm_remat(&t, "h9", &X, &W, 1e-5f));
    et_err e = {0};
    assert_int_equal(et_tape_status(&t, &e), ET_ERUN);
    assert_non_null(strstr(e.msg, "rematerialised tensors alive"));
    et_tape_reset(&t); /* frees every pool buffer for reuse */
    et_tensor *y = et_rmsnorm_remat(&t, "h", &X, &W, 1e-5f);
    et_tensor *z = et_matmul(&t, "z", y, &WM, NULL);
    assert_non_null(z);
    et_tensor *keep = et_rmsnorm(&t, "k", &X, &W, 1e-5f);
    const int nodes = t.n_nodes;
    et_tape_drop(&t, keep); /* in the arena: nothing happens */
    assert_int_equal(t.n_nodes, nodes);
    assert_non_null(keep->data);
    et_tape_drop(&t, y);
    assert_null(y->data);
    assert_int_equal(t.n_nodes, nodes + 1);
    float seed[M * C];
    for (int i = 0; i < M * C; i++) seed[i] = (float)urand();
    memset(gwm, 0, sizeof gwm);
    assert_int_equal(et_tape_backward_seed(&t, z, seed), 0);
    assert_null(y->data); /* back in the pool after its producer's backward */
    float g1[C * C];
    memcpy(g1, gwm, sizeof g1);
    et_tape_reset(&t);
    t.no_remat = 1; /* the same product with the normed rows kept */
    y = et_rmsnorm_remat(&t, "h", &X, &W, 1e-5f);
    z = et_matmul(&t, "z", y, &WM, NULL);
    et_tape_drop(&t, y);
    assert_non_null(y->data);
    memset(gwm, 0, sizeof gwm);
    assert_int_equal(et_tape_backward_seed(&t, z, seed), 0);
    assert_memory_equal(g1, gwm, sizeof g1);
    et_tape_reset(&t);
    t.no_remat = 0;
    t.record = 0; /* eval: nothing to recompute for */
    y = et_rmsnorm_remat(&t, "h", &X, &W, 1e-5f);
    et_tape_drop(&t, y);
    assert_non_null(y->data);
    assert_int_equal(t.n_nodes, 0);
    et_tape_free(&t);
}

/* Non-BLAS ops give bit-identical results with 1 and 2 threads. */
static void test_thread_count_independent(void **state) {
    (void)state;
    enum { B = 2, T = 33, H = 4, G = 2, D = 8 };
    const int nq = B * T * H * D, nk = B * T * G * D;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *nw = malloc(H * D * 4);
    float *seed = malloc(nq * 4);
    for (int i = 0; i < nq; i++) q[i] = (float)urand(), seed[i] = (float)urand();
    for (int i = 0; i < nk; i++) k[i] = (float)urand(), v[i] = (float)urand();
    for (int i = 0; i < H * D; i++) nw[i] = 1.0f + 0.1f * (float)urand();
    float *res[2];
    int saved = omp_get_max_threads();
    for (int run = 0; run < 2; run++) {
        omp_set_num_threads(run + 1);
        float *gq = calloc(nq, 4), *gk = calloc(nk, 4), *gv = calloc(nk, 4), *gn = calloc(H * D, 4);
        et_tensor Q, K, V, NW;
        et_tensor_wrap(&Q, "q", q, gq, 2, (int64_t[]){B * T, H * D});
        et_tensor_wrap(&K, "k", k, gk, 2, (int64_t[]){B * T, G * D});
        et_tensor_wrap(&V, "v", v, gv, 2, (int64_t[]){B * T, G * D});
        et_tensor_wrap(&NW, "nw", nw, gn, 1, (int64_t[]){H * D});
        et_tape t;
        et_tape_init(&t, 0, NULL);
        et_tensor *qr = et_rope(&t, "qr", et_rmsnorm(&t, "qn", &Q, &NW, 1e-5f), T, H, D, NULL, 10000.0f);
        et_tensor *kr = et_rope(&t, "kr", &K, T, G, D, NULL, 10000.0f);
        et_tensor *a = et_swiglu(&t, "sw", et_attention(&t, "att", qr, kr, &V, T, H, G, D), qr);
        assert_int_equal(et_tape_backward_seed(&t, a, seed), 0);
        res[run] = malloc((size_t)(nq + 2 * nk + H * D + nq) * 4);
        memcpy(res[run], gq, nq * 4);
        memcpy(res[run] + nq, gk, nk * 4);
        memcpy(res[run] + nq + nk, gv, nk * 4);
        memcpy(res[run] + nq + 2 * nk, gn, H * D * 4);
        memcpy(res[run] + nq + 2 * nk + H * D, a->data, nq * 4);
        et_tape_free(&t);
        free(gq), free(gk), free(gv), free(gn);
    }
    omp_set_num_threads(saved);
    assert_memory_equal(res[0], res[1], (size_t)(nq + 2 * nk + H * D + nq) * 4);
    free(res[0]), free(res[1]), free(q), free(k), free(v), free(nw), free(seed);
}

/* Large enough for the parallel paths: embedding backward split over
 * columns, rmsnorm backward as dynamic tasks (two dw blocks, dx row blocks),
 * SwiGLU's per-thread shares: the same floats with 1 and 2 threads. */
static void test_thread_count_independent_large(void **state) {
    (void)state;
    enum { V = 50, N = 600, C = 70 };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = (int32_t)(i * 7 % V);
    float *emb = malloc(V * C * 4), *nw = malloc(C * 4), *seed = malloc(N * C * 4);
    for (int i = 0; i < V * C; i++) emb[i] = (float)urand();
    for (int i = 0; i < C; i++) nw[i] = 1.0f + 0.1f * (float)urand();
    for (int i = 0; i < N * C; i++) seed[i] = (float)urand();
    float *res[2];
    int saved = omp_get_max_threads();
    for (int run = 0; run < 2; run++) {
        omp_set_num_threads(run + 1);
        res[run] = calloc(V * C + C + N * C, 4);
        et_tensor E, NW;
        et_tensor_wrap(&E, "e", emb, res[run], 2, (int64_t[]){V, C});
        et_tensor_wrap(&NW, "nw", nw, res[run] + V * C, 1, (int64_t[]){C});
        et_tape t;
        et_tape_init(&t, 0, NULL);
        et_tensor *x = et_embedding(&t, "x", &E, ids, N);
        et_tensor *xx = et_add(&t, "xx", x, x);
        et_tensor *y = et_swiglu(&t, "sw", et_rmsnorm(&t, "n", xx, &NW, 1e-5f), xx);
        assert_int_equal(et_tape_backward_seed(&t, y, seed), 0);
        memcpy(res[run] + V * C + C, y->data, N * C * 4);
        et_tape_free(&t);
    }
    omp_set_num_threads(saved);
    assert_memory_equal(res[0], res[1], (V * C + C + N * C) * 4);
    free(res[0]), free(res[1]), free(emb), free(nw), free(seed);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_matmul_add),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_rope_shared_tables),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_rope_qk),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_add_scale),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_cross_entropy_options),
        cmocka_unit_test(test_kd_loss),
        cmocka_unit_test(test_hidden_loss),
        cmocka_unit_test(test_fd_catches_wrong_backward),
        cmocka_unit_test(test_fd_catches_perturbed_gradient),
        cmocka_unit_test(test_vexpf),
        cmocka_unit_test(test_errors_are_sticky),
        cmocka_unit_test(test_arena_steady_state),
        cmocka_unit_test(test_remat_pool),
        cmocka_unit_test(test_thread_count_independent),
        cmocka_unit_test(test_thread_count_independent_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
