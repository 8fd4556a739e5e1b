/* common/et.c — see et.h. */
#define _POSIX_C_SOURCE 200809L
#include <time.h>
#include "et.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int et_fail(et_err *e, int code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

int et_auto_threads(void) {
    const char *s = getenv("OMP_NUM_THREADS");
    long n = 0;
    if (s && *s) {
        char *end;
        n = strtol(s, &end, 10);   /* "4" or the first of a list "4,2" */
        if (end == s || (*end && *end != ',')) n = 0;
    }
    if (n < 1) n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

const char *et_shared_dir(void) {
    const char *s = getenv("ET_SHARED");
    return (s && *s) ? s : "../shared";
}

/* ------------------------------------------------------------------ mapping */

int et_is_h5_name(const char *path) {
    size_t n = strlen(path);
    return (n >= 3 && !strcmp(path + n - 3, ".h5")) || (n >= 5 && !strcmp(path + n - 5, ".hdf5"));
}

int et_is_regular_path(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode));
}

int et_fifo_wait_s(void) {
    const char *s = getenv("ET_FIFO_WAIT_S");
    if (s && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (!*end && v >= 0 && v <= 86400) return (int)v;
    }
    return 10;
}

int et_need_regular(const char *path, const char *why, et_err *e) {
    struct stat st;
    if (stat(path, &st) != 0) return et_fail(e, ET_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return et_fail(e, ET_EINPUT, "%s: is a directory, expected a file", path);
    if (!S_ISREG(st.st_mode))
        return et_fail(e, ET_EINPUT, "%s: not a regular file (a FIFO or a device): %s; copy it to a file first", path,
                       why);
    return 0;
}

/* Open path for reading under et.h's rule: 0 with *fd open in blocking mode,
 * *regular = 1 for a regular file; for a FIFO, *first holds a byte already
 * read while waiting (*nfirst = 0 or 1). */
static int open_read(const char *path, int *fd_out, int *regular, uint8_t *first, int *nfirst, et_err *e) {
    *fd_out = -1;
    *regular = 0;
    *nfirst = 0;
    /* O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return et_fail(e, ET_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return et_fail(e, ET_EINPUT, "%s: cannot stat: %s", path, strerror(err));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return et_fail(e, ET_EINPUT, "%s: is a directory, expected a file", path);
    }
    if (S_ISFIFO(st.st_mode)) {
        /* Linux reports neither POLLIN nor POLLHUP to a reader that opened before
         * any writer, so this waits for the first data or a writer that closes */
        int wait_s = et_fifo_wait_s();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        double until = et_now_s() + wait_s;
        int r;
        for (;;) {
            double left = (until - et_now_s()) * 1000.0;
            r = poll(&p, 1, left > 0 ? (int)left : 0);
            if (r >= 0 || errno != EINTR) break;
        }
        if (r == 0) {
            /* nothing arrived: an attached but silent writer is waited for
             * (read says EAGAIN); no writer at all reads as end of file */
            ssize_t got;
            do got = read(fd, first, 1); while (got < 0 && errno == EINTR);
            if (got == 1) *nfirst = 1;
            else if (!(got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) {
                close(fd);
                return et_fail(e, ET_EINPUT,
                               "%s: a FIFO with no writer: nothing arrived in %d s (start the writer first, or give "
                               "a regular file; ET_FIFO_WAIT_S sets the wait)", path, wait_s);
            }
        }
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        int err = errno;
        close(fd);
        return et_fail(e, ET_EINPUT, "%s: cannot clear O_NONBLOCK: %s", path, strerror(err));
    }
    *fd_out = fd;
    *regular = S_ISREG(st.st_mode) != 0;
    return 0;
}

size_t et_sniff(const char *path, void *buf, size_t n) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);   /* a FIFO swapped in after stat: no wait */
    if (fd < 0) return 0;
    size_t got = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        while (got < n) {
            ssize_t r = read(fd, (uint8_t *)buf + got, n - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
    }
    close(fd);
    return got;
}

int et_sniff_hdf5(const char *path) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char b[8];
    return et_sniff(path, b, 8) == 8 && !memcmp(b, sig, 8);
}

int et_map_open(et_map *m, const char *path, et_err *e) {
    memset(m, 0, sizeof *m);
    int fd, regular, nfirst;
    uint8_t first;
    int rc = open_read(path, &fd, &regular, &first, &nfirst, e);
    if (rc) return rc;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return et_fail(e, ET_EINPUT, "%s: cannot stat: %s", path, strerror(err));
    }
    if (regular) {
        m->size = (size_t)st.st_size;
        if (m->size > 0) {
            void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                int err = errno;
                close(fd);
                return et_fail(e, ET_EINPUT, "%s: cannot mmap %zu bytes: %s", path, m->size, strerror(err));
            }
            m->data = p;
            m->is_mmap = 1;
        }
        close(fd);
        return 0;
    }
    /* pipe or character device: read it all */
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) { close(fd); return et_fail(e, ET_ERUN, "%s: out of memory", path); }
    if (nfirst) buf[n++] = first;
    for (;;) {
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); close(fd); return et_fail(e, ET_ERUN, "%s: out of memory", path); }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            int err = errno;
            free(buf);
            close(fd);
            return et_fail(e, ET_EINPUT, "%s: read error: %s", path, strerror(err));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    m->data = buf;
    m->size = n;
    return 0;
}

