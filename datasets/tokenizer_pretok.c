/* datasets/tokenizer_pretok.c — BPE pre-tokenizers: the regexes llama.cpp
 * chooses by tokenizer.ggml.pre (src/llama-vocab.cpp llm_tokenizer_bpe),
 * written as plain code instead of a regex engine.
 *
 * llama.cpp applies a list of regexes one after the other (src/unicode.cpp
 * unicode_regex_split): each regex runs inside every piece produced so far,
 * and both its matches and the gaps between them become pieces.  The GPT-2
 * and llama3 patterns have hand-written matchers there
 * (unicode_regex_split_custom_gpt2/llama3), which these follow decision for
 * decision, including what happens at a piece's end.  The others run
 * through std::regex on a copy of the text in which every non-ASCII code
 * point is replaced by one byte standing for its category (or 0x0B for
 * whitespace); the matchers below reproduce that too (e.g. a non-ASCII
 * space is never in a character class such as [一-龥]).
 *
 * Work is on code points: cp[i], their flags fl[i] and byte offsets.
 * A "pass" splits the piece [a, b) and appends the end index of every
 * resulting piece to `out`.  C11 + libc only.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_int.h"

#define OOR 0xFFFFFFFFu /* "no code point": outside the current piece */

typedef struct pt {
    const uint32_t *cp;
    const uint16_t *fl;
    size_t a, b;        /* the piece being split */
} pt;

static uint32_t CP(const pt *c, size_t i) { return i >= c->a && i < c->b ? c->cp[i] : OOR; }
static uint16_t FL(const pt *c, size_t i) { return i >= c->a && i < c->b ? c->fl[i] : 0; }

/* Append piece end `end` unless the piece would be empty. */
static int add(et_szvec *o, size_t *prev, size_t end) {
    if (end > *prev && et_szvec_push(o, end)) return -1;
    *prev = end;
    return 0;
}

static uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Length of a contraction 's 't 're 've 'm 'll 'd at pos (0 if none);
 * case-insensitive for llama3 (unicode_tolower only maps these letters
 * from their ASCII capitals). */
static size_t contraction(const pt *c, size_t pos, int icase) {
    if (CP(c, pos) != '\'' || pos + 1 >= c->b) return 0;
    uint32_t n1 = CP(c, pos + 1);
    if (icase) n1 = ascii_lower(n1);
    if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') return 2;
    if (pos + 2 < c->b) {
        uint32_t n2 = CP(c, pos + 2);
        if (icase) n2 = ascii_lower(n2);
        if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) return 3;
    }
    return 0;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static int pass_gpt2(const pt *c, et_szvec *o) {
    size_t pos = c->a, prev = c->a;
    const uint16_t WLN = ET_UC_WHITESPACE | ET_UC_LETTER | ET_UC_NUMBER;
    while (pos < c->b) {
        uint32_t cp = CP(c, pos);
        uint16_t f = FL(c, pos);
        size_t k = contraction(c, pos, 0);
        if (k) { pos += k; if (add(o, &prev, pos)) return -1; continue; }
        uint16_t f2 = cp == ' ' ? FL(c, pos + 1) : f;
        if (f2 & ET_UC_LETTER) {
            pos += cp == ' ';
            while (FL(c, pos) & ET_UC_LETTER) pos++;
            if (add(o, &prev, pos)) return -1;
            continue;
        }
        if (f2 & ET_UC_NUMBER) {
            pos += cp == ' ';
            while (FL(c, pos) & ET_UC_NUMBER) pos++;
            if (add(o, &prev, pos)) return -1;
            continue;
        }
        if (!(f2 & WLN) && f2) {
            pos += cp == ' ';
            while (!(FL(c, pos) & WLN) && FL(c, pos)) pos++;
            if (add(o, &prev, pos)) return -1;
            continue;
        }
        size_t nws = 0;
        while (FL(c, pos + nws) & ET_UC_WHITESPACE) nws++;
        if (nws > 1 && CP(c, pos + nws) != OOR) pos += nws - 1;  /* \s+(?!\S) */
        else if (nws > 0) pos += nws;                            /* \s+ */
        else pos++;                                              /* no match */
        if (add(o, &prev, pos)) return -1;
    }
    return 0;
}

/* llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *         ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * qwen2 is the same with \p{N} instead of \p{N}{1,3}: max_digits 1. */
static int pass_llama3(const pt *c, et_szvec *o, size_t max_digits) {
    size_t pos = c->a, prev = c->a;
    const uint16_t WLN = ET_UC_WHITESPACE | ET_UC_LETTER | ET_UC_NUMBER;
    while (pos < c->b) {
        uint32_t cp = CP(c, pos);
        uint16_t f = FL(c, pos);
        size_t k = contraction(c, pos, 1);
        if (k) { pos += k; if (add(o, &prev, pos)) return -1; continue; }
        if (!(cp == '\r' || cp == '\n' || (f & ET_UC_NUMBER)) &&
            ((f & ET_UC_LETTER) || (FL(c, pos + 1) & ET_UC_LETTER))) {
            pos++;
            while (FL(c, pos) & ET_UC_LETTER) pos++;
            if (add(o, &prev, pos)) return -1;
            continue;
        }
        if (f & ET_UC_NUMBER) {
            size_t ini = pos;
            while (FL(c, pos) & ET_UC_NUMBER) {
                if (++pos - ini >= max_digits) {
                    if (add(o, &prev, pos)) return -1;
                    ini = pos;
                }
            }
            if (add(o, &prev, pos)) return -1;
            continue;
        }
        uint16_t f2 = cp == ' ' ? FL(c, pos + 1) : f;
        if (!(f2 & WLN) && f) {
            pos += cp == ' ';
            while (!(FL(c, pos) & WLN) && FL(c, pos)) pos++;
            while (CP(c, pos) == '\r' || CP(c, pos) == '\n') pos++;
            if (add(o, &prev, pos)) return -1;
            continue;
        }
        size_t nws = 0, last_rn = 0;
        while (FL(c, pos + nws) & ET_UC_WHITESPACE) {
            uint32_t w = CP(c, pos + nws);
            if (w == '\r' || w == '\n') last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn > 0) pos = last_rn;                          /* \s*[\r\n]+ */
        else if (nws > 1 && CP(c, pos + nws) != OOR) pos += nws - 1; /* \s+(?!\S) */
        else if (nws > 0) pos += nws;                            /* \s+ */
        else pos++;                                              /* no match */
        if (add(o, &prev, pos)) return -1;
    }
    return 0;
}

/* ---- std::regex-style passes: leftmost matches and the gaps between ---- */

/* \s for std::regex on the substituted text: ASCII \t\n\v\f\r and space,
 * and every non-ASCII White_Space code point (replaced by 0x0B). */
static int is_ws(const pt *c, size_t i) { return (FL(c, i) & ET_UC_WHITESPACE) != 0; }
/* A non-ASCII whitespace code point is 0x0B for std::regex: in no class. */
static int masked(const pt *c, size_t i) { return c->cp[i] >= 0x80 && (c->fl[i] & ET_UC_WHITESPACE); }

/* \p{N} on the collapsed text: ASCII digits or a non-ASCII number. */
static int is_num(const pt *c, size_t i) {
    uint32_t cp = c->cp[i];
    return cp < 0x80 ? cp >= '0' && cp <= '9' : !masked(c, i) && (c->fl[i] & ET_UC_NUMBER);
}
/* [\p{P}\$\+<=>\^~\|] on the collapsed text. */
static int is_default_punct(const pt *c, size_t i) {
    uint32_t cp = c->cp[i];
    if (cp < 0x80) return (c->fl[i] & ET_UC_PUNCT) || (cp && strchr("$+<=>^~|", (int)cp));
    return !masked(c, i) && (c->fl[i] & ET_UC_PUNCT);
}
/* DeepSeek [!-/:-~！-／：-～‘-‟　-。] */
static int is_ds_punct(const pt *c, size_t i) {
    uint32_t cp = c->cp[i];
    if (masked(c, i)) return 0;
    return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x7E) || (cp >= 0xFF01 && cp <= 0xFF0F) ||
           (cp >= 0xFF1A && cp <= 0xFF5E) || (cp >= 0x2018 && cp <= 0x201F) || (cp >= 0x3000 && cp <= 0x3002);
}
/* DeepSeek [一-龥ࠀ-一가-퟿] */
static int is_ds_cjk(const pt *c, size_t i) {
    uint32_t cp = c->cp[i];
    if (masked(c, i)) return 0;
    return (cp >= 0x4E00 && cp <= 0x9FA5) || (cp >= 0x0800 && cp <= 0x4E00) || (cp >= 0xAC00 && cp <= 0xD7FF);
}
static int is_ds_letter(const pt *c, size_t i) { return !masked(c, i) && et_uc_is_deepseek_letter(c->cp[i]); }

typedef int (*cls_fn)(const pt *c, size_t i);

