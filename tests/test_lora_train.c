/* tests/test_lora_train.c — LoRA fine-tuning end to end (lora/lora_train.h,
 * cli/cmd_lora.c):
 *   - the adapter size of the default settings on a SmolLM2-135M-shaped
 *     model (must be under 5 MB), against an independent count;
 *   - training moves only the adapter: the validation loss falls, the base is
 *     untouched, for an F32 and a Q8_0 base;
 *   - a run interrupted at a checkpoint and resumed ends with the same
 *     adapter bit for bit as an uninterrupted one (with dropout on);
 *   - `edgetune lora` writes adapter.gguf (equal to the checkpoint), the
 *     PEFT folder and the recipe, prints loss before/after and size, resumes,
 *     and exits 1 / 2 on usage / input errors. */
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "train_fixture.h"
#include "../lora/lora_train.h"
#include "../train/checkpoint.h"
#include "../train/threads.h"

static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return b;
}

/* ---- size ---- */
static void test_default_adapter_size_smollm2(void **state) {
    (void)state;
    et_hparams hp = {.arch = "llama", .n_vocab = 49152, .n_embd = 576, .n_ff = 1536, .n_layer = 30, .n_head = 9,
                     .n_head_kv = 3, .head_dim = 64, .n_ctx = 2048, .rms_eps = 1e-5f, .rope_theta = 100000.0f,
                     .tied_output = 1};
    et_model m; /* shapes only: the adapter never reads the base's weights */
    et_err e = {0};
    assert_int_equal(et_model_plan(&m, &hp, &e), 0);
    /* the defaults of `edgetune lora`: q,v of every layer, rank 8, alpha 16 */
    lora_config c = {.targets = LORA_DEFAULT_TARGETS, .rank = 8, .alpha = 16, .dropout = 0.05f, .seed = 1};
    lora_adapter ad;
    if (lora_adapter_create(&ad, &m, &c, &e)) fail_msg("%s", e.msg);
    /* independent count: per layer q [576 -> 576] and v [576 -> 3*64] */
    const size_t want = 30 * (8 * (576 + 576) + 8 * (576 + 192));
    assert_int_equal(ad.n_params, want);
    const uint64_t bytes = lora_adapter_gguf_bytes(&ad, GGML_TYPE_F32);
    printf("  SmolLM2-135M shape, rank 8 on q,v: %zu parameters, adapter.gguf %llu bytes (%.1f KB; F16 %.1f KB)\n",
           ad.n_params, (unsigned long long)bytes, bytes / 1024.0, lora_adapter_gguf_bytes(&ad, GGML_TYPE_F16) / 1024.0);
    assert_true(bytes >= want * 4 && bytes < want * 4 + 65536); /* tensor data + header and names */
    assert_true(bytes < 5u * 1000 * 1000);
    /* and the file written has exactly that size */
    const char *path = tmp("smollm2_adapter.gguf");
    assert_int_equal(lora_adapter_save_gguf(&ad, path, GGML_TYPE_F32, &e), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, bytes);
    lora_adapter_free(&ad);
    /* all-linear at rank 8, for the record */
    c.targets = LORA_ALL_LINEAR;
    assert_int_equal(lora_adapter_create(&ad, &m, &c, &e), 0);
    printf("  all-linear rank 8: %.1f KB\n", lora_adapter_gguf_bytes(&ad, GGML_TYPE_F32) / 1024.0);
    lora_adapter_free(&ad);
    et_model_free(&m);
}

/* ---- training on the synthetic data ---- */
/* A base "pretrained" as a random model of rows that fit Q8_0 blocks. */
static void make_base(et_model *m) {
    et_hparams hp;
    fx_hparams(&hp);
    hp.n_embd = 32, hp.n_ff = 64, hp.head_dim = 8;
    et_err e = {0};
    assert_int_equal(et_model_alloc(m, &hp, &e), 0);
    et_named t[64];
    int n = et_model_tensors(m, t, 64);
    et_xoshiro r;
    et_xoshiro_seed(&r, 99);
    et_init_normal(t, n, hp.n_layer, 0.1f, &r);
}

