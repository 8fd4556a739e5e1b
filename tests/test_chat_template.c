/* tests/test_chat_template.c — chat templates (datasets/chat_template.h):
 *  - rendering of one multi-turn conversation with a system message for
 *    every template, against the strings llama.cpp's
 *    tests/test-chat-template.cpp expects from llm_chat_apply_template
 *    (c392e509; zephyr and llama2-sys follow its rendering code, alpaca is
 *    ours), plus what each template trains (assistant contents + end of turn);
 *  - detection by signature on hand-written template snippets and on the real
 *    SmolLM2-135M-Instruct GGUF (skips without it: scripts/get_models.sh);
 *  - token ids: SmolLM2's rendering against llama-tokenize's ids, and the
 *    special markers of every template as special ids of a small vocabulary;
 *  - `edgetune data` on chat and Alpaca records: only assistant tokens trained;
 *  - `edgerun --chat` / `edgetune run --chat` over two turns from stdin: the
 *    second turn's prompt holds the first, and the KV cache is reused;
 *  - bad input: unknown or unrecognisable templates name --chat-template. */
#include "testutil.h"

#include <sys/wait.h>

#include "../datasets/chat_template.h"
#include "../datasets/dataset.h"
#include "../datasets/ingest.h"
#include "../datasets/ingest_tok.h"
#include "../datasets/tokenizer.h"
#include "../datasets/hf_tokenizer.h"
#include "../export/gguf.h"
#include "../export/model.h"

#define STORIES "models/stories260K/stories260K.gguf"
#define SMOL_NAME "SmolLM2-135M-Instruct.Q4_1.gguf"

/* llama.cpp's conversation (tests/test-chat-template.cpp). */
static const et_chat_msg CONV[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};
#define N_CONV 6

typedef struct tcase {
    int tmpl;
    const char *text;     /* rendered with the generation prompt */
    const char *trained;  /* the trained segments, concatenated */
} tcase;

static const tcase CASES[] = {
    {ET_CHAT_CHATML,
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
     "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
     "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n"
     "<|im_start|>assistant\n",
     "Hi there<|im_end|>   I am an assistant   <|im_end|>"},
    {ET_CHAT_LLAMA2,
     "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   "
     "</s>[INST] Another question [/INST]",
     "Hi there</s>   I am an assistant   </s>"},
    {ET_CHAT_LLAMA2_SYS,
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]"
     "   I am an assistant   </s>[INST] Another question [/INST]",
     "Hi there</s>   I am an assistant   </s>"},
    {ET_CHAT_LLAMA2_SYS_BOS,
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s><s>[INST] Who are you "
     "[/INST]   I am an assistant   </s><s>[INST] Another question [/INST]",
     "Hi there</s>   I am an assistant   </s>"},
    {ET_CHAT_LLAMA2_SYS_STRIP,
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]"
     "I am an assistant</s>[INST] Another question [/INST]",
     "Hi there</s>I am an assistant</s>"},
    {ET_CHAT_LLAMA3,
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user"
     "<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant"
     "<|end_header_id|>\n\nI am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother "
     "question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
     "Hi there<|eot_id|>I am an assistant<|eot_id|>"},
    {ET_CHAT_ZEPHYR,
     "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello<|endoftext|>\n<|assistant|>\nHi "
     "there<|endoftext|>\n<|user|>\nWho are you<|endoftext|>\n<|assistant|>\n   I am an assistant   "
     "<|endoftext|>\n<|user|>\nAnother question<|endoftext|>\n<|assistant|>\n",
     "Hi there<|endoftext|>   I am an assistant   <|endoftext|>"},
    {ET_CHAT_PHI3,
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n"
     "<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother "
     "question<|end|>\n<|assistant|>\n",
     "Hi there<|end|>   I am an assistant   <|end|>"},
    {ET_CHAT_GEMMA,
     "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi "
     "there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an "
     "assistant<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n",
     "Hi there<end_of_turn>I am an assistant<end_of_turn>"},
    {ET_CHAT_ALPACA,
     "You are a helpful assistant\n\n### Instruction:\nHello\n\n### Response:\nHi there\n\n### Instruction:\nWho "
     "are you\n\n### Response:\n   I am an assistant   \n\n### Instruction:\nAnother question\n\n### Response:\n",
     "Hi there   I am an assistant   "},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))

/* The trained segments of r, concatenated (malloc'd). */
static char *trained_text(const et_chat_out *r) {
    char *t = calloc(r->len + 1, 1);
    size_t k = 0, start = 0;
    for (int i = 0; i < r->n_segs; i++) {
        assert_true(r->segs[i].end > start);
        if (i) assert_int_not_equal(r->segs[i].train, r->segs[i - 1].train);
        if (r->segs[i].train) {
            memcpy(t + k, r->text + start, r->segs[i].end - start);
            k += r->segs[i].end - start;
        }
        start = r->segs[i].end;
    }
    assert_int_equal(start, r->len);
    return t;
}

