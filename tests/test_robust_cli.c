/* tests/test_robust_cli.c — issue 11, item 7 (and the --out part of the
 * smaller items): an output directory is locked for the run.
 *
 * The test holds DIR/.edgetune.lock itself (flock, its pid inside, as
 * cli_lock_outdir does), then `train`, `lora` and `demo-task` on --out DIR
 * must refuse (exit 1) with a message naming that pid, and write nothing
 * into DIR; once the lock is released the same `lora` run succeeds and
 * removes the *.tmp.<pid> files a killed run left (in DIR and DIR/peft).  A run
 * rejected for its inputs leaves no empty --out directory behind. */
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "testutil.h"

static int count_entries(const char *dir) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 1", dir);   /* only the lock file */
    return system(cmd) == 0;
}

static void test_outdir_locked(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    SHARED_OR_SKIP(text, "data/tinystories_sample.txt");
    if (!test_have_edgetune()) return;
    char cmd[4096];
    const char *tok = test_tmp("tok.h5"), *out = test_tmp("run");
    snprintf(cmd, sizeof cmd,
             "head -c 40000 %s > %s.txt && ./edgetune data --tokenizer %s --input %s.txt --separator "
             "'<|endoftext|>' --valid-fraction 0.1 -o %s",
             text, tok, model, tok, tok);
    assert_int_equal(test_run(cmd), 0);
    assert_int_equal(mkdir(out, 0777), 0);
    char lock[1024];
    snprintf(lock, sizeof lock, "%s/.edgetune.lock", out);
    int fd = open(lock, O_RDWR | O_CREAT, 0666);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    assert_int_equal(write(fd, pid, (size_t)n), n);
    char want[64];
    snprintf(want, sizeof want, "(pid %ld", (long)getpid());
    const char *runs[] = {
        "./edgetune lora --model %s --data %s --out %s --steps 2 --batch-size 2 --seq-len 16 --eval-every 0",
        "./edgetune train --model %s --data %s --out %s --steps 2 --batch-size 2 --seq-len 16 --eval-every 0",
    };
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, runs[i], model, tok, out);
        int rc = test_run(cmd);
        char *log = test_slurp(test_tmp("cmd.log"));
        if (rc != 1 || !log || !strstr(log, want)) fprintf(stderr, "%s -> %d\n%s\n", cmd, rc, log ? log : "");
        assert_int_equal(rc, 1);
        assert_non_null(strstr(log, "in use by another edgetune run"));
        assert_non_null(strstr(log, want));
        free(log);
        assert_true(count_entries(out));   /* nothing written beside the lock */
    }
    snprintf(cmd, sizeof cmd, "./edgetune demo-task --out %s", out);
    assert_int_equal(test_run(cmd), 1);
    assert_true(count_entries(out));
    /* released: the run goes through, records its own pid, and removes the
     * temporary files of killed writes (smaller item: --resume left them) */
    close(fd);
    char stale[1024], stale2[1024], keep[1024];
    snprintf(stale, sizeof stale, "%s/checkpoint.h5.tmp.123456", out);
    snprintf(keep, sizeof keep, "%s/notes.tmp.txt", out);
    test_spit(stale, "partial");
    test_spit(keep, "a user's file");
    snprintf(stale2, sizeof stale2, "%s/peft", out);
    assert_int_equal(mkdir(stale2, 0777), 0);
    snprintf(stale2, sizeof stale2, "%s/peft/adapter_model.safetensors.tmp.77", out);
    test_spit(stale2, "partial");
    snprintf(cmd, sizeof cmd, runs[0], model, tok, out);
    assert_int_equal(test_run(cmd), 0);
    assert_int_not_equal(access(stale, F_OK), 0);
    assert_int_not_equal(access(stale2, F_OK), 0);
    assert_int_equal(access(keep, F_OK), 0);
    char *held = test_slurp(lock);
    assert_non_null(held);
    assert_true(atol(held) > 0 && atol(held) != (long)getpid());
    free(held);
}

