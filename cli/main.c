/* cli/main.c — `edgetune <command> [--flag value]...` */
#include <stdio.h>
#include <string.h>

#include "cli.h"

const cli_cmd cli_commands[] = {
    {"inspect", "print the metadata and tensor table of a GGUF, safetensors or llama2.c file",
     "edgetune inspect FILE [--kv-max N]\n"
     "  FILE: .gguf, .safetensors (or an HF directory), or llama2.c .bin", cmd_inspect},
    {"convert", "import a model (GGUF, HF directory, llama2.c .bin) and write GGUF F32/F16",
     "edgetune convert IN -o OUT.gguf [--type F32|F16] [--tokenizer tok.bin]", cmd_convert},
    {"tokenize", "encode text with a model's tokenizer and print the ids",
     "edgetune tokenize TOKENIZER (--text STR | --file F) [--bos] [--eos] [--special] [--verbose] [--decode]\n"
     "  TOKENIZER: a GGUF model or vocabulary, an HF tokenizer.json, or a llama2.c tokenizer.bin\n"
     "  prints the ids (--verbose: id and piece per line); --decode reads ids and prints the text", cmd_tokenize},
    {"data", "turn text, JSON/JSONL instructions or TSV into tokens.h5",
     "edgetune data --tokenizer MODEL.gguf|tok.bin --input FILE -o tokens.h5 [options]\n"
     "  --format auto|text|jsonl|json|tsv   input format (auto: by extension, then content)\n"
     "  --separator S          text: blank (default), line, none, or a literal such as '<|endoftext|>'\n"
     "  --valid-fraction F     share of documents held out for validation (default 0)\n"
     "  --test-fraction F --test-out FILE   JSONL/TSV: hold out a seeded share of the records, verbatim,\n"
     "                         in FILE (the test split `edgetune eval` reads); the rest is tokenized\n"
     "  --seed N               seed of the split (default 0)\n"
     "  --pack --seq-len T     concatenate documents into rows of T+1 tokens\n"
     "  --max-len N            cut documents longer than N tokens\n"
     "  --no-mask-prompt       instruction data: train on the prompt too\n"
     "  --labels a,b           tsv: the classes, in order (default: inferred, sorted)\n"
     "  --label-first          tsv: columns are label<TAB>text\n"
     "  --template T           tsv: each row becomes T with {text} replaced (masked) + its class's verbalizer\n"
     "                         (trained), as `edgetune eval --task classify` scores it; then --labels are the\n"
     "                         verbalizers (\" negative\",\" positive\"; default \" \" + class) and --classes the classes\n"
     "  --n-vocab N            vocabulary size of a llama2.c tokenizer.bin (default: from its length)\n"
     "  --chat-template NAME   chat/Alpaca records through this template (default: the GGUF's\n"
     "                         tokenizer.chat_template, recognised by signature): chatml, llama2, llama2-sys,\n"
     "                         llama2-sys-bos, llama2-sys-strip, llama3, zephyr, phi3, gemma, alpaca, or none\n"
     "                         (the \"### User:\" headers)\n"
     "  Rules and file format: docs/data.md, docs/formats.md", cmd_data},
    {"train", "train or continue training a llama-family model",
     "edgetune train --data tokens.h5 --out DIR (--model FILE | --n-embd N --n-layer N --n-head N --n-ff N) [options]\n"
     "  model: --model GGUF|HF-dir|llama2.c.bin [--tokenizer F], or a new one: --n-embd --n-layer --n-head\n"
     "         --n-ff [--n-head-kv (=n-head) --n-vocab (from --tokenizer or the data) --n-ctx 512\n"
     "         --head-dim --rope-theta 10000 --rms-eps 1e-5 --untied --init-std 0.02 --tokenizer F]\n"
     "  --steps 1000 --batch-size 8 --seq-len (or 0: min(n_ctx, 256)) --grad-accum 1\n"
     "  --lr 3e-4 --min-lr (lr/10) --warmup (steps/10, at most 100) --schedule cosine|linear|constant\n"
     "  --weight-decay 0.1 --decay default|all|none (default: none on norms and embeddings)\n"
     "  --beta1 0.9 --beta2 0.95 --eps 1e-8 --grad-clip 1.0 (global norm; 0 = off) --seed 1\n"
     "  --optim adamw|adamw8bit (8bit: block-wise 8-bit AdamW moments, 2 instead of 8 bytes per parameter)\n"
     "  --eval-every 100 --eval-batches 0 (= whole validation split) --ckpt-every 100 --threads N (0 = auto)\n"
     "  --metrics FILE (JSON lines) --log-every 1 --type F32|F16 --resume (continue DIR's run bit for bit)\n"
     "  --recompute (activation recomputation per layer: far less memory, one more forward)\n"
     "  --recompute-layers N (recompute only the first N layers; the others keep their activations)\n"
     "  --loader auto|stream|rows (stream: the split's documents concatenated and cut into windows;\n"
     "         rows: one sample per document from its start; auto: rows for files packed to seq-len+1)\n"
     "  --precision f32|bf16 (bf16: matmul operands rounded to bfloat16, f32 accumulation and weights;\n"
     "         about 2x faster GEMMs on CPUs with AVX512_BF16)\n"
     "  --qat TYPE (quantization-aware training on `quantize --type TYPE`'s grids: Q4_0, Q4_K_M, Q3_K_M,\n"
     "         Q2_K ...; DIR also gets model-TYPE.gguf) --qat-start STEP --qat-type-map FILE\n"
     "         --qat-imatrix F (train on `quantize --imatrix F`'s grid: QAT from imatrix PTQ)\n"
     "         --qat-act (also round matmul inputs as the engine does: Q8_0/Q8_K activations) (docs/qat.md)\n"
     "  DIR gets checkpoint.h5, recipe.json (every setting; reuse with --config) and model.gguf.\n"
     "  Details: docs/training.md", cmd_train},
    {"distill", "train a student from a teacher's logits (stored or online)",
     "edgetune distill --teacher T.gguf [--teacher-logits F.h5] [--data D.h5] --out DIR (student) [options]\n"
     "  teacher: --teacher-logits F from `edgetune logits T --data D.h5 -o F [--top-k 64 | --sample 12]`\n"
     "         (F is also the training data: its /tokens and split), or none: T runs forward online at\n"
     "         every step (full-vocabulary KL, nothing stored)\n"
     "  student: --student FILE (any model), --keep-layers 0,2,4 (the teacher's layers, e.g. every other\n"
     "         one), --prune-plan PLAN.json (the teacher pruned by `edgetune prune --plan`), or a new model: --n-embd --n-layer --n-head --n-ff [...] as `edgetune train`\n"
     "  --kd forward|reverse (KL(teacher || student) or KL(student || teacher))  --temperature 1 (T; with\n"
     "         a stored teacher, the T it was stored at)  --alpha 0.5 (loss = alpha T^2 KL + (1-alpha) CE)\n"
     "  --hidden-map 0:0,1:2,2:4 (online teacher: + --hidden-weight 1 x MSE (--hidden-loss mse|cosine) between\n"
     "         the student's and the teacher's layer outputs, TinyBERT; equal n_embd)\n"
     "  every flag of `edgetune train` (schedule, accumulation, clipping, bf16, --recompute, checkpoints,\n"
     "         --resume, --metrics: the progress line and metrics carry ce and kl); --no-eval\n"
     "  DIR gets model.gguf, checkpoint.h5, recipe.json and, with a validation split and a GGUF teacher,\n"
     "  eval_student.json (KL to the teacher, same top-1, both ppl) and eval_teacher.json.\n"
     "  Details: docs/distillation.md", cmd_distill},
    {"lora", "train a LoRA adapter on a frozen base",
     "edgetune lora --model BASE --data tokens.h5 --out DIR [options]\n"
     "  BASE: GGUF (F32/F16), HF directory or llama2.c .bin [--tokenizer F]; the data from `edgetune data`\n"
     "        (instruction data: prompt tokens masked from the loss unless made with --no-mask-prompt)\n"
     "  --targets q,v (q,k,v,o,gate,up,down or all-linear) --layers all (e.g. 0-3,7)\n"
     "  --rank 8 --alpha 16 --dropout 0.05 --rslora (scale alpha/sqrt(rank)) --seed 1\n"
     "  --base-type auto|F32|F16|BF16|Q8_0|Q4_0|Q4_1 (frozen base held in this type, QLoRA-style; auto: BF16\n"
     "         with bf16 precision, else F32) --recompute (recompute each layer's activations in\n"
     "         backward: far less memory, one more forward) --recompute-layers N (the first N layers)\n"
     "  --precision auto|f32|bf16 (auto: bf16 where AVX512_BF16 runs it natively: base GEMMs on bf16\n"
     "         operands, f32 accumulation; the adapter, its gradients and AdamW stay f32)\n"
     "  --steps 200 --batch-size 8 --seq-len (or 0: min(n_ctx, 256)) --grad-accum 1\n"
     "  --lr 2e-4 --min-lr (lr/10) --warmup (steps/10, at most 100) --schedule cosine|linear|constant\n"
     "  --weight-decay 0 --beta1 0.9 --beta2 0.999 --eps 1e-8 --grad-clip 1.0 (0 = off)\n"
     "  --optim adamw|adamw8bit (8bit: block-wise 8-bit AdamW moments)\n"
     "  --eval-every 50 --eval-batches 0 (= whole validation split) --ckpt-every 100 --threads N (0 = auto)\n"
     "  --metrics FILE (JSON lines) --log-every 1 --resume (continue DIR's run bit for bit)\n"
     "  --adapter-type F32|F16 --base-name NAME (PEFT base_model_name_or_path)\n"
     "  --qat TYPE --qat-start STEP --qat-type-map FILE --qat-imatrix F: LoRA-QAT on the merged weight W + s*B*A (F32 base,\n"
     "         f32 precision, dropout 0); DIR also gets merged.gguf and merged-TYPE.gguf (docs/qat.md)\n"
     "  DIR gets adapter.gguf (llama.cpp --lora), peft/ (adapter_model.safetensors, adapter_config.json),\n"
     "  checkpoint.h5 and recipe.json; prints the validation loss before/after and the adapter size.\n"
     "  Details: docs/lora_training.md", cmd_lora},
    {"prune", "structured pruning: heads, FFN channels, layers (importance, plan, llama/deci GGUF)",
     "edgetune prune MODEL -o OUT.gguf (--calib D.h5 | --scores S.json) [--heads R --ffn R --layers N ...] | --plan P.json\n"
     "  [--recover distill|ce|lora --recover-data T.h5]   (edgetune prune --help for every flag; docs/pruning.md)", cmd_prune},
    {"merge", "fold LoRA adapters into a base model", "edgetune merge BASE.gguf ADAPTER.gguf[:SCALE]... -o OUT.gguf", cmd_merge},
    {"quantize", "quantize a GGUF model as llama-quantize does (F16, BF16, Q8_0, Q4_0, Q4_1, Q5_1, Q4_K_M, Q6_K)",
     "edgetune quantize IN.gguf OUT.gguf --type F16|BF16|Q8_0|Q4_0|Q4_1|Q5_1|Q4_K_M|Q6_K [--allow-requantize] [--quiet]", cmd_quantize},
    {"imatrix", "importance matrix (llama-imatrix's per-column sum of squared activations) for quantize --imatrix", "edgetune imatrix MODEL --data TEXT|tokens.h5 -o OUT [--ctx 512] [--chunks N] [--output-format dat|gguf] [--lora A.gguf]   (edgetune imatrix --help)", cmd_imatrix},
    {"run", "generate text with the reference engine",
     "edgetune run MODEL [--prompt TEXT | --file F] [--n N] [--temp T] [--top-k K] [--top-p P] [--min-p P]\n"
     "             [--seed S] [--threads N] [--ctx N] [--lora FILE[:SCALE],...] [--kv-type F16|F32] [--stats]\n"
     "  edgetune run MODEL --chat [--system TEXT] [--chat-template NAME]: a conversation on stdin/stdout\n"
     "  (edgetune run --help for all flags; the standalone runtime is ./edgerun)", cmd_run},
    {"perplexity", "perplexity of a model over text or tokens.h5",
     "edgetune perplexity MODEL FILE.txt|tokens.h5 [--ctx N] [--threads N] [--lora FILE[:SCALE],...]\n"
     "                    [--kv-type F16|F32] [--split all|train|valid]", cmd_perplexity},
    {"vocab", "learn a small SentencePiece-style BPE vocabulary from text (GGUF, for models trained from scratch)",
     "edgetune vocab --input FILE[,FILE...] -o vocab.gguf [--n-vocab 512] [--max-piece 16] [--min-count 2]\n"
     "                [--format auto|text|jsonl|json|tsv] [--name NAME]\n"
     "  Files are read as `edgetune data` reads them (JSONL: prompt + completion).  Pieces never span a\n"
     "  space or a newline; byte fallback for anything unseen.  Algorithm: datasets/vocab_train.h", cmd_vocab},
    {"demo-task", "write the smart-home demo task: train/valid/test JSONL and the base model's corpus",
     "edgetune demo-task --out DIR [--seed 1] [--n-train 2000] [--n-valid 100] [--n-test 200]\n"
     "                   [--heldout-fraction 0.2] [--style prompt|alpaca]\n"
     "  DIR/train.jsonl, valid.jsonl, test.jsonl (valid and test: held-out phrasings and slots only),\n"
     "  DIR/pretrain.txt (replies and device logs from the training commands, never command -> JSON).\n"
     "  The task: lora/demo_task.h; the corpus: lora/demo_corpus.h; the demo: docs/demo.md", cmd_demo_task},
    {"eval-task", "(retired: use `edgetune eval --task generate`)",
     "edgetune eval-task was retired: edgetune eval MODEL --task generate --data FILE.jsonl --stop '\\n'", cmd_eval_task},
    {"eval", "evaluate a model (+ adapters) on a task: perplexity, kl, classify, choice, generate",
     "edgetune eval MODEL [--lora A.gguf[:S],...] --task TASK --data FILE [--json OUT] [options]\n"
     "  (edgetune eval --help for every flag; definitions in docs/evaluation.md)", cmd_eval},
    {"logits", "store a model's top-k (or full) log-probabilities over a tokens.h5 (KL reference, distillation)",
     "edgetune logits MODEL --data D.h5 -o ref.h5 [--top-k 64 | --full] [--temperature 1] [--ctx N]\n"
     "  (edgetune logits --help for every flag; format in docs/formats.md)", cmd_logits},
    {"report", "accuracy-vs-size report (JSON, Markdown, SVG) from eval results",
     "edgetune report EVAL.json... -o DIR   (edgetune report --help)", cmd_report},
    {"gate", "CI regression gate: compare eval results against a baseline (exit 4 when a check fails)",
     "edgetune gate --baseline BASE.json --current CUR.json [thresholds] [--junit OUT.xml]   (edgetune gate --help)", cmd_gate},
    {NULL, NULL, NULL, NULL},
};

static void usage(FILE *f) {
    fprintf(f, "usage: edgetune <command> [--flag value]... | edgetune help <command>\n\ncommands:\n");
    for (const cli_cmd *c = cli_commands; c->name; c++) fprintf(f, "  %-11s %s\n", c->name, c->summary);
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return ET_EUSAGE; }
    const char *name = argv[1];
    if (!strcmp(name, "help") || !strcmp(name, "--help") || !strcmp(name, "-h")) {
        if (argc >= 3) {
            for (const cli_cmd *c = cli_commands; c->name; c++)
                if (!strcmp(c->name, argv[2])) { printf("%s\n\n%s\n", c->summary, c->usage); return 0; }
            fprintf(stderr, "edgetune: unknown command '%s'\n", argv[2]);
            return ET_EUSAGE;
        }
        usage(stdout);
        return 0;
    }
    for (const cli_cmd *c = cli_commands; c->name; c++)
        if (!strcmp(c->name, name)) return c->run(argc - 1, argv + 1);
    fprintf(stderr, "edgetune: unknown command '%s'\n", name);
    usage(stderr);
    return ET_EUSAGE;
}
