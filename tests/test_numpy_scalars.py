"""NumPy scalar constructors inside kernels (`np.float32(x)`, `np.int8(x)`,
... `np.complex128(x)`, `np.bool_(x)`) against NumPy 2 run by CPython.

Every constructor is called on Python numbers (bool, int, float, complex:
NumPy checks their range) and on NumPy scalars of every dtype (cast as NumPy
casts them), on edge values and fresh random ones.  Where kiln documents a
difference (docs/language.md: a NumPy float that does not fit the integer
type, a Python complex given to a real type), the test asserts kiln's
documented behaviour instead of NumPy's.
"""

import math

import numpy as np
import numpy
import pytest
from numpy import float32

import kiln
from kiln import f32, prange
from conftest import (ALL_DTYPES, JIT_DISABLED, call, check, jit,
                      rand_scalars, same_value)

N = 12          # random values per source dtype

# constructor name (as written after `np.`) -> the NumPy type
CTORS = {"bool_": np.bool_, "int8": np.int8, "int16": np.int16,
         "int32": np.int32, "int64": np.int64, "uint8": np.uint8,
         "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
         "float32": np.float32, "float64": np.float64,
         "complex64": np.complex64, "complex128": np.complex128}

BIG = 2**60 + 2**36 + 1     # int -> float32 directly and through float64 differ


def kernel(name, body, **env):
    """A plain function `name` whose body is `body` (one line per item),
    its globals this module's plus env."""
    params = env.pop("params", "x")
    src = f"def {name}({params}):\n" + "".join(f"    {line}\n" for line in body)
    ns = dict(globals(), **env)
    exec(compile(src, f"<{name}>", "exec"), ns)
    return ns[name]


def ctor_kernel(name):
    return kernel(f"make_{name}", [f"return np.{name}(x)"])


# ---------------------------------------------------------------------------
# source values

def python_ints(rng):
    vals = [0, 1, -1, 7, -7, 127, 128, -128, -129, 255, 256, 32767, 32768,
            -32768, -32769, 65535, 65536, 2**31 - 1, 2**31, -2**31,
            -2**31 - 1, 2**32 - 1, 2**32, 2**63 - 1, -2**63, BIG, -BIG]
    vals += [int(v) for v in rng.integers(-2**63, 2**63 - 1, 4)]
    vals += [int(v) for v in rng.integers(-300, 300, 4)]
    return vals


FLOAT_EDGES = [0.0, -0.0, 0.5, -0.5, -0.99, 1.0, -1.0, 2.5, -2.5, 127.9,
               128.0, -128.9, -129.0, 255.5, 256.0, -1.5, 65535.7, 65536.0,
               2.0**31, -2.0**31 - 1, 4294967295.5, 4294967296.0, 2.0**63,
               -2.0**63, 2.0**64, 1.5e19, 1e30, -1e30, 1e300, -1e300,
               1e-310, 3.4028235e38, 3.4028236e38, float(BIG),
               math.nan, math.inf, -math.inf]


def python_floats(rng):
    rand = rng.standard_normal(6) * 10.0 ** rng.integers(-3, 12, 6)
    return FLOAT_EDGES + [float(v) for v in rand]


PY_COMPLEX = [0j, 1 + 2j, complex(-0.0, -0.0), complex(math.nan, 1.0),
              complex(math.inf, -math.inf), 1e300 + 1e-300j, 3j, -2.5 + 0j,
              complex(1e39, -1e39)]


def numpy_values(rng, dt):
    """Random values of NumPy type dt plus its conversion edge cases."""
    vals = rand_scalars(rng, dt, N)
    kind = np.dtype(dt).kind
    with np.errstate(all="ignore"):
        if kind in "iu":
            info = np.iinfo(dt)
            vals += [dt(v) for v in (info.min, info.max, 127, 128, 255, 256)
                     if info.min <= v <= info.max]
            if dt in (np.int64, np.uint64):
                vals.append(dt(BIG))
        elif kind in "fc":
            vals += [dt(v) for v in FLOAT_EDGES]
            if kind == "c":
                vals += [dt(v) for v in PY_COMPLEX]
    return vals


# ---------------------------------------------------------------------------
# every constructor from every kind of number

