/* datasets/tokenizer.c — SentencePiece-style BPE ("llama") and GPT-2
 * byte-level BPE ("gpt2") encoding and decoding, following llama.cpp
 * src/llama-vocab.cpp (llm_tokenizer_spm_session, llm_tokenizer_bpe_session,
 * tokenizer_st_partition, token_to_piece) so that ids match llama.cpp's
 * tests/test-tokenizer-0 vectors exactly.  C11 + libc only.
 *
 * Reading order: hashing and strings; UTF-8; building the vocabulary;
 * special-token partition; SPM; BPE; encode; decode; fingerprint; llama2.c
 * tokenizer.bin.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_int.h"

/* ------------------------------------------------------------ hashing */

static uint64_t mix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x100000001b3ULL;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)s[i] << (8 * i);
    return mix64(h ^ w);
}

static uint64_t pow2_at_least(uint64_t n) {
    uint64_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

int et_tok_lookup(const et_tokenizer *t, const char *s, size_t len) {
    uint64_t i = hash_bytes(s, len) & t->hmask;
    for (;;) {
        int32_t id = t->htab[i];
        if (id < 0) return -1;
        if (t->slen[id] == len && memcmp(t->sbuf + t->soff[id], s, len) == 0) return id;
        i = (i + 1) & t->hmask;
    }
}

/* Insert string id (already in sbuf) unless an equal string exists;
 * returns the id now holding that text. */
static int32_t hash_insert(et_tokenizer *t, int32_t id) {
    const char *s = t->sbuf + t->soff[id];
    size_t len = t->slen[id];
    uint64_t i = hash_bytes(s, len) & t->hmask;
    for (;;) {
        int32_t cur = t->htab[i];
        if (cur < 0) { t->htab[i] = id; return id; }
        if (t->slen[cur] == len && memcmp(t->sbuf + t->soff[cur], s, len) == 0) return cur;
        i = (i + 1) & t->hmask;
    }
}

static uint64_t pair_key(int32_t a, int32_t b) {
    return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1; /* 0 marks an empty slot */
}

/* Rank of merge (a, b) and its result id in *res, or -1. */
static int64_t pair_find(const et_tokenizer *t, int32_t a, int32_t b, int32_t *res) {
    if (!t->pkey) return -1;
    uint64_t k = pair_key(a, b), i = mix64(k) & t->pmask;
    for (;;) {
        if (t->pkey[i] == 0) return -1;
        if (t->pkey[i] == k) { *res = t->pres[i]; return t->prank[i]; }
        i = (i + 1) & t->pmask;
    }
}

/* Growable arrays. */
typedef struct ivec { int32_t *v; size_t n, cap; } ivec;

static int ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

int et_szvec_push(et_szvec *a, size_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        size_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

typedef struct cbuf { char *v; size_t n, cap; } cbuf;

static int cbuf_put(cbuf *b, const void *p, size_t n) {
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n + 1) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        char *v = realloc(b->v, cap);
        if (!v) return -1;
        b->v = v;
        b->cap = cap;
    }
    memcpy(b->v + b->n, p, n);
    b->n += n;
    b->v[b->n] = 0;
    return 0;
}

/* ------------------------------------------------------------- UTF-8 */

size_t et_utf8_check(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07; min = 0x10000; }
        else return i;
        if (len - i < n) return i;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += n;
    }
    return len;
}

uint32_t et_utf8_decode(const uint8_t *s, size_t n, int *len) {
    uint8_t c = s[0];
    if (c < 0x80 || n < 2) { *len = 1; return c; }
    if ((c & 0xE0) == 0xC0) { *len = 2; return ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F); }
    if ((c & 0xF0) == 0xE0 && n >= 3) {
        *len = 3;
        return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    if (n >= 4) {
        *len = 4;
        return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
               ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    }
    *len = 1;
    return c;
}

static int utf8_encode(uint32_t cp, uint8_t out[4]) {
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { out[0] = (uint8_t)(0xC0 | (cp >> 6)); out[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the UTF-8 sequence starting with byte c, from its high bits
 * (llama.cpp unicode_len_utf8). */
static size_t utf8_len(uint8_t c) {
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

/* GPT-2 bytes_to_unicode (openai/gpt-2 encoder.py): printable bytes map to
 * themselves, the other 68 to U+0100.. in byte order. */
static void gpt2_byte_chars(et_tokenizer *t) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = printable ? (uint32_t)b : (uint32_t)(256 + n++);
        uint8_t u[4];
        t->byte_chr_len[b] = (uint8_t)utf8_encode(cp, u);
        memcpy(t->byte_chr[b], u, t->byte_chr_len[b]);
    }
}

/* Byte of a GPT-2 character (inverse of the map above), or -1. */
static int gpt2_char_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return (int)cp;
    if (cp < 256 || cp >= 256 + 68) return -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        if (!printable && (uint32_t)(256 + n++) == cp) return b;
    }
    return -1;
}

/* ------------------------------------------------- building a vocabulary */

void et_tok_free(et_tokenizer *t) {
    if (!t) return;
    free(t->sbuf);
    free(t->soff);
    free(t->slen);
    free(t->scores);
    free(t->types);
    free(t->attr);
    free(t->htab);
    free(t->moff);
    free(t->mlen);
    free(t->mbuf);
    free(t->pkey);
    free(t->prank);
    free(t->pres);
    free(t->specials);
    free(t->chat_template);
    free(t);
}

const char *et_tok_chat_template(const et_tokenizer *t) { return t->chat_template; }

int et_tok_set_chat_template(et_tokenizer *t, const char *tmpl, size_t len, et_err *e) {
    char *c = NULL;
    if (tmpl) {
        if (!(c = malloc(len + 1))) return et_fail(e, ET_ERUN, "tokenizer: out of memory");
        memcpy(c, tmpl, len);
        c[len] = 0;
    }
    free(t->chat_template);
    t->chat_template = c;
    return 0;
}

/* Append a string to sbuf as string id t->n_str (capacity is reserved by
 * the caller). Returns the id holding that text (an existing one if equal). */
static int32_t intern(et_tokenizer *t, const char *s, size_t len, size_t *cap) {
    if (*cap - t->sbuf_len < len + 1) {
        size_t nc = *cap * 2 + len + 1;
        char *b = realloc(t->sbuf, nc);
        if (!b) return -2;
        t->sbuf = b;
        *cap = nc;
    }
    int32_t id = t->n_str;
    memcpy(t->sbuf + t->sbuf_len, s, len);
    t->sbuf[t->sbuf_len + len] = 0;
    t->soff[id] = t->sbuf_len;
    t->slen[id] = (uint32_t)len;
    int32_t got = hash_insert(t, id);
    if (got == id) {
        t->sbuf_len += len + 1;
        t->n_str++;
    }
    return got;
}