typedef struct lrun {
    et_model m;
    lora_adapter ad;
    lora_train lt;
    et_train_model tm;
    et_ds *ds;
    et_loader *train, *valid;
} lrun;

static void lrun_open(lrun *r, const char *data, uint32_t base_type, float dropout) {
    memset(r, 0, sizeof *r);
    make_base(&r->m);
    et_err e = {0};
    lora_config c = {.targets = LORA_DEFAULT_TARGETS, .rank = 4, .alpha = 8, .dropout = dropout, .seed = 5};
    assert_int_equal(lora_adapter_create(&r->ad, &r->m, &c, &e), 0);
    int rc = lora_train_init(&r->lt, &r->m, base_type, &r->ad, &r->tm, &e);
    if (rc) fail_msg("%s", e.msg);
    assert_int_equal(et_ds_open(&r->ds, data, &e), 0);
    et_loader_opts lo = et_loader_defaults();
    lo.batch_size = 4, lo.seq_len = 24, lo.seed = 3;
    assert_int_equal(et_loader_open(&r->train, r->ds, &lo, &e), 0);
    lo.split = ET_SPLIT_VALID, lo.shuffle = 0, lo.loop = 0;
    assert_int_equal(et_loader_open(&r->valid, r->ds, &lo, &e), 0);
}

static void lrun_close(lrun *r) {
    et_loader_close(r->train);
    et_loader_close(r->valid);
    et_ds_close(r->ds);
    lora_train_free(&r->lt);
    lora_adapter_free(&r->ad);
    et_model_free(&r->m);
}

static const char *fx_data(void) {
    static char p[512];
    if (!p[0]) {
        snprintf(p, sizeof p, "%s", tmp("lora_tokens.h5"));
        fx_write_data(p, 48, 6, 40);
    }
    return p;
}

static void test_training_moves_only_the_adapter(void **state) {
    (void)state;
    const uint32_t types[] = {GGML_TYPE_F32, GGML_TYPE_Q8_0};
    for (int ti = 0; ti < 2; ti++) {
        lrun r;
        lrun_open(&r, fx_data(), types[ti], 0.0f);
        float *base0 = malloc(r.m.n_params * sizeof(float));
        memcpy(base0, r.m.params, r.m.n_params * sizeof(float));
        float *b0 = malloc(r.ad.n_params * sizeof(float));
        memcpy(b0, r.ad.params, r.ad.n_params * sizeof(float));
        et_train_opts o = fx_opts(4, 24, 40);
        o.sched.lr = 2e-2f, o.adamw.weight_decay = 0.0f, o.wd_policy = ET_WD_ALL;
        et_err e = {0};
        double before, after;
        int64_t n;
        assert_int_equal(et_train_evaluate(&r.tm, r.valid, 4, 24, 0, &before, &n, &e), 0);
        et_train_result res;
        int rc = et_train_run(&r.tm, r.train, r.valid, &o, &res, &e);
        if (rc) fail_msg("%s", e.msg);
        assert_int_equal(et_train_evaluate(&r.tm, r.valid, 4, 24, 0, &after, &n, &e), 0);
        printf("  base %s: validation loss %.4f -> %.4f after 40 LoRA steps\n", ti ? "Q8_0" : "F32", before, after);
        assert_true(after < before - 0.1);
        assert_memory_equal(base0, r.m.params, r.m.n_params * sizeof(float)); /* frozen */
        assert_memory_not_equal(b0, r.ad.params, r.ad.n_params * sizeof(float));
        /* lora_b started at zero and moved */
        assert_true(r.ad.tensors[0].lora_b[0] != 0.0f || r.ad.tensors[0].lora_b[1] != 0.0f);
        free(base0);
        free(b0);
        lrun_close(&r);
    }
}

