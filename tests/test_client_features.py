"""What a backend asks of its client, and what a client asks of a backend beyond tools, through the
gateway: sampling, elicitation, roots, resources, subscriptions, completions, `_meta`,
cancellation, ping, log levels, in both client eras and against backends of both eras."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from mcp import MCPError
from mcp.client.subscriptions import listen
from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged

from conftest import (BACKENDS, MODES, PYTHON, ROOT, backend_spec, catalog_entry, http_gateway, settled,
                      stdio_client, text_of, wait_for, write_config)

INTERACTIVE = BACKENDS / "interactive_server.py"
EVERYTHING = ROOT / ".node-backends/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
SERVERS = {"old": "2025-11-25", "new": "2026-07-28"}  # backend name -> the era the gateway speaks to it
ROOT_URI = "file:///tmp/gateway-test-root"
RESERVED_META = "io.modelcontextprotocol/"


@dataclass
class Interactive:
    config: Path
    events: dict[str, Path]  # backend name -> the file it records what reached it in

    def recorded(self, server: str) -> list[str]:
        path = self.events[server]
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def interactive(tmp_path: Path, mark: str) -> Interactive:
    """The interactive backend twice: "old" pinned to the handshake era, "new" speaking 2026-07-28."""
    events = {name: tmp_path / f"{name}.events" for name in SERVERS}
    servers = {name: {"command": PYTHON, "args": [str(INTERACTIVE)],
                      "env": {"GATEWAY_TEST_MARK": mark, "INTERACTIVE_EVENTS": str(events[name])},
                      **({"protocol": era} if era == "2025-11-25" else {})}
               for name, era in SERVERS.items()}
    return Interactive(write_config(tmp_path / "config.json", servers), events)


def answering(who: str) -> dict[str, Any]:
    """Client arguments that answer sampling, elicitation and roots, each answer naming `who`."""
    async def sample(messages: Any, params: Any, context: Any) -> str:
        return f"{who} sampled <{messages[0].content.text}>"

    async def elicit(message: str, response_type: Any, params: Any, context: Any) -> dict[str, str]:
        return {"answer": f"{who} answers"}

    return {"sampling_handler": sample, "elicitation_handler": elicit, "roots": [f"{ROOT_URI}/{who}"]}


async def call_text(client: Client, tool: str, arguments: dict[str, Any] | None = None, **kwargs: Any) -> str:
    return text_of(await client.call_tool(tool, arguments or {}, **kwargs))


async def check_backend_requests(client: Client, who: str, servers: list[str] | None = None) -> None:
    """The backends' (all, or `servers`) sampling, elicitation and roots requests during this
    client's calls are answered by this client (named `who` in its answers)."""
    for server in servers or SERVERS:
        assert await call_text(client, f"{server}__ask_llm", {"prompt": "hi"}) == f"llm said: {who} sampled <hi>"
        assert await call_text(client, f"{server}__ask_user", {"question": "q"}) == f"user said: {who} answers"
        assert await call_text(client, f"{server}__show_roots") == f"{ROOT_URI}/{who}"
        assert await call_text(client, f"{server}__ask_twice", {"prompt": "p"}) == \
            f"llm said: {who} sampled <p>; user said: {who} answers"


async def check_resources(client: Client) -> None:
    """Namespaced resources and templates are listed and read, contents under the namespaced URI."""
    uris = {str(resource.uri) for resource in await client.list_resources()}
    templates = {template.uri_template for template in await client.list_resource_templates()}
    for server in SERVERS:
        assert {f"note://{server}/a", f"note://{server}/b"} <= uris
        assert f"note://{server}/{{name}}" in templates
        contents = await client.read_resource(f"note://{server}/a")
        assert [(str(c.uri), c.text) for c in contents] == [(f"note://{server}/a", "note a")]
        await client.call_tool(f"{server}__set_note", {"name": "zed", "text": f"zed of {server}"})
        contents = await client.read_resource(f"note://{server}/zed")  # only the template matches
        assert [(str(c.uri), c.text) for c in contents] == [(f"note://{server}/zed", f"zed of {server}")]


async def check_completions(client: Client) -> None:
    """A re-exported prompt's and resource template's arguments complete from their backend."""
    for server in SERVERS:
        prompt = await client.complete({"type": "ref/prompt", "name": f"{server}__greet"},
                                       {"name": "name", "value": "al"})
        assert prompt.values == ["alice", "albert"]
        template = await client.complete({"type": "ref/resource", "uri": f"note://{server}/{{name}}"},
                                         {"name": "name", "value": "b"})
        assert template.values == ["b"]


