"""The operator's console over HTTP: tool control on every road, the REST API and its auth, the audit
trail, metrics, and the console beside the stdio front."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import anyio
import httpx2
import yaml
from fastmcp import Client

from conftest import (GATEWAY, Notifications, backend_spec, catalog_entry, free_port, gateway_env, http_gateway,
                      port_open, settled, stdio_client, text_of, wait_for, write_config)

ADMIN, CLIENT = "admin-tok-7d1e", "client-tok-42aa"
SECRET = "planted-console-s3cret-5b7"


def step(tool: str, **fields: Any) -> dict[str, Any]:
    return {"server": fields.pop("server", "t"), "tool": tool, **fields}


def api(url: str, token: str | None = ADMIN) -> httpx2.AsyncClient:
    base = url.rsplit("/", 1)[0]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.AsyncClient(base_url=base, headers=headers, timeout=60)


async def started(http: httpx2.AsyncClient) -> None:
    """Once no backend is still connecting, as GET /servers shows it."""
    with anyio.fail_after(60):
        while any(s["status"] == "connecting" for s in (await http.get("/servers")).json()["servers"]):
            await anyio.sleep(0.05)


async def listed_tools(client: Client) -> dict[str, Any]:
    return {tool.name: tool for tool in await client.list_tools()}


async def test_tool_settings_from_the_config_apply_on_every_road(tmp_path: Path, mark: str) -> None:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "adds.yaml").write_text(yaml.safe_dump({"name": "adds", "steps": {"a": step("add", args={"a": 1, "b": 2})}}))
    config = write_config(tmp_path / "config.json", {
        "t": backend_spec(mark, tools={"add": {"enabled": False}, "echo": {"name": "say", "description": "Say it back"}},
                          disabled_tools=["slo*"]),
        "u": backend_spec(mark, enabled_tools=["echo", "ad?"]),
    })
    async with stdio_client(config, mark, "auto", "--pipelines", str(pipelines)) as client:
        servers = await settled(client)
        assert {"add", "slow"}.isdisjoint(t["name"] for t in servers["t"]["tools"])  # list_servers hides them too
        assert {"name": "echo", "exported_as": "say"} in servers["t"]["tools"]
        tools = await listed_tools(client)
        assert "t__add" not in tools and "t__slow" not in tools and "t__echo" not in tools
        assert tools["say"].description == "Say it back" and "t__crash" in tools
        assert {name for name in tools if name.startswith("u__")} == {"u__echo", "u__add"}
        assert text_of(await client.call_tool("say", {"text": "hi"})) == "hi"  # renamed, otherwise the same

        setting = "mcpServers.t.tools.add.enabled is false"
        for road, name, args in (("tool", "t__add", {"a": 1, "b": 2}),
                                 ("call_backend", "call_backend", {"server": "t", "tool": "add",
                                                                   "params": {"a": 1, "b": 2}})):
            result = await client.call_tool(name, args, raise_on_error=False)
            assert result.is_error and "tool 'add' of server 't' is disabled" in text_of(result), road
            assert setting in text_of(result), road
        slow = await client.call_tool("call_backend", {"server": "t", "tool": "slow", "params": {"seconds": 0}},
                                      raise_on_error=False)
        assert "matches 'slo*' in mcpServers.t.disabled_tools" in text_of(slow)
        hidden = await client.call_tool("call_backend", {"server": "u", "tool": "crash"}, raise_on_error=False)
        assert "it is not in mcpServers.u.enabled_tools" in text_of(hidden)
        report = (await client.call_tool("route_pipeline", {"scenario": "adds"}, raise_on_error=False)).structured_content
        assert report["steps"]["a"]["status"] == "failed" and setting in report["steps"]["a"]["error"]

    done = subprocess.run([GATEWAY, "validate", "--pipelines", str(pipelines), "--auto-register", str(config)],
                          capture_output=True, text=True, timeout=120, env=gateway_env(mark))
    assert done.returncode == 1, done
    assert f"adds.yaml: step 'a', field 'tool': tool 'add' of server 't' is disabled: {setting}" in done.stdout


async def test_operator_changes_tools_at_runtime_clients_hear_and_it_persists(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {"t": backend_spec(mark)})
    args = ("--admin-token", ADMIN, "--auth-token", CLIENT)
    async with http_gateway(config, mark, "streamable-http", *args) as (url, _proc):
        notes = Notifications()
        async with Client(url, auth=CLIENT, mode="legacy", message_handler=notes) as client, api(url) as admin:
            await settled(client)
            assert "t__echo" in await listed_tools(client)
            changed = await admin.patch("/tools/t__echo", json={"enabled": False})
            assert changed.status_code == 200 and changed.json()["enabled"] is False, changed.text
            assert changed.json()["disabled_by"] == "an operator disabled it"
            await wait_for(lambda: notes.tools_changed >= 1, message="tools/list_changed after a PATCH")
            assert "t__echo" not in await listed_tools(client)
            refused = await client.call_tool("t__echo", {"text": "x"}, raise_on_error=False)
            assert refused.is_error and "an operator disabled it" in text_of(refused)

            renamed = await admin.patch("/tools/t__add", json={"name": "plus", "description": "Adds two numbers"})
            assert renamed.json()["exported_name"] == "plus", renamed.text
            tools = await listed_tools(client)
            assert "plus" in tools and "t__add" not in tools and tools["plus"].description == "Adds two numbers"
            assert (await client.call_tool("plus", {"a": 2, "b": 3})).structured_content["result"] == 5

            for body, status, words in (({"name": "t__crash"}, 409, "taken by tool 'crash'"),
                                        ({"name": "list_servers"}, 409, "the gateway's own tools"),
                                        ({"name": "no spaces"}, 400, "may only hold"),
                                        ({"enabled": "maybe"}, 400, "enabled"), ({"colour": "red"}, 400, "unknown field"),
                                        ({}, 400, "nothing to change")):
                answer = await admin.patch("/tools/plus", json=body)
                assert answer.status_code == status and words in answer.json()["message"], (body, answer.text)
            assert (await admin.patch("/tools/nope", json={"enabled": True})).status_code == 404

    async with http_gateway(config, mark, "streamable-http", *args) as (url, _proc):  # restarted: settings kept
        async with Client(url, auth=CLIENT) as client, api(url) as admin:
            await settled(client)
            tools = (await admin.get("/tools", params={"server": "t"})).json()["tools"]
            by_name = {tool["tool"]: tool for tool in tools}
            assert by_name["echo"]["enabled"] is False and by_name["add"]["exported_name"] == "plus"
            assert by_name["add"]["overrides"] == {"name": "plus", "description": "Adds two numbers"}
            assert set(await listed_tools(client)) >= {"plus"} and "t__echo" not in await listed_tools(client)
            cleared = await admin.patch("/tools/plus", json={"name": None, "description": None})
            assert cleared.json()["exported_name"] == "t__add" and cleared.json()["overrides"] == {}
            assert (await admin.patch("/tools/t__echo", json={"enabled": None})).json()["enabled"] is True
            assert {"t__add", "t__echo"} <= set(await listed_tools(client))
            found = (await admin.get("/tools", params={"q": "two integers"})).json()
            assert [tool["exported_name"] for tool in found["tools"]] == ["t__add"]


async def test_rest_api_servers_auth_and_errors(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {"t": backend_spec(mark)})
    async with http_gateway(config, mark, "streamable-http", "--admin-token", ADMIN, "--auth-token", CLIENT) as (url, _):
        async with api(url) as admin, api(url, CLIENT) as client, api(url, None) as nobody, \
                api(url, "wrong") as wrong:
            assert (await nobody.get("/healthz")).status_code == 200
            rebound = await admin.get("/servers", headers={"Host": "evil.example"})  # DNS rebinding
            assert rebound.status_code in (400, 403, 421) and "servers" not in rebound.text
            foreign = await admin.post("/servers", headers={"Origin": "http://evil.example"}, json={"name": "x"})
            assert foreign.status_code == 403 and "x" not in [s["name"] for s in
                                                              (await admin.get("/servers")).json()["servers"]]
            for who, status in ((nobody, 401), (wrong, 401), (client, 403)):
                for method, path in (("GET", "/servers"), ("GET", "/tools"), ("GET", "/metrics"),
                                     ("POST", "/servers"), ("GET", "/openapi.json"), ("GET", "/calls")):
                    answer = await who.request(method, path, json={})
                    assert answer.status_code == status, (method, path, answer.text)
                    assert answer.json()["error"] in ("unauthorized", "forbidden")
            async with Client(url, auth=CLIENT) as mcp_client:  # a client token still reaches MCP
                await settled(mcp_client)

            added = await admin.post("/servers", json={"name": "extra", **catalog_entry(mark)})
            assert added.status_code == 201 and added.json()["status"] == "ready", added.text
            assert "echo" in added.json()["tools"]
            for body, status, words in (
                    ({"name": "extra", **catalog_entry(mark)}, 409, "already exists"),
                    ({"name": "t", **catalog_entry(mark)}, 409, "config file"),
                    ({"name": "x", "template": "testing", "env": {"GATEWAY_TEST_MARK": "no spaces here"}}, 403,
                     "GATEWAY_TEST_MARK"),
                    ({"name": "x", "template": "nope"}, 403, "nope"),
                    ({"name": "x", "colour": "red"}, 400, "colour: unknown field"),
                    ({"name": "bad name!", **catalog_entry(mark)}, 400, "may only hold")):
                answer = await admin.post("/servers", json=body)
                assert answer.status_code == status and words in answer.json()["message"], (body, answer.text)
            garbled = await admin.post("/servers", content=b'{"name": ')
            assert garbled.status_code == 400 and "not valid JSON" in garbled.json()["message"]

            one = (await admin.get("/servers/t")).json()
            assert one["status"] == "ready" and one["restarts"] == 0 and "stderr_tail" in one
            restarted = await admin.post("/servers/t/restart")
            assert restarted.status_code == 200 and restarted.json()["restarts"] == 1, restarted.text
            assert restarted.json()["status"] == "ready"
            assert (await admin.get("/servers/ghost")).status_code == 404
            assert (await admin.delete("/servers/t")).status_code == 403
            removed = await admin.delete("/servers/extra")
            assert removed.status_code == 200 and removed.json()["removed"] == "extra"
            assert [s["name"] for s in (await admin.get("/servers")).json()["servers"]] == ["t"]

            spec = (await admin.get("/openapi.json")).json()
            assert spec["openapi"].startswith("3.1") and spec["paths"]["/tools/{exported_name}"]["patch"]
            assert {"/servers", "/servers/{name}", "/servers/{name}/restart", "/tools", "/calls", "/pipelines",
                    "/pipelines/{name}/run", "/metrics"} <= set(spec["paths"])
            assert "NewServer" in spec["components"]["schemas"]


async def test_console_sessions_need_the_csrf_token_to_change_anything(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {"t": backend_spec(mark)})
    async with http_gateway(config, mark, "streamable-http", "--admin-token", ADMIN, "--auth-token", CLIENT) as (url, _):
        async with api(url, None) as browser:
            assert (await browser.post("/ui/login", data={"token": CLIENT})).status_code in (401, 403)
            assert "gateway_console" not in browser.cookies
            login = await browser.post("/ui/login", data={"token": ADMIN})
            assert login.status_code == 303 and "gateway_console" in browser.cookies
            cookie = login.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie
            await started(browser)
            assert '<option value="testing">' in (await browser.get("/ui/servers")).text  # the catalog, offered
            page = await browser.get("/ui/tools")
            csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
            assert page.status_code == 200 and csrf, page.text[:500]
            forged = await browser.patch("/tools/t__echo", json={"enabled": False})
            assert forged.status_code == 403 and forged.json()["error"] == "csrf"
            assert (await browser.get("/tools", params={"q": "echo"})).json()["tools"][0]["enabled"] is True
            allowed = await browser.patch("/tools/t__echo", json={"enabled": False},
                                          headers={"X-CSRF-Token": csrf.group(1)})
            assert allowed.status_code == 200 and allowed.json()["enabled"] is False


async def test_audit_trail_and_metrics_cover_every_road_and_never_show_secrets(tmp_path: Path, mark: str) -> None:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "twice.yaml").write_text(yaml.safe_dump({
        "name": "twice", "inputs": {"text": {"type": "string", "required": True}},
        "steps": {"a": step("echo", args={"text": "{{ inputs.text }}"}),
                  "b": step("echo", args={"text": "{{ steps.a.result }}!"})},
        "output": {"said": "{{ steps.b.result }}"}}))
    (pipelines / "broken.yaml").write_text("name: broken\nsteps: [")
    audit = tmp_path / "audit" / "calls.jsonl"
    config = write_config(tmp_path / "config.json", {
        "t": backend_spec(mark, env={"API_TOKEN": "${PLANTED}"}),
        "bad": backend_spec(mark, env={"API_TOKEN": "${PLANTED}", "TEST_BACKEND_CRASH_ON_START": "1"})},
        audit={"file": "audit/calls.jsonl", "max_bytes": 2000, "backups": 2, "arguments": True})
    env = {"PLANTED": SECRET}
    async with http_gateway(config, mark, "streamable-http", "--admin-token", ADMIN, "--auth-token", CLIENT,
                            "--pipelines", str(pipelines), env=env) as (url, proc):
        async with Client(url, auth=CLIENT) as client, api(url) as admin:
            await settled(client)
            assert text_of(await client.call_tool("t__echo", {"text": "hello"})) == "hello"
            failed = await client.call_tool("call_backend", {"server": "t", "tool": "fail",
                                                             "params": {"message": f"leaked {SECRET}"}},
                                            raise_on_error=False)
            assert failed.is_error
            await client.call_tool("route_pipeline", {"scenario": "twice", "inputs": {"text": "hi"}})
            await client.read_resource("test://t/info")
            await client.get_prompt("t__greet", {"name": "Ada"})
            await client.call_tool("call_backend", {"server": "ghost", "tool": "x"}, raise_on_error=False)

            calls = (await admin.get("/calls", params={"limit": 50})).json()["calls"]
            roads = {call["road"] for call in calls}
            assert {"tool", "call_backend", "pipeline", "resource", "prompt"} <= roads, calls
            echo = next(c for c in calls if c["road"] == "tool")
            assert echo["caller"].startswith("token:") and CLIENT not in echo["caller"]
            assert echo["client"].startswith("fastmcp") and echo["outcome"] == "ok" and echo["tool"] == "echo"
            assert echo["argument_keys"] == ["text"] and echo["argument_bytes"] > 0
            assert [c["road"] for c in calls if c["road"] == "pipeline"] == ["pipeline", "pipeline"]
            only_errors = (await admin.get("/calls", params={"status": "error"})).json()["calls"]
            assert [c["tool"] for c in only_errors] == ["fail"] and only_errors[0]["error"] == "leaked ***"
            assert {c["server"] for c in (await admin.get("/calls", params={"server": "ghost"})).json()["calls"]} \
                == {"ghost"}
            assert (await admin.get("/calls", params={"limit": "lots"})).status_code == 400

            ran = await admin.post("/pipelines/twice/run", json={"text": "api"})
            assert ran.status_code == 200 and ran.json()["output"] == {"said": "api!"}, ran.text
            assert (await admin.post("/pipelines/twice/run", json={})).status_code == 400
            assert (await admin.post("/pipelines/ghost/run", json={})).status_code == 404
            listed = {p["name"]: p for p in (await admin.get("/pipelines")).json()["pipelines"]}
            assert listed["twice"]["valid"] is True and listed["broken.yaml"]["valid"] is False
            last = (await admin.get("/calls", params={"limit": 1})).json()["calls"][0]
            assert last["road"] == "pipeline" and last["caller"].startswith("admin:") and last["client"] == "console"

            metrics = (await admin.get("/metrics")).text
            assert re.search(r'gateway_calls_total\{outcome="ok",road="pipeline",server="t",tool="echo"\} 4\.0',
                             metrics), metrics
            assert 'gateway_calls_total{outcome="failed",road="call_backend",server="unknown",tool="unknown"} 1.0' \
                in metrics
            assert 'gateway_pipeline_runs_total{pipeline="twice",status="ok"} 2.0' in metrics
            assert 'gateway_backend_status{server="t",status="ready"} 1.0' in metrics
            assert 'gateway_backend_status{server="bad",status="failed"} 1.0' in metrics
            assert "gateway_call_duration_seconds_bucket" in metrics

            bad = (await admin.get("/servers/bad")).json()
            assert "API_TOKEN=" in bad["stderr_tail"]  # the backend printed it; the gateway hid its value
            shown = [json.dumps(calls), metrics, json.dumps(bad), (await admin.get("/servers")).text,
                     (await admin.get("/tools")).text]
            assert all(SECRET not in text for text in shown)
        proc.terminate()
    written = [path.read_text() for path in sorted(audit.parent.glob("calls.jsonl*"))]
    assert len(written) >= 2, "the audit file was rotated by size"
    entries = [json.loads(line) for text in written for line in text.splitlines()]
    assert {"tool", "call_backend", "pipeline", "resource", "prompt"} <= {e["road"] for e in entries}
    assert any(e.get("arguments") == {"text": "hello"} for e in entries)
    assert all(SECRET not in text for text in written)
    assert any("***" in json.dumps(e.get("arguments")) for e in entries if e["tool"] == "fail")


async def test_console_beside_the_stdio_front(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {"t": backend_spec(mark)})
    port = free_port()
    async with stdio_client(config, mark, "auto", "--admin-port", str(port)) as client:
        await wait_for(lambda: port_open(port), timeout=30, message="the console's port")
        token_file = tmp_path / ".gateway-admin-token"
        assert token_file.stat().st_mode & 0o077 == 0
        token = token_file.read_text().strip()
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            assert (await http.get("/servers")).status_code == 401
            servers = await http.get("/servers", headers={"Authorization": f"Bearer {token}"})
            assert [s["name"] for s in servers.json()["servers"]] == ["t"]
            await client.call_tool("t__echo", {"text": "from stdio"})
            calls = (await http.get("/calls", headers={"X-API-Key": token})).json()["calls"]
            assert calls[0]["caller"] == "stdio" and calls[0]["tool"] == "echo"
            assert (await http.get("/mcp", headers={"X-API-Key": token})).status_code == 404  # MCP stays on stdio
    await wait_for(lambda: not port_open(port), timeout=10, message="the console's port to close")
    misused = await anyio.run_process([GATEWAY, "--admin-port", str(port), "-t", "streamable-http"], check=False)
    assert misused.returncode == 2 and b"--admin-port is for the stdio transport" in misused.stderr
