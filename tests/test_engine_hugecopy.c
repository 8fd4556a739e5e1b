/* tests/test_engine_hugecopy.c — engine/hugecopy.c: the huge-page copy of a
 * model file holds exactly the file's bytes, 2 MiB-aligned; it is refused
 * for small files and when ET_ENGINE_MMAP=1 (then the engine maps the file). */
#include "testutil.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../engine/internal.h"

/* 1 when this machine would use the copy at all (x86-64 Linux, THP not "never"). */
static int thp_expected(void) {
#if defined(__linux__) && defined(__x86_64__)
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return 0;
    char buf[128] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, "[always]") || strstr(buf, "[madvise]");
#else
    return 0;
#endif
}

static const char *write_file(const char *name, size_t n, uint8_t **bytes) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    uint8_t *b = malloc(n);
    assert_non_null(b);
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)((s = s * 1664525u + 1013904223u) >> 24);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    *bytes = b;
    return path;
}

static void test_copy_matches_file(void **state) {
    (void)state;
    if (!thp_expected()) {
        fprintf(stderr, "SKIP: no transparent huge pages for madvise() here\n");
        skip();
    }
    unsetenv("ET_ENGINE_MMAP");
    const size_t n = ((size_t)5 << 20) + 12345; /* not a multiple of 2 MiB */
    uint8_t *want;
    const char *path = write_file("big.bin", n, &want);
    size_t size = 0, alloc = 0;
    uint8_t *p = et_engine_huge_copy(path, &size, &alloc);
    assert_non_null(p);
    assert_int_equal(size, n);
    assert_int_equal((uintptr_t)p % ((uintptr_t)2 << 20), 0);
    assert_true(alloc >= n && alloc % ((size_t)2 << 20) == 0);
    assert_memory_equal(p, want, n);
    et_engine_huge_free(p, alloc);

    setenv("ET_ENGINE_MMAP", "1", 1); /* opt-out */
    assert_null(et_engine_huge_copy(path, &size, &alloc));
    unsetenv("ET_ENGINE_MMAP");
    free(want);
    remove(path);
}

static void test_refused(void **state) {
    (void)state;
    uint8_t *want;
    const char *path = write_file("small.bin", 4096, &want);
    size_t size = 0, alloc = 0;
    assert_null(et_engine_huge_copy(path, &size, &alloc)); /* under 2 MiB */
    remove(path);
    free(want);
    char missing[512];
    snprintf(missing, sizeof missing, "%s/missing.gguf", test_tmpdir());
    assert_null(et_engine_huge_copy(missing, &size, &alloc));
    assert_null(et_engine_huge_copy("/proc/self/status", &size, &alloc)); /* not a 2 MiB regular file */
}

/* Issue 11: `edgetune run` on a FIFO hung in a second open() of the FIFO
 * (seen under the sanitizer build): the copy opened the FIFO, saw it was not a
 * regular file and closed it unread, which released the writer's open; the
 * writer's next write then had no reader (SIGPIPE) and the loader's own open
 * waited for a writer that had gone.  The copy must decide from stat() alone:
 * after it, the writer is still waiting and the loader reads every byte. */
static void test_fifo_not_opened(void **state) {
    (void)state;
    unsetenv("ET_ENGINE_MMAP");
    char fifo[512];
    snprintf(fifo, sizeof fifo, "%s/copy.fifo", test_tmpdir());
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    enum { N = 1 << 18 };   /* more than a pipe buffer */
    pid_t w = fork();
    assert_true(w >= 0);
    if (w == 0) {   /* the writer: blocks in open until a reader comes */
        static uint8_t buf[N];
        for (size_t i = 0; i < N; i++) buf[i] = (uint8_t)(i * 7 + 1);
        int fd = open(fifo, O_WRONLY);
        if (fd < 0) _exit(3);
        for (size_t o = 0; o < N;) {
            ssize_t r = write(fd, buf + o, N - o);
            if (r <= 0) _exit(4);
            o += (size_t)r;
        }
        _exit(0);
    }
    usleep(100 * 1000);   /* the writer is in open() */
    size_t size = 0, alloc = 0;
    assert_null(et_engine_huge_copy(fifo, &size, &alloc));
    usleep(200 * 1000);   /* a released writer would have written (and died of SIGPIPE) by now */
    int st = 0;
    assert_int_equal(waitpid(w, &st, WNOHANG), 0);   /* still waiting for a reader */
    int fd = open(fifo, O_RDONLY | O_NONBLOCK);
    assert_true(fd >= 0);
    size_t got = 0, bad = 0;
    uint8_t b[4096];
    double t0 = (double)time(NULL);
    while ((double)time(NULL) - t0 < 20) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0) continue;
        ssize_t r = read(fd, b, sizeof b);
        if (r == 0) break;
        if (r < 0) continue;
        for (ssize_t i = 0; i < r; i++) bad += b[i] != (uint8_t)((got + (size_t)i) * 7 + 1);
        got += (size_t)r;
    }
    close(fd);
    assert_int_equal(waitpid(w, &st, 0), w);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(got, N);
    assert_int_equal(bad, 0);
    unlink(fifo);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_matches_file),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_fifo_not_opened),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
