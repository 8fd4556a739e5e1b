/* cli/cmd_train.c — `edgetune train`: full training from scratch or
 * continued pretraining of an imported model on a tokens.h5
 * (train/trainer.h), with a progress line, JSON-lines metrics, checkpoints,
 * --resume, the effective recipe and a GGUF export in --out DIR.
 * `edgetune distill` is the same command with the loss of distill/distill.h
 * (a stored or online teacher) and students made from the teacher. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../datasets/ingest_tok.h"
#include "../distill/distill.h"
#include "../distill/student.h"
#include "../eval/eval.h"
#include "../prune/plan.h"
#include "../datasets/loader.h"
#include "../export/model.h"
#include "../quant/quant.h"
#include "../quant/quantize_model.h"
#include "../train/checkpoint.h"
#include "../train/gemm.h"
#include "../train/init.h"
#include "../train/qat.h"
#include "../train/threads.h"
#include "../train/train_llama.h"
#include "../train/trainer.h"
#include "cli.h"
#include "qat_cli.h"
#include "train_ui.h"

static const char *const KNOWN[] = {
    "model", "tokenizer", "data", "out", "n_embd", "n_layer", "n_head", "n_head_kv", "n_ff", "n_vocab", "n_ctx",
    "head_dim", "rope_theta", "rms_eps", "untied", "init_std", "steps", "batch_size", "seq_len", "grad_accum", "lr",
    "min_lr", "warmup", "schedule", "weight_decay", "decay", "beta1", "beta2", "eps", "optim", "grad_clip", "eval_every",
    "eval_batches", "ckpt_every", "seed", "threads", "metrics", "type", "resume", "log_every", "recompute", "recompute_layers", "precision", "loader",
    "qat", "qat_start", "qat_type_map", "qat_imatrix", "qat_act", NULL};
static const char *const BOOLS[] = {"resume", "untied", "recompute", "no_eval", "qat_act", NULL};
/* distill adds these to KNOWN */
static const char *const KNOWN_KD[] = {"teacher", "teacher_logits", "student", "keep_layers", "kd", "temperature", "alpha",
                                       "no_eval", "prune_plan", "hidden_map", "hidden_loss", "hidden_weight", NULL};

/* Everything the command decided, before training starts. */
typedef struct train_cfg {
    const char *model, *tokenizer, *data, *out, *metrics;
    et_hparams hp;          /* from scratch */
    float init_std;
    et_train_opts o;
    uint32_t gguf_type;
    int threads, log_every, recompute, recompute_layers;
    int precision;          /* ET_GEMM_* of the matmuls (--precision) */
    int loader_mode;        /* ET_LOAD_* (--loader auto|stream|rows) */
    cli_qat qat;            /* --qat TYPE, --qat-start, --qat-type-map */
    char ckpt[4096], recipe[4096], gguf[4096], qgguf[4096];
    /* distill */
    int distill, no_eval;
    const char *teacher, *teacher_logits, *keep_layers, *prune_plan;
    et_distill_opts kd;
    char eval_student[4096], eval_teacher[4096], ref_cache[4096];
} train_cfg;

/* The architecture flags of a model trained from scratch (n_vocab may stay 0: taken later
 * from the tokenizer or the data). */
