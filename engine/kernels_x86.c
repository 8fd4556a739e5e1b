/* engine/kernels_x86.c — AVX2 and AVX-512 paths (placeholder: scalar). */
#include "kernels.h"

#if defined(__x86_64__) || defined(__i386__)
const et_kernels et_kernels_avx2 = {
    "avx2", et_dot_f32_scalar, et_dot_f16_scalar, et_dot_bf16_scalar, et_dot_q8_0_scalar,
    et_dot_q4_0_scalar, et_dot_q5_0_scalar, et_dot_q4_K_scalar, et_dot_q6_K_scalar,
};
const et_kernels et_kernels_avx512 = {
    "avx512", et_dot_f32_scalar, et_dot_f16_scalar, et_dot_bf16_scalar, et_dot_q8_0_scalar,
    et_dot_q4_0_scalar, et_dot_q5_0_scalar, et_dot_q4_K_scalar, et_dot_q6_K_scalar,
};
#endif
