"""kiln's own float64 math (python/kiln/_devmath.py), which the Vulkan target
runs for the math functions GLSL.std.450 has no float64 instruction for.

(a) The functions compiled for the CPU target, over many random and special
    inputs: the largest distance in ulps to CPython's math (libm) per
    function, and where CPython raises, a NaN or an infinity (what
    passes/lower_builtins.c turns into the same exception).
(b) The same through target="vulkan", as `math.<name>` in a kernel: each
    result equals the CPU-compiled function's bit for bit (same IEEE
    operations), so (a)'s bounds hold on the device.
The bounds (ULPS) are docs/gpu.md's measured maxima, with a margin over
them for tan, asinh, erf, erfc, gamma and lgamma; each run draws 12 000
to 48 000 random inputs per function (plus SPECIALS) with a fresh seed.
"""

import ctypes
import ctypes.util
import math

import numpy as np
import pytest

import kiln
import kiln._devmath as dm
from kiln import f64, prange

from conftest import JIT_DISABLED, TARGETS, jit

# max ulps from CPython's math (glibc) for random inputs; erf, erfc, gamma,
# lgamma are compared with the CPU target's math (libm, not CPython's own)
ULPS = {
    "exp": 1, "exp2": 1, "expm1": 1, "log": 1, "log2": 1, "log10": 2,
    "log1p": 1, "pow": 1, "sin": 1, "cos": 1, "tan": 2, "atan": 1,
    "asin": 1, "acos": 1, "atan2": 2, "sinh": 2, "cosh": 2, "tanh": 2,
    "asinh": 2, "acosh": 2, "atanh": 2,
    "erf": 2, "erfc": 6, "tgamma": 8, "lgamma": 4,
}
LIBM = {"erf", "erfc", "tgamma", "lgamma"}
TWO_ARGS = {"pow", "atan2"}
SPECIALS = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0,
                     np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.2250738585072014e-308,
                     1.7976931348623157e308, -1.7976931348623157e308, 1e-300, 1e300,
                     709.782712893384, 709.7827128933841, -745.1332191019411,
                     -745.1332191019412, 710.4758600739439, 0.7853981633974483,
                     1.5707963267948966, 3.141592653589793, 1e22, 2.0**53,
                     0.9999999999999999,
                     1.0000000000000002, -1.0000000000000002, 27.2, 171.6, -170.5])


def spread(rng, n, lo, hi):
    """n values with both signs and magnitudes log-uniform in [1e{lo}, 1e{hi}]."""
    return rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(lo, hi, n)


