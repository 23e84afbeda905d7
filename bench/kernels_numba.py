"""The benchmark workloads for Numba, as a Numba user writes them: the same
loops as bench/kernels_kiln.py, `numba.prange` in the parallel loop.

`build(parallel)` returns the kernels compiled by `njit` (parallel=False)
or `njit(parallel=True)`; the fastmath kernels get `fastmath=True` and a
float32 accumulator as in kiln.  Imported only when Numba is installed.
"""

import math

import numba
import numpy as np
from numba import prange

from kernels_kiln import _mandelbrot as _seed

# the seed's per-pixel function is plain Python: Numba compiles it as it is
_mandelbrot = _seed.mandelbrot


def _mandelbrot_grid(point):
    def mandelbrot_grid(out, re0, re1, im0, im1):
        h, w = out.shape
        for y in prange(h):
            im = im0 + (im1 - im0) * y / h
            for x in range(w):
                re = re0 + (re1 - re0) * x / w
                out[y, x] = point(complex(re, im))
    return mandelbrot_grid


def triad(a, b, c, s):
    for i in prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


def sum_f64(a):
    s = 0.0
    for i in prange(a.shape[0]):
        s += a[i]
    return s


def dot_f64(a, b):
    s = 0.0
    for i in prange(a.shape[0]):
        s += a[i] * b[i]
    return s


def sum_f32(a):
    s = np.float32(0.0)
    for i in prange(a.shape[0]):
        s += a[i]
    return s


def dot_f32(a, b):
    s = np.float32(0.0)
    for i in prange(a.shape[0]):
        s += a[i] * b[i]
    return s


def stencil_sweep(src, dst):
    n, m = src.shape
    for i in prange(1, n - 1):
        for j in range(1, m - 1):
            dst[i, j] = np.float32(0.2) * (src[i, j] + src[i - 1, j]
                                           + src[i + 1, j] + src[i, j - 1]
                                           + src[i, j + 1])


def nbody_step(pos, vel, mass, acc, dt, eps2):
    n = pos.shape[0]
    for i in prange(n):
        xi = pos[i, 0]
        yi = pos[i, 1]
        zi = pos[i, 2]
        ax = 0.0
        ay = 0.0
        az = 0.0
        for j in range(n):
            dx = pos[j, 0] - xi
            dy = pos[j, 1] - yi
            dz = pos[j, 2] - zi
            r2 = dx * dx + dy * dy + dz * dz + eps2
            w = mass[j] / (r2 * math.sqrt(r2))
            ax += dx * w
            ay += dy * w
            az += dz * w
        acc[i, 0] = ax
        acc[i, 1] = ay
        acc[i, 2] = az
    for i in prange(n):
        for k in range(3):
            vel[i, k] += dt * acc[i, k]
            pos[i, k] += dt * vel[i, k]


def matmul(a, b, c):
    n, p = a.shape
    m = b.shape[1]
    for i in prange(n):
        for j in range(m):
            c[i, j] = 0.0
        for k in range(p):
            aik = a[i, k]
            for j in range(m):
                c[i, j] += aik * b[k, j]


def softmax(x, out):
    n, m = x.shape
    for i in prange(n):
        mx = x[i, 0]
        for j in range(1, m):
            mx = max(mx, x[i, j])
        s = 0.0
        for j in range(m):
            e = math.exp(x[i, j] - mx)
            out[i, j] = e
            s += e
        for j in range(m):
            out[i, j] = out[i, j] / s


def build(parallel):
    """A namespace of the kernels compiled with njit(parallel=parallel)."""
    jit = numba.njit(parallel=parallel)
    fast = numba.njit(parallel=parallel, fastmath=True)
    point = numba.njit(_mandelbrot)

    class Kernels:
        pass

    k = Kernels()
    k.mandelbrot_grid = jit(_mandelbrot_grid(point))
    for name in ("triad", "sum_f64", "dot_f64", "stencil_sweep",
                 "nbody_step", "matmul", "softmax"):
        setattr(k, name, jit(globals()[name]))
    k.sum_f32 = fast(sum_f32)
    k.dot_f32 = fast(dot_f32)
    return k
