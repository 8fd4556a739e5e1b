/* cli/cmd_inspect.c — `edgetune inspect FILE [--kv-max N]`.
 *
 * Prints what is inside a model file without loading it:
 *  - GGUF (first 4 bytes "GGUF"): version, alignment, every KV (arrays as
 *    type, count and the first --kv-max elements) and the tensor table
 *    (name, type, ne with the row length first, bytes, offset) with totals.
 *    The file goes through the validating reader (export/gguf.h) first.
 *  - safetensors (a *.safetensors file or an HF directory): inspect_safetensors().
 *  - otherwise a llama2.c .bin v0 checkpoint (karpathy/llama2.c run.c):
 *    7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size —
 *    negative means an unshared classifier —, seq_len) then F32 weights in
 *    run.c's order; the file size must match the header exactly.
 * Exit codes: 0, 1 usage, 2 bad input.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "../export/gguf.h"
#include "../export/safetensors.h"
#include "cli.h"

/* ------------------------------------------------------------ printing */

static uint64_t le_u64(const uint8_t *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* One element of a fixed-size KV type at p. */
static void print_scalar(uint32_t type, const uint8_t *p) {
    uint64_t v = le_u64(p, (unsigned)gguf_type_size(type));
    switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        printf("%" PRIu64, v); break;
    case GGUF_TYPE_INT8: printf("%d", (int)(int8_t)(uint8_t)v); break;
    case GGUF_TYPE_INT16: printf("%d", (int)(int16_t)(uint16_t)v); break;
    case GGUF_TYPE_INT32: printf("%" PRId32, (int32_t)(uint32_t)v); break;
    case GGUF_TYPE_INT64: printf("%" PRId64, (int64_t)v); break;
    case GGUF_TYPE_BOOL: fputs(v ? "true" : "false", stdout); break;
    case GGUF_TYPE_FLOAT32: {
        uint32_t u = (uint32_t)v;
        float f;
        memcpy(&f, &u, 4);
        printf("%.9g", f);
        break;
    }
    case GGUF_TYPE_FLOAT64: {
        double d;
        memcpy(&d, &v, 8);
        printf("%.17g", d);
        break;
    }
    default: fputs("?", stdout);
    }
}

static void print_kv(const gguf_kv *kv, uint64_t kv_max) {
    printf("  %-44.*s ", (int)(kv->key.len < 200 ? kv->key.len : 200), kv->key.ptr);
    if (kv->type == GGUF_TYPE_STRING) {
        printf("%-8s ", "STRING");
        cli_print_escaped(kv->strs[0].ptr, kv->strs[0].len, 160);
    } else if (kv->type == GGUF_TYPE_ARRAY) {
        printf("[%s x %" PRIu64 "]", gguf_type_name(kv->arr_type), kv->n);
        uint64_t n = kv->n < kv_max ? kv->n : kv_max;
        uint64_t es = gguf_type_size(kv->arr_type);
        for (uint64_t i = 0; i < n; i++) {
            fputs(i ? ", " : " ", stdout);
            if (kv->arr_type == GGUF_TYPE_STRING) cli_print_escaped(kv->strs[i].ptr, kv->strs[i].len, 40);
            else print_scalar(kv->arr_type, kv->data + i * es);
        }
        if (n < kv->n) fputs(", ...", stdout);
    } else {
        printf("%-8s ", gguf_type_name(kv->type));
        print_scalar(kv->type, kv->data);
    }
    putchar('\n');
}

