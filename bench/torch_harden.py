#!/usr/bin/python3
"""GoodVibe's whole hardening pipeline in plain PyTorch + numpy, the reference for `goodvibe harden` end to end
(Debian python3-torch; run with /usr/bin/python3; bench/e2e-harden.sh runs both side by side).

  /usr/bin/python3 bench/torch_harden.py run --inputs inputs.json --out DIR [--threads 1] [--dtype bfloat16|float32]
      [--clusters F] [--json f]
  /usr/bin/python3 bench/torch_harden.py compare --ours HARDENED_DIR --torch RESULT_JSON [--json f]
  /usr/bin/python3 bench/torch_harden.py table --dir OUT [--repeats 2]      (bench/e2e-harden.sh's table)

`run` reads the model folder named in inputs.json (config.json + model.safetensors, memory-mapped, bf16) and the
exact token ids `goodvibe harden` works on (bench/e2e-inputs.ts dumps them with the recipe's own functions), and
does the same work as the recipe (src/recipes/harden.ts), stage by stage, timed:
  identification  the dumped batches (length-sorted, left-padded, positions from the mask as transformers does),
                  frozen bf16 model, forward hooks retain every nn.Linear output's gradient; loss = cross-entropy
                  over the two label tokens' logits at the last position, summed over the batch (each sample's
                  gradient its own); a row's importance = mean over the sample's real tokens of |dL/dy|, averaged
                  over samples (float64); top-k per module, ties to the lower row (identify.ts)
  clustering      per module, each selected row's importances on the profiled samples scaled to unit length;
                  k-means (k-means++ seeding, Lloyd, best of nInit by inertia) for k = 2..min(kMax, n-1), k by the
                  best silhouette, below the threshold one shared row (kmeans.ts, clustering.ts, ported line by
                  line, with the same xoshiro128** random stream, so equal features give equal clusters)
  training        U [clusters, in] float32 per module, y = x W^T + b + index_add of (x U^T)[:, cluster of each
                  row]; the dumped optimiser steps (seeded shuffles, micro-batches with gradient accumulation),
                  per-layer gradient checkpointing (torch.utils.checkpoint), loss = summed cross-entropy over the
                  answer tokens / answer tokens of the step, clip_grad_norm_, AdamW with the dumped lr per step
  fold            W + dU onto the selected rows in float32, rounded to bf16, the whole checkpoint written as
                  safetensors beside config.json (as writeFoldedCheckpoint does)
--dtype float32 (default bfloat16, the checkpoint's): the bf16 weights upcast once after loading (exact) and the
same pipeline computed in float32, as bench/torch_train.py --dtype float32 does: what a PyTorch user does on a CPU
whose bf16 products are slow and inaccurate (AVX2 without AVX-512: BENCHMARKS "bf16 products on AVX2 CPUs"). The
fold rounds W + dU to bf16 either way, so the checkpoint written is bf16 as in the bf16 run.
`compare` reads our hardened folder (neurons.json, clusters.json, the run folder's training log) and this
script's result, and reports the agreement: selected rows per module, scores, clusters, per-step losses.
"""
import argparse
import json
import math
import os
import resource
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import Qwen2, dump, load_safetensors, set_threads  # noqa: E402
from torch_train import LINEARS, GoodVibeLinear  # noqa: E402

IGNORE = -100
ATTN = {"q_proj", "k_proj", "v_proj", "o_proj"}


def module_name(i, name):
    return f"model.layers.{i}.{'self_attn' if name in ATTN else 'mlp'}.{name}"


def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def openblas_core():
    """The core OpenBLAS picked in this process (OPENBLAS_CORETYPE or its own detection), for the record."""
    try:
        import ctypes

        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return None


# ------------------------------------------------------------------ the decoder with masks and positions


