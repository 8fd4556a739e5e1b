/* datasets/tokenizer_gguf.c — the tokenizer.ggml.* keys of a GGUF file:
 * reading them as llama.cpp's llama_vocab::impl::load does (defaults,
 * out-of-range special ids ignored), and writing them as gguf-py's
 * GGUFWriter.add_tokenizer_* do.  C11 + libc only. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_int.h"

static const gguf_kv *find_kv(const gguf_file *g, const char *key) {
    int64_t i = gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

static int bad_type(const gguf_file *g, const gguf_kv *kv, const char *key, const char *want, et_err *e) {
    return et_fail(e, ET_EINPUT, "%s: byte %llu: key '%s' should be %s", g->path,
                   (unsigned long long)kv->file_offset, key, want);
}

/* Special id key: kept only when present and inside the vocabulary
 * (llama.cpp warns and keeps its default otherwise). */
static void read_id(const gguf_file *g, const char *key, int n_vocab, int *id) {
    int64_t v;
    if (gguf_find_key(g, key) >= 0 && gguf_get_i64(g, key, &v, NULL) == 0 && v >= 0 && v < n_vocab) *id = (int)v;
}

static int read_bool(const gguf_file *g, const char *key, int *out) {
    int v;
    if (gguf_find_key(g, key) < 0 || gguf_get_bool(g, key, &v, NULL)) return 0;
    *out = v != 0;
    return 1;
}

int et_tok_from_gguf(et_tokenizer **out, const gguf_file *g, et_err *e) {
    *out = NULL;
    char model[64], pre[64] = "", name[256] = "";
    if (gguf_get_str(g, "tokenizer.ggml.model", model, sizeof model, e)) return ET_EINPUT;
    if (gguf_find_key(g, "tokenizer.ggml.pre") >= 0 &&
        gguf_get_str(g, "tokenizer.ggml.pre", pre, sizeof pre, e))
        return ET_EINPUT;
    if (gguf_find_key(g, "general.name") >= 0) gguf_get_str(g, "general.name", name, sizeof name, NULL);
    et_tok_spec s = {.bos = -1, .eos = -1, .unk = -1, .pad = -1, .add_bos = -1, .add_eos = -1,
                     .add_space_prefix = -1, .pre = pre, .name = name};
    if (strcmp(model, "llama") == 0) {
        s.model = ET_TOK_SPM;
        s.bos = 1; s.eos = 2; s.unk = 0; /* llama.cpp defaults for SPM */
    } else if (strcmp(model, "gpt2") == 0) {
        s.model = ET_TOK_BPE;
        s.bos = 11; s.eos = 11;          /* llama.cpp defaults for BPE */
    } else {
        return et_fail(e, ET_EINPUT, "%s: tokenizer.ggml.model '%s' is not supported (only 'llama' and 'gpt2')",
                       g->path, model);
    }
    const gguf_kv *tk = find_kv(g, "tokenizer.ggml.tokens");
    if (!tk) return et_fail(e, ET_EINPUT, "%s: missing key 'tokenizer.ggml.tokens'", g->path);
    if (tk->type != GGUF_TYPE_ARRAY || tk->arr_type != GGUF_TYPE_STRING)
        return bad_type(g, tk, "tokenizer.ggml.tokens", "an array of strings", e);
    if (tk->n == 0 || tk->n > (1u << 30))
        return et_fail(e, ET_EINPUT, "%s: tokenizer.ggml.tokens has %llu entries", g->path, (unsigned long long)tk->n);
    int n = (int)tk->n;
    s.n_vocab = n;

    const char **pieces = malloc((size_t)n * sizeof *pieces);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    float *scores = NULL;
    int32_t *types = NULL;
    const char **merges = NULL;
    size_t *mlens = NULL;
    int rc = 0;
    if (!pieces || !lens) { rc = et_fail(e, ET_ERUN, "%s: out of memory", g->path); goto done; }
    for (int i = 0; i < n; i++) {
        pieces[i] = tk->strs[i].ptr;
        lens[i] = (size_t)tk->strs[i].len;
    }
    s.pieces = pieces;
    s.piece_lens = lens;

    const gguf_kv *sc = find_kv(g, "tokenizer.ggml.scores");
    if (sc) {
        if (sc->type != GGUF_TYPE_ARRAY || (sc->arr_type != GGUF_TYPE_FLOAT32 && sc->arr_type != GGUF_TYPE_INT32)) {
            rc = bad_type(g, sc, "tokenizer.ggml.scores", "an array of FLOAT32 or INT32", e);
            goto done;
        }
        if (sc->n < (uint64_t)n) {
            rc = et_fail(e, ET_EINPUT, "%s: tokenizer.ggml.scores has %llu entries for %d tokens", g->path,
                         (unsigned long long)sc->n, n);
            goto done;
        }
        scores = malloc((size_t)n * sizeof *scores);
        if (!scores) { rc = et_fail(e, ET_ERUN, "%s: out of memory", g->path); goto done; }
        for (int i = 0; i < n; i++) {
            double v = 0;
            gguf_arr_f64(sc, (uint64_t)i, &v);
            scores[i] = (float)v;
        }
        s.scores = scores;
    }
    const gguf_kv *ty = find_kv(g, "tokenizer.ggml.token_type");
    if (ty) {
        if (ty->type != GGUF_TYPE_ARRAY || ty->arr_type != GGUF_TYPE_INT32) {
            rc = bad_type(g, ty, "tokenizer.ggml.token_type", "an array of INT32", e);
            goto done;
        }
        if (ty->n < (uint64_t)n) {
            rc = et_fail(e, ET_EINPUT, "%s: tokenizer.ggml.token_type has %llu entries for %d tokens", g->path,
                         (unsigned long long)ty->n, n);
            goto done;
        }
        types = malloc((size_t)n * sizeof *types);
        if (!types) { rc = et_fail(e, ET_ERUN, "%s: out of memory", g->path); goto done; }
        for (int i = 0; i < n; i++) {
            int64_t v = 0;
            gguf_arr_i64(ty, (uint64_t)i, &v);
            types[i] = (int32_t)v;
        }
        s.types = types;
    }
    if (s.model == ET_TOK_BPE) {
        const gguf_kv *mg = find_kv(g, "tokenizer.ggml.merges");
        if (!mg) { rc = et_fail(e, ET_EINPUT, "%s: missing key 'tokenizer.ggml.merges'", g->path); goto done; }
        if (mg->type != GGUF_TYPE_ARRAY || mg->arr_type != GGUF_TYPE_STRING) {
            rc = bad_type(g, mg, "tokenizer.ggml.merges", "an array of strings", e);
            goto done;
        }
        if (mg->n > (1u << 30)) { rc = et_fail(e, ET_EINPUT, "%s: too many merges", g->path); goto done; }
        merges = malloc((mg->n + 1) * sizeof *merges);
        mlens = malloc((mg->n + 1) * sizeof *mlens);
        if (!merges || !mlens) { rc = et_fail(e, ET_ERUN, "%s: out of memory", g->path); goto done; }
        for (uint64_t i = 0; i < mg->n; i++) {
            merges[i] = mg->strs[i].ptr;
            mlens[i] = (size_t)mg->strs[i].len;
        }
        s.n_merges = (size_t)mg->n;
        s.merges = merges;
        s.merge_lens = mlens;
    }
    for (int *id = &s.bos; id <= &s.pad; id++) /* a default outside the vocabulary is none */
        if (*id >= n) *id = -1;
    read_id(g, "tokenizer.ggml.bos_token_id", n, &s.bos);
    read_id(g, "tokenizer.ggml.eos_token_id", n, &s.eos);
    read_id(g, "tokenizer.ggml.unknown_token_id", n, &s.unk);
    read_id(g, "tokenizer.ggml.padding_token_id", n, &s.pad);
    read_bool(g, "tokenizer.ggml.add_bos_token", &s.add_bos);
    read_bool(g, "tokenizer.ggml.add_eos_token", &s.add_eos);
    read_bool(g, "tokenizer.ggml.add_space_prefix", &s.add_space_prefix);
    rc = et_tok_build(out, &s, g->path, e);
    const gguf_kv *ct = find_kv(g, "tokenizer.chat_template"); /* optional: another type is ignored */
    if (!rc && ct && ct->type == GGUF_TYPE_STRING) {
        rc = et_tok_set_chat_template(*out, ct->strs[0].ptr, (size_t)ct->strs[0].len, e);
        if (rc) {
            et_tok_free(*out);
            *out = NULL;
        }
    }
done:
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    free(merges);
    free(mlens);
    return rc;
}

