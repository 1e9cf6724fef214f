#!/usr/bin/python3
"""PyTorch references for the TypeScript benchmarks (Debian python3-torch; run with /usr/bin/python3).

  /usr/bin/python3 bench/torch_reference.py matmul [--sizes 1024,2048,3072,4096] [--threads N] [--trials 3]
  /usr/bin/python3 bench/torch_reference.py fwdbwd --model DIR [--tokens 256] [--passes 3] [--threads N] [--profile]
                                                  [--device cpu|cuda] [--head labels|full]
                                                  [--grads hook|module-hook|retain] [--dtype bfloat16|float32]
                                                  [--scores FILE]
  /usr/bin/python3 bench/torch_reference.py fusedops [--tokens 256] [--reps 30] [--threads 1]

fwdbwd reads the same random checkpoint as bench/forward-backward.ts (DIR/model.safetensors, memory-mapped,
bf16) and runs the identical pass: a Qwen2 decoder written out with Hugging Face's numerics (RMSNorm in
float32, half-split RoPE, GQA by repeat_interleave, additive finfo.min mask, float32 softmax), frozen weights,
cross-entropy at the last position: over the logits of the two label tokens (--head labels, the default: what the
addon's identify() computes, two rows of lm_head) or of the whole vocabulary (--head full: the benchmark's loss
before 2026-12-01; bench/pass.ts PassHead). What happens to each nn.Linear output's gradient (bench/pass.ts
PassGrads): --grads hook (the default) is the paper's §4.1 way and identify()'s: a hook on the output receives the
gradient of the loss w.r.t. it and reduces it at once to the per-neuron mean |g| over the sample's tokens in float32
(Eq. 8; identify()'s g.abs().float().sum(1).div(lengths)), added to float64 sums in CPU memory once the backward
is over (one transfer per pass, as identify() reads back once per batch); the embeddings' output requires grad
so that layer 0's projections get theirs, as the addon's forwardBackward (and transformers'
enable_input_require_grads) does. --grads module-hook does the same from register_full_backward_hook on each
nn.Linear (the paper's words, "backward hooks"; extra identity nodes around every module). --grads retain keeps
every output's gradient with retain_grad (a clone each; layer 0's q/k/v outputs made leaves): the pass of figures
before 2026-12-01 06:00. --scores FILE writes the per-neuron mean importances (hook modes), which
bench/compare-scores.ts compares with the addon's.

fusedops times, op by op in PyTorch eager, the decoder glue that bench/fused-ops.ts times in the addon (RMSNorm,
rotary embedding of q and k, causal GQA attention from the rotated q/k/v to o_proj's input, the SiLU-gated
product) at the same shape, forward and backward separately, written as the fwdbwd model above writes them.
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_threads(n):
    torch.set_num_threads(n or os.cpu_count())
    return torch.get_num_threads()


# ------------------------------------------------------------------ matmul peak


def bench_matmul(args):
    threads = set_threads(args.threads)
    torch.manual_seed(0)
    results = []
    with torch.no_grad():
        for dtype in args.dtypes.split(","):
            dt = getattr(torch, dtype)
            for n in map(int, args.sizes.split(",")):
                a = torch.randn(n, n, dtype=dt)
                b = torch.randn(n, n, dtype=dt)
                a @ b  # warm-up
                trials = []
                for _ in range(args.trials):
                    reps, total = 0, 0.0
                    while total < args.min_seconds:
                        t0 = time.perf_counter()
                        a @ b
                        total += time.perf_counter() - t0
                        reps += 1
                    trials.append(2 * n**3 * reps / total / 1e9)
                med = statistics.median(trials)
                results.append({"dtype": dtype, "n": n, "gflops": trials, "median": med})
                print(f"| {dtype} | {n} | {med:.1f} | {' / '.join(f'{x:.1f}' for x in trials)} |", flush=True)
    peak = {d: max(r["median"] for r in results if r["dtype"] == d) for d in args.dtypes.split(",")}
    print(f"threads {threads}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(auto)')}, peak {peak}")
    dump(args.json, {"bench": "matmul-peak-torch", "torch": torch.__version__, "threads": threads, "results": results, "peak": peak})


# ------------------------------------------------------------------ the Qwen2 pass

ST_DTYPES = {"BF16": (np.int16, torch.bfloat16), "F32": (np.float32, torch.float32), "F16": (np.float16, torch.float16)}


def load_safetensors(path):
    """Tensors of a safetensors file, viewed copy-on-write from a memory map (as the addon's mmapFile does)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    mm = np.memmap(path, dtype=np.uint8, mode="c")
    base = 8 + n
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        np_dt, torch_dt = ST_DTYPES[h["dtype"]]
        lo, hi = h["data_offsets"]
        arr = mm[base + lo : base + hi].view(np_dt).reshape(h["shape"])
        t = torch.from_numpy(arr)
        out[name] = t.view(torch_dt) if torch_dt == torch.bfloat16 else t
    return out


class RMSNorm(nn.Module):
    def __init__(self, w, eps):
        super().__init__()
        self.weight = nn.Parameter(w, requires_grad=False)
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


def linear(w, b=None):
    m = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device="meta")
    m.weight = nn.Parameter(w, requires_grad=False)
    if b is not None:
        m.bias = nn.Parameter(b, requires_grad=False)
    return m


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], -1)