def prepare(model, mask2d):
    """RoPE tables and the additive mask of a [B, T] attention mask (1 = real token), as the recipe builds them:
    positions from the mask's cumulative sum (padding at 1), keys masked by it, causal."""
    c = model.cfg
    B, T = mask2d.shape
    dtype = model.embed.dtype
    d = c["hidden_size"] // c["num_attention_heads"]
    with torch.no_grad():
        pos = (mask2d.long().cumsum(-1) - 1).masked_fill(mask2d == 0, 1)
        inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        freqs = pos.float()[:, :, None] * inv_freq
        emb = torch.cat([freqs, freqs], -1)[:, None]
        cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
        allowed = torch.arange(T)[None, :] <= torch.arange(T)[:, None]
        allowed = allowed[None, None] & (mask2d != 0)[:, None, None, :]
        mask = torch.zeros(B, 1, T, T, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return cos, sin, mask


def hidden_states(model, ids, mask2d, ckpt=False, grad_from_embeddings=False):
    cos, sin, mask = prepare(model, mask2d)
    x = F.embedding(ids, model.embed)
    if grad_from_embeddings:  # identification: the graph starts at the embeddings, as forwardBackward does
        x = x.detach().requires_grad_()
    for layer in model.layers:
        x = checkpoint(layer, x, cos, sin, mask, use_reentrant=False) if ckpt else layer(x, cos, sin, mask)
    return model.norm(x)


# ------------------------------------------------------------------ identification


def identify(model, inp):
    ident = inp["identify"]
    samples = ident["samples"]
    N = len(samples)
    n_prof = ident["profileSamples"]
    label_ids = torch.tensor(ident["labelTokenIds"])
    names, modules = [], []
    for i, layer in enumerate(model.layers):
        for n in LINEARS:
            names.append(module_name(i, n))
            modules.append(getattr(layer, n))
    sums = {n: np.zeros(m.out_features) for n, m in zip(names, modules)}
    profiles = {n: np.zeros((n_prof, m.out_features), dtype=np.float32) for n, m in zip(names, modules)}
    loss_sum, tokens = 0.0, 0
    for batch in ident["batches"]:
        seqs = [samples[i]["inputIds"] for i in batch]
        B, T = len(seqs), len(seqs[0])  # longest first
        ids = torch.zeros(B, T, dtype=torch.int64)
        mask2d = torch.zeros(B, T)
        for b, s in enumerate(seqs):  # left padding: the last position is real for every row
            ids[b, T - len(s) :] = torch.tensor(s)
            mask2d[b, T - len(s) :] = 1
        lengths = mask2d.sum(1, keepdim=True)
        labels = torch.tensor([samples[i]["label"] for i in batch])
        kept = {}

        def tap(name):
            def hook(_m, _i, out):
                out.retain_grad()
                kept[name] = out

            return hook

        handles = [m.register_forward_hook(tap(n)) for n, m in zip(names, modules)]
        try:
            hidden = hidden_states(model, ids, mask2d, grad_from_embeddings=True)
            logits = (hidden[:, -1] @ model.embed[label_ids].t()).float()
            loss = F.cross_entropy(logits, labels, reduction="sum")
            loss_sum += loss.item()
            loss.backward()
        finally:
            for h in handles:
                h.remove()
        with torch.no_grad():
            for n in names:
                per = (kept[n].grad.float().abs() * mask2d[..., None]).sum(1) / lengths  # [B, out]
                per = per.numpy()
                sums[n] += per.astype(np.float64).sum(0)
                for b, i in enumerate(batch):
                    if i < n_prof:
                        profiles[n][i] = per[b]
        del kept, hidden, loss
        tokens += sum(len(s) for s in seqs)
    k = ident["config"]["topK"]
    selected = {}
    for n in names:
        imp = sums[n] / N
        idx = np.argsort(-imp, kind="stable")[:k]  # descending, ties to the lower row
        selected[n] = {"indices": idx.tolist(), "scores": imp[idx].tolist(), "profiles": profiles[n][:, idx].T.astype(np.float64)}
    return selected, {"samples": N, "tokens": tokens, "lossMean": loss_sum / N}


# ------------------------------------------------------------------ clustering (kmeans.ts, line by line)

M32 = 0xFFFFFFFF


class Rng:
    """util/random.ts createRng: xoshiro128** seeded through splitmix32; next() has 53 random bits."""

    def __init__(self, seed):
        s = ((seed & M32) ^ (seed // 4294967296)) & M32

        def sm():
            nonlocal s
            s = (s + 0x9E3779B9) & M32
            z = s
            z = ((z ^ (z >> 16)) * 0x85EBCA6B) & M32
            z = ((z ^ (z >> 13)) * 0xC2B2AE35) & M32
            return (z ^ (z >> 16)) & M32

        self.s = [sm(), sm(), sm(), sm()]

    def next32(self):
        s0, s1, s2, s3 = self.s
        rotl = lambda x, k: ((x << k) | (x >> (32 - k))) & M32  # noqa: E731
        result = (rotl((s1 * 5) & M32, 7) * 9) & M32
        t = (s1 << 9) & M32
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 11)
        self.s = [s0, s1, s2, s3]
        return result

    def next(self):
        hi = self.next32() >> 5
        lo = self.next32() >> 6
        return (hi * 67108864 + lo) / 9007199254740992

    def int(self, n):
        return math.floor(self.next() * n)


def sqdist(points, centers):  # [n, k]
    return ((points[:, None, :] - centers[None, :, :]) ** 2).sum(-1)


def kmeans_pp(points, k, rng):
    n = len(points)
    trials = 2 + math.floor(math.log(k))
    centers = [points[rng.int(n)].copy()]
    closest = ((points - centers[0]) ** 2).sum(1)
    pot = closest.sum()
    for _ in range(1, k):
        cumsum = np.cumsum(closest)
        best_pot, best_id, best_dist = math.inf, 0, closest
        for _t in range(trials):
            r = rng.next() * pot
            idx = int(np.searchsorted(cumsum, r, side="left"))
            idx = min(idx, n - 1)
            dist = np.minimum(closest, ((points - points[idx]) ** 2).sum(1))
            cand = dist.sum()
            if cand < best_pot:
                best_pot, best_id, best_dist = cand, idx, dist
        centers.append(points[best_id].copy())
        closest, pot = best_dist, best_pot
    return np.array(centers)


def means(points, labels, k):
    counts = np.bincount(labels, minlength=k)
    sums = np.zeros((k, points.shape[1]))
    np.add.at(sums, labels, points)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None], counts


def lloyd(points, centers, max_iter, tol):
    k = len(centers)
    labels = np.full(len(points), -1)
    strict = False
    it = 0
    while it < max_iter:
        d = sqdist(points, centers)
        new = d.argmin(1)
        dist = d[np.arange(len(points)), new]
        new_centers, counts = means(points, new, k)
        empty = np.nonzero(counts == 0)[0]
        if len(empty):
            far = sorted(range(len(points)), key=lambda i: (-dist[i], i))[: len(empty)]
            for e, c in enumerate(empty):
                new[far[e]] = c
            new_centers, counts = means(points, new, k)
        shift = ((new_centers - centers) ** 2).sum()
        centers = new_centers
        if np.array_equal(new, labels):
            labels = new
            strict = True
            break
        labels = new
        if shift <= tol:
            break
        it += 1
    if not strict:
        labels = sqdist(points, centers).argmin(1)
    inertia = ((points - centers[labels]) ** 2).sum()
    return labels, inertia


def kmeans(points, k, seed, n_init):
    tol = points.var(0).mean() * 1e-4
    rng = Rng(seed)
    best = None
    for _ in range(n_init):
        labels, inertia = lloyd(points, kmeans_pp(points, k, rng), 300, tol)
        if best is None or inertia < best[1]:
            best = (labels, inertia)
    return best


def dense(labels):
    ids = {}
    return np.array([ids.setdefault(int(l), len(ids)) for l in labels]), None


def silhouette(points, labels):
    lab, _ = dense(labels)
    m = lab.max() + 1
    sizes = np.bincount(lab, minlength=m)
    dist = np.sqrt(sqdist(points, points))
    s = np.zeros(len(points))
    for i in range(len(points)):
        own = lab[i]
        if sizes[own] == 1:
            continue
        sums = np.bincount(lab, weights=dist[i], minlength=m)  # dist[i, i] = 0
        a = sums[own] / (sizes[own] - 1)
        others = [sums[c] / sizes[c] for c in range(m) if c != own]
        b = min(others)
        denom = max(a, b)
        s[i] = 0 if denom == 0 else (b - a) / denom
    return s.mean()


def canonical(points, labels):
    lab, _ = dense(labels)
    m = lab.max() + 1
    centers, _ = means(points, lab, m)
    size = centers.mean(1)
    order = sorted(range(m), key=lambda c: (-size[c], c))
    rank = np.empty(m, dtype=int)
    for r, c in enumerate(order):
        rank[c] = r
    return rank[lab]


def fallback(n, kind):
    return (1 if n else 0, [0] * n) if kind == "shared" else (n, list(range(n)))


def cluster(selected, opts):
    out = {}
    for name, m in selected.items():
        rows = m["indices"]
        n = len(rows)
        if opts["disabled"]:
            out[name] = {"rows": rows, "clusters": list(range(n)), "nClusters": n, "silhouette": None}
            continue
        if n < 3:
            k, labels = fallback(n, opts["fallback"])
            out[name] = {"rows": rows, "clusters": labels, "nClusters": k, "silhouette": None}
            continue
        if opts["features"] == "importance":
            pts = np.array(m["scores"], dtype=np.float64)[:, None]
        else:
            pts = m["profiles"].copy()
            if opts["features"] == "profile-normalized":
                norm = np.sqrt((pts**2).sum(1, keepdims=True))
                pts = np.where(norm > 0, pts / np.where(norm > 0, norm, 1), pts)
        best = None
        for k in range(2, min(opts["kMax"], n - 1) + 1):
            labels, _ = kmeans(pts, k, opts["seed"], opts["nInit"])
            distinct = len(set(labels.tolist()))
            s = silhouette(pts, labels) if distinct >= 2 else math.nan
            if not math.isnan(s) and (best is None or s > best[1]):
                best = (distinct, s, labels)
        if best is None or best[1] < opts["threshold"]:
            k, labels = fallback(n, opts["fallback"])
            out[name] = {"rows": rows, "clusters": labels, "nClusters": k, "silhouette": best[1] if best else None}
        else:
            out[name] = {"rows": rows, "clusters": canonical(pts, best[2]).tolist(), "nClusters": best[0], "silhouette": best[1]}
    return out


# ------------------------------------------------------------------ training


def attach(model, clusters):
    params = []
    for i, layer in enumerate(model.layers):
        for n in LINEARS:
            c = clusters[module_name(i, n)]
            lin = GoodVibeLinear(getattr(layer, n), c["rows"], c["clusters"], c["nClusters"])
            setattr(layer, n, lin)
            params.append(lin.U)
    return params


def answer_tokens(labels):
    return sum(1 for t in labels[1:] if t != IGNORE)


def train(model, inp, params, ckpt):
    tr = inp["train"]
    cfg = tr["config"]
    examples = tr["examples"]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"], weight_decay=cfg["weightDecay"])
    log = []
    tokens = 0
    for s, micro in enumerate(tr["steps"]):
        step_tokens = sum(answer_tokens(examples[i]["labels"]) for m in micro for i in m)
        loss_sum = 0.0
        for m in micro:
            seqs = [examples[i] for i in m]
            T = max(len(e["inputIds"]) for e in seqs)
            B = len(seqs)
            ids = torch.full((B, T), tr["padTokenId"], dtype=torch.int64)
            labels = torch.full((B, T), IGNORE, dtype=torch.int64)
            mask2d = torch.zeros(B, T)
            for b, e in enumerate(seqs):  # right padding, as collate does
                ids[b, : len(e["inputIds"])] = torch.tensor(e["inputIds"])
                labels[b, : len(e["labels"])] = torch.tensor(e["labels"])
                mask2d[b, : len(e["inputIds"])] = 1
            tokens += sum(len(e["inputIds"]) for e in seqs)
            hidden = hidden_states(model, ids, mask2d, ckpt=ckpt)
            target = labels[:, 1:].reshape(-1)
            keep = target != IGNORE
            h = hidden[:, :-1].reshape(B * (T - 1), -1)[keep]
            logits = (h @ model.embed.t()).float()
            loss = F.cross_entropy(logits, target[keep], reduction="sum") / step_tokens
            loss.backward()
            loss_sum += loss.item()
        for g in opt.param_groups:
            g["lr"] = tr["lr"][s]
        norm = torch.nn.utils.clip_grad_norm_(params, cfg["maxGradNorm"]) if cfg["maxGradNorm"] else None
        opt.step()
        opt.zero_grad(set_to_none=True)
        if any(not torch.isfinite(p).all() for p in params):
            raise RuntimeError(f"training diverged at step {s + 1}")
        log.append({"step": s + 1, "loss": loss_sum, "gradNorm": float(norm) if norm is not None else None})
        print(f"train {s + 1}/{len(tr['steps'])}: loss {loss_sum:.4f}", file=sys.stderr, flush=True)
    return log, tokens


# ------------------------------------------------------------------ fold + write


def write_safetensors(path, tensors):
    """tensors: name -> (dtype string, shape, numpy array of the bytes' element type)."""
    header, off = {}, 0
    for name, (dt, shape, arr) in tensors.items():
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + arr.nbytes]}
        off += arr.nbytes
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for _dt, _shape, arr in tensors.values():
            f.write(np.ascontiguousarray(arr).tobytes())


