/* cli/cmd_quantize.c — `edgetune quantize IN.gguf OUT.gguf --type TYPE`:
 * quantize a GGUF model as llama-quantize does (quant/quantize_model.h),
 * printing each tensor's type choice, any row-length fallback, and the
 * sizes before and after. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../engine/engine.h"
#include "../quant/imatrix.h"
#include "../quant/quantize_model.h"
#include "cli.h"

static const char USAGE[] =
    "usage: edgetune quantize IN.gguf OUT.gguf --type F16|BF16|Q8_0|Q4_0|Q4_1|Q5_1|Q2_K|\n"
    "                         Q3_K_S|Q3_K_M|Q3_K_L|Q4_K_M|Q5_K_S|Q5_K_M|Q6_K\n"
    "                         [--imatrix FILE] [--allow-requantize] [--quiet]\n"
    "  Per-tensor types as llama.cpp's llama-quantize; tensors whose\n"
    "  row length does not divide the block fall back (Q4_K -> Q5_0, Q5_K -> Q5_1,\n"
    "  Q6_K -> Q8_0, Q2_K/Q3_K -> IQ4_NL, then F16) and are reported.\n"
    "  --imatrix FILE  importance matrix (edgetune imatrix / llama-imatrix, .dat or GGUF):\n"
    "                  weighted quantization, byte-identical to llama-quantize --imatrix FILE";

static void print_size(FILE *f, uint64_t bytes) {
    if (bytes >= (uint64_t)1 << 20) fprintf(f, "%.2f MiB", bytes / 1048576.0);
    else fprintf(f, "%.1f KiB", bytes / 1024.0);
}

typedef struct progress { int quiet; } progress;

static void on_tensor(const et_quant_tensor *t, void *ctx) {
    const progress *pr = ctx;
    const char *tin = ggml_type_name(t->type_in), *tout = ggml_type_name(t->type_out);
    if (!pr->quiet) {
        char shape[96];
        int n = snprintf(shape, sizeof shape, "[%" PRId64, t->ne[0]);
        for (uint32_t d = 1; d < t->n_dims && n > 0 && (size_t)n < sizeof shape; d++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, ", %" PRId64, t->ne[d]);
        if (n > 0 && (size_t)n < sizeof shape) snprintf(shape + n, sizeof shape - (size_t)n, "]");
        printf("[%4" PRIu64 "/%4" PRIu64 "] %-36s %-14s %-5s -> %-5s ", t->index + 1, t->count, t->name, shape,
               tin ? tin : "?", tout ? tout : "?");
        print_size(stdout, t->bytes_in);
        printf(" -> ");
        print_size(stdout, t->bytes_out);
        printf("%s\n", t->imatrix ? "  (imatrix)" : "");
    }
    if (t->fallback) {
        const char *want = ggml_type_name(t->type_want);
        fprintf(pr->quiet ? stderr : stdout, "%sfallback: %s wanted %s: %s\n", pr->quiet ? "edgetune: " : "    ",
                t->name, want ? want : "?", t->message ? t->message : "row length does not fit the block");
    }
}

int cmd_quantize(int argc, char **argv) {
    static const char *const bools[] = {"allow_requantize", "quiet", "help", NULL};
    static const char *const known[] = {"type", "allow_requantize", "quiet", "output", "imatrix", "help", NULL};
    cli_args a;
    int rc = cli_start(&a, argc, argv, bools, known, USAGE);
    if (rc >= 0) return rc;
    et_err e = {0};
    /* IN OUT --type T, or IN -o OUT --type T, or llama-quantize's IN OUT T */
    const char *type = cli_str(&a, "type", NULL);
    const char *out = cli_str(&a, "output", NULL);
    const char *in = NULL;
    if (a.npos == 1 + (out == NULL) + (type == NULL)) {
        in = a.pos[0];
        if (!out) out = a.pos[1];
        if (!type) type = a.pos[a.npos - 1];
    }
    int ftype = et_ftype_from_name(type);
    if (!in || ftype < 0) {
        if (in && ftype < 0) fprintf(stderr, "edgetune: unknown type '%s'\n", type);
        fprintf(stderr, "%s\n", USAGE);
        cli_free(&a);
        return ET_EUSAGE;
    }
    progress pr = {cli_str(&a, "quiet", NULL) != NULL};
    et_quant_params p = {ftype, cli_str(&a, "allow_requantize", NULL) != NULL, on_tensor, &pr};
    et_quant_stats st;
    /* the model is validated as the loaders do before anything is written */
    if ((rc = et_engine_check_file(in, &e))) {
        cli_free(&a);
        return cli_report(&e);
    }
    const char *imf = cli_str(&a, "imatrix", NULL);
    et_imatrix im;
    et_imatrix_init(&im);
    if (imf) {
        if ((rc = et_imatrix_load(&im, imf, &e))) {
            cli_free(&a);
            return cli_report(&e);
        }
        if (!pr.quiet)
            printf("imatrix %s: %d entries computed on %d chunks%s%s\n", imf, im.n_entries, (int)im.chunk_count,
                   im.dataset ? ", dataset " : "", im.dataset ? im.dataset : "");
    }
    rc = et_quantize_model_imatrix(in, out, &p, imf ? &im : NULL, imf, &st, &e);
    et_imatrix_free(&im);
    char *hint = rc ? strstr(e.msg, "(allow it explicitly)") : NULL;
    if (hint) snprintf(hint, sizeof e.msg - (size_t)(hint - e.msg), "(allow it with --allow-requantize)");
    if (rc) {
        cli_free(&a);
        return cli_report(&e);
    }
    if (pr.quiet) {   /* --quiet: nothing on stdout (fallback warnings still go to stderr) */
        cli_free(&a);
        return 0;
    }
    printf("%s -> %s (%s): %" PRIu64 " tensors, %" PRIu64 " quantized, %" PRIu64 " fallback%s\n", in, out,
           et_ftype_name(ftype), st.n_tensors, st.n_quantized, st.n_fallback, st.n_fallback == 1 ? "" : "s");
    printf("tensor data ");
    print_size(stdout, st.bytes_in);
    printf(" -> ");
    print_size(stdout, st.bytes_out);
    printf("; file ");
    print_size(stdout, st.file_bytes_in);
    printf(" -> ");
    print_size(stdout, st.file_bytes_out);
    if (st.file_bytes_out) printf(" (%.2fx smaller)", (double)st.file_bytes_in / (double)st.file_bytes_out);
    printf("\n");
    cli_free(&a);
    return 0;
}
