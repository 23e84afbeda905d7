"""kiln.vulkan.to_device / DeviceArray: arrays kept in Vulkan device memory.

Vulkan kernels take a DeviceArray where they take an ndarray of its dtype
and shape, binding its memory without transfers, so data stays on the
device across calls; results are compared with the same kernels on the CPU
target.  CPU kernels refuse one with a TypeError.  Skipped when the runtime finds no
Vulkan device, but for the test of to_device without one.
"""

import gc
import os
import subprocess
import sys

import numpy as np
import pytest

import kiln
from kiln import f32, f64, i32, i64, prange
from conftest import JIT_DISABLED

try:
    HAVE_DEVICE = not JIT_DISABLED and kiln.vulkan._device_available()
except Exception:
    HAVE_DEVICE = False

needs_device = pytest.mark.skipif(not HAVE_DEVICE,
                                  reason="no Vulkan device (or JIT disabled)")

to_device = kiln.vulkan.to_device


def both(fn):
    """The CPU and the Vulkan dispatcher of fn."""
    return kiln.jit(fn), kiln.jit(target="vulkan")(fn)


# ---- kernels -------------------------------------------------------------

def relax(src: f64[:], dst: f64[:]):
    """One Jacobi sweep of the 1-D Laplace equation (ends fixed)."""
    n = src.shape[0]
    for i in prange(1, n - 1):
        dst[i] = 0.5 * (src[i - 1] + src[i + 1])


def axpy(a: f32, x: f32[:], y: f32[:]):
    for i in prange(x.shape[0]):
        y[i] = a * x[i] + y[i]


def scale2d(m: i32[:, :], k: i32):
    for i in prange(m.shape[0]):
        for j in range(m.shape[1]):
            m[i, j] = m[i, j] * k + i - j


def total(a: f64[:]) -> float:
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i]
    return s


def psum(a: i64[:]) -> int:
    s = 0
    for i in prange(a.shape[0]):
        s += a[i]
    return s


def bump_around(a: f64[:]) -> float:
    x = a[0]                    # serial code before the prange...
    for i in prange(a.shape[0]):
        a[i] += 1.0
    a[0] = a[0] * 10.0 + x      # ...and after it
    return x + a[a.shape[0] - 1]


def bump_all(a: f64[:]):
    for i in prange(a.shape[0]):
        a[i] += 1.0


def first_then_call(a: f64[:]) -> float:
    x = a[0]
    bump_all(a)                 # inlined into the caller's steps
    return x + a[1]


# ---- the object ----------------------------------------------------------

@pytest.mark.parametrize("dtype", ["bool", "int8", "int16", "int32", "int64",
                                   "uint8", "uint16", "uint32", "uint64",
                                   "float32", "float64", "complex64",
                                   "complex128"])
@needs_device
def test_round_trip_dtypes(dtype):
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((3, 5)) * 50).astype(dtype)
    d = to_device(a)
    assert isinstance(d, kiln.vulkan.DeviceArray)
    assert d.dtype == a.dtype and d.shape == (3, 5)
    back = d.copy_to_host()
    assert back.dtype == a.dtype and back.flags.c_contiguous
    np.testing.assert_array_equal(back, a)


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (4, 0), (2, 3, 4), ()])
@needs_device
def test_shapes_and_attributes(shape):
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    d = to_device(a)
    assert d.shape == shape
    assert d.ndim == len(shape)
    assert d.size == a.size
    assert d.nbytes == a.nbytes
    if shape:
        assert len(d) == shape[0]
    else:
        with pytest.raises(TypeError):
            len(d)
    np.testing.assert_array_equal(d.copy_to_host(), a)
    r = repr(d)
    assert r.startswith("DeviceArray(") and str(shape) in r
    assert "float32" in r and kiln.vulkan._device_info()["name"] in r


@needs_device
def test_non_contiguous_and_lists():
    a = np.arange(24.0).reshape(4, 6)[:, ::2]
    np.testing.assert_array_equal(to_device(a).copy_to_host(), a)
    np.testing.assert_array_equal(to_device([1, 2, 3]).copy_to_host(),
                                  np.array([1, 2, 3]))


