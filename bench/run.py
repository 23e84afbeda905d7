"""kiln benchmark suite: each workload timed side by side in one process.

Implementations, per workload:

  kiln       the kernel in bench/kernels_kiln.py (@kiln.jit, kiln.prange)
  kiln vulkan  the same Python function with target="vulkan", on NumPy
             arrays (imported or copied around each call), when a Vulkan
             device is present; its result is checked against the CPU
             target's.  Mandelbrot and matmul use their GPU shape there
             (one prange iteration per output element).  "n/a" where the Vulkan target cannot compile the
             kernel (the reason is in the JSON).  On lavapipe (Mesa's
             CPU implementation of Vulkan) the column is labelled
             CPU-emulated: it measures nothing about GPUs.
  C          bench/c/*.c, gcc -O3 -march=native, serial, through ctypes
  C omp      the same sources with -fopenmp, at --threads threads
  Numba      njit, and njit(parallel=True) at --threads threads
  NumPy      array expressions, where NumPy can express the workload
  CPython    the kiln kernel's py_func on a scaled-down size, its time
             extrapolated to the full size (marked *)

Every result is checked against the workload's reference before it is
timed (exact where the operations are the same IEEE operations in the same
order, a tolerance for reductions summed in another order and for
fastmath); a wrong result is reported and not timed.  Times are medians of
--repeat runs after one warm-up call (which compiles kiln and Numba); the
implementations of a workload are timed in interleaved rounds (each once
per round), so a noisy spell of a shared machine does not fall on one, and
each timed call right after an untimed call of the same implementation,
so that each is timed in the state its own previous call left (see
time_rounds).
Results go to bench/results/ as JSON; bench/plot.py draws them.

usage: python bench/run.py [--quick] [--threads N] [--repeat N]
                           [--no-c] [--no-numba] [--no-cpython] [--no-numpy]
                           [--no-vulkan]
                           [--only NAME[,NAME]] [--out FILE.json]
"""

import argparse
import ctypes
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
BUILD = os.path.join(BENCH, "build")

# Column order of the table.
IMPLS = ["kiln", "kiln_vulkan", "c", "c_omp", "numba", "numba_par", "numpy",
         "cpython"]
LABELS = {"kiln": "kiln", "kiln_vulkan": "kiln vulkan", "c": "C",
          "c_omp": "C omp", "numba": "Numba", "numba_par": "Numba par",
          "numpy": "NumPy", "cpython": "CPython*"}
COL = 13        # width of a table column


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="small sizes, one timed run: a smoke test")
    p.add_argument("--threads", type=int, default=2,
                   help="threads for kiln, Numba parallel and OpenMP "
                        "(default 2)")
    p.add_argument("--repeat", type=int, default=None,
                   help="timed runs per implementation (default 7, quick 1)")
    p.add_argument("--no-c", action="store_true", help="skip the C references")
    p.add_argument("--no-numba", action="store_true", help="skip Numba")
    p.add_argument("--no-numpy", action="store_true", help="skip NumPy")
    p.add_argument("--no-cpython", action="store_true", help="skip CPython")
    p.add_argument("--no-vulkan", action="store_true",
                   help="skip the kiln Vulkan target")
    p.add_argument("--only", default="",
                   help="comma-separated workload names to run")
    p.add_argument("--out", default=None,
                   help="JSON file (default bench/results/bench.json, "
                        "bench-quick.json with --quick; '-' for none)")
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 7
    if args.out is None:
        args.out = os.path.join(BENCH, "results", "bench-quick.json"
                                if args.quick else "bench.json")
    return args


