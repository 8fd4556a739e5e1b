/* cli/cmd_eval.c — `edgetune eval` and `edgetune logits`: the evaluation
 * stage on the engine (eval/eval.h, eval/logits.h), printing for people. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../eval/eval.h"
#include "../datasets/ingest.h"
#include "../eval/logits.h"
#include "cli.h"
#include "runner.h"

static const char EVAL_USAGE[] =
    "usage: edgetune eval MODEL [--lora A.gguf[:S],...] --task TASK --data FILE [--json OUT] [options]\n"
    "  TASK: perplexity  text or tokens.h5: nats/token, ppl (--scoring all | llama: as llama-perplexity)\n"
    "        kl          --ref REF.h5 from `edgetune logits`, or --ref-model REF.gguf --data D (run once,\n"
    "                    cached in --ref FILE when given and reused while model, data, window and k match;\n"
    "                    --ref-top-k 64 | --ref-full): KL(ref || model) mean, p90/p99/p99.9, max,\n"
    "                    same top-1, mean delta-p, ppl ratio (as llama-perplexity --kl-divergence)\n"
    "        classify    TSV (text<TAB>label) or JSONL {\"text\",\"label\"}: each class's verbalizer scored by\n"
    "                    log-likelihood after --template: accuracy, macro-F1, confusion matrix\n"
    "        choice      JSONL {\"context\", \"choices\": [...], \"answer\": i}: acc and acc_norm (lm-eval)\n"
    "        generate    prompt/completion records (any format `edgetune data` reads): greedy exact match\n"
    "                    (trailing whitespace trimmed), same JSON, completion loss\n"
    "  --name NAME         the artifact's label in reports (default: model [+ adapter] file names)\n"
    "  --json OUT          the eval result (docs/evaluation.md), written atomically\n"
    "  --samples OUT.jsonl one line per record: prompt, gold, prediction, per-choice log-likelihoods\n"
    "  --template T        classify: prompt with {text} (C escapes \\n \\t read); default \"{text}\\n\"\n"
    "  --labels V1,V2      classify: the verbalizers, one per class in class order (default \" \" + class)\n"
    "  --classes C1,C2     classify: class names as in the file, in order (default: sorted distinct)\n"
    "  --label-first       classify TSV: columns are label<TAB>text\n"
    "  --stop S1,S2        generate: stop strings (EOS always stops);  --n-predict N (default 128)\n"
    "  --chat-template NAME  generate: chat/Alpaca records through this template (default: the model's\n"
    "                      tokenizer.chat_template, as `edgetune data` renders them; none: plain layout)\n"
    "  --split all|train|valid  documents of a tokens.h5;  --scoring all|llama (perplexity)\n"
    "  --ctx N             context in tokens (default or 0: the model's, at most 4096)\n"
    "  --max N             first N records only;  --skip-long: skip records longer than the context\n"
    "                      (default: cut the prompt from the left and count it)\n"
    "  --kv-type F32|F16   KV cache (default F32; llama.cpp uses F16)\n"
    "  --threads N (default 1; 0 = auto)  --isa NAME  --config recipe.json (keys = flag names)\n"
    "  Exit codes: 0, 1 usage, 2 bad input (the file and line named), 3 failure during the run.";

static int parse_lora(const char *spec, et_eval_opts *o, et_err *e) {
    et_runner_opts ro;
    et_runner_defaults(&ro);
    int rc = et_runner_add_lora(&ro, spec, e);
    if (rc) return rc;
    for (int i = 0; i < ro.n_lora; i++) {
        o->lora[i] = ro.lora[i];
        o->lora_scale[i] = ro.lora_scale[i];
    }
    o->n_lora = ro.n_lora;
    return 0;
}

typedef struct prog {
    int tty;
    double last;
} prog;

static void on_progress(void *user, const char *task, long done, long total, double el) {
    prog *p = user;
    if (!p->tty || (el - p->last < 0.25 && done < total)) return;
    p->last = el;
    double eta = done > 0 ? el * (double)(total - done) / (double)done : 0;
    fprintf(stderr, "\r%s %ld/%ld  %.1f s  ETA %.0f s   ", task, done, total, el, eta);
    if (done == total) fprintf(stderr, "\n");
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* The short table for people. */
static void print_result(const cJSON *r) {
    const cJSON *task = cJSON_GetObjectItemCaseSensitive(r, "task"), *art = cJSON_GetObjectItemCaseSensitive(r, "artifact");
    const cJSON *met = cJSON_GetObjectItemCaseSensitive(r, "metrics"), *sp = cJSON_GetObjectItemCaseSensitive(r, "speed");
    printf("%s  task %s  data %s\n", cJSON_GetObjectItemCaseSensitive(r, "name")->valuestring,
           cJSON_GetObjectItemCaseSensitive(task, "name")->valuestring,
           cJSON_GetObjectItemCaseSensitive(task, "data")->valuestring);
    for (const cJSON *m = met->child; m; m = m->next)
        if (cJSON_IsNumber(m)) printf("  %-18s %.6g\n", m->string, m->valuedouble);
    const cJSON *cm = cJSON_GetObjectItemCaseSensitive(met, "confusion");
    if (cJSON_IsArray(cm)) {
        printf("  confusion (rows: gold, columns: predicted)\n");
        for (const cJSON *row = cm->child; row; row = row->next) {
            printf("   ");
            for (const cJSON *x = row->child; x; x = x->next) printf(" %6.0f", x->valuedouble);
            printf("\n");
        }
    }
    printf("  %-18s %.0f (%.3f MB)\n", "bytes", num(art, "bytes"), num(art, "bytes") / 1e6);
    printf("  %-18s %.0f\n", "n_params", num(art, "n_params"));
    printf("  %-18s %.1f\n", "tokens/s", num(sp, "tokens_per_s"));
    if (cJSON_GetObjectItemCaseSensitive(sp, "examples_per_s")) printf("  %-18s %.2f\n", "examples/s", num(sp, "examples_per_s"));
    printf("  %-18s %.1f MB\n", "peak RSS", num(cJSON_GetObjectItemCaseSensitive(r, "memory"), "peak_rss_bytes") / 1e6);
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(r, "warnings");
    for (const cJSON *x = w ? w->child : NULL; x; x = x->next) fprintf(stderr, "edgetune: warning: %s\n", x->valuestring);
}

