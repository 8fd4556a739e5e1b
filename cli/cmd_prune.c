/* cli/cmd_prune.c — `edgetune prune MODEL -o OUT.gguf [options]`:
 * structured pruning (prune/): importance on calibration tokens
 * (prune/importance.h), targets -> plan (prune/select.h), plan -> model
 * (prune/plan.h), written as GGUF (llama when uniform, deci otherwise);
 * optionally recovered: distillation from the original (Minitron's recipe;
 * `edgetune distill --prune-plan`, the same code), cross-entropy only (the
 * same command with alpha 0), or a LoRA adapter trained on the pruned model
 * and merged (`edgetune lora` + `edgetune merge`, the same code).
 * Exit codes: 0, 1 usage, 2 bad input, 3 failure during the run. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../datasets/dataset.h"
#include "../export/gguf.h"
#include "../export/model.h"
#include "../prune/importance.h"
#include "../prune/plan.h"
#include "../prune/select.h"
#include "../train/threads.h"
#include "../quant/quantize_model.h"
#include "cli.h"
#include "train_ui.h"

static const char *USAGE =
    "usage: edgetune prune MODEL -o OUT.gguf [options]\n"
    "  importance (scores), on calibration tokens from `edgetune data`:\n"
    "    --calib D.h5          calibration data (same tokenizer as MODEL); its first rows are used\n"
    "    --calib-rows 64 --seq-len 256 (rows of seq-len+1 tokens; 0: min(n_ctx, 256)) --batch 8 (rows per forward)\n"
    "    --method activation|taylor   activation: Minitron (arXiv:2407.14679) head output norms and\n"
    "                          mean |silu(gate)*up|; taylor: LLM-Pruner (arXiv:2305.11627) |sum w*dL/dw|\n"
    "    --depth bi|loss       layer score: Block Influence (ShortGPT, arXiv:2403.03853; free) or the\n"
    "                          loss increase without the layer (--depth-rows 8 rows, n_layer+1 forwards)\n"
    "    --scores S.json       with --calib: write every score there; without: read them from there\n"
    "  targets (ratios in [0, 1)):\n"
    "    --heads R --ffn R --layers N --embd R      share of query heads, FFN channels, embedding\n"
    "                          channels to remove, whole layers to remove\n"
    "    --heads-per-layer R,R,.. --ffn-per-layer R,R,..   one ratio per layer instead\n"
    "    --target-params N     search the head/FFN ratios for at most N parameters\n"
    "    --target-bytes N      ... for at most N bytes of tensor data once quantized to\n"
    "                          --target-type T (default: --type), by edgetune quantize's own\n"
    "                          per-tensor rules (header and tokenizer not counted)\n"
    "    --uniform             the same widths in every layer (arch llama); default: per layer (deci)\n"
    "    --head-groups         remove whole kv groups (default: query heads evenly within groups)\n"
    "    --ffn-multiple M      kept FFN/embd channels a multiple of M (default 32 when n_ff is)\n"
    "  --plan P.json          with targets: write the plan (keep-lists, base sha256, scores) there;\n"
    "                         alone: read P.json and apply it (it must be for MODEL)\n"
    "  --type F32|F16 (output, default F32) --threads N (0 = auto)\n"
    "  recovery: --recover distill|ce|lora --recover-data T.h5 [--recover-steps 200 --recover-out DIR\n"
    "            --recover-lr 1e-3 --recover-batch 8 --recover-seq-len 256 --recover-precision f32|bf16\n"
    "            --recover-eval-batches N (validation loss at steps 0 and last on N batches; 0 = all)]\n"
    "            distill: every weight of the pruned model trained against the original as teacher (Minitron,\n"
    "              arXiv:2407.14679: forward KL on the logits; --recover-alpha 1 --recover-temperature 1), as\n"
    "              `edgetune distill --teacher MODEL --prune-plan P.json`; ce: the same with alpha 0 (no teacher)\n"
    "            lora: a LoRA adapter (--recover-rank 16, alpha = rank) on every linear, merged into OUT.gguf\n"
    "            (DIR, default OUT.gguf.distill|ce|lora/, keeps the run; the unrecovered model is OUT.gguf.pruned.gguf;\n"
    "            distill/ce without --plan write the plan to OUT.gguf.plan.json)\n"
    "  Details: docs/pruning.md";

static const char *const BOOLS[] = {"uniform", "head_groups", "help", NULL};
static const char *const KNOWN[] = {"output", "calib", "calib_rows", "seq_len", "batch", "method", "depth", "depth_rows",
                                    "scores", "heads", "ffn", "layers", "embd", "heads_per_layer", "ffn_per_layer",
                                    "target_params", "target_bytes", "target_type", "uniform", "head_groups", "ffn_multiple", "plan", "type",
                                    "threads", "recover", "recover_data", "recover_steps", "recover_out",
                                    "recover_rank", "recover_lr", "recover_batch", "recover_seq_len", "recover_precision",
                                    "recover_alpha", "recover_temperature", "recover_eval_batches", "help", NULL};

static void progress(void *ctx, const char *stage, int done, int total) {
    (void)ctx;
    if (isatty(2)) {
        fprintf(stderr, "\rprune: %s %d/%d", stage, done, total);
        if (done == total) fputc('\n', stderr);
    } else if (done == total || done % 16 == 0) {
        fprintf(stderr, "prune: %s %d/%d\n", stage, done, total);
    }
}

/* n_layer comma-separated ratios */
static int parse_list(const char *s, int n, double **out, const char *flag, et_err *e) {
    double *v = malloc((size_t)n * sizeof *v);
    if (!v) return et_fail(e, ET_ERUN, "out of memory");
    int k = 0;
    const char *p = s;
    while (*p && k < n) {
        char *end;
        v[k++] = strtod(p, &end);
        if (end == p) break;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') break;
    }
    if (k != n || *p) {
        free(v);
        return et_fail(e, ET_EUSAGE, "--%s needs %d comma-separated ratios (one per layer)", flag, n);
    }
    *out = v;
    return 0;
}

