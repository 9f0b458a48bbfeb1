"""Where a sequential call's time goes: CPU per call of each process on the path.

    .venv/bin/python benchmarks/cpu_split.py [--front http|sse|stdio] [--mode auto|legacy] [--calls 1000] [--rounds 2]
                                             [--inflight N] [--lean]

http:  direct = this process (the client) -> the bench backend over its own streamable HTTP;
       gateway = this process -> the gateway's streamable-HTTP front -> the same backend over stdio.
sse:   the same over the legacy SSE transport (/sse) of the backend and of the gateway;
stdio: direct = this process -> the bench backend over stdio;
       gateway = this process -> the gateway over stdio -> the same backend over stdio.
lean:  with --lean, also this process -> benchmarks/lean_relay.py -> the same backend over stdio: the
       floor any relay process in front of a stdio backend pays (over HTTP, also the same relay as an
       ASGI app under uvicorn: "lean asgi").
For each, p50 latency (or with --inflight N, calls/s with N calls in flight) and the CPU milliseconds per call of the client, the gateway and the backend
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
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import load_http  # noqa: E402  (sets FASTMCP_LOG_LEVEL before fastmcp is imported)
import psutil  # noqa: E402
from fastmcp import Client  # noqa: E402
from fastmcp.client.transports import StdioTransport  # noqa: E402

GATEWAY = str(Path(sys.executable).parent / "gateway")
BENCH = str(HERE / "bench_server.py")
LEAN = str(HERE / "lean_relay.py")


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


@dataclass
class Path_:
    """One way to reach the bench backend's `echo`: a client, the tool's name there, and the
    processes on the way (the server the client talks to, then the backend behind it, if any)."""

    name: str
    client: Client
    tool: str
    procs: list[psutil.Process]


async def measure(path: Path_, calls: int, inflight: int) -> dict[str, float]:
    """p50 (sequential) or calls/s (`inflight` > 1) and CPU ms per call of this process and of the path's."""
    me = psutil.Process()
    for _ in range(50):
        await path.client.call_tool(path.tool, {"text": "hi"})
    before = [cpu_seconds(p) for p in (me, *path.procs)]
    samples = []
    budget = calls

    async def worker() -> None:
        nonlocal budget
        while budget > 0:
            budget -= 1
            started = time.perf_counter()
            await path.client.call_tool(path.tool, {"text": "hi"})
            samples.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    wall = time.perf_counter() - began
    after = [cpu_seconds(p) for p in (me, *path.procs)]
    per_call = [round((a - b) / calls * 1000, 3) for a, b in zip(after, before)]
    return {"p50_ms": round(statistics.median(samples) * 1000, 3), "calls_per_s": round(calls / wall, 1),
            "client_cpu_ms": per_call[0], **dict(zip(("server_cpu_ms", "backend_cpu_ms"), per_call[1:]))}


@contextlib.asynccontextmanager
async def http_paths(tmp: Path, config: Path, mode: str, front: str, lean: bool) -> AsyncIterator[list[Path_]]:
    """Both over streamable HTTP, or (`front="sse"`) both over the legacy SSE transport."""
    mark = uuid.uuid4().hex
    gw_port, be_port = load_http.free_port(), load_http.free_port()
    path = "/sse" if front == "sse" else "/mcp"
    async with contextlib.AsyncExitStack() as stack:
        backend = stack.enter_context(load_http.serve([sys.executable, BENCH, front, str(be_port)], be_port, mark,
                                                      tmp / "be.log", "backend"))
        gateway = stack.enter_context(load_http.serve(
            [GATEWAY, "--transport", "sse" if front == "sse" else "streamable-http", "--port", str(gw_port),
             "--auto-register", str(config)], gw_port, mark, tmp / "gw.log", "gateway"))
        gw = psutil.Process(gateway.proc.pid)
        paths = [Path_("direct", await stack.enter_async_context(client(be_port, path, mode)), "echo",
                       [psutil.Process(backend.proc.pid)]),
                 Path_("gateway", await stack.enter_async_context(client(gw_port, path, mode)), "bench__echo",
                       [gw, gw.children()[0]])]
        for kind, name in (("http", "lean relay"), ("asgi", "lean asgi")) if lean else ():
            port = load_http.free_port()
            relay = stack.enter_context(load_http.serve(
                [sys.executable, LEAN, kind, str(port), "--", sys.executable, BENCH], port, mark,
                tmp / f"lean-{kind}.log", name))
            proc = psutil.Process(relay.proc.pid)
            paths.append(Path_(name, await stack.enter_async_context(client(port, path, mode)), "echo",
                               [proc, proc.children()[0]]))
        yield paths


