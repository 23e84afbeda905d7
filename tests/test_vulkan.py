"""The Vulkan target end to end: kernels run as SPIR-V compute dispatches
(serial kernels as one invocation; prange loops as one dispatch each, the
serial code around them on the host) and agree with CPython and with the
CPU target.  Runs whenever the runtime finds a device (lavapipe in CI),
whether or not kiln.vulkan.is_available() already reports the target as
ready; the no-device test runs everywhere.
"""

import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import kiln
from kiln import prange
from conftest import JIT_DISABLED, check, rand_array, rand_scalars

try:
    HAVE_DEVICE = not JIT_DISABLED and kiln.vulkan._device_available()
except Exception:
    HAVE_DEVICE = False

needs_device = pytest.mark.skipif(not HAVE_DEVICE,
                                  reason="no Vulkan device (or JIT disabled)")


def vk(fn):
    return kiln.jit(target="vulkan")(fn)


# ---- kernels -------------------------------------------------------------

def arith(a, b):
    c = a + b - a * b
    if b != 0:
        c = c + a // b + a % b
    return c ^ (a & b) | (a >> 1) << 2


def farith(a, b):
    return a * b + a - b * 0.5


def loops(n):
    s = 0
    for i in range(n):
        if i % 3 == 0:
            continue
        if i > 50:
            break
        s += i * i
    else:
        s = -s
    return s


def fill(x, y):
    for i in range(x.shape[0]):
        y[i] = x[i] * 2.0 + 1.0
    return y[0]


def mat(a):
    s = 0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            s += a[i, j]
    return s


def index(a, i):
    return a[i]


def divide(a, b):
    return a // b


class MyError(Exception):
    pass


def user_raise(n):
    if n > 3:
        raise MyError("too big")
    return n


def cplx(z, w):
    return z * w + z - w


def pfill(x, y):
    for i in prange(x.shape[0]):
        y[i] = x[i] * 3.0 - 1.0


def psum(x):
    s = 0.0
    for i in prange(x.shape[0]):
        s += x[i]
    return s


def pminmax(x):
    lo = x[0]
    hi = x[0]
    for i in prange(x.shape[0]):
        lo = min(lo, x[i])
        hi = max(hi, x[i])
    return hi - lo


def prow(a, out):
    for i in prange(a.shape[0]):
        s = 0
        for j in range(a.shape[1]):
            s += a[i, j]
        out[i] = s


def pcheck(a, n):
    for i in prange(n):
        a[i] = a[i] + 1


def serial_then_prange(a):
    t = a[0]
    for i in prange(a.shape[0]):
        a[i] = a[i] + 1
    return t


# ---- language on the device vs CPython ----------------------------------

@needs_device
def test_scalars(rng):
    for fn, dt in [(arith, np.int64), (arith, np.int32), (arith, np.uint16),
                   (farith, np.float32), (farith, np.float64)]:
        f = vk(fn)
        a, b = rand_scalars(rng, dt, 16), rand_scalars(rng, dt, 16)
        for x, y in zip(a, b):
            with np.errstate(all="ignore"):
                check(f, x, y)
    f = vk(arith)
    for x, y in [(7, 2), (-7, 2), (7, -2), (0, 5), (2**62, 3)]:
        check(f, x, y)


@needs_device
def test_control_flow():
    f = vk(loops)
    for n in (0, 1, 10, 40, 100):
        check(f, n)


@needs_device
def test_arrays(rng):
    f = vk(fill)
    for dt in (np.float32, np.float64):
        check(f, rand_array(rng, dt, (17,)), np.zeros(17, dt))
    g = vk(mat)
    for dt in (np.int8, np.int16, np.int32, np.int64, np.uint8):
        a = rand_array(rng, dt, (5, 7))
        check(g, a)
        check(g, a[::2, ::-3])          # strided view
        check(g, np.asfortranarray(a))
    check(g, np.zeros((0, 3), np.int64))


@needs_device
def test_exceptions():
    f = vk(index)
    a = np.arange(5.0)
    for i in (0, 4, -1, -5, 5, -6, 100):
        check(f, a, i)
    check(vk(divide), 7, 0)
    check(vk(divide), 7.5, 0.0)
    u = vk(user_raise)
    check(u, 2)
    with pytest.raises(MyError, match="too big"):
        u(4)


@needs_device
def test_complex(rng):
    f = vk(cplx)
    for z, w in [(1 + 2j, 3 - 1j), (0.5j, -2.0 + 0.25j)]:
        check(f, z, w)


@needs_device
def test_prange(rng):
    f = vk(pfill)
    for n in (0, 1, 63, 64, 65, 1000):
        check(f, rand_array(rng, np.float64, (n,)), np.zeros(n))
    check(vk(prow), rand_array(rng, np.int32, (70, 9)), np.zeros(70, np.int64))
    # reductions: partials per chunk, combined on the host in chunk order,
    # so the result is the CPU target's, run after run
    x = rng.standard_normal(100_000)
    s = vk(psum)
    cpu = kiln.jit(psum)
    assert s(x) == s(x)
    assert abs(s(x) - cpu(x)) <= 1e-9 * np.abs(x).sum()
    check(vk(psum), np.arange(1000.0))           # exact in float64
    check(vk(pminmax), rand_array(rng, np.int64, (500,)))


def long_sum(n):
    t = 0
    for i in range(n):
        t += i
    return t


