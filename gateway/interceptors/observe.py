"""Every backend request, on every road, as one record when it ends: for the audit trail and metrics.

Outermost in the chain, so refusals by later interceptors (a disabled tool, a result too large)
are recorded too; their texts are already redacted by the time they pass here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from gateway.backends.errors import BackendError, CallTimeout
from gateway.backends.invocation import CallNext, Invocation, Result, Road
from gateway.sizes import size_of


@dataclass(slots=True)
class CallRecord:
    started: float  # wall-clock time, seconds since the epoch
    caller: str
    client: str | None
    road: Road
    server: str
    method: str
    target: str | None  # the tool, prompt or resource URI, as the backend knows it
    duration: float = 0.0  # seconds
    outcome: str = "ok"  # ok | error (the tool said so) | failed | timeout | cancelled | input_required
    error: str | None = None
    arguments: dict[str, Any] | None = None  # a tool call's; listeners look at them, none keeps them
    profile: str | None = None  # the profile the request came by


class CallListener(Protocol):
    def started(self, invocation: Invocation) -> None: ...

    def finished(self, record: CallRecord) -> None: ...


class Observe:
    def __init__(self, listeners: Sequence[CallListener] = ()) -> None:
        # set once the listeners exist: metrics read the pool, which is made with this chain
        self.listeners = tuple(listeners)

    async def __call__(self, invocation: Invocation, call_next: CallNext) -> Result:
        for listener in self.listeners:
            listener.started(invocation)
        began, wall = time.perf_counter(), time.time()
        outcome, error = "ok", None
        try:
            result = await call_next(invocation)
            if result.get("isError"):
                outcome, error = "error", _first_text(result)
            elif result.get("resultType") == "input_required":
                outcome = "input_required"
            return result
        except CallTimeout as exc:
            outcome, error = "timeout", str(exc)
            raise
        except BackendError as exc:
            outcome, error = "failed", str(exc)
            raise
        except anyio.get_cancelled_exc_class():
            outcome = "cancelled"
            raise
        except Exception as exc:  # a bug further in: still a request that ended
            outcome, error = "failed", type(exc).__name__
            raise
        finally:
            caller = invocation.caller
            params = invocation.params
            record = CallRecord(wall, caller.identity if caller else "gateway", caller.client if caller else None,
                                invocation.road, invocation.server, invocation.method,
                                params.get("name") or params.get("uri"), time.perf_counter() - began,
                                outcome, error, params.get("arguments") if isinstance(params.get("arguments"), dict)
                                else None, caller.profile if caller else None)
            for listener in self.listeners:
                listener.finished(record)
            record.arguments = None


def _first_text(result: Result) -> str | None:
    for block in result.get("content") or ():
        if isinstance(block, dict) and isinstance(text := block.get("text"), str):
            return text[:500]
    return None


def argument_summary(arguments: dict[str, Any] | None) -> tuple[list[str], int]:
    """The argument names and about how many bytes their values take, without the values."""
    if not arguments:
        return [], 0
    return sorted(arguments), size_of(arguments, 1 << 24)
