/* distill/distill.c — the KD loss hook of the student's forward (see distill.h). */
#include "distill.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/dataset.h"
#include "../datasets/tokenizer.h"
#include "../train/rng.h"

et_distill_opts et_distill_defaults(void) {
    et_distill_opts o = {.kind = ET_KD_FORWARD, .temperature = 1.0f, .alpha = 0.5f, .hidden_kind = ET_HIDDEN_MSE,
                         .hidden_weight = 1.0f};
    return o;
}

static const char *const AUX[3] = {"ce", "kl", "hidden"};

static void aux_take(void *ctx, double *sums) {
    et_distill *d = ((et_train_llama *)ctx)->loss_ctx;
    sums[0] = d->ce_sum, sums[1] = d->kd_sum, sums[2] = d->hid_sum;
    d->ce_sum = d->kd_sum = d->hid_sum = 0.0;
}

/* The online teacher's final hidden states (and its l_out at the mapped layers, in d->th),
 * layer by layer on its own tape (nothing recorded): et_llama_hidden's loop. */
static et_tensor *teacher_forward(et_distill *d, const int32_t *inputs, int B, int T) {
    et_tape *tt = &d->ttape;
    et_llama *L = &d->TL;
    et_tensor *x = et_embedding(tt, "inp_embd", &L->tok_embd, inputs, B * T);
    for (int l = 0; l < L->n_layer && x; l++) {
        x = et_llama_layer(tt, L, l, x, T, NULL);
        for (int i = 0; x && i < d->n_pairs; i++)
            if (d->pair_t[i] == l) d->th[i] = x->data;
    }
    return et_rmsnorm(tt, "result_norm", x, &L->output_norm, L->rms_eps);
}

/* Window start of position p under `edgetune logits` windows of n_ctx from
 * each document's start (doc_offsets [n_docs+1]). */
static int64_t window_start(const int64_t *off, int64_t n_docs, int n_ctx, int64_t p) {
    int64_t lo = 0, hi = n_docs - 1;
    while (lo < hi) { /* last document whose start <= p */
        int64_t mid = (lo + hi + 1) / 2;
        if (off[mid] <= p) lo = mid;
        else hi = mid - 1;
    }
    return off[lo] + (p - off[lo]) / n_ctx * n_ctx;
}

/* Share of KD positions whose teacher window started where the student's row
 * does: windows of n_ctx from each document's start ("all"), or of n_ctx at
 * stride n_ctx-1 over each split's stream ("stream"). */
static void count_context(et_distill *d) {
    const et_ds *ds = d->ds;
    const int stream = !strcmp(d->meta.scoring, "stream");
    if (!ds || d->meta.n_ctx <= 1 || (strcmp(d->meta.scoring, "all") && !stream)) return;
    int64_t v0, v1;
    et_ds_split_docs(ds, ET_SPLIT_VALID, &v0, &v1);
    const int64_t valid_start = v1 > v0 ? ds->doc_offsets[v0] : ds->n_tokens;
    for (int b = 0; b < d->B; b++) {
        const int64_t p0 = d->row_pos[b];
        if (p0 < 0) continue;
        for (int j = 0; j < d->T; j++) {
            if (!d->kd_mask[(size_t)b * d->T + j]) continue;
            const int64_t p = p0 + j;
            int64_t ws;
            if (stream) {
                const int64_t s0 = p >= valid_start ? valid_start : 0, w = d->meta.n_ctx - 1;
                ws = s0 + (p - s0) / w * w;
            } else {
                ws = window_start(ds->doc_offsets, ds->n_docs, d->meta.n_ctx, p);
            }
            d->n_kd++;
            d->n_ctx_same += ws == p0;
        }
    }
}

/* Teacher rows for the batch: ids/lp/w [B*T, k] and kd_mask [B*T]. */
static int load_rows(et_distill *d, const uint8_t *in_loss, et_err *e) {
    const int B = d->B, T = d->T, k = d->k;
    memset(d->kd_mask, 0, (size_t)B * T);
    for (int b = 0; b < B; b++) {
        const int64_t p0 = d->row_pos[b];
        if (p0 < 0) continue;
        int64_t n = p0 + T <= d->n_rows ? T : d->n_rows - p0;
        if (n <= 0) continue;
        const size_t at = (size_t)b * T;
        int rc = et_teacher_read(d->tf, p0, n, d->ids + at * k, d->lp + at * k, NULL, d->scored + at, e);
        if (!rc && d->sampled) rc = et_teacher_read_weights(d->tf, p0, n, d->w + at * k, e);
        if (rc) return rc;
        for (int64_t j = 0; j < n; j++) d->kd_mask[at + j] = d->scored[at + j] && in_loss[at + j];
    }
    count_context(d);
    return 0;
}

