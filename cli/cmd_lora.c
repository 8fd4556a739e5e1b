/* cli/cmd_lora.c — `edgetune lora`: fine-tune a LoRA adapter on a frozen
 * base (GGUF, HF directory or llama2.c .bin) over a tokens.h5 (instruction
 * data with the prompt masked by `edgetune data`, or plain text), with the
 * training loop of train/trainer.h (schedules, accumulation, clipping,
 * evaluation, checkpoints and --resume, progress line, --metrics), and
 * write into --out DIR:
 *   adapter.gguf   llama.cpp's LoRA adapter format (lora/adapter.h)
 *   peft/          adapter_model.safetensors + adapter_config.json
 *   recipe.json    every setting (reuse with --config), checkpoint.h5
 * It prints the validation loss before and after and the adapter's size. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../datasets/loader.h"
#include "../export/gguf.h"
#include "../export/model.h"
#include "../export/safetensors.h"
#include "../lora/lora_train.h"
#include "../lora/merge.h"
#include "../quant/quantize_model.h"
#include "../train/qat.h"
#include "../train/gemm.h"
#include "../train/threads.h"
#include "cli.h"
#include "qat_cli.h"
#include "train_ui.h"

static const char *const KNOWN[] = {
    "model", "tokenizer", "data", "out", "targets", "layers", "rank", "alpha", "dropout", "rslora", "seed",
    "base_type", "recompute", "steps", "batch_size", "seq_len", "grad_accum", "lr", "min_lr", "warmup", "schedule",
    "weight_decay", "beta1", "beta2", "eps", "optim", "grad_clip", "eval_every", "eval_batches", "ckpt_every", "threads",
    "metrics", "log_every", "resume", "adapter_type", "base_name", "precision", "recompute_layers",
    "qat", "qat_start", "qat_type_map", "qat_imatrix", "qat_act", NULL};
static const char *const BOOLS[] = {"resume", "rslora", "recompute", "qat_act", NULL};

typedef struct lora_cfg {
    const char *model, *tokenizer, *data, *out, *metrics, *layers, *base_name;
    lora_config lc;
    char targets[64];
    uint32_t base_type, adapter_type;
    int recompute, recompute_layers, threads, log_every;
    int precision;          /* ET_GEMM_* of the base's GEMMs (--precision) */
    int base_type_auto;     /* --base-type auto: follows the precision */
    cli_qat qat;            /* --qat TYPE (LoRA-QAT), --qat-start, --qat-type-map */
    et_train_opts o;
    char ckpt[4096], recipe[4096], gguf[4096], peft[4096], merged[4096], qmerged[4096];
} lora_cfg;

static const char *type_name(uint32_t t) {
    switch (t) {
    case GGML_TYPE_F32: return "F32";
    case GGML_TYPE_F16: return "F16";
    case GGML_TYPE_BF16: return "BF16";
    case GGML_TYPE_Q8_0: return "Q8_0";
    case GGML_TYPE_Q4_0: return "Q4_0";
    case GGML_TYPE_Q4_1: return "Q4_1";
    default: return "?";
    }
}

static int parse_type(const char *s, const char *flag, int allow_quant, uint32_t *t, et_err *e) {
    const uint32_t all[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1};
    for (int i = 0; i < (allow_quant ? 6 : 2); i++)
        if (!strcmp(s, type_name(all[i]))) {
            *t = all[i];
            return 0;
        }
    return et_fail(e, ET_EUSAGE, "--%s: '%s' is not %s", flag, s, allow_quant ? "F32, F16, BF16, Q8_0, Q4_0 or Q4_1" : "F32 or F16");
}

