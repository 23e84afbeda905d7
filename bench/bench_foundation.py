"""First kiln benchmark: compile latency, import time, call overhead.

Measured in one run, for kiln and (when importable) Numba:

- compile + first call of the Mandelbrot grid kernel (kiln.kernels.mandelbrot)
  on a 1x1 grid, in a fresh interpreter, so compilation dominates;
- `import kiln` (`import numba`) in fresh interpreters: median of several,
  cold and with NumPy already imported;
- per-call overhead of a kernel taking three 1-element float64 arrays:
  median over many timeit repeats (includes the timeit loop itself).

usage: python bench/bench_foundation.py [--install-numba] [--quick]
"""

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import textwrap

TARGETS = {"compile": 20e-3, "import": 30e-3, "call": 100e-9}

# Runs in a fresh interpreter; prints a JSON dict of timings.
COMPILE_SCRIPT = r"""
import json, time
import numpy as np
which = {which!r}
if which == "kiln":
    import kiln
    from kiln.kernels.mandelbrot import mandelbrot_grid as grid
else:
    import numba
    from kiln.kernels.mandelbrot import mandelbrot as seed
    mandelbrot = numba.njit(seed)    # the seed's plain Python function

    @numba.njit
    def grid(out, re0, re1, im0, im1):
        h, w = out.shape
        for y in range(h):
            im = im0 + (im1 - im0) * y / h
            for x in range(w):
                re = re0 + (re1 - re0) * x / w
                out[y, x] = mandelbrot(complex(re, im))

out = np.zeros((1, 1), np.int64)
t = time.perf_counter()
grid(out, -2.0, 0.6, -1.5, 1.5)
first = time.perf_counter() - t
t = time.perf_counter()
grid(out, -2.0, 0.6, -1.5, 1.5)
again = time.perf_counter() - t
print(json.dumps({{"first": first, "again": again}}))
"""

IMPORT_SCRIPT = r"""
import time
{pre}
t = time.perf_counter()
import {module}
print(time.perf_counter() - t)
"""

CALL_SCRIPT = r"""
import json, timeit
import numpy as np
which = {which!r}
if which == "kiln":
    import kiln
    from kiln import f64

    @kiln.jit
    def k3(a: f64[:], b: f64[:], c: f64[:]) -> None:
        c[0] = a[0] + b[0]
else:
    import numba

    @numba.njit
    def k3(a, b, c):
        c[0] = a[0] + b[0]

a, b, c = (np.ones(1) for _ in range(3))
k3(a, b, c)
n = {number}
times = timeit.repeat("k3(a, b, c)", globals=globals(), number=n,
                      repeat={repeat})
print(json.dumps(sorted(times)[len(times) // 2] / n))
"""


def run_py(code):
    """Runs code in a fresh interpreter; returns its stdout (raises on
    failure with the child's stderr)."""
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip().splitlines()[-1] if p.stderr
                           else f"exit status {p.returncode}")
    return p.stdout.strip().splitlines()[-1]


def bench_compile(which):
    r = json.loads(run_py(COMPILE_SCRIPT.format(which=which)))
    return r["first"]


def bench_import(which, pre, runs):
    module = "kiln" if which == "kiln" else "numba"
    code = IMPORT_SCRIPT.format(pre="import numpy" if pre else "",
                                module=module)
    return statistics.median(float(run_py(code)) for _ in range(runs))


def bench_call(which, quick):
    code = CALL_SCRIPT.format(which=which, number=20000 if quick else 200000,
                              repeat=7 if quick else 25)
    return json.loads(run_py(code))


def install_numba():
    """pip-installs numba when missing, keeping the installed NumPy."""
    if importlib.util.find_spec("numba") is not None:
        return
    import numpy
    print(f"installing numba (keeping numpy=={numpy.__version__}) ...",
          flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "numba",
                    f"numpy=={numpy.__version__}"], check=False)
    importlib.invalidate_caches()


def fmt(seconds, unit):
    if seconds is None:
        return "-"
    if isinstance(seconds, str):
        return seconds
    return f"{seconds * 1e3:.1f} ms" if unit == "ms" else f"{seconds * 1e9:.0f} ns"


def measure(which, quick):
    runs = 3 if quick else 9
    out = {}
    for key, fn in [("compile", lambda: bench_compile(which)),
                    ("import_cold", lambda: bench_import(which, False, runs)),
                    ("import_numpy", lambda: bench_import(which, True, runs)),
                    ("call", lambda: bench_call(which, quick))]:
        try:
            out[key] = fn()
        except Exception as e:  # a failed measurement is reported, not fatal
            out[key] = f"failed: {e}"[:60]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--install-numba", action="store_true",
                   help="pip install numba when it is missing")
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    args = p.parse_args()
    if args.install_numba:
        install_numba()
    rows = {"kiln": measure("kiln", args.quick)}
    if importlib.util.find_spec("numba") is not None:
        rows["numba"] = measure("numba", args.quick)

    lines = [
        ("compile + first call (Mandelbrot, 1x1 grid)", "compile", "ms",
         TARGETS["compile"]),
        ("import (cold)", "import_cold", "ms", None),
        ("import (numpy already imported)", "import_numpy", "ms",
         TARGETS["import"]),
        ("call overhead, three 1-element arrays", "call", "ns",
         TARGETS["call"]),
    ]
    names = list(rows)
    print(f"{'':46}" + "".join(f"{n:>14}" for n in names) + f"{'kiln target':>14}")
    for label, key, unit, target in lines:
        cells = "".join(f"{fmt(rows[n][key], unit):>14}" for n in names)
        print(f"{label:46}{cells}{fmt(target, unit) if target else '':>14}")
    kiln = rows["kiln"]
    missed = [k for k in ("compile", "import_numpy", "call")
              if not isinstance(kiln[k], float)
              or kiln[k] > TARGETS[k.split("_")[0]]]
    print("kiln targets met" if not missed else
          f"kiln targets missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
