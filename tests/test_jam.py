"""Unroll-and-jam of prange chunk loops (csrc/passes/jam.c) and the
run-time bounds guard of prange bodies (csrc/passes/parallel.c), against
CPython.

When an inner loop of a prange body loads an element that does not depend
on the prange counter (b[k, j] in the i-k-j matmul, pos[j, 0] in an n-body
step, x[j] in a mat-vec), the chunk loop runs groups of 4 consecutive
iterations side by side.  Each iteration keeps its own order of
operations, so every result here must be CPython's bit for bit, whatever
the thread count.  A group whose member would take a cold side (a failing
check, or defer.c's checked re-run) leaves for the original loop, which
runs those iterations again one by one: the exception must then be the one
CPython raises, i.e. that of the lowest failing row, even when a later row
of the same group fails earlier in its own iteration.

Running an iteration again is only sound when it computes what it
computed the first time: the kernels with the same array passed twice,
with overlapping views, or writing over what they read are built so that
a second run of a row would read its own output and fail differently.  A
function called from the body may raise from inside the callee, with no
check in the body itself: there too the lowest failing row must win.

Chunks of bodies with inner loops are whole groups once a loop has 64
iterations or more (fewer iterations make chunks of one to three
iterations, which run no group at all): the kernels that fail run at those
sizes, with the failing rows at each position of a group and in the tail
of the last chunk.

The guard: a chunk runs the copy of the loop without bounds checks when an
inner `for j in range(start, stop)` indexes with j + c inside the array
(or runs no iteration), and when constant indices are below their extents;
otherwise the checked copy runs and must raise exactly as CPython.

After an exception inside a prange loop, array contents are unspecified
(other chunks may have run): only the exception's type and message are
compared then.  Inputs meant to fail are first checked to make CPython
raise the intended exception, so that no comparison passes vacuously.

PYTEST_DONT_REWRITE: kernels here are compiled by kiln.
"""

import contextlib
import math
import os
import re
import sys
import warnings

import numpy as np
import pytest

import kiln
from kiln import prange
from kiln import testing as ktesting
from conftest import JIT_DISABLED, call, check, jit, rand_array, reference

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import kernels_kiln as bench_kernels  # noqa: E402

pytestmark = pytest.mark.skipif(JIT_DISABLED,
                                reason="jamming is done by compiled code")

THREAD_COUNTS = (1, 2, 3, 7)
FAIL_THREADS = (1, 2, 3)


@contextlib.contextmanager
def num_threads(n):
    """Runs the block with n pool threads, then restores the count."""
    old = kiln.get_num_threads()
    kiln.set_num_threads(n)
    try:
        yield
    finally:
        kiln.set_num_threads(old)


def same_exception(fn, args, exc_type, message=None, threads=FAIL_THREADS,
                   what=""):
    """Asserts that CPython raises exc_type (with `message` when given) on
    args, and that compiled fn raises the same type and message at each
    thread count; arrays are not compared.  `what` describes the input in
    failure reports."""
    name = reference(fn).__name__
    exp = call(reference(fn), *args)
    e = exp.exception
    assert type(e) is exc_type, f"{name} {what}: the input should make " \
        f"CPython raise {exc_type.__name__}, it {exp!r}"
    if message is not None:
        assert str(e) == message, f"{name} {what}: CPython {exp!r}, " \
            f"wanted {message!r}"
    for t in threads:
        with num_threads(t):
            got = call(fn, *args)
        g = got.exception
        assert g is not None and type(g) is type(e) and str(g) == str(e), \
            f"{name} {what}, {t} threads: expected {exp!r}, kiln {got!r}"
    return e


def check_threads(fn, *args, threads=THREAD_COUNTS):
    """check(fn, *args) at each thread count."""
    for t in threads:
        with num_threads(t):
            check(fn, *args)


def normal(rng, dt, shape):
    """Ordinary values of dtype dt (no infinities or NaNs)."""
    dt = np.dtype(dt)
    if dt.kind == "c":
        return (rng.standard_normal(shape)
                + 1j * rng.standard_normal(shape)).astype(dt)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    return rng.integers(-1000, 1000, shape).astype(dt)


# ---------------------------------------------------------------------------
# kernels


def matmul(a, b, c):
    """c = a @ b by the i-k-j loop, the extents taken before the loop."""
    n, p = a.shape
    m = b.shape[1]
    for i in prange(n):
        for j in range(m):
            c[i, j] = 0
        for k in range(p):
            for j in range(m):
                c[i, j] += a[i, k] * b[k, j]


def matmul_inline(a, b, c):
    """The same with the extents read inside the loops."""
    for i in prange(a.shape[0]):
        for j in range(b.shape[1]):
            c[i, j] = 0
        for k in range(a.shape[1]):
            for j in range(b.shape[1]):
                c[i, j] += a[i, k] * b[k, j]


def matvec(A, x, out):
    n, m = A.shape
    for i in prange(n):
        s = 0.0
        for j in range(m):
            s += A[i, j] * x[j]
        out[i] = s


def matvec_reversed(A, x, out):
    """Rows from the last down, every third one."""
    n, m = A.shape
    for i in prange(n - 1, -1, -3):
        s = 0.0
        for j in range(m):
            s += A[i, j] * x[j]
        out[i] = s


