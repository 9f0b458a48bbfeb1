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

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from functools import cached_property
from http import HTTPStatus
from importlib import metadata
from typing import Any

import anyio
import fastmcp.server.context as fastmcp_context
import pydantic_core
from fastmcp import FastMCP
from mcp import ClientSession
from mcp.server import _streamable_http_modern as modern
from mcp.server import runner, streamable_http, streamable_http_manager
from mcp.server.connection import Connection
from mcp.server.lowlevel import Server
from mcp.server.runner import modern_error_data, serve_one
from mcp.server.session import ServerSession
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared import inbound
from mcp.shared.inbound import (
    MCP_NAME_HEADER,
    NAME_BEARING_METHODS,
    encode_header_value,
)
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher, progress_token_from_params
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    DEFAULT_NEGOTIATED_VERSION,
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    JSONRPCError,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError
from sse_starlette import EventSourceResponse
from starlette.requests import Request

from gateway import line_streams
from gateway.line_streams import LineReader, LineWriter
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
    ("mcp JSONRPCDispatcher._read_stream, _write_stream, _allocate_id", lambda: all(
        _assigned_in_init(JSONRPCDispatcher, name) for name in ("_read_stream", "_write_stream"))
        and callable(getattr(JSONRPCDispatcher, "_allocate_id", None))),
    ("mcp StreamableHTTPServerTransport's request handling", lambda: all(
        callable(getattr(streamable_http.StreamableHTTPServerTransport, name, None)) for name in (
            "_handle_post_request", "_check_content_type", "_validate_request_headers", "_create_session_message",
            "_create_event_data", "_run_sse_writer", "_clean_up_memory_streams", "_create_json_response",
            "_create_error_response"))
        and all(_assigned_in_init(streamable_http.StreamableHTTPServerTransport, name) for name in (
            "_request_streams", "_sse_stream_writers", "_event_store"))
        and hasattr(streamable_http.StreamableHTTPServerTransport, "_read_stream_writer")),
    ("mcp's modern HTTP entry (_streamable_http_modern: handle_modern_request, _SingleExchangeDispatchContext, "
     "_write, _write_rejection, _INVALID_BODY, _mcp_param_rejection, _SSE_HEADERS, _SSE_PING_INTERVAL)",
     lambda: all(hasattr(modern, name) for name in (
         "handle_modern_request", "_SingleExchangeDispatchContext", "_write", "_write_rejection", "_INVALID_BODY",
         "_mcp_param_rejection", "_SSE_HEADERS", "_SSE_PING_INTERVAL"))
        and "handle_modern_request(" in inspect.getsource(streamable_http_manager.StreamableHTTPSessionManager)),
    ("mcp's era-serving loops (runner._serve_legacy_stream, _serve_modern_stream, _has_modern_envelope, "
     "_PRE_REQUEST_REPLAY_LIMIT)", lambda: all(hasattr(runner, name) for name in (
        "_serve_legacy_stream", "_serve_modern_stream", "_has_modern_envelope", "_PRE_REQUEST_REPLAY_LIMIT"))),
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


async def run_stdio(mcp: FastMCP, read_stream: LineReader, write_stream: Any) -> None:
    """`FastMCP.run_stdio_async` on streams of our own (FastMCP has no hook for them). The client's
    first request decides the protocol era, as in `Server.run`, but is peeked at on our reader
    instead of being replayed through a stream and a task of mcp's that every later message would
    then pass through."""
    token = fastmcp_context.set_transport("stdio")
    try:
        async with mcp._lifespan_manager():
            server = mcp._mcp_server
            async with server.lifespan(server) as state:
                try:
                    opening = await read_stream.opening_request(runner._PRE_REQUEST_REPLAY_LIMIT)
                    if opening is None:
                        return
                    if opening.method != "initialize" and runner._has_modern_envelope(opening.params):
                        await runner._serve_modern_stream(server, read_stream, write_stream, lifespan_state=state,
                                                          raise_exceptions=False)
                    else:
                        await runner._serve_legacy_stream(
                            server, read_stream, write_stream, lifespan_state=state, session_id=None,
                            init_options=server.create_initialization_options(), raise_exceptions=False)
                finally:
                    await write_stream.aclose()
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
    version (see gateway/fastpath.py). To a stdio backend the request does not even pass through
    the session (see `line_streams.request`).
    """
    data: dict[str, Any] = {"method": method, "params": params}
    opts: dict[str, Any] = {"timeout": timeout}
    if progress is not None:
        opts["on_progress"] = progress
    session._stamp(data, opts)  # protocol-era _meta and headers (Mcp-Method, Mcp-Param-*)
    meta = data["params"].get("_meta")
    if client_capabilities is not None and isinstance(meta, dict) and CLIENT_CAPABILITIES_META_KEY in meta:
        meta[CLIENT_CAPABILITIES_META_KEY] = client_capabilities  # 2026-07-28: stated per request
    dispatcher = session._dispatcher
    if isinstance(dispatcher, JSONRPCDispatcher) and isinstance(reader := dispatcher._read_stream, LineReader) \
            and isinstance(writer := dispatcher._write_stream, LineWriter):  # a stdio backend: no headers
        return await line_streams.request(reader, writer, dispatcher._allocate_id(), method, data["params"], timeout,
                                          progress)
    name_key = NAME_BEARING_METHODS.get(method)
    if name_key is not None and isinstance(name := params.get(name_key), str):
        opts.setdefault("headers", {}).setdefault(MCP_NAME_HEADER, encode_header_value(name))
    return await dispatcher.send_raw_request(method, data["params"], opts)  # type: ignore[arg-type]


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


# -- the 2026-07-28 HTTP front: one request, answered in the task that received it -----------------


WATCH_AFTER = 0.05  # seconds a 2026-07-28 request runs before the gateway watches for its client leaving


class _DeferredStream:
    """A request's response stream that stays a plain JSON answer until the handler sends a
    notification: the first one commits `text/event-stream`, as mcp's modern entry does."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self.committed = False
        self.closed = False

    async def send(self, chunk: bytes) -> None:
        if self.closed:  # a notification after the answer has nowhere to go
            raise anyio.ClosedResourceError
        if not self.committed:
            self.committed = True
            await self._send({"type": "http.response.start", "status": 200, "headers": modern._SSE_HEADERS})
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})


