/* train/threads.c — run again with OMP_WAIT_POLICY=PASSIVE, GOMP_SPINCOUNT=3000. See threads.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "threads.h"

int et_omp_passive_reexec(void) {
    if (getenv("OMP_WAIT_POLICY")) return 0;
    FILE *f = fopen("/proc/self/cmdline", "rb");
    if (!f) return -1;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int truncated = !feof(f);
    fclose(f);
    if (n == 0 || truncated) return -1;
    buf[n] = 0;
    char *argv[1024];
    int argc = 0;
    for (size_t i = 0; i < n && argc < 1023; i += strlen(buf + i) + 1) argv[argc++] = buf + i;
    argv[argc] = NULL;
    const int own_spin = getenv("GOMP_SPINCOUNT") == NULL;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) || setenv("GOMP_SPINCOUNT", "3000", 0)) return -1;
    execv("/proc/self/exe", argv);
    unsetenv("OMP_WAIT_POLICY");
    if (own_spin) unsetenv("GOMP_SPINCOUNT");
    return -1;
}