def nbody_soft(pos, mass, soft, acc):
    """Accelerations with a softening per body.  1.0 / math.sqrt(r2) is a
    division of Python floats: soft[i] = 0 makes r2 = 0 at j = i
    (ZeroDivisionError), a negative soft[i] makes r2 < 0 at j = 0 already
    (ValueError from math.sqrt)."""
    n = pos.shape[0]
    for i in prange(n):
        xi = pos[i, 0]
        yi = pos[i, 1]
        zi = pos[i, 2]
        e = soft[i]
        ax = 0.0
        ay = 0.0
        az = 0.0
        for j in range(n):
            dx = pos[j, 0] - xi
            dy = pos[j, 1] - yi
            dz = pos[j, 2] - zi
            r2 = dx * dx + dy * dy + dz * dz + e
            inv = 1.0 / math.sqrt(r2)
            w = mass[j] * inv * inv * inv
            ax += dx * w
            ay += dy * w
            az += dz * w
        acc[i, 0] = ax
        acc[i, 1] = ay
        acc[i, 2] = az


def two_loops(a, b, out):
    """A row fails in its first loop where a[i, j] * b[j] < 0 (ValueError),
    in its second where a[i, j] == 0 (ZeroDivisionError)."""
    n, m = a.shape
    for i in prange(n):
        s = 0.0
        for j in range(m):
            s += math.sqrt(a[i, j] * b[j])
        t = 0.0
        for j in range(m):
            t += b[j] * (1.0 / math.sqrt(a[i, j]))
        out[i] = s + t


def gather(idx, w, x, out):
    """out[i] = sum of w[j] * x[idx[i, j]]: the bounds check of x depends on
    the row; negative indices count from the end as in CPython."""
    n, m = idx.shape
    for i in prange(n):
        s = 0.0
        for j in range(m):
            s += w[j] * x[idx[i, j]]
        out[i] = s


def gather_reversed(idx, w, x, out):
    n, m = idx.shape
    for i in prange(n - 1, -1, -1):
        s = 0.0
        for j in range(m):
            s += w[j] * x[idx[i, j]]
        out[i] = s


def exp_log(a, w, out):
    """math.exp overflows (OverflowError) before math.log of a negative
    (ValueError) in the same element."""
    n, m = a.shape
    for i in prange(n):
        s = 0.0
        for j in range(m):
            s += math.exp(a[i, j]) * math.log(w[j] + a[i, j])
        out[i] = s


def recip_sqrt(v):
    return 1.0 / math.sqrt(v)


def call_recip_sqrt(a, w, out):
    """The checks are in the called function: each call may raise."""
    n, m = a.shape
    for i in prange(n):
        s = 0.0
        for j in range(m):
            s += w[j] * recip_sqrt(a[i, j])
        out[i] = s


def lookup(x, k):
    return x[k]


def call_gather(idx, w, x, out):
    """gather with the indexing in a called function."""
    n, m = idx.shape
    for i in prange(n):
        s = 0.0
        for j in range(m):
            s += w[j] * lookup(x, idx[i, j])
        out[i] = s


def user_raise(a, w, out):
    """Raises of the kernel's own inside the inner loop."""
    n, m = a.shape
    for i in prange(n):
        s = 0.0
        for j in range(m):
            if a[i, j] < -1.5:
                raise IndexError("far below zero")
            if a[i, j] < 0.0:
                raise ValueError("negative element")
            s += a[i, j] * w[j]
        out[i] = s


def const_cols(a, acc):
    """Constant column indices 0, 1, 2 into acc (guard: 2 < acc.shape[1])."""
    n, m = a.shape
    for i in prange(n):
        s = 0.0
        for j in range(m):
            s += a[i, j] * a[0, j]
        acc[i, 0] = s
        acc[i, 1] = -s
        acc[i, 2] = s * 2.0


def last_col(a, acc):
    """A negative constant index: counts from the end, never out of range
    for a non-empty axis."""
    n, m = a.shape
    for i in prange(n):
        s = 0.0
        for j in range(m):
            s += a[i, j] * a[0, j]
        acc[i, -1] = s


def shifted(a, x, out, lo, hi):
    """x[j + 1] for j in range(lo, hi): in range when lo >= -1 and
    hi + 1 <= len(x); CPython counts x[-1] from the end."""
    n = a.shape[0]
    for i in prange(n):
        s = 0.0
        for j in range(lo, hi):
            s += a[i, j - lo] * x[j + 1]
        out[i] = s


def back_one(a, x, out):
    """x[j - 1] for j in range(1, m)."""
    n, m = a.shape
    for i in prange(n):
        s = 0.0
        for j in range(1, m):
            s += a[i, j] * x[j - 1]
        out[i] = s


def from_minus_two(a, x, out):
    """x[j + 2] for j in range(-2, m - 2): x[0] .. x[m - 1]."""
    n, m = a.shape
    for i in prange(n):
        s = 0.0
        for j in range(-2, m - 2):
            s += a[i, j + 2] * x[j + 2]
        out[i] = s


def wraps(a, x, out):
    """x[j + 1] for j in range(-2, m - 2): x[-1] first, then x[0] .. ."""
    n, m = a.shape
    for i in prange(n):
        s = 0.0
        for j in range(-2, m - 2):
            s += a[i, j + 2] * x[j + 1]
        out[i] = s


def every_other(a, x, out):
    """x[j + 1] for j in range(0, m, 2): the last j is m - 1 or m - 2."""
    n, m = a.shape
    for i in prange(n):
        s = 0.0
        for j in range(0, m, 2):
            s += a[i, j] * x[j + 1]
        out[i] = s