@needs_device
def test_copy_is_a_snapshot():
    a = np.ones(4)
    d = to_device(a)
    a[:] = 5
    np.testing.assert_array_equal(d.copy_to_host(), np.ones(4))
    h = d.copy_to_host()
    h[:] = 7
    np.testing.assert_array_equal(d.copy_to_host(), np.ones(4))


@needs_device
def test_copies_and_pickles_are_new_device_arrays(rng):
    import copy
    import pickle
    init = rng.standard_normal(15)
    d = to_device(init)
    copies = [copy.copy(d), copy.deepcopy(d), pickle.loads(pickle.dumps(d)),
              copy.deepcopy([d, d])[0]]
    kiln.jit(target="vulkan")(bump_all)(d)      # changes d only
    np.testing.assert_array_equal(d.copy_to_host(), init + 1.0)
    del d
    gc.collect()
    for c in copies:
        assert isinstance(c, kiln.vulkan.DeviceArray) and c.shape == (15,)
        np.testing.assert_array_equal(c.copy_to_host(), init)


@needs_device
def test_refused_inputs():
    with pytest.raises(TypeError, match="float16"):
        to_device(np.zeros(3, np.float16))
    with pytest.raises(TypeError, match="object"):
        to_device(np.array([None, 1]))
    with pytest.raises(TypeError, match=">f8"):
        to_device(np.zeros(3, ">f8"))
    d = to_device(np.zeros(3))
    with pytest.raises(TypeError, match="already a DeviceArray"):
        to_device(d)
    with pytest.raises(TypeError, match="cannot be created directly"):
        kiln.vulkan.DeviceArray()
    with pytest.raises(TypeError, match="copy_to_host"):
        np.asarray(d)
    with pytest.raises(AttributeError):
        d.shape = (4,)


@needs_device
def test_larger_than_one_allocation_is_refused():
    info = kiln.vulkan._device_info()
    limit = info["max_allocation_size"] if info["buffer_device_address"] \
        else info["max_storage_buffer_range"]
    if limit >= 1 << 34:
        pytest.skip("the device allocates 16 GiB or more at once")
    big = np.broadcast_to(np.uint8(1), (limit + 1,))   # allocates nothing
    with pytest.raises(ValueError, match="exceed"):
        to_device(big)


def inc8(a, b):
    for i in prange(a.shape[0]):
        b[i] = a[i] ^ 1


@needs_device
def test_larger_than_one_binding_through_device_addresses():
    """With buffer device addresses, a device array over the device's
    maxStorageBufferRange is accepted and kernels reach all of it."""
    info = kiln.vulkan._device_info()
    if not info["buffer_device_address"]:
        pytest.skip("the device has no buffer device addresses")
    n = (info["max_storage_buffer_range"] + (1 << 20)) // 4     # int32
    if 4 * n > info["max_allocation_size"]:
        pytest.skip("the device's bindings span its largest allocation")
    host = np.arange(n, dtype=np.int32)
    a = to_device(host)
    b = to_device(np.zeros(n, np.int32))
    kiln.jit(target="vulkan")(inc8)(a, b)
    got = b.copy_to_host()
    del a, b
    np.testing.assert_array_equal(got, host ^ np.int32(1))
    tail = np.zeros(4096, np.int32)
    inc8(host[-4096:], tail)                    # CPython on the far end
    np.testing.assert_array_equal(got[-4096:], tail)


# ---- kernels on device arrays ----------------------------------------------

@needs_device
def test_data_stays_on_device_across_sweeps():
    cpu, gpu = both(relax)
    n = 1000
    init = np.zeros(n)
    init[0], init[-1] = 1.0, -2.0
    a, b = init.copy(), init.copy()
    for _ in range(10):
        cpu(a, b)
        cpu(b, a)
    da, db = to_device(init), to_device(init)
    for _ in range(10):
        gpu(da, db)
        gpu(db, da)
    np.testing.assert_array_equal(da.copy_to_host(), a)
    np.testing.assert_array_equal(db.copy_to_host(), b)