def set_thread_env(n):
    """Thread counts for every runtime, set before any of them starts."""
    for var in ("KILN_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    # Numba's pool size caps numba.set_num_threads()
    os.environ["NUMBA_NUM_THREADS"] = str(max(n, os.cpu_count() or 1))


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    set_thread_env(ARGS.threads)

import numpy as np  # noqa: E402  (after the thread environment is set)

# The kiln of this source tree when it is built in place (make build),
# whatever kiln the environment has installed.
if any(f.startswith("_core") for f in
       os.listdir(os.path.join(ROOT, "python", "kiln"))):
    sys.path.insert(0, os.path.join(ROOT, "python"))
import kiln  # noqa: E402

sys.path.insert(0, BENCH)
import kernels_kiln as K  # noqa: E402


def py(fn):
    """The plain Python function behind a kiln dispatcher."""
    return getattr(fn, "py_func", fn)


# ---------------------------------------------------------------------------
# the C references

def build_c(quiet=False):
    """Compiles bench/c into a serial and an OpenMP shared library; returns
    {"c": CDLL, "c_omp": CDLL} (empty when gcc fails, with a message)."""
    os.makedirs(BUILD, exist_ok=True)
    base = ["gcc", "-O3", "-march=native", "-fPIC", "-std=gnu11",
            "-Wall", "-Wno-unknown-pragmas"]
    flags = {"strict": ["-ffp-contract=off"], "fast": ["-ffast-math"]}
    libs = {}
    for variant, extra in (("c", []), ("c_omp", ["-fopenmp"])):
        objs = []
        for src, fl in flags.items():
            obj = os.path.join(BUILD, f"{src}_{variant}.o")
            cmd = base + fl + extra + [
                "-c", os.path.join(BENCH, "c", src + ".c"), "-o", obj]
            if not quiet:
                print("  " + " ".join(cmd[:-4]) + f" -c bench/c/{src}.c",
                      flush=True)
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"C reference not built: {r.stderr.strip()}")
                return {}
            objs.append(obj)
        so = os.path.join(BUILD, f"libkbench_{variant}.so")
        r = subprocess.run(["gcc", "-shared", "-o", so] + objs + extra
                           + ["-lm"], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"C reference not linked: {r.stderr.strip()}")
            return {}
        libs[variant] = declare(ctypes.CDLL(so))
    return libs


def declare(lib):
    """Sets the ctypes signatures of the functions in bench/c."""
    P, L, D, I = ctypes.c_void_p, ctypes.c_long, ctypes.c_double, ctypes.c_int
    sigs = {
        "bench_set_threads": (I, [I]),
        "mandelbrot_grid": (None, [P, L, L, D, D, D, D]),
        "triad": (None, [P, P, P, D, L]),
        "sum_f64": (D, [P, L]),
        "dot_f64": (D, [P, P, L]),
        "sum_f32": (ctypes.c_float, [P, L]),
        "dot_f32": (ctypes.c_float, [P, P, L]),
        "stencil": (None, [P, P, L, L, I]),
        "nbody_step": (None, [P, P, P, P, L, D, D]),
        "matmul": (None, [P, P, P, L, L, L]),
        "softmax": (None, [P, P, L, L]),
    }
    for name, (res, argtypes) in sigs.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = argtypes
    return lib


def ptr(a):
    assert a.flags.c_contiguous
    return a.ctypes.data


# ---------------------------------------------------------------------------
# the Vulkan target

# Options of the decorators in kernels_kiln.py other than the defaults.
KILN_OPTIONS = {"sum_f32": {"fastmath": True}, "dot_f32": {"fastmath": True}}


def vulkan_device():
    """{"name", "kind", "lavapipe"} of kiln's Vulkan device, or None with
    the reason printed when there is none."""
    try:
        info = kiln.vulkan._device_info()
    except Exception as e:
        print(f"kiln vulkan: skipped ({str(e).splitlines()[0]})")
        return None
    lavapipe = "llvmpipe" in info["name"].lower()
    return {"name": info["name"], "kind": info["kind"], "lavapipe": lavapipe,
            "label": "lavapipe (CPU-emulated)" if lavapipe else info["name"]}


class VulkanKernels:
    """kernels_kiln's kernels recompiled with target="vulkan", by name."""

    def __init__(self):
        self._made = {}

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._made:
            fn = py(getattr(K, name))
            self._made[name] = kiln.jit(target="vulkan",
                                        **KILN_OPTIONS.get(name, {}))(fn)
        return self._made[name]


# ---------------------------------------------------------------------------
# checks

def exact(got, ref):
    """None when got and ref are identical arrays, else what differs."""
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        return f"shape {got.shape} != {ref.shape}"
    bad = np.count_nonzero(got != ref)
    return None if bad == 0 else f"{bad} of {ref.size} elements differ"


