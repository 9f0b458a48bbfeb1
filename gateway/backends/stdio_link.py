"""The gateway's own stdio link to a backend process, in place of mcp's stdio client.

The session reads lines straight from the process's stdout and writes straight to its stdin (see
`gateway.line_streams`). Owning the process also gives us its pid: closing stops the backend's whole
family, children included (see `gateway.backends.family`).
"""

from __future__ import annotations

import subprocess

import anyio

from gateway.backends.family import stop_family
from gateway.backends.process import StderrTail, start_process
from gateway.config import ServerSpec
from gateway.line_streams import LineReader, LineWriter


class StdioLink:
    """A stdio backend as an mcp client transport: one process, stopped with its family on exit."""

    def __init__(self, spec: ServerSpec, stderr: StderrTail,
                 process: subprocess.Popen[bytes] | None = None) -> None:
        self.spec, self.stderr = spec, stderr
        self._process = process  # one started ahead, or None to start one on entry

    @property
    def alive(self) -> bool:
        """False once the process has exited, even if no request has noticed yet."""
        return self._process is not None and self._process.poll() is None

    async def __aenter__(self) -> tuple[LineReader, LineWriter]:
        process = self._process = self._process or start_process(self.spec, self.stderr)
        assert process.stdin is not None and process.stdout is not None
        return LineReader(process.stdout.fileno()), LineWriter(process.stdin.fileno())

    async def __aexit__(self, *_exc: object) -> None:
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        # The session has closed its streams, which took the pipes off the event loop.
        with anyio.CancelScope(shield=True):
            await stop_family(process)  # ends its input first: a well-behaved server exits on it
            process.stdout.close()

    def __repr__(self) -> str:
        return f"<StdioLink {self.spec.command!r}>"
