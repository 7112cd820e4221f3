"""The issue's targets, each judged PASS or FAIL from the measured figures."""

from __future__ import annotations

import dataclasses

from bench import results as r
from bench.results import BenchResults
from bench.stats import LoadResult

PASS, FAIL, INFO, NOT_RUN = "PASS", "FAIL", "INFO", "NOT RUN"


@dataclasses.dataclass(frozen=True)
class Target:
    """One target: what it asks, what was measured, and the verdict."""

    name: str
    goal: str
    measured: str
    status: str


def _ratio_target(
    name: str, goal: str, value: float | None, limit: float, at_least: bool, detail: str
) -> Target:
    if value is None:
        return Target(name, goal, "not measured", NOT_RUN)
    ok = value >= limit if at_least else value <= limit
    return Target(name, goal, f"{value:.2f}x ({detail})", PASS if ok else FAIL)


def evaluate(res: BenchResults, scale_workers: int) -> list[Target]:
    """Judge every target; a target whose figures are missing is NOT RUN."""
    out: list[Target] = []
    validate = res.find(r.VALIDATE_VALID, "h2load") or res.find(r.VALIDATE_VALID)
    health = res.health_for(validate) if validate else None
    out.append(
        _ratio_target(
            "Validate throughput",
            ">= 0.85 x health Check rate",
            validate.ratio_to_health if validate else None,
            0.85,
            True,
            f"{validate.rps:.0f} vs {health.rps:.0f} req/s, {validate.generator}"
            if validate and health
            else "",
        )
    )
    loaded = res.find(r.VALIDATE_WITH_LOGINS)
    p99_ratio = loaded.p99_ms / validate.p99_ms if loaded and validate else None
    out.append(
        _ratio_target(
            "Validate p99 under Logins",
            "p99 with 20 concurrent Logins <= 2x p99 without",
            p99_ratio,
            2.0,
            False,
            f"p99 {loaded.p99_ms:.2f} vs {validate.p99_ms:.2f} ms" if loaded and validate else "",
        )
    )
    flooded = res.find(r.VALIDATE_WITH_FLOOD)
    flood_ratio = flooded.p99_ms / validate.p99_ms if flooded and validate else None
    out.append(
        _ratio_target(
            "Validate p99 under a login flood",
            "p99 with 20 Logins + a bad-login flood from one source <= 2x p99 without",
            flood_ratio,
            2.0,
            False,
            f"p99 {flooded.p99_ms:.2f} vs {validate.p99_ms:.2f} ms; "
            f"{flooded.p99_ms / loaded.p99_ms:.2f}x the p99 with the Logins alone"
            if flooded and validate and loaded
            else "",
        )
    )
    refresh = res.find(r.REFRESH)
    refresh_flooded = res.find(r.REFRESH_WITH_FLOOD)
    out.append(
        _ratio_target(
            "Refresh p99 under a login flood",
            "p99 with a bad-login flood from one source <= 2x p99 without (same generator)",
            refresh_flooded.p99_ms / refresh.p99_ms if refresh and refresh_flooded else None,
            2.0,
            False,
            f"p99 {refresh_flooded.p99_ms:.2f} vs {refresh.p99_ms:.2f} ms"
            if refresh and refresh_flooded
            else "",
        )
    )
    refresh_base = res.health_for(refresh) if refresh else None
    out.append(
        _ratio_target(
            "Refresh throughput",
            ">= 0.4 x health Check rate (same generator)",
            refresh.ratio_to_health if refresh else None,
            0.4,
            True,
            f"{refresh.rps:.0f} vs {refresh_base.rps:.0f} req/s, {refresh.generator}"
            if refresh and refresh_base
            else "",
        )
    )
    login = res.find(r.LOGIN)
    login_ratio = login.rps / res.argon2_rate if login and res.argon2_rate else None
    out.append(
        _ratio_target(
            "Login throughput",
            ">= 0.9 x bare argon2id verify rate (same threads)",
            login_ratio,
            0.9,
            True,
            f"{login.rps:.1f} vs {res.argon2_rate:.1f}/s, {res.argon2_threads} threads"
            if login and res.argon2_rate
            else "",
        )
    )
    scaled = res.find(r.VALIDATE_VALID, validate.generator if validate else None, scale_workers)
    if scaled and validate and scale_workers > 1:
        measured = (
            f"{scaled.rps / validate.rps:.2f}x ({scaled.rps:.0f} vs {validate.rps:.0f} "
            f"req/s with --workers {scale_workers} vs 1)"
        )
        out.append(Target("--workers scaling", "recorded, not a target", measured, INFO))
    else:
        out.append(Target("--workers scaling", "recorded, not a target", "not measured", NOT_RUN))
    off, on = res.find(r.VALIDATE_METRICS_OFF), res.find(r.VALIDATE_METRICS_ON)
    out.append(
        _ratio_target(
            "Metrics cost",
            "Validate with metrics on >= 0.95 x off (alternating runs)",
            on.rps / off.rps if on and off and off.rps else None,
            0.95,
            True,
            f"{on.rps:.0f} vs {off.rps:.0f} req/s, {on.generator}" if on and off else "",
        )
    )
    mem = res.session_memory
    out.append(
        Target(
            "Redis memory per session",
            "<= 1024 bytes per live session",
            f"{mem.per_session:.0f} B ({mem.live_sessions} live sessions)"
            if mem
            else "not measured",
            (PASS if mem.per_session <= 1024 else FAIL) if mem else NOT_RUN,
        )
    )
    rss = res.rss
    out.append(
        Target(
            "RSS growth",
            "< 5% over the Validate calls",
            f"{100 * rss.growth:+.1f}% ({rss.before_kib / 1024:.1f} -> "
            f"{rss.after_kib / 1024:.1f} MiB over {rss.calls:,} calls)"
            if rss
            else "not measured",
            (PASS if rss.growth < 0.05 else FAIL) if rss else NOT_RUN,
        )
    )
    out += _cluster_targets(res)
    bad = [run for run in res.runs if run.errors or run.wrong]
    errors = sum(run.errors for run in res.runs)
    wrong = sum(run.wrong for run in res.runs)
    where = "; ".join(f"{run.name} [{run.generator}, w{run.workers}]" for run in bad)
    out.append(
        Target(
            "Correctness",
            "zero errors and zero wrong answers in every run",
            f"{errors} errors, {wrong} wrong in {len(res.runs)} runs"
            + (f": {where}" if bad else ""),
            PASS if not bad and res.runs else FAIL,
        )
    )
    return out


