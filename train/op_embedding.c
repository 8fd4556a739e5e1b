/* train/op_embedding.c — token embedding lookup (see ops.h). */
#include <string.h>

#include "ops.h"

typedef struct {
    int32_t *ids;   /* [n] copy */
} emb_saved;

/* dw[ids[i], :] += dout[i, :].  Serial over rows (repeated ids would race),
 * parallel over the columns of each row is not worth it: n*C adds. */
static void embedding_backward(et_tape *t, const et_node *nd) {
    const emb_saved *s = nd->saved;
    et_tensor *w = nd->in[0], *out = nd->out;
    float *dw = et_grad(t, w);
    if (!dw) return;
    size_t C = et_cols(w), n = et_rows(out);
    for (size_t i = 0; i < n; i++) {
        float *d = dw + (size_t)s->ids[i] * C;
        const float *g = out->grad + i * C;
        for (size_t c = 0; c < C; c++) d[c] += g[c];
    }
}

et_tensor *et_embedding(et_tape *t, const char *name, et_tensor *w, const int32_t *ids, int n) {
    if (t->code) return NULL;
    if (!w || !ids || n < 1) return et_tape_fail(t, ET_EINPUT, "embedding: NULL weight/ids or n = %d", n);
    if (w->ndim != 2) return et_tape_fail(t, ET_EINPUT, "embedding %s: weight must be [V, C]", w->name);
    int64_t V = w->shape[0], C = w->shape[1];
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return et_tape_fail(t, ET_EINPUT, "embedding %s: token id %d at row %d outside [0, %lld)",
                                w->name, ids[i], i, (long long)V);
    int wants = et_tape_wants_grad(t, &w, 1);
    et_tensor *out = et_tensor_2d(t, name, n, C, wants);
    if (!out) return NULL;
    for (int i = 0; i < n; i++)
        memcpy(out->data + (size_t)i * C, w->data + (size_t)ids[i] * C, (size_t)C * sizeof(float));
    if (wants) {
        emb_saved *s = et_tape_alloc(t, sizeof *s);
        if (!s || !(s->ids = et_tape_alloc(t, (size_t)n * sizeof(int32_t)))) return NULL;
        memcpy(s->ids, ids, (size_t)n * sizeof(int32_t));
        if (!et_tape_push(t, "embedding", embedding_backward, out, &w, 1, s)) return NULL;
    }
    return out;
}
