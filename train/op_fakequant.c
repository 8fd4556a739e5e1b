/* train/op_fakequant.c — fake quantization on the GGUF grids (see qat.h).
 *
 * Forward:  w_q[rows, cols] = dequantize(quantize(w)) row by row, with
 *           quant/quant.h's quantizers (bit-exact with ggml's
 *           quantize_row_*_ref and dequantize_row_*), so w_q holds exactly
 *           the values a GGUF of that type stores.
 * Backward: straight-through estimator (Bengio, Leonard & Courville 2013,
 *           arXiv:1308.3432; as in Jacob et al. 2018 and torchao's
 *           FakeQuantize): dL/dw = dL/dw_q.  The derivative of the rounding
 *           is zero almost everywhere, so the STE replaces it by the
 *           identity; here that is realized by giving the w_q tensor w's
 *           gradient buffer, so every op that reads w_q (the matmul, the
 *           LM head, the embedding) adds its gradient straight into w's.
 * Shapes: w, w_q [rows, cols] in GGUF's [out, in] layout (cols = ne[0],
 *         the row length the block size must divide).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/kernels.h"

#include "../quant/quant.h"
#include "qat.h"

int et_fake_quant_rows(uint32_t type, const float *w, float *wq, int64_t rows, int64_t cols, void *scratch) {
    return et_fake_quant_rows_imatrix(type, w, wq, rows, cols, NULL, scratch);
}

int et_fake_quant_rows_imatrix(uint32_t type, const float *w, float *wq, int64_t rows, int64_t cols,
                               const float *imw, void *scratch) {
    const uint64_t rb = et_quant_row_bytes(type, cols);
    if (!et_quant_supported(type) || rows < 0 || !rb) return ET_EINPUT;
    if (type == GGML_TYPE_F32) {
        if (wq != w) memcpy(wq, w, (size_t)rows * (size_t)cols * sizeof(float));
        return 0;
    }
    uint8_t *q = scratch;
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        if (imw) et_quantize_rows_imatrix(type, w + (size_t)r * (size_t)cols, q + (size_t)r * rb, 1, cols, imw);
        else et_quantize_row(type, w + (size_t)r * (size_t)cols, q + (size_t)r * rb, cols);
        et_dequantize_row(type, q + (size_t)r * rb, wq + (size_t)r * (size_t)cols, cols);
    }
    return 0;
}

et_tensor *et_fake_quant_view(et_tensor *view, const et_tensor *w, float *wq) {
    et_tensor_wrap(view, w->name, wq, w->grad, w->ndim, w->shape);
    view->requires_grad = w->requires_grad;
    return view;
}

et_tensor *et_qat_linear(et_tape *t, const char *name, et_tensor *x, et_linear *lin) {
    et_qat_w *q = lin->ctx;
    et_tensor *b = lin->b.data ? &lin->b : NULL;
    if (!q->owner->active) return et_matmul(t, name, x, &lin->w, b);
    if (et_qat_stale(q)) et_qat_sync(q->owner);
    if (q->owner->act) {
        char nm[64];
        snprintf(nm, sizeof nm, "%s.act", name ? name : "x");
        x = et_fake_quant_act(t, nm, x, q->type);
    }
    return et_matmul(t, name, x, &q->view, b);
}

/* ---- activation rounding (--qat-act) ---- */

/* One row of n activations as the engine multiplies them with a weight of
 * `weight_type` (engine/kernels.h: et_vec_dot_type and its quantizers):
 * dst = dequantize(quantize(x)); scratch holds 292 * (n / 256 + 1) bytes. */
static void act_row(uint32_t vt, const float *x, float *dst, int n, void *scratch) {
    switch (vt) {
    case GGML_TYPE_F16:
        for (int i = 0; i < n; i++) dst[i] = et_fp16_to_fp32(et_fp32_to_fp16(x[i]));
        break;
    case GGML_TYPE_BF16:
        for (int i = 0; i < n; i++) dst[i] = et_bf16_to_fp32(et_fp32_to_bf16(x[i]));
        break;
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q8_1: { /* Q8_1's qs and d are Q8_0's (kernels.h) */
        et_block_q8_0 *b = scratch;
        et_quantize_q8_0(x, b, n);
        for (int k = 0; k < n / 32; k++) {
            const float d = et_fp16_to_fp32(b[k].d);
            for (int j = 0; j < 32; j++) dst[k * 32 + j] = (float)b[k].qs[j] * d;
        }
        break;
    }
    case GGML_TYPE_Q8_K: {
        et_block_q8_K *b = scratch;
        et_quantize_q8_K(x, b, n);
        for (int k = 0; k < n / 256; k++)
            for (int j = 0; j < 256; j++) dst[k * 256 + j] = (float)b[k].qs[j] * b[k].d;
        break;
    }
    default:
        if (dst != x) memcpy(dst, x, (size_t)n * sizeof(float));
    }
}

int et_fake_quant_act_rows(uint32_t weight_type, const float *x, float *xq, int64_t rows, int64_t cols) {
    const uint32_t vt = et_vec_dot_type(weight_type);
    if (vt == (uint32_t)-1 || cols < 1 || cols > INT32_MAX || rows < 0) return ET_EINPUT;
    const int64_t blk = vt == GGML_TYPE_Q8_K ? 256 : vt == GGML_TYPE_Q8_0 || vt == GGML_TYPE_Q8_1 ? 32 : 1;
    if (cols % blk) return ET_EINPUT;
    #pragma omp parallel
    {
        void *scratch = malloc(sizeof(et_block_q8_K) * (size_t)(cols / 256 + 1) + sizeof(et_block_q8_0) * (size_t)(cols / 32 + 1));
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            if (scratch) act_row(vt, x + (size_t)r * (size_t)cols, xq + (size_t)r * (size_t)cols, (int)cols, scratch);
        free(scratch);
    }
    return 0;
}

static void act_backward(et_tape *t, const et_node *nd) {
    const float *dout = nd->out->grad;
    const long n = (long)nd->out->n;
    if (et_grad_take(t, nd->in[0], nd->out)) return;
    float *dx = et_grad(t, nd->in[0]);
    if (!dx) return;
    #pragma omp parallel for schedule(static) if ((size_t)n > ET_OMP_MIN_WORK)
    for (long i = 0; i < n; i++) dx[i] += dout[i];
}

et_tensor *et_fake_quant_act(et_tape *t, const char *name, et_tensor *x, uint32_t weight_type) {
    if (t->code) return NULL;
    if (!x || x->ndim < 1) return et_tape_fail(t, ET_EINPUT, "fake_quant_act %s: NULL input", name ? name : "");
    const uint32_t vt = et_vec_dot_type(weight_type);
    if (vt == GGML_TYPE_F32) return x;
    int wants = et_tape_wants_grad(t, &x, 1);
    et_tensor *out = et_tensor_new(t, name, x->ndim, x->shape, wants);
    if (!out) return NULL;
    const int64_t cols = (int64_t)et_cols(x), rows = (int64_t)et_rows(x);
    if (et_fake_quant_act_rows(weight_type, x->data, out->data, rows, cols))
        return et_tape_fail(t, ET_EINPUT, "fake_quant_act %s: %s rows of %lld for %s activations", name ? name : "",
                            x->name, (long long)cols, ggml_type_name(weight_type) ? ggml_type_name(weight_type) : "?");
    if (wants && !et_tape_push(t, "fake_quant_act", act_backward, out, &x, 1, NULL)) return NULL;
    return out;
}
