#!/usr/bin/env bash
# Seeds for fuzz_safetensors: tiny hand-made files (metadata, F32/F16/BF16,
# a scalar, an empty tensor, an integer dtype).
# Usage: fuzz/fuzz_safetensors.seed.sh CORPUS_DIR
set -euo pipefail
python3 - "$1" <<'PY'
import json, struct, sys
def st(path, tensors, meta=None):
    hdr, data = {}, b''
    if meta: hdr['__metadata__'] = meta
    for name, dtype, shape, raw in tensors:
        hdr[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(hdr, separators=(',', ':')).encode()
    h += b' ' * (-len(h) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(h)) + h + data)
d = sys.argv[1]
st(d + '/mixed.safetensors', [
    ('model.norm.weight', 'F32', [4], struct.pack('<4f', 1, -2, 0.5, 3)),
    ('a.f16', 'F16', [2, 2], struct.pack('<4H', 0x3c00, 0xc000, 0x7bff, 1)),
    ('b.bf16', 'BF16', [3], struct.pack('<3H', 0x3f80, 0xc049, 0x0080)),
    ('s', 'F32', [], struct.pack('<f', 7)),
    ('empty', 'F32', [0, 3], b''),
    ('ids', 'I64', [2], struct.pack('<2q', 1, -1))], {'format': 'pt'})
st(d + '/one.safetensors', [('w', 'BF16', [2, 3], bytes(12))])
PY
