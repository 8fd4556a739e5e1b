#!/usr/bin/env bash
# Seeds for fuzz_tokenizer_encode: llama.cpp's tokenizer test strings and a
# slice of TinyStories from ../shared (a flags byte 0 in front of each).
# Usage: fuzz/fuzz_tokenizer_encode.seed.sh CORPUS_DIR
set -euo pipefail
out=$1
shared=${ET_SHARED:-../shared}
python3 - "$out" "$shared" <<'PY'
import os, sys
out, shared = sys.argv[1], sys.argv[2]
sep = b"\n__ggml_vocab_test__\n"
n = 0
for name in ("ggml-vocab-gpt-2.gguf.inp", "stories260K.gguf.inp"):
    try:
        data = open(os.path.join(shared, "tokenizers/llamacpp-vocab", name), "rb").read()
    except OSError:
        continue
    for s in data.split(sep)[:-1]:
        open(os.path.join(out, "s%03d" % n), "wb").write(bytes([n % 8]) + s)
        n += 1
try:
    t = open(os.path.join(shared, "data/tinystories_sample.txt"), "rb").read(4096)
    open(os.path.join(out, "stories"), "wb").write(b"\0" + t)
except OSError:
    pass
PY