static int read_arch(const cli_args *a, et_hparams *hp, et_err *e) {
    long n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx, head_dim;
    double theta, eps;
    int rc;
    if ((rc = cli_int_range(a, "n_embd", 0, 1, 1 << 16, &n_embd, e)) || (rc = cli_int_range(a, "n_layer", 0, 1, 1024, &n_layer, e)) ||
        (rc = cli_int_range(a, "n_head", 0, 1, 1024, &n_head, e)) ||
        (rc = cli_int_range(a, "n_head_kv", n_head, 1, 1024, &n_head_kv, e)) ||
        (rc = cli_int_range(a, "n_ff", 0, 1, 1 << 20, &n_ff, e)) || (rc = cli_int_range(a, "n_vocab", 0, 0, 1 << 24, &n_vocab, e)) ||
        (rc = cli_int_range(a, "n_ctx", 512, 1, 1 << 20, &n_ctx, e)) ||
        (rc = cli_int_range(a, "head_dim", n_head ? n_embd / n_head : 0, 0, 1 << 16, &head_dim, e)) ||
        (rc = cli_float_range(a, "rope_theta", 10000.0, 1.0, 1e9, &theta, e)) ||
        (rc = cli_float_range(a, "rms_eps", 1e-5, 1e-12, 1.0, &eps, e)))
        return rc;
    memset(hp, 0, sizeof *hp);
    snprintf(hp->arch, sizeof hp->arch, "llama");
    hp->n_embd = (int)n_embd, hp->n_layer = (int)n_layer, hp->n_head = (int)n_head;
    hp->n_head_kv = (int)n_head_kv, hp->n_ff = (int)n_ff, hp->n_vocab = (int)n_vocab, hp->n_ctx = (int)n_ctx;
    hp->head_dim = (int)head_dim, hp->rope_theta = (float)theta, hp->rms_eps = (float)eps;
    hp->tied_output = strcmp(cli_str(a, "untied", "0"), "1") != 0;
    if (n_head % n_head_kv) return et_fail(e, ET_EUSAGE, "--n-head %ld is not a multiple of --n-head-kv %ld", n_head, n_head_kv);
    if (head_dim < 2 || head_dim % 2) return et_fail(e, ET_EUSAGE, "head_dim %ld must be even (RoPE pairs)", head_dim);
    return 0;
}

/* distill's own flags; the data defaults to the teacher-logits file (it is a tokens.h5). */
static int read_kd(const cli_args *a, train_cfg *c, et_err *e) {
    c->teacher = cli_str(a, "teacher", NULL);
    c->teacher_logits = cli_str(a, "teacher_logits", NULL);
    c->keep_layers = cli_str(a, "keep_layers", NULL);
    c->prune_plan = cli_str(a, "prune_plan", NULL);
    c->no_eval = cli_on(a, "no_eval");
    if (!c->model) c->model = cli_str(a, "student", NULL);
    if (!c->teacher)
        return et_fail(e, ET_EUSAGE, "distill needs --teacher MODEL (the online teacher, or with --teacher-logits F the "
                                     "model F was made with; see `edgetune help distill`)");
    if ((c->keep_layers != NULL) + (c->model != NULL) + (c->prune_plan != NULL) > 1)
        return et_fail(e, ET_EUSAGE, "give one of --student FILE, --keep-layers LIST or --prune-plan PLAN.json (a student "
                                     "made from the teacher)");
    if (c->teacher_logits && c->data && strcmp(c->data, c->teacher_logits)) {
        /* the stored rows are positions of the teacher file's own /tokens: train on those, after
           checking they are this data's */
        et_teacher *t = NULL;
        et_teacher_meta mt;
        char sha[65];
        uint64_t bytes;
        int rc = et_teacher_open(&t, c->teacher_logits, &mt, e);
        et_teacher_close(t);
        if (!rc) rc = et_file_sha256(c->data, sha, &bytes, e);
        if (!rc && strcmp(sha, mt.data_sha256))
            rc = et_fail(e, ET_EINPUT, "%s was made from another data file (sha256 %.12s…) than --data %s (%.12s…)",
                         c->teacher_logits, mt.data_sha256, c->data, sha);
        if (rc) return rc;
    }
    if (c->teacher_logits) c->data = c->teacher_logits;
    c->kd = et_distill_defaults();
    c->kd.teacher_logits = c->teacher_logits;
    const char *kind = cli_str(a, "kd", "forward");
    if (strcmp(kind, "forward") && strcmp(kind, "reverse"))
        return et_fail(e, ET_EUSAGE, "--kd: '%s' is not forward (KL(teacher || student)) or reverse", kind);
    c->kd.kind = !strcmp(kind, "reverse") ? ET_KD_REVERSE : ET_KD_FORWARD;
    double t, al;
    int rc;
    if ((rc = cli_float_range(a, "temperature", 1.0, 1e-3, 1e3, &t, e)) ||
        (rc = cli_float_range(a, "alpha", 0.5, 0.0, 1.0, &al, e)))
        return rc;
    c->kd.temperature = (float)t, c->kd.alpha = (float)al;
    c->kd.hidden_map = cli_str(a, "hidden_map", NULL);
    const char *hk = cli_str(a, "hidden_loss", "mse");
    if (strcmp(hk, "mse") && strcmp(hk, "cosine")) return et_fail(e, ET_EUSAGE, "--hidden-loss: '%s' is not mse or cosine", hk);
    c->kd.hidden_kind = !strcmp(hk, "cosine") ? ET_HIDDEN_COSINE : ET_HIDDEN_MSE;
    double hw;
    if ((rc = cli_float_range(a, "hidden_weight", 1.0, 0.0, 1e6, &hw, e))) return rc;
    c->kd.hidden_weight = (float)hw;
    return 0;
}

