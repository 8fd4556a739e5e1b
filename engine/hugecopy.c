/* engine/hugecopy.c — copy a model file into anonymous memory backed by
 * 2 MiB transparent huge pages (x86-64 Linux only).
 *
 * Why: generation streams every weight once per token.  Read in place from
 * the file mapping (4 KiB page-cache pages; this kernel has no
 * CONFIG_READ_ONLY_THP_FOR_FS, so MADV_HUGEPAGE does nothing there), the
 * SmolLM2-135M-shape Q4_0 file generates ~167 tokens/s at 1 thread; from an
 * anonymous copy with 4 KiB pages ~179, from a MADV_HUGEPAGE copy ~200
 * (docs/speed.md, 2026-11-21: fewer dTLB misses and page walks).  The cost:
 * the weights become anonymous (unreclaimable) memory of the file's size in
 * place of reclaimable page cache, plus one read of the file at load.
 * So it is used only when the kernel allows huge pages for madvise()d memory,
 * the file is at least 2 MiB and at most 1/4 of the free physical memory,
 * and the environment does not set ET_ENGINE_MMAP=1 (then the file is read
 * in place as before). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "internal.h"

#define HUGE_PAGE ((size_t)2 << 20)

#if defined(__linux__) && defined(__x86_64__) && defined(MADV_HUGEPAGE)
/* 1 when /sys/kernel/mm/transparent_hugepage/enabled selects "always" or
 * "madvise" (the selected word is in brackets). */
static int thp_usable(void) {
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return 0;
    char buf[128] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, "[always]") || strstr(buf, "[madvise]");
}

void *et_engine_huge_copy(const char *path, size_t *size, size_t *alloc) {
    const char *env = getenv("ET_ENGINE_MMAP");
    if ((env && strcmp(env, "0")) || !thp_usable()) return NULL;
    /* stat before open: opening a FIFO here and closing it unread released its
     * writer, whose next write then failed (SIGPIPE) while the loader's own open
     * waited for a writer that had gone (common/et.h: a file is opened once) */
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return NULL;
    long avail = sysconf(_SC_AVPHYS_PAGES), pg = sysconf(_SC_PAGESIZE);
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size < (off_t)HUGE_PAGE || avail <= 0 || pg <= 0 ||
        (uint64_t)st.st_size > (uint64_t)avail / 4 * (uint64_t)pg || (uint64_t)st.st_size > SIZE_MAX / 2) {
        close(fd);
        return NULL;
    }
    size_t n = (size_t)st.st_size, body = (n + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    /* Over-allocate by one huge page, then trim to a 2 MiB-aligned body. */
    uint8_t *raw = mmap(NULL, body + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
        close(fd);
        return NULL;
    }
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    size_t head = (size_t)(p - raw);
    if (head) munmap(raw, head);
    if (HUGE_PAGE - head) munmap(p + body, HUGE_PAGE - head);
    madvise(p, body, MADV_HUGEPAGE); /* advice only: 4 KiB pages still work */
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, p + got, n - got, (off_t)got);
        if (r <= 0) {
            close(fd);
            munmap(p, body);
            return NULL;
        }
        got += (size_t)r;
    }
    close(fd);
    mprotect(p, body, PROT_READ); /* weights are read-only, as in the file mapping */
    *size = n;
    *alloc = body;
    return p;
}

void et_engine_huge_free(void *p, size_t alloc) {
    if (p) munmap(p, alloc);
}

void *et_engine_huge_alloc(size_t n, size_t *alloc) {
    if (!n || n > SIZE_MAX / 2) return NULL;
    size_t body = (n + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    uint8_t *raw = mmap(NULL, body + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    size_t head = (size_t)(p - raw);
    if (head) munmap(raw, head);
    if (HUGE_PAGE - head) munmap(p + body, HUGE_PAGE - head);
    const char *env = getenv("ET_ENGINE_MMAP");
    if (!(env && strcmp(env, "0")) && thp_usable()) madvise(p, body, MADV_HUGEPAGE);   /* advice only */
    *alloc = body;
    return p;
}
#else
void *et_engine_huge_copy(const char *path, size_t *size, size_t *alloc) {
    (void)path, (void)size, (void)alloc;
    return NULL;
}

void et_engine_huge_free(void *p, size_t alloc) { (void)p, (void)alloc; }

void *et_engine_huge_alloc(size_t n, size_t *alloc) {
    (void)n, (void)alloc;
    return NULL;
}
#endif