static et_tensor *kd_loss_fn(void *ctx, et_tape *t, et_train_llama *tl, et_tensor *h, int B, int T, double norm) {
    et_distill *d = ctx;
    const size_t N = (size_t)B * T;
    if (B != d->B || T != d->T)
        return et_tape_fail(t, ET_EUSAGE, "distill: batch %dx%d differs from the %dx%d it was set up for", B, T, d->B, d->T);
    uint8_t *in_loss = et_tape_alloc(t, N);
    if (!in_loss) return NULL;
    for (size_t i = 0; i < N; i++) in_loss[i] = tl->targets[i] >= 0;
    if (!t->record) { /* validation: the student's own cross-entropy */
        et_xent_opts xo = {.norm = norm, .chunk_rows = tl->chunk_rows, .row_loss_out = tl->row_loss};
        return et_cross_entropy(t, "loss", h, tl->L.output, tl->targets, &xo);
    }
    et_kd_opts ko = {.kind = d->o.kind, .temperature = d->o.temperature, .alpha = d->o.alpha, .norm = norm,
                     .mask = in_loss, .chunk_rows = tl->chunk_rows, .row_ce_out = d->row_ce, .row_kd_out = d->row_kd,
                     .grad_in_forward = 1};
    if (!d->tf && !d->have_tl) { /* alpha 0: cross-entropy only */
    } else if (d->tf) {
        et_err e = {0};
        if (load_rows(d, in_loss, &e)) return et_tape_fail(t, e.code ? e.code : ET_ERUN, "%s", e.msg);
        ko.kd_mask = d->kd_mask, ko.k = d->k, ko.ids = d->ids, ko.logprobs = d->lp, ko.weights = d->sampled ? d->w : NULL;
    } else {
        et_tape_reset(&d->ttape);
        d->ttape.record = 0;
        d->ttape.gemm_precision = t->gemm_precision;
        et_tensor *th = teacher_forward(d, tl->inputs, B, T);
        et_err e = {0};
        if (!th || et_tape_status(&d->ttape, &e)) return et_tape_fail(t, e.code ? e.code : ET_ERUN, "teacher: %s", e.msg);
        ko.teacher_x = th, ko.teacher_w = d->TL.output;
    }
    et_tensor *loss = et_kd_loss(t, "loss", h, tl->L.output, tl->targets, &ko);
    if (!loss) return NULL;
    for (int i = 0; i < d->n_pairs; i++) { /* hidden states: the student's l_out-s against the teacher's */
        char nm[32];
        snprintf(nm, sizeof nm, "l_out-%d", d->pair_s[i]);
        et_tensor *xs = et_tape_find(t, nm);
        if (!xs) return et_tape_fail(t, ET_ERUN, "distill: the student's %s is not on the tape", nm);
        if (d->proj[i] && !(xs = et_matmul(t, "hidden_proj", xs, d->proj[i], NULL))) return NULL;
        et_tensor *hl = et_hidden_loss(t, "hidden_loss", xs, d->th[i], in_loss, d->o.hidden_kind, norm);
        et_tensor *w = hl ? et_scale(t, "hidden_loss_w", hl, d->o.hidden_weight) : NULL;
        loss = w ? et_add(t, "loss", loss, w) : NULL;
        if (!loss) return NULL;
        int n = 0;
        for (size_t r = 0; r < N; r++) n += in_loss[r];
        d->hid_sum += (double)hl->data[0] * (norm > 0 ? norm : n); /* a sum over rows, unweighted */
    }
    const double a = d->o.alpha, t2 = (double)d->o.temperature * d->o.temperature;
    for (size_t i = 0; i < N; i++) {
        tl->row_loss[i] = (float)(a * t2 * d->row_kd[i] + (1.0 - a) * d->row_ce[i]);
        d->ce_sum += d->row_ce[i];
        d->kd_sum += d->row_kd[i];
    }
    return loss;
}

/* One learned projection W_i [n_embd teacher, n_embd student] per hidden
 * pair (TinyBERT's W_h, arXiv:1909.10351 eq. 8: the student's hidden state
 * times W_h against the teacher's), trained with the student:
 * "distill.hidden_proj.<i>.weight" in the trainer's block and checkpoint,
 * not in the exported model.  Initialised N(0, 1/n_embd_s) from a fixed
 * seed (a resumed run reads the trained values from its checkpoint). */
