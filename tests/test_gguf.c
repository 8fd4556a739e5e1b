/* tests/test_gguf.c — GGUF reader/writer.
 *  - round trip: every GGUF in ../shared read, copied KV by KV and tensor
 *    by tensor into a writer, written, and compared byte for byte;
 *  - hostile inputs built by hand (independently of the writer) are refused
 *    with a message naming the file and the problem, never a crash
 *    (run under ASan by `make check`; every buffer is exactly sized);
 *  - a file built from scratch reads back with exact types and values. */
#include "testutil.h"

#include <math.h>

#include "../export/gguf.h"

/* ------------------------------------------------------------ helpers */

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) { free(b); b = NULL; }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static void round_trip(const char *path) {
    gguf_file g;
    et_err e = {0};
    if (gguf_open(&g, path, &e)) fail_msg("%s", e.msg);
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    for (uint64_t i = 0; i < g.n_kv; i++) assert_int_equal(gguf_set_kv_from(w, &g, i), 0);
    for (uint64_t i = 0; i < g.n_tensors; i++)
        if (gguf_add_tensor_from(w, &g, i, &e)) fail_msg("%s", e.msg);
    char out[512];
    snprintf(out, sizeof out, "%s/rt.gguf", test_tmpdir());
    if (gguf_writer_write(w, out, &e)) fail_msg("%s", e.msg);
    gguf_writer_free(w);
    size_t na, nb;
    uint8_t *a = read_all(path, &na), *b = read_all(out, &nb);
    assert_non_null(a);
    assert_non_null(b);
    if (na != nb) fail_msg("%s: round trip size %zu != %zu", path, nb, na);
    for (size_t i = 0; i < na; i++)
        if (a[i] != b[i]) fail_msg("%s: round trip differs first at byte %zu", path, i);
    free(a);
    free(b);
    gguf_close(&g);
    unlink(out);
}

static void test_round_trip_shared(void **state) {
    (void)state;
    static const char *files[] = {
        "models/stories260K/stories260K.gguf",
        "tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf",
        "tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf",
        "tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf",
        "tokenizers/llamacpp-vocab/ggml-vocab-deepseek-llm.gguf",
        "golden/quant/rand-llama-256.gguf",
        "golden/quant/rand-llama-256-F16.gguf",
        "golden/quant/rand-llama-256-Q8_0.gguf",
        "golden/quant/rand-llama-256-Q4_0.gguf",
        "golden/quant/rand-llama-256-Q4_K_M.gguf",
        "golden/quant/rand-llama-256-Q6_K.gguf",
    };
    int done = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        const char *p = shared_path(files[i]);
        if (!p) { fprintf(stderr, "SKIP: %s/%s not found\n", et_shared_dir(), files[i]); continue; }
        round_trip(p);
        done++;
    }
    if (!done) skip();
}

