"""Shared test machinery: targets, reproducible randomness, and `check`.

Every language test compares a compiled function with its original Python
function (`fn.py_func`) run by CPython on identical copies of the same
arguments.  `check` (kiln.testing.assert_same) asserts that both return the
same value of the same dtype (floats bit for bit, any NaN equal to any NaN)
or raise the same exception type with the same message, and that every
array argument ends up bit-identical.

Seeds: set KILN_TEST_SEED=N to reproduce a run; otherwise a random seed is
drawn, shown in the pytest header and attached to every failure report.
Each test gets its own generator derived from the seed and its node id, so a
test draws the same inputs whether it runs alone or with the whole suite.

With KILN_DISABLE_JIT=1, `kiln.jit` returns the plain function: `check` then
calls the function twice and every comparison passes trivially; what such a
run verifies is the test logic itself.
"""

import os
import random
import zlib

import numpy as np
import pytest

import kiln
from kiln import testing as ktesting

# ---------------------------------------------------------------------------
# seeds

SEED = int(os.environ.get("KILN_TEST_SEED", random.SystemRandom().randrange(2**32)))


def pytest_report_header(config):
    return f"kiln test seed: {SEED} (reproduce with KILN_TEST_SEED={SEED})"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.sections.append(
            ("kiln seed", f"KILN_TEST_SEED={SEED} pytest '{item.nodeid}'"))


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from SEED and the test's node id."""
    return np.random.default_rng([SEED, zlib.crc32(request.node.nodeid.encode())])


# ---------------------------------------------------------------------------
# targets

JIT_DISABLED = os.environ.get("KILN_DISABLE_JIT", "") not in ("", "0")


def available_targets():
    targets = ["cpu"]
    vulkan = getattr(kiln, "vulkan", None)
    if not JIT_DISABLED and vulkan is not None:
        try:
            if vulkan.is_available():
                targets.append("vulkan")
        except Exception:
            pass
    return targets


TARGETS = available_targets()


@pytest.fixture(params=TARGETS)
def target(request):
    """Every target available here: "cpu" always, "vulkan" with a device."""
    return request.param


# every Vulkan dispatcher the session makes, for spirv_val_everything
_VULKAN_DISPATCHERS = []


def jit(fn, target="cpu", **options):
    """A fresh dispatcher for fn (so specialisations never leak between tests)."""
    d = kiln.jit(target=target, **options)(fn)
    if target == "vulkan" and not JIT_DISABLED:
        _VULKAN_DISPATCHERS.append(d)
    return d


@pytest.fixture(scope="session", autouse=True)
def spirv_val_everything(tmp_path_factory):
    """After the session: spirv-val accepts every SPIR-V module the suite's
    Vulkan kernels emitted (each distinct module once)."""
    yield
    import hashlib
    import shutil
    import subprocess
    if not _VULKAN_DISPATCHERS or shutil.which("spirv-val") is None:
        return
    folder = tmp_path_factory.mktemp("spirv")
    seen, bad = set(), []
    for d in _VULKAN_DISPATCHERS:
        for sig in d.signatures:
            try:
                modules = d._spirv_modules(signature=sig)
            except (ValueError, kiln.CompileError):
                continue
            for words in modules:
                key = hashlib.sha1(words).hexdigest()
                if key in seen:
                    continue
                seen.add(key)
                path = folder / f"{key}.spv"
                path.write_bytes(words)
                r = subprocess.run(["spirv-val", "--target-env", "vulkan1.1",
                                    str(path)], capture_output=True, text=True)
                if r.returncode != 0:
                    bad.append(f"{d.__name__} {sig}: {r.stdout}{r.stderr}")
    assert not bad, f"spirv-val rejected {len(bad)} of {len(seen)} modules:\n" \
        + "\n".join(bad[:5])


# ---------------------------------------------------------------------------
# comparing with CPython (kiln.testing holds the machinery)

def check(fn, *args):
    """Runs dispatcher fn and its py_func on separate copies of args and
    asserts the same result (same dtype; floats bit for bit, NaN == NaN) or
    the same exception type and message, and bit-identical arrays
    afterwards.  Returns the Python side's kiln.testing.Outcome."""
    return ktesting.assert_same(fn, *args)


def call(fn, *args):
    """fn(*copies of args) with NumPy warnings silenced: a kiln.testing.Outcome
    (.result, .exception, .arrays)."""
    return ktesting.run(fn, *args)


def dtype_of(x):
    """The NumPy dtype a scalar result stands for (Python int -> int64, ...)."""
    if isinstance(x, (bool, np.bool_)):
        return np.dtype(np.bool_)
    if isinstance(x, np.generic):
        return x.dtype
    if isinstance(x, (int, float, complex)):
        return np.dtype({int: np.int64, float: np.float64,
                         complex: np.complex128}[type(x)])
    return x.dtype if isinstance(x, np.generic) else None


same_value = ktesting.same_value
reference = ktesting.reference


def check_raises(fn, exc_type, message, *args):
    """Asserts compiled fn raises exc_type(message) on args, whatever CPython
    does: for kiln's documented differences.  (Nothing to check with the JIT
    disabled.)"""
    out = call(fn, *args)
    if JIT_DISABLED:
        return
    got = out.exception
    assert got is not None, f"expected {exc_type.__name__}, kiln {out!r}"
    assert type(got) is exc_type, f"expected {exc_type.__name__}, kiln {out!r}"
    if message is not None:
        assert str(got) == message, f"expected {message!r}, kiln {out!r}"


