#!/usr/bin/env bash
# Seeds for fuzz_model: tiny GGUF models written here (a llama with a
# 4-token SPM vocabulary and q/k/v biases; a deci with per-layer arrays and
# an attention-free layer; F16 and BF16 tensors; a llama with Q8_0 and
# Q4_0 matrices, dequantized on import).
# Usage: fuzz/fuzz_model.seed.sh CORPUS_DIR
set -euo pipefail
python3 - "$1" <<'PY'
import struct, sys
def s(x): x = x.encode(); return struct.pack('<Q', len(x)) + x
def kv_u32(k, v): return s(k) + struct.pack('<II', 4, v)
def kv_f32(k, v): return s(k) + struct.pack('<If', 6, v)
def kv_str(k, v): return s(k) + struct.pack('<I', 8) + s(v)
def kv_i32arr(k, vs): return s(k) + struct.pack('<IIQ', 9, 5, len(vs)) + struct.pack('<%di' % len(vs), *vs)
def gguf(path, kvs, tensors):   # tensors: (name, ggml_type, ne, raw)
    info, data = b'', b''
    for name, ty, ne, raw in tensors:
        data += b'\0' * (-len(data) % 32)
        info += s(name) + struct.pack('<I', len(ne)) + struct.pack('<%dQ' % len(ne), *ne) + struct.pack('<IQ', ty, len(data))
        data += raw
    head = b'GGUF' + struct.pack('<IQQ', 3, len(tensors), len(kvs)) + b''.join(kvs) + info
    head += b'\0' * (-len(head) % 32)
    open(path, 'wb').write(head + data)
def f32(n): return struct.pack('<%df' % n, *[(i % 7) * 0.25 - 0.5 for i in range(n)])
def f16(n): return struct.pack('<%dH' % n, *[0x3c00 + (i % 5) for i in range(n)])
tok = [kv_str('tokenizer.ggml.model', 'llama'),
       s('tokenizer.ggml.tokens') + struct.pack('<IIQ', 9, 8, 4) + s('<unk>') + s('<s>') + s('</s>') + s('\u2581a'),
       s('tokenizer.ggml.scores') + struct.pack('<IIQ', 9, 6, 4) + struct.pack('<4f', 0, 0, 0, -1),
       s('tokenizer.ggml.token_type') + struct.pack('<IIQ', 9, 5, 4) + struct.pack('<4i', 2, 3, 3, 1),
       kv_u32('tokenizer.ggml.bos_token_id', 1), kv_u32('tokenizer.ggml.eos_token_id', 2)]
E, V, F = 4, 4, 6
llama = [kv_str('general.architecture', 'llama'), kv_u32('llama.context_length', 16),
         kv_u32('llama.embedding_length', E), kv_u32('llama.block_count', 1),
         kv_u32('llama.feed_forward_length', F), kv_u32('llama.attention.head_count', 2),
         kv_u32('llama.attention.head_count_kv', 1), kv_f32('llama.attention.layer_norm_rms_epsilon', 1e-5)] + tok
t = [('token_embd.weight', 0, [E, V], f32(E * V)), ('output_norm.weight', 0, [E], f32(E)),
     ('blk.0.attn_norm.weight', 0, [E], f32(E)), ('blk.0.attn_q.weight', 1, [E, 4], f16(16)),
     ('blk.0.attn_q.bias', 0, [4], f32(4)), ('blk.0.attn_k.weight', 30, [E, 2], f16(8)),
     ('blk.0.attn_k.bias', 0, [2], f32(2)), ('blk.0.attn_v.weight', 0, [E, 2], f32(8)),
     ('blk.0.attn_v.bias', 0, [2], f32(2)), ('blk.0.attn_output.weight', 0, [4, E], f32(16)),
     ('blk.0.ffn_norm.weight', 0, [E], f32(E)), ('blk.0.ffn_gate.weight', 0, [E, F], f32(E * F)),
     ('blk.0.ffn_up.weight', 0, [E, F], f32(E * F)), ('blk.0.ffn_down.weight', 0, [F, E], f32(E * F))]
gguf(sys.argv[1] + '/llama.gguf', llama, t)
deci = [kv_str('general.architecture', 'deci'), kv_u32('deci.context_length', 16),
        kv_u32('deci.embedding_length', E), kv_u32('deci.block_count', 2),
        kv_i32arr('deci.feed_forward_length', [F, 2]), kv_i32arr('deci.attention.head_count', [2, 0]),
        kv_i32arr('deci.attention.head_count_kv', [1, 0]), kv_u32('deci.attention.key_length', 2),
        kv_f32('deci.attention.layer_norm_rms_epsilon', 1e-5), kv_f32('deci.rope.freq_base', 5e5)]
t2 = [x for x in t if not x[0].endswith('.bias')] + [('output.weight', 0, [E, V], f32(E * V)),
      ('blk.1.ffn_norm.weight', 0, [E], f32(E)), ('blk.1.ffn_gate.weight', 0, [E, 2], f32(8)),
      ('blk.1.ffn_up.weight', 0, [E, 2], f32(8)), ('blk.1.ffn_down.weight', 0, [2, E], f32(8))]
gguf(sys.argv[1] + '/deci.gguf', deci, t2)
def q8_0(n): return b''.join(struct.pack('<H', 0x2000) + bytes((i * 37 + b) % 256 for i in range(32)) for b in range(n // 32))
def q4_0(n): return b''.join(struct.pack('<H', 0x2400) + bytes((i * 11 + b) % 256 for i in range(16)) for b in range(n // 32))
E, F = 32, 32
llq = [kv_str('general.architecture', 'llama'), kv_u32('llama.context_length', 16),
       kv_u32('llama.embedding_length', E), kv_u32('llama.block_count', 1),
       kv_u32('llama.feed_forward_length', F), kv_u32('llama.attention.head_count', 2),
       kv_u32('llama.attention.head_count_kv', 1), kv_f32('llama.attention.layer_norm_rms_epsilon', 1e-5)] + tok
t3 = [('token_embd.weight', 8, [E, V], q8_0(E * V)), ('output_norm.weight', 0, [E], f32(E)),
      ('blk.0.attn_norm.weight', 0, [E], f32(E)), ('blk.0.attn_q.weight', 8, [E, 32], q8_0(E * 32)),
      ('blk.0.attn_k.weight', 2, [E, 16], q4_0(E * 16)), ('blk.0.attn_v.weight', 8, [E, 16], q8_0(E * 16)),
      ('blk.0.attn_output.weight', 2, [32, E], q4_0(32 * E)), ('blk.0.ffn_norm.weight', 0, [E], f32(E)),
      ('blk.0.ffn_gate.weight', 8, [E, F], q8_0(E * F)), ('blk.0.ffn_up.weight', 8, [E, F], q8_0(E * F)),
      ('blk.0.ffn_down.weight', 2, [F, E], q4_0(E * F))]
gguf(sys.argv[1] + '/llama-q8_0.gguf', llq, t3)
PY
