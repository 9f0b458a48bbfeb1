"""FastMCP backend that asks its client for things, in both protocol eras, for the gateway's tests.

python interactive_server.py              -> stdio
python interactive_server.py --http PORT  -> streamable HTTP on 127.0.0.1:PORT/mcp

Sampling, elicitation and roots go out as server-initiated requests on a handshake-era
(2025-11-25) connection, and as an InputRequiredResult the client answers and retries with on a
2026-07-28 one. Notes are resources clients can subscribe to (resources/subscribe on handshake-era
connections, subscriptions/listen on 2026-07-28 ones), with completions for the prompt and template.

INTERACTIVE_EVENTS=FILE records, one line each, what reached the backend without an answer of its
own: "cancelled" (a slow call), "roots_changed" and "level <level>".
"""

from __future__ import annotations

import asyncio
import os
import sys
import warnings
import weakref
from typing import Any, TypeVar

# fastmcp reads its log level at import time; keep the backend's stderr quiet.
os.environ.setdefault("FASTMCP_LOG_LEVEL", "ERROR")

from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated
from mcp.shared.message import ServerMessageMetadata
from mcp_types import (CompletionArgument, CompletionContext, CreateMessageRequest, CreateMessageRequestParams,
                       CreateMessageResult, ElicitRequest, ElicitRequestFormParams, ElicitResult, EmptyResult,
                       InputRequest, InputRequiredResult, ListRootsRequest, ListRootsResult, PromptReference,
                       ResourceTemplateReference, SamplingMessage, SubscribeRequestParams,
                       SubscriptionsListenRequestParams, TextContent, UnsubscribeRequestParams)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from fastmcp import Context, FastMCP
from fastmcp.server.middleware import Middleware

# ctx.debug/info/warning on a 2026-07-28 connection warn that logging is deprecated; the
# messages are still delivered, and the warnings would only add stderr noise.
warnings.filterwarnings("ignore", message="The logging capability is deprecated")

ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
NAMES = ["alice", "albert", "bob"]
NOTES: dict[str, str] = {"a": "note a", "b": "note b"}

ResultT = TypeVar("ResultT", CreateMessageResult, ElicitResult, ListRootsResult)


