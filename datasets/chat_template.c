/* datasets/chat_template.c — see chat_template.h.  The signatures and the
 * rendered layouts follow llama.cpp's src/llama-chat.cpp (c392e509);
 * alpaca is edgetune's own (Stanford Alpaca's headers). */
#include "chat_template.h"

#include <stdlib.h>
#include <string.h>

static const char *const NAMES[ET_CHAT_COUNT] = {
    [ET_CHAT_NONE] = "none",
    [ET_CHAT_CHATML] = "chatml",
    [ET_CHAT_LLAMA2] = "llama2",
    [ET_CHAT_LLAMA2_SYS] = "llama2-sys",
    [ET_CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [ET_CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [ET_CHAT_LLAMA3] = "llama3",
    [ET_CHAT_ZEPHYR] = "zephyr",
    [ET_CHAT_PHI3] = "phi3",
    [ET_CHAT_GEMMA] = "gemma",
    [ET_CHAT_ALPACA] = "alpaca",
};

const char *et_chat_name(int t) { return t >= 0 && t < ET_CHAT_COUNT ? NAMES[t] : NULL; }

int et_chat_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < ET_CHAT_COUNT; t++)
        if (!strcmp(name, NAMES[t])) return t;
    return -1;
}

const char *et_chat_names(void) {
    return "chatml, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip, llama3, zephyr, phi3, gemma, alpaca, none";
}

/* ------------------------------------------------------------ detection */

int et_chat_detect(const char *t, const char **family) {
    const char *fam = NULL;
    int r = ET_CHAT_UNKNOWN;
    if (family) *family = NULL;
    if (!t || !*t) return ET_CHAT_NONE;
    int byname = et_chat_from_name(t);
    if (byname >= 0) return byname;
#define HAS(s) (strstr(t, s) != NULL)
    if (HAS("<|im_start|>")) {
        if (HAS("<|im_sep|>")) fam = "phi4";
        else r = ET_CHAT_CHATML;
    } else if (!strncmp(t, "mistral", 7) || HAS("[INST]")) {
        if (HAS("[SYSTEM_PROMPT]")) fam = "mistral-v7";
        else if (HAS("' [INST] ' + system_message") || HAS("[AVAILABLE_TOOLS]"))
            fam = HAS(" [INST]") ? "mistral-v1" : HAS("\"[INST]\"") ? "mistral-v3-tekken" : "mistral-v3";
        else if (HAS("content.strip()")) r = ET_CHAT_LLAMA2_SYS_STRIP;
        else if (HAS("bos_token + '[INST]")) r = ET_CHAT_LLAMA2_SYS_BOS;
        else if (HAS("<<SYS>>")) r = ET_CHAT_LLAMA2_SYS;
        else r = ET_CHAT_LLAMA2;
    } else if (HAS("<|assistant|>") && HAS("<|end|>")) {
        r = ET_CHAT_PHI3;
    } else if (HAS("<|assistant|>") && HAS("<|user|>")) {
        fam = HAS("</s>") ? "falcon3" : "glmedge";
    } else if (HAS("<|user|>") && HAS("<|endoftext|>")) {
        r = ET_CHAT_ZEPHYR;
    } else if (HAS("bos_token + message['role']")) {
        fam = "monarch";
    } else if (HAS("<start_of_turn>")) {
        r = ET_CHAT_GEMMA;
    } else if (HAS("'\\n\\nAssistant: ' + eos_token")) {
        fam = "orion";
    } else if (HAS("GPT4 Correct ")) {
        fam = "openchat";
    } else if (HAS("USER: ") && HAS("ASSISTANT: ")) {
        fam = HAS("SYSTEM: ") ? "vicuna-orca" : "vicuna";
    } else if (HAS("### Instruction:") && HAS("<|EOT|>")) {
        fam = "deepseek";
    } else if (HAS("<|START_OF_TURN_TOKEN|>") && HAS("<|USER_TOKEN|>")) {
        fam = "command-r";
    } else if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) {
        r = ET_CHAT_LLAMA3;
    } else if (HAS("[gMASK]sop")) {
        fam = "chatglm3";
    } else if (HAS("[gMASK]<sop>")) {
        fam = "chatglm4";
    } else if (HAS("### Instruction:") && HAS("### Response:")) {
        r = ET_CHAT_ALPACA;   /* not in llama.cpp: Stanford Alpaca's headers */
    }
#undef HAS
    if (family) *family = fam;
    return r;
}