int cmd_eval(int argc, char **argv) {
    static const char *const bools[] = {"help", "label_first", "skip_long", "ref_full", NULL};
    static const char *const known[] = {"model", "lora", "task", "data", "name", "json", "samples", "template",
                                        "labels", "classes", "label_first", "stop", "n_predict", "split", "scoring",
                                        "ctx", "max", "skip_long", "threads", "isa", "ref", "kv_type", "ref_model", "ref_top_k",
                                        "ref_full", "chat_template", "help", NULL};
    cli_args a;
    int rc = cli_start(&a, argc, argv, bools, known, EVAL_USAGE);
    if (rc >= 0) return rc;
    rc = 0;
    et_err e = {0};
    et_eval_opts o = et_eval_defaults();
    o.model = cli_str(&a, "model", a.npos >= 1 ? a.pos[0] : NULL);
    o.task = cli_str(&a, "task", NULL);
    o.data = cli_str(&a, "data", NULL);
    o.name = cli_str(&a, "name", NULL);
    o.samples = cli_str(&a, "samples", NULL);
    o.template_ = cli_str(&a, "template", NULL);
    o.labels = cli_str(&a, "labels", NULL);
    o.classes = cli_str(&a, "classes", NULL);
    o.label_first = cli_on(&a, "label_first");
    o.skip_long = cli_on(&a, "skip_long");
    o.split = cli_str(&a, "split", "all");
    o.scoring = cli_str(&a, "scoring", "all");
    o.isa = cli_str(&a, "isa", NULL);
    o.ref = cli_str(&a, "ref", NULL);
    o.ref_model = cli_str(&a, "ref_model", NULL);
    o.ref_full = cli_on(&a, "ref_full");
    o.chat_template = cli_str(&a, "chat_template", NULL);
    const char *kvt = cli_str(&a, "kv_type", "F32");
    o.kv_f16 = !strcasecmp(kvt, "F16");
    if (!o.kv_f16 && strcasecmp(kvt, "F32")) rc = et_fail(&e, ET_EUSAGE, "--kv-type must be F16 or F32");
    const char *json = cli_str(&a, "json", NULL), *lora = cli_str(&a, "lora", NULL), *stop = cli_str(&a, "stop", NULL);
    long v;
    char **stops = NULL;
    int n_stops = 0;
    if (!rc && (!o.model || !o.task || a.npos > 1)) rc = et_fail(&e, ET_EUSAGE, "eval needs MODEL and --task TASK\n%s", EVAL_USAGE);
    if (!rc && (rc = cli_int_range(&a, "ctx", 0, 0, 1 << 20, &v, &e)) == 0) o.n_ctx = (int)v;
    if (!rc && (rc = cli_int_range(&a, "threads", 1, 0, 256, &v, &e)) == 0) o.n_threads = v ? (int)v : et_auto_threads();
    if (!rc && (rc = cli_int_range(&a, "n_predict", 128, 1, 1 << 20, &v, &e)) == 0) o.n_predict = (int)v;
    if (!rc && (rc = cli_int_range(&a, "max", 0, 0, 1L << 40, &v, &e)) == 0) o.max_records = v;
    if (!rc && (rc = cli_int_range(&a, "ref_top_k", 64, 1, 1 << 20, &v, &e)) == 0) o.ref_top_k = (int)v;
    if (!rc && lora) rc = parse_lora(lora, &o, &e);
    if (!rc && stop) {
        rc = et_split_list(stop, ET_EVAL_MAX_STOP, &stops, &n_stops, &e);
        for (int i = 0; !rc && i < n_stops; i++) o.stop[i] = stops[i];
        o.n_stop = n_stops;
    }
    prog pg = {.tty = isatty(2)};
    o.progress = on_progress;
    o.progress_user = &pg;
    cJSON *res = NULL;
    if (!rc) rc = et_eval_run(&o, &res, &e);
    if (!rc && json) rc = et_eval_write_json(res, json, &e);
    if (!rc) print_result(res);
    cJSON_Delete(res);
    for (int i = 0; i < n_stops; i++) free(stops[i]);
    free(stops);
    for (int i = 0; i < o.n_lora; i++) free((char *)o.lora[i]);
    cli_free(&a);
    return rc ? cli_report(&e) : 0;
}