static int add_projections(et_distill *d, et_train_llama *tl, et_train_model *tm, int n_t, et_err *e) {
    const int n_s = tl->m->hp.n_embd;
    char names[64][40];
    const char *np[64];
    int64_t rows[64], cols[64];
    for (int i = 0; i < d->n_pairs; i++) {
        snprintf(names[i], sizeof names[i], "distill.hidden_proj.%d.weight", i);
        np[i] = names[i], rows[i] = n_t, cols[i] = n_s;
    }
    int rc = et_train_llama_add_params(tl, tm, d->n_pairs, np, rows, cols, e);
    if (rc) return rc;
    et_xoshiro r;
    et_xoshiro_seed(&r, 0x6869646465ull); /* "hidde" */
    const double sd = 1.0 / sqrt((double)n_s);
    for (int i = 0; i < d->n_pairs; i++) {
        et_tensor *w = &tl->extra[i];
        for (size_t j = 0; j < w->n; j++) w->data[j] = (float)(sd * et_xoshiro_normal(&r));
        d->proj[i] = w;
    }
    return 0;
}

static int check_vocab(const char *what, const char *path, const char *sha, int64_t n_vocab, const et_model *s, et_err *e) {
    if (n_vocab != s->hp.n_vocab)
        return et_fail(e, ET_EINPUT, "%s %s has n_vocab %lld, the student %d", what, path, (long long)n_vocab, s->hp.n_vocab);
    if (s->tok && sha && sha[0]) {
        char ssha[65];
        et_tok_sha256(s->tok, ssha);
        if (strcmp(ssha, sha))
            return et_fail(e, ET_EINPUT, "%s %s was made with another tokenizer (sha256 %.12s…, the student's %.12s…)", what,
                           path, sha, ssha);
    }
    return 0;
}