static int read_cfg(const cli_args *a, train_cfg *c, int distill, et_err *e) {
    memset(c, 0, sizeof *c);
    c->distill = distill;
    c->model = cli_str(a, "model", NULL);
    c->tokenizer = cli_str(a, "tokenizer", NULL);
    c->data = cli_str(a, "data", NULL);
    c->out = cli_str(a, "out", cli_str(a, "output", NULL));
    c->metrics = cli_str(a, "metrics", NULL);
    int rc = 0;
    if (distill && (rc = read_kd(a, c, e))) return rc;
    if (!c->data || !c->out)
        return et_fail(e, ET_EUSAGE, "%s needs --data tokens.h5 and --out DIR (see `edgetune help %s`)",
                       distill ? "distill" : "train", distill ? "distill" : "train");
    if (!c->model && !c->keep_layers && !c->prune_plan) {
        if (!cli_str(a, "n_embd", NULL) || !cli_str(a, "n_layer", NULL) || !cli_str(a, "n_head", NULL) ||
            !cli_str(a, "n_ff", NULL))
            return et_fail(e, ET_EUSAGE, "%s needs --%s FILE, or the architecture of a new model: "
                                         "--n-embd --n-layer --n-head --n-ff [--n-head-kv --n-vocab --n-ctx]%s",
                           distill ? "distill" : "train", distill ? "student" : "model",
                           distill ? ", or --keep-layers LIST (the teacher's layers)" : "");
        if ((rc = read_arch(a, &c->hp, e))) return rc;
    }
    et_train_opts *o = &c->o;
    static const cli_train_defaults defs = {.steps = 1000, .lr = 3e-4, .weight_decay = 0.1, .beta2 = 0.95,
                                            .eval_every = 100};
    double std;
    if ((rc = cli_train_opts(a, &defs, o, &c->threads, &c->log_every, e)) ||
        (rc = cli_float_range(a, "init_std", 0.02, 0.0, 10.0, &std, e)) ||
        (rc = cli_train_precision(a, &c->precision, e)))
        return rc;
    c->init_std = (float)std;
    const char *decay = cli_str(a, "decay", "default");
    o->wd_policy = !strcmp(decay, "all") ? ET_WD_ALL : !strcmp(decay, "none") ? ET_WD_NONE : ET_WD_DEFAULT;
    if (strcmp(decay, "all") && strcmp(decay, "none") && strcmp(decay, "default"))
        return et_fail(e, ET_EUSAGE, "--decay: '%s' is not default (no decay on norms and embeddings), all or none", decay);
    const char *type = cli_str(a, "type", "F32");
    if (strcmp(type, "F32") && strcmp(type, "F16")) return et_fail(e, ET_EUSAGE, "--type: '%s' is not F32 or F16", type);
    c->gguf_type = !strcmp(type, "F16") ? GGML_TYPE_F16 : GGML_TYPE_F32;
    c->recompute = cli_on(a, "recompute");
    long rc_layers;
    if ((rc = cli_int_range(a, "recompute_layers", 0, 0, 1 << 20, &rc_layers, e))) return rc;
    c->recompute_layers = (int)rc_layers;
    if (c->recompute_layers) c->recompute = 1;   /* --recompute-layers N implies --recompute */
    if ((rc = cli_qat_opts(a, &c->qat, e))) return rc;
    if (c->qat.on && c->gguf_type != GGML_TYPE_F32)
        return et_fail(e, ET_EUSAGE, "--qat needs --type F32: the quantized export is made from the F32 master weights");
    snprintf(c->qgguf, sizeof c->qgguf, "%s/model-%s.gguf", c->out, c->qat.on ? c->qat.name : "");
    const char *lm = cli_str(a, "loader", "auto");
    c->loader_mode = !strcmp(lm, "stream") ? ET_LOAD_STREAM : !strcmp(lm, "rows") ? ET_LOAD_ROWS : ET_LOAD_AUTO;
    if (strcmp(lm, "auto") && strcmp(lm, "stream") && strcmp(lm, "rows"))
        return et_fail(e, ET_EUSAGE, "--loader: '%s' is not auto, stream (documents concatenated, cut into windows) "
                                     "or rows (one sample per document, from its start)", lm);
    snprintf(c->ckpt, sizeof c->ckpt, "%s/checkpoint.h5", c->out);
    snprintf(c->recipe, sizeof c->recipe, "%s/recipe.json", c->out);
    snprintf(c->gguf, sizeof c->gguf, "%s/model.gguf", c->out);
    snprintf(c->eval_student, sizeof c->eval_student, "%s/eval_student.json", c->out);
    snprintf(c->eval_teacher, sizeof c->eval_teacher, "%s/eval_teacher.json", c->out);
    snprintf(c->ref_cache, sizeof c->ref_cache, "%s/teacher_valid_ref.h5", c->out);
    o->ckpt_path = c->ckpt;
    return 0;
}

