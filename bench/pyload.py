"""A multi-process grpc.aio load generator: N processes, each with M calls in flight.

Used where h2load cannot be: every Refresh and Login needs its own request body, and a
mixed workload has per-session state. Every answer is checked, every status code counted.
The generator is Python too, so it costs about as much CPU per call as the server does:
compare its figures only with a health baseline measured by this same generator.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import multiprocessing
import queue
import threading
import time
from collections.abc import Sequence
from multiprocessing.synchronize import Barrier
from typing import Any

import grpc

from bench.stats import LoadResult, latency_summary
from bench.workloads import WorkloadSpec, make_workload

_SETUP_TIMEOUT = 300.0


@dataclasses.dataclass(frozen=True)
class PyJob:
    """One run of the Python generator.

    Attributes:
        name: Row label.
        spec: The workload.
        processes: Generator processes; concurrency: calls in flight in each of them.
        duration: Measured seconds; warmup: seconds run first and not counted.
    """

    name: str
    spec: WorkloadSpec
    processes: int
    concurrency: int
    duration: float
    warmup: float


def run(
    target: str, job: PyJob, workers: int, started: threading.Event | None = None
) -> LoadResult:
    """Run `job` against `target`; sets `started` when the measured window begins.

    Raises:
        RuntimeError: a generator process failed to set up or to report.
    """
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(job.processes + 1)
    results: multiprocessing.Queue[dict[str, Any]] = ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(target, job, i, barrier, results), daemon=True)
        for i in range(job.processes)
    ]
    for proc in procs:
        proc.start()
    try:
        barrier.wait(timeout=_SETUP_TIMEOUT)
    except threading.BrokenBarrierError:
        reports = _drain(results, len(procs), 5.0)
        _stop(procs)
        errors = [r["error"] for r in reports if "error" in r]
        raise RuntimeError(f"{job.name}: generator setup failed: {errors or 'timeout'}") from None
    if started is not None:
        time.sleep(job.warmup)
        started.set()
    reports = _drain(results, len(procs), job.warmup + job.duration + 120.0)
    _stop(procs)
    errors = [r["error"] for r in reports if "error" in r]
    if errors or len(reports) < len(procs):
        raise RuntimeError(f"{job.name}: generator failed: {errors or 'no report'}")
    return _merge(job, workers, reports)


def _drain(
    results: multiprocessing.Queue[dict[str, Any]], n: int, timeout: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    reports: list[dict[str, Any]] = []
    while len(reports) < n:
        try:
            reports.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            break
    return reports


def _stop(procs: Sequence[multiprocessing.process.BaseProcess]) -> None:
    for proc in procs:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
            proc.join()


def _child(
    target: str,
    job: PyJob,
    index: int,
    barrier: Barrier,
    results: multiprocessing.Queue[dict[str, Any]],
) -> None:
    try:
        results.put(asyncio.run(_drive(target, job, index, barrier)))
    except BaseException as exc:  # reported to the parent, which raises
        barrier.abort()
        results.put({"error": f"process {index}: {exc!r}"})


async def _drive(target: str, job: PyJob, index: int, barrier: Barrier) -> dict[str, Any]:
    codes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    wrong: collections.Counter[str] = collections.Counter()
    latencies: dict[str, list[float]] = collections.defaultdict(list)
    async with grpc.aio.insecure_channel(target) as channel:
        workload = make_workload(channel, job.spec, index * job.concurrency)
        await asyncio.gather(*(workload.setup(slot) for slot in range(job.concurrency)))
        barrier.wait(timeout=_SETUP_TIMEOUT)
        measure_from = time.monotonic() + job.warmup
        end = measure_from + job.duration

        async def loop(slot: int) -> None:
            while (t0 := time.monotonic()) < end:
                op, code, right = "?", "OK", True
                try:
                    op, right = await workload.call(slot)
                except grpc.aio.AioRpcError as exc:
                    code = exc.code().name
                elapsed = time.monotonic() - t0
                if t0 >= measure_from:
                    codes[op][code] += 1
                    wrong[op] += 0 if right else 1
                    latencies[op].append(elapsed * 1000)
                if code != "OK":
                    await workload.recover(slot)

        await asyncio.gather(*(loop(slot) for slot in range(job.concurrency)))
    return {
        "codes": {op: dict(c) for op, c in codes.items()},
        "wrong": dict(wrong),
        "latencies": dict(latencies),
    }


def _merge(job: PyJob, workers: int, reports: list[dict[str, Any]]) -> LoadResult:
    codes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    wrong: collections.Counter[str] = collections.Counter()
    latencies: dict[str, list[float]] = collections.defaultdict(list)
    for report in reports:
        for op, counts in report["codes"].items():
            codes[op].update(counts)
        wrong.update(report["wrong"])
        for op, values in report["latencies"].items():
            latencies[op].extend(values)
    ops: dict[str, dict[str, Any]] = {}
    expected = job.spec.expect_codes
    for op in sorted(codes):
        p50, p99 = latency_summary(latencies[op])
        n = sum(codes[op].values())
        ops[op] = {
            "requests": n,
            "rps": round(n / job.duration, 1),
            "errors": n - sum(codes[op][c] for c in expected),
            "wrong": wrong[op],
            "p50_ms": p50,
            "p99_ms": p99,
            "codes": dict(codes[op]),
        }
    every = [v for values in latencies.values() for v in values]
    p50, p99 = latency_summary(every)
    total_codes: collections.Counter[str] = collections.Counter()
    for counts in codes.values():
        total_codes.update(counts)
    requests = sum(total_codes.values())
    return LoadResult(
        name=job.name,
        generator="python",
        workers=workers,
        concurrency=job.processes * job.concurrency,
        seconds=job.duration,
        requests=requests,
        errors=requests - sum(total_codes[c] for c in expected),
        wrong=sum(wrong.values()),
        p50_ms=p50,
        p99_ms=p99,
        codes=dict(total_codes),
        ops=ops if len(ops) > 1 else {},
        notes=[f"{job.processes} process(es) x {job.concurrency} in flight; every answer checked"],
    )
