"""Server spec -> mcp client transport, plus a bounded tail of a stdio backend's stderr."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TextIO

import anyio
import httpx2
from mcp.client import Transport
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from gateway.backends.stdio_link import StdioLink
from gateway.config import ServerSpec

logger = logging.getLogger("gateway.backends")


class StderrTail:
    """A pipe that a backend process writes its stderr into; keeps the last `limit` bytes.

    Reading continuously also means a backend that floods stderr never blocks on a full pipe, and
    memory stays bounded whatever it writes.
    """

    def __init__(self, name: str, limit: int = 4096) -> None:
        self.name = name
        self.limit = limit
        self._buffer = bytearray()
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        self._read_fd = read_fd
        self.file: TextIO = os.fdopen(write_fd, "w")

    async def pump(self) -> None:
        """Runs until cancelled (or until every writer, including ours, has closed)."""
        while True:
            try:
                await anyio.wait_readable(self._read_fd)
                data = os.read(self._read_fd, 65536)
            except BlockingIOError:
                continue
            except (anyio.ClosedResourceError, OSError):
                return
            if not data:
                return
            self._buffer += data
            del self._buffer[: -self.limit]
            if logger.isEnabledFor(logging.DEBUG):
                for line in data.decode(errors="replace").splitlines():
                    logger.debug("[%s stderr] %s", self.name, line)

    def clear(self) -> None:
        self._buffer.clear()

    def tail(self, lines: int = 10) -> str:
        text = self._buffer.decode(errors="replace").strip()
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        anyio.notify_closing(self._read_fd)
        os.close(self._read_fd)
        self.file.close()


def make_transport(spec: ServerSpec, stderr: StderrTail | None) -> Transport:
    """An mcp client transport for the spec: an async context manager of (read, write) streams."""
    kind = spec.kind
    if kind == "stdio":
        assert spec.command is not None and stderr is not None
        return StdioLink(spec.command, list(spec.args), env=dict(spec.env), cwd=spec.cwd, stderr=stderr.file)
    assert spec.url is not None
    if kind == "sse":
        return sse_client(spec.url, headers=spec.http_headers())
    return _streamable_http(spec.url, spec.http_headers())


@asynccontextmanager
async def _streamable_http(url: str, headers: dict[str, str]) -> AsyncIterator[Any]:
    # mcp's defaults for its own client: 30 s to connect, responses may stream for 300 s
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0)) as http, \
            streamable_http_client(url, http_client=http) as streams:
        yield streams
