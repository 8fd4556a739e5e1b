/* datasets/hf_tokenizer.c — Hugging Face tokenizer.json -> et_tokenizer.
 * See hf_tokenizer.h for what is understood; the token types follow
 * llama.cpp convert_hf_to_gguf.py (get_vocab_base, does_token_look_special). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "hf_tokenizer.h"

/* ------------------------------------------------------------ helpers */

static const cJSON *obj(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static const char *str_of(const cJSON *o, const char *key) {
    const cJSON *v = obj(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* 1 if key is absent/null, or is the boolean want. */
static int bool_is(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = obj(o, key);
    if (!v || cJSON_IsNull(v)) return dflt;
    return cJSON_IsTrue(v) ? 1 : cJSON_IsFalse(v) ? 0 : -1;
}

/* Integer value in [0, INT_MAX), or -1. */
static int id_of(const cJSON *v) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d < (double)(1 << 30)) || d != (double)(int)d) return -1;
    return (int)d;
}

/* Line (1-based) of byte offset off. */
static size_t line_of(const char *s, size_t off) {
    size_t line = 1;
    for (size_t i = 0; i < off; i++) line += s[i] == '\n';
    return line;
}

/* Parse JSON text; on failure an ET_EINPUT naming the file, line and byte. */
static cJSON *parse_json(const char *json, size_t len, const char *name, et_err *e) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t off = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        et_fail(e, ET_EINPUT, "%s: malformed JSON at line %zu (byte offset %zu)", name, line_of(json, off), off);
    }
    return root;
}

static int looks_special(const char *s) {
    size_t n = strlen(s);
    if (!strcmp(s, "<pad>") || !strcmp(s, "<mask>") || !strcmp(s, "<2mass>") || !strcmp(s, "[@BOS@]")) return 1;
    if (n >= 4 && !strncmp(s, "<|", 2) && !strcmp(s + n - 2, "|>")) return 1;
    static const char fw_open[] = "<\xef\xbd\x9c", fw_close[] = "\xef\xbd\x9c>"; /* <｜ ... ｜> */
    if (n >= 8 && !strncmp(s, fw_open, 4) && !strcmp(s + n - 4, fw_close)) return 1;
    if (n >= 8 && !strncmp(s, "<unused", 7) && s[n - 1] == '>') return 1;
    return 0;
}

/* ------------------------------------------------------- pre-tokenizer */

static const char *const re_gpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char *const re_gpt2_short = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
static const char *const re_llama3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *const re_qwen2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Compare a Split regex with a known one, reading a literal CR or LF in
 * the pattern as the escape \r / \n. */
static int same_regex(const char *got, const char *want) {
    while (*got && *want) {
        if (*got == '\r' || *got == '\n') {
            if (want[0] != '\\' || want[1] != (*got == '\r' ? 'r' : 'n')) return 0;
            got++;
            want += 2;
            continue;
        }
        if (*got++ != *want++) return 0;
    }
    return !*got && !*want;
}

static int is_type(const cJSON *o, const char *type) {
    const char *t = str_of(o, "type");
    return t && !strcmp(t, type);
}

/* ByteLevel with use_regex as wanted and no prefix space. */
static int is_bytelevel(const cJSON *o, int use_regex) {
    return is_type(o, "ByteLevel") && bool_is(o, "use_regex", 1) == use_regex && bool_is(o, "add_prefix_space", 0) == 0;
}

/* Pre-tokenizer kind as a tokenizer.ggml.pre name, or NULL. */
static const char *pre_name(const cJSON *pre, int ignore_merges) {
    const cJSON *list[8];
    int n = 0;
    if (is_type(pre, "Sequence")) {
        const cJSON *it, *arr = obj(pre, "pretokenizers");
        if (!cJSON_IsArray(arr)) return NULL;
        cJSON_ArrayForEach(it, arr) {
            if (n == 8) return NULL;
            list[n++] = it;
        }
    } else {
        list[n++] = pre;
    }
    if (n == 1 && is_bytelevel(list[0], 1)) return ignore_merges ? NULL : "gpt-2";
    if (n == 2 && is_type(list[0], "Digits") && bool_is(list[0], "individual_digits", 0) == 1 && is_bytelevel(list[1], 1))
        return ignore_merges ? NULL : "smollm";
    if (n == 2 && is_type(list[0], "Split") && is_bytelevel(list[1], 0)) {
        const cJSON *pat = obj(list[0], "pattern");
        const char *re = pat ? str_of(pat, "Regex") : NULL;
        const char *beh = str_of(list[0], "behavior");
        if (!re || (beh && strcmp(beh, "Isolated")) || bool_is(list[0], "invert", 0) != 0) return NULL;
        if (same_regex(re, re_llama3)) return ignore_merges ? "llama-bpe" : "dbrx";
        if (ignore_merges) return NULL;
        if (same_regex(re, re_qwen2)) return "qwen2";
        if (same_regex(re, re_gpt2) || same_regex(re, re_gpt2_short)) return "gpt-2";
    }
    return NULL;
}

