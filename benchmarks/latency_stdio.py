"""p50/p99 latency of sequential calls: through the gateway (stdio) vs direct to the same stdio backend.

    .venv/bin/python benchmarks/latency_stdio.py [--calls 500]

Both clients stay connected for the whole run and take turns in blocks of 50 calls, so machine
noise hits both alike. Writes benchmarks/results/latency_stdio.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastmcp import Client
from fastmcp.client.transports import StdioTransport

HERE = Path(__file__).resolve().parent
GATEWAY = str(Path(sys.executable).parent / "gateway")
BLOCK = 50


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(calls: int) -> dict:
    backend = [str(HERE / "bench_server.py")]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps({"mcpServers": {"bench": {"command": sys.executable, "args": backend}}}))
        direct = Client(StdioTransport(sys.executable, backend, keep_alive=False))
        gateway = Client(StdioTransport(GATEWAY, ["--auto-register", str(config)], keep_alive=False))
        paths = {
            "direct": lambda: direct.call_tool("echo", {"text": "hi"}),
            "call_backend": lambda: gateway.call_tool("call_backend", {"server": "bench", "tool": "echo",
                                                                       "params": {"text": "hi"}}),
            "namespaced": lambda: gateway.call_tool("bench__echo", {"text": "hi"}),
        }
        samples: dict[str, list[float]] = {name: [] for name in paths}
        async with direct, gateway:
            for call in paths.values():  # warm-up
                for _ in range(20):
                    await call()
            for _ in range(calls // BLOCK):
                for name, call in paths.items():
                    for _ in range(BLOCK):
                        started = time.perf_counter()
                        await call()
                        samples[name].append(time.perf_counter() - started)
    base = statistics.median(samples["direct"])
    base99 = percentile(samples["direct"], 0.99)
    return {name: {"calls": len(s), "p50_ms": round(statistics.median(s) * 1000, 3),
                   "p99_ms": round(percentile(s, 0.99) * 1000, 3),
                   "p50_ratio": round(statistics.median(s) / base, 3),
                   "p99_ratio": round(percentile(s, 0.99) / base99, 3)} for name, s in samples.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    results = asyncio.run(main(parser.parse_args().calls))
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latency_stdio.json").write_text(json.dumps(results, indent=2))
    lines = ["| path | calls | p50 ms | p99 ms | p50 ratio | p99 ratio |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {r['calls']} | {r['p50_ms']} | {r['p99_ms']} | {r['p50_ratio']}× | {r['p99_ratio']}× |"
              for name, r in results.items()]
    (out / "latency_stdio.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
