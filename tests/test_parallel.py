"""prange against CPython: parallel loops writing arrays, every range form,
reductions into scalars, exceptions raised inside the parallel body, the
loops kiln refuses to parallelise, and the thread-count API.

The oracle is the undecorated function run by CPython (`fn.py_func`), where
`prange` is `range`.  Array results and integer reductions must be identical.
Float and complex `+`/`-`/`*` reductions are compared within a tight error
bound instead: kiln gives each fixed chunk of the iteration space its own
partial (starting from the operator's identity) and combines the partials
in chunk order, so a float sum is reassociated -- CPython adds
left to right, kiln adds within chunks and then adds the chunk sums.  The
chunking depends only on the iteration count, so kiln's result has the same
bits for every thread count and every run (tested below); it just is not
CPython's left-to-right rounding.  Where no rounding can happen (sums of
small integers held in floats, min/max, products of powers of two) the
comparison is exact again.

After an exception inside a parallel loop, array contents are not compared:
iterations in other chunks may have run before the loop stopped, where
CPython stops at the failing iteration.  The exception itself (type and
message) must be the one CPython raises, i.e. the lowest failing iteration's.

PYTEST_DONT_REWRITE: kernels here are compiled by kiln.
"""

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

import kiln
from kiln import prange
from conftest import JIT_DISABLED, call, check, jit, rand_array, reference

needs_jit = pytest.mark.skipif(
    JIT_DISABLED, reason="compiled behaviour only (KILN_DISABLE_JIT=1)")

THREAD_COUNTS = (1, 2, 3, 7)

# iteration counts around the chunking's edges: kiln splits n iterations
# into at most 256 chunks of ceil(n / 256) iterations
SIZES = (0, 1, 2, 7, 255, 256, 257, 1000, 4099)


@pytest.fixture
def threads():
    """Restores the thread count after the test."""
    old = kiln.get_num_threads()
    try:
        yield
    finally:
        kiln.set_num_threads(old)


def dtype_of(x):
    """The dtype a scalar result stands for (Python float -> float64...)."""
    return np.asarray(x).dtype


def same_exception(fn, *args):
    """Asserts compiled fn raises what CPython raises on args (same type and
    message) without comparing arrays afterwards; returns the exception."""
    exp = call(reference(fn), *args)
    got = call(fn, *args)
    assert exp.exception is not None, f"CPython did not raise: {exp!r}"
    e, g = exp.exception, got.exception
    assert g is not None and type(g) is type(e) and str(g) == str(e), \
        f"expected {exp!r}, kiln {got!r}"
    return e


# ---------------------------------------------------------------------------
# loops writing arrays


def fill_1d(a, b):
    for i in prange(a.shape[0]):
        b[i] = a[i] * 3 - i


def fill_2d(a, out):
    for i in prange(a.shape[0]):
        for j in range(a.shape[1]):
            out[i, j] = a[i, j] * 2.0 + i * j - a[i, a.shape[1] - 1 - j]


def fill_stop(out, n):
    for i in prange(n):
        out[i] = i * 7 + 1


def fill_start_stop(out, start, stop, off):
    for i in prange(start, stop):
        out[i + off] = i * 5 - 3


def check_stops(target, fn, *args):
    """check(fn, *args), except that on "vulkan", where the iterations of a
    prange that do not raise run on (docs/gpu.md), a raise is compared
    without the arrays."""
    if target != "vulkan" or JIT_DISABLED:
        return check(fn, *args)
    exp = call(reference(fn), *args)
    if exp.exception is None:
        return check(fn, *args)
    got = call(fn, *args).exception
    assert type(got) is type(exp.exception), (exp, got)
    assert str(got) == str(exp.exception), (exp, got)


def fill_start_stop_step(out, start, stop, step, off):
    for i in prange(start, stop, step):
        out[i + off] = i * 3 + 2


def fill_computed_step(out):
    step = out.shape[0] // 10 + 1
    for i in prange(out.shape[0] - 1, -1, -step):
        out[i] = i + step


def test_fill_1d(target, rng):
    for n in SIZES:
        a = rand_array(rng, np.int32, (n,))
        check(jit(fill_1d, target), a, np.zeros(n, np.int64))
    a = rand_array(rng, np.float64, (300,))
    check(jit(fill_1d, target), a, np.zeros(300, np.float64))