static void test_rejected_run_leaves_no_outdir(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    if (!test_have_edgetune()) return;
    char cmd[4096];
    const char *out = test_tmp("never");
    snprintf(cmd, sizeof cmd, "./edgetune lora --model %s --data %s/missing.h5 --out %s --steps 2", model,
             test_tmpdir(), out);
    assert_int_equal(test_run(cmd), 2);
    assert_int_not_equal(access(out, F_OK), 0);
    snprintf(cmd, sizeof cmd, "./edgetune train --model %s --data %s/missing.h5 --out %s --steps 2", model,
             test_tmpdir(), out);
    assert_int_equal(test_run(cmd), 2);
    assert_int_not_equal(access(out, F_OK), 0);
}

/* Smaller item: "A.gguf:nan" was taken as a file name ("cannot open
 * A.gguf:nan"); a scale that parses as a number but is not finite is now
 * refused as such by every command reading FILE[:SCALE]. */
static void test_adapter_scale_not_finite(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    if (!test_have_edgetune()) return;
    const char *cmds[] = {"./edgetune run %s --prompt a --n 2 --lora %s/a.gguf:%s",
                          "./edgetune perplexity %s %s/x.txt --lora %s/a.gguf:%s",
                          "./edgetune merge %s %s/a.gguf:%s -o %s/m.gguf", "./edgerun -m %s -p a -n 2 --lora %s/a.gguf:%s"};
    const char *scales[] = {"nan", "inf", "-1e999"};
    const char *dir = test_tmpdir();
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        if (i == 3 && access("./edgerun", X_OK)) continue;
        for (size_t k = 0; k < 3; k++) {
            char cmd[4096];
            if (i == 1) snprintf(cmd, sizeof cmd, cmds[i], model, dir, dir, scales[k]);
            else if (i == 2) snprintf(cmd, sizeof cmd, cmds[i], model, dir, scales[k], dir);
            else snprintf(cmd, sizeof cmd, cmds[i], model, dir, scales[k]);
            int rc = test_run(cmd);
            char *log = test_slurp(test_tmp("cmd.log"));
            if (rc != 1 || !log || !strstr(log, "is not a finite number"))
                fprintf(stderr, "%s -> %d\n%s\n", cmd, rc, log ? log : "");
            assert_int_equal(rc, 1);
            assert_non_null(strstr(log, "is not a finite number"));
            free(log);
        }
    }
}

/* Smaller items: `run --ctx 0` was accepted (the model's context) while
 * `edgerun -c 0` was refused: 0 now means the model's context in both, 1 is
 * refused by both; `perplexity --split nope` was ignored for text input. */
static void test_ctx_zero_alike(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    if (!test_have_edgetune()) return;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "./edgetune run %s --prompt Once --n 3 --temp 0 --ctx 0", model);
    assert_int_equal(test_run(cmd), 0);
    snprintf(cmd, sizeof cmd, "./edgetune run %s --prompt Once --n 3 --ctx 1", model);
    assert_int_equal(test_run(cmd), 1);
    if (access("./edgerun", X_OK) == 0) {
        snprintf(cmd, sizeof cmd, "./edgerun -m %s -p Once -n 3 --temp 0 -c 0", model);
        assert_int_equal(test_run(cmd), 0);
        snprintf(cmd, sizeof cmd, "./edgerun -m %s -p Once -n 3 -c 1", model);
        assert_int_equal(test_run(cmd), 1);
    }
    const char *t = test_tmp("s.txt");
    test_spit(t, "Once upon a time there was a cat.\n");
    /* the window a perplexity belongs to is stated: the GGUF's context_length by default */
    snprintf(cmd, sizeof cmd, "./edgetune perplexity %s %s", model, t);
    assert_int_equal(test_run(cmd), 0);
    char *said = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(said, "windows of 2048 tokens (the model's context length"));
    free(said);
    snprintf(cmd, sizeof cmd, "./edgetune perplexity %s %s --split nope", model, t);
    assert_int_equal(test_run(cmd), 1);
    char *log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "--split must be"));
    free(log);
}

/* Smaller item: `--seq-len 0` and `--threads 0` silently meant "default" in
 * some commands and were refused in others.  One rule now (common/et.h):
 * 0 = auto in every command (--threads 0: OMP_NUM_THREADS, else the online
 * CPUs; --ctx 0: the model's context; --seq-len 0: min(n_ctx, 256)); a flag
 * with no automatic value (data --pack --seq-len) refuses 0 saying so.
 * run/perplexity/eval/logits/edgerun refused --threads 0 and imatrix --ctx 0
 * before. */