class Layer(nn.Module):
    def __init__(self, sd, i, cfg):
        super().__init__()
        p = f"model.layers.{i}"
        self.cfg = cfg
        self.input_layernorm = RMSNorm(sd[f"{p}.input_layernorm.weight"], cfg["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(sd[f"{p}.post_attention_layernorm.weight"], cfg["rms_norm_eps"])
        a = f"{p}.self_attn"
        self.q_proj = linear(sd[f"{a}.q_proj.weight"], sd[f"{a}.q_proj.bias"])
        self.k_proj = linear(sd[f"{a}.k_proj.weight"], sd[f"{a}.k_proj.bias"])
        self.v_proj = linear(sd[f"{a}.v_proj.weight"], sd[f"{a}.v_proj.bias"])
        self.o_proj = linear(sd[f"{a}.o_proj.weight"])
        m = f"{p}.mlp"
        self.gate_proj = linear(sd[f"{m}.gate_proj.weight"])
        self.up_proj = linear(sd[f"{m}.up_proj.weight"])
        self.down_proj = linear(sd[f"{m}.down_proj.weight"])

    def forward(self, x, cos, sin, mask):
        c = self.cfg
        nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]
        d = c["hidden_size"] // nh
        B, T, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, nh, d).transpose(1, 2)
        k = self.k_proj(h).view(B, T, nkv, d).transpose(1, 2)
        v = self.v_proj(h).view(B, T, nkv, d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, 1)
        v = v.repeat_interleave(nh // nkv, 1)
        scores = (q @ k.transpose(2, 3)) * (d**-0.5)
        probs = (scores + mask).softmax(-1, dtype=torch.float32).to(q.dtype)
        out = (probs @ v).transpose(1, 2).reshape(B, T, nh * d)
        x = x + self.o_proj(out)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Qwen2(nn.Module):
    def __init__(self, sd, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Parameter(sd["model.embed_tokens.weight"], requires_grad=False)
        self.layers = nn.ModuleList(Layer(sd, i, cfg) for i in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(sd["model.norm.weight"], cfg["rms_norm_eps"])

    def forward(self, ids, input_grad=False):
        c = self.cfg
        B, T = ids.shape
        dtype = self.embed.dtype
        d = c["hidden_size"] // c["num_attention_heads"]
        with torch.no_grad():
            dev = ids.device
            inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64, device=dev).float() / d))
            freqs = torch.arange(T, device=dev).float()[None, :, None] * inv_freq
            emb = torch.cat([freqs, freqs], -1)[:, None]
            cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
            allowed = torch.arange(T, device=dev)[None, :] <= torch.arange(T, device=dev)[:, None]
            mask = torch.zeros(B, 1, T, T, dtype=dtype, device=dev).masked_fill(~allowed, torch.finfo(dtype).min)
        x = F.embedding(ids, self.embed)
        if input_grad:  # the graph starts at the embeddings even though no weight trains (identification)
            x.requires_grad_()
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)


def bench_ids(T, vocab):
    return torch.tensor([[(t * 7919 + 13) % vocab for t in range(T)]], dtype=torch.int64)


# bench/pass.ts BENCH_LABEL_TOKENS / BENCH_LABEL: "0" and "1" in Qwen2's byte-level vocabulary, class 1 (unsafe)
LABEL_TOKENS = [15, 16]
LABEL = 1


def linear_names(model):
    """Each nn.Linear of the decoder with its Hugging Face name (the addon's Linear.name)."""
    out = []
    for i, layer in enumerate(model.layers):
        for part, attrs in (("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")), ("mlp", ("gate_proj", "up_proj", "down_proj"))):
            out += [(f"model.layers.{i}.{part}.{a}", getattr(layer, a)) for a in attrs]
    return out


def empty_sums(model):
    """Per-neuron float64 sums in CPU memory, one per linear module (identify()'s accumulators)."""
    return {"passes": 0, "sums": {n: torch.zeros(m.out_features, dtype=torch.float64) for n, m in linear_names(model)}}


