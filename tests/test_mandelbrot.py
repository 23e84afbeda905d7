"""The seed kernel, kiln.kernels.mandelbrot: compiled counts equal CPython's
per pixel, and with fastmath=False the floating-point results are
bit-identical to CPython's."""

import numpy as np

import kiln
from kiln.kernels import mandelbrot as mb
from conftest import check, jit, rand_scalars, reference

BOX = (mb.RE0, mb.RE1, mb.IM0, mb.IM1)


def test_grid_matches_cpython(target):
    grid = jit(reference(mb.mandelbrot_grid), target)
    check(grid, np.zeros((27, 48), np.int64), *BOX)
    # an off-centre box where most points need many iterations
    check(grid, np.zeros((9, 16), np.int64), -0.75, -0.7, 0.05, 0.1)


def test_shipped_dispatcher_any_thread_count():
    old = kiln.get_num_threads()
    try:
        for n in (1, 2):
            kiln.set_num_threads(n)
            check(mb.mandelbrot_grid, np.zeros((18, 32), np.int64), *BOX)
    finally:
        kiln.set_num_threads(old)


def test_point_kernel(target, rng):
    point = jit(mb.mandelbrot, target)      # the undecorated seed function
    special = [0j, -2 + 0j, 0.25 + 0j, 0.26 + 0j, -0.75 + 0.1j, 2 + 0j, -2.1 + 0j,
               1j, -0.1 + 0.65j, 0.3 - 0.5j]
    randoms = [complex(rng.uniform(mb.RE0, mb.RE1), rng.uniform(mb.IM0, mb.IM1))
               for _ in range(40)]
    for c in special + randoms:
        check(point, c)


def orbit(c, n):
    z = c
    for i in range(n):
        if abs(z) > 2:
            break
        z = z * z + c
    return z


def orbit_split(re: float, im: float, n: int) -> float:
    # the same iteration on real parts: the a * b + c patterns an FMA
    # would contract
    x = re
    y = im
    for i in range(n):
        if x * x + y * y > 4.0:
            break
        x, y = x * x - y * y + re, 2.0 * x * y + im
    return x * 1e3 + y


def test_fastmath_false_bit_identical(target, rng):
    """No contraction or reassociation: the final iterates are bit for bit
    CPython's (complex128, complex64 and split real arithmetic)."""
    f = jit(orbit, target)
    g = jit(orbit, target)
    h = jit(orbit_split, target)
    for _ in range(30):
        c = complex(rng.uniform(-2.0, 0.6), rng.uniform(-1.5, 1.5))
        n = int(rng.integers(1, 200))
        check(f, c, n)
        check(h, c.real, c.imag, n)
    for c in rand_scalars(rng, np.complex64, 30, specials=False):
        c = np.complex64(complex(np.clip(c.real, -2, 0.6), np.clip(c.imag, -1.5, 1.5)))
        check(g, c, int(rng.integers(1, 100)))
