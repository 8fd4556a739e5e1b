/* datasets/loader.c — batches [B, T+1] by hyperslab from tokens.h5. See loader.h. */
#include "loader.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "shuffle.h"

struct et_loader {
    const et_ds *ds;
    et_loader_opts o;
    int mode;               /* STREAM or ROWS */
    int64_t doc_begin;      /* ROWS: first document of the split */
    int64_t tok_begin, tok_end; /* STREAM: the split's token range */
    int64_t n_samples;
    int32_t pad_id;
    int64_t *perm;          /* [n_samples] when shuffling */
    et_cursor cur;
};

et_loader_opts et_loader_defaults(void) {
    et_loader_opts o = {.batch_size = 1, .seq_len = 1, .split = ET_SPLIT_TRAIN, .mode = ET_LOAD_AUTO,
                        .shuffle = 1, .loop = 1, .seed = 0, .pad_id = -1};
    return o;
}

static void make_perm(et_loader *L) {
    if (!L->perm) return;
    uint64_t st = et_shuffle_epoch_state(L->cur.seed, L->cur.epoch);
    et_shuffle_perm(&st, L->perm, L->n_samples);
}

int et_loader_open(et_loader **out, const et_ds *ds, const et_loader_opts *o, et_err *e) {
    *out = NULL;
    if (o->batch_size < 1 || o->seq_len < 1 || o->seq_len > (int64_t)1 << 30 || o->batch_size > (int64_t)1 << 30)
        return et_fail(e, ET_EUSAGE, "%s: loader: batch size %" PRId64 " / sequence length %" PRId64 " out of range",
                       ds->path, o->batch_size, o->seq_len);
    if (o->split != ET_SPLIT_TRAIN && o->split != ET_SPLIT_VALID)
        return et_fail(e, ET_EUSAGE, "%s: loader: unknown split %d", ds->path, o->split);
    if (o->pad_id >= ds->n_vocab)
        return et_fail(e, ET_EUSAGE, "%s: loader: pad_id %d is not below n_vocab %" PRId64, ds->path, (int)o->pad_id,
                       ds->n_vocab);
    et_loader *L = calloc(1, sizeof *L);
    if (!L) return et_fail(e, ET_ERUN, "%s: out of memory", ds->path);
    L->ds = ds;
    L->o = *o;
    int64_t T = o->seq_len, db, de;
    et_ds_split_docs(ds, o->split, &db, &de);
    L->mode = o->mode;
    if (L->mode == ET_LOAD_AUTO) L->mode = ds->packed_len == T + 1 ? ET_LOAD_ROWS : ET_LOAD_STREAM;
    if (L->mode == ET_LOAD_ROWS) {
        L->doc_begin = db;
        L->n_samples = de - db;
    } else if (L->mode == ET_LOAD_STREAM) {
        L->tok_begin = ds->doc_offsets[db];
        L->tok_end = ds->doc_offsets[de];
        int64_t n = L->tok_end - L->tok_begin;
        L->n_samples = n < 2 ? 0 : (n - 1 + T - 1) / T;
    } else {
        free(L);
        return et_fail(e, ET_EUSAGE, "%s: loader: unknown mode %d", ds->path, o->mode);
    }
    if (L->n_samples == 0) {
        free(L);
        return et_fail(e, ET_EUSAGE, "%s: the %s split has no samples", ds->path,
                       o->split == ET_SPLIT_VALID ? "validation" : "training");
    }
    L->pad_id = o->pad_id >= 0 ? o->pad_id : ds->eos_id >= 0 ? (int32_t)ds->eos_id : 0;
    if (o->shuffle) {
        L->perm = malloc((size_t)L->n_samples * sizeof(int64_t));
        if (!L->perm) {
            free(L);
            return et_fail(e, ET_ERUN, "%s: out of memory", ds->path);
        }
    }
    L->cur.seed = o->seed;
    L->cur.n_samples = (uint64_t)L->n_samples;
    make_perm(L);
    *out = L;
    return 0;
}

void et_loader_close(et_loader *L) {
    if (!L) return;
    free(L->perm);
    free(L);
}

int64_t et_loader_n_samples(const et_loader *L) { return L->n_samples; }
int et_loader_mode(const et_loader *L) { return L->mode; }