static uint16_t attr_of_type(int32_t type) {
    switch (type) {
    case ET_TOKT_NORMAL: return ET_A_NORMAL;
    case ET_TOKT_UNKNOWN: return ET_A_UNKNOWN;
    case ET_TOKT_CONTROL: return ET_A_CONTROL;
    case ET_TOKT_USER_DEFINED: return ET_A_USER;
    case ET_TOKT_UNUSED: return ET_A_UNUSED;
    case ET_TOKT_BYTE: return ET_A_BYTE;
    default: return ET_A_UNDEFINED;
    }
}

/* Tokens llama.cpp forces to CONTROL by their text (end-of-generation and
 * fill-in-the-middle markers; llama_vocab::impl::load). */
static const char *const forced_control[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[",
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>",
    "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>",
    "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>",
    "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>",
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
    NULL,
};

static int contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        size_t k = 0;
        while (k < n && p[k] && tolower((unsigned char)p[k]) == needle[k]) k++;
        if (k == n) return 1;
    }
    return 0;
}

static int cmp_special(const void *a, const void *b, void *ctx);

/* qsort has no context argument in C11: sort specials with a small merge
 * sort instead (stable: longer text first, then lower id). */
static void sort_specials(const et_tokenizer *t, int32_t *v, int32_t *tmp, int n) {
    if (n < 2) return;
    int h = n / 2;
    sort_specials(t, v, tmp, h);
    sort_specials(t, v + h, tmp, n - h);
    int i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = cmp_special(&v[j], &v[i], (void *)t) < 0 ? v[j++] : v[i++];
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, (size_t)n * sizeof *v);
}

static int cmp_special(const void *a, const void *b, void *ctx) {
    const et_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->slen[x] != t->slen[y]) return t->slen[x] > t->slen[y] ? -1 : 1;
    return x < y ? -1 : (x > y);
}

/* Split merge string "left right" at the first space after byte 0, as
 * llama.cpp does (word.find(' ', 1)); 0 if there is none. */
static int split_merge(const char *s, size_t n, size_t *sp) {
    for (size_t i = 1; i < n; i++)
        if (s[i] == ' ') { *sp = i; return 1; }
    return 0;
}

static int build_merges(et_tokenizer *t, const et_tok_spec *s, size_t *scap, const char *src, et_err *e) {
    size_t total = 0;
    for (size_t i = 0; i < s->n_merges; i++) {
        if (s->merge_lens[i] > UINT32_MAX || total > SIZE_MAX / 2)
            return et_fail(e, ET_EINPUT, "%s: merge %zu is too long", src, i);
        total += s->merge_lens[i] + 1;
    }
    t->n_merges = s->n_merges;
    t->moff = malloc((s->n_merges + 1) * sizeof *t->moff);
    t->mlen = malloc((s->n_merges + 1) * sizeof *t->mlen);
    t->mbuf = malloc(total + 1);
    uint64_t pcap = pow2_at_least(2 * (uint64_t)s->n_merges + 2);
    t->pmask = pcap - 1;
    t->pkey = calloc(pcap, sizeof *t->pkey);
    t->prank = malloc(pcap * sizeof *t->prank);
    t->pres = malloc(pcap * sizeof *t->pres);
    char *cat = NULL;
    size_t catcap = 0;
    if (!t->moff || !t->mlen || !t->mbuf || !t->pkey || !t->prank || !t->pres)
        return et_fail(e, ET_ERUN, "%s: out of memory for %zu merges", src, s->n_merges);
    size_t off = 0;
    for (size_t i = 0; i < s->n_merges; i++) {
        const char *m = s->merges[i];
        size_t n = s->merge_lens[i], sp;
        memcpy(t->mbuf + off, m, n);
        t->mbuf[off + n] = 0;
        t->moff[i] = off;
        t->mlen[i] = (uint32_t)n;
        off += n + 1;
        if (!split_merge(m, n, &sp)) continue; /* llama.cpp keeps ("", ""): never matches */
        int32_t a = intern(t, m, sp, scap);
        int32_t b = intern(t, m + sp + 1, n - sp - 1, scap);
        if (catcap < n) {
            catcap = n * 2;
            char *c2 = realloc(cat, catcap);
            if (!c2) { free(cat); return et_fail(e, ET_ERUN, "%s: out of memory", src); }
            cat = c2;
        }
        memcpy(cat, m, sp);
        memcpy(cat + sp, m + sp + 1, n - sp - 1);
        int32_t r = intern(t, cat, n - 1, scap);
        if (a < 0 || b < 0 || r < 0) { free(cat); return et_fail(e, ET_ERUN, "%s: out of memory", src); }
        uint64_t k = pair_key(a, b), j = mix64(k) & t->pmask;
        while (t->pkey[j] != 0 && t->pkey[j] != k) j = (j + 1) & t->pmask;
        if (t->pkey[j] == 0) { /* first occurrence keeps its rank (std::map::emplace) */
            t->pkey[j] = k;
            t->prank[j] = (uint32_t)i;
            t->pres[j] = r;
        }
    }
    free(cat);
    return 0;
}

