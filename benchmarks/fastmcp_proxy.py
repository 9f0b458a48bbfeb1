"""Plain FastMCP proxy in front of bench_server.py, served over stdio: suite.py's reference point.

    .venv/bin/python benchmarks/fastmcp_proxy.py

One long-lived client session to the backend, reused for every call (`create_proxy` of a connected
client), which is the same shape as the gateway's pool.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

os.environ.setdefault("FASTMCP_LOG_LEVEL", "ERROR")

from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from fastmcp.server import create_proxy

BENCH_SERVER = Path(__file__).resolve().parent / "bench_server.py"


async def main() -> None:
    # StdioTransport gives the child a clean environment; pass ours on, as a plain subprocess would
    # inherit it, so that whoever started us can still recognise the backend as theirs.
    backend = Client(StdioTransport(sys.executable, [str(BENCH_SERVER)], env=dict(os.environ), keep_alive=False))
    async with backend:
        await create_proxy(backend).run_async(transport="stdio", show_banner=False)


if __name__ == "__main__":
    asyncio.run(main())