@needs_device
def test_mixed_host_and_device_arguments():
    cpu, gpu = both(axpy)
    rng = np.random.default_rng(2)
    x = rng.standard_normal(513).astype(np.float32)
    y = rng.standard_normal(513).astype(np.float32)
    want = y.copy()
    cpu(np.float32(1.5), x, want)
    cpu(np.float32(1.5), x, want)
    dy = to_device(y)
    gpu(np.float32(1.5), x, dy)        # host x, device y
    gpu(np.float32(1.5), to_device(x), dy)
    np.testing.assert_array_equal(dy.copy_to_host(), want)
    # the same specialisation serves host and device arrays
    assert len(gpu.signatures) == 1


@needs_device
def test_two_dimensional():
    cpu, gpu = both(scale2d)
    m = np.arange(35, dtype=np.int32).reshape(5, 7)
    want = m.copy()
    cpu(want, 3)
    cpu(want, -2)
    dm = to_device(m)
    gpu(dm, 3)
    gpu(dm, -2)
    np.testing.assert_array_equal(dm.copy_to_host(), want)


@needs_device
def test_serial_kernel_and_reduction():
    rng = np.random.default_rng(3)
    a = rng.standard_normal(300)
    cpu, gpu = both(total)
    assert gpu(to_device(a)) == cpu(a)
    ints = rng.integers(-1000, 1000, 5000)
    cpu, gpu = both(psum)
    assert gpu(to_device(ints)) == cpu(ints) == int(ints.sum())


@needs_device
def test_wrong_type_or_shape_is_a_type_error():
    gpu = kiln.jit(target="vulkan")(relax)
    with pytest.raises(TypeError, match="float64"):
        gpu(to_device(np.zeros(4, np.float32)), to_device(np.zeros(4)))
    with pytest.raises(TypeError, match="src"):
        gpu(to_device(np.zeros((2, 2))), to_device(np.zeros(4)))


@needs_device
def test_cpu_kernel_refuses_device_array():
    cpu = kiln.jit(relax)
    d = to_device(np.zeros(8))
    with pytest.raises(TypeError) as e:
        cpu(np.zeros(8), d)
    msg = str(e.value)
    assert "'dst'" in msg and "kiln.vulkan.DeviceArray" in msg
    assert "copy_to_host()" in msg and "target='vulkan'" in msg


@needs_device
@pytest.mark.parametrize("fn", [bump_around, first_then_call])
def test_serial_code_around_prange_reads_and_writes_device_array(rng, fn):
    """Serial code runs on the device, around the kernel's own prange or
    a helper's (inlined), so it reads and writes device arrays."""
    gpu = kiln.jit(target="vulkan")(fn)
    init = rng.standard_normal(37)
    a = init.copy()
    want = fn(a)
    d = to_device(init)
    assert gpu(d) == want
    np.testing.assert_array_equal(d.copy_to_host(), a)


# ---- memory ------------------------------------------------------------------

def _rss_mb():
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"),
                    reason="needs /proc to read the resident size")
@needs_device
def test_freed_when_dropped():
    import weakref
    block = np.ones(1 << 20)                  # 8 MB
    d = to_device(block)
    ref = weakref.ref(d)
    del d
    assert ref() is None
    gc.collect()
    before = _rss_mb()
    for _ in range(100):                      # 800 MB if nothing were freed
        d = to_device(block)
        gpu_touch = d.copy_to_host()
        del d, gpu_touch
    gc.collect()
    grown = _rss_mb() - before
    assert grown < 100, f"resident size grew by {grown:.0f} MB"


@pytest.mark.skipif(JIT_DISABLED, reason="needs the C extension")
def test_no_device_subprocess():
    """With the Vulkan loader pointed at nothing, to_device raises a clear
    RuntimeError and CPU kernels still work."""
    code = "\n".join([
        "import kiln, numpy as np",
        "def add(a, b):",
        "    return a + b",
        "assert kiln.jit(add)(2, 3) == 5",
        "try:",
        "    kiln.vulkan.to_device(np.zeros(3))",
        "except RuntimeError as e:",
        "    assert 'no Vulkan device is available' in str(e), e",
        "    print('ok')",
    ])
    env = dict(os.environ, VK_ICD_FILENAMES="/nonexistent.json",
               VK_DRIVER_FILES="/nonexistent.json",
               VK_LOADER_LAYERS_DISABLE="*", LD_LIBRARY_PATH="/nonexistent")
    r = subprocess.run([sys.executable, "-c", code], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
