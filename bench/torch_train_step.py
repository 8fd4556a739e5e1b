#!/usr/bin/env python3
"""PyTorch baseline for bench/bench_train.c: one full llama training step
(forward, backward, AdamW) at a given shape, random init, on the CPU.

Prints one JSON line: {"shape", "threads", "batch", "seq", "steps",
"autocast", "step_s": [...], "tokens_per_s" (median wall), "tokens_per_cpu_s"
(median, per second of CPU time of all threads), "peak_rss_mb", "torch"}.

--autocast bf16 runs the forward under torch.autocast("cpu",
dtype=torch.bfloat16) (PyTorch's bf16 mixed precision: matmuls on bf16
copies of their operands, float32 master weights and optimizer; the
counterpart of `edgetune train --precision bf16`).

Uses Debian's python3-torch (apt-get install python3-torch); run it with
/usr/bin/python3 when another python is first on PATH.  The model is a plain
llama written here (RMSNorm, RoPE on interleaved pairs, grouped-query
attention, SwiGLU, tied or untied LM head), the same computation edgetune's
train/ performs, in float32.

  /usr/bin/python3 bench/torch_train_step.py --shape smollm2 --threads 2 --steps 3 [--autocast bf16]
"""
import argparse
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPES = {
    # SmolLM2-135M (HuggingFaceTB/SmolLM2-135M config.json)
    "smollm2": dict(n_vocab=49152, n_embd=576, n_ff=1536, n_layer=30, n_head=9, n_head_kv=3, tied=True),
    # karpathy tinyllamas stories260K
    "stories260k": dict(n_vocab=512, n_embd=64, n_ff=172, n_layer=5, n_head=8, n_head_kv=4, tied=True),
}


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, cos, sin):
    # x [B, T, H, D]; rotate interleaved pairs (x[2i], x[2i+1]).
    x0, x1 = x[..., 0::2], x[..., 1::2]
    y0 = x0 * cos - x1 * sin
    y1 = x0 * sin + x1 * cos
    return torch.stack((y0, y1), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["n_embd"] // c["n_head"]
        self.n_head, self.n_head_kv, self.head_dim = c["n_head"], c["n_head_kv"], d
        self.attn_norm = RMSNorm(c["n_embd"])
        self.wq = nn.Linear(c["n_embd"], c["n_head"] * d, bias=False)
        self.wk = nn.Linear(c["n_embd"], c["n_head_kv"] * d, bias=False)
        self.wv = nn.Linear(c["n_embd"], c["n_head_kv"] * d, bias=False)
        self.wo = nn.Linear(c["n_head"] * d, c["n_embd"], bias=False)
        self.ffn_norm = RMSNorm(c["n_embd"])
        self.w_gate = nn.Linear(c["n_embd"], c["n_ff"], bias=False)
        self.w_up = nn.Linear(c["n_embd"], c["n_ff"], bias=False)
        self.w_down = nn.Linear(c["n_ff"], c["n_embd"], bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = rope(self.wq(h).view(B, T, self.n_head, self.head_dim), cos, sin)
        k = rope(self.wk(h).view(B, T, self.n_head_kv, self.head_dim), cos, sin)
        v = self.wv(h).view(B, T, self.n_head_kv, self.head_dim)
        rep = self.n_head // self.n_head_kv
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, D]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim) + mask
        y = F.softmax(att, dim=-1) @ v
        x = x + self.wo(y.transpose(1, 2).reshape(B, T, -1))
        h = self.ffn_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class Llama(nn.Module):
    def __init__(self, c, seq):
        super().__init__()
        self.tok_embd = nn.Embedding(c["n_vocab"], c["n_embd"])
        self.layers = nn.ModuleList(Block(c) for _ in range(c["n_layer"]))
        self.norm = RMSNorm(c["n_embd"])
        self.output = None if c["tied"] else nn.Linear(c["n_embd"], c["n_vocab"], bias=False)
        d = c["n_embd"] // c["n_head"]
        freq = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
        ang = torch.arange(seq, dtype=torch.float32)[:, None] * freq[None, :]  # [T, D/2]
        self.register_buffer("cos", ang.cos()[None, :, None, :], persistent=False)
        self.register_buffer("sin", ang.sin()[None, :, None, :], persistent=False)
        self.register_buffer("mask", torch.full((seq, seq), float("-inf")).triu(1), persistent=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, targets):
        x = self.tok_embd(idx)
        for blk in self.layers:
            x = blk(x, self.cos, self.sin, self.mask)
        x = self.norm(x)
        w = self.tok_embd.weight if self.output is None else self.output.weight
        logits = x @ w.t()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def cpu_seconds():
    """User + system CPU time of this process, all threads."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), default="stories260k")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="measured steps (after one warm-up step)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none",
                    help="bf16: forward under torch.autocast('cpu', dtype=torch.bfloat16)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    c = SHAPES[a.shape]
    model = Llama(c, a.seq)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    g = torch.Generator().manual_seed(a.seed)
    times, cpu = [], []
    for step in range(a.steps + 1):
        tok = torch.randint(0, c["n_vocab"], (a.batch, a.seq + 1), generator=g)
        t0, c0 = time.perf_counter(), cpu_seconds()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast == "bf16"):
            loss = model(tok[:, :-1], tok[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        dt, dc = time.perf_counter() - t0, cpu_seconds() - c0
        if not math.isfinite(loss.item()):
            sys.exit("non-finite loss")
        if step > 0:
            times.append(dt)
            cpu.append(dc)
    med = statistics.median(times)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"shape": a.shape, "threads": a.threads, "batch": a.batch, "seq": a.seq,
                      "steps": a.steps, "autocast": a.autocast, "step_s": [round(t, 4) for t in times],
                      "tokens_per_s": round(a.batch * a.seq / med, 1),
                      "tokens_per_cpu_s": round(a.batch * a.seq / statistics.median(cpu), 1),
                      "peak_rss_mb": round(rss_mb, 1),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