static void test_zero_is_auto(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    SHARED_OR_SKIP(text, "data/tinystories_sample.txt");
    if (!test_have_edgetune()) return;
    char cmd[4096], t[600], tok[600];
    snprintf(t, sizeof t, "%s", test_tmp("z.txt"));
    snprintf(tok, sizeof tok, "%s", test_tmp("z_tok.h5"));
    snprintf(cmd, sizeof cmd, "head -c 12000 %s > %s && ./edgetune data --tokenizer %s --input %s --separator "
             "'<|endoftext|>' --valid-fraction 0.1 -o %s", text, t, model, t, tok);
    assert_int_equal(test_run(cmd), 0);
    struct { const char *fmt, *want; } ok[] = {
        {"OMP_NUM_THREADS=2 ./edgetune run %s --prompt Once --n 2 --temp 0 --threads 0 --stats", "2 threads"},
        {"OMP_NUM_THREADS=2 ./edgerun -m %s -p Once -n 2 --temp 0 -t 0 --stats", "2 threads"},
        {"./edgetune perplexity %s %s --threads 0 --ctx 0", "windows of 2048 tokens"},
        {"./edgetune eval %s --task perplexity --data %s --threads 0 --ctx 0", "perplexity"},
        {"./edgetune logits %s --data %s -o /dev/null --threads 0 --ctx 0 --top-k 4", ""},
        {"OMP_NUM_THREADS=2 ./edgetune imatrix %s --data %s -o /dev/null --ctx 0 --chunks 1 --threads 0",
         "chunks of 2048 available, ubatch 512, 2 threads"},
        {"./edgetune lora --model %s --data %s --steps 1 --batch-size 1 --seq-len 0 --threads 0 --eval-every 0 "
         "--warmup 0 --out ", "x 256 x 1"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        if (strstr(ok[i].fmt, "edgerun") && access("./edgerun", X_OK)) continue;
        const char *data = strstr(ok[i].fmt, "imatrix") || strstr(ok[i].fmt, "perplexity %s") ? t : tok;
        snprintf(cmd, sizeof cmd, ok[i].fmt, model, data);
        if (strstr(cmd, "--out ")) snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), "%s", test_tmp("z_lora"));
        int rc = test_run(cmd);
        char *log = test_slurp(test_tmp("cmd.log"));
        if (rc || !strstr(log, ok[i].want)) fprintf(stderr, "%s\n%s\n", cmd, log);
        assert_int_equal(rc, 0);
        assert_non_null(strstr(log, ok[i].want));
        free(log);
    }
    snprintf(cmd, sizeof cmd, "./edgetune data --tokenizer %s --input %s --pack --seq-len 0 -o %s.packed.h5", model, t, tok);
    assert_int_equal(test_run(cmd), 1);
    char *log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "0 has no automatic value here"));
    free(log);
}

/* New user's first hour: (a) reusing a run's recipe.json with --config kept
 * the values derived for the old run (warmup 3 of a 30-step run applied to a
 * 2-step run, min_lr = lr/10 of the old lr); the recipe now lists them under
 * "derived" and --config derives them again, while user-set values are kept.
 * (b) after --resume, --log-every was lost (a line per step) and "validation
 * loss: before" was the last evaluation before the interruption, not step 0's;
 * a resume keeps the derived values of its run (warmup stays 1 when the run
 * is extended from 10 to 20 steps). */
static double before_loss(const char *log, long *step) {
    const char *p = strstr(log, "validation loss: before ");
    assert_non_null(p);
    double v = 0;
    assert_int_equal(sscanf(p, "validation loss: before %lf (step %ld)", &v, step), 2);
    return v;
}

