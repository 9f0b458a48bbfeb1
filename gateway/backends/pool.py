"""The set of backends: start in the background, the one request entry, and the index of re-exported names."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio

from gateway.backends.backend import Backend, State
from gateway.backends.errors import BackendError, BackendUnavailable, RegistrationError, UnknownServer
from gateway.backends.family import keep_reaping
from gateway.backends.invocation import Ask, Interceptor, Invocation, Result, chain
from gateway.backends.process import Started
from gateway.backends.tool_rules import ToolRules
from gateway.config import GatewaySettings, ServerSpec
from gateway.names import build_index, check_server_name

logger = logging.getLogger("gateway.pool")

CLOSE_TIMEOUT = 5.0


class BackendPool:
    """Owns every backend session. Use as `async with BackendPool(settings) as pool:`."""

    def __init__(self, settings: GatewaySettings, reserved_names: Iterable[str] = (),
                 started: dict[str, Started] | None = None, interceptors: Sequence[Interceptor] = (),
                 tool_rules: ToolRules | None = None) -> None:
        self.settings = settings
        self.tool_rules = tool_rules or ToolRules()
        self._chain = chain(interceptors, self._request)
        # processes the CLI started ahead, taken over by their backend; the CLI stops any left
        self._started = dict(started or {})
        self.reserved_names = frozenset(reserved_names)
        self._backends: dict[str, Backend] = {}
        self._listeners: list[Callable[[], None]] = []
        self._stack = AsyncExitStack()
        self._tg: anyio.abc.TaskGroup | None = None
        # every backend tool by exported name, disabled ones included: a call to one is refused by
        # name (gateway.interceptors.tool_policy), not answered as an unknown tool
        self.tool_index: dict[str, tuple[str, str]] = {}
        self.prompt_index: dict[str, tuple[str, str]] = {}
        self.collisions: list[str] = []
        # Set by the front: the one handshake-era client a backend's roots/list may go to, when no
        # request ties it to one; and who hears of a backend's notifications/resources/updated.
        self.lone_client: Callable[[], Ask | None] = lambda: None
        self.on_resource_updated: Callable[[Backend, str], None] = lambda _backend, _uri: None

    async def __aenter__(self) -> BackendPool:
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._tg.start_soon(keep_reaping)  # orphans of the backends' children, when we adopt them
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await self.aclose()
        finally:
            assert self._tg is not None
            self._tg.cancel_scope.cancel()
            await self._stack.__aexit__(*exc_info)

    def start_task(self, fn: Callable[[], Any]) -> None:
        assert self._tg is not None, "the pool is not running"
        self._tg.start_soon(fn)

    # -- membership ---------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._backends

    def names(self) -> list[str]:
        return sorted(self._backends)

    def backends(self) -> list[Backend]:
        return [self._backends[name] for name in self.names()]

    def get(self, name: str) -> Backend:
        backend = self._backends.get(name)
        if backend is None:
            known = ", ".join(self.names()) or "none registered"
            raise UnknownServer(f"unknown server '{name}'. Known servers: {known}")
        return backend

    async def add(self, name: str, spec: ServerSpec, *, must_connect: bool, runtime: bool = False) -> Backend:
        """Adds and connects a backend.

        With `must_connect` (a client registering it) a backend that cannot connect is not kept, so
        nothing is ever half-registered; otherwise (config or state file) it stays, shown as failed.
        `runtime` marks backends that belong in the state file.
        """
        backend = self._claim(name, spec, runtime=runtime)
        try:
            await backend.connect()
        except BackendUnavailable as exc:
            if must_connect:
                await self._discard(name, backend)
                raise RegistrationError(str(exc)) from None
            logger.warning("%s", exc)
        except BaseException:
            await self._discard(name, backend)
            raise
        return backend

    def _claim(self, name: str, spec: ServerSpec, *, runtime: bool) -> Backend:
        """A new backend under `name`, listed (as connecting) from now on; not yet connected."""
        problem = check_server_name(name, self.settings.separator)
        if problem:
            raise RegistrationError(f"server name '{name}' {problem}")
        if name in self._backends:
            raise RegistrationError(f"a server named '{name}' already exists; remove it first or "
                                    f"choose another name")
        backend = Backend(name, spec, call_timeout=self.settings.call_timeout,
                          connect_timeout=self.settings.connect_timeout,
                          on_change=self._changed, start_task=self.start_task, runtime=runtime,
                          started=None if runtime else self._started.pop(name, None),
                          lone_client=lambda: self.lone_client(),
                          on_resource_updated=lambda backend, uri: self.on_resource_updated(backend, uri))
        self._backends[name] = backend  # claims the name at once; visible as "connecting"
        return backend

    def start_soon(self, specs: Mapping[str, ServerSpec], runtime: Mapping[str, ServerSpec] = {}
                   ) -> list[anyio.Event]:
        """Starts every enabled backend in the background and returns at once, so that the gateway
        serves while they start and a backend that never gets ready holds up nobody. Each is listed
        (as connecting) from now on; a call to one waits for it within the call's timeout, and its
        tools appear when it is ready. The events are set as the backends' first attempts end."""
        attempts: list[anyio.Event] = []
        entries = [*((n, s, False) for n, s in specs.items() if s.active),
                   *((n, s, True) for n, s in runtime.items())]
        for name, spec, is_runtime in entries:
            try:
                backend = self._claim(name, spec, runtime=is_runtime)
            except RegistrationError as exc:
                logger.error("%s", exc)
                continue
            attempts.append(backend.start_connecting(log_failure=True))
        return attempts

    async def start_all(self, specs: Mapping[str, ServerSpec], runtime: Mapping[str, ServerSpec] = {}) -> None:
        """`start_soon`, then waits until every backend is ready or has failed (for `gateway validate`,
        which checks pipelines against what the backends offer)."""
        for attempt in self.start_soon(specs, runtime):
            await attempt.wait()

    async def wait_for_exporter(self, exported: str) -> bool:
        """For a `<server><sep><name>` tool or prompt name that is not (yet) exported: waits, within
        its call timeout, for each backend still connecting whose name that could be (the name is
        only matched by its prefix; the index decides what it means). False when there is none."""
        if exported in self.reserved_names:  # the gateway's own tools, whatever a server is called
            return False
        prefix_of = exported.startswith
        starting = [b for b in self._backends.values()
                    if b.state is State.connecting and prefix_of(b.name + self.settings.separator)]
        for backend in starting:
            try:
                await backend.ready_connection(backend.call_timeout)
            except BackendError:
                pass  # still unknown: the caller answers as for any unknown name
        return bool(starting)

    async def remove(self, name: str) -> None:
        backend = self.get(name)
        await self._discard(name, backend)

    async def _discard(self, name: str, backend: Backend) -> None:
        if self._backends.get(name) is backend:
            del self._backends[name]
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
            await backend.aclose()
        self._changed(backend)

    async def aclose(self) -> None:
        backends, self._backends = list(self._backends.values()), {}
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
            async with anyio.create_task_group() as tg:
                for backend in backends:
                    tg.start_soon(backend.aclose)

    # -- requests -----------------------------------------------------------------------------

    async def invoke(self, invocation: Invocation) -> Result:
        """The one entry for every request to a backend, through the interceptors: the backend's
        result as it came, or a BackendError whose text is meant for the caller."""
        return await self._chain(invocation)

    async def _request(self, invocation: Invocation) -> Result:
        return await self.get(invocation.server).request(invocation)

    # -- change events ------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def tools_changed(self) -> None:
        """The operator changed which tools are offered, or how: the index is rebuilt and every
        listener told."""
        self._changed(None)

    def _changed(self, _backend: Backend | None) -> None:
        ready = [b.catalog for b in self._backends.values() if b.catalog.tools or b.catalog.prompts]
        sep = self.settings.separator
        self.tool_index, tool_collisions = build_index(
            ((c.server, t) for c in ready for t in c.tools), sep, self.reserved_names, self.tool_rules.name)
        self.prompt_index, prompt_collisions = build_index(
            ((c.server, p.name) for c in ready for p in c.prompts), sep)
        for message in set(tool_collisions + prompt_collisions) - set(self.collisions):
            logger.warning("name collision: %s", message)
        self.collisions = tool_collisions + prompt_collisions
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # a listener's bug must not end the pool's task group, and the gateway with it
                logger.exception("a listener of backend changes failed")
