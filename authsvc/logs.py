"""Structured (JSON lines) logging. Records carry an `event` and safe fields only:
never passwords, secrets or tokens."""

from __future__ import annotations

import json
import logging
import sys
import time

_SAFE_EXTRAS = ("event", "sid", "code", "method", "peer", "listen", "workers", "redis")


class JsonFormatter(logging.Formatter):
    """One JSON object per line with time, level, logger, message and known extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in _SAFE_EXTRAS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


def configure(level: str) -> None:
    """Send JSON logs to stderr at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
