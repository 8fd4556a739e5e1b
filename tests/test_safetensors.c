/* tests/test_safetensors.c — the safetensors reader against hand-built
 * files (bytes written here, independently of the writer), the writer's
 * exact bytes, round trips, and hostile inputs refused with messages that
 * name the file and the tensor. */
#include "testutil.h"

#include <math.h>

#include "../export/safetensors.h"

/* Build "8-byte LE length + header + data" in a malloc'd buffer. */
static uint8_t *build(const char *header, const void *data, size_t ndata, size_t *size) {
    size_t h = strlen(header);
    uint8_t *b = malloc(8 + h + ndata + 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    if (ndata) memcpy(b + 8 + h, data, ndata);
    *size = 8 + h + ndata;
    return b;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void read_file(const char *path, uint8_t **p, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    *p = malloc(*n + 1);
    assert_int_equal(fread(*p, 1, *n, f), *n);
    fclose(f);
}

/* F16 and BF16 bit patterns with known values decode exactly. */
static void test_decode_f16_bf16(void **state) {
    (void)state;
    /* little-endian u16s */
    const uint16_t h[6] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3555, 0x8000};
    const float hv[6] = {1.0f, -2.0f, 65504.0f, 0x1p-24f, 0.333251953125f, -0.0f};
    const uint16_t bf[4] = {0x3F80, 0xC049, 0x4780, 0x0080};
    const float bv[4] = {1.0f, -3.140625f, 65536.0f, 0x1p-126f};
    const float f32[2] = {1.5f, -1e-30f};
    uint8_t data[12 + 8 + 8];
    memcpy(data, h, 12);
    memcpy(data + 12, bf, 8);
    memcpy(data + 20, f32, 8);
    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"h\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[12,20]},"
        "\"f\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[20,28]}}  ";
    size_t n;
    uint8_t *buf = build(hdr, data, sizeof data, &n);
    st_file f;
    et_err e = {0};
    assert_int_equal(st_open_mem(&f, buf, n, "mem.safetensors", &e), 0);
    assert_int_equal(f.n_tensors, 3);
    assert_string_equal(st_get_meta(&f, "format"), "pt");
    assert_null(st_get_meta(&f, "nope"));
    const st_tensor *t = st_find(&f, "h");
    assert_non_null(t);
    assert_int_equal(t->dtype, ST_F16);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    float out[6];
    assert_int_equal(st_tensor_to_f32(&f, t, out, &e), 0);
    for (int i = 0; i < 6; i++) assert_true(memcmp(&out[i], &hv[i], 4) == 0);
    t = st_find(&f, "b");
    assert_int_equal(st_tensor_to_f32(&f, t, out, &e), 0);
    for (int i = 0; i < 4; i++) assert_true(out[i] == bv[i]);
    t = st_find(&f, "f");
    assert_int_equal(st_tensor_to_f32(&f, t, out, &e), 0);
    assert_true(out[0] == 1.5f && out[1] == -1e-30f);
    assert_null(st_find(&f, "x"));
    st_close(&f);
    free(buf);
}

/* The writer's exact bytes for a small file, and a round trip through
 * the reader for each dtype. */
static void test_writer_bytes_and_roundtrip(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/w.safetensors", test_tmpdir());
    const float a[6] = {1.0f, -2.0f, 0.1f, 65504.0f, 1e-8f, 3.0f};
    const float b[2] = {1.00390625f, -3.14159265f};
    st_writer *w = st_writer_new();
    et_err e = {0};
    assert_int_equal(st_writer_add(w, "a.weight", ST_F32, 2, (int64_t[]){2, 3}, a, &e), 0);
    assert_int_equal(st_writer_add(w, "a.f16", ST_F16, 2, (int64_t[]){3, 2}, a, &e), 0);
    assert_int_equal(st_writer_add(w, "b", ST_BF16, 1, (int64_t[]){2}, b, &e), 0);
    assert_int_equal(st_writer_set_meta(w, "format", "pt"), 0);
    assert_int_equal(st_writer_set_meta(w, "q\"x", "v\n"), 0);
    /* refusals */
    assert_int_equal(st_writer_add(w, "b", ST_F32, 1, (int64_t[]){2}, b, &e), ET_EINPUT);
    assert_int_equal(st_writer_add(w, "c", ST_I32, 1, (int64_t[]){2}, b, &e), ET_EINPUT);
    assert_int_equal(st_writer_add(w, "__x", ST_F32, 1, (int64_t[]){2}, b, &e), ET_EINPUT);
    assert_int_equal(st_writer_write(w, path, &e), 0);
    st_writer_free(w);

    const char *want =
        "{\"__metadata__\":{\"format\":\"pt\",\"q\\\"x\":\"v\\u000a\"},"
        "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"a.f16\":{\"dtype\":\"F16\",\"shape\":[3,2],\"data_offsets\":[24,36]},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[36,40]}}";
    uint8_t *p;
    size_t n;
    read_file(path, &p, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | p[i];
    assert_int_equal(hl % 8, 0);
    assert_true(hl >= strlen(want) && hl < strlen(want) + 8);
    assert_memory_equal(p + 8, want, strlen(want));
    for (size_t i = strlen(want); i < hl; i++) assert_int_equal(p[8 + i], ' ');
    assert_int_equal(n, 8 + hl + 40);
    const uint8_t *d = p + 8 + hl;
    assert_memory_equal(d, a, 24);
    /* F16: 1.0 -> 0x3C00, -2 -> 0xC000, 0.1 -> 0x2E66, 65504 -> 0x7BFF, 1e-8 -> 0 (underflow), 3 -> 0x4200 */
    const uint16_t hw[6] = {0x3C00, 0xC000, 0x2E66, 0x7BFF, 0x0000, 0x4200};
    assert_memory_equal(d + 24, hw, 12);
    /* BF16: 1+2^-8 is a tie -> 1.0 (0x3F80); -pi -> 0xC049 */
    const uint16_t bw[2] = {0x3F80, 0xC049};
    assert_memory_equal(d + 36, bw, 4);
    free(p);

    st_file f;
    assert_int_equal(st_open(&f, path, &e), 0);
    assert_int_equal(f.n_tensors, 3);
    assert_string_equal(st_get_meta(&f, "q\"x"), "v\n");
    float out[6];
    assert_int_equal(st_tensor_to_f32(&f, st_find(&f, "a.f16"), out, &e), 0);
    for (int i = 0; i < 6; i++) assert_true(out[i] == et_fp16_to_fp32(hw[i]));
    assert_int_equal(st_tensor_to_f32(&f, st_find(&f, "a.weight"), out, &e), 0);
    assert_memory_equal(out, a, 24);
    st_close(&f);
}

/* Expect refusal with a message containing every needle. */
static void expect_bad(const char *hdr, const void *data, size_t nd, const char *n1, const char *n2) {
    size_t n;
    uint8_t *buf = build(hdr, data, nd, &n);
    st_file f;
    et_err e = {0};
    int rc = st_open_mem(&f, buf, n, "bad.safetensors", &e);
    if (rc != ET_EINPUT) fprintf(stderr, "accepted or wrong code %d: %s\n", rc, hdr);
    assert_int_equal(rc, ET_EINPUT);
    if (getenv("SHOWMSG")) fprintf(stderr, "%s\n", e.msg);
    if (!strstr(e.msg, "bad.safetensors") || (n1 && !strstr(e.msg, n1)) || (n2 && !strstr(e.msg, n2)))
        fprintf(stderr, "message lacks '%s'/'%s': %s\n", n1 ? n1 : "", n2 ? n2 : "", e.msg);
    assert_non_null(strstr(e.msg, "bad.safetensors"));
    if (n1) assert_non_null(strstr(e.msg, n1));
    if (n2) assert_non_null(strstr(e.msg, n2));
    free(buf);
}

static void test_hostile(void **state) {
    (void)state;
    uint8_t z[64] = {0};
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", z, 12, "'w'", "needs 16");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", z, 12, "'w'", "past the data block");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", z, 12, "'w'", "end before");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", z, 12, "overlaps", "'w'");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", z, 12, "'w'", "twice");
    expect_bad("{\"w\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", z, 4, "'w'", "unknown dtype");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", z, 4, "'w'", "shape[0]");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", z, 4, "'w'", "shape[0]");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}",
               z, 4, "'w'", "overflow");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", z, 4, "'w'", "data_offsets");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", z, 4, "'w'", "data_offsets");
    expect_bad("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", z, 4, "'w'", "dtype");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", z, 4, "'w'", "shape");
    expect_bad("{\"w\":[1,2]}", z, 4, "'w'", "not a JSON object");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", z, 4, "malformed JSON", "byte");
    expect_bad("[1,2]", z, 4, "not a JSON object", NULL);
    expect_bad("{}  x", z, 4, "after the JSON header", "byte 12");
    expect_bad("{\"__metadata__\":{\"a\":1}}", z, 0, "__metadata__", "'a'");
    expect_bad("{\"__metadata__\":[]}", z, 0, "__metadata__", NULL);

    /* header length past end of file; over the limit; file too short */
    uint8_t b[16] = {0xff, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    st_file f;
    et_err e = {0};
    assert_int_equal(st_open_mem(&f, b, 10, "bad.safetensors", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "past end of file"));
    b[0] = 0;
    b[3] = 0x10; /* 256 MiB */
    assert_int_equal(st_open_mem(&f, b, 10, "bad.safetensors", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "limit"));
    assert_int_equal(st_open_mem(&f, b, 5, "bad.safetensors", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "too short"));
    uint8_t all_ff[8];
    memset(all_ff, 0xff, 8);
    assert_int_equal(st_open_mem(&f, all_ff, 8, "bad.safetensors", &e), ET_EINPUT);

    /* a truncated real file (writer output cut short) */
    char path[512];
    snprintf(path, sizeof path, "%s/trunc.safetensors", test_tmpdir());
    const float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    st_writer *w = st_writer_new();
    assert_int_equal(st_writer_add(w, "model.norm.weight", ST_F32, 1, (int64_t[]){8}, x, &e), 0);
    assert_int_equal(st_writer_write(w, path, &e), 0);
    st_writer_free(w);
    uint8_t *p;
    size_t n;
    read_file(path, &p, &n);
    write_file(path, p, n - 1);
    assert_int_equal(st_open(&f, path, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, "model.norm.weight"));
    free(p);
    /* non-existent file */
    assert_int_equal(st_open(&f, "/nonexistent/x.safetensors", &e), ET_EINPUT);
    /* unsupported dtype for conversion */
    uint8_t *buf = build("{\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", z, 4, &n);
    assert_int_equal(st_open_mem(&f, buf, n, "i.safetensors", &e), 0);
    float o;
    assert_int_equal(st_tensor_to_f32(&f, &f.tensors[0], &o, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "'i'"));
    assert_non_null(strstr(e.msg, "I32"));
    st_close(&f);
    free(buf);
}

static void test_empty_and_zero_sized(void **state) {
    (void)state;
    size_t n;
    uint8_t *buf = build("{}      ", NULL, 0, &n);
    st_file f;
    et_err e = {0};
    assert_int_equal(st_open_mem(&f, buf, n, "e.safetensors", &e), 0);
    assert_int_equal(f.n_tensors, 0);
    st_close(&f);
    free(buf);
    buf = build("{\"a\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[0,0]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", "\0\0\x80?", 4, &n);
    assert_int_equal(st_open_mem(&f, buf, n, "z.safetensors", &e), 0);
    assert_int_equal(st_find(&f, "a")->n_elems, 0);
    assert_int_equal(st_find(&f, "b")->n_elems, 1);
    float o;
    assert_int_equal(st_tensor_to_f32(&f, st_find(&f, "b"), &o, &e), 0);
    assert_true(o == 1.0f);
    st_close(&f);
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_f16_bf16),
        cmocka_unit_test(test_writer_bytes_and_roundtrip),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_empty_and_zero_sized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
