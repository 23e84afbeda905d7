"""kiln's type objects and the translation of annotations into specs.

Scalar type objects (`kiln.f32`, `kiln.int64`, ...) are usable as
annotations and subscriptable into array types (`f32[:, ::1]`).  The
decorator turns each parameter's annotation into a *spec*, the small value
the C dispatcher understands:

    None                    type taken from the argument at each call
    "pyint" | "pyfloat" | "pycomplex"
                            a Python scalar (weak int64 / float64 / complex128)
    "bool", "int8", ... "complex128"
                            a NumPy-typed (strong) scalar
    (elem, ndim, layout)    an array: elem a strong scalar name; ndim -1 when
                            taken from the call; layout 0 (any strides),
                            1 (C-contiguous) or -1 (taken from the call)

A return spec is None (inferred), "none" (`-> None`) or a scalar spec.
numpy is imported only when an annotation needs it.
"""

import sys

__all__ = ["ScalarType", "ArrayType", "SCALARS", "param_specs"]


class ScalarType:
    """A kiln scalar type; `t[:]`, `t[:, ::1]` ... give array types."""

    __slots__ = ("name", "short", "__weakref__")

    def __init__(self, name, short):
        self.name = name        # NumPy name: "float32"
        self.short = short      # kiln short name: "f32"

    def __repr__(self):
        return f"kiln.{self.short}"

    def __getitem__(self, dims):
        return ArrayType(self, *_parse_dims(dims))

    def __call__(self, value):
        """Converts value to this type as NumPy does (a NumPy scalar)."""
        import numpy as np
        return np.dtype(self.name).type(value)

    @property
    def dtype(self):
        import numpy as np
        return np.dtype(self.name)

    def __reduce__(self):
        return self.short


class ArrayType:
    """An array type: element type, number of dimensions, layout."""

    __slots__ = ("dtype_type", "ndim", "layout")

    def __init__(self, elem, ndim, layout):
        self.dtype_type = elem  # the ScalarType of the elements
        self.ndim = ndim        # number of dimensions
        self.layout = layout    # "A" (any strides) or "C" (C-contiguous)

    def __repr__(self):
        dims = [":"] * self.ndim
        if self.layout == "C":
            dims[-1] = "::1"
        return f"{self.dtype_type!r}[{', '.join(dims)}]"

    def __eq__(self, other):
        return (isinstance(other, ArrayType)
                and (self.dtype_type, self.ndim, self.layout)
                == (other.dtype_type, other.ndim, other.layout))

    def __hash__(self):
        return hash((self.dtype_type.name, self.ndim, self.layout))


def _parse_dims(dims):
    """(ndim, layout) of a subscript like `[:]`, `[:, ::1]`; TypeError for
    anything else (indices, bounds, other steps, `::1` before the end)."""
    if not isinstance(dims, tuple):
        dims = (dims,)
    if not dims:
        raise TypeError("kiln: an array type needs at least one dimension")
    layout = "A"
    for k, d in enumerate(dims):
        if not isinstance(d, slice) or d.start is not None or d.stop is not None:
            raise TypeError(
                f"kiln: array dimensions are written ':' (or '::1' last), "
                f"got {d!r}")
        if d.step is None:
            continue
        if d.step == 1 and type(d.step) is int and k == len(dims) - 1:
            layout = "C"
            continue
        raise TypeError(
            f"kiln: only the last dimension may be '::1' (C-contiguous), "
            f"got {d!r} in position {k}")
    if len(dims) > 8:
        raise TypeError("kiln: arrays have at most 8 dimensions")
    return len(dims), layout


_NAMES = [
    ("bool", "bool_"), ("int8", "i8"), ("int16", "i16"), ("int32", "i32"),
    ("int64", "i64"), ("uint8", "u8"), ("uint16", "u16"), ("uint32", "u32"),
    ("uint64", "u64"), ("float32", "f32"), ("float64", "f64"),
    ("complex64", "c64"), ("complex128", "c128"),
]

