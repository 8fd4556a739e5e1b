/* train/batch.c — see batch.h. */
#include <stdlib.h>

#include "batch.h"

int et_batch_split(const int32_t *tokens, const uint8_t *mask, int B, int T, int32_t **inputs, int32_t **targets,
                   float **row_loss, int *cap, const char *who, et_err *e) {
    if ((int64_t)B * T > *cap) {
        size_t n = (size_t)B * (size_t)T;
        int32_t *in = realloc(*inputs, n * sizeof *in);
        if (in) *inputs = in;
        int32_t *tg = realloc(*targets, n * sizeof *tg);
        if (tg) *targets = tg;
        float *rl = realloc(*row_loss, n * sizeof *rl);
        if (rl) *row_loss = rl;
        if (!in || !tg || !rl) return et_fail(e, ET_ERUN, "%s: out of memory for a %d x %d batch", who, B, T);
        *cap = (int)n;
    }
    for (int b = 0; b < B; b++) {
        const int32_t *row = tokens + (size_t)b * (size_t)(T + 1);
        const uint8_t *mrow = mask + (size_t)b * (size_t)(T + 1);
        for (int j = 0; j < T; j++) {
            size_t i = (size_t)b * (size_t)T + (size_t)j;
            (*inputs)[i] = row[j];
            (*targets)[i] = mrow[j + 1] ? row[j + 1] : -1;
        }
    }
    return 0;
}