/* ---------------------------------------------------- sibling configs */

static char *read_sibling(const char *path, const char *name, size_t *len) {
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path + 1) : 0;
    char *p = malloc(dir + strlen(name) + 1);
    if (!p) return NULL;
    memcpy(p, path, dir);
    strcpy(p + dir, name);
    et_map m;
    char *out = NULL;
    if (et_map_open(&m, p, NULL) == 0) {
        out = malloc(m.size + 1);
        if (out) {
            if (m.size) memcpy(out, m.data, m.size);
            out[m.size] = 0;
            *len = m.size;
        }
        et_map_close(&m);
    }
    free(p);
    return out;
}

/* Token text of a tokenizer_config.json entry: "text" or {"content": "text"}. */
static const char *token_text(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    return cJSON_IsObject(v) ? str_of(v, "content") : NULL;
}

/* ---------------------------------------------------------------- load */

typedef struct hf_vocab {
    int n;
    char **pieces;      /* [n] owned copies (NULL = hole) */
    size_t *lens;
    int32_t *types;
} hf_vocab;

static void vocab_free(hf_vocab *v) {
    if (v->pieces)
        for (int i = 0; i < v->n; i++) free(v->pieces[i]);
    free(v->pieces);
    free(v->lens);
    free(v->types);
}

static int set_piece(hf_vocab *v, int id, const char *s) {
    free(v->pieces[id]);
    v->lens[id] = strlen(s);
    v->pieces[id] = malloc(v->lens[id] + 1);
    if (!v->pieces[id]) return -1;
    memcpy(v->pieces[id], s, v->lens[id] + 1);
    return 0;
}

static int find_piece(const hf_vocab *v, const char *s) {
    for (int i = 0; i < v->n; i++)
        if (v->pieces[i] && !strcmp(v->pieces[i], s)) return i;
    return -1;
}

/* Merge i as "left right" (pair parts: ' ' -> U+0120). */
static char *merge_string(const cJSON *m) {
    if (cJSON_IsString(m)) return strdup(m->valuestring);
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) != 2) return NULL;
    const cJSON *a = cJSON_GetArrayItem(m, 0), *b = cJSON_GetArrayItem(m, 1);
    if (!cJSON_IsString(a) || !cJSON_IsString(b)) return NULL;
    size_t na = strlen(a->valuestring), nb = strlen(b->valuestring);
    char *s = malloc(2 * (na + nb) + 2), *w = s;
    if (!s) return NULL;
    for (const char *p = a->valuestring; *p; p++) {
        if (*p == ' ') { *w++ = (char)0xC4; *w++ = (char)0xA0; } else *w++ = *p;
    }
    *w++ = ' ';
    for (const char *p = b->valuestring; *p; p++) {
        if (*p == ' ') { *w++ = (char)0xC4; *w++ = (char)0xA0; } else *w++ = *p;
    }
    *w = 0;
    return s;
}