int et_tok_build(et_tokenizer **out, const et_tok_spec *s, const char *src, et_err *e) {
    *out = NULL;
    if (!src) src = "tokenizer";
    if (s->model != ET_TOK_SPM && s->model != ET_TOK_BPE)
        return et_fail(e, ET_EINPUT, "%s: unknown tokenizer model %d", src, s->model);
    if (s->n_vocab <= 0 || s->n_vocab > (1 << 30))
        return et_fail(e, ET_EINPUT, "%s: vocabulary size %d out of range", src, s->n_vocab);
    if (s->model == ET_TOK_BPE && s->n_merges > (size_t)1 << 30)
        return et_fail(e, ET_EINPUT, "%s: %zu merges is too many", src, s->n_merges);
    et_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return et_fail(e, ET_ERUN, "%s: out of memory", src);
    t->model = s->model;
    t->n_vocab = s->n_vocab;
    int rc = 0;

    /* pre-tokenizer */
    const char *pre = s->pre && s->pre[0] ? s->pre : NULL;
    int add_bos_default = s->model == ET_TOK_SPM;
    if (s->model == ET_TOK_BPE) {
        int kind, ign, ab;
        if (et_pre_lookup(pre ? pre : "default", &kind, &ign, &ab)) {
            rc = et_fail(e, ET_EINPUT, "%s: pre-tokenizer '%s' is not supported (edgetune knows "
                         "default, gpt-2, llama-bpe/llama3, qwen2, smollm/starcoder, deepseek-llm and aliases)",
                         src, pre);
            goto fail;
        }
        t->pre = kind;
        t->ignore_merges = ign;
        add_bos_default = ab;
    }
    if (pre) {
        if (strlen(pre) >= sizeof t->pre_name) { rc = et_fail(e, ET_EINPUT, "%s: pre-tokenizer name too long", src); goto fail; }
        strcpy(t->pre_name, pre);
    }

    /* strings: pieces first (ids 0..n_vocab-1), then merge parts */
    size_t total = 0;
    for (int i = 0; i < s->n_vocab; i++) {
        size_t n = s->piece_lens[i] ? s->piece_lens[i] : 24; /* "[EMPTY_i]" */
        if (n > UINT32_MAX || total > SIZE_MAX / 4) { rc = et_fail(e, ET_EINPUT, "%s: token %d too long", src, i); goto fail; }
        total += n + 1;
    }
    size_t n_str_cap = (size_t)s->n_vocab + (s->model == ET_TOK_BPE ? 3 * s->n_merges : 0);
    size_t scap = total + 16;
    t->sbuf = malloc(scap);
    t->soff = malloc(n_str_cap * sizeof *t->soff);
    t->slen = malloc(n_str_cap * sizeof *t->slen);
    t->scores = calloc((size_t)s->n_vocab, sizeof *t->scores);
    t->types = malloc((size_t)s->n_vocab * sizeof *t->types);
    t->attr = malloc((size_t)s->n_vocab * sizeof *t->attr);
    uint64_t hcap = pow2_at_least(2 * (uint64_t)n_str_cap + 2);
    t->hmask = hcap - 1;
    t->htab = malloc(hcap * sizeof *t->htab);
    if (!t->sbuf || !t->soff || !t->slen || !t->scores || !t->types || !t->attr || !t->htab) {
        rc = et_fail(e, ET_ERUN, "%s: out of memory for %d tokens", src, s->n_vocab);
        goto fail;
    }
    memset(t->htab, 0xFF, hcap * sizeof *t->htab);
    for (int i = 0; i < s->n_vocab; i++) {
        char empty[32];
        const char *p = s->pieces[i];
        size_t n = s->piece_lens[i];
        if (n == 0) { /* llama.cpp renames empty tokens */
            n = (size_t)snprintf(empty, sizeof empty, "[EMPTY_%d]", i);
            p = empty;
        }
        int32_t got = intern(t, p, n, &scap);
        if (got == -2) { rc = et_fail(e, ET_ERUN, "%s: out of memory", src); goto fail; }
        if (got != i) {
            rc = et_fail(e, ET_EINPUT, "%s: duplicate token in vocabulary: '%.*s' has ids %d and %d",
                         src, (int)(n > 64 ? 64 : n), p, got, i);
            goto fail;
        }
        t->scores[i] = s->scores ? s->scores[i] : 0.0f;
        t->types[i] = s->types ? s->types[i] : ET_TOKT_NORMAL;
        t->attr[i] = attr_of_type(t->types[i]);
    }
    t->has_scores = s->scores != NULL;
    if (s->model == ET_TOK_BPE && (rc = build_merges(t, s, &scap, src, e))) goto fail;

    /* special ids */
    int ids[4] = {s->bos, s->eos, s->unk, s->pad};
    static const char *const id_names[4] = {"bos", "eos", "unk", "pad"};
    for (int k = 0; k < 4; k++)
        if (ids[k] < -1 || ids[k] >= s->n_vocab) {
            rc = et_fail(e, ET_EINPUT, "%s: %s token id %d out of range [0, %d)", src, id_names[k], ids[k], s->n_vocab);
            goto fail;
        }
    t->bos = s->bos;
    t->eos = s->eos;
    t->unk = s->unk;
    t->pad = s->pad;
    t->src_add_bos = s->add_bos;
    t->src_add_eos = s->add_eos;
    t->src_add_space_prefix = s->add_space_prefix;
    t->add_bos = s->add_bos >= 0 ? s->add_bos != 0 : add_bos_default;
    t->add_eos = s->add_eos >= 0 ? s->add_eos != 0 : 0;
    t->add_space_prefix = s->add_space_prefix >= 0 ? s->add_space_prefix != 0 : s->model == ET_TOK_SPM;

    /* name-based attribute fix-ups (llama.cpp llama_vocab::impl::load) */
    for (int k = 0; forced_control[k]; k++) {
        int id = et_tok_find(t, forced_control[k], strlen(forced_control[k]));
        if (id >= 0) t->attr[id] |= ET_A_CONTROL;
    }
    int n_sp = 0;
    for (int i = 0; i < s->n_vocab; i++)
        if (t->attr[i] & (ET_A_CONTROL | ET_A_USER | ET_A_UNKNOWN)) n_sp++;
    t->specials = malloc((size_t)(n_sp ? n_sp : 1) * 2 * sizeof *t->specials);
    if (!t->specials) { rc = et_fail(e, ET_ERUN, "%s: out of memory", src); goto fail; }
    for (int i = 0; i < s->n_vocab; i++)
        if (t->attr[i] & (ET_A_CONTROL | ET_A_USER | ET_A_UNKNOWN)) t->specials[t->n_specials++] = i;
    sort_specials(t, t->specials, t->specials + n_sp, n_sp);
    if (s->name && (contains_ci(s->name, "phi-3") || contains_ci(s->name, "phi3"))) {
        for (int k = 0; k < t->n_specials; k++) t->attr[t->specials[k]] |= ET_A_RSTRIP;
        int id = et_tok_find(t, "</s>", 4);
        if (id >= 0) t->attr[id] |= ET_A_RSTRIP;
        static const char *const no_rstrip[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (int k = 0; k < 3; k++)
            if ((id = et_tok_find(t, no_rstrip[k], strlen(no_rstrip[k]))) >= 0) t->attr[id] &= ~ET_A_RSTRIP;
    }

    /* adjacent byte pairs occurring inside pieces (SPM chunking) */
    for (int i = 0; i < s->n_vocab; i++) {
        size_t n;
        const uint8_t *p = (const uint8_t *)et_tok_str(t, i, &n);
        for (size_t k = 1; k < n; k++) {
            unsigned pr = (unsigned)p[k - 1] << 8 | p[k];
            t->pairbits[pr >> 6] |= (uint64_t)1 << (pr & 63);
        }
    }

    /* byte tables */
    gpt2_byte_chars(t);
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_tok1[b] = et_tok_find(t, &c, 1);
        t->byte_sym[b] = et_tok_lookup(t, (const char *)t->byte_chr[b], t->byte_chr_len[b]);
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        int id = et_tok_find(t, hex, 6);
        t->byte_fallback[b] = id >= 0 ? id : t->byte_tok1[b];
    }
    *out = t;
    return 0;
fail:
    et_tok_free(t);
    return rc;
}

