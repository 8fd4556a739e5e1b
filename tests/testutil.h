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
#endif