static void print_ne(const int64_t *ne, uint32_t n_dims, char *buf, size_t cap) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (uint32_t d = 0; d < n_dims && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, d ? ", " : "", ne[d]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* ---------------------------------------------------------------- GGUF */

/* Per-layer widths of a model whose attention.head_count /
 * head_count_kv / feed_forward_length are INT32 arrays (arch "deci",
 * structured pruning: prune/plan.h), one line per layer. */
static void print_layer_widths(const gguf_file *g) {
    char arch[32], k[3][96];
    if (gguf_get_str(g, "general.architecture", arch, sizeof arch, NULL)) return;
    snprintf(k[0], sizeof k[0], "%s.attention.head_count", arch);
    snprintf(k[1], sizeof k[1], "%s.attention.head_count_kv", arch);
    snprintf(k[2], sizeof k[2], "%s.feed_forward_length", arch);
    const gguf_kv *kv[3];
    uint64_t n = 0;
    for (int j = 0; j < 3; j++) {
        int64_t i = gguf_find_key(g, k[j]);
        kv[j] = i >= 0 ? &g->kv[i] : NULL;
        if (kv[j] && kv[j]->type == GGUF_TYPE_ARRAY) n = kv[j]->n;
    }
    if (!n) return; /* uniform: the scalar keys above say it all */
    printf("per-layer widths (%" PRIu64 " layers): layer n_head n_head_kv n_ff\n", n);
    for (uint64_t l = 0; l < n; l++) {
        int64_t v[3];
        for (int j = 0; j < 3; j++) {
            v[j] = -1;
            if (!kv[j]) continue;
            if (kv[j]->type == GGUF_TYPE_ARRAY) {
                if (l >= kv[j]->n || gguf_arr_i64(kv[j], l, &v[j])) v[j] = -1;
            } else {
                uint32_t u;
                if (!gguf_get_u32(g, k[j], &u, NULL)) v[j] = u;
            }
        }
        printf("  %5" PRIu64 " %6" PRId64 " %9" PRId64 " %6" PRId64 "\n", l, v[0], v[1], v[2]);
    }
}

static int inspect_gguf(const char *path, uint64_t kv_max) {
    gguf_file g;
    et_err e = {0};
    if (gguf_open(&g, path, &e)) return cli_report(&e);
    printf("%s: GGUF v%u, %zu bytes, alignment %" PRIu64, path, g.version, g.map.size, g.alignment);
    if (g.n_tensors) printf(", data section at byte %" PRIu64 "\n", g.data_offset);
    else printf(", no tensor data\n");
    printf("metadata: %" PRIu64 " keys\n", g.n_kv);
    for (uint64_t i = 0; i < g.n_kv; i++) print_kv(&g.kv[i], kv_max);
    print_layer_widths(&g);
    printf("tensors: %" PRIu64 " (ne: row length first; offset: from the data section)\n", g.n_tensors);
    if (g.n_tensors) printf("  %-40s %-5s %-22s %12s %12s\n", "name", "type", "ne", "bytes", "offset");
    uint64_t total_bytes = 0, total_elems = 0, by_type[GGML_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        char shape[128];
        print_ne(t->ne, t->n_dims, shape, sizeof shape);
        printf("  %-40.*s %-5s %-22s %12" PRIu64 " %12" PRIu64 "\n", (int)t->name.len, t->name.ptr,
               ggml_type_name(t->type), shape, t->nbytes, t->offset);
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= (uint64_t)t->ne[d]; /* validated: no overflow */
        total_elems += n;
        total_bytes += t->nbytes;
        if (t->type < GGML_TYPE_COUNT) by_type[t->type]++;
    }
    printf("total: %" PRIu64 " tensors, %" PRIu64 " elements, %" PRIu64 " bytes of tensor data",
           g.n_tensors, total_elems, total_bytes);
    const char *sep = " (";
    for (uint32_t ty = 0; ty < GGML_TYPE_COUNT; ty++)
        if (by_type[ty]) { printf("%s%s: %" PRIu64, sep, ggml_type_name(ty), by_type[ty]); sep = ", "; }
    printf("%s\n", g.n_tensors ? ")" : "");
    gguf_close(&g);
    return 0;
}

/* ---------------------------------------------------------- safetensors */

/* One safetensors file: metadata and the tensor table (PyTorch shape order). */
static int inspect_st_file(const char *path, uint64_t kv_max) {
    et_err e = {0};
    st_file f;
    if (st_open(&f, path, &e)) return cli_report(&e);
    printf("%s: safetensors, %zu bytes, header %" PRIu64 " bytes, %zu tensors\n", path, f.size, f.header_len,
           f.n_tensors);
    if (f.n_meta) printf("metadata (%zu):\n", f.n_meta);
    for (size_t i = 0; i < f.n_meta; i++) {
        printf("  %-44s ", f.meta[i].key);
        cli_print_escaped(f.meta[i].value, strlen(f.meta[i].value), 64 + 8 * kv_max);
        putchar('\n');
    }
    printf("tensors:\n  %-56s %-6s %-22s %14s %14s\n", "name", "dtype", "shape", "bytes", "offset");
    uint64_t elems = 0, bytes = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        char sh[128] = "[";
        size_t k = 1;
        for (int d = 0; d < t->n_dims && k < sizeof sh - 24; d++)
            k += (size_t)snprintf(sh + k, sizeof sh - k, "%s%" PRId64, d ? ", " : "", t->shape[d]);
        snprintf(sh + k, sizeof sh - k, "]");
        printf("  %-56s %-6s %-22s %14" PRIu64 " %14" PRIu64 "\n", t->name, st_dtype_name(t->dtype), sh, t->nbytes,
               t->offset);
        elems += t->n_elems;
        bytes += t->nbytes;
    }
    printf("total: %zu tensors, %" PRIu64 " elements, %" PRIu64 " bytes of data\n", f.n_tensors, elems, bytes);
    st_close(&f);
    return 0;
}