def break_continue_on_j(a, x, out, stop):
    """Branches that do not depend on the row."""
    n, m = a.shape
    for i in prange(n):
        s = 0.0
        for j in range(m):
            if j == stop:
                break
            if j % 3 == 1:
                continue
            s += a[i, j] * x[j]
        out[i] = s


def break_continue_checked(a, w, out, stop):
    """break_continue_on_j with float checks: 1.0 / sqrt(a + 1) fails with
    ZeroDivisionError at a == -1, sqrt(a) with ValueError at a < 0."""
    n, m = a.shape
    for i in prange(n):
        s = 0.0
        for j in range(m):
            if j == stop:
                break
            if j % 3 == 1:
                continue
            s += 1.0 / math.sqrt(float(a[i, j]) + 1.0) + w[j] / math.sqrt(
                a[i, j])
        out[i] = s


def break_continue_on_row(a, x, out):
    """Branches on the row's elements."""
    n, m = a.shape
    for i in prange(n):
        s = 0.0
        for j in range(m):
            if a[i, j] > 1.5:
                break
            if a[i, j] < -1.0:
                continue
            s += a[i, j] * x[j]
        out[i] = s


def break_on_shared(a, x, out):
    """A branch on an element shared by all rows."""
    n, m = a.shape
    for i in prange(n):
        s = 0.0
        for j in range(m):
            if x[j] > 1.0:
                break
            s += a[i, j] * x[j]
        out[i] = s


def stencil_sweep(src, dst):
    """bench/kernels_kiln.py's 5-point stencil: i - 1 and j - 1, j + 1."""
    n, m = src.shape
    for i in prange(1, n - 1):
        for j in range(1, m - 1):
            dst[i, j] = 0.2 * (src[i, j] + src[i - 1, j] + src[i + 1, j]
                               + src[i, j - 1] + src[i, j + 1])


def nested_counters(a, x, out, k0):
    """x[j + 1] and x[j - k0] in a loop inside another inner loop."""
    n, p = a.shape
    m = x.shape[0]
    for i in prange(n):
        s = 0.0
        for k in range(p):
            for j in range(k0, m - 1):
                s += a[i, k] * x[j + 1] * x[j - k0]
        out[i] = s


def rows_and_total(A, x, out):
    """Inner loops and a reduction: chunks are not rounded to groups, the
    loop is not jammed."""
    n, m = A.shape
    t = 0
    for i in prange(n):
        s = 0
        for j in range(m):
            s += A[i, j] * x[j]
        out[i] = s
        t += s
    return t


def triangular(a, x, out):
    """An inner loop whose length is the row number: not jammable."""
    n = a.shape[0]
    for i in prange(n):
        s = 0.0
        for j in range(i):
            s += a[i, j] * x[j]
        out[i] = s


def scale_rows(src, out, w):
    n, m = src.shape
    for i in prange(n):
        for j in range(m):
            out[i, j] = src[i, j] * w[j]


def sqrt_recip(src, out, w):
    """r + 1 / (r - 1) * w[j] with r = sqrt(src[i, j]) (Python floats): 1.0
    gives ZeroDivisionError, a negative element ValueError."""
    n, m = src.shape
    for i in prange(n):
        for j in range(m):
            r = math.sqrt(src[i, j])
            out[i, j] = r + 1.0 / (r - 1.0) * w[j]


def divide_in_place(x, d):
    n, m = x.shape
    for i in prange(n):
        for j in range(m):
            x[i, j] = float(x[i, j]) / float(d[j])


def sqrt_recip_in_place(x, w):
    """sqrt_recip with the result written over its input: running a row a
    second time would read what the first run wrote."""
    n, m = x.shape
    for i in prange(n):
        for j in range(m):
            r = math.sqrt(x[i, j])
            x[i, j] = r + 1.0 / (r - 1.0) * w[j]


def from_row_zero(a, w):
    """Rows 1.. from row 0, which no iteration writes."""
    n, m = a.shape
    for i in prange(1, n):
        for j in range(m):
            a[i, j] = a[0, j] * w[j] + a[i, j]


# ---------------------------------------------------------------------------
# the i-k-j matmul

MATMUL_DTYPES = [np.float32, np.float64, np.int64, np.complex128]
DT_IDS = [np.dtype(d).name for d in MATMUL_DTYPES]
ROWS = (0, 1, 3, 4, 5, 7, 8, 9, 13, 31, 64, 67, 130, 1030)


@pytest.mark.parametrize("dt", MATMUL_DTYPES, ids=DT_IDS)
def test_matmul(rng, dt):
    """Every row count around the group and chunk sizes, square and not,
    with random values (and edge values: infinities, NaNs, wrap-around)."""
    f, g = jit(matmul), jit(matmul_inline)
    for n in ROWS:
        p, m = ((2, 3) if n > 1000 else
                (int(v) for v in rng.integers(1, 10, 2)))
        for make in (normal, rand_array):
            a, b = make(rng, dt, (n, p)), make(rng, dt, (p, m))
            check(f, a, b, np.zeros((n, m), dt))
            check(g, a, b, np.zeros((n, m), dt))
    for n, p, m in [(70, 0, 4), (70, 3, 0), (0, 3, 4), (5, 5, 5), (65, 1, 1)]:
        a, b = normal(rng, dt, (n, p)), normal(rng, dt, (p, m))
        c = rand_array(rng, dt, (n, m))     # overwritten row by row
        check(f, a, b, c)
        check(g, a, b, c)


