/* prune/importance.c — head/channel/layer importance on calibration data
 * (prune/importance.h). */
#include "importance.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "../train/llama.h"

void et_prune_scores_free(et_prune_scores *s) {
    if (!s) return;
    for (int l = 0; l < s->n_layer; l++) {
        if (s->head) free(s->head[l]);
        if (s->ffn) free(s->ffn[l]);
    }
    free(s->head);
    free(s->ffn);
    free(s->n_head);
    free(s->n_ff);
    free(s->embd);
    free(s->layer_bi);
    free(s->layer_loss);
    memset(s, 0, sizeof *s);
}

static int scores_alloc(et_prune_scores *s, const et_model *m, et_err *e) {
    memset(s, 0, sizeof *s);
    const et_hparams *hp = &m->hp;
    const int nl = hp->n_layer;
    s->n_layer = nl;
    s->n_embd = hp->n_embd;
    s->base_loss = NAN;
    s->n_head = calloc((size_t)nl, sizeof(int));
    s->n_ff = calloc((size_t)nl, sizeof(int));
    s->head = calloc((size_t)nl, sizeof(double *));
    s->ffn = calloc((size_t)nl, sizeof(double *));
    s->embd = calloc((size_t)hp->n_embd, sizeof(double));
    s->layer_bi = calloc((size_t)nl, sizeof(double));
    int ok = s->n_head && s->n_ff && s->head && s->ffn && s->embd && s->layer_bi;
    for (int l = 0; ok && l < nl; l++) {
        s->n_head[l] = hp->layer_n_head[l];
        s->n_ff[l] = hp->layer_n_ff[l];
        s->head[l] = calloc((size_t)(s->n_head[l] + 1), sizeof(double));
        s->ffn[l] = calloc((size_t)(s->n_ff[l] + 1), sizeof(double));
        ok = s->head[l] && s->ffn[l];
    }
    if (!ok) {
        et_prune_scores_free(s);
        return et_fail(e, ET_ERUN, "prune scores: out of memory");
    }
    return 0;
}

/* out[j] += mean over the B rows of sqrt(sum over T tokens and w columns of
 * x[b, t, j*w + i]^2): "L2 over sequence, mean over batch" of groups of w
 * columns (w = head_dim for heads, 1 for channels).  x [B*T, n*w]. */
static void l2seq_mean(double *out, const float *x, int B, int T, int n, int w, int n_rows_total) {
    const size_t cols = (size_t)n * (size_t)w;
    double *acc = calloc((size_t)n, sizeof *acc);
    if (!acc) return;
    for (int b = 0; b < B; b++) {
        memset(acc, 0, (size_t)n * sizeof *acc);
        for (int t = 0; t < T; t++) {
            const float *r = x + ((size_t)b * T + t) * cols;
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int i = 0; i < w; i++) s += (double)r[j * w + i] * r[j * w + i];
                acc[j] += s;
            }
        }
        for (int j = 0; j < n; j++) out[j] += sqrt(acc[j]) / n_rows_total;
    }
    free(acc);
}

