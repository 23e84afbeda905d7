"""Serial code around `prange` on the Vulkan device (passes/steps.h).

A Vulkan entry function with `prange` loops is split at each outermost
loop into steps, single-invocation dispatches whose values live across a
loop in state cells; the host dispatches each loop between two steps.
These tests run such kernels (serial loops around pranges, values of every
scalar kind crossing them, array elements read and written between them,
exceptions raised before, inside and after them, DeviceArray arguments)
and compare them with CPython running the same function on the same random
inputs: result or exception, and every array afterwards.  Float data are
small dyadic numbers, so that reductions are exact whatever their grouping
and the comparison can be bit for bit.  Kernels whose `prange` sits in a
function they call are checked too.  Skipped when the runtime finds no
Vulkan device.

PYTEST_DONT_REWRITE: kernels here are compiled by kiln (one uses assert).
"""

import numpy as np
import pytest

import kiln
from kiln import prange
from conftest import call, check, jit, rand_array, rand_scalars
from test_vulkan import needs_device

pytestmark = needs_device


def vk(fn):
    return jit(fn, target="vulkan")


def assert_split(f):
    """f's last compiled specialisation runs its serial code on the device
    as steps (so it has no host code)."""
    with pytest.raises(ValueError, match="entirely on the device"):
        f.inspect_llvm(signature=f.signatures[-1])


def dyadic(rng, n, dtype=np.float64, lo=-64, hi=64):
    """n floats k / 8 with small integers k: sums of a few hundred of them
    are exact in float32 and float64, so reductions need no tolerance."""
    return (rng.integers(lo, hi, n) / 8.0).astype(dtype)


def ints(rng, n, dtype=np.int64, lo=-100, hi=100):
    return rng.integers(lo, hi, n).astype(dtype)


def same_exception(f, *args):
    """f raises what CPython raises (type and message); the arrays are not
    compared (after a raise inside a prange their contents are
    unspecified).  Returns the exception."""
    exp = call(f.py_func, *args)
    got = call(f, *args)
    assert exp.exception is not None, exp
    assert got.exception is not None, f"expected {exp!r}, kiln {got!r}"
    assert type(got.exception) is type(exp.exception) \
        and str(got.exception) == str(exp.exception), \
        f"expected {exp!r}, kiln {got!r}"
    return exp.exception


# ---- 1. serial loops around prange, values flowing both ways --------------

def time_steps(a, n):
    k = 1.0
    count = 0
    for t in range(n):
        s = 0.0
        for i in prange(a.shape[0]):
            a[i] = a[i] + k
            s += a[i]
        k = (k * 0.5 + s) % 64.0
        if s > 0:
            count += 1
    return k + count * 1000


def int_steps(a, n):
    k = 3
    hits = 0
    for t in range(n):
        m = 0
        for i in prange(a.shape[0]):
            a[i] = (a[i] * 3 + k) % 1000
            m += a[i] & 1
        k = (k * 7 + m - t) % 1000003
        hits += m
    return k * 1000 + hits


def carried_reduction(a, b, n):
    s = 0
    lo = 1 << 40
    for t in range(n):
        for i in prange(a.shape[0]):
            s += a[i] * (t + 1)         # not reset: the start value carries
            lo = min(lo, a[i] - t)
        for i in prange(b.shape[0]):
            b[i] = b[i] + s % 17 - lo
    return s - lo


def prange_bounds(a, n, j):
    start = j % 5
    step = 1 + n % 3
    total = 0
    for t in range(n):
        stop = a.shape[0] - t
        for i in prange(start, stop, step):
            a[i] = a[i] + t * step
        total += (stop - start + step - 1) // step if stop > start else 0
        start = (start + 1) % 4
    return total


def swap(a, n):
    x = 1
    y = 2
    for t in range(n):
        for i in prange(a.shape[0]):
            a[i] = a[i] * x + y
        x, y = y, x                 # block parameters exchanged
    return x * 10 + y