async def check_meta(client: Client) -> None:
    """A call's `_meta` reaches the backend; the protocol's reserved keys are the gateway's, whatever
    the client put there."""
    impostor = {"name": "impostor", "version": "6.6.6"}
    for server, era in SERVERS.items():
        text = await call_text(client, f"{server}__echo_meta",
                               meta={"trace": "abc", f"{RESERVED_META}clientInfo": impostor})
        got = json.loads(text)
        assert got["trace"] == "abc"
        reserved = {key: value for key, value in got.items() if key.startswith(RESERVED_META)}
        assert "impostor" not in json.dumps(reserved)
        if era == "2026-07-28":  # stamped by the gateway's own session with the backend
            assert reserved[f"{RESERVED_META}protocolVersion"] == era
            assert reserved[f"{RESERVED_META}clientInfo"]["name"].startswith("mcp-gateway")
        else:
            assert reserved == {}


async def refusal(client: Client, tool: str) -> tuple[str, str]:
    """What a client that cannot sample gets when `tool`'s backend asks it to: ("result", text) for
    an error result, ("raised", message) for an error the client raised; either within 5 s."""
    with anyio.fail_after(5):
        try:
            result = await client.call_tool(tool, {"prompt": "hi"}, raise_on_error=False)
        except MCPError as exc:
            return "raised", str(exc)
    assert result.is_error, text_of(result)
    return "result", text_of(result)


async def check_legacy_client_messages(client: Client, interactive: Interactive, logs: list[tuple[str, str]]) -> None:
    """A handshake-era client's ping is answered; its log level reaches the handshake-era backend
    and filters what it is sent (`logs`, as its log handler got them); its roots change reaches
    the backend that asked for roots."""
    assert await client.ping() is True

    async def check_logged(server: str, expected: list[str]) -> None:
        """`server`'s log_levels tool (debug, info, warning, in that order) logs `expected` to us."""
        logs.clear()
        await client.call_tool(f"{server}__log_levels", {})
        await wait_for(lambda: len(logs) >= len(expected), timeout=5, message=f"{server}'s log messages")
        assert sorted(level for level, _data in logs) == sorted(expected), logs

    await check_logged("old", ["debug", "info", "warning"])
    await client.set_logging_level("warning")
    await wait_for(lambda: "level warning" in interactive.recorded("old"), timeout=5,
                   message="the handshake-era backend to be given the level")
    for server in SERVERS:
        await check_logged(server, ["warning"])

    await client.send_roots_list_changed()  # the backend asked for roots before (check_backend_requests)
    await wait_for(lambda: "roots_changed" in interactive.recorded("old"), timeout=5,
                   message="the backend to hear the roots changed")


async def check_cancellation(client: Client, interactive: Interactive) -> None:
    """A call the client gives up on is cancelled at the backend (for a 2026-07-28 client of a
    handshake-era backend, the exchange that stands for it is given up), and the session goes on."""
    for server, era in SERVERS.items():
        before = interactive.recorded(server).count("cancelled")
        started = time.monotonic()
        with pytest.raises(MCPError, match="timed out"):
            await client.call_tool(f"{server}__slow", {"seconds": 30}, timeout=0.5)
        assert time.monotonic() - started < 3
        await wait_for(lambda: interactive.recorded(server).count("cancelled") > before, timeout=5,
                       message=f"{server} to see the cancellation")
        assert await call_text(client, f"{server}__era") == era  # and the session goes on


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.filterwarnings("ignore:The logging capability is deprecated")  # handshake-era requests,
@pytest.mark.filterwarnings("ignore:The roots capability is deprecated")  # on purpose
async def test_backends_of_both_eras_over_stdio(interactive: Interactive, mark: str, mode: str) -> None:
    """Over stdio, in either client era: the client answers the backends' sampling, elicitation and
    roots requests, and reads, completes and passes `_meta` through to backends of both eras; a
    handshake-era client's own messages (ping, log level, roots changed, cancel) reach them too."""
    logs: list[tuple[str, str]] = []

    async def on_log(message: Any) -> None:
        logs.append((message.level, str(message.data)))

    async with stdio_client(interactive.config, mark, mode, log_handler=on_log, **answering("stdio")) as client:
        for server, era in SERVERS.items():
            assert await call_text(client, f"{server}__era") == era
        await check_backend_requests(client, "stdio")
        await check_resources(client)
        await check_completions(client)
        await check_meta(client)
        await check_cancellation(client, interactive)
        if mode == "legacy":  # requests and notifications of the handshake era only
            await check_legacy_client_messages(client, interactive, logs)


