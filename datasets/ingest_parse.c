/* datasets/ingest_parse.c — input bytes -> documents (layer 1 of ingest.h):
 * plain text with a separator, JSON array / JSONL records (Alpaca, chat
 * messages, prompt/completion, text), TSV classification.  No tokenizer.
 * Rules: docs/data.md. */
#include "ingest.h"

#include <cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chat_template.h"
#include "tokenizer_int.h"

const char *const ET_ALPACA_PROMPT_INPUT =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n%s\n\n### Input:\n%s\n\n### Response:\n";
const char *const ET_ALPACA_PROMPT_NO_INPUT =
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n%s\n\n### Response:\n";

static const char *const FORMAT_NAMES[] = {"auto", "text", "jsonl", "json", "tsv"};

const char *et_format_name(int f) { return f >= 0 && f <= ET_FMT_TSV ? FORMAT_NAMES[f] : NULL; }

int et_format_from_name(const char *name) {
    for (int f = 0; f <= ET_FMT_TSV; f++)
        if (!strcmp(name, FORMAT_NAMES[f])) return f;
    return -1;
}

et_ingest_opts et_ingest_defaults(void) {
    et_ingest_opts o = {0};
    o.format = ET_FMT_AUTO;
    o.mask_prompt = 1;
    return o;
}

/* ---------------------------------------------------------------- helpers */

/* The same validator as the tokenizer's (datasets/tokenizer.c et_utf8_check). */
int et_utf8_valid(const char *str, size_t n, size_t *bad) {
    size_t i = et_utf8_check((const uint8_t *)str, n);
    if (i == n) return 1;
    *bad = i;
    return 0;
}

/* 1-based line of byte offset off. */
static int64_t line_of(const char *s, size_t off) {
    int64_t line = 1;
    for (size_t i = 0; i < off; i++) line += s[i] == '\n';
    return line;
}

/* 1-based column (in bytes) of byte offset off. */
static size_t col_of(const char *s, size_t off) {
    size_t a = off;
    while (a > 0 && s[a - 1] != '\n') a--;
    return off - a + 1;
}

/* Incremental line counter for offsets visited in increasing order. */
typedef struct line_ctr {
    const char *s;
    size_t off;
    int64_t line;
} line_ctr;

static int64_t line_at(line_ctr *c, size_t off) {
    if (off < c->off) { c->off = 0; c->line = 1; }
    for (; c->off < off; c->off++) c->line += c->s[c->off] == '\n';
    return c->line;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

void et_docs_free(et_docs *d) {
    for (size_t i = 0; i < d->n; i++) {
        free(d->doc[i].text);
        free(d->doc[i].segs);
    }
    free(d->doc);
    for (int i = 0; i < d->n_labels; i++) free(d->label_names[i]);
    free(d->label_names);
    memset(d, 0, sizeof *d);
}

/* A growing text with its segments, for building one document. */
typedef struct builder {
    char *buf;
    size_t len, cap;
    et_seg *segs;
    int n_segs, cap_segs;
    int oom;
} builder;

static void b_add(builder *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->len + n + 1) c *= 2;
        char *q = realloc(b->buf, c);
        if (!q) { b->oom = 1; return; }
        b->buf = q;
        b->cap = c;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = 0;
}

static void b_str(builder *b, const char *s) { b_add(b, s, strlen(s)); }

/* End the current segment (everything since the previous one) with flag train.
 * Adjacent segments with the same flag merge. */
static void b_seg(builder *b, int train) {
    if (b->oom) return;
    size_t start = b->n_segs ? b->segs[b->n_segs - 1].end : 0;
    if (b->len == start) return;
    if (b->n_segs && b->segs[b->n_segs - 1].train == train) {
        b->segs[b->n_segs - 1].end = b->len;
        return;
    }
    if (b->n_segs == b->cap_segs) {
        int c = b->cap_segs ? b->cap_segs * 2 : 4;
        et_seg *q = realloc(b->segs, (size_t)c * sizeof *q);
        if (!q) { b->oom = 1; return; }
        b->segs = q;
        b->cap_segs = c;
    }
    b->segs[b->n_segs].end = b->len;
    b->segs[b->n_segs].train = train;
    b->n_segs++;
}

static void b_free(builder *b) {
    free(b->buf);
    free(b->segs);
    memset(b, 0, sizeof *b);
}

