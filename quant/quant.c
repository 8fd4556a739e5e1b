/* quant/quant.c — F16/BF16 rows and dispatch by ggml type number.
 * F16/BF16 conversion is round-to-nearest-even, as ggml_fp32_to_fp16_row /
 * ggml_fp32_to_bf16_row_ref (common/et.c does the bit work). */
#include "quant_impl.h"

void et_quantize_row_f16(const float *x, void *vy, int64_t k) {
    uint16_t *y = vy;
    for (int64_t i = 0; i < k; i++) y[i] = et_fp32_to_fp16(x[i]);
}

void et_quantize_row_bf16(const float *x, void *vy, int64_t k) {
    uint16_t *y = vy;
    for (int64_t i = 0; i < k; i++) y[i] = et_fp32_to_bf16(x[i]);
}

void et_dequantize_row_f16(const void *vx, float *y, int64_t k) {
    const uint16_t *x = vx;
    for (int64_t i = 0; i < k; i++) y[i] = et_fp16_to_fp32(x[i]);
}

void et_dequantize_row_bf16(const void *vx, float *y, int64_t k) {
    const uint16_t *x = vx;
    for (int64_t i = 0; i < k; i++) y[i] = et_bf16_to_fp32(x[i]);
}

static void quantize_row_f32(const float *x, void *y, int64_t k) { memcpy(y, x, (size_t)k * sizeof(float)); }
static void dequantize_row_f32(const void *x, float *y, int64_t k) { memcpy(y, x, (size_t)k * sizeof(float)); }

/* One row of the type table: block geometry and the two row functions. */
typedef struct quant_type {
    uint32_t type;
    int64_t block_elems;
    uint64_t block_bytes;
    void (*quantize)(const float *x, void *y, int64_t k);
    void (*dequantize)(const void *x, float *y, int64_t k);
} quant_type;

static const quant_type TYPES[] = {
    {GGML_TYPE_F32, 1, 4, quantize_row_f32, dequantize_row_f32},
    {GGML_TYPE_F16, 1, 2, et_quantize_row_f16, et_dequantize_row_f16},
    {GGML_TYPE_BF16, 1, 2, et_quantize_row_bf16, et_dequantize_row_bf16},
    {GGML_TYPE_Q8_0, ET_QK8_0, sizeof(et_block_q8_0), et_quantize_row_q8_0, et_dequantize_row_q8_0},
    {GGML_TYPE_Q4_0, ET_QK4_0, sizeof(et_block_q4_0), et_quantize_row_q4_0, et_dequantize_row_q4_0},
    {GGML_TYPE_Q5_0, ET_QK5_0, sizeof(et_block_q5_0), et_quantize_row_q5_0, et_dequantize_row_q5_0},
    {GGML_TYPE_Q4_1, ET_QK4_1, sizeof(et_block_q4_1), et_quantize_row_q4_1, et_dequantize_row_q4_1},
    {GGML_TYPE_Q5_1, ET_QK5_1, sizeof(et_block_q5_1), et_quantize_row_q5_1, et_dequantize_row_q5_1},
    {GGML_TYPE_Q4_K, ET_QK_K, sizeof(et_block_q4_K), et_quantize_row_q4_K, et_dequantize_row_q4_K},
    {GGML_TYPE_Q6_K, ET_QK_K, sizeof(et_block_q6_K), et_quantize_row_q6_K, et_dequantize_row_q6_K},
    {GGML_TYPE_Q5_K, ET_QK_K, sizeof(et_block_q5_K), et_quantize_row_q5_K, et_dequantize_row_q5_K},
    {GGML_TYPE_Q3_K, ET_QK_K, sizeof(et_block_q3_K), et_quantize_row_q3_K, et_dequantize_row_q3_K},
    {GGML_TYPE_Q2_K, ET_QK_K, sizeof(et_block_q2_K), et_quantize_row_q2_K, et_dequantize_row_q2_K},
    {GGML_TYPE_IQ4_NL, ET_QK4_NL, sizeof(et_block_iq4_nl), et_quantize_row_iq4_nl, et_dequantize_row_iq4_nl},
};

static const quant_type *find_type(uint32_t type) {
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (TYPES[i].type == type) return &TYPES[i];
    return NULL;
}

int et_quant_supported(uint32_t type) { return find_type(type) != NULL; }

int64_t et_quant_block_elems(uint32_t type) {
    const quant_type *t = find_type(type);
    return t ? t->block_elems : 0;
}

uint64_t et_quant_row_bytes(uint32_t type, int64_t k) {
    const quant_type *t = find_type(type);
    if (!t || k < 0 || k % t->block_elems) return 0;
    uint64_t nb = (uint64_t)(k / t->block_elems);
    if (nb > UINT64_MAX / t->block_bytes) return 0;
    return nb * t->block_bytes;
}

int et_quantize_row(uint32_t type, const float *x, void *y, int64_t k) {
    const quant_type *t = find_type(type);
    if (!t || k < 0 || k % t->block_elems) return ET_EINPUT;
    t->quantize(x, y, k);
    return 0;
}

int et_dequantize_row(uint32_t type, const void *x, float *y, int64_t k) {
    const quant_type *t = find_type(type);
    if (!t || k < 0 || k % t->block_elems) return ET_EINPUT;
    t->dequantize(x, y, k);
    return 0;
}

uint32_t et_quant_fallback(uint32_t want, int64_t n_per_row) {
    int64_t be = et_quant_block_elems(want);
    if (be > 0 && n_per_row % be == 0) return want;
    uint32_t next;
    switch (want) {
    case GGML_TYPE_Q4_K: next = GGML_TYPE_Q5_0; break;  /* llama.cpp */
    case GGML_TYPE_Q5_K: next = GGML_TYPE_Q5_1; break;  /* llama.cpp */
    case GGML_TYPE_Q6_K: next = GGML_TYPE_Q8_0; break;  /* llama.cpp */
    case GGML_TYPE_Q2_K:
    case GGML_TYPE_Q3_K: next = GGML_TYPE_IQ4_NL; break;  /* llama.cpp */
    default: next = GGML_TYPE_F16; break;                /* edgetune: Q8_0/Q4_0/Q5_0/Q4_1/Q5_1/IQ4_NL -> F16 */
    }
    be = et_quant_block_elems(next);
    return n_per_row % be == 0 ? next : GGML_TYPE_F16;
}