def numpy_defined(ctor, v):
    """Whether NumPy defines ctor(v) for a NumPy float or complex v and an
    integer ctor: the truncated real part fits ctor."""
    x = float(v.real)
    if not math.isfinite(x):
        return False
    info = np.iinfo(ctor)
    return info.min <= math.trunc(x) <= info.max


def kiln_float_to_int(ctor, v):
    """kiln's documented ctor(v) for a NumPy float or complex v that
    ctor cannot hold: (exception type, message) or the value."""
    x = float(v.real)
    if math.isnan(x):
        return ValueError, "cannot convert float NaN to integer"
    if math.isinf(x):
        return OverflowError, "cannot convert float infinity to integer"
    t = math.trunc(x)
    if not -2**63 <= t < (2**64 if ctor is np.uint64 else 2**63):
        return OverflowError, "kiln: int() result out of int64 range"
    info = np.iinfo(ctor)
    span = info.max - info.min + 1
    return ctor((t - info.min) % span + info.min)


def check_documented(fn, ctor, v):
    got = call(fn, v)
    exp = kiln_float_to_int(ctor, v)
    if isinstance(exp, tuple):
        assert got.exception is not None, (v, got)
        assert (type(got.exception), str(got.exception)) == exp, (v, got)
    else:
        assert got.exception is None, (v, got)
        assert type(got.result) is ctor and got.result == exp, (v, got, exp)


def rounded_twice(ctor, *vals):
    """Whether NumPy's ctor(*vals) rounds an integer beyond 2**53 to
    float64 and then to float32 (a Python int, or any int given to
    complex64(re, im))."""
    ints = (int, np.integer) if len(vals) == 2 else int
    return ctor in (np.float32, np.complex64) and any(
        isinstance(v, ints) and not isinstance(v, bool) and abs(int(v)) > 2**53
        for v in vals)


def check_vulkan_rounding(fn, ctor, *vals):
    """On Vulkan, the driver may fuse the int -> float64 -> float32
    conversions into one rounding (docs/language.md, Differences): the
    result is NumPy's or the once-rounded one."""
    got = call(fn, *vals)
    if JIT_DISABLED:
        return
    with np.errstate(all="ignore"):
        once = ctor(*(np.float32(np.int64(v) if type(v) is int else v)
                      if isinstance(v, (int, np.integer)) else v
                      for v in vals))
        twice = ctor(*vals)
    assert got.exception is None and type(got.result) is ctor, (vals, got)
    assert same_value(got.result, once) or same_value(got.result, twice), \
        (vals, got, once, twice)


@pytest.mark.parametrize("name", list(CTORS))
def test_from_every_kind(target, rng, name):
    ctor = CTORS[name]
    fn = jit(ctor_kernel(name), target)
    sources = [[True, False], python_ints(rng), python_floats(rng)]
    if np.dtype(ctor).kind in "cb":
        sources.append(PY_COMPLEX)
    sources += [numpy_values(rng, dt) for dt in ALL_DTYPES]
    for vals in sources:
        for v in vals:
            if target == "vulkan" and rounded_twice(ctor, v):
                check_vulkan_rounding(fn, ctor, v)
            elif JIT_DISABLED or np.dtype(ctor).kind not in "iu":
                check(fn, v)
            elif (isinstance(v, (np.floating, np.complexfloating))
                    and not numpy_defined(ctor, v)):
                check_documented(fn, ctor, v)
            elif ctor is np.uint32 and type(v) is float and 2**63 <= v < 2**64:
                # NumPy: "Python integer 9223372036854775808 out of bounds
                # for uint32"; kiln's messages print int64 values only
                got = call(fn, v).exception
                assert type(got) is OverflowError and str(got) == \
                    "Python int too large to convert to C long", (v, got)
            else:
                check(fn, v)


@pytest.mark.skipif(JIT_DISABLED, reason="CompileError needs the JIT")
@pytest.mark.parametrize("name", [n for n in CTORS
                                  if n not in ("bool_", "complex64",
                                               "complex128")])
def test_python_complex_to_real_is_a_compile_error(name):
    """NumPy raises TypeError at run time; kiln knows at compile time."""
    fn = jit(ctor_kernel(name))
    with pytest.raises(kiln.CompileError,
                       match=rf"numpy\.{name.rstrip('_')}\(\) argument must "
                             r"be a real number, not 'complex'"):
        fn(1 + 2j)


