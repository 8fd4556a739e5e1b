/* datasets/vocab_train.c — BPE vocabulary learning for an SPM ("llama")
 * tokenizer.  See vocab_train.h for the algorithm and the layout. */
#include "vocab_train.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPACE_MARK "\xe2\x96\x81" /* U+2581, what the SPM encoder puts for ' ' */

et_vocab_opts et_vocab_defaults(void) {
    et_vocab_opts o = {.n_vocab = 512, .max_piece_bytes = 16, .min_pair_count = 2};
    return o;
}

/* ------------------------------------------------------------ UTF-8 */

/* Bytes of the UTF-8 character at s[0..n) (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF), or 0 if it is not valid. */
static size_t utf8_char_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!len || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
    if (c == 0xED && s[1] > 0x9F) return 0; /* surrogates */
    if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
    if (c == 0xF4 && s[1] > 0x8F) return 0; /* > U+10FFFF */
    return len;
}

/* ------------------------------------------------------------ string table */

/* Distinct byte strings with ids 0..n-1 in insertion order (open addressing,
 * FNV-1a).  Each entry also carries a count. */
typedef struct strtab {
    char **s;
    size_t *len;
    long long *count;
    int n, cap;
    int *slot;          /* [nslot] id + 1, 0 = empty */
    size_t nslot;       /* power of two, > 2 n */
} strtab;

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static void strtab_free(strtab *t) {
    for (int i = 0; i < t->n; i++) free(t->s[i]);
    free(t->s);
    free(t->len);
    free(t->count);
    free(t->slot);
    memset(t, 0, sizeof *t);
}

static int strtab_find(const strtab *t, const char *s, size_t n) {
    if (!t->nslot) return -1;
    for (size_t i = fnv1a(s, n) & (t->nslot - 1);; i = (i + 1) & (t->nslot - 1)) {
        int id = t->slot[i] - 1;
        if (id < 0) return -1;
        if (t->len[id] == n && !memcmp(t->s[id], s, n)) return id;
    }
}

static int strtab_rehash(strtab *t, size_t nslot) {
    int *slot = calloc(nslot, sizeof *slot);
    if (!slot) return -1;
    for (int id = 0; id < t->n; id++) {
        size_t i = fnv1a(t->s[id], t->len[id]) & (nslot - 1);
        while (slot[i]) i = (i + 1) & (nslot - 1);
        slot[i] = id + 1;
    }
    free(t->slot);
    t->slot = slot;
    t->nslot = nslot;
    return 0;
}

/* Id of s, added (count 0) if new; -1 on out of memory. */
static int strtab_add(strtab *t, const char *s, size_t n) {
    int id = strtab_find(t, s, n);
    if (id >= 0) return id;
    if (t->n == t->cap) {
        if (t->cap >= (1 << 29)) return -1;
        int cap = t->cap ? 2 * t->cap : 256;
        char **ns = realloc(t->s, (size_t)cap * sizeof *ns);
        if (!ns) return -1;
        t->s = ns;
        size_t *nl = realloc(t->len, (size_t)cap * sizeof *nl);
        if (!nl) return -1;
        t->len = nl;
        long long *nc = realloc(t->count, (size_t)cap * sizeof *nc);
        if (!nc) return -1;
        t->count = nc;
        t->cap = cap;
    }
    if ((size_t)(t->n + 1) * 2 >= t->nslot && strtab_rehash(t, t->nslot ? 2 * t->nslot : 512)) return -1;
    char *copy = malloc(n + 1);
    if (!copy) return -1;
    memcpy(copy, s, n);
    copy[n] = 0;
    id = t->n++;
    t->s[id] = copy;
    t->len[id] = n;
    t->count[id] = 0;
    size_t i = fnv1a(s, n) & (t->nslot - 1);
    while (t->slot[i]) i = (i + 1) & (t->nslot - 1);
    t->slot[i] = id + 1;
    return id;
}

/* ------------------------------------------------------------ words */

/* Cut one text into words (see the header) and count them in `words`.
 * 0, ET_EINPUT (invalid UTF-8) or ET_ERUN. */
