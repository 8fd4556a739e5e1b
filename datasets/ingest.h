/* datasets/ingest.h — turn text, JSON/JSONL instruction data and TSV
 * classification data into a tokens.h5 (dataset.h).  The rules (separators,
 * prompt templates, header detection, masking) are written out in docs/data.md.
 *
 * Two layers:
 *  1. Parsing (no tokenizer): the input bytes become documents, each a UTF-8
 *     text cut into segments that are trained on or not (the prompt of an
 *     instruction record is not), with the line where its record starts and,
 *     for TSV, a label.  et_parse_input() — what fuzz/fuzz_jsonl.c exercises.
 *  2. Tokenizing and writing: et_ingest_docs() encodes each document through an
 *     et_encoder (datasets/ingest_tok.c makes one from an et_tokenizer), masks,
 *     appends EOS, truncates, splits by document, packs, and writes atomically.
 *
 *   et_encoder enc; et_encoder_from_tok(&enc, tok);       // ingest_tok.h
 *   et_ingest_opts o = et_ingest_defaults(); o.valid_fraction = 0.05; o.seed = 1;
 *   et_ingest_summary s; et_err e = {0};
 *   if (et_ingest_file(&enc, "alpaca.json", "tokens.h5", &o, &s, &e)) puts(e.msg);
 *
 * Bad input — invalid UTF-8, malformed JSON, a missing field, an empty file,
 * an unknown label — gives ET_EINPUT with "FILE: line N: what" (plus the byte
 * offset for UTF-8), and nothing is written: every record is parsed and
 * tokenized before the output file is created.
 */
#ifndef ET_INGEST_H
#define ET_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et.h"

enum { ET_FMT_AUTO = 0, ET_FMT_TEXT, ET_FMT_JSONL, ET_FMT_JSON, ET_FMT_TSV };

#define ET_MAX_LABELS 65536 /* classes in TSV data (= ET_DS_MAX_LABELS) */

/* "text", "jsonl", "json", "tsv" (and "auto"); NULL for an unknown number. */
const char *et_format_name(int format);
/* Format from its name; -1 if unknown. */
int et_format_from_name(const char *name);

typedef struct et_ingest_opts {
    int format;             /* ET_FMT_*; AUTO: from the extension, then the content */
    const char *separator;  /* text: NULL or "blank" = blank lines, "line" = every line,
                               "none" = the whole file, else this literal string */
    const char *labels;     /* tsv: "neg,pos" fixes the classes in this order;
                               NULL = the distinct labels found, sorted bytewise */
    int label_first;        /* tsv: columns are label<TAB>text (else text<TAB>label) */
    int mask_prompt;        /* instruction data: prompt tokens get loss mask 0 (default 1) */
    double valid_fraction;  /* share of documents in the validation split, [0, 1) */
    uint64_t seed;          /* for the split */
    int pack;               /* concatenate documents into rows of seq_len+1 tokens */
    int64_t seq_len;        /* T when packing */
    int64_t max_len;        /* > 0: cut longer documents to max_len tokens */
    const char *template_;  /* tsv: render each row as a prompt (must hold {text}; C escapes
                               \n \t \\ are read) followed by its class's verbalizer: the
                               prompt is masked, the verbalizer trained (what `edgetune eval
                               --task classify` scores).  NULL: the text alone, trained. */
    const char *verbalizers;/* with template_: comma-separated, one per class in class order
                               (spaces kept); NULL: " " + the class name */
    int chat_template;      /* chat ("messages") and Alpaca records: ET_CHAT_NONE (0, default) =
                               the "### User:" headers / the Alpaca prompt; ET_CHAT_CHATML... =
                               rendered through that template (datasets/chat_template.h; an
                               Alpaca record is a user turn + an assistant turn), only
                               assistant contents and their end-of-turn markers trained;
                               ET_CHAT_UNKNOWN = the model has a template edgetune cannot
                               render: such records are an error naming --chat-template.
                               Rendered text holds special-token markers such as
                               "<|im_start|>": encode it with ET_TOK_PARSE_SPECIAL
                               (et_encoder_from_tok_special). */
} et_ingest_opts;

/* format AUTO, blank-line separator, mask_prompt 1, valid_fraction 0, seed 0,
 * no packing, no truncation. */
et_ingest_opts et_ingest_defaults(void);

/* ------------------------------------------------------------------ layer 1 */

/* Segment i of a document covers bytes [segs[i-1].end, segs[i].end) of its
 * text (segs[-1].end = 0); train = 1 when its tokens count in the loss. */
typedef struct et_seg {
    size_t end;
    int train;
} et_seg;

typedef struct et_doc {
    char *text;      /* UTF-8, NUL-terminated, len bytes (malloc'd) */
    size_t len;
    et_seg *segs;    /* [n_segs], last end == len */
    int n_segs;
    int32_t label;   /* TSV: class index; else -1 */
    int64_t line;    /* 1-based line of the input where the record starts */
} et_doc;