def _cluster_targets(res: BenchResults) -> list[Target]:
    """Cluster rows against the single-Redis rows of the same run and generator."""
    out: list[Target] = []

    def pair(name: str) -> tuple[LoadResult | None, LoadResult | None]:
        return res.find(r.CLUSTER + name, "python"), res.find(name, "python")

    def ratio(cluster: LoadResult | None, single: LoadResult | None) -> float | None:
        return cluster.rps / single.rps if cluster and single and single.rps else None

    def detail(cluster: LoadResult | None, single: LoadResult | None) -> str:
        if not cluster or not single:
            return ""
        return (
            f"{cluster.rps:.0f} vs {single.rps:.0f} req/s, "
            f"p99 {cluster.p99_ms:.2f} vs {single.p99_ms:.2f} ms"
        )

    for name, goal, limit in (
        (r.VALIDATE_VALID, ">= 0.95 x single Redis (the view: no round trip)", 0.95),
        (r.REFRESH, ">= 0.8 x single Redis", 0.8),
    ):
        c, s = pair(name)
        out.append(_ratio_target(f"Cluster {name}", goal, ratio(c, s), limit, True, detail(c, s)))
    for name in (r.LOGIN, r.REVOKE):
        c, s = pair(name)
        value = ratio(c, s)
        measured = f"{value:.2f}x ({detail(c, s)})" if value is not None else "not measured"
        status = INFO if value is not None else NOT_RUN
        out.append(Target(f"Cluster {name}", "recorded, not a target", measured, status))
    acked = res.find(r.CLUSTER + r.REVOKE, "python")
    bare = res.find(r.CLUSTER + r.REVOKE_NO_ACK, "python")
    value = ratio(acked, bare)
    measured = (
        f"{value:.2f}x ({acked.rps:.0f} vs {bare.rps:.0f} req/s, "
        f"p99 {acked.p99_ms:.2f} vs {bare.p99_ms:.2f} ms)"
        if value is not None and acked and bare
        else "not measured"
    )
    out.append(
        Target(
            "Cluster Revoke: replica ack cost",
            "recorded: WAIT 1 vs none",
            measured,
            INFO if value is not None else NOT_RUN,
        )
    )
    return out