/* rows [n_rows, T+1] from the training split of the calibration file */
static int read_calib(const char *path, const et_model *m, int n_rows, int T, int32_t **rows, int *got, et_err *e) {
    et_ds *ds;
    int rc = et_ds_open(&ds, path, e);
    if (rc) return rc;
    if ((rc = cli_check_data(path, "model", T, m, ds, e))) {
        et_ds_close(ds);
        return rc;
    }
    int64_t b, en;
    et_ds_split_docs(ds, ET_SPLIT_TRAIN, &b, &en);
    int64_t avail = ds->doc_offsets[en] - ds->doc_offsets[b];
    int64_t can = avail / (T + 1);
    if (can < 1) {
        et_ds_close(ds);
        return et_fail(e, ET_EINPUT, "%s: %lld training tokens, fewer than one row of %d", path, (long long)avail, T + 1);
    }
    *got = can < n_rows ? (int)can : n_rows;
    *rows = malloc((size_t)*got * (T + 1) * sizeof **rows);
    if (!*rows) rc = et_fail(e, ET_ERUN, "out of memory");
    else rc = et_ds_read_tokens(ds, ds->doc_offsets[b], (int64_t)*got * (T + 1), *rows, e);
    et_ds_close(ds);
    return rc;
}

static void print_plan(const et_prune_plan *pl) {
    fprintf(stderr, "layer  n_head     n_head_kv  n_ff\n");
    for (int l = 0; l < pl->n_layer; l++) {
        const et_prune_layer *L = &pl->layers[l];
        if (L->removed)
            fprintf(stderr, "%5d  removed\n", l);
        else
            fprintf(stderr, "%5d  %3d -> %-3d  %3d -> %-3d  %5d -> %d\n", l, L->n_head, L->n_keep_head, L->n_head_kv,
                    L->n_keep_kv, L->n_ff, L->n_keep_ff);
    }
    if (pl->keep_embd) fprintf(stderr, "n_embd %d -> %d\n", pl->n_embd, pl->n_keep_embd);
}

/* Print the command line of a recovery step and run it (the same code as that command). */
static int run_step(int (*cmd)(int, char **), int n, char **v) {
    fprintf(stderr, "prune: recovery: edgetune");
    for (int i = 0; i < n; i++) fprintf(stderr, " %s", v[i]);
    fputc('\n', stderr);
    return cmd(n, v);
}