static int load(et_tokenizer **out, const char *json, size_t len, const char *name, const char *path, et_err *e) {
    *out = NULL;
    cJSON *root = parse_json(json, len, name, e), *tcfg = NULL, *cfg = NULL;
    if (!root) return ET_EINPUT;
    hf_vocab v = {0};
    char **merges = NULL;
    size_t *mlens = NULL, n_merges = 0;
    int rc = 0;
#define BAD(...) do { rc = et_fail(e, ET_EINPUT, __VA_ARGS__); goto done; } while (0)
    if (!cJSON_IsObject(root)) BAD("%s: not a tokenizer.json (top level is not an object)", name);
    const cJSON *model = obj(root, "model");
    if (!cJSON_IsObject(model)) BAD("%s: missing object 'model'", name);
    const char *mtype = str_of(model, "type");
    if (mtype && strcmp(mtype, "BPE"))
        BAD("%s: model.type '%s' is not supported (only byte-level BPE)", name, mtype);
    if (bool_is(model, "byte_fallback", 0) == 1)
        BAD("%s: model.byte_fallback is set: a SentencePiece-style BPE tokenizer.json is not supported "
            "(load the model's GGUF or tokenizer.model instead)", name);
    const char *csp = str_of(model, "continuing_subword_prefix"), *eows = str_of(model, "end_of_word_suffix");
    if ((csp && *csp) || (eows && *eows))
        BAD("%s: model.continuing_subword_prefix / end_of_word_suffix are not supported", name);
    const cJSON *vocab = obj(model, "vocab"), *mg = obj(model, "merges"), *added = obj(root, "added_tokens");
    if (!cJSON_IsObject(vocab)) BAD("%s: missing object 'model.vocab'", name);
    if (!cJSON_IsArray(mg)) BAD("%s: missing array 'model.merges'", name);
    if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added)) BAD("%s: 'added_tokens' is not an array", name);
    int ignore_merges = bool_is(model, "ignore_merges", 0);
    if (ignore_merges < 0) BAD("%s: model.ignore_merges is not a boolean", name);

    /* ids */
    int max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        int id = id_of(it);
        if (id < 0) BAD("%s: model.vocab['%.64s']: id is not an integer in [0, 2^30)", name, it->string);
        if (id > max_id) max_id = id;
    }
    cJSON_ArrayForEach(it, added) {
        int id = id_of(obj(it, "id"));
        if (id < 0 || !str_of(it, "content")) BAD("%s: added_tokens: an entry lacks a valid 'id' or 'content'", name);
        if (id > max_id) max_id = id;
    }
    if (max_id < 0) BAD("%s: empty vocabulary", name);
    size_t n_entries = (size_t)cJSON_GetArraySize(vocab) + (added ? (size_t)cJSON_GetArraySize(added) : 0);
    if ((size_t)max_id >= 2 * n_entries + 1024) /* refuse absurd ids before allocating for them */
        BAD("%s: token id %d is far beyond the %zu tokens given", name, max_id, n_entries);
    v.n = max_id + 1;
    v.pieces = calloc((size_t)v.n, sizeof *v.pieces);
    v.lens = calloc((size_t)v.n, sizeof *v.lens);
    v.types = calloc((size_t)v.n, sizeof *v.types);
    if (!v.pieces || !v.lens || !v.types) { rc = et_fail(e, ET_ERUN, "%s: out of memory", name); goto done; }
    cJSON_ArrayForEach(it, vocab) {
        int id = id_of(it);
        if (v.pieces[id]) BAD("%s: model.vocab: id %d is used twice ('%.64s', '%.64s')", name, id, v.pieces[id], it->string);
        if (!it->string[0]) BAD("%s: model.vocab: empty token for id %d", name, id);
        if (set_piece(&v, id, it->string)) { rc = et_fail(e, ET_ERUN, "%s: out of memory", name); goto done; }
        v.types[id] = ET_TOKT_NORMAL;
    }
    cJSON_ArrayForEach(it, added) {
        int id = id_of(obj(it, "id"));
        const char *content = str_of(it, "content");
        if (!content[0]) BAD("%s: added_tokens: empty content for id %d", name, id);
        int special = bool_is(it, "special", 0) == 1 || looks_special(content);
        if (special) {
            if (set_piece(&v, id, content)) { rc = et_fail(e, ET_ERUN, "%s: out of memory", name); goto done; }
            v.types[id] = ET_TOKT_CONTROL;
        } else { /* user-defined spaces are pre-normalized: U+2581 -> ' ' */
            size_t n = strlen(content);
            char *s = malloc(n + 1), *w = s;
            if (!s) { rc = et_fail(e, ET_ERUN, "%s: out of memory", name); goto done; }
            for (size_t k = 0; k < n;) {
                if (n - k >= 3 && !memcmp(content + k, "\xe2\x96\x81", 3)) { *w++ = ' '; k += 3; }
                else *w++ = content[k++];
            }
            *w = 0;
            int r = set_piece(&v, id, s);
            free(s);
            if (r) { rc = et_fail(e, ET_ERUN, "%s: out of memory", name); goto done; }
            v.types[id] = ET_TOKT_USER_DEFINED;
        }
    }
    for (int i = 0; i < v.n; i++)
        if (!v.pieces[i]) { /* hole: llama.cpp's converter writes [PADi] UNUSED */
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%d]", i);
            if (set_piece(&v, i, pad)) { rc = et_fail(e, ET_ERUN, "%s: out of memory", name); goto done; }
            v.types[i] = ET_TOKT_UNUSED;
        }

    /* merges */
    size_t nm = (size_t)cJSON_GetArraySize(mg);
    merges = calloc(nm + 1, sizeof *merges);
    mlens = calloc(nm + 1, sizeof *mlens);
    if (!merges || !mlens) { rc = et_fail(e, ET_ERUN, "%s: out of memory", name); goto done; }
    cJSON_ArrayForEach(it, mg) {
        char *m = merge_string(it);
        if (!m) BAD("%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", name, n_merges);
        merges[n_merges] = m;
        mlens[n_merges++] = strlen(m);
    }

    /* pre-tokenizer, normalizer */
    const cJSON *norm = obj(root, "normalizer");
    if (norm && !cJSON_IsNull(norm) && !is_type(norm, "NFC")) {
        const char *t = str_of(norm, "type");
        BAD("%s: normalizer '%s' is not supported (only none or NFC)", name, t ? t : "?");
    }
    const cJSON *pre = obj(root, "pre_tokenizer");
    const char *pre_s = pre && !cJSON_IsNull(pre) ? pre_name(pre, ignore_merges) : NULL;
    if (!pre_s) {
        char *txt = pre ? cJSON_PrintUnformatted(pre) : NULL;
        rc = et_fail(e, ET_EINPUT, "%s: pre_tokenizer %.300s%s is not supported (known: ByteLevel; "
                     "Sequence[Digits(individual_digits), ByteLevel]; Sequence[Split(GPT-2, llama3 or qwen2 "
                     "regex), ByteLevel(use_regex=false)])%s", name, txt ? txt : "null",
                     txt && strlen(txt) > 300 ? "..." : "", ignore_merges ? " with model.ignore_merges" : "");
        free(txt);
        goto done;
    }

    /* special ids: template, then sibling configs */
    int bos = -1, eos = -1, pad = -1, add_bos = 0, add_eos = 0;
    const cJSON *post = obj(root, "post_processor");
    if (is_type(post, "TemplateProcessing")) {
        const cJSON *single = obj(post, "single");
        int n = cJSON_IsArray(single) ? cJSON_GetArraySize(single) : 0;
        for (int k = 0; k < n; k += n - 1 > 0 ? n - 1 : 1) { /* first and last items */
            const cJSON *sp = obj(cJSON_GetArrayItem(single, k), "SpecialToken");
            const char *tid = sp ? str_of(sp, "id") : NULL;
            int id = tid ? find_piece(&v, tid) : -1;
            if (id >= 0 && k == 0) { bos = id; add_bos = 1; }
            else if (id >= 0 && k == n - 1) { eos = id; add_eos = 1; }
        }
    }
    if (path) {
        size_t n;
        char *t = read_sibling(path, "tokenizer_config.json", &n);
        if (t) {
            tcfg = cJSON_ParseWithLength(t, n);
            free(t);
        }
        t = read_sibling(path, "config.json", &n);
        if (t) {
            cfg = cJSON_ParseWithLength(t, n);
            free(t);
        }
    }
    if (cJSON_IsObject(tcfg)) {
        const char *b = token_text(obj(tcfg, "bos_token")), *s = token_text(obj(tcfg, "eos_token"));
        const char *p = token_text(obj(tcfg, "pad_token"));
        if (b && find_piece(&v, b) >= 0) bos = find_piece(&v, b);
        if (s && find_piece(&v, s) >= 0) eos = find_piece(&v, s);
        if (p && find_piece(&v, p) >= 0) pad = find_piece(&v, p);
        int ab = bool_is(tcfg, "add_bos_token", -1), ae = bool_is(tcfg, "add_eos_token", -1);
        if (ab >= 0) add_bos = ab;
        if (ae >= 0) add_eos = ae;
    }
    if (cJSON_IsObject(cfg)) {
        int b = id_of(obj(cfg, "bos_token_id")), s = id_of(obj(cfg, "eos_token_id")), p = id_of(obj(cfg, "pad_token_id"));
        if (bos < 0 && b >= 0 && b < v.n) bos = b;
        if (eos < 0 && s >= 0 && s < v.n) eos = s;
        if (pad < 0 && p >= 0 && p < v.n) pad = p;
    }
    if (eos < 0) { /* the usual end-of-text markers */
        static const char *const names[] = {"<|endoftext|>", "</s>", "<|end_of_text|>", NULL};
        for (int k = 0; names[k] && eos < 0; k++) eos = find_piece(&v, names[k]);
    }
    if (add_bos && bos < 0) add_bos = 0;
    if (add_eos && eos < 0) add_eos = 0;

    et_tok_spec s = {
        .model = ET_TOK_BPE, .pre = pre_s, .n_vocab = v.n, .pieces = (const char *const *)v.pieces,
        .piece_lens = v.lens, .types = v.types, .n_merges = n_merges, .merges = (const char *const *)merges,
        .merge_lens = mlens, .bos = bos, .eos = eos, .unk = -1, .pad = pad, .add_bos = add_bos,
        .add_eos = add_eos, .add_space_prefix = 0,
    };
    rc = et_tok_build(out, &s, name, e);
