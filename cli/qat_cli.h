/* cli/qat_cli.h — the QAT flags shared by the training commands
 * (`edgetune train --qat TYPE`, `edgetune lora --qat TYPE`, and for
 * `edgetune distill --qat TYPE`): parsing, the recipe keys, attaching to a
 * bound model with the notices people see, and the quantized export.
 *
 *   --qat TYPE           fake-quantize as `edgetune quantize --type TYPE` would
 *                        quantize (Q8_0, Q4_0, Q4_1, Q5_1, Q2_K, Q3_K_S,
 *                        Q3_K_M, Q3_K_L, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K)
 *   --qat-start STEP     fake-quant only after STEP optimizer steps (default 0)
 *   --qat-type-map FILE  per-tensor types over TYPE's: lines "TENSOR TYPE"
 *                        (GGUF tensor name, ggml type name: Q4_0, Q4_K, Q6_K,
 *                        F16, F32 ...), '#' starts a comment
 *   --qat-imatrix FILE   train on `quantize --type TYPE --imatrix FILE`'s grid
 *                        (llama.cpp .dat or GGUF imatrix; the export then uses
 *                        it too, so QAT starts from imatrix PTQ)
 *   --qat-act            also round each quantized matmul's input as the
 *                        engine does (Q8_0/Q8_K activations; train and
 *                        distill only)
 * Errors: an unknown type name (in --qat or the map) is ET_EINPUT (exit 2)
 * naming the valid ones; a map line that names no tensor is ET_EINPUT
 * naming the file and line.
 */
#ifndef ET_CLI_QAT_H
#define ET_CLI_QAT_H

#include "../train/lora_llama.h"
#include "../quant/imatrix.h"
#include "../train/qat.h"
#include "cli.h"
#include "train_ui.h"

typedef struct cli_qat {
    int on;                 /* --qat given */
    char name[16];          /* its ftype name, e.g. "Q4_K_M" */
    int ftype;              /* enum et_ftype */
    long start;             /* --qat-start */
    const char *type_map;   /* --qat-type-map path or NULL */
    int n_over;             /* the map's entries */
    char **over_names;
    uint32_t *over_types;
    const char *imatrix_path; /* --qat-imatrix path or NULL */
    int act;                /* --qat-act */
    et_imatrix im;          /* loaded when imatrix_path is set */
} cli_qat;

/* Read --qat, --qat-start, --qat-type-map, --qat-imatrix (the map and
 * the imatrix are read now).
 * 0, ET_EUSAGE (a flag without --qat, bad --qat-start) or ET_EINPUT. */
int cli_qat_opts(const cli_args *a, cli_qat *c, et_err *e);
/* Add the QAT flags to a recipe (nothing when --qat is off). */
void cli_qat_recipe(const cli_qat *c, cli_recipe *r);
/* et_qat_attach on L (or, when ll is set, et_lora_llama_qat on ll: L is then
 * ignored) with c's options, fallbacks reported on stderr, a one-line
 * summary; resume_ckpt (or NULL): the checkpoint whose step decides whether
 * fake quantization is already on.  0 or an error code. */
int cli_qat_attach(const cli_qat *c, et_qat *q, et_llama *L, et_lora_llama *ll, const char *resume_ckpt, et_err *e);
/* et_train_opts.on_event for a training command with QAT: et_qat_step after
 * every optimizer step, then cli_progress_event.  user: a cli_qat_events. */
typedef struct cli_qat_events {
    cli_progress *p;
    et_qat *q;              /* NULL: no QAT */
} cli_qat_events;
int cli_qat_event(void *user, const et_train_event *ev);
/* The quantized GGUF of the trained model: f32_path (the F32 export) ->
 * out_path.  Without a type map this is et_quantize_model with c's ftype,
 * i.e. `edgetune quantize --type TYPE f32_path` (with --qat-imatrix F:
 * `... --imatrix F`, F as typed, so the two files are byte-identical); with
 * one, each tensor in the type q trained it in.  Atomic.  0 or an error code. */
int cli_qat_export(const cli_qat *c, const et_qat *q, const char *f32_path, const char *out_path, et_err *e);
void cli_qat_free(cli_qat *c);

#endif
