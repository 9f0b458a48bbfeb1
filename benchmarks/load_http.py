"""Concurrent load through the gateway over streamable HTTP, with a crashing and a hanging backend.

    .venv/bin/python benchmarks/load_http.py [--calls 10000] [--concurrency 64]

One run, three phases, each with `--concurrency` calls in flight over `--clients` long-lived clients:

1. direct: `--baseline-calls` echo calls straight to one bench backend served over its own HTTP;
2. gateway, clean: as many echo calls through the gateway, spread over four stdio bench backends
   (namespaced `benchN__echo`, and one in four through `call_backend`);
3. gateway, faults: `--calls` calls in which `crashy` is crashed `--crashes` times (each crash is
   followed by echo probes until it answers again, and `crashy__echo` calls run throughout) while
   `--hang-lanes` of the in-flight slots keep calling `hangs__hang`, which must time out after 2 s,
   each followed by a `hangs__echo` that must work.

Every echo carries a unique payload that must come back unchanged. The exit status is 1 when a
healthy backend's answer is lost (an exception or error result) or crossed (another payload), when
any answer is crossed, when a hang call is not answered by its timeout, and when a process or port
outlives the run. Writes benchmarks/results/load_http.{json,md}.
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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Read by fastmcp at import time; its client would otherwise log every failed call it relays.
os.environ.setdefault("FASTMCP_LOG_LEVEL", "CRITICAL")

import anyio
import httpx2
import psutil
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH_SERVER = HERE / "bench_server.py"
TESTING_SERVER = ROOT / "tests" / "backends" / "testing_server.py"
GATEWAY = str(Path(sys.executable).parent / "gateway")
RESULTS = HERE / "results"

MARK_VAR = "LOAD_HTTP_MARK"  # in the environment of every process this run starts
# Tells crashy's processes from the other backends. The gateway blanks every env value out of the
# messages it returns (as a possible secret), so the value must not be a word such as "crashy".
ROLE_VAR = "LOAD_HTTP_ROLE"
HEALTHY = [f"bench{i}" for i in range(4)]
HANG_TIMEOUT = 2
CALL_TIMEOUT = 10
# Above every gateway-side timeout, so that a timeout is answered by the gateway, not by our client.
CLIENT_TIMEOUT = 30.0
CALL_BOUND = 60.0  # no call of ours may outlive this, whatever the gateway does
PROBE_BOUND = 30.0  # longest we wait for crashy to come back after a crash
CRASHY_EVERY = 40  # one crashy__echo among this many general calls
CALL_BACKEND_EVERY = 4  # one healthy call in this many goes through call_backend
PHASE_BOUND = 600.0
STARTUP_BOUND = 60.0

NUMBER = re.compile(r"\d+(\.\d+)?")
PAYLOAD = re.compile(r"[0-9a-f]{32}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def percentile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def shape(message: str) -> str:
    """Error text with its varying parts blanked, so that equal errors count together."""
    return NUMBER.sub("N", PAYLOAD.sub("<payload>", message))[:240]


# -- processes -----------------------------------------------------------------------------------


def marked_processes(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARK_VAR) == mark and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


# Below the 5 s after which the servers measured here (uvicorn, Node's http) close an idle keep-alive
# connection. httpx2's default is also 5 s, so a client whose connections sat idle for about 5 s (the
# paths take turns) could send on a connection the server was closing: one such ReadError leaves a
# fastmcp 4.2 client failing every later call with ReadError (reproduced against bench_server.py's own
# HTTP alone, every few runs), which would count as lost calls of whichever path it hit.
CLIENT_KEEPALIVE = 2.0


def pooled_http_client(headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None,
                       auth: httpx2.Auth | None = None, **_: Any) -> httpx2.AsyncClient:
    """mcp's default HTTP client (create_mcp_http_client), with idle connections dropped after CLIENT_KEEPALIVE."""
    return httpx2.AsyncClient(headers=headers, auth=auth, timeout=timeout or httpx2.Timeout(30.0, read=300.0),
                              limits=httpx2.Limits(keepalive_expiry=CLIENT_KEEPALIVE))