/* ------------------------------------------------------------ accessors */

int et_tok_model(const et_tokenizer *t) { return t->model; }
int et_tok_n_vocab(const et_tokenizer *t) { return t->n_vocab; }
int et_tok_bos(const et_tokenizer *t) { return t->bos; }
int et_tok_eos(const et_tokenizer *t) { return t->eos; }
int et_tok_pad(const et_tokenizer *t) { return t->pad; }
int et_tok_unk(const et_tokenizer *t) { return t->unk; }
int et_tok_add_bos(const et_tokenizer *t) { return t->add_bos; }
const char *et_tok_pre(const et_tokenizer *t) { return t->pre_name; }
size_t et_tok_n_merges(const et_tokenizer *t) { return t->n_merges; }

int et_tok_type(const et_tokenizer *t, int id) {
    return id >= 0 && id < t->n_vocab ? t->types[id] : 0;
}

float et_tok_score(const et_tokenizer *t, int id) {
    return id >= 0 && id < t->n_vocab ? t->scores[id] : 0.0f;
}

const char *et_tok_piece(const et_tokenizer *t, int id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    size_t n;
    const char *s = et_tok_str(t, id, &n);
    if (len) *len = n;
    return s;
}

int et_tok_find(const et_tokenizer *t, const char *piece, size_t len) {
    int id = et_tok_lookup(t, piece, len);
    return id < t->n_vocab ? id : -1;
}

/* ------------------------------------------------- special-token partition */

/* First occurrence of needle (m > 0 bytes) in hay (n bytes), or NULL
 * (memmem is not in C11). */
static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t m) {
    if (m == 0 || m > n) return NULL;
    const char *end = hay + (n - m);
    for (const char *p = hay; p <= end;) {
        const char *q = memchr(p, (unsigned char)needle[0], (size_t)(end - p) + 1);
        if (!q) return NULL;
        if (memcmp(q, needle, m) == 0) return q;
        p = q + 1;
    }
    return NULL;
}

/* A fragment of the input: raw text [off, off+len) or a special token. */
typedef struct frag { size_t off, len; int32_t tok; } frag;
typedef struct fragvec { frag *v; size_t n, cap; } fragvec;

static int frag_push(fragvec *a, size_t off, size_t len, int32_t tok) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        frag *v = realloc(a->v, cap * sizeof *v);
        if (!v) return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = (frag){off, len, tok};
    return 0;
}

/* Split raw fragments on every occurrence of each special token, longest
 * tokens first (llama.cpp tokenizer_st_partition).  Without parse_special
 * only USER_DEFINED tokens are matched.  LSTRIP/RSTRIP drop ASCII
 * whitespace next to a match. */
static int partition(const et_tokenizer *t, const char *text, size_t len, int parse_special, fragvec *out) {
    fragvec cur = {0}, nxt = {0};
    if (len && frag_push(&cur, 0, len, -1)) return -1;
    for (int k = 0; k < t->n_specials; k++) {
        int32_t id = t->specials[k];
        uint16_t a = t->attr[id];
        if (!parse_special && (a & (ET_A_CONTROL | ET_A_UNKNOWN))) continue;
        size_t slen;
        const char *s = et_tok_str(t, id, &slen);
        nxt.n = 0;
        for (size_t f = 0; f < cur.n; f++) {
            frag fr = cur.v[f];
            if (fr.tok >= 0) { if (frag_push(&nxt, fr.off, fr.len, fr.tok)) goto oom; continue; }
            size_t base = fr.off, blen = fr.len;
            while (blen > 0) {
                const char *m = find_bytes(text + base, blen, s, slen);
                if (!m) break;
                size_t mpos = (size_t)(m - text), left = mpos - base;
                if (a & ET_A_LSTRIP)
                    while (left > 0 && isspace((unsigned char)text[base + left - 1])) left--;
                if (left > 0 && frag_push(&nxt, base, left, -1)) goto oom;
                if (frag_push(&nxt, 0, 0, id)) goto oom;
                size_t roff = mpos + slen, rlen = base + blen - roff;
                if (a & ET_A_RSTRIP)
                    while (rlen > 0 && isspace((unsigned char)text[roff])) { roff++; rlen--; }
                base = roff;
                blen = rlen;
            }
            if (blen > 0 && frag_push(&nxt, base, blen, -1)) goto oom;
        }
        fragvec tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    free(nxt.v);
    *out = cur;
    return 0;
oom:
    free(cur.v);
    free(nxt.v);
    return -1;
}

/* --------------------------------------------------------------- SPM */

typedef struct spm_sym { size_t start; uint32_t n; int32_t prev, next; } spm_sym;
typedef struct spm_bigram { float score; int32_t left, right; uint32_t size; } spm_bigram;

/* Max-heap order of llama.cpp llm_bigram_spm::comparator: higher score
 * first, then the leftmost pair. */
static int spm_before(const spm_bigram *a, const spm_bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct spm_heap { spm_bigram *v; size_t n, cap; } spm_heap;

static int spm_heap_push(spm_heap *h, spm_bigram x) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        spm_bigram *v = realloc(h->v, cap * sizeof *v);
        if (!v) return -1;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!spm_before(&x, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = x;
    return 0;
}

static spm_bigram spm_heap_pop(spm_heap *h) {
    spm_bigram top = h->v[0], x = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && spm_before(&h->v[c + 1], &h->v[c])) c++;
        if (!spm_before(&h->v[c], &x)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = x;
    return top;
}

typedef struct spm_state { spm_sym *sym; size_t nsym, capsym; spm_heap heap; } spm_state;

static int spm_try_bigram(const et_tokenizer *t, spm_state *st, const char *s, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    size_t n = st->sym[l].n + st->sym[r].n;
    int id = et_tok_find(t, s + st->sym[l].start, n);
    if (id < 0) return 0;
    return spm_heap_push(&st->heap, (spm_bigram){t->scores[id], l, r, (uint32_t)n});
}

/* Emit the ids of one symbol: its token, or byte fallback <0xXX>. */
static int spm_emit(const et_tokenizer *t, const char *s, const spm_sym *y, ivec *out) {
    int id = et_tok_find(t, s + y->start, y->n);
    if (id >= 0) return ivec_push(out, id);
    for (uint32_t j = 0; j < y->n; j++) {
        int b = t->byte_fallback[(uint8_t)s[y->start + j]];
        if (b < 0) b = t->unk;          /* llama.cpp would throw here */
        if (b >= 0 && ivec_push(out, b)) return -1;
    }
    return 0;
}

/* llm_tokenizer_spm_session::tokenize over escaped text s (n bytes). */
static int spm_tokenize(const et_tokenizer *t, spm_state *st, const char *s, size_t n, ivec *out) {
    st->nsym = 0;
    st->heap.n = 0;
    for (size_t off = 0; off < n;) {
        size_t len = utf8_len((uint8_t)s[off]);
        if (len > n - off) len = n - off;
        if (st->nsym == st->capsym) {
            size_t cap = st->capsym ? st->capsym * 2 : 256;
            spm_sym *v = realloc(st->sym, cap * sizeof *v);
            if (!v) return -1;
            st->sym = v;
            st->capsym = cap;
        }
        int32_t idx = (int32_t)st->nsym;
        off += len;
        st->sym[st->nsym++] = (spm_sym){off - len, (uint32_t)len, idx - 1, off == n ? -1 : idx + 1};
    }
    if (st->nsym > INT32_MAX) return -1;
    for (size_t i = 1; i < st->nsym; i++)
        if (spm_try_bigram(t, st, s, (int32_t)i - 1, (int32_t)i)) return -1;
    while (st->heap.n) {
        spm_bigram bg = spm_heap_pop(&st->heap);
        spm_sym *l = &st->sym[bg.left], *r = &st->sym[bg.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != bg.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) st->sym[r->next].prev = bg.left;
        if (spm_try_bigram(t, st, s, l->prev, bg.left)) return -1;
        if (spm_try_bigram(t, st, s, bg.left, l->next)) return -1;
    }
    for (int32_t i = st->nsym ? 0 : -1; i != -1; i = st->sym[i].next)
        if (spm_emit(t, s, &st->sym[i], out)) return -1;
    return 0;
}

/* ---------------------------------------------------------------- BPE */

typedef struct bpe_sym { uint32_t start, n; int32_t id, prev, next; } bpe_sym;
typedef struct bpe_bigram { uint32_t rank; int32_t left, right, lid, rid, res; } bpe_bigram;

/* Min-heap order of llama.cpp llm_bigram_bpe::comparator: lowest rank
 * first, then the leftmost pair. */
static int bpe_before(const bpe_bigram *a, const bpe_bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

typedef struct bpe_state {
    bpe_sym *sym;
    size_t capsym;
    bpe_bigram *heap;
    size_t nheap, capheap;
    cbuf enc;           /* scratch: a word in GPT-2 characters */
} bpe_state;

static int bpe_heap_push(bpe_state *st, bpe_bigram x) {
    if (st->nheap == st->capheap) {
        size_t cap = st->capheap ? st->capheap * 2 : 64;
        bpe_bigram *v = realloc(st->heap, cap * sizeof *v);
        if (!v) return -1;
        st->heap = v;
        st->capheap = cap;
    }
    size_t i = st->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bpe_before(&x, &st->heap[p])) break;
        st->heap[i] = st->heap[p];
        i = p;
    }
    st->heap[i] = x;
    return 0;
}

static bpe_bigram bpe_heap_pop(bpe_state *st) {
    bpe_bigram top = st->heap[0], x = st->heap[--st->nheap];
    size_t i = 0, n = st->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bpe_before(&st->heap[c + 1], &st->heap[c])) c++;
        if (!bpe_before(&st->heap[c], &x)) break;
        st->heap[i] = st->heap[c];
        i = c;
    }
    if (n) st->heap[i] = x;
    return top;
}

