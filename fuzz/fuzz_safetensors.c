/* fuzz/fuzz_safetensors.c — libFuzzer harness for the safetensors reader
 * (export/safetensors.c).  Opens the input with st_open_mem, then touches
 * every byte the reader says is valid: each tensor's data, names and
 * metadata, decodes F32/F16/BF16 tensors, and looks every name up again.
 * ASan/UBSan report any access outside what the reader validated.
 * Run: make fuzz FUZZ_SECONDS=30 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../export/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file f;
    et_err e = {0};
    if (st_open_mem(&f, data, size, "fuzz.safetensors", &e)) {
        if (!e.msg[0]) abort(); /* every refusal must say why */
        return 0;
    }
    volatile unsigned sum = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        const uint8_t *p = t->data;
        if (t->offset + t->nbytes > f.size - 8 - f.header_len) abort();
        for (uint64_t j = 0; j < t->nbytes; j++) sum += p[j];
        if (st_find(&f, t->name) != t) abort(); /* names are unique */
        if ((t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16) && t->n_elems <= (1u << 20)) {
            float *x = malloc(t->n_elems * sizeof *x + 1);
            if (x && st_tensor_to_f32(&f, t, x, &e) == 0)
                for (uint64_t j = 0; j < t->n_elems; j++) sum += x[j] > 0;
            free(x);
        }
    }
    for (size_t i = 0; i < f.n_meta; i++) {
        const char *v = st_get_meta(&f, f.meta[i].key);
        if (!v) abort();
        sum += (unsigned)strlen(v);
    }
    st_close(&f);
    (void)sum;
    return 0;
}