def http_client(url: str, **options: Any) -> Client:
    """A fastmcp client over streamable HTTP whose idle connections go before the server drops them."""
    return Client(StreamableHttpTransport(url, httpx_client_factory=pooled_http_client), **options)


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    log: Path

    def stderr_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def serve(args: list[str], port: int, mark: str, log: Path, what: str) -> Iterator[Started]:
    """Runs a server until the block ends, then SIGTERMs it (SIGKILL if it does not stop)."""
    # stderr goes to a file: an unread pipe would block a server that logs a lot under load.
    with log.open("wb") as sink:
        proc = subprocess.Popen(args, env={**os.environ, MARK_VAR: mark}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=sink)
    started = Started(proc, log)
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


def wait_gone(mark: str, port: int | None, timeout: float = 10.0) -> dict[str, Any]:
    """After a server stopped: is anything of ours still running, or its port still open?"""
    deadline = time.monotonic() + timeout
    while (left := marked_processes(mark)) or (port and port_open(port)):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    leaked = []
    for proc in left:
        with contextlib.suppress(psutil.Error):
            leaked.append({"pid": proc.pid, "cmdline": " ".join(proc.cmdline())})
            proc.kill()  # ours by the mark; reported as a failure
    return {"leaked_processes": leaked, "port_closed": not (port and port_open(port))}


def write_config(path: Path, mark: str, cancel_log: Path) -> Path:
    env = {MARK_VAR: mark}
    servers: dict[str, Any] = {
        name: {"command": sys.executable, "args": [str(BENCH_SERVER)], "env": env} for name in HEALTHY}
    servers["crashy"] = {"command": sys.executable, "args": [str(TESTING_SERVER)],
                         "env": {**env, ROLE_VAR: f"{mark}-crashy"}}
    servers["hangs"] = {"command": sys.executable, "args": [str(TESTING_SERVER)], "timeout": HANG_TIMEOUT,
                        "env": {**env, "TEST_BACKEND_CANCEL_LOG": str(cancel_log)}}
    settings = {"call_timeout": CALL_TIMEOUT, "connect_timeout": 30}
    path.write_text(json.dumps({"mcpServers": servers, "gateway": settings}, indent=2))
    return path


