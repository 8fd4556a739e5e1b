/* tests/test_robust_model.c — issue 11, item 6: every model loader checks
 * the vocabulary against the embedding/output rows (the shared
 * et_tok_check_rows, datasets/tokenizer.h).  A copy of stories260K whose
 * token list has 100 entries over its 512 token_embd rows used to be
 * accepted by `perplexity` and `run` (which failed only when decoding); now
 * the engine loader (run, edgerun, perplexity, eval, logits) and the export
 * loader (convert, train, lora, merge) refuse it with the same message. */
#include <errno.h>
#include <sys/stat.h>

#include "testutil.h"

#include "../datasets/dataset.h"

#include "../engine/engine.h"
#include "../export/gguf.h"
#include "../export/model.h"
#include "../export/safetensors.h"
#include "../lora/adapter.h"

/* stories260K.gguf with tokenizer.ggml.{tokens,scores,token_type} cut to n. */
static const char *short_vocab_model(const char *src, uint64_t n) {
    gguf_file g;
    et_err e = {0};
    assert_int_equal(gguf_open(&g, src, &e), 0);
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    const char **strs = NULL;
    uint64_t *lens = NULL;
    for (uint64_t i = 0; i < g.n_kv; i++) {
        const gguf_kv *kv = &g.kv[i];
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
        if (!strcmp(key, "tokenizer.ggml.tokens")) {
            assert_true(kv->n >= n);
            strs = malloc(sizeof *strs * n);
            lens = malloc(sizeof *lens * n);
            for (uint64_t j = 0; j < n; j++) strs[j] = kv->strs[j].ptr, lens[j] = kv->strs[j].len;
            assert_int_equal(gguf_set_arr_str(w, key, strs, lens, n), 0);
        } else if (!strcmp(key, "tokenizer.ggml.scores") || !strcmp(key, "tokenizer.ggml.token_type")) {
            assert_true(kv->n >= n);
            assert_int_equal(gguf_set_arr(w, key, kv->arr_type, kv->data, n), 0);
        } else {
            assert_int_equal(gguf_set_kv_from(w, &g, i), 0);
        }
    }
    for (uint64_t i = 0; i < g.n_tensors; i++) assert_int_equal(gguf_add_tensor_from(w, &g, i, &e), 0);
    const char *out = test_tmp("short_vocab.gguf");
    assert_int_equal(gguf_writer_write(w, out, &e), 0);
    gguf_writer_free(w);
    free(strs);
    free(lens);
    gguf_close(&g);
    return out;
}

static void test_vocab_vs_embedding(void **state) {
    (void)state;
    SHARED_OR_SKIP(src, "models/stories260K/stories260K.gguf");
    const char *path = short_vocab_model(src, 100);
    const char *want = "the tokenizer has 100 tokens but the model's vocabulary is 512 (the rows of token_embd.weight)";
    et_err e = {0};
    et_engine *m = NULL;
    assert_int_equal(et_engine_load(&m, path, &e), ET_EINPUT);
    assert_null(m);
    assert_non_null(strstr(e.msg, want));
    et_model mm;
    memset(&e, 0, sizeof e);
    assert_int_equal(et_model_load(&mm, path, NULL, &e), ET_EINPUT);
    /* the export loader sizes the vocabulary by the token list (as llama.cpp) and
     * refuses the 512-row embedding by its shape, before reading the tokenizer */
    assert_non_null(strstr(e.msg, "token_embd.weight' has shape [64, 512], expected [64, 100]"));
    /* the unmodified model still loads both ways */
    assert_int_equal(et_engine_load(&m, src, &e), 0);
    et_engine_free(m);
    assert_int_equal(et_model_load(&mm, src, NULL, &e), 0);
    et_model_free(&mm);
    if (!test_have_edgetune()) return;
    const char *text = test_tmp("v.txt");
    test_spit(text, "Once upon a time there was a little dog. The dog liked to run in the sun.\n");
    char cmd[4096];
    const char *fmts[] = {"./edgetune perplexity %s %s", "./edgetune run %s --prompt Once --n 4",
                          "./edgetune convert %s -o %s.f16.gguf --type F16", "./edgerun -m %s -p Once -n 4"};
    for (size_t i = 0; i < sizeof fmts / sizeof *fmts; i++) {
        if (i == 0) snprintf(cmd, sizeof cmd, fmts[i], path, text);
        else if (i == 2) snprintf(cmd, sizeof cmd, fmts[i], path, path);
        else if (i == 3 && access("./edgerun", X_OK)) continue;
        else snprintf(cmd, sizeof cmd, fmts[i], path);
        int rc = test_run(cmd);
        char *log = test_slurp(test_tmp("cmd.log"));
        const char *w = i == 2 ? "expected [64, 100]" : want;
        if (rc != 2 || !log || !strstr(log, w)) fprintf(stderr, "%s -> %d\n%s\n", cmd, rc, log ? log : "");
        assert_int_equal(rc, 2);
        assert_non_null(strstr(log, w));
        free(log);
    }
}