/* An HF directory: config.json's scalar fields, then each safetensors file
 * (model.safetensors, or the shards named by model.safetensors.index.json). */
static int inspect_hf_dir(const char *dir, uint64_t kv_max) {
    et_err e = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    et_map m;
    if (et_map_open(&m, path, &e) == 0) {
        cJSON *c = cJSON_ParseWithLength((const char *)m.data, m.size);
        et_map_close(&m);
        if (!cJSON_IsObject(c)) {
            cJSON_Delete(c);
            et_fail(&e, ET_EINPUT, "%s: not a JSON object", path);
            return cli_report(&e);
        }
        printf("%s:\n", path);
        for (const cJSON *it = c->child; it; it = it->next) {
            if (cJSON_IsArray(it) || cJSON_IsObject(it)) {
                char *v = cJSON_PrintUnformatted(it);
                printf("  %-44s %.200s\n", it->string, v ? v : "?");
                free(v);
            } else if (cJSON_IsString(it)) {
                printf("  %-44s ", it->string);
                cli_print_escaped(it->valuestring, strlen(it->valuestring), 64 + 8 * kv_max);
                putchar('\n');
            } else if (cJSON_IsNumber(it)) {
                printf("  %-44s %.17g\n", it->string, it->valuedouble);
            } else {
                printf("  %-44s %s\n", it->string, cJSON_IsTrue(it) ? "true" : cJSON_IsFalse(it) ? "false" : "null");
            }
        }
        cJSON_Delete(c);
    } else {
        fprintf(stderr, "edgetune: note: %s\n", e.msg);
    }
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (et_map_open(&m, path, &e) != 0) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        return inspect_st_file(path, kv_max);
    }
    cJSON *idx = cJSON_ParseWithLength((const char *)m.data, m.size);
    et_map_close(&m);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(idx);
        et_fail(&e, ET_EINPUT, "%s: no \"weight_map\" object", path);
        return cli_report(&e);
    }
    int rc = 0;
    for (const cJSON *it = wm->child; it && !rc; it = it->next) {
        if (!cJSON_IsString(it) || strchr(it->valuestring, '/')) {
            et_fail(&e, ET_EINPUT, "%s: weight_map[\"%.200s\"] is not a file in the directory", path, it->string);
            rc = cli_report(&e);
            break;
        }
        int seen = 0; /* each shard once, in first-mention order */
        for (const cJSON *p = wm->child; p != it && !seen; p = p->next)
            seen = cJSON_IsString(p) && strcmp(p->valuestring, it->valuestring) == 0;
        if (seen) continue;
        char sp[4096];
        snprintf(sp, sizeof sp, "%s/%s", dir, it->valuestring);
        putchar('\n');
        rc = inspect_st_file(sp, kv_max);
    }
    cJSON_Delete(idx);
    return rc;
}