static void test_resume_bit_exact(void **state) {
    (void)state;
    const char *ck1 = tmp("lora_ck_full.h5"), *ck2 = tmp("lora_ck_split.h5");
    et_err e = {0};
    et_train_result res;
    /* uninterrupted: 12 steps */
    lrun a;
    lrun_open(&a, fx_data(), GGML_TYPE_F32, 0.2f);
    a.lt.recompute = 1;
    et_train_opts o = fx_opts(4, 24, 12);
    o.ckpt_path = ck1;
    assert_int_equal(et_train_run(&a.tm, a.train, a.valid, &o, &res, &e), 0);
    /* interrupted at 6 (a run of 6 steps with the same schedule total), then resumed */
    lrun b;
    lrun_open(&b, fx_data(), GGML_TYPE_F32, 0.2f);
    b.lt.recompute = 1;
    et_train_opts o2 = fx_opts(4, 24, 12);
    o2.ckpt_path = ck2;
    o2.steps = 6;
    o2.sched.total = 12;
    assert_int_equal(et_train_run(&b.tm, b.train, b.valid, &o2, &res, &e), 0);
    lrun_close(&b);
    lrun c; /* a fresh process state: new base, new adapter (re-initialised), new loaders */
    lrun_open(&c, fx_data(), GGML_TYPE_F32, 0.2f);
    c.lt.recompute = 1;
    et_train_opts o3 = fx_opts(4, 24, 12);
    o3.ckpt_path = ck2;
    o3.resume = 1;
    int rc = et_train_run(&c.tm, c.train, c.valid, &o3, &res, &e);
    if (rc) fail_msg("%s", e.msg);
    assert_int_equal(res.step, 12);
    assert_memory_equal(a.ad.params, c.ad.params, a.ad.n_params * sizeof(float));
    printf("  resumed at step 6 of 12 (dropout 0.2, recompute): adapter equal bit for bit\n");
    lrun_close(&a);
    lrun_close(&c);
}

