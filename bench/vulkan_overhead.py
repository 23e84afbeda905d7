"""Per-call cost of kiln's Vulkan dispatches, on small data.

A kernel with prange runs as single-invocation steps and one dispatch per
prange loop (docs/gpu.md), each its own submission; these kernels show
what that costs per call:

- serial: a kernel without prange (one dispatch);
- prange sum: a reduction over 1000 float64 (step, loop, step);
- 100 trips: a serial loop of 100 trips around a prange (about two
  submissions per trip);
- sweeps: 10 Jacobi sweeps over 512 x 512 float32 in one call.

Medians of --repeat calls after a warm-up call.  Skipped (exit 0) without
a Vulkan device.

usage: python bench/vulkan_overhead.py [--repeat N]
"""

import argparse
import time

import numpy as np

import kiln
from kiln import f32, f64, prange


def serial(a: f64[:], n: int) -> int:
    return n + 1


def prange_sum(a: f64[:]) -> float:
    s = 0.0
    for i in prange(a.shape[0]):
        s += a[i]
    return s


def trips(a: f64[:], n: int) -> float:
    s = 0.0
    for t in range(n):
        for i in prange(a.shape[0]):
            a[i] += 1.0
        s += a[0]
    return s


def sweeps(a: f32[:, :], b: f32[:, :], n: int):
    for t in range(n):
        for i in prange(1, a.shape[0] - 1):
            for j in range(1, a.shape[1] - 1):
                b[i, j] = 0.25 * (a[i - 1, j] + a[i + 1, j] + a[i, j - 1]
                                  + a[i, j + 1])
        for i in prange(1, a.shape[0] - 1):
            for j in range(1, a.shape[1] - 1):
                a[i, j] = b[i, j]


def median_ms(fn, args, repeat):
    fn(*args)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return sorted(times)[repeat // 2] * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    opts = ap.parse_args()
    if not kiln.vulkan.is_available():
        print("vulkan_overhead: no Vulkan device; skipped")
        return
    x = np.random.default_rng(1).random(1000)
    g = np.random.default_rng(2).random((512, 512)).astype(np.float32)
    cases = [("serial", serial, (x, 3)),
             ("prange sum", prange_sum, (x,)),
             ("100 trips", trips, (x, 100)),
             ("sweeps", sweeps, (g, g.copy(), 10))]
    print(f"Vulkan per-call time on {kiln.vulkan.device_name()} "
          f"(median of {opts.repeat})")
    for name, fn, args in cases:
        vk = kiln.jit(target="vulkan")(fn)
        print(f"  {name:12s} {median_ms(vk, args, opts.repeat):9.3f} ms")


if __name__ == "__main__":
    main()
