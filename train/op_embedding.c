/* train/op_embedding.c — token embedding lookup (see ops.h). */
#include <omp.h>
#include <string.h>

#include "ops.h"

typedef struct {
    int32_t *ids;   /* [n] copy */
} emb_saved;

/* dw[ids[i], :] += dout[i, :], rows in order (repeated ids add up in that
 * order); the threads split the columns, so no two write the same element
 * and the result does not depend on their number. */
static void embedding_backward(et_tape *t, const et_node *nd) {
    const emb_saved *s = nd->saved;
    et_tensor *w = nd->in[0], *out = nd->out;
    float *dw = et_grad(t, w);
    if (!dw) return;
    const size_t C = et_cols(w), n = et_rows(out);
    const float *dout = out->grad;
    const int32_t *ids = s->ids;
    #pragma omp parallel if (n * C > ET_OMP_MIN_WORK && C >= 32)
    {
        const size_t nt = (size_t)omp_get_num_threads(), id = (size_t)omp_get_thread_num();
        const size_t c0 = C * id / nt, c1 = C * (id + 1) / nt;
        for (size_t i = 0; i < n; i++) {
            float *d = dw + (size_t)ids[i] * C;
            const float *g = dout + i * C;
            for (size_t c = c0; c < c1; c++) d[c] += g[c];
        }
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
    float *od = out->data;
    const float *wd = w->data;
    #pragma omp parallel for schedule(static) if ((size_t)n * (size_t)C > ET_OMP_MIN_WORK)
    for (int i = 0; i < n; i++) memcpy(od + (size_t)i * C, wd + (size_t)ids[i] * C, (size_t)C * sizeof(float));
    if (wants) {
        emb_saved *s = et_tape_alloc(t, sizeof *s);
        if (!s || !(s->ids = et_tape_alloc(t, (size_t)n * sizeof(int32_t)))) return NULL;
        memcpy(s->ids, ids, (size_t)n * sizeof(int32_t));
        if (!et_tape_push(t, "embedding", embedding_backward, out, &w, 1, s)) return NULL;
    }
    return out;
}
