"""h2load (nghttp2-client) as a gRPC load generator: install-or-skip, run, parse.

h2load posts the same length-prefixed protobuf body on every stream and cannot read
`grpc-status` (it is in the trailers). Correctness is therefore proven from outside: the
run's DATA byte count must equal `succeeded x expected response size` (an error reply has
no body, a different answer has a different size), and a real client checks a sample
before and after every run.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from bench.stats import LoadResult, latency_summary

GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
_REQUESTS_RE = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_STATUS_RE = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_DATA_RE = re.compile(r"\((\d+)\) data")
_FINISHED_RE = re.compile(r"finished in ([\d.]+)(ms|s)")


@dataclasses.dataclass(frozen=True)
class H2Job:
    """One h2load run against one gRPC method with one request body.

    Attributes:
        name: Row label.
        path: `/package.Service/Method`.
        body_file: The framed request body.
        response_bytes: Expected DATA bytes of every response (see `frames.framed_size`).
        clients: HTTP/2 connections (`-c`); streams: concurrent streams each (`-m`).
        duration: Seconds (`-D`), or None to run `count` requests (`-n`).
    """

    name: str
    path: str
    body_file: Path
    response_bytes: int
    clients: int
    streams: int
    duration: float | None = None
    count: int | None = None


def find_or_install(allow_install: bool, say: Callable[[str], None]) -> str | None:
    """The h2load binary; installs nghttp2-client with apt-get when allowed and possible.

    Returns None (after saying why) when it is missing and cannot be installed.
    """
    found = shutil.which("h2load")
    if found or not allow_install:
        if not found:
            say("h2load not found and --no-install given")
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        say("h2load not found and cannot be installed here (needs root and apt-get)")
        return None
    say("h2load not found: installing nghttp2-client with apt-get ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "nghttp2-client"],
    ):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            say(f"could not install nghttp2-client: {exc}")
            return None
        if proc.returncode != 0:
            say(f"could not install nghttp2-client: {proc.stderr.strip()[-300:]}")
            return None
    return shutil.which("h2load")


def run(
    binary: str,
    target: str,
    job: H2Job,
    workers: int,
    log_file: Path | None,
    on_line: Callable[[str], None] | None = None,
) -> LoadResult:
    """Run h2load once and turn its summary and per-request log into a `LoadResult`."""
    cmd = [binary, "-d", str(job.body_file), "-c", str(job.clients), "-m", str(job.streams)]
    for header in GRPC_HEADERS:
        cmd += ["-H", header]
    if job.duration is not None:
        cmd += ["-D", f"{job.duration:g}"]
    else:
        cmd += ["-n", str(job.count)]
    if log_file is not None:
        log_file.unlink(missing_ok=True)
        cmd += ["--log-file", str(log_file)]
    cmd.append(f"http://{target}{job.path}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if on_line is not None and line.startswith("progress:"):
            on_line(line.strip())
    proc.wait()
    output = "".join(lines)
    if proc.returncode != 0:
        raise RuntimeError(f"h2load failed ({proc.returncode}): {output[-500:]}")
    return _result(job, workers, output, log_file)


def _result(job: H2Job, workers: int, output: str, log_file: Path | None) -> LoadResult:
    req = _REQUESTS_RE.search(output)
    status = _STATUS_RE.search(output)
    data = _DATA_RE.search(output)
    finished = _FINISHED_RE.search(output)
    if not (req and status and data and finished):
        raise RuntimeError(f"cannot parse h2load output: {output[-500:]}")
    done, succeeded = int(req.group(3)), int(req.group(4))
    failed, errored, timeouts = int(req.group(5)), int(req.group(6)), int(req.group(7))
    non_2xx = sum(int(status.group(i)) for i in (2, 3, 4))
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    data_bytes = int(data.group(1))
    ok_http = succeeded - non_2xx
    # Every OK answer has exactly `response_bytes` of DATA; an error reply has none.
    expected = ok_http * job.response_bytes
    missing = expected - data_bytes
    errors = failed + errored + timeouts + non_2xx
    wrong = 0
    notes = [
        f"answers checked by byte count: {data_bytes} DATA bytes for {ok_http} replies "
        f"of {job.response_bytes} bytes"
    ]
    if missing > 0:
        # Replies without a body are gRPC errors (trailers-only); count them as errors.
        errors += -(-missing // job.response_bytes)
        notes.append(f"{missing} DATA bytes missing: some replies were gRPC errors")
    elif missing < 0:
        wrong += max(1, -missing // job.response_bytes)
        notes.append(f"{-missing} unexpected DATA bytes: some answers differ")
    latencies = _latencies_ms(log_file) if log_file is not None else []
    p50, p99 = latency_summary(latencies)
    return LoadResult(
        name=job.name,
        generator="h2load",
        workers=workers,
        concurrency=job.clients * job.streams,
        seconds=seconds,
        requests=done,
        errors=errors,
        wrong=wrong,
        p50_ms=p50,
        p99_ms=p99,
        codes={"2xx": ok_http, "non-2xx": non_2xx, "failed": failed + errored + timeouts},
        notes=notes,
    )


def _latencies_ms(log_file: Path) -> list[float]:
    """Column 3 of h2load's per-request log: microseconds until the response ended."""
    out: list[float] = []
    try:
        with log_file.open() as fh:
            for line in fh:
                parts = line.split("\t")
                if len(parts) >= 3:
                    out.append(int(parts[2]) / 1000)
    finally:
        log_file.unlink(missing_ok=True)
    return out
