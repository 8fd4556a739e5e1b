/* cli/cmd_run.c — `edgetune run`: generate text with the reference engine
 * (the same code as the standalone edgerun: cli/runner.c).  A GGUF model is
 * used in place (any supported quantization); other formats (llama2.c .bin,
 * HF directory) are imported to F32 first (export/model.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run_opts.h"

static const char USAGE[] =
    "usage: edgetune run MODEL [--prompt TEXT | --file PROMPT_FILE] [options]\n"
    "  MODEL: .gguf (used in place), or a llama2.c .bin / HF directory (imported to F32)\n"
    "  --n N               tokens to generate (default 128)\n"
    "  --temp T            temperature (default 0.8; 0 = greedy)\n"
    "  --top-k K           (default 40; 0 = off)   --top-p P (default 0.95; 1 = off)\n"
    "  --min-p P           (default 0.05; 0 = off) --seed S (default 0)\n"
    "  --threads N         (default 1; 0 = auto)   --ctx N (default or 0: the model's, at most 4096)\n"
    "  --lora FILE[:SCALE][,FILE[:SCALE]...]  GGUF LoRA adapters applied at run time\n"
    "  --kv-type F16|F32   KV cache type (default F16)\n"
    "  --isa NAME          scalar, avx2, avx512, neon (default: the best available)\n"
    "  --tokenizer FILE    tokenizer.bin for a llama2.c model\n"
    "  --ignore-eos        keep generating after EOS;  --stats  timings on stderr\n"
    "  --chat              a conversation: each stdin line is a user turn, the reply goes to stdout\n"
    "                      (the KV cache is kept across turns; --n caps each reply)\n"
    "  --system TEXT       the conversation's system message\n"
    "  --chat-template NAME  chatml, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip, llama3, zephyr,\n"
    "                      phi3, gemma, alpaca (default: the model's tokenizer.chat_template)\n"
    "  --verbose-prompt    chat: each turn's rendered prompt and cache use on stderr";

int cli_open_runner(et_runner *r, et_runner_opts *o, const char *model, const char *tokenizer, et_model *mm,
                    int *have_mm, et_err *e) {
    *have_mm = 0;
    if (!et_is_regular_path(model) && access(model, R_OK) == 0) {
        /* a FIFO or a device: no sniffing (it would eat the first bytes); the
         * engine reads a GGUF from it into memory, as edgerun does */
        o->model = model;
        return et_runner_open(r, o, NULL, e);
    }
    char magic[4] = {0};
    if (et_sniff(model, magic, 4) == 4 && !memcmp(magic, "GGUF", 4)) {
        o->model = model;
        return et_runner_open(r, o, NULL, e);
    }
    int rc = et_model_load(mm, model, tokenizer, e);
    if (rc) return rc;
    *have_mm = 1;
    et_engine *eng;
    if ((rc = et_engine_from_model(&eng, mm, e))) return rc;
    o->model = model;
    rc = et_runner_open(r, o, eng, e);
    if (rc) et_engine_free(eng);
    else r->own_engine = 1;   /* the runner frees the wrapper; mm stays with the caller */
    return rc;
}

