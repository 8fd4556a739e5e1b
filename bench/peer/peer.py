#!/usr/bin/env python3
"""PyTorch + Hugging Face transformers + PEFT: the peer of issue 12 §5.

Run by bench/peer/run.sh inside the peer venv (bench/peer/requirements.txt);
never imported by edgetune.

  peer.py prepare GGUF HF_DIR      transformers loads the GGUF (gguf_file=,
                                   dequantized to float32) and saves it as an
                                   HF directory: the same weights edgetune uses,
                                   loaded fast by every measured run
  peer.py tokens TOKENS.h5 OUT.i32 B T
                                   the first B rows of T+1 tokens of an
                                   edgetune tokens.h5 (`edgetune data --pack
                                   --seq-len T`), read with h5py, as int32
  peer.py step lora|full HF_DIR TOKENS.i32 B T STEPS [--autocast bf16] [--threads 2]
                                   one configuration (one process): one
                                   untimed warm-up step, STEPS timed steps, one
                                   JSON line (same fields as bench_peer.c)
  peer.py summary RESULTS.jsonl    the table: medians over rounds with ranges,
                                   ratios, targets, the fidelity check

Steps: inputs row[:T], targets row[1:], mean cross-entropy over every target
(computed here from the logits in float32, as transformers' loss does).
lora: PEFT LoraConfig(r=8, lora_alpha=16, lora_dropout=0, target_modules
q_proj, v_proj) (A kaiming-uniform, B = 0: the first loss is the base
model's), AdamW lr 1e-4 on the adapter.  full: every parameter, gradient
clipping at 1, AdamW lr 1e-5, weight decay 0.1.  --autocast bf16:
torch.autocast("cpu", dtype=torch.bfloat16) around forward and loss (PyTorch's
bf16 mixed precision; weights and optimizer stay float32).
"""
import json
import os
import resource
import statistics
import sys
import time


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def prepare(gguf, out):
    import torch
    from transformers import AutoModelForCausalLM

    d, name = os.path.split(os.path.abspath(gguf))
    m = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    # transformers refuses to save a model it marks as loaded from a GGUF:
    # copy the (already dequantized, float32) weights into a plain model
    cfg = m.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(m.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        sys.exit(f"peer: state dict mismatch: missing {missing}, unexpected {unexpected}")
    plain.tie_weights()
    plain.save_pretrained(out)
    print(f"peer: {gguf} -> {out} (transformers {__import__('transformers').__version__}, float32)")


def tokens(h5, out, B, T):
    import h5py
    import numpy as np

    with h5py.File(h5, "r") as f:
        tok = np.asarray(f["tokens"][: B * (T + 1)], dtype=np.int32)
        packed = f.attrs.get("packed_len")
    if tok.size != B * (T + 1):
        sys.exit(f"peer: {h5}: only {tok.size} tokens, need {B * (T + 1)}")
    if packed is not None and int(packed) != T + 1:
        sys.exit(f"peer: {h5}: packed rows of {int(packed)} tokens, need {T + 1}")
    tok.astype("<i4").tofile(out)
    print(f"peer: {out}: {B} rows of {T + 1} token ids from {h5}")


def step(mode, hf_dir, tok_path, B, T, steps, autocast, threads):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    rows = torch.from_numpy(np.fromfile(tok_path, dtype="<i4").astype(np.int64).reshape(B, T + 1))
    inp, tgt = rows[:, :T].contiguous(), rows[:, 1:].contiguous()
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], bias="none")
        model = get_peft_model(model, cfg)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        clip = 0.0
    else:
        params = list(model.parameters())
        opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
        clip = 1.0
    model.train()
    load_s = time.perf_counter() - t0
    times, cpu, first = [], [], None
    for s in range(steps + 1):
        t1, c1 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast == "bf16"):
            logits = model(input_ids=inp).logits
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), tgt.view(-1))
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        if s == 0:
            first = loss.item()
        else:
            times.append(time.perf_counter() - t1)
            cpu.append(time.process_time() - c1)
        del logits, loss
    med = statistics.median(times)
    cfg = ("float32" if autocast != "bf16" else "bf16 autocast") + f", torch {torch.__version__}"
    print(json.dumps({"side": "pytorch", "mode": mode, "config": cfg, "first_loss": round(first, 7),
                      "step_s": [round(t, 4) for t in times], "tokens_per_s": round(B * T / med, 2),
                      "tokens_per_cpu_s": round(B * T / statistics.median(cpu), 2),
                      "peak_rss_mb": round(peak_rss_mb(), 1), "load_s": round(load_s, 2)}), flush=True)


