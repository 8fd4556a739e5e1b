/* cli/train_ui.c — progress, metrics, recipe and resume for training commands (see train_ui.h). */
#include "train_ui.h"

#include "../train/gemm_auto.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <omp.h>
#include <string.h>
#include <unistd.h>

#include "../train/gemm.h"
#include "../train/gemm_auto.h"

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}
void cli_progress_catch_sigint(int on) { signal(SIGINT, on ? on_sigint : SIG_DFL); }
int cli_interrupted(void) { return g_interrupted != 0; }

void cli_progress_init(cli_progress *p, const char *what, int log_every, FILE *metrics) {
    memset(p, 0, sizeof *p);
    p->tty = isatty(2);
    p->log_every = log_every > 0 ? log_every : 1;
    p->metrics = metrics;
    p->what = what;
    p->first_val_loss = p->last_val_loss = NAN;
    p->first_val_step = -1;
}

static void fmt_eta(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e8) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(fmod(s, 3600) / 60));
    else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%.0fs", s);
}

void cli_progress_end(cli_progress *p) {
    if (p->line_open) fputc('\n', stderr);
    p->line_open = 0;
}

int cli_progress_event(void *user, const et_train_event *ev) {
    cli_progress *p = user;
    if (p->metrics) {
        char buf[1024];
        et_train_event_json(ev, buf, sizeof buf);
        fprintf(p->metrics, "%s\n", buf);
        fflush(p->metrics);
    }
    char eta[32];
    const char *what = p->what ? p->what : "", *sp = p->what ? " " : "";
    if (ev->kind == ET_EV_STEP) {
        double rate = ev->tokens_per_s;
        if (p->tokens_per_step > 0) {
            if (ev->tokens_per_s > 0) p->step_time += p->tokens_per_step / ev->tokens_per_s, p->n_steps++;
            rate = p->step_time > 0 ? p->tokens_per_step * (double)p->n_steps / p->step_time : 0.0;
        }
        fmt_eta(ev->eta_s, eta, sizeof eta);
        if (p->tty) {
            char aux[128] = "";
            for (int i = 0, n = 0; i < ev->n_aux && n < (int)sizeof aux; i++)
                n += snprintf(aux + n, sizeof aux - (size_t)n, "  %s %.4f", ev->aux_name[i], ev->aux[i]);
            fprintf(stderr, "\r\033[K%s%sstep %lld/%lld  loss %.4f%s  lr %.2e  %.0f tok/s  ETA %s", what, sp,
                    (long long)ev->step, (long long)ev->steps, ev->loss, aux, (double)ev->lr, rate, eta);
            p->line_open = 1;
        } else if (ev->step % p->log_every == 0 || ev->step == ev->steps) {
            char aux[128] = "";
            for (int i = 0, n = 0; i < ev->n_aux && n < (int)sizeof aux; i++)
                n += snprintf(aux + n, sizeof aux - (size_t)n, " %s %.4f", ev->aux_name[i], ev->aux[i]);
            fprintf(stderr, "%s%sstep %lld/%lld loss %.4f%s lr %.3e grad_norm %.3f tok/s %.0f eta %s\n", what, sp,
                    (long long)ev->step, (long long)ev->steps, ev->loss, aux, (double)ev->lr, ev->grad_norm, rate, eta);
        }
    } else if (ev->kind == ET_EV_EVAL) {
        cli_progress_end(p);
        fprintf(stderr, "%s%sstep %lld/%lld val_loss %.4f val_ppl %.3f (%lld tokens)\n", what, sp, (long long)ev->step,
                (long long)ev->steps, ev->val_loss, ev->val_ppl, (long long)ev->val_tokens);
        if (p->first_val_step < 0) p->first_val_loss = ev->val_loss, p->first_val_step = ev->step;
        p->last_val_loss = ev->val_loss;
    } else if (ev->kind == ET_EV_SKIP) {
        if (!p->skipped) {   /* warned once; the count is in the summary (and the metrics) */
            cli_progress_end(p);
            fprintf(stderr, "edgetune: warning: step %lld: no micro-batch has a target token (all masked): no update, "
                    "the step is drawn again from the next batches (counted as skipped; docs/training.md)\n",
                    (long long)ev->step);
        }
        p->skipped = ev->skipped;
    } else if (ev->kind == ET_EV_CKPT && !p->tty) {
        fprintf(stderr, "%s%sstep %lld/%lld checkpoint %s\n", what, sp, (long long)ev->step, (long long)ev->steps,
                ev->path);
    }
    fflush(stderr);
    return g_interrupted != 0;
}

