"""The stdio front: the gateway serving one client on its own stdin and stdout."""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastmcp import FastMCP

from gateway import _compat
from gateway.line_streams import LineReader, LineWriter


async def serve_stdio(mcp: FastMCP) -> None:
    """Serves until stdin closes or a signal arrives; either way the caller then stops the backends."""
    async with anyio.create_task_group() as tg:
        async def stop_on_signal() -> None:
            # Without this, SIGTERM/SIGHUP would end the process without stopping the backends.
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()

        async def run() -> None:
            if _is_pipe(0) and _is_pipe(1):
                async with _stdio_streams() as (read_stream, write_stream):
                    await _compat.run_stdio(mcp, read_stream, write_stream)
            else:  # a terminal or a file: mcp's own stdio streams cope with those
                await mcp.run_stdio_async(show_banner=False)
            tg.cancel_scope.cancel()  # stdin closed

        tg.start_soon(stop_on_signal)
        tg.start_soon(run)


def _is_pipe(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


@asynccontextmanager
async def _stdio_streams() -> AsyncIterator[tuple[LineReader, LineWriter]]:
    """The gateway's own stdin and stdout as session streams; their blocking mode is restored after."""
    saved = os.get_blocking(0), os.get_blocking(1)
    os.set_blocking(0, False)
    os.set_blocking(1, False)
    try:
        yield LineReader(0), LineWriter(1)
    finally:
        os.set_blocking(0, saved[0])
        os.set_blocking(1, saved[1])
