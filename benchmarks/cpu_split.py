"""Where a sequential call's time goes: CPU per call of each process on the path.

    .venv/bin/python benchmarks/cpu_split.py [--front http|sse|stdio] [--mode auto|legacy] [--calls 1000] [--rounds 2]

http:  direct = this process (the client) -> the bench backend over its own streamable HTTP;
       gateway = this process -> the gateway's streamable-HTTP front -> the same backend over stdio.
sse:   the same over the legacy SSE transport (/sse) of the backend and of the gateway;
stdio: direct = this process -> the bench backend over stdio;
       gateway = this process -> the gateway over stdio -> the same backend over stdio.
For each, p50 latency and the CPU milliseconds per call of the client, the gateway and the backend
(user + system time over the run divided by the calls), so that a gap between the two paths splits
into the gateway's own work and the backend's. `--mode legacy` makes both clients speak the
handshake era (2025-11-25) instead of 2026-07-28. Writes benchmarks/results/cpu_split_<front>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import load_http  # noqa: E402  (sets FASTMCP_LOG_LEVEL before fastmcp is imported)
import psutil  # noqa: E402
from fastmcp import Client  # noqa: E402
from fastmcp.client.transports import StdioTransport  # noqa: E402

GATEWAY = str(Path(sys.executable).parent / "gateway")
BENCH = str(HERE / "bench_server.py")


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


async def measure(client: Client, tool: str, calls: int, procs: list[psutil.Process]) -> dict[str, float]:
    """p50 and CPU ms per call of this process and of `procs` (the server, then its backend)."""
    me = psutil.Process()
    for _ in range(50):
        await client.call_tool(tool, {"text": "hi"})
    before = [cpu_seconds(p) for p in (me, *procs)]
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await client.call_tool(tool, {"text": "hi"})
        samples.append(time.perf_counter() - started)
    after = [cpu_seconds(p) for p in (me, *procs)]
    per_call = [round((a - b) / calls * 1000, 3) for a, b in zip(after, before)]
    return {"p50_ms": round(statistics.median(samples) * 1000, 3), "client_cpu_ms": per_call[0],
            **dict(zip(("server_cpu_ms", "backend_cpu_ms"), per_call[1:]))}


@contextlib.asynccontextmanager
async def http_clients(tmp: Path, config: Path, mode: str, front: str = "http"
                       ) -> AsyncIterator[tuple[Client, list, Client, list]]:
    """Both over streamable HTTP, or (`front="sse"`) both over the legacy SSE transport."""
    mark = uuid.uuid4().hex
    gw_port, be_port = load_http.free_port(), load_http.free_port()
    path = "/sse" if front == "sse" else "/mcp"
    with load_http.serve([sys.executable, BENCH, front, str(be_port)], be_port, mark, tmp / "be.log",
                         "backend") as backend, \
            load_http.serve([GATEWAY, "--transport", "sse" if front == "sse" else "streamable-http", "--port",
                             str(gw_port), "--auto-register", str(config)], gw_port, mark, tmp / "gw.log",
                            "gateway") as gateway:
        gw = psutil.Process(gateway.proc.pid)
        async with Client(f"http://127.0.0.1:{be_port}{path}", timeout=30, mode=mode) as direct, \
                Client(f"http://127.0.0.1:{gw_port}{path}", timeout=30, mode=mode) as through:
            yield direct, [psutil.Process(backend.proc.pid)], through, [gw, gw.children()[0]]


@contextlib.asynccontextmanager
async def stdio_clients(config: Path, mode: str) -> AsyncIterator[tuple[Client, list, Client, list]]:
    direct = Client(StdioTransport(sys.executable, [BENCH], keep_alive=False), timeout=30, mode=mode)
    through = Client(StdioTransport(GATEWAY, ["--auto-register", str(config)], keep_alive=False), timeout=30,
                     mode=mode)
    async with direct, through:
        children = psutil.Process().children()
        gw = next(p for p in children if GATEWAY in p.cmdline())
        backend = next(p for p in children if p.pid != gw.pid)
        yield direct, [backend], through, [gw, gw.children()[0]]


async def main(front: str, mode: str, calls: int, rounds: int) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps({"mcpServers": {"bench": {"command": sys.executable, "args": [BENCH]}}}))
        clients = stdio_clients(config, mode) if front == "stdio" else http_clients(Path(tmp), config, mode, front)
        async with clients as (direct, direct_procs, through, through_procs):
            for r in range(rounds):
                plain = await measure(direct, "echo", calls, direct_procs)
                relayed = await measure(through, "bench__echo", calls, through_procs)
                results.append({"round": r + 1, "direct": plain, "gateway": relayed,
                                "p50_ratio": round(relayed["p50_ms"] / plain["p50_ms"], 3)})
                print(f"round {r + 1}: direct p50 {plain['p50_ms']} ms (client {plain['client_cpu_ms']}, "
                      f"backend over {front} {plain['server_cpu_ms']} ms CPU) | gateway p50 {relayed['p50_ms']} ms "
                      f"(client {relayed['client_cpu_ms']}, gateway {relayed['server_cpu_ms']}, backend over "
                      f"stdio {relayed['backend_cpu_ms']} ms CPU) | {results[-1]['p50_ratio']}×", flush=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--front", choices=("http", "sse", "stdio"), default="http")
    parser.add_argument("--mode", choices=("auto", "legacy"), default="auto",
                        help="client protocol era: auto (2026-07-28) or legacy (2025-11-25)")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    data = asyncio.run(main(args.front, args.mode, args.calls, args.rounds))
    (out / f"cpu_split_{args.front}.json").write_text(json.dumps(data, indent=2))
