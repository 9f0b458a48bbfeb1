"""Requests of a handshake-era backend, asked of a 2026-07-28 client.

A 2026-07-28 client cannot be sent a request: a server that needs input answers with an
`input_required` result (the requests, and an opaque state) and gets the same request again with
the answers. A handshake-era backend, though, sends its request in the middle of its work and
waits. So for such a client the gateway runs the backend request in the background as an
`Exchange`: when the backend asks, the client gets an `input_required` result whose state names
the exchange; its retry carries the answers to the waiting backend, and gets the next question or
the final result. An exchange lives no longer than the request's timeout; its state is a random
name known only to the client it was given to, and a retry must be the same request (method and
target) as the one that started it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types
from mcp import MCPError

from gateway.backends.invocation import Result

STATE_PREFIX = "mcp-gateway/exchange:"
MAX_EXCHANGES = 1000  # unfinished at once, across every client
MAX_QUESTIONS = 16  # unanswered requests of one backend request


@dataclass(eq=False)
class _Question:
    method: str
    params: dict[str, Any]
    sent: bool = False
    answer: Result | MCPError | None = None
    answered: anyio.Event = field(default_factory=anyio.Event)


class Exchange:
    def __init__(self, state: str, target: tuple[str, ...], deadline: float) -> None:
        self.state = state
        self.target = target
        self.deadline = deadline
        self.scope = anyio.CancelScope(deadline=anyio.current_time() + max(0.0, deadline - time.monotonic()))
        self._questions: dict[str, _Question] = {}
        self._asked = 0
        self._news = anyio.Event()  # a new question, or the end
        self._turn = anyio.Lock()  # one retry at a time speaks for the client
        self.outcome: Result | BaseException | None = None

    async def ask(self, method: str, params: dict[str, Any]) -> Result:
        """What the backend's request becomes: a question the client's next retry will answer."""
        if len(self._questions) >= MAX_QUESTIONS:
            raise MCPError(code=mcp_types.INVALID_REQUEST, message=f"more than {MAX_QUESTIONS} unanswered requests")
        self._asked += 1
        key = f"q{self._asked}"
        question = self._questions[key] = _Question(method, params)
        self._news.set()
        try:
            await question.answered.wait()
        finally:
            del self._questions[key]
        if isinstance(question.answer, MCPError):
            raise question.answer
        assert question.answer is not None
        return question.answer

    def finish(self, outcome: Result | BaseException) -> None:
        """The backend request is over; a question it left open (its request timed out) is refused."""
        self.outcome = outcome
        for question in self._questions.values():
            if not question.answered.is_set():
                question.answer = MCPError(code=mcp_types.REQUEST_TIMEOUT, message="the request it came during ended")
                question.answered.set()
        self._news.set()

    def answer(self, responses: Any) -> None:
        """The client's retry: its answers to the questions it was sent. One it left out is refused."""
        responses = responses if isinstance(responses, dict) else {}
        for key, question in list(self._questions.items()):
            if not question.sent or question.answered.is_set():
                continue
            reply = responses.get(key)
            question.answer = reply if isinstance(reply, dict) else MCPError(
                code=mcp_types.INVALID_REQUEST, message=f"the client's retry carried no answer to {question.method}")
            question.answered.set()

    async def next_step(self) -> Result:
        """The final result, or an `input_required` result with the questions not yet sent."""
        async with self._turn:
            while True:
                if self.outcome is not None:
                    if isinstance(self.outcome, BaseException):
                        raise self.outcome
                    return self.outcome
                unsent = {key: q for key, q in self._questions.items() if not q.sent}
                if unsent:
                    for question in unsent.values():
                        question.sent = True
                    return {"resultType": "input_required", "requestState": self.state,
                            "inputRequests": {key: {"method": q.method, "params": q.params}
                                              for key, q in unsent.items()}}
                self._news = anyio.Event()
                with anyio.move_on_after(max(0.0, self.deadline - time.monotonic())):
                    await self._news.wait()
                    continue
                raise MCPError(code=mcp_types.REQUEST_TIMEOUT, message="the request timed out while waiting for "
                                                                      "the backend")


class Exchanges:
    """The unfinished exchanges; their backend requests run in `start_task`'s task group."""

    def __init__(self, start_task: Callable[[Callable[[], Awaitable[None]]], None]) -> None:
        self._start_task = start_task
        self._open: dict[str, Exchange] = {}

    @staticmethod
    def is_ours(state: Any) -> bool:
        return isinstance(state, str) and state.startswith(STATE_PREFIX)

    def begin(self, target: tuple[str, ...], timeout: float,
              run: Callable[[Exchange], Awaitable[Result]]) -> Exchange:
        if len(self._open) >= MAX_EXCHANGES:
            raise MCPError(code=mcp_types.INTERNAL_ERROR, message=f"the gateway has {MAX_EXCHANGES} requests waiting "
                                                                  f"for clients' answers; try again shortly")
        state = STATE_PREFIX + secrets.token_urlsafe(24)
        exchange = self._open[state] = Exchange(state, target, time.monotonic() + timeout)

        async def background() -> None:
            outcome: Result | BaseException = MCPError(code=mcp_types.INTERNAL_ERROR, message="the gateway is stopping")
            try:
                with exchange.scope:
                    outcome = await run(exchange)
                if exchange.scope.cancelled_caught:
                    outcome = MCPError(code=mcp_types.REQUEST_TIMEOUT,
                                       message=f"the request timed out after {timeout:g}s waiting for answers")
            except Exception as exc:  # handed to the client's waiting request, which reports it
                outcome = exc
            finally:
                del self._open[state]
                exchange.finish(outcome)

        self._start_task(background)
        return exchange

    def resume(self, state: str, target: tuple[str, ...], responses: Any) -> Exchange:
        exchange = self._open.get(state)
        if exchange is None or exchange.target != target:
            raise MCPError(code=mcp_types.INVALID_PARAMS,
                           message="the requestState names no unfinished request of this kind (it may have timed "
                                   "out); send the request again without requestState and inputResponses")
        exchange.answer(responses)
        return exchange
