#!/usr/bin/env bash
# Seeds for fuzz_engine: the tiny models of fuzz_model.seed.sh (llama with
# biases, deci with per-layer widths, F16/BF16), plus a one-layer llama
# (n_embd 256) whose matrices use every type the engine runs: Q8_0, Q4_0,
# Q5_0, Q4_K, Q6_K, F16, BF16 (random block bytes with sane fp16 scales).
# Usage: fuzz/fuzz_engine.seed.sh CORPUS_DIR
set -euo pipefail
here=$(dirname "$0")
"$here/fuzz_model.seed.sh" "$1"
python3 - "$1/quant_types.gguf" <<'PY'
import random, struct, sys
random.seed(1)
def s(x): x = x.encode(); return struct.pack('<Q', len(x)) + x
def u32(k, v): return s(k) + struct.pack('<II', 4, v)
def f32(k, v): return s(k) + struct.pack('<If', 6, v)
D, FF, V = 256, 256, 16
# ggml type: (elements per block, bytes per block, offset of fp16 scales in a block)
T = {'F32': (0, 1, 4), 'F16': (1, 1, 2), 'BF16': (30, 1, 2), 'Q8_0': (8, 32, 34), 'Q4_0': (2, 32, 18),
     'Q5_0': (6, 32, 22), 'Q4_K': (12, 256, 144), 'Q6_K': (14, 256, 210)}
def blob(ty, n):
    tid, be, bb = T[ty]
    if ty == 'F32': return struct.pack('<%df' % n, *[random.uniform(-1, 1) for _ in range(n)])
    if ty == 'F16': return struct.pack('<%de' % n, *[random.uniform(-1, 1) for _ in range(n)])
    if ty == 'BF16': return b''.join(struct.pack('<f', random.uniform(-1, 1))[2:] for _ in range(n))
    out = b''
    for _ in range(n // be):
        blk = bytearray(random.getrandbits(8) for _ in range(bb))
        sc = struct.pack('<e', 0.01)
        if ty in ('Q8_0', 'Q4_0', 'Q5_0'): blk[0:2] = sc
        if ty == 'Q4_K': blk[0:2] = sc; blk[2:4] = sc
        if ty == 'Q6_K': blk[208:210] = sc
        out += bytes(blk)
    return out
tensors = [('token_embd.weight', 'Q8_0', (D, V)), ('output_norm.weight', 'F32', (D,)), ('output.weight', 'Q6_K', (D, V)),
           ('blk.0.attn_norm.weight', 'F32', (D,)), ('blk.0.attn_q.weight', 'Q4_0', (D, D)),
           ('blk.0.attn_k.weight', 'Q5_0', (D, 128)), ('blk.0.attn_v.weight', 'Q8_0', (D, 128)),
           ('blk.0.attn_output.weight', 'Q4_K', (D, D)), ('blk.0.ffn_norm.weight', 'F32', (D,)),
           ('blk.0.ffn_gate.weight', 'F16', (D, FF)), ('blk.0.ffn_up.weight', 'BF16', (D, FF)),
           ('blk.0.ffn_down.weight', 'Q6_K', (FF, D))]
kv = [s('general.architecture') + struct.pack('<I', 8) + s('llama'), u32('llama.embedding_length', D),
      u32('llama.block_count', 1), u32('llama.feed_forward_length', FF), u32('llama.attention.head_count', 4),
      u32('llama.attention.head_count_kv', 2), u32('llama.context_length', 64),
      f32('llama.attention.layer_norm_rms_epsilon', 1e-5)]
infos, datas, off = b'', b'', 0
for name, ty, ne in tensors:
    n = 1
    for x in ne: n *= x
    d = blob(ty, n)
    infos += s(name) + struct.pack('<I', len(ne)) + b''.join(struct.pack('<Q', x) for x in ne) + struct.pack('<IQ', T[ty][0], off)
    d += b'\0' * (-len(d) % 32)
    datas += d
    off += len(d)
head = b'GGUF' + struct.pack('<IQQ', 3, len(tensors), len(kv)) + b''.join(kv) + infos
head += b'\0' * (-len(head) % 32)
open(sys.argv[1], 'wb').write(head + datas)
PY
