"""Vectorised loops: bounds checks proven away (passes/bounds.c), C-layout
specialisation of `f32[:]` arguments at dispatch, and noalias code chosen
after a run-time overlap check.

Golden checks read inspect_ir() (an IndexError raise site survives
lowering only where an index was not proven) and inspect_asm(); every
kernel is also compared with CPython, including kernels whose indices must
keep their checks.
"""

import re

import numpy as np
import pytest

import kiln
from kiln import prange
from conftest import JIT_DISABLED, check, jit

pytestmark = pytest.mark.skipif(JIT_DISABLED, reason="inspects compiled code")

OOB = "is out of bounds for axis"


def index_raises(fn):
    """Number of IndexError raise sites left in fn's lowered IR."""
    ir = fn.inspect_ir()
    sites = {m.group(1) for m in re.finditer(r"^site(\d+): kind 0,", ir, re.M)}
    return sum(1 for m in re.finditer(r"raise site(\d+)", ir)
               if m.group(1) in sites)


# ---------------------------------------------------------------------------
# the triad: proven, vectorised, noalias


def triad(a, b, c, s: float):
    for i in range(len(a)):
        a[i] = b[i] + s * c[i]


def triad_same(a, s: float):
    # all three extents come from a: only a's accesses can be proven
    n = len(a)
    for i in range(n):
        a[i] = a[i] + s * a[i]


def test_triad_vectorises_with_boundscheck(rng):
    fn = jit(triad)
    n = 1000
    a, b, c = np.zeros(n), rng.random(n), rng.random(n)
    check(fn, a, b, c, 2.5)
    fn(a, b, c, 2.5)
    asm = fn.inspect_asm()
    # packed double multiply and add on 256- or 512-bit registers; no FMA
    # without fastmath
    assert re.search(r"\bvmulpd\b[^\n]*%[yz]mm", asm), asm
    assert re.search(r"\bvaddpd\b[^\n]*%[yz]mm", asm), asm
    assert "vfmadd" not in asm
    # arrays proven disjoint at the call: no run-time alias check
    ll = fn.inspect_llvm()
    assert "vector.body" in ll
    assert "memcheck" not in ll and "found.conflict" not in ll
    # a[i] proven; b[i] and c[i] (other arrays' extents) keep their checks
    assert index_raises(fn) == 2


def test_triad_checks_other_arrays():
    fn = jit(triad)
    check(fn, np.zeros(10), np.ones(9), np.ones(10), 1.0)
    check(fn, np.zeros(10), np.ones(10), np.ones(3), 1.0)
    check(fn, np.zeros(0), np.ones(0), np.ones(0), 1.0)


def ptriad(a, b, c, s: float):
    for i in prange(len(a)):
        a[i] = b[i] + s * c[i]


def test_prange_triad_vectorises(rng):
    """The outlined body keeps a checked copy of the loop for the chunk that
    may run out of b or c, and a vectorised copy the guard picks when the
    whole chunk is in range."""
    fn = jit(ptriad)
    n = 1000
    a, b, c = np.zeros(n), rng.random(n), rng.random(n)
    check(fn, a, b, c, 2.5)
    fn(a, b, c, 2.5)
    asm = fn.inspect_asm()
    assert re.search(r"\bvmulpd\b[^\n]*%[yz]mm", asm), asm
    assert "vfmadd" not in asm


def pdot(a, b) -> float:
    s = 0.0
    for i in prange(len(a)):
        s += a[i] * b[i]
    return s


def test_prange_reduction_vectorises_strict(rng):
    """A strict float reduction in prange is regrouped per vector lane
    within each chunk (no fastmath, no FMA), with the same bits for any
    thread count; CPython's left-to-right sum is within the usual bound."""
    fn = jit(pdot)
    n = 100003
    a, b = rng.random(n), rng.random(n)
    results = set()
    old = kiln.get_num_threads()
    try:
        for t in (1, 2, 3, 7):
            kiln.set_num_threads(t)
            results.add(fn(a, b))
    finally:
        kiln.set_num_threads(old)
    assert len(results) == 1, results
    exp = fn.py_func(a, b)
    # positive terms: any grouping is within n ulps-of-the-sum of CPython's
    assert abs(results.pop() - exp) <= n * np.finfo(float).eps * exp
    asm = fn.inspect_asm()
    assert re.search(r"\bvaddpd\b[^\n]*%[yz]mm", asm), asm
    assert "vfmadd" not in asm