void et_map_close(et_map *m) {
    if (!m) return;
    if (m->data) {
        if (m->is_mmap) munmap((void *)m->data, m->size);
        else free((void *)m->data);
    }
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------ atomic files */

int et_afile_open(et_afile *a, const char *path, et_err *e) {
    memset(a, 0, sizeof *a);
    size_t n = strlen(path) + 48;
    a->path = strdup(path);
    a->tmp = malloc(n);
    if (!a->path || !a->tmp) {
        free(a->path);
        free(a->tmp);
        memset(a, 0, sizeof *a);
        return et_fail(e, ET_ERUN, "%s: out of memory", path);
    }
    snprintf(a->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    a->f = fopen(a->tmp, "wb");
    if (!a->f) {
        int err = errno;
        et_fail(e, ET_ERUN, "%s: cannot create temporary file %s: %s", path, a->tmp, strerror(err));
        free(a->path);
        free(a->tmp);
        memset(a, 0, sizeof *a);
        return ET_ERUN;
    }
    return 0;
}

int et_write_text(const char *path, const char *text, et_err *e) {
    et_afile af;
    int rc = et_afile_open(&af, path, e);
    if (rc) return rc;
    size_t n = strlen(text);
    if (fwrite(text, 1, n, af.f) != n) {
        et_afile_abort(&af);
        return et_fail(e, ET_ERUN, "%s: write failed", path);
    }
    return et_afile_commit(&af, e);
}

int et_commit_tmp(const char *tmp, const char *path, et_err *e) {
    int fd = open(tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        int err = errno;
        if (fd >= 0) close(fd);
        unlink(tmp);
        return et_fail(e, ET_ERUN, "%s: cannot sync %s: %s", path, tmp, strerror(err));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return et_fail(e, ET_ERUN, "%s: cannot rename %s into place: %s", path, tmp, strerror(err));
    }
    return 0;
}

int et_afile_commit(et_afile *a, et_err *e) {
    if (!a->f) return et_fail(e, ET_ERUN, "%s: file was not open", a->path ? a->path : "(null)");
    int rc = 0;
    if (fflush(a->f) != 0 || ferror(a->f)) {
        rc = et_fail(e, ET_ERUN, "%s: write error: %s", a->path, strerror(errno));
    } else if (fsync(fileno(a->f)) != 0) {
        rc = et_fail(e, ET_ERUN, "%s: fsync failed: %s", a->path, strerror(errno));
    }
    if (fclose(a->f) != 0 && rc == 0) rc = et_fail(e, ET_ERUN, "%s: close failed: %s", a->path, strerror(errno));
    a->f = NULL;
    if (rc == 0 && rename(a->tmp, a->path) != 0)
        rc = et_fail(e, ET_ERUN, "%s: cannot rename %s into place: %s", a->path, a->tmp, strerror(errno));
    if (rc != 0) unlink(a->tmp);
    free(a->path);
    free(a->tmp);
    memset(a, 0, sizeof *a);
    return rc;
}

void et_afile_abort(et_afile *a) {
    if (!a) return;
    if (a->f) fclose(a->f);
    if (a->tmp) unlink(a->tmp);
    free(a->path);
    free(a->tmp);
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------- half floats */

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

uint16_t et_fp32_to_fp16(float f) {
    uint32_t x = f2u(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00;          /* NaN (as ggml) */
    if (ax >= 0x477ff000u) return sign | 0x7c00;         /* rounds to >= 65536: inf */
    if (ax < 0x38800000u) {                              /* result is subnormal or zero */
        if (ax < 0x33000000u) return sign;               /* < 2^-25: rounds to zero */
        uint32_t e = ax >> 23;                           /* 102..112 */
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;                        /* 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return sign | (uint16_t)q;
    }
    /* normal: rebias exponent, round mantissa 23 -> 10 bits, carries propagate */
    uint32_t r = ax - 0x38000000u;                       /* exponent - 112 */
    uint32_t q = r >> 13;
    uint32_t rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1))) q++;
    return sign | (uint16_t)q;
}

float et_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) {
        if (m == 0) return u2f(sign);
        float v = (float)m * 0x1p-24f;                   /* subnormal: exact */
        return sign ? -v : v;
    }
    if (e == 31) return u2f(sign | 0x7f800000u | (m << 13));
    return u2f(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t et_fp32_to_bf16(float f) {
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

float et_bf16_to_fp32(uint16_t h) { return u2f((uint32_t)h << 16); }

/* ----------------------------------------------------------------- SHA-256 */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha_block(et_sha256 *s, const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d;
    s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}

void et_sha256_init(et_sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->len = 0;
    s->nbuf = 0;
}

void et_sha256_update(et_sha256 *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->len += n;
    while (n > 0) {
        size_t k = 64 - s->nbuf;
        if (k > n) k = n;
        memcpy(s->buf + s->nbuf, p, k);
        s->nbuf += k;
        p += k;
        n -= k;
        if (s->nbuf == 64) { sha_block(s, s->buf); s->nbuf = 0; }
    }
}

void et_sha256_final_hex(et_sha256 *s, char hex[65]) {
    uint64_t bits = s->len * 8;
    uint8_t pad = 0x80, zero = 0;
    uint64_t len_before = s->len;
    et_sha256_update(s, &pad, 1);
    while (s->nbuf != 56) et_sha256_update(s, &zero, 1);
    uint8_t lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (uint8_t)(bits >> (56 - 8 * i));
    et_sha256_update(s, lb, 8);
    s->len = len_before;
    for (int i = 0; i < 8; i++) snprintf(hex + 8 * i, 9, "%08x", s->h[i]);
}

/* ---- xoshiro256** / splitmix64 (prng.di.unimi.it reference algorithms) ---- */
uint64_t et_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t et_xoshiro256ss(uint64_t s[4]) {
    uint64_t out = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return out;
}

double et_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
