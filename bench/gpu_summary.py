#!/usr/bin/env python3
"""The side-by-side table of scripts/gpu-check.sh: reads DIR/<pass>-<shape>-<ours|torch>.json (bench/forward-backward.ts
and bench/torch_reference.py fwdbwd; bench/train-step.ts and bench/torch_train.py) and the nvidia-smi samples beside
them (DIR/<name>.gpumem, MiB, every 200 ms), prints Markdown: seconds per pass or step (median), tokens/s, PyTorch's
time / ours, TFLOP/s and their share of the bf16 peak (the FLOPs our side counts, bench/pass.ts and
src/method/flops.ts, for both: the same work), peak GPU memory above the idle level.

  python3 bench/gpu_summary.py DIR [--peak-tflops 790]
"""
import argparse
import glob
import json
import os


def flops_of(j):
    f = j.get("flops")
    if isinstance(f, dict):
        return f["total"] if "total" in f else f.get("forward", 0) + f.get("backward", 0)
    return None


def gpumem(path):
    try:
        with open(path) as f:
            xs = [float(x) for x in f.read().split() if x.strip()]
    except OSError:
        return None
    return (max(xs) - xs[0]) / 1024 if xs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--peak-tflops", type=float, default=790.0)
    a = ap.parse_args()
    rows = {}
    for f in sorted(glob.glob(os.path.join(a.dir, "*.json"))):
        name = os.path.basename(f)[:-5]
        if not (name.endswith("-ours") or name.endswith("-torch")):
            continue
        key, side = name.rsplit("-", 1)
        with open(f) as fh:
            rows.setdefault(key, {})[side] = (json.load(fh), gpumem(os.path.join(a.dir, name + ".gpumem")))
    print(f"| pass / step | shape, layers, tokens | ours s | PyTorch s | ours tok/s | PyTorch tok/s | PyTorch/ours | "
          f"ours TFLOP/s (% of {a.peak_tflops:.0f}) | PyTorch TFLOP/s (%) | peak GPU GiB ours / PyTorch |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, sides in rows.items():
        ours, theirs = sides.get("ours"), sides.get("torch")
        ref = (ours or theirs)[0]
        tokens = ref.get("tokens")
        flops = flops_of(ours[0]) if ours else None
        cells = []
        for s in (ours, theirs):
            cells.append(s[0].get("medianSeconds") if s else None)
        fmt = lambda x, p=3: "—" if x is None else f"{x:.{p}f}"  # noqa: E731
        tps = [None if s is None else tokens / s for s in cells]
        ratio = cells[1] / cells[0] if None not in cells else None
        tf = [None if (s is None or flops is None) else flops / s / 1e12 for s in cells]
        pct = lambda t: "—" if t is None else f"{t:.1f} ({100 * t / a.peak_tflops:.1f}%)"  # noqa: E731
        mem = " / ".join(fmt(s[1] if s else None, 2) for s in (ours, theirs))
        print(f"| {key} | {ref.get('layers')} layers, {tokens} tokens | {fmt(cells[0], 4)} | {fmt(cells[1], 4)} | "
              f"{fmt(tps[0], 0)} | {fmt(tps[1], 0)} | {fmt(ratio, 2)} | {pct(tf[0])} | {pct(tf[1])} | {mem} |")


if __name__ == "__main__":
    main()
