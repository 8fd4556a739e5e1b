/* tests/test_checkpoint.c — the HDF5 run state: exact round trip, refusal
 * of corrupt / truncated / mismatched files (with the file named), and a
 * failed save leaving the previous checkpoint byte-identical. */
#include <sys/stat.h>

#include "testutil.h"
#include "../train/checkpoint.h"

enum { N_EMB = 4 * 8, N_NORM = 8, N_Q = 8 * 8, N = N_EMB + N_NORM + N_Q };

typedef struct fixture {
    float data[N];
    et_named t[3];
    et_param_block b;
    et_adamw o;
} fixture;

static void fixture_init(fixture *x, int q_rows, unsigned seed) {
    memset(x, 0, sizeof *x);
    x->t[0] = (et_named){"token_embd.weight", x->data, 2, {8, 4}, N_EMB};
    x->t[1] = (et_named){"output_norm.weight", x->data + N_EMB, 1, {8, 1}, N_NORM};
    x->t[2] = (et_named){"blk.0.attn_q.weight", x->data + N_EMB + N_NORM, 2, {8, q_rows}, (size_t)(8 * q_rows)};
    x->b = (et_param_block){x->data, N, x->t, 3};
    et_adamw_hp hp = {0.9f, 0.95f, 1e-8f, 0.1f};
    assert_int_equal(et_adamw_init(&x->o, N, &hp, NULL), 0);
    uint32_t s = seed;
    for (int i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        x->data[i] = (float)(int32_t)s * 1e-9f;
        x->o.m[i] = (float)(s >> 8) * 1e-7f;
        x->o.v[i] = (float)(s >> 16) * 1e-5f;
    }
    x->data[0] = 123456.789f; /* a marker to find the block in the file */
}

static const char *tmp_file(const char *name) {
    static char buf[4][512];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return b;
}

static et_ckpt sample_state(void) {
    static uint8_t cursor[13] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 255};
    et_ckpt st = {.step = 17, .tokens = 4352, .rng = {1, 0xdeadbeefcafef00dULL, 3, UINT64_MAX},
                  .cursor = cursor, .cursor_len = sizeof cursor,
                  .config = "{\"n_embd\": 8, \"lr\": 0.001, \"data\": \"tokens.h5\"}"};
    return st;
}

