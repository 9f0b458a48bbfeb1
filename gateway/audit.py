"""The audit trail: who called what, when, how long it took and how it ended.

Kept in memory (the newest `gateway.audit.keep` calls, for GET /calls and the console) and, when
`gateway.audit.file` is set, appended as JSON lines with size rotation (`logging.handlers`). The
file is written in batches, in a worker thread, a few times a second: a call only appends to a
list, so a slow disk never holds up a call, and past PENDING_LIMIT unwritten calls the newest are
dropped and counted rather than waited for. Error texts are redacted before they get here; argument
values are recorded only with `gateway.audit.arguments`, and redacted.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import deque
from datetime import datetime, timezone
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import anyio

from gateway.backends.invocation import Invocation
from gateway.config import AuditSettings
from gateway.interceptors.observe import CallRecord, argument_summary
from gateway.policy import Redactor

PENDING_LIMIT = 10_000
WRITE_EVERY = 0.25  # seconds

Kept = tuple[int, CallRecord, list[str], int, Any]  # number, record, argument names and size, values shown


class _JsonLines(RotatingFileHandler):
    """Writes each record's message as it is: a batch of JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        return str(record.msg)


class AuditTrail:
    """Use as `async with AuditTrail(...) as audit:`; leaving writes what is pending and closes the file."""

    def __init__(self, settings: AuditSettings, path: Path | None, redact: Redactor) -> None:
        self._settings = settings
        self._redact = redact
        self._ring: deque[Kept] = deque(maxlen=settings.keep)
        self._ids = itertools.count(1)
        self.dropped = 0  # calls the file could not keep up with
        self._pending: list[Kept] = []
        self.path = path
        self._file: _JsonLines | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> AuditTrail:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = _JsonLines(self.path, maxBytes=self._settings.max_bytes,
                                    backupCount=self._settings.backups, encoding="utf-8")
            self._tg = await anyio.create_task_group().__aenter__()
            self._tg.start_soon(self._keep_writing)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._tg is None or self._file is None:
            return
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            await self._write_pending()
        self._file.close()

    async def _keep_writing(self) -> None:
        while True:
            await anyio.sleep(WRITE_EVERY)
            await self._write_pending()

    async def _write_pending(self) -> None:
        batch, self._pending = self._pending, []
        if batch and self._file is not None:
            await anyio.to_thread.run_sync(self._write, batch)

    def _write(self, batch: list[Kept]) -> None:
        assert self._file is not None
        lines = "\n".join(json.dumps(_entry(*kept), default=str, ensure_ascii=False) for kept in batch)
        # one write per batch; the size is checked before it, so a file may pass max_bytes by a batch
        self._file.handle(logging.makeLogRecord({"msg": lines}))

    def started(self, invocation: Invocation) -> None:
        pass

    def finished(self, record: CallRecord) -> None:
        keys, size = argument_summary(record.arguments)
        shown = self._redact.value(record.arguments) if self._settings.arguments and record.arguments else None
        # Kept as it is (not its arguments), and turned into JSON only when read or written.
        if record.error:
            record.error = self._redact(record.error)
        kept: Kept = (next(self._ids), record, keys, size, shown)
        self._ring.append(kept)
        if self._file is not None:
            if len(self._pending) < PENDING_LIMIT:
                self._pending.append(kept)
            else:
                self.dropped += 1

    def recent(self, limit: int = 100, server: str | None = None, outcome: str | None = None,
               profile: str | None = None) -> list[dict[str, Any]]:
        """The newest calls first, filtered by server, outcome and the profile they came by."""
        found: list[dict[str, Any]] = []
        for kept in reversed(self._ring):
            record = kept[1]
            if (server is None or record.server == server) and (outcome is None or record.outcome == outcome) \
                    and (profile is None or record.profile == profile):
                found.append(_entry(*kept))
                if len(found) >= limit:
                    break
        return found

    @property
    def total(self) -> int:
        return self._ring[-1][0] if self._ring else 0


def _entry(number: int, record: CallRecord, keys: list[str], size: int, arguments: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": number,
        "time": datetime.fromtimestamp(record.started, timezone.utc).isoformat(timespec="milliseconds"),
        "caller": record.caller, "client": record.client, "profile": record.profile, "road": record.road.value,
        "server": record.server, "method": record.method,
        "tool": record.target if record.method == "tools/call" else None,
        "target": record.target, "duration_ms": round(record.duration * 1000, 2),
        "outcome": record.outcome, "error": record.error,
        "argument_keys": keys, "argument_bytes": size,
    }
    if arguments is not None:
        entry["arguments"] = arguments
    return entry
