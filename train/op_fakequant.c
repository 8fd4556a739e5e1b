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
#include <string.h>

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
    return et_matmul(t, name, x, &q->view, b);
}