/* Length of cls+ at pos, optionally after one leading \s (\s?cls+). */
static size_t match_run(const pt *c, size_t pos, cls_fn cls, int opt_space) {
    size_t p = pos;
    if (opt_space && is_ws(c, p) && p + 1 < c->b && cls(c, p + 1)) p++;
    if (!cls(c, p)) return 0;
    while (p < c->b && cls(c, p)) p++;
    return p - pos;
}

enum { M_CRLF, M_DS_LETTERS, M_DS_PUNCT, M_DS_CJK, M_NUMBERS, M_ONE_NUMBER, M_DEFAULT_PUNCT, M_3DIGITS };

static size_t match_at(const pt *c, size_t pos, int m) {
    switch (m) {
    case M_CRLF: return c->cp[pos] == '\r' || c->cp[pos] == '\n';
    case M_DS_LETTERS: return match_run(c, pos, is_ds_letter, 1);
    case M_DS_PUNCT: return match_run(c, pos, is_ds_punct, 1);
    case M_DS_CJK: return match_run(c, pos, is_ds_cjk, 0);
    case M_NUMBERS: return match_run(c, pos, is_num, 0);
    case M_ONE_NUMBER: return (size_t)is_num(c, pos);
    case M_DEFAULT_PUNCT: return match_run(c, pos, is_default_punct, 0);
    case M_3DIGITS: {
        if (c->b - pos < 3) return 0;
        for (size_t k = 0; k < 3; k++)
            if (c->cp[pos + k] < '0' || c->cp[pos + k] > '9') return 0;
        return 3;
    }
    }
    return 0;
}

/* regex_iterator over the piece: matches and the gaps between them. */
static int pass_search(const pt *c, et_szvec *o, int m) {
    size_t pos = c->a, prev = c->a;
    while (pos < c->b) {
        size_t len = match_at(c, pos, m);
        if (!len) { pos++; continue; }
        if (add(o, &prev, pos) || add(o, &prev, pos + len)) return -1;
        pos += len;
    }
    return add(o, &prev, c->b);
}

/* \s+$ : the whitespace at the end of the piece. */
static int pass_trailing_ws(const pt *c, et_szvec *o) {
    size_t p = c->b, prev = c->a;
    while (p > c->a && is_ws(c, p - 1)) p--;
    if (add(o, &prev, p)) return -1;
    return add(o, &prev, c->b);
}

/* Pass codes: >= 0 a pass_search matcher, else one of these. */
enum { P_GPT2 = -1, P_LLAMA3 = -2, P_QWEN2 = -3, P_TRAILING_WS = -4, P_END = -100 };

static const int passes_default[] = {M_DEFAULT_PUNCT, P_GPT2, M_NUMBERS, M_3DIGITS, P_END};
static const int passes_gpt2[] = {P_GPT2, P_END};
static const int passes_llama3[] = {P_LLAMA3, P_END};
static const int passes_qwen2[] = {P_QWEN2, P_END};
static const int passes_smollm[] = {M_ONE_NUMBER, P_GPT2, P_END};
static const int passes_deepseek[] = {M_CRLF, M_DS_LETTERS, M_DS_PUNCT, P_TRAILING_WS, M_DS_CJK, M_NUMBERS, P_END};

static const int *passes_of(int kind) {
    switch (kind) {
    case ET_PRE_GPT2: return passes_gpt2;
    case ET_PRE_LLAMA3: return passes_llama3;
    case ET_PRE_QWEN2: return passes_qwen2;
    case ET_PRE_SMOLLM: return passes_smollm;
    case ET_PRE_DEEPSEEK_LLM: return passes_deepseek;
    default: return passes_default;
    }
}

int et_pretok_split(int kind, const char *text, size_t len, et_szvec *ends) {
    if (len == 0) return 0;
    uint32_t *cp = malloc(len * sizeof *cp);
    uint16_t *fl = malloc(len * sizeof *fl);
    size_t *boff = malloc((len + 1) * sizeof *boff);
    et_szvec cur = {0}, nxt = {0};
    int rc = -1;
    if (!cp || !fl || !boff) goto done;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        int l;
        cp[n] = et_utf8_decode((const uint8_t *)text + i, len - i, &l);
        fl[n] = et_uc_flags(cp[n]);
        boff[n++] = i;
        i += (size_t)l;
    }
    boff[n] = len;
    if (et_szvec_push(&cur, n)) goto done;
    for (const int *p = passes_of(kind); *p != P_END; p++) {
        nxt.n = 0;
        size_t a = 0;
        for (size_t s = 0; s < cur.n; s++) {
            pt c = {cp, fl, a, cur.v[s]};
            int r = *p == P_GPT2 ? pass_gpt2(&c, &nxt)
                  : *p == P_LLAMA3 ? pass_llama3(&c, &nxt, 3)
                  : *p == P_QWEN2 ? pass_llama3(&c, &nxt, 1)
                  : *p == P_TRAILING_WS ? pass_trailing_ws(&c, &nxt)
                  : pass_search(&c, &nxt, *p);
            if (r) goto done;
            a = cur.v[s];
        }
        et_szvec tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    for (size_t s = 0; s < cur.n; s++)
        if (et_szvec_push(ends, boff[cur.v[s]])) goto done;
    rc = 0;
done:
    free(cp);
    free(fl);
    free(boff);
    free(cur.v);
    free(nxt.v);
    return rc;
}

