"""Clients' subscriptions to backends' resources: a handshake-era client's `resources/subscribe`,
or a 2026-07-28 client's listen stream (gateway/listen.py).

A backend session is shared, so the gateway subscribes to a backend's resource once, for the first
client that asks, and unsubscribes when the last one unsubscribes or leaves. A backend's
`notifications/resources/updated` goes, under the namespaced URI, to the clients subscribed to that
resource and nobody else. A backend that restarts has forgotten its subscriptions: the gateway
subscribes again on its new session.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import anyio
import mcp_types
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.backends.backend import Backend, State
from gateway.backends.errors import BackendError, BackendRejected
from gateway.backends.invocation import Invocation, Road
from gateway.backends.pool import BackendPool
from gateway.names import namespace_uri

logger = logging.getLogger("gateway.subscriptions")

MAX_PER_CLIENT = 1000

Key = tuple[str, str]  # (server, the backend's own URI)


class Subscriptions:
    def __init__(self, pool: BackendPool) -> None:
        self._pool = pool
        self.also_tell: Callable[[str], None] = lambda _uri: None  # told once of each update, namespaced
        self._clients: dict[Key, set[Any]] = defaultdict(set)  # mcp Connections subscribed to each resource
        self._of_client: dict[Any, set[Key]] = {}
        self._subscribed_on: dict[str, int] = {}  # server -> the backend session its subscriptions are on
        self._watches: dict[Key, Callable[[], None]] = {}  # a 2026-07-28 backend's listen streams, to stop
        self._lock = anyio.Lock()  # subscribe/unsubscribe to backends in order
        pool.on_resource_updated = self._updated
        pool.subscribe(self._backends_changed)

    async def subscribe(self, connection: Any, uri: str, invocation: Invocation) -> None:
        key = (invocation.server, invocation.params["uri"])
        backend = self._pool.get(invocation.server)
        await backend.ready_connection(backend.call_timeout)
        resources = backend.capabilities.resources if backend.capabilities else None
        if resources is None or not resources.subscribe:  # a 2026-07-28 server's: it serves listen streams
            raise BackendRejected(mcp_types.METHOD_NOT_FOUND, f"server '{invocation.server}' does not support "
                                                              f"resource subscriptions, so '{uri}' cannot be "
                                                              f"subscribed to")
        mine = self._of_client.get(connection)
        if mine is None:
            mine = self._of_client[connection] = set()
            connection.exit_stack.push_async_callback(self._left, connection)
        if key in mine:
            return
        if len(mine) >= MAX_PER_CLIENT:
            raise BackendError(f"a client may hold at most {MAX_PER_CLIENT} subscriptions")
        async with self._lock:
            if not self._clients.get(key):
                await self._on_backend(backend, invocation)
                self._subscribed_on[key[0]] = backend.sessions
            self._clients[key].add(connection)
            mine.add(key)

    async def unsubscribe(self, connection: Any, invocation: Invocation) -> None:
        await self._drop(connection, (invocation.server, invocation.params["uri"]))

    async def _drop(self, connection: Any, key: Key) -> None:
        async with self._lock:
            self._of_client.get(connection, set()).discard(key)
            clients = self._clients.get(key)
            if clients is None or connection not in clients:
                return
            clients.discard(connection)
            if clients:
                return
            del self._clients[key]
        stop = self._watches.pop(key, None)
        if stop is not None:
            stop()
            return
        try:
            await self._pool.invoke(Invocation(Road.subscription, key[0], "resources/unsubscribe", {"uri": key[1]}))
        except BackendError as exc:  # the backend is gone or restarted: nothing left to undo
            logger.debug("unsubscribing from %s: %s", key, exc)

    async def _on_backend(self, backend: Backend, invocation: Invocation) -> None:
        """Subscribes the backend: by `resources/subscribe` in the handshake era, by a listen stream
        of its own in 2026-07-28, which has no such request."""
        if not _modern(backend):
            await self._pool.invoke(invocation)
            return
        key = (backend.name, invocation.params["uri"])
        stop = self._watches.pop(key, None)
        if stop is not None:
            stop()
        self._watches[key] = await backend.watch_resource(key[1])

    async def _left(self, connection: Any) -> None:
        for key in list(self._of_client.get(connection, ())):
            await self._drop(connection, key)
        self._of_client.pop(connection, None)

    def _updated(self, backend: Backend, uri: str) -> None:
        clients = list(self._clients.get((backend.name, uri), ()))
        if clients:
            shown = namespace_uri(backend.name, uri)
            self._pool.start_task(lambda: _tell(clients, shown))
            self.also_tell(shown)

    def _backends_changed(self) -> None:
        for backend in self._pool.backends():
            on = self._subscribed_on.get(backend.name)
            if on is not None and backend.sessions != on and backend.state is State.ready:
                self._subscribed_on[backend.name] = backend.sessions
                self._pool.start_task(lambda name=backend.name: self._resubscribe(name))

    async def _resubscribe(self, server: str) -> None:
        for key in [key for key, clients in self._clients.items() if key[0] == server and clients]:
            try:
                await self._on_backend(self._pool.get(server), Invocation(Road.subscription, server,
                                                                          "resources/subscribe", {"uri": key[1]}))
            except BackendError as exc:
                logger.warning("server '%s' restarted and could not be subscribed to '%s' again: %s",
                               server, key[1], exc)


def _modern(backend: Backend) -> bool:
    return backend.protocol_version in MODERN_PROTOCOL_VERSIONS


async def _tell(clients: list[Any], uri: str) -> None:
    for connection in clients:
        try:
            await connection.send_resource_updated(uri)
        except Exception as exc:  # a closing connection must not stop the others
            logger.debug("could not tell a client of an updated resource: %s", exc)
