#!/usr/bin/python3
"""Summary of bench/native/sgemm-shim.c logs, side by side (BENCHMARKS "Closing the float32 gap on AVX2"):

  /usr/bin/python3 bench/sgemm_summary.py ours.sgemm torch.sgemm [--vocab 151936] [--top 10]

Per log: GFLOP (2·m·n·k per call), CPU seconds in sgemm_, GFLOP/s, calls; the products with a vocabulary-sized
dimension (lm_head) apart from the rest (the decoder's); by transposes; the slowest shapes.
"""
import argparse


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            ta, tb, m, n, k, calls, sec = line.split()
            rows.append((ta + tb, int(m), int(n), int(k), int(calls), float(sec)))
    return rows


def flops(r):
    return 2.0 * r[1] * r[2] * r[3] * r[4]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("logs", nargs="+")
    p.add_argument("--vocab", type=int, default=151936)
    p.add_argument("--top", type=int, default=10)
    a = p.parse_args()
    print("| log | GFLOP | s | GFLOP/s | calls | lm_head GFLOP, s | decoder GFLOP, s, GFLOP/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for path in a.logs:
        rows = load(path)
        head = [r for r in rows if a.vocab in r[1:4]]
        rest = [r for r in rows if a.vocab not in r[1:4]]
        f, s = sum(map(flops, rows)), sum(r[5] for r in rows)
        hf, hs = sum(map(flops, head)), sum(r[5] for r in head)
        df, ds = sum(map(flops, rest)), sum(r[5] for r in rest)
        print(f"| {path} | {f / 1e9:,.1f} | {s:.2f} | {f / s / 1e9:.1f} | {sum(r[4] for r in rows):,} | "
              f"{hf / 1e9:,.1f}, {hs:.2f} | {df / 1e9:,.1f}, {ds:.2f}, {df / max(ds, 1e-9) / 1e9:.1f} |")
    for path in a.logs:
        rows = load(path)
        by = {}
        for r in rows:
            c = by.setdefault(r[0], [0, 0.0, 0.0])
            c[0] += r[4]
            c[1] += flops(r) / 1e9
            c[2] += r[5]
        print(f"\n{path} by transposes (calls, GFLOP, s): " + ", ".join(f"{t} {c[0]} {c[1]:.1f} {c[2]:.2f}" for t, c in sorted(by.items())))
        for r in sorted(rows, key=lambda r: -r[5])[: a.top]:
            print(f"  {r[0]} m={r[1]} n={r[2]} k={r[3]} calls {r[4]}: {r[5]:.3f} s, {flops(r) / r[5] / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
