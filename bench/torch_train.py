#!/usr/bin/python3
"""PyTorch eager reference for bench/train-step.ts: the same training step of each method, written the way a
PyTorch user would write it, on the same random checkpoint (Debian python3-torch; run with /usr/bin/python3).

  /usr/bin/python3 bench/torch_train.py --model DIR --method goodvibe|lora|full|frozen [--checkpointing]
      [--tokens 256] [--steps 3] [--threads N] [--rows-per-layer 50] [--selection f] [--device cpu|cuda]
      [--dtype bfloat16|float32] [--json f] [--op-profile f]

Batch 1, 256 fixed token ids (bench_ids), loss = mean cross-entropy over the last half ("answer") positions with
lm_head applied only there, as the TypeScript step does; bf16 compute for every method (--dtype float32: the bf16
weights upcast, exact, and the same model computed in float32, what a user of a CPU whose bf16 products are slow
runs in PyTorch):
  goodvibe  50 random rows of every linear layer in 2-4 random clusters (--selection f: the rows and clusters that
            bench/train-step.ts --selection f drew and wrote, so both sides train the same rows); U float32
            [clusters, in], cast to bf16 in the forward: y = x W^T + b, then index_add of (x U^T)[:, cluster of each
            row] onto the rows
  lora      r 8, alpha 16, dropout 0.05 on q/k/v/o/gate/up/down; A, B float32 cast to bf16 (PEFT's formula)
  full      every parameter: bf16 weights and gradients, float32 master copies and AdamW moments, the rounded
            masters copied back after the step (mixed precision as the paper's section 4.2 describes)
  frozen    no trainable tensor (the same forward + backward)
Step: forward + backward, clip_grad_norm_(1.0), AdamW(lr 1e-4, weight decay 0), zero_grad(set_to_none).
"""
import argparse
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import Qwen2, bench_ids, dump, load_safetensors, op_profile_dump, set_threads, sync  # noqa: E402


class GoodVibeLinear(nn.Module):
    def __init__(self, base, rows, clusters, n_clusters):
        super().__init__()
        self.base = base
        self.U = nn.Parameter(torch.zeros(n_clusters, base.in_features))
        self.register_buffer("rows", torch.tensor(rows, dtype=torch.int64))
        self.register_buffer("clusters", torch.tensor(clusters, dtype=torch.int64))

    def forward(self, x):
        y = self.base(x)
        per_cluster = F.linear(x, self.U.to(x.dtype))
        return y.index_add(-1, self.rows, per_cluster.index_select(-1, self.clusters))


class LoraLinear(nn.Module):
    def __init__(self, base, r=8, alpha=16, dropout=0.05):
        super().__init__()
        self.base = base
        self.A = nn.Parameter((torch.rand(r, base.in_features) * 2 - 1) / base.in_features**0.5)
        self.B = nn.Parameter(torch.zeros(base.out_features, r))
        self.scaling = alpha / r
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        low = F.linear(F.linear(self.dropout(x), self.A.to(x.dtype)), self.B.to(x.dtype))
        return self.base(x) + low * self.scaling


LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def hf_name(i, name):
    return f"model.layers.{i}.{'mlp' if name in ('gate_proj', 'up_proj', 'down_proj') else 'self_attn'}.{name}"


