"""No process outlives its backend, and one backend's junk never hurts the rest (issue 11): removal
while connecting, descendants that leave the session, a gateway killed with SIGKILL, children
that end as zombies, a backend that writes junk on its MCP channel."""

from __future__ import annotations

import re
import time
from pathlib import Path

import anyio
import httpx2
import psutil
from fastmcp import Client

from conftest import (TESTING_SERVER, backend_spec, catalog_entry, http_gateway, processes_marked, served_promptly,
                      stdio_client, text_of, wait_for, write_config)


def running(pids: list[int]) -> list[int]:
    """Those of `pids` that are still running (a zombie has finished)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def slow_starters(mark: str) -> list[psutil.Process]:
    return [p for p in processes_marked(mark) if str(TESTING_SERVER) in p.cmdline()]


async def server_names(client: Client) -> set[str]:
    return {s["name"] for s in (await client.call_tool("list_servers", {})).structured_content["servers"]}


async def spawn_family(client: Client, server: str) -> list[int]:
    """A plain child, one in a session of its own and an orphaned daemon, all sleeping."""
    return [(await client.call_tool(f"{server}__spawn_child", {"seconds": 120, **options})).data
            for options in ({}, {"new_session": True}, {"new_session": True, "orphaned": True})]


async def test_removal_during_a_slow_connect_stops_the_backend(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {}, connect_timeout=120)
    spec = catalog_entry(mark, TEST_BACKEND_START_DELAY="60")
    async with stdio_client(config, mark) as client:
        outcome: list = []

        async def register() -> None:
            outcome.append(await client.call_tool("register_server", {"name": "slow", **spec}, raise_on_error=False))

        async with anyio.create_task_group() as tg:
            tg.start_soon(register)
            await wait_for(lambda: slow_starters(mark), timeout=10, message="the slow backend's process")
            await client.call_tool("remove_server", {"name": "slow"})
            # stopped by the time removal answers, not when the start would have finished
            assert running([p.pid for p in slow_starters(mark)]) == []
        assert outcome[0].is_error and "was removed while it was connecting" in text_of(outcome[0])
        assert await server_names(client) == set()


def gateway_of(mark: str) -> psutil.Process:
    return next(p for p in processes_marked(mark) if p.cmdline()[1:2] and p.cmdline()[1].endswith("gateway"))


def zombie_children(process: psutil.Process) -> list[int]:
    return [c.pid for c in process.children() if c.status() == psutil.STATUS_ZOMBIE]


async def test_removal_stops_descendants_that_left_the_session(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {"other": backend_spec(mark)})
    async with stdio_client(config, mark) as client:
        await client.call_tool("register_server", {"name": "kids", **catalog_entry(mark)})
        gateway = gateway_of(mark)
        kids = await spawn_family(client, "kids")
        others = await spawn_family(client, "other")
        assert running(kids + others) == kids + others
        # an orphaned daemon is adopted by the gateway (a child subreaper), not by init
        assert psutil.Process(kids[2]).ppid() == gateway.pid
        await client.call_tool("remove_server", {"name": "kids"})
        await wait_for(lambda: not running(kids), timeout=3, message=f"the removed backend's descendants {kids}")
        # the other backend's descendants are none of its business
        assert running(others) == others
        assert (await client.call_tool("other__echo", {"text": "still here"})).data == "still here"
        # an adopted orphan that exits by itself is reaped: no zombies pile up
        brief = (await client.call_tool("other__spawn_child", {"seconds": 0.2, "new_session": True,
                                                              "orphaned": True})).data
        await wait_for(lambda: not psutil.pid_exists(brief) and not zombie_children(gateway), timeout=3,
                       message="the gateway to reap what it adopted")
    await wait_for(lambda: not running(others), timeout=5, message="every descendant to exit with the gateway")


async def test_removing_a_backend_with_children_is_quick(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {})
    async with stdio_client(config, mark) as client:
        await client.call_tool("register_server", {"name": "kids", **catalog_entry(mark)})
        children = [(await client.call_tool("kids__spawn_child", {"seconds": 120})).data for _ in range(3)]
        started = time.monotonic()
        await client.call_tool("remove_server", {"name": "kids"})
        took = time.monotonic() - started
        assert not running(children)
    # the backend exits as soon as its input ends; its children, all dead or zombies, are no reason to wait
    assert took < 0.8, took


async def test_what_a_killed_gateway_left_is_stopped_by_the_next_start(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {"kids": backend_spec(mark)})
    async with http_gateway(config, mark) as (url, gateway):
        async with Client(url, timeout=60) as client:
            backend = (await client.call_tool("kids__pid", {})).data
            family = await spawn_family(client, "kids")
        gateway.kill()
        gateway.wait(timeout=10)
    await wait_for(lambda: not running([backend]), timeout=5, message="the backend to see its input end")
    assert running(family) == family  # adopted by init: what the next start has to clean up
    restarted = http_gateway(config, mark)
    async with restarted as (url, _gateway):
        await wait_for(lambda: not running(family), timeout=5, message=f"the leftovers {family} to be stopped")
        async with Client(url, timeout=60) as client:
            assert (await client.call_tool("kids__echo", {"text": "fresh"})).data == "fresh"
        restarted.stderr.seek(0)
        log = restarted.stderr.read().decode(errors="replace")
        assert "left running" in log and str(family[2]) in log, log


async def test_a_backend_writing_junk_costs_the_others_nothing(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {"junk": backend_spec(mark), "other": backend_spec(mark)})
    served = http_gateway(config, mark)
    async with served as (url, _gateway), Client(url, timeout=60) as client, httpx2.AsyncClient() as http:
        health = url.removesuffix("/mcp") + "/healthz"
        samples: list[float] = []
        echoed: list[str] = []
        done = anyio.Event()
        await http.get(health)  # connected before the clock runs
        assert (await client.call_tool("other__echo", {"text": "ok"})).data == "ok"

        async def junk() -> None:
            assert "wrote 2048 KB" in text_of(await client.call_tool("junk__junk", {"kb": 2048, "seconds": 2}))
            done.set()

        async def sample() -> None:
            while not done.is_set():
                started = time.perf_counter()
                assert (await http.get(health)).status_code == 200
                samples.append(time.perf_counter() - started)
                echoed.append((await client.call_tool("other__echo", {"text": "ok"})).data)
                await anyio.sleep(0.02)

        async with anyio.create_task_group() as tg:
            tg.start_soon(junk)
            tg.start_soon(sample)
        # a blocked loop would hold every sample for the seconds the junk takes to arrive; the
        # bound leaves room for a loaded 2-core machine's scheduler
        assert len(samples) >= 5 and served_promptly(samples, bound=0.3), samples
        assert set(echoed) == {"ok"}
        assert (await client.call_tool("junk__echo", {"text": "and itself"})).data == "and itself"

        def logged_lines() -> int:
            served.stderr.seek(0)
            text = served.stderr.read().decode(errors="replace")
            return sum(int(n.replace(",", "")) for n in re.findall(r"(?:sent|and) ([\d,]+) (?:more )?unreadable", text))

        # every junk line is accounted for, in a few log lines
        await wait_for(lambda: logged_lines() == 2048 * 1024 // 2, timeout=10, message="the dropped lines' count")
        assert served.stderr.tell() < 20_000, served.stderr.tell()