static int read_cfg(const cli_args *a, lora_cfg *c, et_err *e) {
    memset(c, 0, sizeof *c);
    c->model = cli_str(a, "model", NULL);
    c->tokenizer = cli_str(a, "tokenizer", NULL);
    c->data = cli_str(a, "data", NULL);
    c->out = cli_str(a, "out", NULL);
    c->metrics = cli_str(a, "metrics", NULL);
    c->layers = cli_str(a, "layers", NULL);
    c->base_name = cli_str(a, "base_name", NULL);
    if (!c->model || !c->data || !c->out)
        return et_fail(e, ET_EUSAGE, "lora needs --model BASE --data tokens.h5 --out DIR (see `edgetune help lora`)");
    int rc;
    long rank;
    double alpha, dropout;
    if ((rc = cli_qat_opts(a, &c->qat, e))) return rc;
    static const cli_train_defaults defs = {.steps = 200, .lr = 2e-4, .weight_decay = 0.0, .beta2 = 0.999,
                                            .eval_every = 50};
    et_train_opts *o = &c->o;
    if ((rc = cli_int_range(a, "rank", 8, 1, LORA_MAX_RANK, &rank, e)) ||
        (rc = cli_float_range(a, "alpha", 16.0, 1e-6, 1e6, &alpha, e)) ||
        (rc = cli_float_range(a, "dropout", c->qat.on ? 0.0 : 0.05, 0.0, 0.99, &dropout, e)) ||
        (rc = cli_train_opts(a, &defs, o, &c->threads, &c->log_every, e)))
        return rc;
    unsigned targets;
    if ((rc = lora_parse_targets(cli_str(a, "targets", "q,v"), &targets, e))) return rc;
    lora_format_targets(targets, c->targets, sizeof c->targets);
    /* --precision: default auto, the faster of bf16 and f32 on this CPU for
       this model's products, measured (train/gemm_auto.h; the adapter, its
       gradients and AdamW stay f32), resolved in cmd_lora once the base is
       loaded (resolve_auto) */
    const char *prec = cli_str(a, "precision", NULL);
    if (c->qat.on && (!prec || !strcmp(prec, "auto")))
        c->precision = ET_GEMM_F32; /* bf16 operands would leave the quantization grid */
    else if (!prec || !strcmp(prec, "auto"))
        c->precision = CLI_PRECISION_AUTO;
    else if ((rc = cli_train_precision(a, &c->precision, e)))
        return rc;
    /* --base-type: default BF16 in bf16 precision (the GEMMs round W to bf16
       anyway, so the numbers are an F32 base's, in half the memory and
       without converting W in every product), else F32 */
    const char *bt = cli_str(a, "base_type", "auto");
    c->base_type_auto = !strcmp(bt, "auto");
    if (c->base_type_auto) bt = c->precision == ET_GEMM_BF16 ? "BF16" : "F32";
    if ((rc = parse_type(bt, "base-type", 1, &c->base_type, e)) ||
        (rc = parse_type(cli_str(a, "adapter_type", "F32"), "adapter-type", 0, &c->adapter_type, e)))
        return rc;
    if (c->qat.on && (c->base_type != GGML_TYPE_F32 || c->precision != ET_GEMM_F32 || dropout > 0.0 ||
                      c->adapter_type != GGML_TYPE_F32))
        return et_fail(e, ET_EUSAGE, "--qat (LoRA-QAT) needs --base-type F32, --precision f32, --dropout 0 and "
                       "--adapter-type F32 (the merged weight is what is quantized)");
    c->lc = (lora_config){.targets = targets, .layers = c->layers, .rank = (int)rank, .alpha = (float)alpha,
                          .use_rslora = cli_on(a, "rslora"), .dropout = (float)dropout, .seed = o->seed};
    o->wd_policy = ET_WD_ALL; /* every adapter tensor is a 2-D weight */
    c->recompute = cli_on(a, "recompute");
    long rc_layers;
    if ((rc = cli_int_range(a, "recompute_layers", 0, 0, 1 << 20, &rc_layers, e))) return rc;
    c->recompute_layers = (int)rc_layers;
    if (rc_layers > 0) c->recompute = 1;
    snprintf(c->ckpt, sizeof c->ckpt, "%s/checkpoint.h5", c->out);
    snprintf(c->recipe, sizeof c->recipe, "%s/recipe.json", c->out);
    snprintf(c->gguf, sizeof c->gguf, "%s/adapter.gguf", c->out);
    snprintf(c->peft, sizeof c->peft, "%s/peft", c->out);
    snprintf(c->merged, sizeof c->merged, "%s/merged.gguf", c->out);
    snprintf(c->qmerged, sizeof c->qmerged, "%s/merged-%s.gguf", c->out, c->qat.name);
    o->ckpt_path = c->ckpt;
    return 0;
}

