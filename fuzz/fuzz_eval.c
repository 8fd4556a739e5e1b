/* fuzz/fuzz_eval.c — libFuzzer harness for what `edgetune eval`, `report`
 * and `gate` read from users: the task files (classify TSV and JSONL, choice
 * JSONL, generate records, through eval/records.c) and eval result JSONs
 * (et_eval_read_json).  The bytes are written to files (the readers take
 * paths, as the commands do); every refusal must say why, every accepted
 * record set must be well formed.  Run: make fuzz FUZZ_SECONDS=30 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../eval/eval.h"
#include "../eval/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
}

static void recs(const char *path, const char *task, const char *tmpl, const char *labels) {
    et_eval_opts o = et_eval_defaults();
    o.task = task;
    o.data = path;
    o.template_ = tmpl;
    o.labels = labels;
    et_recs r;
    et_err e = {0};
    if (et_recs_read(&o, &r, &e)) {
        if (!e.msg[0] || r.n != 0 || r.r) abort();
        return;
    }
    if (r.n < 1) abort();
    for (long i = 0; i < r.n; i++) {
        const et_rec *x = &r.r[i];
        if (!x->prompt || x->line < 1) abort();
        if (!strcmp(task, "generate") && (!x->gold || x->answer != -1)) abort();
        if (strcmp(task, "generate") && (x->n_choices < 2 - !strcmp(task, "classify") || x->answer < 0 ||
                                         x->answer >= x->n_choices))
            abort();
        for (int c = 0; c < x->n_choices; c++)
            if (!x->choices[c]) abort();
    }
    et_recs_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char tsv[64], jsonl[64], js[64];
    snprintf(tsv, sizeof tsv, "/tmp/fuzz_eval.%d.tsv", (int)getpid());
    snprintf(jsonl, sizeof jsonl, "/tmp/fuzz_eval.%d.jsonl", (int)getpid());
    snprintf(js, sizeof js, "/tmp/fuzz_eval.%d.json", (int)getpid());
    put(tsv, data, size);
    put(jsonl, data, size);
    put(js, data, size);
    recs(tsv, "classify", "Review: {text}\\nSentiment:", NULL);
    recs(jsonl, "classify", NULL, NULL);
    recs(jsonl, "choice", NULL, NULL);
    recs(jsonl, "generate", NULL, NULL);
    cJSON *r = NULL;
    et_err e = {0};
    if (et_eval_read_json(js, &r, &e)) {
        if (!e.msg[0] || r) abort();
    } else {
        if (!cJSON_IsObject(r)) abort();
        cJSON_Delete(r);
    }
    unlink(tsv);
    unlink(jsonl);
    unlink(js);
    return 0;
}