@pytest.mark.parametrize("dt", MATMUL_DTYPES, ids=DT_IDS)
def test_matmul_strided(rng, dt):
    """Non-contiguous operands compile their own specialisation."""
    f = jit(matmul)
    a = normal(rng, dt, (140, 7))[::2]
    bt = normal(rng, dt, (9, 7))
    c = np.zeros((70, 18), dt)[:, ::2]
    check(f, a, bt.T, c)
    check(f, a[::-1], bt.T[:, ::-1], np.zeros((70, 9), dt, order="F"))


@pytest.mark.parametrize("dt", MATMUL_DTYPES, ids=DT_IDS)
def test_matmul_thread_counts(rng, dt):
    """Each row is computed alone, in its own order: CPython's bits at any
    thread count."""
    f = jit(matmul)
    for n, p, m in [(67, 5, 6), (130, 3, 4), (1030, 2, 3), (9, 4, 4)]:
        a, b = normal(rng, dt, (n, p)), normal(rng, dt, (p, m))
        check_threads(f, a, b, np.zeros((n, m), dt))


# ---------------------------------------------------------------------------
# mat-vec and n-body: exact results


def test_matvec(rng):
    f, g = jit(matvec), jit(matvec_reversed)
    for n in (0, 1, 5, 63, 64, 65, 67, 257, 1030, 2100):
        for m in (0, 1, 3, 17):
            A = rng.standard_normal((n, m)) * 10.0 ** rng.integers(-3, 4)
            x = rng.standard_normal(m)
            check(f, A, x, np.zeros(n))
            check(g, A, x, np.zeros(n))
    A = rand_array(rng, np.float64, (300, 7))
    check(f, A, rand_array(rng, np.float64, (7,)), np.zeros(300))
    A, x = rng.standard_normal((1030, 5)), rng.standard_normal(5)
    check_threads(f, A, x, np.zeros(1030))
    check_threads(g, A, x, np.zeros(1030))


def test_nbody_exact(rng):
    """bench/kernels_kiln.py's n-body step."""
    f = jit(getattr(bench_kernels.nbody_step, "py_func",
                    bench_kernels.nbody_step))
    for n in (1, 4, 7, 64, 70, 131):
        pos = rng.standard_normal((n, 3))
        vel = rng.standard_normal((n, 3)) * 0.1
        mass = rng.random(n) + 0.1
        check_threads(f, pos, vel, mass, np.zeros((n, 3)), 0.01, 1e-3,
                      threads=(1, 3) if n < 100 else (2,))
    g = jit(nbody_soft)
    n = 70
    pos = rng.standard_normal((n, 3))
    check_threads(g, pos, rng.random(n) + 0.1, rng.random(n) + 0.01,
                  np.zeros((n, 3)), threads=(1, 2, 7))


# ---------------------------------------------------------------------------
# failing rows: the lowest failing row's exception


def group_rows(n):
    """Rows at each position of a group (8..11), in the last group and in
    the tail after it, of a loop of n >= 64 iterations."""
    return sorted({8, 9, 10, 11} | {r for r in range(n - 6, n)})


def test_nbody_failing_row(rng):
    f = jit(nbody_soft)
    n = 70
    pos = rng.standard_normal((n, 3))
    mass = rng.random(n) + 0.1
    soft = rng.random(n) + 0.01
    bad = {"domain": (-100.0, ValueError, "math domain error"),
           "zero": (0.0, ZeroDivisionError, "float division by zero")}
    for r in group_rows(n):
        for value, exc, msg in bad.values():
            s = soft.copy()
            s[r] = value
            same_exception(f, (pos, mass, s, np.zeros((n, 3))), exc, msg,
                           what=f"row {r} soft {value}")
    # row r fails at j = r (zero), a later row of its group at j = 0
    # (domain): CPython raises row r's error
    for r, later in [(8, 9), (8, 11), (9, 10), (10, 11), (64, 65), (66, 67),
                     (67, 68), (68, 69)]:
        s = soft.copy()
        s[r] = 0.0
        s[later] = -100.0
        same_exception(f, (pos, mass, s, np.zeros((n, 3))),
                       ZeroDivisionError, "float division by zero",
                       what=f"rows {r} (zero), {later} (negative)")
        s[r], s[later] = -100.0, 0.0
        same_exception(f, (pos, mass, s, np.zeros((n, 3))),
                       ValueError, "math domain error",
                       what=f"rows {r} (negative), {later} (zero)")


def test_earlier_row_fails_later(rng):
    """Row r+1 fails in its first inner loop, row r only in its second:
    CPython finishes row r's first loop, fails in its second, and never
    starts row r+1."""
    f = jit(two_loops)
    m = 4
    for n in (70, 1100):
        a = rng.random((n, m)) + 0.5
        b = rng.random(m) + 0.5
        check(f, a, b, np.zeros(n))
        rows = sorted(group_rows(n) + ([600, 601, 602, 603, 604, 605, 606,
                                        607] if n > 1000 else []))
        for r in rows[:-1]:
            for j1, j2 in ((m - 1, 0), (0, m - 1)):
                x = a.copy()
                x[r + 1, j1] = -1.0     # first loop: sqrt of a negative
                x[r, j2] = 0.0          # second loop only: 1.0 / 0.0
                same_exception(f, (x, b, np.zeros(n)), ZeroDivisionError,
                               "float division by zero",
                               what=f"n {n}, rows {r} (j {j2}), {r + 1} "
                               f"(j {j1})")
        for r in (8, 9, 10, 11, n - 2):
            x = a.copy()
            x[r, m - 1] = -1.0
            same_exception(f, (x, b, np.zeros(n)), ValueError,
                           "math domain error")


