"""py-spy sampling of the server under load, summarized as top functions."""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

_FRAME_RE = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::\d+)?\)$")
# Frames every sample passes through (event loop, threads, the entry point): left out of
# the inclusive ranking, where they would only crowd out the informative ones.
_PLUMBING = (
    "asyncio/",
    "threading.py",
    "selectors.py",
    "futures/thread.py",
    "<module>",
    "main (authsvc/cli.py)",
    "run (authsvc/server.py)",
    "runners.py",
)


def find_py_spy() -> str | None:
    """py-spy beside this interpreter, or on PATH (`pip install py-spy`)."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(binary: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start recording `pid` for `seconds` into `out` (collapsed stacks), without pausing it."""
    return subprocess.Popen(
        [
            binary,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _name(frame: str) -> str:
    match = _FRAME_RE.match(frame.strip())
    if match is None:
        return frame.strip()
    parts = Path(match["file"]).parts
    return f"{match['func']} ({'/'.join(parts[-2:])})"


def summarize(raw: Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Top functions by self samples and by total (inclusive) samples, in percent.

    Self time shown in an event-loop frame (`Handle._run`) or `Thread.run` is native code
    called from there (grpc's Cython core, protobuf): py-spy sees Python frames only.
    """
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            if not any(part in name for part in _PLUMBING):
                inclusive[name] += count
    if total == 0:
        return {"self": [], "total": []}

    def pct(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {"self": pct(own), "total": pct(inclusive)}
