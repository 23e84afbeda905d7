"""Generated kernels against CPython, aimed at the newest loop optimisations:

(1) deferred float checks (passes/defer.c): innermost loops without stores
    (or, in prange bodies, with stores into an array they do not read) or
    calls, with several float checks per iteration (zero divisors of
    Python floats and ints, math domain and range errors, complex division,
    `**`), under `if`/`else` and `continue`, next to integer division (not
    deferred), bounds checks and a user `raise`; values of every kind carried
    out of the loop (the loop variable too); plain, nested, in a function
    called from a kernel, in a function called from a prange body and
    inline in a prange body;
(2) bounds checks split off by inductive range check elimination: range
    loops with positive and negative (and run-time) steps whose start and
    stop may lie beyond the arrays, indices j + c, j * 2, -1 - j, c - j and
    from data, with stores, so the contents after an IndexError count;
(3) prange reductions (float +, -, *, regrouped within a chunk): the same
    bits for thread counts 1, 2, 3, 7 and repeated runs, within a rounding
    bound of CPython's, at sizes around the chunk boundaries, under
    conditions, several per loop, mixed with exceptions (then only the
    exception is compared: other chunks may have run);
(4) target="vulkan": kiln's own float64 math on special and random values
    (CPython's exceptions exactly, results within VULKAN_F64_MATH_ULPS), and
    device-side reductions for every operator and dtype family.

Kernels are built from templates with random choices (hypothesis's
`randoms()`, derandomized, so a failure reproduces and shrinks) and compiled
from `exec`-created functions.

PYTEST_DONT_REWRITE: kernels here are compiled by kiln.
"""

import math
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln
from kiln import prange
from conftest import (JIT_DISABLED, TARGETS, VULKAN_F64_MATH_ULPS, call, check,
                      dtype_of, jit, reference)
from test_parallel import same_exception, threads  # noqa: F401 (fixture)

needs_jit = pytest.mark.skipif(
    JIT_DISABLED, reason="compiled behaviour only (KILN_DISABLE_JIT=1)")
needs_vulkan = pytest.mark.skipif(
    "vulkan" not in TARGETS, reason="no Vulkan device")

FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])


def kernel(src, entry, target="cpu", **options):
    """A fresh dispatcher for function `entry` of source text src."""
    ns = {"math": math, "prange": prange, "np": np}
    exec(compile(src, "<fuzz>", "exec"), ns)
    return jit(ns[entry], target, **options)


def same_outcome(fn, args, in_prange):
    """check(fn, *args); after an exception inside a prange, only the
    exception is compared (other chunks may have written meanwhile)."""
    if in_prange:
        exp = call(reference(fn), *args)
        if exp.exception is not None:
            return same_exception(fn, *args)
    return check(fn, *args)


# ---------------------------------------------------------------------------
# (1) deferred float checks


def defer_statements(c, d):
    """Loop-body statements over v, u (Python floats of a and b), j, x, m;
    c and d are small int constants, so data hits the failing values."""
    return [
        f"s += x / (v - {c})",
        f"s += math.sqrt(v - {c})",
        f"s += math.log(v - {c})",
        f"s += math.exp(v * {d * 100}.0)",
        f"s += math.cosh(v * {d + 100}.0)",
        f"s += v % (u - {c})",
        f"s += v // (u - {c})",
        f"s += math.fmod(v, u - {c})",
        f"s += (v - {c}) ** -1.0",
        f"s += math.pow(v - {c}, -2.0)",
        f"s += math.atanh(v / {c + 4}.0)",
        f"s += math.acos(u / {c + 3}.0)",
        f"s += math.sin(v / (u - {c}))",
        f"s += math.log10(v - {c}) + math.log2(u - {d}) + math.log1p(v - {c})",
        f"s += abs(complex(v * 1e308, u * 1e308)) / (v - {c})",
        f"s += j / (m - {c})",
        f"s += (j - {c}) / (int(u) - {d})",
        f"s = s * 0.5 + {c}.0 / (v * u - {d})",
        f"s = max(s, x / (v - {c}))",
        f"s += 1.0 / (v - {c}) + math.sqrt(u - {d})",
        # integer division and modulo trap: never deferred
        f"k += j // (int(v) - {c})",
        f"k += m % (int(u) - {c})",
        f"k += int(x / (v - {c}))",
        # bounds checks (b may be shorter than a)
        f"s += b[j + {c - 2}]",
        f"s += b[j * 2]",
        f"s += b[int(v)]",
        f"s += b[-1 - j]",
        f"z = z * 0.5 + complex(v, 1.0) / complex(u - {c}, 0.0)",
        f"z = z + complex(v, u) / (u - {c})",
        f"t = t or v > {c}",
        f"t = t != (math.sqrt(v - {c}) > 1.0)",
        f"if v > {c}:\n    s += x / (u - {d})\nelse:\n    s -= math.sqrt(u - {c})",
        f"if u == {c}:\n    continue",
        f"if v < {c}:\n    k += 1\n    s += math.log(u + {d})",
        f"if v > {c + 100}:\n    raise ValueError('big')",
    ]