def fold(model, inp, out_dir):
    src = inp["model"]
    os.makedirs(out_dir, exist_ok=True)
    sd = load_safetensors(os.path.join(src, "model.safetensors"))
    folded = {}
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            for n in LINEARS:
                lin = getattr(layer, n)
                w = lin.base.weight.float().index_add(0, lin.rows, lin.U[lin.clusters])
                folded[f"{module_name(i, n)}.weight"] = w.to(torch.bfloat16)
    tensors = {}
    changed = 0
    for name, t in sd.items():
        t = folded.get(name, t)
        changed += name in folded
        dt = {torch.bfloat16: "BF16", torch.float32: "F32", torch.float16: "F16"}[t.dtype]
        arr = t.contiguous().view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.contiguous().numpy()
        tensors[name] = (dt, t.shape, arr)
    tmp = os.path.join(out_dir, "model.safetensors.tmp")
    write_safetensors(tmp, tensors)
    os.replace(tmp, os.path.join(out_dir, "model.safetensors"))
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if os.path.exists(os.path.join(src, f)):
            shutil.copyfile(os.path.join(src, f), os.path.join(out_dir, f))
    return changed


# ------------------------------------------------------------------ run


class Stages:
    """Wall and CPU seconds of each stage (CPU: this process's, every thread)."""

    def __init__(self):
        self.wall, self.cpu = {}, {}
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        self.w, self.c = self.w0, self.c0

    def done(self, name):
        w, c = time.perf_counter(), time.process_time()
        self.wall[name], self.cpu[name] = w - self.w, c - self.c
        self.w, self.c = w, c

    def total(self):
        self.wall["total"] = time.perf_counter() - self.w0
        self.cpu["total"] = time.process_time() - self.c0