def test_gather_failing_rows(rng):
    """Two rows of a group with out-of-range indices, the later one failing
    at an earlier j: the message names the lower row's index."""
    f = jit(gather)
    n, m, size = 1100, 3, 10
    idx = rng.integers(-size, size, (n, m))
    w, x = rng.standard_normal(m), rng.standard_normal(size)
    check_threads(f, idx, w, x, np.zeros(n), threads=(1, 3))
    for r in (0, 1, 2, 3, 8, 9, 10, 11, 600, 601, 602, 603, 1096, 1097,
              1098, 1099):
        ii = idx.copy()
        ii[r, m - 1] = size + r
        if r + 1 < n:
            ii[r + 1, 0] = -size - 1 - r
        if r + 3 < n:
            ii[r + 3, 1] = size + 5000
        same_exception(f, (ii, w, x, np.zeros(n)), IndexError,
                       f"index {size + r} is out of bounds for axis 0 "
                       f"with size {size}", what=f"row {r}")


def test_user_raise_in_group(rng):
    f = jit(user_raise)
    n, m = 130, 5
    a = rng.random((n, m))
    w = rng.standard_normal(m)
    check(f, a, w, np.zeros(n))
    for r in (64, 65, 66, 67, 68, 127, 128, 129):
        x = a.copy()
        x[r, m - 1] = -1.0
        if r + 1 < n:
            x[r + 1, 0] = -2.0
        same_exception(f, (x, w, np.zeros(n)), ValueError, "negative element",
                       what=f"rows {r}, {r + 1}")
        if r + 1 < n:
            x[r, m - 1], x[r + 1, 0] = -2.0, -1.0
            same_exception(f, (x, w, np.zeros(n)), IndexError,
                           "far below zero", what=f"rows {r}, {r + 1}")


def test_math_errors_in_group(rng):
    """A row overflowing math.exp at its last element, the next row with
    math.log of a negative at its first."""
    f = jit(exp_log)
    n, m = 70, 5
    a = rng.random((n, m))
    w = rng.random(m) + 1.0
    check_threads(f, a, w, np.zeros(n), threads=(1, 3))
    for r in group_rows(n)[:-1]:
        x = a.copy()
        x[r, m - 1] = 1000.0
        x[r + 1, 0] = -w[0] - 1.0
        same_exception(f, (x, w, np.zeros(n)), OverflowError,
                       "math range error", what=f"rows {r}, {r + 1}")


def test_calls_in_group(rng):
    """A call raises from inside the callee: a later row of a group whose
    call fails at an earlier j must not win over the lower row."""
    f = jit(call_recip_sqrt)
    n, m = 70, 4
    a = rng.random((n, m)) + 0.5
    w = rng.standard_normal(m)
    check_threads(f, a, w, np.zeros(n), threads=(1, 3))
    for r in group_rows(n)[:-1] + [0, 1, 2]:
        x = a.copy()
        x[r, m - 1] = 0.0       # 1.0 / sqrt(0.0) at the row's last j
        x[r + 1, 0] = -1.0      # sqrt(-1.0) at the next row's first j
        same_exception(f, (x, w, np.zeros(n)), ZeroDivisionError,
                       "float division by zero", what=f"rows {r}, {r + 1}")
    g = jit(call_gather)
    size = 10
    idx = rng.integers(-size, size, (n, 3))
    x = rng.standard_normal(size)
    check(g, idx, w[:3], x, np.zeros(n))
    for r in group_rows(n)[:-1] + [0, 1, 2]:
        ii = idx.copy()
        ii[r, 2] = size + r
        ii[r + 1, 0] = size + 100 + r
        same_exception(g, (ii, w[:3], x, np.zeros(n)), IndexError,
                       f"index {size + r} is out of bounds for axis 0 with "
                       f"size {size}", what=f"rows {r}, {r + 1}")


def test_reversed_failing_row(rng):
    """Iterations run from the last row down: the highest failing row is
    CPython's first."""
    f = jit(matvec_reversed)
    n = 200
    A, x = rng.standard_normal((n, 4)), rng.standard_normal(4)
    check_threads(f, A, x, np.zeros(n), threads=(1, 3))
    same_exception(f, (A, x[:3], np.zeros(n)), IndexError,
                   "index 3 is out of bounds for axis 0 with size 3")
    g = jit(gather_reversed)
    idx = rng.integers(0, 6, (n, 3))
    check(g, idx, np.ones(3), np.ones(6), np.zeros(n))
    for lo, hi in [(5, 150), (148, 149), (150, 151), (100, 103), (0, 199)]:
        ii = idx.copy()
        ii[lo, 0] = 6
        ii[hi, 2] = 7
        same_exception(g, (ii, np.ones(3), np.ones(6), np.zeros(n)),
                       IndexError,
                       "index 7 is out of bounds for axis 0 with size 6")


# ---------------------------------------------------------------------------
# the bounds guard


