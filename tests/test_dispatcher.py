"""The dispatcher and the module functions: signatures, specialisation
caching, py_func, inspect_*, GIL release, KILN_DISABLE_JIT, jit options,
thread-count control."""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import kiln
from kiln import f32
from conftest import JIT_DISABLED, check, jit

needs_jit = pytest.mark.skipif(
    JIT_DISABLED, reason="dispatcher attributes do not exist with KILN_DISABLE_JIT=1")


def saxpy(a: float, x: f32[:], y: f32[:]) -> None:
    for i in range(x.shape[0]):
        y[i] = a * x[i] + y[i]


def add(a, b):
    return a + b


def documented(x: int) -> int:
    """Doubles x."""
    return 2 * x


def subprocess_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [os.path.dirname(os.path.dirname(kiln.__file__)),
                    env.get("PYTHONPATH", "")] if p)
    env.update(extra)
    return env


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=120, env=subprocess_env(**env))


# ---------------------------------------------------------------------------
# signatures and specialisation


@needs_jit
def test_signature_format(target):
    f = jit(saxpy, target)
    assert f.signatures == []
    x = np.arange(8, dtype=np.float32)
    y = np.ones(8, dtype=np.float32)
    check(f, 2.0, x, y)
    assert f.signatures == ["(float64, float32[:], float32[:]) -> none"]


@needs_jit
def test_one_specialisation_per_signature(target):
    f = jit(add, target)
    assert f(1, 2) == 3
    assert f(5, 6) == 11
    assert f.signatures == ["(int64, int64) -> int64"]
    r = f(np.float32(1.5), np.float32(2.0))
    assert r == 3.5 and type(r) is np.float32
    assert len(f.signatures) == 2
    assert f.signatures[1] == "(float32, float32) -> float32"
    f(np.float32(0.5), np.float32(0.25))
    f(7, 8)
    assert len(f.signatures) == 2
    check(f, 1.5, 2.5)
    assert len(f.signatures) == 3
    assert f.signatures[2] == "(float64, float64) -> float64"


@needs_jit
def test_py_func_and_metadata(target):
    f = jit(documented, target)
    assert f.py_func is documented
    assert f.__name__ == "documented"
    assert f.__doc__ == "Doubles x."
    assert f(21) == 42


def test_decorator_forms():
    @kiln.jit
    def plain(x: int) -> int:
        return x + 1

    @kiln.jit(boundscheck=False, fastmath=False)
    def with_options(x: int) -> int:
        return x + 2

    assert plain(1) == 2
    assert with_options(1) == 3


@needs_jit
def test_inspect(target):
    f = jit(saxpy, target)
    f(1.5, np.ones(4, np.float32), np.ones(4, np.float32))
    g = jit(add, target)
    g(1, 2)
    g(1.5, 2.5)
    if target == "vulkan":
        # kernels without prange run wholly on the device: no host code
        for fn in (f, g):
            assert fn.inspect_ir().strip()
            with pytest.raises(ValueError, match="no host code"):
                fn.inspect_llvm()
            try:
                spv = fn.inspect_spirv()
            except RuntimeError as e:
                assert "spirv-dis" in str(e)
            else:
                assert "OpEntryPoint GLCompute" in spv
        assert g.inspect_ir(signature=g.signatures[0]) != \
            g.inspect_ir(signature=g.signatures[1])
        return
    for fn in (f, g):
        ir, ll, asm = fn.inspect_ir(), fn.inspect_llvm(), fn.inspect_asm()
        for text in (ir, ll, asm):
            assert isinstance(text, str) and text.strip()
        assert "define" in ll
    # a given specialisation
    ir0 = g.inspect_ir(signature=g.signatures[0])
    ir1 = g.inspect_ir(signature=g.signatures[1])
    assert ir0 != ir1
    assert g.inspect_llvm(signature=g.signatures[1]) != g.inspect_llvm(signature=g.signatures[0])


@needs_jit
def test_no_contraction_without_fastmath():
    """fastmath=False: no FMA and no fast-math flags in the optimised IR."""
    f = jit(saxpy)
    f(1.5, np.ones(4, np.float32), np.ones(4, np.float32))
    ll = f.inspect_llvm()
    for bad in ("fmuladd", "llvm.fma", " fast ", " contract ", " reassoc "):
        assert bad not in ll, bad