static int bpe_add_bigram(const et_tokenizer *t, bpe_state *st, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    int32_t a = st->sym[l].id, b = st->sym[r].id, res;
    if (a < 0 || b < 0) return 0;
    int64_t rank = pair_find(t, a, b, &res);
    if (rank < 0) return 0;
    return bpe_heap_push(st, (bpe_bigram){(uint32_t)rank, l, r, a, b, res});
}

/* Bytes [0, n) of w as GPT-2 characters into st->enc. */
static int bpe_encode_chars(const et_tokenizer *t, bpe_state *st, const uint8_t *w, size_t n) {
    st->enc.n = 0;
    for (size_t i = 0; i < n; i++)
        if (cbuf_put(&st->enc, t->byte_chr[w[i]], t->byte_chr_len[w[i]])) return -1;
    return 0;
}

/* One pre-tokenized word (raw bytes) -> ids; the word's symbols are its
 * bytes, each standing for its GPT-2 character (llm_tokenizer_bpe_session). */
static int bpe_word(const et_tokenizer *t, bpe_state *st, const uint8_t *w, size_t n, ivec *out) {
    if (n == 0) return 0;
    if (t->ignore_merges) {
        if (bpe_encode_chars(t, st, w, n)) return -1;
        int id = et_tok_find(t, st->enc.v, st->enc.n);
        if (id >= 0) return ivec_push(out, id);
    }
    if (n > st->capsym) {
        bpe_sym *v = realloc(st->sym, n * sizeof *v);
        if (!v) return -1;
        st->sym = v;
        st->capsym = n;
    }
    for (size_t i = 0; i < n; i++)
        st->sym[i] = (bpe_sym){(uint32_t)i, 1, t->byte_sym[w[i]], (int32_t)i - 1, i + 1 == n ? -1 : (int32_t)i + 1};
    st->nheap = 0;
    for (size_t i = 1; i < n; i++)
        if (bpe_add_bigram(t, st, (int32_t)i - 1, (int32_t)i)) return -1;
    while (st->nheap) {
        bpe_bigram bg = bpe_heap_pop(st);
        bpe_sym *l = &st->sym[bg.left], *r = &st->sym[bg.right];
        if (l->n == 0 || r->n == 0 || l->id != bg.lid || r->id != bg.rid) continue; /* outdated */
        l->n += r->n;
        l->id = bg.res;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) st->sym[r->next].prev = bg.left;
        if (bpe_add_bigram(t, st, l->prev, bg.left)) return -1;
        if (bpe_add_bigram(t, st, bg.left, l->next)) return -1;
    }
    for (int32_t i = 0; i != -1; i = st->sym[i].next) {
        const bpe_sym *y = &st->sym[i];
        if (y->id >= 0 && y->id < t->n_vocab) {
            if (ivec_push(out, y->id)) return -1;
            continue;
        }
        /* not a token: each byte of its GPT-2 text, looked up as a 1-byte
         * piece (what llama.cpp does; most such bytes are dropped) */
        if (bpe_encode_chars(t, st, w + y->start, y->n)) return -1;
        for (size_t j = 0; j < st->enc.n; j++) {
            int id = t->byte_tok1[(uint8_t)st->enc.v[j]];
            if (id >= 0 && ivec_push(out, id)) return -1;
        }
    }
    return 0;
}

static void bpe_state_free(bpe_state *st) {
    free(st->sym);
    free(st->heap);
    free(st->enc.v);
}

/* ---------------------------------------------------------- word cache */

