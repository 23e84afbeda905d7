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
import test_parallel as tp
from test_vulkan_runtime import run_python

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


def flip_window(a, start, n):
    for i in prange(n):
        a[start + i] = a[start + i] ^ 1


def first_last(a):
    return a[0] + a[a.shape[0] - 1]


@needs_device
def test_array_beyond_storage_range():
    """Arrays larger than one storage binding may span are reached through
    buffer device addresses when the device has them (by a prange kernel
    reading and writing across the binding limit up to the array's end,
    and by a serial one); without them the call raises ValueError naming
    the limit instead of computing part of the array."""
    info = kiln.vulkan._device_info()
    limit = info["max_storage_buffer_range"] // 4       # int32 elements
    n = limit + 16384                                   # just beyond it
    if not info["buffer_device_address"] or 4 * n > info["max_allocation_size"]:
        pytest.skip("the device has no buffer device addresses")
    a = np.arange(n, dtype=np.int32)
    start = limit - 4096
    expect = a[start:].copy()
    flip_window(expect, 0, n - start)                   # CPython
    vk(flip_window)(a, start, n - start)
    np.testing.assert_array_equal(a[start:], expect)
    assert (a[:start] == np.arange(start, dtype=np.int32)).all()
    assert vk(first_last)(a[::-1]) == first_last(a[::-1])
    del a


@needs_device
def test_array_beyond_storage_range_without_device_addresses():
    code = """if 1:
        import numpy as np, kiln
        from kiln import prange
        info = kiln.vulkan._device_info()
        assert not info["buffer_device_address"]
        def pfill(x, y):
            for i in prange(x.shape[0]):
                y[i] = x[i] * 3.0 - 1.0
        f = kiln.jit(target="vulkan")(pfill)
        n = info["max_storage_buffer_range"] // 8 + 1
        try:
            f(np.zeros(n), np.zeros(n))
        except ValueError as e:
            assert "storage-buffer range" in str(e), e
        else:
            raise AssertionError("no ValueError")
        y = np.zeros(16)
        f(np.ones(16), y)           # the storage-buffer path computes
        assert (y == 2.0).all(), y
        d = kiln.vulkan.to_device(np.zeros(16))
        try:
            kiln.vulkan.to_device(np.broadcast_to(np.uint8(1), (n * 8,)))
        except ValueError as e:
            assert "one binding" in str(e), e
        else:
            raise AssertionError("no ValueError from to_device")
        print("ok")
    """
    r = run_python(code, KILN_VULKAN_NO_BDA="1")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


@needs_device
def test_prange_raises():
    a = np.zeros(10, np.int64)
    f = vk(pcheck)
    check(f, a, 10)
    check(f, a, 11)             # IndexError from an invocation


@needs_device
def test_lowest_raise_across_rounds_and_workgroups():
    """Several invocations raise in one dispatch: the lowest iteration's
    exception is reported, also when an invocation raises in a later round
    of its grid-stride loop (iteration + k * grid) with a lower local index
    than an earlier round's raiser of the same workgroup, and when other
    workgroups raise too.  The device is told to allow 3 workgroups per
    dispatch (KILN_VULKAN_MAX_GROUPS), so that small arrays take three
    rounds on any device; the grid is the dispatch kiln makes."""
    code = """if 1:
        import numpy as np, kiln
        from kiln import prange

        def marked(marks):
            for i in prange(marks.shape[0]):
                if marks[i] == 1:
                    raise ValueError("one")
                if marks[i] == 2:
                    raise KeyError("two")
                if marks[i] == 3:
                    raise OverflowError("three")

        def outcome(f, marks):
            try:
                f(marks)
            except Exception as e:
                return type(e).__name__, str(e)
            return None

        wg = 64                                 # KL_SPV_PFOR_WG
        groups = kiln.vulkan._device_info()["max_workgroup_count"][0]
        assert groups == 3, groups
        grid = groups * wg
        n = 2 * grid + 40                       # rounds 0, 1 and part of 2
        assert min(-(-n // wg), groups) * wg == grid
        cases = [
            # (workgroup, round, lane) of each raiser in the comments
            {10: 2, grid + 3: 1, 150: 3},       # (0,0,10) (0,1,3) (2,0,22)
            {grid + 3: 1, 2 * grid + 1: 3, 100: 2},     # (0,1,3) (0,2,1)
                                                        # (1,0,36)
            {70: 3, wg + 5: 1, grid + 2: 2},    # (1,0,6) (1,0,5) (0,1,2)
            {grid + 5: 3, grid + 4: 2},         # only round 1
            {2 * grid + 2: 1, grid + wg + 10: 3},   # (0,2,2) (1,1,10)
            {2 * grid + 5: 2, grid + 60: 1},    # (0,2,5) (0,1,60)
        ]
        f = kiln.jit(target="vulkan")(marked)
        for case in cases:
            marks = np.zeros(n, np.int32)
            for i, m in case.items():
                marks[i] = m
            want = outcome(marked, marks)
            assert want is not None and outcome(f, marks) == want, case
        print("ok")
    """
    r = run_python(code, KILN_VULKAN_MAX_GROUPS="3")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


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
def test_float64_math_runs_on_the_device():
    """kiln's own float64 math (python/kiln/_devmath.py; accuracy in
    tests/test_devmath.py): float32 arguments give Python floats too."""
    f = vk(f64_sin)
    assert abs(f(0.5) - math.sin(0.5)) <= math.ulp(math.sin(0.5))
    assert abs(f(np.float32(0.5)) - math.sin(0.5)) <= math.ulp(math.sin(0.5))


