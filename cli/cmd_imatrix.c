/* cli/cmd_imatrix.c — `edgetune imatrix MODEL --data D -o OUT`: the
 * importance matrix of llama.cpp's llama-imatrix (engine et_imatrix_run,
 * quant/imatrix.h), computed on the reference engine over a text file or a
 * tokens.h5 data set, written as llama.cpp's .dat (default, what
 * llama-quantize at c392e509 reads) or GGUF. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "../datasets/dataset.h"
#include "../eval/logits.h"
#include "../quant/imatrix.h"
#include "run_opts.h"

static const char USAGE[] =
    "usage: edgetune imatrix MODEL --data FILE -o OUT [options]\n"
    "  FILE: text (tokenized with the model's tokenizer, BOS as the vocabulary says) or a\n"
    "        tokens.h5 data set (its documents' tokens back to back)\n"
    "  --ctx N              tokens per chunk (default 512, as llama-imatrix -c; 0: the model's context, at most 4096)\n"
    "  --chunks N           chunks to run (default: all that fit; at least 2*ctx tokens are needed)\n"
    "  --ubatch N           tokens per forward call (default 512 = llama.cpp's n_ubatch; one call is\n"
    "                       one 'ncall' in the .dat, and calls under 16 tokens are not collected)\n"
    "  --output-format dat|gguf   (default dat: llama.cpp c392e509's format; gguf: later llama.cpp's)\n"
    "  --process-output     also collect output.weight (llama-imatrix --process-output)\n"
    "  --lora FILE[:SCALE],...  adapters applied while collecting (their lora_a/lora_b get entries too)\n"
    "  --split all|train|valid  documents of a tokens.h5 (default all)\n"
    "  --threads N (default 1; 0 = auto)  --kv-type F16|F32 (default F16, as llama.cpp)  --isa NAME\n"
    "  Then: edgetune quantize IN.gguf OUT.gguf --type Q4_K_M --imatrix OUT";

/* All tokens of the documents [d0, d1) of a tokens.h5, back to back. */
static int read_dataset(et_runner *r, const char *path, const char *split, int32_t **out, size_t *n_out, et_err *e) {
    et_ds *ds;
    int64_t d0, d1;   /* datasets/dataset.h: the one tokenizer check, the split */
    int rc = et_ds_open_split(&ds, path, split, r->m->tok, r->m->hp.n_vocab, &d0, &d1, e);
    if (rc) return rc;
    int64_t start = ds->doc_offsets[d0], n = ds->doc_offsets[d1] - start;
    *out = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    if (!*out) {
        rc = et_fail(e, ET_ERUN, "out of memory for %lld tokens", (long long)n);
        goto out;
    }
    if (n > 0 && (rc = et_ds_read_tokens(ds, start, n, *out, e))) {
        free(*out);
        *out = NULL;
        goto out;
    }
    *n_out = (size_t)n;
out:
    et_ds_close(ds);
    return rc;
}

static void on_chunk(void *user, int chunk, int n_chunk, double seconds) {
    (void)user;
    if (isatty(2))
        fprintf(stderr, "\rchunk %d/%d  %.1f s (ETA %.1f s)   ", chunk + 1, n_chunk, seconds,
                seconds / (chunk + 1) * (n_chunk - chunk - 1));
    else if (chunk == 0 || (chunk + 1) % 10 == 0 || chunk + 1 == n_chunk)
        fprintf(stderr, "edgetune imatrix: chunk %d/%d, %.1f s\n", chunk + 1, n_chunk, seconds);
}