/* tokenizer.ggml.pre names (llama.cpp llama_vocab::impl::load). */
static const struct { const char *name; int kind, ignore_merges, add_bos; } pre_table[] = {
    {"default", ET_PRE_DEFAULT, 0, 0},
    {"llama3", ET_PRE_LLAMA3, 1, 1}, {"llama-v3", ET_PRE_LLAMA3, 1, 1}, {"llama-bpe", ET_PRE_LLAMA3, 1, 1},
    {"falcon3", ET_PRE_LLAMA3, 1, 1}, {"falcon-h1", ET_PRE_LLAMA3, 1, 1}, {"pixtral", ET_PRE_LLAMA3, 1, 1},
    {"midm-2.0", ET_PRE_LLAMA3, 1, 1}, {"lfm2", ET_PRE_LLAMA3, 1, 1},
    {"dbrx", ET_PRE_LLAMA3, 0, 0}, {"smaug-bpe", ET_PRE_LLAMA3, 0, 0},
    {"deepseek-llm", ET_PRE_DEEPSEEK_LLM, 0, 0},
    {"gpt-2", ET_PRE_GPT2, 0, 0}, {"phi-2", ET_PRE_GPT2, 0, 0}, {"jina-es", ET_PRE_GPT2, 0, 0},
    {"jina-de", ET_PRE_GPT2, 0, 0}, {"gigachat", ET_PRE_GPT2, 0, 0}, {"jina-v2-es", ET_PRE_GPT2, 0, 0},
    {"jina-v2-de", ET_PRE_GPT2, 0, 0}, {"a.x-4.0", ET_PRE_GPT2, 0, 0}, {"mellum", ET_PRE_GPT2, 0, 0},
    {"modern-bert", ET_PRE_GPT2, 0, 0}, {"mpt", ET_PRE_GPT2, 0, 0}, {"olmo", ET_PRE_GPT2, 0, 0},
    {"jais", ET_PRE_GPT2, 0, 0}, {"trillion", ET_PRE_GPT2, 0, 0}, {"granite-docling", ET_PRE_GPT2, 0, 0},
    {"exaone4", ET_PRE_GPT2, 0, 0}, {"jina-v1-en", ET_PRE_GPT2, 0, 0}, {"jina-v2-code", ET_PRE_GPT2, 0, 0},
    {"roberta-bpe", ET_PRE_GPT2, 0, 0},
    {"qwen2", ET_PRE_QWEN2, 0, 0}, {"deepseek-r1-qwen", ET_PRE_QWEN2, 0, 0}, {"kormo", ET_PRE_QWEN2, 0, 0},
    {"f2llmv2", ET_PRE_QWEN2, 0, 0}, {"stablelm2", ET_PRE_QWEN2, 0, 0}, {"megrez", ET_PRE_QWEN2, 0, 0},
    {"hunyuan", ET_PRE_QWEN2, 0, 0}, {"solar-open", ET_PRE_QWEN2, 0, 0},
    {"smollm", ET_PRE_SMOLLM, 0, 0}, {"starcoder", ET_PRE_SMOLLM, 0, 0}, {"refact", ET_PRE_SMOLLM, 0, 0},
    {"command-r", ET_PRE_SMOLLM, 0, 0}, {"codeshell", ET_PRE_SMOLLM, 0, 0}, {"exaone", ET_PRE_SMOLLM, 0, 0},
    {"minerva-7b", ET_PRE_SMOLLM, 0, 0}, {"mellum2", ET_PRE_SMOLLM, 0, 0},
};

int et_pre_lookup(const char *name, int *kind, int *ignore_merges, int *add_bos) {
    for (size_t i = 0; i < sizeof pre_table / sizeof pre_table[0]; i++)
        if (strcmp(pre_table[i].name, name) == 0) {
            *kind = pre_table[i].kind;
            *ignore_merges = pre_table[i].ignore_merges;
            *add_bos = pre_table[i].add_bos;
            return 0;
        }
    return -1;
}