int cli_runner_opts(const cli_args *a, et_runner_opts *o, et_err *e) {
    long v;
    double d;
    int rc;
    if ((rc = cli_int(a, "n", o->n_predict, &v, e))) return rc;
    if (v < 0) return et_fail(e, ET_EUSAGE, "--n must be >= 0");
    o->n_predict = (int)v;
    if ((rc = cli_float(a, "temp", o->sp.temp, &d, e))) return rc;
    o->sp.temp = (float)d;
    if ((rc = cli_int(a, "top_k", o->sp.top_k, &v, e))) return rc;
    if (v < 0) return et_fail(e, ET_EUSAGE, "--top-k must be >= 0");
    o->sp.top_k = (int)v;
    if ((rc = cli_float(a, "top_p", o->sp.top_p, &d, e))) return rc;
    o->sp.top_p = (float)d;
    if ((rc = cli_float(a, "min_p", o->sp.min_p, &d, e))) return rc;
    o->sp.min_p = (float)d;
    const char *seed = cli_str(a, "seed", NULL);
    if (seed) {
        char *end;
        unsigned long long s = strtoull(seed, &end, 10);
        if (end == seed || *end) return et_fail(e, ET_EUSAGE, "--seed: expected an integer, got '%s'", seed);
        o->sp.seed = (uint64_t)s;
    }
    if ((rc = cli_int(a, "threads", o->n_threads, &v, e))) return rc;
    if (v < 0 || v > 256) return et_fail(e, ET_EUSAGE, "--threads must be 0 (auto) or in [1, 256]");
    o->n_threads = v ? (int)v : et_auto_threads();   /* common/et.h: 0 = auto in every command */
    if ((rc = cli_int(a, "ctx", o->n_ctx, &v, e))) return rc;
    if (v < 0 || v == 1 || v > (1 << 22))   /* 0 = the model's, as edgerun -c 0 */
        return et_fail(e, ET_EUSAGE, "--ctx must be 0 (the model's context) or in [2, %d]", 1 << 22);
    o->n_ctx = (int)v;
    const char *kv = cli_str(a, "kv_type", NULL);
    if (kv && (rc = et_runner_kv_type(kv, &o->kv_type, e))) return rc;
    o->isa = cli_str(a, "isa", NULL);
    const char *lora = cli_str(a, "lora", NULL);
    if (lora && (rc = et_runner_add_lora(o, lora, e))) return rc;
    o->ignore_eos = cli_str(a, "ignore_eos", NULL) != NULL;
    o->stats = cli_str(a, "stats", NULL) != NULL;
    return 0;
}

int cmd_run(int argc, char **argv) {
    static const char *const bools[] = {"ignore_eos", "stats", "help", "chat", "verbose_prompt", NULL};
    static const char *const known[] = {"model", "prompt", "file", "n", "temp", "top_k", "top_p", "min_p", "seed",
                                        "threads", "ctx", "lora", "kv_type", "isa", "tokenizer", "ignore_eos",
                                        "stats", "help", "chat", "system", "chat_template", "verbose_prompt", NULL};
    cli_args a;
    int rc = cli_start(&a, argc, argv, bools, known, USAGE);
    if (rc >= 0) return rc;
    et_err e = {0};
    const char *model = cli_str(&a, "model", a.npos > 0 ? a.pos[0] : NULL);
    if (!model || a.npos > 1) {
        fprintf(stderr, "%s\n", USAGE);
        cli_free(&a);
        return ET_EUSAGE;
    }
    et_runner_opts o;
    et_runner_defaults(&o);
    char *prompt_buf = NULL;
    if ((rc = cli_runner_opts(&a, &o, &e))) goto out;
    o.prompt = cli_str(&a, "prompt", NULL);
    const char *pf = cli_str(&a, "file", NULL);
    int chat = cli_str(&a, "chat", NULL) != NULL;
    o.system = cli_str(&a, "system", NULL);
    o.chat_template = cli_str(&a, "chat_template", NULL);
    o.verbose_prompt = cli_str(&a, "verbose_prompt", NULL) != NULL;
    if (chat && (o.prompt || pf)) {
        rc = et_fail(&e, ET_EUSAGE, "--chat reads the user's turns from stdin; drop --prompt/--file");
        goto out;
    }
    if (!chat && (o.system || o.chat_template)) {
        rc = et_fail(&e, ET_EUSAGE, "--system and --chat-template go with --chat");
        goto out;
    }
    if (pf) {
        et_map m;
        if ((rc = et_map_open(&m, pf, &e))) goto out;
        prompt_buf = malloc(m.size + 1);
        if (!prompt_buf) {
            et_map_close(&m);
            rc = et_fail(&e, ET_ERUN, "out of memory");
            goto out;
        }
        if (m.size) memcpy(prompt_buf, m.data, m.size);
        prompt_buf[m.size] = 0;
        et_map_close(&m);
        o.prompt = prompt_buf;
    }
    et_runner r;
    et_model mm;
    int have_mm = 0;
    rc = cli_open_runner(&r, &o, model, cli_str(&a, "tokenizer", NULL), &mm, &have_mm, &e);
    if (!rc) {
        rc = chat ? et_runner_chat(&r, stdin, stdout, &e) : et_runner_generate(&r, stdout, &e);
        et_runner_close(&r);
    }
    if (have_mm) et_model_free(&mm);
out:
    free(prompt_buf);
    cli_free(&a);
    return rc ? cli_report(&e) : 0;
}
