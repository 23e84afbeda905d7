"""The kernel language against CPython: every construct of API.md "Inside a
kernel" and docs/language.md, on fresh random inputs, every scalar dtype.

The oracle is the undecorated function run by CPython with NumPy 2 scalars
(see conftest.check).  Where kiln documents a difference from CPython
(int64 wrap-around, integer division by zero for NumPy ints, int ** negative,
...), the test asserts kiln's documented behaviour instead.

PYTEST_DONT_REWRITE: kernels here use `assert`, which pytest would
otherwise rewrite into code outside kiln's language.
"""

import math

import numpy as np
import numpy.typing as npt
import pytest

import kiln
from kiln import prange
from conftest import (ALL_DTYPES, COMPLEX_DTYPES, FLOAT_DTYPES, INT_DTYPES,
                      JIT_DISABLED, call, check, check_raises, check_ulp,
                      dtype_of, jit,
                      rand_array, rand_scalars, reference, same_value,
                      math_ulps)

N = 24          # random inputs per case

# ---------------------------------------------------------------------------
# binary operators


def op_add(a, b):
    return a + b


def op_sub(a, b):
    return a - b


def op_mul(a, b):
    return a * b


def op_truediv(a, b):
    return a / b


def op_floordiv(a, b):
    return a // b


def op_mod(a, b):
    return a % b


def op_pow(a, b):
    return a ** b


def op_lshift(a, b):
    return a << b


def op_rshift(a, b):
    return a >> b


def op_and(a, b):
    return a & b


def op_or(a, b):
    return a | b


def op_xor(a, b):
    return a ^ b


def op_iadd(a, b):
    a += b
    a -= b
    a *= b
    return a


BINOPS = {"+": op_add, "-": op_sub, "*": op_mul, "/": op_truediv,
          "//": op_floordiv, "%": op_mod, "**": op_pow, "<<": op_lshift,
          ">>": op_rshift, "&": op_and, "|": op_or, "^": op_xor}


def valid(op, dt):
    kind = np.dtype(dt).kind
    if op in ("<<", ">>", "&", "|", "^"):
        return kind in "biu"
    if op in ("//", "%"):
        return kind != "c"
    return True


def operand_pairs(rng, op, dt):
    """Random operand pairs of NumPy type dt for op, avoiding the inputs
    where kiln documents a difference from NumPy (tested separately)."""
    dt = np.dtype(dt)
    specials = not (dt.kind == "c" and op in ("/", "**"))
    a = rand_scalars(rng, dt, N, specials)
    b = rand_scalars(rng, dt, N, specials)
    pairs = list(zip(a, b))
    if dt.kind in "iu":
        if op in ("//", "%"):
            pairs = [(x, y) for x, y in pairs if y != 0]
        if op == "**":
            pairs = [(x, dt.type(abs(int(y)) % 70)) for x, y in pairs]
        if op in ("<<", ">>"):
            pairs = [(x, dt.type(abs(int(y)) % (dt.itemsize * 8 + 4))) for x, y in pairs]
    if dt.kind == "c" and op == "/":
        pairs = [(x, y) for x, y in pairs if y != 0]
    return pairs


# complex ** follows CPython's algorithm, not NumPy's: see test_complex_pow
STRONG_CASES = [(op, dt) for op in BINOPS for dt in ALL_DTYPES[1:]
                if valid(op, dt) and not (op == "**" and np.dtype(dt).kind == "c")]


@pytest.mark.parametrize("op,dt", STRONG_CASES,
                         ids=[f"{np.dtype(d).name}{o}" for o, d in STRONG_CASES])
def test_binop_strong(target, rng, op, dt):
    fn = jit(BINOPS[op], target)
    pairs = operand_pairs(rng, op, dt)
    if target == "vulkan" and op == "**" and np.dtype(dt).kind == "f":
        # Vulkan: float32 `**` is computed in float64 by the backend, float64
        # `**` by kiln's own pow (each within 1 ulp of libm's)
        for a, b in pairs:
            check_ulp(fn, 1, a, b)
        return
    for a, b in pairs:
        check(fn, a, b)


@pytest.mark.parametrize("op", list(BINOPS))
def test_binop_bool(target, op):
    """Python bools: arithmetic counts them as ints, & | ^ keep bool."""
    fn = jit(BINOPS[op], target)
    for a in (False, True):
        for b in (False, True):
            check(fn, a, b)


def weak_pairs(rng, op, kind):
    """Python-scalar operand pairs whose exact CPython result fits kiln's
    int64 (kiln wraps where CPython grows: see test_int64_wraps)."""
    out = []
    for _ in range(N):
        if kind == "int":
            if op in ("+", "-"):
                lim = 2**62
            elif op == "*":
                lim = 2**31
            elif op == "**":
                out.append((int(rng.integers(-20, 21)), int(rng.integers(0, 15))))
                continue
            elif op == "<<":
                out.append((int(rng.integers(-2**20, 2**20)), int(rng.integers(-2, 40))))
                continue
            elif op == ">>":
                out.append((int(rng.integers(-2**62, 2**62)), int(rng.integers(-2, 80))))
                continue
            elif op == "/":
                lim = 2**53     # beyond, int / int rounds twice: documented
            else:
                lim = 2**63
            a = int(rng.integers(-lim, lim)) if rng.random() < 0.5 else int(rng.integers(-9, 10))
            b = int(rng.integers(-lim, lim)) if rng.random() < 0.5 else int(rng.integers(-9, 10))
            out.append((a, b))
        elif kind == "float":
            a, b = (float(v) for v in rand_scalars(rng, np.float64, 2))
            if op == "**" and a < 0 and math.isfinite(b) and b != int(b):
                a = -a      # CPython returns complex: documented difference
            out.append((a, b))
        else:
            a, b = (complex(v) for v in rand_scalars(rng, np.complex128, 2, specials=False))
            if op == "**":
                b = complex(round(b.real / 10.0, 1), round(b.imag / 10.0, 1))
            out.append((a, b))
    if kind == "int":
        out += [(7, 0), (-7, 0), (0, 0)] if op in ("//", "%", "/") else []
        out += [(-2**63, -1)] if op in ("%", "/") else []
        if op == "**":
            out = [(a, b) for a, b in out if abs(a) ** b < 2**63]
    if kind == "float":
        out += [(1.5, 0.0), (-1.5, -0.0), (0.0, 0.0), (float("nan"), 0.0)]
        if op == "**":
            out += [(0.0, -1.0), (10.0, 400.0), (-2.0, 3.0), (-0.0, -3.0),
                    (float("inf"), 2.0), (2.0, float("nan"))]
    if kind == "complex" and op in ("/", "**"):
        out += [(1 + 2j, 0j), (0j, 0j)] if op == "/" else [(0j, 0j), (2 + 1j, 3 + 0j)]
    return out