/* sum over rows of 1 - cos(a_r, b_r), rows of C floats */
static double bi_sum(const float *a, const float *b, size_t rows, int C) {
    double s = 0;
    for (size_t r = 0; r < rows; r++) {
        double ab = 0, aa = 0, bb = 0;
        for (int c = 0; c < C; c++) {
            const double x = a[r * C + c], y = b[r * C + c];
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        s += 1.0 - (aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 1.0);
    }
    return s;
}

static void split_rows(const int32_t *rows, int b0, int B, int T, int32_t *in, int32_t *tg) {
    for (int b = 0; b < B; b++) {
        const int32_t *r = rows + (size_t)(b0 + b) * (T + 1);
        memcpy(in + (size_t)b * T, r, (size_t)T * sizeof *in);
        memcpy(tg + (size_t)b * T, r + 1, (size_t)T * sizeof *tg);
    }
}

/* Bind m (gradients into g, or NULL) and open a tape: 0, or the error with nothing left open. */
static int bind_with_tape(et_llama *L, et_tape *t, et_model *m, et_model *g, et_err *e) {
    int rc = et_llama_bind(L, m, g, e);
    if (rc) return rc;
    if ((rc = et_tape_init(t, 0, e))) et_llama_unbind(L);
    else t->no_remat = 1; /* the scores read the normed rows and swiglu's output after the layer ran */
    return rc;
}

/* Activation scores: the layers run one at a time (et_llama_layer, the
 * training forward's loop body), each on a recording tape so that its
 * named intermediates can be fetched, and the tape rewound between layers
 * so that memory stays one layer's activations. */
static int score_activation(et_model *m, const int32_t *rows, int n_rows, int T, int Bmax,
                            const et_prune_score_opts *o, et_prune_scores *s, et_err *e) {
    const et_hparams *hp = &m->hp;
    const int C = hp->n_embd, D = hp->head_dim;
    et_llama L;
    et_tape t;
    int rc = bind_with_tape(&L, &t, m, NULL, e);
    if (rc) return rc;
    const size_t nx = (size_t)Bmax * T * C;
    float *xb = malloc(nx * sizeof *xb), *xin = malloc(nx * sizeof *xin);
    int32_t *in = malloc((size_t)Bmax * T * sizeof *in), *tg = malloc((size_t)Bmax * T * sizeof *tg);
    if (!xb || !xin || !in || !tg) rc = et_fail(e, ET_ERUN, "prune scores: out of memory");
    char nm[48];
    for (int b0 = 0; b0 < n_rows && !rc; b0 += Bmax) {
        const int B = n_rows - b0 < Bmax ? n_rows - b0 : Bmax;
        const size_t N = (size_t)B * T;
        split_rows(rows, b0, B, T, in, tg);
        et_tape_reset(&t);
        et_tensor *x = et_embedding(&t, "inp_embd", &L.tok_embd, in, (int)N);
        if (!x) break;
        memcpy(xb, x->data, N * C * sizeof *xb);
        for (int l = 0; l < hp->n_layer; l++) {
            et_tape_reset(&t);
            int64_t shape[2] = {(int64_t)N, C};
            et_tensor xt;
            et_tensor_wrap(&xt, "x", xb, NULL, 2, shape);
            xt.requires_grad = 1; /* record the layer's ops, so et_tape_find sees them */
            memcpy(xin, xb, N * C * sizeof *xin);
            et_tensor *y = et_llama_layer(&t, &L, l, &xt, T, NULL);
            if (!y) break;
            et_tensor *a, *f, *n1, *n2;
            if (hp->layer_n_head[l] > 0 && (a = et_tape_find(&t, (snprintf(nm, sizeof nm, "kqv_out-%d", l), nm))))
                l2seq_mean(s->head[l], a->data, B, T, hp->layer_n_head[l], D, n_rows);
            if (hp->layer_n_ff[l] > 0 && (f = et_tape_find(&t, (snprintf(nm, sizeof nm, "ffn_swiglu-%d", l), nm))))
                l2seq_mean(s->ffn[l], f->data, B, T, hp->layer_n_ff[l], 1, n_rows);
            if ((n1 = et_tape_find(&t, (snprintf(nm, sizeof nm, "attn_norm-%d", l), nm))))
                l2seq_mean(s->embd, n1->data, B, T, C, 1, n_rows);
            if ((n2 = et_tape_find(&t, (snprintf(nm, sizeof nm, "ffn_norm-%d", l), nm))))
                l2seq_mean(s->embd, n2->data, B, T, C, 1, n_rows);
            s->layer_bi[l] += bi_sum(xin, y->data, N, C);
            if (y->data != xb) memcpy(xb, y->data, N * C * sizeof *xb);
        }
        if (!rc) rc = et_tape_status(&t, e);
        if (o->progress) o->progress(o->ctx, "activation", b0 + B, n_rows);
    }
    if (!rc) rc = et_tape_status(&t, e);
    free(xb);
    free(xin);
    free(in);
    free(tg);
    et_tape_free(&t);
    et_llama_unbind(&L);
    return rc;
}

/* Taylor scores: forward + backward over every row (gradients of the mean
 * token loss accumulated), then |sum w * g| per group; BI from the same
 * forward's l_out-L tensors. */
static int score_taylor(et_model *m, const int32_t *rows, int n_rows, int T, int Bmax, const et_prune_score_opts *o,
                        et_prune_scores *s, et_err *e) {
    const et_hparams *hp = &m->hp;
    const int C = hp->n_embd, D = hp->head_dim;
    et_model g;
    int rc = et_model_grads_alloc(&g, m, e);
    if (rc) return rc;
    et_llama L;
    et_tape t;
    if ((rc = bind_with_tape(&L, &t, m, &g, e))) {
        et_model_grads_free(&g);
        return rc;
    }
    int32_t *in = malloc((size_t)Bmax * T * sizeof *in), *tg = malloc((size_t)Bmax * T * sizeof *tg);
    if (!in || !tg) rc = et_fail(e, ET_ERUN, "prune scores: out of memory");
    char nm[48];
    for (int b0 = 0; b0 < n_rows && !rc; b0 += Bmax) {
        const int B = n_rows - b0 < Bmax ? n_rows - b0 : Bmax;
        const size_t N = (size_t)B * T;
        split_rows(rows, b0, B, T, in, tg);
        et_tape_reset(&t);
        et_xent_opts xo = {0};
        xo.norm = (double)n_rows * T;
        xo.grad_in_forward = 1;
        et_tensor *loss = et_llama_forward(&t, &L, in, tg, B, T, &xo);
        if (!loss) break;
        et_tensor *prev = et_tape_find(&t, "inp_embd");
        for (int l = 0; l < hp->n_layer; l++) {
            et_tensor *y = et_tape_find(&t, (snprintf(nm, sizeof nm, "l_out-%d", l), nm));
            if (!y) y = et_tape_find(&t, (snprintf(nm, sizeof nm, "ffn_inp-%d", l), nm));
            if (prev && y) s->layer_bi[l] += bi_sum(prev->data, y->data, N, C);
            if (y) prev = y;
        }
        if (et_tape_backward(&t, loss)) break;
        if (o->progress) o->progress(o->ctx, "taylor", b0 + B, n_rows);
    }
    if (!rc) rc = et_tape_status(&t, e);
    for (int l = 0; l < hp->n_layer && !rc; l++) {
        const et_layer *w = &m->layers[l], *gw = &g.layers[l];
        const int nh = hp->layer_n_head[l], nq = nh * D;
        for (int h = 0; h < nh; h++) {
            double sum = 0;
            for (size_t i = (size_t)h * D * C; i < (size_t)(h + 1) * D * C; i++) sum += (double)w->wq[i] * gw->wq[i];
            for (int r = 0; r < C; r++)
                for (int d = 0; d < D; d++) {
                    size_t i = (size_t)r * nq + (size_t)h * D + d;
                    sum += (double)w->wo[i] * gw->wo[i];
                }
            s->head[l][h] = fabs(sum);
        }
        const int nf = hp->layer_n_ff[l];
        for (int c = 0; c < nf; c++) {
            double sum = 0;
            for (size_t i = (size_t)c * C; i < (size_t)(c + 1) * C; i++)
                sum += (double)w->w_gate[i] * gw->w_gate[i] + (double)w->w_up[i] * gw->w_up[i];
            for (int r = 0; r < C; r++) {
                size_t i = (size_t)r * nf + c;
                sum += (double)w->w_down[i] * gw->w_down[i];
            }
            s->ffn[l][c] = fabs(sum);
        }
    }
    free(in);
    free(tg);
    et_tape_free(&t);
    et_llama_unbind(&L);
    et_model_grads_free(&g);
    return rc;
}

/* Mean token loss over rows [n, T+1] with the widths currently in L. */
static int loss_of(et_tape *t, et_llama *L, const int32_t *rows, int n, int T, int Bmax, int32_t *in, int32_t *tg,
                   double *out, et_err *e) {
    double sum = 0;
    for (int b0 = 0; b0 < n; b0 += Bmax) {
        const int B = n - b0 < Bmax ? n - b0 : Bmax;
        split_rows(rows, b0, B, T, in, tg);
        et_tape_reset(t);
        et_xent_opts xo = {0};
        xo.norm = 1.0; /* sum of token losses */
        et_tensor *loss = et_llama_forward(t, L, in, tg, B, T, &xo);
        if (!loss) {
            int c = et_tape_status(t, e);
            return c ? c : ET_ERUN;
        }
        sum += loss->data[0];
    }
    *out = sum / ((double)n * T);
    return 0;
}

static int score_depth_loss(et_model *m, const int32_t *rows, int n_rows, int T, int Bmax, const et_prune_score_opts *o,
                            et_prune_scores *s, et_err *e) {
    const int n = o->depth_rows > 0 ? (o->depth_rows < n_rows ? o->depth_rows : n_rows) : (n_rows < 8 ? n_rows : 8);
    s->layer_loss = calloc((size_t)m->hp.n_layer, sizeof(double));
    if (!s->layer_loss) return et_fail(e, ET_ERUN, "prune scores: out of memory");
    et_llama L;
    et_tape t;
    int rc = bind_with_tape(&L, &t, m, NULL, e);
    if (rc) return rc;
    int32_t *in = malloc((size_t)Bmax * T * sizeof *in), *tg = malloc((size_t)Bmax * T * sizeof *tg);
    if (!in || !tg) rc = et_fail(e, ET_ERUN, "prune scores: out of memory");
    if (!rc) rc = loss_of(&t, &L, rows, n, T, Bmax, in, tg, &s->base_loss, e);
    for (int l = 0; l < m->hp.n_layer && !rc; l++) {
        et_llama_block *b = &L.blocks[l];
        const int nh = b->n_head, nf = b->n_ff;
        b->n_head = 0; /* the layer is skipped: llama.c runs neither attention nor FFN */
        b->n_ff = 0;
        double ls = 0;
        rc = loss_of(&t, &L, rows, n, T, Bmax, in, tg, &ls, e);
        b->n_head = nh;
        b->n_ff = nf;
        s->layer_loss[l] = ls - s->base_loss;
        if (o->progress) o->progress(o->ctx, "depth", l + 1, m->hp.n_layer);
    }
    free(in);
    free(tg);
    et_tape_free(&t);
    et_llama_unbind(&L);
    return rc;
}

int et_prune_score(et_model *m, const int32_t *rows, int n_rows, int T, const et_prune_score_opts *o,
                   et_prune_scores *s, et_err *e) {
    memset(s, 0, sizeof *s);
    if (n_rows < 1 || T < 2) return et_fail(e, ET_EINPUT, "prune scores: need at least 1 row of 2 tokens");
    for (size_t i = 0; i < (size_t)n_rows * (T + 1); i++)
        if (rows[i] < 0 || rows[i] >= m->hp.n_vocab)
            return et_fail(e, ET_EINPUT, "prune scores: token %d at %zu is not below n_vocab %d", rows[i], i,
                           m->hp.n_vocab);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = scores_alloc(s, m, e);
    if (rc) return rc;
    const int Bmax = o->batch > 0 ? o->batch : 8;
    snprintf(s->method, sizeof s->method, "%s", o->method == ET_PRUNE_TAYLOR ? "taylor" : "activation");
    rc = o->method == ET_PRUNE_TAYLOR ? score_taylor(m, rows, n_rows, T, Bmax, o, s, e)
                                      : score_activation(m, rows, n_rows, T, Bmax, o, s, e);
    if (!rc && o->depth_loss) rc = score_depth_loss(m, rows, n_rows, T, Bmax, o, s, e);
    if (rc) {
        et_prune_scores_free(s);
        return rc;
    }
    for (int l = 0; l < s->n_layer; l++) s->layer_bi[l] /= (double)n_rows * T;
    s->n_tokens = (int64_t)n_rows * T;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    s->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    return 0;
}

/* ------------------------------------------------------------ JSON */

static cJSON *dbl_array(const double *a, int n) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < n; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.6g", isfinite(a[i]) ? a[i] : 0.0);
        cJSON *v = cJSON_CreateNumber(strtod(buf, NULL));
        if (!v || !cJSON_AddItemToArray(arr, v)) {
            cJSON_Delete(v);
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

void *et_prune_scores_to_json(const et_prune_scores *s) {
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    ok = ok && cJSON_AddStringToObject(o, "method", s->method);
    ok = ok && cJSON_AddNumberToObject(o, "n_layer", s->n_layer) && cJSON_AddNumberToObject(o, "n_embd", s->n_embd);
    ok = ok && cJSON_AddNumberToObject(o, "n_tokens", (double)s->n_tokens);
    if (ok && isfinite(s->base_loss)) ok = cJSON_AddNumberToObject(o, "base_loss", s->base_loss) != NULL;
    cJSON *a;
    ok = ok && (a = dbl_array(s->layer_bi, s->n_layer)) && cJSON_AddItemToObject(o, "layer_bi", a);
    if (ok && s->layer_loss) ok = (a = dbl_array(s->layer_loss, s->n_layer)) && cJSON_AddItemToObject(o, "layer_loss", a);
    ok = ok && (a = dbl_array(s->embd, s->n_embd)) && cJSON_AddItemToObject(o, "embd", a);
    cJSON *layers = ok ? cJSON_AddArrayToObject(o, "layers") : NULL;
    ok = ok && layers;
    for (int l = 0; ok && l < s->n_layer; l++) {
        cJSON *j = cJSON_CreateObject();
        ok = j && cJSON_AddItemToArray(layers, j);
        if (!ok) {
            cJSON_Delete(j);
            break;
        }
        ok = (a = dbl_array(s->head[l], s->n_head[l])) && cJSON_AddItemToObject(j, "heads", a);
        ok = ok && (a = dbl_array(s->ffn[l], s->n_ff[l])) && cJSON_AddItemToObject(j, "ffn", a);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int et_prune_scores_write(const et_prune_scores *s, const char *path, et_err *e) {
    cJSON *o = et_prune_scores_to_json(s);
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    int rc = et_write_text(path, text, e);
    cJSON_free(text);
    return rc;
}

static int read_arr(const cJSON *o, const char *k, double *out, int n, const char *path, const char *where, et_err *e) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        return et_fail(e, ET_EINPUT, "%s: %s: \"%s\" must be an array of %d numbers (scores for another model?)", path,
                       where, k, n);
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        if (!cJSON_IsNumber(x)) return et_fail(e, ET_EINPUT, "%s: %s: \"%s\"[%d] is not a number", path, where, k, i);
        out[i++] = x->valuedouble;
    }
    return 0;
}

int et_prune_scores_read(et_prune_scores *s, const char *path, const et_model *m, et_err *e) {
    et_map mp;
    int rc = et_map_open(&mp, path, e);
    if (rc) return rc;
    cJSON *o = mp.data ? cJSON_ParseWithLengthOpts((const char *)mp.data, mp.size, NULL, 0) : NULL;
    et_map_close(&mp);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return et_fail(e, ET_EINPUT, "%s: not a JSON object", path);
    }
    if ((rc = scores_alloc(s, m, e))) {
        cJSON_Delete(o);
        return rc;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "method");
    snprintf(s->method, sizeof s->method, "%s", cJSON_IsString(v) ? v->valuestring : "unknown");
    v = cJSON_GetObjectItemCaseSensitive(o, "n_layer");
    if (!cJSON_IsNumber(v) || v->valuedouble != m->hp.n_layer)
        rc = et_fail(e, ET_EINPUT, "%s: scores for another model: n_layer is not %d", path, m->hp.n_layer);
    v = cJSON_GetObjectItemCaseSensitive(o, "n_tokens");
    s->n_tokens = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
    v = cJSON_GetObjectItemCaseSensitive(o, "base_loss");
    if (cJSON_IsNumber(v)) s->base_loss = v->valuedouble;
    if (!rc) rc = read_arr(o, "layer_bi", s->layer_bi, s->n_layer, path, "scores", e);
    if (!rc) rc = read_arr(o, "embd", s->embd, s->n_embd, path, "scores", e);
    if (!rc && cJSON_GetObjectItemCaseSensitive(o, "layer_loss")) {
        s->layer_loss = calloc((size_t)s->n_layer, sizeof(double));
        rc = s->layer_loss ? read_arr(o, "layer_loss", s->layer_loss, s->n_layer, path, "scores", e)
                           : et_fail(e, ET_ERUN, "out of memory");
    }
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(o, "layers");
    if (!rc && (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) != s->n_layer))
        rc = et_fail(e, ET_EINPUT, "%s: \"layers\" must be an array of %d entries", path, s->n_layer);
    for (int l = 0; !rc && l < s->n_layer; l++) {
        char where[32];
        snprintf(where, sizeof where, "layers[%d]", l);
        const cJSON *j = cJSON_GetArrayItem(layers, l);
        rc = read_arr(j, "heads", s->head[l], s->n_head[l], path, where, e);
        if (!rc) rc = read_arr(j, "ffn", s->ffn[l], s->n_ff[l], path, where, e);
    }
    cJSON_Delete(o);
    if (rc) et_prune_scores_free(s);
    return rc;
}
