"""Pipeline engine speed, on a real stdio backend through the real pool.

    .venv/bin/python benchmarks/pipelines.py [--rounds 5]

- overhead per step: a chain of 50 dependent `echo` steps vs 50 sequential direct pool calls
- two independent 300 ms steps vs 300 ms (target < 1.3x)
- foreach over 20 items, concurrency 10, 200 ms each vs 400 ms (target < 1.3x)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from gateway.backends.invocation import Invocation, Road
from gateway.backends.pool import BackendPool
from gateway.config import GatewaySettings, ServerSpec
from gateway.backends.tool_rules import ToolRules
from gateway.interceptors import build_interceptors
from gateway.pipelines.engine import run_pipeline
from gateway.pipelines.spec import compile_pipeline
from gateway.policy import Redactor

HERE = Path(__file__).resolve().parent
CHAIN = 50


def chain() -> dict:
    steps = {"s0": {"server": "b", "tool": "echo", "args": {"text": "x"}}}
    for i in range(1, CHAIN):
        steps[f"s{i}"] = {"server": "b", "tool": "echo", "args": {"text": f"{{{{ steps.s{i - 1}.result }}}}"}}
    return {"name": "chain", "steps": steps}


PARALLEL = {"name": "parallel", "steps": {
    "a": {"server": "b", "tool": "sleep", "args": {"ms": 300}},
    "b": {"server": "c", "tool": "sleep", "args": {"ms": 300}}}}
FOREACH = {"name": "foreach", "steps": {"each": {
    "server": "b", "tool": "sleep", "foreach": "{{ range(20) | list }}", "concurrency": 10,
    "args": {"ms": 200}}}}


def bench_pool() -> BackendPool:
    """A pool as the gateway runs one: with the default interceptors."""
    settings = GatewaySettings()
    rules = ToolRules()
    return BackendPool(settings, interceptors=build_interceptors(settings, Redactor(), rules), tool_rules=rules)


async def echo(pool: BackendPool) -> None:
    """A direct call through the pool's entry, as a pipeline step makes one."""
    await pool.invoke(Invocation(Road.call_backend, "b", "tools/call", {"name": "echo", "arguments": {"text": "x"}}))


async def main(rounds: int) -> None:
    spec = ServerSpec(command=sys.executable, args=[str(HERE / "bench_server.py")])
    async with bench_pool() as pool:
        await pool.start_all({"b": spec, "c": spec})
        pipelines = {name: compile_pipeline(raw, name) for name, raw in
                     (("chain", chain()), ("parallel", PARALLEL), ("foreach", FOREACH))}
        for _ in range(20):  # warm-up
            await echo(pool)
        overhead, parallel, foreach = [], [], []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(CHAIN):
                await echo(pool)
            direct = time.perf_counter() - started
            started = time.perf_counter()
            report = await run_pipeline(pipelines["chain"], {}, pool)
            assert report["status"] == "ok", report
            overhead.append((time.perf_counter() - started - direct) / CHAIN)

            started = time.perf_counter()
            assert (await run_pipeline(pipelines["parallel"], {}, pool))["status"] == "ok"
            parallel.append((time.perf_counter() - started) / 0.300)

            started = time.perf_counter()
            assert (await run_pipeline(pipelines["foreach"], {}, pool))["status"] == "ok"
            foreach.append((time.perf_counter() - started) / 0.400)

    def show(values: list[float], unit: str = "x") -> str:
        scale = 1000 if unit == "ms" else 1
        return (f"median {statistics.median(values) * scale:.3f}{unit} "
                f"(min {min(values) * scale:.3f}, max {max(values) * scale:.3f})")

    print(f"engine overhead per step (target < 1 ms): {show(overhead, 'ms')}")
    print(f"two independent 300 ms steps / 300 ms (target < 1.3x): {show(parallel)}")
    print(f"foreach 20 x 200 ms, concurrency 10 / 400 ms (target < 1.3x): {show(foreach)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))
