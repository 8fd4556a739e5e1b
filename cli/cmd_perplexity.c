/* cli/cmd_perplexity.c — `edgetune perplexity MODEL FILE`: teacher-forced
 * perplexity with the reference engine (cli/runner.c, engine
 * et_perplexity).  FILE is text (tokenized with the model's tokenizer, BOS
 * as the vocabulary says) or a tokens.h5 data set (datasets/dataset.h; each
 * document scored on its own).  Long inputs are cut into windows of --ctx
 * tokens, each evaluated from an empty cache with every token after the
 * window's first scored. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "../datasets/dataset.h"
#include "../eval/logits.h"
#include "run_opts.h"

static const char USAGE[] =
    "usage: edgetune perplexity MODEL FILE [options]\n"
    "  FILE: a text file, or a tokens.h5 data set (every document scored on its own)\n"
    "  --ctx N             window length in tokens (default or 0: the model's, at most 4096)\n"
    "  --threads N         (default 1; 0 = auto: OMP_NUM_THREADS, else every online CPU)\n"
    "  --lora FILE[:SCALE][,FILE[:SCALE]...]  GGUF LoRA adapters applied at run time\n"
    "  --kv-type F16|F32   KV cache type (default F32 here: an evaluation)\n"
    "  --split all|train|valid   documents of a tokens.h5 (default all)\n"
    "  --isa NAME          scalar, avx2, avx512, neon;  --tokenizer FILE (llama2.c models)";

static int ppl_dataset(et_runner *r, const char *path, const char *split, et_ppl *acc, et_err *e) {
    et_ds *ds;
    int64_t d0, d1;   /* datasets/dataset.h: the one tokenizer check every command pairing a model with a tokens.h5 uses */
    int rc = et_ds_open_split(&ds, path, split, r->m->tok, r->m->hp.n_vocab, &d0, &d1, e);
    if (rc) return rc;
    for (int64_t d = d0; d < d1 && !rc; d++) {
        int64_t start = ds->doc_offsets[d], n = ds->doc_offsets[d + 1] - start;
        if (n < 2) continue;
        int32_t *tok = malloc(sizeof(int32_t) * (size_t)n);
        if (!tok) { rc = et_fail(e, ET_ERUN, "out of memory"); break; }
        rc = et_ds_read_tokens(ds, start, n, tok, e);
        if (!rc) rc = et_runner_perplexity(r, tok, (size_t)n, acc, e);
        free(tok);
        if (!rc && isatty(2)) fprintf(stderr, "\rdocument %lld/%lld  perplexity %.4f", (long long)(d - d0 + 1),
                                      (long long)(d1 - d0), acc->ppl);
    }
    if (isatty(2)) fprintf(stderr, "\n");
    et_ds_close(ds);
    return rc;
}

int cmd_perplexity(int argc, char **argv) {
    static const char *const bools[] = {"help", NULL};
    static const char *const known[] = {"model", "ctx", "threads", "lora", "kv_type", "isa", "tokenizer", "split",
                                        "help", NULL};
    cli_args a;
    int rc = cli_start(&a, argc, argv, bools, known, USAGE);
    if (rc >= 0) return rc;
    et_err e = {0};
    const char *model = cli_str(&a, "model", NULL), *file = NULL;
    if (model && a.npos == 1) file = a.pos[0];
    else if (!model && a.npos == 2) { model = a.pos[0]; file = a.pos[1]; }
    if (!model || !file) {
        fprintf(stderr, "%s\n", USAGE);
        cli_free(&a);
        return ET_EUSAGE;
    }
    et_runner_opts o;
    et_runner_defaults(&o);
    o.kv_type = GGML_TYPE_F32;
    if ((rc = cli_runner_opts(&a, &o, &e))) {
        cli_free(&a);
        return cli_report(&e);
    }
    et_runner r;
    et_model mm;
    int have_mm = 0;
    et_ppl acc = {0};
    const char *split = cli_str(&a, "split", "all");
    if (strcmp(split, "all") && strcmp(split, "train") && strcmp(split, "valid")) {   /* also for text input */
        et_fail(&e, ET_EUSAGE, "--split must be all, train or valid (got '%s')", split);
        cli_free(&a);
        return cli_report(&e);
    }
    rc = cli_open_runner(&r, &o, model, cli_str(&a, "tokenizer", NULL), &mm, &have_mm, &e);
    if (!rc) {
        if (et_sniff_hdf5(file)) {
            rc = ppl_dataset(&r, file, cli_str(&a, "split", "all"), &acc, &e);
        } else if (et_is_h5_name(file)) {
            rc = et_need_regular(file, "a tokens.h5 is read by seeking", &e);
            if (!rc) rc = et_fail(&e, ET_EINPUT, "%s: not an HDF5 file (no HDF5 signature), though named like a tokens.h5", file);
        } else {
            et_map m;
            rc = et_map_open(&m, file, &e);
            if (!rc) {
                rc = et_runner_perplexity_text(&r, (const char *)m.data, m.size, file, &acc, &e);
                et_map_close(&m);
            }
        }
        if (!rc) rc = et_runner_check_scored(&acc, file, &e);
        /* say which window the figure belongs to (issue 11): by default the
         * GGUF's context_length, which may exceed the length the model was
         * trained on (llama.cpp's llama2.c converter writes 2048 for 512) */
        if (!rc)
            fprintf(stderr, "perplexity: windows of %d tokens (%s), every token after a window's first scored\n",
                    et_state_n_ctx(r.s), o.n_ctx > 0 ? "--ctx" : "the model's context length; --ctx N to change it");
        if (!rc) et_runner_print_ppl(stdout, &acc);
        et_runner_close(&r);
    }
    if (have_mm) et_model_free(&mm);
    cli_free(&a);
    return rc ? cli_report(&e) : 0;
}
