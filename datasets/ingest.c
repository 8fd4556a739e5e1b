/* datasets/ingest.c — documents -> tokens.h5 (layer 2 of ingest.h):
 * encode, mask, EOS, truncate, split by document, pack, write atomically. */
#include "ingest.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "shuffle.h"

int64_t et_split_assign(int64_t n_docs, double valid_fraction, uint64_t seed, uint8_t *is_valid) {
    if (n_docs <= 0) return 0;
    memset(is_valid, 0, (size_t)n_docs);
    if (n_docs < 2 || !(valid_fraction > 0)) return 0;
    int64_t n_valid = (int64_t)((double)n_docs * valid_fraction + 0.5);
    if (n_valid < 1) n_valid = 1;
    if (n_valid > n_docs - 1) n_valid = n_docs - 1;
    int64_t *perm = malloc((size_t)n_docs * sizeof(int64_t));
    if (!perm) return -1;
    uint64_t st = et_shuffle_split_state(seed);
    et_shuffle_perm(&st, perm, n_docs);
    for (int64_t i = 0; i < n_valid; i++) is_valid[perm[i]] = 1;
    free(perm);
    return n_valid;
}

/* All documents' tokens and masks, concatenated in input order. */
typedef struct tokens {
    int32_t *tok;
    uint8_t *mask;
    size_t n, cap;
    int64_t *off;       /* [D+1] */
    uint8_t *truncated; /* [D] */
    int any_masked;     /* some token has mask 0 */
} tokens;

static int reserve(tokens *t, size_t extra) {
    if (t->n + extra <= t->cap) return 0;
    if (extra > (size_t)ET_DS_MAX_TOKENS - t->n) return -1;
    size_t c = t->cap ? t->cap : 4096;
    while (c < t->n + extra) c *= 2;
    int32_t *a = realloc(t->tok, c * sizeof(int32_t));
    if (!a) return -1;
    t->tok = a;
    uint8_t *b = realloc(t->mask, c);
    if (!b) return -1;
    t->mask = b;
    t->cap = c;
    return 0;
}

static size_t common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

/* Prefix an encoder's message with where the document came from. */
static int encode_fail(et_err *e, int rc, const char *source, const et_doc *d) {
    char inner[sizeof e->msg];
    snprintf(inner, sizeof inner, "%s", e && e->msg[0] ? e->msg : "encoding failed");
    return et_fail(e, rc ? rc : ET_EINPUT, "%s: line %lld: %s", source, (long long)d->line, inner);
}

/* Encode document d and append its tokens and mask to t. */
static int encode_doc(const et_encoder *enc, const et_doc *d, const et_ingest_opts *o, const char *source,
                      tokens *t, int64_t index, et_err *e) {
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = enc->encode(enc->ctx, d->text, d->len, &ids, &n, e);
    if (rc) {
        free(ids);
        return encode_fail(e, rc, source, d);
    }
    int masked = 0;
    for (int i = 0; o->mask_prompt && i < d->n_segs; i++) masked |= !d->segs[i].train;
    size_t n_all = n + (enc->eos_id >= 0);
    if (reserve(t, n_all)) {
        free(ids);
        return et_fail(e, ET_ERUN, "%s: out of memory (or more than %" PRId64 " tokens)", source, ET_DS_MAX_TOKENS);
    }
    int32_t *tok = t->tok + t->n;
    uint8_t *mask = t->mask + t->n;
    memcpy(tok, ids, n * sizeof(int32_t));
    int last_train = d->n_segs ? d->segs[d->n_segs - 1].train : 1;
    if (!masked) {
        memset(mask, 1, n);
    } else {
        /* token boundary after segment i: longest common prefix of
         * encode(text[0..end_i)) and encode(text) */
        size_t prev = 0;
        for (int i = 0; i < d->n_segs; i++) {
            size_t k = n;
            if (i < d->n_segs - 1) {
                int32_t *p = NULL;
                size_t np = 0;
                rc = enc->encode(enc->ctx, d->text, d->segs[i].end, &p, &np, e);
                if (rc) {
                    free(p);
                    free(ids);
                    return encode_fail(e, rc, source, d);
                }
                k = common_prefix(ids, n, p, np);
                free(p);
                if (k < prev) k = prev;
            }
            memset(mask + prev, d->segs[i].train ? 1 : 0, k - prev);
            prev = k;
        }
        if (n > 0 && enc->bos_id >= 0 && tok[0] == enc->bos_id) mask[0] = 0;
    }
    free(ids);
    if (enc->eos_id >= 0) {
        tok[n] = enc->eos_id;
        /* with a chat template the turn's own end marker is what is trained */
        mask[n] = (uint8_t)(masked ? last_train && o->chat_template <= 0 : 1);
    }
    if (n_all == 0) return et_fail(e, ET_EINPUT, "%s: line %lld: the document encodes to no tokens", source, (long long)d->line);
    if (o->max_len > 0 && n_all > (size_t)o->max_len) {
        n_all = (size_t)o->max_len;
        t->truncated[index] = 1;
    }
    for (size_t i = 0; i < n_all && !t->any_masked; i++) t->any_masked = mask[i] == 0;
    t->n += n_all;
    t->off[index + 1] = (int64_t)t->n;
    return 0;
}