/* Per-call cache: word bytes -> ids.  Words repeat a lot in real text and
 * both merge algorithms are pure functions of the word (SPM: of a chunk
 * no merge can cross, see spm_chunks). */
typedef struct wcache {
    uint64_t *key;                      /* hash | 1; 0 = empty slot */
    uint32_t *koff, *klen, *idoff, *idn;
    size_t cap, n;
    cbuf keys;                          /* copies of the cached words */
    ivec ids;
} wcache;

#define WCACHE_MAX_WORD 256

static void wcache_free(wcache *c) {
    free(c->key); free(c->koff); free(c->klen); free(c->idoff); free(c->idn);
    free(c->keys.v);
    free(c->ids.v);
}

static int wcache_grow(wcache *c) {
    size_t ncap = c->cap ? c->cap * 2 : 4096;
    uint64_t *k = calloc(ncap, sizeof *k);
    uint32_t *a = malloc(ncap * sizeof *a), *b = malloc(ncap * sizeof *b);
    uint32_t *d = malloc(ncap * sizeof *d), *f = malloc(ncap * sizeof *f);
    if (!k || !a || !b || !d || !f) { free(k); free(a); free(b); free(d); free(f); return -1; }
    for (size_t i = 0; i < c->cap; i++) {
        if (!c->key[i]) continue;
        size_t j = c->key[i] & (ncap - 1);
        while (k[j]) j = (j + 1) & (ncap - 1);
        k[j] = c->key[i]; a[j] = c->koff[i]; b[j] = c->klen[i]; d[j] = c->idoff[i]; f[j] = c->idn[i];
    }
    free(c->key); free(c->koff); free(c->klen); free(c->idoff); free(c->idn);
    c->key = k; c->koff = a; c->klen = b; c->idoff = d; c->idn = f;
    c->cap = ncap;
    return 0;
}

/* On a hit, append the ids to out and return 1.  On a miss return 0 with
 * *slot and *h set for wcache_put.  -1 on out of memory. */
static int wcache_get(wcache *c, const char *w, size_t n, ivec *out, size_t *slot, uint64_t *h) {
    if (c->n * 2 >= c->cap && wcache_grow(c)) return -1;
    *h = hash_bytes(w, n) | 1;
    size_t j = *h & (c->cap - 1);
    while (c->key[j]) {
        if (c->key[j] == *h && c->klen[j] == n && memcmp(c->keys.v + c->koff[j], w, n) == 0) {
            for (uint32_t k = 0; k < c->idn[j]; k++)
                if (ivec_push(out, c->ids.v[c->idoff[j] + k])) return -1;
            return 1;
        }
        j = (j + 1) & (c->cap - 1);
    }
    *slot = j;
    return 0;
}

static int wcache_put(wcache *c, size_t slot, uint64_t h, const char *w, size_t n, const int32_t *ids, size_t k) {
    if (c->keys.n > UINT32_MAX / 2 || c->ids.n > UINT32_MAX / 2) return 0; /* full: stop caching */
    c->key[slot] = h;
    c->koff[slot] = (uint32_t)c->keys.n;
    c->klen[slot] = (uint32_t)n;
    c->idoff[slot] = (uint32_t)c->ids.n;
    c->idn[slot] = (uint32_t)k;
    c->n++;
    if (cbuf_put(&c->keys, w, n)) return -1;
    for (size_t i = 0; i < k; i++)
        if (ivec_push(&c->ids, ids[i])) return -1;
    return 0;
}

/* bpe_word through the cache. */
static int bpe_word_cached(const et_tokenizer *t, bpe_state *st, wcache *c, const char *w, size_t n, ivec *out) {
    if (n > WCACHE_MAX_WORD) return bpe_word(t, st, (const uint8_t *)w, n, out);
    size_t slot;
    uint64_t h;
    int hit = wcache_get(c, w, n, out, &slot, &h);
    if (hit) return hit < 0 ? -1 : 0;
    size_t before = out->n;
    if (bpe_word(t, st, (const uint8_t *)w, n, out)) return -1;
    return wcache_put(c, slot, h, w, n, out->n > before ? out->v + before : NULL, out->n - before);
}

/* SPM over escaped text s, cut into chunks that no merge can cross: a
 * boundary between two characters where no vocabulary piece contains the
 * byte pair (last byte before, first byte after).  No symbol can then
 * ever span the boundary, and the merges on each side do not depend on
 * the other side (the queue order within a side is unchanged), so the
 * ids equal those of one spm_tokenize over all of s. */
static int spm_chunks(const et_tokenizer *t, spm_state *st, wcache *c, const char *s, size_t n, ivec *out) {
    size_t start = 0;
    for (size_t i = 1; i <= n; i++) {
        if (i < n) {
            unsigned a = (uint8_t)s[i - 1], b = (uint8_t)s[i], pr = a << 8 | b;
            if ((b & 0xC0) == 0x80) continue;                      /* inside a character */
            if (t->pairbits[pr >> 6] >> (pr & 63) & 1) continue;   /* some piece has "ab" */
        }
        const char *w = s + start;
        size_t len = i - start, slot;
        start = i;
        if (len > WCACHE_MAX_WORD) {
            if (spm_tokenize(t, st, w, len, out)) return -1;
            continue;
        }
        uint64_t h;
        int hit = wcache_get(c, w, len, out, &slot, &h);
        if (hit < 0) return -1;
        if (hit) continue;
        size_t before = out->n;
        if (spm_tokenize(t, st, w, len, out)) return -1;
        if (wcache_put(c, slot, h, w, len, out->n > before ? out->v + before : NULL, out->n - before)) return -1;
    }
    return 0;
}

/* -------------------------------------------------------------- encode */

