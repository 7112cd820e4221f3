"""Command-line options of the bench, with the defaults of a full and a `--quick` run."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclasses.dataclass(frozen=True)
class Options:
    """Every knob of one bench run (see `parse` for their meaning)."""

    quick: bool
    duration: float
    warmup: float
    concurrency: int
    h2_clients: int
    py_processes: int
    login_concurrency: int
    flood_concurrency: int
    scale_workers: int
    rss_calls: int
    session_logins: int
    argon2_seconds: float
    micro_seconds: float
    metrics_rounds: int
    generator: str
    install: bool
    profile: bool
    check: bool
    out_dir: Path
    cluster: bool = True


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark authsvc: throughput, latency and memory per RPC, each as a "
        "ratio to a baseline measured in the same run.",
    )
    p.add_argument(
        "--quick", action="store_true", help="a ~1-minute smoke run (short runs, 50k RSS calls)"
    )
    p.add_argument("--duration", type=float, help="seconds per measured run (10; quick 4)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each run (2; quick 1)")
    p.add_argument("--concurrency", type=int, default=32, help="calls in flight per run (32)")
    p.add_argument(
        "--h2-clients",
        type=int,
        default=8,
        help="h2load connections; streams each = concurrency / clients (8)",
    )
    p.add_argument(
        "--py-processes", type=int, default=2, help="processes of the Python generator (2)"
    )
    p.add_argument(
        "--login-concurrency",
        type=int,
        default=20,
        help="Logins in flight during the Validate p99 run (20)",
    )
    p.add_argument(
        "--flood-concurrency",
        type=int,
        default=32,
        help="bad Logins in flight from one source during the flood runs; 0 skips them (32)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 2,
        dest="scale_workers",
        help="server processes of the scaling run; 1 skips it (CPU count)",
    )
    p.add_argument(
        "--rss-calls",
        type=int,
        help="Validate calls of the RSS run (1,000,000; quick 50,000; 0 skips)",
    )
    p.add_argument("--session-logins", type=int, help="logins weighed in Redis (200; quick 40)")
    p.add_argument(
        "--generator",
        choices=("auto", "python"),
        default="auto",
        help="auto: h2load where it fits; python: never h2load",
    )
    p.add_argument(
        "--no-install",
        dest="install",
        action="store_false",
        help="do not apt-get install h2load when it is missing",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also sample the server with py-spy during a Validate run",
    )
    p.add_argument(
        "--no-cluster",
        dest="cluster",
        action="store_false",
        help="skip the rows on a 3-master / 3-replica Redis Cluster",
    )
    p.add_argument("--check", action="store_true", help="exit with status 1 when a target fails")
    p.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help="where results.json/.md/.png go (bench/results)",
    )
    return p


def parse(argv: Sequence[str] | None = None) -> Options:
    """Parse flags and fill in the defaults of the chosen mode."""
    args = _parser().parse_args(argv)
    quick = bool(args.quick)

    def pick(value: float | int | None, full: float | int, short: float | int) -> float:
        return float(value if value is not None else (short if quick else full))

    if args.concurrency < args.h2_clients or args.concurrency % args.h2_clients:
        raise SystemExit("--concurrency must be a multiple of --h2-clients")
    if args.concurrency % args.py_processes:
        raise SystemExit("--concurrency must be a multiple of --py-processes")
    return Options(
        quick=quick,
        duration=pick(args.duration, 10, 4),
        warmup=pick(args.warmup, 2, 1),
        concurrency=args.concurrency,
        h2_clients=args.h2_clients,
        py_processes=args.py_processes,
        login_concurrency=args.login_concurrency,
        flood_concurrency=args.flood_concurrency,
        scale_workers=args.scale_workers,
        rss_calls=int(pick(args.rss_calls, 1_000_000, 50_000)),
        session_logins=int(pick(args.session_logins, 200, 40)),
        argon2_seconds=3.0 if quick else 6.0,
        micro_seconds=2.0 if quick else 6.0,
        metrics_rounds=1 if quick else 2,
        generator=args.generator,
        install=args.install,
        profile=args.profile,
        check=args.check,
        out_dir=args.out,
        cluster=args.cluster,
    )
