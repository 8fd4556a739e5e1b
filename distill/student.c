/* distill/student.c — a student from a subset of the teacher's layers. */
#include "student.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int et_parse_layer_list(const char *s, int n_layer, int *keep, int cap, int *n, et_err *e) {
    *n = 0;
    const char *p = s;
    while (p && *p) {
        char *end;
        long a = strtol(p, &end, 10), b = a;
        if (end == p) return et_fail(e, ET_EUSAGE, "--keep-layers '%s': '%s' is not a layer number", s, p);
        if (*end == '-') {
            const char *q = end + 1;
            b = strtol(q, &end, 10);
            if (end == q) return et_fail(e, ET_EUSAGE, "--keep-layers '%s': a range needs an end", s);
        }
        if (*end && *end != ',') return et_fail(e, ET_EUSAGE, "--keep-layers '%s': unexpected '%c'", s, *end);
        for (long v = a; v <= b; v++) {
            if (v < 0 || v >= n_layer)
                return et_fail(e, ET_EINPUT, "--keep-layers: layer %ld does not exist (the teacher has layers 0..%d)", v,
                               n_layer - 1);
            if (*n > 0 && v <= keep[*n - 1])
                return et_fail(e, ET_EUSAGE, "--keep-layers '%s': layers must be increasing (%ld after %d)", s, v,
                               keep[*n - 1]);
            if (*n >= cap) return et_fail(e, ET_EUSAGE, "--keep-layers '%s': more than %d layers", s, cap);
            keep[(*n)++] = (int)v;
        }
        p = *end ? end + 1 : end;
    }
    if (*n == 0) return et_fail(e, ET_EUSAGE, "--keep-layers: no layer given");
    return 0;
}

int et_student_keep_layers(et_model *out, const et_model *src, const int *keep, int n_keep,
                           const char *tokenizer_path, et_err *e) {
    memset(out, 0, sizeof *out);
    const et_hparams *s = &src->hp;
    if (n_keep < 1) return et_fail(e, ET_EUSAGE, "keep_layers: no layer kept");
    for (int i = 0; i < n_keep; i++)
        if (keep[i] < 0 || keep[i] >= s->n_layer || (i && keep[i] <= keep[i - 1]))
            return et_fail(e, ET_EUSAGE, "keep_layers: entry %d (layer %d) is out of range [0, %d) or not increasing", i,
                           keep[i], s->n_layer);
    et_hparams hp = *s;
    hp.n_layer = n_keep;
    int *w = malloc(sizeof(int) * 3 * (size_t)n_keep);
    if (!w) return et_fail(e, ET_ERUN, "out of memory");
    hp.layer_n_head = w, hp.layer_n_head_kv = w + n_keep, hp.layer_n_ff = w + 2 * n_keep;
    for (int i = 0; i < n_keep; i++) {
        hp.layer_n_head[i] = s->layer_n_head[keep[i]];
        hp.layer_n_head_kv[i] = s->layer_n_head_kv[keep[i]];
        hp.layer_n_ff[i] = s->layer_n_ff[keep[i]];
    }
    int rc = et_model_alloc(out, &hp, e);
    free(w);
    if (rc) return rc;
    if (et_model_is_uniform(out)) snprintf(out->hp.arch, sizeof out->hp.arch, "llama");
    int n = et_model_tensors(out, NULL, 0);
    et_named *t = n > 0 ? malloc(sizeof *t * (size_t)n) : NULL;
    if (!t) rc = et_fail(e, ET_ERUN, "out of memory");
    if (!rc) et_model_tensors(out, t, n);
    for (int i = 0; !rc && i < n; i++) {
        char name[64];
        int l, off = 0;
        if (sscanf(t[i].name, "blk.%d.%n", &l, &off) == 1 && off > 0)
            snprintf(name, sizeof name, "blk.%d.%s", keep[l], t[i].name + off);
        else
            snprintf(name, sizeof name, "%s", t[i].name);
        et_named f;
        if (et_model_find(src, name, &f) || f.n != t[i].n)
            rc = et_fail(e, ET_EINPUT, "keep_layers: the teacher has no tensor %s of %zu values", name, t[i].n);
        else
            memcpy(t[i].data, f.data, sizeof(float) * f.n);
    }
    free(t);
    snprintf(out->name, sizeof out->name, "%s", src->name);
    if (!rc && tokenizer_path) rc = et_model_set_tokenizer(out, tokenizer_path, e);
    if (rc) et_model_free(out);
    return rc;
}
