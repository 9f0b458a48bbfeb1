"""Where a backend's progress, log messages and requests for a request go: to the client that made
it, on that request's own channel; logs at no lower a level than the client asked for with
logging/setLevel, and requests (sampling, elicitation, roots) only if the client declared it can
answer them."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_args

import mcp_types
from fastmcp.server.dependencies import get_context
from mcp import MCPError
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ConfigDict

from gateway import _compat
from gateway.access import ACCESS_KEY, path_profile
from gateway.backends.invocation import Ask, Caller, Invocation, LogMessage, LogSink, ProgressSink

SEVERITY = {level: rank for rank, level in enumerate(get_args(mcp_types.LoggingLevel))}

LogFloor = Callable[[ServerSession], str | None]  # the lowest level a client asked for

# What a client must have declared to be sent each request a backend may make of it.
_NEEDS: dict[str, tuple[str, mcp_types.ClientCapabilities, type[BaseModel]]] = {
    "sampling/createMessage": ("sampling", mcp_types.ClientCapabilities(sampling=mcp_types.SamplingCapability()),
                               mcp_types.CreateMessageRequest),
    "elicitation/create": ("elicitation", mcp_types.ClientCapabilities(elicitation=mcp_types.ElicitationCapability()),
                           mcp_types.ElicitRequest),
    "roots/list": ("roots", mcp_types.ClientCapabilities(roots=mcp_types.RootsCapability()),
                   mcp_types.ListRootsRequest),
}


class _AsSent(BaseModel):
    """A client's result as it came: relayed to the backend field for field."""

    model_config = ConfigDict(extra="allow")


def check_can_answer(session: ServerSession, method: str) -> type[BaseModel]:
    """The request model for `method`, or an MCPError if this client never said it can answer it."""
    need = _NEEDS.get(method)
    if need is None:
        raise MCPError(code=mcp_types.METHOD_NOT_FOUND, message=f"the gateway does not relay '{method}' to clients")
    capability, required, model = need
    if not session.check_client_capability(required):
        raise MCPError(code=mcp_types.INVALID_REQUEST,
                       message=f"the client did not declare the '{capability}' capability, so it cannot answer "
                               f"{method}")
    return model


def asks_client(session: ServerSession, request_id: mcp_types.RequestId | None) -> Ask | None:
    """Sends a backend's request to a handshake-era client, on the channel of its request
    `request_id` (on streamable HTTP, that request's response stream), or on its standalone
    channel when there is none. None for 2026-07-28 clients, which cannot be sent requests."""
    if session.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return None

    async def ask(method: str, params: dict[str, Any]) -> dict[str, Any]:
        model = check_can_answer(session, method)
        request = model.model_validate({"method": method, "params": params}, by_name=False)
        metadata = ServerMessageMetadata(related_request_id=request_id) if request_id is not None else None
        result = await session.send_request(request, _AsSent, metadata=metadata)  # type: ignore[arg-type]
        return result.model_dump(mode="json")

    return ask


@dataclass(frozen=True, slots=True)
class ClientSinks:
    progress: ProgressSink | None  # None when the request asked for no progress
    log: LogSink
    ask: Ask | None
    client: object  # the client's connection: the same object for every request of one client
    capabilities: dict[str, Any]  # what of _NEEDS the client declared it can answer
    caller: Caller

    def attach(self, invocation: Invocation, *, pipeline_step: bool = False) -> Invocation:
        """Makes the invocation this client's. A pipeline's steps go without progress (the pipeline
        reports its own), and a client that cannot be sent requests cannot answer them there."""
        invocation.progress = None if pipeline_step else self.progress
        invocation.log = self.log
        invocation.ask, invocation.client = self.ask, self.client
        invocation.client_capabilities = {} if pipeline_step and self.ask is None else self.capabilities
        invocation.caller = self.caller
        return invocation


def sinks_for(session: ServerSession, request_id: mcp_types.RequestId | None, meta: Any, floor: LogFloor,
              http_request: Any = None) -> ClientSinks:
    """The sinks of one request, given its session, id, `_meta` and (over HTTP) its HTTP request."""
    wants_progress = isinstance(meta, Mapping) and meta.get("progressToken") is not None

    async def log(message: LogMessage) -> None:
        if SEVERITY.get(message.level, len(SEVERITY)) < SEVERITY.get(floor(session) or "", 0):
            return
        with warnings.catch_warnings():  # the only way to send a backend's log entry as it came
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            sending = session.send_log_message(message.level, message.data, message.logger,
                                               related_request_id=request_id)
        await sending

    connection = _compat.connection_of(session)
    return ClientSinks(session.report_progress if wants_progress else None, log,
                       asks_client(session, request_id), connection, answerable(session),
                       caller_of(session, http_request))


def caller_of(session: ServerSession, http_request: Any) -> Caller:
    """Who is asking: the identity the HTTP front's auth gave the request (or stdio), and the client."""
    profile = None
    if http_request is None:
        identity = "stdio"
    else:
        state = http_request.scope.get("state", {})
        access = state.get(ACCESS_KEY)
        identity = access.identity if access is not None else "anonymous"
        profile = path_profile(http_request.scope)
    params = session.client_params
    info = params.client_info if params is not None else None
    return Caller(identity, f"{info.name} {info.version}" if info is not None else None, profile)


def answerable(session: ServerSession) -> dict[str, Any]:
    """The client's declared capabilities among those a backend may ask it to use."""
    declared = session.client_capabilities
    if declared is None:
        return {}
    return {name: value.model_dump(by_alias=True, mode="json", exclude_none=True)
            for name, _, _ in _NEEDS.values() if (value := getattr(declared, name)) is not None}


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
                     lambda session: _compat.client_log_level(ctx.fastmcp, session), request.request)
