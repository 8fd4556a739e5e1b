/* train/op_lmhead.c — frozen LM head + cross-entropy with the gradient
 * computed in the forward pass (see op_lmhead.h): et_cross_entropy
 * (train/op_xent.c) with grad_in_forward, on a header of w that takes no
 * gradient, so the one chunked implementation serves training and LoRA. */
#include "op_lmhead.h"

et_tensor *et_lm_head_xent(et_tape *t, const char *name, et_tensor *x, const et_tensor *w, const int32_t *targets,
                           const et_xent_opts *opts) {
    if (t->code) return NULL;
    if (!w) return et_tape_fail(t, ET_EINPUT, "lm_head_xent %s: NULL weight", name ? name : "");
    /* the same data, never trained whatever w->requires_grad says */
    et_tensor *frozen = et_tape_alloc(t, sizeof *frozen);
    if (!frozen) return NULL;
    *frozen = *w;
    frozen->requires_grad = 0;
    frozen->grad = NULL;
    et_xent_opts o = opts ? *opts : (et_xent_opts){0};
    o.grad_in_forward = 1;
    return et_cross_entropy(t, name, x, frozen, targets, &o);
}
