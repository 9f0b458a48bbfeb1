"""The audit trail: who called what, when, how long it took and how it ended.

Kept in memory (the newest `gateway.audit.keep` calls, for GET /calls and the console) and, when
`gateway.audit.file` is set, appended as JSON lines by a writer thread with size rotation
(`logging.handlers`), so that a slow disk never holds up a call: past a full queue a line is
dropped and counted, not waited for. Error texts are redacted before they get here; argument values
are recorded only with `gateway.audit.arguments`, and redacted.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
from collections import deque
from datetime import datetime, timezone
from logging.handlers import QueueListener, RotatingFileHandler
from pathlib import Path
from typing import Any

from gateway.backends.invocation import Invocation
from gateway.config import AuditSettings
from gateway.interceptors.observe import CallRecord, argument_summary
from gateway.policy import Redactor

QUEUE_LIMIT = 10_000


class _JsonLines(RotatingFileHandler):
    """Writes each record's message as it is: one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return str(record.msg)


class AuditTrail:
    def __init__(self, settings: AuditSettings, path: Path | None, redact: Redactor) -> None:
        self._settings = settings
        self._redact = redact
        self._ring: deque[dict[str, Any]] = deque(maxlen=settings.keep)
        self._ids = itertools.count(1)
        self.dropped = 0  # lines the file writer could not keep up with
        self._queue: queue.Queue[logging.LogRecord] = queue.Queue(QUEUE_LIMIT)
        self._listener: QueueListener | None = None
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = _JsonLines(path, maxBytes=settings.max_bytes, backupCount=settings.backups, encoding="utf-8")
            self._listener = QueueListener(self._queue, handler)

    def __enter__(self) -> AuditTrail:
        if self._listener is not None:
            self._listener.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._listener is not None:
            self._listener.stop()  # writes what is queued, then closes the file
            for handler in self._listener.handlers:
                handler.close()

    def started(self, invocation: Invocation) -> None:
        pass

    def finished(self, record: CallRecord) -> None:
        keys, size = argument_summary(record.arguments)
        entry: dict[str, Any] = {
            "id": next(self._ids),
            "time": datetime.fromtimestamp(record.started, timezone.utc).isoformat(timespec="milliseconds"),
            "caller": record.caller, "client": record.client, "road": record.road.value,
            "server": record.server, "method": record.method,
            "tool": record.target if record.method == "tools/call" else None,
            "target": record.target, "duration_ms": round(record.duration * 1000, 2),
            "outcome": record.outcome, "error": self._redact(record.error) if record.error else None,
            "argument_keys": keys, "argument_bytes": size,
        }
        if self._settings.arguments and record.arguments is not None:
            entry["arguments"] = self._redact.value(record.arguments)
        self._ring.append(entry)
        if self._listener is not None:
            try:
                line = json.dumps(entry, default=str, ensure_ascii=False)
                self._queue.put_nowait(logging.makeLogRecord({"msg": line}))
            except queue.Full:
                self.dropped += 1

    def recent(self, limit: int = 100, server: str | None = None, outcome: str | None = None) -> list[dict[str, Any]]:
        """The newest calls first, filtered by server and outcome."""
        found: list[dict[str, Any]] = []
        for entry in reversed(self._ring):
            if (server is None or entry["server"] == server) and (outcome is None or entry["outcome"] == outcome):
                found.append(entry)
                if len(found) >= limit:
                    break
        return found

    @property
    def total(self) -> int:
        return self._ring[-1]["id"] if self._ring else 0
