"""Where a sequential call's time goes over HTTP: CPU per call of each process on the path.

    .venv/bin/python benchmarks/http_cpu.py [--calls 1000] [--rounds 2]

Direct: this process (the client) -> the bench backend over its own streamable HTTP.
Gateway: this process -> the gateway's streamable-HTTP front -> the same backend over stdio.
For each, p50 latency and the CPU milliseconds per call of the client, the gateway and the backend
(user + system time over the run divided by the calls), so a gap between the two paths can be
split into the gateway's own work and the backend's work over stdio instead of HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import load_http  # noqa: E402  (sets FASTMCP_LOG_LEVEL before fastmcp is imported)
import psutil  # noqa: E402
from fastmcp import Client  # noqa: E402

GATEWAY = str(Path(sys.executable).parent / "gateway")
BENCH = str(HERE / "bench_server.py")


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


async def measure(url: str, tool: str, calls: int, procs: list[psutil.Process]) -> dict[str, float]:
    me = psutil.Process()
    async with Client(url, timeout=30) as client:
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


async def main(calls: int, rounds: int) -> list[dict]:
    mark = uuid.uuid4().hex
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps({"mcpServers": {"bench": {"command": sys.executable, "args": [BENCH]}}}))
        gw_port, be_port = load_http.free_port(), load_http.free_port()
        with load_http.serve([sys.executable, BENCH, "http", str(be_port)], be_port, mark, Path(tmp) / "be.log",
                             "backend") as backend, \
                load_http.serve([GATEWAY, "--transport", "streamable-http", "--port", str(gw_port),
                                 "--auto-register", str(config)], gw_port, mark, Path(tmp) / "gw.log",
                                "gateway") as gateway:
            gw = psutil.Process(gateway.proc.pid)
            gw_backend = gw.children()[0]
            for r in range(rounds):
                direct = await measure(f"http://127.0.0.1:{be_port}/mcp", "echo", calls,
                                       [psutil.Process(backend.proc.pid)])
                through = await measure(f"http://127.0.0.1:{gw_port}/mcp", "bench__echo", calls, [gw, gw_backend])
                results.append({"round": r + 1, "direct": direct, "gateway": through,
                                "p50_ratio": round(through["p50_ms"] / direct["p50_ms"], 3)})
                print(f"round {r + 1}: direct p50 {direct['p50_ms']} ms (client {direct['client_cpu_ms']}, "
                      f"backend over HTTP {direct['server_cpu_ms']} ms CPU) | gateway p50 {through['p50_ms']} ms "
                      f"(client {through['client_cpu_ms']}, gateway {through['server_cpu_ms']}, backend over "
                      f"stdio {through['backend_cpu_ms']} ms CPU) | {results[-1]['p50_ratio']}×", flush=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    data = asyncio.run(main(args.calls, args.rounds))
    (out / "http_cpu.json").write_text(json.dumps(data, indent=2))