/* Move the builder's text into a new document. */
static int push_doc(et_docs *d, builder *b, int32_t label, int64_t line) {
    if (b->oom) return -1;
    if (d->n == d->cap) {
        size_t c = d->cap ? d->cap * 2 : 64;
        et_doc *q = realloc(d->doc, c * sizeof *q);
        if (!q) return -1;
        d->doc = q;
        d->cap = c;
    }
    et_doc *x = &d->doc[d->n++];
    x->text = b->buf;
    x->len = b->len;
    x->segs = b->segs;
    x->n_segs = b->n_segs;
    x->label = label;
    x->line = line;
    memset(b, 0, sizeof *b);
    return 0;
}

/* Add a document made of one trained segment of text s[0..n). */
static int push_plain(et_docs *d, const char *s, size_t n, int32_t label, int64_t line) {
    builder b = {0};
    b_add(&b, s, n);
    b_seg(&b, 1);
    if (push_doc(d, &b, label, line)) {
        b_free(&b);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------- text */

static size_t skip_line(const char *s, size_t i, size_t n) {
    while (i < n && s[i] != '\n') i++;
    return i < n ? i + 1 : n;
}

/* 1 if line [i, end-of-line) holds only whitespace. */
static int blank_line(const char *s, size_t i, size_t n) {
    for (; i < n && s[i] != '\n'; i++)
        if (!is_ws(s[i])) return 0;
    return 1;
}

/* Trim s[a..b) and add it as a document when not empty. */
static int add_trimmed(et_docs *d, const char *s, size_t a, size_t b, line_ctr *lc) {
    while (a < b && is_ws(s[a])) a++;
    while (b > a && is_ws(s[b - 1])) b--;
    if (a == b) return 0;
    return push_plain(d, s + a, b - a, -1, line_at(lc, a));
}

static int parse_text(const char *s, size_t n, const char *name, const char *sep, et_docs *d, et_err *e) {
    line_ctr lc = {s, 0, 1};
    int rc = 0;
    if (sep && !strcmp(sep, "none")) {
        rc = add_trimmed(d, s, 0, n, &lc);
    } else if (sep && !strcmp(sep, "line")) {
        for (size_t i = 0; !rc && i < n;) {
            size_t j = skip_line(s, i, n);
            rc = add_trimmed(d, s, i, j, &lc);
            i = j;
        }
    } else if (!sep || !*sep || !strcmp(sep, "blank")) {
        size_t start = 0, i = 0;
        while (!rc && i < n) {
            if (blank_line(s, i, n)) {
                rc = add_trimmed(d, s, start, i, &lc);
                i = skip_line(s, i, n);
                start = i;
            } else {
                i = skip_line(s, i, n);
            }
        }
        if (!rc) rc = add_trimmed(d, s, start, n, &lc);
    } else {
        size_t k = strlen(sep), start = 0;
        for (size_t i = 0; !rc && i + k <= n;) {
            if (memcmp(s + i, sep, k) == 0) {
                rc = add_trimmed(d, s, start, i, &lc);
                i += k;
                start = i;
            } else {
                i++;
            }
        }
        if (!rc) rc = add_trimmed(d, s, start, n, &lc);
    }
    if (rc) return et_fail(e, ET_ERUN, "%s: out of memory", name);
    return 0;
}

/* ------------------------------------------------------------------- JSON */

/* Message with "<name>: line L: " in front. */
static int fail_at(et_err *e, int code, const char *name, int64_t line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail_at(et_err *e, int code, const char *name, int64_t line, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return et_fail(e, code, "%s: line %lld: %s", name, (long long)line, msg);
}

/* A string field: *out = its value, NULL when absent.  Error if not a string. */
static int get_str(const cJSON *o, const char *key, const char **out, const char *name, int64_t line, et_err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v) return 0;
    if (!cJSON_IsString(v) || !v->valuestring)
        return fail_at(e, ET_EINPUT, name, line, "field '%s' is not a string", key);
    *out = v->valuestring;
    return 0;
}

static int need_str(const cJSON *o, const char *key, const char **out, const char *name, int64_t line, et_err *e) {
    int rc = get_str(o, key, out, name, line, e);
    if (!rc && !*out) rc = fail_at(e, ET_EINPUT, name, line, "missing field '%s'", key);
    return rc;
}

/* Render msgs through chat template `chat` into b (its segments kept). */
static int render_chat(int chat, const et_chat_msg *msgs, int n, builder *b, const char *name, int64_t line, et_err *e) {
    if (chat == ET_CHAT_UNKNOWN)
        return fail_at(e, ET_EINPUT, name, line,
                       "the model's chat template is not one edgetune recognises; pass --chat-template NAME (%s)",
                       et_chat_names());
    et_chat_out r;
    int rc = et_chat_render(chat, msgs, n, 0, &r, e);
    if (rc) {
        char msg[sizeof e->msg];
        snprintf(msg, sizeof msg, "%s", e ? e->msg : "");
        return fail_at(e, rc, name, line, "%s", msg);
    }
    size_t start = 0;
    for (int i = 0; i < r.n_segs; i++) {
        b_add(b, r.text + start, r.segs[i].end - start);
        b_seg(b, r.segs[i].train);
        start = r.segs[i].end;
    }
    et_chat_out_free(&r);
    return 0;
}

/* Chat: through the chat template when there is one (render_chat), else
 * "### System:\n...", "### User:\n...", "### Assistant:\n..." joined by
 * blank lines; only the assistants' contents are trained. */
static int chat_doc(const cJSON *msgs, builder *b, int chat, const char *name, int64_t line, et_err *e) {
    if (!cJSON_IsArray(msgs)) return fail_at(e, ET_EINPUT, name, line, "field 'messages' is not an array");
    int i = 0, n_msgs = cJSON_GetArraySize(msgs);
    et_chat_msg *cm = NULL;
    if (chat && n_msgs > 0 && !(cm = calloc((size_t)n_msgs, sizeof *cm)))
        return et_fail(e, ET_ERUN, "%s: out of memory", name);
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        if (!cJSON_IsObject(m)) return fail_at(e, ET_EINPUT, name, line, "messages[%d] is not an object", i);
        const char *role, *content;
        int rc = need_str(m, "role", &role, name, line, e);
        if (!rc) rc = need_str(m, "content", &content, name, line, e);
        if (rc) {
            /* say which message */
            size_t l = strlen(e ? e->msg : "");
            if (e && l + 32 < sizeof e->msg) snprintf(e->msg + l, sizeof e->msg - l, " in messages[%d]", i);
            free(cm);
            return rc;
        }
        if (cm && i < n_msgs) {
            cm[i].role = role;
            cm[i].content = content;
        }
        const char *hdr = !strcmp(role, "system") ? "### System:\n"
                        : !strcmp(role, "user") ? "### User:\n"
                        : !strcmp(role, "assistant") ? "### Assistant:\n" : NULL;
        if (!hdr) {
            free(cm);
            return fail_at(e, ET_EINPUT, name, line, "messages[%d]: unknown role '%.64s' (system, user, assistant)", i,
                           role);
        }
        if (chat) continue;
        if (i) b_str(b, "\n\n");
        b_str(b, hdr);
        b_seg(b, 0);
        b_str(b, content);
        b_seg(b, !strcmp(role, "assistant"));
    }
    if (i == 0) {
        free(cm);
        return fail_at(e, ET_EINPUT, name, line, "field 'messages' is empty");
    }
    int rc = chat ? render_chat(chat, cm, i < n_msgs ? i : n_msgs, b, name, line, e) : 0;
    free(cm);
    return rc;
}

/* Alpaca: the Stanford Alpaca prompt (masked) then the output (trained).  An
 * empty instruction with a non-empty input uses the input as the instruction. */
static int alpaca_doc(const cJSON *o, builder *b, int chat, const char *name, int64_t line, et_err *e) {
    const char *ins, *inp, *out;
    int rc = need_str(o, "instruction", &ins, name, line, e);
    if (!rc) rc = get_str(o, "input", &inp, name, line, e);
    if (!rc) rc = need_str(o, "output", &out, name, line, e);
    if (rc) return rc;
    if (!inp) inp = "";
    if (!*ins) {
        ins = inp;
        inp = "";
    }
    if (chat) { /* a user turn (instruction, then the input after a blank line) and an assistant turn */
        size_t li = strlen(ins), lp = strlen(inp);
        char *user = malloc(li + lp + 3);
        if (!user) return et_fail(e, ET_ERUN, "%s: out of memory", name);
        memcpy(user, ins, li);
        if (lp) {
            memcpy(user + li, "\n\n", 2);
            memcpy(user + li + 2, inp, lp);
        }
        user[li + (lp ? lp + 2 : 0)] = 0;
        et_chat_msg m[2] = {{"user", user}, {"assistant", out}};
        rc = render_chat(chat, m, 2, b, name, line, e);
        free(user);
        return rc;
    }
    /* expand the template by hand (no printf: the fields may hold '%') */
    const char *t = *inp ? ET_ALPACA_PROMPT_INPUT : ET_ALPACA_PROMPT_NO_INPUT;
    const char *args[2] = {ins, inp};
    int k = 0;
    for (const char *p = t; *p; p++) {
        if (p[0] == '%' && p[1] == 's') {
            b_str(b, args[k++]);
            p++;
        } else {
            b_add(b, p, 1);
        }
    }
    b_seg(b, 0);
    b_str(b, out);
    b_seg(b, 1);
    return 0;
}

/* One record (a JSON object) -> one document. */
static int record_to_doc(const cJSON *o, et_docs *d, int chat, const char *name, int64_t line, et_err *e) {
    if (!cJSON_IsObject(o)) return fail_at(e, ET_EINPUT, name, line, "record is not a JSON object");
    builder b = {0};
    int rc;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
    const char *s1, *s2;
    if (msgs) {
        rc = chat_doc(msgs, &b, chat, name, line, e);
    } else if (cJSON_GetObjectItemCaseSensitive(o, "instruction") || cJSON_GetObjectItemCaseSensitive(o, "output")) {
        rc = alpaca_doc(o, &b, chat, name, line, e);
    } else if (cJSON_GetObjectItemCaseSensitive(o, "prompt") || cJSON_GetObjectItemCaseSensitive(o, "completion")) {
        rc = need_str(o, "prompt", &s1, name, line, e);
        if (!rc) rc = need_str(o, "completion", &s2, name, line, e);
        if (!rc) {
            b_str(&b, s1);
            b_seg(&b, 0);
            b_str(&b, s2);
            b_seg(&b, 1);
        }
    } else if (cJSON_GetObjectItemCaseSensitive(o, "text")) {
        rc = need_str(o, "text", &s1, name, line, e);
        if (!rc) {
            b_str(&b, s1);
            b_seg(&b, 1);
        }
    } else {
        rc = fail_at(e, ET_EINPUT, name, line,
                     "missing field: a record needs 'messages', 'instruction'+'output', 'prompt'+'completion' or 'text'");
    }
    if (!rc && b.oom) rc = et_fail(e, ET_ERUN, "%s: out of memory", name);
    if (!rc && b.len == 0) rc = fail_at(e, ET_EINPUT, name, line, "record has no text");
    size_t bad;
    /* cJSON decodes \u escapes; the result must still be valid UTF-8 */
    if (!rc && !et_utf8_valid(b.buf, b.len, &bad))
        rc = fail_at(e, ET_EINPUT, name, line, "a string decodes to invalid UTF-8 (a \\u escape?)");
    if (!rc && push_doc(d, &b, -1, line)) rc = et_fail(e, ET_ERUN, "%s: out of memory", name);
    if (rc) b_free(&b);
    return rc;
}

/* Parse s[a..b) as one JSON value; error messages point at the line of the
 * offending byte. */
static int parse_record(const char *s, size_t a, size_t b, et_docs *d, int chat, const char *name, int64_t line,
                        et_err *e) {
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(s + a, b - a, &end, 0);
    size_t pos = end ? (size_t)(end - s) : a;
    if (o) {
        while (pos < b && is_ws(s[pos])) pos++;
        if (pos < b) {
            cJSON_Delete(o);
            return fail_at(e, ET_EINPUT, name, line_of(s, pos), "malformed JSON: unexpected text after the record (column %zu)",
                           col_of(s, pos));
        }
    } else {
        if (pos < a || pos > b) pos = a;
        return fail_at(e, ET_EINPUT, name, line_of(s, pos), "malformed JSON (column %zu)", col_of(s, pos));
    }
    int rc = record_to_doc(o, d, chat, name, line, e);
    cJSON_Delete(o);
    return rc;
}

static int parse_jsonl(const char *s, size_t n, int chat, const char *name, et_docs *d, et_err *e) {
    int64_t line = 1;
    for (size_t i = 0; i < n; line++) {
        size_t j = i;
        while (j < n && s[j] != '\n') j++;
        size_t a = i, b = j;
        while (a < b && is_ws(s[a])) a++;
        while (b > a && is_ws(s[b - 1])) b--;
        if (a < b) {
            int rc = parse_record(s, a, b, d, chat, name, line, e);
            if (rc) return rc;
        }
        i = j < n ? j + 1 : n;
    }
    return 0;
}

/* End of the JSON value starting at p: the index of the ',' or ']' that
 * follows it at nesting depth 0, or n if the input ends first.  Only brackets
 * outside strings count; cJSON checks the value itself. */
static size_t value_end(const char *s, size_t p, size_t n) {
    size_t depth = 0;
    int in_str = 0;
    for (; p < n; p++) {
        char c = s[p];
        if (in_str) {
            if (c == '\\') p++;
            else if (c == '"') in_str = 0;
            continue;
        }
        if (c == '"') in_str = 1;
        else if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') {
            if (depth == 0) return p;
            depth--;
        } else if (c == ',' && depth == 0) return p;
    }
    return n;
}

/* A JSON array of records, each parsed on its own so that an error names the
 * line of the record (or of the bad byte) rather than "somewhere in the file". */
static int parse_json_array(const char *s, size_t p, size_t n, int chat, const char *name, et_docs *d, et_err *e) {
    line_ctr lc = {s, 0, 1};
    p++; /* '[' */
    for (size_t count = 0;; count++) {
        while (p < n && is_ws(s[p])) p++;
        if (p == n) return fail_at(e, ET_EINPUT, name, line_of(s, n), "malformed JSON: the array is not closed");
        if (s[p] == ']') {
            if (count) return fail_at(e, ET_EINPUT, name, line_of(s, p), "malformed JSON: ',' before ']'");
            p++;
            break;
        }
        size_t end = value_end(s, p, n), b = end;
        while (b > p && is_ws(s[b - 1])) b--;
        int64_t line = line_at(&lc, p);
        if (b == p) return fail_at(e, ET_EINPUT, name, line, "malformed JSON: empty array element");
        int rc = parse_record(s, p, b, d, chat, name, line, e);
        if (rc) return rc;
        if (end == n) return fail_at(e, ET_EINPUT, name, line_of(s, n), "malformed JSON: the array is not closed");
        p = end + 1;
        if (s[end] == ']') break;
    }
    while (p < n && is_ws(s[p])) p++;
    if (p < n) return fail_at(e, ET_EINPUT, name, line_of(s, p), "malformed JSON: text after the array");
    return 0;
}

