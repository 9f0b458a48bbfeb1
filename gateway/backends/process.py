"""Backend processes: starting one, keeping the tail of its stderr, stopping its process group.

Light on imports on purpose: the CLI starts the configured stdio backends with it before loading
the MCP stack, so their start-up overlaps the gateway's own.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from dataclasses import dataclass
from typing import TextIO

import anyio

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
        anyio.notify_closing(self._read_fd)
        os.close(self._read_fd)
        self.file.close()


def start_process(spec: ServerSpec, stderr: StderrTail) -> subprocess.Popen[bytes]:
    """Starts a stdio backend in a session (and process group) of its own, pipes non-blocking."""
    assert spec.command is not None
    env = {k: v for k in INHERITED_ENV if (v := os.environ.get(k)) is not None and not v.startswith("()")}
    process = subprocess.Popen([spec.command, *spec.args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=stderr.file, env=env | spec.env, cwd=spec.cwd, start_new_session=True,
                               bufsize=0)
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
    for entry in started.values():
        if entry.process is not None and entry.process.poll() is None:
            try:
                os.killpg(entry.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            entry.process.wait()


async def stop_process_group(process: subprocess.Popen[bytes], grace: float = 0.5,
                             patience: float = 1.0) -> None:
    """Waits `grace` seconds for the backend's process group to end by itself, then SIGTERMs it
    and after `patience` more seconds SIGKILLs it. The leader usually obeys the end of its input
    within the grace; its children, which never see that, are what the signals are for."""
    for sig, wait in ((None, grace), (signal.SIGTERM, patience), (signal.SIGKILL, patience)):
        if sig is not None:
            try:
                os.killpg(process.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        with anyio.move_on_after(wait):
            while True:
                process.poll()  # reap the leader, or it stays in the group as a zombie
                try:
                    os.killpg(process.pid, 0)
                except (ProcessLookupError, PermissionError):
                    return
                await anyio.sleep(0.02)
    logger.warning("backend process group %d survived SIGKILL", process.pid)