/* stories260K: known facts (README: dim 64, hidden 172, 5 layers, 8 heads, 4 kv heads, vocab 512). */
static void test_read_stories(void **state) {
    (void)state;
    SHARED_OR_SKIP(path, "models/stories260K/stories260K.gguf");
    gguf_file g;
    et_err e = {0};
    if (gguf_open(&g, path, &e)) fail_msg("%s", e.msg);
    assert_int_equal(g.version, 3);
    assert_int_equal(g.alignment, 32);
    uint32_t v;
    assert_int_equal(gguf_get_u32(&g, "llama.block_count", &v, &e), 0);
    assert_int_equal(v, 5);
    assert_int_equal(gguf_get_u32(&g, "llama.embedding_length", &v, &e), 0);
    assert_int_equal(v, 64);
    assert_int_equal(gguf_get_u32(&g, "llama.feed_forward_length", &v, &e), 0);
    assert_int_equal(v, 172);
    assert_int_equal(gguf_get_u32(&g, "llama.attention.head_count_kv", &v, &e), 0);
    assert_int_equal(v, 4);
    char arch[32];
    assert_int_equal(gguf_get_str(&g, "general.architecture", arch, sizeof arch, &e), 0);
    assert_string_equal(arch, "llama");
    assert_int_equal(gguf_get_str(&g, "general.architecture", arch, 5, &e), ET_EINPUT); /* "llama" needs 6 */
    assert_int_equal(gguf_get_u32(&g, "no.such.key", &v, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "missing key 'no.such.key'"));
    assert_non_null(strstr(e.msg, path));
    assert_int_equal(gguf_get_u32(&g, "general.architecture", &v, &e), ET_EINPUT);
    int64_t k = gguf_find_key(&g, "tokenizer.ggml.tokens");
    assert_true(k >= 0);
    assert_int_equal(g.kv[k].type, GGUF_TYPE_ARRAY);
    assert_int_equal(g.kv[k].arr_type, GGUF_TYPE_STRING);
    assert_int_equal(g.kv[k].n, 512);
    const gguf_tensor *t = gguf_find_tensor(&g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->type, GGML_TYPE_F32);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    assert_int_equal(t->nbytes, 64 * 512 * 4);
    /* the tensor equals the llama2.c .bin's token_embedding (README: byte-identical):
     * it starts right after the 7-int32 header */
    const char *bin = shared_path("models/stories260K/stories260K.bin");
    if (bin) {
        size_t nb;
        uint8_t *b = read_all(bin, &nb);
        assert_non_null(b);
        assert_true(nb >= 28 + t->nbytes);
        assert_memory_equal(b + 28, t->data, t->nbytes);
        free(b);
    }
    gguf_close(&g);
}

/* ------------------------------------------------- hand-built files */

typedef struct buf { uint8_t *p; size_t n, cap; } buf;

static void put(buf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) { uint8_t x[4]; for (int i = 0; i < 4; i++) x[i] = (uint8_t)(v >> 8 * i); put(b, x, 4); }
static void put_u64(buf *b, uint64_t v) { uint8_t x[8]; for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> 8 * i); put(b, x, 8); }
static void put_str(buf *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }

/* What to break in the small file. */
typedef struct spec {
    const char *magic;
    uint32_t version;
    uint64_t str_len;     /* if nonzero: length written for the general.name value */
    uint64_t arr_count;   /* if nonzero: count written for the INT32 array */
    uint32_t n_dims1;     /* n_dims of tensor 1 (default 1) */
    uint32_t type1;       /* ggml type of tensor 1 (default Q8_0) */
    uint64_t offset1;     /* offset of tensor 1 (default 32) */
    uint64_t ne1;         /* ne[0] of tensor 1 (default 64) */
    const char *name1;    /* name of tensor 1 (default "t1") */
    uint32_t u32_type;    /* value type written for x.u32 (default UINT32) */
    uint32_t arr_type;    /* element type written for x.arr (default INT32) */
    int alignment;        /* if nonzero: general.alignment (UINT32) */
    int dup_key;
    uint64_t n_kv_override;
} spec;

/* GGUF v3: 3 or 4 KVs, tensors "t0" F32 [4,2] at 0 and "t1" [ne1] at offset1.
 * *data_end receives the end of t1's data. */
