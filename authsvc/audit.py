"""The audit trail: one JSON line per security-relevant fact, on the `authsvc.audit` logger.

A separate stream from the regular logs (stderr by default, or the file of
`AUTHSVC_AUDIT_LOG`), written by an `EventSink` from the domain's events, so every
login, refresh, revocation, account change and key rotation is recorded the same way
whichever path caused it. Lines carry names, identifiers and addresses only: events never
hold a password, secret or token, so neither can a line.

Every line: `ts` (UTC), `logger` ("authsvc.audit"), `event`, then the event's fields;
`session_id` is written `session`, enums as their value, and a Refresh's outcome is part
of its event name (`refresh_rotated`, `refresh_reuse_detected`, ...).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import pwd
import sys
import time
from logging.handlers import WatchedFileHandler
from typing import Any

from authsvc import events

AUDIT_LOGGER = "authsvc.audit"

_RENAMED = {"session_id": "session"}


def audit_record(event: events.Event) -> dict[str, Any]:
    """The audit fields of `event` (without the timestamp)."""
    name = event.name
    if isinstance(event, events.Refreshed):
        name = f"refresh_{event.outcome.value}"
    record: dict[str, Any] = {"logger": AUDIT_LOGGER, "event": name}
    for field in dataclasses.fields(event):
        if isinstance(event, events.Refreshed) and field.name == "outcome":
            continue
        value = getattr(event, field.name)
        record[_RENAMED.get(field.name, field.name)] = (
            value.value if isinstance(value, enum.Enum) else value
        )
    return record


def _timestamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


class AuditSink:
    """Writes each domain event as one JSON line to the `authsvc.audit` logger.

    Args:
        logger: where lines go (the `authsvc.audit` logger unless a test says otherwise).
        os_user: stamped on every line as `os_user` (the admin CLI: the operating-system
            account that ran it, since its caller has no network identity).
    """

    def __init__(self, logger: logging.Logger | None = None, os_user: str = "") -> None:
        self._log = logger or logging.getLogger(AUDIT_LOGGER)
        self._extra = {"os_user": os_user} if os_user else {}

    def emit(self, event: events.Event) -> None:
        """Write `event` as one line (nothing when the audit logger is silenced)."""
        if not self._log.isEnabledFor(logging.INFO):
            return
        now = time.time()
        line = {"ts": _timestamp(now), **audit_record(event), **self._extra}
        self._log.info(json.dumps(line, separators=(",", ":")))


def current_os_user() -> str:
    """The name of the real user running this process (not from the environment)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid:{os.getuid()}"


def configure(path: str = "") -> None:
    """Send the audit trail to `path` (appended, created 0600), or to stderr when empty.

    The audit logger does not propagate: its lines never mix into the regular logs'
    format, and it always records INFO whatever `AUTHSVC_LOG_LEVEL` says.
    """
    handler: logging.Handler
    if path:
        # Created private: the trail names accounts and addresses.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        # Reopens the file when logrotate moves it away.
        handler = WatchedFileHandler(path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(AUDIT_LOGGER)
    for old in logger.handlers:
        old.close()
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
