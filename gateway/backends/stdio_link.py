"""The gateway's own stdio link to a backend process.

mcp's stdio client joins its whole read buffer again for every chunk it reads, which is quadratic
in a message's length: relaying a 1 MB result spent more CPU there than in everything else. It
also passes every message through a memory stream and a task in each direction. Here the client
session reads lines straight from the process's stdout and writes straight to its stdin, both
non-blocking pipes waited on by the event loop. Owning the process also gives us its pid: closing
stops the backend's whole process group, children included.
"""

from __future__ import annotations

import asyncio
import os
import subprocess

import anyio
import mcp_types
from mcp.shared.message import SessionMessage

from gateway.backends.process import StderrTail, spawn, stop_process_group
from gateway.config import ServerSpec

READ_CHUNK = 1 << 20


class LineReader:
    """The session's read stream: one parsed JSON-RPC message per stdout line."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer known to hold no newline
        self._closed = False

    async def receive(self) -> SessionMessage | Exception:
        while True:
            end = self._buffer.find(b"\n", self._scanned)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                self._scanned = 0
                if line.strip():
                    return _parse(line)
                continue
            self._scanned = len(self._buffer)
            if self._closed:
                raise anyio.EndOfStream
            try:
                await anyio.wait_readable(self._fd)
                chunk = os.read(self._fd, READ_CHUNK)
            except BlockingIOError:
                continue
            except (OSError, anyio.ClosedResourceError):
                raise anyio.EndOfStream from None
            if not chunk:
                raise anyio.EndOfStream
            self._buffer += chunk

    def __aiter__(self) -> LineReader:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._closed = True

    async def __aenter__(self) -> LineReader:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


class LineWriter:
    """The session's write stream, without a writer task.

    Messages sent during one turn of the event loop go out in a single write at the end of that
    turn, so under load the backend is woken once per batch rather than once per message. A
    backend that stops reading holds senders back once `HIGH_WATER` bytes are waiting.
    """

    HIGH_WATER = 1 << 20

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._flushing = False  # a flush is scheduled, or waiting for the pipe to take more
        self._drained = anyio.Event()
        self._broken = False
        self._closed = False

    async def send(self, item: SessionMessage) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._broken:
            raise anyio.BrokenResourceError
        self._buffer += (item.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n").encode()
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)
        while len(self._buffer) > self.HIGH_WATER and not (self._broken or self._closed):
            await self._drained.wait()

    def _flush(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        loop.remove_writer(self._fd)
        try:
            del self._buffer[: os.write(self._fd, self._buffer)]
        except BlockingIOError:
            pass
        except OSError:  # the backend closed its stdin or exited; its stdout ends the session
            self._broken = True
            self._buffer.clear()
        if self._buffer:
            loop.add_writer(self._fd, self._flush)
            return
        self._flushing = False
        self._drained.set()
        self._drained = anyio.Event()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        asyncio.get_running_loop().remove_writer(self._fd)
        if self._buffer and not self._broken:  # last words, such as a cancellation: best effort
            try:
                os.write(self._fd, self._buffer)
            except OSError:
                pass
        self._buffer.clear()
        self._drained.set()

    async def __aenter__(self) -> LineWriter:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:  # handed to the session, which reports it, as mcp's stdio client does
        return exc


class StdioLink:
    """A stdio backend as an mcp client transport: one process, stopped with its group on exit."""

    def __init__(self, spec: ServerSpec, stderr: StderrTail, process: subprocess.Popen[bytes] | None = None) -> None:
        self.spec, self.stderr = spec, stderr
        self._process = process  # one started ahead, or None to start one on entry

    @property
    def alive(self) -> bool:
        """False once the process has exited, even if no request has noticed yet."""
        return self._process is not None and self._process.poll() is None

    async def __aenter__(self) -> tuple[LineReader, LineWriter]:
        process = self._process = self._process or spawn(self.spec, self.stderr)
        assert process.stdin is not None and process.stdout is not None
        return LineReader(process.stdout.fileno()), LineWriter(process.stdin.fileno())

    async def __aexit__(self, *_exc: object) -> None:
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        with anyio.CancelScope(shield=True):
            anyio.notify_closing(process.stdin.fileno())
            process.stdin.close()  # end of input: a well-behaved server exits on it
            await stop_process_group(process)
            anyio.notify_closing(process.stdout.fileno())
            process.stdout.close()

    def __repr__(self) -> str:
        return f"<StdioLink {self.spec.command!r}>"