static buf build(spec s, size_t *data_end) {
    buf b = {0};
    uint32_t n_dims1 = s.n_dims1 ? s.n_dims1 : 1;
    uint32_t type1 = s.type1 ? s.type1 : GGML_TYPE_Q8_0;
    uint64_t off1 = s.offset1 ? s.offset1 : 32;
    uint64_t ne1 = s.ne1 ? s.ne1 : 64;
    put(&b, s.magic ? s.magic : "GGUF", 4);
    put_u32(&b, s.version ? s.version : 3);
    put_u64(&b, 2);
    put_u64(&b, s.n_kv_override ? s.n_kv_override : (uint64_t)(3 + (s.alignment != 0) + (s.dup_key != 0)));
    put_str(&b, "general.name");
    put_u32(&b, GGUF_TYPE_STRING);
    if (s.str_len) { put_u64(&b, s.str_len); put(&b, "tiny", 4); }
    else put_str(&b, "tiny");
    put_str(&b, "x.u32");
    put_u32(&b, s.u32_type ? s.u32_type : GGUF_TYPE_UINT32);
    put_u32(&b, 7);
    put_str(&b, "x.arr");
    put_u32(&b, GGUF_TYPE_ARRAY);
    put_u32(&b, s.arr_type ? s.arr_type : GGUF_TYPE_INT32);
    put_u64(&b, s.arr_count ? s.arr_count : 3);
    put_u32(&b, 1); put_u32(&b, (uint32_t)-2); put_u32(&b, 3);
    if (s.alignment) {
        put_str(&b, "general.alignment");
        put_u32(&b, GGUF_TYPE_UINT32);
        put_u32(&b, (uint32_t)s.alignment);
    }
    if (s.dup_key) {
        put_str(&b, "x.u32");
        put_u32(&b, GGUF_TYPE_UINT32);
        put_u32(&b, 8);
    }
    put_str(&b, "t0");
    put_u32(&b, 2); put_u64(&b, 4); put_u64(&b, 2);
    put_u32(&b, GGML_TYPE_F32);
    put_u64(&b, 0);
    put_str(&b, s.name1 ? s.name1 : "t1");
    put_u32(&b, n_dims1);
    for (uint32_t d = 0; d < n_dims1 && d < 8; d++) put_u64(&b, d == 0 ? ne1 : 1);
    put_u32(&b, type1);
    put_u64(&b, off1);
    uint64_t align = s.alignment > 0 ? (uint64_t)s.alignment : 32;
    if (align > 4096) align = 32;
    while (b.n % align) put(&b, "", 1);
    size_t data = b.n;
    for (int i = 0; i < 8; i++) { float f = (float)i * 0.5f; put(&b, &f, 4); }
    while (off1 <= 256 && b.n < data + off1) put(&b, "", 1); /* a larger offset points past the end */
    uint8_t q[68] = {0};
    for (int i = 0; i < 68; i++) q[i] = (uint8_t)(i * 7);
    put(&b, q, 68); /* ne1 = 64 Q8_0 elements: 2 blocks of 34 bytes */
    *data_end = b.n;
    while (b.n % align) put(&b, "", 1);
    return b;
}

/* Open an exactly-sized copy (so ASan sees any over-read); 0 or ET_* */
static int open_copy(const uint8_t *p, size_t n, et_err *e) {
    uint8_t *c = malloc(n ? n : 1);
    assert_non_null(c);
    if (n) memcpy(c, p, n);
    gguf_file g;
    int rc = gguf_open_mem(&g, c, n, "hostile.gguf", e);
    if (rc == 0) {
        /* touch everything */
        unsigned sum = 0;
        for (uint64_t i = 0; i < g.n_tensors; i++)
            for (uint64_t j = 0; j < g.tensors[i].nbytes; j++) sum += ((const uint8_t *)g.tensors[i].data)[j];
        for (uint64_t i = 0; i < g.n_kv; i++)
            if (g.kv[i].strs)
                for (uint64_t j = 0; j < g.kv[i].n; j++)
                    for (uint64_t m = 0; m < g.kv[i].strs[j].len; m++) sum += (unsigned char)g.kv[i].strs[j].ptr[m];
        (void)sum;
        gguf_close(&g);
    }
    free(c);
    return rc;
}

static void expect_refused(spec s, const char *needle) {
    size_t end;
    buf b = build(s, &end);
    et_err e = {0};
    int rc = open_copy(b.p, b.n, &e);
    if (rc != ET_EINPUT) fail_msg("expected refusal containing '%s', got rc %d", needle, rc);
    if (!strstr(e.msg, "hostile.gguf")) fail_msg("message does not name the file: %s", e.msg);
    if (!strstr(e.msg, needle)) fail_msg("message lacks '%s': %s", needle, e.msg);
    free(b.p);
}