static void tokens_free(tokens *t) {
    free(t->tok);
    free(t->mask);
    free(t->off);
    free(t->truncated);
}

/* Write the documents of one split (is_valid[d] == want), as they are or packed. */
static int write_split(et_ds_writer *w, const tokens *t, const et_docs *docs, const uint8_t *is_valid, int want,
                       const et_ingest_opts *o, int32_t pad_id, et_split_summary *s, et_err *e) {
    int64_t row_len = o->pack ? o->seq_len + 1 : 0, fill = 0;
    int32_t *rt = NULL;
    uint8_t *rm = NULL;
    if (o->pack) {
        rt = malloc((size_t)row_len * sizeof(int32_t));
        rm = malloc((size_t)row_len);
        if (!rt || !rm) {
            free(rt);
            free(rm);
            return et_fail(e, ET_ERUN, "out of memory");
        }
    }
    int rc = 0;
    for (size_t d = 0; !rc && d < docs->n; d++) {
        if (is_valid[d] != want) continue;
        const int32_t *tok = t->tok + t->off[d];
        const uint8_t *mask = t->mask + t->off[d];
        size_t n = (size_t)(t->off[d + 1] - t->off[d]);
        s->docs++;
        s->tokens += (int64_t)n;
        s->truncated_docs += t->truncated[d];
        for (size_t i = 0; i < n; i++) s->loss_tokens += mask[i];
        if (!o->pack) {
            rc = et_ds_writer_add(w, tok, mask, n, docs->doc[d].label, e);
            s->rows++;
            continue;
        }
        for (size_t i = 0; !rc && i < n;) {
            size_t k = (size_t)(row_len - fill) < n - i ? (size_t)(row_len - fill) : n - i;
            memcpy(rt + fill, tok + i, k * sizeof(int32_t));
            memcpy(rm + fill, mask + i, k);
            fill += (int64_t)k;
            i += k;
            if (fill == row_len) {
                rc = et_ds_writer_add(w, rt, rm, (size_t)row_len, -1, e);
                s->rows++;
                fill = 0;
            }
        }
    }
    if (!rc && o->pack && fill > 0) { /* pad the last row with mask 0 */
        for (int64_t j = fill; j < row_len; j++) {
            rt[j] = pad_id;
            rm[j] = 0;
        }
        s->pad_tokens += row_len - fill;
        rc = et_ds_writer_add(w, rt, rm, (size_t)row_len, -1, e);
        s->rows++;
    }
    free(rt);
    free(rm);
    return rc;
}

