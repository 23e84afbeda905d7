"""The Vulkan target: device discovery.

Importing kiln does not touch Vulkan: the loader is opened, and a device
chosen, on the first call to `is_available()` or `device_name()` (or the
first Vulkan kernel); the outcome is remembered, so later calls are fast.

The device is the one named by the environment variable
KILN_VULKAN_DEVICE (an index into the devices the loader lists, or part of
a device name, any case), else the first discrete GPU, else an integrated,
virtual or CPU device (Mesa's lavapipe).  KILN_VULKAN_VALIDATE=1 turns on
the Khronos validation layer when it is installed.

Device arrays: `to_device(a)` copies an array into device memory once and
returns a DeviceArray, which Vulkan kernels take in place of an ndarray
without any transfer, so data can stay on the device across calls;
`.copy_to_host()` brings it back.
"""

import threading
import weakref

__all__ = ["is_available", "device_name", "to_device", "DeviceArray"]

_lock = threading.Lock()
_status = None      # (available, reason when not, device info dict)


def _state():
    """(available, reason, info), computed once."""
    global _status
    if _status is None:
        with _lock:
            if _status is None:
                from . import _core
                if _core is None:
                    _status = (False, "the C extension kiln._core is not "
                                      "built", None)
                else:
                    reason = _core._vk_init()
                    info = _core._vk_device_info() if reason is None else None
                    _status = (reason is None, reason, info)
    return _status


def is_available():
    """True when kiln can run kernels on a Vulkan device here."""
    return _state()[0]


def _device_available():
    """True when the Vulkan runtime found a device (see _device_info)."""
    return _state()[0]


def device_name():
    """The name of the Vulkan device kiln uses; RuntimeError when none
    (exactly when is_available() is False)."""
    return _device_info()["name"]


def _device_info():
    """The device's kind, features and limits as a dict (see KlVkInfo in
    csrc/runtime/vulkan.h); RuntimeError when there is no device."""
    available, reason, info = _state()
    if not available:
        raise RuntimeError(f"kiln: no Vulkan device is available: {reason}")
    return dict(info)


def _disassemble(modules):
    """The text of SPIR-V modules (a list of bytes) by spirv-dis (from
    spirv-tools), separated by a comment line per module; RuntimeError when
    spirv-dis is not installed."""
    import shutil
    import subprocess
    import tempfile
    import os
    tool = shutil.which("spirv-dis")
    if tool is None:
        raise RuntimeError("kiln: inspect_spirv() needs spirv-dis (Debian "
                           "package spirv-tools), which is not installed")
    parts = []
    for i, words in enumerate(modules):
        with tempfile.NamedTemporaryFile(suffix=".spv", delete=False) as f:
            f.write(words)
            path = f.name
        try:
            out = subprocess.run([tool, path], capture_output=True, text=True)
        finally:
            os.unlink(path)
        if out.returncode != 0:
            raise RuntimeError(f"kiln: spirv-dis failed: {out.stderr.strip()}")
        if len(modules) > 1:
            parts.append(f"; ---- kernel {i} ----\n")
        parts.append(out.stdout)
    return "".join(parts)


# ---- device arrays ---------------------------------------------------------

# Element types a DeviceArray may hold: those kiln kernels take (native
# byte order).
_DEVICE_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8",
                  "uint16", "uint32", "uint64", "float32", "float64",
                  "complex64", "complex128")


class _DeviceMemory:
    """Describes device memory to NumPy (__array_interface__), so that an
    ndarray can stand for it in the dispatcher.  That ndarray's elements
    live on the device: reading or writing them on the host would fault."""

    __slots__ = ("__array_interface__",)

    def __init__(self, addr, shape, dtype):
        self.__array_interface__ = {
            "version": 3, "shape": shape, "typestr": dtype.str,
            "data": (addr, False),
        }