int et_tok_encode(const et_tokenizer *t, const char *text, size_t len, int flags,
                  int32_t **ids, size_t *n_ids, et_err *e) {
    *ids = NULL;
    *n_ids = 0;
    size_t bad = et_utf8_check((const uint8_t *)text, len);
    if (bad != len)
        return et_fail(e, ET_EINPUT, "text: invalid UTF-8 at byte offset %zu (byte 0x%02X)", bad,
                       (unsigned)(uint8_t)text[bad]);
    int add_bos = (flags & ET_TOK_ADD_BOS) || ((flags & ET_TOK_DEFAULT_BOS) && t->add_bos);
    if (add_bos && t->bos < 0) return et_fail(e, ET_EINPUT, "text: BOS requested but the vocabulary has no BOS token");
    if ((flags & ET_TOK_ADD_EOS) && t->eos < 0)
        return et_fail(e, ET_EINPUT, "text: EOS requested but the vocabulary has no EOS token");

    ivec out = {0};
    fragvec fr = {0};
    spm_state spm = {0};
    bpe_state bpe = {0};
    cbuf esc = {0};
    et_szvec ends = {0};
    wcache cache = {0};
    int rc = ET_ERUN;
    if (add_bos && ivec_push(&out, t->bos)) goto done;
    if (partition(t, text, len, (flags & ET_TOK_PARSE_SPECIAL) != 0, &fr)) goto done;
    int prev_special = 1; /* SPM: prefix a space to the first raw fragment and after specials */
    for (size_t f = 0; f < fr.n; f++) {
        if (fr.v[f].tok >= 0) {
            if (ivec_push(&out, fr.v[f].tok)) goto done;
            prev_special = 1;
            continue;
        }
        const char *s = text + fr.v[f].off;
        size_t n = fr.v[f].len;
        if (t->model == ET_TOK_SPM) {
            esc.n = 0;
            if (t->add_space_prefix && prev_special && cbuf_put(&esc, "\xe2\x96\x81", 3)) goto done;
            for (size_t i = 0; i < n;) { /* spaces -> U+2581 */
                const char *sp = memchr(s + i, ' ', n - i);
                size_t run = sp ? (size_t)(sp - (s + i)) : n - i;
                if (cbuf_put(&esc, s + i, run)) goto done;
                i += run;
                if (sp) {
                    if (cbuf_put(&esc, "\xe2\x96\x81", 3)) goto done;
                    i++;
                }
            }
            if ((flags & ET_TOK_REFERENCE) ? spm_tokenize(t, &spm, esc.v, esc.n, &out)
                                           : spm_chunks(t, &spm, &cache, esc.v, esc.n, &out))
                goto done;
        } else {
            ends.n = 0;
            if (et_pretok_split(t->pre, s, n, &ends)) goto done;
            size_t start = 0;
            for (size_t w = 0; w < ends.n; w++) {
                if ((flags & ET_TOK_REFERENCE)
                        ? bpe_word(t, &bpe, (const uint8_t *)s + start, ends.v[w] - start, &out)
                        : bpe_word_cached(t, &bpe, &cache, s + start, ends.v[w] - start, &out))
                    goto done;
                start = ends.v[w];
            }
        }
        prev_special = 0;
    }
    if ((flags & ET_TOK_ADD_EOS) && ivec_push(&out, t->eos)) goto done;
    rc = 0;
done:
    free(fr.v);
    free(spm.sym);
    free(spm.heap.v);
    bpe_state_free(&bpe);
    wcache_free(&cache);
    free(esc.v);
    free(ends.v);
    if (rc) {
        free(out.v);
        return et_fail(e, ET_ERUN, "text: out of memory while encoding %zu bytes", len);
    }
    if (!out.v) out.v = malloc(sizeof *out.v); /* never return NULL on success */
    if (!out.v) return et_fail(e, ET_ERUN, "text: out of memory");
    *ids = out.v;
    *n_ids = out.n;
    return 0;
}

/* -------------------------------------------------------------- decode */

/* Text of one NORMAL BPE piece: each character back to its byte
 * (llama.cpp llama_decode_text); characters outside the map are copied. */
static int bpe_piece_bytes(const char *p, size_t n, cbuf *b) {
    for (size_t i = 0; i < n;) {
        int len;
        uint32_t cp = et_utf8_decode((const uint8_t *)p + i, n - i, &len);
        int byte = gpt2_char_byte(cp);
        if (byte >= 0) {
            char c = (char)byte;
            if (cbuf_put(b, &c, 1)) return -1;
        } else if (cbuf_put(b, p + i, (size_t)len)) {
            return -1;
        }
        i += (size_t)len;
    }
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int et_tok_decode(const et_tokenizer *t, const int32_t *ids, size_t n_ids, int flags,
                  char **text, size_t *len, et_err *e) {
    *text = NULL;
    *len = 0;
    cbuf b = {0};
    if (cbuf_put(&b, "", 0)) return et_fail(e, ET_ERUN, "decode: out of memory");
    /* SPM: encoding put a space before the first raw text and after each
     * special token; remove it again (one leading ' ' of the next piece). */
    int strip = t->add_space_prefix;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab) {
            free(b.v);
            return et_fail(e, ET_EINPUT, "decode: token id %d at position %zu out of range [0, %d)",
                           (int)id, i, t->n_vocab);
        }
        uint16_t a = t->attr[id];
        size_t n;
        const char *p = et_tok_str(t, id, &n);
        int rc = 0;
        if (a & (ET_A_CONTROL | ET_A_UNKNOWN | ET_A_USER)) {
            if ((flags & ET_TOK_PARSE_SPECIAL) || !(a & (ET_A_CONTROL | ET_A_UNKNOWN))) rc = cbuf_put(&b, p, n);
            strip = t->add_space_prefix;
        } else if (a & ET_A_NORMAL) {
            size_t before = b.n;
            if (t->model == ET_TOK_SPM) {
                for (size_t k = 0; k < n && !rc;) { /* U+2581 -> ' ' */
                    if (n - k >= 3 && memcmp(p + k, "\xe2\x96\x81", 3) == 0) { rc = cbuf_put(&b, " ", 1); k += 3; }
                    else { rc = cbuf_put(&b, p + k, 1); k++; }
                }
            } else {
                rc = bpe_piece_bytes(p, n, &b);
            }
            if (!rc && strip && b.n > before && b.v[before] == ' ') {
                memmove(b.v + before, b.v + before + 1, b.n - before - 1);
                b.v[--b.n] = 0;
            }
            strip = 0;
        } else if (a & ET_A_BYTE) {
            int hi = n == 6 ? hexval(p[3]) : -1, lo = n == 6 ? hexval(p[4]) : -1;
            char c = (char)(hi >= 0 && lo >= 0 ? hi * 16 + lo : 0);
            if (hi >= 0 && lo >= 0) rc = cbuf_put(&b, &c, 1);
            strip = 0;
        } /* UNUSED / undefined: nothing, as llama.cpp */
        if (rc) {
            free(b.v);
            return et_fail(e, ET_ERUN, "decode: out of memory");
        }
    }
    *text = b.v;
    *len = b.n;
    return 0;
}

/* ---------------------------------------------------------- fingerprint */

static void sha_u32(et_sha256 *s, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    et_sha256_update(s, b, 4);
}

static void sha_bytes(et_sha256 *s, const void *p, size_t n) {
    sha_u32(s, (uint32_t)n);
    et_sha256_update(s, p, n);
}

int et_tok_check_rows(const et_tokenizer *t, const char *path, const char *tensor, int64_t n_rows, et_err *e) {
    int n = et_tok_n_vocab(t);
    if ((int64_t)n != n_rows)
        return et_fail(e, ET_EINPUT, "%s: the tokenizer has %d tokens but the model's vocabulary is %lld (the rows "
                       "of %s)%s", path, n, (long long)n_rows, tensor,
                       (int64_t)n < n_rows ? " (padded vocabularies are not supported)" : "");
    return 0;
}