def _record(line: str) -> None:
    path = os.environ.get("INTERACTIVE_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as events:  # closed, so flushed, line by line
            events.write(line + "\n")


class EventRecorder(Middleware):
    """Records the client messages that reach the backend but leave no trace in any answer."""

    async def on_notification(self, context: Any, call_next: Any) -> Any:
        if context.method == "notifications/roots/list_changed":
            _record("roots_changed")
        return await call_next(context)

    async def on_request(self, context: Any, call_next: Any) -> Any:
        # FastMCP's own logging/setLevel handler still runs, and still filters ctx.log by level.
        if context.method == "logging/setLevel":
            _record(f"level {context.message.get('level')}")
        return await call_next(context)


mcp = FastMCP("interactive", instructions="Test backend that asks its client for input.",
              middleware=[EventRecorder()])


def _is_modern(ctx: Context) -> bool:
    return ctx.session.protocol_version in MODERN_PROTOCOL_VERSIONS


async def _ask(ctx: Context, key: str, request: InputRequest, result_type: type[ResultT],
               state: str | None = None) -> ResultT | InputRequiredResult:
    """The client's answer to `request`: asked over the wire on a handshake-era connection, or
    from the retried call's input_responses on a 2026-07-28 one, where a server cannot send
    requests and must return an InputRequiredResult (keyed `key`) for the client to answer."""
    if not _is_modern(ctx):
        # related to the tool call, so over HTTP it rides that call's response stream
        metadata = ServerMessageMetadata(related_request_id=ctx.request_id)
        return await ctx.session.send_request(request, result_type, metadata=metadata)
    responses = ctx.input_responses or {}
    if key in responses:
        return result_type.model_validate(responses[key].model_dump(by_alias=True))
    return InputRequiredResult(input_requests={key: request}, request_state=state)


def _sampling(prompt: str) -> CreateMessageRequest:
    message = SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
    return CreateMessageRequest(params=CreateMessageRequestParams(messages=[message], max_tokens=100))


def _elicitation(question: str) -> ElicitRequest:
    return ElicitRequest(params=ElicitRequestFormParams(message=question, requested_schema=ANSWER_SCHEMA))


def _llm_text(reply: CreateMessageResult) -> str:
    return reply.content.text if isinstance(reply.content, TextContent) else f"<{reply.content.type}>"


def _user_text(reply: ElicitResult) -> str:
    if reply.action == "accept":
        return f"user said: {(reply.content or {}).get('answer')}"
    return "user declined" if reply.action == "decline" else "user cancelled"


@mcp.tool
async def ask_llm(prompt: str, ctx: Context) -> str | InputRequiredResult:
    """Ask the client's LLM (sampling/createMessage) and return its reply."""
    reply = await _ask(ctx, "llm", _sampling(prompt), CreateMessageResult)
    return reply if isinstance(reply, InputRequiredResult) else f"llm said: {_llm_text(reply)}"


@mcp.tool
async def ask_user(question: str, ctx: Context) -> str | InputRequiredResult:
    """Ask the user (form elicitation with one string field, "answer") and return the answer."""
    reply = await _ask(ctx, "user", _elicitation(question), ElicitResult)
    return reply if isinstance(reply, InputRequiredResult) else _user_text(reply)


@mcp.tool
async def show_roots(ctx: Context) -> str | InputRequiredResult:
    """Ask the client for its roots (roots/list) and return their URIs."""
    reply = await _ask(ctx, "roots", ListRootsRequest(), ListRootsResult)
    if isinstance(reply, InputRequiredResult):
        return reply
    return ", ".join(str(root.uri) for root in reply.roots) or "no roots"


@mcp.tool
async def ask_twice(prompt: str, ctx: Context) -> str | InputRequiredResult:
    """Ask the LLM, then the user: two rounds of input in one call."""
    # On 2026-07-28 the retry that answers the second round no longer carries the first round's
    # answer, so the LLM's text travels in request_state (sealed by the SDK on the wire).
    llm_text = ctx.request_state if _is_modern(ctx) else None
    if llm_text is None:
        llm = await _ask(ctx, "llm", _sampling(prompt), CreateMessageResult)
        if isinstance(llm, InputRequiredResult):
            return llm
        llm_text = _llm_text(llm)
    question = _elicitation(f"The LLM said {llm_text!r}. Your answer?")
    user = await _ask(ctx, "user", question, ElicitResult, state=llm_text)
    return user if isinstance(user, InputRequiredResult) else f"llm said: {llm_text}; {_user_text(user)}"


@mcp.tool
def era(ctx: Context) -> str:
    """The protocol version of the connection this call came on."""
    return ctx.session.protocol_version


@mcp.tool
def echo_meta(ctx: Context) -> dict[str, Any]:
    """The `_meta` this request carried, as received."""
    rc = ctx.request_context
    return dict(rc.meta or {}) if rc is not None else {}


@mcp.tool
async def slow(seconds: float) -> str:
    """Sleep for the given number of seconds, then answer; a cancellation is recorded."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _record("cancelled")
        raise
    return f"slept {seconds}"


@mcp.tool
async def log_levels(ctx: Context) -> str:
    """Log one message at each of debug, info and warning."""
    await ctx.debug("debug message")
    await ctx.info("info message")
    await ctx.warning("warning message")
    return "logged debug, info, warning"


# Subscriptions. FastMCP 4 serves neither resources/subscribe (handshake era) nor
# subscriptions/listen (2026-07-28), so both are registered on the low-level server; the SDK then
# advertises resources.subscribe for whichever era the client speaks.
_subscribers: dict[str, weakref.WeakSet[Connection]] = {}  # gone with their connection
_bus = InMemorySubscriptionBus()


def _connection(ctx: ServerRequestContext) -> Connection:
    # The SDK builds a ServerSession per request; the connection is what outlives the subscribe call.
    return ctx.session._connection


async def _subscribe(ctx: ServerRequestContext, params: SubscribeRequestParams) -> EmptyResult:
    _subscribers.setdefault(params.uri, weakref.WeakSet()).add(_connection(ctx))
    return EmptyResult()


async def _unsubscribe(ctx: ServerRequestContext, params: UnsubscribeRequestParams) -> EmptyResult:
    _subscribers.get(params.uri, weakref.WeakSet()).discard(_connection(ctx))
    return EmptyResult()


mcp._mcp_server.add_request_handler("resources/subscribe", SubscribeRequestParams, _subscribe)
mcp._mcp_server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, _unsubscribe)
mcp._mcp_server.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, ListenHandler(_bus))


@mcp.tool
async def set_note(name: str, text: str) -> str:
    """Set note `name` and tell whoever subscribed to note://<name> that it changed."""
    NOTES[name] = text
    uri = f"note://{name}"
    for connection in list(_subscribers.get(uri, ())):
        await connection.send_resource_updated(uri)  # best effort: never raises
    await _bus.publish(ResourceUpdated(uri=uri))
    return f"note {name} set"


@mcp.resource("note://a", mime_type="text/plain")
def note_a() -> str:
    return NOTES["a"]


@mcp.resource("note://b", mime_type="text/plain")
def note_b() -> str:
    return NOTES["b"]


@mcp.resource("note://{name}", mime_type="text/plain")
def note(name: str) -> str:
    """Any note, including ones set_note created."""
    return NOTES.get(name, "")


@mcp.prompt
def greet(name: str) -> str:
    """Greet someone by name."""
    return f"Hello, {name}!"


@mcp.completion
async def complete(ref: PromptReference | ResourceTemplateReference, argument: CompletionArgument,
                   context: CompletionContext | None) -> list[str] | None:
    """Names for greet's `name` and note://{name}'s `name`, starting with what was typed."""
    if isinstance(ref, PromptReference) and ref.name == "greet" and argument.name == "name":
        return [name for name in NAMES if name.startswith(argument.value)]
    if isinstance(ref, ResourceTemplateReference) and ref.uri == "note://{name}" and argument.name == "name":
        return [name for name in sorted(NOTES) if name.startswith(argument.value)]
    return None  # an empty completion


def main(argv: list[str]) -> None:
    if not argv:
        mcp.run(show_banner=False)
    elif len(argv) == 2 and argv[0] == "--http" and argv[1].isdigit():
        mcp.run(transport="http", host="127.0.0.1", port=int(argv[1]), show_banner=False)
    else:
        raise SystemExit("usage: python interactive_server.py [--http PORT]")


if __name__ == "__main__":
    main(sys.argv[1:])
