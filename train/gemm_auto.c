/* train/gemm_auto.c — `--precision auto` by measurement (see gemm_auto.h). */
#include "gemm_auto.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "gemm.h"

#define CACHE_FILE "gemm_auto.json"
#define CACHE_SCHEMA "edgetune.gemm_auto/1"
#define CACHE_MAX_BYTES (1 << 20)
#define CACHE_MAX_ENTRIES 256
#define ROUNDS 5

const char *et_gemm_auto_cache_dir(void) {
    static char dir[1024];
    const char *s = getenv("ET_CACHE_DIR");
    if (s && *s) return s;
    s = getenv("XDG_CACHE_HOME");
    if (s && *s) {
        snprintf(dir, sizeof dir, "%s/edgetune", s);
        return dir;
    }
    s = getenv("HOME");
    if (s && *s) {
        snprintf(dir, sizeof dir, "%s/.cache/edgetune", s);
        return dir;
    }
    return NULL;
}

typedef struct cpu_id {
    char name[128];         /* "model name" (x86) or "CPU part" (arm64) of the first CPU */
    char vendor[32];        /* vendor_id (x86) */
    int family, model, stepping; /* x86 numbers; -1 when absent */
} cpu_id;

static void cpu_read(cpu_id *c) {
    memset(c, 0, sizeof *c);
    c->family = c->model = c->stepping = -1;
    const char *path = getenv("ET_CPUINFO"); /* tests: another CPU's /proc/cpuinfo */
    FILE *f = fopen(path && *path ? path : "/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        const char *v = strchr(line, ':');
        if (!v) {
            if (c->name[0]) break; /* the end of the first CPU's block */
            continue;
        }
        v++;
        while (*v == ' ' || *v == '\t') v++;
        char val[128];
        snprintf(val, sizeof val, "%s", v);
        val[strcspn(val, "\n")] = 0;
        if (!strncmp(line, "model name", 10) || (!c->name[0] && !strncmp(line, "CPU part", 8)))
            snprintf(c->name, sizeof c->name, "%s", val);
        else if (!strncmp(line, "vendor_id", 9)) snprintf(c->vendor, sizeof c->vendor, "%.31s", val);
        else if (!strncmp(line, "cpu family", 10)) c->family = atoi(val);
        else if (!strncmp(line, "model\t", 6) || !strncmp(line, "model :", 7)) c->model = atoi(val);
        else if (!strncmp(line, "stepping", 8)) c->stepping = atoi(val);
    }
    fclose(f);
}

/* The cache key and the name shown: x86's numbers beside the brand string
 * (VMs often show only "AMD EPYC"). */
static void cpu_model(const cpu_id *c, char *out, size_t cap) {
    if (!c->name[0]) snprintf(out, cap, "unknown");
    else if (c->family >= 0)
        snprintf(out, cap, "%.64s (%.16s family %d model %d stepping %d)", c->name, c->vendor, c->family % 1000, c->model % 1000,
                 c->stepping % 1000);
    else snprintf(out, cap, "%s", c->name);
}

/* Families whose answer was measured (both have AVX512_BF16):
 *   AMD Zen 4 (family 25, models 0x10-0x1f, 0x60-0x7f, 0xa0-0xaf): bf16.  This
 *     machine (EPYC, family 25 model 17): vdpbf16ps at 232 GFLOP/s a core vs
 *     115 for f32 FMA; a SmolLM2-135M training step 2.0x faster in bf16, the
 *     stories260K one 1.3x (docs/training.md, sessions 2-3).
 *   Intel Sapphire Rapids (family 6, model 143): f32.  Issue 16: the bf16
 *     kernel at 0.30-0.65x OpenBLAS's sgemm on every SmolLM2 product.
 * 1 bf16, 0 f32, -1 not in the table (measure). */
static int cpu_table(const cpu_id *c, const char **why) {
    if (!strcmp(c->vendor, "AuthenticAMD") && c->family == 25 &&
        ((c->model >= 0x10 && c->model <= 0x1f) || (c->model >= 0x60 && c->model <= 0x7f) ||
         (c->model >= 0xa0 && c->model <= 0xaf))) {
        *why = "AMD Zen 4: bf16 measured 1.3-2x faster";
        return 1;
    }
    if (!strcmp(c->vendor, "GenuineIntel") && c->family == 6 && c->model == 143) {
        *why = "Intel Sapphire Rapids: the bf16 kernel measured at 0.30-0.65x OpenBLAS f32";
        return 0;
    }
    return -1;
}

/* ---- the cache: {"schema": ..., "entries": [{cpu, threads, n_embd, n_ff, rows, f32_gflops, bf16_gflops,
 *      precision, when}, ...]} ---- */