/* ---- the model ---- */

/* Load --model, or build a new one from the flags and initialize it from --seed. */
static int make_model(train_cfg *c, et_model *m, const et_ds *ds, et_err *e) {
    if (c->model) return et_model_load(m, c->model, c->tokenizer, e);
    if (c->prune_plan) { /* distill: the teacher pruned by a plan of `edgetune prune` (prune/plan.h) */
        et_model t = {0};
        et_prune_plan plan;
        memset(&plan, 0, sizeof plan);
        char sha[65];
        int rc = et_model_load(&t, c->teacher, c->tokenizer, e);
        if (!rc) rc = et_prune_plan_read(&plan, c->prune_plan, e);
        if (!rc) rc = et_prune_file_sha256(c->teacher, sha, e);
        if (!rc) rc = et_prune_plan_check_model(&plan, &t, sha, c->teacher, e);
        if (!rc) rc = et_prune_apply(&t, &plan, m, 1, e);
        et_prune_plan_free(&plan);
        et_model_free(&t);
        return rc;
    }
    if (c->keep_layers) { /* distill: the teacher's layers */
        et_model t = {0};
        int keep[1024], n = 0;
        int rc = et_model_load(&t, c->teacher, c->tokenizer, e);
        if (!rc) rc = et_parse_layer_list(c->keep_layers, t.hp.n_layer, keep, 1024, &n, e);
        if (!rc) rc = et_student_keep_layers(m, &t, keep, n, t.tok ? (c->tokenizer ? c->tokenizer : c->teacher) : NULL, e);
        et_model_free(&t);
        return rc;
    }
    et_tokenizer *tok = NULL;
    int rc = 0;
    if (c->tokenizer && (rc = et_ingest_load_tokenizer(&tok, c->tokenizer, c->hp.n_vocab, e))) return rc;
    if (tok && c->hp.n_vocab && c->hp.n_vocab != et_tok_n_vocab(tok)) {
        et_tok_free(tok);
        return et_fail(e, ET_EUSAGE, "--n-vocab %d differs from the %d entries of %s", c->hp.n_vocab,
                       et_tok_n_vocab(tok), c->tokenizer);
    }
    if (!c->hp.n_vocab) c->hp.n_vocab = tok ? et_tok_n_vocab(tok) : (int)ds->n_vocab;
    if ((rc = et_model_alloc(m, &c->hp, e))) {
        et_tok_free(tok);
        return rc;
    }
    m->tok = tok;
    return 0;
}