@needs_device
def test_float64_math_without_devmath_names_the_import_error():
    """When kiln._devmath cannot be imported, float64 math is a
    CompileError that quotes the import's error."""
    saved = sys.modules.get("kiln._devmath")
    sys.modules["kiln._devmath"] = None         # the import now fails
    try:
        with pytest.raises(kiln.CompileError, match="None in sys.modules") as e:
            vk(f64_sin)(0.5)
        assert "kiln._devmath" in str(e.value)
    finally:
        if saved is None:
            del sys.modules["kiln._devmath"]
        else:
            sys.modules["kiln._devmath"] = saved
    assert abs(vk(f64_sin)(0.5) - math.sin(0.5)) <= math.ulp(math.sin(0.5))


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
    with pytest.raises(ValueError, match="inspect_spirv"):
        g.inspect_llvm()    # its serial code is a kernel too
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


# ---- reductions combined on the device ------------------------------------
#
# A prange reduction on Vulkan folds its chunks' partials per workgroup in
# the loop kernel, stores one partial per workgroup in device memory and
# combines them there with shaders/reduce.comp (docs/gpu.md).  Its
# result must have the same bits on every run, equal CPython's where no
# rounding happens (integers, min, max, bool) and stay within the
# reassociation bound for float sums and products.  The sizes straddle the
# workgroup (64), the combine shader's slices (2048 partials) and the old
# 4096-chunk limit; beyond 1 << 18 iterations (the most chunks a reduction
# gets) chunks hold several: 1 << 20 gives 4 each.

RED_SIZES = (0, 1, 63, 64, 65, 4095, 4096, 4097, 1 << 20)


# the kernels of the CPU reduction tests, one per operator family
VR_OPS = {"add": tp.red_add, "sub": tp.red_sub, "mul": tp.red_mul,
          "min": tp.red_min, "max": tp.red_max, "and": tp.red_and,
          "or": tp.red_or, "xor": tp.red_xor}

# every operator family for each dtype family: packed narrow integers,
# 32-bit integers (subgroup arithmetic where the device has it), 64-bit
# integers, floats, complex, bool
VR_CASES = (
    [(op, dt) for dt in ("int8", "uint16", "int32", "uint64")
     for op in ("add", "sub", "mul", "min", "max", "and", "or", "xor")]
    + [(op, dt) for dt in ("float32", "float64")
       for op in ("add", "sub", "mul", "min", "max")]
    + [(op, dt) for dt in ("complex64", "complex128")
       for op in ("add", "sub", "mul")]
    + [(op, "bool") for op in ("and", "or", "xor", "min", "max")])