typedef struct et_docs {
    et_doc *doc;
    size_t n, cap;
    int format;          /* the format actually read (never AUTO) */
    int n_labels;        /* TSV: classes; else 0 */
    char **label_names;  /* [n_labels] */
} et_docs;

/* Parse n bytes of input (`name` is used in messages and for AUTO's extension
 * check).  0, or ET_EINPUT "<name>: line L: ..." (invalid UTF-8, malformed
 * JSON, missing/mistyped field, unknown label, empty input), or ET_EUSAGE for
 * bad options (e.g. a malformed --labels list).  On error *out is empty. */
int et_parse_input(const char *data, size_t n, const char *name, const et_ingest_opts *o, et_docs *out,
                   et_err *e);
void et_docs_free(et_docs *d);

/* 1 if s[0..n) is valid UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF); else 0 with *bad = offset of the first bad byte. */
int et_utf8_valid(const char *s, size_t n, size_t *bad);

/* Prompt templates (docs/data.md).  Stanford Alpaca's PROMPT_DICT
 * (tatsu-lab/stanford_alpaca train.py): with and without input. */
extern const char *const ET_ALPACA_PROMPT_INPUT;    /* printf: instruction, input */
extern const char *const ET_ALPACA_PROMPT_NO_INPUT; /* printf: instruction */

/* Classification prompts (docs/data.md, "Classification with a template").
 * Check that tmpl holds "{text}": 0 or ET_EINPUT naming the template. */
int et_template_check(const char *tmpl, et_err *e);
/* tmpl with C escapes (\n \t \r \\) read and every "{text}" replaced by
 * text[0..len); malloc'd, NUL-terminated; NULL on out of memory. */
char *et_render_template(const char *tmpl, const char *text, size_t len);
/* Split a comma-separated list into *n malloc'd strings (kept verbatim,
 * spaces included; C escapes read, "\," for a comma).  0, ET_EUSAGE (an
 * empty item or more than max items), ET_ERUN.  Free with et_strs_free. */
int et_split_list(const char *list, int max, char ***out, int *n, et_err *e);
void et_strs_free(char **v, int n);

/* ------------------------------------------------------------------ layer 2 */

/* How documents become tokens.  encode must add BOS when the tokenizer adds it
 * by default and never add EOS; *ids is malloc'd.  Returns 0 or an et code. */
typedef struct et_encoder {
    int (*encode)(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n_ids, et_err *e);
    void *ctx;
    int32_t n_vocab, bos_id, eos_id; /* -1 = none */
    char sha256[65];                 /* tokenizer fingerprint, "" if unknown */
} et_encoder;

typedef struct et_split_summary {
    int64_t docs;            /* documents in the split */
    int64_t rows;            /* rows written (= docs, or packed rows) */
    int64_t tokens;          /* real tokens (not counting padding) */
    int64_t loss_tokens;     /* real tokens with loss mask 1 */
    int64_t truncated_docs;  /* documents cut to max_len */
    int64_t pad_tokens;      /* padding added to fill the last packed row */
} et_split_summary;

typedef struct et_ingest_summary {
    int format;              /* the format read */
    int64_t records;         /* documents parsed */
    int n_labels;
    et_split_summary train, valid;
} et_ingest_summary;

/* Split D documents by document: a seeded permutation (shuffle.h,
 * et_shuffle_split_state(seed)) whose first n_valid entries are validation,
 * n_valid = round(D * valid_fraction), at least 1 when valid_fraction > 0 and
 * D >= 2, at most D-1.  is_valid [D].  Returns n_valid. */
int64_t et_split_assign(int64_t n_docs, double valid_fraction, uint64_t seed, uint8_t *is_valid);

/* Tokenize, mask, truncate, split, pack and write docs to out_path atomically.
 * Per document: ids = encode(text) (BOS per the tokenizer), then EOS when the
 * tokenizer has one.  With mask_prompt and untrained segments, the token
 * boundary after each segment is the longest common prefix of encode(text[0..end))
 * and encode(text) (as Stanford Alpaca's train.py masks len(encode(prompt))
 * tokens), BOS gets mask 0 and EOS takes the last segment's flag (0 with a
 * chat template: the template's end-of-turn marker is trained instead).  `source` is
 * stored as the file's source attribute.  0, ET_EINPUT (encode failed),
 * ET_EUSAGE (bad options: valid_fraction, seq_len, packing classification
 * data), ET_ERUN (write failed; nothing is left behind). */
int et_ingest_docs(const et_encoder *enc, const et_docs *docs, const et_ingest_opts *o, const char *source,
                   const char *out_path, et_ingest_summary *s, et_err *e);

/* Read in_path (et_map), et_parse_input, et_ingest_docs (in_path becomes
 * the source attribute).  0, ET_EINPUT (in_path unreadable), or the codes
 * of et_parse_input and et_ingest_docs; s->format is set even when parsing
 * fails. */
int et_ingest_file(const et_encoder *enc, const char *in_path, const char *out_path, const et_ingest_opts *o,
                   et_ingest_summary *s, et_err *e);

#endif
