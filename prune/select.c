/* prune/select.c — targets + scores -> plan (prune/select.h). */
#include "select.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

typedef struct ranked {
    double score;
    int layer, idx;
} ranked;

static int by_score(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    if (x->layer != y->layer) return x->layer - y->layer;
    return x->idx - y->idx;
}

static int by_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* the k highest-scoring of n (score[i]), ascending indices, into out */
static void keep_top(const double *score, int n, int k, int *out) {
    ranked *r = malloc((size_t)(n > 0 ? n : 1) * sizeof *r);
    if (!r) return;
    for (int i = 0; i < n; i++) r[i] = (ranked){score[i], 0, i};
    qsort(r, (size_t)n, sizeof *r, by_score);
    for (int i = 0; i < k; i++) out[i] = r[n - k + i].idx;
    qsort(out, (size_t)k, sizeof *out, by_int);
    free(r);
}

static int round_keep(int keep, int n, int mult) {
    if (mult > 1 && n >= mult) {
        keep = (int)lround((double)keep / mult) * mult;
        if (keep < mult) keep = mult;
    }
    if (keep < 1) keep = 1;
    if (keep > n) keep = n;
    return keep;
}

/* Head units of layer l: query mode: unit k = the (k+1)-th lowest head of
 * every group (cost = their summed score); group mode: groups by summed
 * score.  Fills cost[] ascending (max units: g-1 or n_kv-1) and returns the
 * count; heads per unit in *per. */
static int head_units(const et_prune_scores *s, const et_prune_layer *L, int l, int groups, double *cost, int *per) {
    const int nkv = L->n_head_kv, g = L->n_head / nkv;
    const double *hs = s->head[l];
    if (groups || g == 1) { /* without GQA a group is one query head: the two modes agree */
        ranked r[1024];
        if (nkv > 1024) return 0;
        for (int k = 0; k < nkv; k++) {
            double sum = 0;
            for (int j = 0; j < g; j++) sum += hs[k * g + j];
            r[k] = (ranked){sum, l, k};
        }
        qsort(r, (size_t)nkv, sizeof *r, by_score);
        for (int k = 0; k < nkv - 1; k++) cost[k] = r[k].score;
        *per = g;
        return nkv - 1;
    }
    for (int k = 0; k < g - 1; k++) cost[k] = 0;
    double tmp[1024];
    if (g > 1024) return 0;
    for (int grp = 0; grp < nkv; grp++) {
        for (int j = 0; j < g; j++) tmp[j] = hs[grp * g + j];
        for (int i = 1; i < g; i++) /* insertion sort, g is small */
            for (int j = i; j > 0 && tmp[j] < tmp[j - 1]; j--) {
                double x = tmp[j];
                tmp[j] = tmp[j - 1];
                tmp[j - 1] = x;
            }
        for (int k = 0; k < g - 1; k++) cost[k] += tmp[k];
    }
    *per = nkv;
    return g - 1;
}

/* Apply `units` head units to layer l of p (keep lists rebuilt). */
static int apply_head_units(const et_prune_scores *s, et_prune_layer *L, int l, int groups, int units) {
    const int nkv = L->n_head_kv, g = L->n_head / nkv;
    const double *hs = s->head[l];
    int nh = 0, nk = 0;
    if (groups || g == 1) {
        double *gs = malloc((size_t)nkv * sizeof *gs);
        if (!gs) return ET_ERUN;
        for (int k = 0; k < nkv; k++) {
            gs[k] = 0;
            for (int j = 0; j < g; j++) gs[k] += hs[k * g + j];
        }
        nk = nkv - units;
        keep_top(gs, nkv, nk, L->keep_kv);
        free(gs);
        for (int i = 0; i < nk; i++)
            for (int j = 0; j < g; j++) L->keep_head[nh++] = L->keep_kv[i] * g + j;
    } else {
        const int c = g - units;
        nk = nkv;
        for (int k = 0; k < nkv; k++) {
            L->keep_kv[k] = k;
            keep_top(hs + (size_t)k * g, g, c, L->keep_head + nh);
            for (int j = 0; j < c; j++) L->keep_head[nh + j] += k * g;
            nh += c;
        }
    }
    L->n_keep_head = nh;
    L->n_keep_kv = nk;
    return 0;
}

