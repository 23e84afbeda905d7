"""What kiln refuses, and how: CompileError for constructs outside the
language, TypeError for arguments that do not fit, ValueError for writes to
read-only arrays, IndexError on empty arrays; the caller's data stays intact
and nothing crashes the interpreter.

Lines a CompileError may point at carry the comment `# <- error`; the test
finds them in this file, so the expected line numbers never go stale.
"""

import inspect
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import kiln
from kiln import f32, f64, i32, i64
from conftest import JIT_DISABLED, call, check, jit

MARK = "# <- error"

# ---------------------------------------------------------------------------
# constructs outside the language


def make_closure():
    k = 3

    def uses_free_variable(x):  # <- error
        return x + k  # <- error
    return uses_free_variable


def generator(n):  # <- error
    for i in range(n):
        yield i  # <- error


def try_except(x):
    try:  # <- error
        return 1 // x  # <- error
    except ZeroDivisionError:  # <- error
        return 0  # <- error


def with_statement(x):
    with open("/dev/null"):  # <- error
        pass
    return x


def builds_list(x):
    y = [x, x]  # <- error
    return y[0]


def builds_dict(x):
    d = {"a": x}  # <- error
    return d["a"]


def builds_set(x):
    s = {x, 1}  # <- error
    return len(s)


def uses_string(x):
    if x == "text":  # <- error
        return 1
    return x


def prints(x):
    print(x)  # <- error
    return x


def helper(x, y=1):
    return x + y


def keyword_argument(x):
    return helper(x, y=2)  # <- error


def star_args(*args):  # <- error
    return 0


def star_kwargs(x, **kw):  # <- error
    return x


def array_arithmetic(a, b):
    return a + b  # <- error


def array_scalar_arithmetic(a):
    return a * 2.0  # <- error


def type_conflict(c, a):
    if c:
        x = 1.5  # <- error
    else:
        x = a  # <- error
    return x  # <- error


def none_and_value(x):
    if x > 0:
        return x  # <- error
    return  # <- error


def returns_array(a):
    return a  # <- error


def slices(a):
    s = 0.0
    for v in a[1:]:  # <- error
        s += v
    return s


def sub_array(a):
    return a[0]  # <- error


def float_shift(x):
    return x << 1  # <- error


def complex_floordiv(z):
    return z // 2  # <- error


def complex_order(z):
    return z < 1j  # <- error


def invert_float(x):
    return ~x  # <- error


def complex_into_float_array(a, z):
    a[0] = z  # <- error


def global_store(x):
    global SOME_GLOBAL
    SOME_GLOBAL = x  # <- error
    return x


SOME_GLOBAL = 0


class Box:
    value = 0


BOX = Box()


def attribute_store(x):
    BOX.value = x  # <- error
    return x


def unknown_call(n):
    return np.zeros(n)  # <- error


def round_ndigits(x):
    return round(x, 2)  # <- error


def int_of_complex(z):
    return int(z)  # <- error


def lambda_inside(x):
    f = lambda y: y + 1  # noqa: E731  # <- error
    return f(x)  # <- error


COMPILE_ERRORS = [
    (make_closure(), (1.0,), None),
    (generator, (3,), None),
    (try_except, (2,), None),
    (with_statement, (2,), None),
    (builds_list, (1,), None),
    (builds_dict, (1,), None),
    (builds_set, (1,), None),
    (uses_string, (1,), None),
    (prints, (1,), None),
    (keyword_argument, (1,), None),
    (star_args, (1, 2), None),
    (star_kwargs, (1,), None),
    (array_arithmetic, (np.ones(3), np.ones(3)),
     "array expressions are not supported; index the array"),
    (array_scalar_arithmetic, (np.ones(3),),
     "array expressions are not supported; index the array"),
    (type_conflict, (True, np.ones(3)), "on one path and"),
    (none_and_value, (1.0,), None),
    (returns_array, (np.ones(3),), None),
    (slices, (np.ones(3),), None),
    (sub_array, (np.ones((3, 3)),), "slices and sub-arrays are not supported yet"),
    (float_shift, (1.5,), "<<"),
    (complex_floordiv, (1j,), None),
    (complex_order, (1j,), None),
    (invert_float, (1.5,), None),
    (complex_into_float_array, (np.ones(3), 1j), None),
    (global_store, (1,), None),
    (attribute_store, (1,), None),
    (unknown_call, (3,), None),
    (round_ndigits, (1.234,), None),
    (int_of_complex, (1j,), None),
    (lambda_inside, (1,), None),
]


