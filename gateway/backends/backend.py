"""One backend: its long-lived session, its state (connecting, ready, failed, down, stopped) and
its restarts with backoff. What it offers is its `catalog`; its requests in flight are `in_flight`."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import anyio
import mcp_types
from mcp import MCPError
from mcp.client import Transport
from mcp.client.subscriptions import SubscriptionLost, listen
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.backends.callbacks import client_callbacks
from gateway.backends.catalog import Catalog, list_catalog
from gateway.backends.connection import Connection, client_for
from gateway.backends.errors import (BackendRejected, BackendUnavailable, CallTimeout, GatewayBug,
                                     describe_exception)
from gateway.backends.family import stop_family
from gateway.backends.in_flight import InFlight
from gateway.backends.invocation import Ask, Invocation, Result
from gateway.backends.process import StderrTail, Started
from gateway.backends.stdio_link import StdioLink
from gateway.backends.transports import make_transport
from gateway.config import ServerSpec
from gateway.line_streams import UnreadableLines
from gateway.log_limit import LimitedLog

logger = logging.getLogger("gateway.backends")

MAX_BACKOFF = 30.0
# How often a down remote backend's port is tried (a TCP connect, nothing sent): cheap for a dead
# host and for a live one, and short enough that a backend that is back is used within a second.
PROBE_INTERVAL = 0.5
REFRESH_GAP = 0.2  # seconds between re-listings of one backend's components
STDERR_GRACE = 0.05  # for a dying process's last stderr lines to arrive before we quote them

# What a transport raises when the connection under it is gone. Anything else from a request is
# a fault of the gateway's own, which must not pass for a backend's death and restart it.
_CONNECTION_LOST = (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError)


class State(StrEnum):
    connecting = "connecting"
    ready = "ready"
    failed = "failed"  # never got ready since it was added
    down = "down"  # was ready, lost its connection; reconnects on the next call
    stopped = "stopped"


_LIST_CHANGED = (mcp_types.ToolListChangedNotification, mcp_types.ResourceListChangedNotification,
                 mcp_types.PromptListChangedNotification)

_MODES = {"auto": "auto", "2025-11-25": "legacy", "2026-07-28": "2026-07-28"}

class Backend:
    def __init__(self, name: str, spec: ServerSpec, *, call_timeout: float, connect_timeout: float,
                 on_change: Callable[[Backend], None], start_task: Callable[..., None],
                 runtime: bool = False, started: Started | None = None,
                 lone_client: Callable[[], Ask | None] = lambda: None,
                 on_resource_updated: Callable[[Backend, str], None] = lambda _backend, _uri: None) -> None:
        self.name = name
        self.spec = spec
        self.runtime = runtime
        self.call_timeout = spec.timeout or call_timeout
        self.connect_timeout = connect_timeout
        self.state = State.connecting
        self.last_error: str | None = None
        self.catalog = Catalog(name)
        self.in_flight = InFlight(name, lone_client)
        self._on_resource_updated = on_resource_updated
        self._unreadable = LimitedLog(logger, f"unreadable lines from server '{name}'")
        self.failures = 0
        self.retry_at = 0.0
        self.ever_ready = False
        self.sessions = 0  # sessions opened so far: a new one has forgotten the old one's subscriptions
        self.asked_for_roots = False  # it sent roots/list: tell it when a client's roots change
        self._on_change = on_change
        self._start_task = start_task  # a background task in the pool's task group
        self._connection: Connection | None = None
        self._transport: Transport | None = None
        self._lock = anyio.Lock()
        self._refreshing = anyio.Lock()
        self._refresh_pending = False  # a re-listing is queued and has not started
        self._refreshed_at = 0.0
        self._attempt = anyio.CancelScope()  # the running connect attempt's; removal cancels it
        self._restarted: anyio.Event | None = None  # set when the running (re)connect attempt ends
        self._probing = False  # a remote backend's probe task is running
        self._ahead = started.process if started else None  # a process started ahead, for the first session
        self.stderr = started.stderr if started else StderrTail(name) if spec.kind == "stdio" else None
        if self.stderr is not None:
            start_task(self.stderr.pump)

    # -- connection ---------------------------------------------------------------------------

    def _new_connection(self) -> Connection:
        async def on_message(message: Any) -> None:
            if isinstance(message, _LIST_CHANGED):
                self._refresh_soon()
            elif isinstance(message, mcp_types.ResourceUpdatedNotification):
                self._on_resource_updated(self, message.params.uri)
            elif isinstance(message, Exception):  # lines that are no JSON-RPC messages, say
                count, first = (message.count, message.first) if isinstance(message, UnreadableLines) else (1, message)
                self._unreadable.warning(count, "server '%s' sent %d unreadable line%s: %s", self.name, count,
                                         "" if count == 1 else "s, the first", str(first)[:300])

        process, self._ahead = self._ahead, None
        self._transport = make_transport(self.spec, self.stderr, process)
        # Tool calls pass their own timeout; this default bounds everything else (listing, resource
        # reads, prompts), which must not fail just because a server's call timeout is short.
        client = client_for(self._transport, self.name, mode=_MODES[self.spec.protocol],
                            read_timeout_seconds=max(self.call_timeout, self.connect_timeout),
                            logging_callback=self.in_flight.deliver_log, message_handler=on_message,
                            **client_callbacks(self.in_flight.ask, lambda: self.call_timeout, self._was_asked))
        return Connection(client, self._start_task)

    def _was_asked(self, method: str) -> None:
        self.asked_for_roots = self.asked_for_roots or method == "roots/list"

    async def connect(self) -> None:
        """Starts (or restarts) the session and lists the backend's components."""
        async with self._lock:
            if self.state is State.ready and self._alive():
                return
            if self.state is State.stopped:
                raise BackendUnavailable(f"server '{self.name}' was removed")
            if self.state is not State.connecting and time.monotonic() < self.retry_at:
                # an attempt that failed while this one waited for the lock: its backoff holds
                raise BackendUnavailable(f"server '{self.name}' {self.last_error}")
            await self._drop_connection()
            self.state = State.connecting
            if self.stderr is not None:
                self.stderr.clear()  # quote only this attempt's output if it fails
            connection = self._new_connection()
            self._attempt = anyio.CancelScope()
            try:
                with self._attempt, anyio.fail_after(self.connect_timeout):
                    await connection.open()
                    catalog = await list_catalog(self.name, connection.session)
            except Exception as exc:  # whatever a failing server or transport raises: the start failed
                if not isinstance(exc, (*_CONNECTION_LOST, TimeoutError, MCPError)):
                    logger.debug("server '%s': connecting raised", self.name, exc_info=True)
                with anyio.CancelScope(shield=True):
                    await self._close(connection)
                    await anyio.sleep(STDERR_GRACE)
                if self.state is State.stopped:  # removed meanwhile: nothing to record or retry
                    raise BackendUnavailable(f"server '{self.name}' was removed while it was connecting") from None
                self._record_failure(f"could not connect: {describe_exception(exc)}"
                                     + (" (connect timeout %gs)" % self.connect_timeout
                                        if isinstance(exc, TimeoutError) else ""))
                self._on_change(self)
                raise BackendUnavailable(f"server '{self.name}' {self.last_error}") from None
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._close(connection)
                raise
            if self.state is State.stopped:  # removed while connecting: nobody else would close it
                with anyio.CancelScope(shield=True):
                    await self._close(connection)
                raise BackendUnavailable(f"server '{self.name}' was removed while it was connecting")
            self._connection = connection
            self.catalog = catalog
            self.sessions += 1
            self.state = State.ready
            self._watch_lists(connection)
            self.failures = 0
            self.last_error = None
            self.ever_ready = True
        self._on_change(self)

    def _watch_lists(self, connection: Connection) -> None:
        """A 2026-07-28 backend tells of changed lists only on a listen stream: one is kept open on
        each of its sessions whose server says its lists change."""
        capabilities = connection.session.server_capabilities
        if self.protocol_version not in MODERN_PROTOCOL_VERSIONS or capabilities is None:
            return
        kinds = {"tools_list_changed": capabilities.tools, "prompts_list_changed": capabilities.prompts,
                 "resources_list_changed": capabilities.resources}
        wanted = {kind: True for kind, offered in kinds.items() if offered is not None and offered.list_changed}
        if wanted:
            self._start_task(lambda: self._listen(connection, wanted))

    async def watch_resource(self, uri: str) -> Callable[[], None]:
        """Updates of one resource of a 2026-07-28 backend, on a listen stream of its current session,
        until the returned function is called or the session ends. Returns once the backend has
        acknowledged the stream (or it failed), so no update after that is missed."""
        connection = self._connection
        scope = anyio.CancelScope()
        if connection is not None:
            acknowledged = anyio.Event()

            async def run() -> None:
                with scope:
                    await self._listen(connection, {"resource_subscriptions": [uri]}, acknowledged)

            self._start_task(run)
            await acknowledged.wait()
        return scope.cancel

    async def _listen(self, connection: Connection, wanted: dict[str, Any],
                      acknowledged: anyio.Event | None = None) -> None:
        """Holds a listen stream open. Its events reach the session's message handler too, which
        acts on them as on the same notifications of a handshake-era session."""
        try:
            async with listen(connection.session, **wanted) as stream:  # bounded by the session's read timeout
                if acknowledged is not None:
                    acknowledged.set()
                async for _event in stream:
                    pass
        except (*_CONNECTION_LOST, TimeoutError, MCPError, SubscriptionLost) as exc:
            if self._connection is connection:  # else the session is simply over
                logger.info("server '%s': its listen stream ended: %s", self.name, describe_exception(exc))
        finally:
            if acknowledged is not None:
                acknowledged.set()

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
        if self.spec.kind != "stdio" and not self._probing:
            self._probing = True
            self._start_task(self._probe)

    async def _probe(self) -> None:
        """While a remote backend is down or failed: its port is tried every PROBE_INTERVAL, and when
        it opens again (it was closed at the try before) the backoff is waived and the backend is
        reconnected at once. A port that stays open (a server that is up but failing) gets no more
        than the backoff's attempts. Stdio backends have no such probe: restarting a crashing
        process every second is wasteful, so they are restarted by calls, after the backoff."""
        address = _address(self.spec.url or "")
        try:
            was_open = await _accepts(address)
            while self.state in (State.down, State.failed):
                await anyio.sleep(PROBE_INTERVAL)
                is_open = await _accepts(address)
                if is_open and (not was_open or time.monotonic() >= self.retry_at):
                    self.retry_at = 0.0  # calls meanwhile join this attempt rather than being refused
                    await self.start_connecting().wait()
                was_open = is_open
        finally:
            self._probing = False

    def _refresh_soon(self) -> None:
        """One re-listing at a time, at most one per REFRESH_GAP, and one more for whatever changes
        arrive meanwhile: a backend that sends list_changed in a loop costs a few listings a second,
        not one per message."""
        if self._refresh_pending:
            return
        self._refresh_pending = True

        async def run() -> None:
            async with self._refreshing:
                await anyio.sleep(max(0.0, self._refreshed_at + REFRESH_GAP - time.monotonic()))
                self._refresh_pending = False
                await self.refresh()
                self._refreshed_at = time.monotonic()

        self._start_task(run)

    async def refresh(self) -> None:
        """Re-lists components after the backend said they changed."""
        connection = self._connection
        if connection is None or self.state is not State.ready:
            return
        try:
            with anyio.fail_after(self.connect_timeout):
                self.catalog = await list_catalog(self.name, connection.session)
        except (*_CONNECTION_LOST, TimeoutError, MCPError) as exc:
            logger.warning("server '%s': refreshing its tool list failed: %s", self.name, describe_exception(exc))
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
        # A connect attempt in progress ends now, and closes what it started before it lets go of
        # the lock: removal returns once the backend's processes are stopped.
        self._attempt.cancel()
        async with self._lock:
            await self._drop_connection()
        process, self._ahead = self._ahead, None
        if process is not None:  # started ahead for a session that never began
            await stop_family(process)
        if self.stderr is not None:
            self.stderr.close()
        self._unreadable.flush()

    async def restart(self) -> None:
        """An operator's restart: the session (and its process) is stopped and started again now,
        whatever its backoff. Raises BackendUnavailable when the new start fails."""
        async with self._lock:
            if self.state is State.stopped:
                raise BackendUnavailable(f"server '{self.name}' was removed")
            await self._drop_connection()
            self.state, self.retry_at = State.connecting, 0.0
        self._on_change(self)
        await self.connect()

    def start_connecting(self, *, log_failure: bool = False) -> anyio.Event:
        """Starts a (re)connect attempt in the pool's task group unless one is running; the event
        is set when the attempt ends. Every caller waiting for the backend waits for that one
        attempt, and none cuts it short."""
        if self._restarted is None:
            done = self._restarted = anyio.Event()

            async def attempt() -> None:
                try:
                    await self.connect()
                except BackendUnavailable as exc:  # recorded in last_error; the waiting callers report it
                    if log_failure and self.state is not State.stopped:  # a removal is no failure
                        logger.warning("%s", exc)
                finally:
                    self._restarted = None
                    done.set()

            self._start_task(attempt)
        return self._restarted

    async def ready_connection(self, wait: float | None = None) -> Connection:
        """The live session, waiting for a backend that is still connecting, and restarting one that
        is down once its backoff has passed.

        A (re)connect runs in the pool's task group; the caller waits for it at most `wait` seconds
        (its own timeout), so a slow start neither breaks the caller's bound nor is cut short by it.
        """
        if self.refresh_state() is State.ready and self._connection is not None:
            return self._connection
        if self.state is State.stopped:
            raise BackendUnavailable(f"server '{self.name}' was removed")
        if self.state is not State.connecting:
            remaining = self.retry_at - time.monotonic()
            if remaining > 0:
                probed = (f" (sooner if it comes back: its port is tried every {PROBE_INTERVAL:g}s)"
                          if self.spec.kind != "stdio" else "")
                raise BackendUnavailable(
                    f"server '{self.name}' is {self.state.value}: {self.last_error}. "
                    f"Next reconnect attempt in {remaining:.1f}s{probed}; other servers are unaffected.")
        attempt = self.start_connecting()
        bound = wait if wait is not None else self.connect_timeout
        with anyio.move_on_after(bound):
            await attempt.wait()
        if self.state is State.ready and self._connection is not None:
            return self._connection
        if self.state is State.connecting:
            raise CallTimeout(f"server '{self.name}' is still starting after {bound:g}s; try again shortly")
        if self.state is State.stopped:
            raise BackendUnavailable(f"server '{self.name}' was removed while it was connecting")
        raise BackendUnavailable(f"server '{self.name}' is {self.state.value}: {self.last_error}")

    @property
    def protocol_version(self) -> str | None:
        return self._connection.session.protocol_version if self._connection is not None else None

    @property
    def capabilities(self) -> mcp_types.ServerCapabilities | None:
        return self._connection.session.server_capabilities if self._connection is not None else None

    @property
    def takes_log_level(self) -> bool:
        """A handshake-era session whose server logs: the only kind with logging/setLevel."""
        capabilities = self.capabilities
        return (capabilities is not None and capabilities.logging is not None
                and self.protocol_version not in MODERN_PROTOCOL_VERSIONS)

    async def set_log_level(self, level: str) -> None:
        await self._notify_session(lambda session: session.set_logging_level(level), "logging/setLevel")

    async def roots_changed(self) -> None:
        await self._notify_session(lambda session: session.send_roots_list_changed(), "roots/list_changed")

    async def _notify_session(self, send: Callable[[Any], Any], what: str) -> None:
        connection = self._connection
        if connection is None or self.state is not State.ready:
            return
        try:
            with anyio.fail_after(self.connect_timeout), warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)  # both are handshake-era vocabulary
                await send(connection.session)
        except (*_CONNECTION_LOST, TimeoutError, MCPError) as exc:
            logger.info("server '%s': %s was not delivered: %s", self.name, what, describe_exception(exc))

    # -- requests -----------------------------------------------------------------------------

    async def request(self, invocation: Invocation) -> Result:
        """One request, its result as the backend sent it; failures raise a BackendError."""
        limit = invocation.timeout or self.call_timeout
        connection = await self.ready_connection(limit)  # a down backend says so before arguments are checked
        tool = invocation.tool
        if tool is not None:
            self.catalog.check_arguments(tool, invocation.params.get("arguments") or {})
        try:
            result = await self.in_flight.send(connection.session, invocation, limit)
        except MCPError as exc:
            if exc.error.code == mcp_types.REQUEST_TIMEOUT:
                raise CallTimeout(f"{invocation.what} on server '{self.name}' timed out after {limit:g}s (the "
                                  f"backend was told to cancel it). Retry with a larger 'timeout' if it needs more "
                                  f"time.") from None
            if exc.error.code != mcp_types.CONNECTION_CLOSED:
                raise BackendRejected(exc.error.code, f"server '{self.name}' rejected {invocation.what}: "
                                                      f"{exc.error.message}") from None
            await self._lost(connection, exc)
            raise self._lost_during(invocation.what) from None
        except _CONNECTION_LOST as exc:
            await self._lost(connection, exc)
            raise self._lost_during(invocation.what) from None
        except Exception:
            logger.exception("server '%s': %s failed inside the gateway", self.name, invocation.what)
            raise GatewayBug(f"{invocation.what} on server '{self.name}' failed inside the gateway (logged); "
                             f"the backend is unaffected") from None
        return result

    def _lost_during(self, what: str) -> BackendUnavailable:
        if self.state is State.stopped:
            return BackendUnavailable(f"server '{self.name}' was removed while {what} was in flight")
        return BackendUnavailable(f"server '{self.name}' lost its connection during {what}: {self.last_error}. "
                                  f"It is restarted on the next call.")

    async def _lost(self, connection: Connection, exc: BaseException) -> None:
        """A call found its session dead. Only that session is dropped, and the loss counted once:
        calls that were in flight on it fail one after another, maybe after a restart."""
        async with self._lock:
            if self._connection is not connection:
                return  # already dropped, or replaced by a restarted session
            with anyio.CancelScope(shield=True):
                await anyio.sleep(STDERR_GRACE)
            if self.state is State.ready:  # refresh_state may have counted this loss meanwhile
                self._record_failure(f"connection lost ({describe_exception(exc)})")
            await self._drop_connection()
        self._on_change(self)


def _address(url: str) -> tuple[str, int]:
    """(host, port) of a remote backend's URL, the scheme's port when it names none."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


async def _accepts(address: tuple[str, int]) -> bool:
    """Whether something accepts TCP connections there: connected and closed, nothing sent."""
    try:
        with anyio.fail_after(PROBE_INTERVAL):
            stream = await anyio.connect_tcp(*address)
    except (OSError, TimeoutError):
        return False
    await stream.aclose()
    return True