/* LoRA on the pruned model (all linears), merged into out. */
static int recover_lora(const cli_args *a, const char *pruned, const char *out, et_err *e) {
    const char *data = cli_str(a, "recover_data", NULL);
    if (!data) return et_fail(e, ET_EUSAGE, "--recover lora needs --recover-data T.h5");
    char dir[4096], adapter[4200];
    snprintf(dir, sizeof dir, "%s", cli_str(a, "recover_out", ""));
    if (!dir[0]) snprintf(dir, sizeof dir, "%s.lora", out);
    char *lv[40];
    int n = 0;
    lv[n++] = "lora";
    lv[n++] = "--model", lv[n++] = (char *)pruned;
    lv[n++] = "--data", lv[n++] = (char *)data;
    lv[n++] = "--out", lv[n++] = dir;
    lv[n++] = "--targets", lv[n++] = "all-linear";
    lv[n++] = "--steps", lv[n++] = (char *)cli_str(a, "recover_steps", "200");
    lv[n++] = "--rank", lv[n++] = (char *)cli_str(a, "recover_rank", "16");
    lv[n++] = "--alpha", lv[n++] = (char *)cli_str(a, "recover_rank", "16");
    lv[n++] = "--lr", lv[n++] = (char *)cli_str(a, "recover_lr", "1e-3");
    lv[n++] = "--batch-size", lv[n++] = (char *)cli_str(a, "recover_batch", "8");
    lv[n++] = "--seq-len", lv[n++] = (char *)cli_str(a, "recover_seq_len", "256");
    lv[n++] = "--dropout", lv[n++] = "0";
    if (cli_str(a, "threads", NULL)) lv[n++] = "--threads", lv[n++] = (char *)cli_str(a, "threads", NULL);
    lv[n] = NULL;
    int rc = run_step(cmd_lora, n, lv);
    if (rc) return et_fail(e, rc, "recovery: edgetune lora failed (exit %d)", rc);
    snprintf(adapter, sizeof adapter, "%s/adapter.gguf", dir);
    char *mv[6] = {"merge", (char *)pruned, adapter, "-o", (char *)out, NULL};
    rc = run_step(cmd_merge, 5, mv);
    if (rc) return et_fail(e, rc, "recovery: edgetune merge failed (exit %d)", rc);
    return 0;
}

/* copy src to dst (temporary file + rename): 0, ET_EINPUT (src) or ET_ERUN */
static int copy_file(const char *src, const char *dst, et_err *e) {
    FILE *in = fopen(src, "rb");
    if (!in) return et_fail(e, ET_EINPUT, "%s: cannot open", src);
    et_afile o;
    int rc = et_afile_open(&o, dst, e);
    char buf[1 << 16];
    size_t k;
    while (!rc && (k = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, k, o.f) != k) rc = et_fail(e, ET_ERUN, "%s: write error", dst);
    if (!rc && ferror(in)) rc = et_fail(e, ET_EINPUT, "%s: read error", src);
    fclose(in);
    if (!rc) return et_afile_commit(&o, e);
    et_afile_abort(&o);
    return rc;
}

/* Every weight of the pruned model trained by `edgetune distill --teacher MODEL
 * --prune-plan PLAN` (cli/cmd_train.c: the student is MODEL pruned by PLAN,
 * the same as `pruned`), the original as teacher (alpha 1, Minitron) or none
 * (ce: alpha 0); its DIR/model.gguf is copied to out (temporary + rename). */