static void test_round_trip_exact(void **state) {
    (void)state;
    fixture a, b;
    fixture_init(&a, 8, 1);
    fixture_init(&b, 8, 2); /* different contents, same shapes */
    const char *path = tmp_file("rt.h5");
    et_ckpt st = sample_state();
    et_err e = {0};
    assert_int_equal(et_ckpt_save(path, &a.b, &a.o, &st, &e), 0);
    et_ckpt back;
    int rc = et_ckpt_load(path, &b.b, &b.o, &back, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_memory_equal(a.data, b.data, sizeof a.data);
    assert_memory_equal(a.o.m, b.o.m, N * sizeof(float));
    assert_memory_equal(a.o.v, b.o.v, N * sizeof(float));
    assert_int_equal(back.step, 17);
    assert_int_equal(b.o.step, 17);
    assert_int_equal(back.tokens, 4352);
    assert_memory_equal(back.rng, st.rng, sizeof st.rng);
    assert_int_equal(back.cursor_len, st.cursor_len);
    assert_memory_equal(back.cursor, st.cursor, st.cursor_len);
    assert_string_equal(back.config, st.config);
    et_ckpt_free(&back);
    /* peek reads the same state without the block */
    assert_int_equal(et_ckpt_peek(path, &back, &e), 0);
    assert_int_equal(back.step, 17);
    assert_string_equal(back.config, st.config);
    et_ckpt_free(&back);
    /* no temporary file left behind */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_int_not_equal(access(tmp, F_OK), 0);
    et_adamw_free(&a.o);
    et_adamw_free(&b.o);
}

static long file_size(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static void copy_file(const char *from, const char *to, long n) {
    FILE *f = fopen(from, "rb"), *g = fopen(to, "wb");
    assert_non_null(f);
    assert_non_null(g);
    char buf[4096];
    long left = n;
    size_t r;
    while (left > 0 && (r = fread(buf, 1, left < 4096 ? (size_t)left : 4096, f)) > 0) {
        fwrite(buf, 1, r, g);
        left -= (long)r;
    }
    fclose(f);
    fclose(g);
}

static void expect_refused(fixture *x, const char *path, const char *what) {
    et_ckpt st;
    et_err e = {0};
    int rc = et_ckpt_load(path, &x->b, &x->o, &st, &e);
    if (rc == 0) fprintf(stderr, "%s was accepted\n", what);
    if (getenv("ET_VERBOSE")) fprintf(stderr, "%s: %s\n", what, e.msg);
    assert_int_equal(rc, ET_EINPUT);
    assert_non_null(strstr(e.msg, path)); /* the message names the file */
    assert_null(st.config);
}

static void test_truncated_and_corrupt_refused(void **state) {
    (void)state;
    fixture a;
    fixture_init(&a, 8, 3);
    const char *path = tmp_file("good.h5");
    et_ckpt st = sample_state();
    assert_int_equal(et_ckpt_save(path, &a.b, &a.o, &st, NULL), 0);
    long size = file_size(path);
    assert_true(size > 0);

    const char *trunc = tmp_file("trunc.h5");
    copy_file(path, trunc, size / 2);
    expect_refused(&a, trunc, "truncated file");
    copy_file(path, trunc, size - 1);
    expect_refused(&a, trunc, "file short by one byte");

    /* flip one bit inside the parameter data (found by its marker) */
    const char *bad = tmp_file("flip.h5");
    copy_file(path, bad, size);
    FILE *f = fopen(bad, "r+b");
    assert_non_null(f);
    char *buf = malloc((size_t)size);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    float marker = 123456.789f;
    long at = -1;
    for (long i = 0; i + 4 <= size; i++)
        if (!memcmp(buf + i, &marker, 4)) { at = i; break; }
    assert_true(at >= 0);
    buf[at + 4 * 5] ^= 0x10;
    fseek(f, 0, SEEK_SET);
    fwrite(buf, 1, (size_t)size, f);
    fclose(f);
    free(buf);
    expect_refused(&a, bad, "bit flip in /params");

    /* not HDF5 at all */
    const char *junk = tmp_file("junk.h5");
    f = fopen(junk, "wb");
    fputs("{\"not\": \"a checkpoint\"}\n", f);
    fclose(f);
    expect_refused(&a, junk, "JSON file");
    expect_refused(&a, tmp_file("missing.h5"), "missing file");
    et_adamw_free(&a.o);
}

static void test_shape_mismatch_refused(void **state) {
    (void)state;
    fixture a, b;
    fixture_init(&a, 8, 4);
    const char *path = tmp_file("shape.h5");
    et_ckpt st = sample_state();
    assert_int_equal(et_ckpt_save(path, &a.b, &a.o, &st, NULL), 0);
    /* same float count, tensor renamed */
    fixture_init(&b, 8, 5);
    snprintf(b.t[2].name, sizeof b.t[2].name, "blk.0.attn_k.weight");
    et_ckpt back;
    et_err e = {0};
    assert_int_equal(et_ckpt_load(path, &b.b, &b.o, &back, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, "blk.0.attn_k.weight"));
    /* same count, other shape */
    snprintf(b.t[2].name, sizeof b.t[2].name, "blk.0.attn_q.weight");
    b.t[2].ne[0] = 16;
    b.t[2].ne[1] = 4;
    assert_int_equal(et_ckpt_load(path, &b.b, &b.o, &back, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "shape"));
    /* fewer floats */
    et_adamw_free(&b.o);
    fixture_init(&b, 8, 6);
    b.b.n = N - 8;
    b.t[2].n -= 8;
    b.t[2].ne[1] = 7;
    b.o.n = N - 8;
    assert_int_equal(et_ckpt_load(path, &b.b, &b.o, &back, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "parameters"));
    b.o.n = N;
    et_adamw_free(&a.o);
    et_adamw_free(&b.o);
}

static void test_failed_save_keeps_previous(void **state) {
    (void)state;
    fixture a, b;
    fixture_init(&a, 8, 7);
    fixture_init(&b, 8, 8);
    const char *path = tmp_file("keep.h5");
    et_ckpt st = sample_state();
    assert_int_equal(et_ckpt_save(path, &a.b, &a.o, &st, NULL), 0);
    long size = file_size(path);
    char *before = malloc((size_t)size), *after = malloc((size_t)size);
    FILE *f = fopen(path, "rb");
    assert_int_equal(fread(before, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    /* the temporary name is taken by a directory: the save must fail */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_int_equal(mkdir(tmp, 0700), 0);
    et_err e = {0};
    st.step = 18;
    assert_int_equal(et_ckpt_save(path, &b.b, &b.o, &st, &e), ET_ERUN);
    assert_non_null(strstr(e.msg, path));
    rmdir(tmp);
    /* a block the optimizer does not match is refused before any write */
    b.o.n = N - 1;
    assert_int_equal(et_ckpt_save(path, &b.b, &b.o, &st, &e), ET_EINPUT);
    b.o.n = N;
    assert_int_equal(file_size(path), size);
    f = fopen(path, "rb");
    assert_int_equal(fread(after, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    assert_memory_equal(before, after, (size_t)size);
    et_ckpt back;
    assert_int_equal(et_ckpt_load(path, &b.b, &b.o, &back, &e), 0);
    assert_int_equal(back.step, 17);
    assert_memory_equal(a.data, b.data, sizeof a.data);
    et_ckpt_free(&back);
    free(before);
    free(after);
    et_adamw_free(&a.o);
    et_adamw_free(&b.o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_exact),
        cmocka_unit_test(test_truncated_and_corrupt_refused),
        cmocka_unit_test(test_shape_mismatch_refused),
        cmocka_unit_test(test_failed_save_keeps_previous),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
