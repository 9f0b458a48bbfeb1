"""Safe by default: registration policy, secrets, HTTP auth, persistence of runtime registrations."""

from __future__ import annotations

import http.server
import json
import os
import stat
import subprocess
import threading
from pathlib import Path

import anyio
import httpx2
import pytest
from fastmcp import Client
from mcp import MCPError

from conftest import (BACKENDS, GATEWAY, PYTHON, TESTING_SERVER, backend_spec, http_gateway, stdio_client,
                      catalog_entry, text_of, write_config)

SECRET = "planted-s3cret-9f1c"


async def refused(client: Client, **params) -> str:
    result = await client.call_tool("register_server", params, raise_on_error=False)
    assert result.is_error, params
    return text_of(result)


async def test_allow_any_command_is_explicit_and_warned_about(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {}, catalog={})
    log = tmp_path / "stderr.log"
    with log.open("w") as errors:
        client = stdio_client(config, mark, "auto", "--allow-any-command")
        client.transport.log_file = errors
        async with client:
            ok = await client.call_tool("register_server", {
                "name": "any", "command": PYTHON, "args": [str(TESTING_SERVER)], "env": {"GATEWAY_TEST_MARK": mark}})
            assert ok.structured_content["status"] == "ready"
    assert "--allow-any-command" in log.read_text() and "run anything" in log.read_text()


async def test_secrets_never_appear_in_answers_or_logs(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {
        "leaky": backend_spec(mark, env={"API_TOKEN": "${PLANTED}", "TEST_BACKEND_CRASH_ON_START": "1"}),
        "fine": backend_spec(mark, env={"API_TOKEN": "${PLANTED}"}),
        "remote": {"url": "http://127.0.0.1:9/mcp?token=${PLANTED}", "bearer_token": "${PLANTED}",
                   "api_key": "${PLANTED}", "headers": {"X-Other": "${PLANTED}"}},
    }, connect_timeout=5)
    log = tmp_path / "stderr.log"
    seen: list[str] = []
    with log.open("w") as errors:
        client = stdio_client(config, mark, "auto", "--log-level", "DEBUG")
        client.transport.env = {"GATEWAY_TEST_MARK": mark, "PLANTED": SECRET}
        client.transport.log_file = errors
        async with client:
            listed = await client.call_tool("list_servers", {})
            seen.append(json.dumps(listed.structured_content))
            servers = {s["name"]: s for s in listed.structured_content["servers"]}
            assert servers["leaky"]["status"] == "failed" and "***" in servers["leaky"]["last_error"]
            assert servers["remote"]["header_keys"] == ["Authorization", "X-API-Key", "X-Other"]
            for call in ({"server": "leaky", "tool": "echo"}, {"server": "remote", "tool": "echo"},
                         {"server": "fine", "tool": "flood", "params": {"kb": 1}}):
                seen.append(text_of(await client.call_tool("call_backend", call, raise_on_error=False)))
            # the backend itself did get the secret
            assert (await client.call_tool("fine__env", {"name": "API_TOKEN"})).data == SECRET
            refused = await client.call_tool("register_server", {"name": "fails", **catalog_entry(
                mark, API_TOKEN="another-secret-77", TEST_BACKEND_CRASH_ON_START="1")}, raise_on_error=False)
            seen.append(text_of(refused))
    seen.append(log.read_text())
    everything = "\n".join(seen)
    assert "refusing to start" in everything and "API_TOKEN=***" in everything  # stderr tail, blanked
    assert SECRET not in everything and "another-secret-77" not in everything


async def test_only_secret_looking_env_values_are_blanked(tmp_path: Path, mark: str) -> None:
    """A server's own name in an ordinary env value stays readable in its errors; a token does not."""
    config = write_config(tmp_path / "config.json", {})
    async with stdio_client(config, mark) as client:
        refused = await client.call_tool("register_server", {"name": "probeaut", **catalog_entry(
            mark, PROBE_NAME="probeaut", API_TOKEN="tok-4f1d-9a2b-secret", TEST_BACKEND_CRASH_ON_START="1")},
            raise_on_error=False)
    text = text_of(refused)
    assert refused.is_error and text.startswith("cannot register 'probeaut': server 'probeaut'")
    assert "API_TOKEN=***" in text and "tok-4f1d-9a2b-secret" not in text