static void test_small_valid(void **state) {
    (void)state;
    size_t end;
    buf b = build((spec){0}, &end);
    gguf_file g;
    et_err e = {0};
    if (gguf_open_mem(&g, b.p, b.n, "small.gguf", &e)) fail_msg("%s", e.msg);
    assert_int_equal(g.n_kv, 3);
    assert_int_equal(g.n_tensors, 2);
    int64_t v;
    assert_int_equal(gguf_arr_i64(&g.kv[2], 1, &v), 0);
    assert_int_equal(v, -2);
    assert_int_equal(gguf_arr_i64(&g.kv[2], 3, &v), ET_EINPUT);
    assert_int_equal(g.tensors[1].nbytes, 68);
    assert_int_equal(g.data_offset + 32 + 68, end);
    float f;
    memcpy(&f, (const uint8_t *)g.tensors[0].data + 4 * 5, 4);
    assert_true(f == 2.5f);
    gguf_close(&g);
    free(b.p);
}

/* GGUF v2 has the same layout as v3 (u64 counts): accepted. */
static void test_version2(void **state) {
    (void)state;
    size_t end;
    buf b = build((spec){.version = 2}, &end);
    gguf_file g;
    et_err e = {0};
    if (gguf_open_mem(&g, b.p, b.n, "v2.gguf", &e)) fail_msg("%s", e.msg);
    assert_int_equal(g.version, 2);
    assert_int_equal(g.n_tensors, 2);
    gguf_close(&g);
    free(b.p);
}

static void test_hostile(void **state) {
    (void)state;
    expect_refused((spec){.magic = "GGML"}, "bad magic");
    expect_refused((spec){.version = 1}, "version 1");
    expect_refused((spec){.version = 0x03000000u}, "unsupported GGUF version");
    expect_refused((spec){.str_len = 1ull << 40}, "string length");
    expect_refused((spec){.str_len = 1000}, "truncated");
    expect_refused((spec){.arr_count = 1ull << 61}, "does not fit");
    expect_refused((spec){.arr_count = 100000}, "does not fit");
    expect_refused((spec){.n_dims1 = 5}, "n_dims = 5");
    expect_refused((spec){.type1 = 4}, "unknown ggml type 4"); /* removed Q4_2 */
    expect_refused((spec){.type1 = 31}, "unknown ggml type 31");
    expect_refused((spec){.type1 = 1000}, "unknown ggml type");
    expect_refused((spec){.offset1 = 4096}, "past end of file");
    expect_refused((spec){.offset1 = 1ull << 63}, "past end of file");
    expect_refused((spec){.offset1 = 33}, "not a multiple of the alignment");
    expect_refused((spec){.ne1 = 48}, "not a multiple of the Q8_0 block size");
    expect_refused((spec){.n_kv_override = 1ull << 60}, "n_kv");
    expect_refused((spec){.alignment = 48}, "not a power of two");
    expect_refused((spec){.dup_key = 1}, "duplicate key 'x.u32'");
    expect_refused((spec){.name1 = "t0"}, "duplicate tensor name 't0'");
    expect_refused((spec){.name1 = "a_name_of_sixty_four_bytes_is_one_too_long_for_ggml_max_name_xxx"}, "must be < 64");
    expect_refused((spec){.u32_type = 13}, "unknown value type 13");
    expect_refused((spec){.arr_type = GGUF_TYPE_ARRAY}, "nested");
    expect_refused((spec){.arr_type = 99}, "unknown array element type 99");
    /* overlap: t0 is 32 bytes at 0, so t1 at 0 overlaps it (alignment 16 keeps offsets aligned) */
    expect_refused((spec){.alignment = 16, .offset1 = 16}, "overlap");
}

/* Every cut point of the small file: refused before the end of the last
 * tensor's data, accepted inside the trailing padding. */
static void test_truncation_small(void **state) {
    (void)state;
    size_t end;
    buf b = build((spec){0}, &end);
    for (size_t cut = 0; cut <= b.n; cut++) {
        et_err e = {0};
        int rc = open_copy(b.p, cut, &e);
        if (cut < end) {
            if (rc != ET_EINPUT) fail_msg("cut %zu of %zu accepted", cut, b.n);
            if (!strstr(e.msg, "hostile.gguf: ")) fail_msg("cut %zu: message does not name the file: %s", cut, e.msg);
        } else if (rc != 0) {
            fail_msg("cut %zu (padding) refused: %s", cut, e.msg);
        }
    }
    free(b.p);
}

