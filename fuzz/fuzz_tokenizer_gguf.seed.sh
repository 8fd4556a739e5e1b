#!/usr/bin/env bash
# Seeds for fuzz_tokenizer_gguf: small vocabulary-only GGUFs built from the
# stories260K vocabulary (SPM) and from a 300-piece slice of the GPT-2 one
# (BPE with the merges that stay inside it), read from ../shared.
# Usage: fuzz/fuzz_tokenizer_gguf.seed.sh CORPUS_DIR
set -euo pipefail
out=$1
shared=${ET_SHARED:-../shared}
python3 - "$out" "$shared" <<'PY'
import os, struct, sys
out, shared = sys.argv[1], sys.argv[2]

def rd(path):
    d = open(path, "rb").read(); o = [4]
    def u(f):
        v = struct.unpack_from("<" + f, d, o[0]); o[0] += struct.calcsize(f); return v[0]
    def s():
        n = u("Q"); v = d[o[0]:o[0] + n]; o[0] += n; return v
    F = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    def val(t):
        if t == 8: return (t, s())
        if t == 9:
            at = u("I"); n = u("Q"); return (t, at, [val(at)[-1] for _ in range(n)])
        return (t, u(F[t]))
    u("I"); u("Q"); n = u("Q")
    return {s().decode(): val(u("I")) for _ in range(n)}

def enc(key, v):
    F = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    def s(x): return struct.pack("<Q", len(x)) + x
    b = s(key.encode()) + struct.pack("<I", v[0])
    if v[0] == 8: return b + s(v[1])
    if v[0] == 9:
        at, items = v[1], v[2]
        b += struct.pack("<IQ", at, len(items))
        return b + b"".join(s(x) if at == 8 else struct.pack("<" + F[at], x) for x in items)
    return b + struct.pack("<" + F[v[0]], v[1])

def write(path, kv):
    body = b"".join(enc(k, v) for k, v in kv.items())
    open(path, "wb").write(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + body)

try:
    kv = rd(os.path.join(shared, "models/stories260K/stories260K.gguf"))
    write(os.path.join(out, "spm.gguf"), {k: v for k, v in kv.items() if k.startswith("tokenizer.")})
    kv = rd(os.path.join(shared, "tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf"))
    toks = kv["tokenizer.ggml.tokens"][2][:300]
    have = set(toks)
    merges = [m for m in kv["tokenizer.ggml.merges"][2] if all(p in have for p in m.split(b" ", 1)) and m.replace(b" ", b"", 1) in have]
    write(os.path.join(out, "bpe.gguf"), {
        "tokenizer.ggml.model": (8, b"gpt2"), "tokenizer.ggml.pre": (8, b"gpt-2"),
        "tokenizer.ggml.tokens": (9, 8, toks + [b"<|endoftext|>"]),
        "tokenizer.ggml.token_type": (9, 5, [1] * 300 + [3]),
        "tokenizer.ggml.merges": (9, 8, merges),
        "tokenizer.ggml.bos_token_id": (4, 300), "tokenizer.ggml.eos_token_id": (4, 300)})
except OSError:
    pass
PY