static void test_recipe_derived_and_resume(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    SHARED_OR_SKIP(text, "data/tinystories_sample.txt");
    if (!test_have_edgetune()) return;
    char cmd[4096], tok[600], a[600], b[600], c[600], d[600], rec[700];
    snprintf(tok, sizeof tok, "%s", test_tmp("r_tok.h5"));
    snprintf(a, sizeof a, "%s", test_tmp("r_a"));
    snprintf(b, sizeof b, "%s", test_tmp("r_b"));
    snprintf(c, sizeof c, "%s", test_tmp("r_c"));
    snprintf(d, sizeof d, "%s", test_tmp("r_d"));
    snprintf(cmd, sizeof cmd, "head -c 20000 %s > %s.txt && ./edgetune data --tokenizer %s --input %s.txt --separator "
             "'<|endoftext|>' --valid-fraction 0.1 -o %s", text, tok, model, tok, tok);
    assert_int_equal(test_run(cmd), 0);
    const char *common = "--batch-size 1 --seq-len 16 --eval-batches 2 --rank 2";
    snprintf(cmd, sizeof cmd, "./edgetune lora --model %s --data %s --out %s --steps 30 --lr 1e-3 --eval-every 0 %s",
             model, tok, a, common);
    assert_int_equal(test_run(cmd), 0);
    snprintf(rec, sizeof rec, "%s/recipe.json", a);
    char *r = test_slurp(rec);
    assert_non_null(strstr(r, "\"warmup\":\t3"));
    assert_non_null(strstr(r, "\"min_lr\":\t0.0001"));
    assert_non_null(strstr(r, "\"derived\":\t\"min_lr,warmup,"));
    free(r);
    /* (a) reuse for 2 steps: warmup derived again (2/10 = 0), no warmup warning; the user's lr kept */
    snprintf(cmd, sizeof cmd, "./edgetune lora --config %s --out %s --steps 2", rec, b);
    assert_int_equal(test_run(cmd), 0);
    char *log = test_slurp(test_tmp("cmd.log"));
    assert_null(strstr(log, "is not below --steps"));
    free(log);
    snprintf(rec, sizeof rec, "%s/recipe.json", b);
    r = test_slurp(rec);
    assert_non_null(strstr(r, "\"warmup\":\t0"));
    assert_non_null(strstr(r, "\"lr\":\t0.001"));
    free(r);
    /* a new lr: min_lr derived again from it */
    snprintf(rec, sizeof rec, "%s/recipe.json", a);
    snprintf(cmd, sizeof cmd, "./edgetune lora --config %s --out %s --steps 2 --lr 2e-3", rec, c);
    assert_int_equal(test_run(cmd), 0);
    snprintf(rec, sizeof rec, "%s/recipe.json", c);
    r = test_slurp(rec);
    assert_non_null(strstr(r, "\"min_lr\":\t0.0002"));
    free(r);
    /* (b) resume: --log-every and the step-0 "before" loss survive, derived warmup kept */
    snprintf(cmd, sizeof cmd, "./edgetune lora --model %s --data %s --out %s --steps 10 --eval-every 5 --log-every 5 %s",
             model, tok, d, common);
    assert_int_equal(test_run(cmd), 0);
    log = test_slurp(test_tmp("cmd.log"));
    long s0 = -1;
    double v0 = before_loss(log, &s0);
    assert_int_equal(s0, 0);
    free(log);
    snprintf(cmd, sizeof cmd, "./edgetune lora --resume --out %s --steps 20", d);
    assert_int_equal(test_run(cmd), 0);
    log = test_slurp(test_tmp("cmd.log"));
    long s1 = -1;
    double v1 = before_loss(log, &s1);
    if (s1 != 0) fprintf(stderr, "%s\n", log);
    assert_int_equal(s1, 0);
    assert_true(v1 == v0);
    assert_non_null(strstr(log, "step 15/20 loss"));
    assert_null(strstr(log, "step 11/20 loss"));   /* --log-every 5 kept */
    free(log);
    snprintf(rec, sizeof rec, "%s/recipe.json", d);
    r = test_slurp(rec);
    assert_non_null(strstr(r, "\"warmup\":\t1,"));   /* 10/10, not 20/10: the same run */
    assert_non_null(strstr(r, "\"log_every\":\t5"));
    assert_non_null(strstr(r, "warmup"));
    assert_non_null(strstr(strstr(r, "\"derived\""), "warmup"));
    free(r);
}

