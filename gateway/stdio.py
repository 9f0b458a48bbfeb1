"""The stdio front without a thread hop per message.

mcp's stdio server reads and writes through `anyio.wrap_file`, which costs a worker-thread round
trip for every readline, write and flush: three per relayed call. When stdin and stdout are pipes
(as under every MCP client), the event loop can wait on them directly instead.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio


def is_pipe(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class PipeLines:
    """Async iterator over the text lines of a non-blocking pipe."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()

    def __aiter__(self) -> PipeLines:
        return self

    async def __anext__(self) -> str:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line.decode("utf-8", errors="replace")
            await anyio.wait_readable(self._fd)
            try:
                chunk = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                if self._buffer:
                    line, self._buffer = bytes(self._buffer), bytearray()
                    return line.decode("utf-8", errors="replace")
                raise StopAsyncIteration
            self._buffer += chunk


class PipeWriter:
    """`write`/`flush` onto a non-blocking pipe, waiting on the loop when it is full."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8"))
        while data:
            try:
                written = os.write(self._fd, data)
            except BlockingIOError:
                await anyio.wait_writable(self._fd)
                continue
            data = data[written:]

    async def flush(self) -> None:
        return None


@asynccontextmanager
async def pipe_stdio() -> AsyncIterator[tuple[PipeLines, PipeWriter]]:
    """Non-blocking stdin/stdout for the duration; their blocking mode is restored after."""
    saved = os.get_blocking(0), os.get_blocking(1)
    os.set_blocking(0, False)
    os.set_blocking(1, False)
    try:
        yield PipeLines(0), PipeWriter(1)
    finally:
        os.set_blocking(0, saved[0])
        os.set_blocking(1, saved[1])