def test_fastmath_runs(rng):
    f = jit(saxpy, fastmath=True)
    x = rng.standard_normal(100).astype(np.float32)
    y = rng.standard_normal(100).astype(np.float32)
    exp = (np.float32(2.0) * x + y)
    f(2.0, x, y)
    assert np.allclose(y, exp, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------
# the GIL


def spin(n: int) -> int:
    # a serial chain LLVM cannot shortcut; values stay far below 2**63
    x = 1
    for i in range(n):
        x = (x * 1103515245 + 12345 + i) % 2147483648
    return x


def test_gil_released():
    """While a kernel runs in one thread, Python keeps running in another."""
    f = jit(spin)
    n = 10**5 if JIT_DISABLED else 2 * 10**9
    f(10)                       # compile first
    started = threading.Event()
    done = threading.Event()
    result = []

    def worker():
        started.set()
        t0 = time.perf_counter()
        result.append(f(n))
        result.append(time.perf_counter() - t0)
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    started.wait()
    count = 0
    while not done.is_set():
        count += 1
    t.join()
    if JIT_DISABLED:
        assert result[0] == spin(n)
    else:
        elapsed = result[1]
        assert elapsed > 0.05, f"kernel too short to tell ({elapsed:.3f} s)"
        assert count > 10000, f"main thread ran {count} iterations in {elapsed:.3f} s"


def test_spin_matches_python():
    check(jit(spin), 1000)


# ---------------------------------------------------------------------------
# KILN_DISABLE_JIT


def test_disable_jit_subprocess():
    code = (
        "import kiln, numpy as np\n"
        "def g(a):\n"
        "    s = 0\n"
        "    for i in kiln.prange(a.shape[0]):\n"
        "        s += a[i]\n"
        "    return s\n"
        "f = kiln.jit(g)\n"
        "h = kiln.jit(fastmath=True)(g)\n"
        "assert f is g and h is g\n"
        "assert not hasattr(f, 'py_func')\n"
        "assert f(np.arange(5)) == 10\n"
        "assert list(kiln.prange(2, 8, 3)) == [2, 5]\n"
        "print('plain python')\n")
    proc = run_python(code, KILN_DISABLE_JIT="1")
    assert proc.returncode == 0, proc.stderr
    assert "plain python" in proc.stdout


# ---------------------------------------------------------------------------
# options


def test_jit_option_validation():
    with pytest.raises(TypeError):
        kiln.jit(nopython=True)
    with pytest.raises(ValueError):
        kiln.jit(target="tpu")
    with pytest.raises(TypeError):
        kiln.jit(target=1)
    with pytest.raises(TypeError):
        kiln.jit(fastmath=1)
    with pytest.raises(TypeError):
        kiln.jit(boundscheck="yes")
    with pytest.raises(TypeError):
        kiln.jit(cache=None)
    with pytest.raises(TypeError):
        kiln.jit(42)
    for opts in ({}, {"target": "cpu"}, {"fastmath": True}, {"boundscheck": False},
                 {"cache": False}):
        assert kiln.jit(**opts)(add)(1, 2) == 3


def test_vulkan_module():
    assert isinstance(kiln.vulkan.is_available(), bool)
    if kiln.vulkan.is_available():
        assert isinstance(kiln.vulkan.device_name(), str)
    else:
        with pytest.raises(RuntimeError):
            kiln.vulkan.device_name()


# ---------------------------------------------------------------------------
# threads


def test_num_threads():
    old = kiln.get_num_threads()
    assert isinstance(old, int) and old >= 1
    try:
        kiln.set_num_threads(3)
        assert kiln.get_num_threads() == 3
        kiln.set_num_threads(1)
        assert kiln.get_num_threads() == 1
        with pytest.raises(ValueError):
            kiln.set_num_threads(0)
        with pytest.raises(TypeError):
            kiln.set_num_threads("2")
        with pytest.raises(TypeError):
            kiln.set_num_threads(2.0)
        assert kiln.get_num_threads() == 1
    finally:
        kiln.set_num_threads(old)


def test_num_threads_env():
    proc = run_python("import kiln; print(kiln.get_num_threads())", KILN_NUM_THREADS="5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "5"
