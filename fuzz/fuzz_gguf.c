/* fuzz/fuzz_gguf.c — libFuzzer harness for the GGUF reader (export/gguf.c).
 * Opens the input with gguf_open_mem, then reads every byte the reader
 * says is valid: each tensor's data, each KV's value and strings, each
 * array element through the typed accessors, and copies every KV and
 * tensor into a writer (not written).  ASan/UBSan report any access
 * outside what the reader validated.  Run: make fuzz FUZZ_SECONDS=30 */
#include <stdint.h>
#include <stdlib.h>

#include "../export/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file g;
    et_err e = {0};
    if (gguf_open_mem(&g, data, size, "fuzz.gguf", &e)) {
        if (!e.msg[0]) abort(); /* every refusal must say why */
        return 0;
    }
    volatile unsigned sum = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        const uint8_t *p = t->data;
        for (uint64_t j = 0; j < t->nbytes; j++) sum += p[j];
        for (uint64_t j = 0; j < t->name.len; j++) sum += (unsigned char)t->name.ptr[j];
    }
    gguf_writer *w = gguf_writer_new();
    for (uint64_t i = 0; i < g.n_kv; i++) {
        const gguf_kv *kv = &g.kv[i];
        for (uint64_t j = 0; j < kv->key.len; j++) sum += (unsigned char)kv->key.ptr[j];
        for (uint64_t j = 0; j < kv->raw_len; j++) sum += kv->raw[j];
        if (kv->strs)
            for (uint64_t j = 0; j < kv->n; j++)
                for (uint64_t m = 0; m < kv->strs[j].len; m++) sum += (unsigned char)kv->strs[j].ptr[m];
        for (uint64_t j = 0; j < kv->n && j < 64; j++) {
            int64_t v;
            double d;
            if (gguf_arr_i64(kv, j, &v) == 0) sum += (unsigned)v;
            if (gguf_arr_f64(kv, j, &d) == 0) sum += d > 0;
        }
        if (w) gguf_set_kv_from(w, &g, i);
    }
    for (uint64_t i = 0; i < g.n_tensors && w; i++) gguf_add_tensor_from(w, &g, i, &e);
    uint32_t u;
    int64_t v;
    float f;
    char s[64];
    gguf_get_u32(&g, "llama.block_count", &u, &e);
    gguf_get_i64(&g, "general.alignment", &v, &e);
    gguf_get_f32(&g, "llama.attention.layer_norm_rms_epsilon", &f, &e);
    gguf_get_str(&g, "general.architecture", s, sizeof s, &e);
    gguf_writer_free(w);
    gguf_close(&g);
    (void)sum;
    return 0;
}
