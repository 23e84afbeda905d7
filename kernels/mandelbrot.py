"""The Mandelbrot set, computed per pixel by the plain Python function
`mandelbrot` and over a grid by the kiln kernels `mandelbrot_grid` (a
parallel loop over rows) and `mandelbrot_pixels` (one over pixels, for
GPUs).

`mandelbrot` needs no decorator: kiln compiles it along with the kernel
that calls it.  Run `python -m kiln.kernels.mandelbrot` to time CPython
against kiln on a 960x540 grid and check that both give the same counts.
"""

import sys
import time

import kiln
from kiln import i64, prange

WIDTH, HEIGHT = 960, 540
RE0, RE1 = -2.0, 0.6
IM0, IM1 = -1.5, 1.5


def mandelbrot(c: complex):
    MAX_ITERS = 1000
    z = c
    nv = 0
    for i in range(MAX_ITERS):
        if abs(z) > 2:
            break
        z = z * z + c
        nv += 1
    return nv


@kiln.jit
def mandelbrot_grid(out: i64[:, ::1], re0: float, re1: float, im0: float,
                    im1: float) -> None:
    """Fills out[y, x] with the iteration count of the pixel's point, the
    grid spanning re in [re0, re1) and im in [im0, im1)."""
    h, w = out.shape
    for y in prange(h):
        im = im0 + (im1 - im0) * y / h
        for x in range(w):
            re = re0 + (re1 - re0) * x / w
            out[y, x] = mandelbrot(complex(re, im))


@kiln.jit
def mandelbrot_pixels(out: i64[:, ::1], re0: float, re1: float, im0: float,
                      im1: float) -> None:
    """The same grid as mandelbrot_grid, with one parallel iteration per
    pixel: the shape GPUs want (many short invocations)."""
    h, w = out.shape
    for p in prange(h * w):
        y = p // w
        x = p % w
        im = im0 + (im1 - im0) * y / h
        re = re0 + (re1 - re0) * x / w
        out[y, x] = mandelbrot(complex(re, im))


def _timed(fn, *args):
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def main(argv=None):
    """Times the grid interpreted and compiled; returns 1 when the counts
    differ."""
    import argparse

    import numpy as np

    p = argparse.ArgumentParser(prog="python -m kiln.kernels.mandelbrot",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=WIDTH)
    p.add_argument("--height", type=int, default=HEIGHT)
    args = p.parse_args(argv)
    box = (RE0, RE1, IM0, IM1)
    shape = (args.height, args.width)
    print(f"Mandelbrot {args.width}x{args.height}, re in [{RE0}, {RE1}), "
          f"im in [{IM0}, {IM1}), 1000 iterations")

    py_grid = getattr(mandelbrot_grid, "py_func", mandelbrot_grid)
    expected = np.zeros(shape, np.int64)
    t_py = _timed(py_grid, expected, *box)
    print(f"  CPython                      {t_py:9.3f} s")

    threads = kiln.get_num_threads()
    kiln.set_num_threads(1)
    got = np.zeros(shape, np.int64)
    t_first = _timed(mandelbrot_grid, got, *box)
    t_one = min(_timed(mandelbrot_grid, got, *box) for _ in range(3))
    print(f"  kiln compile + first call    {t_first:9.3f} s")
    print(f"  kiln, 1 thread               {t_one:9.3f} s   "
          f"speedup {t_py / t_one:6.1f}x")
    if threads > 1:
        kiln.set_num_threads(threads)
        t_all = min(_timed(mandelbrot_grid, got, *box) for _ in range(3))
        print(f"  kiln, {threads} threads{' ' * (15 - len(str(threads)))}"
              f"{t_all:9.3f} s   speedup {t_py / t_all:6.1f}x")
    kiln.set_num_threads(threads)

    same = np.array_equal(got, expected)
    diff = int(np.count_nonzero(got != expected))
    print(f"  per-pixel counts identical:  {'yes' if same else 'NO'}"
          + ("" if same else f" ({diff} pixels differ)"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
