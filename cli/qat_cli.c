/* cli/qat_cli.c — the QAT flags of the training commands (see qat_cli.h). */
#include "qat_cli.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../quant/quant.h"
#include "../quant/quantize_model.h"
#include "../train/checkpoint.h"

#define QAT_TYPES "Q8_0, Q4_0, Q4_1, Q5_1, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K"

static int type_of(const char *s, uint32_t *t) {
    for (uint32_t i = 0; i < GGML_TYPE_COUNT; i++) {
        const char *n = ggml_type_name(i);
        if (n && et_quant_supported(i) && !strcasecmp(n, s)) {
            *t = i;
            return 1;
        }
    }
    return 0;
}

static int read_map(cli_qat *c, et_err *e) {
    FILE *f = fopen(c->type_map, "r");
    if (!f) return et_fail(e, ET_EINPUT, "%s: cannot open the QAT type map", c->type_map);
    char line[512];
    int rc = 0, ln = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        ln++;
        char *h = strchr(line, '#');
        if (h) *h = 0;
        char name[128], type[64], extra[8];
        int k = sscanf(line, "%127s %63s %7s", name, type, extra);
        if (k <= 0) continue;
        uint32_t t = GGML_TYPE_F32;
        if (k != 2) rc = et_fail(e, ET_EINPUT, "%s:%d: expected 'TENSOR TYPE'", c->type_map, ln);
        else if (!type_of(type, &t))
            rc = et_fail(e, ET_EINPUT, "%s:%d: '%s' is not a tensor type edgetune quantizes (F32, F16, BF16, Q8_0, "
                         "Q4_0, Q5_0, Q4_1, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL)", c->type_map, ln, type);
        if (rc) break;
        char **nn = realloc(c->over_names, sizeof *nn * (size_t)(c->n_over + 1));
        if (nn) c->over_names = nn;
        uint32_t *nt = realloc(c->over_types, sizeof *nt * (size_t)(c->n_over + 1));
        if (nt) c->over_types = nt;
        char *dup = strdup(name);
        if (!nn || !nt || !dup) {
            free(dup);
            rc = et_fail(e, ET_ERUN, "%s: out of memory", c->type_map);
            break;
        }
        c->over_names[c->n_over] = dup;
        c->over_types[c->n_over++] = t;
    }
    fclose(f);
    return rc;
}

int cli_qat_opts(const cli_args *a, cli_qat *c, et_err *e) {
    memset(c, 0, sizeof *c);
    const char *type = cli_str(a, "qat", NULL);
    c->type_map = cli_str(a, "qat_type_map", NULL);
    c->imatrix_path = cli_str(a, "qat_imatrix", NULL);
    c->act = cli_on(a, "qat_act");
    et_imatrix_init(&c->im);
    int rc = cli_int_range(a, "qat_start", 0, 0, 1L << 40, &c->start, e);
    if (rc) return rc;
    if (!type) {
        if (c->type_map || c->imatrix_path || c->act || cli_str(a, "qat_start", NULL))
            return et_fail(e, ET_EUSAGE, "--qat-start, --qat-type-map, --qat-imatrix and --qat-act need --qat TYPE");
        return 0;
    }
    c->ftype = et_ftype_from_name(type);
    if (c->ftype < 0 || c->ftype == ET_FTYPE_ALL_F32 || c->ftype == ET_FTYPE_MOSTLY_F16 ||
        c->ftype == ET_FTYPE_MOSTLY_BF16)
        return et_fail(e, ET_EINPUT, "--qat: '%s' is not a quantization type (expected one of " QAT_TYPES ")", type);
    snprintf(c->name, sizeof c->name, "%s", et_ftype_name(c->ftype));
    c->on = 1;
    if (c->imatrix_path && (rc = et_imatrix_load(&c->im, c->imatrix_path, e))) return rc;
    return c->type_map ? read_map(c, e) : 0;
}

void cli_qat_recipe(const cli_qat *c, cli_recipe *r) {
    if (!c->on) return;
    cli_recipe_add(r, "qat", "%s", c->name);
    cli_recipe_add(r, "qat_start", "%ld", c->start);
    if (c->type_map) cli_recipe_add(r, "qat_type_map", "%s", c->type_map);
    if (c->imatrix_path) cli_recipe_add(r, "qat_imatrix", "%s", c->imatrix_path);
    if (c->act) cli_recipe_add(r, "qat_act", "1");
}

static void notice(void *ctx, const char *name, const char *why) {
    (void)ctx;
    fprintf(stderr, "edgetune: qat: %s: %s\n", name, why);
}

int cli_qat_event(void *user, const et_train_event *ev) {
    cli_qat_events *u = user;
    if (u->q && ev->kind == ET_EV_STEP) et_qat_step(u->q, ev->step);
    return cli_progress_event(u->p, ev);
}