class DeviceArray:
    """An array in the Vulkan device's memory (made by `to_device`).

    Vulkan kernels (target="vulkan") take it wherever they take an ndarray
    of the same dtype and shape (C-contiguous), binding its memory directly:
    no copy before or after the call, so results of one call stay on the
    device for the next.  Its elements cannot be read on the host; use
    `copy_to_host()`.  CPU kernels refuse it (TypeError).  `copy.copy`,
    `copy.deepcopy` and pickling go through the host (a new device array
    from `copy_to_host()`).  The device memory is released when the object
    is.
    """

    __slots__ = ("_addr", "_device_view", "_free", "_shape", "_dtype",
                 "__weakref__")

    def __init__(self, *args, **kwargs):
        raise TypeError("kiln.vulkan.DeviceArray cannot be created directly; "
                        "use kiln.vulkan.to_device(array)")

    @classmethod
    def _from_host(cls, a):
        import numpy as np
        from . import _core
        self = object.__new__(cls)
        self._addr = None
        self._device_view = None
        self._free = None
        self._shape = a.shape
        self._dtype = a.dtype
        addr = _core._vk_devmem_new(a.nbytes)
        self._addr = addr
        # frees the range when the object goes, or at interpreter exit
        # (before the runtime's own teardown)
        self._free = weakref.finalize(self, _core._vk_devmem_free, addr)
        try:
            _core._vk_devmem_copy(addr, a, True)
        except BaseException:
            self._release()
            raise
        # ndarray over the device range (never dereferenced on the host):
        # the dispatcher types and binds it like the host array it copies.
        self._device_view = np.asarray(_DeviceMemory(addr, a.shape, a.dtype))
        return self

    @property
    def shape(self):
        """The shape (a tuple of ints), as the host array's."""
        return self._shape

    @property
    def dtype(self):
        """The NumPy dtype of the elements."""
        return self._dtype

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self):
        return self.size * self.dtype.itemsize

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def copy_to_host(self):
        """A new C-contiguous ndarray holding the array's current contents
        (waits for nothing: kernel calls return only once the device has
        finished)."""
        import numpy as np
        from . import _core
        if self._addr is None:
            raise ValueError("kiln: the DeviceArray's memory was released")
        out = np.empty(self.shape, self.dtype)
        _core._vk_devmem_copy(self._addr, out, False)
        return out

    def __array__(self, dtype=None, copy=None):
        raise TypeError("kiln.vulkan.DeviceArray lives in device memory; "
                        "call .copy_to_host() to get an ndarray")

    def __copy__(self):
        """A new DeviceArray with the same contents (through the host)."""
        return to_device(self.copy_to_host())

    def __deepcopy__(self, memo):
        return self.__copy__()

    def __reduce__(self):
        return (to_device, (self.copy_to_host(),))

    def __repr__(self):
        return (f"DeviceArray(shape={self.shape}, dtype={self.dtype}, "
                f"device={_state()[2]['name']!r})")

    def _release(self):
        """Frees the device memory now (the finaliser runs once)."""
        self._addr = None
        self._device_view = None
        if self._free is not None:
            self._free()


def to_device(a):
    """Copies array `a` (anything numpy.asarray takes) into the memory of
    the Vulkan device and returns it as a DeviceArray (C-contiguous, same
    dtype and shape).  TypeError for dtypes kiln kernels do not take;
    ValueError when the array exceeds what one device buffer may hold (the
    device's largest allocation; maxStorageBufferRange on devices without
    buffer device addresses, through which kernels reach larger arrays);
    RuntimeError when there is no Vulkan device."""
    import numpy as np
    if isinstance(a, DeviceArray):
        raise TypeError("kiln.vulkan.to_device(): the array is already a "
                        "DeviceArray")
    a = np.asarray(a)
    if a.dtype.name not in _DEVICE_DTYPES or not a.dtype.isnative:
        raise TypeError(f"kiln.vulkan.to_device(): arrays of dtype {a.dtype} "
                        "are not supported")
    available, reason, info = _state()
    if not available:
        raise RuntimeError(f"kiln: no Vulkan device is available: {reason}")
    if info["buffer_device_address"] and info["int64"]:
        limit = info["max_allocation_size"]
        what = "one allocation"
    else:
        limit = info["max_storage_buffer_range"]
        what = "one binding"
    if a.nbytes > limit:
        raise ValueError(f"kiln.vulkan.to_device(): {a.nbytes} bytes exceed "
                         f"the {limit} bytes {what} of the device "
                         f"{info['name']!r} may span")
    return DeviceArray._from_host(np.asarray(a, order="C"))


def _register_device_array():
    from . import _core
    register = getattr(_core, "_set_device_array_type", None)
    if register is not None:    # None: no extension, or one built earlier
        register(DeviceArray)


_register_device_array()