DEFER_RANGES = ["range(len(a))", "range(1, len(a))", "range(len(a) - 1, -1, -1)",
                "range(m, len(a))", "range(0, len(a), 2)",
                "range(len(a) - 2, 0, -3)", "range(len(b))"]

DEFER_HEAD = """\
s = 0.0
k = 0
z = 0j
t = False
j = -7
"""
DEFER_RESULT = "s + 3.0 * z.real + 5.0 * z.imag + 7 * int(t) + 11 * k + 13 * j"


def defer_kernel(r):
    """(source, entry, runs in prange) of a random deferred-check kernel."""
    body = [r.choice(defer_statements(r.randint(-2, 5), r.randint(-2, 5)))
            for _ in range(r.randint(1, 4))]
    body = "\n".join([f"v = float(a[{r.choice(['j', 'j', 'j - 1', '-j'])}])",
                      "u = float(b[j % len(b)]) if len(b) > 0 else 0.5"] + body)
    loop = f"for j in {r.choice(DEFER_RANGES)}:\n" + textwrap.indent(body, "    ")
    shape = r.choice(["plain", "nested", "twice", "helper", "prange",
                      "prange_inline"])
    if shape == "nested":       # only the inner loop is transformed
        loop = "for q in range(2):\n    x = x + q\n" + textwrap.indent(loop, "    ")
    if shape == "twice":        # two transformed loops, one after the other
        loop = loop + "\ns = s * 0.25\nx = x + k\n" + loop
    sig = "def kern(a, b, x: float, m: int) -> float:\n"
    src = sig + textwrap.indent(DEFER_HEAD + loop + f"\nreturn {DEFER_RESULT}\n",
                                "    ")
    if shape == "helper":
        return (src + "\ndef top(a, b, x: float, m: int) -> float:\n"
                "    return kern(a, b, x, m) * 2.0\n", "top", False)
    if shape == "prange":
        return (src + "\ndef top(a, b, x: float, m: int, out) -> float:\n"
                "    for i in prange(out.shape[0]):\n"
                "        out[i] = kern(a, b, x + i, m)\n"
                "    return float(out[0])\n", "top", True)
    if shape == "prange_inline":
        inner = DEFER_HEAD + loop.replace("x /", "(x + i) /") \
            + f"\nout[i] = {DEFER_RESULT}\n"
        return ("def top(a, b, x: float, m: int, out) -> float:\n"
                "    for i in prange(out.shape[0]):\n"
                + textwrap.indent(inner, "        ")
                + "    return float(out[0])\n", "top", True)
    return src, "kern", False


def defer_data(r, n):
    """n values: mostly benign (8..12), some small integers that hit the
    statements' failing values, a few specials."""
    out = np.empty(n)
    for i in range(n):
        p = r.random()
        if p < 0.04:
            out[i] = r.choice([math.inf, -math.inf, math.nan, -0.0, 1e15, 5e-324])
        elif p < 0.25:
            out[i] = r.randint(-3, 7)
        elif p < 0.6:
            out[i] = 8.0 + r.random()
        else:
            out[i] = r.randint(8, 12)
    return out