async def answer_modern_request(app: Server[Any], security_settings: Any, json_response: bool, lifespan_state: Any,
                                scope: Any, receive: Any, send: Any) -> None:
    """mcp's `handle_modern_request` with the same checks in the same order, but running the
    handler in the request's own task: mcp's runs it as a second task beside a disconnect watcher,
    joined by a memory stream, and builds pydantic models of the answer only to dump them again.
    Here, once the request has run `WATCH_AFTER`, one watcher task waits for the client to go
    (cancelling the request, as mcp's does) and pings a silent event stream; notifications are
    written as they come. What this does not
    handle (anything but a POSTed request, and `subscriptions/listen`) goes to mcp's own."""
    request = Request(scope, receive)
    if request.method != "POST" or json_response:
        await modern.handle_modern_request(app, security_settings, json_response, lifespan_state, scope, receive,
                                           send)
        return
    error = await TransportSecurityMiddleware(security_settings).validate_request(request, is_post=True)
    if error is not None:
        await error(scope, receive, send)
        return
    has_json, has_sse = streamable_http.check_accept_headers(request)
    body = await request.body()
    decoded = _json_object(body)
    if decoded is None or not (has_json and has_sse) or "id" not in decoded \
            or decoded.get("method") == "subscriptions/listen":
        await modern.handle_modern_request(app, security_settings, json_response, lifespan_state, scope,
                                           _replaying(body, receive), send)
        return
    try:
        req = JSONRPCRequest.model_validate(decoded)
    except ValidationError:
        await modern._write(modern._INVALID_BODY, scope, receive, send)
        return
    duplicated = inbound.find_duplicated_routing_header(request.headers.items())
    if duplicated is not None:
        await modern._write_rejection(inbound.InboundLadderRejection(
            code=HEADER_MISMATCH, message=f"{duplicated} header appears more than once"), req.id, scope, receive, send)
        return
    verdict = inbound.classify_inbound_request(decoded, headers=dict(request.headers))
    if isinstance(verdict, inbound.InboundLadderRejection):
        await modern._write_rejection(verdict, req.id, scope, receive, send)
        return
    rejection = await modern._mcp_param_rejection(app, request, req, verdict, lifespan_state)
    if rejection is not None:
        await modern._write_rejection(rejection, req.id, scope, receive, send)
        return

    stream = _DeferredStream(send)
    dctx = modern._SingleExchangeDispatchContext(
        transport=TransportContext(kind="streamable-http", can_send_request=False, headers=request.headers),
        request_id=req.id, message_metadata=ServerMessageMetadata(request_context=request),
        progress_token=progress_token_from_params(req.params), sink=stream)  # type: ignore[arg-type]
    connection = Connection.from_envelope(verdict.protocol_version, verdict.client_info, verdict.client_capabilities)

    async def watch(scope: anyio.CancelScope) -> None:
        """Cancels the request when the client goes; pings once the stream has been silent a while."""
        while True:
            with anyio.move_on_after(modern._SSE_PING_INTERVAL):
                while (await receive()).get("type") != "http.disconnect":
                    pass
                scope.cancel()
                return
            await stream.send(b": ping\r\n\r\n")

    answer: dict[str, Any] | None = None
    watched = False
    async with anyio.create_task_group() as tg:
        # Most requests are answered before the watcher would be any use, and starting it (which
        # has uvicorn resume reading the connection) cost as much CPU as the rest of this entry.
        def start_watching() -> None:
            nonlocal watched
            watched = True
            tg.start_soon(watch, tg.cancel_scope)

        watching = asyncio.get_running_loop().call_later(WATCH_AFTER, start_watching)
        try:
            answer = {"jsonrpc": "2.0", "id": req.id, "result": await serve_one(
                app, dctx, req.method, req.params, connection=connection, lifespan_state=lifespan_state)}
        except Exception as exc:
            answer = {"jsonrpc": "2.0", "id": req.id,
                      "error": modern_error_data(exc).model_dump(mode="json", exclude_none=True)}
        finally:
            stream.closed = True
            watching.cancel()
            if watched:
                tg.cancel_scope.cancel()
    if answer is None:  # the client went away
        return
    data = pydantic_core.to_json(answer)
    if stream.committed:
        await send({"type": "http.response.body", "body": b"event: message\r\ndata: " + data + b"\r\n\r\n",
                    "more_body": False})
        return
    status = inbound.ERROR_CODE_HTTP_STATUS.get(answer["error"]["code"], 200) if "error" in answer else 200
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return decoded if isinstance(decoded, dict) else None


def _replaying(body: bytes, receive: Any) -> Any:
    """`receive` for an app that reads the request body again."""
    given = False

    async def again() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def serve_http_leanly() -> None:
    """From now on, handshake-era HTTP sessions are served by `DeferredAnswers` and 2026-07-28
    requests by `answer_modern_request`: mcp's session manager looks both up by these module
    names (its transport class at each new session, its modern entry at each request)."""
    streamable_http_manager.StreamableHTTPServerTransport = DeferredAnswers  # type: ignore[misc]
    streamable_http_manager.handle_modern_request = answer_modern_request  # type: ignore[assignment]
