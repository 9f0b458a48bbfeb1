"""One backend's requests in flight, and where the log messages its session receives belong.

A backend session is shared by every caller, and `notifications/message` carries no request id.
Where the wire still ties a message to a request, it goes to that request's caller: a
streamable-HTTP backend sends it on the request's own response stream, and mcp's HTTP client hands
it on in the context of the task that sent the request (its streams carry the sender's context),
so the request that task is sending is the one it belongs to. Where nothing ties it (stdio, SSE,
a message on the session's standalone stream), it goes to the only request in flight, and when
several are in flight, to the gateway's own log rather than to a guess.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

from mcp import ClientSession

from gateway import _compat
from gateway.backends.invocation import Invocation, LogMessage, Result

logger = logging.getLogger("gateway.backends")

_sending: ContextVar[Invocation | None] = ContextVar("gateway_sending", default=None)


class InFlight:
    def __init__(self, server: str) -> None:
        self.server = server
        self._requests: set[Invocation] = set()

    async def send(self, session: ClientSession, invocation: Invocation, timeout: float) -> Result:
        self._requests.add(invocation)
        token = _sending.set(invocation)
        try:
            return await _compat.send_raw_request(session, invocation.method, invocation.params, timeout=timeout,
                                                  progress=invocation.progress)
        finally:
            _sending.reset(token)
            self._requests.remove(invocation)

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