#undef BAD
done:
    if (merges)
        for (size_t i = 0; i < n_merges; i++) free(merges[i]);
    free(merges);
    free(mlens);
    vocab_free(&v);
    cJSON_Delete(root);
    cJSON_Delete(tcfg);
    cJSON_Delete(cfg);
    return rc;
}

int et_tok_from_hf_json_mem(et_tokenizer **out, const char *json, size_t len, const char *name, et_err *e) {
    return load(out, json, len, name ? name : "tokenizer.json", NULL, e);
}

/* The chat_template string of the tokenizer_config.json beside `path`, as
 * llama.cpp's converters (gguf-py SpecialVocab) copy it into
 * tokenizer.chat_template.  A missing or unreadable file is no error. */
static int read_hf_chat_template(et_tokenizer *t, const char *path, et_err *e) {
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    char *cfg = malloc(dl + sizeof "tokenizer_config.json");
    if (!cfg) return et_fail(e, ET_ERUN, "out of memory");
    memcpy(cfg, path, dl);
    memcpy(cfg + dl, "tokenizer_config.json", sizeof "tokenizer_config.json");
    et_map m;
    int rc = 0;
    if (!et_map_open(&m, cfg, NULL)) {
        cJSON *j = cJSON_ParseWithLength((const char *)m.data, m.size);
        const cJSON *ct = j ? cJSON_GetObjectItemCaseSensitive(j, "chat_template") : NULL;
        if (cJSON_IsString(ct) && ct->valuestring)
            rc = et_tok_set_chat_template(t, ct->valuestring, strlen(ct->valuestring), e);
        cJSON_Delete(j);
        et_map_close(&m);
    }
    free(cfg);
    return rc;
}

