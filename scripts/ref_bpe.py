#!/usr/bin/env python3
"""Independent reference ids for a byte-level BPE tokenizer.json on ASCII text.

    python3 scripts/ref_bpe.py TOKENIZER.json OUT_PREFIX [--digits]

Writes OUT_PREFIX.inp (strings separated by "\\n__ggml_vocab_test__\\n", as
llama.cpp's vocab tests) and OUT_PREFIX.out (ids, one line per string).

The algorithm is OpenAI's GPT-2 encoder.py, not edgetune's: the GPT-2
pre-tokenizer regex run by Python's `re` (exact on ASCII, where \\p{L} is
[A-Za-z] and \\p{N} is [0-9]; non-ASCII strings are skipped), optionally
preceded by splitting every digit on its own (HF Digits(individual_digits),
SmolLM), then bytes_to_unicode and "merge the lowest-ranked pair everywhere,
repeat".  Standard library only.
"""
import json
import re
import sys

GPT2_ASCII = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def bpe(word, ranks):
    parts = list(word)
    while len(parts) > 1:
        pairs = [(ranks.get((parts[i], parts[i + 1]), 1 << 30), i) for i in range(len(parts) - 1)]
        best = min(pairs)[0]
        if best == 1 << 30:
            break
        a, b = min(pairs)[1], None
        pair = (parts[a], parts[a + 1])
        out, i = [], 0
        while i < len(parts):
            if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
                out.append(parts[i] + parts[i + 1])
                i += 2
            else:
                out.append(parts[i])
                i += 1
        parts = out
    return parts


def encode(text, vocab, ranks, b2u, digits):
    pieces = re.split(r"([0-9])", text) if digits else [text]
    ids = []
    for piece in pieces:
        for word in GPT2_ASCII.findall(piece):
            enc = "".join(b2u[b] for b in word.encode("utf-8"))
            ids += [vocab[p] for p in bpe(enc, ranks)]
    return ids


def main():
    tok = json.load(open(sys.argv[1], encoding="utf-8"))
    out = sys.argv[2]
    digits = "--digits" in sys.argv
    vocab = tok["model"]["vocab"]
    ranks = {}
    for i, m in enumerate(tok["model"]["merges"]):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        ranks.setdefault((a, b), i)
    b2u = bytes_to_unicode()
    strings = [
        "Hello world", " Hello world", "Hello World", " Hello World!", "Hello, world!",
        "w048 7tuijk dsdfhu", "    Hello\n    Hello", "\n =", "' era", "!!!!!!", "3", "33", "333", "3333",
        "333333333", " discards", "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it",
        "int main(void) { return 42; }\n", "x = [1, 2, 3]  # list\n\tprint(x)\r\n",
        "The year 2024 had 365 days; pi is 3.14159.", "a  b   c    d\n\n\ne", "tabs\t\tand\ttabs ",
        "UPPER lower MiXeD CamelCase snake_case kebab-case", "$100.00 + 5% = ???", "<|endoftext|> is text here",
    ]
    for path in ("../shared/data/tinystories_sample.txt", "../shared/data/tiny_shakespeare.txt"):
        try:
            lines = open(path, encoding="utf-8").read().split("\n")
        except OSError:
            continue
        strings += [l for l in lines if l.strip() and l.isascii()][:25]
    strings = [s for s in strings if s.isascii()]
    with open(out + ".inp", "w", encoding="utf-8", newline="") as f:
        for s in strings:
            f.write(s + "\n__ggml_vocab_test__\n")
    with open(out + ".out", "w", encoding="utf-8", newline="") as f:
        for s in strings:
            f.write(" ".join(str(i) for i in encode(s, vocab, ranks, b2u, digits)) + "\n")


if __name__ == "__main__":
    main()
