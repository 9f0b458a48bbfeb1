"""The benchmark backend: `echo`, `sleep(ms)` and `blob(kb)`, over stdio or `http PORT`."""

import asyncio
import os
import sys

os.environ.setdefault("FASTMCP_LOG_LEVEL", "ERROR")

from fastmcp import FastMCP

mcp = FastMCP("bench")


@mcp.tool
def echo(text: str) -> str:
    """Return the text."""
    return text


@mcp.tool
async def sleep(ms: int) -> str:
    """Wait `ms` milliseconds."""
    await asyncio.sleep(ms / 1000)
    return "slept"


@mcp.tool
def blob(kb: int) -> str:
    """Return `kb` kilobytes of text."""
    return "x" * (kb * 1024)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("http", "sse"):
        mcp.run(transport=sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]), show_banner=False)
    else:
        mcp.run(show_banner=False)
