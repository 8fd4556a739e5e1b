/* quant/tensor_type.c — which type each tensor gets: llama.cpp's
 * llama_tensor_get_type and the "quantize this tensor?" test of
 * llama_model_quantize_impl (src/llama-quant.cpp, early 2025), restricted
 * to the ftypes edgetune writes (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_1,
 * Q2_K, Q3_K_S/M/L, Q4_K_M, Q5_K_S/M, Q6_K).  Q4_1/Q5_1 follow Q4_0's rules:
 * only the output (or tied token_embd) rule touches them; llama.cpp's
 * ffn_down -> Q4_1 rule for Q4_0 applies with an importance matrix.  See
 * quantize_model.h for the rules in prose. */
#include <stdio.h>
#include <string.h>

#include "quant.h"
#include "quantize_model.h"

static const struct { const char *name; int ftype; } FTYPES[] = {
    {"F32", ET_FTYPE_ALL_F32},         {"F16", ET_FTYPE_MOSTLY_F16},   {"BF16", ET_FTYPE_MOSTLY_BF16},
    {"Q8_0", ET_FTYPE_MOSTLY_Q8_0},    {"Q4_0", ET_FTYPE_MOSTLY_Q4_0}, {"Q4_1", ET_FTYPE_MOSTLY_Q4_1},
    {"Q5_1", ET_FTYPE_MOSTLY_Q5_1},    {"Q4_K_M", ET_FTYPE_MOSTLY_Q4_K_M}, {"Q6_K", ET_FTYPE_MOSTLY_Q6_K},
    {"Q2_K", ET_FTYPE_MOSTLY_Q2_K},    {"Q3_K_S", ET_FTYPE_MOSTLY_Q3_K_S}, {"Q3_K_M", ET_FTYPE_MOSTLY_Q3_K_M},
    {"Q3_K_L", ET_FTYPE_MOSTLY_Q3_K_L}, {"Q5_K_S", ET_FTYPE_MOSTLY_Q5_K_S}, {"Q5_K_M", ET_FTYPE_MOSTLY_Q5_K_M},
};

static int same_nocase(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char ca = *a >= 'a' && *a <= 'z' ? (char)(*a - 32) : *a;
        char cb = *b >= 'a' && *b <= 'z' ? (char)(*b - 32) : *b;
        if (ca != cb) return 0;
    }
    return *a == *b;
}

int et_ftype_from_name(const char *name) {
    if (!name) return -1;
    for (size_t i = 0; i < sizeof FTYPES / sizeof FTYPES[0]; i++)
        if (same_nocase(name, FTYPES[i].name)) return FTYPES[i].ftype;
    return -1;
}

const char *et_ftype_name(int ftype) {
    for (size_t i = 0; i < sizeof FTYPES / sizeof FTYPES[0]; i++)
        if (FTYPES[i].ftype == ftype) return FTYPES[i].name;
    return NULL;
}

uint32_t et_ftype_base_type(int ftype) {
    switch (ftype) {
    case ET_FTYPE_ALL_F32: return GGML_TYPE_F32;
    case ET_FTYPE_MOSTLY_F16: return GGML_TYPE_F16;
    case ET_FTYPE_MOSTLY_BF16: return GGML_TYPE_BF16;
    case ET_FTYPE_MOSTLY_Q8_0: return GGML_TYPE_Q8_0;
    case ET_FTYPE_MOSTLY_Q4_0: return GGML_TYPE_Q4_0;
    case ET_FTYPE_MOSTLY_Q4_1: return GGML_TYPE_Q4_1;
    case ET_FTYPE_MOSTLY_Q5_1: return GGML_TYPE_Q5_1;
    case ET_FTYPE_MOSTLY_Q4_K_M: return GGML_TYPE_Q4_K;
    case ET_FTYPE_MOSTLY_Q6_K: return GGML_TYPE_Q6_K;
    case ET_FTYPE_MOSTLY_Q2_K: return GGML_TYPE_Q2_K;
    case ET_FTYPE_MOSTLY_Q3_K_S:
    case ET_FTYPE_MOSTLY_Q3_K_M:
    case ET_FTYPE_MOSTLY_Q3_K_L: return GGML_TYPE_Q3_K;
    case ET_FTYPE_MOSTLY_Q5_K_S:
    case ET_FTYPE_MOSTLY_Q5_K_M: return GGML_TYPE_Q5_K;
    default: return GGML_TYPE_COUNT;
    }
}