def close(got, ref, rtol, scale=None):
    """None when |got - ref| <= rtol * scale everywhere (scale: max |ref|
    by default), else the error found."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return f"shape {got.shape} != {ref.shape}"
    if scale is None:
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    if not np.isfinite(err) or err > rtol * scale:
        return f"error {err:.3g} > {rtol:g} * {scale:.3g}"
    return None


# ---------------------------------------------------------------------------
# workloads
#
# A workload makes its inputs for a size, computes its reference, and gives
# for each implementation a zero-argument `run` (made on private copies of
# the inputs) returning what is checked.  `work(size)` is proportional to
# the work done, for extrapolating CPython.

class Workload:
    name = ""
    full = quick = small = None      # sizes: full, --quick, CPython
    impls = IMPLS

    def describe(self, size):
        return str(size)

    def work(self, size):
        return float(np.prod(size))

    def inputs(self, size, rng):
        raise NotImplementedError

    def reference(self, inp, libs):
        return self.numpy(inp)()

    def check(self, got, ref, impl):
        return exact(got, ref)

    def check_cpu(self, got, cpu, ref):
        """The Vulkan target's result `got` against the CPU target's `cpu`
        (ref: the workload's reference)."""
        return self.check(got, cpu, "kiln_vulkan")


def copies(inp):
    return {k: v.copy() if isinstance(v, np.ndarray) else v
            for k, v in inp.items()}


class Mandelbrot(Workload):
    name = "mandelbrot"
    full, quick, small = (540, 960), (54, 96), (54, 96)
    box = (-2.0, 0.6, -1.5, 1.5)

    def describe(self, size):
        return f"{size[1]}x{size[0]}, 1000 it, c128"

    def inputs(self, size, rng):
        return {"out": np.zeros(size, np.int64)}

    def reference(self, inp, libs):
        # NumPy's complex multiply may contract to FMA: the exact counts
        # come from C (same operations as CPython) or CPython itself.
        if "c" in libs:
            return self.c(inp, libs["c"])()
        return self.cpython(inp)()

    def check(self, got, ref, impl):
        if impl != "numpy":
            return exact(got, ref)
        bad = np.count_nonzero(got != ref)       # see reference()
        return None if bad <= ref.size // 1000 else \
            f"{bad} of {ref.size} counts differ"

    def kiln(self, inp, K=K):
        out = inp["out"]
        # on a GPU, one invocation per pixel (a row per invocation runs
        # past lavapipe's per-invocation loop limit, see docs/gpu.md)
        gpu = isinstance(K, VulkanKernels)
        fn = K.mandelbrot_pixels if gpu else K.mandelbrot_grid
        return lambda: (fn(out, *self.box), out)[1]

    def cpython(self, inp):
        out = inp["out"]
        return lambda: (py(K.mandelbrot_grid)(out, *self.box), out)[1]

    def c(self, inp, lib):
        out = inp["out"]
        h, w = out.shape
        return lambda: (lib.mandelbrot_grid(ptr(out), h, w, *self.box), out)[1]

    def numba(self, inp, N):
        out = inp["out"]
        return lambda: (N.mandelbrot_grid(out, *self.box), out)[1]

    def numpy(self, inp):
        h, w = inp["out"].shape
        re0, re1, im0, im1 = self.box

        def run():
            im = im0 + (im1 - im0) * np.arange(h) / h
            re = re0 + (re1 - re0) * np.arange(w) / w
            c = np.empty((h, w), np.complex128)
            c.real = re[None, :]
            c.imag = im[:, None]
            c = c.ravel()
            z = c.copy()
            idx = np.arange(c.size)
            nv = np.zeros(c.size, np.int64)
            for _ in range(1000):
                alive = ~(np.abs(z) > 2)
                if not alive.all():
                    idx, z = idx[alive], z[alive]
                    if idx.size == 0:
                        break
                z = z * z + c[idx]
                nv[idx] += 1
            return nv.reshape(h, w)
        return run


class Triad(Workload):
    name = "triad"
    full, quick, small = (1 << 25,), (1 << 12,), (1 << 17,)
    s = 3.0

    def describe(self, size):
        return f"2^{size[0].bit_length() - 1} f64"

    def inputs(self, size, rng):
        n = size[0]
        return {"a": np.zeros(n), "b": rng.random(n), "c": rng.random(n)}

    def kiln(self, inp, K=K):
        a, b, c = inp["a"], inp["b"], inp["c"]
        return lambda: (K.triad(a, b, c, self.s), a)[1]

    def cpython(self, inp):
        a, b, c = inp["a"], inp["b"], inp["c"]
        return lambda: (py(K.triad)(a, b, c, self.s), a)[1]

    def c(self, inp, lib):
        a, b, c = inp["a"], inp["b"], inp["c"]
        return lambda: (lib.triad(ptr(a), ptr(b), ptr(c), self.s, a.size),
                        a)[1]

    def numba(self, inp, N):
        a, b, c = inp["a"], inp["b"], inp["c"]
        return lambda: (N.triad(a, b, c, self.s), a)[1]

    def numpy(self, inp):
        a, b, c = inp["a"], inp["b"], inp["c"]

        def run():
            np.multiply(c, self.s, out=a)
            np.add(a, b, out=a)          # s * c + b == b + s * c exactly
            return a
        return run

    def bytes(self, size):
        return 3 * 8 * size[0]


class Reduction(Workload):
    """s = sum a[i] (or a[i] * b[i]); checked within rtol of sum |terms|."""
    kernel = ""
    dtype = np.float64
    dot = False
    rtol = 1e-9
    full, quick, small = (1 << 25,), (1 << 12,), (1 << 17,)

    def describe(self, size):
        bits = np.dtype(self.dtype).itemsize * 8
        fm = ", fastmath" if self.dtype == np.float32 else ""
        return f"2^{size[0].bit_length() - 1} f{bits}{fm}"

    def inputs(self, size, rng):
        n = size[0]
        inp = {"a": rng.uniform(-1, 1, n).astype(self.dtype)}
        if self.dot:
            inp["b"] = rng.uniform(-1, 1, n).astype(self.dtype)
        return inp

    def args(self, inp):
        return (inp["a"], inp["b"]) if self.dot else (inp["a"],)

    def reference(self, inp, libs):
        terms = inp["a"].astype(np.float64)
        if self.dot:
            terms = terms * inp["b"].astype(np.float64)
        return float(np.sum(terms)), float(np.sum(np.abs(terms)))

    def check(self, got, ref, impl):
        return close(float(got), ref[0], self.rtol, ref[1])

    def check_cpu(self, got, cpu, ref):
        return close(float(got), float(cpu), self.rtol, ref[1])

    def kiln(self, inp, K=K):
        fn, args = getattr(K, self.kernel), self.args(inp)
        return lambda: fn(*args)

    def cpython(self, inp):
        fn, args = py(getattr(K, self.kernel)), self.args(inp)
        return lambda: fn(*args)

    def c(self, inp, lib):
        fn, args = getattr(lib, self.kernel), self.args(inp)
        n = args[0].size
        return lambda: fn(*[ptr(x) for x in args], n)

    def numba(self, inp, N):
        fn, args = getattr(N, self.kernel), self.args(inp)
        return lambda: fn(*args)

    def numpy(self, inp):
        args = self.args(inp)
        if self.dot:
            return lambda: np.dot(*args)
        return lambda: np.sum(args[0])


class SumF64(Reduction):
    name, kernel = "sum_f64", "sum_f64"


class DotF64(Reduction):
    name, kernel, dot = "dot_f64", "dot_f64", True


class SumF32(Reduction):
    name, kernel, dtype, rtol = "sum_f32", "sum_f32", np.float32, 1e-5


class DotF32(Reduction):
    name, kernel, dtype, rtol = "dot_f32", "dot_f32", np.float32, 1e-5
    dot = True


class Stencil(Workload):
    name = "stencil"
    full, quick, small = (4096, 4096, 10), (64, 96, 3), (256, 256, 1)

    def describe(self, size):
        return f"{size[0]}x{size[1]} f32, {size[2]} sweeps"

    def inputs(self, size, rng):
        n, m, sweeps = size
        a = rng.random((n, m), dtype=np.float32)
        return {"a": a, "b": a.copy(), "sweeps": sweeps}

    def _run(self, inp, sweep):
        a, b, sweeps = inp["a"], inp["b"], inp["sweeps"]

        def run():
            for k in range(sweeps):
                if k % 2 == 0:
                    sweep(a, b)
                else:
                    sweep(b, a)
            return b if sweeps % 2 else a
        return run

    def kiln(self, inp, K=K):
        return self._run(inp, K.stencil_sweep)

    def cpython(self, inp):
        return self._run(inp, py(K.stencil_sweep))

    def numba(self, inp, N):
        return self._run(inp, N.stencil_sweep)

    def numpy(self, inp):
        def sweep(src, dst):
            dst[1:-1, 1:-1] = 0.2 * (src[1:-1, 1:-1] + src[:-2, 1:-1]
                                     + src[2:, 1:-1] + src[1:-1, :-2]
                                     + src[1:-1, 2:])
        return self._run(inp, sweep)

    def c(self, inp, lib):
        a, b, sweeps = inp["a"], inp["b"], inp["sweeps"]
        n, m = a.shape

        def run():
            lib.stencil(ptr(a), ptr(b), n, m, sweeps)
            return b if sweeps % 2 else a
        return run


class NBody(Workload):
    name = "nbody"
    full, quick, small = (4096,), (256,), (256,)
    dt, eps2 = 1e-3, 1e-2
    rtol = 1e-9

    def describe(self, size):
        return f"{size[0]} bodies f64, 1 step"

    def work(self, size):
        return float(size[0]) ** 2

    def inputs(self, size, rng):
        n = size[0]
        return {"pos": rng.uniform(-1, 1, (n, 3)),
                "vel": rng.uniform(-0.1, 0.1, (n, 3)),
                "mass": rng.uniform(0.5, 1.5, n) / n,
                "acc": np.zeros((n, 3))}

    def check(self, got, ref, impl):
        for g, r, what in zip(got, ref, ("pos", "vel")):
            err = close(g, r, self.rtol)
            if err:
                return f"{what}: {err}"
        return None

    def _run(self, inp, step):
        p, v, m, a = inp["pos"], inp["vel"], inp["mass"], inp["acc"]
        return lambda: (step(p, v, m, a, self.dt, self.eps2), (p, v))[1]

    def kiln(self, inp, K=K):
        return self._run(inp, K.nbody_step)

    def cpython(self, inp):
        return self._run(inp, py(K.nbody_step))

    def numba(self, inp, N):
        return self._run(inp, N.nbody_step)

    def c(self, inp, lib):
        p, v, m, a = inp["pos"], inp["vel"], inp["mass"], inp["acc"]
        n = p.shape[0]
        return lambda: (lib.nbody_step(ptr(p), ptr(v), ptr(m), ptr(a), n,
                                       self.dt, self.eps2), (p, v))[1]

    def numpy(self, inp):
        p, v, m, a = inp["pos"], inp["vel"], inp["mass"], inp["acc"]
        n = p.shape[0]

        def run():
            for i0 in range(0, n, 256):           # 256 rows of pairs at once
                d = p[None, :, :] - p[i0:i0 + 256, None, :]
                r2 = np.einsum("ijk,ijk->ij", d, d) + self.eps2
                w = m[None, :] / (r2 * np.sqrt(r2))
                a[i0:i0 + 256] = np.einsum("ijk,ij->ik", d, w)
            v[:] += self.dt * a
            p[:] += self.dt * v
            return p, v
        return run


class Matmul(Workload):
    name = "matmul"
    full, quick, small = (1024,), (64,), (96,)
    rtol = 1e-4

    def describe(self, size):
        return f"{size[0]}x{size[0]} f32"

    def work(self, size):
        return float(size[0]) ** 3

    def inputs(self, size, rng):
        n = size[0]
        return {"a": rng.random((n, n), dtype=np.float32),
                "b": rng.random((n, n), dtype=np.float32),
                "c": np.zeros((n, n), np.float32)}

    def check(self, got, ref, impl):
        return close(got, ref, self.rtol)

    def _run(self, inp, mm):
        a, b, c = inp["a"], inp["b"], inp["c"]
        return lambda: (mm(a, b, c), c)[1]

    def kiln(self, inp, K=K):
        # on a GPU, one invocation per element (see Mandelbrot)
        gpu = isinstance(K, VulkanKernels)
        return self._run(inp, K.matmul_elements if gpu else K.matmul)

    def cpython(self, inp):
        return self._run(inp, py(K.matmul))

    def numba(self, inp, N):
        return self._run(inp, N.matmul)

    def c(self, inp, lib):
        a, b, c = inp["a"], inp["b"], inp["c"]
        n = a.shape[0]
        return lambda: (lib.matmul(ptr(a), ptr(b), ptr(c), n, n, n), c)[1]

    def numpy(self, inp):
        a, b, c = inp["a"], inp["b"], inp["c"]
        return lambda: np.matmul(a, b, out=c)


class Softmax(Workload):
    name = "softmax"
    full, quick, small = (8192, 1024), (64, 128), (64, 1024)
    rtol = 1e-5

    def describe(self, size):
        return f"{size[0]}x{size[1]} f32, rows"

    def inputs(self, size, rng):
        return {"x": (rng.standard_normal(size) * 4).astype(np.float32),
                "out": np.zeros(size, np.float32)}

    def reference(self, inp, libs):
        x = inp["x"].astype(np.float64)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def check(self, got, ref, impl):
        rel = np.abs(got.astype(np.float64) - ref) / np.maximum(ref, 1e-30)
        worst = float(rel.max())
        return None if worst <= self.rtol else \
            f"relative error {worst:.3g} > {self.rtol:g}"

    def _run(self, inp, sm):
        x, out = inp["x"], inp["out"]
        return lambda: (sm(x, out), out)[1]

    def kiln(self, inp, K=K):
        return self._run(inp, K.softmax)

    def cpython(self, inp):
        return self._run(inp, py(K.softmax))

    def numba(self, inp, N):
        return self._run(inp, N.softmax)

    def c(self, inp, lib):
        x, out = inp["x"], inp["out"]
        n, m = x.shape
        return lambda: (lib.softmax(ptr(x), ptr(out), n, m), out)[1]

    def numpy(self, inp):
        x, out = inp["x"], inp["out"]

        def run():
            np.subtract(x, x.max(axis=1, keepdims=True), out=out)
            np.exp(out, out=out)
            np.divide(out, out.sum(axis=1, keepdims=True), out=out)
            return out
        return run


WORKLOADS = [Mandelbrot(), Triad(), SumF64(), DotF64(), SumF32(), DotF32(),
             Stencil(), NBody(), Matmul(), Softmax()]


# ---------------------------------------------------------------------------
# timing

def timed(run):
    t = time.perf_counter()
    result = run()
    return time.perf_counter() - t, result


def first_call(w, impl, make, inp, ref, check=None, keep=None):
    """Runs one implementation once on a copy of inp and checks its result:
    a dict with the first call's time, or an error.  check(result) replaces
    w.check(result, ref, impl) when given; keep (a dict) receives the
    checked result under "result".  For the Vulkan target, a CompileError,
    or an error for arrays or loops beyond the device's limits, gives "na"
    (the reason) instead of an error."""
    rec = {}
    try:
        run = make(copies(inp))
        first, result = timed(run)
        rec["first_call"] = first
        err = check(result) if check else w.check(result, ref, impl)
    except Exception as e:  # a kernel that fails is reported, not fatal
        msg = str(e).splitlines()[0] if str(e) else ""
        if impl == "kiln_vulkan" and (
                isinstance(e, (kiln.CompileError, ValueError))
                or "loop limit" in str(e)):
            rec["na"] = " ".join(str(e).split())
            return rec
        err = f"{type(e).__name__}: {msg}"
    if err:
        rec["error"] = err
        return rec
    if keep is not None:    # a copy: timed runs may write into result
        keep["result"] = (tuple(np.copy(x) for x in result)
                          if isinstance(result, tuple) else np.copy(result))
    return rec


def time_rounds(runs, repeat, budget=20.0, settle=True):
    """Times the implementations runs (impl -> callable) in interleaved
    rounds, each once per round, so that a noisy spell of the machine
    does not fall on one implementation only; an implementation stops
    after `budget` seconds once it has 3 times.  impl -> list of times.

    With `settle`, each timed call directly follows an untimed call of the
    same implementation.  Otherwise a call would be timed in whatever state
    the other implementations and the pause before it left the machine
    in: on a virtual machine, a thread woken after some milliseconds idle
    can take milliseconds to run, and inputs that fit in a shared last-level
    cache are partly evicted by other tenants; either can double the time
    of a call of a few milliseconds, for whichever implementation comes
    first after the pause."""
    times = {impl: [] for impl in runs}
    for _ in range(repeat):
        for impl, run in runs.items():
            ts = times[impl]
            if sum(ts) > budget and len(ts) >= 3:
                continue
            if settle:
                run()
            ts.append(timed(run)[0])
            # lets this runtime's threads stop spinning before the next
            # implementation runs: OpenBLAS's (NumPy's dot and matmul)
            # spin for about 0.1 s after a call
            time.sleep(0.25 if impl == "numpy" else 0.02)
    return times


def measure(w, impl, make, inp, ref, repeat, budget=20.0):
    """Checks then times one implementation alone (the CPython column)."""
    rec = first_call(w, impl, make, inp, ref)
    if "first_call" in rec and "error" not in rec:
        run = make(copies(inp))
        rec["times"] = time_rounds({impl: run}, repeat, budget,
                                   settle=False)[impl]
        rec["median"] = statistics.median(rec["times"])
    return rec


def run_workload(w, args, libs, N, VK=None, rng_seed=1234):
    size = w.quick if args.quick else w.full
    rng = np.random.default_rng(rng_seed)
    inp = w.inputs(size, rng)
    ref = w.reference(copies(inp), libs)
    out = {"size": list(size), "describe": w.describe(size), "impls": {}}
    makers = {"kiln": w.kiln}
    if VK is not None:
        makers["kiln_vulkan"] = lambda i: w.kiln(i, VK)
    for variant in ("c", "c_omp"):
        if variant in libs and getattr(w, "c", None):
            makers[variant] = (lambda lib: lambda i: w.c(i, lib))(
                libs[variant])
    if N and getattr(w, "numba", None):
        makers["numba"] = lambda i: w.numba(i, N["numba"])
        makers["numba_par"] = lambda i: w.numba(i, N["numba_par"])
    if not args.no_numpy and getattr(w, "numpy", None):
        makers["numpy"] = w.numpy
    cpu = {}
    for impl in IMPLS:      # each checked on its own copy of the inputs
        if impl not in makers:
            continue
        time.sleep(0.05)    # lets the previous runtime's threads stop spinning
        check = None
        if impl == "kiln_vulkan" and "result" in cpu:
            check = lambda got: w.check_cpu(got, cpu["result"], ref)
        rec = first_call(w, impl, makers[impl], inp, ref, check=check,
                         keep=cpu if impl == "kiln" else None)
        if impl == "kiln_vulkan":
            rec["checked_against"] = "kiln" if check else "reference"
        out["impls"][impl] = rec
    cpu.clear()
    # then timed side by side, on one shared copy of the inputs
    shared = copies(inp)
    ok = [impl for impl, rec in out["impls"].items()
          if "first_call" in rec and "error" not in rec and "na" not in rec]
    times = time_rounds({impl: makers[impl](shared) for impl in ok},
                        args.repeat)
    for impl, rec in out["impls"].items():
        if impl in times:
            rec["times"] = times[impl]
            rec["median"] = statistics.median(times[impl])
        print(f"  {w.name:11} {LABELS[impl]:11} "
              + (fmt_time(rec.get("median")) if "median" in rec
                 else f"n/a: {rec['na']}" if "na" in rec
                 else f"FAILED: {rec['error']}"), flush=True)
    del inp, ref, shared
    if not args.no_cpython and getattr(w, "cpython", None):
        small = w.quick if args.quick else w.small
        print(f"  {w.name:11} {LABELS['cpython']:11}", end=" ", flush=True)
        sinp = w.inputs(small, np.random.default_rng(rng_seed))
        sref = w.reference(copies(sinp), libs)
        rec = measure(w, "cpython", w.cpython, sinp, sref,
                      1 if not args.quick else args.repeat, budget=0.0)
        scale = w.work(size) / w.work(small)
        rec["size"] = list(small)
        rec["scale"] = scale
        if "median" in rec:
            rec["measured"] = rec["median"]
            rec["median"] = rec["median"] * scale
            rec["extrapolated"] = scale != 1.0
        out["impls"]["cpython"] = rec
        print(fmt_time(rec.get("median")) + (" (extrapolated x%.0f from %s)"
              % (scale, w.describe(small)) if scale != 1 else "")
              if "median" in rec else f"FAILED: {rec['error']}", flush=True)
    if hasattr(w, "bytes"):
        out["bytes"] = w.bytes(size)
    return out


# ---------------------------------------------------------------------------
# report

def fmt_time(t):
    if t is None:
        return "-"
    if t >= 10:
        return f"{t:.1f} s"
    if t >= 1:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.1f} ms" if t < 0.1 else f"{t * 1e3:.0f} ms"
    return f"{t * 1e6:.0f} us"