static int recover_distill(const cli_args *a, const char *model, const char *plan, const char *out, int ce,
                           et_err *e) {
    const char *data = cli_str(a, "recover_data", NULL);
    if (!data) return et_fail(e, ET_EUSAGE, "--recover %s needs --recover-data T.h5", ce ? "ce" : "distill");
    char dir[4096], res[4200];
    snprintf(dir, sizeof dir, "%s", cli_str(a, "recover_out", ""));
    if (!dir[0]) snprintf(dir, sizeof dir, "%s.%s", out, ce ? "ce" : "distill");
    const char *steps = cli_str(a, "recover_steps", "200");
    char *dv[48];
    int n = 0;
    dv[n++] = "distill";
    dv[n++] = "--teacher", dv[n++] = (char *)model;
    dv[n++] = "--prune-plan", dv[n++] = (char *)plan;
    dv[n++] = "--data", dv[n++] = (char *)data;
    dv[n++] = "--out", dv[n++] = dir;
    dv[n++] = "--alpha", dv[n++] = ce ? "0" : (char *)cli_str(a, "recover_alpha", "1");
    dv[n++] = "--temperature", dv[n++] = (char *)cli_str(a, "recover_temperature", "1");
    dv[n++] = "--steps", dv[n++] = (char *)steps;
    dv[n++] = "--eval-every", dv[n++] = (char *)steps;
    dv[n++] = "--lr", dv[n++] = (char *)cli_str(a, "recover_lr", "1e-3");
    dv[n++] = "--batch-size", dv[n++] = (char *)cli_str(a, "recover_batch", "8");
    dv[n++] = "--seq-len", dv[n++] = (char *)cli_str(a, "recover_seq_len", "256");
    dv[n++] = "--precision", dv[n++] = (char *)cli_str(a, "recover_precision", "f32");
    dv[n++] = "--eval-batches", dv[n++] = (char *)cli_str(a, "recover_eval_batches", "0");
    dv[n++] = "--ckpt-every", dv[n++] = "0";
    dv[n++] = "--no-eval";
    if (cli_str(a, "threads", NULL)) dv[n++] = "--threads", dv[n++] = (char *)cli_str(a, "threads", NULL);
    dv[n] = NULL;
    int rc = run_step(cmd_distill, n, dv);
    if (rc) return et_fail(e, rc, "recovery: edgetune distill failed (exit %d)", rc);
    snprintf(res, sizeof res, "%s/model.gguf", dir);
    return copy_file(res, out, e);
}

