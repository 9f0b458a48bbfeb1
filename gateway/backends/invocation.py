"""A request to a backend, whoever makes it, and the interceptor chain every such request passes.

Every road into a backend (re-exported tools, `call_backend`, resource reads, prompts, pipeline
steps) builds an `Invocation` and hands it to `BackendPool.invoke`, which runs it through the
interceptors assembled in `gateway.interceptors`. Timeouts, redaction, the size limit and what comes
later (tool policy, audit, metrics, rate limits) are written once there, for every road.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import mcp_types

LogMessage = mcp_types.LoggingMessageNotificationParams
ProgressSink = Callable[[float, float | None, str | None], Awaitable[None]]
LogSink = Callable[[LogMessage], Awaitable[None]]
Result = dict[str, Any]  # the backend's result as it came on the wire
# Sends a request of the backend's (sampling/createMessage, elicitation/create, roots/list) to the
# client whose request caused it and returns the client's result; refusals raise mcp's MCPError.
Ask = Callable[[str, dict[str, Any]], Awaitable[Result]]
CallNext = Callable[["Invocation"], Awaitable[Result]]
Interceptor = Callable[["Invocation", CallNext], Awaitable[Result]]


class Road(StrEnum):
    """Which door of the gateway a request came through."""

    tool = "tool"  # a re-exported <server>__<tool>
    call_backend = "call_backend"
    resource = "resource"
    prompt = "prompt"
    pipeline = "pipeline"
    completion = "completion"  # completion/complete for a re-exported prompt or resource template
    subscription = "subscription"  # resources/subscribe and unsubscribe


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request, for the audit trail: the front's identity of it, and its client."""

    identity: str  # "stdio", "token:<id>", "admin:<id>", "anonymous" (HTTP without auth), "console"
    client: str | None = None  # the client's name and version, as it introduced itself
    profile: str | None = None  # the profile its request came by; None: none (see gateway.profiles)


@dataclass(slots=True, eq=False)  # each request is itself, however alike two are
class Invocation:
    road: Road
    server: str
    method: str  # tools/call, resources/read, prompts/get; also completion/complete, resources/(un)subscribe
    params: dict[str, Any]  # as the backend will get them: its own tool, prompt or resource names
    timeout: float | None = None  # seconds; None: the server's timeout
    progress: ProgressSink | None = None  # the caller's, when it asked for progress
    log: LogSink | None = None  # where the backend's log messages for this request go
    ask: Ask | None = None  # None: the caller cannot be asked anything
    client: object = None  # the caller's connection, one object per client (per request on 2026-07-28)
    # What the caller's client can answer (sampling, elicitation, roots), as a 2026-07-28 request's
    # `_meta` states it: such a backend learns it per request. None: all the gateway can answer.
    client_capabilities: dict[str, Any] | None = None
    # The caller takes a result that asks it for input (2026-07-28 `input_required`) as it is, and
    # retries with the answers itself; otherwise the gateway asks through `ask` and retries.
    takes_input_required: bool = False
    caller: Caller | None = None

    @property
    def what(self) -> str:
        """Names the request in messages: "the call to 'x'", "reading 'uri'", "the prompt 'p'"."""
        if self.method == "tools/call":
            return f"the call to '{self.params.get('name')}'"
        if self.method == "resources/read":
            return f"reading '{self.params.get('uri')}'"
        if self.method == "prompts/get":
            return f"the prompt '{self.params.get('name')}'"
        return self.method

    @property
    def tool(self) -> str | None:
        return self.params.get("name") if self.method == "tools/call" else None


def chain(interceptors: Sequence[Interceptor], last: CallNext) -> CallNext:
    """The interceptors around `last`, the first one outermost. Each link hands back its
    interceptor's coroutine rather than awaiting it in one of its own, so an answer resumes one
    frame per interceptor, not two."""
    call = last
    for interceptor in reversed(interceptors):
        call = functools.partial(_link, interceptor, call)
    return call


def _link(interceptor: Interceptor, call_next: CallNext, invocation: Invocation) -> Awaitable[Result]:
    return interceptor(invocation, call_next)
