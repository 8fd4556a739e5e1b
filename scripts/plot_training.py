#!/usr/bin/env python3
"""Validation-loss curves from `edgetune train --metrics` files (JSON lines).

  scripts/plot_training.py --svg docs/training_curves.svg NAME=run.jsonl [NAME=run.jsonl ...]

Prints a Markdown table (step, validation loss and perplexity of each run)
and, with --svg, writes a line chart of validation loss per step (plus the
training loss, thin).  Standard library only.
"""
import argparse
import json
import math
import sys


def read_runs(specs):
    runs = []
    for spec in specs:
        name, _, path = spec.partition("=")
        val, train = {}, {}
        with open(path) as f:
            for line in f:
                ev = json.loads(line)
                if ev["event"] == "eval" and ev.get("val_loss") is not None:
                    val[ev["step"]] = ev["val_loss"]
                elif ev["event"] == "step" and ev.get("loss") is not None:
                    train[ev["step"]] = ev["loss"]
        runs.append((name, val, train))
    return runs


def table(runs):
    steps = sorted(set().union(*(set(v) for _, v, _ in runs)))
    head = "| step | " + " | ".join(f"{n} val loss | {n} val ppl" for n, _, _ in runs) + " |"
    rule = "|---:|" + "---:|---:|" * len(runs)
    rows = [head, rule]
    for s in steps:
        cells = []
        for _, v, _ in runs:
            cells += [f"{v[s]:.4f}", f"{math.exp(v[s]):.3f}"] if s in v else ["", ""]
        rows.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def svg(runs, path):
    W, H, L, R, T, B = 720, 420, 60, 160, 20, 45
    xs = [s for _, v, t in runs for s in list(v) + list(t)]
    ys = [y for _, v, _ in runs for y in v.values()]
    ys += [y for _, _, t in runs for y in t.values()]
    x1 = max(xs) or 1
    y0, y1 = math.floor(min(ys) * 10) / 10, math.ceil(max(ys) * 10) / 10
    if y1 - y0 > 4:
        y1 = y0 + 4  # early training losses would flatten the interesting part
    px = lambda s: L + (W - L - R) * s / x1
    py = lambda y: T + (H - T - B) * (1 - (min(y, y1) - y0) / (y1 - y0))
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    for i in range(6):  # grid and y labels
        y = y0 + (y1 - y0) * i / 5
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
    for i in range(6):
        s = round(x1 * i / 5)
        out.append(f'<text x="{px(s):.1f}" y="{H - B + 16}" text-anchor="middle">{s}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 8}" text-anchor="middle">optimizer step</text>')
    out.append(f'<text x="14" y="{(T + H - B) / 2}" transform="rotate(-90 14 {(T + H - B) / 2})" '
               'text-anchor="middle">loss (nats per token)</text>')
    for k, (name, val, train) in enumerate(runs):
        c = colors[k % len(colors)]
        if train:
            pts = " ".join(f"{px(s):.1f},{py(y):.1f}" for s, y in sorted(train.items()))
            out.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-opacity="0.3" stroke-width="1"/>')
        pts = " ".join(f"{px(s):.1f},{py(y):.1f}" for s, y in sorted(val.items()))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
        ly = T + 16 + 34 * k
        out.append(f'<line x1="{W - R + 10}" x2="{W - R + 30}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{W - R + 36}" y="{ly + 4}">{name} (val)</text>')
        out.append(f'<line x1="{W - R + 10}" x2="{W - R + 30}" y1="{ly + 14}" y2="{ly + 14}" stroke="{c}" '
                   'stroke-opacity="0.3"/>')
        out.append(f'<text x="{W - R + 36}" y="{ly + 18}">train</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--svg")
    ap.add_argument("runs", nargs="+", help="NAME=metrics.jsonl")
    a = ap.parse_args()
    runs = read_runs(a.runs)
    print(table(runs))
    if a.svg:
        svg(runs, a.svg)


if __name__ == "__main__":
    sys.exit(main())