def table(results, threads, vulkan=None):
    """The times table and the ratio-to-C-OpenMP table, as text."""
    cols = [c for c in IMPLS if any(c in r["impls"] for r in results.values())]
    head = (f"{'workload':12}{'size':30}"
            + "".join(f"{LABELS[c]:>{COL}}" for c in cols))
    lines = [f"times (median; C omp, Numba par and kiln at {threads} threads; "
             "* CPython extrapolated from a smaller size)"]
    if vulkan is not None and "kiln_vulkan" in cols:
        lines.append(f"kiln vulkan: {vulkan['label']}"
                     + (f" [{vulkan['name']}]: a CPU implementation of "
                        "Vulkan, not a GPU" if vulkan["lavapipe"] else "")
                     + "; n/a: the Vulkan target cannot compile it")
    lines.append(head)
    for name, r in results.items():
        cells = []
        for c in cols:
            rec = r["impls"].get(c)
            cells.append("-" if rec is None else fmt_time(rec["median"])
                         if "median" in rec else "n/a" if "na" in rec
                         else "FAIL")
        lines.append(f"{name:12}{r['describe']:30}"
                     + "".join(f"{x:>{COL}}" for x in cells))
    base = "c_omp" if "c_omp" in cols else "c" if "c" in cols else None
    if base:
        lines += ["", f"time / {LABELS[base]} time (lower is faster)", head]
        for name, r in results.items():
            b = r["impls"].get(base, {}).get("median")
            cells = []
            for c in cols:
                t = r["impls"].get(c, {}).get("median")
                cells.append("-" if t is None or not b else f"{t / b:.2f}")
            lines.append(f"{name:12}{r['describe']:30}"
                         + "".join(f"{x:>{COL}}" for x in cells))
    for name, r in results.items():
        if "bytes" in r:
            bw = {c: r["bytes"] / rec["median"] / 1e9
                  for c, rec in r["impls"].items()
                  if "median" in rec and c != "cpython"}
            if bw:
                cells = ", ".join(f"{LABELS[c]} {v:.1f}"
                                  for c, v in bw.items())
                lines += ["", f"{name} bandwidth (GB/s, 24 bytes per "
                          f"element): {cells}"]
    fails = [(n, c, rec["error"]) for n, r in results.items()
             for c, rec in r["impls"].items() if "error" in rec]
    if fails:
        lines += ["", "failed (not timed):"]
        lines += [f"  {n} / {LABELS[c]}: {e}" for n, c, e in fails]
    nas = [(n, rec["na"]) for n, r in results.items()
           for c, rec in r["impls"].items() if "na" in rec]
    if nas:
        lines += ["", "kiln vulkan n/a (CompileError):"]
        lines += [f"  {n}: {e[:200]}" for n, e in nas]
    return "\n".join(lines)


