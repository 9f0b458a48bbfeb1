"""The callbacks a backend session answers its server's requests of a client with.

Every backend is told the gateway can answer sampling, elicitation and roots: the gateway answers
each such request by asking the client whose request caused it (see in_flight.py), and refuses it,
at once, for a client that cannot answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types
from mcp import MCPError
from pydantic import TypeAdapter, ValidationError

from gateway.backends.invocation import Result

_CALLBACKS = {"sampling_callback": "sampling/createMessage", "elicitation_callback": "elicitation/create",
              "list_roots_callback": "roots/list"}
_ANSWERS: dict[str, Any] = {
    "sampling/createMessage": mcp_types.CreateMessageResult | mcp_types.CreateMessageResultWithTools,
    "elicitation/create": mcp_types.ElicitResult, "roots/list": mcp_types.ListRootsResult}


def client_callbacks(ask: Callable[[str, dict[str, Any]], Awaitable[Result]], timeout: Callable[[], float],
                     asked: Callable[[str], None]) -> dict[str, Callable[..., Any]]:
    """mcp `Client` options: each kind of request goes to `ask`, within `timeout()` seconds; `asked`
    hears of each request made."""
    return {option: _callback(method, ask, timeout, asked) for option, method in _CALLBACKS.items()}


def _callback(method: str, ask: Callable[[str, dict[str, Any]], Awaitable[Result]], timeout: Callable[[], float],
              asked: Callable[[str], None]) -> Callable[..., Any]:
    answer = TypeAdapter(_ANSWERS[method])

    async def callback(_context: Any, params: Any = None) -> Any:  # roots/list comes without params
        asked(method)
        raw = params.model_dump(by_alias=True, mode="json", exclude_none=True) if params is not None else {}
        try:
            with anyio.fail_after(timeout()):
                return answer.validate_python(await ask(method, raw), by_name=False)
        except MCPError as exc:
            return exc.error
        except TimeoutError:
            return mcp_types.ErrorData(code=mcp_types.REQUEST_TIMEOUT, message=f"the client did not answer {method} "
                                                                               f"in time")
        except ValidationError:
            return mcp_types.ErrorData(code=mcp_types.INTERNAL_ERROR,
                                       message=f"the client's answer to {method} is not a valid result")

    return callback
