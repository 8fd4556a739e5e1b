/* cli/cmd_demo.c — the task behind `make demo` (docs/demo.md):
 *   `edgetune demo-task`  writes the smart-home task (lora/demo_task.h) as
 *                         JSONL splits and the base model's corpus
 *                         (lora/demo_corpus.h);
 *   `edgetune eval-task`  scores a model, with or without LoRA adapters,
 *                         on prompt/completion records through the engine
 *                         (lora/demo_eval.h): held-out loss and greedy
 *                         exact-match accuracy. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "../lora/demo_corpus.h"
#include "../lora/demo_eval.h"
#include "../lora/demo_task.h"
#include "run_opts.h"

/* ------------------------------------------------------------ demo-task */

static int path_in(char *buf, size_t cap, const char *dir, const char *name, et_err *e) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= cap ? et_fail(e, ET_EUSAGE, "%s: path too long", dir) : 0;
}

int cmd_demo_task(int argc, char **argv) {
    static const char *const known[] = {"out", "output", "seed", "n_train", "n_valid", "n_test", "heldout_fraction",
                                        "style", NULL};
    cli_args a;
    et_err e = {0};
    int rc = cli_parse(&a, argc, argv, NULL, &e);
    if (!rc) rc = cli_check_known(&a, known, &e);
    if (!rc && a.npos > 0) rc = et_fail(&e, ET_EUSAGE, "unexpected argument '%s'", a.pos[0]);
    const char *out = cli_str(&a, "out", cli_str(&a, "output", NULL));
    if (!rc && !out) rc = et_fail(&e, ET_EUSAGE, "demo-task needs --out DIR (see `edgetune help demo-task`)");
    demo_task_opts o = demo_task_defaults();
    long seed = 0, n_train = 0, n_valid = 0, n_test = 0;
    double hf = 0;
    if (!rc && !(rc = cli_int(&a, "seed", (long)o.seed, &seed, &e)) &&
        !(rc = cli_int(&a, "n_train", o.n_train, &n_train, &e)) && !(rc = cli_int(&a, "n_valid", 100, &n_valid, &e)) &&
        !(rc = cli_int(&a, "n_test", o.n_test, &n_test, &e)) &&
        !(rc = cli_float(&a, "heldout_fraction", o.heldout_fraction, &hf, &e))) {
        if (seed < 0 || n_train < 1 || n_train > 10000000 || n_valid < 1 || n_valid > 1000000 || n_test < 1 ||
            n_test > 1000000)
            rc = et_fail(&e, ET_EUSAGE, "--seed >= 0, --n-train in [1, 10^7], --n-valid and --n-test in [1, 10^6]");
        o.seed = (uint64_t)seed, o.n_train = (int)n_train, o.n_test = (int)(n_valid + n_test);
        o.heldout_fraction = hf;
    }
    const char *style_name = cli_str(&a, "style", "prompt");
    int style = !strcmp(style_name, "alpaca") ? DEMO_STYLE_ALPACA : DEMO_STYLE_PROMPT;
    if (!rc && strcmp(style_name, "prompt") && strcmp(style_name, "alpaca"))
        rc = et_fail(&e, ET_EUSAGE, "--style: '%s' is not prompt or alpaca", style_name);
    if (!rc && mkdir(out, 0777) && errno != EEXIST) rc = et_fail(&e, ET_ERUN, "%s: cannot create the directory", out);
    demo_task t = {0};
    if (!rc) rc = demo_task_generate(&t, &o, &e);
    /* the held-out examples: the first part validates, the rest is the test */
    int nv = 0, nt = 0;
    if (!rc) {
        nv = t.n_test < 2 * (int)n_valid ? t.n_test / 2 : (int)n_valid;
        nt = t.n_test - nv;
        if (nv < 1 || nt < 1) rc = et_fail(&e, ET_EUSAGE, "demo-task: only %d held-out examples", t.n_test);
    }
    char p_train[4096], p_valid[4096], p_test[4096], p_corpus[4096];
    demo_corpus_stats cs;
    if (!rc && !(rc = path_in(p_train, sizeof p_train, out, "train.jsonl", &e)) &&
        !(rc = path_in(p_valid, sizeof p_valid, out, "valid.jsonl", &e)) &&
        !(rc = path_in(p_test, sizeof p_test, out, "test.jsonl", &e)) &&
        !(rc = path_in(p_corpus, sizeof p_corpus, out, "pretrain.txt", &e)) &&
        !(rc = demo_task_write_jsonl(t.train, t.n_train, p_train, style, &e)) &&
        !(rc = demo_task_write_jsonl(t.test, nv, p_valid, style, &e)) &&
        !(rc = demo_task_write_jsonl(t.test + nv, nt, p_test, style, &e)) &&
        !(rc = demo_corpus_write(t.train, t.n_train, p_corpus, &cs, &e))) {
        int hp = 0, hs = 0;
        for (int i = 0; i < t.n_test; i++) hp += t.test[i].heldout_phrasing, hs += t.test[i].heldout_slot;
        printf("demo task (seed %llu): %d distinct training commands, %d held-out available\n",
               (unsigned long long)o.seed, t.n_train_distinct, t.n_test_available);
        printf("  %s: %d examples\n", p_train, t.n_train);
        printf("  %s: %d held-out examples\n", p_valid, nv);
        printf("  %s: %d held-out examples (held out: %d by phrasing, %d by slot, over both files)\n", p_test, nt, hp,
               hs);
        printf("  %s: base corpus, %d replies + %d logs, %zu bytes\n", p_corpus, cs.n_replies, cs.n_logs, cs.bytes);
        char prompt[512];
        if (demo_task_prompt(style, t.test[nv].command, prompt, sizeof prompt))
            printf("  example: %s%s\n", prompt, t.test[nv].action);
    }
    demo_task_free(&t);
    cli_free(&a);
    return rc ? cli_report(&e) : 0;
}

