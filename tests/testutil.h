/* tests/testutil.h — helpers shared by the cmocka tests.
 * Tests run from the project root; data comes from et_shared_dir()
 * ("../shared" unless $ET_SHARED is set). */
#ifndef ET_TESTUTIL_H
#define ET_TESTUTIL_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "../common/et.h"

/* Full path of a file under the shared folder, in a static buffer
 * (one of 8 rotating), or NULL when it does not exist. */
static inline const char *shared_path(const char *rel) {
    static char bufs[8][4096];
    static int k = 0;
    char *b = bufs[k++ & 7];
    snprintf(b, sizeof bufs[0], "%s/%s", et_shared_dir(), rel);
    return access(b, R_OK) == 0 ? b : NULL;
}

/* Resolve a shared file or skip the current test with a clear message. */
#define SHARED_OR_SKIP(var, rel)                                                        \
    const char *var = shared_path(rel);                                                 \
    if (!var) {                                                                         \
        fprintf(stderr, "SKIP: %s/%s not found (shared data absent)\n", et_shared_dir(), rel); \
        skip();                                                                         \
    }

/* A fresh temporary directory for this test process (created once). */
static inline const char *test_tmpdir(void) {
    static char dir[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/edgetune-test-XXXXXX");
        if (!mkdtemp(dir)) { perror("mkdtemp"); abort(); }
    }
    return dir;
}
/* Path of `name` in the test's temporary directory (one of 8 rotating buffers). */
static inline const char *test_tmp(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return b;
}

/* A whole file as a malloc'd NUL-terminated string, or NULL. */
static inline char *test_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? (char *)malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

/* 1 when the file at path can be read and contains needle, else 0. */
static inline int test_file_contains(const char *path, const char *needle) {
    char *b = test_slurp(path);
    int found = b && strstr(b, needle) != NULL;
    free(b);
    return found;
}

/* Write text to path (the test fails when it cannot). */
static inline void test_spit(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Exit code of a shell command run from the project root; its output goes
 * to cmd.log in the temporary directory (replaced by each command). */
static inline int test_run(const char *cmd) {
    char full[8192];
    snprintf(full, sizeof full, "%.4096s >%.1000s 2>&1", cmd, test_tmp("cmd.log"));
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* 1 when ./edgetune is built; else a SKIP line and 0. */
static inline int test_have_edgetune(void) {
    if (access("./edgetune", X_OK) == 0) return 1;
    fprintf(stderr, "SKIP: ./edgetune not built\n");
    return 0;
}
#endif
