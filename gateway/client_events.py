"""What a client tells the gateway that its backends must hear, and what the gateway tells a client
about its backends when it connects.

- `logging/setLevel`: each client's level is kept per connection (FastMCP filters what it is sent);
  handshake-era backends are set to the lowest level any connected client asked for, so that no
  client misses what it asked for and none is flooded below it.
- `notifications/roots/list_changed` from a client goes on to each backend that asked for roots.
- The capabilities in `initialize` (and `server/discover`) say only what the backends offer: `resources.subscribe` when
  one of them supports subscriptions, `completions` when one of them completes arguments. A
  backend still starting is not waited for (the gateway serves at once, whatever its backends do):
  until it is ready, what it will offer is unknown, and both are offered; a request a backend then
  turns out not to support gets a clear error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from pydantic import BaseModel

from gateway import _compat
from gateway.backends.backend import Backend, State
from gateway.backends.pool import BackendPool
from gateway.client_sinks import SEVERITY

logger = logging.getLogger("gateway.client_events")


class ClientEvents:
    """An mcp `ServerMiddleware`."""

    def __init__(self, pool: BackendPool) -> None:
        self._pool = pool
        self._levels: dict[Any, str] = {}  # connection -> the level its client asked for
        self._level_set: dict[str, tuple[int, str | None]] = {}  # server -> (its session, the level it was given)
        pool.subscribe(self._backends_changed)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method in ("initialize", "server/discover") and isinstance(result, dict | BaseModel):
            if isinstance(result, BaseModel):
                result = result.model_dump(by_alias=True, mode="json", exclude_none=True)
            _offer_what_backends_offer(result, self._pool.backends())
        elif ctx.method == "logging/setLevel" and isinstance(ctx.params, Mapping):
            level = ctx.params.get("level")
            if level in SEVERITY:
                connection = _compat.connection_of(ctx.session)
                if connection not in self._levels:
                    connection.exit_stack.push_async_callback(self._left, connection)
                self._levels[connection] = level
                self._backends_changed()
        elif ctx.method == "notifications/roots/list_changed":
            for backend in self._pool.backends():
                if backend.asked_for_roots:
                    self._pool.start_task(backend.roots_changed)
        return result

    async def _left(self, connection: Any) -> None:
        self._levels.pop(connection, None)
        self._backends_changed()

    def lowest_level(self) -> str | None:
        return min(self._levels.values(), key=SEVERITY.__getitem__, default=None)

    def _backends_changed(self) -> None:
        """Gives every ready backend that takes a level the lowest one asked for, once per session."""
        level = self.lowest_level()
        for backend in self._pool.backends():
            if backend.state is not State.ready or not backend.takes_log_level:
                continue
            given = self._level_set.get(backend.name)
            if given == (backend.sessions, level) or (given is None and level is None):
                continue
            self._level_set[backend.name] = (backend.sessions, level)
            self._pool.start_task(lambda backend=backend, level=level: backend.set_log_level(level or "debug"))


def _offer_what_backends_offer(result: dict[str, Any], backends: list[Backend]) -> None:
    offered = [b.capabilities for b in backends if b.capabilities is not None]
    unknown = any(b.state is State.connecting and not b.ever_ready for b in backends)
    capabilities = result.setdefault("capabilities", {})
    if unknown or any(c.completions is not None for c in offered):
        capabilities["completions"] = {}
    resources = capabilities.get("resources")
    if isinstance(resources, dict):  # subscribed to by resources/subscribe, or on a listen stream
        resources["subscribe"] = unknown or any(c.resources is not None and bool(c.resources.subscribe)
                                                for c in offered)
