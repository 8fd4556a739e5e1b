/* distill/distill.h — knowledge distillation: a student (train/llama.h,
 * bound for training by train/train_llama.h) trained on the KD loss of
 * train/ops.h et_kd_loss against a teacher that is either
 *   - stored: a teacher-logits file of `edgetune logits` (datasets/teacher.h,
 *     top-k or sampled), which is also the tokens.h5 the student reads, so
 *     row p of /teacher is the teacher's distribution after token p; or
 *   - online: a teacher model run forward (frozen, nothing recorded) on the
 *     same batch at every step, full-vocabulary KL, nothing stored.
 * It plugs into the one llama forward through et_train_llama.loss_fn (the
 * student's final hidden states go to et_kd_loss instead of the
 * cross-entropy) and into the trainer through et_train_model.row_pos (the
 * rows' /tokens positions, to find their teacher rows) and its aux figures
 * ("ce", "kl": means per target token of each step).  Validation (the
 * trainer's forward) reports the student's plain cross-entropy.
 *
 *   et_train_llama tl; et_train_model tm;
 *   et_train_llama_init(&tl, &student, 0, &tm, &e);
 *   et_distill d;
 *   et_distill_opts o = et_distill_defaults(); o.teacher_logits = "teacher.h5";
 *   et_distill_init(&d, &tl, &tm, &o, batch_size, seq_len, &e);
 *   et_train_run(&tm, train_loader_on_teacher_h5, valid, &opts, &res, &e);
 *   et_distill_free(&d);
 *
 * Context: a stored teacher saw each position with its own window's prefix
 * (`edgetune logits --ctx N`, windows of N tokens from each document's
 * start); the student sees its loader row's prefix.  They are the same
 * context when each student row starts where a teacher window starts (rows
 * mode with documents no longer than the window, or N = the student's T + 1
 * on one document); et_distill_stats reports the share of KD positions
 * where they agree. */
#ifndef ET_DISTILL_H
#define ET_DISTILL_H

#include <stdint.h>

#include "../datasets/teacher.h"
#include "../train/train_llama.h"

typedef struct et_distill_opts {
    int kind;                   /* ET_KD_FORWARD (default) or ET_KD_REVERSE */
    float temperature;          /* T (default 1); a stored teacher must have been stored at T */
    float alpha;                /* loss = alpha T^2 KD + (1 - alpha) CE (default 0.5) */
    const char *teacher_logits; /* stored teacher (its /tokens are the training data), or NULL */
    et_model *teacher;          /* online teacher (borrowed, frozen), or NULL; exactly one of the two */
    /* hidden-state loss (online teacher only; TinyBERT, Jiao et al. 2019, arXiv:1909.10351):
     * + hidden_weight * sum over pairs of loss(student l_out-s, teacher l_out-t) */
    const char *hidden_map;     /* "s:t,s:t,..." student:teacher layer pairs, or NULL */
    int hidden_kind;            /* ET_HIDDEN_MSE (default) or ET_HIDDEN_COSINE */
    float hidden_weight;        /* default 1 */
} et_distill_opts;

et_distill_opts et_distill_defaults(void);

typedef struct et_distill {
    et_distill_opts o;
    et_train_llama *tl;          /* the student (borrowed) */
    /* stored */
    et_teacher *tf;
    et_teacher_meta meta;
    int k, sampled;
    int64_t n_rows;              /* /teacher rows (= /tokens length) */
    int32_t *ids;                /* [B*T, k] */
    float *lp, *w;               /* [B*T, k] */
    uint8_t *scored;             /* [B*T] (read) */
    uint8_t *kd_mask;            /* [B*T] */
    struct et_ds *ds;            /* the teacher file as a tokens.h5 (document offsets) */
    /* online */
    et_llama TL;
    et_tape ttape;
    int have_tl;
    int n_pairs;
    int pair_s[64], pair_t[64];  /* hidden-state pairs: student layer, teacher layer */
    const float *th[64];         /* the teacher's l_out of each pair, this step */
    et_tensor *proj[64];         /* learned projection of each pair [n_embd_t, n_embd_s] when the
                                    widths differ (in the trainer's block), else NULL */
    double hid_sum;
    /* per call */
    int64_t *row_pos;            /* [B] filled by the trainer */
    int B, T;
    float *row_ce, *row_kd;      /* [B*T] */
    double ce_sum, kd_sum;       /* this step's sums (aux) */
    int64_t n_kd, n_ctx_same;    /* KD positions seen; of them, with the teacher's context */
} et_distill;

/* Attach distillation to a bound student: tl->loss_fn / loss_ctx, and
 * tm->row_pos, n_aux, aux_name, aux_take ("ce", "kl", and "hidden" with a
 * hidden map).  A hidden map needs an online teacher; when the student's
 * n_embd differs from the teacher's, each pair gets a learned projection
 * (TinyBERT's W_h, et_train_llama_add_params: call this right after
 * et_train_llama_init, before QAT or LoRA hook the student); a pair naming
 * a layer that does not exist is ET_EINPUT.  B, T: the trainer's batch and
 * sequence length.  Checks: a stored teacher's n_vocab, tokenizer (sha256)
 * and temperature against the student and the options; an online teacher's
 * n_vocab and tokenizer.  0, ET_EUSAGE (options), ET_EINPUT (a teacher that
 * does not fit, naming the file and what differs), ET_ERUN. */
int et_distill_init(et_distill *d, et_train_llama *tl, et_train_model *tm, const et_distill_opts *o, int B, int T,
                    et_err *e);
void et_distill_free(et_distill *d);

/* KD positions seen in training so far, and the share (0..1) of them whose
 * stored teacher saw the same context as the student (-1: unknown, e.g. an
 * online teacher, which always sees the student's context). */
double et_distill_context_share(const et_distill *d, int64_t *n_kd);

#endif