static int parse_json(const char *s, size_t n, int chat, const char *name, et_docs *d, et_err *e) {
    size_t p = 0;
    while (p < n && is_ws(s[p])) p++;
    if (p < n && s[p] == '[') return parse_json_array(s, p, n, chat, name, d, e);
    return parse_jsonl(s, n, chat, name, d, e);
}

/* -------------------------------------------------------------------- TSV */

/* Byte-wise order of (p, n) strings: memcmp, then the shorter first (the
 * order strcmp gives, as labels hold no NUL). */
static int span_cmp(const char *a, size_t na, const char *b, size_t nb) {
    int c = memcmp(a, b, na < nb ? na : nb);
    if (c) return c;
    return na < nb ? -1 : na > nb;
}

typedef struct tsv_row {
    const char *text, *label;
    size_t text_len, label_len;
    int64_t line;
} tsv_row;

static int cmp_row_label(const void *x, const void *y) {
    const tsv_row *a = x, *b = y;
    return span_cmp(a->label, a->label_len, b->label, b->label_len);
}

/* Label names with an index sorted by name, for binary search. */
typedef struct label_set {
    char **names; /* [n], in class order */
    int *order;   /* [n], class indices sorted by name */
    int n;
} label_set;

static const label_set *g_sort_set; /* qsort has no context argument */
static int cmp_order(const void *x, const void *y) {
    const char *a = g_sort_set->names[*(const int *)x], *b = g_sort_set->names[*(const int *)y];
    return strcmp(a, b);
}