def test_fill_2d(target, rng):
    f = jit(fill_2d, target)
    for shape in [(0, 3), (1, 1), (3, 0), (5, 7), (257, 3), (40, 33)]:
        check(f, rand_array(rng, np.float64, shape), np.zeros(shape))


def test_strided_arrays(target, rng):
    f = jit(fill_1d, target)
    a = rand_array(rng, np.int64, (900,))
    check(f, a[::3], np.zeros(600, np.int64)[::2])
    check(f, a[::-1], np.zeros(900, np.int64))
    check(f, a[5:800:7], np.zeros(1200, np.int64)[-1:0:-4][:114])
    g = jit(fill_2d, target)
    m = rand_array(rng, np.float64, (60, 80))
    check(g, m[::2, ::3], np.zeros((90, 27))[::3])
    check(g, m.T, np.zeros((80, 60), order="F"))
    check(g, m[::-1, 1::2], np.zeros((60, 40)))


def test_range_forms(target, rng):
    n = 64
    off = n // 2
    stop = jit(fill_stop, target)
    for k in (0, 1, 5, n, -3):
        check(stop, np.zeros(n, np.int64), k)
    two = jit(fill_start_stop, target)
    three = jit(fill_start_stop_step, target)
    for _ in range(40):
        # start and stop anywhere in [-off, n - off]: indices i + off stay
        # in range and distinct, including empty and reversed ranges
        lo, hi = (int(v) for v in rng.integers(-off, n - off + 1, 2))
        step = int(rng.choice([-7, -3, -2, -1, 1, 2, 3, 5, 64, -64]))
        check_stops(target, two, np.zeros(n, np.int64), lo, hi, off)
        check_stops(target, three, np.zeros(n, np.int64), lo, hi, step, off)
    for lo, hi, step in [(0, 0, 1), (5, 5, -1), (3, 9, -1), (9, 3, 2),
                         (-off, n - off, 1), (n - off - 1, -off - 1, -1),
                         (-off, n - off, n), (n - off - 1, -off, -n)]:
        check(three, np.zeros(n, np.int64), lo, hi, step, off)
    check(three, np.zeros(n, np.int64), 0, 10, 0, off)   # step 0: ValueError
    f = jit(fill_computed_step, target)
    for n in (0, 1, 9, 10, 11, 100, 1001):
        check(f, np.zeros(n, np.int64))


def count_iterations(start, stop, step):
    s = 0
    for i in prange(start, stop, step):
        s += 1
    return s


def test_iteration_counts(target, rng):
    f = jit(count_iterations, target)
    for _ in range(50):
        lo, hi = (int(v) for v in rng.integers(-10**6, 10**6, 2))
        step = int(rng.integers(1, 1000)) * int(rng.choice([-1, 1]))
        check(f, lo, hi, step)
    for args in [(0, 2**63 - 1, 2**62), (2**63 - 1, 0, -2**62),
                 (-2**63, 0, 2**61), (-1, -2**63, -2**62 - 1),
                 (2**63 - 10, 2**63 - 1, 3), (-2**63, -2**63 + 10, 4)]:
        check(f, *args)


def test_iteration_counts_beyond_int64(target):
    f = jit(count_iterations, target)
    for args in [(-2**63, 2**63 - 1, 2**61), (2**63 - 1, -2**63, -2**61),
                 (-5, 2**63 - 1, 2**62), (0, -2**63, -2**62 - 1)]:
        check(f, *args)


def continue_in_prange(a, out):
    for i in prange(a.shape[0]):
        if a[i] < 0:
            continue
        out[i] = a[i] + 1
    else:
        out[0] = -1


def break_in_inner_loop(a, out):
    for i in prange(a.shape[0]):
        k = 0
        for j in range(a.shape[1]):
            if a[i, j] < 0:
                break
            k += 1
        out[i] = k


def test_continue_else_inner_break(target, rng):
    a = rand_array(rng, np.int16, (300,))
    check(jit(continue_in_prange, target), a, np.zeros(300, np.int16))
    m = rand_array(rng, np.int8, (70, 9))
    check(jit(break_in_inner_loop, target), m, np.zeros(70, np.int64))


def prange_in_while(a, rounds):
    r = 0
    total = 0
    while r < rounds:
        for i in prange(a.shape[0]):
            a[i] = a[i] * 3 + r
        s = 0
        for i in prange(a.shape[0]):
            s += a[i] & 255
        total += s * (r + 1)
        r += 1
    return total