static int inspect_safetensors(const char *path, uint64_t kv_max) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return inspect_hf_dir(path, kv_max);
    return inspect_st_file(path, kv_max);
}

/* ------------------------------------------------------------- llama2.c */

typedef struct l2c_tensor { const char *name; uint64_t d0, d1, d2; const char *note; } l2c_tensor;

/* a*b with overflow check (returns 0 and sets *ok = 0 on overflow). */
static uint64_t mul_chk(uint64_t a, uint64_t b, int *ok) {
    if (a && b > UINT64_MAX / a) { *ok = 0; return 0; }
    return a * b;
}

static int inspect_llama2c(const char *path) {
    et_err e = {0};
    et_map m;
    if (et_map_open(&m, path, &e)) return cli_report(&e);
    int rc = 0;
    if (m.size < 28) {
        et_fail(&e, ET_EINPUT, "%s: %zu bytes: not GGUF, safetensors or a llama2.c checkpoint (header needs 28 bytes)",
                path, m.size);
        et_map_close(&m);
        return cli_report(&e);
    }
    int32_t h[7];
    for (int i = 0; i < 7; i++) h[i] = (int32_t)(uint32_t)le_u64(m.data + 4 * i, 4);
    static const char *const names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++)
        if (h[i] == 0 || (h[i] < 0 && i != 5) || h[i] == INT32_MIN) {
            et_fail(&e, ET_EINPUT, "%s: byte %d: %s = %d: not a llama2.c checkpoint (nor GGUF or safetensors)",
                    path, 4 * i, names[i], h[i]);
            et_map_close(&m);
            return cli_report(&e);
        }
    uint64_t dim = (uint64_t)h[0], hidden = (uint64_t)h[1], L = (uint64_t)h[2], n_heads = (uint64_t)h[3];
    uint64_t n_kv = (uint64_t)h[4], seq = (uint64_t)h[6];
    int shared = h[5] > 0;
    uint64_t vocab = (uint64_t)(shared ? h[5] : -h[5]);
    if (dim % n_heads || n_heads % n_kv || (dim / n_heads) % 2) {
        et_fail(&e, ET_EINPUT, "%s: dim %" PRIu64 ", n_heads %" PRIu64 ", n_kv_heads %" PRIu64
                ": dim must divide into heads of even size and n_heads into n_kv_heads groups",
                path, dim, n_heads, n_kv);
        et_map_close(&m);
        return cli_report(&e);
    }
    uint64_t head_size = dim / n_heads, kv_dim = dim / n_heads * n_kv;
    l2c_tensor t[] = {
        {"token_embedding_table", 1, vocab, dim, ""},
        {"rms_att_weight", 1, L, dim, ""},
        {"wq", L, dim, dim, ""},
        {"wk", L, kv_dim, dim, ""},
        {"wv", L, kv_dim, dim, ""},
        {"wo", L, dim, dim, ""},
        {"rms_ffn_weight", 1, L, dim, ""},
        {"w1", L, hidden, dim, ""},
        {"w2", L, dim, hidden, ""},
        {"w3", L, hidden, dim, ""},
        {"rms_final_weight", 1, 0, dim, ""},
        {"freq_cis_real", 1, seq, head_size / 2, "(unused by loaders)"},
        {"freq_cis_imag", 1, seq, head_size / 2, "(unused by loaders)"},
        {"wcls", 1, vocab, dim, ""},
    };
    size_t nt = sizeof t / sizeof t[0] - (shared ? 1 : 0);
    int ok = 1;
    uint64_t total = 0, n[16];
    for (size_t i = 0; i < nt; i++) {
        n[i] = mul_chk(mul_chk(t[i].d0, t[i].d1 ? t[i].d1 : 1, &ok), t[i].d2, &ok);
        if (total + n[i] < total) ok = 0;
        total += n[i];
    }
    uint64_t want = ok ? mul_chk(total, 4, &ok) : 0;
    if (ok && want > UINT64_MAX - 28) ok = 0;
    want += 28;
    if (!ok || want != m.size) {
        if (ok) et_fail(&e, ET_EINPUT, "%s: llama2.c header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, "
                        "vocab_size %d, seq_len %d) implies %" PRIu64 " bytes but the file has %zu",
                        path, h[0], h[1], h[2], h[3], h[4], h[5], h[6], want, m.size);
        else et_fail(&e, ET_EINPUT, "%s: llama2.c header sizes overflow", path);
        et_map_close(&m);
        return cli_report(&e);
    }
    printf("%s: llama2.c checkpoint (v0), %zu bytes\n", path, m.size);
    printf("  dim (n_embd) %d, hidden_dim (n_ff) %d, n_layers %d, n_heads %d, n_kv_heads %d, "
           "vocab_size (n_vocab) %" PRIu64 " (%s classifier), seq_len (n_ctx) %d, head_dim %" PRIu64 "\n",
           h[0], h[1], h[2], h[3], h[4], vocab, shared ? "shared" : "unshared", h[6], head_size);
    printf("tensors: %zu, all F32 (shape: C order, outermost first; offset: absolute byte)\n", nt);
    printf("  %-22s %-20s %12s %12s\n", "name", "shape", "bytes", "offset");
    uint64_t off = 28;
    for (size_t i = 0; i < nt; i++) {
        char shape[64];
        if (t[i].d1 == 0) snprintf(shape, sizeof shape, "[%" PRIu64 "]", t[i].d2);
        else if (t[i].d0 == 1) snprintf(shape, sizeof shape, "[%" PRIu64 ", %" PRIu64 "]", t[i].d1, t[i].d2);
        else snprintf(shape, sizeof shape, "[%" PRIu64 ", %" PRIu64 ", %" PRIu64 "]", t[i].d0, t[i].d1, t[i].d2);
        printf("  %-22s %-20s %12" PRIu64 " %12" PRIu64 " %s\n", t[i].name, shape, 4 * n[i], off, t[i].note);
        off += 4 * n[i];
    }
    printf("total: %zu tensors, %" PRIu64 " elements, %" PRIu64 " bytes\n", nt, total, 4 * total);
    et_map_close(&m);
    return rc;
}

