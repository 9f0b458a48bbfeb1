"""Backend requests answered at the MCP runner, before FastMCP's component pipeline.

A relayed request needs none of what FastMCP does per call (provider and transform lookup, FastMCP
middleware, argument models, the ToolResult round trip), and that pipeline was most of the
gateway's cost per call. This server middleware sits first in mcp's chain and turns `tools/call`
for re-exported backend tools and for `call_backend`, `resources/read` for namespaced resource URIs
and `prompts/get` for re-exported prompts, `completion/complete` for their arguments and
`resources/subscribe`/`unsubscribe` into an `Invocation` for the pool's one entry. The backend's
result dict is relayed after one validation against the caller's protocol version. A request's
own `_meta` (all but the protocol's reserved keys) goes on to the backend, and a 2026-07-28 client's
retry with answers (`inputResponses`, `requestState`) reaches the backend request that asked, or,
for a handshake-era backend, its waiting exchange (gateway/exchanges.py).

Anything it does not recognise, including arguments of the wrong shape, goes on to FastMCP, which
owns those errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import mcp_types
from fastmcp.exceptions import ToolError
from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp_types.methods import serialize_server_result
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from gateway import _compat
from gateway.backends.errors import BackendError, BackendRejected
from gateway.backends.invocation import Invocation, Road
from gateway.backends.pool import BackendPool
from gateway.client_sinks import LogFloor, check_can_answer, sinks_for
from gateway.control import CallBackendArgs, parse_object
from gateway.exchanges import Exchange, Exchanges
from gateway.names import namespace_uri, split_uri
from gateway.subscriptions import Subscriptions

# Requests a backend may answer by asking the client for input (2026-07-28 `input_required`).
_INTERACTIVE = frozenset({"tools/call", "resources/read", "prompts/get"})
_ANSWERS = ("inputResponses", "requestState")
_RESERVED_META = "io.modelcontextprotocol/"  # the protocol's own keys: the gateway stamps its own


def error_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


class FastRelay:
    """An mcp `ServerMiddleware`: relays backend requests, passes everything else on."""

    def __init__(self, pool: BackendPool, server: Server[Any], *, exported: bool, log_floor: LogFloor,
                 subscriptions: Subscriptions) -> None:
        self._pool = pool
        self._server_info = server.server_info_stamp  # the gateway's identity on modern results; fixed
        self._exported = exported
        self._log_floor = log_floor
        self._subscriptions = subscriptions
        self._exchanges = Exchanges(pool.start_task)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.request_id is not None and isinstance(ctx.params, Mapping) and _compat.initialized(ctx.session):
            invocation = self._resolve(ctx.method, ctx.params)
            if invocation is None and await self._waited_for_exporter(ctx.method, ctx.params):
                invocation = self._resolve(ctx.method, ctx.params)
            if invocation is not None:
                _carry_over(ctx.params, invocation)
                if invocation.road is Road.subscription:  # handshake-era vocabulary (2026-07-28 listens)
                    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
                        return await call_next(ctx)
                    return await self._subscription(ctx, invocation)
                return self._wire(ctx, invocation, await self._relay(ctx, invocation))
        return await call_next(ctx)

    async def _waited_for_exporter(self, method: str, params: Mapping[str, Any]) -> bool:
        """A `<server>__<tool>` (or prompt) called while its server is still starting: the gateway
        serves before its backends are ready, so the call waits for that server, as `call_backend`
        does, rather than finding the name unknown."""
        name = params.get("name")
        return (self._exported and method in ("tools/call", "prompts/get") and isinstance(name, str)
                and await self._pool.wait_for_exporter(name))

    def _resolve(self, method: str, params: Mapping[str, Any]) -> Invocation | None:
        if method == "tools/call":
            return self._resolve_call(params)
        if not self._exported:
            return None
        if method == "resources/read" and isinstance(uri := params.get("uri"), str):
            target = split_uri(uri)
            if target is not None and target[0] in self._pool:
                return Invocation(Road.resource, target[0], method, {"uri": target[1]})
        if method == "prompts/get" and isinstance(name := params.get("name"), str):
            arguments = params.get("arguments")
            if (target := self._pool.prompt_index.get(name)) is not None and isinstance(arguments, dict | None):
                return Invocation(Road.prompt, target[0], method, {"name": target[1], "arguments": arguments or {}})
        if method in ("resources/subscribe", "resources/unsubscribe") and isinstance(uri := params.get("uri"), str):
            target = split_uri(uri)
            if target is not None and target[0] in self._pool:
                return Invocation(Road.subscription, target[0], method, {"uri": target[1]})
        if method == "completion/complete":
            return self._resolve_completion(params)
        return None

    def _resolve_completion(self, params: Mapping[str, Any]) -> Invocation | None:
        ref = params.get("ref")
        if not isinstance(ref, Mapping):
            return None
        target: tuple[str, str] | None = None
        if ref.get("type") == "ref/prompt" and isinstance(name := ref.get("name"), str):
            target = self._pool.prompt_index.get(name)
            backend_ref = {"type": "ref/prompt", "name": target[1]} if target else None
        elif ref.get("type") == "ref/resource" and isinstance(uri := ref.get("uri"), str):
            target = split_uri(uri)
            backend_ref = {"type": "ref/resource", "uri": target[1]} if target else None
        if target is None or target[0] not in self._pool:
            return None
        forwarded = {key: params[key] for key in ("argument", "context") if key in params}
        return Invocation(Road.completion, target[0], "completion/complete", {"ref": backend_ref, **forwarded})

    def _resolve_call(self, params: Mapping[str, Any]) -> Invocation | None:
        name, arguments = params.get("name"), params.get("arguments")
        arguments = {} if arguments is None else arguments
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return None
        if self._exported and (target := self._pool.tool_index.get(name)) is not None:
            return Invocation(Road.tool, target[0], "tools/call", {"name": target[1], "arguments": arguments})
        if name == "call_backend":
            try:
                args = CallBackendArgs.model_validate(arguments)
            except ValidationError:
                return None
            # params may still be JSON text: parsed in _relay, where a parse error becomes the result
            return Invocation(Road.call_backend, args.server, "tools/call",
                              {"name": args.tool, "arguments": args.params}, timeout=args.timeout)
        return None

    async def _relay(self, ctx: ServerRequestContext[Any, Any], invocation: Invocation) -> dict[str, Any]:
        sinks_for(ctx.session, ctx.request_id, ctx.params.get("_meta"), self._log_floor, ctx.request).attach(invocation)
        invocation.takes_input_required = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        if invocation.method != "tools/call":
            try:
                return await self._answer(ctx, invocation)
            except BackendError as exc:
                code = exc.code if isinstance(exc, BackendRejected) else mcp_types.INTERNAL_ERROR
                raise MCPError(code=code, message=str(exc)) from None
        try:
            params = invocation.params
            params["arguments"] = parse_object(params["arguments"], "params")
            return await self._answer(ctx, invocation)
        except (BackendError, ToolError) as exc:  # a tool's failure is its result, as FastMCP reports it
            return error_result(str(exc))

    async def _answer(self, ctx: ServerRequestContext[Any, Any], invocation: Invocation) -> dict[str, Any]:
        """The backend's answer; for a 2026-07-28 client of a handshake-era backend, by way of an exchange."""
        if not (invocation.takes_input_required and invocation.method in _INTERACTIVE):
            return await self._pool.invoke(invocation)
        params = invocation.params
        target = (invocation.method, invocation.server, str(params.get("name") or params.get("uri")))
        if self._exchanges.is_ours(params.get("requestState")):
            return await _next_step(self._exchanges.resume(params["requestState"], target,
                                                           params.get("inputResponses")))
        if invocation.server not in self._pool or self._pool.get(invocation.server).protocol_version \
                in MODERN_PROTOCOL_VERSIONS:
            return await self._pool.invoke(invocation)  # a 2026-07-28 backend asks by its result, relayed as is
        timeout = invocation.timeout or self._pool.get(invocation.server).call_timeout

        async def run(exchange: Exchange) -> dict[str, Any]:
            async def ask(method: str, params: dict[str, Any]) -> dict[str, Any]:
                check_can_answer(ctx.session, method)  # refused at once, not after a round trip
                return await exchange.ask(method, params)

            invocation.ask = ask
            return await self._pool.invoke(invocation)

        return await _next_step(self._exchanges.begin(target, timeout, run))

    async def _subscription(self, ctx: ServerRequestContext[Any, Any], invocation: Invocation) -> dict[str, Any]:
        connection = _compat.connection_of(ctx.session)
        uri = str(ctx.params["uri"])
        try:
            if invocation.method == "resources/subscribe":
                await self._subscriptions.subscribe(connection, uri, invocation)
            else:
                await self._subscriptions.unsubscribe(connection, invocation)
        except BackendError as exc:
            code = exc.code if isinstance(exc, BackendRejected) else mcp_types.INTERNAL_ERROR
            raise MCPError(code=code, message=str(exc)) from None
        return {}

    def _wire(self, ctx: ServerRequestContext[Any, Any], invocation: Invocation, result: dict[str, Any]
              ) -> dict[str, Any]:
        """The result in the caller's protocol version, carrying the gateway's identity, not the backend's."""
        version = ctx.protocol_version
        modern = version in MODERN_PROTOCOL_VERSIONS
        method = invocation.method
        if method == "resources/read":
            _namespace_contents(invocation.server, result)
        if modern:  # required on this era's wire; a handshake-era backend's results lack them
            if result.setdefault("resultType", "complete") == "complete" and method == "resources/read":
                # Nothing says whether a handshake-era backend's resource may be cached, or shared
                # between users: a gateway keeps it private and uncached.
                result.setdefault("cacheScope", "private")
                result.setdefault("ttlMs", 0)
        try:
            wire = serialize_server_result(method, version, result)
        except ValidationError:
            message = f"server '{invocation.server}' returned a malformed result for {invocation.what}"
            if method != "tools/call":
                raise MCPError(code=mcp_types.INTERNAL_ERROR, message=message) from None
            wire = serialize_server_result(method, version,
                                           {**error_result(message), **({"resultType": "complete"} if modern else {})})
        meta = wire.get("_meta")
        if isinstance(meta, dict):
            meta.pop(mcp_types.SERVER_INFO_META_KEY, None)
        if modern:
            wire["_meta"] = {**(meta or {}), mcp_types.SERVER_INFO_META_KEY: self._server_info}
        elif meta == {}:
            del wire["_meta"]
        return wire