static int has(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

int et_quant_wants(const char *name, uint32_t n_dims) {
    size_t len = strlen(name);
    /* llama.cpp: name.rfind("weight") == name.size() - 6, which (size_t
     * arithmetic) is also true for a 5-byte name: npos == 5 - 6. */
    int ends_weight = len >= 6 ? strcmp(name + len - 6, "weight") == 0 : len == 5;
    if (!ends_weight || n_dims < 2) return 0;
    static const char *const KEEP[] = {
        "_norm.weight", "ffn_gate_inp.weight", "ssm_conv1d.weight", "time_mix_first.weight",
        "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
    };
    for (size_t i = 0; i < sizeof KEEP / sizeof KEEP[0]; i++)
        if (has(name, KEEP[i])) return 0;
    return 1;
}

/* llama-quant.cpp use_more_bits: the first and last eighth of the layers
 * and every third one in between. */
static int use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

static int is_quantized(uint32_t t) { return t != GGML_TYPE_F32 && t != GGML_TYPE_F16 && t != GGML_TYPE_BF16; }

static const char *tname(uint32_t t) {
    const char *s = ggml_type_name(t);
    return s ? s : "?";
}

uint32_t et_quant_choose(et_quant_policy *qp, const char *name, int64_t ne0, uint32_t *want,
                         char *msg, size_t cap) {
    char dummy[1];
    if (!msg || !cap) { msg = dummy; cap = sizeof dummy; }
    msg[0] = 0;
    uint32_t t = qp->base_type;
    *want = t;
    if (!is_quantized(t)) return t;  /* F32/F16/BF16: llama_tensor_get_type is not called */

    const int ftype = qp->ftype;
    const int falcon = qp->is_falcon;
    int output_shape = 0;  /* the output rule picked Q8_0 because the rows do not fit */
    if (!strcmp(name, "output.weight") || (!qp->has_output && !strcmp(name, "token_embd.weight"))) {
        if (falcon) {
            t = GGML_TYPE_Q8_0;
        } else if (ne0 % et_quant_block_elems(t) != 0) {
            output_shape = t != GGML_TYPE_Q8_0;
            snprintf(msg, cap, "row length %lld is not a multiple of %lld (%s): using Q8_0 (llama.cpp output rule)",
                     (long long)ne0, (long long)et_quant_block_elems(t), tname(t));
            t = GGML_TYPE_Q8_0;
        } else if (t != GGML_TYPE_Q8_0) {
            t = GGML_TYPE_Q6_K;
        }
    } else if (!strcmp(name, "token_embd.weight")) {
        /* unchanged for the ftypes edgetune writes */
    } else if (has(name, "attn_v.weight")) {
        const int i = qp->i_attention_wv;
        if (ftype == ET_FTYPE_MOSTLY_Q2_K)
            t = qp->n_gqa >= 4 ? GGML_TYPE_Q4_K : GGML_TYPE_Q3_K;
        else if (ftype == ET_FTYPE_MOSTLY_Q3_K_M)
            t = i < 2 ? GGML_TYPE_Q5_K : GGML_TYPE_Q4_K;
        else if (ftype == ET_FTYPE_MOSTLY_Q3_K_L)
            t = GGML_TYPE_Q5_K;
        else if ((ftype == ET_FTYPE_MOSTLY_Q4_K_M || ftype == ET_FTYPE_MOSTLY_Q5_K_M) &&
                 use_more_bits(i, qp->n_attention_wv))
            t = GGML_TYPE_Q6_K;
        if (qp->is_70b && (t == GGML_TYPE_Q3_K || t == GGML_TYPE_Q4_K)) t = GGML_TYPE_Q5_K;
        ++qp->i_attention_wv;
    } else if (has(name, "ffn_down")) {
        int i_layer = qp->i_ffn_down, n_layer = qp->n_layer;
        if (ftype == ET_FTYPE_MOSTLY_Q2_K) {
            t = GGML_TYPE_Q3_K;
        } else if (ftype == ET_FTYPE_MOSTLY_Q3_K_M) {
            t = i_layer < n_layer / 16                          ? GGML_TYPE_Q5_K
                : !falcon || use_more_bits(i_layer, n_layer) ? GGML_TYPE_Q4_K
                                                              : GGML_TYPE_Q3_K;
        } else if (ftype == ET_FTYPE_MOSTLY_Q3_K_L) {
            t = falcon ? GGML_TYPE_Q4_K : GGML_TYPE_Q5_K;
        } else if (ftype == ET_FTYPE_MOSTLY_Q4_K_M) {
            if (falcon)
                t = i_layer < n_layer / 16 ? GGML_TYPE_Q6_K
                    : use_more_bits(i_layer, n_layer) ? GGML_TYPE_Q5_K : GGML_TYPE_Q4_K;
            else if (use_more_bits(i_layer, n_layer))
                t = GGML_TYPE_Q6_K;
        } else if (ftype == ET_FTYPE_MOSTLY_Q5_K_M && use_more_bits(i_layer, n_layer)) {
            t = GGML_TYPE_Q6_K;
        } else if (ftype == ET_FTYPE_MOSTLY_Q4_0 && qp->has_imatrix && i_layer < n_layer / 8) {
            /* llama.cpp: "guard against craziness in the first few ffn_down
             * layers", only with an imatrix (Q5_0 -> Q5_1 likewise; not an ftype here) */
            t = GGML_TYPE_Q4_1;
        }
        ++qp->i_ffn_down;
    } else if (has(name, "attn_output.weight")) {
        if (!falcon) {
            if (ftype == ET_FTYPE_MOSTLY_Q2_K) t = GGML_TYPE_Q3_K;
            else if (ftype == ET_FTYPE_MOSTLY_Q3_K_M) t = GGML_TYPE_Q4_K;
            else if (ftype == ET_FTYPE_MOSTLY_Q3_K_L) t = GGML_TYPE_Q5_K;
        } else if (ftype == ET_FTYPE_MOSTLY_Q3_K_L) {
            t = GGML_TYPE_Q4_K;
        }
    } else if (has(name, "attn_qkv.weight")) {
        if (ftype == ET_FTYPE_MOSTLY_Q3_K_M || ftype == ET_FTYPE_MOSTLY_Q3_K_L) t = GGML_TYPE_Q4_K;
        else if (ftype == ET_FTYPE_MOSTLY_Q4_K_M) t = GGML_TYPE_Q5_K;
        else if (ftype == ET_FTYPE_MOSTLY_Q5_K_M) t = GGML_TYPE_Q6_K;
    }
    *want = output_shape ? GGML_TYPE_Q6_K : t;

    /* the shape check: the chain of et_quant_fallback, with its reason */
    int64_t blck = et_quant_block_elems(t);
    if (ne0 % blck == 0) return t;
    uint32_t next = et_quant_fallback(t, ne0);
    uint32_t mid = t == GGML_TYPE_Q4_K ? GGML_TYPE_Q5_0 : t == GGML_TYPE_Q6_K ? GGML_TYPE_Q8_0
                 : t == GGML_TYPE_Q5_K ? GGML_TYPE_Q5_1
                 : t == GGML_TYPE_Q2_K || t == GGML_TYPE_Q3_K ? GGML_TYPE_IQ4_NL : GGML_TYPE_COUNT;
    if (next == GGML_TYPE_F16 && mid != GGML_TYPE_COUNT)
        snprintf(msg, cap, "row length %lld is not a multiple of %lld (%s) nor of %lld (%s): using F16",
                 (long long)ne0, (long long)blck, tname(t), (long long)et_quant_block_elems(mid), tname(mid));
    else
        snprintf(msg, cap, "row length %lld is not a multiple of %lld (%s): using %s", (long long)ne0,
                 (long long)blck, tname(t), tname(next));
    return next;
}
