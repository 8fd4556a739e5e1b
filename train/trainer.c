/* train/trainer.c — the training loop. See trainer.h. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "trainer.h"

/* p[0, n) = 0, each thread one contiguous share (the SmolLM2 shape's
 * gradients are 538 MB). */
static void zero_floats(float *p, size_t n) {
    #pragma omp parallel if (n > ((size_t)1 << 20))
    {
        const size_t nt = (size_t)omp_get_num_threads(), id = (size_t)omp_get_thread_num();
        const size_t a = n * id / nt, b = n * (id + 1) / nt;
        memset(p + a, 0, (b - a) * sizeof(float));
    }
}

et_train_opts et_train_defaults(void) {
    et_train_opts o;
    memset(&o, 0, sizeof o);
    o.steps = 100;
    o.batch_size = 4;
    o.seq_len = 256;
    o.grad_accum = 1;
    o.adamw = (et_adamw_hp){0.9f, 0.95f, 1e-8f, 0.1f};
    o.wd_policy = ET_WD_DEFAULT;
    o.sched = (et_lr_sched){ET_LR_COSINE, 3e-4f, 3e-5f, 10, 100};
    o.grad_clip = 1.0f;
    o.seed = 1;
    return o;
}

static int json_num(char *buf, size_t cap, const char *key, double v) {
    if (isfinite(v)) return snprintf(buf, cap, ",\"%s\":%.9g", key, v);
    return snprintf(buf, cap, ",\"%s\":null", key); /* JSON has no NaN */
}

int et_train_event_json(const et_train_event *ev, char *buf, size_t cap) {
    static const char *kinds[] = {"?", "step", "eval", "checkpoint", "skip"};
    const char *kind = ev->kind >= 1 && ev->kind <= 4 ? kinds[ev->kind] : kinds[0];
    size_t n = 0;
    int k = snprintf(buf, cap, "{\"event\":\"%s\",\"step\":%lld,\"steps\":%lld,\"tokens\":%lld", kind,
                     (long long)ev->step, (long long)ev->steps, (long long)ev->tokens);
#define ADD(expr)                                              \
    do {                                                       \
        if (k > 0) n += (size_t)k;                             \
        k = (expr);                                            \
    } while (0)
#define REST (n < cap ? buf + n : NULL), (n < cap ? cap - n : 0)
    if (ev->kind == ET_EV_STEP) {
        ADD(json_num(REST, "loss", ev->loss));
        ADD(json_num(REST, "lr", ev->lr));
        ADD(json_num(REST, "grad_norm", ev->grad_norm));
        ADD(json_num(REST, "tokens_per_s", ev->tokens_per_s));
        ADD(json_num(REST, "eta_s", ev->eta_s));
        for (int i = 0; i < ev->n_aux && i < ET_TRAIN_MAX_AUX; i++) ADD(json_num(REST, ev->aux_name[i], ev->aux[i]));
    } else if (ev->kind == ET_EV_EVAL) {
        ADD(json_num(REST, "val_loss", ev->val_loss));
        ADD(json_num(REST, "val_ppl", ev->val_ppl));
        ADD(snprintf(REST, ",\"val_tokens\":%lld", (long long)ev->val_tokens));
    } else if (ev->kind == ET_EV_CKPT) {
        ADD(snprintf(REST, ",\"path\":\"%s\"", ev->path ? ev->path : ""));
    } else if (ev->kind == ET_EV_SKIP) {
        ADD(snprintf(REST, ",\"skipped\":%lld", (long long)ev->skipped));
    }
    ADD(json_num(REST, "elapsed_s", ev->elapsed_s));
    ADD(snprintf(REST, "}"));
    if (k > 0) n += (size_t)k;
#undef ADD
#undef REST
    return (int)n;
}

/* Targets that count in the loss: mask[b][1..T]. */
static int64_t count_targets(const uint8_t *mask, int B, int T) {
    int64_t n = 0;
    for (int b = 0; b < B; b++)
        for (int j = 1; j <= T; j++) n += mask[(size_t)b * (size_t)(T + 1) + (size_t)j] != 0;
    return n;
}