def marked_lines(fn):
    """Line numbers of fn's source carrying the error mark."""
    lines, first = inspect.getsourcelines(fn)
    return {first + k for k, line in enumerate(lines) if line.rstrip().endswith(MARK)}


@pytest.mark.parametrize("fn,args,fragment", COMPILE_ERRORS,
                         ids=[c[0].__name__ for c in COMPILE_ERRORS])
def test_compile_error(target, fn, args, fragment):
    expected_lines = marked_lines(fn)
    assert expected_lines, "the test function marks no line"
    arrays = [a.copy() for a in args if isinstance(a, np.ndarray)]
    f = jit(fn, target)
    if JIT_DISABLED:
        return      # plain Python: nothing to refuse
    with pytest.raises(kiln.CompileError) as info:
        f(*args)
    e = info.value
    msg = str(e)
    assert os.path.samefile(e.filename, __file__), (e.filename, msg)
    assert e.lineno in expected_lines, (e.lineno, sorted(expected_lines), msg)
    assert msg.startswith(f"{e.filename}:{e.lineno}:"), msg
    source_line = inspect.getsourcelines(fn)[0][e.lineno - inspect.getsourcelines(fn)[1]]
    quoted = source_line.split(MARK)[0].split("# noqa")[0].strip()
    assert quoted in msg, (quoted, msg)
    if fragment is not None:
        assert fragment in msg, msg
    # nothing compiled, nothing cached, the arguments untouched
    assert f.signatures == []
    for a, b in zip(arrays, [a for a in args if isinstance(a, np.ndarray)]):
        assert np.array_equal(a, b)
    # a second call fails the same way (no half-built specialisation)
    with pytest.raises(kiln.CompileError):
        f(*args)


def test_compile_error_is_exception():
    assert issubclass(kiln.CompileError, Exception)


# ---------------------------------------------------------------------------
# bad arguments


def typed(values: f32[:], count: int, scale: float) -> None:
    for i in range(count):
        values[i] = values[i] * scale


def contiguous(grid: f64[:, ::1]) -> float:
    return grid[0, 0]


def typed_scalars(small: i32, big: i64) -> int:
    return small + big


def bad_calls():
    good = np.ones(4, np.float32)
    return [
        # (args, parameter named, fragments the message must contain)
        ((np.ones(4, np.float64), 2, 1.5), "values", ["float32", "float64"]),
        ((np.ones((2, 2), np.float32), 2, 1.5), "values", ["float32"]),
        ((None, 2, 1.5), "values", ["None"]),
        (([1.0, 2.0], 2, 1.5), "values", ["list"]),
        (("abcd", 2, 1.5), "values", ["str"]),
        ((np.ones(4, np.int32), 2, 1.5), "values", ["float32", "int32"]),
        ((good, None, 1.5), "count", ["None"]),
        ((good, "2", 1.5), "count", ["str"]),
        ((good, 2.5, 1.5), "count", ["float"]),
        ((good, [2], 1.5), "count", ["list"]),
        ((good, 2, "1.5"), "scale", ["str"]),
        ((good, 2, None), "scale", ["None"]),
        ((good, 2, 1j), "scale", ["complex"]),
    ]