def checkpointing_of(args, inp):
    """--checkpointing on/off, or the recipe's train.gradientCheckpointing when it is a boolean; its "auto" (decided by
    our side from its memory estimate) is not a PyTorch setting: on, as the paper runs it, unless --checkpointing off."""
    if args.checkpointing != "config":
        return args.checkpointing == "on"
    return inp["train"]["config"]["gradientCheckpointing"] is not False


def run(args):
    st = Stages()
    threads = set_threads(args.threads)
    with open(args.inputs) as f:
        inp = json.load(f)
    with open(os.path.join(inp["model"], "config.json")) as f:
        cfg = json.load(f)
    sd = load_safetensors(os.path.join(inp["model"], "model.safetensors"))
    model = Qwen2(sd, cfg)
    if args.dtype != "bfloat16":  # the bf16 weights upcast (exact): the same model computed in float32
        model = model.to(getattr(torch, args.dtype))
    st.done("setup")
    load0 = list(os.getloadavg())

    if args.clusters:  # the agreement check of training alone: our cluster map, no identification
        with open(args.clusters) as f:
            clusters = json.load(f)["modules"]
        selected, ident = {}, {}
    else:
        selected, ident = identify(model, inp)
        st.done("identify")
        print(f"identification: {ident['samples']} samples, {st.wall['identify']:.1f} s", file=sys.stderr, flush=True)
        clusters = cluster(selected, inp["cluster"])
    st.done("cluster")
    rows = sum(c["nClusters"] for c in clusters.values())
    print(f"clustering: {len(clusters)} modules, {rows} update rows, {st.wall['cluster']:.1f} s", file=sys.stderr, flush=True)

    params = attach(model, clusters)
    log, train_tokens = train(model, inp, params, checkpointing_of(args, inp))
    st.done("train")

    changed = fold(model, inp, args.out)
    st.done("fold")
    st.total()
    peak = rss()
    trainable = sum(p.numel() for p in params)
    core = openblas_core()
    print(
        f"torch {torch.__version__}, {args.dtype}, threads {threads}, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(auto)')} (OpenBLAS core {core}): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in st.wall.items())
        + f"; {trainable:,} trainable, {changed} tensors folded, peak RSS {peak / 2**30:.2f} GiB"
    )
    dump(args.json, {
        "bench": "torch-harden", "torch": torch.__version__, "dtype": args.dtype, "threads": threads,
        "openblasCoretype": os.environ.get("OPENBLAS_CORETYPE", "(auto)"), "openblasCore": core,
        "layers": cfg["num_hidden_layers"],
        "seconds": st.wall, "cpuSeconds": st.cpu, "identify": ident, "trainTokens": train_tokens,
        "trainableParams": trainable, "updateRows": rows, "foldedTensors": changed, "peakRssBytes": peak,
        "loadAverage": [load0, list(os.getloadavg())], "steps": log,
        "neurons": {n: {"indices": m["indices"], "scores": m["scores"]} for n, m in selected.items()},
        "clusters": clusters,
    })