def identification_pass(model, ids, target, head="labels", grads="hook", sums=None):
    kept = []
    if sums is None:
        sums = empty_sums(model)
    B, T = ids.shape
    # each sample's real tokens, [B, 1] (no padding in this pass)
    lengths = torch.full((B, 1), float(T), device=ids.device)

    pending = []

    def reduce(name, g):
        # Eq. 8 per sample, as identify(): mean over its tokens of |g| in float32 ([B, out]), summed over the batch;
        # kept on the device until the backward is over, then added to the float64 sums on the CPU in one transfer
        # (identify() reads its per-sample rows back once per batch; a transfer per hook would wait for a GPU 168 times)
        pending.append((name, g.detach().abs().float().sum(1).div_(lengths).sum(0)))
        kept.append(name)

    def retain(_mod, _inp, out):
        # layer 0's q/k/v outputs have no history (frozen weights): make them leaves, as the TypeScript pass did
        if out.requires_grad:
            out.retain_grad()
        else:
            out.requires_grad_()
        kept.append(out)

    def tensor_hook(name):
        def hook(_mod, _inp, out):
            out.register_hook(lambda g: reduce(name, g))  # returns None: the output stays as it is

        return hook

    def module_hook(name):
        return lambda _mod, _gin, gout: reduce(name, gout[0])

    if grads == "retain":
        handles = [m.register_forward_hook(retain) for _, m in linear_names(model)]
    elif grads == "hook":
        handles = [m.register_forward_hook(tensor_hook(n)) for n, m in linear_names(model)]
    else:
        handles = [m.register_full_backward_hook(module_hook(n)) for n, m in linear_names(model)]
    try:
        hidden = model(ids, input_grad=grads != "retain")
        if head == "labels":  # method/losses.ts restrictedLogits: the label tokens' rows of lm_head, then the product
            rows = model.embed.index_select(0, torch.tensor(LABEL_TOKENS, device=ids.device))
            logits = (hidden[:, -1] @ rows.t()).float()
            loss = F.cross_entropy(logits, torch.tensor([LABEL], device=ids.device), reduction="sum")
        else:
            logits = (hidden[:, -1] @ model.embed.t()).float()
            loss = F.cross_entropy(logits, target)
        value = loss.item()
        loss.backward()
        if pending:
            host = torch.cat([r for _, r in pending]).to("cpu", torch.float64)
            off = 0
            for name, r in pending:
                sums["sums"][name] += host[off : off + r.numel()]
                off += r.numel()
        sync(ids.device)  # a GPU's backward is queued: the pass ends when it has run
        got = sum(1 for y in kept if y.grad is not None) if grads == "retain" else len(set(kept))
        sums["passes"] += 1
    finally:
        for h in handles:
            h.remove()
    return value, got


def bench_fwdbwd(args):
    threads = set_threads(args.threads)
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sd = load_safetensors(os.path.join(args.model, "model.safetensors"))
    model = Qwen2(sd, cfg).to(args.device)
    if args.dtype != "bfloat16":  # the bf16 weights upcast (exact): the same model computed in float32
        model = model.to(getattr(torch, args.dtype))
    ids = bench_ids(args.tokens, cfg["vocab_size"]).to(args.device)
    target = torch.tensor([42], device=args.device)
    if args.grads != "retain" and args.head != "labels":
        sys.exit("--grads hook/module-hook is identify()'s pass, whose loss is the label tokens' (--head labels); "
                 "--head full goes with --grads retain (the figures before 2026-12-01)")
    sums = empty_sums(model)  # the run's sums, as identify() keeps them over its samples
    identification_pass(model, ids, target, args.head, args.grads, sums)  # warm-up
    times = []
    for _ in range(args.passes):
        t0 = time.perf_counter()
        loss, grads = identification_pass(model, ids, target, args.head, args.grads, sums)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    n_linear = sum(1 for m in model.modules() if isinstance(m, nn.Linear))
    print(f"{args.device}, threads {threads}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(auto)')}, torch {torch.__version__}, head {args.head}, grads {args.grads}, {args.dtype}")
    print(f"loss {loss:.4f}, linear outputs with a gradient{'' if args.grads == 'retain' else ' reduced'}: {grads}/{n_linear}")
    print(f"median {med:.3f} s/pass ({' / '.join(f'{t:.3f}' for t in times)}), {args.tokens / med:.1f} tokens/s, "
          f"peak RSS {peak / 2**30:.2f} GiB, RSS before load {rss_before / 2**20:.0f} MiB")
    profile = None
    if args.profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            identification_pass(model, ids, target, args.head, args.grads)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        print(table)
        profile = table
    dump(args.json, {
        "bench": "forward-backward-torch", "torch": torch.__version__, "threads": threads, "tokens": args.tokens,
        "head": args.head, "grads": args.grads, "dtype": args.dtype,
        "layers": cfg["num_hidden_layers"], "loss": loss, "gradsKept": grads, "secondsPerPass": times,
        "medianSeconds": med, "tokensPerSecond": args.tokens / med, "peakRssBytes": peak,
        "rssBeforeLoadBytes": rss_before, "profile": profile,
    })
    if args.scores:
        if args.grads == "retain":
            sys.exit("--scores needs --grads hook or module-hook (the per-neuron importances)")
        n = sums["passes"]
        dump(args.scores, {
            "what": "per-neuron mean |dL/dy| over the tokens (identify()'s importance), mean over the passes",
            "side": f"torch {args.grads}", "dtype": args.dtype, "tokens": args.tokens, "passes": n, "loss": loss,
            "modules": {name: (s / n).tolist() for name, s in sums["sums"].items()},
        })
    if args.op_profile:
        def one_pass():
            identification_pass(model, ids, target, args.head, args.grads, sums)
            sync(torch.device(args.device))

        op_profile_dump(args.op_profile, "identification pass", args.passes,
                        {"device": args.device, "head": args.head, "grads": args.grads, "dtype": args.dtype,
                         "layers": cfg["num_hidden_layers"], "tokens": args.tokens}, one_pass)