int et_train_evaluate(const et_train_model *tm, et_loader *valid, int B, int T, int64_t max_batches,
                      double *loss, int64_t *n_tok, et_err *e) {
    et_cursor saved, start;
    et_loader_get_cursor(valid, &saved);
    start = saved;
    start.epoch = 0;
    start.position = 0;
    int rc = et_loader_set_cursor(valid, &start, e);
    if (rc) return rc;
    size_t row = (size_t)T + 1;
    int32_t *tok = malloc(sizeof *tok * (size_t)B * row);
    uint8_t *msk = malloc((size_t)B * row);
    double sum = 0.0;
    int64_t count = 0;
    if (!tok || !msk) rc = et_fail(e, ET_ERUN, "evaluate: out of memory");
    for (int64_t k = 0; !rc && (max_batches <= 0 || k < max_batches); k++) {
        int64_t rows = 0;
        rc = et_loader_next_pos(valid, tok, msk, tm->row_pos, &rows, e);
        if (rc || rows == 0) break;
        double s = 0.0;
        rc = tm->forward(tm->ctx, tok, msk, B, T, &s, e);
        sum += s;
        count += count_targets(msk, B, T);
    }
    free(tok);
    free(msk);
    et_err ignore = {0};
    et_loader_set_cursor(valid, &saved, &ignore);
    if (rc) return rc;
    *n_tok = count;
    *loss = count ? sum / (double)count : NAN;
    return 0;
}

/* Everything one run keeps between steps. */
typedef struct run {
    const et_train_model *tm;
    const et_train_opts *o;
    et_loader *train, *valid;
    et_adamw opt;
    et_xoshiro rng;
    int64_t tokens;
    int64_t last_ckpt;       /* step of the last checkpoint written or loaded, -1 none */
    double t0;
    int stop;                /* on_event asked to stop */
    et_train_result *res;
} run;

static void emit(run *r, et_train_event *ev) {
    ev->steps = r->o->steps;
    ev->tokens = r->tokens;
    ev->elapsed_s = et_now_s() - r->t0;
    if (r->o->on_event && r->o->on_event(r->o->user, ev)) r->stop = 1;
}

static int save(run *r, et_err *e) {
    if (!r->o->ckpt_path) return 0;
    et_cursor c;
    uint8_t cur[ET_CURSOR_BYTES];
    et_loader_get_cursor(r->train, &c);
    et_cursor_pack(&c, cur);
    et_ckpt st = {.step = r->opt.step, .tokens = r->tokens, .cursor = cur, .cursor_len = sizeof cur,
                  .config = (char *)(r->o->config ? r->o->config : "")};
    memcpy(st.rng, r->rng.s, sizeof st.rng);
    if (r->res->first_val_step >= 0)   /* the run's "before" figure survives a resume */
        st.has_val_start = 1, st.val_start = r->res->first_val_loss, st.val_start_step = r->res->first_val_step;
    et_param_block b = {r->tm->params, r->tm->n, r->tm->t, r->tm->n_t};
    int rc = et_ckpt_save(r->o->ckpt_path, &b, &r->opt, &st, e);
    if (rc) return rc;
    r->last_ckpt = r->opt.step;
    et_train_event ev = {.kind = ET_EV_CKPT, .step = r->opt.step, .path = r->o->ckpt_path};
    emit(r, &ev);
    return 0;
}

static int resume(run *r, et_err *e) {
    et_param_block b = {r->tm->params, r->tm->n, r->tm->t, r->tm->n_t};
    et_ckpt st;
    int rc = et_ckpt_load(r->o->ckpt_path, &b, &r->opt, &st, e);
    if (rc) return rc;
    et_cursor c;
    et_err why = {0};
    rc = et_cursor_unpack(&c, st.cursor, st.cursor_len, &why);
    if (!rc) rc = et_loader_set_cursor(r->train, &c, &why);
    if (rc) {
        et_ckpt_free(&st);
        return et_fail(e, ET_EINPUT, "%s: the saved data position does not fit: %s", r->o->ckpt_path, why.msg);
    }
    memcpy(r->rng.s, st.rng, sizeof st.rng);
    if (st.has_val_start) r->res->first_val_loss = st.val_start, r->res->first_val_step = st.val_start_step;
    r->tokens = st.tokens;
    r->last_ckpt = st.step;
    if (st.step > r->o->steps) rc = et_fail(e, ET_EUSAGE, "%s: checkpoint is at step %lld, beyond --steps %lld",
                                            r->o->ckpt_path, (long long)st.step, (long long)r->o->steps);
    et_ckpt_free(&st);
    return rc;
}

static int evaluate(run *r, et_err *e) {
    if (!r->valid) return 0;
    double loss;
    int64_t n;
    int rc = et_train_evaluate(r->tm, r->valid, r->o->batch_size, r->o->seq_len, r->o->eval_batches, &loss, &n, e);
    if (rc) return rc;
    et_train_event ev = {.kind = ET_EV_EVAL, .step = r->opt.step, .val_loss = loss, .val_ppl = exp(loss),
                         .val_tokens = n};
    r->res->val_loss = loss;
    if (r->res->first_val_step < 0) r->res->first_val_loss = loss, r->res->first_val_step = r->opt.step;
    emit(r, &ev);
    return 0;
}

