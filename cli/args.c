/* cli/args.c — flag parsing, recipes (cJSON), error reporting. See cli.h. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cli.h"

static int add_flag(cli_args *a, const char *name, const char *value, int override) {
    for (int i = 0; i < a->n; i++) {
        if (!strcmp(a->names[i], name)) {
            if (!override) return 0;
            char *v = strdup(value);
            if (!v) return -1;
            free(a->values[i]);
            a->values[i] = v;
            return 0;
        }
    }
    char **nn = realloc(a->names, sizeof(char *) * (size_t)(a->n + 1));
    if (!nn) return -1;
    a->names = nn;
    char **nv = realloc(a->values, sizeof(char *) * (size_t)(a->n + 1));
    if (!nv) return -1;
    a->values = nv;
    a->names[a->n] = strdup(name);
    a->values[a->n] = strdup(value);
    if (!a->names[a->n] || !a->values[a->n]) return -1;
    a->n++;
    return 0;
}

/* 1 when `key` is an entry of the comma-separated list */
static int in_list(const char *list, const char *key) {
    size_t n = strlen(key);
    for (const char *p = list; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && !strncmp(p, key, n)) return 1;
        p = c ? c + 1 : NULL;
    }
    return 0;
}

static int load_recipe(cli_args *a, const char *path, int keep_derived, et_err *e) {
    et_map m;
    int rc = et_map_open(&m, path, e);
    if (rc) return rc;
    cJSON *root = cJSON_ParseWithLength((const char *)m.data, m.size);
    et_map_close(&m);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return et_fail(e, ET_EINPUT, "%s: recipe is not a JSON object", path);
    }
    const cJSON *dl = cJSON_GetObjectItemCaseSensitive(root, "derived");
    const char *derived = cJSON_IsString(dl) ? dl->valuestring : "";
    for (cJSON *it = root->child; it; it = it->next) {
        if (!strcmp(it->string, "derived")) continue;   /* bookkeeping, not a flag */
        int is_derived = in_list(derived, it->string);
        if (is_derived && !keep_derived) continue;      /* derived again for this run */
        if (is_derived && cli_str(a, it->string, NULL)) continue;   /* the command line sets it */
        char buf[64];
        const char *v = NULL;
        char *printed = NULL;
        if (cJSON_IsString(it)) v = it->valuestring;
        else if (cJSON_IsBool(it)) v = cJSON_IsTrue(it) ? "1" : "0";
        else if (cJSON_IsNumber(it)) {
            snprintf(buf, sizeof buf, "%.17g", it->valuedouble);
            v = buf;
        } else {
            printed = cJSON_PrintUnformatted(it);
            v = printed;
        }
        if (!v || add_flag(a, it->string, v, 0)) {
            free(printed);
            cJSON_Delete(root);
            return et_fail(e, ET_ERUN, "%s: out of memory", path);
        }
        free(printed);
        if (is_derived) {   /* remember it: the resumed run's recipe lists it as derived again */
            size_t old = a->derived ? strlen(a->derived) : 0, add = strlen(it->string) + 2;
            char *d = realloc(a->derived, old + add + 1);
            if (!d) {
                cJSON_Delete(root);
                return et_fail(e, ET_ERUN, "%s: out of memory", path);
            }
            if (!old) d[0] = 0;
            snprintf(d + strlen(d), add + 1, "%s%s,", old ? "" : ",", it->string);
            a->derived = d;
        }
    }
    cJSON_Delete(root);
    return 0;
}

int cli_given(const cli_args *a, const char *name) {
    const char *v = cli_str(a, name, NULL);
    if (!v || !strcmp(v, "0") || !strcmp(v, "auto")) return 0;
    if (a->derived) {
        char key[160];
        snprintf(key, sizeof key, ",%s,", name);
        if (strstr(a->derived, key)) return 0;
    }
    return 1;
}

int cli_parse(cli_args *a, int argc, char **argv, const char *const *bool_flags, et_err *e) {
    memset(a, 0, sizeof *a);
    a->pos = calloc((size_t)argc + 1, sizeof(char *));
    if (!a->pos) return et_fail(e, ET_ERUN, "out of memory");
    const char *config = NULL;
    int keep_derived = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (s[0] == '-' && s[1] == '-' && s[2]) {
            char name[128];
            const char *eq = strchr(s + 2, '=');
            size_t len = eq ? (size_t)(eq - (s + 2)) : strlen(s + 2);
            if (len >= sizeof name) return et_fail(e, ET_EUSAGE, "flag too long: %s", s);
            memcpy(name, s + 2, len);
            name[len] = 0;
            for (char *p = name; *p; p++) if (*p == '-') *p = '_';
            const char *value;
            int is_bool = 0;
            for (const char *const *b = bool_flags; b && *b; b++) if (!strcmp(*b, name)) is_bool = 1;
            if (eq) value = eq + 1;
            else if (is_bool) value = "1";
            else if (i + 1 < argc) value = argv[++i];
            else return et_fail(e, ET_EUSAGE, "flag --%s needs a value", name);
            if (!strcmp(name, "config")) { config = value; continue; }
            if (!strcmp(name, "resume_config")) { config = value, keep_derived = 1; continue; }
            if (add_flag(a, name, value, 1)) return et_fail(e, ET_ERUN, "out of memory");
        } else if (!strcmp(s, "-o") && i + 1 < argc) {
            if (add_flag(a, "output", argv[++i], 1)) return et_fail(e, ET_ERUN, "out of memory");
        } else {
            a->pos[a->npos++] = argv[i];
        }
    }
    if (config) return load_recipe(a, config, keep_derived, e);
    return 0;
}

