/* cli/edgerun.c — the standalone runtime: C11 + libm + pthreads only
 * (links engine/, quant/, common/, export/gguf*, datasets/tokenizer* and
 * cli/runner.c; no OpenBLAS, HDF5 or cJSON).
 *
 *   edgerun -m stories260K.gguf -p "Once upon a time" -n 64 --temp 0
 *   edgerun -m model.gguf --lora style.gguf:0.8 --lora domain.gguf -p "..."
 *   edgerun -m model.gguf --perplexity text.txt
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "runner.h"

static const char USAGE[] =
    "usage: edgerun -m MODEL.gguf [-p PROMPT | -f PROMPT_FILE] [options]\n"
    "       edgerun -m MODEL.gguf --perplexity TEXT_FILE [options]\n"
    "  -n, --n-predict N   tokens to generate (default 128)\n"
    "  --temp T            temperature (default 0.8; 0 = greedy)\n"
    "  --top-k K           keep the K most likely tokens (default 40; 0 = off)\n"
    "  --top-p P           nucleus sampling (default 0.95; 1 = off)\n"
    "  --min-p P           drop tokens below P x the most likely (default 0.05; 0 = off)\n"
    "  --seed S            sampler seed (default 0)\n"
    "  -t, --threads N     threads (default 1; 0 = auto: OMP_NUM_THREADS, else every online CPU)\n"
    "  -c, --ctx N         context length (default or 0: the model's, at most 4096)\n"
    "  --lora FILE[:SCALE] apply a GGUF LoRA adapter (repeatable; scale 1 by default)\n"
    "  --kv-type F16|F32   KV cache type (default F16; F32 for --perplexity)\n"
    "  --isa NAME          scalar, avx2, avx512 or neon (default: the best available)\n"
    "  --ignore-eos        keep generating after the end-of-sequence token\n"
    "  --stats             timings, SIMD path and peak memory on stderr\n"
    "  --perplexity FILE   perplexity of a text file, in windows of the context length\n"
    "  --chat              a conversation: each stdin line is a user turn (KV cache kept across turns)\n"
    "  --system TEXT       the conversation's system message\n"
    "  --chat-template NAME  chatml, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip, llama3,\n"
    "                      zephyr, phi3, gemma, alpaca (default: the model's tokenizer.chat_template)\n"
    "  --verbose-prompt    chat: each turn's rendered prompt and cache use on stderr\n";

static int usage_error(const char *msg, const char *arg) {
    fprintf(stderr, "edgerun: %s%s%s\n%s", msg, arg ? " " : "", arg ? arg : "", USAGE);
    return ET_EUSAGE;
}

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return -1;
    *out = (float)v;
    return 0;
}

static char *read_file(const char *path, size_t *n, et_err *e) {
    et_map m;
    if (et_map_open(&m, path, e)) return NULL;
    char *b = malloc(m.size + 1);
    if (!b) {
        et_map_close(&m);
        et_fail(e, ET_ERUN, "%s: out of memory", path);
        return NULL;
    }
    if (m.size) memcpy(b, m.data, m.size);
    b[m.size] = 0;
    *n = m.size;
    et_map_close(&m);
    return b;
}

int main(int argc, char **argv) {
    et_runner_opts o;
    et_runner_defaults(&o);
    o.prog = "edgerun";
    const char *prompt_file = NULL, *ppl_file = NULL, *kv = NULL;
    int chat = 0;
    et_err e = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (!strcmp(a, "--ignore-eos")) { o.ignore_eos = 1; continue; }
        if (!strcmp(a, "--stats")) { o.stats = 1; continue; }
        if (!strcmp(a, "--chat")) { chat = 1; continue; }
        if (!strcmp(a, "--verbose-prompt")) { o.verbose_prompt = 1; continue; }
        if (i + 1 >= argc) return usage_error("missing value for", a);
        const char *v = argv[++i];
        long n;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o.model = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o.prompt = v;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) prompt_file = v;
        else if (!strcmp(a, "--perplexity")) ppl_file = v;
        else if (!strcmp(a, "--system")) o.system = v;
        else if (!strcmp(a, "--chat-template")) o.chat_template = v;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (parse_int(v, 0, 1 << 24, &n)) return usage_error("bad value for", a);
            o.n_predict = (int)n;
        } else if (!strcmp(a, "--temp")) {
            if (parse_float(v, &o.sp.temp)) return usage_error("bad value for", a);
        } else if (!strcmp(a, "--top-k")) {
            if (parse_int(v, 0, 1 << 24, &n)) return usage_error("bad value for", a);
            o.sp.top_k = (int)n;
        } else if (!strcmp(a, "--top-p")) {
            if (parse_float(v, &o.sp.top_p)) return usage_error("bad value for", a);
        } else if (!strcmp(a, "--min-p")) {
            if (parse_float(v, &o.sp.min_p)) return usage_error("bad value for", a);
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end) return usage_error("bad value for", a);
            o.sp.seed = (uint64_t)s;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (parse_int(v, 0, 256, &n)) return usage_error("bad value for", a);
            o.n_threads = n ? (int)n : et_auto_threads();   /* common/et.h: 0 = auto in every command */
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            /* 0 = the model's context, as `edgetune run --ctx 0` (issue 11) */
            if (parse_int(v, 0, 1 << 22, &n) || n == 1) return usage_error("bad value for", a);
            o.n_ctx = (int)n;
        } else if (!strcmp(a, "--lora")) {
            if (et_runner_add_lora(&o, v, &e)) return usage_error(e.msg, NULL);
        } else if (!strcmp(a, "--kv-type")) kv = v;
        else if (!strcmp(a, "--isa")) o.isa = v;
        else return usage_error("unknown option", a);
    }
    if (!o.model) return usage_error("no model (-m MODEL.gguf)", NULL);
    if (chat && (ppl_file || prompt_file || o.prompt)) return usage_error("--chat reads the turns from stdin; drop", "-p/-f/--perplexity");
    if (kv && et_runner_kv_type(kv, &o.kv_type, &e)) return usage_error(e.msg, NULL);
    if (ppl_file && !kv) o.kv_type = GGML_TYPE_F32;

    char *text = NULL;
    size_t text_len = 0;
    const char *in = ppl_file ? ppl_file : prompt_file;
    if (in && !(text = read_file(in, &text_len, &e))) {
        fprintf(stderr, "edgerun: %s\n", e.msg);
        return e.code ? e.code : ET_EINPUT;
    }
    if (prompt_file && !ppl_file) o.prompt = text;

    et_runner r;
    int rc = et_runner_open(&r, &o, NULL, &e);
    if (!rc) {
        if (ppl_file) {
            et_ppl p = {0};
            rc = et_runner_perplexity_text(&r, text, text_len, ppl_file, &p, &e);
            if (!rc) rc = et_runner_check_scored(&p, ppl_file, &e);
            if (!rc) et_runner_print_ppl(stdout, &p);
        } else if (chat) {
            rc = et_runner_chat(&r, stdin, stdout, &e);
        } else {
            rc = et_runner_generate(&r, stdout, &e);
        }
        et_runner_close(&r);
    }
    free(text);
    if (o.stats) {
        struct rusage ru;
        if (!getrusage(RUSAGE_SELF, &ru)) fprintf(stderr, "edgerun: peak RSS %ld KiB\n", ru.ru_maxrss);
    }
    if (rc) {
        fprintf(stderr, "edgerun: %s\n", e.msg[0] ? e.msg : "failed");
        return rc;
    }
    return 0;
}