/* ------------------------------------------------------------ eval-task */

static const char EVAL_USAGE[] =
    "usage: edgetune eval-task MODEL --task FILE.jsonl [options]\n"
    "  MODEL: .gguf (or a llama2.c .bin / HF directory, imported to F32)\n"
    "  --task FILE        prompt/completion JSONL (edgetune demo-task writes train/valid/test.jsonl)\n"
    "  --lora A[:S][,B]   GGUF LoRA adapters applied at run time (scale S, default 1)\n"
    "  --n N              most tokens generated per prompt (default 64)\n"
    "  --max N            only the first N records (default all)\n"
    "  --no-generate      loss only;  --no-loss  accuracy only\n"
    "  --threads N        (default 1);  --kv-type F32|F16 (default F32);  --tokenizer F (llama2.c)\n"
    "  --ctx N            KV cache length (default: the model's, at most 1024)\n"
    "  --show K           print K prompts with their answers (default 0)\n"
    "  --json OUT         write the figures as a JSON object\n"
    "  prints the loss of the completions (nats/token, EOS included, as the trainer's masked\n"
    "  validation loss) and the greedy exact-match accuracy, plus a line\n"
    "  'result: records=N loss=L exact=K json=J accuracy=A' for scripts.";

static int write_json(const char *path, const char *model, const char *lora, const char *task,
                      const demo_eval_result *r, const demo_eval_opts *o, et_err *e) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    cJSON_AddStringToObject(j, "model", model);
    if (lora) cJSON_AddStringToObject(j, "lora", lora);
    cJSON_AddStringToObject(j, "task", task);
    cJSON_AddNumberToObject(j, "records", r->n);
    if (o->do_loss) {
        cJSON_AddNumberToObject(j, "loss", r->n_loss_tokens ? r->nll / (double)r->n_loss_tokens : 0.0);
        cJSON_AddNumberToObject(j, "loss_tokens", (double)r->n_loss_tokens);
    }
    if (o->do_generate) {
        cJSON_AddNumberToObject(j, "exact", r->n_exact);
        cJSON_AddNumberToObject(j, "json_match", r->n_json);
        cJSON_AddNumberToObject(j, "accuracy", r->n ? (double)r->n_exact / r->n : 0.0);
    }
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    if (!txt) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    et_afile f;
    int rc = et_afile_open(&f, path, e);
    if (!rc) {
        fprintf(f.f, "%s\n", txt);
        rc = et_afile_commit(&f, e);
    }
    free(txt);
    return rc;
}

/* The command of a "Command: X\nAction:\n" prompt (or the prompt itself), one line. */
static void short_prompt(const char *p, char *out, size_t cap) {
    const char *s = strncmp(p, "Command: ", 9) ? p : p + 9;
    size_t n = 0;
    for (; *s && *s != '\n' && n + 1 < cap; s++) out[n++] = *s;
    out[n] = 0;
}

