"""Telling connected clients that the tool list changed when no request of theirs caused it.

Only handshake-era (legacy) connections have a standing channel for that; a 2026-07-28 client
learns of changes on its next tools/list.
"""

from __future__ import annotations

import logging
from typing import Any

from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway import _compat

logger = logging.getLogger("gateway.notify")


class LegacySessions(Middleware):
    def __init__(self) -> None:
        self.connections: set[Any] = set()

    async def on_request(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]) -> Any:
        ctx = context.fastmcp_context
        request = ctx.request_context if ctx is not None else None
        if request is not None and request.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            connection = _compat.connection_of(request.session)
            if connection not in self.connections:
                self.connections.add(connection)
                connection.exit_stack.push_async_callback(self._drop, connection)
        return await call_next(context)

    async def _drop(self, connection: Any) -> None:
        self.connections.discard(connection)

    async def tools_changed(self) -> None:
        for connection in list(self.connections):
            try:
                await connection.send_tool_list_changed()
            except Exception as exc:  # a closing connection must not stop the others
                logger.debug("could not notify a client: %s", exc)
