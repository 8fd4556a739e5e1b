/* train/optim_model.c — AdamW segments from a model's tensor table (kept
 * apart from optim.c so the optimizer links without export/model.c). */
#include <stdlib.h>

#include "optim.h"

static int cmp_seg(const void *a, const void *b) {
    const et_adamw_seg *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int et_adamw_mask_model(et_adamw *o, const et_model *m, int policy, et_err *e) {
    if (o->n != m->n_params)
        return et_fail(e, ET_EINPUT, "adamw: optimizer has %zu floats, model %zu", o->n, m->n_params);
    int k = et_model_tensors(m, NULL, 0);
    if (k <= 0) return et_fail(e, ET_EINPUT, "adamw: model has no tensors");
    et_named *t = malloc(sizeof *t * (size_t)k);
    et_adamw_seg *s = malloc(sizeof *s * (size_t)k);
    if (!t || !s) {
        free(t);
        free(s);
        return et_fail(e, ET_ERUN, "adamw: out of memory");
    }
    et_model_tensors(m, t, k);
    for (int i = 0; i < k; i++) {
        s[i].offset = (size_t)(t[i].data - m->params);
        s[i].n = t[i].n;
        s[i].decay = policy == ET_WD_ALL ? 1 : policy == ET_WD_NONE ? 0 : et_wd_default(t[i].name, t[i].n_dims);
    }
    qsort(s, (size_t)k, sizeof *s, cmp_seg);
    int rc = et_adamw_set_segments(o, s, k, e);
    free(t);
    free(s);
    return rc;
}
