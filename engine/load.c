/* engine/load.c — GGUF (arch "llama" / "deci") or an in-memory et_model to
 * an et_engine whose weight matrices point into the mapping.
 *
 * Keys and tensor names are llama.cpp's (src/llama-arch.cpp, LLM_KV_* and
 * LLM_TENSOR_*); per-layer widths may be scalars or INT32 arrays for both
 * archs, as llama.cpp's get_key_or_arr accepts.  Every tensor is checked
 * for presence, shape, type and size before the engine uses it; a tensor
 * the engine does not know is an error, like llama.cpp's tensor count check.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine.h"
#include "internal.h"
#include "kernels.h"
#include "repack.h"

#define MAX_LAYERS 4096
#define MAX_DIM (1 << 20)

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int weight_type_ok(uint32_t t) { return et_vec_dot_type(t) != (uint32_t)-1; }

static const char *type_str(uint32_t t) {
    const char *s = ggml_type_name(t);
    return s ? s : "unknown";
}

/* ------------------------------------------------------------ GGUF keys */

typedef struct loader {
    const gguf_file *g;
    const char *path;
    char arch[16];
    unsigned char *used;   /* [n_tensors] 1 when a tensor has been bound */
} loader;

static int key_name(char *buf, size_t cap, const loader *L, const char *suffix) {
    return snprintf(buf, cap, "%s.%s", L->arch, suffix) < (int)cap ? 0 : -1;
}

/* Optional u32 key "<arch>.suffix" into *out (unchanged when absent). */
static int opt_u32(const loader *L, const char *suffix, int *out, int lo, int hi, et_err *e) {
    char k[128];
    key_name(k, sizeof k, L, suffix);
    if (gguf_find_key(L->g, k) < 0) return 0;
    uint32_t v;
    if (gguf_get_u32(L->g, k, &v, e)) return ET_EINPUT;
    if ((int64_t)v < lo || (int64_t)v > hi)
        return et_fail(e, ET_EINPUT, "%s: key '%s' = %u is outside [%d, %d]", L->path, k, v, lo, hi);
    *out = (int)v;
    return 0;
}

static int req_u32(const loader *L, const char *suffix, int *out, int lo, int hi, et_err *e) {
    char k[128];
    key_name(k, sizeof k, L, suffix);
    if (gguf_find_key(L->g, k) < 0) return et_fail(e, ET_EINPUT, "%s: missing key '%s'", L->path, k);
    return opt_u32(L, suffix, out, lo, hi, e);
}

static int opt_f32(const loader *L, const char *suffix, float *out, et_err *e) {
    char k[128];
    key_name(k, sizeof k, L, suffix);
    if (gguf_find_key(L->g, k) < 0) return 0;
    return gguf_get_f32(L->g, k, out, e);
}

/* Per-layer width: a scalar (same for every layer) or an integer array of
 * n_layer entries.  Absent: *present = 0 and out untouched. */
static int layer_arr(const loader *L, const char *suffix, int n_layer, int *out, int *present, int lo, int hi,
                     et_err *e) {
    char k[128];
    key_name(k, sizeof k, L, suffix);
    int64_t i = gguf_find_key(L->g, k);
    *present = i >= 0;
    if (i < 0) return 0;
    const gguf_kv *kv = &L->g->kv[i];
    uint64_t n = kv->type == GGUF_TYPE_ARRAY ? kv->n : 1;
    if (kv->type == GGUF_TYPE_ARRAY && n != (uint64_t)n_layer)
        return et_fail(e, ET_EINPUT, "%s: key '%s' has %" PRIu64 " entries, expected block_count = %d", L->path, k,
                       n, n_layer);
    for (int l = 0; l < n_layer; l++) {
        int64_t v;
        if (gguf_arr_i64(kv, kv->type == GGUF_TYPE_ARRAY ? (uint64_t)l : 0, &v))
            return et_fail(e, ET_EINPUT, "%s: key '%s' is not an integer or integer array", L->path, k);
        if (v < lo || v > hi)
            return et_fail(e, ET_EINPUT, "%s: key '%s'[%d] = %" PRId64 " is outside [%d, %d]", L->path, k, l, v, lo,
                           hi);
        out[l] = (int)v;
    }
    return 0;
}

/* ------------------------------------------------------------ tensors */

static const gguf_tensor *find(loader *L, const char *name) {
    const gguf_tensor *t = gguf_find_tensor(L->g, name);
    if (t) L->used[t - L->g->tensors] = 1;
    return t;
}

