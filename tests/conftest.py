"""Shared helpers: run the real `gateway` command, make configs, prove nothing leaks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    """Polls `condition` until truthy; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


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


def write_config(path: Path, servers: dict[str, Any], **gateway: Any) -> Path:
    settings = {"allow_commands": [PYTHON], "allow_urls": ["http://127.0.0.1:"], **gateway}
    path.write_text(json.dumps({"mcpServers": servers, "gateway": settings}, indent=2))
    return path


def gateway_env(mark: str) -> dict[str, str]:
    return {**os.environ, "GATEWAY_TEST_MARK": mark}


def stdio_client(config: Path, mark: str, mode: str = "auto", *extra_args: str, **kwargs: Any) -> Client:
    transport = StdioTransport(GATEWAY, ["--auto-register", str(config), *extra_args],
                               env={"GATEWAY_TEST_MARK": mark}, keep_alive=False)
    return Client(transport, mode=mode, timeout=60, **kwargs)


@contextmanager
def http_gateway(config: Path | None, mark: str, transport: str = "streamable-http",
                 *extra_args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Runs `gateway --transport ...` on a free port; yields (url, process)."""
    port = free_port()
    args = [GATEWAY, "--transport", transport, "--port", str(port), *extra_args]
    if config is not None:
        args += ["--auto-register", str(config)]
    proc = subprocess.Popen(args, env=gateway_env(mark), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: port_open(port) or proc.poll() is not None, timeout=60, message="gateway port")
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        path = "/sse" if transport == "sse" else "/mcp"
        yield f"http://127.0.0.1:{port}{path}", proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        wait_until(lambda: not port_open(port), timeout=5, message=f"port {port} to close")


class Notifications(MessageHandler):
    def __init__(self) -> None:
        self.tools_changed = 0

    async def on_tool_list_changed(self, message: Any) -> None:
        self.tools_changed += 1


def text_of(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)