@pytest.mark.parametrize("case", range(len(bad_calls())))
def test_bad_argument(target, case):
    args, name, fragments = bad_calls()[case]
    f = jit(typed, target)
    before = [a.copy() for a in args if isinstance(a, np.ndarray)]
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f(*args)        # on the caller's own arrays
    except Exception as exc:  # noqa: BLE001
        e = exc
    else:
        e = None
    if JIT_DISABLED:
        return      # plain Python: no type checks
    for a, b in zip(before, [a for a in args if isinstance(a, np.ndarray)]):
        assert a.tobytes() == b.tobytes(), "the caller's array was modified"
    assert type(e) is TypeError, repr(e)
    msg = str(e)
    assert name in msg, msg
    for frag in fragments:
        assert frag in msg, (frag, msg)


def test_layout_mismatch(target):
    f = jit(contiguous, target)
    a = np.arange(12.0).reshape(3, 4)
    check(f, a)
    out = call(f, a[:, ::2])
    if not JIT_DISABLED:
        assert type(out.exception) is TypeError and "grid" in str(out.exception), out
    out = call(f, np.asfortranarray(a))
    if not JIT_DISABLED:
        assert type(out.exception) is TypeError and "grid" in str(out.exception), out


def test_wrong_argument_count(target):
    f = jit(typed_scalars, target)
    for args in [(), (np.int32(1),), (np.int32(1), 2, 3)]:
        out = call(f, *args)
        assert type(out.exception) is TypeError, out
    assert f(np.int32(1), np.int64(2)) == 3


def test_scalar_annotations_reject_arrays(target):
    f = jit(typed_scalars, target)
    out = call(f, np.ones(2, np.int32), np.int64(1))
    if not JIT_DISABLED:
        assert type(out.exception) is TypeError and "small" in str(out.exception), out


def unannotated(a, x):
    return a[0] + x


def test_unannotated_bad_types(target):
    f = jit(unannotated, target)
    check(f, np.arange(3.0), 1.5)
    for args in [(np.arange(3.0), "x"), (np.arange(3.0), None), ([1.0], 1.0),
                 (np.array(["a", "b"]), 1.0), (np.array([object()]), 1.0)]:
        try:
            f(*args)
        except Exception as exc:  # noqa: BLE001
            e = exc
        else:
            e = None
        if not JIT_DISABLED:
            assert type(e) is TypeError, (args, e)


# ---------------------------------------------------------------------------
# read-only arrays


def writes(a, v):
    a[0] = v
    return a[1]


def reads(a):
    return a[0] + a[-1]


def writes_maybe(a, flag):
    if flag:
        a[0] = 1.0
    return a[0]


def test_readonly_written(target):
    a = np.arange(4.0)
    a.flags.writeable = False
    f = jit(writes, target)
    with pytest.raises(ValueError, match="read-only"):   # CPython says so too
        f(a, 9.0)
    assert np.array_equal(a, np.arange(4.0))
    # the same function still works on a writeable array
    check(f, np.arange(4.0), 9.0)
    # a read-only array only read is fine
    check(jit(reads, target), a)


def test_readonly_written_on_some_path(target):
    """The write is refused even when the path writing is not taken."""
    a = np.arange(4.0)
    a.flags.writeable = False
    out = call(jit(writes_maybe, target), a, False)
    if not JIT_DISABLED:
        assert type(out.exception) is ValueError, out
        assert "read-only" in str(out.exception), out
    f = jit(writes_maybe, target)
    with pytest.raises(ValueError, match="read-only"):
        f(a, True)
    assert np.array_equal(a, np.arange(4.0))


# ---------------------------------------------------------------------------
# empty arrays


def sum_all(a):
    s = 0.0
    n = 0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            s += a[i, j]
            n += 1
    return float(s) + n


def first(a):
    return a[0]


def last(a):
    return a[-1]


def count_while(a):
    n = 0
    while n < len(a):
        n += 1
    return n + a.size


