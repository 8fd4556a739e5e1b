#!/usr/bin/env python3
"""PyTorch baseline for bench/bench_lora.c: one LoRA training step (forward,
backward, AdamW on the adapter) on a frozen float32 base, random init, CPU.

The model is bench/torch_train_step.py's plain llama (same computation as
edgetune's train/); q and v of every layer get a LoRA branch as PEFT's
lora.Linear computes it: y = W x + (alpha/rank) * B(A(dropout(x))), A with
kaiming_uniform_(a=sqrt(5)), B = 0 (here B small random, so that every
product is real work, as bench_lora.c does).  Every base parameter has
requires_grad False.

Prints one JSON line: {"shape", "threads", "batch", "seq", "steps", "rank",
"step_s": [...], "tokens_per_s" (median), "tokens_per_cpu_s" (tokens per second
of user+system CPU time of the measured steps, all threads: less sensitive to
other load on a shared machine than the wall rate), "peak_rss_mb", "torch"}.

  /usr/bin/python3 bench/torch_lora_step.py --shape smollm2 --threads 2 --steps 3

Issue 5 gives 156 tokens/s and 5.4 GB peak RSS for this configuration with
Debian's python3-torch 1.13 on 2 threads.
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train_step import SHAPES, Llama  # noqa: E402


class LoraLinear(nn.Module):
    def __init__(self, base, rank, alpha, dropout):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.normal_(self.lora_B.weight, std=0.01)
        self.drop = nn.Dropout(dropout)
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + self.scale * self.lora_B(self.lora_A(self.drop(x)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), default="smollm2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--steps", type=int, default=3, help="measured steps (after one warm-up step)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    c = SHAPES[a.shape]
    model = Llama(c, a.seq)
    for p in model.parameters():
        p.requires_grad_(False)
    for blk in model.layers:
        blk.wq = LoraLinear(blk.wq, a.rank, a.alpha, a.dropout)
        blk.wv = LoraLinear(blk.wv, a.rank, a.alpha, a.dropout)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0)
    g = torch.Generator().manual_seed(a.seed)
    times = []
    cpu0 = None
    for step in range(a.steps + 1):
        if step == 1:
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        tok = torch.randint(0, c["n_vocab"], (a.batch, a.seq + 1), generator=g)
        t0 = time.perf_counter()
        loss = model(tok[:, :-1], tok[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if not math.isfinite(loss.item()):
            sys.exit("non-finite loss")
        if step > 0:
            times.append(dt)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (ru.ru_utime - cpu0.ru_utime + ru.ru_stime - cpu0.ru_stime) / a.steps if cpu0 else float("nan")
    med = statistics.median(times)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"shape": a.shape, "threads": a.threads, "batch": a.batch, "seq": a.seq, "steps": a.steps,
                      "rank": a.rank, "step_s": [round(t, 4) for t in times],
                      "tokens_per_s": round(a.batch * a.seq / med, 1),
                      "tokens_per_cpu_s": round(a.batch * a.seq / cpu_s, 1), "peak_rss_mb": round(rss_mb, 1),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