WEAK_CASES = [(op, kind) for op in BINOPS for kind in ("int", "float", "complex")
              if valid(op, {"int": np.int64, "float": np.float64,
                            "complex": np.complex128}[kind])]


@pytest.mark.parametrize("op,kind", WEAK_CASES, ids=[f"{k}{o}" for o, k in WEAK_CASES])
def test_binop_weak(target, rng, op, kind):
    """Python scalars: CPython's semantics, exceptions included."""
    fn = jit(BINOPS[op], target)
    pairs = weak_pairs(rng, op, kind)
    # Vulkan: float and complex `**` use kiln's own float64 pow (and exp,
    # log, sin, cos, atan2 for complex).  CPython's complex power scales the
    # argument atan2(a) by the exponent, so an ulp there grows by |b|.
    ulps = math_ulps(target, "pow") * (4 if kind == "complex" else 1)
    for a, b in pairs:
        if op == "**":
            scale = 1 + abs(b) if kind == "complex" else 1
            check_ulp(fn, ulps * scale, a, b)
        else:
            check(fn, a, b)


def test_inplace_ops(target, rng):
    for dt in (np.int16, np.uint32, np.float32, np.complex128):
        fn = jit(op_iadd, target)
        for a, b in zip(rand_scalars(rng, dt, 8), rand_scalars(rng, dt, 8)):
            check(fn, a, b)
    fn = jit(op_iadd, target)
    check(fn, 5, 7)
    check(fn, 2.5, -0.5)


def test_mixed_weak_python_kinds(target, rng):
    """int with float, int with complex, float with complex, bool with all."""
    values = [3, -4, 0, 2.5, -0.0, 1.5 + 2j, True, False]
    for op in ("+", "-", "*", "/"):
        fn_cache = {}
        for a in values:
            for b in values:
                key = (type(a), type(b))
                if key not in fn_cache:
                    fn_cache[key] = jit(BINOPS[op], target)
                check(fn_cache[key], a, b)


def test_int64_wraps(target, rng):
    """Documented difference: Python ints are int64 in kiln and wrap."""
    fn_add, fn_mul, fn_neg = jit(op_add, target), jit(op_mul, target), jit(neg, target)

    def wrap(v):
        return (v + 2**63) % 2**64 - 2**63

    for _ in range(N):
        a, b = (int(v) for v in rng.integers(-2**63, 2**63, 2, dtype=np.int64))
        if JIT_DISABLED:
            check(fn_add, a, b)
            continue
        assert fn_add(a, b) == wrap(a + b)
        assert fn_mul(a, b) == wrap(a * b)
    if not JIT_DISABLED:
        assert fn_neg(-2**63) == -2**63
        assert fn_add(2**63 - 1, 1) == -2**63


def test_zero_division_numpy_ints(target, rng):
    """Documented difference: // and % by zero raise for NumPy ints too
    (NumPy returns 0 with a warning); / gives inf/nan as NumPy does."""
    for dt in INT_DTYPES:
        fd, fm, ft = jit(op_floordiv, target), jit(op_mod, target), jit(op_truediv, target)
        for a in rand_scalars(rng, dt, 4):
            check_raises(fd, ZeroDivisionError, "integer division or modulo by zero",
                         a, dt(0))
            check_raises(fm, ZeroDivisionError, "integer modulo by zero", a, dt(0))
            check(ft, a, dt(0))


def test_int_min_floordiv_minus_one(target):
    for dt in (np.int8, np.int16, np.int32, np.int64):
        lo = np.iinfo(dt).min
        check(jit(op_floordiv, target), dt(lo), dt(-1))
        check(jit(op_mod, target), dt(lo), dt(-1))


def test_int_negative_power(target):
    """Documented difference: int ** negative int raises ValueError."""
    msg = "kiln: integers to negative integer powers are not supported"
    check_raises(jit(op_pow, target), ValueError, msg, 2, -1)
    check_raises(jit(op_pow, target), ValueError, msg, np.int32(2), np.int32(-3))


def test_float_negative_base_fractional_power(target):
    """Documented difference: CPython returns a complex here."""
    msg = "kiln: negative number to a fractional power (CPython returns complex)"
    check_raises(jit(op_pow, target), ValueError, msg, -8.0, 1.0 / 3.0)


def test_negative_shift_numpy_ints(target):
    """Negative shift counts raise for NumPy ints as for Python ints."""
    for op in ("<<", ">>"):
        check_raises(jit(BINOPS[op], target), ValueError, "negative shift count",
                     np.int32(5), np.int32(-1))


def pow_const2(z):
    return z ** 2


def pow_const5(z):
    return z ** 5


def pow_const_neg3(z):
    return z ** -3


def test_complex_pow(target, rng):
    """Complex ** follows CPython's algorithm (integer exponents by repeated
    squaring, others via c_pow), also for NumPy complex128."""
    f = jit(op_pow, target)
    pairs = [(complex(a), complex(round(b.real / 10, 1), round(b.imag / 10, 1)))
             for a, b in zip(rand_scalars(rng, np.complex128, N, False),
                             rand_scalars(rng, np.complex128, N, False))]
    # Vulkan: a non-constant exponent uses kiln's own float64 math, whose
    # ulps in atan2 and log CPython's polar form multiplies by the exponent
    for a, b in pairs:
        check_ulp(f, 4 * math_ulps(target, "pow") * (1 + abs(b)), a, b)
    for fn in (pow_const2, pow_const5, pow_const_neg3):
        g = jit(fn, target)
        for z in rand_scalars(rng, np.complex128, N, False):
            check(g, complex(z))
        if not JIT_DISABLED:
            for z in rand_scalars(rng, np.complex128, 6, False):
                assert same_value(complex(g(z)), fn(complex(z)))


# ---------------------------------------------------------------------------
# promotion (NEP 50)

