/* lora/demo_corpus.c — the base model's corpus for make demo.  See demo_corpus.h. */
#include "demo_corpus.h"

#include <cJSON.h>
#include <stdio.h>
#include <string.h>

/* Field `k` of object o as a string, or NULL. */
static const char *str_of(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int demo_corpus_reply(const char *action_json, char *out, size_t cap) {
    cJSON *o = cJSON_Parse(action_json);
    const char *dev = str_of(o, "device"), *room = str_of(o, "room"), *act = str_of(o, "action");
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(o, "value");
    int has_v = cJSON_IsNumber(val), v = has_v ? val->valueint : 0;
    int n = -1;
    if (dev && room && act) {
        if (!strcmp(dev, "lock") && (!strcmp(act, "lock") || !strcmp(act, "unlock")))
            n = snprintf(out, cap, "ok, the %s door is %s now.", room, !strcmp(act, "lock") ? "locked" : "unlocked");
        else if (!strcmp(dev, "blinds") && (!strcmp(act, "open") || !strcmp(act, "close")))
            n = snprintf(out, cap, "ok, the %s blinds are %s now.", room, !strcmp(act, "open") ? "open" : "closed");
        else if (!strcmp(act, "set") && has_v && !strcmp(dev, "light"))
            n = snprintf(out, cap, "ok, the %s light is at %d percent now.", room, v);
        else if (!strcmp(act, "set") && has_v && !strcmp(dev, "thermostat"))
            n = snprintf(out, cap, "ok, the %s thermostat is at %d degrees now.", room, v);
        else if (!strcmp(act, "on") || !strcmp(act, "off"))
            n = snprintf(out, cap, "ok, the %s %s is %s now.", room, dev, act);
    }
    cJSON_Delete(o);
    return n >= 0 && (size_t)n < cap ? 0 : -1;
}

int demo_corpus_write(const demo_example *ex, int n, const char *path, demo_corpus_stats *stats, et_err *e) {
    if (n < 1) return et_fail(e, ET_EUSAGE, "%s: no examples for the corpus", path);
    et_afile f;
    int rc = et_afile_open(&f, path, e);
    if (rc) return rc;
    demo_corpus_stats st = {0};
    int first = 1;
    for (int i = 0; i < n && !rc; i++) {
        char reply[256];
        if (demo_corpus_reply(ex[i].action, reply, sizeof reply)) {
            rc = et_fail(e, ET_EINPUT, "%s: example %d: '%s' is not a task action", path, i, ex[i].action);
            break;
        }
        if (fprintf(f.f, "%sCommand: %s\nReply:\n%s\n", first ? "" : "\n", ex[i].command, reply) < 0)
            rc = et_fail(e, ET_ERUN, "%s: write error", path);
        first = 0;
        st.n_replies++;
        if ((i + 1) % DEMO_CORPUS_LOG_EVERY == 0 && !rc) {
            int li = st.n_logs++;
            if (fprintf(f.f, "\nLog:\n") < 0) rc = et_fail(e, ET_ERUN, "%s: write error", path);
            for (int k = 1; k <= DEMO_CORPUS_LOG_LINES && !rc; k++) {
                const demo_example *x = &ex[((long long)li * 7 + k) % n];
                if (fprintf(f.f, "%s\n", x->action) < 0) rc = et_fail(e, ET_ERUN, "%s: write error", path);
            }
        }
    }
    if (!rc) st.bytes = (size_t)ftell(f.f);
    if (rc) {
        et_afile_abort(&f);
        return rc;
    }
    if ((rc = et_afile_commit(&f, e))) return rc;
    if (stats) *stats = st;
    return 0;
}