static void test_render_all(void **state) {
    (void)state;
    assert_int_equal(N_CASES, ET_CHAT_COUNT - 1); /* every template has a case */
    for (int i = 0; i < N_CASES; i++) {
        const tcase *c = &CASES[i];
        et_chat_out r;
        et_err e = {0};
        if (et_chat_render(c->tmpl, CONV, N_CONV, 1, &r, &e)) fail_msg("%s: %s", et_chat_name(c->tmpl), e.msg);
        if (strcmp(r.text, c->text))
            fail_msg("%s:\nexpected:\n%s\n---\ngot:\n%s", et_chat_name(c->tmpl), c->text, r.text);
        assert_int_equal(r.len, strlen(c->text));
        char *t = trained_text(&r);
        if (strcmp(t, c->trained)) fail_msg("%s trains '%s', expected '%s'", et_chat_name(c->tmpl), t, c->trained);
        free(t);
        et_chat_out_free(&r);
        /* name round trip */
        assert_int_equal(et_chat_from_name(et_chat_name(c->tmpl)), c->tmpl);
        assert_int_equal(et_chat_detect(et_chat_name(c->tmpl), NULL), c->tmpl);
    }
}

/* llama.cpp's llama_chat_format_single checks for a lone system message
 * (no generation prompt), and the generation-prompt forms. */
static void test_render_single(void **state) {
    (void)state;
    static const struct {
        int tmpl;
        const char *sys, *gen;
    } C[] = {
        {ET_CHAT_CHATML, "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n",
         "<|im_start|>user\nHow are you<|im_end|>\n<|im_start|>assistant\n"},
        {ET_CHAT_LLAMA2, "[INST] You are a helpful assistant\n", "[INST] How are you [/INST]"},
        {ET_CHAT_LLAMA2_SYS, "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\n", "[INST] How are you [/INST]"},
        {ET_CHAT_GEMMA, "", "<start_of_turn>user\nHow are you<end_of_turn>\n<start_of_turn>model\n"},
        {ET_CHAT_LLAMA3, "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>",
         "<|start_header_id|>user<|end_header_id|>\n\nHow are you<|eot_id|><|start_header_id|>assistant"
         "<|end_header_id|>\n\n"},
    };
    et_chat_msg sys = {"system", "You are a helpful assistant"}, user = {"user", "How are you"};
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        et_chat_out r;
        et_err e = {0};
        assert_int_equal(et_chat_render(C[i].tmpl, &sys, 1, 0, &r, &e), 0);
        if (strcmp(r.text, C[i].sys)) fail_msg("%s system: got '%s'", et_chat_name(C[i].tmpl), r.text);
        et_chat_out_free(&r);
        assert_int_equal(et_chat_render(C[i].tmpl, &user, 1, 1, &r, &e), 0);
        if (strcmp(r.text, C[i].gen)) fail_msg("%s user: got '%s'", et_chat_name(C[i].tmpl), r.text);
        et_chat_out_free(&r);
    }
    /* bad input */
    et_chat_msg bad = {"tool", "x"};
    et_chat_out r;
    et_err e = {0};
    assert_int_equal(et_chat_render(ET_CHAT_CHATML, &bad, 1, 0, &r, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "tool"));
    assert_null(r.text);
    assert_int_equal(et_chat_render(ET_CHAT_NONE, &user, 1, 0, &r, &e), ET_EUSAGE);
    assert_int_equal(et_chat_from_name("chatml2"), -1);
}