NUMERIC = INT_DTYPES + FLOAT_DTYPES + COMPLEX_DTYPES


@pytest.mark.parametrize("dt", NUMERIC + [np.bool_], ids=lambda d: np.dtype(d).name)
def test_promotion_weak_strong(target, rng, dt):
    """Strong op weak, both orders, every weak kind: the result dtype is
    NumPy's (checked by check's dtype comparison)."""
    strong = [v for v in rand_scalars(rng, dt, 6, specials=False)]
    weak = [True, 3, 100, 2.5, -0.25, 1.5 - 2j]
    for op in ("+", "*"):
        for w in weak:
            f1, f2 = jit(BINOPS[op], target), jit(BINOPS[op], target)
            for s in strong:
                check(f1, s, w)
                check(f2, w, s)


PAIRS = [(a, b) for i, a in enumerate(NUMERIC) for b in NUMERIC[i + 1:]]


@pytest.mark.parametrize("a,b", PAIRS,
                         ids=[f"{np.dtype(a).name}-{np.dtype(b).name}" for a, b in PAIRS])
def test_promotion_strong_strong(target, rng, a, b):
    f = jit(op_add, target)
    for x, y in zip(rand_scalars(rng, a, 4, False), rand_scalars(rng, b, 4, False)):
        check(f, x, y)


def weak_then_strong(x, y, s):
    r = x * y           # weak: stays weak
    return r + s        # so s's type wins


def strong_then_weak(x, s):
    r = x + s           # strong
    return r * 2.5


def test_weakness_propagates(target, rng):
    f = jit(weak_then_strong, target)
    for s in rand_scalars(rng, np.float32, 6):
        check(f, 2, 1.5, s)
    f = jit(weak_then_strong, target)
    for s in rand_scalars(rng, np.int16, 6):
        check(f, 3, 4, s)
    f = jit(strong_then_weak, target)
    for s in rand_scalars(rng, np.float32, 6):
        check(f, 1.25, s)


def annotated_f32(a: kiln.f32, b: np.float32) -> kiln.f32:
    return a * b + 1.5


def annotated_ret(a: int, b: int) -> float:
    return a + b


def annotated_builtin(a: int, b: float, c: complex, d: bool):
    return (a + b) * c if d else c


def annotated_ndarray(a: npt.NDArray[np.float32], b: npt.NDArray[np.int16]):
    return a[0, 1] * b[-1]


def test_ndarray_annotation(target, rng):
    f = jit(annotated_ndarray, target)
    b = rand_array(rng, np.int16, (5,))
    check(f, rand_array(rng, np.float32, (2, 3)), b)
    check(f, np.asfortranarray(rand_array(rng, np.float32, (2, 3))), b[::-2])


def test_annotations(target, rng):
    f = jit(annotated_f32, target)
    for a, b in zip(rand_scalars(rng, np.float32, 8), rand_scalars(rng, np.float32, 8)):
        check(f, a, b)
    f = jit(annotated_ret, target)
    if JIT_DISABLED:
        check(f, 3, 4)
    else:
        assert same_value(f(3, 4), 7.0)
    f = jit(annotated_builtin, target)
    check(f, 2, 1.5, 1 - 1j, True)
    check(f, 2, 1.5, 1 - 1j, False)


# ---------------------------------------------------------------------------
# unary operators


def neg(a):
    return -a


def pos(a):
    return +a


def inv(a):
    return ~a


def lnot(a):
    return not a