def summary(path):
    rows = [json.loads(l) for l in open(path) if l.startswith("{")]
    groups = {}
    for r in rows:
        groups.setdefault((r["mode"], r["side"], r["config"]), []).append(r)

    def med_rng(v):
        return statistics.median(v), min(v), max(v)

    out = {}
    for mode in ("lora", "full"):
        keys = [k for k in groups if k[0] == mode]
        if not keys:
            continue
        print(f"\n{mode.upper()}: " + ("rank 8 on q,v" if mode == "lora" else "full fine-tuning") +
              ", batch {} x {}, 2 threads; medians over {} rounds [min-max]".format(
                  rows[0].get("B", 4), rows[0].get("T", 256), max(len(groups[k]) for k in keys)))
        print(f"  {'side':9} {'configuration':38} {'tokens/s [range]':>22} {'tok/CPU-s':>10} "
              f"{'peak RSS MB [range]':>22} {'first loss':>11}")
        stats = {}
        for k in sorted(keys, key=lambda k: (k[1] != "edgetune", k[2])):
            tps = med_rng([r["tokens_per_s"] for r in groups[k]])
            tpc = statistics.median([r.get("tokens_per_cpu_s", 0.0) for r in groups[k]])
            rss = med_rng([r["peak_rss_mb"] for r in groups[k]])
            fl = statistics.median([r["first_loss"] for r in groups[k]])
            stats[k] = (tps, rss, fl, tpc)
            print(f"  {k[1]:9} {k[2]:38} {tps[0]:8.1f} [{tps[1]:6.1f}-{tps[2]:6.1f}] {tpc:10.1f} "
                  f"{rss[0]:8.0f} [{rss[1]:5.0f}-{rss[2]:5.0f}] {fl:11.6f}")
        torch_keys = [k for k in stats if k[1] == "pytorch"]
        et_keys = [k for k in stats if k[1] == "edgetune"]
        if not torch_keys or not et_keys:
            continue
        best = max(torch_keys, key=lambda k: stats[k][0][0])
        bt, br = stats[best][0][0], stats[best][1][0]
        tgt_s, tgt_m = (2.0, 0.3) if mode == "lora" else (2.0, 0.5)
        print(f"  vs PyTorch's fastest ({best[2]}: {bt:.1f} tokens/s, {br:.0f} MB); target >= {tgt_s}x tokens/s "
              f"at <= {tgt_m}x peak RSS:")
        bc = stats[best][3]
        for k in et_keys:
            s, m = stats[k][0][0] / bt, stats[k][1][0] / br
            c = stats[k][3] / bc if bc > 0 else float("nan")
            ok = "MET" if s >= tgt_s and m <= tgt_m else "missed"
            print(f"    {k[2]:38} {s:5.2f}x tokens/s ({c:4.2f}x per CPU-second), {m:5.3f}x peak RSS: {ok}")
        # fidelity: edgetune's f32 configuration vs PyTorch float32, first step (before any update)
        ref = [k for k in torch_keys if k[2].startswith("float32")]
        mine = [k for k in et_keys if "f32 GEMMs" in k[2] and ("F32 base" in k[2] or mode == "full")]
        for a in mine[:1]:
            for b in ref[:1]:
                la, lb = stats[a][2], stats[b][2]
                rel = abs(la - lb) / abs(lb)
                print(f"  fidelity ({mode}, first step, real weights): edgetune {la:.6f} ({a[2]}) vs PyTorch "
                      f"{lb:.6f}: rel diff {rel:.1e} -> {'PASS' if rel <= 1e-3 else 'FAIL'} (<= 1e-3)")
                out[mode] = rel <= 1e-3
    return 0 if all(out.values()) else 1


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    if a[0] == "prepare":
        prepare(a[1], a[2])
    elif a[0] == "tokens":
        tokens(a[1], a[2], int(a[3]), int(a[4]))
    elif a[0] == "step":
        autocast = a[a.index("--autocast") + 1] if "--autocast" in a else "none"
        threads = int(a[a.index("--threads") + 1]) if "--threads" in a else 2
        step(a[1], a[2], a[3], int(a[4]), int(a[5]), int(a[6]), autocast, threads)
    elif a[0] == "summary":
        sys.exit(summary(a[1]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