def test_matmul_bounds(rng):
    f, g = jit(matmul), jit(matmul_inline)
    n, p, m = 70, 6, 5
    a, b = rng.standard_normal((n, p)), rng.standard_normal((p, m))
    for fn in (f, g):
        check(fn, a, b, np.zeros((n, m)))
        # b has fewer rows than a has columns
        same_exception(fn, (a, b[:p - 1], np.zeros((n, m))), IndexError,
                       "index 5 is out of bounds for axis 0 with size 5")
        # c has fewer columns than b
        same_exception(fn, (a, b, np.zeros((n, m - 1))), IndexError,
                       "index 4 is out of bounds for axis 1 with size 4")
        # c has fewer rows than a: the later chunks fail the guard
        same_exception(fn, (a, b, np.zeros((n - 1, m))), IndexError,
                       "index 69 is out of bounds for axis 0 with size 69")
        same_exception(fn, (a, b, np.zeros((40, m))), IndexError,
                       "index 40 is out of bounds for axis 0 with size 40")
        # wider c, taller b: in range
        check(fn, a, np.vstack([b, b]), np.zeros((n + 3, m)))
        check(fn, a, b, rand_array(rng, np.float64, (n, m + 2)))


def test_constant_index_bounds(rng):
    f = jit(const_cols)
    n, m = 70, 4
    a = rng.standard_normal((n, m))
    check_threads(f, a, np.zeros((n, 3)), threads=(1, 3))
    check(f, a, rand_array(rng, np.float64, (n, 5)))
    same_exception(f, (a, np.zeros((n, 2))), IndexError,
                   "index 2 is out of bounds for axis 1 with size 2")
    same_exception(f, (a, np.zeros((n, 1))), IndexError,
                   "index 1 is out of bounds for axis 1 with size 1")
    # a[0, j] with a of no rows: nothing runs
    check(f, np.zeros((0, m)), np.zeros((0, 3)))
    g = jit(last_col)
    check(g, a, np.zeros((n, 1)))
    check(g, a, rand_array(rng, np.float64, (n, 3)))
    same_exception(g, (a, np.zeros((n, 0))), IndexError,
                   "index -1 is out of bounds for axis 1 with size 0")


def test_inner_counter_bounds(rng):
    n = 70
    f = jit(shifted)
    a = rng.standard_normal((n, 8))
    for lo, hi, size in [(0, 6, 7), (0, 6, 8), (-1, 5, 6), (3, 8, 9),
                         (-2, 4, 6), (-3, 3, 4), (5, 2, 1), (-9, -9, 0),
                         (0, 0, 0)]:
        # in range, wrapping to x[-1] and x[-2], or running no iteration
        check(f, a, rng.standard_normal(size), np.zeros(n), lo, hi)
    for lo, hi, size, msg in [(0, 6, 6, "index 6 is out of bounds for axis "
                               "0 with size 6"),
                              (3, 8, 8, "index 8 is out of bounds for axis "
                               "0 with size 8"),
                              (-3, 3, 1, "index -2 is out of bounds for "
                               "axis 0 with size 1")]:
        same_exception(f, (a, rng.standard_normal(size), np.zeros(n), lo,
                           hi), IndexError, msg)
    g = jit(back_one)
    check(g, a, rng.standard_normal(7), np.zeros(n))
    check(g, a, rng.standard_normal(9), np.zeros(n))
    check(g, a[:, :1], np.zeros(0), np.zeros(n))        # no iteration
    same_exception(g, (a, rng.standard_normal(6), np.zeros(n)), IndexError,
                   "index 6 is out of bounds for axis 0 with size 6")
    h = jit(from_minus_two)
    check(h, a, rng.standard_normal(8), np.zeros(n))
    same_exception(h, (a, rng.standard_normal(7), np.zeros(n)), IndexError,
                   "index 7 is out of bounds for axis 0 with size 7")
    k = jit(wraps)
    check(k, a, rng.standard_normal(8), np.zeros(n))
    check(k, a, rng.standard_normal(7), np.zeros(n))    # x[-1] is x[6]
    same_exception(k, (a, rng.standard_normal(6), np.zeros(n)), IndexError,
                   "index 6 is out of bounds for axis 0 with size 6")
    e = jit(every_other)
    check(e, a, rng.standard_normal(8), np.zeros(n))    # last j + 1 = 7
    same_exception(e, (a[:, :7], rng.standard_normal(7), np.zeros(n)),
                   IndexError, "index 7 is out of bounds for axis 0 with "
                   "size 7")
    check(e, a[:, :7], rng.standard_normal(8), np.zeros(n))


def test_inner_counter_bounds_int_types(rng):
    """range() bounds of other integer types, and at the ends of int64."""
    f = jit(shifted)
    n = 70
    a = rng.standard_normal((n, 8))
    for lo, hi in [(np.int32(0), np.int32(6)), (np.int8(-2), np.int8(4)),
                   (np.uint8(0), np.uint8(6)), (np.int16(-3), np.int16(3))]:
        for size in (4, 6, 7, 9):
            check(f, a, rng.standard_normal(size), np.zeros(n), lo, hi)
    for lo, hi, msg in [(-2**63, -2**63 + 3, "index -9223372036854775807 is "
                         "out of bounds for axis 0 with size 7"),
                        (2**63 - 5, 2**63 - 2, "index 9223372036854775804 "
                         "is out of bounds for axis 0 with size 7")]:
        same_exception(f, (a, rng.standard_normal(7), np.zeros(n), lo, hi),
                       IndexError, msg)


