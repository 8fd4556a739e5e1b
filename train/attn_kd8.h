/* train/attn_kd8.h — causal GQA attention at head_dim 8 in 16 x 16 tiles
 * with AVX-512F (internal to train/op_attention.c; the formulas are those of
 * op_attention.c's header comment).
 *
 * Why a separate kernel: at head_dim 8 a score is a dot product of 8, so a
 * row-at-a-time kernel (keys in vector lanes) spends much of its time in
 * per-row work: horizontal reductions of the maximum, of the softmax sum and
 * of the 8 output (or dq) sums.  Here every sum runs down the vector lanes
 * instead:
 *   forward, per block of 16 query rows (queries in lanes, scale folded
 *   into q): s_j = sum_d q^T[d] * k[j][d] (k broadcast), the maximum and
 *   the softmax sum are lane-wise, o^T[d] += p_j * v[j][d];
 *   backward, per (b, g) and block of 16 keys (keys in lanes):
 *   dp_i = sum_d dout[i][d] * v^T[d], ds_i = p_i (dp_i - Delta_i),
 *   dv^T[d] += p_i dout[i][d], dk^T[d] += ds_i q[i][d] in registers over
 *   all query rows i of the group's heads; dq^T[d] += sum_j ds^T_j k[j][d]
 *   after a 16 x 16 register transpose of ds.
 * The probabilities are kept between forward and backward in tiles:
 * for each (b, h), tile (qb, kb) (query block qb >= key block kb) holds
 * p[16 rows i][16 keys j], zero for masked keys and keys >= T; tiles are in
 * key-block order (column kb: qb = kb .. nb-1), which the backward reads as
 * one stream.  Each task owns its outputs and sums
 * in a fixed order: results do not depend on the number of threads. */
#ifndef ET_ATTN_KD8_H
#define ET_ATTN_KD8_H

#include <stddef.h>

/* 1 if this CPU runs the kernels (x86-64 with AVX-512F, OS-enabled zmm). */
int et_attn_kd8_available(void);

/* Floats of kept probabilities per (b, h) for sequence length T. */
size_t et_attn_kd8_p_floats(int T);

/* Floats of per-thread scratch for forward and backward (same for both). */
size_t et_attn_kd8_scratch_floats(int T, int n_head, int n_head_kv);

/* Forward for all b < B, h < H.  q, o [B*T, H*8], k, v [B*T, G*8] row-major;
 * pkeep [B*H, et_attn_kd8_p_floats(T)], 64-byte aligned, gets the tiles
 * (NULL: not kept; the backward needs them, not a log-sum-exp).  scratch:
 * omp_get_max_threads() * et_attn_kd8_scratch_floats floats.  Opens its own
 * OpenMP region. */
void et_attn_kd8_forward(int B, int T, int H, int G, const float *q, const float *k, const float *v,
                         float *o, float *pkeep, float *scratch);

/* Backward from pkeep (as written by the forward): dq [B*T, H*8], dk, dv
 * [B*T, G*8], each NULL (not wanted) or added into (its *_set flag 0) or
 * stored (flag 1).  dout, o as the forward's out and its gradient. */
void et_attn_kd8_backward(int B, int T, int H, int G, const float *q, const float *k, const float *v,
                          const float *o, const float *dout, const float *pkeep, float *dq, int dq_set,
                          float *dk, int dk_set, float *dv, int dv_set, float *scratch);

#endif
