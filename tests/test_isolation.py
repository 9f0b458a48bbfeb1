"""One backend never holds up the rest: the gateway serves while backends start, a remote backend
that is back is used at once, and abandoned handshake-era HTTP sessions expire."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client

from conftest import MODES, Notifications, backend_spec, http_gateway, remote_backend, stdio_client, text_of, \
    write_config


async def servers(client: Client) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in (await client.call_tool("list_servers", {})).structured_content["servers"]}


async def tool_names(client: Client) -> set[str]:
    return {t.name for t in await client.list_tools()}


def gated(mark: str, gate: Path) -> dict[str, Any]:
    """The testing backend, which does not answer `initialize` until `gate` exists."""
    return backend_spec(mark, env={"TEST_BACKEND_START_GATE": str(gate)})


@pytest.mark.parametrize("mode", MODES)
async def test_stdio_front_serves_while_backends_are_starting(tmp_path: Path, mark: str, mode: str) -> None:
    gate = tmp_path / "gate"
    config = write_config(tmp_path / "config.json", {
        "fast": backend_spec(mark), "late": gated(mark, gate), "never": gated(mark, tmp_path / "never")},
        call_timeout=30)
    notes = Notifications()
    async with stdio_client(config, mark, mode, message_handler=notes, settle=False) as client:
        listed = await servers(client)
        assert listed["late"]["status"] == listed["never"]["status"] == "connecting"
        # the healthy backend answers (its first call waits for its own start, nobody else's)
        first = await client.call_tool("call_backend", {"server": "fast", "tool": "echo", "params": {"text": "hi"}})
        assert text_of(first) == "hi"
        assert (await client.call_tool("fast__echo", {"text": "again"})).data == "again"
        assert (await servers(client))["late"]["status"] == "connecting"
        assert not {n for n in await tool_names(client) if n.startswith(("late__", "never__"))}

        # calls to a backend that is still starting wait for it, by either name
        answers: list[str] = []

        async def call(tool: str, params: dict[str, Any]) -> None:
            answers.append(text_of(await client.call_tool(tool, params)))

        notified = notes.tools_changed
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "call_backend", {"server": "late", "tool": "echo", "params": {"text": "waited"}})
            tg.start_soon(call, "late__echo", {"text": "by name"})
            await servers(client)  # a round trip later the calls are with the gateway, waiting
            assert answers == []
            gate.touch()
        assert sorted(answers) == ["by name", "waited"]

        # its tools appear, announced to clients that have a channel for it
        if mode == "legacy":
            with anyio.fail_after(30):
                while notes.tools_changed == notified:
                    await anyio.sleep(0.02)
        assert "late__echo" in await tool_names(client)
        listed = await servers(client)
        assert listed["late"]["status"] == "ready" and listed["never"]["status"] == "connecting"


async def test_http_front_and_healthz_serve_while_a_backend_is_starting(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {"fast": backend_spec(mark),
                                                     "never": gated(mark, tmp_path / "never")})
    async with http_gateway(config, mark) as (url, _proc):
        base = url.removesuffix("/mcp")
        async with httpx2.AsyncClient(timeout=30) as http:
            assert (await http.get(base + "/healthz")).json() == {"status": "ok"}
            listed = {s["name"]: s for s in (await http.get(base + "/servers")).json()["servers"]}
            assert listed["never"]["status"] == "connecting"
        async with Client(url, timeout=60) as client:
            result = await client.call_tool("call_backend", {"server": "fast", "tool": "echo",
                                                             "params": {"text": "over http"}})
            assert text_of(result) == "over http"
            assert (await servers(client))["never"]["status"] == "connecting"


async def test_a_remote_backend_that_is_back_is_used_at_once(tmp_path: Path, mark: str) -> None:
    first = remote_backend(mark, "http")
    url, _proc = await first.__aenter__()
    try:
        config = write_config(tmp_path / "config.json", {"remote": {"url": url}})
        async with stdio_client(config, mark, settle=False) as client:
            async def echo() -> Any:
                return await client.call_tool("remote__echo", {"text": "x"}, raise_on_error=False)

            assert text_of(await echo()) == "x"
            await first.__aexit__()  # the backend goes away, its port closes
            assert (await echo()).is_error  # the call that finds it gone

            retry_at = 0.0
            gate = tmp_path / "gate"

            async def drive_up_the_backoff() -> None:
                """Calls that fail raise the backoff to 8 s; then the new backend may serve (it needs
                seconds to start on a loaded machine, and the test needs it serving well before the
                backoff is out)."""
                nonlocal retry_at
                while True:
                    assert (await echo()).is_error
                    listed = (await servers(client))["remote"]
                    retry_at = time.monotonic() + listed["next_retry_in_seconds"]
                    if listed["next_retry_in_seconds"] >= 7:
                        break
                    await anyio.sleep(listed["next_retry_in_seconds"])
                gate.touch()

            # It comes back on the same port, started now (its imports take a while) and held until
            # the backoff is high, so that waiting the backoff out would take seconds more.
            again = remote_backend(mark, "http", port=first.port, TEST_BACKEND_START_GATE=str(gate))
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(drive_up_the_backoff)
                    async with again:  # returns once its port is open
                        back = time.monotonic()
                        assert retry_at - back > 1.5, "the backend took too long to serve for this test to tell"
                        with anyio.fail_after(1.5):
                            while (answer := await echo()).is_error:
                                await anyio.sleep(0.05)
                        assert text_of(answer) == "x"
                        assert (await servers(client))["remote"]["status"] == "ready"
    finally:
        await first.__aexit__()


async def test_an_idle_handshake_era_http_session_is_closed(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {}, session_idle_timeout=1)
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    version = "2025-11-25"
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    async with http_gateway(config, mark) as (url, _proc), httpx2.AsyncClient(timeout=30) as http:
        # a client of the handshake era that opens a session and then goes quiet (no stream left open)
        opened = await http.post(url, headers=headers, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "idle", "version": "0"}}})
        assert opened.status_code == 200
        session = {**headers, "Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": version}
        initialized = await http.post(url, headers=session, json={"jsonrpc": "2.0",
                                                                  "method": "notifications/initialized"})
        assert initialized.status_code == 202
        assert (await http.post(url, headers=session, json=ping)).status_code == 200
        with anyio.fail_after(15):
            while True:
                await anyio.sleep(1.5)  # longer than the idle timeout, with nothing in flight
                status = (await http.post(url, headers=session, json=ping)).status_code
                if status == 404:
                    break
                assert status == 200