static void wmat_set(et_wmat *w, const char *name, const void *data, uint32_t type, int n_in, int n_out) {
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->data = data;
    w->type = type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->row_bytes = (size_t)ggml_row_bytes(type, (uint64_t)n_in);
}

/* Bind a 2-D weight [n_out, n_in] (GGUF ne {n_in, n_out}). */
static int bind_mat(loader *L, et_wmat *w, const char *name, int n_in, int n_out, int required, et_err *e) {
    memset(w, 0, sizeof *w);
    const gguf_tensor *t = find(L, name);
    if (!t) return required ? et_fail(e, ET_EINPUT, "%s: missing tensor '%s'", L->path, name) : 0;
    if (!weight_type_ok(t->type))
        return et_fail(e, ET_EINPUT, "%s: tensor '%s' has type %s (%u), which the engine does not run "
                       "(supported: F32 F16 BF16 Q8_0 Q4_0 Q5_0 Q4_1 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL)", L->path, name, type_str(t->type), t->type);
    if (t->n_dims > 2 || t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != 1 || t->ne[3] != 1)
        return et_fail(e, ET_EINPUT, "%s: tensor '%s' has shape [%" PRId64 ", %" PRId64 "], expected [%d, %d] (ne0 = in, ne1 = out)",
                       L->path, name, t->ne[0], t->ne[1], n_in, n_out);
    uint64_t rb = ggml_row_bytes(t->type, (uint64_t)n_in);
    if (rb == 0)
        return et_fail(e, ET_EINPUT, "%s: tensor '%s': row length %d is not a multiple of the %s block", L->path,
                       name, n_in, type_str(t->type));
    if (t->nbytes != rb * (uint64_t)n_out || !t->data)
        return et_fail(e, ET_EINPUT, "%s: tensor '%s': %" PRIu64 " bytes of data, expected %" PRIu64, L->path, name,
                       t->nbytes, rb * (uint64_t)n_out);
    wmat_set(w, name, t->data, t->type, n_in, n_out);
    return 0;
}

/* Bind a 1-D F32/F16/BF16 vector of n into an owned float copy. */
static int bind_vec(loader *L, float **out, const char *name, int n, int required, et_err *e) {
    *out = NULL;
    const gguf_tensor *t = find(L, name);
    if (!t) return required ? et_fail(e, ET_EINPUT, "%s: missing tensor '%s'", L->path, name) : 0;
    if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16)
        return et_fail(e, ET_EINPUT, "%s: tensor '%s' has type %s (%u); a vector must be F32, F16 or BF16", L->path,
                       name, type_str(t->type), t->type);
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return et_fail(e, ET_EINPUT, "%s: tensor '%s' has shape [%" PRId64 ", %" PRId64 "], expected [%d]", L->path,
                       name, t->ne[0], t->ne[1], n);
    if (t->nbytes != ggml_row_bytes(t->type, (uint64_t)n) || !t->data)
        return et_fail(e, ET_EINPUT, "%s: tensor '%s': wrong data size", L->path, name);
    *out = malloc(sizeof(float) * (size_t)n);
    if (!*out) return et_fail(e, ET_ERUN, "%s: out of memory", L->path);
    et_dequantize_row(t->type, t->data, *out, n);
    return 0;
}

static int bind_layer(loader *L, et_engine *m, int il, et_err *e) {
    et_engine_layer *ly = &m->layers[il];
    const et_hparams *hp = &m->hp;
    int hd = hp->head_dim, d = hp->n_embd;
    char nm[GGUF_MAX_NAME];
#define NAME(suffix) (snprintf(nm, sizeof nm, "blk.%d.%s", il, suffix), nm)
    int rc;
    if (ly->n_head > 0) {
        if ((rc = bind_vec(L, &ly->attn_norm, NAME("attn_norm.weight"), d, 1, e))) return rc;
        if ((rc = bind_mat(L, &ly->wq, NAME("attn_q.weight"), d, ly->n_head * hd, 1, e))) return rc;
        if ((rc = bind_mat(L, &ly->wk, NAME("attn_k.weight"), d, ly->n_head_kv * hd, 1, e))) return rc;
        if ((rc = bind_mat(L, &ly->wv, NAME("attn_v.weight"), d, ly->n_head_kv * hd, 1, e))) return rc;
        if ((rc = bind_mat(L, &ly->wo, NAME("attn_output.weight"), ly->n_head * hd, d, 1, e))) return rc;
        if ((rc = bind_vec(L, &ly->bq, NAME("attn_q.bias"), ly->n_head * hd, 0, e))) return rc;
        if ((rc = bind_vec(L, &ly->bk, NAME("attn_k.bias"), ly->n_head_kv * hd, 0, e))) return rc;
        if ((rc = bind_vec(L, &ly->bv, NAME("attn_v.bias"), ly->n_head_kv * hd, 0, e))) return rc;
        if ((rc = bind_vec(L, &ly->bo, NAME("attn_output.bias"), d, 0, e))) return rc;
    }
    if (ly->n_ff > 0) {
        if ((rc = bind_vec(L, &ly->ffn_norm, NAME("ffn_norm.weight"), d, 1, e))) return rc;
        if ((rc = bind_mat(L, &ly->w_gate, NAME("ffn_gate.weight"), d, ly->n_ff, 1, e))) return rc;
        if ((rc = bind_mat(L, &ly->w_up, NAME("ffn_up.weight"), d, ly->n_ff, 1, e))) return rc;
        if ((rc = bind_mat(L, &ly->w_down, NAME("ffn_down.weight"), ly->n_ff, d, 1, e))) return rc;
    }
#undef NAME
    return 0;
}