/* ---- the command ---- */
static int run(const char *cmd) {
    char full[8192];
    snprintf(full, sizeof full, "%.4096s >>%.1000s 2>&1", cmd, tmp("cmd.log"));
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *base_gguf(void) {
    static char p[512];
    if (!p[0]) {
        snprintf(p, sizeof p, "%s", tmp("base.gguf"));
        et_model m;
        make_base(&m);
        et_err e = {0};
        int rc = et_model_save_gguf(&m, p, GGML_TYPE_F32, &e);
        if (rc) fail_msg("%s", e.msg);
        et_model_free(&m);
    }
    return p;
}

static int file_has(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strstr(buf, needle) != NULL;
}

static void test_cmd_lora(void **state) {
    (void)state;
    if (access("./edgetune", X_OK)) {
        fprintf(stderr, "SKIP: ./edgetune not built\n");
        skip();
    }
    char cmd[4096], path[700];
    const char *out = tmp("cli_run"), *metrics = tmp("cli_run.jsonl");
    snprintf(cmd, sizeof cmd,
             "./edgetune lora --model %s --data %s --out %s --steps 8 --batch-size 4 --seq-len 24 --lr 0.02 "
             "--rank 4 --alpha 8 --targets q,v,o --base-type Q8_0 --eval-every 4 --ckpt-every 4 --metrics %s "
             "> %s 2>&1",
             base_gguf(), fx_data(), out, metrics, tmp("cli_stdout.txt"));
    assert_int_equal(system(cmd), 0);
    assert_true(file_has(tmp("cli_stdout.txt"), "validation loss: before"));
    assert_true(file_has(tmp("cli_stdout.txt"), "bytes ("));
    snprintf(path, sizeof path, "%s/recipe.json", out);
    assert_true(file_has(path, "\"base_type\":\t\"Q8_0\""));
    assert_true(file_has(path, "\"targets\":\t\"q,v,o\""));
    snprintf(path, sizeof path, "%s/peft/adapter_config.json", out);
    assert_true(file_has(path, "\"r\":\t4"));
    snprintf(path, sizeof path, "%s/peft/adapter_model.safetensors", out);
    assert_int_equal(access(path, R_OK), 0);
    /* adapter.gguf = the checkpoint's block */
    lora_adapter ad;
    et_err e = {0};
    snprintf(path, sizeof path, "%s/adapter.gguf", out);
    int rc = lora_adapter_load_gguf(&ad, path, &e);
    if (rc) fail_msg("%s", e.msg);
    assert_int_equal(ad.rank, 4);
    assert_int_equal(ad.n_tensors, 3 * 2);
    et_named *t = calloc((size_t)ad.n_tensors * 2, sizeof *t);
    float *ck = malloc(ad.n_params * sizeof(float));
    for (int i = 0; i < ad.n_tensors; i++) {
        lora_tensor *x = &ad.tensors[i];
        snprintf(t[2 * i].name, 64, "%.56s.lora_a", x->base_name);
        t[2 * i].data = ck + (x->lora_a - ad.params), t[2 * i].n_dims = 2;
        t[2 * i].ne[0] = x->n_in, t[2 * i].ne[1] = x->rank, t[2 * i].n = (size_t)x->n_in * x->rank;
        snprintf(t[2 * i + 1].name, 64, "%.56s.lora_b", x->base_name);
        t[2 * i + 1].data = ck + (x->lora_b - ad.params), t[2 * i + 1].n_dims = 2;
        t[2 * i + 1].ne[0] = x->rank, t[2 * i + 1].ne[1] = x->n_out, t[2 * i + 1].n = (size_t)x->n_out * x->rank;
    }
    et_param_block b = {.data = ck, .n = ad.n_params, .t = t, .n_t = 2 * ad.n_tensors};
    et_adamw opt;
    assert_int_equal(et_adamw_init(&opt, ad.n_params, &(et_adamw_hp){0.9f, 0.999f, 1e-8f, 0.0f}, NULL), 0);
    et_ckpt st;
    snprintf(path, sizeof path, "%s/checkpoint.h5", out);
    rc = et_ckpt_load(path, &b, &opt, &st, &e);
    if (rc) fail_msg("%s", e.msg);
    assert_int_equal(st.step, 8);
    assert_memory_equal(ck, ad.params, ad.n_params * sizeof(float));
    et_ckpt_free(&st);
    et_adamw_free(&opt);
    free(t), free(ck);
    lora_adapter_free(&ad);
    /* resume to 12 steps with every other setting from the recipe */
    snprintf(cmd, sizeof cmd, "./edgetune lora --resume --out %s --steps 12", out);
    assert_int_equal(run(cmd), 0);
    FILE *f = fopen(metrics, "r");
    assert_non_null(f);
    char line[2048];
    int steps = 0;
    while (fgets(line, sizeof line, f)) steps += strstr(line, "\"event\":\"step\"") != NULL;
    fclose(f);
    assert_int_equal(steps, 12);
    /* exit codes */
    assert_int_equal(run("./edgetune lora --data x.h5 --out /tmp/nowhere"), ET_EUSAGE); /* no --model */
    snprintf(cmd, sizeof cmd, "./edgetune lora --model %s --data %s --out %s --base-type Q5_K", base_gguf(), fx_data(),
             tmp("r5"));
    assert_int_equal(run(cmd), ET_EUSAGE);
    snprintf(cmd, sizeof cmd, "./edgetune lora --model %s --data %s --out %s --targets q,zz", base_gguf(), fx_data(),
             tmp("r5"));
    assert_int_equal(run(cmd), ET_EUSAGE);
    snprintf(cmd, sizeof cmd, "./edgetune lora --model %s --data %s --out %s --layers 7", base_gguf(), fx_data(),
             tmp("r5"));
    assert_int_equal(run(cmd), ET_EUSAGE); /* the base has 2 layers */
    snprintf(cmd, sizeof cmd, "./edgetune lora --model %s --data %s --out %s", base_gguf(), tmp("missing.h5"), tmp("r5"));
    assert_int_equal(run(cmd), ET_EINPUT);
    snprintf(cmd, sizeof cmd, "./edgetune lora --model %s --data %s --out %s", tmp("missing.gguf"), fx_data(), tmp("r5"));
    assert_int_equal(run(cmd), ET_EINPUT);
    snprintf(cmd, sizeof cmd, "./edgetune lora --resume --out %s", tmp("never_ran"));
    assert_int_equal(run(cmd), ET_EUSAGE);
}

int main(void) {
    et_omp_passive_reexec(); /* idle OpenMP workers sleep: see train/threads.h */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_adapter_size_smollm2),
        cmocka_unit_test(test_training_moves_only_the_adapter),
        cmocka_unit_test(test_resume_bit_exact),
        cmocka_unit_test(test_cmd_lora),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