def test_prange_in_while_and_repeated_calls(target, rng):
    f = jit(prange_in_while, target)
    for _ in range(25):
        n = int(rng.integers(0, 600))
        check(f, rand_array(rng, np.int64, (n,)), int(rng.integers(0, 5)))


def helper_scale(a, k):
    for i in prange(a.shape[0]):
        a[i] = a[i] * k


def helper_row_sum(m, i):
    s = 0
    for j in prange(m.shape[1]):
        s += m[i, j]
    return s


def calls_helpers(m, out):
    for r in range(m.shape[0]):
        helper_scale(out, 3)
    for i in prange(m.shape[0]):
        out[i] += helper_row_sum(m, i)     # the helper's prange runs serially


def test_prange_in_helper(target, rng):
    f = jit(calls_helpers, target)
    for shape in [(0, 4), (1, 1), (5, 300), (300, 5)]:
        m = rand_array(rng, np.int32, shape)
        check(f, m, rand_array(rng, np.int64, (shape[0],)))


def nested_prange(a, out):
    for i in prange(a.shape[0]):
        for j in prange(a.shape[1]):
            out[i, j] = a[i, j] * i - j


def nested_prange_reduce(a, out):
    t = 0.0
    for i in prange(a.shape[0]):
        s = 0
        for j in prange(a.shape[1]):
            s += a[i, j]
        out[i] = s
        t += s
    return t


def test_nested_prange(target, rng):
    for shape in [(0, 0), (3, 0), (17, 33), (300, 4)]:
        check(jit(nested_prange, target), rand_array(rng, np.int64, shape),
              np.zeros(shape, np.int64))
        # integer-valued floats: exact sums whatever the order
        a = rng.integers(-1000, 1000, shape).astype(np.float64)
        check(jit(nested_prange_reduce, target), a, np.zeros(shape[0]))


# ---------------------------------------------------------------------------
# reductions


def red_add(a, s):
    for i in prange(a.shape[0]):
        s += a[i]
    return s


def red_sub(a, s):
    for i in prange(a.shape[0]):
        s -= a[i]
    return s


def red_mul(a, s):
    for i in prange(a.shape[0]):
        s *= a[i]
    return s


def red_min(a, s):
    for i in prange(a.shape[0]):
        s = min(s, a[i])
    return s


def red_max(a, s):
    for i in prange(a.shape[0]):
        s = max(s, a[i])
    return s


def red_or(a, s):
    for i in prange(a.shape[0]):
        s |= a[i]
    return s


def red_and(a, s):
    for i in prange(a.shape[0]):
        s &= a[i]
    return s


def red_xor(a, s):
    for i in prange(a.shape[0]):
        s ^= a[i]
    return s


def red_add_spelled(a):
    s = 0
    for i in prange(a.shape[0]):
        s = s + a[i] * 2
        s = a[i] + s            # + commutes: either side
    return s


INT_REDUCTIONS = [red_add, red_sub, red_mul, red_min, red_max, red_or,
                  red_and, red_xor]
INT_TYPES = [np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64,
             np.uint64]