int cmd_prune(int argc, char **argv) {
    et_omp_passive_reexec();
    cli_args a;
    int rc = cli_start(&a, argc, argv, BOOLS, KNOWN, USAGE);
    if (rc >= 0) return rc;
    rc = 0;
    et_err e = {0};
    et_model m, out_m;
    memset(&m, 0, sizeof m);
    memset(&out_m, 0, sizeof out_m);
    et_prune_plan plan;
    memset(&plan, 0, sizeof plan);
    et_prune_scores sc;
    memset(&sc, 0, sizeof sc);
    int32_t *rows = NULL;
    double *lh = NULL, *lf = NULL;
    char *pruned_path = NULL, *plan_tmp = NULL;
    const char *out = cli_str(&a, "output", NULL), *calib = cli_str(&a, "calib", NULL);
    const char *scores_path = cli_str(&a, "scores", NULL), *plan_path = cli_str(&a, "plan", NULL);
    const char *type_s = cli_str(&a, "type", "F32"), *recover = cli_str(&a, "recover", NULL);
    uint32_t type = GGML_TYPE_F32;
    long threads = 0, calib_rows = 64, T = 256, batch = 8, depth_rows = 8, layers = 0, ffn_mult = 0, tparams = 0;
    double heads = 0, ffn = 0, embd = 0;
    if (a.npos != 1 || !out) rc = et_fail(&e, ET_EUSAGE, "prune: needs one MODEL and -o OUT.gguf\n%s", USAGE);
    if (!rc && strcmp(type_s, "F16") == 0) type = GGML_TYPE_F16;
    else if (!rc && strcmp(type_s, "F32") != 0) rc = et_fail(&e, ET_EUSAGE, "--type must be F32 or F16");
    if (!rc && recover && strcmp(recover, "lora") && strcmp(recover, "distill") && strcmp(recover, "ce"))
        rc = et_fail(&e, ET_EUSAGE, "--recover: '%s' is not distill, ce or lora", recover);
    if (!rc) rc = cli_int_range(&a, "threads", 0, 0, 1024, &threads, &e);
    if (!rc) rc = cli_int_range(&a, "calib_rows", 64, 1, 1 << 20, &calib_rows, &e);
    if (!rc) rc = cli_int_range(&a, "seq_len", 256, 0, 1 << 20, &T, &e);
    if (!rc && T == 1) rc = et_fail(&e, ET_EUSAGE, "--seq-len must be 0 (auto: the model's context, at most 256) or >= 2");
    if (!rc) rc = cli_int_range(&a, "batch", 8, 1, 4096, &batch, &e);
    if (!rc) rc = cli_int_range(&a, "depth_rows", 8, 1, 1 << 20, &depth_rows, &e);
    if (!rc) rc = cli_int_range(&a, "layers", 0, 0, 65535, &layers, &e);
    if (!rc) rc = cli_int_range(&a, "ffn_multiple", 0, 0, 1 << 20, &ffn_mult, &e);
    if (!rc) rc = cli_int_range(&a, "target_params", 0, 0, (long)1 << 50, &tparams, &e);
    long tbytes = 0;
    int tftype = -1;
    if (!rc) rc = cli_int_range(&a, "target_bytes", 0, 0, (long)1 << 50, &tbytes, &e);
    if (!rc && tbytes > 0 && tparams > 0) rc = et_fail(&e, ET_EUSAGE, "prune: give --target-params or --target-bytes, not both");
    if (!rc && tbytes > 0) {
        const char *tt = cli_str(&a, "target_type", type_s);
        tftype = et_ftype_from_name(tt);
        if (tftype < 0) rc = et_fail(&e, ET_EUSAGE, "--target-type '%s': not a type edgetune quantize writes (F32, F16, Q8_0, "
                                                    "Q4_0, Q4_K_M, ...)", tt);
    }
    /* ratios: range checked by et_prune_select (exit 2 with the flag named) */
    if (!rc) rc = cli_float(&a, "heads", 0, &heads, &e);
    if (!rc) rc = cli_float(&a, "ffn", 0, &ffn, &e);
    if (!rc) rc = cli_float(&a, "embd", 0, &embd, &e);
    const char *method = cli_str(&a, "method", "activation"), *depth = cli_str(&a, "depth", "bi");
    if (!rc && strcmp(method, "activation") && strcmp(method, "taylor"))
        rc = et_fail(&e, ET_EUSAGE, "--method must be activation or taylor, not '%s'", method);
    if (!rc && strcmp(depth, "bi") && strcmp(depth, "loss"))
        rc = et_fail(&e, ET_EUSAGE, "--depth must be bi or loss, not '%s'", depth);
    const int has_targets = cli_str(&a, "heads", NULL) || cli_str(&a, "ffn", NULL) || layers > 0 ||
                            cli_str(&a, "embd", NULL) || tparams > 0 || tbytes > 0 || cli_str(&a, "heads_per_layer", NULL) ||
                            cli_str(&a, "ffn_per_layer", NULL);
    if (!rc && !has_targets && !plan_path && !calib)
        rc = et_fail(&e, ET_EUSAGE, "prune: give targets (--heads/--ffn/--layers/--embd/--target-params/--target-bytes), "
                                    "--plan P.json to apply, or --calib to score\n%s", USAGE);
    if (!rc && has_targets && !calib && !scores_path)
        rc = et_fail(&e, ET_EUSAGE, "prune: targets need importance scores: --calib D.h5 (or --scores S.json)");
    if (rc) goto done;
    if (threads > 0) {
        omp_set_num_threads((int)threads);
        openblas_set_num_threads((int)threads);
    }
    /* 1. the model and its sha256 */
    if ((rc = et_model_load(&m, a.pos[0], NULL, &e))) goto done;
    if (!T) T = m.hp.n_ctx > 0 && m.hp.n_ctx < 256 ? m.hp.n_ctx : 256;   /* 0 = auto, as train's --seq-len 0 */
    char sha[65] = "";
    struct stat st;
    if (stat(a.pos[0], &st) == 0 && S_ISREG(st.st_mode) && (rc = et_prune_file_sha256(a.pos[0], sha, &e))) goto done;
    if (!rc && cli_str(&a, "heads_per_layer", NULL))
        rc = parse_list(cli_str(&a, "heads_per_layer", NULL), m.hp.n_layer, &lh, "heads_per_layer", &e);
    if (!rc && cli_str(&a, "ffn_per_layer", NULL))
        rc = parse_list(cli_str(&a, "ffn_per_layer", NULL), m.hp.n_layer, &lf, "ffn_per_layer", &e);
    if (rc) goto done;
    /* 2. scores */
    if (calib) {
        int got = 0;
        if ((rc = read_calib(calib, &m, (int)calib_rows, (int)T, &rows, &got, &e))) goto done;
        et_prune_score_opts so = {0};
        so.method = strcmp(method, "taylor") == 0 ? ET_PRUNE_TAYLOR : ET_PRUNE_ACTIVATION;
        so.batch = (int)batch;
        so.depth_loss = strcmp(depth, "loss") == 0;
        so.depth_rows = (int)depth_rows;
        so.progress = progress;
        if ((rc = et_prune_score(&m, rows, got, (int)T, &so, &sc, &e))) goto done;
        fprintf(stderr, "prune: %s scores over %d x %ld = %lld calibration tokens in %.1f s\n", sc.method, got, T,
                (long long)sc.n_tokens, sc.seconds);
        if (scores_path && (rc = et_prune_scores_write(&sc, scores_path, &e))) goto done;
    } else if (has_targets) {
        if ((rc = et_prune_scores_read(&sc, scores_path, &m, &e))) goto done;
    }
    /* 3. the plan */
    if (has_targets) {
        et_prune_targets t = {0};
        t.heads = heads;
        t.ffn = ffn;
        t.embd = embd;
        t.layers = (int)layers;
        t.target_params = tparams;
        t.target_bytes = tbytes;
        t.target_ftype = tftype;
        t.heads_set = cli_str(&a, "heads", NULL) != NULL;
        t.ffn_set = cli_str(&a, "ffn", NULL) != NULL;
        t.uniform = cli_on(&a, "uniform");
        t.head_groups = cli_on(&a, "head_groups");
        t.ffn_multiple = (int)ffn_mult;
        t.depth_loss = strcmp(depth, "loss") == 0;
        t.layer_heads = lh;
        t.layer_ffn = lf;
        if ((rc = et_prune_select(&m, &sc, &t, sha, &plan, &e))) goto done;
        if (!plan_path && recover && strcmp(recover, "lora")) { /* distill reads the plan from a file */
            size_t n = strlen(out) + 16;
            if (!(plan_tmp = malloc(n))) {
                rc = et_fail(&e, ET_ERUN, "out of memory");
                goto done;
            }
            snprintf(plan_tmp, n, "%s.plan.json", out);
            plan_path = plan_tmp;
        }
        if (plan_path && (rc = et_prune_plan_write(&plan, plan_path, &e))) goto done;
    } else if (plan_path) {
        if ((rc = et_prune_plan_read(&plan, plan_path, &e))) goto done;
        if ((rc = et_prune_plan_check_model(&plan, &m, sha, a.pos[0], &e))) goto done;
    } else {
        /* --calib alone: scores only */
        fprintf(stderr, "prune: scores only (no targets, no plan): nothing pruned\n");
        goto done;
    }
    print_plan(&plan);
    /* 4. apply and write */
    if ((rc = et_prune_apply(&m, &plan, &out_m, 1, &e))) goto done;
    const char *target = out;
    if (recover) {
        size_t n = strlen(out) + 32;
        pruned_path = malloc(n);
        if (!pruned_path) {
            rc = et_fail(&e, ET_ERUN, "out of memory");
            goto done;
        }
        snprintf(pruned_path, n, "%s.pruned.gguf", out);
        target = pruned_path;
    }
    if ((rc = et_model_save_gguf(&out_m, target, type, &e))) goto done;
    long long bytes = stat(target, &st) == 0 ? (long long)st.st_size : -1;
    fprintf(stderr, "%s -> %s: arch %s, %d -> %d layers, n_embd %d, %zu -> %zu parameters (%.1f%%), %lld bytes\n",
            a.pos[0], target, et_model_export_arch(&out_m), m.hp.n_layer, out_m.hp.n_layer, out_m.hp.n_embd,
            m.n_params, out_m.n_params, 100.0 * (double)out_m.n_params / (double)m.n_params, bytes);
    if (recover) {
        et_model_free(&out_m);
        et_model_free(&m);
        rc = !strcmp(recover, "lora") ? recover_lora(&a, pruned_path, out, &e)
                                      : recover_distill(&a, a.pos[0], plan_path, out, !strcmp(recover, "ce"), &e);
    }
done:
    free(pruned_path);
    free(plan_tmp);
    free(rows);
    free(lh);
    free(lf);
    et_prune_scores_free(&sc);
    et_prune_plan_free(&plan);
    et_model_free(&out_m);
    et_model_free(&m);
    cli_free(&a);
    return rc ? cli_report(&e) : 0;
}