def test_stencil_and_nested_counters(rng):
    f = jit(stencil_sweep)
    src = rng.standard_normal((70, 9))
    check(f, src, rand_array(rng, np.float64, (70, 9)))
    check(f, src, np.zeros((71, 10)))
    check(f, src[:, :2], np.zeros((70, 2)))             # no inner iteration
    check(f, src, np.zeros((69, 9)))                    # i - 1 <= 67
    same_exception(f, (src, np.zeros((70, 7))), IndexError,
                   "index 7 is out of bounds for axis 1 with size 7")
    same_exception(f, (src, np.zeros((60, 9))), IndexError,
                   "index 60 is out of bounds for axis 0 with size 60")
    g = jit(nested_counters)
    a = rng.standard_normal((70, 3))
    for k0 in (0, 1, 2, -1, 9):
        check(g, a, rng.standard_normal(6), np.zeros(70), k0)
    for k0 in (-2, -3):
        same_exception(g, (a, rng.standard_normal(6), np.zeros(70), k0),
                       IndexError, "index 6 is out of bounds for axis 0 with "
                       "size 6")


def test_bounds_thread_counts(rng):
    """The guard is evaluated per chunk; failing or not, any thread count
    gives CPython's outcome."""
    f = jit(shifted)
    n = 1030
    a = rng.standard_normal((n, 6))
    check_threads(f, a, rng.standard_normal(7), np.zeros(n), 0, 6)
    same_exception(f, (a, rng.standard_normal(6), np.zeros(n), 0, 6),
                   IndexError, "index 6 is out of bounds for axis 0 with "
                   "size 6", threads=THREAD_COUNTS)
    g = jit(matmul)
    b = rng.standard_normal((6, 3))
    same_exception(g, (a, b, np.zeros((n - 5, 3))), IndexError,
                   f"index {n - 5} is out of bounds for axis 0 with size "
                   f"{n - 5}", threads=THREAD_COUNTS)


# ---------------------------------------------------------------------------
# control flow in the inner loop


def test_break_continue(rng):
    f = jit(break_continue_on_j)
    g = jit(break_continue_on_row)
    h = jit(break_on_shared)
    for n in (5, 64, 70, 1030):
        for m in (0, 1, 7, 12):
            a = rng.standard_normal((n, m))
            x = rng.standard_normal(m)
            for stop in (-1, 0, 2, 5, m, m + 3):
                check(f, a, x, np.zeros(n), stop)
            check(g, a, x, np.zeros(n))
            check(h, a, x, np.zeros(n))
    a, x = rng.standard_normal((1030, 9)), rng.standard_normal(9)
    check_threads(f, a, x, np.zeros(1030), 6, threads=(1, 3, 7))
    check_threads(g, a, x, np.zeros(1030), threads=(1, 3, 7))


def test_reduction_with_inner_loops(rng):
    f = jit(rows_and_total)
    for n in (0, 3, 64, 70, 1030):
        A = rng.integers(-1000, 1000, (n, 6))
        x = rng.integers(-1000, 1000, 6)
        check_threads(f, A, x, np.zeros(n, np.int64), threads=(1, 3))


def test_break_continue_failing_rows(rng):
    """Row r fails at j = 5 (ZeroDivisionError) unless the loop breaks
    there first; row r + 1 fails at j = 0 (ValueError)."""
    f = jit(break_continue_checked)
    n, m = 70, 8
    a = rng.random((n, m)) + 0.5
    w = rng.random(m)
    check(f, a, w, np.zeros(n), 6)
    for r in group_rows(n)[:-1]:
        x = a.copy()
        x[r, 5] = -1.0
        x[r + 1, 0] = -0.5
        for stop, exc in ((6, ZeroDivisionError), (9, ZeroDivisionError),
                          (5, ValueError)):
            same_exception(f, (x, w, np.zeros(n), stop), exc,
                           threads=(1, 3), what=f"rows {r}, {r + 1}, "
                           f"stop {stop}")


def test_triangular(rng):
    f = jit(triangular)
    for n in (0, 1, 4, 63, 64, 70, 131):
        a = rng.standard_normal((n, n))
        check(f, a, rng.standard_normal(n), np.zeros(n))
    a = rng.standard_normal((131, 131))
    check_threads(f, a, rng.standard_normal(131), np.zeros(131),
                  threads=(2, 7))


# ---------------------------------------------------------------------------
# overlapping arguments, arrays read and written


def run_on(fn, x, build):
    """fn(*build(y)) on a copy y of x (build makes the arguments from y, so
    that they may share its memory), NumPy warnings silenced: the exception
    (or None) and y afterwards."""
    y = x.copy()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            fn(*build(y))
        except Exception as e:  # noqa: BLE001 - the exception is the outcome
            return e, y
    return None, y


def run_shared(fn, x, *rest):
    """fn(y, y, *rest) on a copy y of x (see run_on)."""
    return run_on(fn, x, lambda y: (y, y) + rest)


def same_on(fn, x, build, threads=FAIL_THREADS, what=""):
    """Compiled fn and CPython on fn(*build(copy of x)) at each thread
    count: the same exception, or none and the same array afterwards.
    Returns CPython's exception."""
    e, exp = run_on(reference(fn), x, build)
    for t in threads:
        with num_threads(t):
            g, got = run_on(fn, x, build)
        assert type(g) is type(e) and str(g) == str(e), \
            f"{what}, {t} threads: expected {e!r}, kiln {g!r}"
        if e is None:
            assert ktesting.same_array(got, exp), \
                f"{what}, {t} threads:\nkiln:   {got!r}\npython: {exp!r}"
    return e