@pytest.fixture
def token_gateway(tmp_path: Path, mark: str):
    config = write_config(tmp_path / "config.json", {"t": backend_spec(mark, env={"API_TOKEN": SECRET})})
    with http_gateway(config, mark, "streamable-http", "--auth-token", "tok-one", "--auth-token", "tok-two",
                      "--admin-token", "op-token") as (url, _):
        yield url


async def test_http_auth_on_mcp_and_admin_routes(token_gateway: str) -> None:
    base = token_gateway.removesuffix("/mcp")
    async with httpx2.AsyncClient() as http:
        for path in ("/mcp", "/servers"):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "tok-onex"}):
                response = await http.post(base + path, headers=headers, json={}) if path == "/mcp" \
                    else await http.get(base + path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert response.json()["error"] == "unauthorized" and "Bearer" in response.json()["message"]
        assert (await http.get(base + "/healthz")).json() == {"status": "ok"}
        # a client token reaches MCP, never the operator's API
        refused = await http.get(base + "/servers", headers={"X-API-Key": "tok-two"})
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        servers = await http.get(base + "/servers", headers={"X-API-Key": "op-token"})
        assert servers.status_code == 200 and servers.json()["servers"][0]["name"] == "t"
        assert servers.json()["servers"][0]["env_keys"] == ["API_TOKEN", "GATEWAY_TEST_MARK"]
        assert SECRET not in servers.text
        for path in ("/servers", "/mcp"):
            rebinding = await http.get(base + path, headers={"X-API-Key": "op-token", "Host": "evil.example"})
            assert rebinding.status_code == 421, path
    async with Client(token_gateway, auth="tok-one") as client:
        assert (await client.call_tool("t__echo", {"text": "authorized"})).data == "authorized"
    # the client only sees the refusal as an error response (the 401 itself is checked above)
    with pytest.raises(MCPError, match="Server returned an error response"):
        async with Client(token_gateway, auth="nope") as client:
            await client.list_tools()


async def test_sse_front_requires_the_token_too(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {})
    async with http_gateway(config, mark, "sse", "--auth-token", "sse-token") as (url, _):
        async with httpx2.AsyncClient() as http:
            response = await http.get(url, headers={"Accept": "text/event-stream"})
            assert response.status_code == 401
        async with Client(url, auth="sse-token") as client:
            assert "list_servers" in {t.name for t in await client.list_tools()}


def test_non_loopback_host_without_tokens_is_refused(tmp_path: Path) -> None:
    done = subprocess.run([GATEWAY, "--transport", "streamable-http", "--host", "0.0.0.0", "--port", "1"],
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "GATEWAY_AUTH_TOKENS"})
    assert done.returncode == 2
    assert "without authentication" in done.stderr and "--no-auth" in done.stderr and "Traceback" not in done.stderr


async def test_runtime_registrations_survive_a_restart(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {})
    state = tmp_path / "gateway-state.json"
    spec = catalog_entry(mark)
    async with stdio_client(config, mark) as client:
        await client.call_tool("register_server", {"name": "kept", **spec})
        await client.call_tool("register_server", {"name": "dropped", **spec})
        await client.call_tool("remove_server", {"name": "dropped"})
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert set(json.loads(state.read_text())["servers"]) == {"kept"}
    async with stdio_client(config, mark) as client:
        servers = {s["name"]: s for s in (await client.call_tool("list_servers", {})).structured_content["servers"]}
        assert servers["kept"]["status"] == "ready" and servers["kept"]["registered_at_runtime"]
        assert servers["kept"]["description"] == "the testing backend" and "dropped" not in servers
        assert (await client.call_tool("kept__echo", {"text": "back"})).data == "back"