def rows_into(c, a, b):
    """The inner loop's checks on c (another array's extent bounds the
    loop) can only fail at its end: LLVM's range-check elimination splits
    the loop so the main part has none."""
    n, m = a.shape
    for i in range(n):
        for j in range(m):
            c[i, j] = c[i, j] + 2.0 * a[i, j] * b[j]


def test_edge_checks_split_off(rng):
    """Vectorised and exact where every index fits; where c or b is too
    small, the same elements written and the same IndexError as CPython."""
    fn = jit(rows_into)
    a = rng.random((5, 333))
    for cshape, nb in [((5, 333), 333), ((5, 400), 500), ((5, 332), 333),
                       ((4, 333), 333), ((5, 1), 333), ((5, 333), 300),
                       ((5, 333), 0)]:
        check(fn, rng.random(cshape), a, rng.random(nb))
    if not JIT_DISABLED:
        assert re.search(r"\bvmulpd\b[^\n]*%[yz]mm", fn.inspect_asm())


def test_prange_triad_raises_in_the_right_iteration():
    fn = jit(ptriad)
    for nb, nc in [(999, 1000), (1000, 3), (0, 1000), (1000, 1000)]:
        check(fn, np.zeros(1000), np.ones(nb), np.ones(nc), 1.0)


def test_fully_proven_loop_has_no_check(rng):
    fn = jit(triad_same)
    check(fn, rng.random(100), 3.0)
    assert index_raises(fn) == 0


# ---------------------------------------------------------------------------
# what bounds.c proves


def stencil(out, a):
    n = len(a)
    for i in range(1, n - 1):
        a[i] = a[i - 1] * 0.5 + a[i + 1] * 0.25
    for i in range(1, len(out) - 1):
        out[i] = out[i - 1] + out[i + 1]


def shape2d(a):
    s = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            s += a[i, j] * (i - j)
            a[i, j] = s
    h, w = a.shape
    for j in range(w):
        for i in range(1, h):
            a[i, j] += a[i - 1, j]
    return s


def by_size_and_min(a, b):
    t = 0.0
    for i in range(a.size):
        t += a[i]
    for i in range(min(len(a), len(b))):
        t += a[i] * b[i]
    for i in range(0, min(len(a) - 2, b.shape[0]), 3):
        t += a[i + 2] - b[i]
    return t


def triangular(a):
    n = len(a)
    t = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            t += a[j] - a[j - 1] * a[i]
    return t


def test_proofs_golden(rng):
    fn = jit(stencil)
    check(fn, rng.random(50), rng.random(40))
    assert index_raises(fn) == 0

    fn = jit(shape2d)
    check(fn, rng.random((7, 5)))
    assert index_raises(fn) == 0

    fn = jit(by_size_and_min)
    for na, nb in [(10, 10), (10, 4), (3, 12), (2, 2), (0, 5)]:
        check(fn, rng.random(na), rng.random(nb))
    assert index_raises(fn) == 0

    fn = jit(triangular)
    check(fn, rng.random(20))
    assert index_raises(fn) == 0


# ---------------------------------------------------------------------------
# what it must not prove: each keeps its check and raises as CPython


def off_by_one(a):
    for i in range(len(a)):
        a[i + 1] = 1.0


def past_end(a):
    for i in range(len(a) + 1):
        a[i] = 1.0


def negative_start(a):
    for i in range(-2, len(a)):
        a[i] += 1.0


def below_zero(a):
    for i in range(len(a) - 1):
        a[i - 1] += 1.0


