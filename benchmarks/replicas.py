"""How fast a change on one replica reaches another, through a real redis-server.

    .venv/bin/python benchmarks/replicas.py [--changes 100]

Two gateways over HTTP share a Redis on a free port. An operator's change on replica A (a tool
disabled, then enabled again: PATCH /tools/...) is timed from A's answer until replica B's
GET /tools shows it, polling every millisecond; then a server registered on A is timed until B
lists it (B then starts its own copy). Reports median and max.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = str(ROOT / ".venv" / "bin" / "gateway")
TOKEN = "bench-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after {timeout} s")


def until(check, timeout: float = 30) -> float:  # type: ignore[no-untyped-def]
    """Seconds until check() is true, polling every millisecond."""
    began = time.perf_counter()
    while not check():
        if time.perf_counter() - began > timeout:
            raise SystemExit("a change did not arrive within 30 s")
        time.sleep(0.001)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--registrations", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        redis_port = free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                  "--dir", scratch], stdout=subprocess.DEVNULL)
        processes = [redis]
        try:
            wait_port(redis_port)
            backend = {"command": sys.executable, "args": [str(ROOT / "benchmarks" / "bench_server.py")]}
            config = Path(scratch) / "config.json"
            config.write_text(json.dumps({"mcpServers": {"b": backend}, "gateway": {
                "store": f"redis://127.0.0.1:{redis_port}/0", "admin_tokens": [TOKEN],
                "catalog": {"bench": backend}}}))
            ports = [free_port(), free_port()]
            for port in ports:
                processes.append(subprocess.Popen([GATEWAY, "--transport", "streamable-http", "--port", str(port),
                                                   "--auto-register", str(config)], stderr=subprocess.DEVNULL))
            for port in ports:
                wait_port(port)
            a, b = (httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                  headers={"Authorization": f"Bearer {TOKEN}"}) for port in ports)
            until(lambda: b.get("/readyz").status_code == 200 and a.get("/readyz").status_code == 200, 60)
            tool = "b__echo"

            def enabled_on_b() -> bool:
                return bool(b.get("/tools", params={"q": "echo", "server": "b"}).json()["tools"][0]["enabled"])

            settings = []
            for i in range(args.changes):
                wanted = i % 2 == 1  # disabled first, then enabled again
                assert a.patch(f"/tools/{tool}", json={"enabled": wanted}).status_code == 200
                settings.append(until(lambda: enabled_on_b() == wanted))
            a.patch(f"/tools/{tool}", json={"enabled": None})

            registrations = []
            for i in range(args.registrations):
                name = f"r{i}"
                assert a.post("/servers", json={"name": name, "template": "bench"}).status_code == 201
                registrations.append(until(lambda: any(s["name"] == name for s in b.get("/servers").json()["servers"])))
                assert a.delete(f"/servers/{name}").status_code == 200
                until(lambda: all(s["name"] != name for s in b.get("/servers").json()["servers"]))
            report = {
                "tool_setting_ms": {"changes": len(settings), "median": round(statistics.median(settings) * 1000, 1),
                                    "max": round(max(settings) * 1000, 1)},
                "registration_ms": {"changes": len(registrations),
                                    "median": round(statistics.median(registrations) * 1000, 1),
                                    "max": round(max(registrations) * 1000, 1)},
            }
            print(json.dumps(report, indent=2))
        finally:
            for process in reversed(processes):
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    main()