static int select_once(const et_model *m, const et_prune_scores *s, const et_prune_targets *t, double rh, double rf,
                       et_prune_plan *p, et_err *e) {
    const et_hparams *hp = &m->hp;
    const int nl = hp->n_layer;
    /* layers */
    if (t->layers > 0) {
        const double *ls = t->depth_loss ? s->layer_loss : s->layer_bi;
        ranked *r = malloc((size_t)nl * sizeof *r);
        if (!r) return et_fail(e, ET_ERUN, "prune: out of memory");
        for (int l = 0; l < nl; l++) r[l] = (ranked){ls[l], l, l};
        qsort(r, (size_t)nl, sizeof *r, by_score);
        for (int i = 0; i < t->layers; i++) p->layers[r[i].layer].removed = 1;
        free(r);
    }
    /* heads */
    int total_heads = 0;
    for (int l = 0; l < nl; l++) total_heads += p->layers[l].removed ? 0 : p->layers[l].n_head;
    double cost[1024];
    int per;
    if (t->uniform || t->layer_heads) {
        for (int l = 0; l < nl; l++) {
            et_prune_layer *L = &p->layers[l];
            if (L->removed || !L->n_head) continue;
            const double r = t->layer_heads ? t->layer_heads[l] : rh;
            int nu = head_units(s, L, l, t->head_groups, cost, &per);
            int units = (int)lround(r * (nu + 1));
            if (units > nu) units = nu;
            if (apply_head_units(s, L, l, t->head_groups, units)) return et_fail(e, ET_ERUN, "prune: out of memory");
        }
    } else if (rh > 0) {
        /* global greedy over each layer's next unit */
        int *used = calloc(nl > 0 ? (size_t)nl : 1, sizeof(int)), removed = 0, goal = (int)lround(rh * total_heads);
        double *costs = malloc((size_t)nl * 1024 * sizeof(double));
        int *nu = calloc((size_t)nl, sizeof(int)), *pers = calloc((size_t)nl, sizeof(int));
        if (!used || !costs || !nu || !pers) {
            free(used);
            free(costs);
            free(nu);
            free(pers);
            return et_fail(e, ET_ERUN, "prune: out of memory");
        }
        for (int l = 0; l < nl; l++)
            if (!p->layers[l].removed && p->layers[l].n_head)
                nu[l] = head_units(s, &p->layers[l], l, t->head_groups, costs + (size_t)l * 1024, &pers[l]);
        while (removed < goal) {
            int best = -1;
            double bc = 0;
            for (int l = 0; l < nl; l++) {
                if (used[l] >= nu[l]) continue;
                double c = costs[(size_t)l * 1024 + used[l]] / pers[l];
                if (best < 0 || c < bc) best = l, bc = c;
            }
            if (best < 0) break;
            /* a unit that overshoots more than it helps is not taken */
            if (removed + pers[best] - goal > goal - removed) break;
            used[best]++;
            removed += pers[best];
        }
        for (int l = 0; l < nl; l++)
            if (!p->layers[l].removed && p->layers[l].n_head && apply_head_units(s, &p->layers[l], l, t->head_groups, used[l]))
                removed = -1;
        free(used);
        free(costs);
        free(nu);
        free(pers);
        if (removed < 0) return et_fail(e, ET_ERUN, "prune: out of memory");
    }
    /* FFN channels */
    if (t->uniform || t->layer_ffn) {
        for (int l = 0; l < nl; l++) {
            et_prune_layer *L = &p->layers[l];
            if (L->removed || !L->n_ff) continue;
            const double r = t->layer_ffn ? t->layer_ffn[l] : rf;
            int mult = t->ffn_multiple > 0 ? t->ffn_multiple : (L->n_ff % 32 == 0 ? 32 : 1);
            int keep = round_keep(L->n_ff - (int)lround(r * L->n_ff), L->n_ff, mult);
            keep_top(s->ffn[l], L->n_ff, keep, L->keep_ff);
            L->n_keep_ff = keep;
        }
    } else if (rf > 0) {
        size_t n = 0;
        for (int l = 0; l < nl; l++) n += p->layers[l].removed ? 0 : (size_t)p->layers[l].n_ff;
        ranked *r = malloc((n ? n : 1) * sizeof *r);
        int *rem = calloc(nl > 0 ? (size_t)nl : 1, sizeof(int));
        if (!r || !rem) {
            free(r);
            free(rem);
            return et_fail(e, ET_ERUN, "prune: out of memory");
        }
        size_t k = 0;
        for (int l = 0; l < nl; l++)
            if (!p->layers[l].removed)
                for (int c = 0; c < p->layers[l].n_ff; c++) r[k++] = (ranked){s->ffn[l][c], l, c};
        qsort(r, n, sizeof *r, by_score);
        size_t goal = (size_t)llround(rf * (double)n);
        for (size_t i = 0; i < goal && i < n; i++) rem[r[i].layer]++;
        for (int l = 0; l < nl; l++) {
            et_prune_layer *L = &p->layers[l];
            if (L->removed || !L->n_ff) continue;
            int mult = t->ffn_multiple > 0 ? t->ffn_multiple : (L->n_ff % 32 == 0 ? 32 : 1);
            int keep = round_keep(L->n_ff - rem[l], L->n_ff, mult);
            keep_top(s->ffn[l], L->n_ff, keep, L->keep_ff);
            L->n_keep_ff = keep;
        }
        free(r);
        free(rem);
    }
    /* embedding channels */
    if (t->embd > 0) {
        const int C = hp->n_embd;
        int mult = t->ffn_multiple > 0 ? t->ffn_multiple : (C % 32 == 0 ? 32 : 1);
        int keep = round_keep(C - (int)lround(t->embd * C), C, mult);
        if (keep < C) {
            p->keep_embd = malloc((size_t)keep * sizeof(int));
            if (!p->keep_embd) return et_fail(e, ET_ERUN, "prune: out of memory");
            keep_top(s->embd, C, keep, p->keep_embd);
            p->n_keep_embd = keep;
        }
    }
    return 0;
}

