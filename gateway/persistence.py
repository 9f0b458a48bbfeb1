"""The state file: servers registered at runtime, so they survive a restart.

A view of the pool, rewritten whole after every register/remove: temp file, fsync, rename. A file
that cannot be read back is moved aside, never overwritten or silently dropped.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import anyio
from pydantic import TypeAdapter, ValidationError

from gateway.config import ServerSpec

logger = logging.getLogger("gateway.state")

_SPECS = TypeAdapter(dict[str, ServerSpec])


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.problem: str | None = None  # why the file found at startup was set aside
        self._lock = anyio.Lock()

    def load(self) -> dict[str, ServerSpec]:
        if not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return _SPECS.validate_python(raw.get("servers") if isinstance(raw, dict) else None)
        except (OSError, ValueError, ValidationError) as exc:
            backup = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            reason = str(exc).splitlines()[0]
            try:
                self.path.rename(backup)
                self.problem = (f"state file {self.path} could not be read ({reason}); it was kept as "
                                f"{backup} and runtime registrations start empty")
            except OSError as move_error:
                self.problem = (f"state file {self.path} could not be read ({reason}) nor moved aside "
                                f"({move_error}); it will not be overwritten")
                self.path = backup  # write elsewhere rather than over the unreadable file
            logger.error("%s", self.problem)
            return {}

    async def save(self, current: Callable[[], dict[str, ServerSpec]]) -> None:
        """Writes `current()`, read under the lock so that the last write always holds the latest set."""
        async with self._lock:
            data = {"version": 1, "servers": {name: spec.model_dump(exclude_defaults=True)
                                              for name, spec in sorted(current().items())}}
            await anyio.to_thread.run_sync(self._write, json.dumps(data, indent=2))

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        # 0600: runtime registrations may carry tokens in env or headers
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
