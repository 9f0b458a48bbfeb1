"""A TypeScript reference server (handshake-era protocol only) behind the gateway, both client eras."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import MODES, ROOT, stdio_client, text_of, write_config

MEMORY_SERVER = ROOT / ".node-backends/node_modules/@modelcontextprotocol/server-memory/dist/index.js"

pytestmark = pytest.mark.skipif(not (shutil.which("node") and MEMORY_SERVER.exists()),
                                reason="needs node and ./setup.sh's npm install of server-memory")


@pytest.mark.parametrize("mode", MODES)
async def test_typescript_backend_in_both_client_eras(tmp_path: Path, mark: str, mode: str) -> None:
    config = write_config(tmp_path / "config.json", {
        "memory": {"command": shutil.which("node"), "args": [str(MEMORY_SERVER)],
                   "env": {"MEMORY_FILE_PATH": str(tmp_path / "memory.jsonl"), "GATEWAY_TEST_MARK": mark}},
    })
    async with stdio_client(config, mark, mode) as client:
        listed = (await client.call_tool("list_servers", {})).structured_content["servers"]
        assert listed[0]["status"] == "ready", listed
        assert listed[0]["protocol_version"] == "2025-11-25"  # negotiated down from 2026-07-28
        assert "memory__create_entities" in {t.name for t in await client.list_tools()}
        await client.call_tool("memory__create_entities", {"entities": [
            {"name": "gateway", "entityType": "project", "observations": ["speaks both eras"]}]})
        found = await client.call_tool("call_backend", {"server": "memory", "tool": "search_nodes",
                                                        "params": {"query": "gateway"}})
        assert "speaks both eras" in text_of(found)
        bad = await client.call_tool("memory__create_entities", {"entities": "nope"}, raise_on_error=False)
        assert bad.is_error and "entities" in text_of(bad)