def client(port: int, path: str, mode: str) -> Client:
    url = f"http://127.0.0.1:{port}{path}"
    if path == "/sse":  # fastmcp picks its SSE transport by the path
        return Client(url, timeout=30, mode=mode)
    return load_http.http_client(url, timeout=30, mode=mode)


@contextlib.asynccontextmanager
async def stdio_paths(config: Path, mode: str, lean: bool) -> AsyncIterator[list[Path_]]:
    def stdio(command: str, args: list[str]) -> Client:
        return Client(StdioTransport(command, args, keep_alive=False), timeout=30, mode=mode)

    async with contextlib.AsyncExitStack() as stack:
        paths = []
        for name, command, args, tool in (
                ("direct", sys.executable, [BENCH], "echo"),
                ("gateway", GATEWAY, ["--auto-register", str(config)], "bench__echo"),
                *([("lean relay", sys.executable, [LEAN, "stdio", "--", sys.executable, BENCH], "echo")] if lean
                  else [])):
            known = {p.pid for p in psutil.Process().children()}
            await stack.enter_async_context(c := stdio(command, args))
            server = next(p for p in psutil.Process().children() if p.pid not in known)
            paths.append(Path_(name, c, tool, [server, *server.children()[:1]]))
        yield paths


async def main(front: str, mode: str, calls: int, rounds: int, inflight: int, lean: bool) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps({"mcpServers": {"bench": {"command": sys.executable, "args": [BENCH]}}}))
        opened = stdio_paths(config, mode, lean) if front == "stdio" else http_paths(Path(tmp), config, mode, front,
                                                                                      lean)
        async with opened as paths:
            for r in range(rounds):
                row: dict = {"round": r + 1}
                for path in paths:
                    row[path.name] = got = await measure(path, calls, inflight)
                    figure = (f"p50 {got['p50_ms']} ms" if inflight == 1 else f"{got['calls_per_s']} calls/s")
                    cpu = ", ".join(f"{k.removesuffix('_cpu_ms')} {got[k]}" for k in
                                    ("client_cpu_ms", "server_cpu_ms", "backend_cpu_ms") if k in got)
                    ratio = (got["p50_ms"] / row["direct"]["p50_ms"] if inflight == 1
                             else got["calls_per_s"] / row["direct"]["calls_per_s"])
                    print(f"round {r + 1}: {path.name:<10} {figure} ({ratio:.3f}× of direct); CPU ms per call: {cpu}",
                          flush=True)
                results.append(row)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--front", choices=("http", "sse", "stdio"), default="http")
    parser.add_argument("--mode", choices=("auto", "legacy"), default="auto",
                        help="client protocol era: auto (2026-07-28) or legacy (2025-11-25)")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--inflight", type=int, default=1, help="calls in flight (1: sequential, report p50)")
    parser.add_argument("--lean", action="store_true", help="also measure benchmarks/lean_relay.py (not with sse)")
    args = parser.parse_args()
    if args.lean and args.front == "sse":
        parser.error("the lean relay has no SSE front")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    data = asyncio.run(main(args.front, args.mode, args.calls, args.rounds, args.inflight, args.lean))
    (out / f"cpu_split_{args.front}.json").write_text(json.dumps(data, indent=2))
