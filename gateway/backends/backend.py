"""One backend: its long-lived client session, its state, and its cached components."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

import anyio
import mcp_types
from mcp import ClientSession, MCPError
from mcp.client import Transport
from pydantic import ValidationError

from gateway.backends.connection import Connection, client_for
from gateway.backends.errors import (BackendError, BackendRejected, BackendUnavailable, CallTimeout, InvalidParams,
                                     ResultTooLarge, UnknownTool)
from gateway.backends.process import StderrTail, Started
from gateway.backends.stdio_link import StdioLink
from gateway.backends.transports import make_transport
from gateway.backends.wire import result_size, send_request
from gateway.config import ServerSpec

logger = logging.getLogger("gateway.backends")

LogMessage = mcp_types.LoggingMessageNotificationParams
ProgressHandler = Callable[[float, float | None, str | None], Awaitable[None]]
LogSink = Callable[[LogMessage], Awaitable[None]]

MAX_BACKOFF = 30.0


class State(StrEnum):
    connecting = "connecting"
    ready = "ready"
    failed = "failed"  # never got ready since it was added
    down = "down"  # was ready, lost its connection; reconnects on the next call
    stopped = "stopped"


@dataclass
class ToolEntry:
    tool: mcp_types.Tool

    @cached_property
    def validator(self) -> Any | None:
        """A jsonschema validator, or None when the schema is unusable. Built on the tool's first
        call: checking every listed schema, and importing jsonschema, would slow the start."""
        return _validator(self.tool.input_schema)


@dataclass
class Components:
    tools: dict[str, ToolEntry] = field(default_factory=dict)
    resources: list[mcp_types.Resource] = field(default_factory=list)
    templates: list[mcp_types.ResourceTemplate] = field(default_factory=list)
    prompts: list[mcp_types.Prompt] = field(default_factory=list)


def _validator(schema: dict[str, Any] | None) -> Any | None:
    if not schema:
        return None
    import jsonschema

    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        return cls(schema)
    except jsonschema.SchemaError:
        return None


def describe_params(schema: dict[str, Any] | None) -> str:
    """A one-line summary of what a tool accepts, for error messages read by an LLM."""
    properties = (schema or {}).get("properties") or {}
    if not properties:
        return "no parameters"
    required = set((schema or {}).get("required") or [])
    parts = []
    for name, prop in properties.items():
        kind = prop.get("type") if isinstance(prop, dict) else None
        kind = "|".join(kind) if isinstance(kind, list) else kind or "any"
        parts.append(f"{name} ({kind}{', required' if name in required else ''})")
    return ", ".join(parts)


def _describe_exception(exc: BaseException) -> str:
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    if isinstance(root, OSError) and root is not exc:
        exc = root
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, MCPError):
        return exc.error.message
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    if isinstance(exc, PermissionError):
        return f"command not executable: {exc.filename or exc}"
    text = str(exc) or type(exc).__name__
    return text.removeprefix("Client failed to connect: ")


_LIST_CHANGED = (mcp_types.ToolListChangedNotification, mcp_types.ResourceListChangedNotification,
                 mcp_types.PromptListChangedNotification)


async def _all_pages(list_page: Callable[..., Awaitable[Any]], field_name: str) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(100):  # a backend that pages forever gets its first 100 pages listed
        page = await list_page(params=mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        items += getattr(page, field_name)
        cursor = page.next_cursor
        if cursor is None:
            break
    return items


class Backend:
    def __init__(self, name: str, spec: ServerSpec, *, call_timeout: float, connect_timeout: float,
                 max_result_bytes: int, on_change: Callable[[Backend], None], spawn: Callable[..., None],
                 runtime: bool = False, started: Started | None = None) -> None:
        self.name = name
        self.spec = spec
        self.runtime = runtime
        self.max_result_bytes = max_result_bytes
        self.call_timeout = spec.timeout or call_timeout
        self.connect_timeout = connect_timeout
        self.state = State.connecting
        self.last_error: str | None = None
        self.components = Components()
        self.failures = 0
        self.retry_at = 0.0
        self.ever_ready = False
        self._on_change = on_change
        self._spawn = spawn  # starts a background task in the pool's task group
        self._connection: Connection | None = None
        self._transport: Transport | None = None
        self._lock = anyio.Lock()
        self._restarted: anyio.Event | None = None  # set when the running restart ends
        self._log_sinks: list[LogSink] = []
        self._ahead = started.process if started else None  # a process started ahead, for the first session
        self.stderr = started.stderr if started else StderrTail(name) if spec.kind == "stdio" else None
        if self.stderr is not None:
            spawn(self.stderr.pump)

    # -- connection ---------------------------------------------------------------------------

    def _new_connection(self) -> Connection:
        async def on_message(message: Any) -> None:
            if isinstance(message, _LIST_CHANGED):
                self._spawn(self.refresh)
            elif isinstance(message, Exception):  # a line that is not a JSON-RPC message, say
                logger.warning("server '%s' sent something unreadable: %s", self.name, str(message)[:300])

        process, self._ahead = self._ahead, None
        self._transport = make_transport(self.spec, self.stderr, process)
        # Tool calls pass their own timeout; this default bounds everything else (listing, resource
        # reads, prompts), which must not fail just because a server's call timeout is short.
        client = client_for(self._transport, self.name,
                            read_timeout_seconds=max(self.call_timeout, self.connect_timeout),
                            logging_callback=self._forward_log, message_handler=on_message)
        return Connection(client, self._spawn)

    async def connect(self) -> None:
        """Starts (or restarts) the session and lists the backend's components."""
        async with self._lock:
            if self.state is State.ready and self._alive():
                return
            await self._drop_connection()
            self.state = State.connecting
            if self.stderr is not None:
                self.stderr.clear()  # quote only this attempt's output if it fails
            connection = self._new_connection()
            try:
                with anyio.fail_after(self.connect_timeout):
                    await connection.open()
                    components = await self._list_components(connection.session)
            except Exception as exc:
                with anyio.CancelScope(shield=True):
                    await self._close(connection)
                    # let the last stderr lines of a dying process arrive before we quote them
                    await anyio.sleep(0.05)
                self._record_failure(f"could not connect: {_describe_exception(exc)}"
                                     + (" (connect timeout %gs)" % self.connect_timeout
                                        if isinstance(exc, TimeoutError) else ""))
                self._on_change(self)
                raise BackendUnavailable(f"server '{self.name}' {self.last_error}") from None
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._close(connection)
                raise
            self._connection = connection
            self.components = components
            self.state = State.ready
            self.failures = 0
            self.last_error = None
            self.ever_ready = True
        self._on_change(self)

    def _record_failure(self, reason: str) -> None:
        tail = self.stderr.tail() if self.stderr else ""
        self.last_error = reason + (f"; stderr: {tail}" if tail else "")
        self.state = State.down if self.ever_ready else State.failed
        self.failures += 1
        # A backend that was serving gets one immediate retry (a crash costs one failed call);
        # after that, and for backends that never started, the wait doubles up to MAX_BACKOFF.
        first_loss = self.state is State.down and self.failures == 1
        delay = 0.0 if first_loss else min(0.5 * 2 ** (self.failures - 1), MAX_BACKOFF)
        self.retry_at = time.monotonic() + delay

    async def _list_components(self, session: ClientSession) -> Components:
        caps = session.server_capabilities
        tools = await _all_pages(session.list_tools, "tools")
        found = Components(tools={t.name: ToolEntry(t) for t in tools})
        if caps is not None and caps.resources is not None:
            found.resources = await self._optional(_all_pages(session.list_resources, "resources"), "resources")
            found.templates = await self._optional(
                _all_pages(session.list_resource_templates, "resource_templates"), "resource templates")
        if caps is not None and caps.prompts is not None:
            found.prompts = await self._optional(_all_pages(session.list_prompts, "prompts"), "prompts")
        return found

    async def _optional(self, listing: Awaitable[list[Any]], what: str) -> list[Any]:
        # Tools are the point of a backend; one that advertises resources but fails to list them
        # still serves its tools.
        try:
            return await listing
        except MCPError as exc:
            logger.warning("server '%s' advertises %s but listing them failed: %s", self.name, what, exc)
            return []

    async def refresh(self) -> None:
        """Re-lists components after the backend said they changed."""
        connection = self._connection
        if connection is None or self.state is not State.ready:
            return
        try:
            with anyio.fail_after(self.connect_timeout):
                self.components = await self._list_components(connection.session)
        except Exception as exc:
            logger.warning("server '%s': refreshing its tool list failed: %s", self.name,
                           _describe_exception(exc))
            return
        self._on_change(self)

    def _alive(self) -> bool:
        if self._connection is None:
            return False
        # A stdio backend is known dead as soon as its process exits, before any request fails.
        return not isinstance(self._transport, StdioLink) or self._transport.alive

    def refresh_state(self) -> State:
        if self.state is State.ready and not self._alive():
            self._record_failure("the backend process exited")
            self._on_change(self)
        return self.state

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await self._close(connection)

    async def _close(self, connection: Connection) -> None:
        with anyio.move_on_after(8):
            await connection.close()

    async def aclose(self) -> None:
        self.state = State.stopped
        await self._drop_connection()
        if self.stderr is not None:
            self.stderr.close()

    # -- calls --------------------------------------------------------------------------------

    async def ready_connection(self, wait: float | None = None) -> Connection:
        """The live session, restarting the backend if it is down and its backoff has passed.

        A restart runs in the pool's task group; the caller waits for it at most `wait` seconds (its
        own timeout), so a slow start neither breaks the caller's bound nor is cut short by it.
        """
        if self.refresh_state() is State.ready and self._connection is not None:
            return self._connection
        if self.state is State.stopped:
            raise BackendUnavailable(f"server '{self.name}' was removed")
        if self.state is not State.connecting:
            remaining = self.retry_at - time.monotonic()
            if remaining > 0:
                raise BackendUnavailable(
                    f"server '{self.name}' is {self.state.value}: {self.last_error}. "
                    f"Next reconnect attempt in {remaining:.1f}s; other servers are unaffected.")
        if self._restarted is None:
            done = self._restarted = anyio.Event()

            async def restart() -> None:
                try:
                    await self.connect()
                except BackendUnavailable:
                    pass  # recorded in last_error; the waiting callers report it
                finally:
                    self._restarted = None
                    done.set()

            self._spawn(restart)
        restarted = self._restarted
        bound = wait if wait is not None else self.connect_timeout
        with anyio.move_on_after(bound):
            await restarted.wait()
        if self.state is State.ready and self._connection is not None:
            return self._connection
        if self.state is State.connecting:
            raise CallTimeout(f"server '{self.name}' is still starting after {bound:g}s; try again shortly")
        raise BackendUnavailable(f"server '{self.name}' is {self.state.value}: {self.last_error}")

    @property
    def protocol_version(self) -> str | None:
        return self._connection.session.protocol_version if self._connection is not None else None

    def tool_entry(self, tool: str) -> ToolEntry:
        entry = self.components.tools.get(tool)
        if entry is None:
            known = ", ".join(sorted(self.components.tools)) or "none"
            raise UnknownTool(f"server '{self.name}' has no tool '{tool}'. Its tools: {known}")
        return entry

    def check_params(self, tool: str, args: dict[str, Any]) -> None:
        entry = self.tool_entry(tool)
        if entry.validator is None or entry.validator.is_valid(args):
            return
        error = next(iter(sorted(entry.validator.iter_errors(args), key=lambda e: e.path)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            raise InvalidParams(
                f"params for '{tool}' of server '{self.name}' do not match its input schema"
                f"{f' at {where!r}' if where else ''}: {error.message}. "
                f"Expected: {describe_params(entry.tool.input_schema)}")

    async def call(self, tool: str, args: dict[str, Any], *, timeout: float | None = None,
                   progress: ProgressHandler | None = None, log: LogSink | None = None
                   ) -> mcp_types.CallToolResult:
        """A tool call as a typed result, for the gateway's own use (pipelines, FastMCP tools)."""
        raw = await self.call_raw(tool, args, timeout=timeout, progress=progress, log=log)
        try:
            return mcp_types.CallToolResult.model_validate(raw, by_name=False)
        except ValidationError:
            raise BackendError(f"server '{self.name}' returned a malformed result for '{tool}'") from None

    async def call_raw(self, tool: str, args: dict[str, Any], *, timeout: float | None = None,
                       progress: ProgressHandler | None = None, log: LogSink | None = None) -> dict[str, Any]:
        """A tool call's result as the backend sent it; the caller validates it for its own use."""
        limit = timeout or self.call_timeout
        connection = await self.ready_connection(limit)  # a down backend says so before params are checked
        self.check_params(tool, args)
        result = await self._exchange(connection, "tools/call", {"name": tool, "arguments": args},
                                      f"the call to '{tool}'", limit, progress, log)
        if result.get("resultType", "complete") != "complete":
            raise BackendError(f"server '{self.name}' answered '{tool}' with a '{result.get('resultType')}' "
                               f"result (it asks the caller for input), which the gateway does not relay")
        size = result_size(result)
        if size > self.max_result_bytes:
            raise ResultTooLarge(f"the result of '{tool}' on server '{self.name}' is {size:,} bytes, over "
                                 f"the gateway's limit of {self.max_result_bytes:,} "
                                 f"(gateway.max_result_bytes). Ask the tool for less data.")
        return result

    async def request(self, method: str, params: dict[str, Any], *, what: str, timeout: float | None = None,
                      progress: ProgressHandler | None = None, log: LogSink | None = None) -> dict[str, Any]:
        """One request, its result as the backend sent it. `what` names it in errors ("the call to 'x'")."""
        limit = timeout or self.call_timeout
        return await self._exchange(await self.ready_connection(limit), method, params, what, limit, progress, log)

    async def _exchange(self, connection: Connection, method: str, params: dict[str, Any], what: str, limit: float,
                        progress: ProgressHandler | None, log: LogSink | None) -> dict[str, Any]:
        if log is not None:
            self._log_sinks.append(log)
        try:
            return await send_request(connection.session, method, params, timeout=limit, progress=progress)
        except MCPError as exc:
            if exc.error.code == mcp_types.REQUEST_TIMEOUT:
                raise CallTimeout(f"{what} on server '{self.name}' timed out after {limit:g}s "
                                  f"(the backend was told to cancel it). Retry with a larger "
                                  f"'timeout' if the tool needs more time.") from None
            if exc.error.code != mcp_types.CONNECTION_CLOSED:
                raise BackendRejected(exc.error.code, f"server '{self.name}' rejected {what}: "
                                                      f"{exc.error.message}") from None
            await self._lost(connection, exc)
        except (anyio.get_cancelled_exc_class(), BackendError):
            raise
        except Exception as exc:
            await self._lost(connection, exc)
        finally:
            if log is not None:
                self._log_sinks.remove(log)
        if self.state is State.stopped:
            raise BackendUnavailable(f"server '{self.name}' was removed while {what} was in flight")
        raise BackendUnavailable(f"server '{self.name}' lost its connection during {what}: "
                                 f"{self.last_error}. It is restarted on the next call.")

    async def _lost(self, connection: Connection, exc: BaseException) -> None:
        """A call found its session dead. Only that session is dropped, and the loss counted once:
        calls that were in flight on it fail one after another, maybe after a restart."""
        async with self._lock:
            if self._connection is not connection:
                return  # already dropped, or replaced by a restarted session
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.05)  # let the dying process's last stderr lines arrive
            if self.state is State.ready:  # refresh_state may have counted this loss meanwhile
                self._record_failure(f"connection lost ({_describe_exception(exc)})")
            await self._drop_connection()
        self._on_change(self)

    async def _forward_log(self, message: LogMessage) -> None:
        # A session is shared by concurrent calls and log notifications carry no request id,
        # so they go to the most recent caller still waiting; otherwise to our own log.
        if self._log_sinks:
            await self._log_sinks[-1](message)
        else:
            logger.info("[%s] %s: %s", self.name, message.level, message.data)