static int read_hparams(loader *L, et_engine *m, et_err *e) {
    et_hparams *hp = &m->hp;
    int rc;
    snprintf(hp->arch, sizeof hp->arch, "%s", L->arch);
    if ((rc = req_u32(L, "embedding_length", &hp->n_embd, 1, MAX_DIM, e))) return rc;
    if ((rc = req_u32(L, "block_count", &hp->n_layer, 1, MAX_LAYERS, e))) return rc;
    hp->n_ctx = 2048;
    if ((rc = opt_u32(L, "context_length", &hp->n_ctx, 1, 1 << 24, e))) return rc;
    int n_layer = hp->n_layer;
    hp->layer_n_head = calloc((size_t)n_layer, sizeof(int));
    hp->layer_n_head_kv = calloc((size_t)n_layer, sizeof(int));
    hp->layer_n_ff = calloc((size_t)n_layer, sizeof(int));
    if (!hp->layer_n_head || !hp->layer_n_head_kv || !hp->layer_n_ff)
        return et_fail(e, ET_ERUN, "%s: out of memory", L->path);
    int present;
    if ((rc = layer_arr(L, "attention.head_count", n_layer, hp->layer_n_head, &present, 0, MAX_DIM, e))) return rc;
    if (!present) return et_fail(e, ET_EINPUT, "%s: missing key '%s.attention.head_count'", L->path, L->arch);
    if ((rc = layer_arr(L, "attention.head_count_kv", n_layer, hp->layer_n_head_kv, &present, 0, MAX_DIM, e)))
        return rc;
    if (!present) memcpy(hp->layer_n_head_kv, hp->layer_n_head, sizeof(int) * (size_t)n_layer);
    if ((rc = layer_arr(L, "feed_forward_length", n_layer, hp->layer_n_ff, &present, 0, MAX_DIM, e))) return rc;
    if (!present) return et_fail(e, ET_EINPUT, "%s: missing key '%s.feed_forward_length'", L->path, L->arch);

    int n_head0 = 0;
    for (int l = 0; l < n_layer && !n_head0; l++) n_head0 = hp->layer_n_head[l];
    hp->head_dim = n_head0 > 0 ? hp->n_embd / n_head0 : 0;
    int kl = hp->head_dim, vl = hp->head_dim;
    if ((rc = opt_u32(L, "attention.key_length", &kl, 1, MAX_DIM, e))) return rc;
    if ((rc = opt_u32(L, "attention.value_length", &vl, 1, MAX_DIM, e))) return rc;
    if (kl != vl)
        return et_fail(e, ET_EINPUT, "%s: attention.key_length %d != value_length %d (unsupported)", L->path, kl, vl);
    hp->head_dim = kl;
    for (int l = 0; l < n_layer; l++) {
        int nh = hp->layer_n_head[l], nkv = hp->layer_n_head_kv[l];
        if (nh > 0 && nkv == 0)
            return et_fail(e, ET_EINPUT, "%s: layer %d has head_count %d and head_count_kv 0 (deci \"linear attention\" is not supported)",
                           L->path, l, nh);
        if (nh == 0 && nkv != 0)
            return et_fail(e, ET_EINPUT, "%s: layer %d has head_count 0 but head_count_kv %d", L->path, l, nkv);
        if (nh > 0 && nh % nkv)
            return et_fail(e, ET_EINPUT, "%s: layer %d: head_count %d is not a multiple of head_count_kv %d", L->path, l,
                           nh, nkv);
        if (nh > 0 && hp->head_dim <= 0)
            return et_fail(e, ET_EINPUT, "%s: layer %d has heads but the head size is 0", L->path, l);
        if ((int64_t)nh * hp->head_dim > MAX_DIM)
            return et_fail(e, ET_EINPUT, "%s: layer %d: head_count * head size too large", L->path, l);
    }
    if (strcmp(L->arch, "llama") == 0 && n_head0 > 0 && hp->n_embd % n_head0 && hp->head_dim == 0)
        return et_fail(e, ET_EINPUT, "%s: embedding_length %d is not a multiple of head_count %d", L->path,
                       hp->n_embd, n_head0);
    hp->n_head = hp->layer_n_head[0];
    hp->n_head_kv = hp->layer_n_head_kv[0];
    hp->n_ff = hp->layer_n_ff[0];

    char k[128];
    key_name(k, sizeof k, L, "attention.layer_norm_rms_epsilon");
    if ((rc = gguf_get_f32(L->g, k, &hp->rms_eps, e))) return rc;
    if (!(hp->rms_eps >= 0) || !isfinite(hp->rms_eps))
        return et_fail(e, ET_EINPUT, "%s: key '%s' is not a finite non-negative number", L->path, k);
    hp->rope_theta = 10000.0f;
    if ((rc = opt_f32(L, "rope.freq_base", &hp->rope_theta, e))) return rc;
    if (!(hp->rope_theta > 0) || !isfinite(hp->rope_theta))
        return et_fail(e, ET_EINPUT, "%s: %s.rope.freq_base must be positive", L->path, L->arch);
    m->n_rot = hp->head_dim;
    if ((rc = opt_u32(L, "rope.dimension_count", &m->n_rot, 0, MAX_DIM, e))) return rc;
    if (m->n_rot > hp->head_dim || m->n_rot % 2)
        return et_fail(e, ET_EINPUT, "%s: rope.dimension_count %d must be even and <= the head size %d", L->path,
                       m->n_rot, hp->head_dim);
    m->rope_freq_scale = 1.0f;
    key_name(k, sizeof k, L, "rope.scaling.type");
    if (gguf_find_key(L->g, k) >= 0) {
        char type[32];
        if ((rc = gguf_get_str(L->g, k, type, sizeof type, e))) return rc;
        if (!strcmp(type, "linear")) {
            float f = 1.0f;
            if ((rc = opt_f32(L, "rope.scaling.factor", &f, e))) return rc;
            if (!(f > 0) || !isfinite(f)) return et_fail(e, ET_EINPUT, "%s: bad rope.scaling.factor", L->path);
            m->rope_freq_scale = 1.0f / f;
        } else if (strcmp(type, "none") != 0) {
            return et_fail(e, ET_EINPUT, "%s: rope scaling '%s' is not supported (none, linear)", L->path, type);
        }
    }
    return 0;
}