int et_distill_init(et_distill *d, et_train_llama *tl, et_train_model *tm, const et_distill_opts *o, int B, int T,
                    et_err *e) {
    memset(d, 0, sizeof *d);
    d->o = *o;
    d->tl = tl;
    d->B = B, d->T = T;
    const int need_teacher = o->alpha > 0.0f || o->hidden_map; /* alpha 0: CE only, the same student and loop */
    if (o->teacher_logits && o->teacher)
        return et_fail(e, ET_EUSAGE, "distill: give a teacher model or a teacher-logits file, not both");
    if (need_teacher && !o->teacher_logits && !o->teacher)
        return et_fail(e, ET_EUSAGE, "distill: give a teacher model or a teacher-logits file");
    if (!(o->temperature > 0.0f) || !isfinite(o->temperature) || !(o->alpha >= 0.0f && o->alpha <= 1.0f))
        return et_fail(e, ET_EUSAGE, "distill: temperature %g must be > 0 and alpha %g in [0, 1]", o->temperature, o->alpha);
    if (o->kind != ET_KD_FORWARD && o->kind != ET_KD_REVERSE) return et_fail(e, ET_EUSAGE, "distill: unknown KL direction");
    if (o->hidden_map && !o->teacher)
        return et_fail(e, ET_EUSAGE, "--hidden-map needs an online teacher (no --teacher-logits): stored files hold logits only");
    const et_model *s = tl->m;
    int rc = 0;
    const size_t N = (size_t)B * T;
    if (o->teacher_logits) {
        if ((rc = et_teacher_open(&d->tf, o->teacher_logits, &d->meta, e))) return rc;
        d->k = d->meta.k;
        d->sampled = !strcmp(d->meta.mode, "sample");
        rc = check_vocab("teacher file", o->teacher_logits, d->meta.tokenizer_sha256, d->meta.n_vocab, s, e);
        if (!rc && fabs(d->meta.temperature - o->temperature) > 1e-6 * o->temperature)
            rc = et_fail(e, ET_EINPUT, "%s: stored at temperature %g, but --temperature is %g (store it again, or match it)",
                         o->teacher_logits, d->meta.temperature, o->temperature);
        if (!rc && d->sampled && o->kind == ET_KD_REVERSE)
            rc = et_fail(e, ET_EUSAGE, "%s: reverse KL needs top-k or an online teacher, not sampled tokens", o->teacher_logits);
        if (!rc && !(rc = et_ds_open(&d->ds, o->teacher_logits, e))) d->n_rows = d->ds->n_tokens;
        if (!rc && (!(d->ids = malloc(sizeof(int32_t) * N * d->k)) || !(d->lp = malloc(sizeof(float) * N * d->k)) ||
                    (d->sampled && !(d->w = malloc(sizeof(float) * N * d->k))) || !(d->scored = malloc(N)) ||
                    !(d->kd_mask = malloc(N))))
            rc = et_fail(e, ET_ERUN, "distill: out of memory for %zu rows of %d teacher entries", N, d->k);
    } else if (o->teacher) {
        const et_model *tm_ = o->teacher;
        rc = check_vocab("teacher", "model", NULL, tm_->hp.n_vocab, s, e);
        if (!rc && tm_->tok && s->tok) {
            char a[65], b[65];
            et_tok_sha256(tm_->tok, a), et_tok_sha256(s->tok, b);
            if (strcmp(a, b)) rc = et_fail(e, ET_EINPUT, "the teacher and the student use different tokenizers");
        }
        for (const char *p = o->hidden_map; !rc && p && *p;) {
            char *end;
            long a = strtol(p, &end, 10), b;
            if (end == p || *end != ':') {
                rc = et_fail(e, ET_EUSAGE, "--hidden-map '%s': pairs are student:teacher, e.g. 0:0,1:2", o->hidden_map);
                break;
            }
            const char *q = end + 1;
            b = strtol(q, &end, 10);
            if (end == q || (*end && *end != ',')) {
                rc = et_fail(e, ET_EUSAGE, "--hidden-map '%s': pairs are student:teacher, e.g. 0:0,1:2", o->hidden_map);
                break;
            }
            if (a < 0 || a >= s->hp.n_layer || b < 0 || b >= tm_->hp.n_layer)
                rc = et_fail(e, ET_EINPUT, "--hidden-map %ld:%ld: the %s has no layer %ld (layers 0..%d)", a, b,
                             a < 0 || a >= s->hp.n_layer ? "student" : "teacher", a < 0 || a >= s->hp.n_layer ? a : b,
                             (a < 0 || a >= s->hp.n_layer ? s->hp.n_layer : tm_->hp.n_layer) - 1);
            else if (d->n_pairs >= 64)
                rc = et_fail(e, ET_EUSAGE, "--hidden-map: at most 64 pairs");
            else
                d->pair_s[d->n_pairs] = (int)a, d->pair_t[d->n_pairs++] = (int)b;
            p = *end ? end + 1 : end;
        }
        if (!rc && d->n_pairs && tm_->hp.n_embd != s->hp.n_embd) rc = add_projections(d, tl, tm, tm_->hp.n_embd, e);
        if (!rc) rc = et_llama_bind(&d->TL, o->teacher, NULL, e);
        if (!rc) d->have_tl = 1;
        if (!rc) rc = et_tape_init(&d->ttape, 0, e);
    }
    if (!rc && (!(d->row_pos = calloc((size_t)B, sizeof(int64_t))) || !(d->row_ce = malloc(sizeof(float) * N)) ||
                !(d->row_kd = malloc(sizeof(float) * N))))
        rc = et_fail(e, ET_ERUN, "distill: out of memory");
    if (rc) {
        et_distill_free(d);
        return rc;
    }
    tl->loss_fn = kd_loss_fn;
    tl->loss_ctx = d;
    tm->row_pos = d->row_pos;
    tm->n_aux = d->n_pairs ? 3 : 2;
    tm->aux_name[0] = AUX[0], tm->aux_name[1] = AUX[1], tm->aux_name[2] = AUX[2];
    tm->aux_take = aux_take;
    return 0;
}

void et_distill_free(et_distill *d) {
    if (d->tl && d->tl->loss_ctx == d) d->tl->loss_fn = NULL, d->tl->loss_ctx = NULL;
    et_teacher_close(d->tf);
    if (d->ds) et_ds_close(d->ds);
    if (d->have_tl) {
        et_llama_unbind(&d->TL);
        et_tape_free(&d->ttape);
    }
    free(d->ids), free(d->lp), free(d->w), free(d->scored), free(d->kd_mask);
    free(d->row_pos), free(d->row_ce), free(d->row_kd);
    memset(d, 0, sizeof *d);
}

double et_distill_context_share(const et_distill *d, int64_t *n_kd) {
    if (n_kd) *n_kd = d->n_kd;
    return d->tf && d->n_kd ? (double)d->n_ctx_same / (double)d->n_kd : -1.0;
}
