"""Everything one bench run measured, in one object that targets and reports read."""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.interceptor import InterceptorCost
from bench.server_verify import ServerVerifyCost
from bench.session_memory import SessionMemory
from bench.stats import LoadResult

HEALTH = "Health/Check (baseline)"
VALIDATE_VALID = "Validate (valid token)"
VALIDATE_INVALID = "Validate (bad signature)"
VALIDATE_WITH_LOGINS = "Validate (valid) + 20 Logins"
VALIDATE_WITH_FLOOD = "Validate (valid) + 20 Logins + bad-login flood"
REFRESH = "Refresh"
REFRESH_WITH_FLOOD = "Refresh + bad-login flood"
LOGIN = "Login"
MIXED = "Mixed"
REVOKE = "Revoke"
CLUSTER = "Cluster: "
"""Prefix of the rows measured on a 3-master / 3-replica Redis Cluster."""
REVOKE_NO_ACK = "Revoke (no replica ack)"
RSS_RUN = "Validate x N (RSS)"
VALIDATE_METRICS_OFF = "Validate (valid), metrics off"
VALIDATE_METRICS_ON = "Validate (valid), metrics on"


@dataclasses.dataclass(frozen=True)
class RssGrowth:
    """Server RSS around a long run of Validate calls.

    Attributes:
        calls: Validate calls made between the two readings.
        before_kib, after_kib: RSS of the serving process(es) after warm-up and at the end.
        trace: (seconds since start, KiB) readings taken during the run.
    """

    calls: int
    before_kib: int
    after_kib: int
    trace: list[tuple[float, int]]

    @property
    def growth(self) -> float:
        """Relative growth, e.g. 0.03 for 3%."""
        return (self.after_kib - self.before_kib) / self.before_kib if self.before_kib else 0.0


@dataclasses.dataclass
class BenchResults:
    """All figures of one run of the bench."""

    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    runs: list[LoadResult] = dataclasses.field(default_factory=list)
    argon2_rate: float | None = None
    argon2_threads: int = 0
    session_memory: SessionMemory | None = None
    server_verify: ServerVerifyCost | None = None
    interceptor: list[InterceptorCost] = dataclasses.field(default_factory=list)
    rss: RssGrowth | None = None
    #: Microseconds metrics add to one Validate, timed directly (bench.metrics_cost).
    metrics_direct_us: float | None = None
    #: workload -> {"self" | "total": [(function, percent of samples)]}
    profile: dict[str, dict[str, list[tuple[str, float]]]] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    def find(self, name: str, generator: str | None = None, workers: int = 1) -> LoadResult | None:
        """The run with this row name, generator (any when None) and worker count."""
        for run in self.runs:
            if run.name == name and run.workers == workers:
                if generator is None or run.generator == generator:
                    return run
        return None

    def health_for(self, run: LoadResult) -> LoadResult | None:
        """The health baseline measured by the same generator on the same server shape."""
        return self.find(HEALTH, run.generator, run.workers)

    def set_ratios(self) -> None:
        """Fill in each run's throughput ratio to its health baseline."""
        for run in self.runs:
            base = self.health_for(run)
            run.ratio_to_health = run.rps / base.rps if base and base.rps else None
