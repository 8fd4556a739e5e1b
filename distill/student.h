/* distill/student.h — students made from a teacher (the distillation issue's
 * "the teacher itself made smaller"). */
#ifndef ET_STUDENT_H
#define ET_STUDENT_H

#include "../export/model.h"

/* out = src with only the layers keep[0..n_keep-1] (strictly increasing
 * indices into src's layers; layer i of out is src's keep[i], with its
 * per-layer widths), the embeddings, output norm and output copied, and
 * src's tokenizer reloaded from tokenizer_path (the teacher's file; NULL:
 * none).  Layer dropping as in DistilBERT (Sanh et al. 2019,
 * arXiv:1910.01108: every other layer of the teacher) and Minitron's depth
 * pruning.  0, ET_EUSAGE (a list that is empty, out of range or not
 * increasing, naming the entry), ET_EINPUT/ET_ERUN from the allocation. */
int et_student_keep_layers(et_model *out, const et_model *src, const int *keep, int n_keep,
                           const char *tokenizer_path, et_err *e);

/* Parse "0,2,4" (or "0-3,7") into keep[cap]; *n set.  0 or ET_EUSAGE. */
int et_parse_layer_list(const char *s, int n_layer, int *keep, int cap, int *n, et_err *e);

#endif
