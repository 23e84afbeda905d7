"""The thread pool (csrc/runtime/pool.c) under contention: kernels called
from several Python threads while the thread count changes, kernels that
raise inside prange, and a forked child, all against CPython's results."""

import os
import threading
import time

import numpy as np
import pytest

import kiln
from conftest import JIT_DISABLED
from kiln import f64, prange

pytestmark = pytest.mark.skipif(JIT_DISABLED,
                                reason="the pool runs compiled code")


@kiln.jit
def total(a: f64[:]) -> float:
    t = 0.0
    for i in prange(a.shape[0]):
        t += a[i] * 0.5
    return t


@kiln.jit
def row_sums(a: f64[:, :]) -> float:
    t = 0.0
    for i in prange(a.shape[0]):
        s = 0.0
        for j in range(a.shape[1]):
            s += a[i, j]
        t += s
    return t


@kiln.jit
def inverse(a: f64[:], k: int) -> None:
    for i in prange(a.shape[0]):
        a[i] = 1.0 / (i - k)


def test_concurrent_calls_and_thread_counts():
    """Three Python threads call a prange reduction and a raising prange
    kernel while the main thread changes the thread count: every sum has
    the same bits (chunked partials do not depend on the thread count),
    every raising call raises CPython's exception."""
    rng = np.random.default_rng(3)
    a = rng.random(1 << 20)
    # slow chunks (a row each), so that a call returning before its last
    # chunk is done would be seen; several inputs, so that stale partials
    # of an earlier call cannot pass for this call's
    rows = [rng.random((48, 1 << 14)) for _ in range(4)]
    before = kiln.get_num_threads()
    kiln.set_num_threads(1)
    want = total(a)
    row_want = [row_sums(r) for r in rows]
    kiln.set_num_threads(before)
    with pytest.raises(ZeroDivisionError):      # what CPython does
        inverse.py_func(np.zeros(10_000), 5_000)
    problems = []

    def hammer(calls):
        try:
            hammer_calls(calls)
        except BaseException as e:      # a thread's failure must show
            problems.append(repr(e))

    def hammer_calls(calls):
        for j in range(calls):
            if total(a) != want:
                problems.append("a different sum")
            if row_sums(rows[j % 4]) != row_want[j % 4]:
                problems.append("a different sum of rows")
            if j % 5 == 0:
                try:
                    inverse(np.zeros(100_000), 5_000)
                except ZeroDivisionError:
                    pass
                else:
                    problems.append("no ZeroDivisionError")

    workers = [threading.Thread(target=hammer, args=(150,))
               for _ in range(3)]
    for w in workers:
        w.start()
    try:
        for k in range(120):
            kiln.set_num_threads(1 + k % 4)
            time.sleep(0.0005 * (k % 5))
    finally:
        for w in workers:
            w.join()
        kiln.set_num_threads(before)
    assert problems == []
    assert abs(want - a.sum() * 0.5) <= 1e-9 * a.size


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_runs_its_own_pool():
    """A child forked after the pool has run starts its own workers and
    computes the same sum."""
    a = np.random.default_rng(4).random(1 << 20)
    want = total(a)
    pid = os.fork()
    if pid == 0:    # the child: no pytest machinery, just an exit status
        try:
            kiln.set_num_threads(2)
            os._exit(0 if total(a) == want else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
