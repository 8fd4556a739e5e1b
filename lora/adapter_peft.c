/* lora/adapter_peft.c — the PEFT LoRA adapter directory
 * (huggingface/peft: PeftModel.save_pretrained writes adapter_config.json
 * from LoraConfig and adapter_model.safetensors with the adapter name
 * removed from the keys).  See adapter.h. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../engine/engine.h"
#include "../export/safetensors.h"
#include "adapter.h"
#include "lora_impl.h"

#define KEY_PREFIX "base_model.model.model.layers."

/* A float as the shortest decimal that reads back as the same float, so
 * 0.05f is written 0.05 rather than 0.05000000074505806. */
static double short_double(float f) {
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if ((float)strtod(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* 1 if every adapted layer has exactly the adapter's target set. */
static int is_regular(const lora_adapter *ad) {
    unsigned *per = calloc((size_t)ad->n_layer, sizeof *per);
    if (!per) return 0;
    for (int i = 0; i < ad->n_tensors; i++) per[ad->tensors[i].layer] |= LORA_TARGET_BIT(ad->tensors[i].target);
    int ok = 1;
    for (int l = 0; l < ad->n_layer; l++)
        if (per[l] && per[l] != ad->targets) ok = 0;
    free(per);
    return ok;
}

/* target_modules: a list of module names (with layers_to_transform when
 * not every layer is adapted), or, when layers differ in their targets, a
 * regular expression PEFT full-matches against module paths. */
static int add_targets(cJSON *c, const lora_adapter *ad) {
    int all_layers = 1;
    for (int l = 0; l < ad->n_layer; l++) all_layers &= ad->layer_sel[l];
    if (is_regular(ad)) {
        cJSON *tm = cJSON_AddArrayToObject(c, "target_modules");
        if (!tm) return 0;
        for (int t = 0; t < LORA_N_TARGETS; t++)
            if (ad->targets & LORA_TARGET_BIT(t)) cJSON_AddItemToArray(tm, cJSON_CreateString(lora_target_peft(t)));
        if (all_layers) return cJSON_AddNullToObject(c, "layers_to_transform") != NULL;
        cJSON *lt = cJSON_AddArrayToObject(c, "layers_to_transform");
        if (!lt) return 0;
        for (int l = 0; l < ad->n_layer; l++)
            if (ad->layer_sel[l]) cJSON_AddItemToArray(lt, cJSON_CreateNumber(l));
        return 1;
    }
    size_t cap = 16 + (size_t)ad->n_tensors * 64, n = 0;
    char *re = malloc(cap);
    if (!re) return 0;
    re[n++] = '(';
    for (int i = 0; i < ad->n_tensors; i++) {
        const lora_tensor *t = &ad->tensors[i];
        n += (size_t)snprintf(re + n, cap - n, "%smodel\\.layers\\.%d\\.", i ? "|" : "", t->layer);
        for (const char *m = lora_target_hf(t->target); *m; m++) { /* "self_attn.q_proj": escape the '.' */
            if (*m == '.') re[n++] = '\\';
            re[n++] = *m;
        }
    }
    re[n++] = ')';
    re[n] = 0;
    int ok = cJSON_AddStringToObject(c, "target_modules", re) && cJSON_AddNullToObject(c, "layers_to_transform");
    free(re);
    return ok;
}

static int write_config(const lora_adapter *ad, const char *path, const char *base_name, et_err *e) {
    cJSON *c = cJSON_CreateObject();
    int ok = c != NULL;
    ok = ok && cJSON_AddObjectToObject(c, "alpha_pattern");
    ok = ok && cJSON_AddNullToObject(c, "auto_mapping");
    ok = ok && (base_name ? cJSON_AddStringToObject(c, "base_model_name_or_path", base_name)
                          : cJSON_AddNullToObject(c, "base_model_name_or_path"));
    ok = ok && cJSON_AddStringToObject(c, "bias", "none");
    ok = ok && cJSON_AddFalseToObject(c, "fan_in_fan_out");
    ok = ok && cJSON_AddTrueToObject(c, "inference_mode");
    ok = ok && cJSON_AddTrueToObject(c, "init_lora_weights");
    ok = ok && cJSON_AddNullToObject(c, "layer_replication");
    ok = ok && cJSON_AddNullToObject(c, "layers_pattern");
    ok = ok && cJSON_AddObjectToObject(c, "loftq_config");
    ok = ok && cJSON_AddNumberToObject(c, "lora_alpha", short_double(ad->alpha));
    ok = ok && cJSON_AddNumberToObject(c, "lora_dropout", short_double(ad->dropout));
    ok = ok && cJSON_AddNullToObject(c, "megatron_config");
    ok = ok && cJSON_AddStringToObject(c, "megatron_core", "megatron.core");
    ok = ok && cJSON_AddNullToObject(c, "modules_to_save");
    ok = ok && cJSON_AddStringToObject(c, "peft_type", "LORA");
    ok = ok && cJSON_AddNumberToObject(c, "r", ad->rank);
    ok = ok && cJSON_AddObjectToObject(c, "rank_pattern");
    ok = ok && cJSON_AddNullToObject(c, "revision");
    ok = ok && add_targets(c, ad);
    ok = ok && cJSON_AddStringToObject(c, "task_type", "CAUSAL_LM");
    ok = ok && cJSON_AddFalseToObject(c, "use_dora");
    ok = ok && cJSON_AddBoolToObject(c, "use_rslora", ad->use_rslora != 0);
    char *text = ok ? cJSON_Print(c) : NULL;
    cJSON_Delete(c);
    if (!text) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    int rc = et_write_text(path, text, e);
    cJSON_free(text);
    return rc;
}

/* dst rows in HF order from src rows in GGUF (interleaved RoPE) order, or
 * the other way round (to_gguf).  Rows are `row` floats. */
static int permute_rope_rows(float *dst, const float *src, const lora_tensor *t, size_t row, int to_gguf) {
    for (int64_t r = 0; r < t->n_out; r++) {
        int64_t h = lora_rope_hf_row(r, t->n_out, t->n_head_rope);
        if (h < 0) return -1;
        if (to_gguf) memcpy(dst + (size_t)r * row, src + (size_t)h * row, row * sizeof *dst);
        else memcpy(dst + (size_t)h * row, src + (size_t)r * row, row * sizeof *dst);
    }
    return 0;
}

static int is_rope(const lora_tensor *t) { return t->target == LORA_T_Q || t->target == LORA_T_K; }

/* Remove the plain files in d, then d itself (best effort). */
static void remove_dir_files(const char *d) {
    DIR *dd = opendir(d);
    if (dd) {
        struct dirent *de;
        while ((de = readdir(dd))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char *p = join(d, de->d_name);
            if (p) unlink(p);
            free(p);
        }
        closedir(dd);
    }
    rmdir(d);
}

/* Put the finished folder tmp in place of dir as a unit: swapped atomically
 * with an existing dir (renameat2 RENAME_EXCHANGE, Linux), else renamed. */
static int commit_dir(const char *tmp, const char *dir, et_err *e) {
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (rename(tmp, dir) == 0) return 0;
        int err = errno;
        remove_dir_files(tmp);
        return et_fail(e, ET_ERUN, "%s: cannot rename %s into place: %s", dir, tmp, strerror(err));
    }
#ifdef RENAME_EXCHANGE
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
        remove_dir_files(tmp);   /* now the old folder */
        return 0;
    }
#endif
    /* no exchange on this system or file system: old folder aside, new one in */
    size_t n = strlen(dir) + 48;
    char *old = malloc(n);
    if (!old) {
        remove_dir_files(tmp);
        return et_fail(e, ET_ERUN, "%s: out of memory", dir);
    }
    snprintf(old, n, "%s.old.tmp.%ld", dir, (long)getpid());
    int rc = 0;
    if (rename(dir, old) != 0 || rename(tmp, dir) != 0) {
        int err = errno;
        rename(old, dir);   /* put the old folder back if it was moved */
        remove_dir_files(tmp);
        rc = et_fail(e, ET_ERUN, "%s: cannot rename %s into place: %s", dir, tmp, strerror(err));
    } else {
        remove_dir_files(old);
    }
    free(old);
    return rc;
}

int lora_adapter_save_peft(const lora_adapter *ad, const char *dir, const char *base_name, int dtype, et_err *e) {
    if (dtype != ST_F32 && dtype != ST_F16 && dtype != ST_BF16)
        return et_fail(e, ET_EUSAGE, "%s: PEFT adapter dtype must be F32, F16 or BF16", dir);
    if (ad->n_tensors <= 0) return et_fail(e, ET_EUSAGE, "%s: the adapter has no tensors", dir);
    for (int i = 0; i < ad->n_tensors; i++) {
        const lora_tensor *t = &ad->tensors[i];
        if (t->rank != ad->rank)
            return et_fail(e, ET_EUSAGE, "%s: tensor '%s' has rank %d, others %d: PEFT export needs one rank", dir,
                           t->base_name, t->rank, ad->rank);
        if (is_rope(t) && lora_rope_hf_row(0, t->n_out, t->n_head_rope) < 0)
            return et_fail(e, ET_EUSAGE,
                           "%s: tensor '%s': head count %d unknown or does not split %d rows into even heads "
                           "(check the adapter against its base first)", dir, t->base_name, t->n_head_rope, t->n_out);
    }
    /* the folder is written as a unit: into "<dir>.tmp.<pid>", then put in
     * place, so a full disk never leaves the safetensors without its
     * adapter_config.json (issue 11) */
    size_t tn = strlen(dir) + 32;
    char *tmp = malloc(tn);
    if (!tmp) return et_fail(e, ET_ERUN, "%s: out of memory", dir);
    snprintf(tmp, tn, "%s.tmp.%ld", dir, (long)getpid());
    remove_dir_files(tmp);   /* a leftover of this pid */
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
        int err = errno;
        int rc = et_fail(e, ET_ERUN, "%s: cannot create directory %s: %s", dir, tmp, strerror(err));
        free(tmp);
        return rc;
    }
    /* un-permuted lora_B of q/k go to one scratch block */
    size_t scratch_n = 0;
    for (int i = 0; i < ad->n_tensors; i++)
        if (is_rope(&ad->tensors[i])) scratch_n += (size_t)ad->tensors[i].n_out * (size_t)ad->rank;
    float *scratch = malloc((scratch_n ? scratch_n : 1) * sizeof *scratch);
    st_writer *w = st_writer_new();
    char *st_path = join(tmp, "adapter_model.safetensors"), *cfg_path = join(tmp, "adapter_config.json");
    int rc = 0;
    if (!scratch || !w || !st_path || !cfg_path) rc = et_fail(e, ET_ERUN, "%s: out of memory", dir);
    if (!rc && st_writer_set_meta(w, "format", "pt")) rc = et_fail(e, ET_ERUN, "%s: out of memory", dir);
    float *sp = scratch;
    for (int i = 0; i < ad->n_tensors && !rc; i++) {
        const lora_tensor *t = &ad->tensors[i];
        char key[160];
        const float *b = t->lora_b;
        if (is_rope(t)) {
            permute_rope_rows(sp, t->lora_b, t, (size_t)t->rank, 0);
            b = sp;
            sp += (size_t)t->n_out * (size_t)t->rank;
        }
        int64_t sa[2] = {t->rank, t->n_in}, sb[2] = {t->n_out, t->rank};
        snprintf(key, sizeof key, KEY_PREFIX "%d.%s.lora_A.weight", t->layer, lora_target_hf(t->target));
        rc = st_writer_add(w, key, dtype, 2, sa, t->lora_a, e);
        if (rc) break;
        snprintf(key, sizeof key, KEY_PREFIX "%d.%s.lora_B.weight", t->layer, lora_target_hf(t->target));
        rc = st_writer_add(w, key, dtype, 2, sb, b, e);
    }
    if (!rc) rc = st_writer_write(w, st_path, e);
    if (!rc) rc = write_config(ad, cfg_path, base_name, e);
    if (!rc) rc = commit_dir(tmp, dir, e);
    else remove_dir_files(tmp);
    st_writer_free(w);
    free(scratch);
    free(st_path);
    free(cfg_path);
    free(tmp);
    return rc;
}