def test_time_stepping(rng):
    f = vk(time_steps)
    for n in (0, 1, 5, 17):
        check(f, dyadic(rng, int(rng.integers(10, 300))), n)
    assert_split(f)
    check(f, np.zeros(0), 3)
    g = vk(int_steps)
    for n in (0, 1, 9, 40):
        check(g, ints(rng, int(rng.integers(10, 300)), lo=0, hi=1000), n)
    assert_split(g)
    h = vk(swap)
    for n in range(5):
        check(h, ints(rng, int(rng.integers(10, 40)), lo=-5, hi=5), n)
    assert_split(h)


def test_carried_reduction_and_computed_bounds(rng):
    f = vk(carried_reduction)
    for n in (0, 1, 4, 11):
        m = int(rng.integers(10, 200))
        check(f, ints(rng, m), ints(rng, m), n)
    assert_split(f)
    g = vk(prange_bounds)
    for n in (0, 1, 7, 23):
        check(g, ints(rng, int(rng.integers(30, 120))), n,
              int(rng.integers(0, 100)))
    assert_split(g)


# ---- 2. pranges in sequence, array elements in the serial code ------------

def sequence(a, b, j):
    n = a.shape[0]
    for i in prange(n):
        a[i] = a[i] * 2 + 1
    a[0] = a[n - 1] + a[j]
    i0 = a[0] % n
    x = a[i0]
    for i in prange(n):
        b[i] = a[i] - x
    b[n // 2] = x * 3
    y = b[j] + b[i0]
    for i in prange(1, n):
        a[i] = b[i] + b[i - 1]
    a[n - 1] += y
    return y + a[n - 1] - a[i0]


def sequence_f(a, b, w):
    n = a.shape[0]
    lo = a[0]
    for i in prange(n):
        a[i] = a[i] * w
        lo = min(lo, a[i])
    b[0] = lo
    for i in prange(1, n):
        b[i] = a[i] - lo
    b[n - 1] = b[n - 1] * 0.5
    return b[1] + lo


def test_sequence_with_elements_between(rng):
    f = vk(sequence)
    for _ in range(6):
        n = int(rng.integers(10, 300))
        check(f, ints(rng, n), np.zeros(n, np.int64), int(rng.integers(-n, n)))
    assert_split(f)
    g = vk(sequence_f)
    for dt in (np.float32, np.float64):
        n = int(rng.integers(10, 300))
        check(g, dyadic(rng, n, dt), np.zeros(n, dt), float(rng.integers(-3, 4)))
        assert_split(g)


# ---- 3. prange under conditions, in while loops, break/continue, return ---

def conditional(a, n):
    acc = 0
    for t in range(n):
        if t % 3 == 1:
            for i in prange(a.shape[0]):
                a[i] = a[i] + t
        else:
            acc += a[t % a.shape[0]]
    return acc


def while_loop(a, limit):
    t = 0
    total = 0
    while total < limit:
        s = 0
        for i in prange(a.shape[0]):
            a[i] += 1
            s += a[i]
        total += s
        t += 1
        if t > 40:
            break
    else:
        total = -total
    return t * 1000000 + total


def break_continue(a, n, stop):
    out = 0
    for t in range(n):
        m = -1000000
        for i in prange(a.shape[0]):
            a[i] = a[i] - t
            m = max(m, a[i])
        if m % 2 == 0:
            continue
        out += m
        if m < stop:
            break
    else:
        out = -out
    return out


def early_return(a, lim):
    s = 0
    for i in prange(a.shape[0]):
        s += a[i]
    if s > lim:
        return s
    a[0] = s
    for i in prange(a.shape[0]):
        a[i] = a[i] * 2
    if a[1] > lim:
        return a[1]
    for i in prange(a.shape[0]):
        a[i] = a[i] - 1
    return -1


def return_in_loop(a, lim):
    s = 0
    for t in range(30):
        for i in prange(a.shape[0]):
            a[i] += t
            s += a[i]
        if s > lim:
            return t
    return -1


def else_clauses(a, n, stop):
    for t in range(n):
        if t == stop:
            break
        a[t % a.shape[0]] += 1
    else:
        for i in prange(a.shape[0]):
            a[i] = a[i] * 3
    w = n
    while w > 0:
        w -= 3
        if w == stop:
            break
    else:
        for i in prange(a.shape[0]):
            a[i] = a[i] - 1
    return w


def nested_serial(a, n, flag):
    if flag:
        v = 7
    else:
        v = -3
    c = 0
    for t in range(n):
        for u in range(t):
            for i in prange(a.shape[0]):
                a[i] = a[i] + v
            c += u
        v = v * -1 + c % 5
    k = 0
    while k < n:
        k += 2
        if k % 4 == 0:
            continue
        for i in prange(a.shape[0]):
            a[i] = a[i] - k
    return c + v * 100 + k


def test_prange_in_branches(rng):
    f = vk(conditional)
    for n in (0, 2, 3, 10, 31):
        check(f, ints(rng, int(rng.integers(10, 100))), n)
    assert_split(f)
    g = vk(nested_serial)
    for n in (0, 1, 5, 8):
        check(g, ints(rng, int(rng.integers(10, 100))), n, bool(rng.integers(2)))
    assert_split(g)


def test_prange_in_while_with_break(rng):
    f = vk(while_loop)
    for limit in (-5, 0, 100, 5000, 10**6, 10**9):
        check(f, ints(rng, int(rng.integers(10, 200)), lo=-3, hi=10), limit)
    assert_split(f)
    g = vk(break_continue)
    for _ in range(8):
        check(g, ints(rng, int(rng.integers(10, 200))), int(rng.integers(0, 40)),
              int(rng.integers(-300, 100)))
    assert_split(g)


def test_early_return(rng):
    f = vk(early_return)
    for _ in range(8):
        a = ints(rng, int(rng.integers(10, 200)))
        check(f, a, int(a.sum()) + int(rng.integers(-20, 20)))
        check(f, a, int(rng.integers(-1000, 1000)))
    assert_split(f)
    g = vk(return_in_loop)
    for lim in (-1, 0, 100, 10000, 10**9):
        check(g, ints(rng, int(rng.integers(10, 100)), lo=-5, hi=20), lim)
    assert_split(g)


def test_prange_in_else_clauses(rng):
    f = vk(else_clauses)
    for n in range(0, 12):
        for stop in (-1, 2, 5):
            check(f, ints(rng, int(rng.integers(10, 40))), n, stop)
    assert_split(f)


# ---- 4. every scalar kind across a prange ----------------------------------

def kinds_cross(a, x, y, n):
    lo = min(x, y)
    hi = max(x, y)
    same = x == y
    for t in range(n):
        for i in prange(a.shape[0]):
            a[i] = max(a[i], lo)
        if t % 2 == 1:
            lo, hi = hi, lo
    for i in prange(a.shape[0]):
        a[i] = min(a[i], hi)
    if same:
        return lo
    return hi


def complex_cross(a, x, y, n):
    s = x + y
    c = x.conjugate()
    for t in range(n):
        for i in prange(a.shape[0]):
            a[i] = a[i] + s
        s, c = c, s - c
    for i in prange(a.shape[0]):
        a[i] = a[i] - c
    return s + c * 2


def constructed(a, n, v):
    b = n > 2
    i8 = np.int8(n)
    u16 = np.uint16(n * 1000)
    i32 = np.int32(n - 7)
    i64 = np.int64(n) * 3
    u64 = np.uint64(n) * np.uint64(12345)
    f32 = np.float32(v)
    f64 = np.float64(v) / 3.0
    c64 = np.complex64(v, n)
    c128 = np.complex128(f64)
    for i in prange(a.shape[0]):
        a[i] = a[i] + f64
    r = a[0] + float(i8) + float(u16) + float(i32) + float(i64)
    for i in prange(a.shape[0]):
        a[i] = a[i] * 0.5
    r = r + float(u64) + float(f32)
    if b:
        r = r + 1000.0
    z = c128 + complex(c64) + r
    for i in prange(a.shape[0]):
        a[i] = a[i] - i8
    return z


def none_kernel(a, n):
    k = n % 7
    for t in range(n):
        for i in prange(a.shape[0]):
            a[i] = a[i] + k
        k = (k * 3 + 1) % 11
        a[t % a.shape[0]] = k
    if k == 4:
        return
    for i in prange(a.shape[0]):
        a[i] = -a[i]


REAL_KINDS = [np.bool_, np.int8, np.uint16, np.int32, np.int64, np.uint64,
              np.float32, np.float64]


@pytest.mark.parametrize("dt", REAL_KINDS, ids=lambda d: np.dtype(d).name)
def test_scalar_kind_crosses(rng, dt):
    f = vk(kinds_cross)
    for _ in range(3):
        xs = rand_scalars(rng, dt, 2)
        a = np.array(rand_scalars(rng, dt, int(rng.integers(10, 60))), dt)
        check(f, a, xs[0], xs[1], int(rng.integers(0, 5)))
        check(f, a, xs[0], xs[0], 3)
    assert_split(f)


@pytest.mark.parametrize("dt", [np.complex64, np.complex128],
                         ids=lambda d: np.dtype(d).name)
def test_complex_crosses(rng, dt):
    f = vk(complex_cross)
    part = np.float32 if dt == np.complex64 else np.float64
    for n in (0, 1, 4):
        m = int(rng.integers(10, 60))
        a = (dyadic(rng, m, part) + 1j * dyadic(rng, m, part)).astype(dt)
        x, y = (dt(complex(*dyadic(rng, 2, part))) for _ in range(2))
        check(f, a, x, y, n)
    for _ in range(8):              # infinities, NaNs, signed zeros
        x, y = rand_scalars(rng, dt, 2)
        check(f, rand_array(rng, dt, (10,)), x, y, int(rng.integers(0, 4)))
    assert_split(f)


def test_constructed_scalars(rng):
    f = vk(constructed)
    for n in (0, 3, 65, 127):
        check(f, dyadic(rng, int(rng.integers(10, 100))), n,
              float(dyadic(rng, 1)[0]))
    assert_split(f)
    # np.int8(300) raises OverflowError before the first prange
    check(f, dyadic(rng, 20), 300, 1.5)


def test_none_returning(rng):
    f = vk(none_kernel)
    for n in range(0, 12):
        check(f, ints(rng, int(rng.integers(10, 40))), n)
    assert_split(f)


# ---- 5. exceptions ---------------------------------------------------------

def index_after(a, j):
    s = 0
    for i in prange(a.shape[0]):
        a[i] = a[i] + 1
        s += a[i]
    k = s % 7 + j
    a[0] = s
    return a[k]


def div_between(a, d):
    n = a.shape[0]
    for i in prange(n):
        a[i] = a[i] + 1
    a[1] = 5
    q = n // d
    a[0] = q
    for i in prange(n):
        a[i] = a[i] * 2
    return q + 1.0 / (d - 1)


def raise_in_body(a, bad):
    s = 0
    for i in prange(a.shape[0]):
        s += a[i]
    a[0] = s
    for i in prange(a.shape[0]):
        if a[i] == bad:
            raise ValueError("bad element")
        a[i] = a[i] + 1
    return s


def index_in_body(a, idx):
    a[0] = 1
    for i in prange(idx.shape[0]):
        a[idx[i]] = i
    return a[0]


def user_raise(a, lim, n):
    s = 0
    for t in range(n):
        for i in prange(a.shape[0]):
            a[i] = a[i] + t
            s += a[i]
        a[t % a.shape[0]] = s % 1000
        if s > lim:
            raise ValueError("sum too large")
        assert s > -lim, "sum too small"
    for i in prange(a.shape[0]):
        a[i] = 0
    return s


def test_index_error_after_prange(rng):
    f = vk(index_after)
    for _ in range(8):
        n = int(rng.integers(10, 100))
        a = ints(rng, n, lo=0, hi=50)
        check(f, a, int(rng.integers(-n - 10, n + 10)))
        check(f, a, n + 3)          # always out of range
        check(f, a, -n - 10)
    assert_split(f)


def test_zero_division_between_pranges(rng):
    f = vk(div_between)
    for d in (0, 1, 2, 3, -4):
        check(f, ints(rng, int(rng.integers(10, 100))), d)
    assert_split(f)


def test_raise_inside_prange(rng):
    f = vk(raise_in_body)
    for _ in range(4):
        a = ints(rng, int(rng.integers(10, 100)), lo=0, hi=20)
        check(f, a, -5)             # no raise
        same_exception(f, a, int(a[3]))
    assert_split(f)
    g = vk(index_in_body)
    for _ in range(4):
        n = int(rng.integers(10, 100))
        idx = rng.permutation(n)    # independent iterations
        check(g, np.zeros(n, np.int64), idx)
        bad = rng.choice(n, int(rng.integers(1, 4)), replace=False)
        idx[bad] = n + rng.integers(0, 5, bad.size)
        e = same_exception(g, np.zeros(n, np.int64), idx)
        assert str(idx[bad.min()]) in str(e)    # the lowest iteration's
    assert_split(g)


def test_user_raise_in_serial_code(rng):
    f = vk(user_raise)
    for _ in range(6):
        a = ints(rng, int(rng.integers(10, 100)), lo=-20, hi=30)
        lim = int(rng.integers(0, 20000))
        check(f, a, lim, int(rng.integers(0, 20)))
    a = ints(rng, 50, lo=1, hi=30)
    seen = set()
    for lim in (0, int(a.sum()) * 2, int(a.sum()) * 4 + 1000, 10**9):
        exp = check(f, a, lim, 12)
        seen.add(type(exp.exception))
    # raised in the first step, in a later one, and not at all
    assert seen == {ValueError, type(None)}, seen
    exp = check(f, -a, 5, 3)
    assert type(exp.exception) is AssertionError, exp
    assert_split(f)


# ---- 6. DeviceArray arguments ----------------------------------------------

def dev_steps(a, b, n):
    x = a[0]
    for t in range(n):
        for i in prange(a.shape[0]):
            b[i] = a[i] + x
        j = t % a.shape[0]
        a[j] = b[j] * 2 - b[a.shape[0] - 1 - j]
        x = b[(t * 7) % b.shape[0]] % 13
    return x + a[0]


def dev_index(a, j):
    for i in prange(a.shape[0]):
        a[i] = a[i] * 3
    a[1] = a[0] + 1
    return a[j]


def test_device_arrays(rng):
    to_device = kiln.vulkan.to_device
    f = vk(dev_steps)
    for n in (0, 1, 6, 25):
        m = int(rng.integers(10, 200))
        a0, b0 = ints(rng, m), ints(rng, m)
        a, b = a0.copy(), b0.copy()
        want = dev_steps(a, b, n)
        da, db = to_device(a0), to_device(b0)
        assert f(da, db, n) == want
        np.testing.assert_array_equal(da.copy_to_host(), a)
        np.testing.assert_array_equal(db.copy_to_host(), b)
        # a host array and a device array in one call
        hb = b0.copy()
        da = to_device(a0)
        assert f(da, hb, n) == want
        np.testing.assert_array_equal(da.copy_to_host(), a)
        np.testing.assert_array_equal(hb, b)
    assert_split(f)
    g = vk(dev_index)
    for j in (0, 5, -1, 50, -51):
        a0 = dyadic(rng, 50)
        a = a0.copy()
        exp = call(dev_index, a, j)
        d = to_device(a0)
        try:
            got, err = g(d, j), None
        except Exception as e:     # noqa: BLE001 - compared with CPython's
            got, err = None, e
        if exp.exception is None:
            assert err is None and got == exp.result, (exp, got, err)
        else:
            assert type(err) is type(exp.exception) \
                and str(err) == str(exp.exception), (exp, err)
        np.testing.assert_array_equal(d.copy_to_host(), exp.arrays[0])


# ---- 7. reductions into scalars, used by serial code and a second prange ----

def reductions(a, b):
    n = a.shape[0]
    s = 0
    lo = a[0]
    hi = a[0]
    p = 1
    for i in prange(n):
        s += a[i]
        lo = min(lo, a[i])
        hi = max(hi, a[i])
        p *= a[i] % 3 + 1
    mid = (lo + hi) // 2
    t = s % n
    q = p % 5
    for i in prange(n):
        b[i] = a[i] - mid + q
    c = 0
    for i in prange(n):
        if b[i] > t:
            c += 1
    return s * 3 + b[t] + c * 7 - p


def float_reductions(a, b):
    n = a.shape[0]
    s = 0.0
    lo = a[0]
    hi = a[0]
    for i in prange(n):
        s += a[i]
        lo = min(lo, a[i])
        hi = max(hi, a[i])
    span = hi - lo
    for i in prange(n):
        b[i] = (a[i] - lo) * 2.0 + s
    m = b[0]
    for i in prange(n):
        m = max(m, b[i] - span)
    return m + s


def chained(a, s):
    for i in prange(a.shape[0]):
        s += a[i]                   # starts from a parameter
    p = s
    for i in prange(a.shape[0]):
        p = max(p, a[i] * 2)        # starts from the first one's result
    for i in prange(a.shape[0]):
        s -= a[i]
    return s * 2 + p


def test_reductions_feed_serial_code(rng):
    f = vk(reductions)
    for dt in (np.int64, np.int32, np.int16):
        for _ in range(3):
            n = int(rng.integers(10, 300))
            check(f, ints(rng, n, dt), np.zeros(n, dt))
    assert_split(f)
    g = vk(float_reductions)
    for dt in (np.float32, np.float64):
        for _ in range(3):
            n = int(rng.integers(10, 300))
            check(g, dyadic(rng, n, dt), np.zeros(n, dt))
        assert_split(g)
    h = vk(chained)
    for dt in (np.int8, np.uint16, np.int64, np.float32, np.float64):
        a = ints(rng, int(rng.integers(10, 300)), dt, lo=0, hi=50)
        check(h, a, dt(3))
        assert_split(h)


# ---- more shapes of serial code ------------------------------------------

def clamp(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def many_values(a, n):
    v0 = n + 1
    v1 = v0 * 3
    v2 = v1 - 7
    v3 = v2 * v0 % 11
    v4 = n / 4.0
    v5 = v4 * v4
    v6 = np.int16(v3)
    v7 = np.float32(v5)
    v8 = v0 > v3
    v9 = clamp(v2, 0, 20)
    v10 = complex(v4, v9)
    v11 = v6 * np.int16(3)
    for i in prange(a.shape[0]):
        a[i] = a[i] + v9
    v12 = a[0] + v1
    for i in prange(5):
        a[i] = a[i] * 2
    r = v0 + v1 + v2 + v3 + v4 + v5 + v6 + v7 + v9 + v11 + v12
    if v8:
        r = r * 2
    return r + v10.imag + clamp(a[1], -3, 3)


def strided(m, v, n):
    rows, cols = m.shape
    total = 0.0
    for t in range(n):
        for i in prange(rows):
            for j in range(cols):
                m[i, j] = m[i, j] * 0.5 + v[i]
        m[t % rows, t % cols] = total
        s = 0.0
        for i in prange(v.shape[0] - 1, -1, -2):
            s += m[i, 0] - v[i]
        total = total + s
        v[t % v.shape[0]] = s
    return total


def while_true(a, lim):
    t = 0
    ok = True
    while True:
        for i in prange(a.shape[0]):
            a[i] = a[i] * 2 - 1
            ok &= a[i] < lim
        t += 1
        if not ok or t >= 30:
            break
    return t * 10 + ok


def pick(a, j):
    return a[j] * 2


def row_sum(m, i):
    s = 0
    for j in prange(m.shape[1]):
        s += m[i, j]
    return s


def helpers_around(m, out, j):
    for i in prange(m.shape[0]):
        out[i] = row_sum(m, i)      # a prange in a body runs serially
    x = pick(out, j)                # may raise IndexError in the helper
    for i in prange(m.shape[0]):
        out[i] = out[i] - x
    return x + pick(out, 0)


def long_serial(a, n, inner):
    acc = 0
    for t in range(n):
        for i in prange(a.shape[0]):
            a[i] = a[i] + acc % 7
        for k in range(inner):
            acc = (acc * 31 + k + a[k % a.shape[0]]) % 1000003
    return acc


def test_many_values_and_helpers(rng):
    f = vk(many_values)
    for n in (0, 1, 9, 30):
        check(f, dyadic(rng, int(rng.integers(10, 100))), n)
    assert_split(f)


def test_helpers_and_nested_prange(rng):
    f = vk(helpers_around)
    for _ in range(6):
        r, c = (int(x) for x in rng.integers(2, 40, 2))
        check(f, ints(rng, r * c).reshape(r, c), np.zeros(r, np.int64),
              int(rng.integers(-r - 3, r + 3)))
    assert_split(f)


def test_loop_steps_count_per_step(rng):
    """Each step is its own invocation: on lavapipe its loop steps count
    from zero, so serial work spread over many steps may exceed one
    invocation's 65535 in total (here 40 * 2000)."""
    f = vk(long_serial)
    check(f, ints(rng, 50), 40, 2000)
    check(f, ints(rng, 50), 3, 100)
    assert_split(f)


def test_strided_arrays(rng):
    f = vk(strided)
    for n in (0, 1, 6):
        m = dyadic(rng, 12 * 10).reshape(12, 10)
        v = dyadic(rng, 24)
        check(f, m, v[::2], n)
        check(f, np.asfortranarray(m)[::-1, 1:], v[1::2], n)
    assert_split(f)


def test_while_true_with_bool_reduction(rng):
    f = vk(while_true)
    for lim in (-10, 0, 50, 10**4, 10**12):
        check(f, ints(rng, int(rng.integers(10, 100)), lo=-3, hi=6), lim)
    assert_split(f)


# ---- 8. a prange in a called function -------------------------------------

def scale_all(a, k):
    for i in prange(a.shape[0]):
        a[i] = a[i] * k


def total_of(a):
    s = 0
    for i in prange(a.shape[0]):
        s += a[i]
    return s


def scaled_total(a, k):
    scale_all(a, k)                 # through another helper
    return total_of(a)


def calls_helper(a, k):
    x = a[0]
    scale_all(a, k)
    a[1] = x + a[0]
    s = 0
    for i in prange(a.shape[0]):
        s += a[i]
    return s + a[a.shape[0] - 1]


def calls_in_loop(a, n):
    acc = 0
    for t in range(n):
        acc += scaled_total(a, -1) % 97
        a[t % a.shape[0]] = acc
        if total_of(a) > 10**6:
            return -acc
    return acc


def test_prange_in_callee(rng):
    """Kernels whose pranges sit in functions they call, once or in a
    serial loop, give CPython's results on NumPy arrays."""
    f = vk(calls_helper)
    for _ in range(5):
        n = int(rng.integers(10, 200))
        check(f, ints(rng, n), int(rng.integers(-5, 6)))
    g = vk(calls_in_loop)
    for n in (0, 1, 7, 20):
        check(g, ints(rng, int(rng.integers(10, 200))), n)
    # the calls are inlined into the entry, which is split as usual
    assert_split(f)
    assert_split(g)
    a0 = ints(rng, 60)
    a = a0.copy()
    want = calls_in_loop(a, 9)
    d = kiln.vulkan.to_device(a0)
    assert g(d, 9) == want
    np.testing.assert_array_equal(d.copy_to_host(), a)