/* Hand-written snippets with each family's signature. */
static void test_detect(void **state) {
    (void)state;
    static const struct {
        const char *tmpl;
        int want;
        const char *family;
    } C[] = {
        {"{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}",
         ET_CHAT_CHATML, NULL},
        {"{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
         "{% else %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}",
         ET_CHAT_LLAMA2, NULL},
        {"{{ '[INST] <<SYS>>\\n' + sys + '\\n<</SYS>>\\n\\n' }}{{ u + ' [/INST]' }}", ET_CHAT_LLAMA2_SYS, NULL},
        {"{{ '[INST] <<SYS>>\\n' }}{{ bos_token + '[INST] ' + u + ' [/INST]' }}", ET_CHAT_LLAMA2_SYS_BOS, NULL},
        {"{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{{ '<<SYS>>\\n' }}", ET_CHAT_LLAMA2_SYS_STRIP,
         NULL},
        {"mistral", ET_CHAT_LLAMA2, NULL},
        {"{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim "
         "+ '<|eot_id|>' }}{% endfor %}",
         ET_CHAT_LLAMA3, NULL},
        {"{% for m in messages %}{% if m['role'] == 'user' %}{{ '<|user|>\\n' + m['content'] + '<|endoftext|>' }}"
         "{% endif %}{% endfor %}",
         ET_CHAT_ZEPHYR, NULL},
        {"{{'<|' + m['role'] + '|>' + '\\n' + m['content'] + '<|end|>\\n' }}{{ '<|assistant|>\\n' }}", ET_CHAT_PHI3, NULL},
        {"{{ '<start_of_turn>' + role + '\\n' + m['content'] | trim + '<end_of_turn>\\n' }}", ET_CHAT_GEMMA, NULL},
        {"{{ '### Instruction:\\n' + m['content'] + '\\n\\n' }}{{ '### Response:\\n' }}", ET_CHAT_ALPACA, NULL},
        /* llama.cpp knows these; edgetune does not render them */
        {"{{'<|im_start|>' + m['role'] + '<|im_sep|>' + m['content'] + '<|im_end|>'}}", ET_CHAT_UNKNOWN, "phi4"},
        {"{{ '[SYSTEM_PROMPT] ' + s + '[/SYSTEM_PROMPT]' }}{{ '[INST] ' + u + '[/INST]' }}", ET_CHAT_UNKNOWN,
         "mistral-v7"},
        {"{{ '### Instruction:\\n' + c + '\\n' }}{{ '### Response:\\n' + c + '\\n<|EOT|>\\n' }}", ET_CHAT_UNKNOWN,
         "deepseek"},
        {"{{ '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + c }}", ET_CHAT_UNKNOWN, "command-r"},
        {"{% for m in messages %}{{ m['content'] }}{% endfor %}", ET_CHAT_UNKNOWN, NULL},
        {"", ET_CHAT_NONE, NULL},
        {NULL, ET_CHAT_NONE, NULL},
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        const char *fam = "x";
        int got = et_chat_detect(C[i].tmpl, &fam);
        if (got != C[i].want) fail_msg("case %zu: detected %d, expected %d (%s)", i, got, C[i].want, C[i].tmpl);
        if (C[i].family ? !fam || strcmp(fam, C[i].family) : fam != NULL)
            fail_msg("case %zu: family %s, expected %s", i, fam ? fam : "(none)", C[i].family ? C[i].family : "(none)");
    }
    et_err e = {0};
    assert_int_equal(et_chat_unknown_error("m.gguf", "phi4", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "--chat-template"));
    assert_non_null(strstr(e.msg, "phi4"));
}

/* ------------------------------------------------------------ token ids */

/* A small SPM vocabulary: <unk> <s> </s>, every template's markers as
 * CONTROL tokens, the space piece U+2581 and 256 byte tokens. */
static const char *const MARKERS[] = {"<|im_start|>", "<|im_end|>", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>",
                                      "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|system|>",
                                      "<|user|>", "<|assistant|>", "<|endoftext|>", "<|end|>", "<start_of_turn>",
                                      "<end_of_turn>"};
#define N_MARK ((int)(sizeof MARKERS / sizeof MARKERS[0]))

static et_tokenizer *marker_vocab(void) {
    int n = 3 + N_MARK + 1 + 256;
    const char **pieces = calloc((size_t)n, sizeof *pieces);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    int32_t *types = calloc((size_t)n, sizeof *types);
    static char bytes[256][8];
    pieces[0] = "<unk>";
    pieces[1] = "<s>";
    pieces[2] = "</s>";
    types[0] = ET_TOKT_UNKNOWN;
    types[1] = types[2] = ET_TOKT_CONTROL;
    for (int i = 0; i < N_MARK; i++) {
        pieces[3 + i] = MARKERS[i];
        types[3 + i] = ET_TOKT_CONTROL;
    }
    pieces[3 + N_MARK] = "\xe2\x96\x81";
    types[3 + N_MARK] = ET_TOKT_NORMAL;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        pieces[4 + N_MARK + b] = bytes[b];
        types[4 + N_MARK + b] = ET_TOKT_BYTE;
    }
    for (int i = 0; i < n; i++) lens[i] = strlen(pieces[i]);
    et_tok_spec s = {.model = ET_TOK_SPM, .n_vocab = n, .pieces = pieces, .piece_lens = lens, .types = types,
                     .bos = 1, .eos = 2, .unk = 0, .pad = -1, .add_bos = 0, .add_eos = 0, .add_space_prefix = 0};
    et_tokenizer *t = NULL;
    et_err e = {0};
    if (et_tok_build(&t, &s, "markers", &e)) fail_msg("%s", e.msg);
    free(pieces);
    free(lens);
    free(types);
    return t;
}