static int load_gguf(et_engine *m, loader *L, et_err *e) {
    const gguf_file *g = L->g;
    int rc;
    if ((rc = gguf_get_str(g, "general.architecture", L->arch, sizeof L->arch, e))) return rc;
    if (strcmp(L->arch, "llama") && strcmp(L->arch, "deci"))
        return et_fail(e, ET_EINPUT, "%s: architecture '%s' is not supported (llama, deci)", L->path, L->arch);
    if (gguf_find_key(g, "general.type") >= 0) {
        char type[32];
        if (!gguf_get_str(g, "general.type", type, sizeof type, NULL) && strcmp(type, "model") != 0)
            return et_fail(e, ET_EINPUT, "%s: general.type is '%s', not a model (an adapter goes with --lora)", L->path,
                           type);
    }
    if ((rc = read_hparams(L, m, e))) return rc;
    et_hparams *hp = &m->hp;

    /* n_vocab comes from the embedding table */
    const gguf_tensor *te = gguf_find_tensor(g, "token_embd.weight");
    if (!te) return et_fail(e, ET_EINPUT, "%s: missing tensor 'token_embd.weight'", L->path);
    if (te->ne[1] < 1 || te->ne[1] > (1 << 24))
        return et_fail(e, ET_EINPUT, "%s: tensor 'token_embd.weight' has %" PRId64 " rows", L->path, te->ne[1]);
    hp->n_vocab = (int)te->ne[1];
    if ((rc = bind_mat(L, &m->tok_embd, "token_embd.weight", hp->n_embd, hp->n_vocab, 1, e))) return rc;
    if ((rc = bind_vec(L, &m->output_norm, "output_norm.weight", hp->n_embd, 1, e))) return rc;
    if ((rc = bind_mat(L, &m->output, "output.weight", hp->n_embd, hp->n_vocab, 0, e))) return rc;
    hp->tied_output = m->output.data == NULL;
    if (hp->tied_output) m->output = m->tok_embd;
    if (m->n_rot > 0 && (rc = bind_vec(L, &m->rope_freqs, "rope_freqs.weight", m->n_rot / 2, 0, e))) return rc;

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return et_fail(e, ET_ERUN, "%s: out of memory", L->path);
    for (int l = 0; l < hp->n_layer; l++) {
        m->layers[l].n_head = hp->layer_n_head[l];
        m->layers[l].n_head_kv = hp->layer_n_head_kv[l];
        m->layers[l].n_ff = hp->layer_n_ff[l];
        if ((rc = bind_layer(L, m, l, e))) return rc;
        if (m->layers[l].bq || m->layers[l].bk || m->layers[l].bv) hp->qkv_bias = 1;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!L->used[i])
            return et_fail(e, ET_EINPUT, "%s: unexpected tensor '%.*s' for arch %s with %d layers", L->path,
                           (int)(g->tensors[i].name.len < 64 ? g->tensors[i].name.len : 64), g->tensors[i].name.ptr,
                           L->arch, hp->n_layer);

    if (gguf_find_key(g, "tokenizer.ggml.model") >= 0) {
        if ((rc = et_tok_from_gguf(&m->tok, g, e))) return rc;
        /* the shared vocabulary check (datasets/tokenizer.h); output.weight was bound with the same rows */
        if ((rc = et_tok_check_rows(m->tok, L->path, "token_embd.weight", hp->n_vocab, e))) return rc;
    }
    return 0;
}

