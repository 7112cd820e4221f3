"""A PNG chart of throughput and latency per run (matplotlib, optional)."""

from __future__ import annotations

import math
from pathlib import Path

from bench.results import BenchResults


def write(res: BenchResults, path: Path) -> str | None:
    """Draw the chart; returns None, or why it was skipped (matplotlib missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install matplotlib)"
    runs = [run for run in res.runs if run.requests]
    labels = [f"{run.name}\n{run.generator}, w{run.workers}" for run in runs]
    colors = ["tab:blue" if run.generator == "h2load" else "tab:orange" for run in runs]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 9), sharex=True)
    top.bar(range(len(runs)), [run.rps for run in runs], color=colors)
    top.set_ylabel("requests/s")
    top.set_title("authsvc: throughput (blue: h2load, orange: Python generator)")
    for i, run in enumerate(runs):
        if run.ratio_to_health is not None:
            top.annotate(
                f"{run.ratio_to_health:.2f}x", (i, run.rps), ha="center", va="bottom", fontsize=8
            )
    width = 0.4
    p50 = [run.p50_ms if math.isfinite(run.p50_ms) else 0 for run in runs]
    p99 = [run.p99_ms if math.isfinite(run.p99_ms) else 0 for run in runs]
    bottom.bar([i - width / 2 for i in range(len(runs))], p50, width, label="p50")
    bottom.bar([i + width / 2 for i in range(len(runs))], p99, width, label="p99")
    bottom.set_yscale("log")
    bottom.set_ylabel("latency, ms (log)")
    bottom.legend()
    bottom.set_xticks(range(len(runs)))
    bottom.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
