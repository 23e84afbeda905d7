"""The Vulkan target: device discovery.

Importing kiln does not touch Vulkan: the loader is opened, and a device
chosen, on the first call to `is_available()` or `device_name()` (or the
first Vulkan kernel); the outcome is remembered, so later calls are fast.

The device is the one named by the environment variable
KILN_VULKAN_DEVICE (an index into the devices the loader lists, or part of
a device name, any case), else the first discrete GPU, else an integrated,
virtual or CPU device (Mesa's lavapipe).  KILN_VULKAN_VALIDATE=1 turns on
the Khronos validation layer when it is installed.
"""

import threading

__all__ = ["is_available", "device_name"]

# Whether kernels decorated with target="vulkan" can run (the SPIR-V
# backend is wired into the dispatcher).  Until then is_available() is
# False even with a device present, since callers (and the test suite)
# take it to mean "Vulkan kernels run here"; device_name() and the runtime
# work regardless (_device_info()).
_TARGET_READY = False

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
    return _TARGET_READY and _state()[0]


def _device_available():
    """True when the Vulkan runtime found a device (see _device_info)."""
    return _state()[0]


def device_name():
    """The name of the Vulkan device kiln uses; RuntimeError when none
    (exactly when is_available() is False)."""
    info = _device_info()
    if not _TARGET_READY:
        raise RuntimeError("kiln: the Vulkan target is not available yet "
                           f"(device: {info['name']})")
    return info["name"]


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
