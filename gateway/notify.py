"""The handshake-era clients connected now, and telling them of changes no request of theirs caused.

Only handshake-era (legacy) connections have a standing channel for that; a 2026-07-28 client
hears of changes on its `subscriptions/listen` stream (gateway/listen.py)."""

from __future__ import annotations

import logging
from typing import Any

from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway import _compat
from gateway.backends.invocation import Ask
from gateway.client_sinks import asks_client

logger = logging.getLogger("gateway.notify")

_SENDERS = {"tools": "send_tool_list_changed", "resources": "send_resource_list_changed",
            "prompts": "send_prompt_list_changed"}


class LegacySessions(Middleware):
    def __init__(self) -> None:
        self.connections: dict[Any, Ask | None] = {}  # each client's connection, and how to ask it

    async def on_request(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]) -> Any:
        ctx = context.fastmcp_context
        request = ctx.request_context if ctx is not None else None
        if request is not None and request.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            connection = _compat.connection_of(request.session)
            if connection not in self.connections:
                self.connections[connection] = asks_client(request.session, None)
                connection.exit_stack.push_async_callback(self._drop, connection)
        return await call_next(context)

    async def _drop(self, connection: Any) -> None:
        self.connections.pop(connection, None)

    def lone_client(self) -> Ask | None:
        """How to ask the one handshake-era client connected, when there is exactly one."""
        return next(iter(self.connections.values())) if len(self.connections) == 1 else None

    async def changed(self, kinds: frozenset[str]) -> None:
        """Tells every client that the lists of these kinds ('tools', 'resources', 'prompts') changed."""
        for connection in list(self.connections):
            for kind in sorted(kinds):
                try:
                    await getattr(connection, _SENDERS[kind])()
                except Exception as exc:  # a closing connection must not stop the others
                    logger.debug("could not notify a client: %s", exc)
                    break