static int save_recipe(const lora_cfg *c, const cli_args *a, char **json, et_err *e) {
    cli_recipe r = {0};
    const et_train_opts *o = &c->o;
    cli_recipe_add(&r, "model", "%s", c->model);
    if (c->tokenizer) cli_recipe_add(&r, "tokenizer", "%s", c->tokenizer);
    cli_recipe_add(&r, "data", "%s", c->data), cli_recipe_add(&r, "out", "%s", c->out);
    cli_recipe_add(&r, "targets", "%s", c->targets);
    if (c->layers) cli_recipe_add(&r, "layers", "%s", c->layers);
    cli_recipe_add(&r, "rank", "%d", c->lc.rank), cli_recipe_float(&r, "alpha", c->lc.alpha);
    cli_recipe_float(&r, "dropout", c->lc.dropout);
    if (c->lc.use_rslora) cli_recipe_add(&r, "rslora", "1");
    cli_recipe_add(&r, "base_type", "%s", type_name(c->base_type));
    cli_recipe_add(&r, "adapter_type", "%s", type_name(c->adapter_type));
    if (c->recompute) cli_recipe_add(&r, "recompute", "1");
    if (c->recompute_layers) cli_recipe_add(&r, "recompute_layers", "%d", c->recompute_layers);
    cli_recipe_add(&r, "precision", "%s", et_gemm_precision_name(c->precision));
    if (c->base_name) cli_recipe_add(&r, "base_name", "%s", c->base_name);
    cli_recipe_add(&r, "steps", "%lld", (long long)o->steps), cli_recipe_add(&r, "batch_size", "%d", o->batch_size);
    cli_recipe_add(&r, "seq_len", "%d", o->seq_len), cli_recipe_add(&r, "grad_accum", "%d", o->grad_accum);
    cli_recipe_add(&r, "schedule", "%s", et_lr_kind_name(o->sched.kind)), cli_recipe_float(&r, "lr", o->sched.lr);
    cli_recipe_float(&r, "min_lr", o->sched.min_lr), cli_recipe_add(&r, "warmup", "%lld", (long long)o->sched.warmup);
    cli_recipe_float(&r, "weight_decay", o->adamw.weight_decay);
    cli_recipe_float(&r, "beta1", o->adamw.beta1), cli_recipe_float(&r, "beta2", o->adamw.beta2);
    cli_recipe_float(&r, "eps", o->adamw.eps), cli_recipe_float(&r, "grad_clip", o->grad_clip);
    cli_recipe_add(&r, "optim", "%s", et_adamw_state_name(o->optim_state));
    cli_recipe_add(&r, "eval_every", "%lld", (long long)o->eval_every);
    cli_recipe_add(&r, "eval_batches", "%lld", (long long)o->eval_batches);
    cli_recipe_add(&r, "ckpt_every", "%lld", (long long)o->ckpt_every);
    cli_recipe_add(&r, "seed", "%llu", (unsigned long long)o->seed);
    if (c->threads) cli_recipe_add(&r, "threads", "%d", c->threads);
    if (c->metrics) cli_recipe_add(&r, "metrics", "%s", c->metrics);
    cli_recipe_add(&r, "log_every", "%d", c->log_every);   /* kept by --resume (was lost) */
    cli_qat_recipe(&c->qat, &r);
    static const char *const derived[] = {"min_lr", "warmup", "seq_len", "precision", "base_type", "dropout", NULL};
    cli_recipe_derived(&r, a, derived);
    return cli_recipe_save(&r, c->recipe, json, e);
}

/* 1 if the file starts with the GGUF magic */
static int is_gguf_file(const char *path) {
    char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    const size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(magic, "GGUF", 4);
}

static uint64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) ? 0 : (uint64_t)st.st_size;
}