static cJSON *cache_read(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(CACHE_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, CACHE_MAX_BYTES + 1, f) : 0;
    fclose(f);
    cJSON *j = NULL;
    if (buf && n <= CACHE_MAX_BYTES) {
        buf[n] = 0;
        j = cJSON_Parse(buf);
    }
    free(buf);
    const cJSON *s = j ? cJSON_GetObjectItemCaseSensitive(j, "schema") : NULL;
    if (j && (!cJSON_IsString(s) || strcmp(s->valuestring, CACHE_SCHEMA) ||
              !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "entries")))) {
        cJSON_Delete(j);
        j = NULL;
    }
    return j;
}

static int num_is(const cJSON *o, const char *k, double v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(x) && x->valuedouble == v;
}

static double num_of(const cJSON *o, const char *k) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble < 1e9 ? x->valuedouble : -1;
}

static const cJSON *cache_find(const cJSON *j, const char *cpu, int threads, int n_embd, int n_ff, int rows) {
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(j, "entries"), *x;
    cJSON_ArrayForEach(x, en) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(x, "cpu"), *p = cJSON_GetObjectItemCaseSensitive(x, "precision");
        if (cJSON_IsString(c) && !strcmp(c->valuestring, cpu) && num_is(x, "threads", threads) &&
            num_is(x, "n_embd", n_embd) && num_is(x, "n_ff", n_ff) && num_is(x, "rows", rows) && cJSON_IsString(p) &&
            et_gemm_precision_parse(p->valuestring) >= 0 && num_of(x, "f32_gflops") >= 0 && num_of(x, "bf16_gflops") >= 0)
            return x;
    }
    return NULL;
}

static void mkdir_p(const char *dir) {
    char p[1024];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
}

/* Add (or replace) this entry and write the file atomically; failures are ignored (a cache). */
static void cache_write(const char *dir, const char *path, cJSON *j, const et_gemm_auto *a, int threads, int n_embd,
                        int n_ff, int rows) {
    if (!j) {
        j = cJSON_CreateObject();
        if (!j) return;
        cJSON_AddStringToObject(j, "schema", CACHE_SCHEMA);
        cJSON_AddItemToObject(j, "entries", cJSON_CreateArray());
    }
    cJSON *en = cJSON_GetObjectItemCaseSensitive(j, "entries");
    while (en && cJSON_GetArraySize(en) >= CACHE_MAX_ENTRIES) cJSON_DeleteItemFromArray(en, 0);
    cJSON *x = cJSON_CreateObject();
    if (en && x) {
        char when[32];
        time_t now = time(NULL);
        struct tm tmv;
        gmtime_r(&now, &tmv);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tmv);
        cJSON_AddStringToObject(x, "cpu", a->cpu);
        cJSON_AddNumberToObject(x, "threads", threads);
        cJSON_AddNumberToObject(x, "n_embd", n_embd);
        cJSON_AddNumberToObject(x, "n_ff", n_ff);
        cJSON_AddNumberToObject(x, "rows", rows);
        cJSON_AddNumberToObject(x, "f32_gflops", a->f32_gflops);
        cJSON_AddNumberToObject(x, "bf16_gflops", a->bf16_gflops);
        cJSON_AddStringToObject(x, "precision", et_gemm_precision_name(a->precision));
        cJSON_AddStringToObject(x, "when", when);
        cJSON_AddItemToArray(en, x);
    } else {
        cJSON_Delete(x);
    }
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    if (!txt) return;
    mkdir_p(dir);
    et_afile af;
    et_err e = {0};
    if (!et_afile_open(&af, path, &e)) {
        if (fputs(txt, af.f) < 0 || fputc('\n', af.f) < 0) et_afile_abort(&af);
        else (void)et_afile_commit(&af, &e);
    }
    free(txt);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median GFLOP/s of f32 and bf16 over ROUNDS alternating rounds of the six products. */