# (op, dtype) compared with CPython at 1 << 20 too (a CPython loop of a
# million steps takes a while); the others check repeatability there
VR_FULL = {("add", "uint64"), ("xor", "int32"), ("max", "int8"),
           ("min", "float32"), ("add", "float64"), ("mul", "complex128"),
           ("or", "bool")}


def vr_data(rng, op, dt, n):
    """Values for reduction `op` over n items of dtype dt, and a start."""
    dt = np.dtype(dt)
    if dt.kind == "b":
        p = {"and": 0.9999, "or": 0.0001}.get(op, 0.5)
        return rng.random(n) < p, np.bool_(op in ("and", "min"))
    if dt.kind in "iu":
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
        if op == "mul":
            a |= 1                                  # odd: never 0
        if op == "and":     # all bits set but at most one
            a = ~(np.ones(n, dt) << rng.integers(0, info.bits, n).astype(dt))
            a[rng.random(n) < 0.5] = ~dt.type(0)
        return a, dt.type(rng.integers(info.min, info.max, dtype=dt,
                                       endpoint=True))
    part = np.dtype(f"f{dt.itemsize // 2}") if dt.kind == "c" else dt
    if op == "mul":     # near 1, so that products stay normal numbers
        a = 1 + rng.standard_normal(n) / (8 * np.sqrt(n + 1))
    elif op in ("min", "max"):
        # few distinct values, signed zeros among them: ties must keep the
        # earlier value, as CPython's min/max do
        a = rng.choice([0.0, -0.0, 0.0, -0.0, 1.5, -2.25], n)
        a[rng.random(n) < 0.001] = np.nan
    else:
        a = rng.standard_normal(n) * 100
    if dt.kind == "c":
        b = (rng.standard_normal(n) / (8 * np.sqrt(n + 1))
             if op == "mul" else rng.standard_normal(n) * 100)
        a = a + 1j * b
    s0 = (1.0 + 0.5j) if dt.kind == "c" else {"min": 1.0, "max": -1.0}.get(
        op, 1.0 if op == "mul" else 0.0)
    return a.astype(dt), dt.type(s0)


def vr_close(op, got, exp, a, s0):
    """Asserts a float or complex reduction agrees with CPython within the
    reassociation bound (docs/performance.md): per real part, 2 (n + 1) u
    times the sum of magnitudes for sums, 2 (n + 1) u relative (complex:
    4 (n + 1) u) for products of values near 1."""
    dt = np.asarray(s0).dtype
    part = np.finfo(np.float32 if dt in (np.float32, np.complex64)
                    else np.float64)
    u, n = float(part.eps) / 2, a.size
    assert np.asarray(got).dtype == np.asarray(exp).dtype, (got, exp)
    for g, e, comp, z in ((np.real(got), np.real(exp), np.real(a),
                           np.real(s0)),
                          (np.imag(got), np.imag(exp), np.imag(a),
                           np.imag(s0))):
        if op == "mul":
            bound = abs(complex(exp)) * 4 * (n + 1) * u * 1.01
        else:
            bound = 2 * (n + 1) * u * 1.01 * (
                float(np.sum(np.abs(comp.astype(np.float64)))) + abs(float(z)))
        assert abs(float(g) - float(e)) <= bound, (op, n, got, exp)


@needs_device
@pytest.mark.parametrize("op,dt", VR_CASES, ids=[f"{o}-{d}" for o, d in VR_CASES])
def test_device_reduction_repeatable_and_exact(rng, op, dt):
    """Same bits on repeated runs, CPython's value where nothing rounds and
    within the reassociation bound where floats do, at sizes around the
    workgroup, the combine slices and the chunk limit."""
    f = vk(VR_OPS[op])
    exact = np.dtype(dt).kind in "iub" or op in ("min", "max")
    for n in RED_SIZES:
        a, s0 = vr_data(rng, op, dt, n)
        first = f(a, s0)
        for _ in range(2):
            again = f(a, s0)
            assert np.asarray(again).tobytes() == np.asarray(first).tobytes(), \
                (op, dt, n, first, again)
        if n == 1 << 20 and (op, dt) not in VR_FULL:
            continue
        if exact:
            check(f, a, s0)
        else:
            with np.errstate(all="ignore"):
                exp = f.py_func(a.copy(), s0)
            vr_close(op, first, exp, a, s0)


