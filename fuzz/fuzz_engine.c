/* fuzz/fuzz_engine.c — libFuzzer harness for the engine's GGUF loader
 * (engine/load.c): hyperparameters, per-layer arrays, tensor presence,
 * shapes, types and sizes.  An accepted model is run: a state with an
 * 8-token context and a 3-token forward pass over every weight (any bytes
 * are valid quantized data), then a greedy step, on the scalar path and the
 * best SIMD path, which must agree bit for bit.  The logits then go
 * through the samplers (temperature, top-k, top-p, min-p with parameters
 * taken from the input's last bytes), as they are and with NaN/Inf written
 * into them: a sampled id must lie in [0, n_vocab) (issue 11: min-p used to
 * leave no candidate on NaN logits and read idx[-1]).
 * Run: make fuzz FUZZ_SECONDS=30 */
#include <math.h>
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

/* Sampler parameters from the input's last bytes (any input is valid). */
static et_sampler_params fuzz_params(const uint8_t *data, size_t size) {
    uint8_t b[6] = {0};
    for (size_t i = 0; i < 6 && i < size; i++) b[i] = data[size - 1 - i];
    et_sampler_params p;
    p.temp = (float)b[0] / 64.0f;                      /* 0 (greedy) .. 4 */
    p.top_k = b[1] % 3 == 0 ? 0 : b[1] % 50;           /* off or 1..49 */
    p.top_p = b[2] % 4 == 0 ? 1.0f : (float)(b[2] + 1) / 256.0f;   /* (0, 1] */
    p.min_p = b[3] % 3 == 0 ? 0.0f : (float)b[3] / 255.0f;         /* [0, 1] */
    p.seed = (uint64_t)b[4] << 8 | b[5];
    return p;
}

static void sample(const et_sampler_params *p, const float *logits, int n) {
    et_sampler s;
    et_err e = {0};
    if (et_sampler_init(&s, p, n, &e)) {
        if (!e.msg[0]) abort();
        return;
    }
    for (int r = 0; r < 3; r++) {
        int id = et_sample(&s, logits);
        if (id < 0 || id >= n) abort();
    }
    et_sampler_free(&s);
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
        et_sampler_params p = fuzz_params(data, size);
        sample(&p, a, (int)nv);
        /* hostile logits straight into the samplers: NaN, +Inf, -Inf */
        const float bad[3] = {NAN, INFINITY, -INFINITY};
        for (int k = 0; k < 3; k++) {
            for (size_t i = 0; i < nv; i++) b[i] = i % 3 == (size_t)k ? bad[k] : a[i];
            sample(&p, b, (int)nv);
            for (size_t i = 0; i < nv; i++) b[i] = bad[k];
            sample(&p, b, (int)nv);
        }
    }
    free(a);
    free(b);
    et_engine_free(m);
    return 0;
}