def other_array(a, b):
    for i in range(len(b)):
        a[i] = b[i]


def wrong_axis(a):
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            a[j, i] = 1.0


def shifted(a, k: int):
    for i in range(len(a)):
        a[i] = a[i - k]


def descending(a):
    for i in range(len(a), -1, -1):
        a[i] = 1.0


def loop_var_after(a):
    for i in range(len(a)):
        pass
    i = i + 1
    a[i] = 1.0


def stepped_past(a):
    for i in range(0, len(a), 2):
        a[i + 1] = 1.0


def test_unprovable_indices_keep_checks(rng):
    for fn, args in [
            (off_by_one, [rng.random(5)]),
            (past_end, [rng.random(5)]),
            (negative_start, [rng.random(5)]),
            (below_zero, [rng.random(5)]),
            (other_array, [rng.random(3), rng.random(5)]),
            (wrong_axis, [rng.random((3, 4))]),
            (shifted, [rng.random(5), 6]),
            (shifted, [rng.random(5), -1]),
            (descending, [rng.random(5)]),
            (loop_var_after, [rng.random(5)]),
            (stepped_past, [rng.random(5)]),
    ]:
        k = jit(fn)
        out = check(k, *args)
        if fn not in (negative_start, below_zero, shifted):
            assert out.exception is not None, fn.__name__
            assert OOB in str(out.exception), fn.__name__
        assert index_raises(k) >= 1, fn.__name__


# ---------------------------------------------------------------------------
# dispatch: layout specialisation and the overlap check


def saxpy(a: float, x: "f32[:]", y: "f32[:]") -> None:
    for i in range(x.shape[0]):
        y[i] = a * x[i] + y[i]


def inc(b, a):
    for i in range(len(b)):
        b[i] = a[i] + 1.0


def test_layout_specialisation_keeps_annotation(rng):
    from kiln import f32
    saxpy.__annotations__.update(x=f32[:], y=f32[:])
    fn = jit(saxpy)
    x, y = rng.random(64, dtype=np.float32), rng.random(64, dtype=np.float32)
    check(fn, 2.0, x, y)
    fn(2.0, x, y)
    assert fn.signatures == ["(float64, float32[:], float32[:]) -> none"]
    assert "float32[::1]" in fn.inspect_ir()
    # strided arrays: their own specialisation, same signature text
    xs, ys = rng.random(200, dtype=np.float32), rng.random(300, dtype=np.float32)
    check(fn, 2.0, xs[::2][:64], ys[::3][:64])
    fn(2.0, xs[::2][:64], ys[::3][:64])
    assert fn.signatures == ["(float64, float32[:], float32[:]) -> none"]


def test_overlapping_views_match_cpython():
    fn = jit(inc)
    for n in [1, 2, 7, 100, 1001]:
        x = np.arange(n, dtype=np.float64)
        y = x.copy()
        fn(x[1:], x[:-1])
        inc(y[1:], y[:-1])
        assert np.array_equal(x, y), n
        # the same array twice, and a reversed view of itself
        fn(x, x)
        inc(y, y)
        assert np.array_equal(x, y), n
        fn(x, x[::-1])
        inc(y, y[::-1])
        assert np.array_equal(x, y), n


def test_disjoint_and_strided_calls(rng):
    fn = jit(inc)
    for b, a in [(np.zeros(100), rng.random(100)),
                 (np.zeros(300)[::3], rng.random(200)[::2]),
                 (np.zeros((100, 2))[:, 1], rng.random(100)),
                 (np.zeros(50)[::-1], rng.random(50)),
                 (np.zeros(0), np.zeros(0))]:
        check(fn, b, a)
    # interleaved halves of one buffer never overlap byte for byte, but
    # their spans do: the plain code runs and is still right
    buf = rng.random(200)
    ref = buf.copy()
    fn(buf[0::2], buf[1::2])
    inc(ref[0::2], ref[1::2])
    assert np.array_equal(buf, ref)
