/* cli/run_opts.h — what `edgetune run` and `edgetune perplexity` share
 * beyond cli/runner.h (which edgerun links): flags to runner options, and
 * opening any model format (defined in cli/cmd_run.c). */
#ifndef ET_CLI_RUN_OPTS_H
#define ET_CLI_RUN_OPTS_H

#include "../export/model.h"
#include "cli.h"
#include "runner.h"

/* Flags n, temp, top_k, top_p, min_p, seed, threads, ctx, kv_type, isa,
 * lora, ignore_eos, stats into o (absent flags keep o's values).  0 or ET_EUSAGE. */
int cli_runner_opts(const cli_args *a, et_runner_opts *o, et_err *e);
/* Open MODEL for the runner: a GGUF through the engine's loader (weights in
 * place), anything else through export/ (et_model_load) into *mm, which the
 * caller frees with et_model_free after et_runner_close when *have_mm. */
int cli_open_runner(et_runner *r, et_runner_opts *o, const char *model, const char *tokenizer, et_model *mm,
                    int *have_mm, et_err *e);

#endif