async def test_a_corrupt_state_file_is_kept_aside_and_reported(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {})
    state = tmp_path / "gateway-state.json"
    state.write_text('{"servers": {"half": {"command": ')
    async with stdio_client(config, mark) as client:
        listed = (await client.call_tool("list_servers", {})).structured_content
        assert "could not be read" in listed["state_file_problem"] and ".corrupt-" in listed["state_file_problem"]
        await client.call_tool("register_server", {"name": "new", **catalog_entry(mark)})
    backups = list(tmp_path.glob("gateway-state.json.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_text() == '{"servers": {"half": {"command": '
    assert set(json.loads(state.read_text())["servers"]) == {"new"}


async def test_concurrent_register_and_remove_never_lose_or_duplicate(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {}, connect_timeout=60)
    state = tmp_path / "gateway-state.json"
    spec = catalog_entry(mark)
    async with stdio_client(config, mark) as client:
        errors: list[str] = []

        async def register(name: str) -> None:
            result = await client.call_tool("register_server", {"name": name, **spec}, raise_on_error=False)
            if result.is_error:
                errors.append(text_of(result))

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(register, f"s{i}")
            tg.start_soon(register, "s0")  # a duplicate racing the original: exactly one wins
        assert len(errors) == 1 and "'s0' already exists" in errors[0]
        names = {s["name"] for s in (await client.call_tool("list_servers", {})).structured_content["servers"]}
        assert names == {f"s{i}" for i in range(6)}
        assert set(json.loads(state.read_text())["servers"]) == names

        async with anyio.create_task_group() as tg:
            for i in range(0, 6, 2):
                tg.start_soon(client.call_tool, "remove_server", {"name": f"s{i}"})
            for i in range(6, 8):
                tg.start_soon(register, f"s{i}")
        expected = {f"s{i}" for i in (1, 3, 5, 6, 7)}
        names = {s["name"] for s in (await client.call_tool("list_servers", {})).structured_content["servers"]}
        assert names == expected
        assert set(json.loads(state.read_text())["servers"]) == expected


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers any GET with a schema, and records that it was asked."""

    asked: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self.asked.append(self.path)
        body = b'{"type": "string"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


async def test_tool_schemas_never_make_the_gateway_fetch_a_url(tmp_path: Path, mark: str) -> None:
    """A backend's input schema may `$ref` another document by its URL. python-jsonschema fetches such
    a document by default, from wherever the gateway runs and blocking its event loop; the gateway
    resolves only references within the schema, checks what those cover, and leaves the rest to the
    backend. `gateway validate` checks pipeline steps against such schemas too."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.asked = asked = []
    try:
        remote = f"http://127.0.0.1:{server.server_address[1]}/schema.json"
        schema = {"type": "object", "required": ["count"], "$defs": {"Count": {"type": "integer"}},
                  "properties": {"count": {"$ref": "#/$defs/Count"}, "label": {"$ref": remote}}}
        tool = {"name": "lookup", "description": "Looks a count up", "inputSchema": schema}
        spec = {"command": PYTHON, "args": [str(BACKENDS / "duplicate_tools_server.py")],
                "env": {"GATEWAY_TEST_MARK": mark, "EXTRA_TOOLS": json.dumps([tool])}}
        config = write_config(tmp_path / "config.json", {"refs": spec})
        async with stdio_client(config, mark) as client:
            ok = await client.call_tool("refs__lookup", {"count": 3, "label": "x"})
            assert json.loads(text_of(ok)) == {"count": 3, "label": "x"}
            bad = await client.call_tool("refs__lookup", {"count": "three"}, raise_on_error=False)
            assert bad.is_error and "'three' is not of type 'integer'" in text_of(bad)
            assert "'count'" in text_of(bad)
            # clients are shown the schema with its own references inlined (some cannot follow them)
            listed = {t.name: t for t in await client.list_tools()}
            assert listed["refs__lookup"].inputSchema["properties"]["count"] == {"type": "integer"}

        pipelines = tmp_path / "pipelines"
        pipelines.mkdir()
        (pipelines / "count.yaml").write_text(
            "name: count\nsteps:\n  a: {server: refs, tool: lookup, args: {count: three, label: x}}\n")
        checked = await anyio.run_process(
            [GATEWAY, "validate", "--pipelines", str(pipelines), "--auto-register", str(config)], check=False,
            env={**os.environ, "GATEWAY_TEST_MARK": mark})
        out = checked.stdout.decode()
        assert checked.returncode == 1, (out, checked.stderr.decode())
        assert "step 'a', field 'args.count': 'three' is not of type 'integer'" in out, checked.stderr.decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert asked == [], f"the gateway fetched {asked}"