async def check_routing(url: str) -> None:
    """Clients of both eras are each asked about their own calls, also when they call at once."""
    async with Client(url, mode="legacy", timeout=60, **answering("legacy")) as legacy, \
            Client(url, mode="auto", timeout=60, **answering("modern")) as modern:
        await check_backend_requests(legacy, "legacy")
        await check_backend_requests(modern, "modern")
        # A handshake-era backend over stdio cannot say which call its request is about, so only
        # the 2026-07-28 backend, whose requests come in its results, is called by both at once.
        async with anyio.create_task_group() as tg:
            tg.start_soon(check_backend_requests, legacy, "legacy", ["new"])
            tg.start_soon(check_backend_requests, modern, "modern", ["new"])


async def check_refusals(url: str) -> None:
    """A client that cannot sample, asked to, gets an error at once, not a hang, and keeps working."""
    for mode in MODES:
        async with Client(url, mode=mode, timeout=60) as client:
            for server in SERVERS:
                how, message = await refusal(client, f"{server}__ask_llm")
                assert "sampling" in message.lower(), message
                # a 2026-07-28 backend's input_required reaches a 2026-07-28 client as it came:
                # that client finds it has no sampling handler and raises
                assert how == ("raised" if mode == "auto" and server == "new" else "result"), (mode, server, message)
            assert await call_text(client, "old__era") == "2025-11-25"


class Updates(MessageHandler):
    def __init__(self) -> None:
        self.uris: list[str] = []

    async def on_resource_updated(self, message: Any) -> None:
        self.uris.append(str(message.params.uri))


async def check_subscriptions(url: str) -> None:
    """Two handshake-era clients, told at connecting that they may subscribe and complete, subscribe
    to different notes of backends of both eras: each is told, under the namespaced URI, of its own
    notes' changes only, once each, and of none after unsubscribing."""
    first_updates, second_updates = Updates(), Updates()
    async with Client(url, mode="legacy", timeout=60) as writer, \
            Client(url, mode="legacy", timeout=60, message_handler=first_updates) as first, \
            Client(url, mode="legacy", timeout=60, message_handler=second_updates) as second:
        assert first.initialize_result.capabilities.resources.subscribe is True
        assert first.initialize_result.capabilities.completions is not None
        markers = sorted(f"note://{server}/marker" for server in SERVERS)

        def heard_of_markers() -> list[int]:
            return [first_updates.uris.count(uri) + second_updates.uris.count(uri) for uri in markers]

        async def change(*notes: str) -> None:
            """Sets the notes ("<server>/<name>"), then the marker note both clients subscribe to on
            each backend, and waits until both are told of the markers: all else came before."""
            before = heard_of_markers()
            for note in [*notes, *(f"{server}/marker" for server in SERVERS)]:
                server, name = note.split("/")
                await writer.call_tool(f"{server}__set_note", {"name": name, "text": "changed"})
            await wait_for(lambda: heard_of_markers() == [n + 2 for n in before], timeout=10,
                           message="both clients to hear of the markers")

        def own(updates: Updates) -> list[str]:
            return sorted(uri for uri in updates.uris if uri not in markers)

        for server in SERVERS:
            await first.session.subscribe_resource(f"note://{server}/a")
            await second.session.subscribe_resource(f"note://{server}/b")
            for client in (first, second):
                await client.session.subscribe_resource(f"note://{server}/marker")
        await change("old/a", "old/b", "new/a", "new/b")
        assert own(first_updates) == ["note://new/a", "note://old/a"]
        assert own(second_updates) == ["note://new/b", "note://old/b"]

        for server in SERVERS:
            await first.session.unsubscribe_resource(f"note://{server}/a")
        await change("old/a", "new/a", "old/b")
        assert own(first_updates) == ["note://new/a", "note://old/a"]  # nothing new
        assert own(second_updates) == ["note://new/b", "note://old/b", "note://old/b"]


