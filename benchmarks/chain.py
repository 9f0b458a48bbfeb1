"""What the interceptor chain costs per request: `BackendPool.invoke` with the default interceptors
(tool policy, redaction, input-required, size limit; and with the audit trail and metrics on top)
against the same request handed straight to the backend, in process.

    .venv/bin/python benchmarks/chain.py [--calls 200000] [--rounds 5]

The backend end is a function returning a fixed echo result, so the difference between the two
timings is the chain alone: building nothing per call but the interceptors' own work (wrapping the
log sink for redaction, sizing the result). Reported per call, median over rounds; the target is
under 20 µs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from gateway.audit import AuditTrail
from gateway.backends.invocation import Invocation, Road, chain
from gateway.backends.pool import BackendPool
from gateway.backends.tool_rules import ToolRules
from gateway.config import GatewaySettings
from gateway.interceptors import build_interceptors
from gateway.interceptors.observe import Observe
from gateway.metrics import Metrics
from gateway.policy import Redactor

RESULT = {"content": [{"type": "text", "text": "hello"}], "structuredContent": {"result": "hello"}, "isError": False}


async def backend(_invocation: Invocation) -> dict:
    return RESULT


async def discard_log(_message: object) -> None:
    pass


async def per_call(call, calls: int) -> float:
    params = {"name": "echo", "arguments": {"text": "hello"}}
    started = time.perf_counter()
    for _ in range(calls):
        await call(Invocation(Road.tool, "bench", "tools/call", params, log=discard_log))
    return (time.perf_counter() - started) / calls


async def main(calls: int, rounds: int) -> None:
    redact = Redactor()
    redact.add(["a-secret-token-0001", "another-secret-0002", "Bearer header-value-03"])
    settings = GatewaySettings()
    plain = chain(build_interceptors(settings.model_copy(update={"metrics": False, "audit": settings.audit.model_copy(
        update={"enabled": False})}), redact, ToolRules()), backend)
    observe = Observe()
    observed = chain(build_interceptors(settings, redact, ToolRules(), observe), backend)
    audit = AuditTrail(settings.audit, None, redact)
    observe.listeners = (audit, Metrics(BackendPool(settings), lambda _name: False))
    overheads: dict[str, list[float]] = {"chain": [], "audit and metrics": []}
    for round_ in range(rounds):
        direct = await per_call(backend, calls)
        through = await per_call(plain, calls)
        watched = await per_call(observed, calls)
        overheads["chain"].append((through - direct) * 1e6)
        overheads["audit and metrics"].append((watched - through) * 1e6)
        print(f"round {round_ + 1}: direct {direct * 1e6:.2f} µs, through the chain {through * 1e6:.2f} µs, "
              f"with audit and metrics {watched * 1e6:.2f} µs", flush=True)
    median = statistics.median(overheads["chain"])
    print(f"chain with the default interceptors: {median:.2f} µs per call (median of {rounds}; target < 20 µs) "
          f"{'✓' if median < 20 else '✗'}")
    print(f"audit trail and metrics on top: {statistics.median(overheads['audit and metrics']):.2f} µs per call")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
