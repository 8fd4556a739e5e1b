/* tests/test_common.c — half-float conversion against an independent
 * computation, SHA-256 against FIPS 180-4 vectors, atomic files. */
#include "testutil.h"

#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>

/* Independent fp16 -> fp32 -> fp16: exhaustively, every finite half maps
 * back to itself, and midpoints between consecutive halves round to even. */
static void test_fp16_roundtrip_and_ties(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        uint16_t x = (uint16_t)h;
        if ((x & 0x7c00) == 0x7c00) continue; /* inf/nan */
        float f = et_fp16_to_fp32(x);
        assert_int_equal(et_fp32_to_fp16(f), x);
        /* tie between x and x+1 (same sign, both finite) */
        uint16_t y = (uint16_t)(x + 1);
        if ((y & 0x7c00) == 0x7c00 || (y & 0x7fff) == 0) continue;
        double mid = ((double)et_fp16_to_fp32(x) + (double)et_fp16_to_fp32(y)) / 2;
        float fm = (float)mid; /* exact in fp32 */
        uint16_t want = (x & 1) ? y : x;
        assert_int_equal(et_fp32_to_fp16(fm), want);
    }
    assert_int_equal(et_fp32_to_fp16(65520.0f), 0x7c00);     /* rounds to inf */
    assert_int_equal(et_fp32_to_fp16(65519.0f), 0x7bff);
    assert_int_equal(et_fp32_to_fp16(1e-8f), 0);
    assert_int_equal(et_fp32_to_fp16(NAN) & 0x7e00, 0x7e00);
}

static void test_bf16(void **state) {
    (void)state;
    assert_int_equal(et_fp32_to_bf16(1.0f), 0x3f80);
    /* 1 + 2^-8 is a tie between 1 and 1+2^-7: to even (1.0) */
    assert_int_equal(et_fp32_to_bf16(1.00390625f), 0x3f80);
    assert_int_equal(et_fp32_to_bf16(1.01171875f), 0x3f82);
    assert_true(et_bf16_to_fp32(0x3f80) == 1.0f);
}

static void test_sha256(void **state) {
    (void)state;
    char hex[65];
    et_sha256 s;
    et_sha256_init(&s);
    et_sha256_update(&s, "abc", 3);
    et_sha256_final_hex(&s, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    et_sha256_init(&s);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    et_sha256_update(&s, m, strlen(m));
    et_sha256_final_hex(&s, hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_afile(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/out.txt", test_tmpdir());
    et_err e = {0};
    et_afile a;
    assert_int_equal(et_afile_open(&a, path, &e), 0);
    fputs("first", a.f);
    assert_int_equal(et_afile_commit(&a, &e), 0);
    /* an aborted write leaves the old file intact */
    assert_int_equal(et_afile_open(&a, path, &e), 0);
    fputs("second, never committed", a.f);
    et_afile_abort(&a);
    et_map m;
    assert_int_equal(et_map_open(&m, path, &e), 0);
    assert_int_equal(m.size, 5);
    assert_memory_equal(m.data, "first", 5);
    et_map_close(&m);
    assert_int_equal(et_map_open(&m, "/nonexistent/x.gguf", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "/nonexistent/x.gguf"));
}

/* A writer child for the FIFO tests: waits `delay_ms` before opening,
 * then holds the FIFO open `silent_ms` before writing `text`. */
static pid_t fifo_writer(const char *fifo, int delay_ms, int silent_ms, const char *text) {
    pid_t w = fork();
    assert_true(w >= 0);
    if (w == 0) {
        usleep((useconds_t)delay_ms * 1000);
        int fd = open(fifo, O_WRONLY);
        if (fd < 0) _exit(3);
        usleep((useconds_t)silent_ms * 1000);
        size_t n = strlen(text);
        if (write(fd, text, n) != (ssize_t)n) _exit(4);
        _exit(0);
    }
    return w;
}

/* Issue 11: the rule for FIFOs (common/et.h).  et_map_open waited forever
 * for a FIFO with no writer; now it fails after ET_FIFO_WAIT_S seconds with a
 * message saying so, and still reads a writer that comes late (within the
 * wait) or one that is attached but silent for longer than the wait.  HDF5
 * and sniffing readers never open a FIFO (et_need_regular, et_sniff). */
static void test_fifo_rule(void **state) {
    (void)state;
    char fifo[512];
    snprintf(fifo, sizeof fifo, "%s", test_tmp("rule.fifo"));
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    setenv("ET_FIFO_WAIT_S", "1", 1);
    assert_int_equal(et_fifo_wait_s(), 1);
    et_map m;
    et_err e = {0};
    /* no writer: a clear error after the wait (the test would hang before) */
    alarm(20);
    double t0 = et_now_s();
    assert_int_equal(et_map_open(&m, fifo, &e), ET_EINPUT);
    double dt = et_now_s() - t0;
    assert_true(dt >= 0.9 && dt < 10);
    assert_non_null(strstr(e.msg, "a FIFO with no writer"));
    assert_non_null(strstr(e.msg, fifo));
    /* a writer that comes within the wait */
    pid_t w = fifo_writer(fifo, 300, 0, "late but in time");
    assert_int_equal(et_map_open(&m, fifo, &e), 0);
    assert_int_equal(m.size, strlen("late but in time"));
    assert_memory_equal(m.data, "late but in time", m.size);
    et_map_close(&m);
    int st;
    assert_int_equal(waitpid(w, &st, 0), w);
    /* a writer attached at once but silent for longer than the wait */
    w = fifo_writer(fifo, 0, 1600, "slow producer");
    usleep(100 * 1000);
    assert_int_equal(et_map_open(&m, fifo, &e), 0);
    assert_int_equal(m.size, strlen("slow producer"));
    assert_memory_equal(m.data, "slow producer", m.size);
    et_map_close(&m);
    assert_int_equal(waitpid(w, &st, 0), w);
    /* readers that seek or sniff: refused / not sniffed by stat() alone, at once */
    t0 = et_now_s();
    assert_int_equal(et_need_regular(fifo, "HDF5 files are read by seeking", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "not a regular file"));
    char b[8];
    assert_int_equal(et_sniff(fifo, b, sizeof b), 0);
    assert_int_equal(et_sniff_hdf5(fifo), 0);
    assert_true(et_now_s() - t0 < 0.5);
    assert_int_equal(et_need_regular(test_tmp("missing.file"), "x", &e), ET_EINPUT);
    alarm(0);
    unsetenv("ET_FIFO_WAIT_S");
    assert_int_equal(et_fifo_wait_s(), 10);
    unlink(fifo);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_roundtrip_and_ties),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_afile),
        cmocka_unit_test(test_fifo_rule),
    };
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
