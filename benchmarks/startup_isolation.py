"""A healthy backend's first call, with the gateway started alone with it vs. started with it and
backends that never get ready: one backend must not hold up the rest.

Each round starts the gateway over stdio (`--auto-register`) and times, from the start of the
gateway's process to the first successful `call_backend(healthy, echo)`, two configurations in turn:
the healthy stdio backend (`bench_server.py`) alone, and the same with `--others` backends that
never answer `initialize` (a process that only reads its input). The gateway keeps its default
connect timeout (30 s), which is what a never-ready backend used to cost everyone.

    .venv/bin/python benchmarks/startup_isolation.py [--rounds 5] [--others 1] [--gateway CMD]

(`--gateway` runs another build of the gateway, an older checkout say, for comparison.)
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
from typing import Any

from fastmcp import Client
from fastmcp.client.transports import StdioTransport

HERE = Path(__file__).resolve().parent
GATEWAY = str(Path(sys.executable).parent / "gateway")
HEALTHY = {"command": sys.executable, "args": [str(HERE / "bench_server.py")]}
# reads its input until the gateway closes it, and never answers: a backend stuck before its handshake
NEVER_READY = {"command": sys.executable, "args": ["-c", "import sys; sys.stdin.buffer.read()"]}
BOUND = 120.0  # seconds for one start; the old behaviour needed the connect timeout (30 s) and a bit


def write_config(path: Path, servers: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


async def first_call(gateway: str, config: Path) -> float:
    """Seconds from starting the gateway to the healthy backend's first successful answer."""
    started = time.perf_counter()
    transport = StdioTransport(gateway, ["--auto-register", str(config)], keep_alive=False)
    async with Client(transport, timeout=BOUND) as client:
        while True:  # a call to a backend still starting waits for it (within its timeout) by itself
            result = await client.call_tool("call_backend", {"server": "healthy", "tool": "echo",
                                                             "params": {"text": "up"}, "timeout": BOUND},
                                            raise_on_error=False)
            if not result.is_error:
                elapsed = time.perf_counter() - started
                break
            if time.perf_counter() - started > BOUND:
                raise RuntimeError(f"no answer from the healthy backend: {result.content}")
            await asyncio.sleep(0.01)
        listed = (await client.call_tool("list_servers", {})).structured_content["servers"]
    stuck = [s["name"] for s in listed if s["name"] != "healthy" and s["status"] == "ready"]
    assert not stuck, f"the never-ready backends answered: {stuck}"
    return elapsed


async def main(gateway: str, rounds: int, others: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        alone = write_config(Path(tmp) / "alone.json", {"healthy": HEALTHY})
        crowded = write_config(Path(tmp) / "crowded.json",
                               {"healthy": HEALTHY, **{f"never{i}": NEVER_READY for i in range(others)}})
        await first_call(gateway, alone)  # warm-up: disk caches, .pyc files
        times: dict[str, list[float]] = {"alone": [], "crowded": []}
        for _ in range(rounds):
            times["alone"].append(await first_call(gateway, alone))
            times["crowded"].append(await first_call(gateway, crowded))
    a, c = statistics.median(times["alone"]), statistics.median(times["crowded"])
    for name, label in (("alone", "healthy backend alone"),
                        ("crowded", f"healthy + {others} never-ready")):
        got = times[name]
        print(f"{label:32} first call after median {statistics.median(got):.2f}s "
              f"(min {min(got):.2f}, max {max(got):.2f}; {', '.join(f'{t:.2f}' for t in got)})")
    print(f"ratio {c / a:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--others", type=int, default=1, help="never-ready backends beside the healthy one")
    parser.add_argument("--gateway", default=GATEWAY, help="the gateway command (default: this checkout's)")
    args = parser.parse_args()
    asyncio.run(main(args.gateway, args.rounds, args.others))