# name -> ScalarType; the kiln module exports each under both names
# (bool under `bool_` only, so it does not shadow the builtin).
SCALARS = {name: ScalarType(name, short) for name, short in _NAMES}

_PYTHON_SPECS = {int: "pyint", float: "pyfloat", complex: "pycomplex",
                 bool: "pybool"}


def _numpy_scalar_name(obj):
    """The NumPy name of numpy scalar type obj (np.float32 -> "float32"),
    or None when obj is not one kiln supports."""
    np = sys.modules.get("numpy")
    if np is None or not isinstance(obj, type) or not issubclass(obj, np.generic):
        return None
    name = np.dtype(obj).name
    return name if name in SCALARS else None


def _ndarray_alias_elem(ann):
    """For numpy.typing.NDArray[T] (or np.ndarray[Any, np.dtype[T]]) the
    element name of T; None when ann is not such an alias; TypeError when it
    is one with an element kiln does not support."""
    np = sys.modules.get("numpy")
    if np is None:
        return None
    import typing
    origin = typing.get_origin(ann)
    if origin is not np.ndarray:
        return None
    args = typing.get_args(ann)
    if len(args) != 2 or typing.get_origin(args[1]) is not np.dtype:
        raise TypeError(f"unsupported array annotation {ann!r}")
    (elem,) = typing.get_args(args[1])
    name = _numpy_scalar_name(elem)
    if name is None:
        raise TypeError(f"unsupported array element type {elem!r}")
    return name


def _spec(ann, allow_array):
    """The spec of one annotation object; TypeError with a short reason."""
    if ann in _PYTHON_SPECS and isinstance(ann, type):
        return _PYTHON_SPECS[ann]
    if isinstance(ann, ScalarType):
        return ann.name
    if isinstance(ann, ArrayType):
        if not allow_array:
            raise TypeError("arrays cannot be returned")
        return (ann.dtype_type.name, ann.ndim, 1 if ann.layout == "C" else 0)
    name = _numpy_scalar_name(ann)
    if name is not None:
        return name
    elem = _ndarray_alias_elem(ann)
    if elem is not None:
        if not allow_array:
            raise TypeError("arrays cannot be returned")
        return (elem, -1, -1)
    raise TypeError(f"unsupported annotation {ann!r}")


def _annotations(fn):
    """fn's annotations with string annotations resolved in its globals."""
    raw = getattr(fn, "__annotations__", None) or {}
    if not raw:
        return {}
    try:
        import typing
        return typing.get_type_hints(fn)
    except Exception:
        pass
    out = {}
    globs = getattr(fn, "__globals__", {})
    for name, ann in raw.items():
        if isinstance(ann, str):
            try:
                ann = eval(ann, globs)  # noqa: S307 - the user's own annotation
            except Exception as e:
                raise TypeError(
                    f"kiln: cannot resolve the annotation {ann!r} of "
                    f"'{name}' in {fn.__qualname__}(): {e}") from None
        out[name] = ann
    return out


def param_specs(fn):
    """(names, specs, return spec) of Python function fn; TypeError naming the
    parameter for an annotation kiln cannot use."""
    code = fn.__code__
    names = code.co_varnames[:code.co_argcount]
    anns = _annotations(fn)
    specs = []
    for name in names:
        if name not in anns:
            specs.append(None)
            continue
        try:
            specs.append(_spec(anns[name], True))
        except TypeError as e:
            raise TypeError(
                f"kiln: parameter '{name}' of {fn.__qualname__}(): {e}") from None
    ret = None
    if "return" in anns:
        ann = anns["return"]
        if ann is None or ann is type(None):
            ret = "none"
        else:
            try:
                ret = _spec(ann, False)
            except TypeError as e:
                raise TypeError(
                    f"kiln: return annotation of {fn.__qualname__}(): {e}") from None
    return tuple(names), tuple(specs), ret
