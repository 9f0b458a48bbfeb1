"""Backend tool calls answered at the MCP runner, before FastMCP's component pipeline.

A relayed call needs none of what FastMCP does per tool call (provider and transform lookup,
FastMCP middleware, argument models, the ToolResult round trip), and that pipeline was most of
the gateway's cost per call. This server middleware sits first in mcp's chain and answers
`tools/call` for re-exported backend tools and for `call_backend` from the pool, relaying the
backend's result dict after one validation against the caller's protocol version.

Anything it does not recognise, including arguments of the wrong shape, goes on to FastMCP, which
owns those errors. Results match the FastMCP path: the same error texts, progress and logs reach
the caller the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastmcp.exceptions import ToolError
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import SERVER_INFO_META_KEY
from mcp_types.methods import serialize_server_result
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field, ValidationError

from gateway.backends.errors import BackendError
from gateway.backends.pool import BackendPool
from gateway.control import parse_object


class CallBackendArgs(BaseModel):
    """`call_backend`'s arguments; the FastMCP tool in `gateway.control` declares the same."""

    server: str
    tool: str
    params: dict[str, Any] | str | None = None
    timeout: Annotated[float | None, Field(gt=0, le=3600)] = None


@dataclass(frozen=True)
class Relay:
    server: str
    tool: str
    params: dict[str, Any] | str | None
    timeout: float | None = None


def error_result(text: str, *, modern: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
    return {**result, "resultType": "complete"} if modern else result


class FastRelay:
    """An mcp `ServerMiddleware`: relays backend tool calls, passes everything else on."""

    def __init__(self, pool: BackendPool, redact: Callable[[str], str], server: Server[Any], *,
                 exported: bool) -> None:
        self._pool = pool
        self._redact = redact
        self._server = server
        self._exported = exported

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call" and ctx.request_id is not None and _initialized(ctx):
            relay = self._resolve(ctx.params)
            if relay is not None:
                return self._wire(ctx, relay, await self._call(ctx, relay))
        return await call_next(ctx)

    def _resolve(self, params: Mapping[str, Any] | None) -> Relay | None:
        if not isinstance(params, Mapping):
            return None
        name, arguments = params.get("name"), params.get("arguments")
        arguments = {} if arguments is None else arguments
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return None
        if self._exported and (target := self._pool.tool_index.get(name)) is not None:
            return Relay(target[0], target[1], arguments)
        if name == "call_backend":
            try:
                args = CallBackendArgs.model_validate(arguments)
            except ValidationError:
                return None
            return Relay(args.server, args.tool, args.params, args.timeout)
        return None

    async def _call(self, ctx: ServerRequestContext[Any, Any], relay: Relay) -> dict[str, Any]:
        session, request_id = ctx.session, ctx.request_id
        meta = (ctx.params or {}).get("_meta")
        wants_progress = isinstance(meta, Mapping) and meta.get("progressToken") is not None

        async def log(message: Any) -> None:
            with warnings.catch_warnings():  # the only way to send a backend's log entry as it came
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                sending = session.send_log_message(message.level, message.data, message.logger or relay.server,
                                                   related_request_id=request_id)
            await sending

        try:
            args = relay.params if isinstance(relay.params, dict) else parse_object(relay.params, "params")
            return await self._pool.call_raw(relay.server, relay.tool, args, timeout=relay.timeout,
                                             progress=session.report_progress if wants_progress else None,
                                             log=log)
        except (BackendError, ToolError) as exc:
            return error_result(self._redact(str(exc)))

    def _wire(self, ctx: ServerRequestContext[Any, Any], relay: Relay, result: dict[str, Any]) -> dict[str, Any]:
        """The result in the caller's protocol version, carrying the gateway's identity, not the backend's."""
        version = ctx.protocol_version
        modern = version in MODERN_PROTOCOL_VERSIONS
        if modern:  # required on this era's wire; a handshake-era backend's results lack it
            result.setdefault("resultType", "complete")
        try:
            wire = serialize_server_result("tools/call", version, result)
        except ValidationError:
            wire = serialize_server_result("tools/call", version, error_result(
                f"server '{relay.server}' returned a malformed result for '{relay.tool}'",
                modern=modern))
        meta = wire.get("_meta")
        if isinstance(meta, dict):
            meta.pop(SERVER_INFO_META_KEY, None)
        if modern:
            wire["_meta"] = {**(meta or {}), SERVER_INFO_META_KEY: self._server.server_info_stamp}
        elif meta == {}:
            del wire["_meta"]
        return wire


def _initialized(ctx: ServerRequestContext[Any, Any]) -> bool:
    # Before a handshake-era initialize, mcp answers every request with an error; leave that to it.
    connection = getattr(ctx.session, "_connection", None)
    return bool(getattr(connection, "initialize_accepted", True))