static const char LOGITS_USAGE[] =
    "usage: edgetune logits MODEL --data D.h5|TEXT -o REF.h5 [options]\n"
    "  Runs MODEL on the engine over every document (windows of --ctx tokens, each from an empty cache)\n"
    "  and stores, per token position, the top-k next-token log-probabilities over the full vocabulary\n"
    "  (float16), the log-probability of the actual next token (float32) and which positions are scored.\n"
    "  REF.h5 is also a tokens.h5 of the same data: `eval --task kl --ref REF.h5` and distillation read it.\n"
    "  --top-k K           entries per position (default 64);  --full: the whole vocabulary (exact KL)\n"
    "  --sample K          instead of top-k: K draws per position from the teacher at --temperature, stored as\n"
    "                      distinct ids with counts (Random Sampling KD, arXiv:2503.16870); --seed S (default 1)\n"
    "  --temperature T     log_softmax(logits / T) (default 1; KL references need 1)\n"
    "  --ctx N             window length (default or 0: the model's, at most 4096)\n"
    "  --scoring all|llama|stream  windows (all: from each document's start; llama: as llama-perplexity,\n"
    "                      second half of each chunk; stream: each split's documents as one stream in windows\n"
    "                      of --ctx at stride ctx-1 = the rows `edgetune distill --loader stream --seq-len ctx-1`\n"
    "                      reads, so a stored teacher sees exactly the student's context)\n"
    "  --split all|train|valid  --lora A.gguf[:S],...  --threads N (0 = auto)  --isa NAME  --kv-type F32|F16\n"
    "  Format: docs/formats.md (Teacher logits).";