int cmd_lora(int argc, char **argv) {
    et_omp_passive_reexec(); /* idle OpenMP workers sleep while OpenBLAS runs: train/threads.h */
    cli_args a;
    et_err e = {0};
    lora_cfg c = {0};
    et_model m = {0};
    et_ds *ds = NULL;
    et_loader *train = NULL, *valid = NULL;
    lora_adapter ad = {0};
    lora_train lt = {0};
    et_train_model tm;
    et_qat q = {0};
    char *recipe = NULL;
    FILE *metrics = NULL;
    gguf_file g;
    int g_open = 0;
    cli_progress p;
    int rc = cli_parse_with_resume(&a, argc, argv, BOOLS, &e);
    if (!rc) rc = cli_check_known(&a, KNOWN, &e);
    if (!rc && a.npos > 0) rc = et_fail(&e, ET_EUSAGE, "unexpected argument '%s'", a.pos[0]);
    if (!rc) rc = read_cfg(&a, &c, &e);
    if (rc) goto done;
    if (c.threads > 0) {
        omp_set_num_threads(c.threads);
        openblas_set_num_threads(c.threads);
    }
    if (c.o.resume && access(c.ckpt, R_OK)) {
        rc = et_fail(&e, ET_EUSAGE, "%s: no checkpoint to resume from", c.ckpt);
        goto done;
    }
    if (c.o.resume && (rc = et_ckpt_check_optimizer_state(c.ckpt, &c.o.adamw, c.o.optim_state, &e))) goto done;   /* before the recipe */
    /* a quantized base from a GGUF is built tensor by tensor from the file
       (no F32 copy of the linear weights ever exists: QLoRA-style memory) */
    struct stat mst;
    const int lazy = c.base_type != GGML_TYPE_F32 && !c.qat.on && !stat(c.model, &mst) && S_ISREG(mst.st_mode) &&
                     is_gguf_file(c.model);
    if ((rc = et_ds_open(&ds, c.data, &e))) goto done;
    if (lazy) {
        if ((rc = gguf_open(&g, c.model, &e))) goto done;
        g_open = 1;
        if ((rc = et_model_from_gguf_no_linears(&m, &g, &e)) ||
            (c.tokenizer && (rc = et_model_set_tokenizer(&m, c.tokenizer, &e))))
            goto done;
    } else if ((rc = et_model_load(&m, c.model, c.tokenizer, &e))) {
        goto done;
    }
    if (!c.o.seq_len) c.o.seq_len = m.hp.n_ctx > 0 && m.hp.n_ctx < 256 ? m.hp.n_ctx : 256;
    char prec_why[1600];
    const int was_auto = c.precision == CLI_PRECISION_AUTO;
    if ((rc = cli_resolve_precision(&c.precision, &m.hp, c.o.batch_size * c.o.seq_len, prec_why, sizeof prec_why, &e)))
        goto done;
    if (was_auto && c.base_type_auto) c.base_type = c.precision == ET_GEMM_BF16 ? GGML_TYPE_BF16 : GGML_TYPE_F32;
    if ((rc = cli_check_data(c.data, "base", c.o.seq_len, &m, ds, &e)) ||
        (rc = lora_adapter_create(&ad, &m, &c.lc, &e)))
        goto done;
    const size_t base_params = m.n_params;
    /* PEFT's base_model_name_or_path: --base-name, else the base's general.name, else its file name */
    char base_name[256];
    if (c.base_name) snprintf(base_name, sizeof base_name, "%s", c.base_name);
    else if (m.name[0]) snprintf(base_name, sizeof base_name, "%s", m.name);
    else snprintf(base_name, sizeof base_name, "%s", strrchr(c.model, '/') ? strrchr(c.model, '/') + 1 : c.model);
    const et_hparams hp = m.hp;
    if ((rc = lazy ? lora_train_init_fill(&lt, &m, c.base_type, et_model_gguf_fill, &g, &ad, &tm, &e)
                   : lora_train_init(&lt, &m, c.base_type, &ad, &tm, &e)))
        goto done;
    if (g_open) gguf_close(&g), g_open = 0;
    lt.recompute = c.recompute;
    lt.ll.recompute_layers = c.recompute_layers;
    lt.tape.gemm_precision = c.precision;
    if (c.qat.on && (rc = cli_qat_attach(&c.qat, &q, NULL, &lt.ll, c.o.resume ? c.ckpt : NULL, &e))) goto done;
    if (c.base_type != GGML_TYPE_F32) et_model_free(&m); /* the frozen base holds its own copies */

    et_loader_opts lo = et_loader_defaults();
    lo.batch_size = c.o.batch_size, lo.seq_len = c.o.seq_len, lo.seed = c.o.seed;
    if ((rc = et_loader_open(&train, ds, &lo, &e))) goto done;
    lo.split = ET_SPLIT_VALID, lo.shuffle = 0, lo.loop = 0;
    et_err ve = {0};
    if (et_loader_open(&valid, ds, &lo, &ve)) {
        valid = NULL;
        fprintf(stderr, "edgetune: no validation loss: %s\n", ve.msg);
    }
    /* inputs validated: lock (and create) --out before writing into it */
    if ((rc = cli_lock_outdir(c.out, &e)) || (rc = save_recipe(&c, &a, &recipe, &e))) goto done;
    c.o.config = recipe;
    if (c.metrics && !(metrics = fopen(c.metrics, c.o.resume ? "a" : "w"))) {
        rc = et_fail(&e, ET_ERUN, "%s: cannot open the metrics file", c.metrics);
        goto done;
    }
    cli_progress_init(&p, "lora", c.log_every, metrics);
    const uint64_t adapter_bytes = lora_adapter_gguf_bytes(&ad, c.adapter_type);
    fprintf(stderr, "edgetune lora: base %s (%zu parameters, n_embd %d, n_layer %d, held as %s: %.1f MiB); "
            "adapter rank %d alpha %g%s on %s, %zu parameters (%.1f KB as %s GGUF); %s: %lld tokens; "
            "batch %d x %d x %d; %lld steps; GEMMs in %s%s%s\n",
            c.model, base_params, hp.n_embd, hp.n_layer, type_name(c.base_type),
            et_lora_llama_base_bytes(&lt.ll) / 1048576.0, ad.rank, (double)ad.alpha, ad.use_rslora ? " (rsLoRA)" : "",
            c.targets, ad.n_params, adapter_bytes / 1024.0, type_name(c.adapter_type), c.data,
            (long long)ds->n_tokens, c.o.batch_size, c.o.seq_len, c.o.grad_accum, (long long)c.o.steps,
            et_gemm_precision_name(c.precision), prec_why, c.o.resume ? " (resumed)" : "");
    cli_qat_events ev = {&p, c.qat.on ? &q : NULL};
    c.o.on_event = cli_qat_event;
    c.o.user = &ev;
    cli_progress_catch_sigint(1);
    et_train_result res;
    rc = et_train_run(&tm, train, valid, &c.o, &res, &e);
    cli_progress_catch_sigint(0);
    cli_progress_end(&p);
    if (rc) goto done;
    if ((rc = lora_adapter_save_gguf(&ad, c.gguf, c.adapter_type, &e)) ||
        (rc = lora_adapter_save_peft(&ad, c.peft, base_name, c.adapter_type == GGML_TYPE_F16 ? ST_F16 : ST_F32, &e)))
        goto done;
    if (c.qat.on) { /* merge into the F32 base, then quantize: the weights training saw */
        const size_t n = strlen(c.model);
        if (n < 5 || strcmp(c.model + n - 5, ".gguf")) {
            fprintf(stderr, "edgetune: qat: the base is not a GGUF file: merge the adapter into a GGUF of it with "
                    "`edgetune merge`, then `edgetune quantize --type %s`\n", c.qat.name);
        } else {
            lora_merge_adapter in = {c.gguf, 1.0f};
            if ((rc = lora_merge(c.model, &in, 1, c.merged, ET_FTYPE_ALL_F32, NULL, &e)) ||
                (rc = cli_qat_export(&c.qat, &q, c.merged, c.qmerged, &e)))
                goto done;
            printf("wrote %s (base + adapter, F32) and %s: the LoRA-QAT model in %s\n", c.merged, c.qmerged, c.qat.name);
        }
    }
    if (cli_interrupted()) {
        rc = et_fail(&e, ET_ERUN, "interrupted at step %lld (checkpoint and %s written): continue with "
                     "`edgetune lora --resume --out %s`", (long long)res.step, c.gguf, c.out);
        goto done;
    }
    const uint64_t bytes = file_size(c.gguf);
    printf("trained %lld steps, %lld target tokens: train loss %.4f\n", (long long)res.step, (long long)res.tokens,
           res.last_loss);
    if (res.skipped)
        printf("skipped %lld batches without a target token (no update; the steps were drawn again)\n",
               (long long)res.skipped);
    if (valid)
        printf("validation loss: before %.4f (step %lld), after %.4f (ppl %.3f -> %.3f)\n", res.first_val_loss,
               (long long)res.first_val_step, p.last_val_loss, exp(res.first_val_loss), exp(p.last_val_loss));
    printf("adapter: %s, %llu bytes (%.1f KB), %zu parameters, rank %d, alpha %g, targets %s\n", c.gguf,
           (unsigned long long)bytes, bytes / 1024.0, ad.n_params, ad.rank, (double)ad.alpha, c.targets);
    printf("wrote %s, %s/ (PEFT), %s, %s\n", c.gguf, c.peft, c.ckpt, c.recipe);
done:
    if (g_open) gguf_close(&g);
    if (metrics) fclose(metrics);
    et_loader_close(train);
    et_loader_close(valid);
    et_qat_free(&q);
    cli_qat_free(&c.qat);
    lora_train_free(&lt);
    lora_adapter_free(&ad);
    et_model_free(&m);
    if (ds) et_ds_close(ds);
    free(recipe);
    cli_free(&a);
    return rc ? cli_report(&e) : 0;
}