@needs_device
def test_lavapipe_loop_limit_is_an_error():
    """Lavapipe stops a shader's loops after 65535 steps of an invocation;
    kiln counts them there and raises instead of returning a wrong result.
    Real drivers have no such limit: the result is CPython's."""
    f = vk(long_sum)
    assert f(1000) == long_sum(1000)
    if "llvmpipe" in kiln.vulkan.device_name().lower():
        with pytest.raises(RuntimeError, match="loop limit"):
            f(70000)
    else:
        assert f(70000) == long_sum(70000)


@needs_device
def test_array_beyond_storage_range():
    """An array larger than one storage binding may span raises instead of
    being computed in part."""
    limit = kiln.vulkan._device_info()["max_storage_buffer_range"]
    n = limit // 8 + 1
    with pytest.raises(ValueError, match="storage-buffer range"):
        vk(pfill)(np.zeros(n), np.zeros(n))
    y = np.zeros(16)
    vk(pfill)(np.ones(16), y)       # the kernel itself still works
    assert (y == 2.0).all()


@needs_device
def test_prange_raises():
    a = np.zeros(10, np.int64)
    f = vk(pcheck)
    check(f, a, 10)
    check(f, a, 11)             # IndexError from an invocation


@needs_device
def test_aliasing_arguments(rng):
    """The same array passed twice is bound twice: the shader may assume
    no aliasing, so the dispatcher copies overlapping arguments."""
    x = np.arange(8.0)
    out = vk(fill)(x, x)
    assert out == 1.0


@needs_device
def test_no_host_indexing_of_serial_code():
    f = vk(serial_then_prange)
    check(f, np.arange(5))


# ---- features the device or the backend lacks ----------------------------

def f64_sin(x):
    return math.sin(x)


@needs_device
def test_float64_math_is_a_compile_error():
    f = vk(f64_sin)
    with pytest.raises(kiln.CompileError, match="math.sin on float64"):
        f(0.5)
    # math functions return Python floats: float32 arguments too
    with pytest.raises(kiln.CompileError, match="math.sin on float64"):
        f(np.float32(0.5))


# ---- SPIR-V validity and inspection --------------------------------------

@needs_device
@pytest.mark.skipif(shutil.which("spirv-val") is None, reason="no spirv-val")
def test_spirv_val(rng):
    """spirv-val accepts every module these kernels emit."""
    cases = [(arith, (3, 4)), (farith, (1.5, 2.5)), (loops, (10,)),
             (fill, (np.ones(3), np.zeros(3))), (mat, (np.ones((2, 2), np.int8),)),
             (user_raise, (1,)), (cplx, (1j, 2.0)), (psum, (np.ones(10),)),
             (prow, (np.ones((3, 3), np.int16), np.zeros(3, np.int64)))]
    with tempfile.TemporaryDirectory() as tmp:
        for fn, args in cases:
            f = vk(fn)
            f(*args)
            mods = f._spirv_modules()
            assert mods
            for k, words in enumerate(mods):
                path = os.path.join(tmp, f"{fn.__name__}{k}.spv")
                with open(path, "wb") as fp:
                    fp.write(words)
                r = subprocess.run(["spirv-val", "--target-env", "vulkan1.1",
                                    path], capture_output=True, text=True)
                assert r.returncode == 0, (fn.__name__, r.stderr)


@needs_device
def test_inspect_spirv():
    f = vk(arith)
    f(1, 2)
    if shutil.which("spirv-dis") is None:
        with pytest.raises(RuntimeError, match="spirv-dis"):
            f.inspect_spirv()
    else:
        text = f.inspect_spirv()
        assert "OpEntryPoint GLCompute" in text
    g = vk(psum)
    g(np.ones(4))
    assert "kl_vk_pfor" in g.inspect_llvm()
    with pytest.raises(ValueError, match="target='vulkan'"):
        kiln.jit(arith).inspect_spirv()


# ---- the seed Mandelbrot against the CPU target ---------------------------

@needs_device
def test_mandelbrot_vs_cpu():
    """abs(complex128) is a scaled sqrt on the device (within 2 ulp of
    libm's hypot), so an escape test sitting exactly on |z| == 2 could
    differ; on this grid every count agrees with the CPU target."""
    from kiln.kernels import mandelbrot as mb
    py = getattr(mb.mandelbrot_grid, "py_func", mb.mandelbrot_grid)
    cpu = kiln.jit(py)
    gpu = vk(py)
    a = np.zeros((24, 40), np.int64)
    b = np.zeros((24, 40), np.int64)
    cpu(a, -2.0, 0.6, -1.2, 1.2)
    gpu(b, -2.0, 0.6, -1.2, 1.2)
    assert np.array_equal(a, b)


# ---- no Vulkan loader at all ------------------------------------------------

def test_no_loader_subprocess():
    """With the loader pointed at nothing: kiln imports, CPU kernels run,
    is_available() is False and a Vulkan kernel raises a clear error at its
    call."""
    code = "\n".join([
        "import kiln, numpy as np",
        "def add(a, b):",
        "    return a + b",
        "assert kiln.jit(add)(2, 3) == 5",
        "assert kiln.vulkan.is_available() is False",
        "g = kiln.jit(target='vulkan')(add)",
        "try:",
        "    g(2, 3)",
        "except RuntimeError as e:",
        "    assert 'no Vulkan device is available' in str(e), e",
        "    print('ok')",
    ])
    env = dict(os.environ, VK_ICD_FILENAMES="/nonexistent.json",
               VK_DRIVER_FILES="/nonexistent.json",
               VK_LOADER_LAYERS_DISABLE="*", LD_LIBRARY_PATH="/nonexistent")
    env.pop("KILN_DISABLE_JIT", None)
    r = subprocess.run([sys.executable, "-c", code], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
