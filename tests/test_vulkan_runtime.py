"""The Vulkan runtime (csrc/runtime/vulkan.c) on its own: device discovery,
buffers, pipelines, batches of dispatches, the built-in reduction shader,
and a machine without Vulkan.  Kernels are GLSL compiled here with
glslangValidator and run through kiln._core._vk_run.

Skipped, with the reason, when this machine has no Vulkan device.
"""

import os
import shutil
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest

import kiln
from kiln import _core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REASON = _core._vk_init() if hasattr(_core, "_vk_init") else "not built"

needs_device = pytest.mark.skipif(
    REASON is not None, reason=f"no Vulkan device: {REASON}")
needs_glslang = pytest.mark.skipif(
    shutil.which("glslangValidator") is None,
    reason="glslangValidator (glslang-tools) is not installed")


def run_python(code, timeout=120, **env):
    """Runs code in a fresh interpreter with extra environment variables;
    returns the CompletedProcess."""
    full = dict(os.environ)
    full.setdefault("XDG_RUNTIME_DIR", "/tmp")
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


# ---- shaders ------------------------------------------------------------

DOUBLE_F32 = """
#version 450
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer Data { float x[]; };
layout(push_constant) uniform P { uint n; } pc;
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < pc.n) { x[i] = x[i] * 2.0; }
}
"""

ADD_ONE_F32 = """
#version 450
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer Data { float x[]; };
layout(push_constant) uniform P { uint n; } pc;
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < pc.n) { x[i] = x[i] + 1.0; }
}
"""

ADD_I64 = """
#version 450
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
layout(local_size_x = 32) in;
layout(std430, binding = 0) readonly buffer A { int64_t a[]; };
layout(std430, binding = 1) readonly buffer B { int64_t b[]; };
layout(std430, binding = 2) writeonly buffer C { int64_t c[]; };
layout(push_constant) uniform P { uint n; } pc;
void main() {
    // grid-stride: any number of workgroups covers any n
    for (uint i = gl_GlobalInvocationID.x; i < pc.n;
         i += gl_NumWorkGroups.x * 32) {
        c[i] = a[i] + b[i];
    }
}
"""


@pytest.fixture(scope="module")
def spirv(tmp_path_factory):
    """spirv(glsl) -> SPIR-V bytes, compiled by glslangValidator."""
    if shutil.which("glslangValidator") is None:
        pytest.skip("glslangValidator (glslang-tools) is not installed")
    tmp = tmp_path_factory.mktemp("spirv")
    cache = {}

    def compile_(source):
        if source not in cache:
            src = tmp / f"k{len(cache)}.comp"
            out = tmp / f"k{len(cache)}.spv"
            src.write_text(source)
            subprocess.run(["glslangValidator", "-V", "--target-env",
                            "vulkan1.1", "-o", str(out), str(src)],
                           check=True, capture_output=True)
            cache[source] = out.read_bytes()
        return cache[source]
    return compile_


def push_u32(*values):
    return np.array(values, dtype=np.uint32).tobytes()