/* ------------------------------------------------------------- dispatch */

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int cmd_inspect(int argc, char **argv) {
    static const char *const known[] = {"kv_max", NULL};
    cli_args a;
    et_err e = {0};
    if (cli_parse(&a, argc, argv, NULL, &e)) return cli_report(&e);
    long kv_max = 8;
    int rc = cli_check_known(&a, known, &e);
    if (!rc) rc = cli_int(&a, "kv_max", 8, &kv_max, &e);
    if (!rc && (a.npos != 1 || kv_max < 0))
        rc = et_fail(&e, ET_EUSAGE, "usage: edgetune inspect FILE [--kv-max N]  (N >= 0 array elements shown)");
    if (rc) { cli_free(&a); return cli_report(&e); }
    const char *path = a.pos[0];
    struct stat st;
    unsigned char magic[9] = {0};
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = inspect_safetensors(path, (uint64_t)kv_max);
    } else {
        size_t got = 0;
        if (et_need_regular(path, "inspect reads a file's header to know its format", &e) == 0)
            got = et_sniff(path, magic, sizeof magic);   /* never opens a FIFO */
        if (e.code) {
            rc = cli_report(&e);
        } else if (got >= 4 && memcmp(magic, "GGUF", 4) == 0) {
            rc = inspect_gguf(path, (uint64_t)kv_max);
        } else if (ends_with(path, ".safetensors") || (got == 9 && magic[8] == '{')) {
            rc = inspect_safetensors(path, (uint64_t)kv_max);
        } else {
            rc = inspect_llama2c(path);
        }
    }
    cli_free(&a);
    return rc;
}
