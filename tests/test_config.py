"""The config file: parsing, `${VAR}` expansion, and how the CLI reports a bad file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import GATEWAY
from gateway.config import ConfigError, load_config, parse_config


def parse(raw: dict, env: dict | None = None):
    return parse_config(raw, source="test.json", env=env or {})


def test_claude_desktop_entries_and_transport_inference() -> None:
    config = parse({"mcpServers": {
        "local": {"command": "npx", "args": ["-y", "pkg"], "env": {"K": "v"}, "cwd": "/tmp"},
        "web": {"url": "https://example.com/mcp", "headers": {"X": "y"}},
        "events": {"url": "https://example.com/sse"},
        "typed": {"url": "https://example.com/events", "type": "sse"},
        "http_alias": {"url": "https://example.com/x", "transport": "http"},
        "off": {"command": "x", "disabled": True},
    }})
    kinds = {name: spec.kind for name, spec in config.mcpServers.items()}
    assert kinds == {"local": "stdio", "web": "streamable-http", "events": "sse", "typed": "sse",
                     "http_alias": "streamable-http", "off": "stdio"}
    assert not config.mcpServers["off"].active
    assert config.gateway.call_timeout == 10 and config.gateway.separator == "__"


def test_env_expansion_with_defaults_and_a_clear_error_for_missing_variables() -> None:
    config = parse({"mcpServers": {"a": {"url": "${BASE}/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"},
                                         "description": "${DESC:-fallback}"}}},
                   env={"BASE": "http://127.0.0.1:1", "TOKEN": "t0k"})
    spec = config.mcpServers["a"]
    assert spec.url == "http://127.0.0.1:1/mcp" and spec.headers["Authorization"] == "Bearer t0k"
    assert spec.description == "fallback"
    with pytest.raises(ConfigError) as err:
        parse({"mcpServers": {"db": {"command": "x", "env": {"PASSWORD": "${DB_PASSWORD}"}}}})
    assert str(err.value) == ("test.json: server 'db', field 'env.PASSWORD': environment variable "
                              "DB_PASSWORD is not set (set it, or write ${DB_PASSWORD:-default})")


@pytest.mark.parametrize(("raw", "expected"), [
    ({"mcpServers": {"a": {"command": "x", "colour": "red"}}}, "server 'a', field 'colour': unknown key"),
    ({"mcpServers": {"a": {"command": "x", "args": "not-a-list"}}}, "server 'a', field 'args'"),
    ({"mcpServers": {"a": {"command": "x", "url": "http://h"}}}, "server 'a': give exactly one of"),
    ({"mcpServers": {"a": {}}}, "server 'a': give exactly one of"),
    ({"mcpServers": {"a": {"url": "ftp://h"}}}, "server 'a', field 'url'"),
    ({"mcpServers": {"a": {"url": "http://h", "transport": "carrier-pigeon"}}}, "unknown transport"),
    ({"mcpServers": {"a": {"command": "x", "transport": "sse"}}}, "does not fit a command"),
    ({"mcpServers": {"a": {"command": "x", "timeout": -1}}}, "server 'a', field 'timeout'"),
    ({"mcpServers": {"bad name": {"command": "x"}}}, "server name 'bad name'"),
    ({"mcpServers": {"a__b": {"command": "x"}}}, "must not contain the name separator"),
    ({"mcpServers": {}, "gateway": {"call_timeout": "soon"}}, "field 'gateway.call_timeout'"),
    ({"servers": {}}, "field 'servers': unknown key"),
])
def test_bad_entries_name_the_server_and_field(raw: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(raw)
    assert str(err.value).startswith("test.json: ") and expected in str(err.value)


def test_relative_paths_are_anchored_at_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"mcpServers": {"a": {"command": "bin/server", "cwd": "work"},
                                               "b": {"command": "python3"}}}))
    config = load_config(path)
    assert config.mcpServers["a"].command == str(tmp_path / "bin/server")
    assert config.mcpServers["a"].cwd == str(tmp_path / "work")
    assert config.mcpServers["b"].command == "python3" and config.mcpServers["b"].cwd == str(tmp_path)
    # a catalog template's server starts in a directory of its own: its script argument is anchored too
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts/server.py").write_text("")
    path.write_text(json.dumps({"gateway": {"catalog": {"t": {
        "command": "bin/python", "args": ["scripts/server.py", "--flag", "not/a/file", "{x}"],
        "params": {"x": {"type": "enum", "values": ["a"]}}}}}}))
    template = load_config(path).gateway.catalog["t"]
    assert template.command == str(tmp_path / "bin/python") and template.cwd is None
    assert template.args == [str(tmp_path / "scripts/server.py"), "--flag", "not/a/file", "{x}"]


@pytest.mark.parametrize(("content", "expected"), [
    (None, "cannot read the config file"),
    ("{not json", "not valid JSON at line 1"),
    ('["a list"]', "top level must be a JSON object"),
    ('{"mcpServers": {"db": {"command": "x", "args": [1, {}]}}}', "server 'db', field 'args.1'"),
    ('{"mcpServers": {"db": {"command": "x", "env": {"K": "${NOPE_NOT_SET}"}}}}', "NOPE_NOT_SET is not set"),
])
def test_the_cli_exits_2_with_one_message_and_no_traceback(tmp_path: Path, content: str | None,
                                                            expected: str) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    done = subprocess.run([GATEWAY, "--auto-register", str(path)], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert done.stderr.startswith(f"gateway: {path}") and expected in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_help_documents_every_option() -> None:
    done = subprocess.run([GATEWAY, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for option in ("--auto-register", "--transport", "--host", "--port", "--path", "--allow-any-command",
                   "--log-level", "streamable-http", "sse"):
        assert option in done.stdout