int et_chat_unknown_error(const char *where, const char *family, et_err *e) {
    if (family)
        return et_fail(e, ET_EINPUT,
                       "%s: the chat template looks like llama.cpp's '%s', which edgetune does not render; "
                       "pass --chat-template NAME (%s)",
                       where, family, et_chat_names());
    return et_fail(e, ET_EINPUT, "%s: the chat template is not one edgetune recognises; pass --chat-template NAME (%s)",
                   where, et_chat_names());
}

/* ------------------------------------------------------------ rendering */

typedef struct rb {
    et_chat_out o;
    size_t cap;
    int cap_segs, oom;
} rb;

static void put(rb *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->o.len + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->o.len + n + 1) c *= 2;
        char *q = realloc(b->o.text, c);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->o.text = q;
        b->cap = c;
    }
    if (n) memcpy(b->o.text + b->o.len, s, n);
    b->o.len += n;
    b->o.text[b->o.len] = 0;
}

static void puts_(rb *b, const char *s) { put(b, s, strlen(s)); }

/* End the segment (everything since the previous one) with flag train;
 * adjacent segments with the same flag merge. */
static void seg(rb *b, int train) {
    if (b->oom) return;
    size_t start = b->o.n_segs ? b->o.segs[b->o.n_segs - 1].end : 0;
    if (b->o.len == start) return;
    if (b->o.n_segs && b->o.segs[b->o.n_segs - 1].train == train) {
        b->o.segs[b->o.n_segs - 1].end = b->o.len;
        return;
    }
    if (b->o.n_segs == b->cap_segs) {
        int c = b->cap_segs ? 2 * b->cap_segs : 8;
        et_chat_seg *q = realloc(b->o.segs, (size_t)c * sizeof *q);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->o.segs = q;
        b->cap_segs = c;
    }
    b->o.segs[b->o.n_segs].end = b->o.len;
    b->o.segs[b->o.n_segs].train = train;
    b->o.n_segs++;
}