@pytest.mark.parametrize("dt", INT_TYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", INT_REDUCTIONS, ids=lambda f: f.__name__)
def test_int_reductions(target, rng, op, dt):
    """Exactly CPython's value, including wrap-around, for any initial value
    (identity or not)."""
    f = jit(op, target)
    for n in SIZES:
        a = rand_array(rng, dt, (n,))
        if op is red_and:   # all bits set but at most one: not just 0
            a = ~(rng.integers(0, 2, n) << rng.integers(0, 8, n)).astype(dt)
        for s0 in (dt(0), dt(1), dt(-1 & np.iinfo(dt).max),
                   rand_array(rng, dt, (1,))[0]):
            check(f, a, s0)


def test_int64_product_wraps(target, rng):
    f = jit(red_mul, target)
    for n in (3, 100, 1000, 5000):
        a = rng.integers(-2**62, 2**62, n) | 1          # odd: never 0
        with np.errstate(over="ignore"):
            assert reference(f)(a, np.int64(1)) != 0
        check(f, a, np.int64(1))
        check(f, a, np.int64(-3))
        check(f, a, 7)          # Python int start: int64 like CPython's


def test_python_int_start(target, rng):
    for op in INT_REDUCTIONS:
        f = jit(op, target)
        a = rand_array(rng, np.int64, (513,))
        check(f, a, 0)
        check(f, a, -12345)
    check(jit(red_add_spelled, target), rand_array(rng, np.int32, (777,)))


def test_bool_reductions(target, rng):
    for op in (red_or, red_and, red_xor):
        f = jit(op, target)
        for n in (0, 1, 300, 1000):
            for p in (0.0, 0.002, 0.5, 0.998, 1.0):
                a = rng.random(n) < p
                check(f, a, np.bool_(False))
                check(f, a, np.bool_(True))


def float_error_bound(a, s0, dt):
    """A bound on |kiln - CPython| for a sum over a with start s0: each of the
    two summation orders is off the exact sum by at most (n + 1) * u *
    sum(|terms|) (u the unit roundoff; kiln adds at most n + 1 times along
    any path: within a chunk, then across chunks)."""
    u = np.finfo(dt).eps / 2
    mag = float(np.sum(np.abs(a.astype(np.float64)))) + abs(float(s0))
    n = a.size
    return 2 * (n + 1) * float(u) * mag * 1.01


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("op", [red_add, red_sub])
def test_float_sums(target, rng, op, dt):
    f = jit(op, target)
    for n in SIZES:
        for a in (rng.standard_normal(n).astype(dt) * dt(100),
                  rng.random(n).astype(dt)):
            for s0 in (dt(0.0), dt(rng.standard_normal() * 1000)):
                got, exp = f(a.copy(), s0), reference(f)(a.copy(), s0)
                assert dtype_of(got) == dtype_of(exp), (got, exp)
                assert abs(float(got) - float(exp)) <= float_error_bound(a, s0, dt), \
                    (n, got, exp)


def test_float_sums_exact_when_exact(target, rng):
    """Integer-valued floats (sums stay below 2**24): no rounding in any
    order, so kiln's result is CPython's bit for bit."""
    for op in (red_add, red_sub):
        f = jit(op, target)
        for dt in (np.float32, np.float64):
            for n in SIZES:
                a = rng.integers(-64, 64, n).astype(dt)
                check(f, a, dt(0.0))
                check(f, a, dt(-17.0))
                if dt is np.float64:    # a Python float start (float32: one
                    check(f, a, 3.0)    # type per variable, documented)


def test_float_sum_signed_zeros(target):
    """-0.0 is the identity of +: an all--0.0 sum keeps its sign."""
    f, g = jit(red_add, target), jit(red_sub, target)
    for n in (0, 1, 5, 300, 2000):
        for z in (0.0, -0.0):
            for s0 in (0.0, -0.0):
                a = np.full(n, z)
                check(f, a, s0)
                check(g, a, s0)
                check(f, a.astype(np.float32), np.float32(s0))


def test_float_products(target, rng):
    f = jit(red_mul, target)
    for n in SIZES:
        # powers of two: exact in any order (no overflow at these sizes)
        a = np.ldexp(1.0, rng.integers(-2, 3, n)) * rng.choice([-1.0, 1.0], n)
        check(f, a, 1.0)
        check(f, a, -0.75)
        # general values near 1: reassociated rounding, bounded relative error
        b = 1.0 + rng.standard_normal(n) * 0.01
        got, exp = f(b, 2.5), reference(f)(b, 2.5)
        assert dtype_of(got) == dtype_of(exp)
        assert abs(got - exp) <= abs(exp) * 2 * (n + 1) * 2.0**-53 * 1.01


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("op", [red_min, red_max], ids=["min", "max"])
def test_float_min_max_exact(target, rng, op, dt):
    """min/max never round: CPython's value exactly, NaN, inf and signed
    zeros included (Python's min(s, x) keeps s unless x < s, so a NaN
    element is skipped and ties keep the earlier value)."""
    f = jit(op, target)
    for n in SIZES:
        a = rand_array(rng, dt, (n,))
        for s0 in (dt(np.inf), dt(-np.inf), dt(0.0), dt(-0.0), a[0] if n else dt(1)):
            check(f, a, s0)
    zeros = np.array([0.0, -0.0] * 300, dt)
    for s0 in (dt(1.0), dt(-1.0), dt(0.0), dt(-0.0)):
        check(f, zeros, s0)
        check(f, zeros[::-1], s0)
        check(f, zeros[1:], s0)


def red_min_swapped(a, s):
    for i in prange(a.shape[0]):
        s = min(a[i], s)
    return s


def red_max_swapped(a, s):
    for i in prange(a.shape[0]):
        s = max(a[i], s)
    return s


def test_int_min_max_swapped(target, rng):
    for op in (red_min_swapped, red_max_swapped):
        f = jit(op, target)
        for n in SIZES:
            check(f, rand_array(rng, np.int64, (n,)), np.int64(0))


@needs_jit
@pytest.mark.parametrize("op", [red_min_swapped, red_max_swapped],
                         ids=["min", "max"])
def test_float_min_max_swapped(target, op):
    """s = min(x, s) keeps the later of equal values (-0.0 vs 0.0) and
    restarts after a NaN, which chunks cannot reproduce: a CompileError
    asks for min(s, x)."""
    f = jit(op, target)
    with pytest.raises(kiln.CompileError, match=r"s = min\(s, x\)"):
        f(np.array([1.0, 0.0, 2.0, -0.0, 3.0] * 100), np.inf)


def test_complex_sums(target, rng):
    for op in (red_add, red_sub):
        f = jit(op, target)
        for dt in (np.complex64, np.complex128):
            part = np.float32 if dt is np.complex64 else np.float64
            for n in SIZES:
                a = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dt)
                s0 = dt(complex(*rng.standard_normal(2)))
                got, exp = f(a.copy(), s0), reference(f)(a.copy(), s0)
                assert dtype_of(got) == dtype_of(exp)
                for g, e, comp in ((got.real, exp.real, a.real),
                                   (got.imag, exp.imag, a.imag)):
                    bound = float_error_bound(comp, abs(s0), part)
                    assert abs(float(g) - float(e)) <= bound, (n, got, exp)
                # Gaussian integers: exact in any order
                b = (rng.integers(-50, 50, n) + 1j * rng.integers(-50, 50, n)).astype(dt)
                check(f, b, dt(2 - 3j))