/* ------------------------------------------------------------ reading */
/* Parse "base_model.model.model.layers.N.<hf module>.lora_{A,B}.weight". */
static int parse_key(const char *k, int *layer, int *target, int *is_b) {
    size_t pl = strlen(KEY_PREFIX);
    if (strncmp(k, KEY_PREFIX, pl)) return -1;
    const char *p = k + pl;
    char *end;
    errno = 0;
    long l = strtol(p, &end, 10);
    if (end == p || *end != '.' || errno || l < 0 || l >= LORA_MAX_LAYER || (p[0] == '0' && end - p > 1)) return -1;
    p = end + 1;
    for (int t = 0; t < LORA_N_TARGETS; t++) {
        const char *m = lora_target_hf(t);
        size_t ml = strlen(m);
        if (strncmp(p, m, ml)) continue;
        const char *s = p + ml;
        if (!strcmp(s, ".lora_A.weight") || !strcmp(s, ".lora_B.weight")) {
            *layer = (int)l;
            *target = t;
            *is_b = s[6] == 'B';
            return 0;
        }
    }
    return -1;
}

static int read_json_file(const char *path, cJSON **out, et_err *e) {
    et_map m;
    int rc = et_map_open(&m, path, e);
    if (rc) return rc;
    if (m.size > (16u << 20)) {
        et_map_close(&m);
        return et_fail(e, ET_EINPUT, "%s: larger than 16 MiB", path);
    }
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts((const char *)m.data, m.size, &end, 0);
    if (!*out) {
        size_t off = end ? (size_t)(end - (const char *)m.data) : 0;
        int line = 1;
        for (size_t i = 0; i < off && i < m.size; i++) line += m.data[i] == '\n';
        et_map_close(&m);
        return et_fail(e, ET_EINPUT, "%s: line %d: malformed JSON", path, line);
    }
    et_map_close(&m);
    return 0;
}

