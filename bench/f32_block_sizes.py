#!/usr/bin/python3
"""The float32 route's products by W's row blocks, at several block sizes (BENCHMARKS "Where the AVX2 training gap
sits"). native/src/f32_products.cc computes a bf16 product in float32 a block of W's rows at a time (4 MiB of float32
per block, kBlockElems): x·Wᵀ one column block of y at a time, dX = dY·W summed over the blocks. It does so with W's
held float32 copy too, so that a weight with a copy and one without give the same bits. This times the same loops in
PyTorch (the same libtorch and OpenBLAS as the addon on Debian) at Qwen2.5-0.5B's widths:

  taskset -c 0 /usr/bin/python3 bench/f32_block_sizes.py [--rows 273] [--mib 4 8 16 32]

Per shape (gate/up concatenated, down, lm_head) and block size: GFLOP/s of the forward and of dX, reading W's float32
copy ("copy") or upcasting each block of the bf16 W ("up"; lm_head has no copy); then whether the forward's bits
depend on the block size (one product against blocks of 4 MiB).
"""
import argparse
import time

import torch


def best(f, reps):
    f()
    t = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        t = min(t, time.perf_counter() - t0)
    return t


def forward(xf, w, step):
    out = w.size(0)
    y = torch.empty(xf.size(0), out, dtype=torch.bfloat16)
    for r0 in range(0, out, step):
        n = min(step, out - r0)
        y[:, r0 : r0 + n].copy_(torch.mm(xf, w[r0 : r0 + n].float().t()))
    return y


def dx(g, w, step):
    out = w.size(0)
    gx = torch.zeros(g.size(0), w.size(1))
    for r0 in range(0, out, step):
        n = min(step, out - r0)
        gx.addmm_(g[:, r0 : r0 + n].float(), w[r0 : r0 + n].float())
    return gx


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=273, help="rows of x (tokens of a micro-batch)")
    p.add_argument("--mib", type=int, nargs="+", default=[4, 8, 16, 32], help="float32 MiB per block of W")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    M = a.rows
    print(f"torch {torch.__version__}, {a.threads} thread(s), {M} rows; GFLOP/s forward / dX")
    for out, inn, name in [(9728, 896, "gate/up"), (896, 4864, "down"), (151936, 896, "lm_head")]:
        x = torch.randn(M, inn).bfloat16()
        w = torch.randn(out, inn).bfloat16()
        wf = w.float()
        g = torch.randn(M, out).bfloat16()
        xf = x.float()
        gflop = 2 * M * out * inn / 1e9
        reps = 2 if name == "lm_head" else 5
        cells = []
        for mib in a.mib:
            step = max(64, (mib << 18) // inn)  # float32 elements per block / in, as blockRows
            srcs = [("up", w)] if name == "lm_head" else [("copy", wf), ("up", w)]
            cells.append(
                f"{mib} MiB "
                + " ".join(
                    f"{k} {gflop / best(lambda: forward(xf, s, step), reps):.0f} / "
                    f"{gflop / best(lambda: dx(g, s, step), reps):.0f}"
                    for k, s in srcs
                )
            )
        base = max(64, (4 << 18) // inn)
        same = torch.equal(forward(xf, wf, base), forward(xf, wf, out))
        print(f"{name} [{out} x {inn}]: " + "; ".join(cells) + f"; one product's bits = 4 MiB blocks': {same}")


if __name__ == "__main__":
    main()