def red_conditional(a, out):
    s = 0
    t = 0.0
    m = -1
    for i in prange(a.shape[0]):
        if a[i] > 0:
            s += a[i]
        elif a[i] < -50:
            s -= 2 * a[i]
        else:
            m = max(m, a[i])
            if a[i] % 3 == 0:
                t += 0.5
    out[0] = s
    out[1] = t
    out[2] = m


def red_conditional_sum(a, b):
    s = 0
    for i in prange(a.shape[0]):
        if a[i] > 0:
            s += a[i]
    b[0] = s


def red_many(a, b, out, fout):
    s = 0
    p = 1
    lo = a[0]
    hi = a[0]
    x = 0
    o = 0
    cnt = 0
    f = 0.0
    for i in prange(a.shape[0]):
        s += a[i]
        p *= a[i] | 1
        lo = min(lo, a[i])
        hi = max(hi, a[i])
        x ^= a[i] * i
        o |= a[i] & 0xF0
        f = max(f, b[i])
        if a[i] > 0:
            cnt += 1
    out[0] = s
    out[1] = p
    out[2] = lo
    out[3] = hi
    out[4] = x
    out[5] = o
    out[6] = cnt
    fout[0] = f


def red_non_identity(a, n0, out):
    s = n0 * 3 + 1
    p = -2
    m = 1000
    for i in prange(a.shape[0]):
        s += a[i]
        p *= (a[i] & 6) | 1     # an int64: wraps as in CPython
        m = min(m, a[i])
    out[0] = s
    out[1] = p
    out[2] = m


def test_conditional_and_multiple_reductions(target, rng):
    for n in SIZES[1:]:
        a = rand_array(rng, np.int64, (n,)) // 1000
        check(jit(red_conditional, target), a, np.zeros(3))
        check(jit(red_conditional_sum, target), a, np.zeros(1, np.int64))
        check(jit(red_many, target), a, rand_array(rng, np.float64, (n,)),
              np.zeros(7, np.int64), np.zeros(1))
        check(jit(red_non_identity, target), rand_array(rng, np.int64, (n,)),
              int(rng.integers(-100, 100)), np.zeros(3, np.int64))


def sum_through_inner_loop(m):
    t = 0
    for i in prange(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j] > 0:
                t += m[i, j]
    return t


