"""Profiles: each a view of the gateway with its own servers, tools and pipelines, on every road
(tools/list, calls by name and through call_backend, list_servers, pipelines, the REST API, the
audit trail), over HTTP at /p/<name>/mcp for both protocol eras and over stdio with --profile."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path
from typing import Any

import httpx2
import yaml
from fastmcp import Client
from hypothesis.strategies import from_regex

from conftest import GATEWAY, MODES, backend_spec, catalog_entry, gateway_env, http_gateway, settled, stdio_client, \
    text_of, write_config
from gateway.access import token_id

ADMIN, CLIENT, NARROW_TOKEN = "admin-tok-5c2e", "client-tok-8f1d", "narrow-tok-19ab"
CONTROL = {"register_server", "remove_server", "list_servers", "call_backend", "route_pipeline"}


def profiled_config(tmp_path: Path, mark: str) -> tuple[Path, Path]:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "adds.yaml").write_text(yaml.safe_dump(
        {"name": "adds", "steps": {"a": {"server": "t", "tool": "add", "args": {"a": 1, "b": 2}}}}))
    (pipelines / "echoes_u.yaml").write_text(yaml.safe_dump(
        {"name": "echoes_u", "steps": {"a": {"server": "u", "tool": "echo", "args": {"text": "hi"}}}}))
    config = write_config(tmp_path / "config.json", {"t": backend_spec(mark), "u": backend_spec(mark)},
                          profiles={"narrow": {"servers": ["t"], "tools": ["t__echo", "t__add", "t__slow"],
                                               "exclude": ["t__slow"], "tokens": [NARROW_TOKEN]}})
    return config, pipelines


async def test_a_profile_sees_only_its_servers_tools_and_pipelines_over_http(tmp_path: Path, mark: str) -> None:
    config, pipelines = profiled_config(tmp_path, mark)
    args = ("--admin-token", ADMIN, "--auth-token", CLIENT, "--pipelines", str(pipelines))
    async with http_gateway(config, mark, "streamable-http", *args) as (url, _proc):
        base = url.removesuffix("/mcp")
        async with Client(url, auth=ADMIN) as whole:
            await settled(whole)
            assert {"t__slow", "u__echo", "pipeline__echoes_u"} <= {t.name for t in await whole.list_tools()}
        for mode in MODES:
            async with Client(f"{base}/p/narrow/mcp", auth=NARROW_TOKEN, mode=mode, timeout=60) as client:
                listed = {t.name: t for t in await client.list_tools()}
                assert set(listed) == CONTROL | {"t__echo", "t__add", "pipeline__adds"}
                assert "adds" in listed["route_pipeline"].description
                assert "echoes_u" not in listed["route_pipeline"].description
                servers = (await client.call_tool("list_servers", {})).structured_content
                assert [(s["name"], sorted(t["name"] for t in s["tools"])) for s in servers["servers"]] == \
                    [("t", ["add", "echo"])]
                assert text_of(await client.call_tool("t__echo", {"text": "in"})) == "in"
                assert (await client.call_tool("pipeline__adds", {})).structured_content["status"] == "ok"
                # outside the profile, a tool or server is unknown on every road
                refused = await client.call_tool("t__slow", {"seconds": 0}, raise_on_error=False)
                assert refused.is_error and "has no tool 'slow'" in text_of(refused)
                refused = await client.call_tool("call_backend", {"server": "u", "tool": "echo", "params": {"text": "x"}},
                                                 raise_on_error=False)
                assert refused.is_error and "unknown server 'u'" in text_of(refused)
                refused = await client.call_tool("pipeline__echoes_u", {}, raise_on_error=False)
                assert refused.is_error and "Unknown tool" in text_of(refused)
                refused = await client.call_tool("route_pipeline", {"scenario": "echoes_u"}, raise_on_error=False)
                assert refused.is_error and "unknown pipeline 'echoes_u'" in text_of(refused)
                custom = {"steps": {"a": {"server": "u", "tool": "echo", "args": {"text": "x"}}}}
                report = await client.call_tool("route_pipeline", {"scenario": "custom", "pipeline": custom},
                                                raise_on_error=False)
                assert report.is_error and "unknown server 'u'" in text_of(report)

        async with httpx2.AsyncClient(base_url=base, timeout=60) as http:
            hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
            bound = await http.post("/mcp", json=hello, headers={"Authorization": f"Bearer {NARROW_TOKEN}"})
            assert bound.status_code == 403 and "/p/narrow/mcp" in bound.json()["message"]
            unknown = await http.post("/p/nope/mcp", json=hello, headers={"Authorization": f"Bearer {CLIENT}"})
            assert unknown.status_code == 404 and "no profile 'nope'" in unknown.json()["message"]

            admin = {"Authorization": f"Bearer {ADMIN}"}
            servers = (await http.get("/p/narrow/servers", headers=admin)).json()
            assert [s["name"] for s in servers["servers"]] == ["t"] and servers["profile"] == "narrow"
            tools = (await http.get("/p/narrow/tools", headers=admin)).json()["tools"]
            assert {t["exported_name"] for t in tools} == {"t__echo", "t__add"}
            assert [p["name"] for p in (await http.get("/p/narrow/pipelines", headers=admin)).json()["pipelines"]] \
                == ["adds"]
            assert (await http.get("/p/narrow/servers/u", headers=admin)).status_code == 404
            assert (await http.get("/p/narrow/ui", headers=admin)).status_code == 403
            # the audit trail names the profile and the caller's token, never the token
            calls = (await http.get("/p/narrow/calls", headers=admin)).json()["calls"]
            assert calls and all(c["profile"] == "narrow" for c in calls)
            assert {c["caller"] for c in calls} == {f"token:{token_id(NARROW_TOKEN)}"}
            assert any(c["tool"] == "slow" and c["outcome"] == "failed" for c in calls)
            everything = (await http.get("/calls", headers=admin)).json()["calls"]
            assert {c["profile"] for c in everything} == {"narrow"}  # the whole view's calls went to no backend
            assert NARROW_TOKEN not in json.dumps(everything)


async def test_stdio_profile_and_registrations_land_in_the_profile(tmp_path: Path, mark: str) -> None:
    config, pipelines = profiled_config(tmp_path, mark)
    refused = subprocess.run([GATEWAY, "--auto-register", str(config), "--profile", "nope"], capture_output=True,
                             text=True, timeout=60, env=gateway_env(mark), stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "unknown profile 'nope'; profiles: narrow" in refused.stderr

    async with stdio_client(config, mark, "auto", "--profile", "narrow", "--pipelines", str(pipelines)) as client:
        assert {t.name for t in await client.list_tools()} == CONTROL | {"t__echo", "t__add", "pipeline__adds"}
        refused_removal = await client.call_tool("remove_server", {"name": "u"}, raise_on_error=False)
        assert refused_removal.is_error and "unknown server 'u'" in text_of(refused_removal)
        await client.call_tool("register_server", {"name": "v", **catalog_entry(mark)})
        servers = await settled(client)
        assert sorted(servers) == ["t", "v"]
        # the new server's tools are the profile's when its globs take them: these do not
        assert servers["v"]["tools"] == []
    state = json.loads((tmp_path / "gateway-state.json").read_text())
    assert state["profiles"] == {"narrow": ["v"]}

    async with stdio_client(config, mark) as client:  # the whole gateway sees it too, and it is restored
        assert sorted(await settled(client)) == ["t", "u", "v"]


def sample_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments a tool's input schema accepts: its required properties, each with a plain value."""
    return {name: sample(schema.get("properties", {}).get(name, {})) for name in schema.get("required", [])}