int cli_qat_attach(const cli_qat *c, et_qat *q, et_llama *L, et_lora_llama *ll, const char *resume_ckpt, et_err *e) {
    et_qat_opts o = {.ftype = c->ftype, .start_step = c->start, .n_over = c->n_over,
                     .over_names = (const char *const *)c->over_names, .over_types = c->over_types,
                     .notice = notice, .imatrix = c->imatrix_path ? &c->im : NULL,
                     .imatrix_name = c->imatrix_path, .act = c->act};
    if (ll && c->act)
        return et_fail(e, ET_EUSAGE, "--qat-act is for `train` and `distill`: LoRA-QAT does not round the adapter's "
                       "activations (leave it out)");
    int rc = ll ? et_lora_llama_qat(ll, q, &o, e) : et_qat_attach(q, L, &o, e);
    if (rc) return rc;
    int64_t step = 0;
    if (resume_ckpt) {
        et_ckpt st;
        if ((rc = et_ckpt_peek(resume_ckpt, &st, e))) return rc;
        step = st.step;
        et_ckpt_free(&st);
    }
    et_qat_set_step(q, step);
    /* summary: tensors per type */
    char buf[512];
    size_t len = 0;
    buf[0] = 0;
    for (uint32_t t = 0; t < GGML_TYPE_COUNT; t++) {
        int n = 0;
        for (int k = 0; k < q->n_w; k++) n += q->w[k].type == t;
        if (n && len < sizeof buf)
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d %s", len ? ", " : "", n, ggml_type_name(t));
    }
    int n_im = 0;
    for (int k = 0; k < q->n_w; k++) n_im += q->w[k].imw != NULL;
    char imb[600] = "";
    if (c->imatrix_path)
        snprintf(imb, sizeof imb, "; %d on the imatrix grid of %s", n_im, c->imatrix_path);
    fprintf(stderr, "edgetune: qat %s: %d tensors fake-quantized%s (%s%s)%s%s%s, straight-through gradients; from step %ld\n",
            c->name, q->n_w, ll ? " (adapted ones as merged with their LoRA branch)" : "", buf, c->n_over ? "; type map applied" : "",
            q->n_fallback ? " with row-length fallbacks as above" : "", imb,
            c->act ? "; matmul inputs rounded as the engine does (Q8_0/Q8_K)" : "", c->start);
    return 0;
}

int cli_qat_export(const cli_qat *c, const et_qat *q, const char *f32_path, const char *out_path, et_err *e) {
    if (!c->n_over) {
        et_quant_params p = {.ftype = c->ftype};
        if (c->imatrix_path)
            return et_quantize_model_imatrix(f32_path, out_path, &p, &c->im, c->imatrix_path, NULL, e);
        return et_quantize_model(f32_path, out_path, &p, NULL, e);
    }
    /* a type map: each tensor in the type it was trained in, file order kept */
    gguf_file g;
    int rc = gguf_open(&g, f32_path, e);
    if (rc) return rc;
    gguf_writer *w = gguf_writer_new();
    void **bufs = calloc(g.n_tensors ? g.n_tensors : 1, sizeof *bufs);
    if (!w || !bufs) rc = et_fail(e, ET_ERUN, "%s: out of memory", out_path);
    for (uint64_t i = 0; i < g.n_kv && !rc; i++)
        if (gguf_set_kv_from(w, &g, i)) rc = et_fail(e, ET_ERUN, "%s: out of memory", out_path);
    if (!rc) {
        gguf_remove_key(w, "general.quantization_version");
        if (gguf_set_u32(w, "general.quantization_version", 2)) rc = et_fail(e, ET_ERUN, "%s: out of memory", out_path);
    }
    for (uint64_t i = 0; i < g.n_tensors && !rc; i++) {
        const gguf_tensor *t = &g.tensors[i];
        char name[GGUF_MAX_NAME];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        uint32_t n_dims = GGUF_MAX_DIMS;
        while (n_dims > 1 && t->ne[n_dims - 1] == 1) n_dims--;
        const et_qat_w *qw = NULL;
        for (int k = 0; k < q->n_w; k++)
            if (!strcmp(q->w[k].name, name)) qw = &q->w[k];
        if (!qw || t->type != GGML_TYPE_F32) {
            rc = gguf_add_tensor_from(w, &g, i, e);
            continue;
        }
        const int64_t nel = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        const uint64_t bytes = et_quant_row_bytes(qw->type, t->ne[0]) * (uint64_t)(nel / t->ne[0]);
        float *src = malloc((size_t)nel * sizeof(float));
        bufs[i] = malloc(bytes ? (size_t)bytes : 1);
        if (!src || !bufs[i]) {
            free(src);
            rc = et_fail(e, ET_ERUN, "%s: out of memory", out_path);
            break;
        }
        memcpy(src, t->data, (size_t)nel * sizeof(float));
        if (qw->imw) et_quantize_rows_imatrix(qw->type, src, bufs[i], nel / t->ne[0], t->ne[0], qw->imw);
        else et_quantize_row(qw->type, src, bufs[i], nel);
        free(src);
        rc = gguf_add_tensor(w, name, qw->type, n_dims, t->ne, bufs[i], e);
    }
    if (!rc) rc = gguf_writer_write(w, out_path, e);
    for (uint64_t i = 0; bufs && i < g.n_tensors; i++) free(bufs[i]);
    free(bufs);
    gguf_writer_free(w);
    gguf_close(&g);
    return rc;
}

void cli_qat_free(cli_qat *c) {
    for (int k = 0; k < c->n_over; k++) free(c->over_names[k]);
    free(c->over_names);
    free(c->over_types);
    et_imatrix_free(&c->im);
    memset(c, 0, sizeof *c);
}