def test_reduction_through_inner_loop(target, rng):
    f = jit(sum_through_inner_loop, target)
    for shape in [(0, 5), (5, 0), (1, 7), (300, 3), (7, 300)]:
        check(f, rand_array(rng, np.int64, shape))


# ---------------------------------------------------------------------------
# determinism across thread counts and runs


def many_float_reductions(a, b, c, out, zout):
    s = 0.0
    d = 0.0
    p = 1.0
    z = 0j
    lo = b[0]
    for i in prange(a.shape[0]):
        s += a[i]
        d -= a[i] * b[i]
        p *= 1.0 + b[i] * 1e-3
        z += c[i]
        lo = min(lo, b[i])
    out[0] = s
    out[1] = d
    out[2] = p
    out[3] = lo
    zout[0] = z


def float32_sum(a, s):
    for i in prange(a.shape[0]):
        s += a[i] * a[i]
    return s


def float_results(f, a, b, c):
    """many_float_reductions' results, as bytes."""
    out, zout = np.zeros(4), np.zeros(1, np.complex128)
    f(a, b, c, out, zout)
    return out.tobytes() + zout.tobytes()


@needs_jit
def test_same_bits_any_thread_count(threads, rng):
    f = jit(many_float_reductions)
    g = jit(float32_sum)
    for n in (257, 1000, 100003):
        a = rng.standard_normal(n) * 10.0 ** rng.integers(-5, 6, n)
        b = rng.standard_normal(n)
        c = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * 1e4
        a32 = a.astype(np.float32)
        ref = ref32 = None
        for t in THREAD_COUNTS:
            kiln.set_num_threads(t)
            assert kiln.get_num_threads() == t
            for _ in range(3):
                got = float_results(f, a, b, c)
                r32 = g(a32, np.float32(0.0))
                assert type(r32) is np.float32
                got32 = r32.tobytes()
                if ref is None:
                    ref, ref32 = got, got32
                assert got == ref, f"n={n}, {t} threads"
                assert got32 == ref32, f"n={n}, {t} threads"
        # and close to CPython's
        res, exp = np.zeros(4), np.zeros(4)
        f(a, b, c, res, np.zeros(1, np.complex128))
        reference(f)(a, b, c, exp, np.zeros(1, np.complex128))
        assert abs(res[0] - exp[0]) <= float_error_bound(a, 0.0, np.float64)
        assert res[3] == exp[3]


@needs_jit
def test_results_identical_any_thread_count(threads, rng):
    """Arrays, exact reductions and exceptions do not depend on the thread
    count either: each count agrees with CPython."""
    m = rand_array(rng, np.float64, (97, 13))
    a = rand_array(rng, np.int64, (5000,))
    idx = np.arange(3000)
    idx[[2900, 1700, 2222]] = [3000, 3001, 3002]
    for t in THREAD_COUNTS:
        kiln.set_num_threads(t)
        check(jit(fill_2d), m, np.zeros(m.shape))
        check(jit(red_many), a, m.ravel().repeat(5)[:5000],
              np.zeros(7, np.int64), np.zeros(1))
        check(jit(red_mul), a | 1, np.int64(1))
        assert "3001" in str(same_exception(jit(gather), idx, np.zeros(3000)))


# ---------------------------------------------------------------------------
# exceptions inside prange


def gather(idx, out):
    for i in prange(idx.shape[0]):
        out[i] = idx[idx[i]] * 2 + 1


def divide(out, k):
    for i in prange(out.shape[0]):
        out[i] = 1000 // (i - k)


def true_divide(out, k):
    for i in prange(out.shape[0]):
        out[i] = 1.0 / (i - k)


def user_raise(a):
    s = 0
    for i in prange(a.shape[0]):
        if a[i] == 1:
            raise ValueError("element is one")
        if a[i] == 2:
            raise KeyError("element is two")
        s += a[i]
    return s


def mixed_failures(idx, k, out):
    s = 0
    for i in prange(idx.shape[0]):
        v = out[idx[i]] + 7 // (i - k)
        if v > 1000:
            raise OverflowError("too big")
        s += v
    return s


def failing_helper(x):
    if x < 0:
        raise ArithmeticError("negative in helper")
    return x * 2


def raise_in_inner(m, out):
    for i in prange(m.shape[0]):
        for j in range(m.shape[1]):
            out[i] += failing_helper(m[i, j])