int et_tok_write_gguf(const et_tokenizer *t, gguf_writer *w, et_err *e) {
    int n = t->n_vocab, rc = 0;
    const char **strs = malloc((size_t)n * sizeof *strs);
    uint64_t *lens = malloc((size_t)n * sizeof *lens);
    const char **ms = NULL;
    uint64_t *mls = NULL;
    if (!strs || !lens) goto oom;
    rc |= gguf_set_str(w, "tokenizer.ggml.model", t->model == ET_TOK_SPM ? "llama" : "gpt2");
    if (t->pre_name[0]) rc |= gguf_set_str(w, "tokenizer.ggml.pre", t->pre_name);
    for (int i = 0; i < n; i++) {
        size_t l;
        strs[i] = et_tok_str(t, i, &l);
        lens[i] = l;
    }
    rc |= gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, lens, (uint64_t)n);
    if (t->has_scores) rc |= gguf_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, t->scores, (uint64_t)n);
    rc |= gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, t->types, (uint64_t)n);
    if (t->model == ET_TOK_BPE) {
        ms = malloc((t->n_merges + 1) * sizeof *ms);
        mls = malloc((t->n_merges + 1) * sizeof *mls);
        if (!ms || !mls) goto oom;
        for (size_t i = 0; i < t->n_merges; i++) {
            ms[i] = t->mbuf + t->moff[i];
            mls[i] = t->mlen[i];
        }
        rc |= gguf_set_arr_str(w, "tokenizer.ggml.merges", ms, mls, t->n_merges);
    }
    if (t->bos >= 0) rc |= gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos);
    if (t->eos >= 0) rc |= gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos);
    if (t->unk >= 0) rc |= gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)t->unk);
    if (t->pad >= 0) rc |= gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)t->pad);
    if (t->src_add_bos >= 0) rc |= gguf_set_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos);
    if (t->src_add_eos >= 0) rc |= gguf_set_bool(w, "tokenizer.ggml.add_eos_token", t->add_eos);
    if (t->src_add_space_prefix >= 0) rc |= gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", t->add_space_prefix);
    if (t->chat_template) rc |= gguf_set_str(w, "tokenizer.chat_template", t->chat_template);
    free(strs);
    free(lens);
    free(ms);
    free(mls);
    if (rc) return et_fail(e, ET_ERUN, "tokenizer: cannot add tokenizer.ggml.* keys (out of memory?)");
    return 0;
oom:
    free(strs);
    free(lens);
    free(ms);
    free(mls);
    return et_fail(e, ET_ERUN, "tokenizer: out of memory writing %d tokens", n);
}