static int add_words(strtab *words, const char *text, size_t len, size_t idx, char **buf, size_t *cap,
                     long long *n_words, et_err *e) {
    size_t need = 3 * len + 4; /* every byte a space at worst */
    if (need > *cap) {
        char *nb = realloc(*buf, need);
        if (!nb) return et_fail(e, ET_ERUN, "vocab: out of memory");
        *buf = nb;
        *cap = need;
    }
    char *w = *buf;
    size_t wn = 0;
    memcpy(w, SPACE_MARK, 3);
    wn = 3;
    for (size_t i = 0; i <= len;) {
        size_t cl = i < len ? utf8_char_len((const uint8_t *)text + i, len - i) : 0;
        if (i < len && !cl)
            return et_fail(e, ET_EINPUT, "vocab: text %zu: invalid UTF-8 at byte offset %zu", idx, i);
        int space = i < len && (text[i] == ' ' || (cl == 3 && !memcmp(text + i, SPACE_MARK, 3)));
        int ctrl = i < len && (uint8_t)text[i] < 0x20;
        if (i == len || space || ctrl) { /* end of the current word */
            if (wn) {
                int id = strtab_add(words, w, wn);
                if (id < 0) return et_fail(e, ET_ERUN, "vocab: out of memory");
                words->count[id]++;
                (*n_words)++;
            }
            wn = 0;
            if (i == len) break;
            if (space) {
                memcpy(w, SPACE_MARK, 3);
                wn = 3;
            } else { /* a control character is a word by itself */
                int id = strtab_add(words, text + i, 1);
                if (id < 0) return et_fail(e, ET_ERUN, "vocab: out of memory");
                words->count[id]++;
                (*n_words)++;
            }
        } else {
            memcpy(w + wn, text + i, cl);
            wn += cl;
        }
        i += cl;
    }
    return 0;
}

/* ------------------------------------------------------------ pair counts */

/* (left, right) symbol pairs -> occurrences, open addressing; key
 * left << 32 | right, EMPTY for a free slot. */
#define EMPTY UINT64_MAX
typedef struct pairtab {
    uint64_t *key;
    long long *count;
    size_t nslot; /* power of two */
} pairtab;

static void pair_add(pairtab *p, uint32_t l, uint32_t r, long long c) {
    uint64_t k = (uint64_t)l << 32 | r;
    size_t i = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & (p->nslot - 1);
    while (p->key[i] != EMPTY && p->key[i] != k) i = (i + 1) & (p->nslot - 1);
    if (p->key[i] == EMPTY) {
        p->key[i] = k;
        p->count[i] = 0;
    }
    p->count[i] += c;
}

/* The token pieces the vocabulary reserves ("<unk>", "<s>", "</s>", "<0xXX>"):
 * a merge may not produce one of them (the piece would be a duplicate). */
static int reserved_piece(const char *s, size_t n) {
    if ((n == 5 && !memcmp(s, "<unk>", 5)) || (n == 3 && !memcmp(s, "<s>", 3)) || (n == 4 && !memcmp(s, "</s>", 4)))
        return 1;
    return n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>';
}

/* ------------------------------------------------------------ training */

typedef struct word_syms {
    int32_t *sym;   /* [n] piece ids */
    int n;
} word_syms;

typedef struct char_rank {
    const char *s;  /* the character's bytes */
    size_t len;
    long long freq;
} char_rank;

/* Most frequent first; ties bytewise. */
static int cmp_chars(const void *a, const void *b) {
    const char_rank *x = a, *y = b;
    if (x->freq != y->freq) return x->freq > y->freq ? -1 : 1;
    int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len < y->len ? -1 : x->len > y->len);
}

/* Merge every non-overlapping (l, r) left to right into m; returns the
 * number of merges done. */
static long long merge_word(word_syms *w, int32_t l, int32_t r, int32_t m) {
    int o = 0;
    long long k = 0;
    for (int i = 0; i < w->n; i++) {
        if (i + 1 < w->n && w->sym[i] == l && w->sym[i + 1] == r) {
            w->sym[o++] = m;
            i++;
            k++;
        } else {
            w->sym[o++] = w->sym[i];
        }
    }
    w->n = o;
    return k;
}