static int save_recipe(const train_cfg *c, const cli_args *a, const et_model *m, char **json, et_err *e) {
    cli_recipe r = {0};
    const et_train_opts *o = &c->o;
    if (c->model) cli_recipe_add(&r, c->distill ? "student" : "model", "%s", c->model);
    if (c->tokenizer) cli_recipe_add(&r, "tokenizer", "%s", c->tokenizer);
    if (c->distill) {
        cli_recipe_add(&r, "teacher", "%s", c->teacher);
        if (c->teacher_logits) cli_recipe_add(&r, "teacher_logits", "%s", c->teacher_logits);
        if (c->keep_layers) cli_recipe_add(&r, "keep_layers", "%s", c->keep_layers);
        if (c->prune_plan) cli_recipe_add(&r, "prune_plan", "%s", c->prune_plan);
        cli_recipe_add(&r, "kd", "%s", c->kd.kind == ET_KD_REVERSE ? "reverse" : "forward");
        cli_recipe_float(&r, "temperature", c->kd.temperature), cli_recipe_float(&r, "alpha", c->kd.alpha);
        if (c->no_eval) cli_recipe_add(&r, "no_eval", "1");
        if (c->kd.hidden_map) {
            cli_recipe_add(&r, "hidden_map", "%s", c->kd.hidden_map);
            cli_recipe_add(&r, "hidden_loss", "%s", c->kd.hidden_kind == ET_HIDDEN_COSINE ? "cosine" : "mse");
            cli_recipe_float(&r, "hidden_weight", c->kd.hidden_weight);
        }
    }
    if (!c->model && !c->keep_layers && !c->prune_plan) {
        const et_hparams *h = &m->hp;
        cli_recipe_add(&r, "n_embd", "%d", h->n_embd), cli_recipe_add(&r, "n_layer", "%d", h->n_layer);
        cli_recipe_add(&r, "n_head", "%d", h->n_head), cli_recipe_add(&r, "n_head_kv", "%d", h->n_head_kv);
        cli_recipe_add(&r, "n_ff", "%d", h->n_ff), cli_recipe_add(&r, "n_vocab", "%d", h->n_vocab), cli_recipe_add(&r, "n_ctx", "%d", h->n_ctx);
        cli_recipe_add(&r, "head_dim", "%d", h->head_dim), cli_recipe_float(&r, "rope_theta", h->rope_theta);
        cli_recipe_float(&r, "rms_eps", h->rms_eps), cli_recipe_float(&r, "init_std", c->init_std);
        if (!h->tied_output) cli_recipe_add(&r, "untied", "1");
    }
    cli_recipe_add(&r, "data", "%s", c->data), cli_recipe_add(&r, "out", "%s", c->out);
    cli_recipe_add(&r, "steps", "%lld", (long long)o->steps), cli_recipe_add(&r, "batch_size", "%d", o->batch_size);
    cli_recipe_add(&r, "seq_len", "%d", o->seq_len), cli_recipe_add(&r, "grad_accum", "%d", o->grad_accum);
    cli_recipe_add(&r, "schedule", "%s", et_lr_kind_name(o->sched.kind)), cli_recipe_float(&r, "lr", o->sched.lr);
    cli_recipe_float(&r, "min_lr", o->sched.min_lr), cli_recipe_add(&r, "warmup", "%lld", (long long)o->sched.warmup);
    cli_recipe_float(&r, "weight_decay", o->adamw.weight_decay);
    cli_recipe_add(&r, "decay", "%s", o->wd_policy == ET_WD_ALL ? "all" : o->wd_policy == ET_WD_NONE ? "none" : "default");
    cli_recipe_float(&r, "beta1", o->adamw.beta1), cli_recipe_float(&r, "beta2", o->adamw.beta2);
    cli_recipe_float(&r, "eps", o->adamw.eps), cli_recipe_float(&r, "grad_clip", o->grad_clip);
    cli_recipe_add(&r, "optim", "%s", et_adamw_state_name(o->optim_state));
    cli_recipe_add(&r, "eval_every", "%lld", (long long)o->eval_every), cli_recipe_add(&r, "eval_batches", "%lld", (long long)o->eval_batches);
    cli_recipe_add(&r, "ckpt_every", "%lld", (long long)o->ckpt_every), cli_recipe_add(&r, "seed", "%llu", (unsigned long long)o->seed);
    cli_recipe_add(&r, "type", "%s", c->gguf_type == GGML_TYPE_F16 ? "F16" : "F32");
    if (c->threads) cli_recipe_add(&r, "threads", "%d", c->threads);
    if (c->recompute) cli_recipe_add(&r, "recompute", "1");
    if (c->recompute_layers) cli_recipe_add(&r, "recompute_layers", "%d", c->recompute_layers);
    cli_recipe_add(&r, "precision", "%s", et_gemm_precision_name(c->precision));
    if (c->loader_mode) cli_recipe_add(&r, "loader", "%s", c->loader_mode == ET_LOAD_ROWS ? "rows" : "stream");
    if (c->metrics) cli_recipe_add(&r, "metrics", "%s", c->metrics);
    cli_recipe_add(&r, "log_every", "%d", c->log_every);   /* kept by --resume (was lost) */
    cli_qat_recipe(&c->qat, &r);
    static const char *const derived[] = {"min_lr", "warmup", "seq_len", "precision", NULL};
    cli_recipe_derived(&r, a, derived);
    return cli_recipe_save(&r, c->recipe, json, e);
}

