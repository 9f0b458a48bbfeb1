"""Shared helpers: run the real `gateway` command, make configs, prove nothing leaks."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from fastmcp.client.transports import StdioTransport

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = Path(__file__).resolve().parent / "backends"
TESTING_SERVER = BACKENDS / "testing_server.py"
GATEWAY = str(Path(sys.executable).parent / "gateway")
PYTHON = sys.executable
MODES = ["auto", "legacy"]


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
               message: str = "condition") -> Any:
    """Polls `condition` until truthy; fails the test after `timeout` seconds. Only outside an event
    loop: inside one it would block the very loop that has to make the condition come true."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("wait_until would block the running event loop; use `await wait_for(...)`")
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


async def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
                   message: str = "condition") -> Any:
    """`wait_until` for async code: the event loop keeps running between polls."""
    with anyio.move_on_after(timeout):
        while not (value := condition()):
            await anyio.sleep(interval)
        return value
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def served_promptly(latencies: list[float], bound: float = 0.1) -> bool:
    """Every sample but the worst within `bound`, and the worst within 5 × `bound`: on a shared
    2-core machine running tests in parallel, the scheduler alone can delay one sample, while a
    blocked event loop delays them all."""
    ordered = sorted(latencies)
    return len(ordered) >= 2 and ordered[-2] < bound and ordered[-1] < 5 * bound


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_marked(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("GATEWAY_TEST_MARK") == mark and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture
def mark() -> Iterator[str]:
    """A tag put in the environment of every process a test starts; none may outlive the test."""
    value = uuid.uuid4().hex
    yield value
    try:
        wait_until(lambda: not processes_marked(value), timeout=8, message="test processes to exit")
    except AssertionError:
        leaked = processes_marked(value)
        for proc in leaked:
            proc.kill()
        raise AssertionError(f"leaked processes: {[(p.pid, p.cmdline()) for p in leaked]}")


def backend_spec(mark: str, **extra: Any) -> dict[str, Any]:
    """Config entry for the testing backend over stdio."""
    env = {"GATEWAY_TEST_MARK": mark, **extra.pop("env", {})}
    return {"command": PYTHON, "args": [str(TESTING_SERVER)], "env": env, **extra}


# Env names the testing backend reads; the `testing` catalog template lets a client set them.
TESTING_ENV = ("GATEWAY_TEST_MARK", "API_TOKEN", "PROBE_NAME", "TEST_BACKEND_CRASH_ON_START",
               "TEST_BACKEND_CRASH_ON_START_IF", "TEST_BACKEND_START_DELAY", "TEST_BACKEND_CANCEL_LOG")
TESTING_TEMPLATE = {"description": "the testing backend", "command": PYTHON, "args": [str(TESTING_SERVER)],
                    "client_env": {name: r"[\w./:-]*" for name in TESTING_ENV}}


def catalog_entry(mark: str, **env: str) -> dict[str, Any]:
    """register_server's arguments (besides the name) for the testing backend from the catalog."""
    return {"template": "testing", "env": {"GATEWAY_TEST_MARK": mark, **env}}


def write_config(path: Path, servers: dict[str, Any], **gateway: Any) -> Path:
    settings = {"catalog": {"testing": TESTING_TEMPLATE}, "allow_urls": ["http://127.0.0.1:*"], **gateway}
    path.write_text(json.dumps({"mcpServers": servers, "gateway": settings}, indent=2))
    return path


def gateway_env(mark: str) -> dict[str, str]:
    return {**os.environ, "GATEWAY_TEST_MARK": mark}


async def settled(client: Client, timeout: float = 60) -> dict[str, dict[str, Any]]:
    """list_servers, by name, once no backend is still connecting (the gateway serves while they start)."""
    with anyio.fail_after(timeout):
        while True:
            listed = (await client.call_tool("list_servers", {})).structured_content["servers"]
            if all(s["status"] != "connecting" for s in listed):
                return {s["name"]: s for s in listed}
            await anyio.sleep(0.05)


class GatewayClient(Client):
    """A client of the gateway. The gateway serves while its backends start; unless `settle` is
    false, entering also waits until none of them is still connecting, for tests about other things."""

    def __init__(self, *args: Any, settle: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settle = settle

    async def __aenter__(self) -> GatewayClient:
        await super().__aenter__()
        if self._settle:
            try:
                await settled(self)
            except BaseException:
                await self.__aexit__(None, None, None)
                raise
        return self


def stdio_client(config: Path, mark: str, mode: str = "auto", *extra_args: str, settle: bool = True,
                 **kwargs: Any) -> Client:
    transport = StdioTransport(GATEWAY, ["--auto-register", str(config), *extra_args],
                               env={"GATEWAY_TEST_MARK": mark}, keep_alive=False)
    return GatewayClient(transport, mode=mode, timeout=60, settle=settle, **kwargs)


class ServedProcess:
    """A server process on a free port: `with` it in sync code, `async with` it in async code (the
    waits then leave the event loop running). Gives (url, process); stops it and waits for the
    port to close on the way out."""

    def __init__(self, args: list[str], path: str, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.port = port or free_port()
        self.args = [arg.replace("{port}", str(self.port)) for arg in args]
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> None:
        # stderr into a file, not a pipe: a pipe nobody reads stops a chatty server once it is full
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=subprocess.DEVNULL, stderr=self.stderr)

    def _started(self) -> bool:
        return port_open(self.port) or self.proc.poll() is not None

    def _check(self) -> tuple[str, subprocess.Popen[bytes]]:
        if self.proc.poll() is not None:
            self.stderr.seek(0)
            raise AssertionError(f"{self.args[0]} exited: {self.stderr.read().decode(errors='replace')}")
        return self.url, self.proc

    def _stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()

    def _kill_if_running(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()

    def __enter__(self) -> tuple[str, subprocess.Popen[bytes]]:
        self._start()
        try:
            wait_until(self._started, timeout=60, message=f"port {self.port}")
            return self._check()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *_exc: object) -> None:
        self._stop()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._kill_if_running()
        wait_until(lambda: not port_open(self.port), timeout=5, message=f"port {self.port} to close")

    async def __aenter__(self) -> tuple[str, subprocess.Popen[bytes]]:
        self._start()
        try:
            await wait_for(self._started, timeout=60, message=f"port {self.port}")
            return self._check()
        except BaseException:
            await self.__aexit__()
            raise

    async def __aexit__(self, *_exc: object) -> None:
        self._stop()
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(10):
                while self.proc.poll() is None:
                    await anyio.sleep(0.02)
            self._kill_if_running()
            await wait_for(lambda: not port_open(self.port), timeout=5, message=f"port {self.port} to close")


def http_gateway(config: Path | None, mark: str, transport: str = "streamable-http",
                 *extra_args: str, env: dict[str, str] | None = None) -> ServedProcess:
    """Runs `gateway --transport ...` on a free port; `env` adds to its environment."""
    args = [GATEWAY, "--transport", transport, "--port", "{port}", *extra_args]
    if config is not None:
        args += ["--auto-register", str(config)]
    return ServedProcess(args, "/sse" if transport == "sse" else "/mcp", gateway_env(mark) | (env or {}))


def remote_backend(mark: str, transport: str, port: int | None = None, **env: str) -> ServedProcess:
    """The testing backend serving streamable HTTP (`http`) or SSE on its own port (`port` to serve
    again where an earlier one served); `env` adds to its environment."""
    return ServedProcess([PYTHON, str(TESTING_SERVER), transport, "{port}"],
                         "/sse" if transport == "sse" else "/mcp", gateway_env(mark) | env, port)


class Notifications(MessageHandler):
    def __init__(self) -> None:
        self.tools_changed = 0

    async def on_tool_list_changed(self, message: Any) -> None:
        self.tools_changed += 1


def text_of(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)