def bench_fusedops(args):
    threads = set_threads(args.threads)
    torch.manual_seed(0)
    T, H, KV, D, HID, INTER, L = args.tokens, 14, 2, 64, 896, 4864, 24
    bf = torch.bfloat16

    def leaf(*shape):
        return torch.randn(*shape).to(bf).requires_grad_()

    norm = RMSNorm((torch.randn(HID) * 0.1 + 1).to(bf), 1e-6)
    inv_freq = 1.0 / (1e6 ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    freqs = torch.arange(T).float()[None, :, None] * inv_freq
    emb = torch.cat([freqs, freqs], -1)[:, None]
    cos, sin = emb.cos().to(bf), emb.sin().to(bf)
    allowed = torch.arange(T)[None, :] <= torch.arange(T)[:, None]
    mask = torch.zeros(1, 1, T, T, dtype=bf).masked_fill(~allowed, torch.finfo(bf).min)

    def rope(q, k):  # the fwdbwd model's lines, from the projections' [B, T, heads, D] views
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        return torch.cat([q.reshape(-1), k.reshape(-1)])

    def attn(q, k, v):  # q, k, v [B, heads, T, D] after rope
        k = k.repeat_interleave(H // KV, 1)
        v = v.repeat_interleave(H // KV, 1)
        scores = (q @ k.transpose(2, 3)) * (D**-0.5)
        probs = (scores + mask).softmax(-1, dtype=torch.float32).to(q.dtype)
        return (probs @ v).transpose(1, 2).reshape(1, T, H * D)

    cases = [
        ("rmsnorm [256, 896]", 2 * L + 1, lambda: [leaf(1, T, HID)], lambda x: norm(x)),
        ("rope q+k [256, 14+2, 64]", L, lambda: [leaf(1, T, H, D), leaf(1, T, KV, D)], rope),
        ("attention core (causal GQA, 256 keys)", L, lambda: [leaf(1, H, T, D), leaf(1, KV, T, D), leaf(1, KV, T, D)], attn),
        ("gated SiLU product [256, 4864]", L, lambda: [leaf(1, T, INTER), leaf(1, T, INTER)], lambda g, u: F.silu(g) * u),
    ]
    results, total = [], 0.0
    print(f"threads {threads}, {T} tokens, bfloat16, median of {args.reps} calls, torch {torch.__version__}")
    print("| op | fwd ms | bwd ms | s/pass |")
    print("| --- | --- | --- | --- |")
    for name, calls, make, f in cases:
        xs = make()
        fwd, bwd = [], []
        for r in range(args.reps + 2):
            for x in xs:
                x.grad = None
            t0 = time.perf_counter()
            y = f(*xs)
            t1 = time.perf_counter()
            dy = (torch.randn(y.shape) * 0.01).to(y.dtype)
            t2 = time.perf_counter()
            y.backward(dy)
            t3 = time.perf_counter()
            if r >= 2:
                fwd.append(t1 - t0)
                bwd.append(t3 - t2)
        fm, bm = statistics.median(fwd), statistics.median(bwd)
        total += (fm + bm) * calls
        print(f"| {name} | {fm * 1e3:.3f} | {bm * 1e3:.3f} | {(fm + bm) * calls:.3f} |")
        results.append({"op": name, "callsPerPass": calls, "fwd": fm, "bwd": bm})
    print(f"| all (per pass) | | | {total:.3f} |")
    dump(args.json, {"bench": "fused-ops-torch", "torch": torch.__version__, "threads": threads, "tokens": T,
                     "reps": args.reps, "results": results})


def op_profile_dump(path, what, runs, meta, run):
    """--op-profile FILE: `runs` more passes or steps inside PyTorch's profiler (after the timed ones), written per op
    name, scope and input shapes as bench/common.ts writeOpProfile writes the addon's (rows: name, shapes, backward,
    calls, totalNs, selfNs; bench/op-profile.ts sets the two side by side). `run` does one pass or step and waits for
    the device."""
    times = []
    with torch.autograd.profiler.profile(record_shapes=True) as prof:
        for _ in range(runs):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
    wall = sum(times)
    def shapes(e):  # "[1024x896, 896x3]": as op_profile.cc writes them (empty for a non-tensor or 0-dim input)
        def one(s):
            return "x".join(str(d) for d in s) if isinstance(s, (list, tuple)) and all(isinstance(d, int) for d in s) else ""
        return "[" + ", ".join(one(s) for s in (e.input_shapes or [])) + "]"

    rows = {}
    for e in prof.function_events:
        backward = int(getattr(e, "scope", 0)) == 1  # at::RecordScope::BACKWARD_FUNCTION
        sh = shapes(e)
        r = rows.setdefault((e.name, backward, sh), {"name": e.name, "shapes": sh, "backward": backward, "calls": 0,
                                                     "totalNs": 0.0, "selfNs": 0.0})
        r["calls"] += 1
        r["totalNs"] += e.cpu_time_total * 1e3
        r["selfNs"] += e.self_cpu_time_total * 1e3
    out = sorted(rows.values(), key=lambda r: (-r["selfNs"], r["name"]))
    dump(path, {"bench": "op-profile", "side": f"PyTorch {torch.__version__} eager", "what": what, "runs": runs,
                "wallSeconds": wall, "secondsPerRun": times, "cudaLaunchBlocking": os.environ.get("CUDA_LAUNCH_BLOCKING"), **meta, "rows": out})
    print(f"op profile of {runs} more: {len(out)} ops, {' / '.join(f'{t:.3f}' for t in times)} s, written to {path}")


def dump(path, obj):
    if not path:
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("matmul")
    m.add_argument("--sizes", default="1024,2048,3072,4096")
    m.add_argument("--dtypes", default="bfloat16,float32")
    m.add_argument("--threads", type=int, default=0)
    m.add_argument("--trials", type=int, default=3)
    m.add_argument("--min-seconds", type=float, default=1.0)
    m.add_argument("--json")
    fb = sub.add_parser("fwdbwd")
    fb.add_argument("--model", required=True, help="folder written by bench/make-random-model.ts")
    fb.add_argument("--tokens", type=int, default=256)
    fb.add_argument("--passes", type=int, default=3)
    fb.add_argument("--threads", type=int, default=0)
    fb.add_argument("--profile", action="store_true")
    fb.add_argument("--device", default="cpu", help="cpu or cuda (bf16 weights either way)")
    fb.add_argument("--dtype", default="bfloat16", help="bfloat16 (the checkpoint's) or float32 (its weights upcast)")
    fb.add_argument("--head", default="labels", choices=["labels", "full"],
                    help="loss over the two label tokens (identify()'s) or the full vocabulary (figures before 2026-12-01)")
    fb.add_argument("--grads", default="hook", choices=["hook", "module-hook", "retain"],
                    help="each linear output's gradient reduced in a hook to identify()'s per-neuron mean |g| (hook: a tensor "
                         "hook, module-hook: register_full_backward_hook) or kept whole (retain: figures before 2026-12-01 06:00)")
    fb.add_argument("--scores", help="write the per-neuron mean importances (hook modes) to this JSON file")
    fb.add_argument("--json")
    fb.add_argument("--op-profile", help="as many passes again in PyTorch's profiler, per op, to this JSON file")
    fo = sub.add_parser("fusedops")
    fo.add_argument("--tokens", type=int, default=256)
    fo.add_argument("--reps", type=int, default=30)
    fo.add_argument("--threads", type=int, default=1)
    fo.add_argument("--json")
    args = ap.parse_args()
    {"matmul": bench_matmul, "fwdbwd": bench_fwdbwd, "fusedops": bench_fusedops}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