/* Smaller item: llama2.c errors printed the size after the mapping was
 * closed ("0 bytes"). */
static void test_llama2c_size_in_messages(void **state) {
    (void)state;
    const char *p = test_tmp("short.bin");
    test_spit(p, "0123456789abcdefghij");   /* 20 bytes */
    et_model m;
    et_err e = {0};
    assert_int_equal(et_model_load_llama2c(&m, p, NULL, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "20 bytes, too short"));
    /* a sane header (dim 8, hidden 16, 1 layer, 2 heads, 2 kv heads, vocab 4, seq 4) with no weights */
    int32_t h[7] = {8, 16, 1, 2, 2, 4, 4};
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(h, sizeof h, 1, f), 1);
    fputs("0123456789ab", f);   /* 28 + 12 = 40 bytes */
    fclose(f);
    memset(&e, 0, sizeof e);
    assert_int_equal(et_model_load_llama2c(&m, p, NULL, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, ": 40 bytes, but the header"));
}

/* Smaller item: a symlink loop was reported as "no such file". */
static void test_symlink_loop(void **state) {
    (void)state;
    char a[600], b[600];
    snprintf(a, sizeof a, "%s", test_tmp("loop_a"));
    snprintf(b, sizeof b, "%s", test_tmp("loop_b"));
    unlink(a);
    unlink(b);
    assert_int_equal(symlink(b, a), 0);
    assert_int_equal(symlink(a, b), 0);
    et_model m;
    et_err e = {0};
    assert_int_equal(et_model_load(&m, a, NULL, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, strerror(ELOOP)));
    et_ds *ds;
    memset(&e, 0, sizeof e);
    assert_int_not_equal(et_ds_open(&ds, a, &e), 0);
    assert_non_null(strstr(e.msg, strerror(ELOOP)));
}

/* stories260K.gguf with one u32 key set to v (added when absent). */
static const char *with_u32(const char *src, const char *name, const char *key, uint32_t v) {
    gguf_file g;
    et_err e = {0};
    assert_int_equal(gguf_open(&g, src, &e), 0);
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    for (uint64_t i = 0; i < g.n_kv; i++) assert_int_equal(gguf_set_kv_from(w, &g, i), 0);
    assert_int_equal(gguf_set_u32(w, key, v), 0);   /* replaces in place */
    for (uint64_t i = 0; i < g.n_tensors; i++) assert_int_equal(gguf_add_tensor_from(w, &g, i, &e), 0);
    static char out[8][600];
    static int k;
    char *o = out[k++ & 7];
    snprintf(o, sizeof out[0], "%s", test_tmp(name));
    assert_int_equal(gguf_writer_write(w, o, &e), 0);
    gguf_writer_free(w);
    gguf_close(&g);
    return o;
}

/* Smaller item: quantize and merge wrote models whose metadata contradicts
 * their tensors, or with a BOS id outside the vocabulary; the input is now
 * validated as the loaders do (et_engine_check_file) before anything is
 * written. */
