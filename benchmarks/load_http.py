"""Concurrent load through the gateway over streamable HTTP, with a crashing and a hanging backend.

    .venv/bin/python benchmarks/load_http.py [--calls 10000] [--concurrency 64]

One run, three phases, each `--concurrency` calls in flight over `--clients` long-lived clients:

1. direct: `--baseline-calls` echo calls straight to one bench backend served over its own HTTP;
2. gateway, clean: the same number of echo calls through the gateway, spread over four stdio bench
   backends (namespaced `benchN__echo` and `call_backend`);
3. gateway, faults: `--calls` calls in which `crashy` is crashed `--crashes` times (each crash is
   followed by echo probes until it answers again, and `crashy__echo` calls run throughout) while
   `--hang-lanes` of the in-flight slots keep calling `hangs__hang`, which must time out after 2 s.

Every echo carries a unique payload that must come back unchanged. Lost (an exception or error
result) or crossed (another payload) answers from a healthy backend make the exit status 1, as do
crossed answers anywhere, hang calls not answered by their timeout, and any process or port left
behind. Writes benchmarks/results/load_http.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Read by fastmcp at import time; its client would otherwise log every failed call it relays.
os.environ.setdefault("FASTMCP_LOG_LEVEL", "CRITICAL")

import anyio
import psutil
from fastmcp import Client

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH_SERVER = HERE / "bench_server.py"
TESTING_SERVER = ROOT / "tests" / "backends" / "testing_server.py"
GATEWAY = str(Path(sys.executable).parent / "gateway")
RESULTS = HERE / "results"

MARK_VAR = "LOAD_HTTP_MARK"  # in the environment of every process this run starts
HEALTHY = [f"bench{i}" for i in range(4)]
HANG_TIMEOUT = 2.0
CALL_TIMEOUT = 10.0
# Above every gateway-side timeout, so a timeout is answered by the gateway, not by our client.
CLIENT_TIMEOUT = 30.0
CALL_BOUND = 60.0  # no call of ours may outlive this, whatever the gateway does
PROBE_BOUND = 30.0  # longest we wait for crashy to come back after a crash
CRASHY_EVERY = 40  # one crashy__echo among this many general calls
CALL_BACKEND_EVERY = 4  # one healthy call in this many goes through call_backend
PHASE_BOUND = 600.0
STARTUP_BOUND = 60.0

NUMBER = re.compile(r"\d+(\.\d+)?")
UUIDISH = re.compile(r"[0-9a-f]{32}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def marked_processes(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARK_VAR) == mark and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def percentile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def shape(message: str) -> str:
    """Error text with its varying parts blanked, so equal errors count together."""
    return NUMBER.sub("N", UUIDISH.sub("<payload>", message))[:240]


# -- processes -----------------------------------------------------------------------------------


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def stderr_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def serve(args: list[str], port: int, mark: str, log: Path, what: str) -> Iterator[Started]:
    """Runs a server on `port` until the block ends; it is always stopped and the port checked."""
    # stderr goes to a file: an unread pipe would block a server that logs a lot under load.
    with log.open("wb") as sink:
        proc = subprocess.Popen(args, env={**os.environ, MARK_VAR: mark}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=sink)
    started = Started(proc, port, log)
    try:
        deadline = time.monotonic() + STARTUP_BOUND
        while not port_open(port):
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with status {proc.returncode} before serving:\n"
                                   + started.stderr_text()[-2000:])
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not open port {port} within {STARTUP_BOUND:g}s")
            time.sleep(0.05)
        yield started
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_gone(mark: str, port: int, timeout: float = 10.0) -> dict[str, Any]:
    """After a server stopped: is anything of ours still running or listening?"""
    deadline = time.monotonic() + timeout
    while (left := marked_processes(mark)) or port_open(port):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    leaked = []
    for proc in left:
        with contextlib.suppress(psutil.Error):
            leaked.append({"pid": proc.pid, "cmdline": " ".join(proc.cmdline())})
            proc.kill()  # ours by the mark; reported as a failure
    return {"leaked_processes": leaked, "port_closed": not port_open(port)}


def write_config(path: Path, mark: str, cancel_log: Path) -> Path:
    env = {MARK_VAR: mark}
    servers: dict[str, Any] = {
        name: {"command": sys.executable, "args": [str(BENCH_SERVER)], "env": env} for name in HEALTHY}
    servers["crashy"] = {"command": sys.executable, "args": [str(TESTING_SERVER)], "env": env}
    servers["hangs"] = {"command": sys.executable, "args": [str(TESTING_SERVER)],
                        "env": {**env, "TEST_BACKEND_CANCEL_LOG": str(cancel_log)}, "timeout": HANG_TIMEOUT}
    path.write_text(json.dumps({"mcpServers": servers,
                                "gateway": {"call_timeout": CALL_TIMEOUT, "connect_timeout": 30}},
                               indent=2))
    return path


def process_snapshot(pid: int) -> dict[str, Any]:
    try:
        proc = psutil.Process(pid)
        children = proc.children(recursive=True)
        return {"rss_mb": round(proc.memory_info().rss / 2**20, 1), "open_fds": proc.num_fds(),
                "threads": proc.num_threads(), "children": len(children),
                "zombie_children": sum(1 for c in children if _status(c) == psutil.STATUS_ZOMBIE)}
    except psutil.Error as exc:
        return {"error": str(exc)}


class CpuMeter:
    """CPU seconds spent by the load driver, the server, its children and everything else."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.start = self._sample()

    def _sample(self) -> dict[str, float]:
        me = psutil.Process().cpu_times()
        sample = {"driver": me.user + me.system, "server": 0.0, "children": 0.0}
        with contextlib.suppress(psutil.Error):
            server = psutil.Process(self.server_pid)
            times = server.cpu_times()
            sample["server"] = times.user + times.system
            # Reaped children (crashed and restarted backends) are counted by their parent.
            sample["children"] = times.children_user + times.children_system
            for child in server.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child_times = child.cpu_times()
                    sample["children"] += child_times.user + child_times.system
        system = psutil.cpu_times()
        sample["machine"] = sum(system) - system.idle - getattr(system, "iowait", 0.0)
        return sample

    def stop(self, wall: float) -> dict[str, float]:
        end = self._sample()
        used = {key: round(end[key] - self.start[key], 2) for key in end}
        used["others"] = round(used["machine"] - used["driver"] - used["server"] - used["children"], 2)
        used["machine_busy_pct"] = round(100 * used["machine"] / (wall * (os.cpu_count() or 1)), 1)
        return used


