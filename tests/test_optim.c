/* tests/test_optim.c — AdamW against an independent double-precision
 * computation (PyTorch torch.optim.AdamW's formula), LR schedules at known
 * steps, gradient clipping by global norm, thread-count independence. */
#include <math.h>
#include <omp.h>

#include "testutil.h"
#include "../train/optim.h"

/* PyTorch AdamW (torch/optim/adamw.py, _single_tensor_adamw, amsgrad off),
 * written independently in double. */
typedef struct { double p, m, v; } ref_state;

static void ref_adamw(ref_state *s, double g, double lr, double b1, double b2, double eps, double wd,
                      int decay, int t) {
    if (decay) s->p *= 1.0 - lr * wd;
    s->m = s->m + (g - s->m) * (1.0 - b1); /* exp_avg.lerp_(grad, 1 - beta1) */
    s->v = s->v * b2 + g * g * (1.0 - b2);
    double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
    double denom = sqrt(s->v) / sqrt(bc2) + eps;
    s->p -= (lr / bc1) * s->m / denom;
}

static void test_adamw_matches_reference(void **state) {
    (void)state;
    enum { N = 9 };
    et_adamw_hp hp = {0.9f, 0.95f, 1e-8f, 0.1f};
    et_adamw o;
    et_err e = {0};
    assert_int_equal(et_adamw_init(&o, N, &hp, &e), 0);
    /* [0,3) decayed, [3,5) not decayed, [5,6) frozen, [6,9) decayed */
    et_adamw_seg seg[] = {{0, 3, 1}, {3, 2, 0}, {6, 3, 1}};
    assert_int_equal(et_adamw_set_segments(&o, seg, 3, &e), 0);
    int decay[N] = {1, 1, 1, 0, 0, -1, 1, 1, 1};
    float p[N];
    ref_state r[N];
    for (int i = 0; i < N; i++) {
        p[i] = (float)(0.5 * sin(1.0 + i) + 0.01 * i);
        r[i] = (ref_state){p[i], 0, 0};
    }
    const float lrs[] = {1e-3f, 3e-3f, 2e-3f, 5e-4f, 1e-2f, 1e-3f};
    const float scales[] = {1.0f, 0.5f, 0.25f, 1.0f, 2.0f, 1.0f};
    for (int t = 1; t <= 6; t++) {
        float g[N];
        for (int i = 0; i < N; i++) g[i] = (float)(cos(0.7 * i * t + 0.3) * (i == 4 ? 1e-6 : 1.0));
        et_adamw_step(&o, p, g, lrs[t - 1], scales[t - 1]);
        for (int i = 0; i < N; i++) {
            if (decay[i] < 0) continue;
            ref_adamw(&r[i], (double)g[i] * scales[t - 1], lrs[t - 1], 0.9, 0.95, 1e-8, 0.1, decay[i], t);
        }
        for (int i = 0; i < N; i++) {
            double want = decay[i] < 0 ? p[i] : r[i].p;
            if (decay[i] < 0) assert_true(p[i] == (float)(0.5 * sin(1.0 + i) + 0.01 * i));
            double err = fabs(p[i] - want);
            if (err > 1e-6 * fabs(want) + 1e-7) {
                fprintf(stderr, "step %d elem %d: got %.9g want %.9g\n", t, i, (double)p[i], want);
                fail();
            }
            if (decay[i] >= 0) { /* moments: float rounding relative to the gradient size */
                double gs = i == 4 ? 2e-6 : 2.0;
                if (fabs(o.m[i] - r[i].m) > 1e-6 * gs || fabs(o.v[i] - r[i].v) > 1e-6 * gs * gs) {
                    fprintf(stderr, "step %d elem %d: m %.9g/%.9g v %.9g/%.9g\n", t, i, (double)o.m[i],
                            r[i].m, (double)o.v[i], r[i].v);
                    fail();
                }
            }
        }
    }
    assert_int_equal(o.step, 6);
    /* frozen element: moments never touched */
    assert_true(o.m[5] == 0.0f && o.v[5] == 0.0f);
    et_adamw_free(&o);
}

/* The first step moves every weight by about lr (bias correction makes
 * m_hat/sqrt(v_hat) = sign(g)), whatever the gradient's size. */
static void test_adamw_first_step_is_lr(void **state) {
    (void)state;
    et_adamw_hp hp = {0.9f, 0.999f, 1e-8f, 0.0f};
    et_adamw o;
    assert_int_equal(et_adamw_init(&o, 3, &hp, NULL), 0);
    float p[3] = {1, 1, 1}, g[3] = {1e-3f, -50.0f, 7.0f};
    et_adamw_step(&o, p, g, 0.01f, 1.0f);
    assert_float_equal(p[0], 0.99f, 1e-6);
    assert_float_equal(p[1], 1.01f, 1e-6);
    assert_float_equal(p[2], 0.99f, 1e-6);
    et_adamw_free(&o);
}

