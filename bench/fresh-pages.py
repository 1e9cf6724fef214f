#!/usr/bin/python3
"""What a fresh page costs on this machine: is memory given back to the kernel slow to get again?

The addon keeps freed CPU blocks of >= 32 MiB mapped for reuse (native/src/cpu_cache.cc, GOODVIBE_HUGE_CACHE_MB)
because on a VM whose balloon takes back free memory (virtio free page reporting, as on Firecracker) a huge page
unmapped and faulted in again a few seconds later comes back through the host, ~30x slower than one reused at once
(BENCHMARKS "The recipe's micro-batch: freed huge blocks"). This measures that on the machine it runs on: it maps
64 MiB (advised MADV_HUGEPAGE, or not), writes one byte per 4 KiB page, unmaps it, and repeats after a pause of 0,
0.5 and 3 s. On bare metal every row reads about the same; where the 3 s rows of "huge" are far slower than the 0 s
ones, freed memory goes back to a host and the kept blocks matter. Python's standard library only:

  taskset -c 1 /usr/bin/python3 bench/fresh-pages.py [--mib 64] [--repeats 6]
"""
import argparse
import mmap
import time


def touch_once(nbytes, huge):
    m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if huge and hasattr(mmap, "MADV_HUGEPAGE"):
        m.madvise(mmap.MADV_HUGEPAGE)
    t0 = time.perf_counter()
    for off in range(0, nbytes, 4096):
        m[off] = 1
    dt = time.perf_counter() - t0
    m.close()
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=6)
    args = ap.parse_args()
    nbytes = args.mib << 20
    print(f"first touch of {args.mib} MiB, ms per mapping ({args.repeats} repeats, the first may include start-up)")
    for huge in (True, False):
        for pause in (0.0, 0.5, 3.0):
            times = []
            for _ in range(args.repeats):
                time.sleep(pause)
                times.append(touch_once(nbytes, huge) * 1e3)
            steady = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0]
            kind = "huge (MADV_HUGEPAGE)" if huge else "4 KiB pages         "
            print(f"{kind}  pause {pause:.1f} s: " + " ".join(f"{t:7.1f}" for t in times) + f"   median after the first {steady:.1f}")


if __name__ == "__main__":
    main()
