"""Where the gateway's runtime state lives: runtime registrations, the operator's tool settings and
the servers profiles' clients registered. A file by default (one gateway); Redis when replicas share
it (gateway.store = "redis://..."). Both offer the same few calls; only Redis can be degraded
(unreachable), and only Redis brings other replicas' changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from gateway.store.file import Entries, StateFile

__all__ = ["Entries", "StateFile", "Store", "StoreUnavailable", "open_store"]

Sections = dict[str, Any]  # section name -> its content, as the owners' `current()` give them


class StoreUnavailable(OSError):
    """The store cannot take a change now; its text says why and what happens meanwhile."""


class Store(Protocol):
    path: Path  # the state file's path; runtime servers' work directories live beside it
    problem: str | None  # what could not be read back at start, for list_servers
    # Another replica's change: the store's sections as they are now, for the gateway to apply.
    on_remote_change: Callable[[Sections], Awaitable[None]] | None

    @property
    def where(self) -> str: ...

    @property
    def degraded(self) -> str | None: ...

    @property
    def work_root(self) -> Path: ...

    def keep(self, section: str, current: Callable[[], Any]) -> Any: ...

    def load(self) -> Entries: ...

    async def save(self) -> None: ...

    async def start(self) -> None: ...

    async def watch(self) -> None: ...

    async def aclose(self) -> None: ...


def open_store(kind: str, path: Path, prefix: str) -> Store:
    """The store a config names: "file" (at `path`) or a Redis URL (keys under `prefix`)."""
    if kind == "file":
        return StateFile(path)
    from gateway.store.redis import RedisStore

    return RedisStore(kind, prefix, path)