static void test_quantize_merge_validate(void **state) {
    (void)state;
    SHARED_OR_SKIP(src, "models/stories260K/stories260K.gguf");
    if (!test_have_edgetune()) return;
    const char *bad_ff = with_u32(src, "bad_ff.gguf", "llama.feed_forward_length", 200);
    const char *bad_bos = with_u32(src, "bad_bos.gguf", "tokenizer.ggml.bos_token_id", 9999);
    et_err e = {0};
    assert_int_equal(et_engine_check_file(src, &e), 0);
    assert_int_equal(et_engine_check_file(bad_ff, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "ffn_"));
    memset(&e, 0, sizeof e);
    assert_int_equal(et_engine_check_file(bad_bos, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "tokenizer.ggml.bos_token_id' is 9999"));
    const char *bads[2] = {bad_ff, bad_bos}, *want[2] = {"ffn_", "bos_token_id"};
    char cmd[4096];
    for (int i = 0; i < 2; i++) {
        char out[700];
        snprintf(out, sizeof out, "%s.q8.gguf", bads[i]);
        snprintf(cmd, sizeof cmd, "./edgetune quantize %s %s Q8_0", bads[i], out);
        int rc = test_run(cmd);
        char *log = test_slurp(test_tmp("cmd.log"));
        if (rc != 2 || !log || !strstr(log, want[i])) fprintf(stderr, "%s -> %d\n%s\n", cmd, rc, log ? log : "");
        assert_int_equal(rc, 2);
        assert_non_null(strstr(log, want[i]));
        free(log);
        assert_int_not_equal(access(out, F_OK), 0);
    }
    /* the sane model still quantizes */
    char q8[700];
    snprintf(q8, sizeof q8, "%s", test_tmp("ok.q8.gguf"));
    snprintf(cmd, sizeof cmd, "./edgetune quantize %s %s Q8_0", src, q8);
    assert_int_equal(test_run(cmd), 0);
    /* smaller items: the requantize refusal names the flag; --quiet prints nothing on stdout */
    snprintf(cmd, sizeof cmd, "./edgetune quantize %s %s.q4.gguf Q4_0", q8, q8);
    assert_int_equal(test_run(cmd), 2);
    char *log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "--allow-requantize"));
    free(log);
    snprintf(cmd, sizeof cmd, "sh -c './edgetune quantize %s %s.q8b.gguf Q8_0 --quiet 2>/dev/null'", src, q8);
    assert_int_equal(test_run(cmd), 0);
    log = test_slurp(test_tmp("cmd.log"));
    assert_string_equal(log, "");
    free(log);
}

/* Smaller item: a full disk could leave peft/ with the safetensors but no
 * adapter_config.json.  The folder is now written as a unit (a temporary
 * folder, then swapped in): a save that fails leaves the previous folder as
 * it was, byte for byte, and no temporary folder. */
static void test_peft_folder_as_a_unit(void **state) {
    (void)state;
    SHARED_OR_SKIP(src, "models/stories260K/stories260K.gguf");
    et_model m;
    et_err e = {0};
    assert_int_equal(et_model_load(&m, src, NULL, &e), 0);
    lora_config c = {.rank = 2, .alpha = 4, .seed = 1};
    lora_adapter ad;
    assert_int_equal(lora_adapter_create(&ad, &m, &c, &e), 0);
    lora_adapter_init(&ad, 1);
    char dir[600], st[700], cfg[700], trap[700];
    snprintf(dir, sizeof dir, "%s", test_tmp("peft"));
    snprintf(st, sizeof st, "%s/adapter_model.safetensors", dir);
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", dir);
    assert_int_equal(lora_adapter_save_peft(&ad, dir, "stories260K", ST_F32, &e), 0);
    char *st0 = test_slurp(st), *cfg0 = test_slurp(cfg);
    assert_non_null(st0);
    assert_non_null(cfg0);
    struct stat sb;
    assert_int_equal(stat(st, &sb), 0);
    /* a second save whose config cannot be written (a folder where the file goes) */
    for (size_t i = 0; i < ad.n_params; i++) ad.params[i] += 0.5f;
    snprintf(trap, sizeof trap, "%s.tmp.%ld", dir, (long)getpid());
    mkdir(trap, 0777);
    snprintf(trap, sizeof trap, "%s.tmp.%ld/adapter_config.json", dir, (long)getpid());
    assert_int_equal(mkdir(trap, 0777), 0);
    assert_int_not_equal(lora_adapter_save_peft(&ad, dir, "stories260K", ST_F32, &e), 0);
    char *st1 = test_slurp(st), *cfg1 = test_slurp(cfg);
    assert_non_null(st1);
    assert_non_null(cfg1);
    assert_memory_equal(st0, st1, (size_t)sb.st_size);   /* the previous folder, untouched */
    assert_string_equal(cfg0, cfg1);
    free(st1);
    free(cfg1);
    rmdir(trap);
    snprintf(trap, sizeof trap, "%s.tmp.%ld", dir, (long)getpid());
    rmdir(trap);
    /* and a save that works replaces both files */
    assert_int_equal(lora_adapter_save_peft(&ad, dir, "stories260K", ST_F32, &e), 0);
    st1 = test_slurp(st);
    assert_true(memcmp(st0, st1, (size_t)sb.st_size) != 0);
    assert_int_not_equal(access(trap, F_OK), 0);
    free(st0);
    free(st1);
    free(cfg0);
    lora_adapter_free(&ad);
    et_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peft_folder_as_a_unit),
        cmocka_unit_test(test_quantize_merge_validate),
        cmocka_unit_test(test_symlink_loop),
        cmocka_unit_test(test_vocab_vs_embedding),
        cmocka_unit_test(test_llama2c_size_in_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