/* The whole pages inside [p, p + n) back to the OS (madvise MADV_DONTNEED,
 * Linux): memory of the engine's own copy or mapping of the file, never
 * read again.  Nothing elsewhere or when refused. */
static void give_back(const void *p, size_t n) {
#if defined(__linux__) && defined(MADV_DONTNEED)
    const long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0) return;
    const uintptr_t a = ((uintptr_t)p + (uintptr_t)ps - 1) & ~((uintptr_t)ps - 1);
    const uintptr_t b = ((uintptr_t)p + n) & ~((uintptr_t)ps - 1);
    if (b > a) (void)madvise((void *)a, (size_t)(b - a), MADV_DONTNEED);
#else
    (void)p, (void)n;
#endif
}

/* Repack the 32-element block matrices into 16-row groups (engine/repack.h)
 * when this CPU runs the repacked kernels and $ET_REPACK is not "0": one
 * allocation for all of them (about the size of those tensors' data; Q5_0
 * and Q5_1 grow to 34 and 36 bytes per 32 elements).  When the engine owns
 * the file's bytes (its huge-page copy or its own mapping: own != 0, not a
 * caller's buffer) and $ET_REPACK is not "keep", the original bytes of the
 * repacked rows are given back to the OS (et_wmat.n_dropped): the weights
 * are resident once, not twice; the few readers of single rows (token
 * lookups, a last partial group, the other kernel sets) rebuild them from the
 * groups (et_wmat_row).  Out of memory leaves the rows unpacked (the dot
 * kernels give the same bits). */
