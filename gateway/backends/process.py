"""Backend processes: starting one, keeping the tail of its stderr (stopping one: `family`).

Light on imports on purpose: the CLI starts the configured stdio backends with it before loading
the MCP stack, so their start-up overlaps the gateway's own.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from typing import TextIO

import anyio

from gateway.backends import family
from gateway.config import ServerSpec

logger = logging.getLogger("gateway.backends")

# What a stdio backend inherits of our environment besides its own `env`: the same short list as
# the MCP SDK's stdio client (`mcp.client.stdio.DEFAULT_INHERITED_ENV_VARS` on POSIX), so that
# secrets in the gateway's environment never reach a backend unasked.
INHERITED_ENV = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")


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
        if self.file.closed:  # closed already: the descriptor's number may belong to another file by now
            return
        anyio.notify_closing(self._read_fd)
        os.close(self._read_fd)
        self.file.close()


def start_process(spec: ServerSpec, stderr: StderrTail) -> subprocess.Popen[bytes]:
    """Starts a stdio backend in a session (and process group) of its own, pipes non-blocking, its
    family's token in its environment (see `gateway.backends.family`)."""
    assert spec.command is not None
    env = {k: v for k in INHERITED_ENV if (v := os.environ.get(k)) is not None and not v.startswith("()")}
    token = family.new_token()
    process = subprocess.Popen([spec.command, *spec.args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=stderr.file, env=env | spec.env | {family.MARKER: token}, cwd=spec.cwd,
                               start_new_session=True, bufsize=0)
    family.adopt(process, token)
    assert process.stdin is not None and process.stdout is not None
    os.set_blocking(process.stdin.fileno(), False)
    os.set_blocking(process.stdout.fileno(), False)
    return process


@dataclass
class Started:
    """A backend process started ahead of its session, and its stderr."""

    process: subprocess.Popen[bytes] | None
    stderr: StderrTail


def start_ahead(specs: dict[str, ServerSpec]) -> dict[str, Started]:
    """Starts every active stdio backend now. One that cannot start gets no process; connecting
    it later reports why, as for any other start."""
    started: dict[str, Started] = {}
    for name, spec in specs.items():
        if spec.active and spec.kind == "stdio":
            stderr = StderrTail(name)
            try:
                started[name] = Started(start_process(spec, stderr), stderr)
            except (OSError, ValueError):
                started[name] = Started(None, stderr)
    return started


def kill_unused(started: dict[str, Started]) -> None:
    """Stops processes started ahead that no session took over (the gateway failed to start)."""
    unused = {entry.process.pid for entry in started.values() if entry.process is not None}
    family.kill_now(f for f in family.running() if f.leader in unused)