# ------------------------------------------------------------------ agreement with our run


def same_partition(a, b):
    """Two labelings of the same items group them identically (up to renumbering)."""
    fwd, back = {}, {}
    for x, y in zip(a, b):
        if fwd.setdefault(x, y) != y or back.setdefault(y, x) != x:
            return False
    return True


def compare(args):
    with open(os.path.join(args.ours, "neurons.json")) as f:
        ours_n = json.load(f)["modules"]
    with open(os.path.join(args.ours, "clusters.json")) as f:
        ours_c = json.load(f)["modules"]
    with open(args.torch) as f:
        th = json.load(f)
    mods = sorted(th["neurons"])  # none when `run --clusters` trained on our cluster map: losses only
    overlaps, set_equal, order_equal, rel = [], 0, 0, []
    part_same, k_same, compared = 0, 0, 0
    for n in mods:
        a, b = ours_n[n]["indices"], th["neurons"][n]["indices"]
        common = set(a) & set(b)
        overlaps.append(len(common) / len(a))
        set_equal += set(a) == set(b)
        order_equal += a == b
        sa = dict(zip(a, ours_n[n]["scores"]))
        sb = dict(zip(b, th["neurons"][n]["scores"]))
        rel += [abs(sa[i] - sb[i]) / max(abs(sa[i]), 1e-30) for i in common]
        ca, cb = ours_c[n], th["clusters"][n]
        k_same += ca["nClusters"] == cb["nClusters"]
        if set(a) == set(b):
            compared += 1
            la = dict(zip(ca["rows"], ca["clusters"]))
            lb = dict(zip(cb["rows"], cb["clusters"]))
            part_same += same_partition([la[i] for i in a], [lb[i] for i in a])
    # our per-step losses: the training slot's checkpoint log in the run folder
    run_dir = os.path.join(os.path.dirname(os.path.abspath(args.ours)), f".{os.path.basename(os.path.abspath(args.ours))}.run")
    ours_steps = []
    for d in sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []:
        st = os.path.join(run_dir, d, "checkpoint", "state.json")
        if d.startswith("train-") and os.path.exists(st):
            with open(st) as f:
                ours_steps = json.load(f)["log"]
    kept = os.path.join(args.ours, "train-state.json")  # bench/e2e-harden.sh keeps it when the run folder goes
    if not ours_steps and os.path.exists(kept):
        with open(kept) as f:
            ours_steps = json.load(f)["log"]
    step_rel = [abs(o["loss"] - t["loss"]) / abs(o["loss"]) for o, t in zip(ours_steps, th["steps"])]
    with open(os.path.join(args.ours, "goodvibe-stats.json")) as f:
        stats = json.load(f)
    # the clustering port on our own features: where both sides cluster the same profiles, the same clusters
    port_same = None
    if mods and all("profiles" in ours_n[n] for n in mods):
        with open(os.path.join(args.ours, "clusters.json")) as f:
            options = json.load(f)["options"]
        sel = {n: {"indices": ours_n[n]["indices"], "scores": ours_n[n]["scores"],
                   "profiles": np.array(ours_n[n]["profiles"], dtype=np.float64)} for n in mods}
        port = cluster(sel, options)
        port_same = sum(port[n]["nClusters"] == ours_c[n]["nClusters"] and port[n]["clusters"] == ours_c[n]["clusters"] for n in mods)
    rows_ours = sum(m["nClusters"] for m in ours_c.values())
    if not mods:
        res = {"stepLoss": [{"step": o["step"], "ours": o["loss"], "torch": t["loss"]} for o, t in zip(ours_steps, th["steps"])],
               "stepLossRelDiff": step_rel, "trainable": {"ours": stats["trainableParams"], "torch": th["trainableParams"]}}
        print(f"training on our cluster map: trainable ours {stats['trainableParams']:,}, torch {th['trainableParams']:,}; "
              f"step losses (ours / torch): " + ", ".join(f"{s['ours']:.4f}/{s['torch']:.4f}" for s in res["stepLoss"])
              + f"; largest relative difference {max(step_rel):.2e}")
        dump(args.json, res)
        return
    res = {
        "modules": len(mods),
        "topK": len(ours_n[mods[0]]["indices"]),
        "overlapMean": float(np.mean(overlaps)),
        "overlapMin": float(np.min(overlaps)),
        "modulesSameSet": set_equal,
        "modulesSameOrder": order_equal,
        "scoreRelDiffMedian": float(np.median(rel)) if rel else None,
        "scoreRelDiffMax": float(np.max(rel)) if rel else None,
        "modulesSameClusterCount": k_same,
        "modulesSamePartition": part_same,
        "modulesPartitionCompared": compared,
        "portOnOurProfilesIdentical": port_same,
        "updateRows": {"ours": rows_ours, "torch": th["updateRows"]},
        "trainable": {"ours": stats["trainableParams"], "torch": th["trainableParams"]},
        "stepLoss": [{"step": o["step"], "ours": o["loss"], "torch": t["loss"]} for o, t in zip(ours_steps, th["steps"])],
        "stepLossRelDiff": step_rel,
    }
    print(f"selected rows: mean overlap {res['overlapMean']:.4f} (min {res['overlapMin']:.2f}) over {len(mods)} modules "
          f"of top-{res['topK']}; same set in {set_equal}, same order in {order_equal}; scores on common rows: "
          f"median relative difference {res['scoreRelDiffMedian']:.2e}, max {res['scoreRelDiffMax']:.2e}")
    print(f"clusters: same count in {k_same}/{len(mods)} modules, same partition in {part_same}/{compared} modules with "
          f"the same rows; update rows ours {rows_ours}, torch {th['updateRows']}; trainable ours "
          f"{stats['trainableParams']:,}, torch {th['trainableParams']:,}; this script's clustering on our neuron map's "
          f"profiles gives our labels in {port_same}/{len(mods)} modules")
    print("step losses (ours / torch): " + ", ".join(f"{s['ours']:.4f}/{s['torch']:.4f}" for s in res["stepLoss"]))
    dump(args.json, res)


