"""Deferred float checks (passes/defer.c): an innermost loop without side
effects runs with its float checks (zero divisors, math domain and range
errors) folded into a flag, and is re-run checked when the flag is set, so
the exception is the one CPython raises, at the same iteration.

Every kernel is compared with CPython on inputs that fail at chosen
iterations, in every order of the checks, and on inputs that do not fail;
the asm test shows the point of it (the loop vectorises).
"""

import math
import re

import numpy as np
import pytest

from kiln import prange
from conftest import JIT_DISABLED, check, jit
# arrays are not compared after a raise in prange (later iterations may
# have run): only the exception
from test_parallel import same_exception


def two_checks(a, b, x: float) -> float:
    """A sqrt domain check, then a division check, then an index check (b
    may be shorter than a) in one loop."""
    s = 0.0
    for j in range(len(a)):
        r = math.sqrt(a[j])
        s += x / (r - 1.0) + b[j]
    return s


def with_counter(a, x: float) -> float:
    """The loop's values leave it: the counter and two sums."""
    s = 0.0
    t = 1.0
    j = -1
    for j in range(a.shape[0]):
        s += x / a[j]
        t = t * 0.5 + math.log(a[j] + 2.0)
    return s + t + j


def rows(a, out, x: float):
    """The inner loop of each prange row defers its checks; the stores stay
    in the outer loop."""
    for i in prange(a.shape[0]):
        s = 0.0
        for j in range(a.shape[1]):
            s += x / a[i, j] + math.sqrt(a[i, j])
        out[i] = s


def data(rng, n):
    """Values in [2, 3): no check fails (sqrt(a) - 1 stays away from 0)."""
    return 2.0 + rng.random(n)


@pytest.mark.parametrize("n", [1, 7, 64, 1000])
def test_no_failure(rng, n):
    a = data(rng, n)
    check(jit(two_checks), a, rng.random(n), 3.0)
    check(jit(with_counter), a, 1.5)
    check(jit(with_counter), a[:0], 1.5)


def test_each_check_alone(rng):
    fn = jit(two_checks)
    n = 200
    for k in (0, 1, 63, 64, 65, 199):
        a = data(rng, n)
        a[k] = -1.0                     # sqrt: ValueError at k
        check(fn, a, rng.random(n), 3.0)
        a = data(rng, n)
        a[k] = 1.0                      # x / 0.0: ZeroDivisionError at k
        check(fn, a, rng.random(n), 3.0)
        a = data(rng, n)
        check(fn, a, rng.random(k), 3.0)    # b too short: IndexError at k


def test_first_failure_wins(rng):
    """Two or three checks fail at different iterations: CPython's first."""
    fn = jit(two_checks)
    n = 300
    for trial in range(40):
        ks = rng.choice(n, size=3, replace=False)
        a = data(rng, n)
        a[ks[0]] = -1.0
        a[ks[1]] = 1.0
        short = int(ks[2]) if trial % 2 else n
        check(fn, a, rng.random(short), 3.0)


def test_same_iteration_order(rng):
    """Both checks of one iteration fail in turn: the first in program order
    (the domain error) is raised, and the index check comes after both."""
    fn = jit(two_checks)
    a = data(rng, 50)
    a[20] = -4.0
    out = check(fn, a, rng.random(50), 0.0)
    assert isinstance(out.exception, ValueError)
    a = data(rng, 50)
    a[20] = 1.0
    out = check(fn, a, rng.random(20), 3.0)
    assert isinstance(out.exception, ZeroDivisionError)


def test_live_out_values(rng):
    fn = jit(with_counter)
    a = data(rng, 100)
    check(fn, a, 0.25)
    a[37] = 0.0
    check(fn, a, 0.25)                  # ZeroDivisionError
    a[37] = -3.0
    check(fn, a, 0.25)                  # log of a negative: ValueError


def test_inside_prange(rng):
    fn = jit(rows)
    a = 1.0 + rng.random((40, 70))
    check(fn, a, np.zeros(40), 2.0)
    for (i, j) in ((0, 0), (17, 69), (39, 3)):
        b = a.copy()
        b[i, j] = 0.0                   # ZeroDivisionError in row i
        b[min(i + 1, 39), 5] = -1.0     # a later row's ValueError
        same_exception(fn, b, np.zeros(40), 2.0)
        b = a.copy()
        b[i, j] = -2.0                  # ValueError only
        same_exception(fn, b, np.zeros(40), 2.0)


def sqrt_sum(a) -> float:
    s = 0.0
    for i in range(a.shape[0]):
        s += math.sqrt(a[i])
    return s


def safe_div(a, x: float) -> float:
    s = 0.0
    for i in range(a.shape[0]):
        s += x / a[i]
    return s


def halve_until(x: float, y: float) -> float:
    """A loop whose exit depends on a float that a failed check would turn
    into NaN: never deferred (it could then run forever)."""
    n = 0
    while x > 1.0 and n < 1000:
        x = x / y
        n += 1
    return x


def test_float_exit_not_deferred():
    fn = jit(halve_until)
    for x, y in [(10.0, 2.0), (10.0, 0.0), (0.5, 0.0), (1e300, 1e-10)]:
        check(fn, x, y)


@pytest.mark.skipif(JIT_DISABLED, reason="inspects compiled code")
def test_deferred_loop_has_checked_copy(rng):
    """Without fastmath the sum cannot vectorise, but the loop is deferred
    all the same: kiln's IR holds the loop and its checked copy."""
    fn = jit(sqrt_sum)
    a = data(rng, 100)
    check(fn, a)
    loops = re.findall(r"^  loop\d+:", fn.inspect_ir(), re.M)
    assert len(loops) == 2, fn.inspect_ir()


@pytest.mark.skipif(JIT_DISABLED, reason="inspects compiled code")
def test_checked_loops_vectorise(rng):
    """A sum of sqrt and a sum of quotients (fastmath, so the sum may be
    reordered) vectorise although math.sqrt and `/` keep CPython's checks."""
    a = data(rng, 1000)
    fn = jit(sqrt_sum, fastmath=True)
    assert math.isclose(fn(a), fn.py_func(a), rel_tol=1e-12)
    assert re.search(r"\bvsqrtpd\b[^\n]*%[yz]mm", fn.inspect_asm())
    a[500] = -1.0
    check(fn, a)
    fn = jit(safe_div, fastmath=True)
    b = data(rng, 1000)
    assert math.isclose(fn(b, 3.0), fn.py_func(b, 3.0), rel_tol=1e-12)
    assert re.search(r"\bvdivpd\b[^\n]*%[yz]mm", fn.inspect_asm())
    b[999] = 0.0
    check(fn, b, 3.0)