int et_ingest_docs(const et_encoder *enc, const et_docs *docs, const et_ingest_opts *o, const char *source,
                   const char *out_path, et_ingest_summary *s, et_err *e) {
    memset(s, 0, sizeof *s);
    s->format = docs->format;
    s->records = (int64_t)docs->n;
    s->n_labels = docs->n_labels;
    if (!source) source = "(input)";
    if (!(o->valid_fraction >= 0 && o->valid_fraction < 1))
        return et_fail(e, ET_EUSAGE, "valid fraction %g is not in [0, 1)", o->valid_fraction);
    if (o->pack && (o->seq_len < 1 || o->seq_len > (int64_t)1 << 30))
        return et_fail(e, ET_EUSAGE, "packing needs a sequence length >= 1 (got %" PRId64 ")", o->seq_len);
    if (o->pack && docs->n_labels > 0)
        return et_fail(e, ET_EUSAGE, "%s: classification data (labels) cannot be packed", source);
    if (o->max_len < 0) return et_fail(e, ET_EUSAGE, "max length %" PRId64 " is negative", o->max_len);
    if (enc->n_vocab <= 0) return et_fail(e, ET_EUSAGE, "encoder has no vocabulary");
    if (docs->n == 0) return et_fail(e, ET_EINPUT, "%s: no records", source);

    tokens t = {0};
    uint8_t *is_valid = malloc(docs->n);
    t.off = calloc(docs->n + 1, sizeof(int64_t));
    t.truncated = calloc(docs->n, 1);
    if (!is_valid || !t.off || !t.truncated) {
        free(is_valid);
        tokens_free(&t);
        return et_fail(e, ET_ERUN, "%s: out of memory", source);
    }
    int rc = 0;
    for (size_t d = 0; !rc && d < docs->n; d++) rc = encode_doc(enc, &docs->doc[d], o, source, &t, (int64_t)d, e);
    if (!rc && et_split_assign((int64_t)docs->n, o->valid_fraction, o->seed, is_valid) < 0)
        rc = et_fail(e, ET_ERUN, "%s: out of memory", source);
    int32_t pad_id = enc->eos_id >= 0 ? enc->eos_id : 0;
    int need_pad = 0;
    if (!rc && o->pack) { /* does either split's stream leave a partial row? */
        int64_t len[2] = {0, 0};
        for (size_t d = 0; d < docs->n; d++) len[is_valid[d]] += t.off[d + 1] - t.off[d];
        need_pad = len[0] % (o->seq_len + 1) != 0 || len[1] % (o->seq_len + 1) != 0;
    }
    et_ds_writer *w = NULL;
    if (!rc) {
        et_ds_meta meta = {.n_vocab = enc->n_vocab, .bos_id = enc->bos_id, .eos_id = enc->eos_id,
                           .source = source, .format = et_format_name(docs->format),
                           .packed_len = o->pack ? o->seq_len + 1 : 0, .n_labels = docs->n_labels,
                           .label_names = (const char *const *)docs->label_names};
        snprintf(meta.tokenizer_sha256, sizeof meta.tokenizer_sha256, "%s", enc->sha256);
        rc = et_ds_writer_open(&w, out_path, &meta, (t.any_masked || need_pad) ? ET_DS_WITH_MASK : 0, e);
        if (!rc) et_ds_writer_size_hint(w, (int64_t)t.n);
    }
    if (!rc) rc = write_split(w, &t, docs, is_valid, 0, o, pad_id, &s->train, e);
    if (!rc) et_ds_writer_begin_valid(w);
    if (!rc) rc = write_split(w, &t, docs, is_valid, 1, o, pad_id, &s->valid, e);
    if (!rc) rc = et_ds_writer_commit(w, e);
    else et_ds_writer_abort(w);
    free(is_valid);
    tokens_free(&t);
    return rc;
}

int et_ingest_file(const et_encoder *enc, const char *in_path, const char *out_path, const et_ingest_opts *o,
                   et_ingest_summary *s, et_err *e) {
    memset(s, 0, sizeof *s);
    et_map m;
    int rc = et_map_open(&m, in_path, e);
    if (rc) return rc;
    et_docs docs;
    rc = et_parse_input((const char *)m.data, m.size, in_path, o, &docs, e);
    et_map_close(&m);
    if (rc) {
        s->format = docs.format;
        return rc;
    }
    rc = et_ingest_docs(enc, &docs, o, in_path, out_path, s, e);
    et_docs_free(&docs);
    return rc;
}
