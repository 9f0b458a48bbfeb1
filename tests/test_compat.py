"""The one door to FastMCP and mcp internals: every private name it needs is there in the pinned
versions, a missing one stops the gateway with one line, and no other module uses such a name."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import fastmcp.server.context
import pytest
from mcp import ClientSession

from conftest import PYTHON, ROOT
from gateway import _compat


def test_the_installed_fastmcp_and_mcp_have_every_name_the_gateway_uses() -> None:
    assert _compat.problems() == []


def test_a_missing_name_is_reported_with_the_versions_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(fastmcp.server.context, "_get_client_log_level")
    monkeypatch.setattr(ClientSession, "__init__", lambda self: None)  # a version that keeps no _stamp
    problems = _compat.problems()
    assert len(problems) == 1 and problems[0].startswith("this gateway needs fastmcp 4.2.3 and mcp 2.3.0")
    assert problems[0].endswith("missing: fastmcp.server.context._get_client_log_level, mcp ClientSession._stamp, "
                                "mcp ClientSession._dispatcher. Reinstall with ./setup.sh")


def test_the_gateway_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    script = ("import fastmcp.server.context as c; del c._get_client_log_level; "
              "import sys; sys.argv = ['gateway']; from gateway.cli import main; main()")
    done = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("gateway: this gateway needs fastmcp 4.2.3 and mcp 2.3.0")
    assert "missing: fastmcp.server.context._get_client_log_level" in done.stderr


def test_no_other_module_touches_a_private_name_of_fastmcp_or_mcp() -> None:
    private = {name.rsplit(".", 1)[-1] for name, _check in _compat._REQUIRED if "._" in name}
    assert private >= {"_mcp_server", "_connection", "_stamp", "_dispatcher", "_lifespan_manager"}
    # (the gateway's own classes may have attributes of the same names: `self._connection`)
    pattern = re.compile(r"(?<!self)\.(" + "|".join(map(re.escape, sorted(private))) + r")\b"
                         r"|from (fastmcp|mcp)\S* import _")
    offenders = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                 for path in sorted((ROOT / "gateway").rglob("*.py")) if path.name != "_compat.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []
