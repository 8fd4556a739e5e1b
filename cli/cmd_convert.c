/* cli/cmd_convert.c — `edgetune convert IN -o OUT.gguf [--type F32|F16]
 * [--tokenizer tok.bin] [--name NAME]`.
 *
 * Imports any model et_model_load reads (GGUF llama/deci, also quantized:
 * Q8_0/Q4_0/Q5_0/Q4_1/Q5_1/Q4_K/Q6_K are dequantized; an HF directory, a llama2.c
 * .bin with its tokenizer.bin) and writes GGUF F32 or F16 with
 * llama metadata (export/model.h et_model_save_gguf).  The output is
 * written atomically.  Exit codes: 0, 1 usage, 2 bad input, 3 failure. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../export/gguf.h"
#include "../export/model.h"
#include "cli.h"

static const char *USAGE =
    "usage: edgetune convert IN -o OUT.gguf [--type F32|F16] [--tokenizer tok.bin] [--name NAME]\n"
    "  IN: a GGUF (llama/deci, F32/F16/BF16), an HF directory (config.json + safetensors)\n"
    "      or a llama2.c .bin (its tokenizer.bin / tok<vocab>.bin is found beside it)\n"
    "  --tokenizer: replaces the model's tokenizer: a llama2.c tokenizer.bin, a GGUF with\n"
    "      tokenizer.ggml.* keys (e.g. a vocab-only file) or an HF tokenizer.json\n"
    "  --name: general.name (default: the model's, or the file/directory name)";

int cmd_convert(int argc, char **argv) {
    static const char *const known[] = {"output", "type", "tokenizer", "name", NULL};
    cli_args a;
    et_err e = {0};
    if (cli_parse(&a, argc, argv, NULL, &e)) return cli_report(&e);
    int rc = cli_check_known(&a, known, &e);
    const char *out = cli_str(&a, "output", NULL), *type_s = cli_str(&a, "type", "F32");
    uint32_t type = GGML_TYPE_F32;
    if (!rc && (a.npos != 1 || !out)) rc = et_fail(&e, ET_EUSAGE, "%s", USAGE);
    if (!rc) {
        if (strcmp(type_s, "F16") == 0 || strcmp(type_s, "f16") == 0) type = GGML_TYPE_F16;
        else if (strcmp(type_s, "F32") != 0 && strcmp(type_s, "f32") != 0)
            rc = et_fail(&e, ET_EUSAGE, "--type must be F32 or F16, not '%s'", type_s);
    }
    if (rc) {
        cli_free(&a);
        return cli_report(&e);
    }
    et_model m;
    rc = et_model_load(&m, a.pos[0], cli_str(&a, "tokenizer", NULL), &e);
    if (!rc) {
        const char *name = cli_str(&a, "name", NULL);
        if (name) snprintf(m.name, sizeof m.name, "%s", name);
        if (!m.tok)
            fprintf(stderr, "edgetune: warning: %s: no tokenizer found; %s will have no tokenizer keys "
                            "(llama.cpp needs them; pass --tokenizer)\n", a.pos[0], out);
        rc = et_model_save_gguf(&m, out, type, &e);
    }
    if (!rc) {
        struct stat st;
        long long bytes = stat(out, &st) == 0 ? (long long)st.st_size : -1;
        fprintf(stderr, "%s -> %s: arch %s, %d layers, n_embd %d, n_vocab %d, %zu parameters, %s, %lld bytes\n",
                a.pos[0], out, et_model_export_arch(&m),
                m.hp.n_layer, m.hp.n_embd, m.hp.n_vocab, m.n_params, type == GGML_TYPE_F16 ? "F16" : "F32", bytes);
    }
    et_model_free(&m); /* zeroed by et_model_load on failure */
    cli_free(&a);
    return rc ? cli_report(&e) : 0;
}
