"""Install a published MCP server, ask it `tools/list` over stdio, and write a catalog fixture.

    .venv/bin/python benchmarks/catalog/dump_tools.py npm:@modelcontextprotocol/server-github \\
        --server github --description "GitHub repositories, issues and pull requests" \\
        --env GITHUB_PERSONAL_ACCESS_TOKEN=dummy

    .venv/bin/python benchmarks/catalog/dump_tools.py pypi:mcp-server-git --server git \\
        --description "..." -- --repository /tmp

The spec is npm:<package>[@version] or pypi:<package>[==version]. Arguments after `--` go to the
server. The package is installed under --workdir (npm install --prefix, or a fresh venv for PyPI);
the fixture records the exact version installed and today's date.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import signal
import subprocess
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

HERE = Path(__file__).resolve().parent


def install_npm(spec: str, workdir: Path, bin_name: str | None) -> tuple[str, str, list[str]]:
    name = spec if spec.rfind("@") <= 0 else spec[: spec.rfind("@")]
    prefix = workdir / "npm" / re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", spec],
                   check=True, stdout=sys.stderr)
    pkg_dir = prefix / "node_modules" / name
    meta = json.loads((pkg_dir / "package.json").read_text())
    bins = meta.get("bin") or {}
    if isinstance(bins, str):
        bins = {name.split("/")[-1]: bins}
    rel = bins[bin_name] if bin_name else next(iter(bins.values()))
    return name, meta["version"], ["node", str(pkg_dir / rel)]


def install_pypi(spec: str, workdir: Path, bin_name: str | None) -> tuple[str, str, list[str]]:
    name = re.split(r"[=<>!~\[]", spec)[0]
    venv = workdir / "pypi" / re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", spec], check=True, stdout=sys.stderr)
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         f"import importlib.metadata as m; print(m.version({name!r}))"],
        check=True, capture_output=True, text=True).stdout.strip()
    return name, version, [str(venv / "bin" / (bin_name or name))]


async def list_tools(command: list[str], env: dict[str, str], timeout: float) -> list[dict]:
    """initialize, then tools/list (every page), over newline-delimited JSON-RPC on the server's stdio.

    The raw answer is kept: a client library's models would reject or normalise some published schemas.
    """
    proc = await asyncio.create_subprocess_exec(
        *command, env={**os.environ, **env}, stdin=PIPE, stdout=PIPE, stderr=sys.stderr,
        start_new_session=True, limit=64 * 1024 * 1024)
    next_id = 0

    async def request(method: str, params: dict) -> dict:
        nonlocal next_id
        next_id += 1
        send({"jsonrpc": "2.0", "id": next_id, "method": method, "params": params})
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
            if not line:
                raise RuntimeError(f"server closed stdout during {method}")
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # a stray log line on stdout
            if msg.get("id") == next_id and "method" not in msg:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            if "method" in msg and "id" in msg:  # a request from the server: decline it
                send({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "not supported"}})

    def send(msg: dict) -> None:
        proc.stdin.write(json.dumps(msg).encode() + b"\n")

    try:
        await request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                     "clientInfo": {"name": "dump_tools", "version": "1"}})
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        tools, cursor = [], None
        while True:
            page = await request("tools/list", {"cursor": cursor} if cursor else {})
            tools += page.get("tools", [])
            cursor = page.get("nextCursor")
            if not cursor:
                break
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
    keep = ("name", "description", "inputSchema")
    return [{k: t[k] for k in keep if k in t} for t in tools]


def main() -> None:
    parser = argparse.ArgumentParser(
        usage="%(prog)s SPEC --server NAME --description TEXT [options] [-- SERVER_ARGS ...]",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="npm:<package>[@version] or pypi:<package>[==version]")
    parser.add_argument("--server", required=True, help="short name: lowercase letters, digits, _")
    parser.add_argument("--description", required=True, help="one sentence for the fixture")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--bin", help="which executable of the package to run (default: the first)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/catalog-work"))
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=HERE / "servers")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, server_args = parser.parse_args(argv[:cut]), argv[cut + 1:]
    if not re.fullmatch(r"[a-z0-9_]+", args.server):
        parser.error("--server: lowercase letters, digits and _ only")

    registry, _, spec = args.spec.partition(":")
    install = {"npm": install_npm, "pypi": install_pypi}.get(registry)
    if install is None:
        parser.error("spec must start with npm: or pypi:")
    name, version, command = install(spec, args.workdir, args.bin)
    env = dict(item.split("=", 1) for item in args.env)
    tools = asyncio.run(list_tools(command + server_args, env, args.timeout))

    sep = "@" if registry == "npm" else "=="
    fixture = {
        "server": args.server,
        "description": args.description,
        "source": f"{registry} {name}{sep}{version}, tools/list over stdio on {datetime.date.today().isoformat()}",
        "tools": tools,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.server}.json"
    path.write_text(json.dumps(fixture, indent=2, ensure_ascii=False) + "\n")
    print(f"{path}: {len(tools)} tools from {name}{sep}{version}")


if __name__ == "__main__":
    main()