static int build_order(label_set *ls) {
    ls->order = malloc((size_t)(ls->n ? ls->n : 1) * sizeof(int));
    if (!ls->order) return -1;
    for (int i = 0; i < ls->n; i++) ls->order[i] = i;
    g_sort_set = ls;
    qsort(ls->order, (size_t)ls->n, sizeof(int), cmp_order);
    return 0;
}

/* Class index of label (s, len), or -1. */
static int lookup_label(const label_set *ls, const char *s, size_t len) {
    int lo = 0, hi = ls->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const char *nm = ls->names[ls->order[mid]];
        int c = span_cmp(s, len, nm, strlen(nm));
        if (c == 0) return ls->order[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return -1;
}

static char *dup_span(const char *s, size_t len) {
    char *c = malloc(len + 1);
    if (!c) return NULL;
    memcpy(c, s, len);
    c[len] = 0;
    return c;
}

/* --labels "a,b,c" -> ls->names in that order. */
static int parse_labels_opt(label_set *ls, const char *list, const char *name, et_err *e) {
    int cap = 1;
    for (const char *q = list; *q; q++) cap += *q == ',';
    if (cap > ET_MAX_LABELS) return et_fail(e, ET_EUSAGE, "%s: --labels names more than %d classes", name, ET_MAX_LABELS);
    ls->names = calloc((size_t)cap, sizeof(char *));
    if (!ls->names) return et_fail(e, ET_ERUN, "%s: out of memory", name);
    for (const char *p = list;;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == 0) return et_fail(e, ET_EUSAGE, "%s: --labels '%s' has an empty name", name, list);
        if (!(ls->names[ls->n++] = dup_span(p, len))) return et_fail(e, ET_ERUN, "%s: out of memory", name);
        if (!c) break;
        p = c + 1;
    }
    if (build_order(ls)) return et_fail(e, ET_ERUN, "%s: out of memory", name);
    for (int i = 1; i < ls->n; i++)
        if (!strcmp(ls->names[ls->order[i]], ls->names[ls->order[i - 1]]))
            return et_fail(e, ET_EUSAGE, "%s: --labels '%s' names '%s' twice", name, list, ls->names[ls->order[i]]);
    return 0;
}

