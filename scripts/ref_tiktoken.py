#!/usr/bin/env python3
"""Independent reference ids for the Llama 3 tokenizer on ASCII text.

    python3 scripts/ref_tiktoken.py ../shared/tokenizers/llama3/tokenizer.model OUT_PREFIX

Writes OUT_PREFIX.inp / OUT_PREFIX.out in llama.cpp's vocab-test layout.
The algorithm is tiktoken's (openai/tiktoken src/lib.rs byte_pair_merge),
not edgetune's: the Llama 3 split regex run by Python's `re` (exact on
ASCII, where \\p{L} is [A-Za-z] and \\p{N} is [0-9]; non-ASCII strings are
skipped); a piece that is itself a token is emitted whole; otherwise the
adjacent pair whose concatenation has the lowest rank is merged, leftmost
first, until none is a token.  No merges list is involved: edgetune's test
derives merges from the ranks and runs its own BPE.  Standard library only.
"""
import base64
import re
import sys

LLAMA3_ASCII = re.compile(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]{1,3}| ?[^\sA-Za-z0-9]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def byte_pair_merge(piece, ranks):
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best, at = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best is None or r < best):
                best, at = r, i
        if best is None:
            break
        parts[at:at + 2] = [parts[at] + parts[at + 1]]
    return [ranks[p] for p in parts]


def encode(text, ranks):
    ids = []
    for word in LLAMA3_ASCII.findall(text):
        b = word.encode("utf-8")
        ids += [ranks[b]] if b in ranks else byte_pair_merge(b, ranks)
    return ids


def main():
    ranks = {}
    for line in open(sys.argv[1], "rb"):
        tok, rank = line.split()
        ranks[base64.b64decode(tok)] = int(rank)
    out = sys.argv[2]
    strings = [
        "Hello world", " Hello world", "Hello World", " Hello World!", "Hello, world!", " this is a test",
        "w048 7tuijk dsdfhu", "    Hello\n    Hello", "\n =", "' era", "!!!!!!", "3", "33", "333", "3333",
        "33333", "333333333", " discards", "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, "
        "'D you like some tea? We'Ve a'lL", "int main(void) {\n    return 42;\n}\n", "x = [1, 2, 3]  # list\n\tprint(x)\r\n",
        "The year 2024 had 365 days; pi is 3.14159.", "a  b   c    d\n\n\ne", "tabs\t\tand\ttabs ", " \n \n\n \t \t\t \t\n  \n",
        "UPPER lower MiXeD CamelCase snake_case kebab-case", "$100.00 + 5% = ???", "<|begin_of_text|> is text here",
        "...\n\n...\r\n", "(a+b)*c/d-e", "don't DON'T Don'T", "ok.\n\n\nNext", "    indented\n        more\n",
    ]
    for path in ("../shared/data/tinystories_sample.txt", "../shared/data/tiny_shakespeare.txt"):
        try:
            lines = open(path, encoding="utf-8").read().split("\n")
        except OSError:
            continue
        strings += [l for l in lines if l.strip() and l.isascii()][:20]
    strings = [s for s in strings if s.isascii()]
    with open(out + ".inp", "w", encoding="utf-8", newline="") as f:
        for s in strings:
            f.write(s + "\n__ggml_vocab_test__\n")
    with open(out + ".out", "w", encoding="utf-8", newline="") as f:
        for s in strings:
            f.write(" ".join(str(i) for i in encode(s, ranks)) + "\n")


if __name__ == "__main__":
    main()
