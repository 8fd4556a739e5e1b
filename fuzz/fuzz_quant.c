/* fuzz/fuzz_quant.c — quant/ row functions on arbitrary input: the first
 * byte picks a type; the rest is used both as floats to quantize (any bit
 * pattern: NaN, inf, subnormals) and as raw blocks to dequantize.  Checks
 * for memory errors and undefined behaviour, and that quantizing the
 * dequantized blocks of finite data gives finite values. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/quant.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const uint32_t types[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
                                     GGML_TYPE_Q5_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_Q4_1, GGML_TYPE_Q5_1,
                                     GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q5_K, GGML_TYPE_IQ4_NL};
    if (size < 1) return 0;
    uint32_t type = types[data[0] % (sizeof types / sizeof types[0])];
    data++;
    size--;
    int64_t be = et_quant_block_elems(type);
    /* as floats */
    int64_t n = (int64_t)(size / sizeof(float)) / be * be;
    if (n > 0) {
        float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
        void *q = malloc((size_t)et_quant_row_bytes(type, n));
        if (x && y && q) {
            memcpy(x, data, (size_t)n * sizeof(float));
            if (et_quantize_row(type, x, q, n) || et_dequantize_row(type, q, y, n)) abort();
        }
        free(x);
        free(y);
        free(q);
    }
    /* as blocks */
    uint64_t bb = et_quant_row_bytes(type, be);
    int64_t nb = (int64_t)(size / bb);
    if (nb > 0) {
        int64_t k = nb * be;
        float *y = malloc((size_t)k * sizeof(float));
        void *blocks = malloc((size_t)(nb * (int64_t)bb));
        if (y && blocks) {
            memcpy(blocks, data, (size_t)(nb * (int64_t)bb));
            if (et_dequantize_row(type, blocks, y, k)) abort();
            int finite = 1;
            for (int64_t i = 0; i < k; i++) finite &= isfinite(y[i]) != 0;
            if (finite) {
                void *q = malloc((size_t)et_quant_row_bytes(type, k));
                float *z = malloc((size_t)k * sizeof(float));
                if (q && z) {
                    et_quantize_row(type, y, q, k);
                    et_dequantize_row(type, q, z, k);
                }
                free(q);
                free(z);
            }
        }
        free(y);
        free(blocks);
    }
    return 0;
}