@needs_jit
@settings(FUZZ, max_examples=70)
@given(st.randoms(use_true_random=False))
def test_deferred_checks_generated(r):
    src, entry, in_prange = defer_kernel(r)
    fn = kernel(src, entry)
    for _ in range(5):
        n = r.choice([0, 1, 3, 8, 17, 40, 100])
        nb = r.choice([n, n, n + 3, max(n - 2, 0), 2 * n + 1])
        args = [defer_data(r, n), defer_data(r, nb), r.choice([1.0, 2.5, -1.0]),
                r.choice([0, 1, 2])]
        if in_prange:
            args.append(np.zeros(r.choice([1, 3, 5])))
        same_outcome(fn, args, in_prange)


def carried(a, y: float, m: int) -> float:
    """Every kind of value leaves the deferred loop, the counter too."""
    j = -1
    s = 0.0
    f = False
    c = 0j
    k = 0
    for j in range(len(a)):
        v = float(a[j])
        s += v / y + math.sqrt(v)
        f = f or v > 3.0
        c = c * 0.5 + complex(v, 1.0) / complex(y, 0.0)
        k += j * m - j // m
    return s + j + int(f) + c.real + c.imag + k


def mixed_divisions(a, m: int) -> float:
    """Float division (deferred) before and after integer division (traps,
    not deferred) in one iteration."""
    s = 0.0
    for i in range(len(a)):
        s += float(a[i]) / (m - 1.0) + i // (m - 2) + float(i) / m
    return s