/* The markers (and <s>, </s>) in text, in order, as ids of marker_vocab. */
static size_t expected_specials(const char *text, int32_t *out) {
    size_t k = 0;
    for (const char *p = text; *p;) {
        int best = -1;
        size_t bl = 0;
        for (int i = 0; i < N_MARK + 2; i++) {
            const char *m = i < N_MARK ? MARKERS[i] : i == N_MARK ? "<s>" : "</s>";
            size_t l = strlen(m);
            if (l > bl && !strncmp(p, m, l)) {
                best = i < N_MARK ? 3 + i : i == N_MARK ? 1 : 2;
                bl = l;
            }
        }
        if (best >= 0) {
            out[k++] = best;
            p += bl;
        } else {
            p++;
        }
    }
    return k;
}

static void test_marker_ids(void **state) {
    (void)state;
    et_tokenizer *t = marker_vocab();
    for (int i = 0; i < N_CASES; i++) {
        et_chat_out r;
        et_err e = {0};
        assert_int_equal(et_chat_render(CASES[i].tmpl, CONV, N_CONV, 1, &r, &e), 0);
        int32_t *ids, *plain, want[256];
        size_t n, np, nw = expected_specials(r.text, want);
        assert_int_equal(et_tok_encode(t, r.text, r.len, ET_TOK_PARSE_SPECIAL, &ids, &n, &e), 0);
        assert_int_equal(et_tok_encode(t, r.text, r.len, 0, &plain, &np, &e), 0);
        size_t k = 0, kp = 0;
        for (size_t j = 0; j < n; j++)
            if (ids[j] < 3 + N_MARK) {
                if (k >= nw || ids[j] != want[k]) fail_msg("%s: special id %d at token %zu", et_chat_name(CASES[i].tmpl), ids[j], j);
                k++;
            }
        assert_int_equal(k, nw);
        if (CASES[i].tmpl != ET_CHAT_ALPACA) assert_true(nw > 0);
        for (size_t j = 0; j < np; j++) kp += plain[j] < 3 + N_MARK; /* without PARSE_SPECIAL: plain text */
        assert_int_equal(kp, 0);
        /* the text between markers round-trips */
        char *dec;
        size_t dl;
        assert_int_equal(et_tok_decode(t, ids, n, ET_TOK_PARSE_SPECIAL, &dec, &dl, &e), 0);
        assert_string_equal(dec, r.text);
        free(dec);
        free(ids);
        free(plain);
        et_chat_out_free(&r);
    }
    et_tok_free(t);
}

/* ------------------------------------------------------------ SmolLM2 */

static const char *smol_path(void) {
    static char p[4096];
    const char *home = getenv("HOME"), *cache = getenv("ET_MODEL_CACHE");
    snprintf(p, sizeof p, "%s/models/smollm2-135m-instruct/%s", et_shared_dir(), SMOL_NAME);
    if (!access(p, R_OK)) return p;
    if (cache && *cache) {
        snprintf(p, sizeof p, "%s/%s", cache, SMOL_NAME);
        if (!access(p, R_OK)) return p;
    }
    snprintf(p, sizeof p, "%s/.cache/edgetune/%s", home ? home : "/nonexistent", SMOL_NAME);
    return access(p, R_OK) ? NULL : p;
}

#define SMOL_OR_SKIP(var)                                                                               \
    const char *var = smol_path();                                                                      \
    if (!var) {                                                                                         \
        fprintf(stderr, "SKIP: " SMOL_NAME " not found in %s/models/smollm2-135m-instruct/, $ET_MODEL_CACHE " \
                        "or ~/.cache/edgetune (fetch it with scripts/get_models.sh)\n",                \
                et_shared_dir());                                                                       \
        skip();                                                                                         \
    }

static et_tokenizer *load_tok(const char *path) {
    et_tokenizer *t = NULL;
    et_err e = {0};
    if (et_ingest_load_tokenizer(&t, path, 0, &e)) fail_msg("%s", e.msg);
    return t;
}

/* llama-tokenize -m SmolLM2-135M-Instruct.Q4_1.gguf --ids -p "<CASES[0].text>" (llama.cpp c392e509). */
static const int32_t SMOL_IDS[] = {1,    9690, 198,  2683, 359,   253, 5356, 11173, 2,    198,  1,    4093, 198,  19556,
                                   2,    198,  1,    520,  9531,  198, 26843, 665,  2,    198,  1,    4093, 198,  10576,
                                   359,  346,  2,    198,  1,    520,  9531,  11181, 339, 744,  354,  11173, 333,  2,
                                   198,  1,    4093, 198,  4809,  1962, 2,    198,  1,    520,  9531, 198};