static const char *nonfinite_name(double x) { return isnan(x) ? "NaN" : "infinite"; }

static int stop_message(run *r, et_err *e, int64_t step, const char *what, double v) {
    char kept[1200];
    if (r->o->ckpt_path && r->last_ckpt >= 0)
        snprintf(kept, sizeof kept, "the last good checkpoint %s (step %lld) is kept", r->o->ckpt_path,
                 (long long)r->last_ckpt);
    else
        snprintf(kept, sizeof kept, "no checkpoint had been written");
    return et_fail(e, ET_ERUN, "step %lld: %s is %s; training stopped, %s", (long long)step, what,
                   nonfinite_name(v), kept);
}

static int check_opts(const et_train_model *tm, const et_train_opts *o, et_loader *train, et_err *e) {
    if (!tm || !tm->params || !tm->grads || !tm->n || !tm->fwd_bwd || !tm->forward || !tm->t || tm->n_t <= 0)
        return et_fail(e, ET_EUSAGE, "train: incomplete model binding");
    if (tm->n_aux < 0 || tm->n_aux > ET_TRAIN_MAX_AUX)
        return et_fail(e, ET_EUSAGE, "train: %d extra figures (at most %d)", tm->n_aux, ET_TRAIN_MAX_AUX);
    if (!train) return et_fail(e, ET_EUSAGE, "train: no training data");
    if (o->steps < 0 || o->batch_size < 1 || o->seq_len < 1 || o->grad_accum < 1)
        return et_fail(e, ET_EUSAGE, "train: steps %lld, batch %d, seq %d, accum %d must be positive",
                       (long long)o->steps, o->batch_size, o->seq_len, o->grad_accum);
    if ((size_t)o->batch_size * ((size_t)o->seq_len + 1) > ((size_t)1 << 31) / (size_t)o->grad_accum)
        return et_fail(e, ET_EUSAGE, "train: batch too large");
    if (o->eval_every < 0 || o->ckpt_every < 0 || o->eval_batches < 0 || !(o->grad_clip >= 0.0f) ||
        !(o->sched.lr >= 0.0f) || !(o->sched.min_lr >= 0.0f) || o->sched.warmup < 0)
        return et_fail(e, ET_EUSAGE, "train: negative eval_every, ckpt_every, eval_batches, grad_clip, lr or warmup");
    if (o->resume && !o->ckpt_path) return et_fail(e, ET_EUSAGE, "train: resume needs a checkpoint path");
    return 0;
}