@needs_jit
def test_deferred_every_order(rng):
    """Each check fails alone, or two fail at chosen iterations in both
    orders, at the loop's ends and around vector widths."""
    n = 70
    f, g = jit(carried), jit(mixed_divisions)
    for k in (0, 1, 7, 8, 31, 32, 69):
        a = 4.0 + rng.random(n)
        for y in (0.0, 2.0):
            check(f, a, y, 3)
        check(f, a, 2.0, 0)              # j // 0 at iteration 0
        a[k] = -1.0
        check(f, a, 2.0, 3)              # sqrt domain error at k
        check(f, a, 0.0, 3)              # y == 0 first
        for m in (0, 1, 2, 3):
            check(g, a, m)
        for k2 in (0, k // 2, min(k + 1, n - 1), n - 1):
            b = 4.0 + rng.random(n)
            b[k] = -2.0
            b[k2] = -3.0
            check(f, b, 2.0, 3)
    check(f, np.zeros(0), 0.0, 0)        # no iteration: nothing fails


STORES = [
    "w[i, j % w.shape[1]] = s",
    "w[i, (j * 3) % w.shape[1]] = v * x + s",
    "w[i, j % w.shape[1]] = math.exp(v - 9.0)",
    "w[i, j % w.shape[1]] = math.log(v + 4.0) + s",
    # reads what it writes: never deferred
    "w[i, j % w.shape[1]] = w[i, (j + 1) % w.shape[1]] + s",
]


def defer_store_kernel(r):
    """Source of a prange kernel whose inner loop has float checks and
    stores into w's row i: deferred when it reads no array it writes."""
    body = [r.choice(defer_statements(r.randint(-2, 5), r.randint(-2, 5)))
            for _ in range(r.randint(1, 3))]
    body = [f"v = float(a[{r.choice(['j', 'j', 'j - 1'])}])",
            "u = float(b[j % len(b)]) if len(b) > 0 else 0.5"] + body
    body.insert(r.randint(2, len(body)), r.choice(STORES))
    loop = (f"for j in {r.choice(DEFER_RANGES[:6])}:\n"
            + textwrap.indent("\n".join(body), "    "))
    inner = DEFER_HEAD + loop + f"\nout[i] = {DEFER_RESULT}\n"
    return ("def top(a, b, x: float, m: int, out, w) -> float:\n"
            "    for i in prange(out.shape[0]):\n"
            + textwrap.indent(inner, "        ")
            + "    return float(out[0])\n")


@needs_jit
@settings(FUZZ, max_examples=40)
@given(st.randoms(use_true_random=False))
def test_deferred_checks_with_stores_generated(r):
    """Deferred checks in prange loops that store (passes/defer.c,
    may_store_twice): CPython's results and arrays, or its exception."""
    fn = kernel(defer_store_kernel(r), "top")
    for _ in range(4):
        n = r.choice([1, 3, 8, 17, 40])
        rows = r.choice([1, 2, 5])
        args = [defer_data(r, n), defer_data(r, r.choice([n, n + 3])),
                r.choice([1.0, 2.5, -1.0]), r.choice([0, 1, 2]),
                np.zeros(rows), np.zeros((rows, r.choice([1, 4, n + 1])))]
        same_outcome(fn, args, True)


# ---------------------------------------------------------------------------
# (2) bounds checks at the edges of range loops


def irce_bound(r):
    c = r.randint(-3, 3)
    return r.choice(["0", "n0", "n1", "len(a)", f"len(a) + {c}", "len(b)",
                     f"len(b) - {abs(c)}", "min(len(a), len(b))", f"{c}",
                     "out.shape[0]", f"len(out) + {c}", "-len(a)",
                     f"-{abs(c) + 1}"])


def irce_statement(r, parallel):
    c = r.randint(-4, 4)
    carried = "1.0" if parallel else "s"     # prange: no carried s but +=
    return r.choice([
        f"out[j + {c}] = a[j] * 2.0",
        f"s += a[j + {c}]",
        "s += b[j * 2]",
        f"s += b[j * 2 + {c}]",
        "out[j] = b[-1 - j]",
        f"s += a[j - {c}] * b[j]",
        "out[len(out) - 1 - j] = a[j]",
        "s += a[idx[j]]",
        "out[idx[j % len(idx)]] = a[j] + 1.0",
        "out[j] += 1.0",
        f"s += m2[j, j + {c}]",
        f"s += m2[{c}, j]",
        f"m2[j % 3, -j] = {carried}",
        "s += a[-j]",
        f"s += a[{c} - j]",
        f"out[j // 2] = {carried}",
        f"if a[j] > 0.5:\n    s += b[j + {c}]",
        f"if j > {c}:\n    continue",
    ])


def irce_kernel(r):
    parallel = r.random() < 0.2
    step = r.choice(["", "", "", ", 1", ", 2", ", 3", ", -1", ", -1", ", -2",
                     ", -3", ", n1 - 1", ", -n1"])
    if step:
        rng_ = f"range({irce_bound(r)}, {irce_bound(r)}{step})"
    else:
        rng_ = r.choice([f"range({irce_bound(r)})",
                         f"range({irce_bound(r)}, {irce_bound(r)})"])
    if parallel:
        rng_ = "p" + rng_
    body = "\n".join(irce_statement(r, parallel) for _ in range(r.randint(1, 3)))
    return ("def kern(a, b, out, idx, m2, n0: int, n1: int) -> float:\n"
            "    s = 0.0\n"
            f"    for j in {rng_}:\n" + textwrap.indent(body, "        ") + "\n"
            "    return float(s)\n"), parallel


def irce_args(r, dt):
    n = r.choice([0, 1, 2, 5, 16, 33, 100, 1000])
    na = max(0, n + r.choice([0, 0, 0, -1, 1, 3]))
    nb = max(0, n + r.choice([0, 0, -2, 2, n]))
    no = max(0, n + r.choice([0, 0, -1, 1]))
    a = (np.arange(na) * 0.37 % 1.0).astype(dt)
    b = (np.arange(nb) * 0.61 % 1.0 + 1.0).astype(dt)
    idx = np.array([r.randint(-na - 1, na) for _ in range(max(n, 1))], np.int64)
    m2 = np.arange(3 * max(n, 1), dtype=dt).reshape(3, max(n, 1))
    return [a, b, np.zeros(no, dt), idx, m2, r.randint(-3, n + 2),
            r.randint(-3, n + 2)]


def close_sum(got, exp, n):
    """A prange float sum within the reassociation bound of CPython's (the
    terms here are below 1e4 in magnitude)."""
    assert got.exception is None and exp.exception is None, (exp, got)
    for g, e in zip(got.arrays, exp.arrays):
        assert np.array_equal(g, e, equal_nan=True), (exp, got)
    assert abs(got.result - exp.result) <= 1e-12 * (n + 1) * (1e4 + abs(exp.result)), \
        (exp, got)


@needs_jit
@settings(FUZZ, max_examples=80)
@given(st.randoms(use_true_random=False))
def test_edge_bounds_checks_generated(r):
    src, parallel = irce_kernel(r)
    fn = kernel(src, "kern")
    for _ in range(6):
        args = irce_args(r, r.choice([np.float64, np.float32, np.int64, np.int32]))
        exp = call(reference(fn), *args)
        if parallel and exp.exception is None:
            close_sum(call(fn, *args), exp, len(args[0]))
        else:
            same_outcome(fn, args, parallel)


# ---------------------------------------------------------------------------
# (3) prange float reductions


def reduction_statement(r):
    c = round(r.uniform(-0.5, 0.5), 2)
    return r.choice([
        "s += a[i]",
        "s -= a[i]",
        "s = s - a[i] * 0.5",
        "s = a[i] + s",
        "p *= 1.0 + a[i] * 0.001",
        "p = p * (1.0 - a[i] * 0.001)",
        f"if a[i] > {c}:\n    s += a[i]\nelse:\n    t -= a[i] * 2.0",
        f"if a[i] < {c}:\n    p *= 0.999",
        "t += a[i] * b[i]",
        "z += complex(a[i], b[i])",
        "z -= complex(b[i], 1.0) * a[i]",
        "k += int(a[i] * 10.0)",
        "m = max(m, a[i])",
        "t -= abs(a[i])",
    ])


def reduction_kernel(r):
    body = "\n".join(reduction_statement(r) for _ in range(r.randint(1, 4)))
    if r.random() < 0.3:        # small chunks: the body has an inner loop
        body = "for q in range(2):\n    w = q\n" + body
    exc = r.choice(["", "", "if a[i] > lim:\n    raise ValueError('over')",
                    "s += b[idx[i]]", "t += 1.0 / (float(a[i]) - lim)"])
    if exc:
        body = exc + "\n" + body if r.random() < 0.5 else body + "\n" + exc
    head = r.choice(["0, len(a)", "len(a)", "1, len(a)", "3, len(a), 2"])
    return ("def kern(a, b, idx, lim: float) -> float:\n"
            "    s = 0.25\n    p = 1.0\n    t = -3.0\n    z = 0.5j\n    k = 0\n"
            "    m = -1e300\n"
            f"    for i in prange({head}):\n" + textwrap.indent(body, "        ")
            + "\n    return s + 3.0 * p + 5.0 * t + 7.0 * z.real + 11.0 * z.imag"
            " + k + m\n")


# around the chunk boundaries: 256 chunks at most, at least 16384 iterations
# each for bodies without inner loops or calls
REDUCTION_SIZES = [0, 1, 2, 7, 16, 17, 255, 256, 257, 511, 513, 4099, 16383,
                   16384, 16385, 32767, 32768, 32769, 49153]



def reduction_args(r, n):
    g = np.random.default_rng(r.randrange(1 << 30))
    a = g.standard_normal(n)
    b = g.standard_normal(n + r.choice([0, 0, 5]))
    idx = np.arange(n, dtype=np.int64)
    if n and r.random() < 0.5:
        for _ in range(r.randint(1, 3)):
            idx[r.randrange(n)] = len(b) + r.randint(0, 3)
    return [a, b, idx, r.choice([10.0, 3.0, 2.5])]


@needs_jit
@settings(FUZZ, max_examples=25)
@given(st.randoms(use_true_random=False))
def test_prange_reductions_generated(threads, r):
    fn = kernel(reduction_kernel(r), "kern")
    for _ in range(2):
        args = reduction_args(r, r.choice(REDUCTION_SIZES))
        n = len(args[0])
        exp = call(reference(fn), *args)
        outs = []
        for t in (1, 2, 3, 7, 2):
            kiln.set_num_threads(t)
            outs.append(call(fn, *args))
        if exp.exception is not None:
            for got in outs:
                e, g = exp.exception, got.exception
                assert g is not None and type(g) is type(e) and str(g) == str(e), \
                    (exp, got)
            continue
        assert all(o.exception is None for o in outs), (exp, outs)
        bits = {np.float64(o.result).tobytes() for o in outs}
        assert len(bits) == 1, [o.result for o in outs]
        e, g = exp.result, outs[0].result
        # terms are O(1) normals; the bound is generous but catches a lost
        # or doubled chunk (an error of order one term)
        assert abs(g - e) <= 1e-11 * (n + 1) * (1 + abs(e)), (e, g)


def red_zero_add(a, s0: float) -> float:
    s = s0
    for i in prange(len(a)):
        s += a[i]
    return s


def red_zero_sub(a, s0: float) -> float:
    s = s0
    for i in prange(len(a)):
        s = s - a[i]
    return s


@needs_jit
def test_prange_reductions_signed_zero(threads):
    """Sums of signed zeros keep CPython's sign whatever the grouping."""
    for fn in (jit(red_zero_add), jit(red_zero_sub)):
        for n in (0, 1, 5, 16, 100, 40000):
            for v in (-0.0, 0.0):
                for s0 in (-0.0, 0.0):
                    for t in (1, 3):
                        kiln.set_num_threads(t)
                        check(fn, np.full(n, v), s0)


# ---------------------------------------------------------------------------
# (4) target="vulkan"

MATH_SPECIALS = [
    0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, math.inf, -math.inf,
    math.nan, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
    -1.7976931348623157e308, 1e-300, 1e300, 709.782712893384,
    709.7827128933841, -745.1332191019411, -745.1332191019412,
    710.4758600739439, -710.4758600739439, 1024.0, 1023.9999999999999, -1074.0,
    -1075.0, -1080.0, 0.7853981633974483, 1.5707963267948966, 3.141592653589793,
    1e22, 2.0 ** 53, 0.9999999999999999, 1.0000000000000002,
    -1.0000000000000002, -0.9999999999999999, 27.2, 1e-17, -1e-17, 36.8, 19.1,
    1e15, 1e308]


def ulps_apart(e, g):
    if math.isnan(e) and math.isnan(g):
        return 0.0
    if e == g and math.copysign(1.0, e) == math.copysign(1.0, g):
        return 0.0
    if not (math.isfinite(e) and math.isfinite(g)):
        return math.inf
    return abs(e - g) / float(np.spacing(max(abs(e), abs(g))))


def math_agrees(fn, ulps, x, y):
    """fn(x, y) on the device against CPython: the same exception, or a
    float within `ulps`."""
    exp = call(reference(fn), x, y)
    got = call(fn, x, y)
    if exp.exception is not None or got.exception is not None:
        e, g = exp.exception, got.exception
        assert e is not None and g is not None and type(g) is type(e) \
            and str(g) == str(e), (x, y, exp, got)
        return
    assert type(got.result) is type(exp.result), (x, y, exp, got)
    assert ulps_apart(exp.result, got.result) <= ulps, (x, y, exp, got)


@needs_vulkan
@pytest.mark.parametrize("name", sorted(VULKAN_F64_MATH_ULPS))
def test_vulkan_math_specials_and_errors(rng, name):
    two = name in ("atan2", "pow")
    src = (f"def k(x: float, y: float) -> float:\n"
           f"    return math.{name}(x{', y' if two else ''})\n")
    fn = kernel(src, "k", "vulkan")
    ulps = VULKAN_F64_MATH_ULPS[name]
    bits = rng.integers(0, 2 ** 64, 150, dtype=np.uint64).view(np.float64)
    logu = rng.choice([-1.0, 1.0], 150) * 10.0 ** rng.uniform(-30, 30, 150)
    xs = MATH_SPECIALS + [float(v) for v in bits] + [float(v) for v in logu] \
        + [float(v) for v in rng.uniform(-800, 800, 100)]
    if two:
        pairs = [(x, y) for x in MATH_SPECIALS for y in MATH_SPECIALS[::2]]
        pairs += [(x, xs[(i * 7919) % len(xs)] if i % 2
                   else float(rng.uniform(-5, 5))) for i, x in enumerate(xs)]
    else:
        pairs = [(x, 0.0) for x in xs]
    for x, y in pairs:
        math_agrees(fn, ulps, x, y)


REDUCE_OPS = {"add": "s += a[i]", "sub": "s -= a[i]", "subx": "s = s - a[i]",
              "mul": "s *= a[i]", "min": "s = min(s, a[i])",
              "max": "s = max(s, a[i])", "and": "s &= a[i]", "or": "s |= a[i]",
              "xor": "s ^= a[i]"}
REDUCE_DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32",
                 "int64", "uint64", "float32", "float64", "complex64",
                 "complex128"]