static void engine_repack(et_engine *m, int own) {
    const char *env = getenv("ET_REPACK");
    if ((env && !strcmp(env, "0")) || !et_repack_cpu()) return;
    const int drop = own && !(env && !strcmp(env, "keep"));
    int n = et_engine_mats(m, NULL, 0);
    et_wmat **all = malloc(sizeof *all * (size_t)(n > 0 ? n : 1));
    if (!all) return;
    et_engine_mats(m, all, n);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += et_repack_group_bytes(all[i]->type, all[i]->n_in) * (size_t)(all[i]->n_out / ET_RP_ROWS);
    size_t alloc = 0;
    uint8_t *mem = total ? et_engine_huge_alloc(total, &alloc) : NULL;   /* huge pages: generation streams it */
    if (mem) {
        size_t off = 0;
        for (int i = 0; i < n; i++) {
            et_wmat *w = all[i];
            size_t gb = et_repack_group_bytes(w->type, w->n_in);
            int ng = w->n_out / ET_RP_ROWS;
            if (!gb || !ng) continue;
            for (int g = 0; g < ng; g++)
                et_repack_group(w->type, w->n_in, (const uint8_t *)w->data + (size_t)g * ET_RP_ROWS * w->row_bytes,
                                w->row_bytes, mem + off + (size_t)g * gb);
            w->packed = mem + off;
            off += gb * (size_t)ng;
            if (drop && w->row_bytes <= ET_WMAT_ROW_MAX) {   /* at once: the peak holds one matrix twice, not all */
                w->n_dropped = ng * ET_RP_ROWS;
                give_back(w->data, (size_t)w->n_dropped * w->row_bytes);
            }
        }
        mprotect(mem, alloc, PROT_READ);   /* read-only, as the weights it copies */
        m->packed_mem = mem;
        m->packed_bytes = alloc;
        if (m->hp.tied_output) m->output.packed = m->tok_embd.packed, m->output.n_dropped = m->tok_embd.n_dropped;
    }
    free(all);
}

/* Open (from a file, or a caller's buffer when data != NULL) and load;
 * repack 0: validation only (et_engine_check_file), no repacked copy. */
static int engine_open(et_engine **out, const char *path, const void *data, size_t size, int repack, et_err *e) {
    *out = NULL;
    et_kernels_init();
    et_engine *m = calloc(1, sizeof *m);
    if (!m) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    m->path = dupstr(path);
    const int own = data == NULL;   /* the bytes are the engine's (its copy or mapping), not the caller's */
    if (!data && (m->huge = et_engine_huge_copy(path, &size, &m->huge_alloc))) data = m->huge;
    int rc = data ? gguf_open_mem(&m->gguf, data, size, path, e) : gguf_open(&m->gguf, path, e);
    if (rc || !m->path) {
        if (!rc) gguf_close(&m->gguf);
        et_engine_huge_free(m->huge, m->huge_alloc);
        free(m->path);
        free(m);
        return rc ? rc : et_fail(e, ET_ERUN, "%s: out of memory", path);
    }
    m->from_gguf = 1;
    loader L = {0};
    L.g = &m->gguf;
    L.path = path;
    L.used = calloc(m->gguf.n_tensors + 1, 1);
    rc = L.used ? load_gguf(m, &L, e) : et_fail(e, ET_ERUN, "%s: out of memory", path);
    free(L.used);
    if (rc) {
        et_engine_free(m);
        return rc;
    }
    if (repack) engine_repack(m, own);
    *out = m;
    return 0;
}

int et_engine_load(et_engine **out, const char *path, et_err *e) { return engine_open(out, path, NULL, 0, 1, e); }

int et_engine_load_mem(et_engine **out, const void *data, size_t size, const char *name, et_err *e) {
    return engine_open(out, name, data, size, 1, e);
}

int et_engine_check_file(const char *path, et_err *e) {
    /* its callers (quantize, merge) read the file again: a FIFO is refused unopened */
    int rc = et_need_regular(path, "the model is validated, then read again", e);
    if (rc) return rc;
    gguf_file g;
    rc = gguf_open(&g, path, e);   /* mapped in place: no copy of the weights */
    if (rc) return rc;
    char arch[32] = "";
    if (gguf_find_key(&g, "general.architecture") >= 0) gguf_get_str(&g, "general.architecture", arch, sizeof arch, NULL);
    if (strcmp(arch, "llama") && strcmp(arch, "deci")) {   /* other archs: not ours to judge (llama-quantize's) */
        gguf_close(&g);
        return 0;
    }
    et_engine *m = NULL;
    rc = engine_open(&m, path, g.map.data, g.map.size, 0, e);   /* checked, never run: no repacking */
    static const char *const ids[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                      "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"};
    for (size_t i = 0; !rc && m->tok && i < sizeof ids / sizeof *ids; i++) {
        int64_t v;
        if (gguf_find_key(&g, ids[i]) < 0) continue;
        if ((rc = gguf_get_i64(&g, ids[i], &v, e))) break;
        if (v == -1 || v == (int64_t)UINT32_MAX) continue;   /* "none", as llama.cpp's converters write it */
        if (v < 0 || v >= et_tok_n_vocab(m->tok))
            rc = et_fail(e, ET_EINPUT, "%s: key '%s' is %lld, outside the vocabulary [0, %d)", path, ids[i],
                         (long long)v, et_tok_n_vocab(m->tok));
    }
    et_engine_free(m);
    gguf_close(&g);
    return rc;
}

