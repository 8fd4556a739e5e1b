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
    if (!rc) rc = cli_lock_outdir(out, &e);   /* creates it; one run per directory */
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

/* Retired: `edgetune eval --task generate` does what eval-task did (held-out
 * loss of the completions + EOS, greedy exact match, same JSON), with the
 * eval result JSON every other stage reports through (docs/evaluation.md). */
int cmd_eval_task(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "edgetune: eval-task was retired; use\n"
                    "  edgetune eval MODEL [--lora A.gguf] --task generate --data FILE.jsonl --stop '\\n' [--json OUT]\n"
                    "(completion loss as nll_per_token, exact_match, same_json; docs/evaluation.md)\n");
    return ET_EUSAGE;
}