REDUCE_CASES = [(op, dt) for dt in REDUCE_DTYPES for op in REDUCE_OPS
                if not (dt == "bool" and op in ("add", "sub", "subx", "mul"))
                and not (dt[0] in "fc" and op in ("and", "or", "xor"))
                and not (dt[0] == "c" and op in ("min", "max"))]


def reduce_data(rng, op, dt, n):
    """Values whose reduction rounds nowhere (small integers, factors that
    are powers of two or units), a NaN among min/max floats."""
    d = np.dtype(dt)
    if d.kind == "b":
        return rng.integers(0, 2, n).astype(bool), d.type(True)
    if d.kind in "iu":
        info = np.iinfo(d)
        a = rng.integers(max(info.min, -100), min(info.max, 100), n,
                         endpoint=True).astype(d)
        if op == "mul":
            a = rng.choice(np.array([1, 1, 1, 2, 3 if d.kind == "u" else -1], d), n)
        s0 = {"mul": 1, "and": info.max, "min": 50, "max": 0}.get(op, 3)
        return a, d.type(s0)
    if d.kind == "f":
        a = rng.integers(-8, 8, n).astype(d)
        if op == "mul":
            a = rng.choice(np.array([1.0, 1.0, 2.0, 0.5, -1.0], d), n)
        if op in ("min", "max") and n > 3 and n % 2:
            a[n // 3] = np.nan
        return a, d.type({"mul": 1.0, "min": 50.0, "max": -50.0}.get(op, 3.0))
    a = (rng.integers(-8, 8, n) + 1j * rng.integers(-8, 8, n)).astype(d)
    if op == "mul":
        a = rng.choice(np.array([1, 1j, -1, 1 + 0j], d), n)
    return a, d.type(1 + 0.5j if op == "mul" else 3 - 1j)


@needs_vulkan
@pytest.mark.parametrize("op,dt", REDUCE_CASES,
                         ids=[f"{o}-{d}" for o, d in REDUCE_CASES])
def test_vulkan_reductions_every_family(rng, op, dt):
    """Each operator on each dtype, with an int and a counting reduction
    beside it, on the device: CPython's value (nothing rounds here; a float
    zero's sign may follow the grouping), the same on repeated runs."""
    src = ("def k(a, s0, o):\n    s = s0\n    t = 7\n    c = 0\n"
           "    for i in prange(a.shape[0]):\n"
           f"        {REDUCE_OPS[op]}\n"
           "        if a[i] != a[i]:\n            c += 1\n"
           "        t += i\n"
           "    o[0] = t\n    o[1] = c\n    return s\n")
    fn = kernel(src, "k", "vulkan")
    for n in (0, 1, 5, 64, 129, 2049, 5000):
        a, s0 = reduce_data(rng, op, dt, n)
        o = np.zeros(2, np.int64)
        exp = call(reference(fn), a, s0, o)
        got = call(fn, a, s0, o)
        again = call(fn, a, s0, o)
        assert np.asarray(got.result).tobytes() == np.asarray(again.result).tobytes()
        for g, e in zip(got.arrays, exp.arrays):
            assert np.array_equal(g, e, equal_nan=True), (n, exp, got)
        assert dtype_of(got.result) == dtype_of(exp.result), (n, exp, got)
        if dt[0] in "fc" and op not in ("min", "max"):
            assert got.result == exp.result, (n, exp, got)   # -0.0 == 0.0
        else:
            check(fn, a, s0, o)


@needs_vulkan
@settings(FUZZ, max_examples=20)
@given(st.randoms(use_true_random=False))
def test_vulkan_reductions_generated(r):
    """The CPU reduction kernels of (3) on the device, at sizes around the
    workgroup (128) and the combine slices (2048)."""
    fn = kernel(reduction_kernel(r), "kern", "vulkan")
    for _ in range(2):
        args = reduction_args(r, r.choice([0, 1, 2, 63, 64, 65, 127, 128, 129,
                                           2047, 2048, 2049, 4097]))
        n = len(args[0])
        exp = call(reference(fn), *args)
        got = call(fn, *args)
        if exp.exception is not None:
            e, g = exp.exception, got.exception
            assert g is not None and type(g) is type(e) and str(g) == str(e), \
                (exp, got)
            continue
        again = call(fn, *args)
        assert got.exception is None and again.exception is None, (exp, got)
        assert np.float64(got.result).tobytes() == np.float64(again.result).tobytes()
        assert abs(got.result - exp.result) <= 1e-11 * (n + 1) * (1 + abs(exp.result)), \
            (exp, got)