/* distill: the student against the teacher on the validation split, as eval JSONs
 * (KL, same top-1, both perplexities; the teacher's perplexity alone). */
static int distill_eval(const train_cfg *c, et_err *e) {
    char magic[4] = {0};
    if (et_sniff(c->teacher, magic, 4) != 4 || memcmp(magic, "GGUF", 4)) {
        fprintf(stderr, "edgetune distill: no eval JSONs (the teacher %s is not a GGUF the engine runs)\n", c->teacher);
        return 0;
    }
    et_eval_opts o = et_eval_defaults();
    o.model = c->gguf, o.task = "kl", o.data = c->data, o.split = "valid", o.ref_model = c->teacher, o.ref = c->ref_cache;
    o.n_ctx = c->o.seq_len + 1, o.n_threads = c->threads > 0 ? c->threads : 1, o.name = "student";
    cJSON *r = NULL;
    int rc = et_eval_run(&o, &r, e);
    if (!rc) rc = et_eval_write_json(r, c->eval_student, e);
    if (!rc) {
        const cJSON *m = cJSON_GetObjectItem(r, "metrics");
        printf("student vs teacher on the validation split: ppl %.3f vs %.3f, KL %.4f nats/token, same top-1 %.1f%%\n",
               cJSON_GetNumberValue(cJSON_GetObjectItem(m, "ppl")), cJSON_GetNumberValue(cJSON_GetObjectItem(m, "ppl_ref")),
               cJSON_GetNumberValue(cJSON_GetObjectItem(m, "kl_mean")),
               100.0 * cJSON_GetNumberValue(cJSON_GetObjectItem(m, "same_top1")));
    }
    cJSON_Delete(r);
    r = NULL;
    o.model = c->teacher, o.task = "perplexity", o.ref_model = NULL, o.ref = NULL, o.name = "teacher";
    if (!rc) rc = et_eval_run(&o, &r, e);
    if (!rc) rc = et_eval_write_json(r, c->eval_teacher, e);
    cJSON_Delete(r);
    if (!rc) printf("wrote %s, %s\n", c->eval_student, c->eval_teacher);
    return rc;
}

