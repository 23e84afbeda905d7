"""Smoke test of the benchmark suite: bench/run.py --quick compiles every
benchmark kernel with kiln and checks its result against the workload's
reference (NumPy, or CPython for Mandelbrot) at small sizes, and the
"kiln vulkan" column (each kernel on target="vulkan", checked against the
CPU target, or n/a with the CompileError) when a Vulkan device is present.
It guards the bench kernels and the harness; it measures nothing."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "bench", "run.py")


@pytest.mark.skipif(os.environ.get("KILN_DISABLE_JIT", "") not in ("", "0"),
                    reason="checks compiled kernels")
def test_bench_quick(tmp_path):
    out = tmp_path / "quick.json"
    p = subprocess.run(
        [sys.executable, RUN, "--quick", "--no-numba", "--no-c",
         "--no-vulkan", "--threads", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    data = json.loads(out.read_text())
    workloads = data["workloads"]
    assert set(workloads) == {
        "mandelbrot", "triad", "sum_f64", "dot_f64", "sum_f32", "dot_f32",
        "stencil", "nbody", "matmul", "softmax"}
    for name, r in workloads.items():
        kiln = r["impls"]["kiln"]
        assert "error" not in kiln, f"{name}: {kiln['error']}"
        assert kiln["median"] > 0


def _vulkan_device():
    try:
        import kiln
        return kiln.vulkan._device_info()
    except Exception:
        return None


@pytest.mark.skipif(os.environ.get("KILN_DISABLE_JIT", "") not in ("", "0")
                    or _vulkan_device() is None,
                    reason="no Vulkan device (or JIT disabled)")
def test_bench_quick_vulkan(tmp_path):
    import kiln
    out = tmp_path / "quick-vk.json"
    p = subprocess.run(
        [sys.executable, RUN, "--quick", "--no-numba", "--no-c",
         "--no-numpy", "--no-cpython", "--threads", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    data = json.loads(out.read_text())
    dev = data["machine"]["vulkan"]
    assert dev["name"] == _vulkan_device()["name"]
    if "llvmpipe" in dev["name"]:
        assert dev["label"] == "lavapipe (CPU-emulated)"
        assert "lavapipe (CPU-emulated)" in p.stdout
    failed = []
    for name, r in data["workloads"].items():
        assert "error" not in r["impls"]["kiln"], name
        vk = r["impls"]["kiln_vulkan"]
        if "na" in vk:
            assert "Vulkan" in vk["na"] or "device" in vk["na"], vk["na"]
        elif "error" in vk:
            failed.append(f"{name}: {vk['error']}")
        else:
            assert vk["median"] > 0 and vk["checked_against"] == "kiln"
    if failed and not kiln.vulkan.is_available():
        pytest.xfail("Vulkan target not ready yet: " + "; ".join(failed))
    assert not failed, failed
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