@needs_jit
def test_index_error(target, rng, threads):
    f = jit(gather, target)
    for t in (1, 2, 3):
        kiln.set_num_threads(t)
        for n in (1, 10, 300, 5000):
            idx = np.arange(n)[::-1].copy()
            bad = np.sort(rng.choice(n, min(n, 4), replace=False))
            idx[bad] = n + 10 + bad          # several failing iterations
            e = same_exception(f, idx, np.zeros(n))
            assert str(n + 10 + bad[0]) in str(e)
            idx2 = idx.copy()
            idx2[bad] = -n - 1 - bad         # negative indices too
            same_exception(f, idx2, np.zeros(n))
        # the pool still works
        idx = rng.permutation(1000)
        check(f, idx, rand_array(rng, np.float64, (1000,)))


@needs_jit
def test_zero_division(target, threads):
    f, g = jit(divide, target), jit(true_divide, target)
    for t in (1, 2, 7):
        kiln.set_num_threads(t)
        for n, k in ((1, 0), (10, 9), (1000, 0), (1000, 999), (1000, 517)):
            same_exception(f, np.zeros(n, np.int64), k)
            same_exception(g, np.zeros(n), k)
        check(f, np.zeros(1000, np.int64), -1)
        check(g, np.zeros(1000), 5000)


@needs_jit
def test_user_raise(target, rng, threads):
    f = jit(user_raise, target)
    for t in (1, 3):
        kiln.set_num_threads(t)
        for n in (5, 300, 4000):
            for _ in range(4):
                a = rng.integers(3, 100, n)
                i1, i2 = rng.choice(n, 2, replace=False)
                a[i1], a[i2] = 1, 2
                a[rng.integers(max(i1, i2), n):] = rng.integers(1, 3)
                e = same_exception(f, a)
                assert type(e) is (ValueError if i1 < i2 else KeyError)
        check(f, rng.integers(3, 100, 4000))


@needs_jit
def test_lowest_failing_iteration_wins(target, rng, threads):
    """Different exceptions in different chunks: CPython's (the lowest
    iteration's) is the one reported, whatever the thread count."""
    f = jit(mixed_failures, target)
    n = 3000
    for t in THREAD_COUNTS:
        kiln.set_num_threads(t)
        for _ in range(6):
            idx = rng.permutation(n)
            out = np.zeros(n, np.int64)
            bad_index, k, big = (int(v) for v in rng.choice(n, 3, replace=False))
            idx[bad_index] = n + 5
            out[idx[big] if idx[big] < n else 0] = 5000
            same_exception(f, idx, k, out)
            same_exception(f, idx, -1, out)
            idx[bad_index] = 0
            same_exception(f, idx, k, out)


@needs_jit
def test_raise_from_inner_loop_and_helper(target, rng):
    f = jit(raise_in_inner, target)
    m = rng.integers(0, 10, (200, 6))
    check(f, m, np.zeros(200, np.int64))
    m[150, 3] = -1
    m[170, 0] = -5
    same_exception(f, m, np.zeros(200, np.int64))


@needs_jit
def test_many_failing_calls_then_success(target, rng, threads):
    """No hang, no leaked state: the pool keeps working after exceptions."""
    f = jit(gather, target)
    g = jit(red_many, target)
    kiln.set_num_threads(2)
    idx = np.arange(2000)
    idx[[5, 1999]] = 2000
    for _ in range(50):
        same_exception(f, idx, np.zeros(2000))
    a = rand_array(rng, np.int64, (2000,))
    check(g, a, rng.standard_normal(2000), np.zeros(7, np.int64), np.zeros(1))
    check(f, rng.permutation(2000), np.zeros(2000))


# ---------------------------------------------------------------------------
# loops kiln refuses to parallelise


def bad_break(a):
    for i in prange(a.shape[0]):
        if a[i] < 0:
            break
        a[i] = 1
    a[0] = 5
    return 3


def bad_return(a):
    n = 0
    for i in prange(a.shape[0]):
        if a[i] < 0:
            return i
        n += 1
    return n


def bad_last_value(a):
    last = 0.0
    for i in prange(a.shape[0]):
        last = a[i]
    return last


def bad_recurrence(a):
    s = 0.0
    for i in prange(a.shape[0]):
        s = s * 2 + a[i]
    return s


def bad_mixed_families(a):
    s = 1
    for i in prange(a.shape[0]):
        s += a[i]
        s *= 2
    return s


