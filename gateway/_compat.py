"""Every private name of FastMCP and mcp the gateway touches, and the check that they are there.

FastMCP 4 and mcp 2 offer no public hook for what the gateway needs: the stdio server's streams,
the lowlevel server (its middleware chain and its tool-schema hook), a session's connection (its
handshake state, its id, the log level its client asked for), FastMCP's session-state store, and
a client session's raw request path. Nothing else in the gateway uses a private name; `problems()`
runs when the gateway starts and names what is missing, so a version that lacks one stops the
gateway at once instead of failing open later. Moving the pins in pyproject.toml is a deliberate
step taken together with this module and its test (tests/test_compat.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
import inspect
from functools import cached_property
from importlib import metadata
from typing import Any

import fastmcp.server.context as fastmcp_context
from fastmcp import FastMCP
from mcp import ClientSession
from mcp.server.connection import Connection
from mcp.server.lowlevel import Server
from mcp.server.session import ServerSession
from mcp.shared.inbound import MCP_NAME_HEADER, NAME_BEARING_METHODS, encode_header_value
import anyio
import pydantic_core
from http import HTTPStatus
from mcp.server import streamable_http, streamable_http_manager
from mcp_types import (CLIENT_CAPABILITIES_META_KEY, DEFAULT_NEGOTIATED_VERSION, INTERNAL_ERROR, JSONRPCError,
                       JSONRPCRequest, JSONRPCResponse, jsonrpc_message_adapter)
from pydantic import ValidationError
from sse_starlette import EventSourceResponse

from gateway.session_state import SessionState

FASTMCP_VERSION = "4.2.3"
MCP_VERSION = "2.3.0"

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]


def _assigned_in_init(cls: type, name: str) -> bool:
    """Whether `cls.__init__` assigns `self.<name>`; instance attributes have no class-level trace."""
    return name in cls.__init__.__code__.co_names


_REQUIRED: tuple[tuple[str, Callable[[], bool]], ...] = (
    ("FastMCP._mcp_server", lambda: _assigned_in_init(FastMCP, "_mcp_server")),
    ("FastMCP._lifespan_manager", lambda: callable(getattr(FastMCP, "_lifespan_manager", None))),
    ("FastMCP._state_store", lambda: hasattr(FastMCP, "_state_store")),
    ("fastmcp.server.context._get_client_log_level", lambda: callable(
        getattr(fastmcp_context, "_get_client_log_level", None))),
    ("fastmcp.server.context.set_transport", lambda: callable(getattr(fastmcp_context, "set_transport", None))),
    ("fastmcp.server.context.reset_transport", lambda: callable(getattr(fastmcp_context, "reset_transport", None))),
    ("mcp Server.middleware", lambda: _assigned_in_init(Server, "middleware")),
    ("mcp Server.get_tool_input_schema", lambda: _assigned_in_init(Server, "get_tool_input_schema")),
    ("mcp Server.server_info_stamp", lambda: hasattr(Server, "server_info_stamp")),
    ("mcp ServerSession._connection", lambda: _assigned_in_init(ServerSession, "_connection")),
    ("mcp Connection.initialize_accepted", lambda: hasattr(Connection, "initialize_accepted")),
    ("mcp Connection.exit_stack", lambda: _assigned_in_init(Connection, "exit_stack")),
    ("mcp ClientSession._stamp", lambda: _assigned_in_init(ClientSession, "_stamp")),
    ("mcp ClientSession._dispatcher", lambda: _assigned_in_init(ClientSession, "_dispatcher")),
    ("mcp StreamableHTTPServerTransport's request handling", lambda: all(
        callable(getattr(streamable_http.StreamableHTTPServerTransport, name, None)) for name in (
            "_handle_post_request", "_check_content_type", "_validate_request_headers", "_create_session_message",
            "_create_event_data", "_run_sse_writer", "_clean_up_memory_streams", "_create_json_response",
            "_create_error_response"))
        and all(_assigned_in_init(streamable_http.StreamableHTTPServerTransport, name) for name in (
            "_request_streams", "_sse_stream_writers", "_event_store"))
        and hasattr(streamable_http.StreamableHTTPServerTransport, "_read_stream_writer")),
    ("mcp StreamableHTTPSessionManager makes its transports by module name", lambda: "StreamableHTTPServerTransport("
        in inspect.getsource(streamable_http_manager.StreamableHTTPSessionManager._admit_session)),
)


def problems() -> list[str]:
    """What this FastMCP/mcp install lacks of what the gateway uses; empty when all is there."""
    missing = [name for name, present in _REQUIRED if not _safe(present)]
    if not missing:
        return []
    installed = f"fastmcp {_installed('fastmcp')}, mcp {_installed('mcp')}"
    return [f"this gateway needs fastmcp {FASTMCP_VERSION} and mcp {MCP_VERSION} (installed: {installed}); "
            f"missing: {', '.join(missing)}. Reinstall with ./setup.sh"]


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except Exception:  # a check that cannot even run means the name is not what we need
        return False


def _installed(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


# -- the FastMCP server -------------------------------------------------------------------------


class GatewayFastMCP(FastMCP):
    """FastMCP with its per-session state in a dict (see gateway/session_state.py)."""

    @cached_property
    def _state_store(self) -> SessionState:  # type: ignore[override]
        return SessionState()


def lowlevel(mcp: FastMCP) -> Server[Any]:
    """The mcp server under FastMCP: its middleware chain, its tool-schema hook, its runner."""
    return mcp._mcp_server


async def run_stdio(mcp: FastMCP, read_stream: Any, write_stream: Any) -> None:
    """`FastMCP.run_stdio_async` on streams of our own (FastMCP has no hook for them)."""
    token = fastmcp_context.set_transport("stdio")
    try:
        async with mcp._lifespan_manager():
            server = mcp._mcp_server
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        fastmcp_context.reset_transport(token)


# -- a client's connection, seen from the server -------------------------------------------------


def connection_of(session: ServerSession) -> Connection:
    """The connection a request came in on: one per handshake-era client, one per request otherwise."""
    return session._connection


def initialized(session: ServerSession) -> bool:
    return connection_of(session).initialize_accepted


def client_log_level(mcp: FastMCP, session: ServerSession) -> str | None:
    """The lowest level the client asked for with logging/setLevel, else the server's default."""
    return fastmcp_context._get_client_log_level(session) or mcp.client_log_level