def test_no_argument(target):
    for name, ctor in CTORS.items():
        check(jit(kernel(f"zero_{name}", [f"return np.{name}()"], params=""),
                  target))


@pytest.mark.parametrize("name", ["complex64", "complex128"])
def test_complex_from_parts(target, rng, name):
    fn = jit(kernel(f"parts_{name}", [f"return np.{name}(x, y)"],
                    params="x, y"), target)
    reals = ([True, 3, BIG, -BIG, 2.5, 1e300, -0.0, math.nan, math.inf]
             + [dt(v) for dt in (np.int8, np.int64, np.uint64, np.float32,
                                 np.float64) for v in (1, 100)]
             + [np.int64(BIG), np.uint64(2**64 - 1), np.float64(1e39),
                np.float32(1.1)])
    for _ in range(40):
        i, j = rng.integers(0, len(reals), 2)
        if target == "vulkan" and rounded_twice(CTORS[name], reals[i],
                                                reals[j]):
            check_vulkan_rounding(fn, CTORS[name], reals[i], reals[j])
        else:
            check(fn, reals[i], reals[j])


def test_spellings(target, rng):
    """The same objects reached as numpy.float32, `from numpy import
    float32`, a global alias, and NumPy's other names for them."""
    bodies = {
        "via_numpy": "return numpy.float32(x) + numpy.int16(3)",
        "via_import": "return float32(x) * x",
        "via_alias": "return T(x)",
        "via_single": "return np.single(x) + np.double(x)",
        "via_intc": "return np.intc(x) + np.int_(2)",
        "via_bool": "return np.bool(x)",
    }
    for name, body in bodies.items():
        fn = jit(kernel(name, [body], T=np.uint16), target)
        for v in (3, 2.75, np.float64(-1.5), np.int32(-7), True):
            check(fn, v)


# ---------------------------------------------------------------------------
# in arithmetic and loops

def scale_f32(x: f32, y: float):
    return np.float32(0.2) * x + np.float32(0.2) * y


def int8_sum(a, b):
    return np.int8(a) + np.int8(b)


def uint8_minus(a):
    return np.uint8(a) - 1


def f32_div(a, b):
    return np.float32(a) / np.float32(b)


def f64_of_f32(x: f32):
    return np.float64(x) * 0.1


def test_arithmetic_keeps_the_type(target, rng):
    f = jit(scale_f32, target)
    for x, y in zip(rand_scalars(rng, np.float32, N), rng.standard_normal(N)):
        check(f, x, float(y))
    g = jit(int8_sum, target)
    h = jit(uint8_minus, target)
    for a, b in rng.integers(-128, 128, (N, 2)):
        check(g, int(a), int(b))
        check(h, int(abs(a)))
    d = jit(f32_div, target)
    for a, b in [(1, 0), (-1.5, 0.0), (0.0, 0.0), (7, 3), (1e38, 1e-38)]:
        check(d, a, b)
    e = jit(f64_of_f32, target)
    for x in rand_scalars(rng, np.float32, N):
        check(e, x)


PYINT_OPS = ("+", "-", "*", "//", "%", "&", "|", "^", "<<", ">>", "**")


@pytest.mark.parametrize("op", PYINT_OPS)
def test_python_int_must_fit_the_numpy_int(target, rng, op):
    """A Python int meeting a NumPy int is converted to it first, and NumPy 2
    raises OverflowError when it does not fit ("Python integer 1000 out of
    bounds for int8"), on either side of the operator and in `x op= y`."""
    left = jit(kernel("left", [f"return x {op} y"], params="x, y"), target)
    right = jit(kernel("right", [f"return y {op} x"], params="x, y"), target)
    inplace = jit(kernel("inplace", [f"x {op}= y", "return x"],
                         params="x, y"), target)
    for name in ("int8", "uint8", "int16", "uint32", "int64", "uint64"):
        t = np.dtype(name).type
        info = np.iinfo(t)
        ys = [0, 1, 2, -1, int(info.max), int(info.max) + 1, int(info.min),
              int(info.min) - 1, 1000, -40000, 2**40]
        ys += [int(v) for v in rng.integers(-2**33, 2**33, 4)]
        for y in ys:
            if not -2**63 <= y < 2**63:
                continue        # kiln's Python ints are 64-bit (documented)
            fits = info.min <= y <= info.max
            if fits and ((op in ("<<", ">>") and not 0 <= y < info.bits)
                         or (op in ("//", "%") and y == 0)
                         or (op == "**" and y < 0)):
                continue        # documented differences (language.md)
            x = t(rng.integers(1, 5))
            with np.errstate(all="ignore"):
                for f in (left, right, inplace):
                    check(f, x, y)


