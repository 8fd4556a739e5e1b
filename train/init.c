/* train/init.c — random initialization. See init.h. */
#include <math.h>
#include <string.h>

#include "init.h"

static int is_residual_proj(const char *name) {
    return strstr(name, ".attn_output.weight") || strstr(name, ".ffn_down.weight");
}

void et_init_normal(const et_named *t, int n_t, int n_layer, float std, et_xoshiro *r) {
    const double proj_std = (double)std / sqrt(2.0 * (n_layer > 0 ? n_layer : 1));
    for (int i = 0; i < n_t; i++) {
        float *x = t[i].data;
        if (t[i].n_dims < 2) {
            float v = strstr(t[i].name, "_norm") ? 1.0f : 0.0f;
            for (size_t j = 0; j < t[i].n; j++) x[j] = v;
            continue;
        }
        double s = is_residual_proj(t[i].name) ? proj_std : (double)std;
        for (size_t j = 0; j < t[i].n; j++) x[j] = (float)(s * et_xoshiro_normal(r));
    }
}