static void test_smollm2(void **state) {
    (void)state;
    SMOL_OR_SKIP(path);
    et_tokenizer *t = load_tok(path);
    const char *ct = et_tok_chat_template(t);
    assert_non_null(ct);
    assert_non_null(strstr(ct, "<|im_start|>"));
    assert_int_equal(et_chat_detect(ct, NULL), ET_CHAT_CHATML);
    et_chat_out r;
    et_err e = {0};
    assert_int_equal(et_chat_render(ET_CHAT_CHATML, CONV, N_CONV, 1, &r, &e), 0);
    int32_t *ids;
    size_t n;
    assert_int_equal(et_tok_encode(t, r.text, r.len, ET_TOK_DEFAULT_BOS | ET_TOK_PARSE_SPECIAL, &ids, &n, &e), 0);
    size_t nw = sizeof SMOL_IDS / sizeof SMOL_IDS[0];
    assert_int_equal(n, nw);
    for (size_t i = 0; i < n; i++)
        if (ids[i] != SMOL_IDS[i]) fail_msg("token %zu: %d, llama.cpp %d", i, ids[i], SMOL_IDS[i]);
    free(ids);
    et_chat_out_free(&r);
    /* a written tokenizer keeps the template */
    gguf_writer *w = gguf_writer_new();
    char out[512];
    snprintf(out, sizeof out, "%s/smol_vocab.gguf", test_tmpdir());
    assert_int_equal(gguf_set_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(et_tok_write_gguf(t, w, &e), 0);
    if (gguf_writer_write(w, out, &e)) fail_msg("%s", e.msg);
    gguf_writer_free(w);
    et_tokenizer *t2 = load_tok(out);
    assert_non_null(et_tok_chat_template(t2));
    assert_string_equal(et_tok_chat_template(t2), ct);
    char h1[65], h2[65];
    et_tok_sha256(t, h1);
    et_tok_sha256(t2, h2);
    assert_string_equal(h1, h2);
    et_tok_free(t2);
    et_tok_free(t);
}

/* ------------------------------------------------------------ data */

static char *write_file(const char *name, const char *text) {
    static char p[8][512];
    static int k;
    char *b = p[k++ & 7];
    snprintf(b, sizeof p[0], "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(b, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return b;
}

static const char CHAT_JSONL[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"You are a helpful assistant\"}, {\"role\": \"user\", "
    "\"content\": \"Hello\"}, {\"role\": \"assistant\", \"content\": \"Hi there\"}, {\"role\": \"user\", \"content\": "
    "\"Who are you\"}, {\"role\": \"assistant\", \"content\": \"I am SmolLM\"}]}\n"
    "{\"instruction\": \"Name a colour\", \"input\": \"\", \"output\": \"Blue\"}\n";

/* Ingest CHAT_JSONL with tokenizer t and template tmpl; the decoded trained
 * tokens of each document must be `want[doc]`. */
static void check_masks(et_tokenizer *t, int tmpl, const char *const want[2], int dec_flags) {
    et_err e = {0};
    et_ingest_opts o = et_ingest_defaults();
    o.chat_template = tmpl;
    et_encoder enc;
    et_encoder_from_tok_special(&enc, t);
    const char *in = write_file("chat.jsonl", CHAT_JSONL);
    char out[512];
    snprintf(out, sizeof out, "%s/chat_%d.h5", test_tmpdir(), tmpl);
    et_ingest_summary s;
    if (et_ingest_file(&enc, in, out, &o, &s, &e)) fail_msg("%s", e.msg);
    et_ds *ds;
    if (et_ds_open(&ds, out, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ds->n_docs, 2);
    for (int d = 0; d < 2; d++) {
        int64_t a = ds->doc_offsets[d], b = ds->doc_offsets[d + 1];
        int32_t *tok = malloc((size_t)(b - a) * sizeof *tok), *tr = malloc((size_t)(b - a) * sizeof *tr);
        uint8_t *mask = malloc((size_t)(b - a));
        assert_int_equal(et_ds_read_tokens(ds, a, b - a, tok, &e), 0);
        assert_int_equal(et_ds_read_mask(ds, a, b - a, mask, &e), 0);
        size_t k = 0;
        for (int64_t i = 0; i < b - a; i++)
            if (mask[i]) tr[k++] = tok[i];
        char *txt;
        size_t len;
        assert_int_equal(et_tok_decode(t, tr, k, dec_flags, &txt, &len, &e), 0);
        if (strcmp(txt, want[d])) fail_msg("doc %d (%s): trained '%s', expected '%s'", d, et_chat_name(tmpl), txt, want[d]);
        free(txt);
        free(tok);
        free(tr);
        free(mask);
    }
    et_ds_close(ds);
}

static void test_data_masks_smollm2(void **state) {
    (void)state;
    SMOL_OR_SKIP(path);
    et_tokenizer *t = load_tok(path);
    /* <|im_end|> is one special token, trained; "\n" and EOS after it masked */
    const char *const want[2] = {"Hi there<|im_end|>I am SmolLM<|im_end|>", "Blue<|im_end|>"};
    check_masks(t, et_chat_detect(et_tok_chat_template(t), NULL), want, ET_TOK_PARSE_SPECIAL);
    /* the special ids really are there: the first token of a document is <|im_start|> */
    et_err e = {0};
    int32_t *ids;
    size_t n;
    assert_int_equal(et_tok_encode(t, "<|im_start|>user", 16, ET_TOK_PARSE_SPECIAL, &ids, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 1);
    free(ids);
    et_tok_free(t);
}

static void test_data_masks_markers(void **state) {
    (void)state;
    et_tokenizer *t = marker_vocab();
    const char *const chatml[2] = {"Hi there<|im_end|>I am SmolLM<|im_end|>", "Blue<|im_end|>"};
    check_masks(t, ET_CHAT_CHATML, chatml, ET_TOK_PARSE_SPECIAL);
    const char *const llama3[2] = {"Hi there<|eot_id|>I am SmolLM<|eot_id|>", "Blue<|eot_id|>"};
    check_masks(t, ET_CHAT_LLAMA3, llama3, ET_TOK_PARSE_SPECIAL);
    /* llama2: the rendered </s> is trained, the EOS appended after it is not */
    const char *const llama2[2] = {"Hi there</s>I am SmolLM</s>", "Blue</s>"};
    check_masks(t, ET_CHAT_LLAMA2_SYS, llama2, ET_TOK_PARSE_SPECIAL);
    et_tok_free(t);
}

/* An unrecognisable template, or a chat record with ET_CHAT_UNKNOWN: errors naming --chat-template. */
static void test_data_unknown_template(void **state) {
    (void)state;
    et_tokenizer *t = marker_vocab();
    et_err e = {0};
    assert_int_equal(et_tok_set_chat_template(t, "{{ messages | weird }}", 22, &e), 0);
    gguf_writer *w = gguf_writer_new();
    char vocab[512];
    snprintf(vocab, sizeof vocab, "%s/weird.gguf", test_tmpdir());
    assert_int_equal(gguf_set_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(et_tok_write_gguf(t, w, &e), 0);
    if (gguf_writer_write(w, vocab, &e)) fail_msg("%s", e.msg);
    gguf_writer_free(w);
    et_tok_free(t);
    et_tokenizer *t2 = load_tok(vocab);
    assert_string_equal(et_tok_chat_template(t2), "{{ messages | weird }}");
    assert_int_equal(et_chat_detect(et_tok_chat_template(t2), NULL), ET_CHAT_UNKNOWN);
    et_tok_free(t2);
    /* the parse layer */
    et_ingest_opts o = et_ingest_defaults();
    o.chat_template = ET_CHAT_UNKNOWN;
    et_docs d;
    assert_int_equal(et_parse_input(CHAT_JSONL, strlen(CHAT_JSONL), "chat.jsonl", &o, &d, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "--chat-template"));
    assert_non_null(strstr(e.msg, "chat.jsonl: line 1"));
    /* plain text records do not need a template */
    const char *txt = "{\"text\": \"hello\"}\n";
    assert_int_equal(et_parse_input(txt, strlen(txt), "t.jsonl", &o, &d, &e), 0);
    et_docs_free(&d);
    /* without a template: today's headers */
    o.chat_template = ET_CHAT_NONE;
    assert_int_equal(et_parse_input(CHAT_JSONL, strlen(CHAT_JSONL), "chat.jsonl", &o, &d, &e), 0);
    assert_non_null(strstr(d.doc[0].text, "### User:\nHello"));
    et_docs_free(&d);
    if (access("edgetune", X_OK)) {
        fprintf(stderr, "SKIP (CLI part): ./edgetune not built\n");
        return;
    }
    const char *in = write_file("chat_cli.jsonl", CHAT_JSONL);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "./edgetune data --tokenizer %s --input %s -o %s/x.h5 >%s/o.txt 2>%s/err.txt", vocab, in,
             test_tmpdir(), test_tmpdir(), test_tmpdir());
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), ET_EINPUT);
    snprintf(cmd, sizeof cmd, "grep -q -- '--chat-template' %s/err.txt", test_tmpdir());
    assert_int_equal(system(cmd), 0);
    /* --chat-template overrides the file's */
    snprintf(cmd, sizeof cmd, "./edgetune data --tokenizer %s --input %s -o %s/x.h5 --chat-template chatml >%s/o.txt 2>&1",
             vocab, in, test_tmpdir(), test_tmpdir());
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "grep -q 'chat template chatml' %s/o.txt", test_tmpdir());
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "./edgetune data --tokenizer %s --input %s -o %s/x.h5 --chat-template nope 2>%s/err.txt",
             vocab, in, test_tmpdir(), test_tmpdir());
    st = system(cmd);
    assert_int_equal(WEXITSTATUS(st), ET_EUSAGE);
    snprintf(cmd, sizeof cmd, "grep -q -- '--chat-template: unknown template' %s/err.txt", test_tmpdir());
    assert_int_equal(system(cmd), 0);
}

/* ------------------------------------------------------------ run --chat */

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    b[n] = 0;
    fclose(f);
    return b;
}