def targets(results):
    """Issue 3's targets for kiln: <= C OpenMP and < Numba parallel on each
    workload but Mandelbrot; triad >= 90 % of C's bandwidth."""
    out = {}
    for name, r in results.items():
        im = r["impls"]
        k = im.get("kiln", {}).get("median")
        c = im.get("c_omp", {}).get("median")
        nb = im.get("numba_par", {}).get("median")
        t = {}
        if k and c:
            t["le_c_omp"] = k <= c
            if name == "triad":
                t["triad_bw_90pct"] = c / k >= 0.9
        if k and nb:
            t["lt_numba_par"] = k < nb
        out[name] = t
    return out


def machine(threads):
    def cmd(*c):
        try:
            return subprocess.run(c, capture_output=True,
                                  text=True).stdout.splitlines()[0].strip()
        except Exception:
            return None
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f
                       if l.startswith("model name"))
    except Exception:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": threads,
            "python": platform.python_version(), "numpy": np.__version__,
            "kiln": kiln.__version__,
            "kiln_path": os.path.dirname(kiln.__file__),
            "gcc": cmd("gcc", "--version"),
            "kiln_commit": cmd("git", "-C", ROOT, "rev-parse", "--short",
                               "HEAD"),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "loadavg_end": os.getloadavg()[0]}
    try:
        import numba
        info["numba"] = numba.__version__
    except ImportError:
        pass
    return info