/* Smaller items: perplexity on invalid UTF-8 did not name the file
 * ("text: invalid UTF-8 ..."); `train --resume` on a LoRA run said
 * "unknown flag --targets". */
static void test_messages_name_things(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    SHARED_OR_SKIP(text, "data/tinystories_sample.txt");
    if (!test_have_edgetune()) return;
    char bad[600], cmd[4096];
    snprintf(bad, sizeof bad, "%s", test_tmp("bad_utf8.txt"));
    test_spit(bad, "Once upon \xff\xfe a time");
    const char *fmts[] = {"./edgetune perplexity %s %s", "./edgerun -m %s --perplexity %s"};
    for (int i = 0; i < 2; i++) {
        if (i == 1 && access("./edgerun", X_OK)) continue;
        snprintf(cmd, sizeof cmd, fmts[i], model, bad);
        assert_int_equal(test_run(cmd), 2);
        char *log = test_slurp(test_tmp("cmd.log"));
        char want[700];
        snprintf(want, sizeof want, "%s: invalid UTF-8 at byte offset 10", bad);
        if (!strstr(log, want)) fprintf(stderr, "%s\n%s\n", cmd, log);
        assert_non_null(strstr(log, want));
        free(log);
    }
    char tok[600], out[600];
    snprintf(tok, sizeof tok, "%s", test_tmp("m_tok.h5"));
    snprintf(out, sizeof out, "%s", test_tmp("m_lora"));
    snprintf(cmd, sizeof cmd,
             "head -c 30000 %s > %s.txt && ./edgetune data --tokenizer %s --input %s.txt --separator "
             "'<|endoftext|>' --valid-fraction 0.1 -o %s && ./edgetune lora --model %s --data %s --out %s --steps 1 "
             "--batch-size 1 --seq-len 16 --eval-every 0 --warmup 2",
             text, tok, model, tok, tok, model, tok, out);
    assert_int_equal(test_run(cmd), 0);
    /* new user's first hour: PEFT's base_model_name_or_path is the base's general.name, not null */
    char pcfg[700];
    snprintf(pcfg, sizeof pcfg, "%s/peft/adapter_config.json", out);
    assert_true(test_file_contains(pcfg, "\"base_model_name_or_path\":\t\"llama\""));
    /* training-loop audit: a warmup as long as the run is no longer silent */
    char *warn = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(warn, "--warmup 2 is not below --steps 1: the peak learning rate"));
    free(warn);
    snprintf(cmd, sizeof cmd, "./edgetune train --resume --out %s", out);
    assert_int_equal(test_run(cmd), 1);
    char *log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "is a LoRA run"));
    assert_non_null(strstr(log, "edgetune lora --resume"));
    assert_null(strstr(log, "unknown flag"));
    free(log);
    /* new user's first hour: an unknown flag gets the nearest known one */
    snprintf(cmd, sizeof cmd, "./edgetune lora --model %s --data %s --out %s --stepz 3", model, tok, out);
    assert_int_equal(test_run(cmd), 1);
    log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "unknown flag --stepz (did you mean --steps?)"));
    free(log);
    /* a resume with another AdamW refuses before it rewrites the recipe */
    char recipe[700];
    snprintf(recipe, sizeof recipe, "%s/recipe.json", out);
    char *before = test_slurp(recipe);
    snprintf(cmd, sizeof cmd, "./edgetune lora --resume --out %s --steps 2 --beta2 0.5", out);
    assert_int_equal(test_run(cmd), 1);
    log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "the run's AdamW beta2 was 0.999, this resume has 0.5"));
    free(log);
    char *after = test_slurp(recipe);
    assert_string_equal(before, after);
    free(before);
    free(after);
    snprintf(cmd, sizeof cmd, "./edgetune lora --resume --out %s --steps 2", out);
    assert_int_equal(test_run(cmd), 0);
}

/* Smaller items: a FIFO carrying a valid GGUF was "bad magic" for `edgetune
 * run` (the format sniffing ate its first bytes) while edgerun read it; the
 * loaders that need a file (convert, train, lora) now say so; a text file
 * named like a tokens.h5 was read as text by perplexity and eval. */