static void test_adamw_bad_input(void **state) {
    (void)state;
    et_adamw o;
    et_err e = {0};
    et_adamw_hp bad = {1.0f, 0.95f, 1e-8f, 0.1f};
    assert_int_equal(et_adamw_init(&o, 10, &bad, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "beta1"));
    et_adamw_hp hp = {0.9f, 0.95f, 1e-8f, 0.1f};
    assert_int_equal(et_adamw_init(&o, 10, &hp, &e), 0);
    et_adamw_seg overlap[] = {{0, 5, 1}, {4, 2, 0}};
    assert_int_equal(et_adamw_set_segments(&o, overlap, 2, &e), ET_EINPUT);
    et_adamw_seg outside[] = {{8, 3, 1}};
    assert_int_equal(et_adamw_set_segments(&o, outside, 1, &e), ET_EINPUT);
    assert_int_equal(o.n_seg, 1); /* kept */
    et_adamw_free(&o);
}

/* Bit-identical results with 1 and 2 threads (element-wise update, norm
 * summed over fixed chunks). */
static void test_thread_count_independent(void **state) {
    (void)state;
    const size_t n = 300001;
    float *g = malloc(n * sizeof(float)), *p1 = malloc(n * sizeof(float)), *p2 = malloc(n * sizeof(float));
    assert_non_null(g);
    assert_non_null(p1);
    assert_non_null(p2);
    double ref = 0;
    for (size_t i = 0; i < n; i++) {
        g[i] = (float)sin(0.001 * (double)i) * 0.01f;
        p1[i] = p2[i] = (float)cos(0.002 * (double)i);
        ref += (double)g[i] * g[i];
    }
    ref = sqrt(ref);
    et_adamw_hp hp = {0.9f, 0.95f, 1e-8f, 0.1f};
    et_adamw a, b;
    assert_int_equal(et_adamw_init(&a, n, &hp, NULL), 0);
    assert_int_equal(et_adamw_init(&b, n, &hp, NULL), 0);
    et_adamw_seg seg[] = {{0, 1000, 0}, {1000, n - 1000, 1}};
    assert_int_equal(et_adamw_set_segments(&a, seg, 2, NULL), 0);
    assert_int_equal(et_adamw_set_segments(&b, seg, 2, NULL), 0);
    int saved = omp_get_max_threads();
    double n1, n2;
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(1);
        float f1 = et_grad_scale_clip(g, n, 0.5f, 0.1f, &n1);
        et_adamw_step(&a, p1, g, 1e-3f, f1);
        omp_set_num_threads(2);
        float f2 = et_grad_scale_clip(g, n, 0.5f, 0.1f, &n2);
        et_adamw_step(&b, p2, g, 1e-3f, f2);
        assert_true(n1 == n2);
        assert_true(f1 == f2);
        assert_true(fabs(n1 - 0.5 * ref) < 1e-9 * ref);
    }
    omp_set_num_threads(saved);
    assert_memory_equal(p1, p2, n * sizeof(float));
    assert_memory_equal(a.m, b.m, n * sizeof(float));
    assert_memory_equal(a.v, b.v, n * sizeof(float));
    et_adamw_free(&a);
    et_adamw_free(&b);
    free(g);
    free(p1);
    free(p2);
}

static void test_clip(void **state) {
    (void)state;
    float g[2] = {3.0f, 4.0f};
    double norm;
    /* no clipping needed */
    float f = et_grad_scale_clip(g, 2, 1.0f, 10.0f, &norm);
    assert_true(f == 1.0f);
    assert_float_equal(norm, 5.0, 1e-12);
    /* clip to 1: factor max_norm / (norm + 1e-6) */
    f = et_grad_scale_clip(g, 2, 1.0f, 1.0f, &norm);
    assert_float_equal(f, 1.0 / (5.0 + 1e-6), 1e-7);
    /* accumulation scale is applied before the norm: 0.5 * |g| = 2.5 */
    f = et_grad_scale_clip(g, 2, 0.5f, 1.0f, &norm);
    assert_float_equal(norm, 2.5, 1e-12);
    assert_float_equal(f, 0.5 / (2.5 + 1e-6), 1e-7);
    /* disabled */
    f = et_grad_scale_clip(g, 2, 0.25f, 0.0f, &norm);
    assert_true(f == 0.25f);
    /* non-finite gradients are reported through the norm */
    g[1] = NAN;
    et_grad_scale_clip(g, 2, 1.0f, 1.0f, &norm);
    assert_true(isnan(norm));
    g[1] = INFINITY;
    et_grad_scale_clip(g, 2, 1.0f, 1.0f, &norm);
    assert_false(isfinite(norm));
}