void cli_free(cli_args *a) {
    for (int i = 0; i < a->n; i++) { free(a->names[i]); free(a->values[i]); }
    free(a->names);
    free(a->values);
    free(a->pos);
    free(a->derived);
    memset(a, 0, sizeof *a);
}

const char *cli_str(const cli_args *a, const char *name, const char *def) {
    for (int i = 0; i < a->n; i++) if (!strcmp(a->names[i], name)) return a->values[i];
    return def;
}

int cli_int(const cli_args *a, const char *name, long def, long *out, et_err *e) {
    const char *s = cli_str(a, name, NULL);
    if (!s) { *out = def; return 0; }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return et_fail(e, ET_EUSAGE, "--%s: expected an integer, got '%s'", name, s);
    *out = v;
    return 0;
}

int cli_float(const cli_args *a, const char *name, double def, double *out, et_err *e) {
    const char *s = cli_str(a, name, NULL);
    if (!s) { *out = def; return 0; }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return et_fail(e, ET_EUSAGE, "--%s: expected a number, got '%s'", name, s);
    *out = v;
    return 0;
}

int cli_int_range(const cli_args *a, const char *name, long def, long lo, long hi, long *out, et_err *e) {
    int rc = cli_int(a, name, def, out, e);
    if (!rc && (*out < lo || *out > hi))
        rc = et_fail(e, ET_EUSAGE, "--%s %ld is out of range [%ld, %ld]", name, *out, lo, hi);
    return rc;
}

int cli_float_range(const cli_args *a, const char *name, double def, double lo, double hi, double *out, et_err *e) {
    int rc = cli_float(a, name, def, out, e);
    if (!rc && !(*out >= lo && *out <= hi))
        rc = et_fail(e, ET_EUSAGE, "--%s %g is out of range [%g, %g]", name, *out, lo, hi);
    return rc;
}

int cli_on(const cli_args *a, const char *name) { return !strcmp(cli_str(a, name, "0"), "1"); }

/* Levenshtein distance of two short strings (longer ones: a large value). */
static int edit_distance(const char *s, const char *t) {
    size_t n = strlen(s), m = strlen(t);
    if (n > 63 || m > 63) return 1 << 20;
    int d[64][64];
    for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            int c = d[i - 1][j - 1] + (s[i - 1] != t[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[n][m];
}

int cli_check_known(const cli_args *a, const char *const *known, et_err *e) {
    for (int i = 0; i < a->n; i++) {
        int ok = 0;
        for (const char *const *k = known; *k; k++) if (!strcmp(*k, a->names[i])) ok = 1;
        if (ok) continue;
        /* the closest known flag within 2 edits: "did you mean --steps?" (issue 11) */
        const char *best = NULL;
        int bd = 3;
        for (const char *const *k = known; *k; k++) {
            int d = edit_distance(a->names[i], *k);
            if (d < bd) bd = d, best = *k;
        }
        char flag[80] = "";
        if (best) {
            snprintf(flag, sizeof flag, "%s", best);
            for (char *p = flag; *p; p++) if (*p == '_') *p = '-';
        }
        return best ? et_fail(e, ET_EUSAGE, "unknown flag --%s (did you mean --%s?)", a->names[i], flag)
                    : et_fail(e, ET_EUSAGE, "unknown flag --%s", a->names[i]);
    }
    return 0;
}

int cli_save_recipe(const cli_args *a, const char *path, et_err *e) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    for (int i = 0; i < a->n; i++) {
        char *end;
        double v = strtod(a->values[i], &end);
        if (*a->values[i] && !*end && isfinite(v)) cJSON_AddNumberToObject(o, a->names[i], v);
        else cJSON_AddStringToObject(o, a->names[i], a->values[i]);
    }
    char *txt = cJSON_Print(o);
    cJSON_Delete(o);
    if (!txt) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    et_afile f;
    int rc = et_afile_open(&f, path, e);
    if (!rc) {
        fputs(txt, f.f);
        fputc('\n', f.f);
        rc = et_afile_commit(&f, e);
    }
    free(txt);
    return rc;
}

int cli_report(const et_err *e) {
    fprintf(stderr, "edgetune: %s\n", e->msg[0] ? e->msg : "unknown error");
    return e->code ? e->code : ET_ERUN;
}

int cli_start(cli_args *a, int argc, char **argv, const char *const *bools, const char *const *known,
              const char *usage) {
    et_err e = {0};
    int rc = cli_parse(a, argc, argv, bools, &e);
    if (!rc) rc = cli_check_known(a, known, &e);
    if (rc) {
        cli_free(a);
        int code = cli_report(&e);
        fprintf(stderr, "%s\n", usage);
        return code;
    }
    if (cli_str(a, "help", NULL)) {
        printf("%s\n", usage);
        cli_free(a);
        return 0;
    }
    return -1;
}

void cli_print_escaped(const char *s, uint64_t len, uint64_t max) {
    putchar('"');
    uint64_t n = len < max ? len : max;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (n < len) printf("... (%" PRIu64 " bytes)", len);
}