def _status(proc: psutil.Process) -> str | None:
    try:
        return proc.status()
    except psutil.Error:
        return None


# -- calls ---------------------------------------------------------------------------------------


@dataclass
class Answer:
    kind: str  # "result", "error" (an error result) or "exception"
    text: str
    seconds: float


async def call(client: Client, tool: str, args: dict[str, Any]) -> Answer:
    started = time.perf_counter()
    try:
        with anyio.fail_after(CALL_BOUND):
            result = await client.call_tool(tool, args, raise_on_error=False)
    except Exception as exc:  # timeouts, MCPError, transport errors: all count, none may escape
        return Answer("exception", f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
    first = result.content[0] if result.content else None
    text = getattr(first, "text", "") or ""
    return Answer("error" if result.is_error else "result", text, time.perf_counter() - started)


@dataclass
class Echoes:
    """Outcomes of echo calls whose payload must come back unchanged."""

    ok: int = 0
    lost: int = 0
    crossed: int = 0
    latencies: list[float] = field(default_factory=list)
    done_at: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def record(self, answer: Answer, payload: str) -> bool:
        if answer.kind == "result" and answer.text == payload:
            self.ok += 1
            self.latencies.append(answer.seconds)
            self.done_at.append(time.perf_counter())
            return True
        if answer.kind == "result":
            self.crossed += 1
            self.errors[f"crossed: expected a payload, got {shape(answer.text)!r}"] += 1
        else:
            self.lost += 1
            self.errors[f"{answer.kind}: {shape(answer.text)}"] += 1
        return False

    @property
    def calls(self) -> int:
        return self.ok + self.lost + self.crossed

    def summary(self) -> dict[str, Any]:
        return {"calls": self.calls, "ok": self.ok, "lost": self.lost, "crossed": self.crossed,
                "p50_ms": ms(percentile(self.latencies, 0.5)), "p90_ms": ms(percentile(self.latencies, 0.9)),
                "p99_ms": ms(percentile(self.latencies, 0.99)),
                "max_ms": ms(max(self.latencies) if self.latencies else None),
                "errors": dict(self.errors.most_common(10))}


@dataclass
class Phase:
    name: str
    started: float = 0.0
    ended: float = 0.0
    made: int = 0
    healthy: Echoes = field(default_factory=Echoes)
    by_path: dict[str, Echoes] = field(default_factory=dict)
    crashy_echo: Echoes = field(default_factory=Echoes)
    crashes: list[dict[str, Any]] = field(default_factory=list)
    hang_seconds: list[float] = field(default_factory=list)
    hangs_echo: Echoes = field(default_factory=Echoes)
    cpu: dict[str, float] = field(default_factory=dict)
    hang_unexpected: Counter[str] = field(default_factory=Counter)

    @property
    def wall(self) -> float:
        return self.ended - self.started

    def per_second(self) -> dict[str, Any]:
        """Healthy answers per whole second of the run: shows stalls that percentiles hide."""
        buckets = Counter(int(t - self.started) for t in self.healthy.done_at)
        seconds = int(self.wall)
        counts = [buckets.get(i, 0) for i in range(seconds)] or [0]
        return {"min": min(counts), "median": statistics.median(counts), "max": max(counts),
                "slowest_second": counts.index(min(counts))}


async def run_phase(phase: Phase, clients: list[Client], server_pid: int, *, calls: int, concurrency: int,
                    healthy_call: Callable[[Client, int], Awaitable[None]],
                    crashes: int = 0, hang_lanes: int = 0) -> None:
    """`concurrency` workers share a budget of `calls`; `hang_lanes` of them only call hangs__hang."""
    budget = calls
    # Crash k happens once the budget has been spent past (k + 0.5) / crashes of the way to 90 %,
    # so there is load before the first crash and after the last one.
    crash_points = [int(calls * 0.9 * (k + 0.5) / crashes) for k in range(crashes)] if crashes else []
    general_seq = 0

    def take() -> bool:
        nonlocal budget
        if budget <= 0:
            return False
        budget -= 1
        phase.made += 1
        return True

    def crash_due() -> bool:
        if crash_points and calls - budget >= crash_points[0]:
            crash_points.pop(0)
            return True
        return False

    async def crash_and_probe(client: Client) -> None:
        answer = await call(client, "crashy__crash", {})
        noticed = time.perf_counter()
        record: dict[str, Any] = {"at_s": round(noticed - phase.started, 2), "crash_call_ms": ms(answer.seconds),
                                  "crash_answer": f"{answer.kind}: {answer.text[:300]}",
                                  "probe_errors": Counter()}
        # Probes are extra calls, outside the budget, so the measurement never stops half-way.
        while time.perf_counter() - noticed < PROBE_BOUND:
            payload = uuid.uuid4().hex
            probe = await call(client, "crashy__echo", {"text": payload})
            phase.made += 1
            if phase.crashy_echo.record(probe, payload):
                record["unavailable_ms"] = ms(time.perf_counter() - noticed)
                break
            record["probe_errors"][f"{probe.kind}: {shape(probe.text)}"] += 1
            await anyio.sleep(0.02)
        else:
            record["unavailable_ms"] = None
        record["probe_errors"] = dict(record["probe_errors"])
        phase.crashes.append(record)

    async def general(worker: int) -> None:
        nonlocal general_seq
        client = clients[worker % len(clients)]
        while take():
            general_seq += 1
            if crash_due():
                await crash_and_probe(client)
            elif crashes and general_seq % CRASHY_EVERY == 0:
                payload = uuid.uuid4().hex
                phase.crashy_echo.record(await call(client, "crashy__echo", {"text": payload}), payload)
            else:
                await healthy_call(client, general_seq)

    async def hang_lane(lane: int) -> None:
        client = clients[lane % len(clients)]
        while take():
            answer = await call(client, "hangs__hang", {})
            if answer.kind == "error" and "timed out after 2s" in answer.text:
                phase.hang_seconds.append(answer.seconds)
            else:
                phase.hang_unexpected[f"{answer.kind} after {answer.seconds:.1f}s: {shape(answer.text)}"] += 1
            # The timed-out call must leave the session usable.
            if take():
                payload = uuid.uuid4().hex
                phase.hangs_echo.record(await call(client, "hangs__echo", {"text": payload}), payload)

    meter = CpuMeter(server_pid)
    phase.started = time.perf_counter()
    with anyio.fail_after(PHASE_BOUND):
        async with anyio.create_task_group() as tg:
            for lane in range(hang_lanes):
                tg.start_soon(hang_lane, lane)
            for worker in range(concurrency - hang_lanes):
                tg.start_soon(general, worker + hang_lanes)
    phase.ended = time.perf_counter()
    phase.cpu = meter.stop(phase.wall)


def gateway_healthy_call(phase: Phase) -> Callable[[Client, int], Awaitable[None]]:
    async def healthy(client: Client, seq: int) -> None:
        server = HEALTHY[seq % len(HEALTHY)]
        payload = uuid.uuid4().hex
        if seq % CALL_BACKEND_EVERY == 1:
            path = "call_backend"
            answer = await call(client, "call_backend",
                                {"server": server, "tool": "echo", "params": {"text": payload}})
        else:
            path = "namespaced"
            answer = await call(client, f"{server}__echo", {"text": payload})
        phase.healthy.record(answer, payload)
        phase.by_path.setdefault(path, Echoes()).record(answer, payload)
    return healthy


def direct_healthy_call(phase: Phase) -> Callable[[Client, int], Awaitable[None]]:
    async def healthy(client: Client, seq: int) -> None:
        payload = uuid.uuid4().hex
        phase.healthy.record(await call(client, "echo", {"text": payload}), payload)
    return healthy


@contextlib.asynccontextmanager
async def connected(url: str, count: int, mode: str) -> Any:
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for _ in range(count):
            client = Client(url, timeout=CLIENT_TIMEOUT, mode=mode)
            await stack.enter_async_context(client)
            clients.append(client)
        yield clients


# -- the run -------------------------------------------------------------------------------------


def phase_summary(phase: Phase) -> dict[str, Any]:
    healthy = phase.healthy.summary()
    return {"calls": phase.made, "wall_s": round(phase.wall, 2),
            "throughput_per_s": round(phase.made / phase.wall, 1),
            "healthy_throughput_per_s": round(phase.healthy.ok / phase.wall, 1),
            "healthy": healthy, "healthy_per_second": phase.per_second(), "cpu_s": phase.cpu,
            **({"by_path": {k: v.summary() for k, v in sorted(phase.by_path.items())}} if phase.by_path else {})}


async def run(args: argparse.Namespace, tmp: Path, mark: str) -> dict[str, Any]:
    report: dict[str, Any] = {
        "settings": {"calls": args.calls, "concurrency": args.concurrency, "clients": args.clients,
                     "baseline_calls": args.baseline_calls, "crashes": args.crashes,
                     "hang_lanes": args.hang_lanes, "mode": args.mode, "cpus": os.cpu_count(),
                     "python": platform.python_version()},
        "failures": [],
    }
    failures: list[str] = report["failures"]

    # 1. direct baseline
    port = free_port()
    direct = Phase("direct")
    with serve([sys.executable, str(BENCH_SERVER), "http", str(port)], port, mark, tmp / "direct.log",
               "bench_server.py http") as server:
        async with connected(f"http://127.0.0.1:{port}/mcp", args.clients, args.mode) as clients:
            await run_phase(direct, clients, server.proc.pid, calls=args.baseline_calls, concurrency=args.concurrency,
                            healthy_call=direct_healthy_call(direct))
    report["direct"] = phase_summary(direct)
    report["direct"]["cleanup"] = wait_gone(mark, port)
    report["direct"]["stderr_tracebacks"] = server.stderr_text().count("Traceback")
    print(f"direct:  {report['direct']['throughput_per_s']} calls/s", flush=True)

    # 2 and 3, one gateway for both
    port = free_port()
    cancel_log = tmp / "hang-cancelled.log"
    config = write_config(tmp / "config.json", mark, cancel_log)
    cmd = [GATEWAY, "--auto-register", str(config), "--transport", "streamable-http", "--port", str(port)]
    clean, load = Phase("gateway_clean"), Phase("gateway_faults")
    boot = time.perf_counter()
    with serve(cmd, port, mark, tmp / "gateway.log", "gateway") as gateway:
        report["gateway_start_s"] = round(time.perf_counter() - boot, 2)
        async with connected(f"http://127.0.0.1:{port}/mcp", args.clients, args.mode) as clients:
            tools = {tool.name for tool in await clients[0].list_tools()}
            wanted = {f"{s}__echo" for s in HEALTHY} | {"crashy__crash", "crashy__echo", "hangs__hang",
                                                        "call_backend"}
            if wanted - tools:
                raise RuntimeError(f"the gateway does not export {sorted(wanted - tools)}; it has "
                                   f"{sorted(tools)}\n{gateway.stderr_text()[-2000:]}")
            started = process_snapshot(gateway.proc.pid)

            await run_phase(clean, clients, gateway.proc.pid, calls=args.baseline_calls,
                            concurrency=args.concurrency, healthy_call=gateway_healthy_call(clean))
            print(f"gateway (clean): {round(clean.made / clean.wall, 1)} calls/s", flush=True)
            # Taken once every client holds its HTTP connections, so growth below is the fault run's.
            before = process_snapshot(gateway.proc.pid)

            await run_phase(load, clients, gateway.proc.pid, calls=args.calls, concurrency=args.concurrency,
                            healthy_call=gateway_healthy_call(load), crashes=args.crashes,
                            hang_lanes=args.hang_lanes)
            print(f"gateway (faults): {round(load.made / load.wall, 1)} calls/s", flush=True)

            # Let the last cancelled hang calls and restarts settle before counting processes.
            await anyio.sleep(1.0)
            after = process_snapshot(gateway.proc.pid)
            servers = await call(clients[0], "list_servers", {})
        stderr = gateway.stderr_text()

    report["gateway_clean"] = phase_summary(clean)
    faults = phase_summary(load)
    unavailable = [c["unavailable_ms"] for c in load.crashes if c.get("unavailable_ms") is not None]
    faults["crashy"] = {
        "crashes": len(load.crashes),
        "unavailable_ms": {"mean": round(statistics.mean(unavailable), 1) if unavailable else None,
                           "max": max(unavailable) if unavailable else None},
        "each_crash": load.crashes,
        "echo": load.crashy_echo.summary(),
    }
    cancelled = cancel_log.read_text().count("hang cancelled") if cancel_log.exists() else 0
    faults["hangs"] = {"timed_out_as_expected": len(load.hang_seconds),
                       "cancelled_in_backend": cancelled,
                       "echo_after_timeout": load.hangs_echo.summary(),
                       "answer_s": {"min": round(min(load.hang_seconds), 3) if load.hang_seconds else None,
                                    "p50": round(percentile(load.hang_seconds, 0.5), 3) if load.hang_seconds else None,
                                    "max": round(max(load.hang_seconds), 3) if load.hang_seconds else None},
                       "unexpected": dict(load.hang_unexpected)}
    report["gateway_faults"] = faults
    report["ratios"] = {
        "clean_gateway_over_direct": round(report["gateway_clean"]["throughput_per_s"]
                                           / report["direct"]["throughput_per_s"], 3),
        "faulty_gateway_over_direct": round(faults["throughput_per_s"] / report["direct"]["throughput_per_s"], 3),
        "healthy_p99_faulty_over_clean": (round(faults["healthy"]["p99_ms"] / report["gateway_clean"]["healthy"]["p99_ms"], 3)
                                          if faults["healthy"]["p99_ms"] and report["gateway_clean"]["healthy"]["p99_ms"] else None),
    }
    listed = {}
    if servers.kind == "result":
        with contextlib.suppress(ValueError, TypeError):
            data = json.loads(servers.text)
            entries = data.get("servers", data) if isinstance(data, dict) else data
            listed = {e["name"]: {"status": e.get("status"), "last_error": e.get("last_error")}
                      for e in entries if isinstance(e, dict) and "name" in e}
    report["gateway_process"] = {
        "started": started, "before_load": before, "after_load": after,
        "servers_after_load": listed or f"{servers.kind}: {servers.text[:300]}",
        "stderr_lines": len(stderr.splitlines()),
        "stderr_tracebacks": stderr.count("Traceback"),
        "stderr_tail": stderr.splitlines()[-15:],
        "exit_status": gateway.proc.returncode,
    }
    report["gateway_cleanup"] = wait_gone(mark, port)

    # what makes the run fail
    for name, phase in (("direct", direct), ("gateway_clean", clean), ("gateway_faults", load)):
        if phase.healthy.lost or phase.healthy.crossed:
            failures.append(f"{name}: {phase.healthy.lost} lost and {phase.healthy.crossed} crossed "
                            f"answers from healthy backends: {dict(phase.healthy.errors.most_common(3))}")
    if load.hangs_echo.lost or load.hangs_echo.crossed:
        failures.append(f"hangs: {load.hangs_echo.lost} lost and {load.hangs_echo.crossed} crossed echo answers "
                        f"after timeouts: {dict(load.hangs_echo.errors.most_common(3))}")
    if load.crashy_echo.crossed:
        failures.append(f"crashy: {load.crashy_echo.crossed} crossed answers")
    if load.hang_unexpected:
        failures.append(f"hangs: {sum(load.hang_unexpected.values())} hang calls not answered by their "
                        f"2s timeout: {dict(load.hang_unexpected.most_common(3))}")
    if args.crashes and len(unavailable) < len(load.crashes):
        failures.append(f"crashy did not come back within {PROBE_BOUND:g}s after a crash")
    for name in ("direct", "gateway"):
        cleanup = report["direct"]["cleanup"] if name == "direct" else report["gateway_cleanup"]
        if cleanup["leaked_processes"] or not cleanup["port_closed"]:
            failures.append(f"{name}: left behind {cleanup}")
    if report["gateway_process"]["stderr_tracebacks"]:
        failures.append(f"gateway printed {report['gateway_process']['stderr_tracebacks']} tracebacks")
    return report


def markdown(r: dict[str, Any]) -> str:
    d, c, f = r["direct"], r["gateway_clean"], r["gateway_faults"]
    s = r["settings"]
    lines = [
        f"Load over streamable HTTP: {s['concurrency']} calls in flight over {s['clients']} clients, "
        f"protocol mode `{s['mode']}`, {s['cpus']} CPUs, Python {s['python']}.",
        "",
        "| phase | calls | wall s | calls/s | healthy p50 ms | p90 ms | p99 ms | max ms | ok | lost | crossed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in (("direct (1 backend, HTTP)", d), ("gateway, clean", c), ("gateway, crash + hang", f)):
        h = p["healthy"]
        lines.append(f"| {name} | {p['calls']} | {p['wall_s']} | {p['throughput_per_s']} | {h['p50_ms']} | "
                     f"{h['p90_ms']} | {h['p99_ms']} | {h['max_ms']} | {h['ok']} | {h['lost']} | {h['crossed']} |")
    ratios = r["ratios"]
    crashy, hangs = f["crashy"], f["hangs"]
    lines += [
        "",
        f"Throughput gateway/direct: clean {ratios['clean_gateway_over_direct']}×, "
        f"with faults {ratios['faulty_gateway_over_direct']}×; healthy p99 with faults / clean: "
        f"{ratios['healthy_p99_faulty_over_clean']}×.",
        f"Healthy answers per second during the fault run: min {f['healthy_per_second']['min']}, "
        f"median {f['healthy_per_second']['median']}, max {f['healthy_per_second']['max']}.",
        "",
        "| expected errors | count | detail |",
        "|---|---|---|",
        f"| crashy crashes | {crashy['crashes']} | unavailable mean {crashy['unavailable_ms']['mean']} ms, "
        f"max {crashy['unavailable_ms']['max']} ms |",
        f"| crashy__echo | {crashy['echo']['calls']} | ok {crashy['echo']['ok']}, errors {crashy['echo']['lost']}, "
        f"crossed {crashy['echo']['crossed']} |",
        f"| hangs__hang timeouts | {hangs['timed_out_as_expected']} | answered after {hangs['answer_s']['min']}–"
        f"{hangs['answer_s']['max']} s; cancelled in the backend {hangs['cancelled_in_backend']}; "
        f"unexpected {sum(hangs['unexpected'].values())} |",
        f"| hangs__echo after a timeout | {hangs['echo_after_timeout']['calls']} | ok "
        f"{hangs['echo_after_timeout']['ok']}, lost {hangs['echo_after_timeout']['lost']} |",
        "",
        "| phase | CPU s: driver | server | its children | others | machine busy |",
        "|---|---|---|---|---|---|",
        *(f"| {name} | {p['cpu_s']['driver']} | {p['cpu_s']['server']} | {p['cpu_s']['children']} | "
          f"{p['cpu_s']['others']} | {p['cpu_s']['machine_busy_pct']} % |"
          for name, p in (("direct", d), ("gateway, clean", c), ("gateway, crash + hang", f))),
        "",
        f"Gateway before/after load: {r['gateway_process']['before_load']} → {r['gateway_process']['after_load']}; "
        f"stderr lines {r['gateway_process']['stderr_lines']}, tracebacks {r['gateway_process']['stderr_tracebacks']}.",
        f"Cleanup: direct {r['direct']['cleanup']}, gateway {r['gateway_cleanup']}.",
        "",
        "Failures: " + ("none" if not r["failures"] else "; ".join(r["failures"])),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000, help="calls in the fault run")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight")
    parser.add_argument("--clients", type=int, default=8, help="long-lived client connections")
    parser.add_argument("--baseline-calls", type=int, default=2_000,
                        help="calls in the direct and clean gateway runs")
    parser.add_argument("--crashes", type=int, default=5, help="times crashy is crashed")
    parser.add_argument("--hang-lanes", type=int, default=4, help="in-flight slots calling hangs__hang")
    parser.add_argument("--mode", choices=["auto", "legacy"], default="auto",
                        help="client protocol era (auto = 2026-07-28 against FastMCP 4)")
    args = parser.parse_args()
    if not 0 <= args.hang_lanes < args.concurrency:
        parser.error("--hang-lanes must leave at least one slot for the other calls")
    mark = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="load_http-") as tmp:
        try:
            report = anyio.run(run, args, Path(tmp), mark)
        except (RuntimeError, TimeoutError) as exc:
            print(f"load_http: {exc or 'a phase exceeded its time bound'}", file=sys.stderr)
            # An aborted run still must not leave anything of ours behind.
            left = wait_gone(mark, 0, timeout=10)["leaked_processes"]
            if left:
                print(f"load_http: killed leftover processes {left}", file=sys.stderr)
            return 2
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load_http.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (RESULTS / "load_http.md").write_text(text)
    print(text, end="")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