void cli_recipe_add(cli_recipe *r, const char *k, const char *fmt, ...) {
    if (r->n >= (int)(sizeof r->names / sizeof r->names[0])) return;
    char buf[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    r->names[r->n] = strdup(k);
    r->values[r->n] = strdup(buf);
    if (r->names[r->n] && r->values[r->n]) r->n++;
}

void cli_recipe_float(cli_recipe *r, const char *k, float v) {
    char buf[32];
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    cli_recipe_add(r, k, "%s", buf);
}

void cli_recipe_derived(cli_recipe *r, const cli_args *a, const char *const *keys) {
    char list[512] = "";
    size_t n = 0;
    for (int i = 0; keys[i]; i++)
        if (!cli_given(a, keys[i]) && n + strlen(keys[i]) + 2 < sizeof list)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? "," : "", keys[i]);
    if (n) cli_recipe_add(r, "derived", "%s", list);
}

int cli_recipe_save(cli_recipe *r, const char *path, char **json, et_err *e) {
    cli_args args = {.n = r->n, .names = r->names, .values = r->values};
    int rc = cli_save_recipe(&args, path, e);
    for (int i = 0; i < r->n; i++) free(r->names[i]), free(r->values[i]);
    r->n = 0;
    et_map mp;
    if (!rc && json && !(rc = et_map_open(&mp, path, e))) {
        *json = strndup((const char *)mp.data, mp.size);
        et_map_close(&mp);
        if (!*json) rc = et_fail(e, ET_ERUN, "out of memory");
    }
    return rc;
}

int cli_parse_with_resume(cli_args *a, int argc, char **argv, const char *const *bools, et_err *e) {
    int rc = cli_parse(a, argc, argv, bools, e);
    if (rc || strcmp(cli_str(a, "resume", "0"), "1")) return rc;
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--config", 8)) return 0;
    const char *out = cli_str(a, "out", cli_str(a, "output", NULL));
    if (!out) return et_fail(e, ET_EUSAGE, "--resume needs --out DIR (the directory of the run)");
    char path[4096], dir[4096];
    snprintf(path, sizeof path, "%s/recipe.json", out);
    snprintf(dir, sizeof dir, "%s", out);   /* `out` points into a, freed below */
    if (access(path, R_OK)) return et_fail(e, ET_EUSAGE, "%s: no run to resume (no recipe.json)", out);
    char **v = malloc(sizeof(char *) * (size_t)(argc + 3));
    if (!v) return et_fail(e, ET_ERUN, "out of memory");
    for (int i = 0; i < argc; i++) v[i] = argv[i];
    v[argc] = "--resume-config", v[argc + 1] = path, v[argc + 2] = NULL;   /* derived values kept: the same run */
    cli_free(a);
    rc = cli_parse(a, argc + 2, v, bools, e);
    free(v);
    /* the run's kind, before an "unknown flag --targets" (issue 11) */
    const char *cmd = argc > 0 && argv[0] ? argv[0] : "";
    int lora_run = cli_str(a, "targets", NULL) != NULL || cli_str(a, "rank", NULL) != NULL;
    if (!rc && !strcmp(cmd, "train") && lora_run)
        rc = et_fail(e, ET_EUSAGE, "%s is a LoRA run (its recipe has targets/rank): continue it with "
                     "`edgetune lora --resume --out %s`", dir, dir);
    else if (!rc && !strcmp(cmd, "lora") && !lora_run)
        rc = et_fail(e, ET_EUSAGE, "%s is not a LoRA run (its recipe has no targets/rank): continue it with the "
                     "command that made it (e.g. `edgetune train --resume --out %s`)", dir, dir);
    return rc;
}

int cli_check_data(const char *data_path, const char *what, int seq_len, const et_model *m, const et_ds *ds,
                   et_err *e) {
    /* the one compatibility check (datasets/dataset.h) */
    int rc = et_ds_check_tokenizer(data_path, ds->tokenizer_sha256, ds->n_vocab, ds->bos_id, ds->eos_id, m->tok,
                                   m->hp.n_vocab, what, e);
    if (rc) return rc;
    if (seq_len > m->hp.n_ctx && m->hp.n_ctx > 0)
        return et_fail(e, ET_EUSAGE, "--seq-len %d exceeds the %s's context length %d", seq_len, what, m->hp.n_ctx);
    return 0;
}

int cli_train_precision(const cli_args *a, int *precision, et_err *e) {
    const char *s = cli_str(a, "precision", "f32");
    *precision = !strcmp(s, "auto") ? CLI_PRECISION_AUTO : et_gemm_precision_parse(s);
    if (*precision == -1)
        return et_fail(e, ET_EUSAGE, "--precision: '%s' is not f32, bf16 (bf16 operands in the matmuls, "
                                     "f32 accumulation and weights) or auto (the faster on this CPU, measured)", s);
    return 0;
}