/* ------------------------------------------------------------ from et_model */

static float *copy_vec(const float *v, int n) {
    if (!v) return NULL;
    float *c = malloc(sizeof(float) * (size_t)n);
    if (c) memcpy(c, v, sizeof(float) * (size_t)n);
    return c;
}

int et_engine_from_model(et_engine **out, const et_model *src, et_err *e) {
    *out = NULL;
    et_kernels_init();
    const et_hparams *sh = &src->hp;
    if (sh->n_layer < 1 || sh->n_embd < 1 || sh->n_vocab < 1 || sh->head_dim < 1 || !src->tok_embd)
        return et_fail(e, ET_EINPUT, "model: incomplete hyperparameters or weights");
    et_engine *m = calloc(1, sizeof *m);
    if (!m) return et_fail(e, ET_ERUN, "model: out of memory");
    m->path = dupstr("(in-memory model)");
    m->hp = *sh;
    int L = sh->n_layer;
    m->hp.layer_n_head = malloc(sizeof(int) * (size_t)L);
    m->hp.layer_n_head_kv = malloc(sizeof(int) * (size_t)L);
    m->hp.layer_n_ff = malloc(sizeof(int) * (size_t)L);
    m->layers = calloc((size_t)L, sizeof *m->layers);
    if (!m->hp.layer_n_head || !m->hp.layer_n_head_kv || !m->hp.layer_n_ff || !m->layers) goto oom;
    for (int l = 0; l < L; l++) {
        m->hp.layer_n_head[l] = sh->layer_n_head ? sh->layer_n_head[l] : sh->n_head;
        m->hp.layer_n_head_kv[l] = sh->layer_n_head_kv ? sh->layer_n_head_kv[l] : sh->n_head_kv;
        m->hp.layer_n_ff[l] = sh->layer_n_ff ? sh->layer_n_ff[l] : sh->n_ff;
    }
    m->n_rot = sh->head_dim;
    m->rope_freq_scale = 1.0f;
    int d = sh->n_embd, hd = sh->head_dim;
    wmat_set(&m->tok_embd, "token_embd.weight", src->tok_embd, GGML_TYPE_F32, d, sh->n_vocab);
    m->hp.tied_output = !src->output || src->output == src->tok_embd;
    if (m->hp.tied_output) m->output = m->tok_embd;
    else wmat_set(&m->output, "output.weight", src->output, GGML_TYPE_F32, d, sh->n_vocab);
    if (!(m->output_norm = copy_vec(src->output_norm, d))) goto oom;
    for (int l = 0; l < L; l++) {
        et_engine_layer *ly = &m->layers[l];
        const et_layer *s = &src->layers[l];
        ly->n_head = m->hp.layer_n_head[l];
        ly->n_head_kv = m->hp.layer_n_head_kv[l];
        ly->n_ff = m->hp.layer_n_ff[l];
        if (ly->n_head > 0 && (ly->n_head_kv <= 0 || ly->n_head % ly->n_head_kv)) {
            et_engine_free(m);
            return et_fail(e, ET_EINPUT, "model: layer %d: head_count %d / head_count_kv %d", l, ly->n_head,
                           ly->n_head_kv);
        }
        char nm[GGUF_MAX_NAME];
#define NAME(suffix) (snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix), nm)
        if (ly->n_head > 0) {
            int nq = ly->n_head * hd, nkv = ly->n_head_kv * hd;
            if (!(ly->attn_norm = copy_vec(s->attn_norm, d))) goto oom;
            wmat_set(&ly->wq, NAME("attn_q.weight"), s->wq, GGML_TYPE_F32, d, nq);
            wmat_set(&ly->wk, NAME("attn_k.weight"), s->wk, GGML_TYPE_F32, d, nkv);
            wmat_set(&ly->wv, NAME("attn_v.weight"), s->wv, GGML_TYPE_F32, d, nkv);
            wmat_set(&ly->wo, NAME("attn_output.weight"), s->wo, GGML_TYPE_F32, nq, d);
            ly->bq = copy_vec(s->bq, nq);
            ly->bk = copy_vec(s->bk, nkv);
            ly->bv = copy_vec(s->bv, nkv);
        }
        if (ly->n_ff > 0) {
            if (!(ly->ffn_norm = copy_vec(s->ffn_norm, d))) goto oom;
            wmat_set(&ly->w_gate, NAME("ffn_gate.weight"), s->w_gate, GGML_TYPE_F32, d, ly->n_ff);
            wmat_set(&ly->w_up, NAME("ffn_up.weight"), s->w_up, GGML_TYPE_F32, d, ly->n_ff);
            wmat_set(&ly->w_down, NAME("ffn_down.weight"), s->w_down, GGML_TYPE_F32, ly->n_ff, d);
        }
#undef NAME
    }
    m->tok = src->tok; /* borrowed: freed only for engines loaded from GGUF */
    *out = m;
    return 0;
oom:
    et_engine_free(m);
    return et_fail(e, ET_ERUN, "model: out of memory");
}