/* Split line [a, b) into text and label at the first/last TAB, trimmed. */
static int split_row(const char *s, size_t a, size_t b, int label_first, tsv_row *r) {
    size_t t = (size_t)-1;
    for (size_t i = a; i < b; i++)
        if (s[i] == '\t') {
            t = i;
            if (label_first) break;
        }
    if (t == (size_t)-1) return -1;
    size_t ta = label_first ? t + 1 : a, tb = label_first ? b : t;
    size_t la = label_first ? a : t + 1, lb = label_first ? t : b;
    while (ta < tb && is_ws(s[ta])) ta++;
    while (tb > ta && is_ws(s[tb - 1])) tb--;
    while (la < lb && is_ws(s[la])) la++;
    while (lb > la && is_ws(s[lb - 1])) lb--;
    r->text = s + ta;
    r->text_len = tb - ta;
    r->label = s + la;
    r->label_len = lb - la;
    return 0;
}

/* Rows of text<TAB>label (or label<TAB>text).  The first row is a header when
 * its label column reads "label" (inferred labels) or is not one of --labels. */
static int tsv_rows(const char *s, size_t n, const char *name, const et_ingest_opts *o, const label_set *fixed,
                    tsv_row **out, size_t *n_out, et_err *e) {
    size_t cap = 0, nr = 0;
    tsv_row *rows = NULL;
    int first = 1;
    int64_t line = 1;
    for (size_t i = 0; i < n; line++) {
        size_t j = i;
        while (j < n && s[j] != '\n') j++;
        size_t a = i, b = j;
        i = j < n ? j + 1 : n;
        if (blank_line(s, a, b)) continue;
        tsv_row r;
        if (split_row(s, a, b, o->label_first, &r)) {
            free(rows);
            return fail_at(e, ET_EINPUT, name, line, "no TAB: expected %s", o->label_first ? "label<TAB>text" : "text<TAB>label");
        }
        r.line = line;
        if (first) {
            first = 0;
            int header = fixed ? lookup_label(fixed, r.label, r.label_len) < 0
                               : (r.label_len == 5 && strncasecmp(r.label, "label", 5) == 0);
            if (header) continue;
        }
        const char *why = r.label_len == 0 ? "empty label" : memchr(r.label, 0, r.label_len) ? "label holds a NUL byte"
                        : r.text_len == 0 ? "empty text" : NULL;
        if (why) {
            free(rows);
            return fail_at(e, ET_EINPUT, name, line, "%s", why);
        }
        if (nr == cap) {
            cap = cap ? cap * 2 : 256;
            tsv_row *q = realloc(rows, cap * sizeof *q);
            if (!q) {
                free(rows);
                return et_fail(e, ET_ERUN, "%s: out of memory", name);
            }
            rows = q;
        }
        rows[nr++] = r;
    }
    *out = rows;
    *n_out = nr;
    return 0;
}

