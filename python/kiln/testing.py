"""Helpers comparing a kiln dispatcher with the Python function it compiles.

CPython running the undecorated function is kiln's oracle.  `assert_same`
runs both on separate copies of the same arguments and checks that they
agree on everything a caller can observe:

- the result: same value and same NumPy dtype (Python int counts as int64,
  float as float64, complex as complex128); floats compare bit for bit
  (so -0.0 differs from 0.0) except that any NaN equals any NaN;
- or the exception: same type and same message;
- and every array argument afterwards, compared bit for bit (NaN-aware).

NumPy warnings are silenced on both sides.  With KILN_DISABLE_JIT=1 the
"dispatcher" is the plain function and every comparison passes trivially.
"""

import copy
import warnings

import numpy as np

__all__ = ["Outcome", "run", "assert_same", "same_value", "same_array",
           "reference"]


class Outcome:
    """What one call did: its result or exception, and its array arguments
    afterwards."""

    __slots__ = ("result", "exception", "arrays")

    def __init__(self, result, exception, arrays):
        self.result = result            # return value (None if it raised)
        self.exception = exception      # the exception raised, or None
        self.arrays = arrays            # {position: array after the call}

    def __repr__(self):
        if self.exception is not None:
            e = self.exception
            return f"<raised {type(e).__name__}({str(e)!r})>"
        return f"<returned {self.result!r} ({type(self.result).__name__})>"


def reference(fn):
    """The plain Python function behind dispatcher fn (fn itself when the JIT
    is disabled)."""
    return getattr(fn, "py_func", fn)


def _copy(x):
    """A deep copy of x; an array keeps its dtype, shape, strides (negative
    ones and gaps included) and writeability."""
    if not isinstance(x, np.ndarray):
        return copy.deepcopy(x)
    lo = hi = 0
    for n, s in zip(x.shape, x.strides):
        if n == 0:
            lo = hi = 0
            break
        if s < 0:
            lo += s * (n - 1)
        else:
            hi += s * (n - 1)
    buf = np.zeros(hi - lo + x.itemsize, dtype=np.uint8)
    if x.size == 0:
        out = np.empty_like(x)
    else:
        out = np.ndarray(x.shape, x.dtype, buffer=buf, offset=-lo,
                         strides=x.strides)
        raw = np.dtype(f"V{x.itemsize}")
        out.view(raw)[...] = x.view(raw)   # keeps NaN payloads and -0.0
    if not x.flags.writeable:
        out.flags.writeable = False
    return out


def run(fn, *args):
    """Calls fn on copies of args and returns the Outcome."""
    args = [_copy(a) for a in args]
    result = exc = None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            result = fn(*args)
        except Exception as e:  # noqa: BLE001 - the exception is the outcome
            exc = e
    arrays = {i: a for i, a in enumerate(args) if isinstance(a, np.ndarray)}
    return Outcome(result, exc, arrays)


def _dtype_of(x):
    if isinstance(x, (bool, np.bool_)):
        return np.dtype(np.bool_)
    if isinstance(x, int):
        return np.dtype(np.int64)
    if isinstance(x, float):
        return np.dtype(np.float64)
    if isinstance(x, complex):
        return np.dtype(np.complex128)
    if isinstance(x, np.generic):
        return x.dtype
    return None


def _float_parts(x, dtype):
    """The raw values of float or complex scalar x as a float array."""
    a = np.asarray(x, dtype=dtype)
    if dtype.kind == "c":
        a = a.reshape(1).view(np.dtype(f"f{dtype.itemsize // 2}"))
    return a.reshape(-1)


def _same_floats(a, b):
    """Elementwise: same bits, or both NaN (a, b float arrays)."""
    ia = a.view(f"u{a.itemsize}")
    ib = b.view(f"u{b.itemsize}")
    return (ia == ib) | (np.isnan(a) & np.isnan(b))


def same_value(got, expected):
    """True when got and expected are the same value of the same dtype."""
    if got is None or expected is None:
        return got is None and expected is None
    dg, de = _dtype_of(got), _dtype_of(expected)
    if dg is None or de is None:
        return got == expected and type(got) is type(expected)
    if dg != de:
        return False
    if de.kind in "biu":
        return int(got) == int(expected)
    return bool(np.all(_same_floats(_float_parts(got, de),
                                    _float_parts(expected, de))))


def same_array(got, expected):
    """True when two arrays have the same dtype, shape and elements (bit for
    bit for floats, any NaN equal to any NaN)."""
    if got.dtype != expected.dtype or got.shape != expected.shape:
        return False
    if got.dtype.kind in "fc":
        part = np.dtype(f"f{got.dtype.itemsize // (2 if got.dtype.kind == 'c' else 1)}")
        g = np.ascontiguousarray(got).view(part)
        e = np.ascontiguousarray(expected).view(part)
        return bool(np.all(_same_floats(g, e)))
    return bool(np.array_equal(got, expected))


def _describe(o):
    return repr(o)


def assert_same(fn, *args):
    """Asserts that dispatcher fn and its Python function agree on args (see
    the module docstring); returns the Python function's Outcome."""
    got = run(fn, *args)
    exp = run(reference(fn), *args)
    name = getattr(reference(fn), "__name__", repr(fn))
    where = f"{name}{tuple(args)!r}"
    if exp.exception is not None:
        e, g = exp.exception, got.exception
        assert g is not None, f"{where}: expected {exp!r}, kiln {got!r}"
        assert type(g) is type(e) and str(g) == str(e), \
            f"{where}: expected {exp!r}, kiln {got!r}"
    else:
        assert got.exception is None, f"{where}: expected {exp!r}, kiln {got!r}"
        assert same_value(got.result, exp.result), \
            f"{where}: expected {exp!r}, kiln {got!r}"
    for i, a in exp.arrays.items():
        assert same_array(got.arrays[i], a), \
            f"{where}: array argument {i} differs afterwards:\n" \
            f"kiln:   {got.arrays[i]!r}\npython: {a!r}"
    return exp
