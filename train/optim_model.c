/* train/optim_model.c — AdamW segments from a model's tensor table (kept
 * apart from optim.c so the optimizer links without export/model.c). */
#include <stdlib.h>

#include "optim.h"

int et_adamw_mask_model(et_adamw *o, const et_model *m, int policy, et_err *e) {
    if (o->n != m->n_params)
        return et_fail(e, ET_EINPUT, "adamw: optimizer has %zu floats, model %zu", o->n, m->n_params);
    int k = et_model_tensors(m, NULL, 0);
    if (k <= 0) return et_fail(e, ET_EINPUT, "adamw: model has no tensors");
    et_named *t = malloc(sizeof *t * (size_t)k);
    if (!t) return et_fail(e, ET_ERUN, "adamw: out of memory");
    et_model_tensors(m, t, k);
    int rc = et_adamw_mask_tensors(o, m->params, t, k, policy, e);
    free(t);
    return rc;
}
