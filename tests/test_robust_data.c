/* tests/test_robust_data.c — issue 11, items 4 and 5, for every command
 * that pairs a model with token data.
 *
 *  4. One compatibility check (datasets/dataset.h et_ds_check_tokenizer):
 *     a tokens.h5 made with another tokenizer of the same n_vocab (a 512-piece
 *     vocabulary learnt by `edgetune vocab`), or one without a tokenizer
 *     sha256 whose BOS id is not the model's, is refused (exit 2) by
 *     perplexity, eval, logits, lora, train and imatrix with the same message.
 *  5. Nothing to score (an empty text, a tokens.h5 whose documents have one
 *     token) is an input error (exit 2) for perplexity, edgerun --perplexity
 *     and eval, not "perplexity 0.000000 over 0 tokens". */
#include "testutil.h"

#include "../datasets/dataset.h"

static const char *g_model;

static void run_all(const char *data_tmp, int want_rc, const char *want) {
    char data[1024];   /* test_tmp's buffers rotate */
    snprintf(data, sizeof data, "%s", data_tmp);
    const char *cmds[] = {
        "./edgetune perplexity %s %s",
        "./edgetune eval %s --task perplexity --data %s",
        "./edgetune logits %s --data %s -o %s.logits.h5",
        "./edgetune lora --model %s --data %s --out %s.lora --steps 1 --batch-size 1 --seq-len 8",
        "./edgetune train --model %s --data %s --out %s.train --steps 1 --batch-size 1 --seq-len 8",
        /* imatrix checked n_vocab and sha256 only (its own copy of perplexity's tokens.h5 block; now
           et_ds_open_split, shared): a BOS-7 file was accepted */
        "./edgetune imatrix %s --data %s -o %s.imatrix --ctx 16",
    };
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, cmds[i], g_model, data, data);
        int rc = test_run(cmd);
        char *log = test_slurp(test_tmp("cmd.log"));
        if (rc != want_rc || !log || !strstr(log, want)) fprintf(stderr, "%s -> %d\n%s\n", cmd, rc, log ? log : "");
        assert_int_equal(rc, want_rc);
        assert_non_null(strstr(log, want));
        free(log);
    }
}

static void test_other_tokenizer(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    SHARED_OR_SKIP(text, "data/tinystories_sample.txt");
    if (!test_have_edgetune()) return;
    g_model = model;
    char cmd[4096];
    const char *t = test_tmp("ts.txt"), *v = test_tmp("v512.gguf"), *d = test_tmp("other.h5");
    snprintf(cmd, sizeof cmd,
             "head -c 30000 %s > %s && ./edgetune vocab --input %s -o %s --n-vocab 512 && "
             "./edgetune data --tokenizer %s --input %s --separator '<|endoftext|>' --valid-fraction 0.2 -o %s",
             text, t, t, v, v, t, d);
    assert_int_equal(test_run(cmd), 0);
    et_ds *ds;
    et_err e = {0};
    assert_int_equal(et_ds_open(&ds, d, &e), 0);
    assert_int_equal(ds->n_vocab, 512);   /* the same n_vocab as the model: only the sha256 tells */
    et_ds_close(ds);
    run_all(d, 2, "was tokenized with another vocabulary");
}

/* A tokens.h5 without tokenizer_sha256 (as h5py may write it) whose BOS is 7. */
static void test_other_bos(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    if (!test_have_edgetune()) return;
    g_model = model;
    const char *d = test_tmp("bos7.h5");
    et_ds_meta m = {.n_vocab = 512, .bos_id = 7, .eos_id = 2};
    et_ds_writer *w;
    et_err e = {0};
    assert_int_equal(et_ds_writer_open(&w, d, &m, 0, &e), 0);
    int32_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = 7 + (i * 13) % 400;
    for (int k = 0; k < 8; k++) {
        if (k == 6) et_ds_writer_begin_valid(w);
        assert_int_equal(et_ds_writer_add(w, tok, NULL, 64, -1, &e), 0);
    }
    assert_int_equal(et_ds_writer_commit(w, &e), 0);
    run_all(d, 2, "bos_id 7 differs from the");
}

static void test_nothing_to_score(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    if (!test_have_edgetune()) return;
    const char *empty = test_tmp("empty.txt");
    test_spit(empty, "");
    /* documents of one token each */
    const char *d = test_tmp("ones.h5");
    et_ds_meta m = {.n_vocab = 512, .bos_id = 1, .eos_id = 2};
    et_ds_writer *w;
    et_err e = {0};
    assert_int_equal(et_ds_writer_open(&w, d, &m, 0, &e), 0);
    int32_t one = 42;
    for (int k = 0; k < 3; k++) assert_int_equal(et_ds_writer_add(w, &one, NULL, 1, -1, &e), 0);
    assert_int_equal(et_ds_writer_commit(w, &e), 0);
    const char *cmds[] = {"./edgetune perplexity %s %s", "./edgerun -m %s --perplexity %s",
                          "./edgetune eval %s --task perplexity --data %s"};
    char in0[1024], in1[1024];
    snprintf(in0, sizeof in0, "%s", empty);
    snprintf(in1, sizeof in1, "%s", d);
    const char *inputs[] = {in0, in1};
    for (int j = 0; j < 2; j++)
        for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
            if (i == 1 && (j == 1 || access("./edgerun", X_OK))) continue;   /* edgerun reads text */
            char cmd[4096];
            snprintf(cmd, sizeof cmd, cmds[i], model, inputs[j]);
            int rc = test_run(cmd);
            char *log = test_slurp(test_tmp("cmd.log"));
            /* eval words it "no token was scored" */
            int said = log && (strstr(log, "nothing to score") || strstr(log, "no token was scored"));
            if (rc != 2 || !said) fprintf(stderr, "%s -> %d\n%s\n", cmd, rc, log ? log : "");
            assert_int_equal(rc, 2);
            assert_true(said);
            assert_null(strstr(log, "over 0 tokens"));
            free(log);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_other_tokenizer),
        cmocka_unit_test(test_other_bos),
        cmocka_unit_test(test_nothing_to_score),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
