/* datasets/chat_template.h — chat templates, recognised by signature and
 * rendered by hand (no Jinja), the way llama.cpp's llm_chat_detect_template /
 * llm_chat_apply_template do (src/llama-chat.cpp): the GGUF key
 * tokenizer.chat_template is searched for marker strings such as
 * "<|im_start|>" or "[INST]", and the conversation is rendered by C code
 * that gives the text llama.cpp gives.
 *
 *   int t = et_chat_detect(et_tok_chat_template(tok), NULL);   // ET_CHAT_CHATML for SmolLM2
 *   et_chat_msg m[] = {{"system", "Be brief."}, {"user", "Hi"}};
 *   et_chat_out r;
 *   if (et_chat_render(t, m, 2, 1, &r, &e)) ...                 // 1 = add the generation prompt
 *   // r.text = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
 *   et_tok_encode(tok, r.text, r.len, ET_TOK_DEFAULT_BOS | ET_TOK_PARSE_SPECIAL, ...);  // markers -> special ids
 *   et_chat_out_free(&r);
 *
 * Segments say what is trained: each assistant turn's content and its
 * end-of-turn marker ("<|im_end|>", "</s>", "<|eot_id|>", ...); headers,
 * system and user turns and the separators after an end-of-turn marker are
 * not.  The rules per template are in docs/data.md.
 *
 * Dependency rule: C11 + libc only (edgerun renders chats with it).
 */
#ifndef ET_CHAT_TEMPLATE_H
#define ET_CHAT_TEMPLATE_H

#include <stddef.h>

#include "../common/et.h"

enum et_chat_tmpl {
    ET_CHAT_UNKNOWN = -1,   /* a template we cannot render: needs --chat-template NAME */
    ET_CHAT_NONE = 0,       /* no template: edgetune's "### User:" headers (docs/data.md) */
    ET_CHAT_CHATML,         /* <|im_start|>role\n...<|im_end|>\n (SmolLM2, Qwen, OpenHermes) */
    ET_CHAT_LLAMA2,         /* [INST] ... [/INST] ...</s>, system as a plain line */
    ET_CHAT_LLAMA2_SYS,     /* with <<SYS>>\n...\n<</SYS>>\n\n */
    ET_CHAT_LLAMA2_SYS_BOS, /* and <s> before each later [INST] */
    ET_CHAT_LLAMA2_SYS_STRIP, /* and contents stripped (Meta's own template: content.strip()) */
    ET_CHAT_LLAMA3,         /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    ET_CHAT_ZEPHYR,         /* <|role|>\n...<|endoftext|>\n */
    ET_CHAT_PHI3,           /* <|role|>\n...<|end|>\n */
    ET_CHAT_GEMMA,          /* <start_of_turn>user|model\n...<end_of_turn>\n, system merged into the next user turn */
    ET_CHAT_ALPACA,         /* ### Instruction:\n...\n\n### Response:\n... (Stanford Alpaca's layout) */
    ET_CHAT_COUNT
};

/* "chatml", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip",
 * "llama3", "zephyr", "phi3", "gemma", "alpaca" (llama.cpp's names, plus
 * alpaca), "none"; NULL for UNKNOWN or out of range. */
const char *et_chat_name(int tmpl);
/* The value of a --chat-template NAME flag: one of the names above, or -1. */
int et_chat_from_name(const char *name);
/* "chatml, llama2, ..., alpaca, none", for messages. */
const char *et_chat_names(void);

/* Recognise a template: its name (as llama.cpp accepts a built-in name in
 * place of the Jinja text), then by signature in llama.cpp's order.  NULL
 * or "" gives ET_CHAT_NONE.  Templates llama.cpp knows but edgetune does
 * not render (phi4, mistral-v7, command-r, deepseek, ...) and anything
 * unmatched give ET_CHAT_UNKNOWN; *family (may be NULL) is then llama.cpp's
 * name for it, or NULL when nothing matched. */
int et_chat_detect(const char *tmpl, const char **family);

/* ET_EINPUT naming --chat-template, for an ET_CHAT_UNKNOWN template found in
 * `where` (a file name); family as et_chat_detect gives it. */
int et_chat_unknown_error(const char *where, const char *family, et_err *e);

typedef struct et_chat_msg {
    const char *role;       /* "system", "user" or "assistant" */
    const char *content;    /* UTF-8, NUL-terminated */
} et_chat_msg;

typedef struct et_chat_seg {
    size_t end;             /* bytes [previous end, end) of text */
    int train;              /* 1: assistant content + end-of-turn marker */
} et_chat_seg;

typedef struct et_chat_out {
    char *text;             /* malloc'd, NUL-terminated */
    size_t len;
    et_chat_seg *segs;      /* [n_segs], adjacent segments differ in train; last end == len */
    int n_segs;
} et_chat_out;

/* Render msgs[0..n) with template tmpl (not NONE/UNKNOWN); add_gen appends
 * the header that asks for the next assistant turn (llama.cpp's
 * add_generation_prompt / add_ass; Llama 2 has none: its user turn ends in
 * "[/INST]").  0, ET_EINPUT (an unknown role, naming it and its index),
 * ET_EUSAGE (bad tmpl), ET_ERUN (out of memory).  On error *out is empty. */
int et_chat_render(int tmpl, const et_chat_msg *msgs, int n, int add_gen, et_chat_out *out, et_err *e);
void et_chat_out_free(et_chat_out *o);

/* The text that ends an assistant turn ("<|im_end|>", "</s>", "<|eot_id|>",
 * "<|endoftext|>", "<|end|>", "<end_of_turn>"), or NULL (alpaca: EOS ends
 * it).  A chat loop stops generating at its token. */
const char *et_chat_eot(int tmpl);

#endif