async def check_listen(url: str, mark: str) -> None:
    """A 2026-07-28 client's listen stream hears of the resources it names, on backends of both
    eras, and of nothing else it did not ask for; and of the tool list changing when a server is
    registered."""
    async with Client(url, mode="auto", timeout=60) as client:
        assert client.server_capabilities.resources.subscribe is True
        async with listen(client.session, tools_list_changed=True,
                          resource_subscriptions=[f"note://{server}/a" for server in SERVERS]) as stream:
            heard: list[Any] = []

            async def hear() -> None:
                async for event in stream:
                    heard.append(event)

            async with anyio.create_task_group() as tg:
                tg.start_soon(hear)
                for server in SERVERS:
                    for name in ("b", "a"):
                        await client.call_tool(f"{server}__set_note", {"name": name, "text": "listened"})
                expected = [ResourceUpdated(uri=f"note://{server}/a") for server in SERVERS]
                await wait_for(lambda: sorted(map(repr, heard)) == sorted(map(repr, expected)), timeout=10,
                               message="both resource updates on the listen stream")
                await client.call_tool("register_server", {"name": "late", **catalog_entry(mark)})
                await wait_for(lambda: ToolsListChanged() in heard, timeout=10,
                               message="the tool list change on the listen stream")
                tg.cancel_scope.cancel()
        await client.call_tool("remove_server", {"name": "late"})


@pytest.mark.filterwarnings("ignore:resources/.*subscribe is removed")  # handshake-era requests, on purpose
async def test_http_front_serves_each_client_its_own(interactive: Interactive, mark: str) -> None:
    """Over streamable HTTP, several clients of one gateway: each answers the backend requests of
    its own calls, a client that cannot answer is refused at once, a call its client gives up on
    is cancelled at the backend, and each hears only of the resources it subscribed to (by
    resources/subscribe, or on a 2026-07-28 listen stream)."""
    async with http_gateway(interactive.config, mark) as (url, _proc):
        async with Client(url, mode="legacy", timeout=60) as client:
            await settled(client)
        for mode in MODES:
            async with Client(url, mode=mode, timeout=60) as client:
                await check_cancellation(client, interactive)
        await check_routing(url)
        await check_refusals(url)
        await check_subscriptions(url)
        await check_listen(url, mark)


async def test_sse_front_relays_backend_requests(interactive: Interactive, mark: str) -> None:
    """A client of the gateway's SSE front (handshake era) answers the backends' requests too."""
    async with http_gateway(interactive.config, mark, "sse") as (url, _proc):
        async with Client(url, timeout=60, **answering("sse")) as client:
            await settled(client)
            await check_backend_requests(client, "sse")


async def test_capabilities_offer_only_what_the_backends_offer(tmp_path: Path, mark: str) -> None:
    """Once its one backend (that neither takes subscriptions nor completes) is ready, the gateway
    offers a new client neither. (With the interactive backend it offers both: check_subscriptions.)"""
    config = write_config(tmp_path / "config.json", {"testing": backend_spec(mark)})
    async with http_gateway(config, mark) as (url, _proc):
        async with Client(url, mode="legacy", timeout=60) as client:
            await settled(client)
        async with Client(url, mode="legacy", timeout=60) as client:
            capabilities = client.initialize_result.capabilities
            assert not (capabilities.resources and capabilities.resources.subscribe), capabilities
            assert capabilities.completions is None, capabilities


@pytest.mark.skipif(not (shutil.which("node") and EVERYTHING.exists()),
                    reason="needs node and ./setup.sh's npm install of server-everything")
@pytest.mark.parametrize("mode", MODES)
async def test_server_everything_asks_the_client(tmp_path: Path, mark: str, mode: str) -> None:
    """The TypeScript reference server (handshake era only) samples and lists roots through the
    client, and its resources read, in either client era."""
    config = write_config(tmp_path / "config.json", {
        "every": {"command": shutil.which("node"), "args": [str(EVERYTHING), "stdio"],
                  "env": {"GATEWAY_TEST_MARK": mark}}})
    async with stdio_client(config, mark, mode, **answering(mode)) as client:
        # registered once the server knows its client can sample; announced by tools/list_changed
        with anyio.fail_after(10):
            while "every__trigger-sampling-request" not in {tool.name for tool in await client.list_tools()}:
                await anyio.sleep(0.05)
        sampled = await call_text(client, "every__trigger-sampling-request", {"prompt": "what is 2+2"})
        assert f"{mode} sampled <" in sampled and "what is 2+2" in sampled
        assert f"{ROOT_URI}/{mode}" in await call_text(client, "every__get-roots-list")
        uri = "demo://every/resource/static/document/architecture.md"
        contents = await client.read_resource(uri)
        assert str(contents[0].uri) == uri and contents[0].text
