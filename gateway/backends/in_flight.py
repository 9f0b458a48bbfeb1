"""One backend's requests in flight, and where the log messages and requests its session receives
belong.

A backend session is shared by every caller, and neither `notifications/message` nor a request of
the backend's (sampling, elicitation, roots) names the request it is about. Where the wire still
ties one to a request, it goes to that request's caller: a streamable-HTTP backend sends it on the
request's own response stream, and mcp's HTTP client hands it on in the context of the task that
sent the request (its streams carry the sender's context), so the request that task is sending is
the one it belongs to. Where nothing ties it (stdio, SSE, the session's standalone stream), it goes
to the only request in flight; a request of the backend's also goes to the client whose requests
all the ones in flight are. Otherwise a log message goes to the gateway's own log rather than to a
guess, and a request is refused, except roots/list, which goes to the one client `lone_client`
names when there is one (roots belong to a client, not to a request).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import anyio
import mcp_types
from mcp import ClientSession, MCPError

from gateway import _compat
from gateway.backends.invocation import Ask, Invocation, LogMessage, Result

logger = logging.getLogger("gateway.backends")

_sending: ContextVar[Invocation | None] = ContextVar("gateway_sending", default=None)


class InFlight:
    def __init__(self, server: str, lone_client: Callable[[], Ask | None] = lambda: None) -> None:
        self.server = server
        self._requests: dict[Invocation, float] = {}  # each request's deadline, on the monotonic clock
        self._lone_client = lone_client

    async def send(self, session: ClientSession, invocation: Invocation, timeout: float) -> Result:
        self._requests[invocation] = time.monotonic() + timeout
        token = _sending.set(invocation)
        try:
            return await _compat.send_raw_request(session, invocation.method, invocation.params, timeout=timeout,
                                                  progress=invocation.progress,
                                                  client_capabilities=invocation.client_capabilities)
        finally:
            _sending.reset(token)
            del self._requests[invocation]

    def owner(self) -> Invocation | None:
        """The request a log message received now belongs to, or None when that cannot be known."""
        sending = _sending.get()
        if sending is not None:  # tied to its request by the wire; that request may be over
            return sending if sending in self._requests else None
        return next(iter(self._requests)) if len(self._requests) == 1 else None

    async def deliver_log(self, message: LogMessage) -> None:
        owner = self.owner()
        if owner is not None and owner.log is not None:
            # named after the backend unless it named itself, so a client can tell where it came from
            await owner.log(message if message.logger else message.model_copy(update={"logger": self.server}))
        else:
            logger.info("[%s] %s: %s", self.server, message.level, message.data)

    async def ask(self, method: str, params: dict[str, Any]) -> Result:
        """A request of the backend's, answered by the client it belongs to (see the module's text),
        within the deadline of the request it came during. Raises MCPError when nobody can answer."""
        owner = self.owner()
        if owner is None and _sending.get() is None and self._requests:
            clients = {id(invocation.client) for invocation in self._requests}
            if len(clients) == 1 and next(iter(self._requests)).client is not None:
                # several requests, all of one client: any of them will do
                owner = max(self._requests, key=self._requests.__getitem__)
        if owner is not None:
            if owner.ask is None:
                raise MCPError(code=mcp_types.INVALID_REQUEST,
                               message=f"{method} cannot be answered: the request it came during ({owner.what}) "
                                       f"has no client that can be asked")
            with anyio.fail_after(max(0.0, self._requests.get(owner, 0.0) - time.monotonic())):
                return await owner.ask(method, params)
        lone = self._lone_client() if method == "roots/list" else None
        if lone is None:
            why = ("several clients' requests are in flight and nothing tells which one it is about"
                   if self._requests else "it came outside any request of a client")
            raise MCPError(code=mcp_types.INVALID_REQUEST, message=f"{method} cannot be answered: {why}")
        return await lone(method, params)