FORMATS = {"uri": "https://example.com/a", "url": "https://example.com/a", "date-time": "2026-01-01T00:00:00Z",
           "date": "2026-01-01", "email": "a@example.com", "uuid": "123e4567-e89b-12d3-a456-426614174000"}


def sample(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "x"
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return sample(schema[key][0])
    kind = schema.get("type", "string")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        return sample_arguments(schema)
    if kind == "array":
        return [sample(schema.get("items", {}))] * max(1, schema.get("minItems", 0))
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind != "string":
        return {"boolean": True, "null": None}.get(kind, "x")
    if "pattern" in schema:
        with warnings.catch_warnings():  # .example() is meant for the console: here it gives one fitting value
            warnings.simplefilter("ignore")
            return from_regex(schema["pattern"], fullmatch=True).example()
    return FORMATS.get(schema.get("format"), "x" * max(1, schema.get("minLength", 1)))


async def test_search_mode_finds_and_calls_any_tool_of_a_400_tool_catalog(tmp_path: Path, mark: str) -> None:
    fixtures = sorted((Path(__file__).parent.parent / "benchmarks" / "catalog" / "servers").glob("*.json"))
    catalog = backend_spec(mark)
    catalog["args"] = [str(Path(__file__).parent / "backends" / "catalog_server.py"), *(f.stem for f in fixtures)]
    config = write_config(tmp_path / "config.json", {"catalog": catalog}, tool_exposure="search")
    published = [(f"catalog__{json.loads(f.read_text())['server']}_{tool['name']}", tool)
                 for f in fixtures for tool in json.loads(f.read_text())["tools"]]
    assert len(published) >= 300
    async with stdio_client(config, mark, "auto") as client:
        assert {t.name for t in await client.list_tools()} == CONTROL | {"search_tools"}
        for exported, tool in published:
            query = f"{exported.removeprefix('catalog__')} {tool.get('description') or ''}"[:1000]
            found = (await client.call_tool("search_tools", {"query": query})).structured_content["tools"]
            assert exported in [f["name"] for f in found], (exported, [f["name"] for f in found])
            match = next(f for f in found if f["name"] == exported)
            arguments = sample_arguments(match["input_schema"])
            result = await client.call_tool_mcp(exported, arguments)
            assert result.structuredContent["arguments"] == arguments


async def test_search_mode_loads_found_tools_for_handshake_era_clients(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {"t": backend_spec(mark)}, tool_exposure="search")
    from conftest import Notifications

    notes = Notifications()
    async with stdio_client(config, mark, "legacy", message_handler=notes) as client:
        assert "t__add" not in {t.name for t in await client.list_tools()}
        found = (await client.call_tool("search_tools", {"query": "add two numbers", "limit": 2})).structured_content
        assert found["tools"][0]["name"] == "t__add" and found["tools"][0]["server"] == "t"
        assert found["tools"][0]["input_schema"]["required"] == ["a", "b"]
        assert notes.tools_changed >= 1
        assert "t__add" in {t.name for t in await client.list_tools()}
        assert (await client.call_tool("t__add", {"a": 2, "b": 3})).structured_content["result"] == 5
        missing = await client.call_tool("search_tools", {"query": "x", "server": "nope"}, raise_on_error=False)
        assert missing.is_error and "unknown server 'nope'" in text_of(missing)
        by_meaning = (await client.call_tool("search_tools", {"query": "sum of 2 and 3"})).structured_content
        assert "t__add" in [f["name"] for f in by_meaning["tools"]]


async def test_auto_exposure_lists_everything_within_the_budget_and_searches_past_it(tmp_path: Path,
                                                                                     mark: str) -> None:
    for budget, searching in (({"tools": 5}, True), ({"tools": 500, "tokens": 100_000}, False)):
        config = write_config(tmp_path / "config.json", {"t": backend_spec(mark)}, tool_exposure="auto",
                              tool_budget=budget)
        async with stdio_client(config, mark) as client:
            names = {t.name for t in await client.list_tools()}
            assert ("search_tools" in names) is searching and ("t__echo" in names) is not searching
            assert text_of(await client.call_tool("t__echo", {"text": "either way"})) == "either way"