static int train_or_distill(int argc, char **argv, int distill) {
    et_omp_passive_reexec(); /* idle OpenMP workers sleep while OpenBLAS runs: train/threads.h */
    cli_args a;
    et_err e = {0};
    train_cfg c = {0};
    et_model m = {0};
    et_ds *ds = NULL;
    et_loader *train = NULL, *valid = NULL;
    et_train_llama tl = {0};
    et_train_model tm;
    et_qat q = {0};
    et_model teacher = {0};
    et_distill kd;
    int have_kd = 0;
    char *recipe = NULL;
    cli_progress p;
    cli_progress_init(&p, distill ? "distill" : NULL, 1, NULL);
    const char *known[sizeof KNOWN / sizeof KNOWN[0] + sizeof KNOWN_KD / sizeof KNOWN_KD[0]];
    size_t nk = 0;
    for (size_t i = 0; KNOWN[i]; i++) known[nk++] = KNOWN[i];
    for (size_t i = 0; distill && KNOWN_KD[i]; i++) known[nk++] = KNOWN_KD[i];
    known[nk] = NULL;
    int rc = cli_parse_with_resume(&a, argc, argv, BOOLS, &e);
    if (!rc) rc = cli_check_known(&a, known, &e);
    if (!rc && a.npos > 0) rc = et_fail(&e, ET_EUSAGE, "unexpected argument '%s'", a.pos[0]);
    if (!rc) rc = read_cfg(&a, &c, distill, &e);
    if (rc) goto done;
    if (c.threads > 0) {
        omp_set_num_threads(c.threads);
        openblas_set_num_threads(c.threads);
    }
    p.log_every = c.log_every > 0 ? c.log_every : 1;
    p.tokens_per_step = (double)c.o.batch_size * c.o.grad_accum;
    if (c.o.resume && access(c.ckpt, R_OK)) {
        rc = et_fail(&e, ET_EUSAGE, "%s: no checkpoint to resume from", c.ckpt);
        goto done;
    }
    if (c.o.resume && (rc = et_ckpt_check_optimizer_state(c.ckpt, &c.o.adamw, c.o.optim_state, &e))) goto done;   /* before the recipe */
    if ((rc = et_ds_open(&ds, c.data, &e)) || (rc = make_model(&c, &m, ds, &e))) goto done;
    if (!c.o.seq_len) c.o.seq_len = m.hp.n_ctx > 0 && m.hp.n_ctx < 256 ? m.hp.n_ctx : 256;
    p.tokens_per_step *= c.o.seq_len;
    char prec_why[1600];
    if ((rc = cli_resolve_precision(&c.precision, &m.hp, c.o.batch_size * c.o.seq_len, prec_why, sizeof prec_why, &e)))
        goto done;
    if ((rc = cli_check_data(c.data, "model", c.o.seq_len, &m, ds, &e)) ||
        (rc = et_train_llama_init(&tl, &m, 0, &tm, &e)))
        goto done;
    tl.recompute = c.recompute;
    tl.recompute_layers = c.recompute_layers;
    tl.tape.gemm_precision = c.precision;
    if (c.distill) { /* first: a hidden-state projection moves the student's block (distill.h) */
        const int online = !c.teacher_logits && (c.kd.alpha > 0.0f || c.kd.hidden_map); /* alpha 0: no teacher run */
        if (online && (rc = et_model_load(&teacher, c.teacher, c.tokenizer, &e))) goto done;
        if (online) c.kd.teacher = &teacher;
        if ((rc = et_distill_init(&kd, &tl, &tm, &c.kd, c.o.batch_size, c.o.seq_len, &e))) goto done;
        have_kd = 1;
    }
    if (c.qat.on) {
        if ((rc = cli_qat_attach(&c.qat, &q, &tl.L, NULL, c.o.resume ? c.ckpt : NULL, &e))) goto done;
        tl.qat = &q;
    }
    if (!c.model && !c.keep_layers && !c.prune_plan && !c.o.resume) { /* a new model: random init */
        et_xoshiro r;
        et_xoshiro_seed(&r, c.o.seed);
        et_init_normal(tm.t, tm.n_t - tl.n_extra, m.hp.n_layer, c.init_std, &r); /* the model's own tensors */
    }
    et_loader_opts lo = et_loader_defaults();
    lo.batch_size = c.o.batch_size, lo.seq_len = c.o.seq_len, lo.seed = c.o.seed, lo.mode = c.loader_mode;
    if ((rc = et_loader_open(&train, ds, &lo, &e))) goto done;
    lo.split = ET_SPLIT_VALID, lo.shuffle = 0, lo.loop = 0;
    et_err ve = {0};
    if (et_loader_open(&valid, ds, &lo, &ve)) {
        valid = NULL;
        fprintf(stderr, "edgetune: no evaluation: %s\n", ve.msg);
    }
    /* inputs validated: lock (and create) --out before writing into it */
    if ((rc = cli_lock_outdir(c.out, &e)) || (rc = save_recipe(&c, &a, &m, &recipe, &e))) goto done;
    c.o.config = recipe;
    if (c.metrics && !(p.metrics = fopen(c.metrics, c.o.resume ? "a" : "w"))) {
        rc = et_fail(&e, ET_ERUN, "%s: cannot open the metrics file", c.metrics);
        goto done;
    }
    if (c.distill)
        fprintf(stderr, "edgetune distill: teacher %s, %s; KD %s, T %g, alpha %g\n", c.teacher,
                c.teacher_logits ? c.teacher_logits : c.kd.teacher ? "run online (full vocabulary)" : "not run (alpha 0: CE only)",
                c.kd.kind == ET_KD_REVERSE ? "reverse KL(student || teacher)" : "forward KL(teacher || student)",
                c.kd.temperature, c.kd.alpha);
    fprintf(stderr, "edgetune %s: %s, %zu parameters (n_embd %d, n_layer %d, n_head %d/%d, n_ff %d, n_vocab %d); "
            "%s: %lld tokens; batch %d x %d x %d; %lld steps; %s GEMMs%s%s\n",
            distill ? "distill student" : "train", c.model ? c.model : c.keep_layers ? "teacher layers" : c.prune_plan ? "pruned teacher" : "new model", m.n_params, m.hp.n_embd, m.hp.n_layer, m.hp.n_head, m.hp.n_head_kv,
            m.hp.n_ff, m.hp.n_vocab, c.data, (long long)ds->n_tokens, c.o.batch_size, c.o.seq_len, c.o.grad_accum,
            (long long)c.o.steps, et_gemm_precision_name(c.precision), prec_why, c.o.resume ? " (resumed)" : "");
    cli_qat_events ev = {&p, c.qat.on ? &q : NULL};
    c.o.on_event = cli_qat_event;
    c.o.user = &ev;
    cli_progress_catch_sigint(1);
    et_train_result res;
    rc = et_train_run(&tm, train, valid, &c.o, &res, &e);
    cli_progress_catch_sigint(0);
    cli_progress_end(&p);
    if (rc) goto done;
    if ((rc = et_model_save_gguf(&m, c.gguf, c.gguf_type, &e))) goto done;
    if (c.qat.on && (rc = cli_qat_export(&c.qat, &q, c.gguf, c.qgguf, &e))) goto done;
    if (cli_interrupted()) {
        rc = et_fail(&e, ET_ERUN, "interrupted at step %lld (checkpoint and %s written): continue with "
                     "`edgetune train --resume --out %s`", (long long)res.step, c.gguf, c.out);
        goto done;
    }
    if (isnan(res.val_loss))
        printf("trained %lld steps, %lld tokens: train loss %.4f (no validation split)\n", (long long)res.step,
               (long long)res.tokens, res.last_loss);
    else
        printf("trained %lld steps, %lld tokens: train loss %.4f, val loss %.4f (ppl %.3f)\n", (long long)res.step,
               (long long)res.tokens, res.last_loss, res.val_loss, exp(res.val_loss));
    if (res.skipped)
        printf("skipped %lld batches without a target token (no update; the steps were drawn again)\n",
               (long long)res.skipped);
    printf("wrote %s, %s, %s\n", c.gguf, c.ckpt, c.recipe);
    if (c.qat.on) printf("wrote %s: the QAT model in %s, the weights the training forward used\n", c.qgguf, c.qat.name);
    if (have_kd) {
        int64_t n_kd;
        double share = et_distill_context_share(&kd, &n_kd);
        if (share >= 0)
            printf("KD positions %lld; the stored teacher saw the student's context at %.1f%% of them\n", (long long)n_kd,
                   100.0 * share);
    }
    if (c.distill && !c.no_eval && valid) rc = distill_eval(&c, &e);
done:
    if (p.metrics) fclose(p.metrics);
    et_loader_close(train);
    et_loader_close(valid);
    et_qat_free(&q);
    cli_qat_free(&c.qat);
    if (have_kd) et_distill_free(&kd);
    et_model_free(&teacher);
    et_train_llama_free(&tl);
    et_model_free(&m);
    if (ds) et_ds_close(ds);
    free(recipe);
    cli_free(&a);
    return rc ? cli_report(&e) : 0;
}

int cmd_train(int argc, char **argv) { return train_or_distill(argc, argv, 0); }

int cmd_distill(int argc, char **argv) { return train_or_distill(argc, argv, 1); }
