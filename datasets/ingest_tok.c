/* datasets/ingest_tok.c — et_encoder over et_tokenizer; tokenizer loading
 * for `edgetune data`.  See ingest_tok.h. */
#include "ingest_tok.h"

#include <string.h>

static int tok_encode(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n_ids, et_err *e) {
    return et_tok_encode((const et_tokenizer *)ctx, text, len, ET_TOK_DEFAULT_BOS, ids, n_ids, e);
}

static int tok_encode_special(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n_ids, et_err *e) {
    return et_tok_encode((const et_tokenizer *)ctx, text, len, ET_TOK_DEFAULT_BOS | ET_TOK_PARSE_SPECIAL, ids, n_ids,
                         e);
}

void et_encoder_from_tok_special(et_encoder *enc, const et_tokenizer *t) {
    et_encoder_from_tok(enc, t);
    enc->encode = tok_encode_special;
}

void et_encoder_from_tok(et_encoder *enc, const et_tokenizer *t) {
    memset(enc, 0, sizeof *enc);
    enc->encode = tok_encode;
    enc->ctx = (void *)t;
    enc->n_vocab = et_tok_n_vocab(t);
    enc->bos_id = et_tok_bos(t);
    enc->eos_id = et_tok_eos(t);
    et_tok_sha256(t, enc->sha256);
}

/* Entries of a llama2.c tokenizer.bin (i32 max_token_length, then per token
 * f32 score, i32 len, len bytes) that end exactly at the end of the file;
 * -1 if the file does not have that shape. */
static int llama2c_count(const uint8_t *d, size_t size) {
    if (size < 4) return -1;
    size_t off = 4;
    int n = 0;
    while (off < size) {
        if (size - off < 8 || n >= (1 << 24)) return -1;
        uint32_t len = (uint32_t)d[off + 4] | (uint32_t)d[off + 5] << 8 | (uint32_t)d[off + 6] << 16 |
                       (uint32_t)d[off + 7] << 24;
        off += 8;
        if (len > size - off) return -1;
        off += len;
        n++;
    }
    return n;
}

int et_ingest_load_tokenizer(et_tokenizer **out, const char *path, int n_vocab, et_err *e) {
    *out = NULL;
    et_map m;
    int rc = et_map_open(&m, path, e);
    if (rc) return rc;
    if (m.size >= 4 && memcmp(m.data, "GGUF", 4) == 0) {
        et_map_close(&m);
        gguf_file g;
        if ((rc = gguf_open(&g, path, e))) return rc;
        rc = et_tok_from_gguf(out, &g, e);
        gguf_close(&g);
        return rc;
    }
    if (n_vocab <= 0) n_vocab = llama2c_count(m.data, m.size);
    if (n_vocab <= 0) {
        et_map_close(&m);
        return et_fail(e, ET_EINPUT, "%s: neither a GGUF nor a llama2.c tokenizer.bin", path);
    }
    rc = et_tok_from_llama2c_mem(out, m.data, m.size, n_vocab, path, e);
    et_map_close(&m);
    return rc;
}