# ------------------------------------------------------------------ the side-by-side table

STAGES = ["setup", "identify", "cluster", "train", "fold", "total"]
OUR_MARKS = [  # stage, the line that starts it and the one that ends it in `goodvibe harden`'s log (None: exit)
    ("identify", "identification: ", "clustering: "),
    ("cluster", "clustering: ", "training goodvibe"),
    ("train", "training goodvibe", "fold: writing"),
    ("fold", "fold: writing", None),
]


def time_file(path):
    """/usr/bin/time -v: wall, CPU (user + system) seconds and peak RSS bytes."""
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.strip().rpartition(": ")
            if k.startswith("User time"):
                out["user"] = float(v)
            elif k.startswith("System time"):
                out["sys"] = float(v)
            elif k.startswith("Maximum resident set size"):
                out["rss"] = int(v) * 1024
            elif k.startswith("Elapsed (wall clock)"):
                parts = [float(x) for x in v.split(":")]
                out["wall"] = sum(x * 60**i for i, x in enumerate(reversed(parts)))
    return {"wall": out["wall"], "cpu": out["user"] + out["sys"], "rss": out["rss"]}


def our_stages(log_path, tf):
    """Per-stage wall and CPU seconds of our run from its timestamped log (e2e-harden.sh `timed`)."""
    lines = []
    start = end = None
    with open(log_path) as f:
        for raw in f:
            if raw.startswith("start "):
                start = float(raw.split()[1])
            elif raw.startswith("end "):
                end = float(raw.split()[1])
            else:
                t, cpu, text = raw.rstrip("\n").split(" ", 2)
                lines.append((float(t), None if cpu == "-" else float(cpu), text))

    def at(prefix):
        for t, cpu, text in lines:
            if text.startswith(prefix):
                return t, cpu
        raise ValueError(f"{log_path}: no line starting {prefix!r}")

    wall, cpu = {}, {}
    for name, a, b in OUR_MARKS:
        ta, ca = at(a) if a else (start, 0.0)
        tb, cb = at(b) if b else (end, tf["cpu"])
        wall[name], cpu[name] = tb - ta, cb - ca
    wall["total"], cpu["total"] = tf["wall"], tf["cpu"]
    return with_setup(wall), with_setup(cpu)