/* Two turns through cmd (reading stdin); returns the exit status, stdout and stderr. */
static int chat_run(const char *cmd, char **out, char **err) {
    char full[4096];
    snprintf(full, sizeof full,
             "printf 'Hello there\\nWhat did I just say?\\n' | %s >%s/chat_out.txt 2>%s/chat_err.txt", cmd,
             test_tmpdir(), test_tmpdir());
    int st = system(full);
    char p[512];
    snprintf(p, sizeof p, "%s/chat_out.txt", test_tmpdir());
    *out = slurp(p);
    snprintf(p, sizeof p, "%s/chat_err.txt", test_tmpdir());
    *err = slurp(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The --verbose-prompt report of turn 2 holds turn 1 (user line and reply)
 * and reuses the cache. */
static void check_two_turns(const char *out, const char *err) {
    const char *t2 = strstr(err, "turn 2: ");
    if (!t2) fail_msg("no turn 2 in stderr:\n%s", err);
    long n = 0, cached = 0, fresh = 0;
    assert_int_equal(sscanf(t2, "turn 2: %ld prompt tokens, %ld cached, %ld new", &n, &cached, &fresh), 3);
    assert_true(cached > 0);
    assert_int_equal(n, cached + fresh);
    assert_non_null(strstr(t2, "Hello there"));
    assert_non_null(strstr(t2, "What did I just say?"));
    /* the first reply (first line of stdout) is in the second prompt */
    const char *nl = strchr(out, '\n');
    assert_non_null(nl);
    char first[4096];
    size_t l = (size_t)(nl - out) < sizeof first - 1 ? (size_t)(nl - out) : sizeof first - 1;
    memcpy(first, out, l);
    first[l] = 0;
    if (l && !strstr(t2, first)) fail_msg("turn 2's prompt lacks the first reply '%s':\n%s", first, t2);
    assert_non_null(strchr(nl + 1, '\n')); /* two replies */
}

static void test_run_chat_stories(void **state) {
    (void)state;
    SHARED_OR_SKIP(m, STORIES);
    if (access("edgerun", X_OK) || access("edgetune", X_OK)) {
        fprintf(stderr, "SKIP: ./edgerun or ./edgetune not built\n");
        skip();
    }
    char cmd[1024], *out, *err;
    snprintf(cmd, sizeof cmd, "./edgerun -m %s --chat --chat-template zephyr --temp 0 -n 12 --verbose-prompt", m);
    assert_int_equal(chat_run(cmd, &out, &err), 0);
    check_two_turns(out, err);
    assert_non_null(strstr(err, "<|user|>\nHello there<|endoftext|>\n<|assistant|>\n"));
    /* edgetune run --chat gives the same conversation */
    char *out2, *err2;
    snprintf(cmd, sizeof cmd, "./edgetune run %s --chat --chat-template zephyr --temp 0 --n 12 --verbose-prompt", m);
    assert_int_equal(chat_run(cmd, &out2, &err2), 0);
    assert_string_equal(out, out2);
    free(out);
    free(err);
    free(out2);
    free(err2);
    /* stories260K has no template: the error names the flag */
    snprintf(cmd, sizeof cmd, "./edgerun -m %s --chat", m);
    assert_int_equal(chat_run(cmd, &out, &err), ET_EINPUT);
    assert_non_null(strstr(err, "--chat-template"));
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "./edgetune run %s --chat --chat-template bogus", m);
    assert_int_equal(chat_run(cmd, &out, &err), ET_EUSAGE);
    assert_non_null(strstr(err, "--chat-template"));
    free(out);
    free(err);
}

static void test_run_chat_smollm2(void **state) {
    (void)state;
    SMOL_OR_SKIP(path);
    if (access("edgerun", X_OK)) {
        fprintf(stderr, "SKIP: ./edgerun not built\n");
        skip();
    }
    char cmd[4096], *out, *err;
    snprintf(cmd, sizeof cmd, "./edgerun -m %s --chat --system 'Be brief.' --temp 0 -n 24 --verbose-prompt", path);
    assert_int_equal(chat_run(cmd, &out, &err), 0);
    check_two_turns(out, err);
    assert_non_null(strstr(err, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello there<|im_end|>\n"
                                "<|im_start|>assistant\n"));
    assert_null(strstr(out, "<|im_end|>")); /* the reply stops at the end of turn */
    free(out);
    free(err);
}

/* ------------------------------------------------------------ export */

/* A template travels: model save (train/convert export), edgetune convert,
 * edgetune quantize (both CLI), then run --chat picks it up undeclared. */
static void test_export_keeps_template(void **state) {
    (void)state;
    SHARED_OR_SKIP(m0, STORIES);
    if (access("edgerun", X_OK) || access("edgetune", X_OK)) {
        fprintf(stderr, "SKIP: ./edgerun or ./edgetune not built\n");
        skip();
    }
    static const char TMPL[] = "{% for m in messages %}{{'<|user|>\\n' + m['content'] + '<|endoftext|>\\n'}}{% endfor %}";
    et_model m;
    et_err e = {0};
    if (et_model_load(&m, m0, NULL, &e)) fail_msg("%s", e.msg);
    assert_non_null(m.tok);
    assert_int_equal(et_tok_set_chat_template(m.tok, TMPL, strlen(TMPL), &e), 0);
    char a[512], b[512], c[512], cmd[4096];
    snprintf(a, sizeof a, "%s/tmpl_a.gguf", test_tmpdir());
    snprintf(b, sizeof b, "%s/tmpl_b.gguf", test_tmpdir());
    snprintf(c, sizeof c, "%s/tmpl_c.gguf", test_tmpdir());
    if (et_model_save_gguf(&m, a, GGML_TYPE_F32, &e)) fail_msg("%s", e.msg);
    et_model_free(&m);
    snprintf(cmd, sizeof cmd, "./edgetune convert %s -o %s --type F16 >/dev/null 2>&1 && ./edgetune quantize %s %s --type Q8_0 --quiet >/dev/null 2>&1",
             a, b, b, c);
    assert_int_equal(system(cmd), 0);
    const char *files[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        et_tokenizer *t = load_tok(files[i]);
        if (!et_tok_chat_template(t) || strcmp(et_tok_chat_template(t), TMPL))
            fail_msg("%s: tokenizer.chat_template lost", files[i]);
        assert_int_equal(et_chat_detect(et_tok_chat_template(t), NULL), ET_CHAT_ZEPHYR);
        et_tok_free(t);
    }
    char *out, *err;
    snprintf(cmd, sizeof cmd, "./edgerun -m %s --chat --temp 0 -n 8 --verbose-prompt", c);
    assert_int_equal(chat_run(cmd, &out, &err), 0);
    check_two_turns(out, err);
    assert_non_null(strstr(err, "<|user|>\nHello there<|endoftext|>"));
    free(out);
    free(err);
}

/* An HF tokenizer.json takes the chat_template of the tokenizer_config.json beside it. */
static void test_hf_tokenizer_config(void **state) {
    (void)state;
    SHARED_OR_SKIP(src, "tokenizers/smollm2-135m/tokenizer.json");
    char dir[512], cmd[2048], path[600];
    snprintf(dir, sizeof dir, "%s/hf", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s %s/tokenizer.json", dir, src, dir);
    assert_int_equal(system(cmd), 0);
    et_tokenizer *t = NULL;
    et_err e = {0};
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (et_tok_from_hf_json(&t, path, &e)) fail_msg("%s", e.msg);
    assert_null(et_tok_chat_template(t)); /* no tokenizer_config.json */
    et_tok_free(t);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    write_file("hf/tokenizer_config.json",
               "{\"add_prefix_space\": false, \"chat_template\": \"{% for message in messages %}{{'<|im_start|>' + "
               "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}\"}");
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (et_tok_from_hf_json(&t, path, &e)) fail_msg("%s", e.msg);
    assert_non_null(et_tok_chat_template(t));
    assert_non_null(strstr(et_tok_chat_template(t), "'\n'"));
    assert_int_equal(et_chat_detect(et_tok_chat_template(t), NULL), ET_CHAT_CHATML);
    et_tok_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_all),
        cmocka_unit_test(test_render_single),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_marker_ids),
        cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_data_masks_smollm2),
        cmocka_unit_test(test_data_masks_markers),
        cmocka_unit_test(test_data_unknown_template),
        cmocka_unit_test(test_run_chat_stories),
        cmocka_unit_test(test_run_chat_smollm2),
        cmocka_unit_test(test_export_keeps_template),
        cmocka_unit_test(test_hf_tokenizer_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