static int measure(int n_embd, int n_ff, int rows, double *f32, double *bf16, et_err *e) {
    const int C = n_embd, F = n_ff, R = rows, M = F > C ? F : C;
    float *x = malloc(sizeof(float) * (size_t)R * M), *w = malloc(sizeof(float) * (size_t)M * C),
          *y = malloc(sizeof(float) * (size_t)R * M), *dw = malloc(sizeof(float) * (size_t)M * C),
          *dx = malloc(sizeof(float) * (size_t)R * C);
    if (!x || !w || !y || !dw || !dx) {
        free(x), free(w), free(y), free(dw), free(dx);
        return et_fail(e, ET_ERUN, "--precision auto: out of memory for the calibration products");
    }
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < (size_t)R * M; i++) x[i] = (float)((int)((s = s * 6364136223846793005ull + 1) >> 40) % 2001 - 1000) * 1e-3f;
    for (size_t i = 0; i < (size_t)M * C; i++) w[i] = (float)((int)((s = s * 6364136223846793005ull + 1) >> 40) % 2001 - 1000) * 1e-3f;
    const int outs[2] = {C, F};
    double flops = 0;
    for (int o = 0; o < 2; o++) flops += 3.0 * 2.0 * R * (double)outs[o] * C;
    double t[2][ROUNDS];
    int reps = 1; /* per round: enough products for >= 5 ms, so that small shapes time well */
    for (int r = -1; r < ROUNDS; r++) /* round -1: warm-up (packing buffers, threads) and sizing */
        for (int p = 0; p < 2; p++) {
            const int prec = p ? ET_GEMM_BF16 : ET_GEMM_F32;
            const double t0 = et_now_s();
            for (int k = 0; k < reps; k++)
                for (int o = 0; o < 2; o++) {
                    const int N = outs[o];
                    et_gemm(prec, 0, 1, R, N, C, 1.0f, x, C, w, C, 0.0f, y, N);  /* forward: Y = X W^T */
                    et_gemm(prec, 0, 0, R, C, N, 1.0f, y, N, w, C, 0.0f, dx, C); /* dX = dY W */
                    et_gemm(prec, 1, 0, N, C, R, 1.0f, y, N, x, C, 0.0f, dw, C); /* dW = dY^T X */
                }
            const double dt = et_now_s() - t0;
            if (r >= 0) t[p][r] = dt / reps;
            else if (p == 1 && dt < 5e-3) reps = dt > 0 ? (int)(5e-3 / dt) + 1 : 64;
        }
    qsort(t[0], ROUNDS, sizeof(double), cmp_d);
    qsort(t[1], ROUNDS, sizeof(double), cmp_d);
    *f32 = flops / t[0][ROUNDS / 2] * 1e-9;
    *bf16 = flops / t[1][ROUNDS / 2] * 1e-9;
    free(x), free(w), free(y), free(dw), free(dx);
    return 0;
}

int et_gemm_auto_choose(int n_embd, int n_ff, int rows, int n_threads, const char *cache_dir, et_gemm_auto *out,
                        et_err *e) {
    memset(out, 0, sizeof *out);
    if (n_embd < 1 || n_ff < 1 || rows < 1 || n_threads < 0)
        return et_fail(e, ET_EUSAGE, "--precision auto: n_embd %d, n_ff %d, rows %d", n_embd, n_ff, rows);
    if (rows > 2048) rows = 2048; /* rates are flat beyond this; keeps the calibration short */
    cpu_id cid;
    cpu_read(&cid);
    cpu_model(&cid, out->cpu, sizeof out->cpu);
    if (!et_gemm_bf16_native()) {
        out->precision = ET_GEMM_F32;
        snprintf(out->why, sizeof out->why, "auto: no native bf16 kernel on %s", out->cpu);
        return 0;
    }
    const char *tw = NULL;
    const char *force = getenv("ET_GEMM_AUTO"); /* "measure": skip the table */
    const int t = force && !strcmp(force, "measure") ? -1 : cpu_table(&cid, &tw);
    if (t >= 0) {
        out->precision = t ? ET_GEMM_BF16 : ET_GEMM_F32;
        snprintf(out->why, sizeof out->why, "auto, from the CPU table: %s", tw);
        return 0;
    }
    char path[1100];
    cJSON *j = NULL;
    if (cache_dir) {
        snprintf(path, sizeof path, "%s/%s", cache_dir, CACHE_FILE);
        j = cache_read(path);
        const cJSON *x = j ? cache_find(j, out->cpu, n_threads, n_embd, n_ff, rows) : NULL;
        if (x) {
            out->precision = et_gemm_precision_parse(cJSON_GetObjectItemCaseSensitive(x, "precision")->valuestring);
            out->f32_gflops = num_of(x, "f32_gflops"), out->bf16_gflops = num_of(x, "bf16_gflops");
            out->cached = 1;
            snprintf(out->why, sizeof out->why, "auto, cached in %s: bf16 %.0f vs f32 %.0f GFLOP/s at %d threads on %s",
                     path, out->bf16_gflops, out->f32_gflops, n_threads, out->cpu);
            cJSON_Delete(j);
            return 0;
        }
    }
    int rc = measure(n_embd, n_ff, rows, &out->f32_gflops, &out->bf16_gflops, e);
    if (rc) {
        cJSON_Delete(j);
        return rc;
    }
    out->precision = out->bf16_gflops >= 1.05 * out->f32_gflops ? ET_GEMM_BF16 : ET_GEMM_F32;
    snprintf(out->why, sizeof out->why, "auto, measured now: bf16 %.0f vs f32 %.0f GFLOP/s at %d threads on %s",
             out->bf16_gflops, out->f32_gflops, n_threads, out->cpu);
    if (cache_dir) cache_write(cache_dir, path, j, out, n_threads, n_embd, n_ff, rows);
    else cJSON_Delete(j);
    return 0;
}