def stencil(src, dst):
    n, m = src.shape
    for i in prange(1, n - 1):
        for j in range(1, m - 1):
            dst[i, j] = np.float32(0.2) * (src[i, j] + src[i - 1, j]
                                           + src[i + 1, j] + src[i, j - 1]
                                           + src[i, j + 1])


def sum_f32(a):
    s = np.float32(0.0)
    for i in prange(a.shape[0]):
        s += np.float32(a[i])
    return s


def convert_counter(out, k):
    for i in prange(out.shape[0]):
        out[i] = np.int16(i * k) + np.int16(1)


def test_stencil_stays_float32(target, rng):
    src = rng.standard_normal((40, 33)).astype(np.float32)
    check(jit(stencil, target), src, np.zeros_like(src))


def test_prange(target, rng):
    # small integers: the float32 sum is exact whatever the order
    a = rng.integers(-1000, 1000, 5000)
    check(jit(sum_f32, target), a)
    check(jit(sum_f32, target), a.astype(np.float64))
    f = jit(convert_counter, target)
    check(f, np.zeros(3000, np.int64), 7)
    # i * k out of int16 in some iterations: NumPy's OverflowError
    got, exp = call(f, np.zeros(3000, np.int64), 11), \
        call(convert_counter, np.zeros(3000, np.int64), 11)
    assert exp.exception is not None
    if not JIT_DISABLED:
        assert type(got.exception) is OverflowError
        assert str(got.exception) == str(exp.exception)


# ---------------------------------------------------------------------------
# what is refused

@pytest.mark.skipif(JIT_DISABLED, reason="CompileError needs the JIT")
@pytest.mark.parametrize("body, args, message", [
    ("return np.float16(x)", (1.0,), r"numpy\.float16\(\) is not supported"),
    ("return np.longdouble(x)", (1.0,),
     r"numpy\.longdouble\(\) is not supported"),
    ("return np.float32('1.5')", (1.0,), r"strings are not supported"),
    ("return np.float32(x, x)", (1.0,),
     r"numpy\.float32\(\) takes at most 1 argument \(2 given\)"),
    ("return np.complex64(x, x, x)", (1.0,),
     r"numpy\.complex64\(\) takes at most 2 arguments \(3 given\)"),
    ("return np.complex128(x, 1j)", (1.0,),
     r"numpy\.complex128\(re, im\) takes real numbers"),
    ("return np.int32(x)", (np.zeros(3),),
     r"numpy\.int32\(\) argument must be a number, not float64\["),
    ("return np.ndarray(x)", (1,), r"numpy\.ndarray\(\) is not supported"),
])
def test_refused(target, body, args, message):
    fn = jit(kernel("refused", [body]), target)
    with pytest.raises(kiln.CompileError, match=message):
        fn(*args)


# ---------------------------------------------------------------------------
# the on-disk cache knows which constructor a kernel calls

@pytest.mark.skipif(JIT_DISABLED, reason="no compiled code without the JIT")
def test_cache_keys_the_constructor(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    first = kernel("cached_ctor", ["return T(x) * 3"], T=np.float32)
    a = kiln.jit(cache=True)(first)
    check(a, 0.1)
    b = kiln.jit(cache=True)(first)
    check(b, 0.1)
    assert (a.cache_hits, b.cache_hits) == (0, 1)
    # the same code with T bound to another constructor is another entry
    other = kernel("cached_ctor", ["return T(x) * 3"], T=np.float64)
    c = kiln.jit(cache=True)(other)
    check(c, 0.1)
    assert c.cache_hits == 0
