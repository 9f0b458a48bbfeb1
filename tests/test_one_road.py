"""Every road into a backend passes the same entry: re-exported tools, `call_backend`, pipeline
steps and resource reads give the same timeout message, the same redaction and the same size
limit, and a backend's log messages reach the client whose request caused them, and nobody else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client
from mcp import MCPError

from conftest import MODES, backend_spec, http_gateway, remote_backend, stdio_client, text_of, write_config

SECRET = "planted-s3cret-4e2a"


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


async def every_road(client: Client, server: str, tool: str, args: dict[str, Any], uri: str) -> dict[str, str]:
    """What each road answers when it fails: the error text a client sees, by road."""
    seen: dict[str, str] = {}
    exported = await client.call_tool(f"{server}__{tool}", args, raise_on_error=False)
    assert exported.is_error, text_of(exported)
    seen["re-exported tool"] = text_of(exported)
    direct = await client.call_tool("call_backend", {"server": server, "tool": tool, "params": args},
                                    raise_on_error=False)
    assert direct.is_error, text_of(direct)
    seen["call_backend"] = text_of(direct)
    piped = await client.call_tool("route_pipeline", {"scenario": "custom", "pipeline": {
        "steps": {"only": {"server": server, "tool": tool, "args": args}}}}, raise_on_error=False)
    report = piped.structured_content
    assert report["status"] == "failed", report
    seen["pipeline step"] = report["steps"]["only"]["error"]
    seen["pipeline answer"] = json.dumps(report) + text_of(piped)
    with pytest.raises(MCPError) as read:
        await client.read_resource(uri)
    seen["resource read"] = read.value.error.message
    return seen


async def test_the_same_timeout_message_on_every_road(tmp_path: Path, mark: str, mode: str) -> None:
    config = write_config(tmp_path / "config.json", {"testing": backend_spec(mark, timeout=0.5)})
    async with stdio_client(config, mark, mode) as client:
        seen = await every_road(client, "testing", "hang", {}, "test://testing/slow/30")
    for road, text in seen.items():
        assert "on server 'testing' timed out after 0.5s (the backend was told to cancel it)" in text, (road, text)
    assert "the call to 'hang' on server" in seen["call_backend"]
    assert seen["re-exported tool"] == seen["call_backend"] == seen["pipeline step"]
    assert seen["resource read"].startswith("reading 'test://slow/30' on server 'testing' timed out")


async def test_the_same_size_limit_on_every_road(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {"testing": backend_spec(mark)}, max_result_bytes=100_000)
    async with stdio_client(config, mark) as client:
        seen = await every_road(client, "testing", "big", {"kb": 200}, "test://testing/big/200")
        for road, text in seen.items():
            # a tool result carries the text twice (content and structured content), and both count
            size = "409,614" if "'big'" in text else "204,800"
            assert f"is {size} bytes, over the gateway's limit of 100,000 (gateway.max_result_bytes)" in text, road
        big_structured = await client.call_tool("testing__big_structured", {"kb": 120}, raise_on_error=False)
        assert big_structured.is_error and "gateway.max_result_bytes" in text_of(big_structured)
        # under the limit, every road delivers
        assert len((await client.call_tool("testing__big", {"kb": 45})).data) == 45 * 1024
        assert len((await client.read_resource("test://testing/big/90"))[0].text) == 90 * 1024


async def test_secrets_are_redacted_on_every_road(tmp_path: Path, mark: str) -> None:
    """A backend that prints its token as it fails to restart: no road shows the token, and
    neither does a pipeline's own answer (its error, a step's, a foreach item's)."""
    crash_marker = tmp_path / "crash-from-now-on"
    config = write_config(tmp_path / "config.json", {
        "leaky": backend_spec(mark, env={"API_TOKEN": "${PLANTED}",
                                         "TEST_BACKEND_CRASH_ON_START_IF": str(crash_marker)}),
        "fine": backend_spec(mark, env={"API_TOKEN": "${PLANTED}"})})
    logs: list[str] = []

    async def on_log(message: Any) -> None:
        logs.append(json.dumps(message.data))

    client = stdio_client(config, mark, log_handler=on_log)
    client.transport.env = {**client.transport.env, "PLANTED": SECRET}
    async with client:
        crash_marker.touch()
        crashed = await client.call_tool("leaky__crash", {}, raise_on_error=False)
        assert crashed.is_error and "lost its connection" in text_of(crashed)
        seen = await every_road(client, "leaky", "echo", {"text": "x"}, "test://leaky/info")
        foreach = await client.call_tool("route_pipeline", {"scenario": "custom", "pipeline": {
            "steps": {"each": {"server": "leaky", "tool": "echo", "foreach": "{{ [1, 2] }}",
                               "args": {"text": "{{ item }}"}, "on_error": "continue"}},
            "output": {"why": "{{ steps.each.error }}"}}}, raise_on_error=False)
        seen["foreach answer"] = json.dumps(foreach.structured_content) + text_of(foreach)
        assert foreach.structured_content["steps"]["each"]["items"][0]["status"] == "failed"
        # a backend's log message that quotes the secret reaches its caller redacted, on every road
        await client.call_tool("fine__log", {"message": f"token is {SECRET}"})
        await client.call_tool("call_backend", {"server": "fine", "tool": "log",
                                                "params": {"message": f"again {SECRET}"}})
        await client.call_tool("route_pipeline", {"scenario": "custom", "pipeline": {
            "steps": {"a": {"server": "fine", "tool": "log", "args": {"message": f"piped {SECRET}"}}}}})
    for road, text in seen.items():
        assert SECRET not in text, (road, text)
        assert "API_TOKEN=***" in text, (road, text)  # the stderr tail is there, blanked
    assert len(logs) == 3 and all("***" in line and SECRET not in line for line in logs), logs


async def chatter_logs(url: str, mode: str, tool: str, tag: str, times: int) -> list[str]:
    lines: list[str] = []

    async def on_log(message: Any) -> None:  # a FastMCP backend logs {"msg": ..., "extra": ...}
        lines.append(message.data["msg"] if isinstance(message.data, dict) else str(message.data))

    async with Client(url, mode=mode, timeout=60, log_handler=on_log) as client:
        result = await client.call_tool(tool, {"tag": tag, "times": times, "pause": 0.03})
        assert result.data == tag
    return lines


async def test_log_messages_reach_their_caller_and_nobody_else(tmp_path: Path, mark: str, mode: str) -> None:
    times = 8
    async with remote_backend(mark, "http") as (backend_url, _):
        config = write_config(tmp_path / "config.json", {"local": backend_spec(mark), "remote": {"url": backend_url}})
        async with http_gateway(config, mark) as (url, _):
            for server in ("remote", "local"):
                got: dict[str, list[str]] = {}

                async def call(tag: str, server: str = server) -> None:
                    got[tag] = await chatter_logs(url, mode, f"{server}__chatter", tag, times)

                async with anyio.create_task_group() as tg:  # both calls in flight at once
                    for tag in ("A", "B"):
                        tg.start_soon(call, tag)
                for tag, other in (("A", "B"), ("B", "A")):
                    assert not any(f"{other} line" in line for line in got[tag]), (server, got)
                if server == "remote":  # the HTTP backend's response streams tie each line to its call
                    assert got == {tag: [f"{tag} line {i}" for i in range(times)] for tag in "AB"}, got