int et_tok_from_hf_json(et_tokenizer **out, const char *path, et_err *e) {
    et_map m;
    *out = NULL;
    int rc = et_map_open(&m, path, e);
    if (rc) return rc;
    rc = load(out, (const char *)m.data, m.size, path, path, e);
    et_map_close(&m);
    if (!rc && (rc = read_hf_chat_template(*out, path, e))) {
        et_tok_free(*out);
        *out = NULL;
    }
    return rc;
}

int et_tok_load(et_tokenizer **out, const char *path, et_err *e) {
    et_map m;
    *out = NULL;
    int rc = et_map_open(&m, path, e);
    if (rc) return rc;
    size_t i = 0;
    while (i < m.size && (m.data[i] == ' ' || m.data[i] == '\t' || m.data[i] == '\n' || m.data[i] == '\r')) i++;
    if (m.size >= 4 && !memcmp(m.data, "GGUF", 4)) {
        et_map_close(&m);
        gguf_file g;
        if ((rc = gguf_open(&g, path, e))) return rc;
        rc = et_tok_from_gguf(out, &g, e);
        gguf_close(&g);
        return rc;
    }
    if (i < m.size && m.data[i] == '{') rc = load(out, (const char *)m.data, m.size, path, path, e);
    else rc = et_tok_from_llama2c_mem(out, m.data, m.size, 0, path, e);
    et_map_close(&m);
    return rc;
}
