"""The results as JSON and as a Markdown report (table of runs, targets, extras)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from bench import results as r
from bench.results import BenchResults
from bench.targets import Target


def _num(value: float | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def runs_table(res: BenchResults) -> str:
    """The per-run table: requests/s, p50, p99, errors, wrong, ratio to health."""
    lines = [
        "| RPC | generator | workers | in flight | req/s | p50 ms | p99 ms | errors | wrong "
        "| x health |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in res.runs:
        lines.append(
            f"| {run.name} | {run.generator} | {run.workers} | {run.concurrency} "
            f"| {run.rps:,.0f} | {_num(run.p50_ms, '.2f')} | {_num(run.p99_ms, '.2f')} "
            f"| {run.errors} | {run.wrong} | {_num(run.ratio_to_health, '.2f')} |"
        )
        for op, stats in run.ops.items():
            lines.append(
                f"| &nbsp;&nbsp;{op} | | | | {stats['rps']:,.0f} | {_num(stats['p50_ms'], '.2f')} "
                f"| {_num(stats['p99_ms'], '.2f')} | {stats['errors']} | {stats['wrong']} | |"
            )
    return "\n".join(lines)


def targets_table(targets: list[Target]) -> str:
    """The targets with their verdicts."""
    lines = ["| target | goal | measured | result |", "|---|---|---|---|"]
    lines += [f"| {t.name} | {t.goal} | {t.measured} | **{t.status}** |" for t in targets]
    return "\n".join(lines)


def extras_lines(res: BenchResults) -> list[str]:
    """The side measurements, one bullet each."""
    out: list[str] = []
    if res.argon2_rate is not None:
        out.append(
            f"- bare argon2id verify rate: {res.argon2_rate:.1f}/s with "
            f"{res.argon2_threads} threads"
        )
    for cost in res.interceptor:
        out.append(
            f"- client interceptor, {cost.label}: {cost.direct_us:.1f} us of Python per call "
            f"(timed directly); on the wire {cost.overhead_us:+.1f} us "
            f"({cost.intercepted_us:.0f} vs {cost.bare_us:.0f} us per sequential Health/Check)"
        )
    if res.server_verify is not None:
        sv = res.server_verify
        out.append(
            f"- server interceptor (authsvc_client.ServerAuthInterceptor), per protected call: "
            f"local verification +{sv.local_overhead_us:.0f} us, local + Validate RPC "
            f"+{sv.remote_overhead_us:.0f} us ({sv.ratio:.1f}x); calls {sv.bare_us:.0f} / "
            f"{sv.local_us:.0f} / {sv.remote_us:.0f} us without / local / remote"
        )
    if res.metrics_direct_us is not None:
        on = res.find(r.VALIDATE_METRICS_ON)
        share = ""
        if on and on.rps:
            share = f", {res.metrics_direct_us * on.rps / 1e4:.1f}% of a Validate at its rate"
        out.append(
            f"- metrics, timed directly: +{res.metrics_direct_us:.1f} us per Validate "
            f"(server interceptor and domain counters){share}"
        )
    mem = res.session_memory
    if mem is not None:
        out.append(
            f"- Redis per live session: {mem.per_session:.0f} B by MEMORY USAGE "
            f"(sessions {mem.session_keys_bytes} B + set {mem.sessions_set_bytes} B over "
            f"{mem.logins} logins, {mem.live_sessions} live; MEMORY USAGE leaves out Redis' "
            "own per-key dict and expiry entries)"
        )
    if res.rss is not None:
        out.append(
            f"- server RSS: {res.rss.before_kib / 1024:.1f} MiB -> "
            f"{res.rss.after_kib / 1024:.1f} MiB over {res.rss.calls:,} Validate calls "
            f"({100 * res.rss.growth:+.2f}%)"
        )
    return out


def markdown(res: BenchResults, targets: list[Target]) -> str:
    """The whole report."""
    meta = res.meta
    parts = [
        "# authsvc benchmark",
        "",
        f"{meta.get('date', '')} on {meta.get('cpus', '?')} CPUs, Python {meta.get('python', '')}, "
        f"grpcio {meta.get('grpcio', '')}, commit {meta.get('commit', '')}; "
        f"{meta.get('mode', '')} run, {meta.get('duration', '')} s per run. "
        "Ratios compare runs made by the same load generator on the same server shape.",
        "",
        runs_table(res),
        "",
        "## Targets",
        "",
        targets_table(targets),
        "",
        "## Other measurements",
        "",
        *extras_lines(res),
    ]
    for label, top in res.profile.items():
        parts += [
            "",
            f"## Server profile during {label} load (py-spy)",
            "",
            "| function | self % | | function | total % |",
            "|---|---:|---|---|---:|",
        ]
        for (own, own_pct), (inc, inc_pct) in zip(top["self"], top["total"], strict=False):
            parts.append(f"| `{own}` | {own_pct} | | `{inc}` | {inc_pct} |")
    if res.notes:
        parts += ["", "## Notes", "", *(f"- {note}" for note in res.notes)]
    return "\n".join(parts) + "\n"


def to_json(res: BenchResults, targets: list[Target]) -> dict[str, Any]:
    """A JSON-ready document of every figure."""
    return {
        "meta": res.meta,
        "runs": [run.to_json() for run in res.runs],
        "argon2": {"verify_per_second": res.argon2_rate, "threads": res.argon2_threads},
        "interceptor": {
            "measured": [
                {**dataclasses.asdict(c), "overhead_us": c.overhead_us} for c in res.interceptor
            ],
        },
        "server_verify": (
            {
                **dataclasses.asdict(res.server_verify),
                "local_overhead_us": res.server_verify.local_overhead_us,
                "remote_overhead_us": res.server_verify.remote_overhead_us,
                "ratio": res.server_verify.ratio,
            }
            if res.server_verify
            else None
        ),
        "session_memory": (
            {
                **dataclasses.asdict(res.session_memory),
                "per_session": res.session_memory.per_session,
            }
            if res.session_memory
            else None
        ),
        "rss": ({**dataclasses.asdict(res.rss), "growth": res.rss.growth} if res.rss else None),
        "profile": res.profile,
        "targets": [dataclasses.asdict(t) for t in targets],
        "notes": res.notes,
    }


def write(res: BenchResults, targets: list[Target], out_dir: Path) -> tuple[Path, Path]:
    """Write results.json and results.md into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    document = _finite(to_json(res, targets))
    json_path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    md_path.write_text(markdown(res, targets))
    return json_path, md_path


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities replaced by None (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
