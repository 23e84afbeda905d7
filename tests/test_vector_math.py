"""Vectorised math.exp and math.log (backend/llvm/vmath.c) and the loops
they open up.

A loop calling math.exp or math.log on float64 vectorises with kiln's own
vector variants, which return libm's result bit for bit (lanes whose
rounding is not clear-cut call libm).  The oracle is CPython's math.exp
and math.log, element by element, on inputs drawn afresh each run across
the functions' whole ranges, with their special values and their
OverflowError / ValueError.  Two loop shapes reach the variants:
a serial sum (checks deferred, additions kept in order) and, in a prange
body, a loop that stores (checks deferred too: array contents after a raise
in prange are unspecified).
"""

import math
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kiln import prange
from conftest import JIT_DISABLED, check, jit
from test_parallel import same_exception


def exp_into(x, out):
    """One prange iteration whose inner loop stores: deferred, vectorised."""
    for i in prange(1):
        for j in range(len(x)):
            out[j] = math.exp(x[j])


def exp_rows(x, out):
    """Each row's inner loop reads x and writes out: deferred."""
    for i in prange(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = math.exp(x[i, j]) * 0.5


def exp_in_place(a):
    """Reads what it writes: never deferred (a re-run would read its own
    results), so it keeps a check per element."""
    for i in prange(1):
        for j in range(len(a)):
            a[j] = math.exp(a[j])


def exp_fill(out, s: float):
    """Writes one array, reads none: deferred without an overlap check."""
    for i in prange(1):
        for j in range(len(out)):
            out[j] = math.exp(j * s)


def exp_sum(x) -> float:
    s = 0.0
    for j in range(len(x)):
        s += math.exp(x[j])
    return s


def softmax_rows(x, out):
    for i in prange(x.shape[0]):
        mx = x[i, 0]
        for j in range(1, x.shape[1]):
            mx = max(mx, x[i, j])
        s = 0.0
        for j in range(x.shape[1]):
            e = math.exp(x[i, j] - mx)
            out[i, j] = e
            s += e
        for j in range(x.shape[1]):
            out[i, j] = out[i, j] / s


def exp_inputs(rng, n):
    """n arguments spread over exp's finite range, near 0, tiny, at the
    edges of overflow and underflow, and special values."""
    parts = [
        rng.uniform(-745.2, 709.79, n),
        rng.uniform(-1.0, 1.0, n // 4),
        rng.uniform(-1e-6, 1e-6, n // 8),
        np.ldexp(rng.uniform(-1.0, 1.0, n // 8), rng.integers(-80, 0, n // 8)),
        rng.uniform(700.0, 709.78, n // 16),
        rng.uniform(-745.2, -700.0, n // 16),
        np.array([0.0, -0.0, 1.0, -1.0, 708.0, -708.0, 709.78, -745.13,
                  -746.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324]),
    ]
    x = np.concatenate(parts)
    rng.shuffle(x)
    return x


def libm_exp(x):
    """CPython's math.exp of each element; inf where it overflows."""
    def one(v):
        try:
            return math.exp(v)
        except OverflowError:
            return math.inf
    return np.fromiter((one(v) for v in x.ravel()), float,
                       x.size).reshape(x.shape)


def same_bits(a, b):
    return np.array_equal(a.view(np.int64), b.view(np.int64))


def test_bits_equal_cpython(rng):
    """Every element, through the vector variants: CPython's bits."""
    fn = jit(exp_into)
    x = exp_inputs(rng, 400_000)
    x = x[x < 709.78]                  # no OverflowError here
    out = np.empty_like(x)
    fn(x, out)
    assert same_bits(out, libm_exp(x))


@pytest.mark.parametrize("n", [0, 1, 3, 7, 8, 9, 31, 1000])
def test_lengths(rng, n):
    """Loop lengths around the vector widths (scalar tails)."""
    x = rng.uniform(-20.0, 20.0, n)
    out = np.zeros(n)
    jit(exp_into)(x, out)
    assert same_bits(out, libm_exp(x))
    check(jit(exp_sum), x)


def test_sum_keeps_order(rng):
    """A serial float sum of exp: the additions stay in CPython's order, so
    the result is CPython's to the bit."""
    fn = jit(exp_sum)
    for n in (10, 1000, 20_000):
        x = exp_inputs(rng, n)
        x = x[np.isfinite(x) & (x < 700.0)]
        check(fn, x)                    # floats compare bit for bit


def test_overflow_raises_where_cpython_does(rng):
    """OverflowError from a vectorised loop: the sum's at the right element,
    the prange loop's as the same exception."""
    fn_sum, fn_into = jit(exp_sum), jit(exp_into)
    n = 3000
    for k in (0, 7, 8, 1500, n - 1):
        x = rng.uniform(-5.0, 5.0, n)
        x[k] = 710.0
        check(fn_sum, x)
        same_exception(fn_into, x, np.empty(n))
        x[min(k + 3, n - 1)] = 800.0       # a second overflow after it
        check(fn_sum, x)
        same_exception(fn_into, x, np.empty(n))


def test_write_only_loop(rng):
    fn = jit(exp_fill)
    for s in (0.01, -0.3, rng.uniform(-0.7, 0.7)):    # 999 * 0.7 < 709
        check(fn, np.empty(1000), s)
    same_exception(fn, np.empty(1000), 1.0)     # overflow at j = 710


def test_nan_and_infinities(rng):
    x = rng.uniform(-5.0, 5.0, 64)
    x[[3, 17, 40]] = [np.nan, -np.inf, np.nan]
    out = np.empty_like(x)
    jit(exp_into)(x, out)
    assert same_bits(out, libm_exp(x))
    check(jit(exp_sum), x)
    x[50] = np.inf                          # exp(inf) is inf, no error
    check(jit(exp_sum), x)


def test_in_place_not_deferred(rng):
    """A loop that reads the array it writes keeps its checks: the result
    and the raise are CPython's."""
    fn = jit(exp_in_place)
    a = rng.uniform(-3.0, 3.0, 500)
    check(fn, a)
    a = rng.uniform(-3.0, 3.0, 500)
    a[123] = 720.0
    same_exception(fn, a)


def test_rows_and_overlapping_arguments(rng):
    """Rows of a prange loop; the same call with out overlapping x (the
    plain build, without noalias) gives the same results."""
    fn = jit(exp_rows)
    x = rng.uniform(-30.0, 30.0, (37, 53))
    check(fn, x, np.empty_like(x))
    a = rng.uniform(-30.0, 30.0, (37, 53))
    b = a.copy()
    fn(a, a)                            # out is x: the plain build
    fn.py_func(b, b)
    assert same_bits(a, b)
    x[20, 40] = 900.0
    same_exception(fn, x, np.empty_like(x))


def test_softmax(rng):
    """The softmax of the benchmark: CPython's results to the bit (exp,
    its in-order sum and the divisions are all exact operations)."""
    fn = jit(softmax_rows)
    x = rng.standard_normal((29, 300)).astype(np.float32) * 10
    check(fn, x, np.empty_like(x))
    check(fn, x.astype(np.float64), np.empty((29, 300)))


def log_into(x, out):
    for i in prange(1):
        for j in range(len(x)):
            out[j] = math.log(x[j])


def log_sum(x) -> float:
    s = 0.0
    for j in range(len(x)):
        s += math.log(x[j])
    return s


def entropy_rows(p, out):
    """-sum p log p of each row: the loop vectorises with its sum in order."""
    for i in prange(p.shape[0]):
        h = 0.0
        for j in range(p.shape[1]):
            h -= p[i, j] * math.log(p[i, j])
        out[i] = h


def log_inputs(rng, n):
    """n positive arguments over every binade (subnormals included), near
    1, near the table's interval edges, and 1.0 itself."""
    parts = [
        np.ldexp(rng.uniform(0.5, 1.0, n), rng.integers(-1074, 1025, n)),
        1.0 + rng.uniform(-1e-2, 1e-2, n // 4),
        1.0 + np.ldexp(rng.uniform(-1.0, 1.0, n // 8),
                       rng.integers(-60, -10, n // 8)),
        rng.uniform(0.7, 1.42, n // 4),
        np.exp(rng.uniform(-700.0, 700.0, n // 8)),
        np.array([1.0, 2.0, 0.5, 5e-324, 2.2250738585072014e-308,
                  1.7976931348623157e308, np.inf]),
    ]
    x = np.concatenate(parts)
    x = x[x > 0]
    rng.shuffle(x)
    return x


def libm_log(x):
    return np.fromiter((math.log(v) for v in x), float, x.size)


def test_log_bits_equal_cpython(rng):
    fn = jit(log_into)
    x = log_inputs(rng, 400_000)
    out = np.empty_like(x)
    fn(x, out)
    assert same_bits(out, libm_log(x))


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000])
def test_log_lengths_and_order(rng, n):
    x = log_inputs(rng, n)[:n]
    out = np.zeros(len(x))
    jit(log_into)(x, out)
    assert same_bits(out, libm_log(x))
    check(jit(log_sum), x)          # the sum in CPython's order


def test_log_domain_errors(rng):
    """CPython's ValueError for x <= 0 at the right element (the checks are
    deferred); NaN gives NaN."""
    n = 2000
    for k in (0, 8, 999, n - 1):
        for bad in (0.0, -1.0, -0.0, -np.inf):
            x = rng.uniform(0.5, 2.0, n)
            x[k] = bad
            check(jit(log_sum), x)
            same_exception(jit(log_into), x, np.empty(n))
    x = rng.uniform(0.5, 2.0, 100)
    x[[5, 50]] = np.nan
    out = np.empty_like(x)
    jit(log_into)(x, out)
    assert np.isnan(out[[5, 50]]).all()
    assert same_bits(np.delete(out, [5, 50]), libm_log(np.delete(x, [5, 50])))


def test_entropy(rng):
    p = rng.random((23, 301)) + 1e-9
    check(jit(entropy_rows), p, np.empty(23))


def host_has_fma():
    try:
        with open("/proc/cpuinfo") as f:
            return re.search(r"^flags\s*:.*\bfma\b", f.read(), re.M) is not None
    except OSError:
        return False


@pytest.mark.skipif(JIT_DISABLED, reason="inspects compiled code")
@pytest.mark.skipif(not host_has_fma(),
                    reason="the vector variants need fused multiply-add")
def test_loops_call_vector_variants(rng):
    """The point of it: both loop shapes call the vector variants (strict
    mode, default boundscheck)."""
    x = rng.uniform(-5.0, 5.0, 100)
    fn = jit(exp_into)
    fn(x, np.empty_like(x))
    assert re.search(r"call\w*\s+kl_vexp[248]\b", fn.inspect_asm())
    fn = jit(exp_sum)
    fn(x)
    assert re.search(r"call\w*\s+kl_vexp[248]\b", fn.inspect_asm())
    fn = jit(exp_fill)
    fn(np.empty(100), 0.1)
    assert re.search(r"call\w*\s+kl_vexp[248]\b", fn.inspect_asm())
    fn = jit(softmax_rows)
    y = x.reshape(10, 10).astype(np.float32)
    fn(y, np.empty_like(y))
    assert re.search(r"call\w*\s+kl_vexp[248]\b", fn.inspect_asm())
    y = np.abs(x) + 1.0
    fn = jit(log_into)
    fn(y, np.empty_like(y))
    assert re.search(r"call\w*\s+kl_vlog[248]\b", fn.inspect_asm())
    fn = jit(log_sum)
    fn(y)
    assert re.search(r"call\w*\s+kl_vlog[248]\b", fn.inspect_asm())


# A stand-in for a C library whose exp differs from glibc's: one ulp up for
# arguments whose low mantissa bits are 0101 (1 in 16).
OTHER_LIBM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

double exp(double x)
{
    static double (*libm_exp)(double);
    if (libm_exp == NULL) {
        libm_exp = (double (*)(double))dlsym(RTLD_NEXT, "exp");
    }
    double r = libm_exp(x);
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    return (b & 15) == 5 && isfinite(r) && r > 0 ? nextafter(r, INFINITY) : r;
}
"""

# Compiles (or loads from the cache) a kernel calling math.exp, compares it
# with math.exp, and prints the cache hits and the mismatches.
EXP_DRIVER = textwrap.dedent("""
    import math, numpy as np, kiln
    from kiln import prange

    @kiln.jit(cache=True)
    def exp_into(x, out):
        for i in prange(1):
            for j in range(len(x)):
                out[j] = math.exp(x[j])

    x = np.random.default_rng(5).uniform(-20.0, 20.0, 50_000)
    out = np.empty_like(x)
    exp_into(x, out)
    want = np.array([math.exp(v) for v in x])
    print(exp_into.cache_hits,
          int(np.sum(out.view(np.int64) != want.view(np.int64))))
""")


@pytest.mark.skipif(JIT_DISABLED, reason="runs compiled code")
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_other_libm_keeps_its_bits(tmp_path):
    """With a C library whose exp differs, the self-test keeps the vector
    variant's fast path off: fresh code and code kept on disk by a process
    with glibc's exp both return that library's bits."""
    src = tmp_path / "other_libm.c"
    src.write_text(OTHER_LIBM)
    lib = tmp_path / "other_libm.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", str(src), "-o",
                    str(lib), "-ldl", "-lm"], check=True)

    def run(preload):
        env = dict(os.environ, KILN_CACHE_DIR=str(tmp_path / "cache"))
        if preload:     # after any library already preloaded (ASan's)
            env["LD_PRELOAD"] = " ".join(
                filter(None, [os.environ.get("LD_PRELOAD"), str(lib)]))
        r = subprocess.run([sys.executable, "-c", EXP_DRIVER], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        hits, mismatches = map(int, r.stdout.split())
        return hits, mismatches

    assert run(False) == (0, 0)         # glibc: compiled and kept
    assert run(True) == (1, 0)          # other libm, kept code
    shutil.rmtree(tmp_path / "cache")
    assert run(True) == (0, 0)          # other libm, fresh code
