"""A 2026-07-28 backend's `input_required` result, for a caller that cannot take one.

Such a backend does not send requests of its own: it answers with the requests it needs answered
(sampling, elicitation, roots) and an opaque state, and expects the same request again carrying the
answers. A 2026-07-28 client takes that result as it is; for anyone else (a handshake-era client,
a pipeline step) the gateway asks the caller's client each request, as the backend would have over
a handshake-era session, and retries with the answers, for at most MAX_ROUNDS rounds.
"""

from __future__ import annotations

import anyio
from mcp import MCPError

from gateway.backends.errors import BackendError
from gateway.backends.invocation import Ask, CallNext, Invocation, Result

MAX_ROUNDS = 10
STATE_ONLY_WAIT = 0.05  # a result with state and no requests: the backend is busy; ask again shortly


class InputRequired:
    async def __call__(self, invocation: Invocation, call_next: CallNext) -> Result:
        result = await call_next(invocation)
        rounds = 0
        while result.get("resultType") == "input_required" and not invocation.takes_input_required:
            rounds += 1
            if rounds > MAX_ROUNDS:
                raise BackendError(f"server '{invocation.server}' still asked for input after {MAX_ROUNDS} rounds of "
                                   f"answers to {invocation.what}; giving up")
            requests = result.get("inputRequests") or {}
            if not isinstance(requests, dict):
                raise BackendError(f"server '{invocation.server}' asked for input for {invocation.what} in a malformed "
                                   f"result")
            if requests and invocation.ask is None:
                raise BackendError(f"server '{invocation.server}' needs input for {invocation.what} (it asks for "
                                   f"{_methods(requests)}), and this caller cannot be asked")
            answers = await _answers(invocation.server, invocation.ask, requests) if requests else None
            if answers is None:
                await anyio.sleep(STATE_ONLY_WAIT)
            params = {**invocation.params, "inputResponses": answers, "requestState": result.get("requestState")}
            invocation.params = {key: value for key, value in params.items() if value is not None}
            result = await call_next(invocation)
        return result


async def _answers(server: str, ask: Ask | None, requests: dict[str, object]) -> dict[str, Result]:
    """Every request asked of the client at once; the first refusal ends them all."""
    assert ask is not None
    answers: dict[str, Result] = {}

    async def one(key: str, request: object) -> None:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            raise BackendError(f"server '{server}' asked for input with a malformed request '{key}'")
        try:
            answers[key] = await ask(request["method"], request.get("params") or {})
        except MCPError as exc:
            raise BackendError(f"server '{server}' asked the client for input ({request['method']}), and the "
                               f"client could not answer: {exc.error.message}") from None

    try:
        async with anyio.create_task_group() as tg:
            for key, request in requests.items():
                tg.start_soon(one, key, request)
    except* BackendError as group:
        raise group.exceptions[0] from None
    return answers


def _methods(requests: dict[str, object]) -> str:
    return ", ".join(sorted({str(r.get("method")) for r in requests.values() if isinstance(r, dict)}))