def with_setup(t):
    """setup: everything outside the four stages (process start, imports, loading, reading the inputs, exit)."""
    t["setup"] = t["total"] - sum(t[s] for s in ("identify", "cluster", "train", "fold"))
    return t


def med(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def table(args):
    d = args.dir
    with open(os.path.join(d, "inputs.json")) as f:
        inp = json.load(f)
    id_tokens = sum(len(s["inputIds"]) for s in inp["identify"]["samples"])
    tr = inp["train"]
    tr_tokens = sum(len(tr["examples"][i]["inputIds"]) for step in tr["steps"] for m in step for i in m)
    runs = {"ours": [], "torch": []}
    dtypes = set()
    for r in range(1, args.repeats + 1):
        tf = time_file(os.path.join(d, f"ours-{r}.time"))
        w, c = our_stages(os.path.join(d, f"ours-{r}.log"), tf)
        runs["ours"].append({"wall": w, "cpu": c, "rss": tf["rss"]})
        tf = time_file(os.path.join(d, f"torch-{r}.time"))
        with open(os.path.join(d, f"torch-{r}.json")) as f:
            j = json.load(f)
        dtypes.add(f"PyTorch {j['torch']} {j.get('dtype', 'bfloat16')}")  # files of before --dtype: bf16
        w, c = dict(j["seconds"]), dict(j["cpuSeconds"])
        # the process as a whole, as for ours: interpreter start and imports included
        w["total"], c["total"] = tf["wall"], tf["cpu"]
        runs["torch"].append({"wall": with_setup(w), "cpu": with_setup(c), "rss": tf["rss"]})
    fmt = lambda xs: " / ".join(f"{x:.1f}" for x in xs)  # noqa: E731
    print(f"{len(inp['identify']['samples'])} identification samples ({id_tokens} tokens), "
          f"{len(tr['steps'])} optimiser steps ({tr_tokens} input tokens); {args.repeats} runs a side, A/B interleaved; "
          f"the PyTorch side: {', '.join(sorted(dtypes))}\n")
    print("| stage | ours wall s | PyTorch wall s | PyTorch/ours (median) | ours CPU s | PyTorch CPU s | PyTorch/ours CPU | tokens/s ours / PyTorch (CPU) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in STAGES:
        ow = [x["wall"][s] for x in runs["ours"]]
        tw = [x["wall"][s] for x in runs["torch"]]
        oc = [x["cpu"][s] for x in runs["ours"]]
        tc = [x["cpu"][s] for x in runs["torch"]]
        toks = {"identify": id_tokens, "train": tr_tokens}.get(s)
        rate = f"{toks / med(oc):.0f} / {toks / med(tc):.0f}" if toks else ""
        print(f"| {s} | {fmt(ow)} | {fmt(tw)} | {med(tw) / med(ow):.2f} | {fmt(oc)} | {fmt(tc)} | {med(tc) / med(oc):.2f} | {rate} |")
    rss_o = [x["rss"] / 2**30 for x in runs["ours"]]
    rss_t = [x["rss"] / 2**30 for x in runs["torch"]]
    print(f"| peak RSS GiB | {' / '.join(f'{x:.2f}' for x in rss_o)} | {' / '.join(f'{x:.2f}' for x in rss_t)} | {med(rss_t) / med(rss_o):.2f} | | | | |")

    # one language of the paper's data: 424 pairs = 848 judge samples and 2 epochs over 424 examples, at the
    # mean lengths of this language's pairs in the split; identification and training scale with their tokens,
    # clustering with the (capped) profile samples and the layers, setup and fold with the model
    lang = inp["language"]
    epochs = tr["config"]["epochs"]
    id_full = 848 * lang["judgeTokensPerSample"]
    tr_full = epochs * 424 * lang["trainTokensPerExample"]
    print(f"\nExtrapolated to one language of the paper's data (424 pairs: 848 identification samples of "
          f"{lang['judgeTokensPerSample']:.0f} tokens on average = {id_full:,.0f} tokens; {epochs} epochs over 424 "
          f"examples of {lang['trainTokensPerExample']:.0f} tokens = {tr_full:,.0f} tokens; means of the split's "
          f"{lang['pairs']} pairs of this language), from the median CPU seconds (1 thread: an idle core's wall time) "
          f"and the median wall seconds (this run's load):\n")
    print("| side | identification min | training min | other min | total (CPU) | total (wall) |")
    print("| --- | --- | --- | --- | --- | --- |")
    out = {}
    for side in ("ours", "torch"):
        res = {}
        for kind in ("cpu", "wall"):
            m = {s: med([x[kind][s] for x in runs[side]]) for s in STAGES}
            ident = m["identify"] * id_full / id_tokens
            trn = m["train"] * tr_full / tr_tokens
            other = m["total"] - m["identify"] - m["train"]
            res[kind] = (ident, trn, other, ident + trn + other)
        c, w = res["cpu"], res["wall"]
        out[side] = res
        print(f"| {'ours' if side == 'ours' else 'PyTorch'} | {c[0] / 60:.1f} | {c[1] / 60:.1f} | {c[2] / 60:.1f} | "
              f"**{c[3] / 60:.0f} min** | {w[3] / 60:.0f} min |")
    print(f"\nPyTorch/ours, extrapolated: {out['torch']['cpu'][3] / out['ours']['cpu'][3]:.2f} (CPU), "
          f"{out['torch']['wall'][3] / out['ours']['wall'][3]:.2f} (wall)")
    for r in range(1, args.repeats + 1):
        p = os.path.join(d, f"agreement-{r}.json")
        if os.path.exists(p):
            with open(p) as f:
                a = json.load(f)
            print(f"\nagreement, run {r}: selected rows overlap {a['overlapMean']:.4f} (min {a['overlapMin']:.2f}), same set "
                  f"in {a['modulesSameSet']}/{a['modules']} modules; same partition in {a['modulesSamePartition']}/"
                  f"{a['modulesPartitionCompared']} (the port on our profiles: {a.get('portOnOurProfilesIdentical')}/{a['modules']} identical); update rows {a['updateRows']['ours']} / {a['updateRows']['torch']}; "
                  f"step losses (ours/PyTorch) " + ", ".join(f"{x['ours']:.4f}/{x['torch']:.4f}" for x in a["stepLoss"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--inputs", required=True, help="JSON from bench/e2e-inputs.ts")
    r.add_argument("--out", required=True, help="folder for the hardened checkpoint")
    r.add_argument("--threads", type=int, default=0)
    r.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"],
                   help="bfloat16 (the checkpoint's) or float32 (its weights upcast; the fold still writes bf16)")
    r.add_argument("--checkpointing", default="config", choices=["config", "on", "off"],
                   help="per-layer gradient checkpointing in training (default: the recipe's setting; its auto: on)")
    r.add_argument("--clusters", help="train on this cluster map (ours: clusters.json) instead of identifying and clustering")
    r.add_argument("--json")
    c = sub.add_parser("compare")
    c.add_argument("--ours", required=True, help="the folder `goodvibe harden` wrote")
    c.add_argument("--torch", required=True, help="the --json of `run`")
    c.add_argument("--json")
    t = sub.add_parser("table")
    t.add_argument("--dir", required=True, help="the OUT folder of bench/e2e-harden.sh")
    t.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    {"run": run, "compare": compare, "table": table}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