/* Config checks: what edgetune can represent. */
static int read_config(const char *path, lora_adapter *cfg, et_err *e) {
    cJSON *c;
    int rc = read_json_file(path, &c, e);
    if (rc) return rc;
#define BAD(...) do { rc = et_fail(e, ET_EINPUT, __VA_ARGS__); goto done; } while (0)
    if (!cJSON_IsObject(c)) BAD("%s: not a JSON object", path);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, "peft_type");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "LORA")) BAD("%s: key 'peft_type' must be \"LORA\"", path);
    v = cJSON_GetObjectItemCaseSensitive(c, "r");
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > LORA_MAX_RANK || v->valuedouble != (int)v->valuedouble)
        BAD("%s: key 'r' must be an integer in 1..%d", path, LORA_MAX_RANK);
    cfg->rank = (int)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(c, "lora_alpha");
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite(v->valuedouble))
        BAD("%s: key 'lora_alpha' must be a positive number", path);
    cfg->alpha = (float)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(c, "lora_dropout");
    if (v && !cJSON_IsNull(v) && (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < 1)))
        BAD("%s: key 'lora_dropout' must be a number in [0, 1)", path);
    cfg->dropout = cJSON_IsNumber(v) ? (float)v->valuedouble : 0.0f;
    v = cJSON_GetObjectItemCaseSensitive(c, "use_rslora");
    if (v && !cJSON_IsBool(v)) BAD("%s: key 'use_rslora' must be true or false", path);
    cfg->use_rslora = cJSON_IsTrue(v);
    const char *must_false[] = {"use_dora", "fan_in_fan_out"};
    for (int k = 0; k < 2; k++) {
        v = cJSON_GetObjectItemCaseSensitive(c, must_false[k]);
        if (v && !cJSON_IsFalse(v) && !cJSON_IsNull(v)) BAD("%s: key '%s' is set; edgetune supports only plain LoRA", path, must_false[k]);
    }
    v = cJSON_GetObjectItemCaseSensitive(c, "bias");
    if (v && !cJSON_IsNull(v) && (!cJSON_IsString(v) || strcmp(v->valuestring, "none")))
        BAD("%s: key 'bias' must be \"none\"", path);
    const char *must_empty[] = {"rank_pattern", "alpha_pattern", "modules_to_save", "layer_replication"};
    for (int k = 0; k < 4; k++) {
        v = cJSON_GetObjectItemCaseSensitive(c, must_empty[k]);
        if (v && !cJSON_IsNull(v) && !((cJSON_IsObject(v) || cJSON_IsArray(v)) && !v->child))
            BAD("%s: key '%s' is not empty; edgetune does not support it", path, must_empty[k]);
    }