int cmd_imatrix(int argc, char **argv) {
    static const char *const bools[] = {"process_output", "help", NULL};
    static const char *const known[] = {"data", "output", "ctx", "chunks", "ubatch", "output_format", "process_output",
                                        "lora", "split", "threads", "kv_type", "isa", "tokenizer", "help", NULL};
    cli_args a;
    int rc = cli_start(&a, argc, argv, bools, known, USAGE);
    if (rc >= 0) return rc;
    rc = 0;
    et_err e = {0};
    const char *model = a.npos == 1 ? a.pos[0] : NULL;
    const char *data = cli_str(&a, "data", NULL), *out = cli_str(&a, "output", NULL);
    if (!model || !data || !out) {
        fprintf(stderr, "%s\n", USAGE);
        cli_free(&a);
        return ET_EUSAGE;
    }
    const char *fmt_s = cli_str(&a, "output_format", "dat");
    int fmt = !strcmp(fmt_s, "dat") ? ET_IMATRIX_DAT : !strcmp(fmt_s, "gguf") ? ET_IMATRIX_GGUF : -1;
    long ctx, chunks, ubatch;
    if (fmt < 0) rc = et_fail(&e, ET_EUSAGE, "--output-format must be dat or gguf, not '%s'", fmt_s);
    if (!rc) rc = cli_int_range(&a, "ctx", 512, 0, 1 << 20, &ctx, &e);
    if (!rc && ctx > 0 && ctx < 16) rc = et_fail(&e, ET_EUSAGE, "--ctx must be 0 (the model's context) or in [16, %d]", 1 << 20);
    if (!rc) rc = cli_int_range(&a, "chunks", -1, -1, 1 << 30, &chunks, &e);
    if (!rc) rc = cli_int_range(&a, "ubatch", 512, 1, 1 << 20, &ubatch, &e);
    et_runner_opts o;
    et_runner_defaults(&o);
    o.kv_type = GGML_TYPE_F16;  /* llama.cpp's KV cache */
    if (!rc) rc = cli_runner_opts(&a, &o, &e);
    if (rc) {
        cli_free(&a);
        return cli_report(&e);
    }
    o.n_ctx = (int)ctx;   /* 0: the model's, at most 4096 (common/et.h) */
    o.n_batch = (int)(ctx && ctx < ubatch ? ctx : ubatch);  /* llama-imatrix: n_batch = min(n_batch, n_ctx), split in ubatches;
                                                               the engine clamps it to the context too */

    et_runner r;
    et_model mm;
    int have_mm = 0;
    int32_t *tok = NULL;
    size_t n_tok = 0;
    et_imatrix im;
    et_imatrix_init(&im);
    rc = cli_open_runner(&r, &o, model, cli_str(&a, "tokenizer", NULL), &mm, &have_mm, &e);
    if (rc) goto done_noclose;
    ctx = et_state_n_ctx(r.s);
    if (!r.m->tok) {
        rc = et_fail(&e, ET_EINPUT, "%s: the model has no tokenizer", model);
        goto done;
    }
    if (et_sniff_hdf5(data)) {
        rc = read_dataset(&r, data, cli_str(&a, "split", "all"), &tok, &n_tok, &e);
    } else {
        et_map m;
        rc = et_map_open(&m, data, &e);
        if (!rc) {
            rc = et_tok_encode(r.m->tok, (const char *)m.data, m.size, ET_TOK_DEFAULT_BOS, &tok, &n_tok, &e);
            et_map_close(&m);
        }
    }
    if (rc) goto done;
    et_imatrix_opts io = {(int)ctx, (int)chunks, cli_on(&a, "process_output"),
                          et_tok_add_bos(r.m->tok) ? et_tok_bos(r.m->tok) : -1};
    fprintf(stderr, "edgetune imatrix: %zu tokens, %zu chunks of %ld available, ubatch %d, %d thread%s\n", n_tok,
            n_tok / (size_t)ctx, ctx, o.n_batch, o.n_threads, o.n_threads == 1 ? "" : "s");
    if ((rc = et_imatrix_run(r.s, tok, n_tok, &io, &im, on_chunk, NULL, &e))) goto done;
    if (isatty(2)) fprintf(stderr, "\n");
    im.dataset = strdup(data);
    if (!im.dataset) {
        rc = et_fail(&e, ET_ERUN, "out of memory");
        goto done;
    }
    if ((rc = et_imatrix_save(&im, out, fmt, &e))) goto done;
    printf("%s: %d entries, %d chunks of %ld tokens (%s format)\n", out, im.n_entries, (int)im.chunk_count, ctx,
           fmt == ET_IMATRIX_DAT ? "llama.cpp .dat" : "GGUF");
done:
    et_runner_close(&r);
done_noclose:
    if (have_mm) et_model_free(&mm);
    free(tok);
    et_imatrix_free(&im);
    cli_free(&a);
    return rc ? cli_report(&e) : 0;
}
