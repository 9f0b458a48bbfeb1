"""Backend requests answered at the MCP runner, before FastMCP's component pipeline.

A relayed request needs none of what FastMCP does per call (provider and transform lookup, FastMCP
middleware, argument models, the ToolResult round trip), and that pipeline was most of the
gateway's cost per call. This server middleware sits first in mcp's chain and answers, from the
pool, `tools/call` for re-exported backend tools and for `call_backend`, `resources/read` for
namespaced resource URIs and `prompts/get` for re-exported prompts. The backend's result dict is
relayed after one validation against the caller's protocol version.

Anything it does not recognise, including arguments of the wrong shape, goes on to FastMCP, which
owns those errors.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, get_args

import mcp_types
from fastmcp.exceptions import ToolError
from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types.methods import serialize_server_result
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field, ValidationError

from gateway.backends.errors import BackendError, BackendRejected
from gateway.backends.pool import BackendPool
from gateway.control import parse_object
from gateway.names import split_uri


class CallBackendArgs(BaseModel):
    """`call_backend`'s arguments; the FastMCP tool in `gateway.control` declares the same."""

    server: str
    tool: str
    params: dict[str, Any] | str | None = None
    timeout: Annotated[float | None, Field(gt=0, le=3600)] = None


@dataclass(frozen=True)
class Relay:
    server: str
    method: str
    params: dict[str, Any]
    what: str  # names the request in errors
    tool_params: dict[str, Any] | str | None = None  # tools/call: arguments, maybe still JSON text
    timeout: float | None = None


SEVERITY = {level: rank for rank, level in enumerate(get_args(mcp_types.LoggingLevel))}


def error_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


class FastRelay:
    """An mcp `ServerMiddleware`: relays backend requests, passes everything else on."""

    def __init__(self, pool: BackendPool, redact: Callable[[str], str], server: Server[Any], *,
                 exported: bool, log_floor: Callable[[ServerSession], str | None]) -> None:
        self._pool = pool
        self._redact = redact
        self._server = server
        self._exported = exported
        self._log_floor = log_floor  # the lowest log level the caller asked for (logging/setLevel)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.request_id is not None and isinstance(ctx.params, Mapping) and _initialized(ctx):
            relay = self._resolve(ctx.method, ctx.params)
            if relay is not None:
                return self._wire(ctx, relay, await self._relay(ctx, relay))
        return await call_next(ctx)

    def _resolve(self, method: str, params: Mapping[str, Any]) -> Relay | None:
        if method == "tools/call":
            return self._resolve_call(params)
        if not self._exported:
            return None
        if method == "resources/read" and isinstance(uri := params.get("uri"), str):
            target = split_uri(uri)
            if target is not None and target[0] in self._pool:
                return Relay(target[0], method, {"uri": target[1]}, f"reading '{target[1]}'")
        if method == "prompts/get" and isinstance(name := params.get("name"), str):
            arguments = params.get("arguments")
            if (target := self._pool.prompt_index.get(name)) is not None and isinstance(arguments, dict | None):
                return Relay(target[0], method, {"name": target[1], "arguments": arguments or {}},
                             f"the prompt '{target[1]}'")
        return None

    def _resolve_call(self, params: Mapping[str, Any]) -> Relay | None:
        name, arguments = params.get("name"), params.get("arguments")
        arguments = {} if arguments is None else arguments
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return None
        if self._exported and (target := self._pool.tool_index.get(name)) is not None:
            return Relay(target[0], "tools/call", {"name": target[1]}, f"the call to '{target[1]}'", arguments)
        if name == "call_backend":
            try:
                args = CallBackendArgs.model_validate(arguments)
            except ValidationError:
                return None
            return Relay(args.server, "tools/call", {"name": args.tool}, f"the call to '{args.tool}'", args.params,
                         args.timeout)
        return None

    async def _relay(self, ctx: ServerRequestContext[Any, Any], relay: Relay) -> dict[str, Any]:
        session, request_id = ctx.session, ctx.request_id
        meta = (ctx.params or {}).get("_meta")
        progress = session.report_progress if isinstance(meta, Mapping) and meta.get("progressToken") is not None \
            else None

        async def log(message: Any) -> None:
            floor = self._log_floor(session)
            if SEVERITY.get(message.level, len(SEVERITY)) < SEVERITY.get(floor or "", 0):
                return
            with warnings.catch_warnings():  # the only way to send a backend's log entry as it came
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                sending = session.send_log_message(message.level, message.data, message.logger or relay.server,
                                                   related_request_id=request_id)
            await sending

        if relay.method != "tools/call":
            try:
                return await self._pool.get(relay.server).request(relay.method, relay.params, what=relay.what,
                                                                   progress=progress, log=log)
            except BackendError as exc:
                code = exc.code if isinstance(exc, BackendRejected) else mcp_types.INTERNAL_ERROR
                raise MCPError(code=code, message=self._redact(str(exc))) from None
        try:
            args = parse_object(relay.tool_params, "params")
            return await self._pool.call_raw(relay.server, relay.params["name"], args, timeout=relay.timeout,
                                             progress=progress, log=log)
        except (BackendError, ToolError) as exc:  # a tool's failure is its result, as FastMCP reports it
            return error_result(self._redact(str(exc)))

    def _wire(self, ctx: ServerRequestContext[Any, Any], relay: Relay, result: dict[str, Any]) -> dict[str, Any]:
        """The result in the caller's protocol version, carrying the gateway's identity, not the backend's."""
        version = ctx.protocol_version
        modern = version in MODERN_PROTOCOL_VERSIONS
        if modern:  # required on this era's wire; a handshake-era backend's results lack it
            result.setdefault("resultType", "complete")
        try:
            wire = serialize_server_result(relay.method, version, result)
        except ValidationError:
            message = f"server '{relay.server}' returned a malformed result for {relay.what}"
            if relay.method != "tools/call":
                raise MCPError(code=mcp_types.INTERNAL_ERROR, message=message) from None
            wire = serialize_server_result(relay.method, version,
                                           {**error_result(message), **({"resultType": "complete"} if modern else {})})
        meta = wire.get("_meta")
        if isinstance(meta, dict):
            meta.pop(mcp_types.SERVER_INFO_META_KEY, None)
        if modern:
            wire["_meta"] = {**(meta or {}), mcp_types.SERVER_INFO_META_KEY: self._server.server_info_stamp}
        elif meta == {}:
            del wire["_meta"]
        return wire


def _initialized(ctx: ServerRequestContext[Any, Any]) -> bool:
    # Before a handshake-era initialize, mcp answers every request with an error; leave that to it.
    connection = getattr(ctx.session, "_connection", None)
    return bool(getattr(connection, "initialize_accepted", True))
