#!/usr/bin/env python3
"""Compare two llama.cpp legacy .dat imatrix files (edgetune imatrix vs
llama-imatrix): entries, ncall, and the max relative difference of the
per-column weights value/ncall (what llama-quantize uses).  Stdlib only.
usage: scripts/imatrix_compare.py A.dat B.dat"""
import struct
import sys


def load(path):
    b = open(path, 'rb').read()
    o = 0

    def i32():
        nonlocal o
        v = struct.unpack_from('<i', b, o)[0]
        o += 4
        return v
    n = i32()
    ent = {}
    for _ in range(n):
        ln = i32()
        name = b[o:o + ln].decode()
        o += ln
        ncall = i32()
        nval = i32()
        vals = struct.unpack_from('<%df' % nval, b, o)
        o += 4 * nval
        ent[name] = (ncall, vals)
    last = i32() if o < len(b) else None
    return ent, last


a, la = load(sys.argv[1])
b, lb = load(sys.argv[2])
if set(a) != set(b):
    print('entries differ: only in A', sorted(set(a) - set(b)), 'only in B', sorted(set(b) - set(a)))
    sys.exit(1)
worst, wname, nc_diff, ent_worst = 0.0, None, 0, 0.0
for k in sorted(a):
    (na, va), (nb, vb) = a[k], b[k]
    nc_diff += na != nb
    sa, sb = sum(va) / max(na, 1), sum(vb) / max(nb, 1)
    ent_worst = max(ent_worst, abs(sa - sb) / max(abs(sa), abs(sb), 1e-30))
    for x, y in zip(va, vb):
        wa, wb = x / max(na, 1), y / max(nb, 1)
        r = abs(wa - wb) / max(abs(wa), abs(wb), 1e-30)
        if r > worst:
            worst, wname = r, k
print('%d entries, chunks %s vs %s, ncall differs in %d, max relative difference of the weights %.3g (%s), '
      'of an entry\'s summed weights %.3g' % (len(a), la, lb, nc_diff, worst, wname, ent_worst))