# -- a backend request as wire data ---------------------------------------------------------------


async def send_raw_request(session: ClientSession, method: str, params: dict[str, Any], *, timeout: float,
                           progress: ProgressFn | None = None,
                           client_capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sends a request exactly as `ClientSession.send_request` would and returns the raw result.

    `ClientSession.call_tool` builds a request model, dumps it, validates the raw result twice and
    parses it into a model, which the gateway's front would dump and validate again for its own
    client. The gateway relays result dicts instead, validated once for the caller's protocol
    version (see gateway/fastpath.py).
    """
    data: dict[str, Any] = {"method": method, "params": params}
    opts: dict[str, Any] = {"timeout": timeout}
    if progress is not None:
        opts["on_progress"] = progress
    session._stamp(data, opts)  # protocol-era _meta and headers (Mcp-Method, Mcp-Param-*)
    meta = data["params"].get("_meta")
    if client_capabilities is not None and isinstance(meta, dict) and CLIENT_CAPABILITIES_META_KEY in meta:
        meta[CLIENT_CAPABILITIES_META_KEY] = client_capabilities  # 2026-07-28: stated per request
    name_key = NAME_BEARING_METHODS.get(method)
    if name_key is not None and isinstance(name := params.get(name_key), str):
        opts.setdefault("headers", {}).setdefault(MCP_NAME_HEADER, encode_header_value(name))
    return await session._dispatcher.send_raw_request(method, data["params"], opts)  # type: ignore[arg-type]


# -- the handshake-era HTTP front: a request's answer as JSON when nothing else comes for it ------


class DeferredAnswers(streamable_http.StreamableHTTPServerTransport):
    """mcp's handshake-era streamable-HTTP transport, answering a request as one JSON body when its
    response is the first thing that comes for it, and as an event stream (as before) when
    progress, a log message or a request of the server's comes first.

    The protocol lets the server choose either for a client that accepts both. A JSON body costs
    the front one write instead of an event stream's task group, ping task and several writes, and
    has no per-event size limit (Python clients refuse a server-sent event over 1 MiB). What a
    client sees otherwise is unchanged: logs and server requests still arrive on the request's
    stream, and a cancelled request is still answered (by mcp's `_terminate_unanswered_request`).
    """

    async def _handle_post_request(self, scope: Any, request: Any, receive: Any, send: Any) -> None:
        message = None
        if not self.is_json_response_enabled and self._event_store is None:
            message = _plain_request(await request.body())  # Starlette keeps the body for the base's read
        if message is None:
            await super()._handle_post_request(scope, request, receive, send)
            return
        has_json, has_sse = streamable_http.check_accept_headers(request)
        if not (has_json and has_sse and self._check_content_type(request)):
            await super()._handle_post_request(scope, request, receive, send)  # which refuses it, as ever
            return
        if not await self._validate_request_headers(request, send):
            return
        writer = self._read_stream_writer
        assert writer is not None
        request_id = str(message.id)
        events_in, events = anyio.create_memory_object_stream[streamable_http.EventMessage](
            streamable_http.REQUEST_STREAM_BUFFER_SIZE)
        self._request_streams[request_id] = (events_in, events)
        version = request.headers.get(streamable_http.MCP_PROTOCOL_VERSION_HEADER, DEFAULT_NEGOTIATED_VERSION)
        try:
            await writer.send(self._create_session_message(message, request, request_id, version))
            first = await events.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            await self._clean_up_memory_streams(request_id)
            await self._create_error_response("Session terminated before the request completed",
                                              HTTPStatus.INTERNAL_SERVER_ERROR, INTERNAL_ERROR)(scope, receive, send)
            return
        if isinstance(first.message, JSONRPCResponse | JSONRPCError):
            await self._clean_up_memory_streams(request_id)
            await self._create_json_response(first.message)(scope, receive, send)
            return
        await self._stream_answer(scope, receive, send, request_id, first, events)

    async def _stream_answer(self, scope: Any, receive: Any, send: Any, request_id: str,
                             first: streamable_http.EventMessage, events: Any) -> None:
        """Something came before the response: the answer becomes the event stream it always was."""
        sse_in, sse_out = anyio.create_memory_object_stream[dict[str, Any]](0)
        self._sse_stream_writers[request_id] = sse_in

        async def forward() -> None:
            try:
                await sse_in.send(self._create_event_data(first))
            except anyio.ClosedResourceError:
                pass
            await self._run_sse_writer(request_id, sse_in, events, None)

        headers = {"Cache-Control": "no-cache, no-transform", "Connection": "keep-alive",
                   "Content-Type": streamable_http.CONTENT_TYPE_SSE,
                   **({streamable_http.MCP_SESSION_ID_HEADER: self.mcp_session_id} if self.mcp_session_id else {})}
        try:
            await EventSourceResponse(content=sse_out, data_sender_callable=forward, headers=headers)(scope, receive,
                                                                                                      send)
        finally:
            await sse_out.aclose()
            await self._clean_up_memory_streams(request_id)


def _plain_request(body: bytes) -> JSONRPCRequest | None:
    """The request a POST carries when it can be answered either way: one request, not the
    handshake (whose answer starts the session as mcp does it)."""
    try:
        raw = pydantic_core.from_json(body)
    except ValueError:
        return None
    if not isinstance(raw, dict) or "id" not in raw or raw.get("method") in (None, "initialize"):
        return None
    try:
        message = jsonrpc_message_adapter.validate_python(raw, by_name=False)
    except ValidationError:
        return None
    return message if isinstance(message, JSONRPCRequest) else None


def answer_plain_requests_as_json() -> None:
    """From now on, handshake-era HTTP sessions are served by `DeferredAnswers`: mcp's session
    manager looks its transport class up by this module name at each new session."""
    streamable_http_manager.StreamableHTTPServerTransport = DeferredAnswers  # type: ignore[misc]
