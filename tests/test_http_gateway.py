"""End to end over HTTP: the gateway's streamable-HTTP and SSE fronts, remote backends, signals."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from fastmcp import Client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from conftest import (GATEWAY, MODES, Notifications, backend_spec, free_port, gateway_env, settled,
                      http_gateway, processes_marked, remote_backend, stdio_client, catalog_entry, text_of, wait_for,
                      wait_until, write_config)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("mode", MODES)
async def test_streamable_http_front(tmp_path: Path, mark: str, mode: str) -> None:
    config = write_config(tmp_path / "config.json", {"testing": backend_spec(mark)})
    async with http_gateway(config, mark) as (url, _proc):
        notes = Notifications()
        async with Client(url, mode=mode, message_handler=notes, timeout=60) as client:
            assert (client.protocol_version in MODERN_PROTOCOL_VERSIONS) == (mode == "auto")
            await settled(client)  # the gateway serves while its backends start
            assert "testing__echo" in {t.name for t in await client.list_tools()}
            assert (await client.call_tool("testing__add", {"a": 1, "b": 2})).data == 3
            result = await client.call_tool("call_backend", {"server": "testing", "tool": "echo",
                                                             "params": {"text": "over http"}})
            assert text_of(result) == "over http"
            timed_out = await client.call_tool("call_backend", {"server": "testing", "tool": "hang",
                                                                "timeout": 0.3}, raise_on_error=False)
            assert timed_out.is_error and "timed out after 0.3s" in text_of(timed_out)

            await client.call_tool("register_server", {"name": "extra", **catalog_entry(mark)})
            await wait_for(lambda: notes.tools_changed >= 1, timeout=5, message="tools/list_changed")
            assert (await client.call_tool("extra__echo", {"text": "x"})).data == "x"
            await client.call_tool("remove_server", {"name": "extra"})
            assert "extra__echo" not in {t.name for t in await client.list_tools()}
            # 1 MiB of text (twice on the wire: content and structured content): a handshake-era
            # client refuses a server-sent event over 1 MiB; an answer that is only the response
            # comes as one JSON body, which has no such limit
            assert len((await client.call_tool("testing__big", {"kb": 1024})).data) == 1024 * 1024


async def test_sse_front(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {"testing": backend_spec(mark)})
    async with http_gateway(config, mark, "sse") as (url, _proc):
        assert url.endswith("/sse")
        async with Client(url, timeout=60) as client:
            assert (await client.call_tool("testing__echo", {"text": "sse"})).data == "sse"


async def test_remote_backends_over_streamable_http_and_sse(tmp_path: Path, mark: str) -> None:
    async with remote_backend(mark, "http") as (http_url, _), remote_backend(mark, "sse") as (sse_url, _):
        config = write_config(tmp_path / "config.json", {
            "web": {"url": http_url, "headers": {"X-Api-Key": "k"}},
            "legacy": {"url": sse_url, "type": "sse", "timeout": 1},
            "unreachable": {"url": f"http://127.0.0.1:{free_port()}/mcp"},
        }, connect_timeout=5)
        async with stdio_client(config, mark) as client:
            listed = {s["name"]: s for s in (await client.call_tool("list_servers", {})).structured_content["servers"]}
            assert listed["web"]["transport"] == "streamable-http" and listed["web"]["status"] == "ready"
            assert listed["legacy"]["transport"] == "sse" and listed["legacy"]["status"] == "ready"
            assert listed["unreachable"]["status"] == "failed" and listed["unreachable"]["last_error"]
            assert (await client.call_tool("web__echo", {"text": "a"})).data == "a"
            assert (await client.call_tool("legacy__echo", {"text": "b"})).data == "b"
            timed_out = await client.call_tool("legacy__hang", {}, raise_on_error=False)
            assert timed_out.is_error
            registered = await client.call_tool("register_server", {"name": "late", "url": http_url})
            assert registered.structured_content["status"] == "ready"
            assert (await client.call_tool("late__add", {"a": 2, "b": 2})).data == 4
            refused = await client.call_tool("register_server", {"name": "elsewhere",
                                                                 "url": "https://example.com/mcp"},
                                             raise_on_error=False)
            assert refused.is_error and "allow_urls" in text_of(refused)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signals_stop_every_backend_and_its_children(tmp_path: Path, mark: str, sig: signal.Signals) -> None:
    config = write_config(tmp_path / "config.json", {"a": backend_spec(mark), "b": backend_spec(mark)})
    async with http_gateway(config, mark) as (url, proc):
        async with Client(url, timeout=60) as client:
            pids = [(await client.call_tool(f"{name}__pid", {})).data for name in ("a", "b")]
            pids.append((await client.call_tool("a__spawn_child", {"seconds": 120})).data)
        proc.send_signal(sig)
        # The gateway stops its backends, then exits: 1.5-3 s on an idle 2-core machine here, but 5.6 s
        # once with the test suite's three workers on it, so the bound is the loaded machine's
        await wait_for(lambda: proc.poll() is not None, timeout=10, message="the gateway to exit")
        for pid in pids:
            await wait_for(lambda: gone(pid), timeout=2, message=f"process {pid} to exit")


async def test_backends_start_concurrently(tmp_path: Path, mark: str) -> None:
    slow = backend_spec(mark, env={"TEST_BACKEND_START_DELAY": "6"})

    async def startup(count: int) -> float:
        config = write_config(tmp_path / f"config{count}.json", {f"s{i}": slow for i in range(count)})
        started = time.monotonic()
        async with stdio_client(config, mark) as client:
            listed = (await client.call_tool("list_servers", {})).structured_content["servers"]
            assert [s["status"] for s in listed] == ["ready"] * count
            return time.monotonic() - started

    one, three = await startup(1), await startup(3)
    # one after another would add 6 s per extra backend (12 s); together they add only the CPU
    # time of starting two more Python processes
    assert three < one + 8, (one, three)


def test_a_port_in_use_fails_cleanly_and_stops_the_started_backends(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {"a": backend_spec(mark), "b": backend_spec(mark)})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([GATEWAY, "--transport", "streamable-http", "--port", str(port),
                               "--auto-register", str(config)], env=gateway_env(mark), capture_output=True,
                              timeout=60)
    assert done.returncode == 1
    assert "cannot serve" in done.stderr.decode() and "Traceback" not in done.stderr.decode()
    # the backends, started before the port was tried, are gone (the autouse leak check agrees)
    wait_until(lambda: not processes_marked(mark), timeout=5, message="the started backends to exit")
