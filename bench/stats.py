"""The result of one load run and the percentile arithmetic behind it."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100, nearest rank) of already sorted values; NaN if none."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


@dataclasses.dataclass
class LoadResult:
    """What one fixed-time (or fixed-count) run of one workload measured.

    Attributes:
        name: Row label, e.g. "Validate (valid)".
        generator: "h2load" or "python".
        workers: Server processes (`authsvc serve --workers N`).
        concurrency: Calls in flight at any time.
        seconds: Measured wall time (warm-up excluded).
        requests: Calls completed in the measured time.
        errors: Calls that failed (transport errors, non-OK gRPC status).
        wrong: Calls answered OK with a wrong answer (or, for h2load, unaccounted bytes).
        p50_ms, p99_ms: Latency percentiles of the measured calls.
        codes: gRPC status name (or h2load outcome) -> count.
        ops: Per-operation breakdown of a mixed workload (same fields, nested).
        notes: How correctness was established, and anything odd.
    """

    name: str
    generator: str
    workers: int
    concurrency: int
    seconds: float
    requests: int
    errors: int
    wrong: int
    p50_ms: float
    p99_ms: float
    codes: dict[str, int] = dataclasses.field(default_factory=dict)
    ops: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    ratio_to_health: float | None = None

    @property
    def rps(self) -> float:
        """Completed calls per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with the derived requests/s."""
        data = dataclasses.asdict(self)
        data["rps"] = round(self.rps, 1)
        return data


def combined(name: str, results: Sequence[LoadResult]) -> LoadResult:
    """Several runs of one workload as one row: calls and time summed (so the rate is
    over all of them), latencies the medians of the runs' percentiles."""
    first = results[0]
    rates = ", ".join(f"{r.rps:,.0f}" for r in results)
    return LoadResult(
        name=name,
        generator=first.generator,
        workers=first.workers,
        concurrency=first.concurrency,
        seconds=sum(r.seconds for r in results),
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        wrong=sum(r.wrong for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        notes=[f"{len(results)} runs, req/s {rates}", *(n for r in results for n in r.notes)],
    )


def latency_summary(latencies_ms: list[float]) -> tuple[float, float]:
    """(p50, p99) of unsorted latencies in milliseconds; sorts the list in place."""
    latencies_ms.sort()
    return percentile(latencies_ms, 50), percentile(latencies_ms, 99)