# ---------------------------------------------------------------------------
# float64 math on the Vulkan target

# GLSL.std.450 has no float64 transcendental functions: on Vulkan these math
# functions (and float64 / complex `**`) run kiln's own implementations
# (python/kiln/_devmath.py, see docs/gpu.md "Accuracy").  They are within
# about half an ulp of the exact result; CPython's libm (glibc) is within
# one ulp or so of it too, hence at most this many ulps between the two.
# (erf, erfc, gamma, lgamma: see test_math_libm.)
VULKAN_F64_MATH_ULPS = {
    "sin": 1, "cos": 1, "tan": 2, "asin": 1, "acos": 1, "atan": 1,
    "atan2": 2, "sinh": 2, "cosh": 2, "tanh": 2, "asinh": 2, "acosh": 2,
    "atanh": 2, "exp": 1, "exp2": 1, "expm1": 1, "log": 1, "log2": 1,
    "log10": 2, "log1p": 1, "pow": 1,
}


def math_ulps(target, name):
    """ulps a float64 math function may differ from CPython's on target
    (0: bit-identical, the CPU target calls CPython's libm)."""
    return VULKAN_F64_MATH_ULPS.get(name, 0) if target == "vulkan" else 0


def check_ulp(fn, ulps, *args):
    """Like check, but a float result may differ from CPython's (NumPy's)
    by `ulps` units in the last place, and each part of a complex result
    by `ulps` units of the larger part: for math the Vulkan target
    computes itself (float32 `**` is correctly rounded in nearly all cases,
    libm's powf is within 0.82 ulp of it; float64 math: see
    VULKAN_F64_MATH_ULPS).  Exceptions and arrays compare exactly."""
    exp = call(reference(fn), *args)
    got = call(fn, *args)
    if JIT_DISABLED:
        return exp
    if ulps == 0 or exp.exception is not None or got.exception is not None \
            or not isinstance(exp.result, (float, complex, np.inexact)):
        return check(fn, *args)
    assert dtype_of(got.result) == dtype_of(exp.result), (args, exp, got)
    e, g = exp.result, got.result
    if same_value(g, e):
        return exp
    if isinstance(e, (complex, np.complexfloating)):
        part = type(e.real)
        scale = max(abs(e.real), abs(e.imag))
        pairs = [(part(e.real), part(g.real)), (part(e.imag), part(g.imag))]
    else:
        scale = abs(e)
        pairs = [(e, g)]
    for ep, gp in pairs:
        if same_value(gp, ep):
            continue
        assert np.isfinite(ep) and np.isfinite(gp), (args, exp, got)
        tol = ulps * np.spacing(type(ep)(scale))
        assert abs(float(gp) - float(ep)) <= tol, (args, exp, got)
    return exp


# ---------------------------------------------------------------------------
# random values

INT_DTYPES = [np.int8, np.int16, np.int32, np.int64,
              np.uint8, np.uint16, np.uint32, np.uint64]
FLOAT_DTYPES = [np.float32, np.float64]
COMPLEX_DTYPES = [np.complex64, np.complex128]
ALL_DTYPES = [np.bool_] + INT_DTYPES + FLOAT_DTYPES + COMPLEX_DTYPES


def int_specials(dt):
    info = np.iinfo(dt)
    vals = {0, 1, 2, 3, 7, info.max, info.max - 1, info.min}
    if info.min < 0:
        vals |= {-1, -2, -3, -7, info.min + 1}
    return sorted(vals)


FLOAT_SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 1e-310, float("inf"),
                  float("-inf"), float("nan"), 1e300, -7.0]


def rand_scalars(rng, dt, n, specials=True):
    """n random values of NumPy type dt (a mix of edge cases and random)."""
    dt = np.dtype(dt)
    if dt.kind == "b":
        return [np.bool_(v) for v in rng.integers(0, 2, n)]
    if dt.kind in "iu":
        info = np.iinfo(dt)
        out = [dt.type(v) for v in
               rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)]
        small = [dt.type(v) for v in rng.integers(max(info.min, -20), 20, n)]
        pool = out + small
        if specials:
            pool += [dt.type(v) for v in int_specials(dt)]
        return [pool[i] for i in rng.permutation(len(pool))[:n]] if n < len(pool) else pool
    if dt.kind == "f":
        vals = list(rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n))
        vals = [dt.type(v) for v in vals]
        if specials:
            k = min(len(FLOAT_SPECIALS), n // 2)
            picks = rng.choice(len(FLOAT_SPECIALS), k, replace=False)
            with np.errstate(all="ignore"):     # 1e300 -> float32 is inf
                for pos, p in zip(rng.choice(n, k, replace=False), picks):
                    vals[pos] = dt.type(FLOAT_SPECIALS[p])
        return vals
    part = np.dtype(f"f{dt.itemsize // 2}")
    re_ = rand_scalars(rng, part, n, specials)
    im_ = rand_scalars(rng, part, n, specials)
    im_ = [im_[i] for i in rng.permutation(n)]
    return [dt.type(complex(r, i)) for r, i in zip(re_, im_)]


def rand_array(rng, dt, shape, order="C"):
    dt = np.dtype(dt)
    n = int(np.prod(shape))
    vals = rand_scalars(rng, dt, n, specials=dt.kind != "b")
    return np.array(vals, dtype=dt).reshape(shape, order=order)

