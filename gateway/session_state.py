"""Where FastMCP keeps per-session state, without the storage library it would load for it.

FastMCP looks up session visibility rules on every tools, resources and prompts request, so the
first of them builds its state store: py-key-value with beartype, about 0.12 s of CPU on the
first request a client makes and about 6 MB of memory. The gateway keeps no session state of
its own; this dict-backed store has the subset of the adapter's interface FastMCP calls
(`get`, `put` with a TTL, `delete`), and keeps values as JSON, as the adapter does: what cannot
be serialized is refused on `put`, and callers never share an object.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import SupportsFloat

from fastmcp.server.server import StateValue


@dataclass
class SessionState:
    _entries: dict[tuple[str | None, str], tuple[str, float | None]] = field(default_factory=dict)

    async def get(self, key: str, *, collection: str | None = None,
                  default: StateValue | None = None) -> StateValue | None:
        entry = self._entries.get((collection, key))
        if entry is None:
            return default
        text, expires = entry
        if expires is not None and time.monotonic() >= expires:
            del self._entries[(collection, key)]
            return default
        return StateValue.model_validate_json(text)

    async def put(self, key: str, value: StateValue, *, collection: str | None = None,
                  ttl: SupportsFloat | None = None) -> None:
        expires = None if ttl is None else time.monotonic() + float(ttl)
        self._entries[(collection, key)] = (value.model_dump_json(), expires)

    async def delete(self, key: str, *, collection: str | None = None) -> bool:
        return self._entries.pop((collection, key), None) is not None
