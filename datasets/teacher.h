/* datasets/teacher.h — a model's stored next-token log-probabilities over a
 * tokens.h5 (DESIGN §3 "Teacher logits"): the KL reference of `edgetune eval
 * --task kl` and the targets of distillation.  Written once by `edgetune
 * logits`; the file is itself a valid tokens.h5 (its /tokens, /doc_offsets
 * and attributes are the data's), plus:
 *
 *   /teacher/topk_ids        int32   [N, k]  the k most likely next tokens at each position, best first
 *   /teacher/topk_logprobs   float16 [N, k]  their log-softmax(logits / temperature) over the FULL
 *                                            vocabulary (IEEE half, as h5py's float16)
 *   /teacher/target_logprob  float32 [N]     ln p(tokens[p+1]) at that temperature (exact, whatever k)
 *   /teacher/scored          uint8   [N]     1 where the windowing scores position p (its target
 *                                            exists and is predicted), 0 elsewhere
 *   /teacher/sample_counts   uint16  [N, k]  mode "sample" only: topk_ids are the distinct tokens of K = k
 *                                            draws from the teacher at temperature T (most drawn first),
 *                                            with their counts (0 = unused slot, id 0); topk_logprobs
 *                                            their log-probabilities ("Random Sampling KD", Anshumann
 *                                            et al. 2025, arXiv:2503.16870: weights count / K)
 *   /teacher attributes: teacher (file name), teacher_sha256, temperature (f64), k, mode ("topk" or
 *            "sample"), seed (sample mode),
 *            tokenizer_sha256, data_sha256 (the input file), n_vocab, n_ctx (window), scoring
 *            ("all" | "llama", eval/internal.h), source.
 *
 * Row p belongs to token position p of the concatenated /tokens: the
 * distribution of the token after p, given its window's prefix.
 */
#ifndef ET_TEACHER_H
#define ET_TEACHER_H

#include <stdint.h>

#include "../common/et.h"

#define ET_TEACHER_MAX_K 262144

typedef struct et_teacher_meta {
    char teacher[256];
    char teacher_sha256[65];
    double temperature;
    int k;
    char mode[16];              /* "topk" or "sample" (k = draws per position) */
    uint64_t seed;              /* sample mode: the draws' seed */
    char tokenizer_sha256[65];
    char data_sha256[65];
    int64_t n_vocab;
    int n_ctx;
    char scoring[16];           /* "all" or "llama" */
} et_teacher_meta;

typedef struct et_teacher_writer et_teacher_writer;

/* Add the /teacher group to an existing tokens.h5 at `path` (a temporary file
 * the caller renames into place) with N rows of k.  0, ET_EUSAGE, ET_ERUN. */
int et_teacher_writer_open(et_teacher_writer **w, const char *path, int64_t n_rows, const et_teacher_meta *m,
                           et_err *e);
/* Write rows [start, start+count): ids [count][k], logprobs [count][k] as
 * IEEE half bits, target [count], scored [count].  0 or ET_ERUN. */
int et_teacher_writer_rows(et_teacher_writer *w, int64_t start, int64_t count, const int32_t *ids,
                           const uint16_t *logprobs, const float *target, const uint8_t *scored, et_err *e);
/* Sample mode: counts [count][k] of rows [start, start+count).  0 or ET_ERUN. */
int et_teacher_writer_counts(et_teacher_writer *w, int64_t start, int64_t count, const uint16_t *counts, et_err *e);
/* Write the attributes and close.  0 or ET_ERUN; w is freed either way. */
int et_teacher_writer_close(et_teacher_writer *w, et_err *e);

typedef struct et_teacher et_teacher;

/* Open a teacher file (mode "topk" or "sample"): shapes ([N, k] with N = the /tokens length, 1 <= k <=
 * min(n_vocab, ET_TEACHER_MAX_K)), a float16 or float32 logprobs type,
 * attributes.  0 or ET_EINPUT naming the file and the dataset/attribute;
 * *out NULL on error.  meta (may be NULL) receives the attributes. */
int et_teacher_open(et_teacher **out, const char *path, et_teacher_meta *meta, et_err *e);
void et_teacher_close(et_teacher *t);
/* Read rows [start, start+count): ids [count][k] (each checked to lie in
 * [0, n_vocab)), logprobs [count][k] as float (checked <= 1e-3 and not NaN),
 * target [count], scored [count].  Any output may be NULL.  0, ET_EUSAGE
 * (range), ET_EINPUT (a bad value, named with its row), ET_ERUN (I/O). */
int et_teacher_read(const et_teacher *t, int64_t start, int64_t count, int32_t *ids, float *logprobs, float *target,
                    uint8_t *scored, et_err *e);
/* Sample mode: the weights count / K of rows [start, start+count) into
 * weights [count][k] (each row's counts must sum to K, or be all 0 for an
 * unscored row).  ET_EUSAGE for a top-k file or a bad range, ET_EINPUT (a
 * row whose counts do not add up, named), ET_ERUN. */
int et_teacher_read_weights(const et_teacher *t, int64_t start, int64_t count, float *weights, et_err *e);

#endif
