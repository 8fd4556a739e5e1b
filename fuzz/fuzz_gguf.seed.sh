#!/usr/bin/env bash
# Seeds for fuzz_gguf: small real GGUFs from ../shared (when present) and a
# tiny hand-made one with every KV type, a string array and F32/Q8_0 tensors.
# Usage: fuzz/fuzz_gguf.seed.sh CORPUS_DIR
set -euo pipefail
out=$1
shared=${ET_SHARED:-../shared}
for f in models/stories260K/stories260K.gguf tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf; do
  [ -f "$shared/$f" ] && cp -n "$shared/$f" "$out/" || true
done
python3 - "$out/tiny.gguf" <<'PY'
import struct, sys
def s(x): x = x.encode(); return struct.pack('<Q', len(x)) + x
kv = [
    (s('general.architecture') + struct.pack('<I', 8) + s('llama')),
    (s('general.alignment') + struct.pack('<II', 4, 32)),
    (s('k.u8') + struct.pack('<IB', 0, 7)), (s('k.i8') + struct.pack('<Ib', 1, -7)),
    (s('k.u16') + struct.pack('<IH', 2, 7)), (s('k.i16') + struct.pack('<Ih', 3, -7)),
    (s('k.i32') + struct.pack('<Ii', 5, -7)), (s('k.f32') + struct.pack('<If', 6, 1e-5)),
    (s('k.bool') + struct.pack('<IB', 7, 1)), (s('k.u64') + struct.pack('<IQ', 10, 7)),
    (s('k.i64') + struct.pack('<Iq', 11, -7)), (s('k.f64') + struct.pack('<Id', 12, 0.5)),
    (s('k.arr') + struct.pack('<IIQ', 9, 5, 3) + struct.pack('<3i', 1, -2, 3)),
    (s('k.toks') + struct.pack('<IIQ', 9, 8, 2) + s('<s>') + s('hi')),
]
ti = (s('t0') + struct.pack('<IQQIQ', 2, 4, 2, 0, 0) +
      s('t1') + struct.pack('<IQIQ', 1, 32, 8, 32))
head = b'GGUF' + struct.pack('<IQQ', 3, 2, len(kv)) + b''.join(kv) + ti
head += b'\0' * (-len(head) % 32)
data = struct.pack('<8f', *range(8)) + bytes(range(34))
data += b'\0' * (-len(data) % 32)
open(sys.argv[1], 'wb').write(head + data)
PY
