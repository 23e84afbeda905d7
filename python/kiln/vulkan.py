"""The Vulkan target: device discovery.

No Vulkan device is used yet: `is_available()` is False, and kernels
decorated with `target="vulkan"` raise RuntimeError when called.
"""

__all__ = ["is_available", "device_name"]


def is_available():
    """True when kiln can run kernels on a Vulkan device here."""
    return False


def device_name():
    """The name of the Vulkan device kiln uses; RuntimeError when none."""
    raise RuntimeError("kiln: no Vulkan device is available")