/* Cuts of a real file: all of the first 16 KiB (header, KVs, infos), then
 * a spread through the data; every cut before the end is refused. */
static void test_truncation_real(void **state) {
    (void)state;
    SHARED_OR_SKIP(path, "models/stories260K/stories260K.gguf");
    size_t n;
    uint8_t *p = read_all(path, &n);
    assert_non_null(p);
    size_t step = getenv("ET_SANITIZED") ? 7 : 1;
    for (size_t cut = 0; cut < n; cut += (cut < 16384 ? step : 9973)) {
        et_err e = {0};
        int rc = open_copy(p, cut, &e);
        if (rc != ET_EINPUT) fail_msg("cut %zu of %zu accepted (rc %d)", cut, n, rc);
        if (!strstr(e.msg, "hostile.gguf: ")) fail_msg("cut %zu: %s", cut, e.msg);
    }
    et_err e = {0};
    assert_int_equal(open_copy(p, n, &e), 0);
    free(p);
}

static void test_open_missing_file(void **state) {
    (void)state;
    gguf_file g;
    et_err e = {0};
    assert_int_equal(gguf_open(&g, "/nonexistent/x.gguf", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "/nonexistent/x.gguf"));
}

/* --------------------------------------------------- writer from scratch */

static void test_writer_scratch(void **state) {
    (void)state;
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(gguf_set_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(gguf_set_u8(w, "k.u8", 200), 0);
    assert_int_equal(gguf_set_i8(w, "k.i8", -100), 0);
    assert_int_equal(gguf_set_u16(w, "k.u16", 60000), 0);
    assert_int_equal(gguf_set_i16(w, "k.i16", -30000), 0);
    assert_int_equal(gguf_set_u32(w, "k.u32", 1), 0);
    assert_int_equal(gguf_set_i32(w, "k.i32", -123456), 0);
    assert_int_equal(gguf_set_u64(w, "k.u64", 1ull << 40), 0);
    assert_int_equal(gguf_set_i64(w, "k.i64", INT64_MIN), 0);
    assert_int_equal(gguf_set_f32(w, "k.f32", 1e-5f), 0);
    assert_int_equal(gguf_set_f64(w, "k.f64", 0.1), 0);
    assert_int_equal(gguf_set_bool(w, "k.bool", 5), 0);
    assert_int_equal(gguf_set_strn(w, "k.bin", "a\0b", 3), 0);
    int32_t heads[3] = {8, 4, 2};
    assert_int_equal(gguf_set_arr(w, "k.arr", GGUF_TYPE_INT32, heads, 3), 0);
    const char *toks[3] = {"<s>", "", "héllo"};
    assert_int_equal(gguf_set_arr_str(w, "k.toks", toks, NULL, 3), 0);
    assert_int_equal(gguf_set_arr(w, "k.empty", GGUF_TYPE_FLOAT32, NULL, 0), 0);
    assert_int_equal(gguf_set_u32(w, "k.u32", 42), 0);  /* replaced in place */
    assert_int_equal(gguf_set_u32(w, "k.gone", 1), 0);
    gguf_remove_key(w, "k.gone");
    assert_int_equal(gguf_set_arr(w, "k.bad", GGUF_TYPE_STRING, heads, 1), ET_EINPUT);

    float a[3 * 5];
    for (int i = 0; i < 15; i++) a[i] = (float)i - 7.25f;
    uint8_t q[2 * 34];
    for (int i = 0; i < 68; i++) q[i] = (uint8_t)(255 - i);
    uint16_t h[7];
    for (int i = 0; i < 7; i++) h[i] = et_fp32_to_fp16((float)i);
    et_err e = {0};
    int64_t ne_a[2] = {5, 3}, ne_q[2] = {32, 2}, ne_h[1] = {7}, ne_bad[1] = {20};
    assert_int_equal(gguf_add_tensor(w, "a.weight", GGML_TYPE_F32, 2, ne_a, a, &e), 0);
    assert_int_equal(gguf_add_tensor(w, "q.weight", GGML_TYPE_Q8_0, 2, ne_q, q, &e), 0);
    assert_int_equal(gguf_add_tensor(w, "h.weight", GGML_TYPE_F16, 1, ne_h, h, &e), 0);
    assert_int_equal(gguf_add_tensor(w, "a.weight", GGML_TYPE_F32, 2, ne_a, a, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "duplicate"));
    assert_int_equal(gguf_add_tensor(w, "bad", GGML_TYPE_Q8_0, 1, ne_bad, q, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "block size"));
    char long_name[80];
    memset(long_name, 'x', 64);
    long_name[64] = 0;
    assert_int_equal(gguf_add_tensor(w, long_name, GGML_TYPE_F32, 1, ne_h, a, &e), ET_EINPUT);

    char out[512];
    snprintf(out, sizeof out, "%s/scratch.gguf", test_tmpdir());
    if (gguf_writer_write(w, out, &e)) fail_msg("%s", e.msg);
    gguf_writer_free(w);

    gguf_file g;
    if (gguf_open(&g, out, &e)) fail_msg("%s", e.msg);
    assert_int_equal(g.version, 3);
    static const char *order[] = {"general.architecture", "k.u8", "k.i8", "k.u16", "k.i16", "k.u32", "k.i32",
                                  "k.u64", "k.i64", "k.f32", "k.f64", "k.bool", "k.bin", "k.arr", "k.toks", "k.empty"};
    static const uint32_t types[] = {GGUF_TYPE_STRING, GGUF_TYPE_UINT8, GGUF_TYPE_INT8, GGUF_TYPE_UINT16,
                                     GGUF_TYPE_INT16, GGUF_TYPE_UINT32, GGUF_TYPE_INT32, GGUF_TYPE_UINT64,
                                     GGUF_TYPE_INT64, GGUF_TYPE_FLOAT32, GGUF_TYPE_FLOAT64, GGUF_TYPE_BOOL,
                                     GGUF_TYPE_STRING, GGUF_TYPE_ARRAY, GGUF_TYPE_ARRAY, GGUF_TYPE_ARRAY};
    assert_int_equal(g.n_kv, 16);
    for (int i = 0; i < 16; i++) {
        assert_true(gguf_str_eq(g.kv[i].key, order[i]));
        assert_int_equal(g.kv[i].type, types[i]);
    }
    int64_t v;
    uint32_t u;
    assert_int_equal(gguf_get_u32(&g, "k.u8", &u, &e), 0); assert_int_equal(u, 200);
    assert_int_equal(gguf_get_i64(&g, "k.i8", &v, &e), 0); assert_int_equal(v, -100);
    assert_int_equal(gguf_get_u32(&g, "k.u16", &u, &e), 0); assert_int_equal(u, 60000);
    assert_int_equal(gguf_get_i64(&g, "k.i16", &v, &e), 0); assert_int_equal(v, -30000);
    assert_int_equal(gguf_get_u32(&g, "k.u32", &u, &e), 0); assert_int_equal(u, 42);
    assert_int_equal(gguf_get_i64(&g, "k.i32", &v, &e), 0); assert_int_equal(v, -123456);
    assert_int_equal(gguf_get_u32(&g, "k.i32", &u, &e), ET_EINPUT);   /* negative */
    assert_int_equal(gguf_get_u32(&g, "k.u64", &u, &e), ET_EINPUT);   /* too large */
    assert_int_equal(gguf_get_i64(&g, "k.u64", &v, &e), 0); assert_true(v == (int64_t)1 << 40);
    assert_int_equal(gguf_get_i64(&g, "k.i64", &v, &e), 0); assert_true(v == INT64_MIN);
    float f;
    assert_int_equal(gguf_get_f32(&g, "k.f32", &f, &e), 0); assert_true(f == 1e-5f);
    double d;
    assert_int_equal(gguf_arr_f64(&g.kv[10], 0, &d), 0); assert_true(d == 0.1);
    int bo;
    assert_int_equal(gguf_get_bool(&g, "k.bool", &bo, &e), 0); assert_int_equal(bo, 1);
    assert_int_equal(g.kv[12].strs[0].len, 3);
    assert_memory_equal(g.kv[12].strs[0].ptr, "a\0b", 3);
    assert_int_equal(g.kv[13].arr_type, GGUF_TYPE_INT32);
    assert_int_equal(g.kv[13].n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(gguf_arr_i64(&g.kv[13], (uint64_t)i, &v), 0);
        assert_int_equal(v, heads[i]);
    }
    assert_int_equal(g.kv[14].arr_type, GGUF_TYPE_STRING);
    for (int i = 0; i < 3; i++) assert_true(gguf_str_eq(g.kv[14].strs[i], toks[i]));
    assert_int_equal(g.kv[15].n, 0);

    assert_int_equal(g.n_tensors, 3);
    assert_int_equal(g.data_offset % 32, 0);
    const gguf_tensor *t = gguf_find_tensor(&g, "a.weight");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 5);
    assert_int_equal(t->ne[1], 3);
    assert_int_equal(t->offset, 0);
    assert_memory_equal(t->data, a, sizeof a);
    t = gguf_find_tensor(&g, "q.weight");
    assert_int_equal(t->offset, 64);  /* 60 bytes padded to 64 */
    assert_int_equal(t->nbytes, 68);
    assert_memory_equal(t->data, q, sizeof q);
    t = gguf_find_tensor(&g, "h.weight");
    assert_int_equal(t->offset, 64 + 96);
    assert_memory_equal(t->data, h, sizeof h);
    assert_int_equal(g.map.size, g.data_offset + 64 + 96 + 32); /* last tensor padded too */
    gguf_close(&g);
    unlink(out);
}