#undef BAD
done:
    cJSON_Delete(c);
    return rc;
}

int lora_adapter_load_peft(lora_adapter *ad, const char *dir, const gguf_file *base, et_err *e) {
    memset(ad, 0, sizeof *ad);
    char *st_path = join(dir, "adapter_model.safetensors"), *cfg_path = join(dir, "adapter_config.json");
    lora_adapter cfg;
    memset(&cfg, 0, sizeof cfg);
    st_file f;
    int f_open = 0, rc = 0;
    lora_shape *shapes = NULL;
    const st_tensor **ta = NULL, **tb = NULL;
    char arch[32];
    int n_layer;
    if (!st_path || !cfg_path) {
        rc = et_fail(e, ET_ERUN, "%s: out of memory", dir);
        goto done;
    }
    if ((rc = read_config(cfg_path, &cfg, e))) goto done;
    if ((rc = lora_gguf_base_info(base, arch, sizeof arch, &n_layer, e))) goto done;
    if ((rc = st_open(&f, st_path, e))) goto done;
    f_open = 1;
    size_t nt = f.n_tensors;
    shapes = calloc(nt ? nt : 1, sizeof *shapes);
    ta = calloc(nt ? nt : 1, sizeof *ta);
    tb = calloc(nt ? nt : 1, sizeof *tb);
    if (!shapes || !ta || !tb) {
        rc = et_fail(e, ET_ERUN, "%s: out of memory", dir);
        goto done;
    }
#define FAIL(...) do { rc = et_fail(e, ET_EINPUT, __VA_ARGS__); goto done; } while (0)
    int n = 0;
    for (size_t i = 0; i < nt; i++) {
        const st_tensor *t = &f.tensors[i];
        int layer, target, is_b;
        if (parse_key(t->name, &layer, &target, &is_b))
            FAIL("%s: tensor '%s' is not a LoRA weight edgetune understands (expected "
                 KEY_PREFIX "N.{self_attn.{q,k,v,o}_proj,mlp.{gate,up,down}_proj}.lora_{A,B}.weight)", st_path, t->name);
        if (t->n_dims != 2) FAIL("%s: tensor '%s' must be 2-D", st_path, t->name);
        if (is_b) {
            char ka[200];
            snprintf(ka, sizeof ka, "%.*s_A.weight", (int)(strlen(t->name) - strlen("_B.weight")), t->name);
            if (!st_find(&f, ka)) FAIL("%s: tensor '%s' has no matching '%s'", st_path, t->name, ka);
            continue;
        }
        char kb[200];
        snprintf(kb, sizeof kb, "%.*s_B.weight", (int)(strlen(t->name) - strlen("_A.weight")), t->name);
        const st_tensor *b = st_find(&f, kb);
        if (!b) FAIL("%s: tensor '%s' has no matching '%s'", st_path, t->name, kb);
        if (b->n_dims != 2 || t->shape[0] != cfg.rank || b->shape[1] != cfg.rank)
            FAIL("%s: tensors '%s' [%lld, %lld] and '%s' must be [r, in] and [out, r] with r = %d (adapter_config.json)",
                 st_path, t->name, (long long)t->shape[0], (long long)t->shape[1], kb, cfg.rank);
        if (t->shape[1] > LORA_MAX_DIM || b->shape[0] > LORA_MAX_DIM || t->shape[1] < 1 || b->shape[0] < 1)
            FAIL("%s: tensor '%s': shape out of range", st_path, t->name);
        lora_shape *s = &shapes[n];
        snprintf(s->base_name, sizeof s->base_name, "blk.%d.%s.weight", layer, lora_target_gguf(target));
        s->layer = layer;
        s->target = target;
        s->rank = cfg.rank;
        s->n_in = (int)t->shape[1];
        s->n_out = (int)b->shape[0];
        s->n_head_rope = n; /* index, carried through the sort */
        ta[n] = t;
        tb[n] = b;
        n++;
    }
    if (n == 0) FAIL("%s: no LoRA tensors", st_path);
#undef FAIL
    /* order as everywhere else: layer, then target */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0; j--) {
            const lora_shape *x = &shapes[j - 1], *y = &shapes[j];
            if (x->layer < y->layer || (x->layer == y->layer && x->target <= y->target)) break;
            lora_shape tmp = shapes[j];
            shapes[j] = shapes[j - 1];
            shapes[j - 1] = tmp;
        }
    if ((rc = lora_adapter_alloc(ad, arch, n_layer, shapes, n, e))) goto done;
    ad->rank = cfg.rank;
    ad->alpha = cfg.alpha;
    ad->use_rslora = cfg.use_rslora;
    ad->dropout = cfg.dropout;
    for (int i = 0; i < n; i++) ad->tensors[i].n_head_rope = 0;
    if ((rc = lora_adapter_check_gguf(ad, dir, base, e))) goto done;
    for (int i = 0; i < n && !rc; i++) {
        lora_tensor *t = &ad->tensors[i];
        int k = shapes[i].n_head_rope;
        rc = st_tensor_to_f32(&f, ta[k], t->lora_a, e);
        if (rc) break;
        if (!is_rope(t)) {
            rc = st_tensor_to_f32(&f, tb[k], t->lora_b, e);
            continue;
        }
        size_t nb = (size_t)t->n_out * (size_t)t->rank;
        float *hf = malloc(nb * sizeof *hf);
        if (!hf) {
            rc = et_fail(e, ET_ERUN, "%s: out of memory", dir);
            break;
        }
        rc = st_tensor_to_f32(&f, tb[k], hf, e);
        if (!rc && permute_rope_rows(t->lora_b, hf, t, (size_t)t->rank, 1))
            rc = et_fail(e, ET_EINPUT, "%s: tensor '%s': %d heads do not split %d rows into even heads", dir,
                         tb[k]->name, t->n_head_rope, t->n_out);
        free(hf);
    }
    for (int i = 0; !rc && i < ad->n_tensors; i++) {   /* the shared validation (engine/engine.h) */
        const lora_tensor *t = &ad->tensors[i];
        char na[GGUF_MAX_NAME + 8], nb[GGUF_MAX_NAME + 8];
        snprintf(na, sizeof na, "%s.lora_a", t->base_name);
        snprintf(nb, sizeof nb, "%s.lora_b", t->base_name);
        if (!(rc = et_lora_check_values(st_path, na, t->lora_a, (size_t)t->rank * (size_t)t->n_in, e)))
            rc = et_lora_check_values(st_path, nb, t->lora_b, (size_t)t->n_out * (size_t)t->rank, e);
    }
done:
    if (rc) lora_adapter_free(ad);
    if (f_open) st_close(&f);
    free(shapes);
    free(ta);
    free(tb);
    free(st_path);
    free(cfg_path);
    return rc;
}
