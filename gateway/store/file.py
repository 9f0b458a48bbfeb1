"""The state file: servers registered at runtime, so they survive a restart.

It holds what each client asked for (a catalog template and its values, or a server definition), as
JSON entries, rewritten whole after every register/remove through a fresh temp file in the same
directory (created exclusively, mode 0600, so no link is followed and no other user can read it),
fsync and rename. A file that cannot be read back is moved aside, never overwritten or silently
dropped; an entry that cannot be restored is kept in the file for the operator to see.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

logger = logging.getLogger("gateway.state")

Entries = dict[str, dict[str, Any]]


class StateFile:
    degraded = None  # a file is always there to write to (a failing write is reported as it happens)
    on_remote_change = None  # nobody else writes it

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problem: str | None = None  # why the file found at startup was set aside
        self._lock = anyio.Lock()
        # Each part of the state (runtime servers, tool overrides) is read from its owner at every
        # write, so one owner's write never loses another's latest change.
        self._sections: dict[str, Callable[[], Any]] = {}
        self._loaded: dict[str, Any] = {}

    def keep(self, section: str, current: Callable[[], Any]) -> Any:
        """Makes `current()` the file's `section` from now on; returns what the file held of it."""
        self._sections[section] = current
        return self._loaded.get(section)

    @property
    def where(self) -> str:
        return f"the state file {self.path}"

    @property
    def work_root(self) -> Path:
        """Where runtime stdio servers get their working directories."""
        return self.path.with_name(f".{self.path.stem}-work")

    async def start(self) -> None:
        """Read at `load()`: nothing to do ahead."""

    async def watch(self) -> None:
        """Nobody else writes the file: nothing to hear."""

    async def aclose(self) -> None:
        pass

    def _temp_prefix(self) -> str:
        return f".{self.path.name}."

    def load(self) -> Entries:
        """The saved entries by server name. Temp files left by an interrupted write (they may hold
        env values) are removed first."""
        for leftover in self.path.parent.glob(f"{self._temp_prefix()}*.tmp"):
            leftover.unlink(missing_ok=True)
        if not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            servers = raw.get("servers") if isinstance(raw, dict) else None
            if not isinstance(servers, dict) or not all(isinstance(e, dict) for e in servers.values()):
                raise ValueError("'servers' is not an object of server entries")
        except (OSError, ValueError, RecursionError) as exc:
            self._set_aside(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return {}
        if raw.get("version", 1) == 1:  # version 1 held server definitions only
            return {name: {"server": entry} for name, entry in servers.items()}
        self._loaded = {key: value for key, value in raw.items() if key not in ("version", "servers")}
        return servers

    def _set_aside(self, reason: str) -> None:
        backup = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            self.path.rename(backup)
            self.problem = (f"state file {self.path} could not be read ({reason}); it was kept as "
                            f"{backup} and runtime registrations start empty")
        except OSError as move_error:
            self.problem = (f"state file {self.path} could not be read ({reason}) nor moved aside "
                            f"({move_error}); it will not be overwritten")
            self.path = backup  # write elsewhere rather than over the unreadable file
        logger.error("%s", self.problem)

    async def save(self) -> None:
        """Writes every section, read under the lock so that the last write always holds the latest
        state. Raises OSError when the file cannot be written."""
        async with self._lock:
            data = {"version": 2, **self._loaded, **{name: current() for name, current in self._sections.items()}}
            data["servers"] = dict(sorted((data.get("servers") or {}).items()))
            await anyio.to_thread.run_sync(self._write, json.dumps(data, indent=2))

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=self._temp_prefix(), suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)  # replaces a link at the path itself, never its target
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