def inputs(rng, name, n):
    """Random inputs covering name's interesting ranges, plus SPECIALS."""
    u = rng.uniform
    parts = {
        "exp": [u(-750, 720, n), spread(rng, n, -20, 0.5)],
        "exp2": [u(-1080, 1030, n), u(-1, 1, n)],
        "expm1": [u(-50, 720, n), spread(rng, n, -20, 0.5)],
        "log": [np.abs(spread(rng, n, -320, 308)), u(0.5, 2, n)],
        "log1p": [spread(rng, n, -20, 5), u(-1, 1, n)],
        "sin": [u(-10, 10, n), spread(rng, n, -10, 22), spread(rng, n // 4, 22, 308)],
        "atan": [spread(rng, n, -10, 10), u(-3, 3, n)],
        "asin": [u(-1, 1, n), spread(rng, n, -10, 0)],
        "sinh": [u(-715, 715, n), spread(rng, n, -10, 1.5)],
        "tanh": [u(-25, 25, n), spread(rng, n, -10, 1)],
        "asinh": [spread(rng, n, -10, 300)],
        "acosh": [1 + np.abs(spread(rng, n, -16, 3)), np.abs(spread(rng, n, 0, 300))],
        "atanh": [u(-1, 1, n), spread(rng, n, -10, 0)],
        "erf": [u(-7, 7, n), spread(rng, n, -10, 0.5)],
        "erfc": [u(-7, 28, n), spread(rng, n, -10, 0.5)],
        "tgamma": [u(-40, 172, n), u(0, 3, n), spread(rng, n, -10, 0)],
        "lgamma": [u(-40, 200, n), u(0, 3, n), np.abs(spread(rng, n, -10, 300))],
    }
    alias = {"log2": "log", "log10": "log", "cos": "sin", "tan": "sin",
             "acos": "asin", "cosh": "sinh"}
    return np.concatenate([SPECIALS] + parts[alias.get(name, name)])


def pairs(rng, name, n):
    """Random (x, y) inputs for pow / atan2, specials crossed."""
    s = np.repeat(SPECIALS, len(SPECIALS)), np.tile(SPECIALS, len(SPECIALS))
    if name == "atan2":
        xs = [s[0], spread(rng, n, -5, 5), spread(rng, n, -300, 300)]
        ys = [s[1], spread(rng, n, -5, 5), spread(rng, n, -300, 300)]
    else:
        ints = rng.integers(-60, 60, n).astype(np.float64)
        xs = [s[0], np.abs(spread(rng, n, -5, 5)), rng.uniform(0.9, 1.1, n),
              rng.uniform(-3, 3, n), np.abs(spread(rng, n, -300, 300))]
        ys = [s[1], rng.uniform(-60, 60, n), spread(rng, n, 0, 4), ints,
              rng.uniform(-3, 3, n)]
    return np.concatenate(xs), np.concatenate(ys)


def ulp_distance(got, exp):
    """Per element: 0 where both are NaN or equal (same sign of zero), else
    the distance in ulps (inf across NaN or opposite signs)."""
    a = got.view(np.int64) & np.int64(2**63 - 1)
    b = exp.view(np.int64) & np.int64(2**63 - 1)
    d = np.abs(a - b).astype(np.float64)
    same = (np.isnan(got) & np.isnan(exp)) | ((got == exp) & (np.signbit(got) == np.signbit(exp)))
    far = np.isnan(got) | np.isnan(exp) | (np.signbit(got) != np.signbit(exp))
    return np.where(same, 0.0, np.where(far, np.inf, d))


_LIBM = ctypes.CDLL(ctypes.util.find_library("m"))


def _libm(name):
    f = getattr(_LIBM, name)
    f.restype = ctypes.c_double
    f.argtypes = [ctypes.c_double]
    return f


def python_reference(name, args):
    """CPython's math on each input: (values, raised) with NaN where it
    raised.  erf, erfc, gamma, lgamma: the C library's (what the CPU target
    calls; CPython has its own), raising where CPython's math does."""
    fn = math.gamma if name == "tgamma" else getattr(math, name)
    out = np.empty(len(args[0]))
    raised = np.zeros(len(args[0]), dtype=bool)
    for i, a in enumerate(zip(*args)):
        try:
            out[i] = fn(*a)
        except (ValueError, OverflowError):
            out[i] = np.nan
            raised[i] = True
    if name in LIBM:
        c = _libm(name)
        out = np.where(raised, np.nan, [c(float(v)) for v in args[0]])
    return out, raised


# ---- kernels: one per function, over arrays ------------------------------

_KERNELS = {}


def _kernel_src(body_call, two):
    params = "x: f64[:], y: f64[:], out: f64[:]"
    call_ = f"{body_call}(x[i], y[i])" if two else f"{body_call}(x[i])"
    return (f"def k({params}):\n"
            f"    for i in prange(x.shape[0]):\n"
            f"        out[i] = {call_}\n")


def devmath_kernel(name, target="cpu"):
    """A kernel applying dm.<name> (the implementation itself) elementwise."""
    key = ("dm", name, target)
    if key not in _KERNELS:
        ns = {"dm": dm, "f64": f64, "prange": prange}
        exec(_kernel_src(f"dm.{name}", name in TWO_ARGS), ns)
        _KERNELS[key] = jit(ns["k"], target)
    return _KERNELS[key]


def math_kernel(name, target):
    """A kernel applying math.<name> (what user code writes) elementwise."""
    key = ("math", name, target)
    if key not in _KERNELS:
        ns = {"math": math, "f64": f64, "prange": prange}
        pyname = "gamma" if name == "tgamma" else name
        exec(_kernel_src(f"math.{pyname}", name in TWO_ARGS), ns)
        _KERNELS[key] = jit(ns["k"], target)
    return _KERNELS[key]


def run(kernel, x, y):
    out = np.empty_like(x)
    kernel(x, y if y is not None else x, out)
    return out


def args_for(rng, name, n):
    if name in TWO_ARGS:
        return pairs(rng, name, n)
    return (inputs(rng, name, n),)


# ---- (a) compiled for the CPU ---------------------------------------------

@pytest.mark.skipif(JIT_DISABLED, reason="compares compiled code with CPython")
@pytest.mark.parametrize("name", sorted(ULPS))
def test_devmath_cpu(rng, name):
    args = args_for(rng, name, 12000)
    x, y = args[0], args[1] if len(args) > 1 else None
    got = run(devmath_kernel(name), x, y)
    exp, raised = python_reference(name, args)
    # where CPython raises, a NaN or an infinity (lower turns it into the error)
    bad = raised & np.isfinite(got)
    assert not bad.any(), (name, x[bad][:5], got[bad][:5])
    d = ulp_distance(got, exp)
    if name == "lgamma":
        # near its zeros the error is absolute: count ulps of max(|f|, 1)
        small = np.isfinite(exp) & (np.abs(exp) < 1.0)
        d[small] = np.abs(got[small] - exp[small]) / np.spacing(1.0)
    d[raised] = 0.0
    worst = int(np.argmax(d))
    assert d[worst] <= ULPS[name], (
        name, x[worst], None if y is None else y[worst], got[worst], exp[worst], d[worst])
    # the compiled code computes what CPython computes running _devmath
    fn = getattr(dm, name)
    for i in np.linspace(0, len(x) - 1, 200).astype(int):
        a = (x[i],) if y is None else (x[i], y[i])
        ref = fn(*(float(v) for v in a))
        assert ulp_distance(np.array([got[i]]), np.array([ref]))[0] == 0, (name, a, got[i], ref)


def bits_of(x: float) -> int:
    return dm.f64_bits(x)


def float_of(i: int) -> float:
    return dm.f64_from_bits(i)


def test_bits_builtins(target):
    """f64_bits / f64_from_bits: IEEE bits, both ways, as struct gives them."""
    f, g = jit(bits_of, target), jit(float_of, target)
    for x in [1.0, -0.0, float("inf"), 5e-324, -2.5]:
        assert f(x) == bits_of(x)
    for i in [5, -1, 2**62, -2**63, 0x7FF0000000000000]:
        assert ulp_distance(np.array([g(i)]), np.array([float_of(i)]))[0] == 0


# the double closest to a multiple of pi/2 (x mod pi/2 ~ 4.7e-19); values
# computed with mpmath at 3000 bits (this glibc's cos is 8 ulps off here)
HARD_X = 6381956970095103 * 2.0**797
HARD = {"sin": 1.0, "cos": -4.687165924254628e-19, "tan": -2.133485385753704e+18}


@pytest.mark.parametrize("name", sorted(HARD))
def test_trig_hard_reduction(target, name):
    """Payne-Hanek reduction keeps every bit at the hardest argument."""
    f = math_kernel(name, target) if target == "vulkan" else devmath_kernel(name)
    x = np.array([HARD_X, -HARD_X])
    got = run(f, x, None)
    sign = 1.0 if name == "cos" else -1.0
    assert got[0] == HARD[name] and got[1] == sign * HARD[name], got
    assert getattr(dm, name)(HARD_X) == HARD[name]


# ---- (b) on the Vulkan device --------------------------------------------

@pytest.mark.skipif("vulkan" not in TARGETS, reason="no Vulkan device")
@pytest.mark.parametrize("name", sorted(ULPS))
def test_devmath_vulkan(rng, name):
    args = args_for(rng, name, 250)
    x, y = args[0], args[1] if len(args) > 1 else None
    # math.<name> in a Vulkan kernel calls kiln's implementation; the error
    # checks around it are the CPU target's, so compare where nothing raises
    _, raised = python_reference(name, args)
    ok = ~raised
    x = np.ascontiguousarray(x[ok])
    y = None if y is None else np.ascontiguousarray(y[ok])
    got = run(math_kernel(name, "vulkan"), x, y)
    exp = run(devmath_kernel(name), x, y)
    d = ulp_distance(got, exp)
    worst = int(np.argmax(d))
    assert d[worst] == 0, (name, x[worst], None if y is None else y[worst],
                           got[worst], exp[worst])


@pytest.mark.skipif("vulkan" not in TARGETS, reason="no Vulkan device")
def test_devmath_vulkan_errors():
    """CPython's exceptions around kiln's own math, on the device too."""
    def f(x: float) -> float:
        return math.log(x) + math.exp(x)
    g = jit(f, "vulkan")
    assert g(1.5) == pytest.approx(f(1.5), rel=1e-15)
    with pytest.raises(ValueError, match="math domain error"):
        g(0.0)
    with pytest.raises(OverflowError, match="math range error"):
        g(800.0)