/* The distinct labels of rows, sorted bytewise. */
static int infer_labels(const tsv_row *rows, size_t nr, label_set *ls, const char *name, et_err *e) {
    tsv_row *tmp = malloc((nr ? nr : 1) * sizeof *tmp);
    if (!tmp) return et_fail(e, ET_ERUN, "%s: out of memory", name);
    if (nr) memcpy(tmp, rows, nr * sizeof *tmp);
    qsort(tmp, nr, sizeof *tmp, cmp_row_label);
    size_t distinct = 0;
    for (size_t i = 0; i < nr; i++) distinct += i == 0 || cmp_row_label(&tmp[i], &tmp[i - 1]) != 0;
    int rc = 0;
    if (distinct > ET_MAX_LABELS) rc = et_fail(e, ET_EINPUT, "%s: more than %d distinct labels", name, ET_MAX_LABELS);
    else if (!(ls->names = calloc(distinct ? distinct : 1, sizeof(char *)))) rc = et_fail(e, ET_ERUN, "%s: out of memory", name);
    for (size_t i = 0; !rc && i < nr; i++)
        if ((i == 0 || cmp_row_label(&tmp[i], &tmp[i - 1]) != 0) &&
            !(ls->names[ls->n++] = dup_span(tmp[i].label, tmp[i].label_len)))
            rc = et_fail(e, ET_ERUN, "%s: out of memory", name);
    free(tmp);
    if (!rc && build_order(ls)) rc = et_fail(e, ET_ERUN, "%s: out of memory", name);
    return rc;
}

int et_template_check(const char *tmpl, et_err *e) {
    if (!tmpl || !strstr(tmpl, "{text}"))
        return et_fail(e, ET_EINPUT, "template '%.200s' has no {text} (where the record's text goes)", tmpl ? tmpl : "");
    return 0;
}

char *et_render_template(const char *tmpl, const char *text, size_t len) {
    builder b = {0};
    b_add(&b, "", 0);
    for (const char *p = tmpl; *p; p++) {
        if (!strncmp(p, "{text}", 6)) {
            b_add(&b, text, len);
            p += 5;
        } else if (p[0] == '\\' && p[1]) {
            char c = p[1] == 'n' ? '\n' : p[1] == 't' ? '\t' : p[1] == 'r' ? '\r' : p[1];
            if (c == p[1] && c != '\\' && c != ',') b_add(&b, p, 1); /* unknown escape: kept */
            else p++;
            b_add(&b, &c, 1);
        } else {
            b_add(&b, p, 1);
        }
    }
    if (b.oom) {
        b_free(&b);
        return NULL;
    }
    free(b.segs);
    return b.buf;
}