int cmd_eval_task(int argc, char **argv) {
    static const char *const bools[] = {"no_generate", "no_loss", "help", NULL};
    static const char *const known[] = {"model", "task", "lora", "n", "max", "no_generate", "no_loss", "threads", "ctx",
                                        "kv_type", "tokenizer", "show", "json", "help", NULL};
    cli_args a;
    et_err e = {0};
    int rc = cli_parse(&a, argc, argv, bools, &e);
    if (!rc) rc = cli_check_known(&a, known, &e);
    const char *model = cli_str(&a, "model", a.npos > 0 ? a.pos[0] : NULL), *task = cli_str(&a, "task", NULL);
    if (!rc && cli_str(&a, "help", NULL)) {
        printf("%s\n", EVAL_USAGE);
        cli_free(&a);
        return 0;
    }
    if (!rc && (!model || !task || a.npos > 1)) rc = et_fail(&e, ET_EUSAGE, "eval-task needs MODEL and --task FILE");
    demo_eval_opts o = demo_eval_defaults();
    long n_predict = 0, max = 0, threads = 0, show = 0, ctx = 0;
    if (!rc && !(rc = cli_int(&a, "n", o.n_predict, &n_predict, &e)) && !(rc = cli_int(&a, "max", 0, &max, &e)) &&
        !(rc = cli_int(&a, "ctx", 0, &ctx, &e)) &&
        !(rc = cli_int(&a, "threads", 1, &threads, &e)) && !(rc = cli_int(&a, "show", 0, &show, &e))) {
        if (n_predict < 1 || n_predict > 4096 || max < 0 || threads < 1 || threads > 256 || show < 0 || ctx < 0 ||
            ctx > (1 << 20))
            rc = et_fail(&e, ET_EUSAGE, "--n in [1, 4096], --max >= 0, --threads in [1, 256], --show >= 0, "
                                        "--ctx in [0, 2^20]");
        o.n_predict = (int)n_predict, o.max_records = (int)max, o.n_threads = (int)threads, o.n_ctx = (int)ctx;
        o.do_generate = !cli_str(&a, "no_generate", NULL);
        o.do_loss = !cli_str(&a, "no_loss", NULL);
    }
    const char *kv = cli_str(&a, "kv_type", NULL);
    if (!rc && kv) rc = et_runner_kv_type(kv, &o.kv_type, &e);
    if (rc) {
        fprintf(stderr, "%s\n", EVAL_USAGE);
        cli_free(&a);
        return cli_report(&e);
    }
    demo_records recs = {0};
    rc = demo_records_read(&recs, task, &e);
    et_runner_opts ro;
    et_runner_defaults(&ro);
    ro.kv_type = o.kv_type;
    ro.n_ctx = 64; /* the runner's own state is not used: keep it small */
    const char *lora = cli_str(&a, "lora", NULL);
    if (!rc && lora) rc = et_runner_add_lora(&ro, lora, &e);
    et_runner r;
    et_model mm;
    int have_mm = 0, opened = 0;
    if (!rc && !(rc = cli_open_runner(&r, &ro, model, cli_str(&a, "tokenizer", NULL), &mm, &have_mm, &e)))
        opened = 1;
    demo_eval_result res = {0};
    if (!rc) {
        fprintf(stderr, "eval-task: %s%s%s on %s (%d records)...\n", model, lora ? " + " : "", lora ? lora : "", task,
                o.max_records && o.max_records < recs.n ? o.max_records : recs.n);
        rc = demo_eval_run(r.m, &recs, &o, &res, &e);
        if (rc) { /* name the file */
            char msg[sizeof e.msg];
            snprintf(msg, sizeof msg, "%s", e.msg);
            et_fail(&e, rc, "%s: %s", task, msg);
        }
    }
    if (!rc) {
        printf("%s%s%s on %s: %d records\n", model, lora ? " + " : "", lora ? lora : "", task, res.n);
        double loss = res.n_loss_tokens ? res.nll / (double)res.n_loss_tokens : 0.0;
        if (o.do_loss)
            printf("  completion loss %.4f nats/token over %ld tokens (%.2f s)\n", loss, res.n_loss_tokens, res.t_loss_s);
        if (o.do_generate)
            printf("  exact match %d/%d = %.1f%%, same JSON %d/%d (greedy, %ld tokens in %.2f s)\n", res.n_exact, res.n,
                   res.n ? 100.0 * res.n_exact / res.n : 0.0, res.n_json, res.n, res.n_gen_tokens, res.t_gen_s);
        for (int i = 0; o.do_generate && i < res.n && i < show; i++) {
            char sp[256];
            short_prompt(recs.r[i].prompt, sp, sizeof sp);
            printf("  %s %-44s -> %s\n", demo_task_exact(recs.r[i].completion, res.answers[i]) ? "ok " : "BAD", sp,
                   res.answers[i]);
        }
        printf("result: records=%d", res.n);
        if (o.do_loss) printf(" loss=%.4f", loss);
        if (o.do_generate) printf(" exact=%d json=%d accuracy=%.4f", res.n_exact, res.n_json,
                                  res.n ? (double)res.n_exact / res.n : 0.0);
        printf("\n");
        const char *jp = cli_str(&a, "json", NULL);
        if (jp) rc = write_json(jp, model, lora, task, &res, &o, &e);
    }
    demo_eval_result_free(&res);
    if (opened) et_runner_close(&r);
    if (have_mm) et_model_free(&mm);
    demo_records_free(&recs);
    cli_free(&a);
    return rc ? cli_report(&e) : 0;
}
