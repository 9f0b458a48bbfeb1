"""`subscriptions/listen` for 2026-07-28 clients: the era's one channel for what changes.

Such a client has no standing channel; it opens a listen stream naming what it wants to hear of.
The gateway serves it with mcp's own handler, fed from one event bus: list changes of tools,
prompts and resources (as handshake-era clients are told of them), and updates of the resources a
stream names, for which the gateway subscribes to the backends as it does for a handshake-era
client's `resources/subscribe`, for as long as the stream is open.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import (InMemorySubscriptionBus, ListenHandler, PromptsListChanged,
                                      ResourcesListChanged, ResourceUpdated, ServerEvent, ToolsListChanged)
from mcp_types import SubscriptionsListenRequestParams, SubscriptionsListenResult

from gateway.backends.errors import BackendError
from gateway.backends.invocation import Invocation, Road
from gateway.backends.pool import BackendPool
from gateway.names import split_uri
from gateway.subscriptions import Subscriptions

logger = logging.getLogger("gateway.listen")

_LIST_EVENTS: dict[str, ServerEvent] = {"tools": ToolsListChanged(), "prompts": PromptsListChanged(),
                                        "resources": ResourcesListChanged()}


class _Stream:
    """A listen stream, as a subscriber of backends' resources: its updates go out on the bus."""

    def __init__(self) -> None:
        self.exit_stack = AsyncExitStack()

    async def send_resource_updated(self, uri: str) -> None:
        pass  # published once on the bus, for every stream that named the URI (see `updated`)


class Listening:
    def __init__(self, pool: BackendPool, subscriptions: Subscriptions) -> None:
        self._pool = pool
        self._subscriptions = subscriptions
        self._bus = InMemorySubscriptionBus()
        self._handler = ListenHandler(self._bus)

    async def __call__(self, ctx: ServerRequestContext[Any, Any],
                       params: SubscriptionsListenRequestParams) -> SubscriptionsListenResult:
        stream = _Stream()
        try:
            for uri in params.notifications.resource_subscriptions or ():
                await self._subscribe(stream, uri)
            return await self._handler(ctx, params)
        finally:
            with anyio.CancelScope(shield=True):
                await stream.exit_stack.aclose()

    async def _subscribe(self, stream: _Stream, uri: str) -> None:
        """A URI that names no backend's resource, or one whose backend cannot subscribe, is
        honored and never fires, as the protocol has it for a resource that does not exist."""
        target = split_uri(uri)
        if target is None or target[0] not in self._pool:
            return
        invocation = Invocation(Road.subscription, target[0], "resources/subscribe", {"uri": target[1]})
        try:
            await self._subscriptions.subscribe(stream, uri, invocation)
        except BackendError as exc:
            logger.info("a listen stream names '%s', which gets no updates: %s", uri, exc)

    def lists_changed(self, kinds: frozenset[str]) -> None:
        for kind in kinds:
            self._publish(_LIST_EVENTS[kind])

    def updated(self, uri: str) -> None:
        self._publish(ResourceUpdated(uri=uri))

    def _publish(self, event: ServerEvent) -> None:
        try:
            self._pool.start_task(lambda: self._bus.publish(event))
        except RuntimeError:  # shutting down: nobody left to tell
            pass