int et_train_run(const et_train_model *tm, et_loader *train, et_loader *valid, const et_train_opts *opts,
                 et_train_result *res, et_err *e) {
    et_train_result dummy;
    if (!res) res = &dummy;
    *res = (et_train_result){0, NAN, NAN, 0, 0, NAN, -1};
    int rc = check_opts(tm, opts, train, e);
    if (rc) return rc;
    run r = {.tm = tm, .o = opts, .train = train, .valid = valid, .last_ckpt = -1, .t0 = et_now_s(), .res = res};
    et_lr_sched sched = opts->sched;
    sched.total = opts->steps;
    const int B = opts->batch_size, T = opts->seq_len, A = opts->grad_accum;
    const size_t row = (size_t)T + 1, per = (size_t)B * row;
    int32_t *tok = NULL;
    uint8_t *msk = NULL;
    int64_t *pos = NULL;
    rc = et_adamw_init_state(&r.opt, tm->n, &opts->adamw, opts->optim_state, e);
    if (!rc) rc = et_adamw_mask_tensors(&r.opt, tm->params, tm->t, tm->n_t, opts->wd_policy, e);
    if (rc) goto done;
    et_xoshiro_seed(&r.rng, opts->seed);
    tok = malloc(sizeof *tok * per * (size_t)A);
    msk = malloc(per * (size_t)A);
    pos = malloc(sizeof *pos * (size_t)B * (size_t)A);
    if (!tok || !msk || !pos) {
        rc = et_fail(e, ET_ERUN, "train: out of memory for %d micro-batches", A);
        goto done;
    }
    if (opts->resume) {
        rc = resume(&r, e);
        if (rc) goto done;
    } else {
        rc = evaluate(&r, e); /* the curve starts at step 0 */
        if (rc) goto done;
    }
    res->step = r.opt.step;
    int done_eval = 0, done_ckpt = 0;
    double t_steps = 0.0;
    int64_t n_timed = 0, skip_run = 0;
    /* micro-batch groups in one pass over the training rows: that many without a target = no target at all */
    const int64_t pass = et_loader_n_samples(train) / ((int64_t)B * A) + 2;
    while (r.opt.step < opts->steps && !r.stop) {
        const int64_t s = r.opt.step + 1;
        double t_start = et_now_s();
        /* 1. the step's micro-batches and their target count */
        int64_t n_tok = 0;
        for (int a = 0; a < A && !rc; a++) {
            int64_t rows = 0;
            rc = et_loader_next_pos(train, tok + (size_t)a * per, msk + (size_t)a * per, pos + (size_t)a * B, &rows, e);
            if (!rc && rows == 0) rc = et_fail(e, ET_ERUN, "step %lld: the training data ran out", (long long)s);
            if (!rc) n_tok += count_targets(msk + (size_t)a * per, B, T);
        }
        if (rc) break;
        if (n_tok == 0) {
            /* no target in any micro-batch: no update (AdamW on zero gradients would still decay
               the weights and move them by momentum); the step is drawn again */
            res->skipped++;
            et_train_event ev = {.kind = ET_EV_SKIP, .step = s, .skipped = res->skipped};
            emit(&r, &ev);
            if (++skip_run > pass) {
                rc = et_fail(e, ET_EINPUT, "step %lld: no micro-batch of a whole pass over the training data has a "
                             "target token (every target is masked)", (long long)s);
                break;
            }
            continue;
        }
        skip_run = 0;
        /* 2. gradients of the mean token loss over the whole step */
        zero_floats(tm->grads, tm->n);
        double loss_sum = 0.0;
        for (int a = 0; a < A && !rc; a++) {
            double ls = 0.0;
            if (tm->row_pos) memcpy(tm->row_pos, pos + (size_t)a * B, sizeof *pos * (size_t)B);
            rc = tm->fwd_bwd(tm->ctx, tok + (size_t)a * per, msk + (size_t)a * per, B, T, (double)n_tok, &ls, e);
            loss_sum += ls;
        }
        double aux[ET_TRAIN_MAX_AUX] = {0};
        if (tm->aux_take) tm->aux_take(tm->ctx, aux); /* taken (and reset) even when the step failed */
        if (rc) break;
        double loss = n_tok ? loss_sum / (double)n_tok : 0.0;
        /* 3. NaN / Inf: stop before touching the parameters */
        if (!isfinite(loss)) {
            rc = stop_message(&r, e, s, "the training loss", loss);
            break;
        }
        double norm = 0.0;
        float gscale = et_grad_scale_clip(tm->grads, tm->n, 1.0f, opts->grad_clip, &norm);
        if (!isfinite(norm)) {
            rc = stop_message(&r, e, s, "the gradient norm", norm);
            break;
        }
        /* 4. update */
        float lr = et_lr_at(&sched, s - 1);
        et_adamw_step(&r.opt, tm->params, tm->grads, lr, gscale);
        r.tokens += n_tok;
        res->step = s;
        res->last_loss = loss;
        res->tokens = r.tokens;
        double dt = et_now_s() - t_start;
        t_steps += dt;
        n_timed++;
        et_train_event ev = {.kind = ET_EV_STEP, .step = s, .loss = loss, .grad_norm = norm, .lr = lr,
                             .tokens_per_s = dt > 0 ? (double)B * T * A / dt : 0.0,
                             .eta_s = t_steps / (double)n_timed * (double)(opts->steps - s),
                             .n_aux = tm->aux_take ? tm->n_aux : 0, .aux_name = tm->aux_name};
        for (int i = 0; i < ev.n_aux && i < ET_TRAIN_MAX_AUX; i++) ev.aux[i] = n_tok ? aux[i] / (double)n_tok : 0.0;
        emit(&r, &ev);
        /* 5, 6: evaluation, checkpoint */
        done_eval = done_ckpt = 0;
        if (opts->eval_every > 0 && s % opts->eval_every == 0) {
            rc = evaluate(&r, e);
            if (rc) break;
            done_eval = 1;
        }
        if (opts->ckpt_every > 0 && s % opts->ckpt_every == 0) {
            rc = save(&r, e);
            if (rc) break;
            done_ckpt = 1;
        }
    }
    if (!rc && n_timed > 0 && !done_eval) rc = evaluate(&r, e);
    if (!rc && !done_ckpt && opts->ckpt_path && r.last_ckpt != r.opt.step) rc = save(&r, e);
done:
    free(tok);
    free(msk);
    free(pos);
    et_adamw_free(&r.opt);
    return rc;
}
