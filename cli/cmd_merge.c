/* cli/cmd_merge.c — `edgetune merge BASE.gguf ADAPTER.gguf[:SCALE]... -o OUT.gguf
 * [--type T]`: fold LoRA adapters into the base (lora/merge.h). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lora/merge.h"
#include "../quant/quantize_model.h"
#include "cli.h"
#include "runner.h"

static const char USAGE[] =
    "usage: edgetune merge BASE.gguf ADAPTER.gguf[:SCALE]... -o OUT.gguf\n"
    "                      [--type F32|F16|BF16|Q8_0|Q4_0|Q4_1|Q5_1|Q4_K_M|Q6_K]\n"
    "  W' = W + SCALE * (alpha/rank) * B @ A for every adapted weight, in F32\n"
    "  (alpha/sqrt(rank) for rsLoRA adapters; SCALE defaults to 1, as llama.cpp's\n"
    "  --lora-scaled).  Without --type every tensor keeps the base's type (an\n"
    "  adapted quantized weight is re-quantized to its type); with --type the\n"
    "  merged model is quantized with llama-quantize's per-tensor policy.\n"
    "  Adapters whose base differs (architecture, a tensor, a shape) are refused.";


int cmd_merge(int argc, char **argv) {
    static const char *const bools[] = {"help", NULL};
    static const char *const known[] = {"type", "output", "help", NULL};
    cli_args a;
    int rc = cli_start(&a, argc, argv, bools, known, USAGE);
    if (rc >= 0) return rc;
    et_err e = {0};
    const char *out = cli_str(&a, "output", NULL);
    const char *type = cli_str(&a, "type", NULL);
    int ftype = -1;
    if (type && (ftype = et_ftype_from_name(type)) < 0) {
        fprintf(stderr, "edgetune: merge: unknown --type '%s'\n%s\n", type, USAGE);
        cli_free(&a);
        return ET_EUSAGE;
    }
    if (a.npos < 2 || !out) {
        fprintf(stderr, "edgetune: merge: needs a base, at least one adapter and -o OUT.gguf\n%s\n", USAGE);
        cli_free(&a);
        return ET_EUSAGE;
    }
    int n = a.npos - 1;
    lora_merge_adapter *ads = calloc((size_t)n, sizeof *ads);
    if (!ads) {
        cli_free(&a);
        return cli_report(&(et_err){ET_ERUN, "out of memory"});
    }
    for (int k = 0; k < n; k++) {
        if ((rc = et_runner_split_scale(a.pos[k + 1], &ads[k].scale, &e))) {   /* cli/runner.h: --lora's rule */
            free(ads);
            cli_free(&a);
            return cli_report(&e);
        }
        ads[k].path = a.pos[k + 1];
    }
    lora_merge_stats st;
    rc = et_engine_check_file(a.pos[0], &e);   /* the base, validated as the loaders do */
    if (!rc) rc = lora_merge(a.pos[0], ads, n, out, ftype, &st, &e);
    if (rc) {
        free(ads);
        cli_free(&a);
        return cli_report(&e);
    }
    for (int k = 0; k < n; k++) printf("adapter %s (scale %g)\n", ads[k].path, (double)ads[k].scale);
    printf("%s -> %s%s%s: %d tensors adapted (%d lora pairs), %.1f KiB\n", a.pos[0], out, type ? " as " : "",
           type ? et_ftype_name(ftype) : "", st.n_adapted, st.n_pairs, (double)st.file_bytes_out / 1024.0);
    free(ads);
    cli_free(&a);
    return 0;
}