static void test_fifo_and_fake_h5(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    if (!test_have_edgetune()) return;
    char fifo[600], cmd[4096];
    snprintf(fifo, sizeof fifo, "%s", test_tmp("model.fifo"));
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0666), 0);
    /* `timeout`: a reader that opens the FIFO a second time would wait forever for a writer; that must fail
       the test, not hang the suite.  It hung under the sanitizer build (7 Dec): engine/hugecopy.c opened the
       FIFO, closed it unread (releasing the writer, whose next write then died of SIGPIPE), and the loader's
       own open waited for a writer that had gone; test_engine_hugecopy.c:test_fifo_not_opened pins it. */
    snprintf(cmd, sizeof cmd, "timeout 120 sh -c 'cat %s > %s & exec ./edgetune run %s --prompt Once --n 4 --temp 0'",
             model, fifo, fifo);
    assert_int_equal(test_run(cmd), 0);
    /* the rule (common/et.h): no writer -> exit 2 after ET_FIFO_WAIT_S seconds, naming the FIFO */
    snprintf(cmd, sizeof cmd, "ET_FIFO_WAIT_S=1 timeout 120 ./edgetune run %s --prompt Once --n 4", fifo);
    assert_int_equal(test_run(cmd), 2);
    char *log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "a FIFO with no writer: nothing arrived in 1 s"));
    free(log);
    /* readers that seek (HDF5) or read an input twice (eval, logits, quantize) refuse a FIFO without
       opening it, at once and with no writer (before: perplexity and eval sniffed it and waited forever) */
    char fifo_h5[600];
    snprintf(fifo_h5, sizeof fifo_h5, "%s", test_tmp("data.fifo.h5"));
    unlink(fifo_h5);
    assert_int_equal(mkfifo(fifo_h5, 0666), 0);
    const struct { const char *fmt, *a, *b; } refusals[] = {
        {"./edgetune perplexity %s %s", model, fifo_h5},
        {"./edgetune eval %s --task perplexity --data %s", model, fifo_h5},
        {"./edgetune logits %s --data %s -o /dev/null", model, fifo_h5},
        {"./edgetune eval %s --task perplexity --data %s", fifo_h5, model},
        {"./edgetune quantize %s %s.q8.gguf --type Q8_0", fifo_h5, fifo_h5}};
    for (int i = 0; i < 5; i++) {
        char c2[2048];
        snprintf(c2, sizeof c2, refusals[i].fmt, refusals[i].a, refusals[i].b);
        snprintf(cmd, sizeof cmd, "ET_FIFO_WAIT_S=60 timeout 30 %s", c2);
        assert_int_equal(test_run(cmd), 2);
        log = test_slurp(test_tmp("cmd.log"));
        if (!strstr(log, "not a regular file")) fprintf(stderr, "%s:\n%s\n", c2, log);
        assert_non_null(strstr(log, "not a regular file"));
        free(log);
    }
    unlink(fifo_h5);
    snprintf(cmd, sizeof cmd,
             "timeout 120 sh -c '(cat %s > %s 2>/dev/null &); ./edgetune convert %s -o %s.gguf; rc=$?; cat %s > /dev/null; exit $rc'",
             model, fifo, fifo, fifo, fifo);
    assert_int_equal(test_run(cmd), 2);
    log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "not a regular file"));
    free(log);
    char fake[600];
    snprintf(fake, sizeof fake, "%s", test_tmp("fake.h5"));
    test_spit(fake, "Once upon a time there was a cat. It liked milk.\n");
    const char *fmts[] = {"./edgetune perplexity %s %s", "./edgetune eval %s --task perplexity --data %s"};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, fmts[i], model, fake);
        assert_int_equal(test_run(cmd), 2);
        log = test_slurp(test_tmp("cmd.log"));
        assert_non_null(strstr(log, "not an HDF5 file"));
        free(log);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_fake_h5),
        cmocka_unit_test(test_messages_name_things),
        cmocka_unit_test(test_ctx_zero_alike),
        cmocka_unit_test(test_zero_is_auto),
        cmocka_unit_test(test_recipe_derived_and_resume),
        cmocka_unit_test(test_adapter_scale_not_finite),
        cmocka_unit_test(test_outdir_locked),
        cmocka_unit_test(test_rejected_run_leaves_no_outdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
