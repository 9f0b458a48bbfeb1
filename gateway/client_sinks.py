"""Where a backend's progress and log messages for a request go: to the client that made it, on
that request's own channel, at no lower a level than the client asked for with logging/setLevel."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_args

import mcp_types
from fastmcp.server.dependencies import get_context
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPDeprecationWarning

from gateway import _compat
from gateway.backends.invocation import Invocation, LogMessage, LogSink, ProgressSink

SEVERITY = {level: rank for rank, level in enumerate(get_args(mcp_types.LoggingLevel))}

LogFloor = Callable[[ServerSession], str | None]  # the lowest level a client asked for


@dataclass(frozen=True, slots=True)
class ClientSinks:
    progress: ProgressSink | None  # None when the request asked for no progress
    log: LogSink
    caller: str | None  # the client's session id, where its transport has one

    def attach(self, invocation: Invocation) -> Invocation:
        invocation.progress, invocation.log, invocation.caller = self.progress, self.log, self.caller
        return invocation


def sinks_for(session: ServerSession, request_id: mcp_types.RequestId | None, meta: Any, floor: LogFloor) -> ClientSinks:
    """The sinks of one request, given its session, id and `_meta`."""
    wants_progress = isinstance(meta, Mapping) and meta.get("progressToken") is not None

    async def log(message: LogMessage) -> None:
        if SEVERITY.get(message.level, len(SEVERITY)) < SEVERITY.get(floor(session) or "", 0):
            return
        with warnings.catch_warnings():  # the only way to send a backend's log entry as it came
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            sending = session.send_log_message(message.level, message.data, message.logger,
                                               related_request_id=request_id)
        await sending

    return ClientSinks(session.report_progress if wants_progress else None, log,
                       _compat.connection_of(session).session_id)


def current_sinks() -> ClientSinks | None:
    """The sinks of the request FastMCP is running a tool for, if any (tools FastMCP runs itself:
    pipelines, and backend tools reached through a FastMCP transform)."""
    try:
        ctx = get_context()
    except RuntimeError:  # run outside a request
        return None
    request = ctx.request_context
    if request is None:
        return None
    return sinks_for(request.session, request.request_id, request.meta,
                     lambda session: _compat.client_log_level(ctx.fastmcp, session))