/* Masked text. */
static void m_(rb *b, const char *s) {
    puts_(b, s);
    seg(b, 0);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* s trimmed of leading and trailing whitespace (llama.cpp trim(): isspace). */
static void trimmed(const char *s, const char **p, size_t *n) {
    size_t a = 0, b = strlen(s);
    while (a < b && is_space(s[a])) a++;
    while (b > a && is_space(s[b - 1])) b--;
    *p = s + a;
    *n = b - a;
}

/* A content, trimmed when trim; trained when train. */
static void content(rb *b, const char *s, int trim, int train) {
    const char *p = s;
    size_t n = strlen(s);
    if (trim) trimmed(s, &p, &n);
    put(b, p, n);
    seg(b, train);
}

/* The assistant's content and its end-of-turn marker, trained. */
static void reply(rb *b, const char *s, int trim, const char *eot) {
    content(b, s, trim, 1);
    puts_(b, eot);
    seg(b, 1);
}

enum { R_SYSTEM, R_USER, R_ASSISTANT };

static int role_of(const char *r) {
    return !strcmp(r, "system") ? R_SYSTEM : !strcmp(r, "user") ? R_USER : !strcmp(r, "assistant") ? R_ASSISTANT : -1;
}

/* <pre>role<mid>content<eot><post> for every message (chatml, zephyr, phi3, llama3). */
static void simple(rb *b, const et_chat_msg *m, int n, const char *pre, const char *mid, const char *eot,
                   const char *post, int trim, int add_gen) {
    for (int i = 0; i < n; i++) {
        int asst = role_of(m[i].role) == R_ASSISTANT;
        puts_(b, pre);
        puts_(b, m[i].role);
        m_(b, mid);
        if (asst) {
            reply(b, m[i].content, trim, eot);
        } else {
            content(b, m[i].content, trim, 0);
            m_(b, eot);
        }
        m_(b, post);
    }
    if (add_gen) {
        puts_(b, pre);
        puts_(b, "assistant");
        m_(b, mid);
    }
}

static void llama2(rb *b, int t, const et_chat_msg *m, int n) {
    int sys = t != ET_CHAT_LLAMA2, bos_inside = t == ET_CHAT_LLAMA2_SYS_BOS, strip = t == ET_CHAT_LLAMA2_SYS_STRIP;
    int inside = 1; /* the first [INST] comes without BOS: the tokenizer adds it */
    m_(b, "[INST] ");
    for (int i = 0; i < n; i++) {
        int r = role_of(m[i].role);
        if (!inside) {
            inside = 1;
            m_(b, bos_inside ? "<s>[INST] " : "[INST] ");
        }
        if (r == R_SYSTEM) {
            if (sys) m_(b, "<<SYS>>\n");
            content(b, m[i].content, strip, 0);
            m_(b, sys ? "\n<</SYS>>\n\n" : "\n");
        } else if (r == R_USER) {
            content(b, m[i].content, strip, 0);
            m_(b, " [/INST]");
        } else {
            reply(b, m[i].content, strip, "</s>");
            inside = 0;
        }
    }
}

static void gemma(rb *b, const et_chat_msg *m, int n, int add_gen) {
    const char *sys = NULL;
    size_t sys_n = 0;
    for (int i = 0; i < n; i++) {
        int r = role_of(m[i].role);
        if (r == R_SYSTEM) { /* no system turn: merged into the next user turn */
            trimmed(m[i].content, &sys, &sys_n);
            continue;
        }
        m_(b, "<start_of_turn>");
        m_(b, r == R_ASSISTANT ? "model" : m[i].role);
        m_(b, "\n");
        if (sys_n && r != R_ASSISTANT) {
            put(b, sys, sys_n);
            m_(b, "\n\n");
            sys_n = 0;
        }
        if (r == R_ASSISTANT) {
            reply(b, m[i].content, 1, "<end_of_turn>");
        } else {
            content(b, m[i].content, 1, 0);
            m_(b, "<end_of_turn>");
        }
        m_(b, "\n");
    }
    if (add_gen) m_(b, "<start_of_turn>model\n");
}

static void alpaca(rb *b, const et_chat_msg *m, int n, int add_gen) {
    int after_reply = 0;
    for (int i = 0; i < n; i++) {
        int r = role_of(m[i].role);
        if (after_reply) m_(b, "\n\n");
        after_reply = 0;
        if (r == R_SYSTEM) {
            content(b, m[i].content, 0, 0);
            m_(b, "\n\n");
        } else if (r == R_USER) {
            m_(b, "### Instruction:\n");
            content(b, m[i].content, 0, 0);
            m_(b, "\n\n");
        } else {
            m_(b, "### Response:\n");
            content(b, m[i].content, 0, 1);
            after_reply = 1;
        }
    }
    if (add_gen) {
        if (after_reply) m_(b, "\n\n");
        m_(b, "### Response:\n");
    }
}

int et_chat_render(int t, const et_chat_msg *m, int n, int add_gen, et_chat_out *out, et_err *e) {
    memset(out, 0, sizeof *out);
    if (t <= ET_CHAT_NONE || t >= ET_CHAT_COUNT)
        return et_fail(e, ET_EUSAGE, "chat template %d cannot be rendered (give one of %s)", t, et_chat_names());
    for (int i = 0; i < n; i++) {
        if (!m[i].role || !m[i].content) return et_fail(e, ET_EINPUT, "messages[%d]: no role or content", i);
        if (role_of(m[i].role) < 0)
            return et_fail(e, ET_EINPUT, "messages[%d]: unknown role '%.64s' (system, user, assistant)", i, m[i].role);
    }
    rb b = {0};
    switch (t) {
    case ET_CHAT_CHATML: simple(&b, m, n, "<|im_start|>", "\n", "<|im_end|>", "\n", 0, add_gen); break;
    case ET_CHAT_LLAMA3:
        simple(&b, m, n, "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>", "", 1, add_gen);
        break;
    case ET_CHAT_ZEPHYR: simple(&b, m, n, "<|", "|>\n", "<|endoftext|>", "\n", 0, add_gen); break;
    case ET_CHAT_PHI3: simple(&b, m, n, "<|", "|>\n", "<|end|>", "\n", 0, add_gen); break;
    case ET_CHAT_GEMMA: gemma(&b, m, n, add_gen); break;
    case ET_CHAT_ALPACA: alpaca(&b, m, n, add_gen); break;
    default: llama2(&b, t, m, n); break;
    }
    if (!b.oom && !b.o.text) put(&b, "", 0);
    if (b.oom) {
        et_chat_out_free(&b.o);
        return et_fail(e, ET_ERUN, "chat template: out of memory");
    }
    *out = b.o;
    return 0;
}

void et_chat_out_free(et_chat_out *o) {
    free(o->text);
    free(o->segs);
    memset(o, 0, sizeof *o);
}

const char *et_chat_eot(int t) {
    switch (t) {
    case ET_CHAT_CHATML: return "<|im_end|>";
    case ET_CHAT_LLAMA2:
    case ET_CHAT_LLAMA2_SYS:
    case ET_CHAT_LLAMA2_SYS_BOS:
    case ET_CHAT_LLAMA2_SYS_STRIP: return "</s>";
    case ET_CHAT_LLAMA3: return "<|eot_id|>";
    case ET_CHAT_ZEPHYR: return "<|endoftext|>";
    case ET_CHAT_PHI3: return "<|end|>";
    case ET_CHAT_GEMMA: return "<end_of_turn>";
    default: return NULL;
    }
}