/* /tokens index of sample k's first token and its available length */
static void sample_span(const et_loader *L, int64_t k, int64_t *start, int64_t *len) {
    if (L->mode == ET_LOAD_ROWS) {
        int64_t d = L->doc_begin + k;
        *start = L->ds->doc_offsets[d];
        *len = L->ds->doc_offsets[d + 1] - *start;
    } else {
        *start = L->tok_begin + k * L->o.seq_len;
        *len = L->tok_end - *start;
    }
}

int et_loader_sample(const et_loader *L, int64_t k, int32_t *tokens, uint8_t *mask, et_err *e) {
    if (k < 0 || k >= L->n_samples)
        return et_fail(e, ET_EUSAGE, "%s: sample %" PRId64 " outside [0, %" PRId64 ")", L->ds->path, k, L->n_samples);
    int64_t row = L->o.seq_len + 1, start, len;
    sample_span(L, k, &start, &len);
    if (len > row) len = row;
    int rc = et_ds_read_tokens(L->ds, start, len, tokens, e);
    if (!rc) rc = et_ds_read_mask(L->ds, start, len, mask, e);
    if (rc) return rc;
    for (int64_t j = len; j < row; j++) {
        tokens[j] = L->pad_id;
        mask[j] = 0;
    }
    return 0;
}

int et_loader_next(et_loader *L, int32_t *tokens, uint8_t *mask, int64_t *n_rows, et_err *e) {
    return et_loader_next_pos(L, tokens, mask, NULL, n_rows, e);
}

int et_loader_next_pos(et_loader *L, int32_t *tokens, uint8_t *mask, int64_t *pos, int64_t *n_rows, et_err *e) {
    int64_t row = L->o.seq_len + 1, got = 0;
    for (int64_t b = 0; b < L->o.batch_size; b++) {
        int32_t *t = tokens + b * row;
        uint8_t *m = mask + b * row;
        if (L->cur.position >= L->cur.n_samples && L->o.loop) {
            L->cur.epoch++;
            L->cur.position = 0;
            make_perm(L);
        }
        if (L->cur.position >= L->cur.n_samples) {
            for (int64_t j = 0; j < row; j++) {
                t[j] = L->pad_id;
                m[j] = 0;
            }
            if (pos) pos[b] = -1;
            continue;
        }
        int64_t k = L->perm ? L->perm[L->cur.position] : (int64_t)L->cur.position;
        if (pos) {
            int64_t len;
            sample_span(L, k, &pos[b], &len);
        }
        int rc = et_loader_sample(L, k, t, m, e);
        if (rc) return rc;
        L->cur.position++;
        got++;
    }
    *n_rows = got;
    return 0;
}

void et_loader_get_cursor(const et_loader *L, et_cursor *c) { *c = L->cur; }

int et_loader_set_cursor(et_loader *L, const et_cursor *c, et_err *e) {
    if (c->n_samples != (uint64_t)L->n_samples || c->position > c->n_samples)
        return et_fail(e, ET_EUSAGE,
                       "%s: cursor (%" PRIu64 " samples, position %" PRIu64 ") does not fit this loader (%" PRId64
                       " samples): another file, split, sequence length or mode?",
                       L->ds->path, c->n_samples, c->position, L->n_samples);
    int new_perm = c->seed != L->cur.seed || c->epoch != L->cur.epoch;
    L->cur = *c;
    if (new_perm) make_perm(L);
    return 0;
}

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

void et_cursor_pack(const et_cursor *c, uint8_t out[ET_CURSOR_BYTES]) {
    memcpy(out, "ETC1", 4);
    put_u64(out + 4, c->seed);
    put_u64(out + 12, c->epoch);
    put_u64(out + 20, c->position);
    put_u64(out + 28, c->n_samples);
}

int et_cursor_unpack(et_cursor *c, const uint8_t *in, size_t len, et_err *e) {
    if (len != ET_CURSOR_BYTES || memcmp(in, "ETC1", 4) != 0)
        return et_fail(e, ET_EINPUT, "data cursor: expected %d bytes starting with ETC1, got %zu bytes", ET_CURSOR_BYTES,
                       len);
    c->seed = get_u64(in + 4);
    c->epoch = get_u64(in + 12);
    c->position = get_u64(in + 20);
    c->n_samples = get_u64(in + 28);
    return 0;
}