def test_same_array_twice(rng):
    """src and out the same array (each row reads and writes only itself):
    CPython's result, before and after calls whose arrays do not overlap."""
    f = jit(scale_rows)
    for n in (3, 70, 1030):
        a, w = rng.standard_normal((n, 9)), rng.standard_normal(9)
        for call_separate in (True, False):
            if call_separate:
                check(f, a, np.zeros_like(a), w)
            e, exp = run_shared(reference(f), a, w)
            g, got = run_shared(f, a, w)
            assert e is None and g is None, (e, g)
            assert ktesting.same_array(got, exp), (n, got, exp)
            assert not ktesting.same_array(exp, a)      # it did scale


def test_same_array_twice_failing(rng):
    """sqrt_recip(x, x, w): running a row twice would read what its first
    run wrote (0.25 becomes -1.5, whose square root fails with a different
    exception)."""
    f = jit(sqrt_recip)
    m = 5
    w = np.ones(m)
    for n in (70, 1100):
        base = np.full((n, m), 0.25)
        check(f, base, np.zeros_like(base), w)     # arrays not overlapping
        for r in group_rows(n) + [1, 2, 3]:
            x = base.copy()
            x[r, 1] = 1.0
            # separate arrays: the group may leave for the original loop
            same_exception(f, (x, np.zeros_like(x), w), ZeroDivisionError,
                           "float division by zero")
            e = same_on(f, x, lambda y: (y, y, w), what=f"row {r}")
            assert type(e) is ZeroDivisionError, e


def test_overlapping_views(rng):
    """src and out interleaved columns of one array: the arguments overlap
    in memory although no element is shared."""
    f = jit(sqrt_recip)
    g = jit(scale_rows)
    m = 5
    w = np.ones(m)
    cols = lambda y: (y[:, :m], y[:, m:], w)            # noqa: E731
    for n in (70, 1100):
        base = np.full((n, 2 * m), 0.25)
        assert same_on(f, base, cols, what="no failure") is None
        assert same_on(g, rng.standard_normal((n, 2 * m)), cols) is None
        for r in (8, 9, 10, 11, n - 3):
            x = base.copy()
            x[r, 1] = 1.0
            x[r + 1, 0] = -1.0
            e = same_on(f, x, cols, what=f"rows {r}, {r + 1}")
            assert type(e) is ZeroDivisionError, e


def test_divide_in_place(rng):
    f = jit(divide_in_place)
    n, m = 130, 6
    x = rng.standard_normal((n, m))
    d = rng.standard_normal(m)
    check_threads(f, x, d, threads=(1, 3))
    d[3] = 0.0
    same_exception(f, (x, d), ZeroDivisionError, "float division by zero")


def test_in_place_row_fails(rng):
    """The failing row's error, not one from running an earlier row of its
    group a second time over its own output."""
    f = jit(sqrt_recip_in_place)
    m = 5
    w = np.ones(m)
    for n in (70, 1100):
        base = np.full((n, m), 0.25)
        check(f, base, w)
        for r in group_rows(n) + [1, 2, 3]:
            x = base.copy()
            x[r, 1] = 1.0
            same_exception(f, (x, w), ZeroDivisionError,
                           "float division by zero")


def test_row_zero_shared(rng):
    """Rows 1.. read row 0 of the array they write (no iteration writes
    it)."""
    f = jit(from_row_zero)
    for n in (2, 65, 70, 1031):
        check_threads(f, rng.standard_normal((n, 7)), rng.standard_normal(7),
                      threads=(1, 3))


# ---------------------------------------------------------------------------
# the jam is there


STORE = re.compile(r"^\s+store (%\d+), %\d+$")


def jammed_runs(ir):
    """For each block of a prange body function in inspect_ir() text, the
    addresses of its runs of consecutive stores."""
    runs, in_body, cur = [], False, []
    for line in ir.splitlines():
        if line.startswith("func "):
            in_body = ".prange" in line.split("(")[0]
        m = STORE.match(line)
        if m and in_body:
            cur.append(m.group(1))
            continue
        if cur:
            runs.append(cur)
        cur = []
    if cur:
        runs.append(cur)
    return runs


def has_group(ir):
    """A run of 4 stores to 4 different addresses: the members' stores."""
    return any(len(set(r)) >= 4 for r in jammed_runs(ir))


def test_jam_in_ir(rng):
    """The row-by-row kernels run groups of four rows (a block storing
    four rows in a row); the triangular one does not."""
    cases = [(matmul, (rng.standard_normal((70, 5)),
                       rng.standard_normal((5, 6)), np.zeros((70, 6))), True),
             (matmul_inline, (rng.standard_normal((70, 5)),
                              rng.standard_normal((5, 6)),
                              np.zeros((70, 6))), True),
             (matvec, (rng.standard_normal((70, 5)), rng.standard_normal(5),
                       np.zeros(70)), True),
             (nbody_soft, (rng.standard_normal((70, 3)), rng.random(70),
                           rng.random(70) + 0.1, np.zeros((70, 3))), True),
             (triangular, (rng.standard_normal((70, 70)),
                           rng.standard_normal(70), np.zeros(70)), False)]
    for kernel, args, jams in cases:
        f = jit(kernel)
        check(f, *args)
        ir = f.inspect_ir()
        assert ".prange" in ir, ir
        assert any(jammed_runs(ir)), f"{kernel.__name__}: no store:\n{ir}"
        assert has_group(ir) == jams, \
            f"{kernel.__name__}: jammed {not jams}, expected {jams}:\n{ir}"