def git_state() -> dict[str, Any]:
    """Which gateway code was measured: figures from a tree with local changes are not comparable."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()
    return {"commit": git("rev-parse", "--short", "HEAD") or None,
            "changed": git("status", "--porcelain", "--", "gateway").splitlines()}


def _status(proc: psutil.Process) -> str | None:
    try:
        return proc.status()
    except psutil.Error:
        return None


def process_snapshot(pid: int) -> dict[str, Any]:
    try:
        proc = psutil.Process(pid)
        children = proc.children(recursive=True)
        return {"rss_mb": round(proc.memory_info().rss / 2**20, 1), "open_fds": proc.num_fds(),
                "threads": proc.num_threads(), "children": len(children),
                "zombie_children": sum(1 for c in children if _status(c) == psutil.STATUS_ZOMBIE)}
    except psutil.Error as exc:
        return {"error": str(exc)}


class ProcessWatch:
    """Every crashy process the gateway starts, seen by polling its children."""

    def __init__(self, server_pid: int, role: str) -> None:
        self.server_pid = server_pid
        self.role = role
        self.crashy: set[int] = set()
        self._known: dict[int, bool] = {}

    def poll(self) -> None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.server_pid).children():
                if child.pid not in self._known:
                    with contextlib.suppress(psutil.Error):
                        self._known[child.pid] = child.environ().get(ROLE_VAR) == self.role
                if self._known.get(child.pid):
                    self.crashy.add(child.pid)

    async def run(self) -> None:
        while True:
            self.poll()
            await anyio.sleep(0.1)  # a backend lives a second or more, so none is missed


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
        sample["machine"] = system.user + system.nice + system.system + getattr(system, "irq", 0.0) \
            + getattr(system, "softirq", 0.0)
        return sample

    def stop(self, wall: float) -> dict[str, float]:
        end = self._sample()
        used = {key: round(end[key] - self.start[key], 2) for key in end}
        # Other processes on the machine: a busy neighbour makes the figures of this run noisy.
        used["others"] = round(max(0.0, used["machine"] - used["driver"] - used["server"] - used["children"]), 2)
        used["machine_busy_pct"] = round(100 * used["machine"] / (wall * (os.cpu_count() or 1)), 1)
        return used


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
    except Exception as exc:  # timeouts, MCPError, transport errors: all are counted, none escapes
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
            self.errors[f"crossed: got {shape(answer.text)!r}"] += 1
        else:
            self.lost += 1
            self.errors[f"{answer.kind}: {shape(answer.text)}"] += 1
        return False

    @property
    def calls(self) -> int:
        return self.ok + self.lost + self.crossed

    def summary(self) -> dict[str, Any]:
        lat = self.latencies
        return {"calls": self.calls, "ok": self.ok, "lost": self.lost, "crossed": self.crossed,
                "p50_ms": ms(percentile(lat, 0.5)), "p90_ms": ms(percentile(lat, 0.9)),
                "p99_ms": ms(percentile(lat, 0.99)), "max_ms": ms(max(lat) if lat else None),
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
    crashy_processes: int = 0
    hang_seconds: list[float] = field(default_factory=list)
    hang_unexpected: Counter[str] = field(default_factory=Counter)
    hangs_echo: Echoes = field(default_factory=Echoes)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def wall(self) -> float:
        return self.ended - self.started

    def per_second(self) -> dict[str, Any]:
        """Healthy answers in each whole second: shows stalls that percentiles hide."""
        buckets = Counter(int(t - self.started) for t in self.healthy.done_at)
        # Up to the last healthy answer: the tail in which only hang calls finish is no stall.
        seconds = int(max(self.healthy.done_at) - self.started) if self.healthy.done_at else 0
        counts = [buckets.get(i, 0) for i in range(seconds)] or [0]
        return {"min": min(counts), "median": statistics.median(counts), "max": max(counts),
                "slowest_second": counts.index(min(counts))}


async def run_phase(phase: Phase, clients: list[Client], server_pid: int, mark: str, *, calls: int,
                    concurrency: int, healthy_call: Callable[[Client, int], Awaitable[None]],
                    crashes: int = 0, hang_lanes: int = 0) -> None:
    """`concurrency` workers share a budget of `calls`; `hang_lanes` of them call hangs__hang."""
    budget = calls
    # Crash k once (k + 0.5) / crashes of 90 % of the budget is spent: load before the first crash
    # and after the last one.
    crash_points = [int(calls * 0.9 * (k + 0.5) / crashes) for k in range(crashes)]
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
        # Unavailable from the moment the crash is sent (the process dies at once) to the first answer.
        crashed = time.perf_counter()
        answer = await call(client, "crashy__crash", {})
        record: dict[str, Any] = {"at_s": round(crashed - phase.started, 2), "crash_call_ms": ms(answer.seconds),
                                  "crash_answer": f"{answer.kind}: {answer.text[:300]}", "unavailable_ms": None}
        probe_errors: Counter[str] = Counter()
        # Probes are extra calls, outside the budget, so the measurement never stops half-way.
        while time.perf_counter() - crashed < PROBE_BOUND + answer.seconds:
            payload = uuid.uuid4().hex
            probe = await call(client, "crashy__echo", {"text": payload})
            phase.made += 1
            if phase.crashy_echo.record(probe, payload):
                record["unavailable_ms"] = ms(time.perf_counter() - crashed)
                break
            probe_errors[f"{probe.kind}: {shape(probe.text)}"] += 1
            await anyio.sleep(0.02)
        record["probe_errors"] = dict(probe_errors)
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
            if answer.kind == "error" and f"timed out after {HANG_TIMEOUT}s" in answer.text:
                phase.hang_seconds.append(answer.seconds)
            else:
                phase.hang_unexpected[f"{answer.kind} after {answer.seconds:.1f}s: {shape(answer.text)}"] += 1
            # A timed-out call must leave the session usable.
            if take():
                payload = uuid.uuid4().hex
                phase.hangs_echo.record(await call(client, "hangs__echo", {"text": payload}), payload)

    meter = CpuMeter(server_pid)
    watch = ProcessWatch(server_pid, f"{mark}-crashy")
    watch.poll()
    first_crashy = set(watch.crashy)
    phase.started = time.perf_counter()
    with anyio.fail_after(PHASE_BOUND):
        async with anyio.create_task_group() as outer:
            if crashes:
                outer.start_soon(watch.run)
            async with anyio.create_task_group() as tg:
                for lane in range(hang_lanes):
                    tg.start_soon(hang_lane, lane)
                for worker in range(hang_lanes, concurrency):
                    tg.start_soon(general, worker)
            outer.cancel_scope.cancel()
    phase.ended = time.perf_counter()
    phase.cpu = meter.stop(phase.wall)
    watch.poll()
    phase.crashy_processes = len(watch.crashy - first_crashy)


def gateway_healthy_call(phase: Phase) -> Callable[[Client, int], Awaitable[None]]:
    async def healthy(client: Client, seq: int) -> None:
        server = HEALTHY[seq % len(HEALTHY)]
        payload = uuid.uuid4().hex
        if (seq // len(HEALTHY)) % CALL_BACKEND_EVERY == 1:
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
async def connected(url: str, count: int, mode: str) -> AsyncIterator[list[Client]]:
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for _ in range(count):
            clients.append(await stack.enter_async_context(http_client(url, timeout=CLIENT_TIMEOUT, mode=mode)))
        yield clients


# -- the run -------------------------------------------------------------------------------------


def phase_summary(phase: Phase) -> dict[str, Any]:
    summary = {"calls": phase.made, "wall_s": round(phase.wall, 2),
               "throughput_per_s": round(phase.made / phase.wall, 1),
               "healthy_throughput_per_s": round(phase.healthy.ok / phase.wall, 1),
               "healthy": phase.healthy.summary(), "healthy_per_second": phase.per_second(),
               "cpu_s": phase.cpu}
    if phase.by_path:
        summary["by_path"] = {path: echoes.summary() for path, echoes in sorted(phase.by_path.items())}
    return summary


def faults_summary(load: Phase, cancel_log: Path) -> dict[str, Any]:
    summary = phase_summary(load)
    unavailable = [c["unavailable_ms"] for c in load.crashes if c["unavailable_ms"] is not None]
    crash_calls = [c["crash_call_ms"] for c in load.crashes]
    summary["crashy"] = {
        "crashes": len(load.crashes),
        "processes_started": load.crashy_processes,
        "crash_call_ms": {"min": min(crash_calls, default=None), "max": max(crash_calls, default=None)},
        "unavailable_ms": {"mean": round(statistics.mean(unavailable), 1) if unavailable else None,
                           "max": max(unavailable, default=None)},
        "each_crash": load.crashes,
        "echo": load.crashy_echo.summary(),
    }
    hangs = load.hang_seconds
    summary["hangs"] = {
        "timed_out_as_expected": len(hangs),
        "answer_s": {"min": round(min(hangs), 3) if hangs else None,
                     "p50": round(percentile(hangs, 0.5) or 0, 3) if hangs else None,
                     "max": round(max(hangs), 3) if hangs else None},
        "cancelled_in_backend": cancel_log.read_text().count("hang cancelled") if cancel_log.exists() else 0,
        "unexpected": dict(load.hang_unexpected),
        "echo_after_timeout": load.hangs_echo.summary(),
    }
    return summary


def servers_listed(answer: Answer) -> Any:
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        data = json.loads(answer.text)
        entries = data.get("servers", data) if isinstance(data, dict) else data
        return {e["name"]: {"status": e.get("status"), "last_error": e.get("last_error")}
                for e in entries if isinstance(e, dict) and "name" in e}
    return f"{answer.kind}: {answer.text[:300]}"


def judge(report: dict[str, Any], phases: dict[str, Phase], crashes: int) -> None:
    failures, warnings = report["failures"], report["warnings"]
    for name, phase in phases.items():
        if phase.healthy.lost or phase.healthy.crossed:
            failures.append(f"{name}: {phase.healthy.lost} lost and {phase.healthy.crossed} crossed answers "
                            f"from healthy backends: {dict(phase.healthy.errors.most_common(3))}")
    load = phases["gateway_faults"]
    if load.hangs_echo.lost or load.hangs_echo.crossed:
        failures.append(f"hangs: {load.hangs_echo.lost} lost and {load.hangs_echo.crossed} crossed echo "
                        f"answers after timeouts: {dict(load.hangs_echo.errors.most_common(3))}")
    if load.crashy_echo.crossed:
        failures.append(f"crashy: {load.crashy_echo.crossed} crossed answers")
    if load.hang_unexpected:
        failures.append(f"hangs: {sum(load.hang_unexpected.values())} hang calls not answered by their "
                        f"{HANG_TIMEOUT}s timeout: {dict(load.hang_unexpected.most_common(3))}")
    if any(c["unavailable_ms"] is None for c in load.crashes):
        failures.append(f"crashy did not answer again within {PROBE_BOUND:g}s of a crash")
    for name in ("direct", "gateway"):
        cleanup = report[name]["cleanup"] if name == "direct" else report["gateway_process"]["cleanup"]
        if cleanup["leaked_processes"] or not cleanup["port_closed"]:
            failures.append(f"{name}: left behind {cleanup}")
    if report["gateway_process"]["stderr_tracebacks"]:
        failures.append(f"the gateway printed {report['gateway_process']['stderr_tracebacks']} tracebacks")

    # Not failures by this run's rule, but not what the README promises either.
    if crashes and load.crashy_processes > len(load.crashes):
        warnings.append(f"crashy: {load.crashy_processes} processes started for {len(load.crashes)} crashes "
                        f"(one restart per crash expected)")
    refused = sum(n for text, n in load.crashy_echo.errors.items() if "Next reconnect attempt" in text)
    if refused:
        warnings.append(f"crashy: {refused} calls refused with a reconnect backoff, although every crash was "
                        f"a first loss after a successful restart (README: restarted immediately)")
    slow = [c["crash_call_ms"] for c in load.crashes if (c["crash_call_ms"] or 0) > 5000]
    if slow:
        warnings.append(f"crashy: crash calls answered only after {slow} ms")


async def run(args: argparse.Namespace, tmp: Path, mark: str) -> dict[str, Any]:
    report: dict[str, Any] = {
        "settings": {"calls": args.calls, "concurrency": args.concurrency, "clients": args.clients,
                     "baseline_calls": args.baseline_calls, "crashes": args.crashes,
                     "hang_lanes": args.hang_lanes, "mode": args.mode, "cpus": os.cpu_count(),
                     "python": platform.python_version(), "gateway_source": git_state()},
        "failures": [], "warnings": [],
    }

    # 1. the direct baseline
    port = free_port()
    direct = Phase("direct")
    with serve([sys.executable, str(BENCH_SERVER), "http", str(port)], port, mark, tmp / "direct.log",
               "bench_server.py http") as server:
        async with connected(f"http://127.0.0.1:{port}/mcp", args.clients, args.mode) as clients:
            await run_phase(direct, clients, server.proc.pid, mark, calls=args.baseline_calls,
                            concurrency=args.concurrency, healthy_call=direct_healthy_call(direct))
    report["direct"] = phase_summary(direct)
    report["direct"]["cleanup"] = wait_gone(mark, port)
    report["direct"]["stderr_tracebacks"] = server.stderr_text().count("Traceback")
    print(f"direct:           {report['direct']['throughput_per_s']} calls/s", flush=True)

    # 2 and 3 share one gateway
    port = free_port()
    cancel_log = tmp / "hang-cancelled.log"
    config = write_config(tmp / "config.json", mark, cancel_log)
    cmd = [GATEWAY, "--auto-register", str(config), "--transport", "streamable-http", "--port", str(port)]
    clean, load = Phase("gateway_clean"), Phase("gateway_faults")
    booting = time.perf_counter()
    with serve(cmd, port, mark, tmp / "gateway.log", "gateway") as gateway:
        report["gateway_start_s"] = round(time.perf_counter() - booting, 2)
        async with connected(f"http://127.0.0.1:{port}/mcp", args.clients, args.mode) as clients:
            # the gateway serves while its backends start; their tools are listed once they are ready
            with anyio.fail_after(120):
                while any(s["status"] == "connecting" for s in
                          (await clients[0].call_tool("list_servers", {})).structured_content["servers"]):
                    await anyio.sleep(0.05)
            tools = {tool.name for tool in await clients[0].list_tools()}
            wanted = {f"{s}__echo" for s in HEALTHY} | {"crashy__crash", "crashy__echo", "hangs__hang",
                                                        "hangs__echo", "call_backend"}
            if wanted - tools:
                raise RuntimeError(f"the gateway does not export {sorted(wanted - tools)}; it has "
                                   f"{sorted(tools)}\n{gateway.stderr_text()[-2000:]}")
            started = process_snapshot(gateway.proc.pid)
            await run_phase(clean, clients, gateway.proc.pid, mark, calls=args.baseline_calls,
                            concurrency=args.concurrency, healthy_call=gateway_healthy_call(clean))
            print(f"gateway, clean:   {round(clean.made / clean.wall, 1)} calls/s", flush=True)
            # Taken once every client holds its HTTP connections, so growth after it is the fault run's.
            before = process_snapshot(gateway.proc.pid)
            await run_phase(load, clients, gateway.proc.pid, mark, calls=args.calls,
                            concurrency=args.concurrency, healthy_call=gateway_healthy_call(load),
                            crashes=args.crashes, hang_lanes=args.hang_lanes)
            print(f"gateway, faults:  {round(load.made / load.wall, 1)} calls/s", flush=True)
            await anyio.sleep(1.0)  # let cancelled hang calls and restarts settle before counting
            after = process_snapshot(gateway.proc.pid)
            servers = await call(clients[0], "list_servers", {})
    stderr = gateway.stderr_text()

    report["gateway_clean"] = phase_summary(clean)
    report["gateway_faults"] = faults_summary(load, cancel_log)
    direct_rate = report["direct"]["throughput_per_s"]
    clean_p99 = report["gateway_clean"]["healthy"]["p99_ms"]
    faults_p99 = report["gateway_faults"]["healthy"]["p99_ms"]
    report["ratios"] = {
        "clean_gateway_over_direct": round(report["gateway_clean"]["throughput_per_s"] / direct_rate, 3),
        "faulty_gateway_over_direct": round(report["gateway_faults"]["throughput_per_s"] / direct_rate, 3),
        "healthy_p99_faulty_over_clean": round(faults_p99 / clean_p99, 3) if clean_p99 and faults_p99 else None,
    }
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    report["gateway_process"] = {
        "start_s": report.pop("gateway_start_s"),
        "at_start": started, "after_clean": before, "after_faults": after,
        "servers_after_faults": servers_listed(servers),
        "stderr_lines": len(lines),
        # FastMCP logs one such line for every error result the gateway answers over HTTP.
        "stderr_error_calling_tool_lines": sum("Error calling tool" in line for line in lines),
        "stderr_other_lines": [line for line in lines if "Error calling tool" not in line][:20],
        "stderr_tracebacks": stderr.count("Traceback"),
        "exit_status": gateway.proc.returncode,
        "cleanup": wait_gone(mark, port),
    }
    judge(report, {"direct": direct, "gateway_clean": clean, "gateway_faults": load}, args.crashes)
    return report


HEALTHY_COLUMNS = ("p50_ms", "p90_ms", "p99_ms", "max_ms", "ok", "lost", "crossed")


def markdown(r: dict[str, Any]) -> str:
    d, c, f, g = r["direct"], r["gateway_clean"], r["gateway_faults"], r["gateway_process"]
    s, source = r["settings"], r["settings"]["gateway_source"]
    crashy, hangs, ratios = f["crashy"], f["hangs"], r["ratios"]
    phases = (("direct (1 backend, HTTP)", d), ("gateway, clean", c), ("gateway, crash + hang", f))

    def process(snapshot: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in snapshot.items())

    lines = [
        f"`benchmarks/load_http.py`: {s['concurrency']} calls in flight over {s['clients']} clients, protocol "
        f"mode `{s['mode']}`, {s['cpus']} CPUs, Python {s['python']}, gateway at {source['commit']}"
        + (f" with local changes ({len(source['changed'])} files)" if source["changed"] else "") + ".",
        "",
        "| phase | calls | wall s | calls/s | healthy p50 ms | p90 ms | p99 ms | max ms | ok | lost | crossed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(f"| {name} | {p['calls']} | {p['wall_s']} | {p['throughput_per_s']} | "
          + " | ".join(str(p["healthy"][key]) for key in HEALTHY_COLUMNS) + " |" for name, p in phases),
        "",
        f"Throughput gateway/direct: clean {ratios['clean_gateway_over_direct']}×, with faults "
        f"{ratios['faulty_gateway_over_direct']}×. Healthy p99 with faults / clean: "
        f"{ratios['healthy_p99_faulty_over_clean']}×. Healthy answers per second during the fault run: "
        f"min {f['healthy_per_second']['min']}, median {f['healthy_per_second']['median']}, "
        f"max {f['healthy_per_second']['max']}.",
        "",
        "| expected errors | count | detail |",
        "|---|---|---|",
        f"| crashy crashes | {crashy['crashes']} | unavailable (crash sent → next echo answered) mean "
        f"{crashy['unavailable_ms']['mean']} ms, max "
        f"{crashy['unavailable_ms']['max']} ms; crash call answered in {crashy['crash_call_ms']['min']}–"
        f"{crashy['crash_call_ms']['max']} ms; crashy processes started: {crashy['processes_started']} |",
        f"| crashy__echo | {crashy['echo']['calls']} | ok {crashy['echo']['ok']}, "
        f"errors {crashy['echo']['lost']}, crossed {crashy['echo']['crossed']} |",
        *(f"| ↳ {n}× | | {text} |" for text, n in crashy["echo"]["errors"].items()),
        f"| hangs__hang timeouts | {hangs['timed_out_as_expected']} | answered after "
        f"{hangs['answer_s']['min']}–{hangs['answer_s']['max']} s; cancelled in the backend: "
        f"{hangs['cancelled_in_backend']}; unexpected: {sum(hangs['unexpected'].values())} |",
        f"| hangs__echo after a timeout | {hangs['echo_after_timeout']['calls']} | ok "
        f"{hangs['echo_after_timeout']['ok']}, lost {hangs['echo_after_timeout']['lost']} |",
        "",
        "| phase | CPU s: driver | server | its children | other processes | machine busy |",
        "|---|---|---|---|---|---|",
        *(f"| {name} | {p['cpu_s']['driver']} | {p['cpu_s']['server']} | {p['cpu_s']['children']} | "
          f"{p['cpu_s']['others']} | {p['cpu_s']['machine_busy_pct']} % |" for name, p in phases),
        "",
        f"Gateway process after the clean run: {process(g['after_clean'])}; after the fault run: "
        f"{process(g['after_faults'])}. Its stderr: {g['stderr_lines']} lines, of which "
        f"{g['stderr_error_calling_tool_lines']} \"Error calling tool\"; {g['stderr_tracebacks']} tracebacks; "
        f"exit status {g['exit_status']} after SIGTERM.",
        f"Left behind: direct {d['cleanup']}, gateway {g['cleanup']}.",
        "",
        "Failures: " + ("; ".join(r["failures"]) or "none"),
        "",
        "Warnings: " + ("; ".join(r["warnings"]) or "none"),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000, help="calls in the fault run (default 10000)")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight (default 64)")
    parser.add_argument("--clients", type=int, default=8, help="long-lived client connections (default 8)")
    parser.add_argument("--baseline-calls", type=int, default=2_000,
                        help="calls in the direct and in the clean gateway run (default 2000)")
    parser.add_argument("--crashes", type=int, default=5, help="times crashy is crashed (default 5)")
    parser.add_argument("--hang-lanes", type=int, default=4,
                        help="in-flight slots that keep calling hangs__hang (default 4)")
    parser.add_argument("--mode", choices=["auto", "legacy"], default="auto",
                        help="client protocol era; auto means 2026-07-28 against FastMCP 4 (default auto)")
    args = parser.parse_args()
    if not 0 <= args.hang_lanes < args.concurrency:
        parser.error("--hang-lanes must leave at least one in-flight slot for the other calls")
    if min(args.calls, args.baseline_calls, args.clients) < 1 or args.crashes < 0:
        parser.error("--calls, --baseline-calls and --clients must be positive, --crashes not negative")
    mark = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="load_http-") as tmp:
        try:
            report = anyio.run(run, args, Path(tmp), mark)
        except (RuntimeError, TimeoutError) as exc:
            print(f"load_http: {exc or f'a phase took longer than {PHASE_BOUND:g}s'}", file=sys.stderr)
            # An aborted run must not leave anything behind either.
            left = wait_gone(mark, None)["leaked_processes"]
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