def test_empty_arrays(target):
    for shape in [(0, 3), (3, 0), (0, 0)]:
        check(jit(sum_all, target), np.zeros(shape, np.float32))
    for fn in (first, last):
        f = jit(fn, target)
        check(f, np.zeros(0, np.int64))
        check(f, np.zeros(0, np.float32)[::-1])
    check(jit(count_while, target), np.zeros(0, np.uint8))


# ---------------------------------------------------------------------------
# errors raised inside kernels leave earlier writes, as CPython does


def fill_then_fail(a, n):
    for i in range(n):
        a[i] = i * 2
    return a[0]


def test_partial_writes_then_error(target):
    f = jit(fill_then_fail, target)
    for n in (0, 3, 5, 8):
        check(f, np.zeros(5, np.int32), n)


# ---------------------------------------------------------------------------
# nothing crashes the interpreter

NASTY = r'''
import sys
import numpy as np
import os
import kiln
from kiln import f32, f64
DISABLED = os.environ.get("KILN_DISABLE_JIT", "") not in ("", "0")

@kiln.jit
def get(a, i):
    return a[i]

@kiln.jit
def get2(a: f64[:, :], i: int, j: int) -> float:
    return a[i, j]

@kiln.jit
def put(a: f32[:], i: int, v: float) -> None:
    a[i] = v

@kiln.jit
def loop(n: int) -> int:
    s = 0
    for i in range(n):
        s += i
    return s

@kiln.jit
def divide(a: int, b: int) -> int:
    return a // b

def recurse(n):
    return recurse(n - 1) if n > 0 else 0

@kiln.jit
def calls_recursive(n: int) -> int:
    return recurse(n)

def attempt(f, *args):
    try:
        f(*args)
    except Exception:
        pass

x = np.arange(10.0)
for i in (10, -11, 2**62, -2**63, 2**63 - 1):
    attempt(get, x, i)
attempt(get, np.zeros(0), 0)
attempt(get, np.broadcast_to(np.float64(1.0), (10**6,)), 999999)  # zero stride
attempt(get, x.astype(">f8"), 1)                    # non-native byte order
attempt(get, np.array([None, 1], dtype=object), 0)
attempt(get, np.zeros(3, dtype=[("a", "f8")]), 0)   # structured
attempt(get, np.zeros((1,) * 9), 0)                 # more than 8 dims
attempt(get, np.float64(3.0), 0)                    # 0-d scalar
attempt(get, np.array(3.0), 0)                      # 0-d array
attempt(get, x, 2**64)                              # int beyond int64
attempt(get, x, 1.5)
attempt(get, x, np.float64("nan"))
attempt(get2, np.zeros((3, 0)), 0, 0)
attempt(get2, np.zeros((2, 2))[::-1, ::-1], -3, 1)
attempt(put, np.zeros(4, np.float32)[::2], 2, 1.0)
ro = np.zeros(4, np.float32); ro.flags.writeable = False
attempt(put, ro, 0, 1.0)
attempt(put, memoryview(b"abcd"), 0, 1.0)
attempt(put, bytearray(16), 0, 1.0)
if not DISABLED:                  # plain Python would loop for ever
    attempt(loop, 2**63)
attempt(loop, -1)
attempt(divide, -2**63, -1)
attempt(divide, 1, 0)
attempt(calls_recursive, 5)
attempt(get)
attempt(get, x, 1, 2)
attempt(kiln.jit, 42)
attempt(lambda: kiln.jit(target="nowhere")(recurse))
attempt(lambda: kiln.jit(fastmath=1)(recurse))
del get, get2, put
import gc; gc.collect()
print("survived")
'''


def test_nothing_crashes(tmp_path):
    script = tmp_path / "nasty.py"
    script.write_text(textwrap.dedent(NASTY))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [os.path.dirname(os.path.dirname(kiln.__file__)),
                    env.get("PYTHONPATH", "")] if p)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    assert "survived" in proc.stdout
