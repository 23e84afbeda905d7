"""The benchmark workloads as kiln kernels: plain Python with `@kiln.jit`,
`kiln.prange` for the parallel loop, written as a user would write them.

bench/run.py times them against C (bench/c/), Numba (kernels_numba.py),
NumPy and CPython; CPython runs these same functions through `py_func`.
"""

import math

import kiln
from kiln import f32, f64, prange

def _seed():
    """kiln.kernels.mandelbrot of the source tree holding this file (the
    installed kiln.kernels may belong to another tree)."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "kernels", "mandelbrot.py")
    if not os.path.exists(path):
        from kiln.kernels import mandelbrot
        return mandelbrot
    spec = importlib.util.spec_from_file_location("kiln_bench_mandelbrot",
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_mandelbrot = _seed()
mandelbrot_grid = _mandelbrot.mandelbrot_grid       # the seed workload
mandelbrot_pixels = _mandelbrot.mandelbrot_pixels   # its GPU shape


@kiln.jit
def triad(a: f64[:], b: f64[:], c: f64[:], s: float) -> None:
    """STREAM triad: a = b + s * c."""
    for i in prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


@kiln.jit
def sum_f64(a: f64[:]) -> float:
    s = 0.0
    for i in prange(a.shape[0]):
        s += a[i]
    return s


@kiln.jit
def dot_f64(a: f64[:], b: f64[:]) -> float:
    s = 0.0
    for i in prange(a.shape[0]):
        s += a[i] * b[i]
    return s


@kiln.jit(fastmath=True)
def sum_f32(a: f32[:]):
    s = 0.0             # float32: the promotion of everything assigned to s
    for i in prange(a.shape[0]):
        s += a[i]
    return s


@kiln.jit(fastmath=True)
def dot_f32(a: f32[:], b: f32[:]):
    s = 0.0
    for i in prange(a.shape[0]):
        s += a[i] * b[i]
    return s


@kiln.jit
def stencil_sweep(src: f32[:, :], dst: f32[:, :]) -> None:
    """One Jacobi sweep of the 5-point stencil over the interior of src
    into dst (the border of dst is left as it is)."""
    n, m = src.shape
    for i in prange(1, n - 1):
        for j in range(1, m - 1):
            dst[i, j] = 0.2 * (src[i, j] + src[i - 1, j] + src[i + 1, j]
                               + src[i, j - 1] + src[i, j + 1])


def stencil(a, b, sweeps):
    """sweeps Jacobi sweeps, alternating a -> b and b -> a; returns the
    array holding the result."""
    for k in range(sweeps):
        if k % 2 == 0:
            stencil_sweep(a, b)
        else:
            stencil_sweep(b, a)
    return b if sweeps % 2 else a


@kiln.jit
def nbody_step(pos: f64[:, :], vel: f64[:, :], mass: f64[:], acc: f64[:, :],
               dt: float, eps2: float) -> None:
    """One leapfrog-style step of n bodies under softened gravity (G = 1):
    accelerations from all pairs, then velocities, then positions."""
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


@kiln.jit
def matmul(a: f32[:, :], b: f32[:, :], c: f32[:, :]) -> None:
    """c = a @ b by the i-k-j triple loop (the inner loop runs along rows
    of b and c)."""
    n, p = a.shape
    m = b.shape[1]
    for i in prange(n):
        for j in range(m):
            c[i, j] = 0.0
        for k in range(p):
            aik = a[i, k]
            for j in range(m):
                c[i, j] += aik * b[k, j]


@kiln.jit
def matmul_elements(a: f32[:, :], b: f32[:, :], c: f32[:, :]) -> None:
    """c = a @ b with one prange iteration per element of c, the shape of
    a GPU kernel (the Vulkan column: a row per invocation runs past
    lavapipe's per-invocation loop limit, see docs/gpu.md).  Each element
    adds the same products in the same order as matmul."""
    n, p = a.shape
    m = b.shape[1]
    for e in prange(n * m):
        i = e // m
        j = e % m
        s = 0.0
        for k in range(p):
            s += a[i, k] * b[k, j]
        c[i, j] = s


@kiln.jit
def softmax(x: f32[:, :], out: f32[:, :]) -> None:
    """Softmax of each row of x into out (shifted by the row maximum)."""
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
