"""Streaming stores (csrc/passes/stream.c): loops that write a large array
the kernel never reads store around the caches.  The results must be
exactly CPython's, whatever the arrays' alignment, and the code must not
stream where it cannot.

Arrays here are at least 32 MiB, the size from which a call runs the
streaming code (dispatch.c, KL_STREAM_BYTES)."""

import os
import platform

import numpy as np
import pytest

import kiln
from conftest import JIT_DISABLED
from kiln import c128, f32, f64, i8, i16, prange, u64

pytestmark = pytest.mark.skipif(JIT_DISABLED,
                                reason="streaming stores are compiled code")

SEED = int(os.environ.get("KILN_TEST_SEED", "0")) or None
BIG = 32 << 20      # bytes: the streaming threshold
X86 = platform.machine() in ("x86_64", "AMD64")


@pytest.fixture
def rng():
    return np.random.default_rng(SEED)


def big(dtype, rng, extra=0):
    n = BIG // np.dtype(dtype).itemsize + extra
    if np.dtype(dtype).kind == "c":
        return (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(
            dtype)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(n).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, n, dtype=dtype)


def view_at(n, dtype, offset):
    """A 1-d array of n elements starting `offset` bytes into a buffer
    aligned to 64 bytes."""
    size = n * np.dtype(dtype).itemsize
    raw = np.zeros(size + 128, np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    return raw[start:start + size].view(dtype)


@kiln.jit
def scale_f64(x: f64[:], out: f64[:]) -> None:
    for i in prange(x.shape[0]):
        out[i] = x[i] * 2.5 + 1.0


@kiln.jit
def scale_f32(x: f32[:], out: f32[:]) -> None:
    for i in prange(x.shape[0]):
        out[i] = x[i] * np.float32(2.5) - np.float32(1.0)


@kiln.jit
def shift_i8(x: i8[:], out: i8[:]) -> None:
    for i in prange(x.shape[0]):
        out[i] = x[i] ^ np.int8(0x5A)


@kiln.jit
def add_i16(x: i16[:], out: i16[:]) -> None:
    for i in range(x.shape[0]):
        out[i] = x[i] + np.int16(3)


@kiln.jit
def conj_c128(x: c128[:], out: c128[:]) -> None:
    for i in prange(x.shape[0]):
        out[i] = x[i].conjugate() * 2.0


def expected(kernel, x):
    """What the kernel computes, by NumPy's same IEEE operations element
    for element (CPython's own result on arrays this large takes seconds;
    test_small_kernels_agree_with_cpython checks these against it)."""
    ops = {"scale_f64": lambda v: v * 2.5 + 1.0,
           "scale_f32": lambda v: v * np.float32(2.5) - np.float32(1.0),
           "shift_i8": lambda v: v ^ np.int8(0x5A),
           "add_i16": lambda v: v + np.int16(3),
           "conj_c128": lambda v: np.conj(v) * 2.0}
    return ops[kernel.__name__](x)


KERNELS = [(scale_f64, np.float64), (scale_f32, np.float32),
           (shift_i8, np.int8), (add_i16, np.int16),
           (conj_c128, np.complex128)]


@pytest.mark.parametrize("kernel,dtype", KERNELS,
                         ids=[k.__name__ for k, _ in KERNELS])
@pytest.mark.parametrize("items", [0, 1, 3, 5])
def test_results_at_any_alignment(kernel, dtype, items, rng):
    """Every element is written exactly, whether the output starts on a
    cache line or some elements after one."""
    off = items * np.dtype(dtype).itemsize
    x = big(dtype, rng, extra=int(rng.integers(0, 97)))
    out = view_at(x.size, dtype, off)
    out[:] = 0
    kernel(x, out)
    np.testing.assert_array_equal(out, expected(kernel, x))


def test_small_kernels_agree_with_cpython(rng):
    """The reference functions above are what the kernels compute in
    CPython (checked on small arrays, where CPython is quick)."""
    for kernel, dtype in KERNELS:
        x = big(dtype, rng)[:3000]
        out = np.zeros_like(x)
        kernel.py_func(x, out)
        np.testing.assert_array_equal(out, expected(kernel, x))


def test_overlapping_arguments(rng):
    """In place (the output is the input): the plain code, same results."""
    x = big(np.float64, rng)
    want = x * 2.5 + 1.0
    scale_f64(x, x)
    np.testing.assert_array_equal(x, want)


@kiln.jit
def rows(src: f32[:, :], dst: f32[:, :]) -> None:
    n, m = src.shape
    for i in prange(n):
        for j in range(1, m - 1):
            dst[i, j] = src[i, j - 1] + src[i, j + 1]


@pytest.mark.parametrize("shape", [(4096, 2048), (262144, 32),
                                   (8192, 1030), (1024, 8195)])
def test_rows_long_and_short(shape, rng):
    """An inner loop per row: long rows stream after a peel, short ones
    (under 2 KiB) store as usual; the border columns stay untouched."""
    src = rng.standard_normal(shape).astype(np.float32)
    dst = np.full(shape, 7.0, np.float32)
    rows(src, dst)
    want = np.full(shape, 7.0, np.float32)
    want[:, 1:-1] = src[:, :-2] + src[:, 2:]
    np.testing.assert_array_equal(dst, want)


def test_rows_against_cpython(rng):
    """The row kernel against its own Python function, element for
    element, at a size that streams (CPython takes a few seconds)."""
    src = rng.standard_normal((2048, 4096)).astype(np.float32)
    dst = np.zeros_like(src)
    ref = np.zeros_like(src)
    rows(src, dst)
    rows.py_func(src, ref)
    np.testing.assert_array_equal(dst, ref)


@kiln.jit
def shifted(x: f64[:], out: f64[:], k: int) -> None:
    for i in range(x.shape[0]):
        out[i - k] = x[i]


def test_negative_indices(rng):
    """out[i - k] starts at negative indices (counted from the end): the
    addresses are not consecutive across zero, so the loop stores as
    usual, as CPython does."""
    x = big(np.float64, rng)
    out = np.zeros_like(x)
    shifted(x, out, 5)
    np.testing.assert_array_equal(out, np.roll(x, -5))


@kiln.jit
def fill_until(out: f64[:], stop: int) -> None:
    for i in range(out.shape[0]):
        if i == stop:
            raise ValueError("stop")
        out[i] = i * 0.5


@kiln.jit
def fill_checked(out: f64[:], n: int) -> None:
    for i in range(n):
        out[i] = i * 0.5


def test_exceptions_keep_earlier_stores(rng):
    """A raise in a streaming loop: the elements before it are written, the
    ones after it are not, and the exception is CPython's."""
    n = BIG // 8
    stop = int(rng.integers(n // 2, n))
    out = np.full(n, -1.0)
    with pytest.raises(ValueError, match="stop"):
        fill_until(out, stop)
    want = np.full(n, -1.0)
    want[:stop] = np.arange(stop) * 0.5
    np.testing.assert_array_equal(out, want)

    out = np.full(n, -1.0)
    with pytest.raises(IndexError, match="out of bounds"):
        fill_checked(out, n + 3)
    np.testing.assert_array_equal(out, np.arange(n) * 0.5)


@pytest.mark.parametrize("threads", [1, 2, 3, 7])
def test_thread_counts(threads, rng):
    """The same results for any thread count."""
    x = big(np.float32, rng)
    out = np.zeros_like(x)
    before = kiln.get_num_threads()
    kiln.set_num_threads(threads)
    try:
        scale_f32(x, out)
    finally:
        kiln.set_num_threads(before)
    np.testing.assert_array_equal(out, expected(scale_f32, x))


@kiln.jit
def read_back(x: f64[:], out: f64[:]) -> None:
    for i in prange(x.shape[0]):
        out[i] = x[i] + 1.0
    for i in prange(x.shape[0]):
        out[i] = out[i] * 2.0


def test_array_read_back_is_not_streamed(rng):
    """An output the kernel reads again is not streamed (it would then come
    back from memory): the code the call ran has no streaming store."""
    x = big(np.float64, rng)
    out = np.zeros_like(x)
    read_back(x, out)
    np.testing.assert_array_equal(out, (x + 1.0) * 2.0)
    if X86:
        assert "movnt" not in read_back.inspect_asm()


@pytest.mark.skipif(not X86, reason="x86 instruction names")
def test_streaming_instructions(rng):
    """A call with a large write-only output runs code with non-temporal
    vector stores; one with a small output does not."""
    x = big(np.float64, rng)
    scale_f64(x, np.zeros_like(x))
    assert "movntpd" in scale_f64.inspect_asm()

    @kiln.jit
    def copy(x: f64[:], out: f64[:]) -> None:
        for i in prange(x.shape[0]):
            out[i] = x[i]

    copy(x[:1000], np.zeros(1000))
    assert "movnt" not in copy.inspect_asm()


@kiln.jit
def offset_by_quotient(out: f64[:], n: int, d: u64, m: u64) -> None:
    for i in range(n):
        out[i + np.int64(m // d)] = 1.0


@kiln.jit
def row_by_quotient(out: f64[:, :], n: int, d: u64, m: u64) -> None:
    for j in range(n):
        out[np.int64(m // d), j] = 1.0


@pytest.mark.parametrize("n", [0, 500])
def test_index_needing_a_check(n):
    """An index whose computation lower guards (a division by a value that
    is zero here) is not computed ahead of the loop: the loop raises
    ZeroDivisionError in its first iteration when it runs, before any
    store, and nothing happens when it does not.  (NumPy returns 0 for an
    unsigned division by zero; kiln raises, as docs/language.md says, so
    CPython is not the oracle here.)"""
    for kernel, arr in ((offset_by_quotient, np.zeros(BIG // 8)),
                        (row_by_quotient, np.zeros((4, BIG // 32)))):
        if n:
            with pytest.raises(ZeroDivisionError):
                kernel(arr, n, np.uint64(0), np.uint64(7))
        else:
            kernel(arr, n, np.uint64(0), np.uint64(7))
        assert not arr.any()


def test_complex_at_half_its_size(rng):
    """complex128 needs only 8-byte alignment: an output 8 bytes after a
    cache line never reaches a 64-byte boundary by whole elements, and is
    written as usual, with the same results."""
    x = big(np.complex128, rng)
    out = view_at(x.size, np.complex128, 8)
    conj_c128(x, out)
    np.testing.assert_array_equal(out, expected(conj_c128, x))


@kiln.jit
def ramp(out: f64[:], step: float) -> None:
    for i in prange(out.shape[0]):
        out[i] = i * step


def test_single_array_kernel(rng):
    """A kernel whose only array is its output streams too (no other
    array can overlap it)."""
    out = view_at(BIG // 8 + 5, np.float64, 24)
    ramp(out, 0.25)
    np.testing.assert_array_equal(out, np.arange(out.size) * 0.25)
    if X86:
        assert "movntpd" in ramp.inspect_asm()


CACHED = '''
import numpy as np
import kiln
from kiln import f64, prange


@kiln.jit(cache=True)
def scale(x: f64[:], out: f64[:]) -> None:
    for i in prange(x.shape[0]):
        out[i] = x[i] * 2.5 + 1.0


x = np.arange({n}, dtype=np.float64)
out = np.zeros_like(x)
scale(x, out)
assert np.array_equal(out, x * 2.5 + 1.0)
print(scale.cache_hits, "movnt" in scale.inspect_asm())
'''


@pytest.mark.skipif(not X86, reason="x86 instruction names")
def test_streaming_code_from_the_disk_cache(tmp_path):
    """cache=True keeps which arrays a kernel can stream: a process that
    loads the kernel from disk still runs streaming code for a large
    output."""
    import subprocess
    import sys
    script = tmp_path / "cached_stream.py"
    script.write_text(CACHED.format(n=BIG // 8))
    env = dict(os.environ, KILN_CACHE_DIR=str(tmp_path / "cache"))
    runs = [subprocess.run([sys.executable, str(script)], env=env,
                           capture_output=True, text=True, timeout=300)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    assert runs[0].stdout.split() == ["0", "True"]
    assert runs[1].stdout.split() == ["2", "True"]
