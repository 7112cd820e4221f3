"""Runs one workload with the right generator, bracketed by checked samples."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import threading
from collections.abc import Callable
from pathlib import Path

from google.protobuf.message import Message

from bench import h2load, pyload
from bench.checks import Probe, Sample, run_probes
from bench.frames import frame
from bench.stats import LoadResult
from bench.workloads import WorkloadSpec


@dataclasses.dataclass(frozen=True)
class H2Target:
    """What h2load needs to drive one RPC: the method path and its (constant) request."""

    path: str
    request: Message


class Runner:
    """Runs workloads against one server, records them, and reports progress."""

    def __init__(
        self,
        target: str,
        workers: int,
        h2_binary: str | None,
        workdir: Path,
        clients: int,
        concurrency: int,
        py_processes: int,
        duration: float,
        warmup: float,
        say: Callable[[str], None],
    ) -> None:
        self.target = target
        self.workers = workers
        self.h2_binary = h2_binary
        self.workdir = workdir
        self._clients = clients
        self._concurrency = concurrency
        self._py_processes = py_processes
        self.duration = duration
        self.warmup = warmup
        self.say = say

    def aimed_at(self, target: str) -> Runner:
        """This runner with another address (the same server through a relay)."""
        other = copy.copy(self)
        other.target = target
        return other

    def constant(
        self, name: str, h2: H2Target, spec: WorkloadSpec, probes: list[Probe]
    ) -> LoadResult:
        """A workload whose every request is the same: h2load if available, else Python."""
        if self.h2_binary is None:
            return self.python(name, spec, probes)
        self.say(f"{name}: h2load, {self._concurrency} in flight, {self.duration:g} s ...")
        before = run_probes(probes)
        if not before.response_bytes:
            raise RuntimeError(f"{name}: the checked sample got no right answer: {before}")
        job = self.h2_job(name, h2, before.response_bytes, duration=self.warmup)
        h2load.run(self.h2_binary, self.target, job, self.workers, None)  # warm-up
        job = dataclasses.replace(job, duration=self.duration)
        result = h2load.run(self.h2_binary, self.target, job, self.workers, self.workdir / "h2.log")
        return self.finish(result, before, run_probes(probes))

    def h2_job(
        self,
        name: str,
        h2: H2Target,
        response_bytes: int,
        duration: float | None = None,
        count: int | None = None,
    ) -> h2load.H2Job:
        """An h2load job for `h2` with this runner's connection and stream counts."""
        body = self.workdir / (re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") + ".bin")
        body.write_bytes(frame(h2.request))
        return h2load.H2Job(
            name=name,
            path=h2.path,
            body_file=body,
            response_bytes=response_bytes,
            clients=self._clients,
            streams=self._concurrency // self._clients,
            duration=duration,
            count=count,
        )

    def python(
        self,
        name: str,
        spec: WorkloadSpec,
        probes: list[Probe],
        processes: int | None = None,
        concurrency: int | None = None,
        started: threading.Event | None = None,
        duration: float | None = None,
    ) -> LoadResult:
        """A run of the Python generator (every answer checked by the generator itself)."""
        processes = processes or self._py_processes
        per_process = (concurrency or self._concurrency) // processes
        duration = duration or self.duration
        if started is None:
            self.say(
                f"{name}: Python generator, {processes} x {per_process} in flight, "
                f"{duration:g} s ..."
            )
        before = run_probes(probes)
        job = pyload.PyJob(name, spec, processes, per_process, duration, self.warmup)
        result = pyload.run(self.target, job, self.workers, started)
        return self.finish(result, before, run_probes(probes), quiet=started is not None)

    def finish(
        self, result: LoadResult, before: Sample, after: Sample, quiet: bool = False
    ) -> LoadResult:
        for when, sample in (("before", before), ("after", after)):
            result.errors += sample.errors
            result.wrong += sample.wrong
            result.notes.append(
                f"checked sample {when}: {sample.calls} calls, {sample.errors} errors, "
                f"{sample.wrong} wrong"
            )
        if not quiet:
            self.say("  " + summary(result))
        return result


def summary(result: LoadResult) -> str:
    """One line: rate, latencies, errors."""
    p50 = "-" if math.isnan(result.p50_ms) else f"{result.p50_ms:.2f}"
    p99 = "-" if math.isnan(result.p99_ms) else f"{result.p99_ms:.2f}"
    return (
        f"-> {result.rps:,.0f} req/s, p50 {p50} ms, p99 {p99} ms, "
        f"{result.errors} errors, {result.wrong} wrong"
    )