void et_strs_free(char **v, int n) {
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

int et_split_list(const char *list, int max, char ***out, int *n, et_err *e) {
    *out = NULL;
    *n = 0;
    int cap = 1;
    for (const char *p = list; *p; p++) cap += *p == ',';
    if (cap > max) return et_fail(e, ET_EUSAGE, "list '%.100s' has more than %d items", list, max);
    char **v = calloc((size_t)cap, sizeof *v);
    if (!v) return et_fail(e, ET_ERUN, "out of memory");
    const char *p = list;
    int k = 0, rc = 0;
    while (!rc) {
        builder b = {0};
        b_add(&b, "", 0);
        for (; *p && *p != ','; p++) {
            if (p[0] == '\\' && p[1]) {
                p++;
                char c = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
                b_add(&b, &c, 1);
            } else {
                b_add(&b, p, 1);
            }
        }
        free(b.segs);
        if (b.oom) rc = et_fail(e, ET_ERUN, "out of memory");
        else if (b.len == 0) rc = et_fail(e, ET_EUSAGE, "list '%.100s' has an empty item", list);
        if (rc) {
            free(b.buf);
            break;
        }
        v[k++] = b.buf;
        if (!*p) break;
        p++;
    }
    if (rc) {
        et_strs_free(v, k);
        return rc;
    }
    *out = v;
    *n = k;
    return 0;
}

/* A templated row: the rendered prompt (masked) then the verbalizer (trained). */
static int push_templated(et_docs *d, const char *tmpl, const tsv_row *r, const char *verb, const char *cls, int k) {
    char *p = et_render_template(tmpl, r->text, r->text_len);
    if (!p) return -1;
    builder b = {0};
    b_str(&b, p);
    free(p);
    b_seg(&b, 0);
    if (verb) b_str(&b, verb);
    else {
        b_str(&b, " ");
        b_str(&b, cls);
    }
    b_seg(&b, 1);
    if (push_doc(d, &b, k, r->line)) {
        b_free(&b);
        return -1;
    }
    return 0;
}

static int parse_tsv(const char *s, size_t n, const char *name, const et_ingest_opts *o, et_docs *d, et_err *e) {
    label_set ls = {0};
    tsv_row *rows = NULL;
    size_t nr = 0;
    int rc = 0;
    if (o->labels) rc = parse_labels_opt(&ls, o->labels, name, e);
    if (!rc) rc = tsv_rows(s, n, name, o, o->labels ? &ls : NULL, &rows, &nr, e);
    if (!rc && !o->labels) rc = infer_labels(rows, nr, &ls, name, e);
    char **verb = NULL;
    int n_verb = 0;
    if (!rc && o->template_) rc = et_template_check(o->template_, e);
    if (!rc && o->template_ && o->verbalizers) {
        rc = et_split_list(o->verbalizers, ET_MAX_LABELS, &verb, &n_verb, e);
        if (!rc && n_verb != ls.n)
            rc = et_fail(e, ET_EUSAGE, "%s: %d verbalizers for %d classes (classes in order: %s%s%s)", name, n_verb, ls.n,
                         ls.n > 0 ? ls.names[0] : "", ls.n > 1 ? ", " : "", ls.n > 1 ? ls.names[1] : "");
    }
    for (size_t i = 0; !rc && i < nr; i++) {
        int k = lookup_label(&ls, rows[i].label, rows[i].label_len);
        if (k < 0)
            rc = fail_at(e, ET_EINPUT, name, rows[i].line, "unknown label '%.*s' (labels: %s)",
                         (int)(rows[i].label_len > 64 ? 64 : rows[i].label_len), rows[i].label, o->labels);
        else if (!o->template_ && push_plain(d, rows[i].text, rows[i].text_len, k, rows[i].line))
            rc = et_fail(e, ET_ERUN, "%s: out of memory", name);
        else if (o->template_ && push_templated(d, o->template_, &rows[i], verb ? verb[k] : NULL, ls.names[k], k))
            rc = et_fail(e, ET_ERUN, "%s: out of memory", name);
    }
    et_strs_free(verb, n_verb);
    free(rows);
    free(ls.order);
    /* the names pass to the documents (freed by et_docs_free) */
    d->label_names = ls.names;
    d->n_labels = ls.n;
    return rc;
}

/* --------------------------------------------------------------- dispatch */

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcasecmp(s + a - b, suf) == 0;
}

static int detect_format(const char *s, size_t n, const char *name) {
    if (ends_with(name, ".jsonl")) return ET_FMT_JSONL;
    if (ends_with(name, ".json")) return ET_FMT_JSON;
    if (ends_with(name, ".tsv")) return ET_FMT_TSV;
    if (ends_with(name, ".txt")) return ET_FMT_TEXT;
    size_t p = 0;
    while (p < n && is_ws(s[p])) p++;
    if (p < n && (s[p] == '[' || s[p] == '{')) return ET_FMT_JSON;
    return ET_FMT_TEXT;
}

int et_parse_input(const char *s, size_t n, const char *name, const et_ingest_opts *o, et_docs *d, et_err *e) {
    memset(d, 0, sizeof *d);
    d->format = o->format;
    if (n == 0 || !s) return et_fail(e, ET_EINPUT, "%s: empty file", name);
    size_t bom = n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0 ? 3 : 0; /* UTF-8 byte order mark */
    size_t bad;
    if (!et_utf8_valid(s, n, &bad))
        return fail_at(e, ET_EINPUT, name, line_of(s, bad), "invalid UTF-8 at byte offset %zu (byte 0x%02x)", bad,
                       (unsigned)(uint8_t)s[bad]);
    s += bom;
    n -= bom;
    int f = o->format;
    if (f < ET_FMT_AUTO || f > ET_FMT_TSV) return et_fail(e, ET_EUSAGE, "%s: unknown format %d", name, f);
    if (f == ET_FMT_AUTO) f = detect_format(s, n, name);
    d->format = f;
    size_t p = 0;
    while (p < n && is_ws(s[p])) p++;
    if (p == n) return et_fail(e, ET_EINPUT, "%s: empty file (only whitespace)", name);
    int rc = f == ET_FMT_TEXT ? parse_text(s, n, name, o->separator, d, e)
           : f == ET_FMT_TSV  ? parse_tsv(s, n, name, o, d, e)
                              : parse_json(s, n, o->chat_template, name, d, e);
    if (!rc && d->n == 0) rc = et_fail(e, ET_EINPUT, "%s: no records", name);
    if (rc) {
        et_docs_free(d);
        d->format = f;
    }
    return rc;
}