def main(args):
    threads = args.threads
    kiln.set_num_threads(threads)
    libs = {} if args.no_c else build_c(quiet=args.quick)
    if "c_omp" in libs:
        libs["c_omp"].bench_set_threads(threads)
    N = None
    if not args.no_numba:
        try:
            import numba
            import kernels_numba
            numba.set_num_threads(threads)
            N = {"numba": kernels_numba.build(False),
                 "numba_par": kernels_numba.build(True)}
        except ImportError:
            print("Numba not installed: skipped (make bench installs it)")
    vulkan = VK = None
    if not args.no_vulkan:
        vulkan = vulkan_device()
        VK = VulkanKernels() if vulkan is not None else None
    only = {s for s in args.only.split(",") if s}
    unknown = only - {w.name for w in WORKLOADS}
    if unknown:
        print(f"unknown workloads: {', '.join(sorted(unknown))}")
        return 2
    load = os.getloadavg()[0]
    print(f"kiln benchmark, {threads} threads"
          + (", quick sizes" if args.quick else "")
          + f"; load average {load:.2f} on {os.cpu_count()} CPUs"
          + (" (busy machine: times are noisy)"
             if load > 0.5 * (os.cpu_count() or 1) else ""), flush=True)
    results = {}
    for w in WORKLOADS:
        if not only or w.name in only:
            results[w.name] = run_workload(w, args, libs, N, VK)
    print()
    print(table(results, threads, vulkan))
    tg = targets(results)
    missed = [f"{n}: {k}" for n, t in tg.items() for k, ok in t.items()
              if not ok and n != "mandelbrot"]
    if not args.quick and any(tg.values()):
        print("\nkiln targets (issue 3): "
              + ("all met" if not missed else "missed " + "; ".join(missed)))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if args.out != "-":
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"machine": dict(machine(threads), loadavg_start=load,
                                       vulkan=vulkan),
                       "quick": args.quick,
                       "repeat": args.repeat, "workloads": results,
                       "targets": tg}, f, indent=1)
        print(f"\nresults: {os.path.relpath(args.out)}")
    failed = any("error" in rec for r in results.values()
                 for rec in r["impls"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
