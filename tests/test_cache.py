"""cache=True: compiled CPU code kept on disk across processes.

Each scenario runs a module of kernels in fresh interpreters (subprocesses
sharing one temporary KILN_CACHE_DIR) and reads back, per kernel, how many
specialisations were loaded from disk (`fn.cache_hits`); every process also
checks every result against CPython (kiln.testing.assert_same), so a stale
entry would show as a wrong result as well as a wrong hit count.

Scenario: a first process compiles and stores everything; a second loads
everything; a third runs a new version of the module in which one thing
each kernel depends on changed (a global constant, a callee, its own
source, fastmath, boundscheck) and must miss exactly those; corrupted
entries are ignored and replaced.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kiln

pytestmark = pytest.mark.skipif(
    os.environ.get("KILN_DISABLE_JIT", "") not in ("", "0"),
    reason="no compiled code without the JIT")

# The kernels, with {placeholders} that the second version changes.
MODULE = '''
import math
import kiln
from kiln import f64, i64, prange
from kiln.kernels.mandelbrot import mandelbrot
import cachecfg

SCALE = {scale}


class KernelError(ValueError):
    pass


def helper(x):
    return x * {factor}


def deep(x):
    return x + cachecfg.OFFSET


def middle(x):
    return deep(x) * cachecfg.HALF


@kiln.jit(cache=True)
def k_const(x: f64[:]) -> float:
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * SCALE
    return s


@kiln.jit(cache=True)
def k_callee(x: f64[:]) -> float:
    s = 0.0
    for i in range(x.shape[0]):
        s += helper(x[i])
    return s


@kiln.jit(cache=True)
def k_deep(x: f64[:]) -> float:
    s = 0.0
    for i in range(x.shape[0]):
        s += middle(x[i])
    return s


@kiln.jit(cache=True)
def k_source(x: f64[:]) -> float:
    s = 0.0
    for i in range(x.shape[0]):
        s += {expr}
    return s


@kiln.jit(cache=True, fastmath={fastmath})
def k_fastmath(x: f64[:]) -> float:
    s = 0.0
    for i in range(x.shape[0]):
        s += math.floor(x[i])
    return s


@kiln.jit(cache=True, boundscheck={boundscheck})
def k_bounds(x: f64[:], j: int) -> float:
    return x[j] + x[0]


@kiln.jit(cache=True)
def k_raise(x: f64[:], t: float) -> int:
    n = 0
    for i in range(x.shape[0]):
        if x[i] > t:
            raise KernelError("above the threshold")
        n += 1
    return n


@kiln.jit(cache=True)
def k_index(x: f64[:], j: int) -> float:
    return x[j]


@kiln.jit(cache=True)
def k_par(x: f64[:]) -> float:
    s = 0.0
    for i in prange(x.shape[0]):
        # whole numbers, so exact whatever the grouping of the additions
        s += math.floor(math.sqrt(abs(x[i])) * 64.0)
    return s


@kiln.jit(cache=True)
def k_mandel(out: i64[:, ::1], re0: float, re1: float, im0: float,
             im1: float) -> None:
    h, w = out.shape
    for y in prange(h):
        im = im0 + (im1 - im0) * y / h
        for x in range(w):
            re = re0 + (re1 - re0) * x / w
            out[y, x] = mandelbrot(complex(re, im))


@kiln.jit(cache=True)
def k_types(x):
    return x[0] + x[x.shape[0] - 1]
'''

V1 = dict(scale="3.0", factor="2.0", expr="x[i] * x[i]",
          fastmath="False", boundscheck="True", half="0.5")
V2 = dict(scale="5.0", factor="7.0", expr="x[i] - 1.0",
          fastmath="True", boundscheck="False", half="-8.0")
# k_deep: a constant of another module read by a callee, whose own callee
# reads another constant of that module (unchanged)
CHANGED = {"k_const", "k_callee", "k_source", "k_fastmath", "k_bounds",
           "k_deep"}

# Runs every kernel of `cachemod` against CPython and prints the hit counts.
DRIVER = '''
import json, sys
import numpy as np
from kiln.testing import assert_same
import cachemod as m

rng = np.random.default_rng(7)
x = rng.uniform(-4.0, 4.0, 301)
assert_same(m.k_const, x)
assert_same(m.k_callee, x)
assert_same(m.k_deep, x)
assert_same(m.k_source, x)
assert_same(m.k_fastmath, np.round(x))
assert_same(m.k_bounds, x, 5)
assert_same(m.k_raise, x, 10.0)
assert_same(m.k_raise, x, 1.0)
assert_same(m.k_index, x, -3)
assert_same(m.k_index, x, 301)
assert_same(m.k_par, x)
assert_same(m.k_mandel, np.zeros((12, 20), dtype=np.int64), -2.0, 0.6,
            -1.5, 1.5)
assert_same(m.k_types, x)
if "more-types" in sys.argv:
    assert_same(m.k_types, np.arange(9))
    assert_same(m.k_types, x[::3])
names = [n for n in dir(m) if n.startswith("k_")]
print(json.dumps({n: getattr(m, n).cache_hits for n in names}))
'''


def write_module(folder, version):
    (folder / "cachemod.py").write_text(MODULE.format(**version))
    (folder / "cachecfg.py").write_text(
        f"OFFSET = 0.25\nHALF = {version['half']}\n")


def run(folder, cache_dir, *flags):
    """Runs the driver in a fresh interpreter; its hit counts per kernel."""
    env = dict(os.environ, KILN_CACHE_DIR=str(cache_dir),
               PYTHONPATH=os.pathsep.join(
                   [str(folder)] + sys.path))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    r = subprocess.run([sys.executable, "-c", DRIVER, *flags], cwd=folder,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def entry_of(cache_dir, kernel):
    files = sorted(cache_dir.glob(f"{kernel}.*.klc"))
    assert len(files) == 1, files
    return files[0]


def test_across_processes(tmp_path):
    folder, cache_dir = tmp_path / "src", tmp_path / "cache"
    folder.mkdir()
    write_module(folder, V1)
    first = run(folder, cache_dir)
    assert set(first.values()) == {0}, first
    kernels = set(first)
    assert len(list(cache_dir.glob("*.klc"))) == len(kernels)

    # same everything: every kernel loads from disk; new argument types
    # (an int64 array, a strided view: another layout) are compiled
    second = run(folder, cache_dir, "more-types")
    assert second == {k: 1 for k in kernels}, second

    # one dependency of each kernel in CHANGED changed: those miss, the
    # others hit (k_types: its three specialisations, stored last time)
    write_module(folder, V2)
    third = run(folder, cache_dir, "more-types")
    expected = {k: 0 if k in CHANGED else 1 for k in kernels}
    expected["k_types"] = 3
    assert third == expected, third

    # damaged entries: truncated, garbage, one byte changed
    p = entry_of(cache_dir, "k_par")
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    p = entry_of(cache_dir, "k_raise")
    p.write_bytes(os.urandom(p.stat().st_size))
    p = entry_of(cache_dir, "k_mandel")
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x40
    p.write_bytes(bytes(data))
    fourth = run(folder, cache_dir)
    damaged = {"k_par", "k_raise", "k_mandel"}
    assert fourth == {k: 0 if k in damaged else 1 for k in kernels}, fourth

    # ... and replaced by good ones
    fifth = run(folder, cache_dir)
    assert fifth == {k: 1 for k in kernels}, fifth
    assert not list(cache_dir.glob("*.tmp"))


def scaled_sum(x: kiln.f64[:]) -> float:
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * 0.25
    return s


def test_cache_false_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))
    x = np.linspace(-1.0, 1.0, 17)
    plain = kiln.jit(scaled_sum)
    assert plain(x) == scaled_sum(x)
    assert plain.cache_hits == 0
    assert not (tmp_path / "cache").exists() \
        or not list((tmp_path / "cache").iterdir())
    # the same function with cache=True does write there
    cached = kiln.jit(cache=True)(scaled_sum)
    assert cached(x) == scaled_sum(x)
    assert len(list((tmp_path / "cache").glob("scaled_sum.*.klc"))) == 1


def test_default_location_and_same_process(tmp_path, monkeypatch):
    """Without KILN_CACHE_DIR, entries go to __pycache__/kiln beside the
    source; a second dispatcher in the same process loads the entry."""
    monkeypatch.delenv("KILN_CACHE_DIR", raising=False)
    (tmp_path / "cachedefault.py").write_text(textwrap.dedent('''
        import kiln

        def cube(a: float) -> float:
            return a * a * a
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    import cachedefault
    one = kiln.jit(cache=True)(cachedefault.cube)
    assert one(1.5) == 3.375 and one.cache_hits == 0
    assert len(list((tmp_path / "__pycache__" / "kiln").glob(
        "cube.*.klc"))) == 1
    two = kiln.jit(cache=True)(cachedefault.cube)
    assert two(-2.5) == cachedefault.cube(-2.5) and two.cache_hits == 1


def _make_error():
    class LocalError(Exception):
        pass
    return LocalError


LocalError = _make_error()


def fails(a: float) -> float:
    if a > 1.0:
        raise LocalError("too big")
    return a


def test_local_exception_class_is_not_cached(tmp_path, monkeypatch):
    """A class another process could not find again by module and name
    (one defined inside a function) keeps the kernel out of the cache."""
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    fn = kiln.jit(cache=True)(fails)
    assert fn(0.5) == 0.5
    with pytest.raises(LocalError, match="too big"):
        fn(2.0)
    assert not list(tmp_path.glob("*.klc"))
