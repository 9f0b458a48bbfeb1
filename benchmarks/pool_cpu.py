"""What the pool's entry costs per call in a running gateway, in process: CPU per sequential call to
the bench backend (over stdio) three ways.

    .venv/bin/python benchmarks/pool_cpu.py [--calls 2000] [--rounds 3] [--no-check]

- `pool.invoke`: the one entry, with the interceptor chain;
- `Backend.request`: past the chain (ready check, argument check, in-flight bookkeeping);
- `send_raw_request`: the request itself, as the backend's session sends it.

Only this process's CPU is counted (the backend is a child process), so the differences are what
the chain and the backend's own bookkeeping cost between two real requests, when little of them is
in the CPU's caches; `benchmarks/chain.py` measures the chain in a tight loop instead. With
`--no-check`, the argument check is left out, to show its share.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("FASTMCP_LOG_LEVEL", "ERROR")

import anyio  # noqa: E402
import uvloop  # noqa: E402

from gateway import _compat  # noqa: E402
from gateway.backends.invocation import Invocation, Road  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.server import running_gateway  # noqa: E402

BENCH = str(Path(__file__).resolve().parent / "bench_server.py")
ARGUMENTS = {"text": "hello"}


def echo() -> Invocation:
    return Invocation(Road.tool, "bench", "tools/call", {"name": "echo", "arguments": dict(ARGUMENTS)})


async def main(calls: int, rounds: int, check: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config({"mcpServers": {"bench": {"command": sys.executable, "args": [BENCH]}}},
                              base_dir=Path(tmp))
        async with running_gateway(config) as gateway:
            pool = gateway.console.pool
            pool.start_soon(config.mcpServers)
            with anyio.fail_after(30):
                while "bench__echo" not in pool.tool_index:
                    await anyio.sleep(0.05)
            backend = pool.get("bench")
            if not check:
                backend.catalog.check_arguments = lambda _name, _args: None  # type: ignore[method-assign]
            session = (await backend.ready_connection()).session
            ways: dict[str, Callable[[], Awaitable[Any]]] = {
                "pool.invoke": lambda: pool.invoke(echo()),
                "Backend.request": lambda: backend.request(echo()),
                "send_raw_request": lambda: _compat.send_raw_request(session, "tools/call",
                                                                     {"name": "echo", "arguments": dict(ARGUMENTS)},
                                                                     timeout=30),
            }
            for r in range(rounds):
                for name, call in ways.items():
                    await call()
                    cpu = time.process_time()
                    for _ in range(calls):
                        await call()
                    used = (time.process_time() - cpu) / calls * 1e6
                    print(f"round {r + 1}: {name:<17} {used:6.1f} µs of CPU per call", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-check", action="store_true", help="leave the argument check out")
    args = parser.parse_args()
    uvloop.run(main(args.calls, args.rounds, not args.no_check))
