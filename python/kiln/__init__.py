"""kiln: compile type-annotated Python functions to native code.

    import kiln
    from kiln import f32, prange

    @kiln.jit
    def saxpy(a: float, x: f32[:], y: f32[:]) -> None:
        for i in prange(x.shape[0]):
            y[i] = a * x[i] + y[i]

`kiln.jit` returns a dispatcher that compiles one specialisation per
argument-type signature on first use (see the user guide in docs/).

With the environment variable KILN_DISABLE_JIT=1, `kiln.jit` returns the
decorated function itself: it then runs as plain Python (`prange` is
`range`) and has no `py_func`, `signatures` or `inspect_*` attributes.

Importing kiln is cheap: NumPy is loaded on first use, and LLVM does no
work until the first compilation.
"""

import os as _os

from . import _types
from ._types import ArrayType, ScalarType

__version__ = "0.1.0"


def _import_core():
    """Imports kiln._core with lazy symbol binding: the extension leaves its
    calls into LLVM unresolved until it loads LLVM at the first compilation
    (see setup.py), which keeps `import kiln` cheap."""
    import sys
    flags = sys.getdlopenflags()
    sys.setdlopenflags(_os.RTLD_LAZY | (flags & ~_os.RTLD_NOW))
    try:
        from . import _core
    except ImportError as e:
        # eager binding forced (LD_BIND_NOW): load LLVM first, globally
        if "undefined symbol: LLVM" not in str(e):
            raise
        import ctypes
        for name in ("libLLVM.so.19.1", "libLLVM-19.so",
                     "/usr/lib/llvm-19/lib/libLLVM-19.so"):
            try:
                ctypes.CDLL(name, mode=_os.RTLD_GLOBAL)
                break
            except OSError:
                pass
        from . import _core
    finally:
        sys.setdlopenflags(flags)
    return _core


try:
    _core = _import_core()
except ImportError as _e:  # a source tree without the built extension
    if _os.environ.get("KILN_DISABLE_JIT", "") in ("", "0"):
        raise ImportError(
            f"kiln: the C extension kiln._core is not built ({_e}); "
            "run `make build` in the kiln source tree") from None
    _core = None

    class CompileError(Exception):
        """A construct or type kiln cannot compile (file:line: message)."""

        filename = None
        lineno = None
else:
    CompileError = _core.CompileError

from . import vulkan  # noqa: E402

__all__ = [
    "jit", "prange", "CompileError", "set_num_threads", "get_num_threads",
    "vulkan", "ScalarType", "ArrayType",
]

# ---- scalar types: short and long names --------------------------------

_S = _types.SCALARS
bool_ = _S["bool"]
i8 = int8 = _S["int8"]
i16 = int16 = _S["int16"]
i32 = int32 = _S["int32"]
i64 = int64 = _S["int64"]
u8 = uint8 = _S["uint8"]
u16 = uint16 = _S["uint16"]
u32 = uint32 = _S["uint32"]
u64 = uint64 = _S["uint64"]
f32 = float32 = _S["float32"]
f64 = float64 = _S["float64"]
c64 = complex64 = _S["complex64"]
c128 = complex128 = _S["complex128"]
del _S
__all__ += ["bool_", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64",
            "f32", "f64", "c64", "c128", "int8", "int16", "int32", "int64",
            "uint8", "uint16", "uint32", "uint64", "float32", "float64",
            "complex64", "complex128"]


# ---- prange --------------------------------------------------------------

def prange(*args):
    """A parallel `range`: prange(stop), prange(start, stop[, step]).

    Compiled code runs the iterations of the outermost prange of a loop
    nest on several threads; interpreted, it is `range`."""
    return range(*args)


# ---- threads -------------------------------------------------------------

def set_num_threads(n):
    """Sets how many threads run parallel loops (1 <= n <= 256)."""
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(
            f"kiln.set_num_threads() expects an int, got {type(n).__name__}")
    n = n.__index__()
    if not 1 <= n <= 256:
        raise ValueError(
            f"kiln.set_num_threads(): n must be between 1 and 256, got {n}")
    if _core is not None:
        _core.set_num_threads(n)


def get_num_threads():
    """The number of threads that run parallel loops: the last
    set_num_threads(), else KILN_NUM_THREADS, else the number of CPUs."""
    return _core.get_num_threads() if _core is not None else _os.cpu_count()


# ---- jit -----------------------------------------------------------------

_TARGETS = ("cpu", "vulkan")
_DEFAULTS = {"target": "cpu", "fastmath": False, "boundscheck": True,
             "cache": False}


def _check_options(options):
    """The full option dict, validated: TypeError for unknown options or
    values of the wrong type, ValueError for an unknown target."""
    out = dict(_DEFAULTS)
    for key, value in options.items():
        if key not in _DEFAULTS:
            raise TypeError(f"kiln.jit() got an unexpected option '{key}'")
        if key == "target":
            if not isinstance(value, str):
                raise TypeError(
                    f"kiln.jit(): target must be a str, got {type(value).__name__}")
            if value not in _TARGETS:
                raise ValueError(
                    f"kiln.jit(): unknown target {value!r} (expected 'cpu' or 'vulkan')")
        elif type(value) is not bool:
            raise TypeError(
                f"kiln.jit(): {key} must be True or False, got {value!r}")
        out[key] = value
    return out


def _disabled():
    return _os.environ.get("KILN_DISABLE_JIT", "") not in ("", "0")


def _wrap(fn, opts):
    import types
    if not isinstance(fn, types.FunctionType):
        raise TypeError(
            f"kiln.jit() expects a Python function, got {type(fn).__name__}")
    if _disabled():
        return fn
    names, specs, ret = _types.param_specs(fn)
    d = _core.Dispatcher(fn, names, specs, ret,
                         (opts["target"], opts["fastmath"],
                          opts["boundscheck"], opts["cache"]))
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        try:
            setattr(d, attr, getattr(fn, attr))
        except AttributeError:
            pass
    d.__wrapped__ = fn
    return d


def jit(fn=None, /, **options):
    """Compiles fn lazily, one specialisation per argument-type signature.

    Use as `@kiln.jit` or `@kiln.jit(target="cpu", fastmath=False,
    boundscheck=True, cache=False)`.  With cache=True, CPU code is also kept
    on disk and later processes load it instead of compiling
    ($KILN_CACHE_DIR, else __pycache__/kiln beside the source, else
    ~/.cache/kiln); `fn.cache_hits` counts the loads (docs/language.md)."""
    opts = _check_options(options)
    if fn is None:
        return lambda f: _wrap(f, opts)
    return _wrap(fn, opts)