async def _next_step(exchange: Exchange) -> dict[str, Any]:
    """The exchange's next answer for the client; a client that cancels its request (or closes
    its stream) gives the exchange up, and the backend request is cancelled with it."""
    try:
        return await exchange.next_step()
    except anyio.get_cancelled_exc_class():
        exchange.scope.cancel()
        raise


def _carry_over(params: Mapping[str, Any], invocation: Invocation) -> None:
    """What of the client's request goes to the backend beyond its target: the client's `_meta`
    (not the protocol's reserved keys, nor the progress token: the gateway relays progress under
    its own) and a 2026-07-28 retry's answers."""
    sent = invocation.params
    for key in _ANSWERS:
        if key in params:
            sent[key] = params[key]
    meta = params.get("_meta")
    if isinstance(meta, Mapping):
        kept = {key: value for key, value in meta.items()
                if key != "progressToken" and not str(key).startswith(_RESERVED_META)}
        if kept:
            sent["_meta"] = kept


def _namespace_contents(server: str, result: dict[str, Any]) -> None:
    """A resource's contents carry the URI the client knows it by."""
    contents = result.get("contents")
    if isinstance(contents, list):
        for item in contents:
            if isinstance(item, dict) and isinstance(uri := item.get("uri"), str):
                item["uri"] = namespace_uri(server, uri)