static int ratio_ok(double r, const char *name, et_err *e) {
    if (!(r >= 0 && r < 1)) return et_fail(e, ET_EINPUT, "prune: --%s %g is outside [0, 1)", name, r);
    return 0;
}

/* The size the targets ask about: parameters, or bytes of tensor data at t->target_ftype. */
static int plan_size(const et_prune_plan *q, const et_model *m, const et_prune_targets *t, uint64_t *sz, et_err *e) {
    if (t->target_bytes > 0) return et_prune_plan_bytes(q, m, t->target_ftype, sz, e);
    *sz = et_prune_plan_params(q, m);
    return 0;
}

int et_prune_select(const et_model *m, const et_prune_scores *s, const et_prune_targets *t, const char *sha,
                    et_prune_plan *p, et_err *e) {
    memset(p, 0, sizeof *p);
    const et_hparams *hp = &m->hp;
    int rc;
    if ((rc = ratio_ok(t->heads, "heads", e)) || (rc = ratio_ok(t->ffn, "ffn", e)) || (rc = ratio_ok(t->embd, "embd", e)))
        return rc;
    for (int l = 0; l < hp->n_layer; l++)
        if ((t->layer_heads && (rc = ratio_ok(t->layer_heads[l], "heads-per-layer", e))) ||
            (t->layer_ffn && (rc = ratio_ok(t->layer_ffn[l], "ffn-per-layer", e))))
            return rc;
    if (t->layers < 0 || t->layers >= hp->n_layer)
        return et_fail(e, ET_EINPUT, "prune: --layers %d must be in [0, %d)", t->layers, hp->n_layer);
    if (t->layers && t->depth_loss && !s->layer_loss)
        return et_fail(e, ET_EINPUT, "prune: --depth loss needs scores with layer_loss (score with --depth loss)");
    if (s->n_layer != hp->n_layer) return et_fail(e, ET_EINPUT, "prune: scores are for %d layers, the model has %d", s->n_layer, hp->n_layer);
    for (int l = 0; l < hp->n_layer; l++)
        if (s->n_head[l] != hp->layer_n_head[l] || s->n_ff[l] != hp->layer_n_ff[l])
            return et_fail(e, ET_EINPUT, "prune: scores are for another model (layer %d differs)", l);
    double rh = t->heads, rf = t->ffn;
    const int by_bytes = t->target_bytes > 0;
    const uint64_t target = by_bytes ? (uint64_t)t->target_bytes : (uint64_t)t->target_params;
    if (t->target_params > 0 || by_bytes) {
        double lo = 0, hi = 0.99;
        int first = 1;
        for (int it = 0; it < 40; it++) {
            double mid = first ? 0 : 0.5 * (lo + hi);
            double h = t->heads_set ? t->heads : mid, f = t->ffn_set ? t->ffn : mid;
            if (t->heads_set && t->ffn_set) h = t->heads, f = t->ffn;
            et_prune_plan q;
            if ((rc = et_prune_plan_full(&q, m, sha, e))) return rc;
            if ((rc = select_once(m, s, t, h, f, &q, e))) {
                et_prune_plan_free(&q);
                return rc;
            }
            uint64_t np;
            rc = plan_size(&q, m, t, &np, e);
            et_prune_plan_free(&q);
            if (rc) return rc;
            if (first) {
                first = 0;
                if (np <= target) {
                    hi = 0;
                    break;
                }
                continue;
            }
            if (np <= target) hi = mid;
            else lo = mid;
        }
        /* check reachable */
        double h = t->heads_set ? t->heads : hi, f = t->ffn_set ? t->ffn : hi;
        rh = h;
        rf = f;
        if ((rc = et_prune_plan_full(p, m, sha, e))) return rc;
        if ((rc = select_once(m, s, t, rh, rf, p, e))) goto fail;
        uint64_t np;
        if ((rc = plan_size(p, m, t, &np, e))) goto fail;
        if (np > target) {
            rc = et_fail(e, ET_EINPUT, "prune: %s %llu cannot be reached (%llu at ratio %.2f); add --layers or --embd",
                         by_bytes ? "--target-bytes" : "--target-params", (unsigned long long)target,
                         (unsigned long long)np, hi);
            goto fail;
        }
    } else {
        if ((rc = et_prune_plan_full(p, m, sha, e))) return rc;
        if ((rc = select_once(m, s, t, rh, rf, p, e))) goto fail;
    }
    if ((rc = et_prune_plan_validate(p, "selected plan", e))) goto fail;
    p->scores = et_prune_scores_to_json(s);
    if (!p->scores) {
        rc = et_fail(e, ET_ERUN, "prune: out of memory");
        goto fail;
    }
    return 0;
fail:
    et_prune_plan_free(p);
    return rc;
}
