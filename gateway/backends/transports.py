"""Server spec -> FastMCP client transport, plus a bounded tail of a stdio backend's stderr."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import TextIO

import anyio
from fastmcp.client.transports import ClientTransport, SSETransport, StdioTransport, StreamableHttpTransport

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

    def writer_pid(self) -> int | None:
        """Our child process whose stderr is this pipe: the backend we just started.

        The MCP SDK starts each stdio backend in a session of its own but does not expose its pid;
        knowing it lets us stop the backend's children too, which outlive it otherwise.
        """
        target = f"pipe:[{os.fstat(self.file.fileno()).st_ino}]"
        me = str(os.getpid())
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] != me:
                    continue
                if os.readlink(entry / "fd" / "2") == target:
                    return int(entry.name)
            except (OSError, IndexError):
                continue
        return None

    def close(self) -> None:
        anyio.notify_closing(self._read_fd)
        os.close(self._read_fd)
        self.file.close()


async def stop_process_group(pgid: int, grace: float = 0.5, patience: float = 1.0) -> None:
    """Ends what is left of a backend's process group: after `grace` seconds SIGTERM, after
    `patience` more SIGKILL. Runs beside the graceful close (stdin EOF), which the leader usually
    obeys within the grace; its children, which never see that EOF, are what this is for."""
    for sig, wait in ((None, grace), (signal.SIGTERM, patience), (signal.SIGKILL, patience)):
        try:
            os.killpg(pgid, sig or 0)
        except (ProcessLookupError, PermissionError):
            return
        with anyio.move_on_after(wait):
            while True:
                await anyio.sleep(0.05)
                try:
                    os.killpg(pgid, 0)
                except (ProcessLookupError, PermissionError):
                    return


def make_transport(spec: ServerSpec, stderr: StderrTail | None) -> ClientTransport:
    kind = spec.kind
    if kind == "stdio":
        assert spec.command is not None
        return StdioTransport(command=spec.command, args=list(spec.args), env=dict(spec.env),
                              cwd=spec.cwd, keep_alive=False,
                              log_file=stderr.file if stderr else None)
    assert spec.url is not None
    if kind == "sse":
        return SSETransport(spec.url, headers=spec.http_headers())
    return StreamableHttpTransport(spec.url, headers=spec.http_headers())