/* ------------------------------------------------------------ teardown and sizes */

static void free_lora(et_wmat *w) {
    free(w->lora);
    w->lora = NULL;
    w->n_lora = 0;
}

void et_engine_free(et_engine *m) {
    if (!m) return;
    et_engine_detach_all(m);
    if (m->layers)
        for (int l = 0; l < m->hp.n_layer; l++) {
            et_engine_layer *ly = &m->layers[l];
            free(ly->attn_norm);
            free(ly->ffn_norm);
            free(ly->bq);
            free(ly->bk);
            free(ly->bv);
            free(ly->bo);
        }
    free(m->layers);
    free(m->output_norm);
    free(m->rope_freqs);
    free(m->hp.layer_n_head);
    free(m->hp.layer_n_head_kv);
    free(m->hp.layer_n_ff);
    if (m->from_gguf) {
        et_tok_free(m->tok);
        gguf_close(&m->gguf);
    }
    et_engine_huge_free(m->huge, m->huge_alloc);
    et_engine_huge_free(m->packed_mem, m->packed_bytes);
    free(m->path);
    free(m);
}

/* Every weight matrix of the model, for iteration (attach, detach, sizes). */
int et_engine_mats(et_engine *m, et_wmat **out, int cap) {
    int n = 0;
#define ADD(w) do { if ((w)->data) { if (n < cap) out[n] = (w); n++; } } while (0)
    ADD(&m->tok_embd);
    if (!m->hp.tied_output) ADD(&m->output);
    for (int l = 0; l < m->hp.n_layer; l++) {
        et_engine_layer *ly = &m->layers[l];
        ADD(&ly->wq); ADD(&ly->wk); ADD(&ly->wv); ADD(&ly->wo);
        ADD(&ly->w_gate); ADD(&ly->w_up); ADD(&ly->w_down);
    }
#undef ADD
    return n;
}

void et_engine_detach_all(et_engine *m) {
    if (!m || !m->layers) return;
    free_lora(&m->tok_embd);
    free_lora(&m->output);
    for (int l = 0; l < m->hp.n_layer; l++) {
        et_engine_layer *ly = &m->layers[l];
        free_lora(&ly->wq); free_lora(&ly->wk); free_lora(&ly->wv); free_lora(&ly->wo);
        free_lora(&ly->w_gate); free_lora(&ly->w_up); free_lora(&ly->w_down);
    }
}

int et_engine_max_q(const et_engine *m) {
    int x = 0;
    for (int l = 0; l < m->hp.n_layer; l++)
        if (m->layers[l].n_head * m->hp.head_dim > x) x = m->layers[l].n_head * m->hp.head_dim;
    return x;
}

int et_engine_max_kv(const et_engine *m) {
    int x = 0;
    for (int l = 0; l < m->hp.n_layer; l++)
        if (m->layers[l].n_head_kv * m->hp.head_dim > x) x = m->layers[l].n_head_kv * m->hp.head_dim;
    return x;
}

int et_engine_max_ff(const et_engine *m) {
    int x = 0;
    for (int l = 0; l < m->hp.n_layer; l++)
        if (m->layers[l].n_ff > x) x = m->layers[l].n_ff;
    return x;
}

uint64_t et_engine_weight_bytes(const et_engine *m) {
    et_wmat *mats[1];
    int n = et_engine_mats((et_engine *)m, mats, 0);
    et_wmat **all = malloc(sizeof(et_wmat *) * (size_t)(n > 0 ? n : 1));
    if (!all) return 0;
    et_engine_mats((et_engine *)m, all, n);
    uint64_t bytes = 0;
    for (int i = 0; i < n; i++)
        bytes += all[i] == &m->tok_embd && !m->hp.tied_output ? all[i]->row_bytes
                                                              : (uint64_t)all[i]->row_bytes * (uint64_t)all[i]->n_out;
    free(all);
    return bytes;
}