int cli_resolve_precision(int *precision, const et_hparams *hp, int rows, char *why, size_t cap, et_err *e) {
    if (cap) why[0] = 0;
    if (*precision != CLI_PRECISION_AUTO) return 0;
    int n_ff = hp->n_ff;
    for (int l = 0; hp->layer_n_ff && l < hp->n_layer; l++) n_ff = hp->layer_n_ff[l] > n_ff ? hp->layer_n_ff[l] : n_ff;
    et_gemm_auto ga;
    int rc = et_gemm_auto_choose(hp->n_embd, n_ff > 0 ? n_ff : hp->n_embd, rows, omp_get_max_threads(),
                                 et_gemm_auto_cache_dir(), &ga, e);
    if (rc) return rc;
    *precision = ga.precision;
    snprintf(why, cap, " (%s)", ga.why);
    return 0;
}

int cli_train_opts(const cli_args *a, const cli_train_defaults *d, et_train_opts *o, int *threads, int *log_every,
                   et_err *e) {
    long steps, B, T, A, warmup, eval_every, eval_batches, ckpt_every, seed, th, le;
    double lr, min_lr, wd, b1, b2, eps, clip;
    int rc;
    if ((rc = cli_int_range(a, "steps", d->steps, 0, 1L << 40, &steps, e)) ||
        (rc = cli_int_range(a, "batch_size", 8, 1, 1 << 16, &B, e)) ||
        (rc = cli_int_range(a, "seq_len", 0, 0, 1 << 20, &T, e)) ||
        (rc = cli_int_range(a, "grad_accum", 1, 1, 1 << 16, &A, e)) ||
        (rc = cli_float_range(a, "lr", d->lr, 0.0, 10.0, &lr, e)) ||
        (rc = cli_float_range(a, "min_lr", lr / 10, 0.0, 10.0, &min_lr, e)) ||
        (rc = cli_int_range(a, "warmup", steps < 1000 ? steps / 10 : 100, 0, 1L << 40, &warmup, e)) ||
        (rc = cli_float_range(a, "weight_decay", d->weight_decay, 0.0, 10.0, &wd, e)) ||
        (rc = cli_float_range(a, "beta1", 0.9, 0.0, 0.999999, &b1, e)) ||
        (rc = cli_float_range(a, "beta2", d->beta2, 0.0, 0.999999, &b2, e)) ||
        (rc = cli_float_range(a, "eps", 1e-8, 1e-30, 1.0, &eps, e)) ||
        (rc = cli_float_range(a, "grad_clip", 1.0, 0.0, 1e9, &clip, e)) ||
        (rc = cli_int_range(a, "eval_every", d->eval_every, 0, 1L << 40, &eval_every, e)) ||
        (rc = cli_int_range(a, "eval_batches", 0, 0, 1L << 40, &eval_batches, e)) ||
        (rc = cli_int_range(a, "ckpt_every", 100, 0, 1L << 40, &ckpt_every, e)) ||
        (rc = cli_int_range(a, "seed", 1, 0, 0x7fffffffffffffffL, &seed, e)) ||
        (rc = cli_int_range(a, "threads", 0, 0, 1024, &th, e)) ||
        (rc = cli_int_range(a, "log_every", 1, 1, 1L << 40, &le, e)))
        return rc;
    const int optim = et_adamw_state_parse(cli_str(a, "optim", "adamw"));
    if (optim < 0)
        return et_fail(e, ET_EUSAGE, "--optim: '%s' is not adamw (float32 moments) or adamw8bit (block-wise 8-bit "
                       "moments, a quarter of the memory)", cli_str(a, "optim", ""));
    int kind = et_lr_kind_parse(cli_str(a, "schedule", "cosine"));
    if (kind < 0)
        return et_fail(e, ET_EUSAGE, "--schedule: '%s' is not constant, cosine or linear", cli_str(a, "schedule", ""));
    *o = et_train_defaults();
    o->steps = steps, o->batch_size = (int)B, o->seq_len = (int)T, o->grad_accum = (int)A;
    o->sched = (et_lr_sched){kind, (float)lr, (float)min_lr, warmup, steps};
    o->adamw = (et_adamw_hp){(float)b1, (float)b2, (float)eps, (float)wd};
    o->optim_state = optim;
    o->grad_clip = (float)clip, o->eval_every = eval_every, o->eval_batches = eval_batches;
    o->ckpt_every = ckpt_every, o->seed = (uint64_t)seed, o->resume = cli_on(a, "resume");
    *threads = (int)th, *log_every = (int)le;
    if (steps > 0 && warmup >= steps)   /* issue 11: accepted silently before */
        fprintf(stderr, "edgetune: warning: --warmup %ld is not below --steps %ld: the peak learning rate %g is never "
                "reached\n", warmup, steps, lr);
    return 0;
}
