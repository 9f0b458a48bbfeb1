"""End to end over stdio: a real MCP client drives the real `gateway` command, in both protocol eras."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import psutil
import pytest
from mcp import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from conftest import (MODES, Notifications, backend_spec, stdio_client, catalog_entry, text_of, wait_for,
                      write_config)

CONTROL = {"register_server", "remove_server", "list_servers", "call_backend", "route_pipeline"}


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def config(tmp_path: Path, mark: str) -> Path:
    return write_config(tmp_path / "config.json", {"testing": backend_spec(mark)})


async def servers(client) -> dict[str, dict]:
    result = await client.call_tool("list_servers", {})
    return {s["name"]: s for s in result.structured_content["servers"]}


async def test_tools_are_reachable_by_call_backend_and_by_namespace(config: Path, mark: str, mode: str) -> None:
    async with stdio_client(config, mark, mode) as client:
        assert (client.protocol_version in MODERN_PROTOCOL_VERSIONS) == (mode == "auto")
        names = {t.name for t in await client.list_tools()}
        assert CONTROL <= names
        assert {"testing__echo", "testing__add", "testing__slow"} <= names

        direct = await client.call_tool("call_backend", {"server": "testing", "tool": "add",
                                                         "params": {"a": 2, "b": 40}})
        assert direct.structured_content == {"result": 42}
        as_string = await client.call_tool("call_backend", {"server": "testing", "tool": "add",
                                                            "params": '{"a": 1, "b": 1}'})
        assert as_string.structured_content == {"result": 2}
        namespaced = await client.call_tool("testing__add", {"a": 2, "b": 40})
        assert namespaced.data == 42

        listed = await servers(client)
        assert listed["testing"]["status"] == "ready"
        assert listed["testing"]["transport"] == "stdio"
        assert listed["testing"]["protocol_version"] == "2026-07-28"
        assert "echo" in [t["name"] for t in listed["testing"]["tools"]]


async def test_results_pass_through_unchanged(config: Path, mark: str, mode: str) -> None:
    async with stdio_client(config, mark, mode) as client:
        for call in (lambda tool: client.call_tool("call_backend", {"server": "testing", "tool": tool},
                                                   raise_on_error=False),
                     lambda tool: client.call_tool(f"testing__{tool}", {}, raise_on_error=False)):
            image = await call("image")
            assert image.content[0].type == "image" and image.content[0].mime_type == "image/png"
            assert base64.b64decode(image.content[0].data).startswith(b"\x89PNG")
            audio = await call("audio")
            assert audio.content[0].type == "audio"
            embedded = await call("embedded")
            assert embedded.content[0].type == "resource"
            assert embedded.content[0].resource.text
            structured = await call("structured")
            assert structured.structured_content == {"answer": 42, "items": [1, 2, 3]}
            mixed = await call("mixed")
            assert [block.type for block in mixed.content][:2] == ["text", "image"]
            assert mixed.structured_content is not None
        failed = await client.call_tool("call_backend", {"server": "testing", "tool": "fail",
                                                         "params": {"message": "disk on fire"}},
                                        raise_on_error=False)
        assert failed.is_error and "disk on fire" in text_of(failed)
        failed = await client.call_tool("testing__fail", {"message": "disk on fire"}, raise_on_error=False)
        assert failed.is_error and "disk on fire" in text_of(failed)


async def test_bad_input_gets_clear_errors_and_the_gateway_keeps_serving(config: Path, mark: str, mode: str) -> None:
    async with stdio_client(config, mark, mode) as client:
        async def error(params: dict) -> str:
            result = await client.call_tool("call_backend", params, raise_on_error=False)
            assert result.is_error, params
            return text_of(result)

        assert "unknown server 'nope'" in (msg := await error({"server": "nope", "tool": "echo"}))
        assert "testing" in msg
        msg = await error({"server": "testing", "tool": "nope"})
        assert "no tool 'nope'" in msg and "echo" in msg
        msg = await error({"server": "testing", "tool": "add", "params": "{not json"})
        assert "not valid JSON" in msg
        msg = await error({"server": "testing", "tool": "add", "params": "[1, 2]"})
        assert "JSON object" in msg
        msg = await error({"server": "testing", "tool": "add", "params": {"a": "x", "b": 1}})
        assert "'a'" in msg and "integer" in msg and "b (integer, required)" in msg
        msg = await error({"server": "testing", "tool": "add", "params": {"a": 1}})
        assert "'b' is a required property" in msg
        bad = await client.call_tool("testing__add", {"a": 1}, raise_on_error=False)
        assert bad.is_error and "'b' is a required property" in text_of(bad)
        assert (await client.call_tool("testing__echo", {"text": "still here"})).data == "still here"


async def test_timeouts_per_call_per_server_and_the_session_survives(tmp_path: Path, mark: str, mode: str) -> None:
    cancel_log = tmp_path / "cancelled.log"
    config = write_config(tmp_path / "config.json", {
        "testing": backend_spec(mark, env={"TEST_BACKEND_CANCEL_LOG": str(cancel_log)}),
        "quick": backend_spec(mark, timeout=0.5),
    }, call_timeout=1.5)
    async with stdio_client(config, mark, mode) as client:
        started = time.monotonic()
        result = await client.call_tool("call_backend", {"server": "testing", "tool": "slow",
                                                         "params": {"seconds": 30}, "timeout": 0.4},
                                        raise_on_error=False)
        assert time.monotonic() - started < 3
        assert result.is_error
        assert "'slow'" in text_of(result) and "'testing'" in text_of(result) and "0.4s" in text_of(result)
        # the backend was told to cancel, and the same session keeps working
        await wait_for(lambda: cancel_log.exists() and cancel_log.read_text().strip(), timeout=5,
                   message="the backend to see the cancellation")
        assert (await client.call_tool("testing__echo", {"text": "ok"})).data == "ok"

        started = time.monotonic()
        per_server = await client.call_tool("quick__slow", {"seconds": 30}, raise_on_error=False)
        assert per_server.is_error and "0.5s" in text_of(per_server)
        default = await client.call_tool("testing__hang", {}, raise_on_error=False)
        assert default.is_error and "1.5s" in text_of(default)
        assert time.monotonic() - started < 6
        assert (await client.call_tool("quick__echo", {"text": "ok"})).data == "ok"


@pytest.mark.filterwarnings("ignore:The logging capability is deprecated")  # logging/setLevel, on purpose
async def test_progress_and_log_messages_reach_the_caller(config: Path, mark: str, mode: str) -> None:
    progress: list[tuple[float, float | None, str | None]] = []
    logs: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async def on_log(message) -> None:
        logs.append(str(message.data))

    async with stdio_client(config, mark, mode, log_handler=on_log) as client:
        await client.call_tool("testing__progress", {"steps": 3}, progress_handler=on_progress)
        assert [p[0] for p in progress] == [1, 2, 3] and progress[-1][1] == 3
        progress.clear()
        await client.call_tool("call_backend", {"server": "testing", "tool": "progress",
                                                "params": {"steps": 2}}, progress_handler=on_progress)
        assert [p[0] for p in progress] == [1, 2]
        await client.call_tool("testing__log", {"message": "hello from the backend", "level": "warning"})
        await wait_for(lambda: any("hello from the backend" in line for line in logs), timeout=5,
                   message="the backend's log message")
        if mode == "legacy":  # logging/setLevel is a handshake-era request
            await client.set_logging_level("error")
            await client.call_tool("testing__log", {"message": "too chatty", "level": "warning"})
            await client.call_tool("testing__log", {"message": "worth knowing", "level": "error"})
            await wait_for(lambda: any("worth knowing" in line for line in logs), timeout=5, message="the error")
            assert not any("too chatty" in line for line in logs)


async def test_register_and_remove_at_runtime(tmp_path: Path, config: Path, mark: str, mode: str) -> None:
    notes = Notifications()
    async with stdio_client(config, mark, mode, message_handler=notes) as client:
        registered = await client.call_tool("register_server", {"name": "extra", **catalog_entry(mark)})
        assert registered.structured_content["registered"] == "extra"
        assert "echo" in {t["name"] for t in registered.structured_content["tools"]}
        await wait_for(lambda: notes.tools_changed >= 1, timeout=5, message="tools/list_changed")
        assert "extra__echo" in {t.name for t in await client.list_tools()}
        assert (await client.call_tool("extra__echo", {"text": "hi"})).data == "hi"
        extra_pid = (await client.call_tool("extra__pid", {})).data

        async def refused(params: dict) -> str:
            result = await client.call_tool("register_server", params, raise_on_error=False)
            assert result.is_error, params
            return text_of(result)

        assert "already exists" in await refused({"name": "extra", **catalog_entry(mark)})
        assert "letters, digits" in await refused({"name": "bad name!", **catalog_entry(mark)})
        assert "must not contain" in await refused({"name": "a__b", **catalog_entry(mark)})
        msg = await refused({"name": "shell", "command": "/bin/sh", "args": ["-c", "id"]})
        assert "not allowed" in msg and "catalog" in msg
        assert "exactly one of" in await refused({"name": "neither"})
        msg = await refused({"name": "crasher", **catalog_entry(mark, TEST_BACKEND_CRASH_ON_START="1")})
        assert "refusing to start" in msg  # the tail of the backend's stderr
        assert set(await servers(client)) == {"testing", "extra"}  # nothing half-registered

        before = notes.tools_changed
        removed = await client.call_tool("remove_server", {"name": "extra"})
        assert removed.structured_content["servers"] == ["testing"]
        await wait_for(lambda: notes.tools_changed > before, timeout=5, message="tools/list_changed")
        assert not any(t.name.startswith("extra__") for t in await client.list_tools())
        await wait_for(lambda: not psutil.pid_exists(extra_pid) or
                   psutil.Process(extra_pid).status() == psutil.STATUS_ZOMBIE,
                   timeout=5, message="the removed backend's process to exit")
        gone = await client.call_tool("remove_server", {"name": "extra"}, raise_on_error=False)
        assert gone.is_error and "unknown server 'extra'" in text_of(gone) and "testing" in text_of(gone)


async def test_registration_that_never_answers_times_out_cleanly(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {}, connect_timeout=2)
    async with stdio_client(config, mark) as client:
        started = time.monotonic()
        result = await client.call_tool("register_server", {
            "name": "silent", **catalog_entry(mark, TEST_BACKEND_START_DELAY="60")}, raise_on_error=False)
        assert result.is_error and "timed out" in text_of(result) and "connect timeout 2s" in text_of(result)
        assert time.monotonic() - started < 8
        assert (await servers(client)) == {}


async def test_failed_backends_are_reported_and_crashes_reconnect(tmp_path: Path, mark: str, mode: str) -> None:
    config = write_config(tmp_path / "config.json", {
        "testing": backend_spec(mark),
        "missing": {"command": "/nonexistent/mcp-server"},
        "crashes": backend_spec(mark, env={"TEST_BACKEND_CRASH_ON_START": "1"}),
    })
    async with stdio_client(config, mark, mode) as client:
        listed = await servers(client)
        assert listed["missing"]["status"] == "failed"
        assert "/nonexistent/mcp-server" in listed["missing"]["last_error"]
        assert listed["crashes"]["status"] == "failed"
        assert "refusing to start" in listed["crashes"]["last_error"]
        assert listed["testing"]["status"] == "ready"
        down = await client.call_tool("call_backend", {"server": "crashes", "tool": "echo"}, raise_on_error=False)
        assert down.is_error and "crashes" in text_of(down)

        first_pid = (await client.call_tool("testing__pid", {})).data
        started = time.monotonic()
        crashed = await client.call_tool("testing__crash", {}, raise_on_error=False)
        assert crashed.is_error and "lost its connection" in text_of(crashed)
        assert "crashing on purpose" in text_of(crashed)
        assert time.monotonic() - started < 2
        assert (await servers(client))["testing"]["status"] == "down"
        # the next call restarts the backend
        assert (await client.call_tool("testing__echo", {"text": "back"})).data == "back"
        assert (await client.call_tool("testing__pid", {})).data != first_pid
        assert (await servers(client))["testing"]["status"] == "ready"


async def test_a_backend_that_dies_between_calls_is_marked_down(config: Path, mark: str, mode: str) -> None:
    async with stdio_client(config, mark, mode) as client:
        pid = (await client.call_tool("testing__pid", {})).data
        psutil.Process(pid).kill()
        for _ in range(100):
            if (await servers(client))["testing"]["status"] == "down":
                break
        assert (await servers(client))["testing"]["status"] == "down"
        assert (await client.call_tool("testing__echo", {"text": "again"})).data == "again"


async def test_resources_and_prompts_are_re_exported(config: Path, mark: str, mode: str) -> None:
    async with stdio_client(config, mark, mode) as client:
        uris = {str(r.uri) for r in await client.list_resources()}
        assert "test://testing/info" in uris
        assert (await client.read_resource("test://testing/info"))[0].text == "testing backend"
        templates = {t.uri_template for t in await client.list_resource_templates()}
        assert "test://testing/items/{item_id}" in templates
        assert (await client.read_resource("test://testing/items/7"))[0].text == "item 7"
        assert "testing__greet" in {p.name for p in await client.list_prompts()}
        prompt = await client.get_prompt("testing__greet", {"name": "Ada"})
        assert "Hello, Ada!" in prompt.messages[0].content.text
        # errors name the server and what was asked; the gateway keeps serving
        with pytest.raises(MCPError, match="server 'testing' rejected reading 'test://nothing'"):
            await client.read_resource("test://testing/nothing")
        with pytest.raises(MCPError, match="Resource not found"):
            await client.read_resource("test://nosuchserver/info")
        with pytest.raises(MCPError, match="server 'testing' rejected the prompt 'greet'"):
            await client.get_prompt("testing__greet", {})
        assert (await client.read_resource("test://testing/info"))[0].text == "testing backend"


async def test_re_export_can_be_turned_off(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {"testing": backend_spec(mark)}, export_tools=False)
    async with stdio_client(config, mark) as client:
        assert {t.name for t in await client.list_tools()} == CONTROL
        result = await client.call_tool("call_backend", {"server": "testing", "tool": "echo",
                                                         "params": {"text": "x"}})
        assert text_of(result) == "x"


async def test_list_servers_never_shows_secrets(tmp_path: Path, mark: str, monkeypatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_SECRET", "s3cr3t-value-123")
    config = write_config(tmp_path / "config.json", {
        "testing": backend_spec(mark, env={"API_TOKEN": "${GATEWAY_TEST_SECRET}"}),
        "remote": {"url": "http://127.0.0.1:9/mcp?key=s3cr3t-value-123",
                   "headers": {"Authorization": "Bearer s3cr3t-value-123"}},
    })
    transport_env = {"GATEWAY_TEST_MARK": mark, "GATEWAY_TEST_SECRET": "s3cr3t-value-123"}
    client = stdio_client(config, mark)
    client.transport.env = transport_env
    async with client:
        # the backend did receive it...
        assert (await client.call_tool("testing__env", {"name": "API_TOKEN"})).data == "s3cr3t-value-123"
        listed = await client.call_tool("list_servers", {})
        text = json.dumps(listed.structured_content) + text_of(listed)
        assert "s3cr3t-value-123" not in text
        by_name = {s["name"]: s for s in listed.structured_content["servers"]}
        assert by_name["testing"]["env_keys"] == ["API_TOKEN", "GATEWAY_TEST_MARK"]
        assert by_name["remote"]["header_keys"] == ["Authorization"]


async def test_closing_stdin_stops_every_backend_and_its_children(config: Path, mark: str) -> None:
    client = stdio_client(config, mark)
    async with client:
        backend_pid = (await client.call_tool("testing__pid", {})).data
        child_pid = (await client.call_tool("testing__spawn_child", {"seconds": 120})).data
        assert psutil.pid_exists(child_pid)
    started = time.monotonic()
    for pid in (backend_pid, child_pid):
        await wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                   timeout=5, message=f"process {pid} to exit")
    assert time.monotonic() - started < 5