def bad_reversed_sub(a):
    s = 0
    for i in prange(a.shape[0]):
        s = a[i] - s
    return s


def bad_read_in_loop(a, b):
    s = 0
    for i in prange(a.shape[0]):
        s += a[i]
        b[i] = s
    return s


def bad_read_in_condition(a):
    s = 0
    for i in prange(a.shape[0]):
        if s < 100:
            s += a[i]
    return s


def bad_self_combine(a):
    s = 1
    for i in prange(a.shape[0]):
        s = s + s
    return s


REFUSED = [
    (bad_break, "break inside a prange loop"),
    (bad_return, "inside a prange loop is not supported"),
    (bad_last_value, "must be a reduction"),
    (bad_recurrence, "must be a reduction"),
    (bad_mixed_families, "must be a reduction"),
    (bad_reversed_sub, "must be a reduction"),
    (bad_read_in_loop, "must be a reduction"),
    (bad_read_in_condition, "must be a reduction"),
    (bad_self_combine, "must be a reduction"),
]


def line_of(fn, text):
    lines, first = inspect.getsourcelines(fn)
    for k, line in enumerate(lines):
        if text in line:
            return first + k
    raise AssertionError(text)


@needs_jit
@pytest.mark.parametrize("fn,message", REFUSED, ids=[f.__name__ for f, _ in REFUSED])
def test_compile_errors(target, fn, message):
    f = jit(fn, target)
    args = [np.ones(4)] + [np.zeros(4)] * (fn.__code__.co_argcount - 1)
    with pytest.raises(kiln.CompileError) as info:
        f(*args)
    e = info.value
    assert message in str(e), str(e)
    assert e.filename == __file__
    lines, first = inspect.getsourcelines(fn)
    assert first < e.lineno < first + len(lines), str(e)
    # fails again, the same way, on a second call
    with pytest.raises(kiln.CompileError):
        f(*args)


@needs_jit
@pytest.mark.xfail(strict=True, reason="kiln reports the line of the `if` "
                   "that leads to the `break`")
def test_break_error_points_at_break(target):
    with pytest.raises(kiln.CompileError) as info:
        jit(bad_break, target)(np.ones(4))
    assert info.value.lineno == line_of(bad_break, "break"), str(info.value)


@needs_jit
@pytest.mark.xfail(strict=True, reason="a `break` out of a loop that ends the "
                   "function is reported as a `return` (CPython compiles "
                   "it into one)")
def test_break_at_function_end_error(target):
    with pytest.raises(kiln.CompileError) as info:
        jit(bad_break_at_end, target)(np.ones(4))
    assert "break inside a prange loop" in str(info.value), str(info.value)


def bad_break_at_end(a):
    for i in prange(a.shape[0]):
        if a[i] < 0:
            break
        a[i] = 1


# ---------------------------------------------------------------------------
# thread-count API


def test_thread_api(threads):
    assert isinstance(kiln.get_num_threads(), int)
    assert kiln.get_num_threads() >= 1
    with pytest.raises(ValueError):
        kiln.set_num_threads(0)
    with pytest.raises(ValueError):
        kiln.set_num_threads(-2)
    if not JIT_DISABLED:
        with pytest.raises(ValueError):
            kiln.set_num_threads(257)
    with pytest.raises(TypeError):
        kiln.set_num_threads("2")
    with pytest.raises(TypeError):
        kiln.set_num_threads(2.0)
    if not JIT_DISABLED:
        for t in THREAD_COUNTS:
            kiln.set_num_threads(t)
            assert kiln.get_num_threads() == t
        kiln.set_num_threads(np.int64(2))
        assert kiln.get_num_threads() == 2


@needs_jit
def test_thread_count_from_environment():
    code = ("import kiln, numpy as np\n"
            "print(kiln.get_num_threads())\n"
            "def s(a):\n"
            "    t = 0\n"
            "    for i in kiln.prange(a.shape[0]):\n"
            "        t += a[i]\n"
            "    return t\n"
            "print(kiln.jit(s)(np.arange(10000)))\n"
            "print(kiln.get_num_threads())\n")
    env = dict(os.environ, KILN_NUM_THREADS="3")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [os.path.dirname(os.path.dirname(kiln.__file__)),
                    env.get("PYTHONPATH", "")] if p)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3", str(sum(range(10000))), "3"]
