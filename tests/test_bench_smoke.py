"""Smoke test of the benchmark suite: bench/run.py --quick compiles every
benchmark kernel with kiln and checks its result against the workload's
reference (NumPy, or CPython for Mandelbrot) at small sizes.  It guards the
bench kernels and the harness; it measures nothing."""

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
         "--threads", "2", "--out", str(out)],
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