int et_vocab_train(et_tokenizer **out, const char *const *texts, const size_t *lens, size_t n,
                   const et_vocab_opts *o, et_vocab_stats *stats, et_err *e) {
    *out = NULL;
    if (o->n_vocab < ET_VOCAB_N_FIXED + 1 || o->n_vocab > (1 << 24))
        return et_fail(e, ET_EUSAGE, "vocab: n_vocab %d out of range [%d, %d]", o->n_vocab, ET_VOCAB_N_FIXED + 1,
                       1 << 24);
    if (o->max_piece_bytes < 2 || o->max_piece_bytes > 256)
        return et_fail(e, ET_EUSAGE, "vocab: max_piece_bytes %d out of range [2, 256]", o->max_piece_bytes);
    if (o->min_pair_count < 1) return et_fail(e, ET_EUSAGE, "vocab: min_pair_count must be >= 1");
    strtab words = {0}, pieces = {0};
    word_syms *ws = NULL;
    pairtab pt = {0};
    char *buf = NULL, *mbuf = NULL;
    size_t cap = 0;
    char_rank *cr = NULL;
    const char **vp = NULL;
    size_t *vl = NULL;
    float *vs = NULL;
    int32_t *vt = NULL;
    int *merged = NULL;
    int n_merged = 0, n_chars = 0;
    long long n_words = 0, total_syms = 0;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) rc = add_words(&words, texts[i], lens[i], i, &buf, &cap, &n_words, e);
    if (rc) goto done;
    /* words -> character symbols */
    ws = calloc((size_t)(words.n ? words.n : 1), sizeof *ws);
    if (!ws) goto oom;
    for (int wi = 0; wi < words.n; wi++) {
        const char *s = words.s[wi];
        size_t len = words.len[wi];
        ws[wi].sym = malloc((len ? len : 1) * sizeof(int32_t));
        if (!ws[wi].sym) goto oom;
        for (size_t i = 0; i < len;) {
            size_t cl = utf8_char_len((const uint8_t *)s + i, len - i);
            int id = strtab_add(&pieces, s + i, cl);
            if (id < 0) goto oom;
            pieces.count[id] += words.count[wi];
            ws[wi].sym[ws[wi].n++] = id;
            i += cl;
        }
        total_syms += ws[wi].n;
    }
    n_chars = pieces.n;
    if (ET_VOCAB_N_FIXED + n_chars > o->n_vocab) {
        rc = et_fail(e, ET_EUSAGE, "vocab: n_vocab %d is too small for the %d fixed entries and the %d characters seen",
                     o->n_vocab, ET_VOCAB_N_FIXED, n_chars);
        goto done;
    }
    /* merges */
    int want = o->n_vocab - ET_VOCAB_N_FIXED - n_chars;
    merged = malloc((size_t)(want ? want : 1) * sizeof *merged);
    pt.nslot = 1024;
    while ((long long)pt.nslot < 2 * total_syms + 16) pt.nslot *= 2;
    pt.key = malloc(pt.nslot * sizeof *pt.key);
    pt.count = malloc(pt.nslot * sizeof *pt.count);
    mbuf = malloc((size_t)o->max_piece_bytes + 1);
    if (!merged || !pt.key || !pt.count || !mbuf) goto oom;
    while (n_merged < want) {
        memset(pt.key, 0xFF, pt.nslot * sizeof *pt.key);
        for (int wi = 0; wi < words.n; wi++)
            for (int j = 0; j + 1 < ws[wi].n; j++)
                pair_add(&pt, (uint32_t)ws[wi].sym[j], (uint32_t)ws[wi].sym[j + 1], words.count[wi]);
        /* the best pair: most frequent, then the bytewise smallest piece */
        size_t best = SIZE_MAX, best_len = 0;
        for (size_t i = 0; i < pt.nslot; i++) {
            if (pt.key[i] == EMPTY || pt.count[i] < o->min_pair_count) continue;
            int l = (int)(pt.key[i] >> 32), r = (int)(pt.key[i] & 0xFFFFFFFFu);
            size_t ml = pieces.len[l] + pieces.len[r];
            if (ml > (size_t)o->max_piece_bytes) continue;
            if (best != SIZE_MAX && pt.count[i] < pt.count[best]) continue;
            char cand[512];
            memcpy(cand, pieces.s[l], pieces.len[l]);
            memcpy(cand + pieces.len[l], pieces.s[r], pieces.len[r]);
            if ((uint8_t)cand[0] < 0x20 || reserved_piece(cand, ml)) continue;
            if (best != SIZE_MAX && pt.count[i] == pt.count[best]) {
                int c = memcmp(cand, mbuf, ml < best_len ? ml : best_len);
                if (c > 0 || (c == 0 && ml >= best_len)) continue;
            }
            best = i;
            best_len = ml;
            memcpy(mbuf, cand, ml);
        }
        if (best == SIZE_MAX) break;
        int32_t l = (int32_t)(pt.key[best] >> 32), r = (int32_t)(pt.key[best] & 0xFFFFFFFFu);
        int known = strtab_find(&pieces, mbuf, best_len) >= 0;
        int m = strtab_add(&pieces, mbuf, best_len);
        if (m < 0) goto oom;
        if (!known) merged[n_merged++] = m;
        for (int wi = 0; wi < words.n; wi++) {
            long long k = merge_word(&ws[wi], l, r, m);
            pieces.count[m] += k * words.count[wi];
        }
    }
    /* the vocabulary */
    int nv = ET_VOCAB_N_FIXED + n_chars + n_merged;
    cr = malloc((size_t)(n_chars ? n_chars : 1) * sizeof *cr);
    vp = calloc((size_t)nv, sizeof *vp);
    vl = calloc((size_t)nv, sizeof *vl);
    vs = calloc((size_t)nv, sizeof *vs);
    vt = calloc((size_t)nv, sizeof *vt);
    char *bytes = malloc(256 * 7);
    if (!cr || !vp || !vl || !vs || !vt || !bytes) {
        free(bytes);
        goto oom;
    }
    static const char *const fixed[3] = {"<unk>", "<s>", "</s>"};
    static const int32_t fixed_type[3] = {ET_TOKT_UNKNOWN, ET_TOKT_CONTROL, ET_TOKT_CONTROL};
    for (int i = 0; i < 3; i++) {
        vp[i] = fixed[i];
        vl[i] = strlen(fixed[i]);
        vt[i] = fixed_type[i];
    }
    for (int b = 0; b < 256; b++) {
        snprintf(bytes + 7 * b, 7, "<0x%02X>", b);
        vp[3 + b] = bytes + 7 * b;
        vl[3 + b] = 6;
        vt[3 + b] = ET_TOKT_BYTE;
    }
    for (int i = 0; i < n_chars; i++) cr[i] = (char_rank){pieces.s[i], pieces.len[i], pieces.count[i]};
    qsort(cr, (size_t)n_chars, sizeof *cr, cmp_chars);
    for (int i = 0; i < n_chars; i++) {
        int v = ET_VOCAB_N_FIXED + i;
        vp[v] = cr[i].s;
        vl[v] = cr[i].len;
        vs[v] = -(float)(n_merged + i);
        vt[v] = ET_TOKT_NORMAL;
    }
    for (int k = 0; k < n_merged; k++) {
        int v = ET_VOCAB_N_FIXED + n_chars + k;
        vp[v] = pieces.s[merged[k]];
        vl[v] = pieces.len[merged[k]];
        vs[v] = -(float)k;
        vt[v] = ET_TOKT_NORMAL;
    }
    et_tok_spec spec = {.model = ET_TOK_SPM, .n_vocab = nv, .pieces = vp, .piece_lens = vl, .scores = vs,
                        .types = vt, .bos = 1, .eos = 2, .unk = 0, .pad = -1, .add_bos = 1, .add_eos = 0,
                        .add_space_prefix = 1, .name = NULL};
    rc = et_tok_build(out, &spec, "vocab", e);
    free(bytes);
    if (!rc && stats) {
        stats->n_chars = n_chars;
        stats->n_merges = n_merged;
        stats->n_words = n_words;
        stats->n_unique_words = words.n;
    }
    goto done;
oom:
    rc = et_fail(e, ET_ERUN, "vocab: out of memory");
done:
    if (ws)
        for (int wi = 0; wi < words.n; wi++) free(ws[wi].sym);
    free(ws);
    strtab_free(&words);
    strtab_free(&pieces);
    free(pt.key);
    free(pt.count);
    free(buf);
    free(mbuf);
    free(cr);
    free(vp);
    free(vl);
    free(vs);
    free(vt);
    free(merged);
    return rc;
}

/* ------------------------------------------------------------ GGUF */

int et_tok_save_vocab_gguf(const et_tokenizer *t, const char *path, const char *name, et_err *e) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    int bad = gguf_set_str(w, "general.architecture", "llama");
    if (name) bad |= gguf_set_str(w, "general.name", name);
    int rc = bad ? et_fail(e, ET_ERUN, "%s: out of memory", path) : et_tok_write_gguf(t, w, e);
    if (!rc) rc = gguf_writer_write(w, path, e);
    gguf_writer_free(w);
    return rc;
}
