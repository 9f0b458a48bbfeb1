"""Server spec -> mcp client transport."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp.client import Transport
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from gateway.backends.process import StderrTail
from gateway.backends.stdio_link import StdioLink
from gateway.config import ServerSpec


def make_transport(spec: ServerSpec, stderr: StderrTail | None,
                   process: subprocess.Popen[bytes] | None = None) -> Transport:
    """An mcp client transport for the spec: an async context manager of (read, write) streams."""
    kind = spec.kind
    if kind == "stdio":
        assert stderr is not None
        return StdioLink(spec, stderr, process)
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
