"""Plots kiln's speed relative to C and Numba per workload from a
bench/run.py JSON file; writes a PNG next to it (same name, .png).

A bar of 2.0 means kiln took half the time of that implementation; bars
left of the line at 1 are workloads where kiln is slower.

usage: python bench/plot.py [bench/results/bench.json]
"""

import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

BENCH = os.path.dirname(os.path.abspath(__file__))

# (implementation, legend label, colour)
SERIES = [("c", "C, 1 thread", "#9ecae1"),
          ("c_omp", "C OpenMP", "#2171b5"),
          ("numba", "Numba njit, 1 thread", "#fdae6b"),
          ("numba_par", "Numba parallel", "#d94801")]


def speedups(data):
    """{workload: {impl: t_impl / t_kiln}} for the implementations timed."""
    out = {}
    for name, r in data["workloads"].items():
        k = r["impls"].get("kiln", {}).get("median")
        if not k:
            continue
        out[name] = {impl: r["impls"][impl]["median"] / k
                     for impl, _, _ in SERIES
                     if r["impls"].get(impl, {}).get("median")}
    return out


def plot(path):
    with open(path) as f:
        data = json.load(f)
    sp = speedups(data)
    names = list(sp)[::-1]                      # first workload on top
    m = data["machine"]
    fig, ax = plt.subplots(figsize=(8, 0.75 * len(names) + 1.5))
    h = 0.8 / len(SERIES)
    for s, (impl, label, colour) in enumerate(SERIES):
        ys = [i + (s - (len(SERIES) - 1) / 2) * -h for i in range(len(names))]
        xs = [sp[n].get(impl, float("nan")) for n in names]
        ax.barh(ys, xs, height=h, color=colour, label=label)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    vals = [v for d in sp.values() for v in d.values()] or [1.0]
    lo = math.floor(math.log2(min(vals + [1.0])))
    hi = math.ceil(math.log2(max(vals + [1.0])))
    ax.set_xlim(2.0 ** lo / 1.1, 2.0 ** hi * 1.1)
    ax.set_xticks([2.0 ** e for e in range(lo, hi + 1)])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([f"{n}\n{data['workloads'][n]['describe']}"
                        for n in names], fontsize=8)
    ax.set_xlabel("kiln speed relative to it (its time / kiln's time; "
                  "> 1: kiln faster)")
    load = m.get("loadavg_start")
    ax.set_title(f"kiln vs C and Numba, {m['threads']} threads "
                 f"({m.get('cpu') or '?'}, {m.get('cores')} cores"
                 + (f", load average {load:.1f}" if load is not None else "")
                 + ")", fontsize=9)
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    png = os.path.splitext(path)[0] + ".png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def main(argv):
    path = argv[1] if len(argv) > 1 else os.path.join(BENCH, "results",
                                                      "bench.json")
    print(f"plot: {os.path.relpath(plot(path))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
