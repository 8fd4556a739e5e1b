/* engine/kernels.c — kernel selection, activation conversion and
 * quantization (the same scalar code on every path), row dequantization. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../common/et.h"
#include "../export/gguf.h"
#include "f16row.h"
#include "kernels.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

float et_f16_table[65536];

static void init_once(void) {
    for (uint32_t h = 0; h < 65536; h++) et_f16_table[h] = et_fp16_to_fp32((uint16_t)h);
}

void et_kernels_init(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_once);
}

/* ------------------------------------------------------------ selection */

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* CPUID feature bits and the OS's XSAVE state (XCR0) for the AVX registers. */
static int x86_features(int *avx2, int *avx512, int *vnni) {
    unsigned a, b, c, d;
    *avx2 = *avx512 = *vnni = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return 0;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    int ymm = (xlo & 6) == 6, zmm = (xlo & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int avx2_bit = (b >> 5) & 1, f = (b >> 16) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    *avx2 = ymm && avx2_bit && fma && f16c;
    *avx512 = *avx2 && zmm && f && bw && vl;
    *vnni = *avx512 && ((c >> 11) & 1);   /* AVX512_VNNI: CPUID.7.0:ECX[11] */
    return 1;
}
#endif

#if defined(__x86_64__) || defined(__i386__)
static int cpu_has(const char *name) {
    int avx2, avx512, vnni;
    x86_features(&avx2, &avx512, &vnni);
    if (!strcmp(name, "avx2")) return avx2;
    if (!strcmp(name, "avx512")) return avx512;
    if (!strcmp(name, "avx512vnni")) return vnni;
    return 0;
}
#endif

const et_kernels *et_kernels_get(const char *name) {
    et_kernels_init();
    if (!name || !strcmp(name, "scalar")) return &et_kernels_scalar;
#if defined(__x86_64__) || defined(__i386__)
    if (!strcmp(name, "avx2")) return cpu_has("avx2") ? &et_kernels_avx2 : NULL;
    if (!strcmp(name, "avx512")) return cpu_has("avx512") ? &et_kernels_avx512 : NULL;
    if (!strcmp(name, "avx512vnni")) return cpu_has("avx512vnni") ? &et_kernels_avx512vnni : NULL;
#endif
#if defined(__aarch64__)
    if (!strcmp(name, "neon")) return &et_kernels_neon;
#endif
    return NULL;
}

const et_kernels *et_kernels_best(void) {
    const char *env = getenv("ET_ISA");
    if (env && *env) {
        const et_kernels *k = et_kernels_get(env);
        if (k) return k;
    }
    static const char *const order[] = {"avx512vnni", "avx512", "avx2", "neon", "scalar"};
    for (int i = 0; i < 5; i++) {
        const et_kernels *k = et_kernels_get(order[i]);
        if (k) return k;
    }
    return &et_kernels_scalar;
}

et_dot_fn et_kernels_dot(const et_kernels *k, uint32_t t) {
    switch (t) {
    case GGML_TYPE_F32: return k->dot_f32;
    case GGML_TYPE_F16: return k->dot_f16;
    case GGML_TYPE_BF16: return k->dot_bf16;
    case GGML_TYPE_Q8_0: return k->dot_q8_0;
    case GGML_TYPE_Q4_0: return k->dot_q4_0;
    case GGML_TYPE_Q5_0: return k->dot_q5_0;
    case GGML_TYPE_Q4_1: return k->dot_q4_1;
    case GGML_TYPE_Q5_1: return k->dot_q5_1;
    case GGML_TYPE_Q4_K: return k->dot_q4_K;
    case GGML_TYPE_Q6_K: return k->dot_q6_K;
    case GGML_TYPE_Q2_K: return k->dot_q2_K;
    case GGML_TYPE_Q3_K: return k->dot_q3_K;
    case GGML_TYPE_Q5_K: return k->dot_q5_K;
    case GGML_TYPE_IQ4_NL: return k->dot_iq4_nl;
    default: return NULL;
    }
}

et_dot4_fn et_kernels_dot4(const et_kernels *k, uint32_t t) {
    switch (t) {
    case GGML_TYPE_Q8_0: return k->dot4_q8_0;
    case GGML_TYPE_Q4_0: return k->dot4_q4_0;
    case GGML_TYPE_Q4_1: return k->dot4_q4_1;
    case GGML_TYPE_Q5_1: return k->dot4_q5_1;
    case GGML_TYPE_Q4_K: return k->dot4_q4_K;
    case GGML_TYPE_Q5_K: return k->dot4_q5_K;
    case GGML_TYPE_Q6_K: return k->dot4_q6_K;
    default: return NULL;
    }
}

uint32_t et_vec_dot_type(uint32_t t) {
    switch (t) {
    case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16: return t;
    case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0: case GGML_TYPE_IQ4_NL: return GGML_TYPE_Q8_0;
    case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1: return GGML_TYPE_Q8_1;
    case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
        return GGML_TYPE_Q8_K;
    default: return (uint32_t)-1;
    }
}

size_t et_act_bytes(uint32_t weight_type, int n) {
    switch (et_vec_dot_type(weight_type)) {
    case GGML_TYPE_F32: return (size_t)n * 4;
    case GGML_TYPE_F16: case GGML_TYPE_BF16: return (size_t)n * 2;
    case GGML_TYPE_Q8_0: return et_act_q8_0_extra_offset(n) + (size_t)(n / ET_QK) * (4 + 4);
    case GGML_TYPE_Q8_1: return et_act_q8_1_extra_offset(n) + (size_t)(n / ET_QK) * (4 + 4);
    case GGML_TYPE_Q8_K: return (size_t)(n / ET_QK_K) * sizeof(et_block_q8_K);
    default: return 0;
    }
}

/* Q8_0 blocks plus the extras of the layout in kernels.h. */
static void act_q8_0(const float *x, void *dst, int n) {
    const et_block_q8_0 *q = dst;
    et_quantize_q8_0_row(x, dst, n);   /* = et_quantize_q8_0, vectorized (f16row.h) */
    int32_t *bsum = (int32_t *)((uint8_t *)dst + et_act_q8_0_extra_offset(n));
    float *d = (float *)(bsum + n / ET_QK);
    for (int b = 0; b < n / ET_QK; b++) {
        int32_t s = 0;
        for (int j = 0; j < ET_QK; j++) s += q[b].qs[j];
        bsum[b] = s;
        d[b] = et_fp16_to_fp32(q[b].d);
    }
}

/* Q8_1 blocks plus the extras of the layout in kernels.h. */
static void act_q8_1(const float *x, void *dst, int n) {
    const et_block_q8_1 *q = dst;
    et_quantize_q8_1(x, dst, n);
    float *d = (float *)((uint8_t *)dst + et_act_q8_1_extra_offset(n)), *s = d + n / ET_QK;
    for (int b = 0; b < n / ET_QK; b++) {
        d[b] = et_fp16_to_fp32(q[b].d);
        s[b] = et_fp16_to_fp32(q[b].s);
    }
}

void et_act_convert(uint32_t weight_type, const float *x, void *dst, int n) {
    switch (et_vec_dot_type(weight_type)) {
    case GGML_TYPE_F32: memcpy(dst, x, (size_t)n * 4); break;
    case GGML_TYPE_F16: {
        uint16_t *y = dst;
        for (int i = 0; i < n; i++) y[i] = et_fp32_to_fp16(x[i]);
        break;
    }
    case GGML_TYPE_BF16: {
        uint16_t *y = dst;
        for (int i = 0; i < n; i++) y[i] = et_fp32_to_bf16(x[i]);
        break;
    }
    case GGML_TYPE_Q8_0: act_q8_0(x, dst, n); break;
    case GGML_TYPE_Q8_1: act_q8_1(x, dst, n); break;
    case GGML_TYPE_Q8_K: et_quantize_q8_K(x, dst, n); break;
    default: break;
    }
}

/* ------------------------------------------------------------ activation quantizers */

/* ggml nearest_int: round half to even through the float mantissa. */
static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

void et_quantize_q8_0(const float *x, et_block_q8_0 *y, int n) {
    for (int b = 0; b < n / ET_QK; b++, x += ET_QK) {
        float amax = 0;
        for (int j = 0; j < ET_QK; j++) {
            float a = fabsf(x[j]);
            amax = a > amax ? a : amax;   /* NaN never wins, as fmaxf */
        }
        float d = amax / 127.f;
        float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[b].d = et_fp32_to_fp16(d);
        for (int j = 0; j < ET_QK; j++) {
            float v = x[j] * id;   /* in [-127, 127] for finite x; rounded half to even */
            y[b].qs[j] = (int8_t)(v >= -127.f && v <= 127.f ? nearest_int(v) : v > 127.f ? 127 : v < -127.f ? -127 : 0);
        }
    }
}

/* ggml-cpu x86 quantize_row_q8_1 (AVX2 path): Q8_0's d, id and rounding,
 * and s = fp16(d * sum of the quants), d in fp32. */
void et_quantize_q8_1(const float *x, et_block_q8_1 *y, int n) {
    for (int b = 0; b < n / ET_QK; b++, x += ET_QK) {
        float amax = 0;
        for (int j = 0; j < ET_QK; j++) {
            float a = fabsf(x[j]);
            amax = a > amax ? a : amax;   /* NaN never wins, as et_quantize_q8_0 */
        }
        float d = amax / 127.f;
        float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[b].d = et_fp32_to_fp16(d);
        int32_t sum = 0;
        for (int j = 0; j < ET_QK; j++) {
            float v = x[j] * id;
            int q = v >= -127.f && v <= 127.f ? nearest_int(v) : v > 127.f ? 127 : v < -127.f ? -127 : 0;
            y[b].qs[j] = (int8_t)q;
            sum += q;
        }
        y[b].s = et_fp32_to_fp16(d * (float)sum);
    }
}

void et_quantize_q8_K(const float *x, et_block_q8_K *y, int n) {
    for (int b = 0; b < n / ET_QK_K; b++, x += ET_QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < ET_QK_K; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        float iscale = -127.f / max;
        for (int j = 0; j < ET_QK_K; j++) {
            float f = iscale * x[j];   /* in [-127, 127] for finite x; NaN/inf only from hostile weights */
            int v = f >= -127.f && f <= 127.f ? nearest_int(f) : f > 127.f ? 127 : f < -127.f ? -127 : 0;
            y[b].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < ET_QK_K / 16; j++) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += y[b].qs[16 * j + i];
            y[b].bsums[j] = (int16_t)s;
        }
        y[b].d = 1 / iscale;
    }
}