int cmd_logits(int argc, char **argv) {
    static const char *const bools[] = {"help", "full", NULL};
    static const char *const known[] = {"model", "data", "o", "output", "top_k", "full", "temperature", "ctx", "scoring",
                                        "split", "lora", "threads", "isa", "kv_type", "sample", "seed", "help", NULL};
    cli_args a;
    int rc = cli_start(&a, argc, argv, bools, known, LOGITS_USAGE);
    if (rc >= 0) return rc;
    rc = 0;
    et_err e = {0};
    et_logits_opts lo = et_logits_defaults();
    const char *model = cli_str(&a, "model", a.npos >= 1 ? a.pos[0] : NULL);
    const char *data = cli_str(&a, "data", NULL), *out = cli_str(&a, "output", cli_str(&a, "o", NULL));
    const char *lora = cli_str(&a, "lora", NULL);
    long v;
    double t;
    if (!model || !data || !out || a.npos > 1) rc = et_fail(&e, ET_EUSAGE, "logits needs MODEL, --data and -o\n%s", LOGITS_USAGE);
    if (!rc && (rc = cli_int_range(&a, "top_k", 64, 1, 1 << 20, &v, &e)) == 0) lo.top_k = (int)v;
    if (!rc && (rc = cli_int_range(&a, "ctx", 0, 0, 1 << 20, &v, &e)) == 0) lo.n_ctx = (int)v;
    if (!rc && (rc = cli_int_range(&a, "threads", 1, 0, 256, &v, &e)) == 0) lo.n_threads = v ? (int)v : et_auto_threads();
    if (!rc && (rc = cli_int_range(&a, "sample", 0, 0, 65535, &v, &e)) == 0) lo.sample = (int)v;
    if (!rc && (rc = cli_int_range(&a, "seed", 1, 0, LONG_MAX, &v, &e)) == 0) lo.seed = (uint64_t)v;
    if (!rc && lo.sample && (cli_str(&a, "top_k", NULL) || cli_on(&a, "full")))
        rc = et_fail(&e, ET_EUSAGE, "--sample K stores draws; it does not go with --top-k or --full");
    if (!rc && (rc = cli_float_range(&a, "temperature", 1.0, 1e-3, 1e3, &t, &e)) == 0) lo.temperature = t;
    lo.full = cli_on(&a, "full");
    lo.scoring = cli_str(&a, "scoring", "all");
    lo.split = cli_str(&a, "split", "all");
    lo.isa = cli_str(&a, "isa", NULL);
    lo.kv_f16 = !strcasecmp(cli_str(&a, "kv_type", "F32"), "F16");
    et_runner_opts ro;
    et_runner_defaults(&ro);
    if (!rc && lora) rc = et_runner_add_lora(&ro, lora, &e);
    et_engine *m = NULL;
    et_adapter *ad[ET_RUNNER_MAX_LORA] = {0};
    /* the teacher file records the model's and the data's sha256, a second read:
       FIFOs are refused before anything is read from them (common/et.h) */
    if (!rc) rc = et_need_regular(model, "logits records the sha256 of its inputs, a second read", &e);
    if (!rc && data) rc = et_need_regular(data, "logits records the sha256 of its inputs, a second read", &e);
    if (!rc) rc = et_engine_load(&m, model, &e);
    for (int i = 0; !rc && i < ro.n_lora; i++) {
        rc = et_adapter_load(&ad[i], ro.lora[i], m, &e);
        if (!rc) rc = et_engine_attach(m, ad[i], ro.lora_scale[i], &e);
    }
    double tps = 0;
    int64_t rows = 0;
    const double t0 = et_now_s();
    if (!rc) rc = et_logits_run(m, model, data, &lo, out, &tps, &rows, &e);
    const double wall = et_now_s() - t0;
    if (!rc) {
        FILE *f = fopen(out, "rb");
        long bytes = 0;
        if (f) {
            fseek(f, 0, SEEK_END);
            bytes = ftell(f);
            fclose(f);
        }
        char what[32];
        snprintf(what, sizeof what, lo.sample ? "%d draws" : "top-%d", lo.sample ? lo.sample : lo.full ? m->hp.n_vocab : lo.top_k);
        const double rate = wall > 0 ? (double)rows / wall : 0.0;
        printf("logits: %lld positions, %s, %.1f bytes/token, %.1f tokens/s end to end (%.2fx the engine's "
               "forward rate in this run, %.1f tokens/s) -> %s\n", (long long)rows, what,
               rows ? (double)bytes / (double)rows : 0.0, rate, tps > 0 ? rate / tps : 0.0, tps, out);
    }
    if (m) et_engine_detach_all(m);
    for (int i = 0; i < ro.n_lora; i++) {
        et_adapter_free(ad[i]);
        free((char *)ro.lora[i]);
    }
    et_engine_free(m);
    cli_free(&a);
    return rc ? cli_report(&e) : 0;
}