def red_sum_and_max(a, s, m):
    for i in prange(a.shape[0]):
        s += a[i]
        m = max(m, a[i])
    return s * 1000 + m


def red_nine(a, s):
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = t8 = s
    for i in prange(a.shape[0]):
        x = a[i]
        t0 += x
        t1 += x * 2
        t2 = max(t2, x)
        t3 = min(t3, x)
        t4 ^= i
        t5 |= i
        t6 += x * x
        t7 -= x
        t8 += 1
    return t0 + t1 + t2 + t3 + t4 + t5 + t6 + t7 + t8


@needs_device
def test_device_reduction_folded_per_workgroup(rng):
    """Reductions are folded in the loop kernel (a workgroup-memory
    variable "fold"), but for loops with more than 8 of them, which keep
    one partial per chunk; results are CPython's either way."""
    cases = [(tp.red_min, "float64"), (tp.red_add, "complex128"),
             (tp.red_and, "bool"), (tp.red_mul, "int8"),
             (tp.red_max, "uint16"), (red_sum_and_max, "int64")]
    for fn, dt in cases + [(red_nine, "int64")]:
        f = vk(fn)
        for n in (1, 100, 5000):
            a = (rng.integers(-50, 50, n) % 7).astype(dt)
            args = (a, a.dtype.type(1)) if fn is not red_sum_and_max \
                else (a, 3, -100)
            check(f, *args)
        if shutil.which("spirv-dis") is not None:
            assert ("%fold" in f.inspect_spirv()) == (fn is not red_nine), fn


@needs_device
def test_device_reduction_signed_zero_ties():
    """Python's min(s, x) keeps s when x equals it, so the sign of a zero
    result is the first zero's; the device combines min/max partials in
    chunk order, so that holds across workgroups and combine slices."""
    f, g = vk(tp.red_min), vk(tp.red_max)
    for n in (130, 2049, 5000, 70000):
        for first in (0.0, -0.0):
            for pos in {0, 1, 64, 127, min(2047, n - 1), n // 2, n - 1}:
                a = np.full(n, 3.0)
                a[pos] = first
                a[pos + 1:] = np.where(np.arange(n - pos - 1) % 7 == 0,
                                       -first, 3.0)
                check(f, a, 1.0)
                check(g, -a, -1.0)


@needs_device
def test_device_reduction_raises_lowest():
    """A raise inside a reduction loop still reports the lowest raising
    iteration, with its partials combined on the device."""
    def red_gather(a, idx):
        s = 0.0
        for i in prange(idx.shape[0]):
            s += a[idx[i]]
        return s
    f = vk(red_gather)
    for n in (65, 4097, 200000):
        a = np.arange(n, dtype=np.float64)
        idx = np.arange(n, dtype=np.int64)[::-1].copy()
        check(f, a, idx)
        for bad in ([n - 1], [3, n - 1], [n // 2, n // 3 + 1]):
            idx2 = idx.copy()
            idx2[bad] = n + np.array(bad)  # IndexError names the index
            check(f, a, idx2)


@needs_device
def test_device_reduction_without_subgroups_subprocess():
    """KILN_VULKAN_NO_SUBGROUP=1 combines 32-bit and narrower integers with
    the shared-memory tree instead of subgroup arithmetic: same results."""
    code = "\n".join([
        "import numpy as np, kiln",
        "from kiln import prange",
        "def red(a, s):",
        "    for i in prange(a.shape[0]):",
        "        s ^= a[i] * 3",
        "    return s",
        "def mx(a, s):",
        "    for i in prange(a.shape[0]):",
        "        s = max(s, a[i])",
        "    return s",
        "rng = np.random.default_rng(5)",
        "for fn in (red, mx):",
        "    f = kiln.jit(target='vulkan')(fn)",
        "    for dt in (np.int8, np.uint16, np.int32):",
        "        for n in (0, 1, 65, 4097, 70000):",
        "            a = rng.integers(-100, 100, n).astype(dt)",
        "            assert f(a, dt(7)) == fn(a, dt(7)), (fn, dt, n)",
        "print('ok')",
    ])
    r = run_python(code, timeout=300, KILN_VULKAN_NO_SUBGROUP="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


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
