"""Replicas sharing their state in a real Redis (Debian's redis-server, ./setup.sh --with-redis):
a change on one replica reaches the others, each runs its own copy of a server, and while Redis is
away every replica keeps serving and refuses changes it could not share."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import redis
from fastmcp import Client

from conftest import (ServedProcess, backend_spec, catalog_entry, free_port, http_gateway, processes_marked,
                      settled, text_of, wait_for, write_config)

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed: ./setup.sh --with-redis")
ADMIN = "replica-admin-7a1c"


def redis_process(directory: Path, port: int) -> ServedProcess:
    """Debian's redis-server on 127.0.0.1:port, its append-only file in `directory` (so that a
    restart keeps what it held, as a production Redis does)."""
    return ServedProcess(["redis-server", "--port", "{port}", "--bind", "127.0.0.1", "--dir", str(directory),
                          "--appendonly", "yes", "--save", "", "--protected-mode", "no"], "", port=port)


def backend_copies(mark: str, name: str | None = None) -> list[Any]:
    """The testing backend processes of this test, of one server when `name` is given."""
    found = []
    for proc in processes_marked(mark):
        try:
            line = proc.cmdline()
            env = proc.environ()
        except Exception:  # gone meanwhile
            continue
        if any(part.endswith("testing_server.py") for part in line) and (name is None or env.get("PROBE_NAME") == name):
            found.append(proc)
    return found


@asynccontextmanager
async def replicas(tmp_path: Path, mark: str, url: str, prefix: str, count: int) -> AsyncIterator[list[str]]:
    """`count` gateways over HTTP sharing the store: their MCP URLs."""
    config = write_config(tmp_path / "config.json", {"t": backend_spec(mark)}, store=url, store_prefix=prefix,
                          admin_tokens=[ADMIN])
    async with AsyncExitStack() as stack:
        urls = [(await stack.enter_async_context(http_gateway(config, mark, "streamable-http")))[0]
                for _ in range(count)]
        yield urls


def client(url: str) -> Client:
    return Client(url, auth=ADMIN, timeout=60)


def api(url: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=url.removesuffix("/mcp"), headers={"Authorization": f"Bearer {ADMIN}"},
                              timeout=30)


async def servers_of(url: str) -> dict[str, dict[str, Any]]:
    async with client(url) as c:
        return {s["name"]: s for s in (await c.call_tool("list_servers", {})).structured_content["servers"]}


async def test_a_change_on_one_replica_reaches_the_others(tmp_path: Path, mark: str) -> None:
    port, prefix = free_port(), f"test-{mark[:12]}"
    async with redis_process(tmp_path, port):
        url = f"redis://127.0.0.1:{port}/0"
        async with replicas(tmp_path, mark, url, prefix, 3) as (a, b, c):
            for replica in (a, b, c):
                async with client(replica) as each:
                    await settled(each)
            assert len(backend_copies(mark)) == 3  # each replica's copy of the config's server

            async with client(a) as on_a:
                await on_a.call_tool("register_server", {"name": "shared", **catalog_entry(mark, PROBE_NAME="shared")})
            for replica in (b, c):  # each starts its own copy, and serves it
                await wait_for(lambda: len(backend_copies(mark, "shared")) == 3, timeout=20,
                               message="a copy of 'shared' on every replica")
                async with client(replica) as other:
                    servers = await settled(other)
                    assert servers["shared"]["status"] == "ready" and servers["shared"]["registered_at_runtime"]
                    assert text_of(await other.call_tool("shared__echo", {"text": "from b"})) == "from b"

            async with api(b) as on_b:  # an operator's setting on B reaches A's clients
                assert (await on_b.patch("/tools/shared__add", json={"enabled": False})).status_code == 200

            async def gone_from_a() -> bool:
                async with client(a) as on_a:
                    return "shared__add" not in {tool.name for tool in await on_a.list_tools()}

            with anyio.fail_after(10):
                while not await gone_from_a():
                    await anyio.sleep(0.05)
            async with api(b) as on_b:
                assert (await on_b.patch("/tools/shared__add", json={"enabled": None})).status_code == 200

            async with client(c) as on_c:  # removed on C: every replica stops its copy
                await on_c.call_tool("remove_server", {"name": "shared"})
            await wait_for(lambda: not backend_copies(mark, "shared"), timeout=20,
                           message="every copy of 'shared' to stop")
            assert "shared" not in await servers_of(a)
            assert len(backend_copies(mark)) == 3
        # nothing of the test is left in Redis: every change was undone
        store = redis.Redis(port=port)
        try:
            assert store.keys(f"{prefix}:*") == []
        finally:
            store.close()


async def until(check: Any, timeout: float, message: str) -> None:
    """Waits, within `timeout`, for an async condition."""
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.05)


async def readiness(url: str) -> dict[str, Any]:
    async with api(url) as http:
        return (await http.get("/readyz")).json()


async def tools_of(url: str) -> set[str]:
    async with client(url) as c:
        return {tool.name for tool in await c.list_tools()}


async def test_without_redis_replicas_serve_refuse_changes_and_converge_after(tmp_path: Path, mark: str) -> None:
    port, prefix = free_port(), f"test-{mark[:12]}"
    url = f"redis://127.0.0.1:{port}/0"
    first = redis_process(tmp_path, port)
    async with first, replicas(tmp_path, mark, url, prefix, 2) as (a, b):
        for replica in (a, b):
            async with client(replica) as each:
                await settled(each)
        async with client(a) as on_a:
            await on_a.call_tool("register_server", {"name": "kept", **catalog_entry(mark, PROBE_NAME="kept")})
        await wait_for(lambda: len(backend_copies(mark, "kept")) == 2, timeout=20, message="'kept' on both")

        await first.__aexit__()  # Redis goes away; the replicas stay
        for replica in (a, b):
            await until(lambda: _degraded(replica), 10, "the store to be reported degraded")
            assert (await readiness(replica))["status"] == "ready"  # still serving: not taken out of service
        async with client(b) as on_b:
            assert text_of(await on_b.call_tool("kept__echo", {"text": "still here"})) == "still here"
            assert text_of(await on_b.call_tool("t__echo", {"text": "and here"})) == "and here"
            report = (await on_b.call_tool("list_servers", {})).structured_content
            assert report["store"]["status"] == "degraded" and "cannot be reached" in report["store"]["problem"]
            refused = await on_b.call_tool("register_server", {"name": "new", **catalog_entry(mark)},
                                           raise_on_error=False)
            assert refused.is_error and "changes are refused until it is back" in text_of(refused)
            refused = await on_b.call_tool("remove_server", {"name": "kept"}, raise_on_error=False)
            assert refused.is_error and "changes are refused until it is back" in text_of(refused)
        async with api(a) as on_a:
            answer = await on_a.patch("/tools/kept__add", json={"enabled": False})
            assert answer.status_code == 503 and answer.json()["error"] == "store_unavailable"
            assert "store degraded: changes are refused" in (await on_a.get("/ui/summary")).text
        assert len(backend_copies(mark, "kept")) == 2  # nothing was half done

        async with redis_process(tmp_path, port):  # back, with what it held
            for replica in (a, b):
                await until(lambda: _healthy(replica), 15, "the store to be reachable again")
            # a change neither replica was told of (written, not published), as a replica that
            # lost its connection would miss one: both find it when they reconnect
            store = redis.Redis(port=port)
            try:
                store.hset(f"{prefix}:tools", "kept", '{"echo": {"enabled": false}}')
                store.client_kill_filter(_type="pubsub")
                for replica in (a, b):
                    await until(lambda: _lacks(replica, "kept__echo"), 15, "the missed change to arrive")
                async with api(b) as on_b:
                    assert (await on_b.patch("/tools/kept__echo", json={"enabled": None})).status_code == 200
                await until(lambda: _has(a, "kept__echo"), 10, "B's change to reach A")
                async with client(a) as on_a:
                    await on_a.call_tool("remove_server", {"name": "kept"})
                await wait_for(lambda: not backend_copies(mark, "kept"), timeout=20, message="'kept' to stop")
                assert store.keys(f"{prefix}:*") == []
            finally:
                store.close()


async def _degraded(url: str) -> bool:
    return (await readiness(url))["store"] == "degraded"


async def _healthy(url: str) -> bool:
    return (await readiness(url))["store"] == "ok"


async def _lacks(url: str, tool: str) -> bool:
    return tool not in await tools_of(url)


async def _has(url: str, tool: str) -> bool:
    return tool in await tools_of(url)


async def test_a_replica_answers_404_to_a_session_it_does_not_know(tmp_path: Path, mark: str) -> None:
    """A handshake-era client routed to another replica is told its session is unknown, and starts
    a new one there."""
    port, prefix = free_port(), f"test-{mark[:12]}"
    async with redis_process(tmp_path, port), \
            replicas(tmp_path, mark, f"redis://127.0.0.1:{port}/0", prefix, 2) as (a, b):
        async with Client(a, auth=ADMIN, mode="legacy") as on_a:
            await on_a.list_tools()
            session = on_a.transport.get_session_id()
        assert session
        async with httpx2.AsyncClient(timeout=30) as http:
            answer = await http.post(b, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
                                     headers={"Authorization": f"Bearer {ADMIN}", "Mcp-Session-Id": session,
                                              "Accept": "application/json, text/event-stream",
                                              "Mcp-Protocol-Version": "2025-11-25"})
        assert answer.status_code == 404