@pytest.mark.parametrize("dt", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_unary(target, rng, dt):
    vals = rand_scalars(rng, dt, N)
    fns = [neg, pos, lnot] + ([inv] if np.dtype(dt).kind in "biu" else [])
    if np.dtype(dt).kind == "b":
        fns = [lnot, inv]       # -np.True_ and +np.True_ are TypeErrors
        vals += [bool(v) for v in vals]     # Python bools: True is an int
    for fn in fns:
        f = jit(fn, target)
        for v in vals:
            check(f, v)
    if np.dtype(dt).kind == "b":
        for fn in (neg, pos):
            check(jit(fn, target), True)
            check(jit(fn, target), False)


def test_unary_weak(target, rng):
    for v in [0, 5, -7, 2**62, 0.0, -0.0, 1.5, float("nan"), 0j, 1 - 2j]:
        for fn in (neg, pos, lnot):
            check(jit(fn, target), v)
    check(jit(inv, target), 12345)


NUMPY_BOOL_OPS = ("+", "*", "/", "//", "%", "**", "<<", ">>", "&", "|", "^")


@pytest.mark.parametrize("op", NUMPY_BOOL_OPS)
def test_numpy_bool_arithmetic(target, op):
    """NumPy bools keep NumPy 2's rules: + and * stay bool (or, and), / is
    float64, // % ** << >> compute in int8; with a Python bool the NumPy
    bool wins; two Python bools count as ints."""
    f = jit(BINOPS[op], target)
    for x in (np.True_, np.False_, True, False):
        for y in (np.True_, np.False_, True, False):
            if op in ("/", "//", "%") and not y:
                continue    # division by zero: documented difference
            check(f, x, y)


def count_above(a, t):
    c = 0
    for i in range(a.shape[0]):
        c += a[i] > t
    return c


def count_above_prange(a, t):
    c = 0
    for i in prange(a.shape[0]):
        c += a[i] > t
    return c


def comparison_times(a):
    return ((a[0] > 1) + 0) * a[0]


def test_comparison_results_are_numpy_or_python_bools(target, rng):
    """A comparison involving a NumPy value is a NumPy bool (np.True_ + 0 is
    int64), one of Python values a Python bool, as in CPython."""
    for dt in (np.int8, np.int32, np.uint64, np.float32):
        a = rand_array(rng, dt, 9)
        for t in (0, 1, 2.5):
            check(jit(count_above, target), a, t)
            check(jit(count_above_prange, target), a, t)
        check(jit(comparison_times, target), np.array([5, 2], dt))
        check(jit(comparison_times, target), np.array([0, 2], dt))
    for fn in (lambda a, x: a[0] > 1, lambda a, x: x > 1,
               lambda a, x: (a[0] > 1) == (x > 1),
               lambda a, x: not (a[0] > 1),
               lambda a, x: (a[0] > 1) & (x > 1)):
        for x in (0, 5):
            check(jit(fn, target), np.array([3], np.int16), x)


def bool_join_numpy_first(a, c):
    x = a[0] > 1
    if c:
        x = True
    return x


def bool_join_python_first(a, c):
    x = True
    if c:
        x = a[0] > 1
    return x


def test_python_and_numpy_bool_join(target):
    """A variable holding a NumPy bool on one path and a Python bool on
    another is a NumPy bool (one type per variable, docs/language.md),
    whichever is assigned first; printed IR names a Python bool `bool`."""
    a = np.array([3], np.int64)
    for fn in (bool_join_numpy_first, bool_join_python_first):
        f = jit(fn, target)
        for c in (0, 1):
            r = f(a, c)
            assert type(r) is np.bool_ and r == fn(a, c), (fn, c)
    g = jit(lnot, target)
    g(True)
    assert "a: bool" in g.inspect_ir() and "complex" not in g.inspect_ir()


# ---------------------------------------------------------------------------
# comparisons and boolean operators


def cmp_all(a, b):
    return ((a < b) * 1 + (a <= b) * 2 + (a == b) * 4 + (a != b) * 8
            + (a > b) * 16 + (a >= b) * 32)


def cmp_eq(a, b):
    return (a == b) * 1 + (a != b) * 2


def chained(a, b, c):
    return (a < b < c) * 1 + (a <= b == c) * 2 + (a != b > c) * 4 + (c >= b >= a) * 8


@pytest.mark.parametrize("dt", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_compare(target, rng, dt):
    kind = np.dtype(dt).kind
    fn = cmp_eq if kind == "c" else cmp_all
    f = jit(fn, target)
    a, b = rand_scalars(rng, dt, N), rand_scalars(rng, dt, N)
    pairs = list(zip(a, b)) + [(x, x) for x in a[:4]]
    for x, y in pairs:
        check(f, x, y)
    if kind != "c":
        g = jit(chained, target)
        for x, y, z in zip(a, b, rand_scalars(rng, dt, N)):
            check(g, x, y, z)
            check(g, x, x, x)


def test_compare_mixed(target, rng):
    f = jit(cmp_all, target)
    for x in rand_scalars(rng, np.int8, 8):
        check(f, x, int(rng.integers(-100, 100)))
    cases = [(3, 2.5), (-1, -1.0), (2**52, float(2**52)), (0, float("nan")),
             (7, float("inf")), (True, 1), (False, 0.5)]
    for x, y in cases:
        check(jit(cmp_all, target), x, y)
        check(jit(cmp_all, target), y, x)
    check(jit(cmp_all, target), np.float32(0.1), 0.1)
    check(jit(cmp_all, target), np.int64(3), np.float32(3.0))
    check(jit(cmp_eq, target), 1 + 0j, 1)


def test_int_float_compare_above_2_53(target):
    """Documented difference: int vs float converts the int to float."""
    f = jit(cmp_eq, target)
    if JIT_DISABLED:
        check(f, 2**53 + 1, float(2**53))
    else:
        assert f(2**53 + 1, float(2**53)) == 1      # CPython: 2 (not equal)


def bool_ops(a, b, c):
    r = 0
    if a and b:
        r += 1
    if a or b:
        r += 2
    if not a:
        r += 4
    if a and b or c:
        r += 8
    if not (a or b and c):
        r += 16
    return r


def and_or_value(a, b):
    return (a and b) + (a or b) * 3


def short_circuit(a, i):
    if i < a.shape[0] and a[i] > 0:
        return 1
    if i >= a.shape[0] or a[i] < 0:
        return 2
    return 3


def test_boolean_operators(target, rng):
    f = jit(bool_ops, target)
    for a in (0, 1, -3):
        for b in (0, 2):
            for c in (0, 5):
                check(f, a, b, c)
    g = jit(bool_ops, target)
    for a, b, c in zip(*(rand_scalars(rng, np.float64, 10) for _ in range(3))):
        check(g, a, b, c)
    h = jit(and_or_value, target)
    for a in (0, 3, -2):
        for b in (0, 7):
            check(h, a, b)
    s = jit(short_circuit, target)
    arr = np.array([1.0, -1.0, 0.0])
    for i in range(-3, 6):
        check(s, arr, i)


def ternary(a, b):
    x = a if a > b else b
    y = 1.5 if a == b else -2.5
    return x * y if x else y


def test_conditional_expression(target, rng):
    f = jit(ternary, target)
    for a, b in zip(rand_scalars(rng, np.float64, N), rand_scalars(rng, np.float64, N)):
        check(f, a, b)
    check(f, np.float64(2.0), np.float64(2.0))


# ---------------------------------------------------------------------------
# control flow


def classify(x):
    if x < -10:
        return -2
    elif x < 0:
        return -1
    elif x == 0:
        return 0
    elif x > 1000:
        return 2
    else:
        r = 1
    return r


def collatz(n):
    steps = 0
    while n != 1:
        if n % 2 == 0:
            n = n // 2
        else:
            n = 3 * n + 1
        steps += 1
    return steps


def range1(n):
    s = 0
    for i in range(n):
        s = s * 3 + i
    return s


def range2(a, b):
    s = 0
    for i in range(a, b):
        s = (s * 31 + i) % 1000003
    return s


def range3(a, b, c):
    s = 0
    k = 0
    for i in range(a, b, c):
        s = (s * 31 + i % 1000) % 1000003
        k += 1
    return s + k * 1000003


def loop_var_after(n):
    i = -1
    for i in range(n):
        pass
    return i


def break_continue(n, stop, skip):
    s = 0
    for i in range(n):
        if i == stop:
            break
        if i % skip == 0:
            continue
        s += i
    else:
        s = -s
    return s


def while_else(n, stop):
    i = 0
    s = 0
    while i < n:
        i += 1
        if i == stop:
            break
        if i % 3 == 0:
            continue
        s += i
    else:
        s += 1000
    return s


def nested_loops(n, m):
    s = 0
    for i in range(n):
        for j in range(i, m):
            if j > 2 * i:
                break
            s += i * j
        else:
            s += 1
    return s


def early_return(a, x):
    for i in range(a.shape[0]):
        if a[i] == x:
            return i
    return -1


def while_true(n):
    k = 0
    while True:
        k += 1
        if k * k > n:
            return k


def test_if_elif_else(target, rng):
    f = jit(classify, target)
    for x in [-11, -10, -1, 0, 1, 1000, 1001] + [int(v) for v in rng.integers(-50, 2000, N)]:
        check(f, x)
    g = jit(classify, target)
    for x in rand_scalars(rng, np.float32, N):
        check(g, x)


def test_while(target, rng):
    f = jit(collatz, target)
    for n in [1, 2, 3, 27] + [int(v) for v in rng.integers(1, 10**6, N)]:
        check(f, n)
    g = jit(while_true, target)
    for n in [0, 1, 99, 100, 12345]:
        check(g, n)


def test_range(target, rng):
    f1, f2, f3 = jit(range1, target), jit(range2, target), jit(range3, target)
    for n in [0, 1, 5, -3] + [int(v) for v in rng.integers(-5, 30, 6)]:
        check(f1, n)
    for _ in range(N):
        a, b = (int(v) for v in rng.integers(-20, 20, 2))
        c = int(rng.choice([-7, -3, -2, -1, 1, 2, 5, 30, -30]))
        check(f2, a, b)
        check(f3, a, b, c)
    for args in [(0, 10, 0), (5, 5, 1), (5, 5, -1), (10, 0, -1), (0, 10, -1),
                 (-2**62, 2**62, 2**61), (2**62, -2**62, -2**61)]:
        check(f3, *args)
    g = jit(loop_var_after, target)
    for n in (0, 1, 7):
        check(g, n)


RANGE_LIMITS = """
import sys
sys.path.insert(0, {testdir!r})
import kiln
from test_language import range3
f = kiln.jit(range3)
for args in [(2**63 - 10, 2**63 - 1, 4), (-2**63 + 10, -2**63, -3),
             (2**63 - 3, 2**63 - 1, 2**62), (-2**63, 2**63 - 1, 2**63 - 1)]:
    print(f(*args) == range3(*args))
"""


def test_range_near_int64_limits():
    """The counter's last step would overflow int64: the loop still stops
    (run in a subprocess, so a runaway loop fails instead of hanging)."""
    import os
    import subprocess
    import sys
    code = RANGE_LIMITS.format(testdir=os.path.dirname(__file__))
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                              text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("a range loop near the int64 limits did not terminate")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True"] * 4, proc.stdout


def range_strong(a, b, c):
    s = 0
    for i in range(a, b, c):
        s += i
    return s


def test_range_numpy_ints(target, rng):
    f = jit(range_strong, target)
    for _ in range(8):
        a, b = (np.int32(v) for v in rng.integers(-50, 50, 2))
        check(f, a, b, np.int32(rng.choice([-3, -1, 1, 4])))
    check(f, np.int32(0), np.int32(5), np.int32(0))


def test_break_continue_else(target, rng):
    f = jit(break_continue, target)
    g = jit(while_else, target)
    h = jit(nested_loops, target)
    for _ in range(N):
        n, stop, skip = (int(v) for v in rng.integers(0, 20, 3))
        check(f, n, stop, skip + 1)
        check(g, n, stop)
        check(h, n % 8, stop % 10)


def test_early_return(target, rng):
    f = jit(early_return, target)
    a = rand_array(rng, np.int16, (20,))
    for x in list(a[:5]) + [np.int16(12345)]:
        check(f, a, x)
    check(f, a[:0], np.int16(0))


# ---------------------------------------------------------------------------
# calls, constants


def helper_plain(x, y):
    # a plain Python function: compiled along with its caller
    if x > y:
        return x - y
    return y - x


@kiln.jit
def helper_jit(x, y):
    return x * y + 1


def helper_void(a, i, v):
    a[i] = v


def caller(x, y):
    return helper_plain(x, y) + helper_jit(x, y) + helper_plain(helper_jit(y, x), 2)


def caller_arrays(a, b):
    for i in range(a.shape[0]):
        helper_void(b, i, helper_plain(a[i], 1.0))
    return helper_jit(a[0], b[0])


def fib(n):
    if n < 2:
        return n
    a = 0
    b = 1
    for _ in range(n - 1):
        a, b = b, helper_add(a, b)
    return b


def helper_add(a, b):
    return a + b


def test_calls(target, rng):
    f = jit(caller, target)
    for x, y in zip(rng.integers(-1000, 1000, N), rng.integers(-1000, 1000, N)):
        check(f, int(x), int(y))
    g = jit(caller, target)
    for x, y in zip(rand_scalars(rng, np.float32, N), rand_scalars(rng, np.float32, N)):
        check(g, x, y)
    h = jit(caller_arrays, target)
    check(h, rand_array(rng, np.float64, (9,)), rand_array(rng, np.float64, (9,)))
    k = jit(fib, target)
    for n in (0, 1, 2, 10, 50, 90):
        check(k, n)


LIMIT = 17
SCALE = 2.5
FLAG = True
CPLX = 1.5 - 0.5j
BIG = 2**40
SMALL = 0.1


def use_constants(x):
    r = x * SCALE + LIMIT + BIG
    if FLAG:
        r = r + CPLX.real - CPLX.imag
    return r + math.pi * math.e - math.tau + CPLX.conjugate().imag


def use_inf_nan(x):
    if x > math.inf or x != x:
        return math.nan
    return x + SMALL


def use_limit():
    return LIMIT


def test_module_constants(target, rng):
    f = jit(use_constants, target)
    for x in rand_scalars(rng, np.float64, N):
        check(f, float(x))
    g = jit(use_inf_nan, target)
    for x in [1.0, float("nan"), float("inf"), -2.5]:
        check(g, x)


def test_module_constant_frozen(target):
    """Documented: module constants are frozen when the function compiles."""
    global LIMIT
    f = jit(use_limit, target)
    assert f() == 17
    LIMIT = 18
    try:
        if JIT_DISABLED:
            assert f() == 18
        else:
            assert f() == 17
    finally:
        LIMIT = 17


# ---------------------------------------------------------------------------
# math module

MATH1 = ["sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh",
         "tanh", "asinh", "acosh", "atanh", "exp", "exp2", "expm1", "log", "log2",
         "log10", "log1p", "fabs", "floor", "ceil", "trunc", "isnan", "isinf",
         "isfinite", "degrees", "radians"]
MATH2 = ["atan2", "pow", "copysign", "fmod", "log"]
LIBM_DIFFERS = ["erf", "erfc", "gamma", "lgamma"]


def make_math1(name):
    src = f"def m_{name}(x):\n    return math.{name}(x)\n"
    ns = {"math": math}
    exec(compile(src, f"<math_{name}>", "exec"), ns)
    return ns[f"m_{name}"]


def make_math2(name):
    src = f"def m2_{name}(x, y):\n    return math.{name}(x, y)\n"
    ns = {"math": math}
    exec(compile(src, f"<math2_{name}>", "exec"), ns)
    return ns[f"m2_{name}"]


MATH_ARGS = [0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.0, 1e-300, 710.0, -745.5, 1e308,
             float("inf"), float("-inf"), float("nan"), 3.7, -2.5, 1e18, -1e18]


def math_inputs(rng):
    return MATH_ARGS + [float(v) for v in rng.standard_normal(N) * 10.0 ** rng.integers(-2, 3, N)]


TO_INT = ("floor", "ceil", "trunc")


@pytest.mark.parametrize("name", MATH1)
def test_math1(target, rng, name):
    f = jit(make_math1(name), target)
    ulps = math_ulps(target, name)      # Vulkan: kiln's own float64 math
    for x in math_inputs(rng):
        if name in TO_INT and math.isfinite(x) and abs(x) >= 2.0**63:
            continue    # beyond int64: see test_int_out_of_range
        check_ulp(f, ulps, x)
    g = jit(make_math1(name), target)      # int argument
    for x in [0, 1, -1, 7, 2**40, -2**53 - 1]:
        check_ulp(g, ulps, x)
    if name != "trunc":     # CPython: float32 has no __trunc__ (TypeError)
        h = jit(make_math1(name), target)      # float32 argument
        for x in rand_scalars(rng, np.float32, 8):
            check_ulp(h, ulps, x)


@pytest.mark.parametrize("name", MATH2)
def test_math2(target, rng, name):
    f = jit(make_math2(name), target)
    ulps = math_ulps(target, name)      # Vulkan: kiln's own float64 math
    xs = math_inputs(rng)
    ys = [xs[i] for i in rng.permutation(len(xs))]
    for x, y in zip(xs, ys):
        check_ulp(f, ulps, x, y)
    for x, y in [(0.0, -1.0), (-8.0, 1.0 / 3.0), (2.0, 1.0), (10.0, 400.0),
                 (1.0, 0.0), (0.0, 0.0), (-1.0, float("inf")), (2.0, float("nan"))]:
        check_ulp(f, ulps, x, y)


@pytest.mark.parametrize("name", LIBM_DIFFERS)
def test_math_libm(target, rng, name):
    """Documented: these call libm, which may differ from CPython's own
    implementation in the last bits; errors are CPython's.  (On Vulkan:
    kiln's own implementations, see test_devmath.py.)"""
    f = jit(make_math1(name), target)
    for x in [0.0, -0.0, -1.0, -2.0, 1.0, 0.5, 200.0, -200.5, 1e-300, 180.0,
              float("inf"), float("-inf"), float("nan")] + \
            [float(v) for v in rng.uniform(-30, 30, N)]:
        exp = call(reference(f), x)
        got = call(f, x)
        if exp.exception is not None:
            assert got.exception is not None, (x, exp, got)
            assert type(got.exception) is type(exp.exception), (x, exp, got)
            assert str(got.exception) == str(exp.exception), (x, exp, got)
            continue
        assert got.exception is None, (x, exp, got)
        exp, got = exp.result, got.result
        if math.isnan(exp):
            assert math.isnan(got)
        else:
            assert type(got) is float
            # near lgamma's zeros (x = 1, 2) only an absolute bound holds:
            # CPython's lgamma and libm's differ there by ~1e-16
            assert got == exp or math.isclose(got, exp, rel_tol=1e-13,
                                              abs_tol=1e-15), (x, exp, got)


def test_hypot_libm(target, rng):
    """Documented: math.hypot calls libm's hypot; CPython 3.11 has its own,
    which may differ in the last bit."""
    f = jit(make_math2("hypot"), target)
    xs = math_inputs(rng)
    for x, y in zip(xs, reversed(xs)):
        exp, got = call(reference(f), x, y), call(f, x, y)
        assert (exp.exception is None) == (got.exception is None), (x, y)
        if exp.exception is not None:
            continue
        exp, got = exp.result, got.result
        if math.isnan(exp):
            assert math.isnan(got)
        else:
            assert got == exp or math.isclose(got, exp, rel_tol=1e-15), (x, y)


# ---------------------------------------------------------------------------
# builtins


def b_abs(x):
    return abs(x)


def b_min2(a, b):
    return min(a, b)


def b_max2(a, b):
    return max(a, b)


def b_min3(a, b, c):
    return min(a, b, c)


def b_max3(a, b, c):
    return max(a, b, c)


def b_int(x):
    return int(x)


def b_float(x):
    return float(x)


def b_bool(x):
    return bool(x)


def b_complex1(x):
    return complex(x)


def b_complex2(x, y):
    return complex(x, y)


def b_round(x):
    return round(x)


def b_real(x):
    return x.real


def b_imag(x):
    return x.imag


def b_conj(x):
    return x.conjugate()


@pytest.mark.parametrize("dt", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_builtins_per_dtype(target, rng, dt):
    kind = np.dtype(dt).kind
    vals = rand_scalars(rng, dt, N)
    fns = [b_abs, b_bool]
    if kind != "c":
        fns += [b_min2, b_max2, b_min3, b_max3, b_float, b_complex1, b_complex2]
    if kind in "iuf":
        fns += [b_int, b_round]
    if kind != "b":
        fns += [b_real, b_imag, b_conj]
    if kind == "b":
        vals = [bool(v) for v in vals]
    if dt is np.uint64:
        vals = [v // np.uint64(2) for v in vals]    # int() of u64 >= 2**63 overflows int64
    if kind == "f":
        vals = [v for v in vals if not (math.isfinite(v) and abs(v) >= 2.0**63)]
        vals += [dt(2.5), dt(-3.5), dt(0.5)]
    for fn in fns:
        f = jit(fn, target)
        nargs = fn.__code__.co_argcount
        for i, v in enumerate(vals):
            args = [v] + [vals[(i * 7 + k + 1) % len(vals)] for k in range(nargs - 1)]
            check(f, *args)


def test_builtins_weak(target, rng):
    for fn, args in [
        (b_abs, [-5, 0, -2**63 + 1, -2.5, -0.0, float("nan"), 3 - 4j, True]),
        (b_int, [2.9, -2.9, -0.5, float("nan"), float("inf"), float("-inf"), 1e18, True]),
        (b_round, [0.5, 1.5, 2.5, -0.5, -1.5, 2.675, float("nan"), float("inf"), 7]),
        (b_float, [3, -0, True, 2.5]),
        (b_bool, [0, 3, 0.0, -0.0, float("nan"), 0j, 1j]),
        (b_complex1, [3, 2.5, 1 + 1j]),
        (b_real, [3, 2.5, 1 - 2j]), (b_imag, [3, 2.5, 1 - 2j]), (b_conj, [3, 2.5, 1 - 2j]),
    ]:
        by_type = {}
        for a in args:
            f = by_type.setdefault(type(a), jit(fn, target))
            check(f, a)
    for a, b in [(1, 2), (2.5, -1.0), (float("nan"), 1.0), (1.0, float("nan")),
                 (-0.0, 0.0), (0.0, -0.0)]:
        check(jit(b_min2, target), a, b)
        check(jit(b_max2, target), a, b)
    check(jit(b_complex2, target), 1.5, -2)


def test_int_out_of_range(target):
    """Documented difference: int() of a float outside int64 raises."""
    check_raises(jit(b_int, target), OverflowError,
                 "kiln: int() result out of int64 range", 1e19)
    check_raises(jit(b_round, target), OverflowError,
                 "kiln: int() result out of int64 range", -1e30)
    for name in TO_INT:
        check_raises(jit(make_math1(name), target), OverflowError,
                     "kiln: int() result out of int64 range", 1e308)


def test_min_max_mixed_types(target):
    """Documented: min/max convert their arguments to the promoted type
    (CPython returns the winning object unchanged)."""
    for fn, args, value, dt in [(b_max2, (1, 2.5), 2.5, np.float64),
                                (b_max2, (3, 2.5), 3.0, np.float64),
                                (b_min3, (np.float32(1.5), 2, 0.25), 0.25, np.float32)]:
        got = jit(fn, target)(*args)
        assert got == value
        if not JIT_DISABLED:
            assert dtype_of(got) == np.dtype(dt)


# ---------------------------------------------------------------------------
# arrays


def copy1(a, b):
    for i in range(a.shape[0]):
        b[i] = a[i]


def copy2(a, b):
    n, m = a.shape
    for i in range(n):
        for j in range(m):
            b[i, j] = a[i, j]


def copy3(a, b):
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            for k in range(a.shape[2]):
                b[i, j, k] = a[i, j, k]


def sum1(a):
    s = 0
    for i in range(len(a)):
        s = s + a[i]
    return s


def sum2_reverse(a):
    s = a[-1, -1]
    for i in range(-1, -a.shape[0] - 1, -1):
        for j in range(a.shape[1]):
            s = s - a[i, -j - 1]
    return s


def views(rng, dt, shape):
    """The same data seen through many layouts."""
    base = rand_array(rng, dt, tuple(2 * s for s in shape))
    big = rand_array(rng, dt, shape)
    out = [rand_array(rng, dt, shape),                                   # C
           np.asfortranarray(big),                                       # Fortran
           base[tuple(slice(None, None, 2) for _ in shape)],             # strided
           base[tuple(slice(None, None, -2) for _ in shape)],            # negative
           big.T.copy().T if len(shape) > 1 else big[::-1].copy()[::-1]]
    if len(shape) > 1:
        out.append(rand_array(rng, dt, shape[::-1]).T)                   # transposed
    return out


@pytest.mark.parametrize("dt", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_array_indexing_layouts(target, rng, dt):
    for fn, shape in ((copy1, (7,)), (copy2, (4, 5)), (copy3, (3, 2, 4))):
        f = jit(fn, target)
        vs = views(rng, dt, shape)
        for a in vs:
            for b in vs:
                check(f, a, b)
    if np.dtype(dt).kind != "b":
        s1 = jit(sum1, target)
        for a in views(rng, dt, (9,)):
            check(s1, a)
        s2 = jit(sum2_reverse, target)
        for a in views(rng, dt, (3, 4)):
            check(s2, a)


def get1(a, i):
    return a[i]


def get2(a, i, j):
    return a[i, j]


def set2(a, i, j, v):
    a[i, j] = v


def get3(a, i, j, k):
    return a[i, j, k]


def test_negative_and_out_of_bounds(target, rng):
    a = rand_array(rng, np.float64, (5,))
    f = jit(get1, target)
    for i in range(-8, 8):
        check(f, a, i)
    b = rand_array(rng, np.int32, (3, 4))[:, ::-1]
    g, h = jit(get2, target), jit(set2, target)
    for _ in range(N):
        i, j = (int(v) for v in rng.integers(-6, 6, 2))
        check(g, b, i, j)
        check(h, b, i, j, np.int32(rng.integers(-100, 100)))
    c = rand_array(rng, np.uint8, (2, 3, 4))
    k = jit(get3, target)
    for _ in range(N):
        i, j, l = (int(v) for v in rng.integers(-5, 5, 3))
        check(k, c, i, j, l)
    check(jit(get1, target), a, np.int16(-2))
    check(jit(get1, target), a, np.uint8(4))


def test_boundscheck_false(target, rng):
    """boundscheck=False skips the check; in-range (and negative) indices
    still work."""
    b = rand_array(rng, np.float32, (4, 6))[::-1, 1::2]
    g = jit(get2, target, boundscheck=False)
    for _ in range(N):
        i = int(rng.integers(-b.shape[0], b.shape[0]))
        j = int(rng.integers(-b.shape[1], b.shape[1]))
        check(g, b, i, j)


def store_cast(a, v):
    a[0] = v
    a[1] = v * 2


@pytest.mark.parametrize("dt", ALL_DTYPES[1:11], ids=lambda d: np.dtype(d).name)
def test_store_cast(target, rng, dt):
    """Values stored into an array are cast to its dtype as NumPy does."""
    a = np.zeros(3, dtype=dt)
    for src in (np.float64, np.int64, np.float32, np.int8):
        f = jit(store_cast, target)
        for v in rand_scalars(rng, src, 10, specials=False):
            if np.dtype(dt).kind in "iu" and np.dtype(src).kind == "f":
                # float -> int outside the target's range is undefined in NumPy
                lo = 0 if np.dtype(dt).kind == "u" else -60
                if not lo <= v < 60:
                    continue
            if np.dtype(dt).kind in "iu" and np.dtype(src).kind in "iu":
                # NumPy raises for ints that do not fit; kiln wraps (documented)
                info = np.iinfo(dt)
                with np.errstate(all="ignore"):
                    twice = v * 2
                if not (info.min <= v <= info.max and info.min <= twice <= info.max):
                    continue
            check(f, a, v)
    f = jit(store_cast, target)
    for v in (1, 2, 3, 50):
        check(f, a, v)
    f = jit(store_cast, target)
    for v in (1.25, 3.5, 0.0):
        check(f, a, v)


def test_store_int_wraps(target):
    """Documented difference: an integer that does not fit the element type
    wraps when stored (NumPy raises OverflowError)."""
    a = np.zeros(3, dtype=np.int8)
    b = np.zeros(3, dtype=np.uint16)
    if JIT_DISABLED:                    # what NumPy does instead
        with pytest.raises(OverflowError):
            store_cast(a, np.int64(300))
        return
    jit(store_cast, target)(a, np.int64(300))
    assert a.tolist() == [44, 88, 0]
    jit(store_cast, target)(b, np.int32(-1))
    assert b.tolist() == [65535, 65534, 0]


def test_store_nan_into_int_array(target):
    """Documented difference: storing NaN into an int array raises
    (NumPy stores an arbitrary value with a warning)."""
    a = np.zeros(3, dtype=np.int32)
    check_raises(jit(store_cast, target), ValueError,
                 "cannot convert float NaN to integer", a, np.float64("nan"))
    check(jit(store_cast, target), a, float("nan"))


def shape_attrs(a):
    return a.shape[0] * 1000000 + a.size * 1000 + a.ndim * 100 + len(a)


def shape_index(a, k):
    return a.shape[k]


def shape_unpack3(a):
    x, y, z = a.shape
    return x * 100 + y * 10 + z + len(a.shape)


def test_shape_size_ndim(target, rng):
    for shape in [(5,), (3, 4), (2, 3, 4), (1, 1, 1, 7)]:
        a = rand_array(rng, np.float32, shape)
        check(jit(shape_attrs, target), a)
        f = jit(shape_index, target)
        for k in range(-len(shape) - 2, len(shape) + 2):
            check(f, a, k)
    check(jit(shape_unpack3, target), rand_array(rng, np.int8, (2, 3, 4)))
    check(jit(shape_attrs, target), np.zeros((0, 3)))


# ---------------------------------------------------------------------------
# raise and assert


class KernelError(Exception):
    pass


def raiser(x):
    if x < 0:
        raise ValueError("x must not be negative")
    if x == 0:
        raise ZeroDivisionError
    if x == 1:
        raise KernelError("custom failure")
    if x == 2:
        raise IndexError("bad index")
    if x > 100:
        raise OverflowError("too big")
    return x * 2


def asserter(x):
    assert x != 3
    assert x < 10, "x is too large"
    return x


def raise_in_callee(a, i):
    return checked(a, i) + 1


def checked(a, i):
    if a[i] < 0:
        raise ArithmeticError("negative element")
    return a[i]


def test_raise(target):
    f = jit(raiser, target)
    for x in (-5, 0, 1, 2, 3, 101):
        check(f, x)
    g = jit(asserter, target)
    for x in (1, 3, 10, 9):
        check(g, x)
    h = jit(raise_in_callee, target)
    a = np.array([1.5, -2.0])
    for i in (0, 1, 2, -3):
        check(h, a, i)


# ---------------------------------------------------------------------------
# prange


def prange_fill(a, b):
    for i in prange(a.shape[0]):
        b[i] = a[i] * 2 + 1


def prange_2d(a):
    for i in prange(a.shape[0]):
        for j in range(a.shape[1]):
            a[i, j] = a[i, j] * 3 - i + j


def prange_reduce(a):
    s = 0
    m = a[0]
    p = 1
    for i in prange(1, a.shape[0]):
        s += a[i]
        p *= -1
        m = max(m, a[i])
    return s * 7 + m + p


def prange_step(a, start, stop, step):
    for i in prange(start, stop, step):
        a[i] += 1


def test_prange(target, rng):
    a = rand_array(rng, np.int32, (100,))
    check(jit(prange_fill, target), a, np.zeros(100, np.int32))
    check(jit(prange_2d, target), rand_array(rng, np.float64, (17, 5)))
    check(jit(prange_reduce, target), rand_array(rng, np.int64, (1000,)) // 4)
    f = jit(prange_step, target)
    for args in [(0, 10, 3), (9, -1, -2), (0, 10, 0), (5, 2, 1)]:
        check(f, np.zeros(10, np.int16), *args)


def scale_view(a):
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            a[i, j] = a[i, j] * 3 + 1


def test_writes_stay_in_view(target, rng):
    """Writing through a strided view touches only the view's elements
    (the bytes between them are compared too)."""
    f = jit(scale_view, target)
    for dt in (np.int8, np.float32, np.complex128):
        base = rand_array(rng, dt, (7, 9))
        fbase = np.asfortranarray(rand_array(rng, dt, (6, 5)))
        for b, view in ((base, lambda b: b[1::3, ::-2]),
                        (base, lambda b: b.T[2:7:2, 1:]),
                        (fbase, lambda b: b[::2, 1::2])):
            mine, theirs = b.copy(order="K"), b.copy(order="K")
            with np.errstate(all="ignore"):
                f(view(mine))
                reference(f)(view(theirs))
            if target != "vulkan":
                assert mine.tobytes(order="A") == theirs.tobytes(order="A")
                continue
            # a GPU may give a NaN another sign bit (docs/gpu.md): the
            # view's values compare NaN-blind, every other byte exactly
            inside = np.zeros(b.shape, bool)
            view(inside)[...] = True
            assert mine[~inside].tobytes() == theirs[~inside].tobytes()
            m, t = mine[inside], theirs[inside]
            same = (m == t) | ((m != m) & (t != t))
            assert same.all(), (m[~same], t[~same])
