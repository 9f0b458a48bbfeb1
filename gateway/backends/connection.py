"""One connected session to a backend, held open by a task of its own.

The transports open task groups, and a task group must be left by the task that entered it; a
backend's session, though, is opened by whichever task (re)starts it and closed by whichever task
finds it dead or removes it. So a task in the pool's task group enters the mcp `Client` and holds
it until asked to leave, the way FastMCP's own client runs its session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import metadata
from typing import Any

import anyio
from mcp import Client, ClientSession
from mcp_types import Implementation

logger = logging.getLogger("gateway.backends")

CLOSE_GRACE = 5.0  # for a session to wind down before it is cancelled


class Connection:
    def __init__(self, client: Client, start_task: Callable[..., None]) -> None:
        self.client = client
        self._start_task = start_task
        self._opened = anyio.Event()
        self._leave = anyio.Event()
        self._done = anyio.Event()
        self._scope = anyio.CancelScope()
        self._error: BaseException | None = None

    @property
    def session(self) -> ClientSession:
        return self.client.session

    async def open(self) -> None:
        """Connects and negotiates; raises what connecting raised. Bound it with a timeout: a
        cancelled open leaves the connection to `close()`."""
        self._start_task(self._hold)
        await self._opened.wait()
        if self._error is not None:
            raise self._error

    async def _hold(self) -> None:
        try:
            with self._scope:
                async with self.client:
                    self._opened.set()
                    await self._leave.wait()
        except Exception as exc:
            if self._opened.is_set():
                # A serving session ended by an exception rather than by its backend going away:
                # its calls fail and the backend is restarted, so say what happened.
                logger.warning("%s: the backend session ended with an error", self.client.client_info.name,
                               exc_info=True)
            self._error = exc  # reported by open() while connecting
        finally:
            self._opened.set()
            self._done.set()

    async def close(self) -> None:
        self._leave.set()
        if not self._opened.is_set():
            self._scope.cancel()  # still connecting: nothing to wind down
        with anyio.move_on_after(CLOSE_GRACE):
            await self._done.wait()
            return
        self._scope.cancel()
        await self._done.wait()


def client_for(transport: Any, name: str, **options: Any) -> Client:
    """An mcp `Client` as every backend gets one: no response cache (the gateway keeps its own
    index and re-lists on list_changed), every log level opted into on modern connections, so the
    backend's own level setting decides what reaches the caller."""
    return Client(transport, cache=None, log_level="debug",
                  client_info=Implementation(name=f"mcp-gateway ({name})", version=_version()), **options)


def _version() -> str:
    try:
        return metadata.version("mcp-gateway")
    except metadata.PackageNotFoundError:
        return "0"
