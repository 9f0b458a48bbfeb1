"""Startup of the shipped gateway-config.json: gateway ready (all backends listed) vs the same backends
started directly and concurrently, in one run.

    .venv/bin/python benchmarks/startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

from fastmcp import Client
from fastmcp.client.transports import StdioTransport

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = str(Path(sys.executable).parent / "gateway")
CONFIG = ROOT / "gateway-config.json"


async def gateway_ready() -> float:
    started = time.perf_counter()
    async with Client(StdioTransport(GATEWAY, ["--auto-register", str(CONFIG)], keep_alive=False)) as client:
        # the gateway answers while its backends start: ready is when none is still connecting
        deadline = started + 120
        while True:
            servers = (await client.call_tool("list_servers", {})).structured_content["servers"]
            if all(s["status"] != "connecting" for s in servers):
                break
            assert time.perf_counter() < deadline, servers
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
    assert all(s["status"] == "ready" for s in servers), servers
    return elapsed


async def direct_ready() -> float:
    specs = json.loads(CONFIG.read_text())["mcpServers"].values()
    clients = [Client(StdioTransport(str(ROOT / s["command"]), s["args"], cwd=str(ROOT), keep_alive=False))
               for s in specs]
    started = time.perf_counter()

    async def ready(client: Client) -> None:
        await client.__aenter__()
        await client.list_tools()

    await asyncio.gather(*(ready(c) for c in clients))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(c.close() for c in clients))
    return elapsed


async def main(rounds: int) -> None:
    gateway, direct = [], []
    for _ in range(rounds):
        gateway.append(await gateway_ready())
        direct.append(await direct_ready())
    g, d = statistics.median(gateway), statistics.median(direct)
    print(f"gateway ready (shipped config, {len(json.loads(CONFIG.read_text())['mcpServers'])} backends): "
          f"median {g:.2f}s (min {min(gateway):.2f}, max {max(gateway):.2f})")
    print(f"direct clients started together:  median {d:.2f}s (min {min(direct):.2f}, max {max(direct):.2f})")
    print(f"ratio {g / d:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))