static void test_type_table(void **state) {
    (void)state;
    static const struct { uint32_t t; uint64_t be, bb; } want[] = {
        {GGML_TYPE_F32, 1, 4}, {GGML_TYPE_F16, 1, 2}, {GGML_TYPE_BF16, 1, 2}, {GGML_TYPE_Q4_0, 32, 18},
        {GGML_TYPE_Q4_1, 32, 20}, {GGML_TYPE_Q5_0, 32, 22}, {GGML_TYPE_Q5_1, 32, 24}, {GGML_TYPE_Q8_0, 32, 34},
        {GGML_TYPE_Q8_1, 32, 36}, {GGML_TYPE_Q2_K, 256, 84}, {GGML_TYPE_Q3_K, 256, 110}, {GGML_TYPE_Q4_K, 256, 144},
        {GGML_TYPE_Q5_K, 256, 176}, {GGML_TYPE_Q6_K, 256, 210}, {GGML_TYPE_Q8_K, 256, 292},
        {GGML_TYPE_I8, 1, 1}, {GGML_TYPE_I16, 1, 2}, {GGML_TYPE_I32, 1, 4}, {GGML_TYPE_I64, 1, 8}, {GGML_TYPE_F64, 1, 8},
        /* block_iq2_xxs: d + qs[QK_K/8] u16; block_iq4_nl: d + qs[16]; block_iq4_xs: d, scales_h, scales_l[4], qs[128] */
        {GGML_TYPE_IQ2_XXS, 256, 2 + 64}, {GGML_TYPE_IQ4_NL, 32, 18}, {GGML_TYPE_IQ4_XS, 256, 2 + 2 + 4 + 128}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        uint64_t be, bb;
        ggml_type_block(want[i].t, &be, &bb);
        assert_int_equal(be, want[i].be);
        assert_int_equal(bb, want[i].bb);
        assert_non_null(ggml_type_name(want[i].t));
    }
    assert_int_equal(ggml_row_bytes(GGML_TYPE_Q4_K, 512), 288);
    assert_int_equal(ggml_row_bytes(GGML_TYPE_Q4_K, 100), 0);
    assert_null(ggml_type_name(4)); /* removed Q4_2 */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_round_trip_shared),
        cmocka_unit_test(test_read_stories),
        cmocka_unit_test(test_small_valid),
        cmocka_unit_test(test_version2),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_truncation_small),
        cmocka_unit_test(test_truncation_real),
        cmocka_unit_test(test_open_missing_file),
        cmocka_unit_test(test_writer_scratch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