void et_tok_sha256(const et_tokenizer *t, char hex[65]) {
    et_sha256 s;
    et_sha256_init(&s);
    static const char tag[] = "edgetune-tokenizer-v1";
    sha_bytes(&s, tag, sizeof tag - 1);
    sha_u32(&s, (uint32_t)t->model);
    static const char *const pre_names[] = {"", "default", "gpt-2", "llama3", "qwen2", "smollm", "deepseek-llm"};
    const char *pre = t->model == ET_TOK_BPE ? pre_names[t->pre] : "";
    sha_bytes(&s, pre, strlen(pre));
    sha_u32(&s, (uint32_t)t->ignore_merges);
    sha_u32(&s, (uint32_t)t->n_vocab);
    for (int i = 0; i < t->n_vocab; i++) {
        size_t n;
        const char *p = et_tok_str(t, i, &n);
        sha_bytes(&s, p, n);
        uint32_t bits;
        memcpy(&bits, &t->scores[i], 4);
        sha_u32(&s, bits);
        sha_u32(&s, (uint32_t)t->types[i]);
    }
    sha_u32(&s, (uint32_t)t->n_merges);
    for (size_t i = 0; i < t->n_merges; i++) sha_bytes(&s, t->mbuf + t->moff[i], t->mlen[i]);
    int v[7] = {t->bos, t->eos, t->unk, t->pad, t->add_bos, t->add_eos, t->add_space_prefix};
    for (int k = 0; k < 7; k++) sha_u32(&s, (uint32_t)v[k]);
    et_sha256_final_hex(&s, hex);
}

/* ------------------------------------------------- llama2.c tokenizer.bin */

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Format (karpathy/llama2.c tokenizer.py export): i32 max_token_length,
 * then n_vocab times {f32 score, i32 len, len bytes}.  Pieces become what
 * llama.cpp's convert-llama2c-to-ggml writes: id 0 "<unk>" UNKNOWN, 1 "<s>"
 * and 2 "</s>" CONTROL, "<0xXX>" BYTE, spaces escaped to U+2581. */
int et_tok_from_llama2c_mem(et_tokenizer **out, const void *data, size_t size, int n_vocab,
                            const char *name, et_err *e) {
    *out = NULL;
    const uint8_t *d = data;
    if (size < 4) return et_fail(e, ET_EINPUT, "%s: byte 0: truncated header (need 4 bytes, have %zu)", name, size);
    if (n_vocab == 0) { /* count the entries: they must end exactly at the end of the file */
        size_t off = 4;
        while (off < size && n_vocab < (1 << 24)) {
            if (size - off < 8) break;
            uint32_t n = rd_u32(d + off + 4);
            if (n > size - off - 8) break;
            off += 8 + (size_t)n;
            n_vocab++;
        }
        if (off != size || n_vocab == 0)
            return et_fail(e, ET_EINPUT, "%s: byte %zu: not a llama2.c tokenizer.bin (entries do not end at the "
                           "end of the file)", name, off);
    }
    if (n_vocab <= 0 || n_vocab > (1 << 24))
        return et_fail(e, ET_EINPUT, "%s: vocabulary size %d out of range", name, n_vocab);
    /* d[0..3] is max_token_length: only a buffer-size hint for llama2.c. */
    char **pieces = calloc((size_t)n_vocab, sizeof *pieces);
    size_t *lens = calloc((size_t)n_vocab, sizeof *lens);
    float *scores = calloc((size_t)n_vocab, sizeof *scores);
    int32_t *types = calloc((size_t)n_vocab, sizeof *types);
    int rc = 0;
    if (!pieces || !lens || !scores || !types) { rc = et_fail(e, ET_ERUN, "%s: out of memory", name); goto done; }
    size_t off = 4;
    for (int i = 0; i < n_vocab; i++) {
        if (size - off < 8) {
            rc = et_fail(e, ET_EINPUT, "%s: byte %zu: token %d: truncated (file has %zu bytes)", name, off, i, size);
            goto done;
        }
        uint32_t bits = rd_u32(d + off), n = rd_u32(d + off + 4);
        memcpy(&scores[i], &bits, 4);
        off += 8;
        if (n > (1u << 20) || n > size - off) {
            rc = et_fail(e, ET_EINPUT, "%s: byte %zu: token %d: length %u runs past the end of the file",
                         name, off - 4, i, n);
            goto done;
        }
        const char *p = (const char *)d + off;
        off += n;
        const char *fixed = i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : NULL;
        size_t spaces = 0;
        for (uint32_t k = 0; k < n; k++) spaces += p[k] == ' ';
        size_t m = fixed ? strlen(fixed) : n + 2 * spaces;
        pieces[i] = malloc(m + 1);
        if (!pieces[i]) { rc = et_fail(e, ET_ERUN, "%s: out of memory", name); goto done; }
        if (fixed) {
            memcpy(pieces[i], fixed, m);
        } else {
            size_t w = 0;
            for (uint32_t k = 0; k < n; k++) {
                if (p[k] == ' ') { memcpy(pieces[i] + w, "\xe2\x96\x81", 3); w += 3; }
                else pieces[i][w++] = p[k];
            }
        }
        lens[i] = m;
        int is_byte = n == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && hexval(p[3]) >= 0 &&
                      hexval(p[4]) >= 0 && p[5] == '>';
        types[i] = i == 0 ? ET_TOKT_UNKNOWN : i <= 2 ? ET_TOKT_CONTROL : is_byte ? ET_TOKT_BYTE : ET_TOKT_NORMAL;
    }
    et_tok_spec s = {
        .model = ET_TOK_SPM, .n_vocab = n_vocab, .pieces = (const char *const *)pieces, .piece_lens = lens,
        .scores = scores, .types = types, .bos = n_vocab > 1 ? 1 : -1, .eos = n_vocab > 2 ? 2 : -1,
        .unk = 0, .pad = -1, .add_bos = -1, .add_eos = -1, .add_space_prefix = -1,
    };
    rc = et_tok_build(out, &s, name, e);
done:
    if (pieces)
        for (int i = 0; i < n_vocab; i++) free(pieces[i]);
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    return rc;
}

int et_tok_from_llama2c(et_tokenizer **out, const char *path, int n_vocab, et_err *e) {
    et_map m;
    *out = NULL;
    int rc = et_map_open(&m, path, e);
    if (rc) return rc;
    rc = et_tok_from_llama2c_mem(out, m.data, m.size, n_vocab, path, e);
    et_map_close(&m);
    return rc;
}
