/* fuzz/fuzz_engine.c — libFuzzer harness for the engine's GGUF loader
 * (engine/load.c): hyperparameters, per-layer arrays, tensor presence,
 * shapes, types and sizes.  An accepted model is run: a state with an
 * 8-token context and a 3-token forward pass over every weight (any bytes
 * are valid quantized data), then a greedy step, on the scalar path and the
 * best SIMD path, which must agree bit for bit.
 * Run: make fuzz FUZZ_SECONDS=30 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run(const et_engine *m, const char *isa, float *logits) {
    et_state_opts o = et_state_default_opts();
    o.n_ctx = 8;
    o.isa = isa;
    et_state *s;
    et_err e = {0};
    if (et_state_new(&s, m, &o, &e)) {
        if (!e.msg[0]) abort();
        return -1;
    }
    int32_t tok[3] = {0, m->hp.n_vocab - 1, m->hp.n_vocab / 2};
    int rc = et_forward(s, tok, 3, logits, 0, &e);
    if (rc && !e.msg[0]) abort();
    et_state_free(s);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    et_engine *m;
    et_err e = {0};
    if (et_engine_load_mem(&m, data, size, "fuzz.gguf", &e)) {
        if (!e.msg[0]) abort(); /* every refusal must say why */
        return 0;
    }
    size_t nv = (size_t)m->hp.n_vocab;
    float *a = malloc(sizeof(float) * nv), *b = malloc(sizeof(float) * nv);
    if (a && b && run(m, "scalar", a) == 0 && run(m, NULL, b) == 0) {
        for (size_t i = 0; i < nv; i++)   /* SIMD == scalar bit for bit (NaN payloads aside) */
            if (memcmp(&a[i], &b[i], sizeof(float)) && !(a[i] != a[i] && b[i] != b[i])) abort();
        volatile int id = et_argmax(a, (int)nv);
        (void)id;
    }
    free(a);
    free(b);
    et_engine_free(m);
    return 0;
}