def attach(model, method, rows_per_layer, seed=0, selection=None):
    rng = np.random.default_rng(seed)
    shared = None
    if method == "goodvibe" and selection:
        import json

        with open(selection) as f:
            shared = json.load(f)["selections"]
    for li, layer in enumerate(model.layers):
        for name in LINEARS:
            base = getattr(layer, name)
            if method == "goodvibe":
                if shared is not None:
                    sel = shared.get(hf_name(li, name))
                    if sel is None:
                        raise SystemExit(f"{selection}: no selection for {hf_name(li, name)}")
                    rows, clusters, k = sel["rows"], sel["clusters"], sel["nClusters"]
                    if any(r < 0 or r >= base.out_features for r in rows):
                        raise SystemExit(f"{selection}: {hf_name(li, name)} has a row outside 0..{base.out_features - 1}")
                else:
                    n = min(rows_per_layer, base.out_features)
                    rows = rng.permutation(base.out_features)[:n].tolist()
                    k = 2 + int(rng.integers(3))
                    clusters = [i if i < k else int(rng.integers(k)) for i in range(n)]
                setattr(layer, name, GoodVibeLinear(base, rows, clusters, k))
            elif method == "lora":
                setattr(layer, name, LoraLinear(base))
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def forward_hidden(model, ids, ckpt):
    """Model.forward with optional per-layer gradient checkpointing (the layer is recomputed in backward)."""
    c = model.cfg
    B, T = ids.shape
    dtype = model.embed.dtype
    d = c["hidden_size"] // c["num_attention_heads"]
    with torch.no_grad():
        dev = ids.device
        inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64, device=dev).float() / d))
        freqs = torch.arange(T, device=dev).float()[None, :, None] * inv_freq
        emb = torch.cat([freqs, freqs], -1)[:, None]
        cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
        allowed = torch.arange(T, device=dev)[None, :] <= torch.arange(T, device=dev)[:, None]
        mask = torch.zeros(B, 1, T, T, dtype=dtype, device=dev).masked_fill(~allowed, torch.finfo(dtype).min)
    x = F.embedding(ids, model.embed)
    for layer in model.layers:
        if ckpt and x.requires_grad:
            x = checkpoint(layer, x, cos, sin, mask, use_reentrant=False)
        else:
            x = layer(x, cos, sin, mask)
    return model.norm(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--method", default="goodvibe", choices=["goodvibe", "lora", "full", "frozen"])
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rows-per-layer", type=int, default=50)
    ap.add_argument("--selection", help="GoodVibe rows and clusters from bench/train-step.ts --selection (same file)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (bf16 weights either way)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"],
                    help="bfloat16 (the checkpoint's) or float32 (its weights upcast)")
    ap.add_argument("--json")
    ap.add_argument("--op-profile", help="as many steps again in PyTorch's profiler, per op, to this JSON file")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    import json

    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    sd = load_safetensors(os.path.join(args.model, "model.safetensors"))
    model = Qwen2(sd, cfg)
    if args.dtype != "bfloat16":  # the bf16 weights upcast (exact): the same model computed in float32
        model = model.to(getattr(torch, args.dtype))
    torch.manual_seed(0)
    params = attach(model, args.method, args.rows_per_layer, selection=args.selection)
    device = torch.device(args.device)
    model.to(device)  # parameters move in place (the list above stays valid), buffers too
    masters = None
    if args.method == "full":
        masters = [p.detach().float().clone().requires_grad_() for p in params]
        opt = torch.optim.AdamW(masters, lr=1e-4, weight_decay=0)
    elif params:
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0)
    else:
        opt = None
    q0 = model.layers[0].q_proj
    if args.method == "frozen":
        q0.register_forward_hook(lambda m, i, o: o.requires_grad_() if not o.requires_grad else None)

    T = args.tokens
    ids = bench_ids(T, cfg["vocab_size"]).to(device)
    targets = ids[0, T // 2 :]  # logits at t predict t + 1: positions T/2 - 1 .. T - 2
    model.train()

    def step():
        c0 = time.process_time()  # CPU seconds of the process (the figure to read on a shared core)
        t0 = time.perf_counter()
        hidden = forward_hidden(model, ids, args.checkpointing)
        h = hidden[0, T // 2 - 1 : T - 1]
        logits = (h @ model.embed.t()).float()
        loss = F.cross_entropy(logits, targets)
        loss.backward()
        sync(device)
        t1 = time.perf_counter()
        if opt is not None:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            if masters is not None:
                for p, m in zip(params, masters):
                    m.grad = p.grad.float()
                    p.grad = None
                opt.step()
                with torch.no_grad():
                    for p, m in zip(params, masters):
                        p.copy_(m)
                opt.zero_grad(set_to_none=True)
            else:
                opt.step()
                opt.zero_grad(set_to_none=True)
        sync(device)
        t2 = time.perf_counter()
        return loss.item(), t1 - t0, t2 - t1, t2 - t0, time.process_time() - c0

    phases = []
    loss = float("nan")
    for s in range(args.steps + 1):
        torch.manual_seed(s)
        loss, fb, op, tot, cpu = step()
        print(f"step {s}: {tot:.2f} s (CPU {cpu:.2f} s), loss {loss:.4f}", file=sys.stderr, flush=True)
        if s > 0:
            phases.append({"fwdbwd": fb, "optimizer": op, "total": tot, "cpu": cpu})
    med = statistics.median(p["total"] for p in phases)
    med_cpu = statistics.median(p["cpu"] for p in phases)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    trainable = sum(p.numel() for p in (masters or params))
    print(f"{args.method}, {args.dtype}, checkpointing {'on' if args.checkpointing else 'off'}, "
          f"{cfg['num_hidden_layers']} layers, "
          f"{T} tokens, threads {threads}, torch {torch.__version__}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(auto)')}")
    totals = " / ".join("%.2f" % p["total"] for p in phases)
    fb = statistics.median(p["fwdbwd"] for p in phases)
    op = statistics.median(p["optimizer"] for p in phases)
    print(f"median {med:.3f} s/step ({totals}), CPU {med_cpu:.3f} s/step, fwd+bwd {fb:.3f} s, clip + AdamW {op:.3f} s, "
          f"trainable {trainable:,}, peak RSS {peak / 2**30:.2f} GiB, loss {loss:.4f}")
    dump(args.json, {
        "bench": "train-step-torch", "torch": torch.__version__, "method": args.method, "dtype": args.dtype,
        "checkpointing": args.checkpointing, "layers": cfg["num_hidden_layers"], "tokens": T, "threads": threads,
        "loss": loss, "phases": phases, "medianSeconds": med, "medianCpuSeconds": med_cpu, "trainableParams": trainable, "peakRssBytes": peak,
        "loadAverage": list(os.getloadavg()),
    })
    if args.op_profile:
        op_profile_dump(args.op_profile, f"{args.method} training step", args.steps,
                        {"device": args.device, "method": args.method, "dtype": args.dtype,
                         "checkpointing": args.checkpointing, "layers": cfg["num_hidden_layers"], "tokens": T},
                        step)


if __name__ == "__main__":
    sys.exit(main())