static void test_schedules(void **state) {
    (void)state;
    et_lr_sched c = {ET_LR_COSINE, 1.0f, 0.1f, 10, 110};
    assert_float_equal(et_lr_at(&c, 0), 0.1, 1e-7);  /* (0+1)/10 */
    assert_float_equal(et_lr_at(&c, 4), 0.5, 1e-7);
    assert_float_equal(et_lr_at(&c, 9), 1.0, 1e-7);
    assert_float_equal(et_lr_at(&c, 10), 1.0, 1e-7); /* p = 0 */
    assert_float_equal(et_lr_at(&c, 60), 0.55, 1e-6); /* p = 0.5: cos = 0 */
    assert_float_equal(et_lr_at(&c, 35), 0.1 + 0.9 * 0.5 * (1 + cos(M_PI * 0.25)), 1e-6);
    /* issue 11 (docs/training.md): the last of 110 steps (index 109) runs at p = 99/100 < 1, just above
       min_lr, as HF's schedulers and llm.c; min_lr itself is the lr of a step after the last */
    assert_float_equal(et_lr_at(&c, 109), 0.1 + 0.9 * 0.5 * (1 + cos(M_PI * 0.99)), 1e-6);
    assert_true(et_lr_at(&c, 109) > 0.1f);
    assert_float_equal(et_lr_at(&c, 110), 0.1, 1e-7);
    assert_float_equal(et_lr_at(&c, 500), 0.1, 1e-7); /* clamped */
    et_lr_sched l = {ET_LR_LINEAR, 2.0f, 0.0f, 0, 100};
    assert_float_equal(et_lr_at(&l, 0), 2.0, 1e-7);
    assert_float_equal(et_lr_at(&l, 25), 1.5, 1e-6);
    assert_float_equal(et_lr_at(&l, 100), 0.0, 1e-7);
    et_lr_sched k = {ET_LR_CONSTANT, 3e-4f, 0.0f, 4, 100};
    assert_float_equal(et_lr_at(&k, 1), 1.5e-4, 1e-10);
    assert_float_equal(et_lr_at(&k, 3), 3e-4, 1e-10);
    assert_float_equal(et_lr_at(&k, 99), 3e-4, 1e-10);
    assert_int_equal(et_lr_kind_parse("cosine"), ET_LR_COSINE);
    assert_int_equal(et_lr_kind_parse("linear"), ET_LR_LINEAR);
    assert_int_equal(et_lr_kind_parse("constant"), ET_LR_CONSTANT);
    assert_int_equal(et_lr_kind_parse("step"), -1);
}

static void test_wd_default(void **state) {
    (void)state;
    assert_int_equal(et_wd_default("token_embd.weight", 2), 0);
    assert_int_equal(et_wd_default("output_norm.weight", 1), 0);
    assert_int_equal(et_wd_default("blk.0.attn_norm.weight", 1), 0);
    assert_int_equal(et_wd_default("blk.3.attn_q.weight", 2), 1);
    assert_int_equal(et_wd_default("output.weight", 2), 1);
}

/* Segments from a tensor table: sorted by offset, decay from the names. */
static void test_mask_tensors(void **state) {
    (void)state;
    float block[40];
    et_named t[3] = {
        {"blk.0.attn_q.weight", block + 24, 2, {4, 4}, 16},
        {"token_embd.weight", block, 2, {4, 5}, 20},
        {"output_norm.weight", block + 20, 1, {4, 1}, 4},
    };
    et_adamw o;
    et_adamw_hp hp = {0.9f, 0.95f, 1e-8f, 0.1f};
    assert_int_equal(et_adamw_init(&o, 40, &hp, NULL), 0);
    assert_int_equal(et_adamw_mask_tensors(&o, block, t, 3, ET_WD_DEFAULT, NULL), 0);
    assert_int_equal(o.n_seg, 3);
    assert_true(o.seg[0].offset == 0 && o.seg[0].n == 20 && o.seg[0].decay == 0);
    assert_true(o.seg[1].offset == 20 && o.seg[1].n == 4 && o.seg[1].decay == 0);
    assert_true(o.seg[2].offset == 24 && o.seg[2].n == 16 && o.seg[2].decay == 1);
    assert_int_equal(et_adamw_mask_tensors(&o, block, t, 3, ET_WD_ALL, NULL), 0);
    assert_true(o.seg[0].decay && o.seg[1].decay && o.seg[2].decay);
    t[0].n = 17; /* runs past the block */
    assert_int_equal(et_adamw_mask_tensors(&o, block, t, 3, ET_WD_DEFAULT, NULL), ET_EINPUT);
    et_adamw_free(&o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_matches_reference),
        cmocka_unit_test(test_adamw_first_step_is_lr),
        cmocka_unit_test(test_adamw_bad_input),
        cmocka_unit_test(test_thread_count_independent),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_wd_default),
        cmocka_unit_test(test_mask_tensors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