def groups(n, size):
    return ((n + size - 1) // size, 1, 1)


# ---- discovery ------------------------------------------------------------

def test_import_does_not_initialise_vulkan():
    r = run_python(
        "import kiln, kiln.vulkan\n"
        "assert 'libvulkan' not in open('/proc/self/maps').read()\n"
        "kiln.vulkan._device_available()\n"
        "print('libvulkan' in open('/proc/self/maps').read())\n")
    assert r.returncode == 0, r.stderr
    if REASON is None:
        assert r.stdout.strip() == "True"      # opened on first use


def test_core_is_not_linked_against_libvulkan():
    r = subprocess.run(["ldd", _core.__file__], capture_output=True,
                       text=True)
    assert "libvulkan" not in r.stdout


@needs_device
def test_available_and_named():
    assert kiln.vulkan._device_available() is True
    info = kiln.vulkan._device_info()
    name = info["name"]
    assert isinstance(name, str) and name
    assert kiln.vulkan.is_available() is True
    assert kiln.vulkan.device_name() == name
    assert info["spirv_version"] >= 0x10300
    assert info["max_storage_buffer_range"] >= 1 << 27 or \
        info["kind"] != "cpu"
    assert all(c >= 65535 for c in info["max_workgroup_count"])


LAVAPIPE = os.path.exists("/usr/share/vulkan/icd.d/lvp_icd.x86_64.json")


@needs_device
@pytest.mark.skipif(not LAVAPIPE, reason="lavapipe is not installed")
def test_lavapipe_by_name_and_features():
    r = run_python(
        "import kiln.vulkan as v\n"
        "i = v._device_info()\n"
        "print(i['name'])\n"
        "print(i['kind'], i['float64'], i['int64'], i['external_memory_host'],"
        " i['host_import_alignment'], i['unified_memory'])\n",
        KILN_VULKAN_DEVICE="LLVMPIPE")
    assert r.returncode == 0, r.stderr
    name, features = r.stdout.splitlines()
    assert "llvmpipe" in name
    assert features == "cpu True True True 4096 True"


@needs_device
def test_device_by_index_and_no_match():
    r = run_python("import kiln.vulkan as v; print(v._device_info()['name'])",
                   KILN_VULKAN_DEVICE="0")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    r = run_python(
        "import kiln.vulkan as v\n"
        "assert not v.is_available() and not v._device_available()\n"
        "try:\n"
        "    v._device_info()\n"
        "except RuntimeError as e:\n"
        "    print(e)\n",
        KILN_VULKAN_DEVICE="no-such-gpu")
    assert r.returncode == 0, r.stderr
    assert "KILN_VULKAN_DEVICE=no-such-gpu matches no Vulkan device" \
        in r.stdout


NO_VULKAN_SCRIPT = """
import kiln, kiln.vulkan
assert kiln.vulkan.is_available() is False
assert kiln.vulkan._device_available() is False
for f in (kiln.vulkan.device_name, kiln.vulkan._device_info):
    try:
        f()
    except RuntimeError as e:
        print("error:", e)
    else:
        raise SystemExit(f"{f.__name__}() did not raise")

@kiln.jit
def axpy(a: float, x: kiln.f64[:], y: kiln.f64[:]) -> None:
    for i in kiln.prange(x.shape[0]):
        y[i] = a * x[i] + y[i]

import numpy as np
x = np.arange(1000.0)
y = np.ones(1000)
axpy(2.0, x, y)
assert (y == 2.0 * np.arange(1000.0) + 1.0).all()
print("cpu ok")
"""


def test_no_vulkan_driver_cpu_still_works():
    """The loader pointed at no driver: kiln imports, Vulkan is
    unavailable with a reason, and CPU kernels run."""
    r = run_python(NO_VULKAN_SCRIPT, VK_ICD_FILENAMES="/nonexistent.json",
                   VK_DRIVER_FILES="/nonexistent.json",
                   VK_ADD_DRIVER_FILES="")
    assert r.returncode == 0, r.stderr
    assert "error: kiln: no Vulkan device is available" in r.stdout
    assert "cpu ok" in r.stdout


def _loader_files():
    import glob
    return sorted(p for p in glob.glob("/usr/lib/*/libvulkan.so*")
                  + glob.glob("/usr/lib/libvulkan.so*")
                  + glob.glob("/usr/local/lib/libvulkan.so*")
                  if not os.path.islink(p))


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="hiding the loader needs root and unshare")
def test_no_vulkan_loader_cpu_still_works():
    """No libvulkan at all (hidden in a private mount namespace)."""
    files = _loader_files()
    if not files:
        pytest.skip("no libvulkan to hide")
    mounts = "; ".join(f"mount --bind /dev/null {f}" for f in files)
    script = NO_VULKAN_SCRIPT.replace("'", "'\\''")
    r = subprocess.run(
        ["unshare", "-m", "sh", "-c",
         f"{mounts} && exec {sys.executable} -c '{script}'"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    if r.returncode != 0 and "unshare" in r.stderr:
        pytest.skip(f"unshare failed: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    assert "the Vulkan loader (libvulkan.so.1) is not installed" in r.stdout
    assert "cpu ok" in r.stdout


# ---- dispatches -----------------------------------------------------------

@needs_device
def test_double_float_array(spirv):
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    y = x.copy()
    _core._vk_run([y], [(spirv(DOUBLE_F32), groups(1000, 64),
                         push_u32(1000))])
    assert np.array_equal(y, x * np.float32(2))


@needs_device
def test_add_int64_wraps(spirv):
    rng = np.random.default_rng(2)
    n = 5000
    info = np.iinfo(np.int64)
    a = rng.integers(info.min, info.max, n, dtype=np.int64)
    b = rng.integers(info.min, info.max, n, dtype=np.int64)
    c = np.zeros(n, dtype=np.int64)
    # fewer workgroups than needed: the shader strides over the rest
    _core._vk_run([a, b, c], [(spirv(ADD_I64), (7, 1, 1), push_u32(n))])
    with np.errstate(over="ignore"):
        assert np.array_equal(c, a + b)


@needs_device
def test_dispatches_run_in_order(spirv):
    """Two dispatches in one batch: the second sees the first's writes."""
    x = np.arange(4096, dtype=np.float32)
    y = x.copy()
    steps = [(spirv(DOUBLE_F32), groups(4096, 64), push_u32(4096)),
             (spirv(ADD_ONE_F32), groups(4096, 64), push_u32(4096)),
             (spirv(DOUBLE_F32), groups(4096, 64), push_u32(4096))]
    _core._vk_run([y], steps)
    assert np.array_equal(y, (x * 2 + 1) * 2)


@needs_device
def test_bindings_select_buffers(spirv):
    a = np.arange(10, dtype=np.int64)
    b = np.full(10, 100, dtype=np.int64)
    c = np.zeros(10, dtype=np.int64)
    d = np.zeros(10, dtype=np.int64)
    _core._vk_run([a, b, c, d], [(spirv(ADD_I64), (1, 1, 1), push_u32(10),
                                  (1, 1, 3))])
    assert np.array_equal(d, b + b)
    assert not c.any()


@needs_device
def test_empty_dispatch_and_empty_buffer(spirv):
    y = np.zeros(0, dtype=np.float32)
    _core._vk_run([y], [(spirv(DOUBLE_F32), (0, 1, 1), push_u32(0))])
    assert y.shape == (0,)


def _aligned(n, dtype, align, offset=0):
    """An array of n elements whose data starts `offset` bytes past an
    `align`-byte boundary."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.zeros(n * itemsize + align + offset, dtype=np.uint8)
    start = (-raw.ctypes.data) % align + offset
    return raw[start:start + n * itemsize].view(dtype)


@needs_device
def test_host_memory_import(spirv):
    info = kiln.vulkan._device_info()
    if not info["external_memory_host"]:
        pytest.skip("the device lacks VK_EXT_external_memory_host")
    for offset in (0, 16, 4096 + 64):
        y = _aligned(3000, np.float32, 4096, offset)
        y[:] = np.arange(3000, dtype=np.float32)
        n = _core._vk_run([y], [(spirv(DOUBLE_F32), groups(3000, 64),
                                 push_u32(3000))], import_host=True)
        assert n == 1
        assert np.array_equal(y, np.arange(3000, dtype=np.float32) * 2)
    # an offset below minStorageBufferOffsetAlignment is copied instead
    y = _aligned(100, np.float32, 4096, 4)
    y[:] = 1
    n = _core._vk_run([y], [(spirv(DOUBLE_F32), groups(100, 64),
                             push_u32(100))], import_host=True)
    assert n == (1 if info["min_storage_offset_alignment"] <= 4 else 0)
    assert (y == 2).all()


STAGING_SCRIPT = """
import subprocess, sys
import numpy as np
from kiln import _core
import kiln.vulkan
assert kiln.vulkan._device_info()["unified_memory"] is False
code = open(sys.argv[1], "rb").read()
x = np.random.default_rng(3).standard_normal(3 << 20).astype(np.float32)
for size in (1, 1000, 3 << 20):     # the last one needs a larger chunk
    y = x[:size].copy()
    _core._vk_run([y], [(code, ((size + 63) // 64, 1, 1),
                         np.array([size], np.uint32).tobytes())])
    assert np.array_equal(y, x[:size] * np.float32(2)), size
print("ok")
"""


@needs_device
def test_staging_path(spirv, tmp_path):
    """Buffers in device memory the host cannot see: transfers go through
    staging buffers (forced on lavapipe with KILN_VULKAN_STAGING=1)."""
    path = tmp_path / "double.spv"
    path.write_bytes(spirv(DOUBLE_F32))
    r = run_python(STAGING_SCRIPT.replace("sys.argv[1]", repr(str(path))),
                   KILN_VULKAN_STAGING="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


@needs_device
def test_threads_share_the_device(spirv):
    code = spirv(DOUBLE_F32)
    errors = []

    def work(seed):
        try:
            x = np.random.default_rng(seed).standard_normal(2000)
            x = x.astype(np.float32)
            for _ in range(10):
                y = x.copy()
                _core._vk_run([y], [(code, groups(2000, 64),
                                     push_u32(2000))])
                assert np.array_equal(y, x * np.float32(2))
        except Exception as e:      # reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@needs_device
def test_bad_spirv_and_limits_raise(spirv):
    y = np.zeros(4, dtype=np.float32)
    with pytest.raises(RuntimeError, match="not a SPIR-V module"):
        _core._vk_run([y], [(b"\0" * 20, (1, 1, 1))])
    with pytest.raises(RuntimeError, match="exceeds the device"):
        _core._vk_run([y], [(spirv(DOUBLE_F32), (1 << 31, 1, 1),
                             push_u32(4))])
    with pytest.raises(RuntimeError, match="push constants"):
        _core._vk_run([y], [(spirv(DOUBLE_F32), (1, 1, 1), b"123")])
    with pytest.raises(ValueError):
        _core._vk_run([y], [(spirv(DOUBLE_F32), (1, 1, 1), push_u32(4),
                             (5,))])
    # the runtime still works afterwards
    y[:] = 3
    _core._vk_run([y], [(spirv(DOUBLE_F32), (1, 1, 1), push_u32(4))])
    assert (y == 6).all()


# ---- the built-in reduction shader ----------------------------------------

REDUCE_TYPES = {"i32": np.int32, "u32": np.uint32, "i64": np.int64,
                "u64": np.uint64, "f32": np.float32, "f64": np.float64}
OPS = {"add": 0, "mul": 1, "min": 2, "max": 3}


def reduce_push(first, count, stride, out, accumulate):
    return push_u32(first, count, stride, out, accumulate)


def run_reduce(tname, op, partials, result, first=0, count=None, stride=1,
               out=0, accumulate=0):
    count = len(partials) if count is None else count
    code = _core._vk_builtin_spirv(f"reduce_{tname}")
    _core._vk_run([partials, result],
                  [(code, (1, 1, 1),
                    reduce_push(first, count, stride, out, accumulate),
                    (0, 1), (OPS[op],))])


def fold(values, op):
    """The shader's order: WG strided serial folds, then a fixed tree."""
    wg = 128
    combine = {"add": lambda a, b: a + b, "mul": lambda a, b: a * b,
               "min": lambda a, b: b if b < a else a,
               "max": lambda a, b: b if b > a else a}[op]
    have = min(len(values), wg)
    scratch = list(values[:have])
    for k in range(wg, len(values)):
        scratch[k % wg] = combine(scratch[k % wg], values[k])
    half = wg // 2
    while half:
        for t in range(half):
            if t + half < have:
                scratch[t] = combine(scratch[t], scratch[t + half])
        half //= 2
    return scratch[0]


@needs_device
@pytest.mark.parametrize("tname", sorted(REDUCE_TYPES))
@pytest.mark.parametrize("op", sorted(OPS))
def test_reduce_matches_fixed_order(tname, op):
    dtype = REDUCE_TYPES[tname]
    rng = np.random.default_rng(zlib.crc32(f"{tname} {op}".encode()))
    for n in (1, 5, 128, 300, 1000):
        if dtype in (np.float32, np.float64) and op == "mul":
            # near 1, so that products stay normal numbers
            values = (1 + rng.standard_normal(n) / 64).astype(dtype)
        elif dtype in (np.float32, np.float64):
            values = rng.standard_normal(n).astype(dtype)
        else:
            values = rng.integers(1, 1000, n).astype(dtype)
        if op == "mul" and dtype not in (np.float32, np.float64):
            values[values % 2 == 0] = 1     # keep some bits
        result = np.zeros(2, dtype=dtype)
        run_reduce(tname, op, values, result, out=1)
        with np.errstate(over="ignore"):
            expected = fold([dtype(v) for v in values], op)
        assert result[1] == expected, (n, result[1], expected)
        assert result[0] == 0


@needs_device
def test_reduce_accumulate_stride_and_empty():
    # complex pairs: the real parts at stride 2 from 0, imaginary from 1
    pairs = np.arange(20, dtype=np.float64)
    result = np.array([100.0, 200.0])
    run_reduce("f64", "add", pairs, result, first=0, count=10, stride=2,
               out=0, accumulate=1)
    run_reduce("f64", "add", pairs, result, first=1, count=10, stride=2,
               out=1, accumulate=1)
    assert result.tolist() == [100.0 + sum(range(0, 20, 2)),
                               200.0 + sum(range(1, 20, 2))]
    for op, identity in (("add", 0), ("mul", 1)):
        result = np.array([7], dtype=np.int64)
        run_reduce("i64", op, np.zeros(1, dtype=np.int64), result, count=0)
        assert result[0] == identity
        result = np.array([7], dtype=np.int64)
        run_reduce("i64", op, np.zeros(1, dtype=np.int64), result, count=0,
                   accumulate=1)
        assert result[0] == 7


@needs_device
def test_unknown_builtin():
    with pytest.raises(KeyError):
        _core._vk_builtin_spirv("no_such_shader")
