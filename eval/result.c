/* eval/result.c — eval result files: atomic write, validating read, file
 * fingerprints, peak RSS.  See eval.h for the schema. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/resource.h>

#include "eval.h"

int et_eval_write_json(const cJSON *r, const char *path, et_err *e) {
    char *txt = cJSON_Print(r);
    if (!txt) return et_fail(e, ET_ERUN, "%s: out of memory printing JSON", path);
    et_afile af;
    int rc = et_afile_open(&af, path, e);
    if (!rc) {
        size_t n = strlen(txt);
        if (fwrite(txt, 1, n, af.f) != n || fputc('\n', af.f) == EOF) {
            et_afile_abort(&af);
            rc = et_fail(e, ET_ERUN, "%s: write failed", path);
        } else {
            rc = et_afile_commit(&af, e);
        }
    }
    free(txt);
    return rc;
}

const cJSON *et_json_get(const cJSON *j, const char *key) { return cJSON_GetObjectItemCaseSensitive(j, key); }

const char *et_json_str(const cJSON *j, const char *key, const char *def) {
    const cJSON *v = et_json_get(j, key);
    return cJSON_IsString(v) ? v->valuestring : def;
}

double et_json_num(const cJSON *j, const char *key) {
    const cJSON *v = et_json_get(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

int et_json_all_finite(const cJSON *j, const char **where) {
    for (const cJSON *c = j ? j->child : NULL; c; c = c->next) {
        if (cJSON_IsNumber(c) && !isfinite(c->valuedouble)) {
            *where = c->string ? c->string : "(array element)";
            return 0;
        }
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && !et_json_all_finite(c, where)) return 0;
    }
    return 1;
}

void et_json_num_or_null(cJSON *o, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

int et_eval_check(const cJSON *j, const char *where, et_err *e) {
    const cJSON *s = et_json_get(j, "schema"), *name = et_json_get(j, "name"), *prim = et_json_get(j, "primary");
    const char *bad = NULL;
    if (!cJSON_IsObject(j)) return et_fail(e, ET_EINPUT, "%s: not a JSON object", where);
    if (!cJSON_IsString(s) || strcmp(s->valuestring, ET_EVAL_SCHEMA))
        return et_fail(e, ET_EINPUT, "%s: \"schema\" is not \"%s\" (not an edgetune eval result)", where,
                       ET_EVAL_SCHEMA);
    if (!cJSON_IsString(name) || !*name->valuestring) return et_fail(e, ET_EINPUT, "%s: no \"name\"", where);
    if (!cJSON_IsString(et_json_get(et_json_get(j, "task"), "name")))
        return et_fail(e, ET_EINPUT, "%s: no \"task\".\"name\"", where);
    if (!cJSON_IsObject(et_json_get(j, "metrics"))) return et_fail(e, ET_EINPUT, "%s: no \"metrics\" object", where);
    if (!cJSON_IsString(et_json_get(prim, "metric")) || !cJSON_IsNumber(et_json_get(prim, "value")))
        return et_fail(e, ET_EINPUT, "%s: no \"primary\" {metric, value}", where);
    if (!cJSON_IsNumber(et_json_get(et_json_get(j, "artifact"), "bytes")))
        return et_fail(e, ET_EINPUT, "%s: no \"artifact\".\"bytes\"", where);
    if (!et_json_all_finite(j, &bad)) return et_fail(e, ET_EINPUT, "%s: \"%s\" is not a finite number", where, bad);
    return 0;
}

int et_eval_read_json(const char *path, cJSON **out, et_err *e) {
    *out = NULL;
    et_map m;
    int rc = et_map_open(&m, path, e);
    if (rc) return rc;
    if (m.size == 0) {
        et_map_close(&m);
        return et_fail(e, ET_EINPUT, "%s: empty file", path);
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts((const char *)m.data, m.size, &end, 0);
    size_t off = end ? (size_t)(end - (const char *)m.data) : 0;
    et_map_close(&m);
    if (!j) return et_fail(e, ET_EINPUT, "%s: not valid JSON (near byte %zu)", path, off);
    if ((rc = et_eval_check(j, path, e))) {
        cJSON_Delete(j);
        return rc;
    }
    *out = j;
    return 0;
}

int et_file_sha256(const char *path, char hex[65], uint64_t *bytes, et_err *e) {
    int rc0 = et_need_regular(path, "its sha256 is read from the file", e);   /* never waits on a FIFO */
    if (rc0) return rc0;
    FILE *f = fopen(path, "rb");
    if (!f) return et_fail(e, ET_EINPUT, "%s: cannot open", path);
    et_sha256 s;
    et_sha256_init(&s);
    static _Thread_local unsigned char buf[1 << 16];
    uint64_t n = 0;
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) {
        et_sha256_update(&s, buf, k);
        n += k;
    }
    int err = ferror(f);
    fclose(f);
    if (err) return et_fail(e, ET_EINPUT, "%s: read error", path);
    et_sha256_final_hex(&s, hex);
    if (bytes) *bytes = n;
    return 0;
}

uint64_t et_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (uint64_t)ru.ru_maxrss * 1024u; /* Linux: KiB */
}
