"""Every gateway benchmark in one run, each figure a ratio against a baseline measured in the same run.

    .venv/bin/python benchmarks/suite.py [--rounds 3] [--quick] [--only GROUP,...]

Groups (each starts its own processes and stops them before the next one starts):

- pipeline   benchmarks/pipelines.py's engine measurements, in process
- stdio      sequential echo through the stdio gateway (`bench__echo` and `call_backend`), a plain
             FastMCP proxy, the leanest relay (benchmarks/lean_relay.py) and direct; 1 MB `blob`
             through the gateway and direct
- http       sequential echo and 64-in-flight load: the gateway's streamable-HTTP front (1 and 10
             stdio backends) vs the backend's own streamable HTTP (10 backends called in turn: vs
             10 backends' own HTTP called in turn), with the leanest relay in front of the same stdio
             backend as a floor; 1 MB results to `auto` and `legacy` clients
- fanout     10 backends x `sleep(200)`: concurrent calls and one 10-step pipeline vs one direct call
- isolation  echo to healthy backends while calls to another backend hang, vs while none do
- startup    gateway ready with 10 stdio backends vs 10 direct clients started together
- memory     gateway RSS with 20 stdio backends vs one bare bench_server.py
- observe    the audit trail (with its file) and metrics on, vs the same gateway with both off: sequential
             echo over stdio and HTTP, and 64-in-flight load over HTTP
- peers      reference rows: two one-server bridges (sparfenyuk's mcp-proxy and supergateway, installed by
             benchmarks/peers_setup.sh into benchmarks/.peers/) bridging the same stdio bench_server.py to
             streamable HTTP, beside the gateway's HTTP front, all vs the backend's own HTTP in the same era
             (2025-11-25 clients; the gateway with 2026-07-28 clients too): sequential echo and 64 in flight

The machine is shared, so paths under comparison run interleaved where they can (blocks of calls
taking turns, alternating order between rounds), and each group records how busy the rest of the
machine was. Writes benchmarks/results/report.{md,json}.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# load_http first: it sets FASTMCP_LOG_LEVEL before fastmcp is imported, which keeps the client
# from logging every error result it relays.
import load_http  # noqa: E402
import pipelines as pipeline_bench  # noqa: E402
from latency_stdio import percentile  # noqa: E402
from load_http import (  # noqa: E402
    MARK_VAR, Answer, CpuMeter, Echoes, call, connected, free_port, git_state, http_client, marked_processes,
    pooled_http_client, port_open, process_snapshot, serve, wait_gone)

import anyio  # noqa: E402
import psutil  # noqa: E402
from fastmcp import Client  # noqa: E402
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport  # noqa: E402

ROOT = HERE.parent
RESULTS = HERE / "results"
BENCH_SERVER = str(HERE / "bench_server.py")
PROXY_SCRIPT = str(HERE / "fastmcp_proxy.py")
LEAN_RELAY = str(HERE / "lean_relay.py")
TESTING_SERVER = str(ROOT / "tests" / "backends" / "testing_server.py")
GATEWAY = str(Path(sys.executable).parent / "gateway")
PEERS = HERE / ".peers"  # benchmarks/peers_setup.sh installs the peers group's bridges here
MCP_PROXY = PEERS / "mcp-proxy" / "bin" / "mcp-proxy"
SUPERGATEWAY = PEERS / "node" / "node_modules" / "supergateway" / "dist" / "index.js"

ROLE_VAR = "SUITE_ROLE"  # tells our processes apart when we need one's pid (memory)
CLIENT_TIMEOUT = 30.0
CALL_BOUND = 60.0
READY_BOUND = 120.0  # 20 backends starting at once on a busy 2-core machine take a while
SETTLE_BOUND = 20.0
BLOCK = 50
OVERHEAD_PAIRS = 5
MIB = 1024 * 1024
GROUP_BOUND = {"pipeline": 300, "stdio": 600, "http": 900, "fanout": 300, "isolation": 300,
               "startup": 600, "memory": 600, "observe": 600, "peers": 900}
GROUPS = list(GROUP_BOUND)


@dataclass
class Settings:
    rounds: int
    quick: bool
    latency_calls: int  # per path and round
    http_calls: int
    throughput_calls: int
    throughput_chunk: int  # paths take turns in chunks of this many calls
    concurrency: int
    clients: int
    fanout_reps: int
    payload_reps: int
    isolation_pairs: int
    isolation_block: int
    hang_calls: int
    proxy: bool

    @classmethod
    def make(cls, rounds: int | None, quick: bool, proxy: bool) -> Settings:
        if quick:
            return cls(rounds=rounds or 2, quick=True, latency_calls=200, http_calls=200,
                       throughput_calls=1000, throughput_chunk=500, concurrency=64, clients=8, fanout_reps=3,
                       payload_reps=3, isolation_pairs=2, isolation_block=50, hang_calls=4, proxy=proxy)
        return cls(rounds=rounds or 3, quick=False, latency_calls=1000, http_calls=1000,
                   throughput_calls=5000, throughput_chunk=1000, concurrency=64, clients=8, fanout_reps=5,
                   payload_reps=8, isolation_pairs=5, isolation_block=100, hang_calls=4, proxy=proxy)


# -- results -------------------------------------------------------------------------------------


@dataclass
class Metric:
    bench: str
    what: str
    target: str  # as written in the report, e.g. "≤ 1.6×"
    limit: float | None  # None: shown for reference, judged against nothing
    higher_is_better: bool = False
    unit: str = "×"
    abs_unit: str = "ms"
    labels: tuple[str, str] = ("gateway", "direct")
    values: list[float] = field(default_factory=list)
    measured: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)

    def add(self, value: float, measured: float, baseline: float) -> None:
        self.values.append(value)
        self.measured.append(measured)
        self.baseline.append(baseline)

    def meets(self, value: float) -> bool:
        assert self.limit is not None
        return value >= self.limit if self.higher_is_better else value <= self.limit

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bench": self.bench, "what": self.what, "target": self.target,
                               "unit": self.unit, "rounds": len(self.values)}
        if self.values:
            out.update(median=statistics.median(self.values), min=min(self.values), max=max(self.values),
                       values=self.values, abs_unit=self.abs_unit,
                       absolute={self.labels[0]: statistics.median(self.measured),
                                 self.labels[1]: statistics.median(self.baseline)},
                       absolute_per_round={self.labels[0]: self.measured, self.labels[1]: self.baseline})
        out["verdict"] = self.verdict()
        return out

    def verdict(self) -> str:
        if not self.values:
            return "no data"
        if self.limit is None:
            return "reference"
        if not self.meets(statistics.median(self.values)):
            return "missed"
        over = sum(not self.meets(v) for v in self.values)
        return f"met ({over}/{len(self.values)} rounds outside)" if over else "met"


@dataclass
class GroupRecord:
    duration_s: float = 0.0
    machine: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    tracebacks_in_logs: int = 0
    settled_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # for report.json; the markdown shows notes
    gateway_source: str = ""


def tree_cpu() -> float:
    """CPU seconds used by this process and everything it started, living or reaped."""
    me = psutil.Process()
    times = me.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            t = child.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def machine_cpu() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0) \
        + getattr(t, "steal", 0.0)


class MachineMeter:
    """How much of the machine went to processes that are not ours while a group ran."""

    def __init__(self) -> None:
        self.wall, self.machine, self.ours = time.perf_counter(), machine_cpu(), tree_cpu()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        machine, ours = machine_cpu() - self.machine, tree_cpu() - self.ours
        cpus = os.cpu_count() or 1
        return {"wall_s": round(wall, 1), "machine_busy_pct": round(100 * machine / (wall * cpus), 1),
                "ours_cpu_s": round(ours, 1), "others_cpu_s": round(max(0.0, machine - ours), 1),
                "others_pct_of_machine": round(100 * max(0.0, machine - ours) / (wall * cpus), 1)}


# -- processes -----------------------------------------------------------------------------------


class Run:
    def __init__(self, settings: Settings, tmp: Path, mark: str) -> None:
        self.settings = settings
        self.tmp = tmp
        self.mark = mark
        self.metrics: list[Metric] = []
        self.groups: dict[str, GroupRecord] = {}
        self.payload_http: list[dict[str, Any]] = []
        self.ports: list[int] = []
        self.logs: list[Path] = []
        self.group = ""
        self._count = 0
        self.roles: dict[int, str] = {}
        self.empty_pipelines = tmp / "pipelines"
        self.empty_pipelines.mkdir()

    @property
    def record(self) -> GroupRecord:
        return self.groups[self.group]

    def note(self, text: str) -> None:
        self.record.notes.append(text)

    def metric(self, bench: str, what: str, target: str, limit: float | None, **kw: Any) -> Metric:
        metric = Metric(bench, what, target, limit, **kw)
        self.metrics.append(metric)
        return metric

    def unique(self, role: str) -> str:
        self._count += 1
        return f"{self.group}-{role}-{self._count}"

    def log(self, name: str) -> Path:
        path = self.tmp / f"{name}.log"
        self.logs.append(path)
        return path

    def port(self) -> int:
        port = free_port()
        self.ports.append(port)
        return port

    def backend(self) -> dict[str, Any]:
        return {"command": sys.executable, "args": [BENCH_SERVER], "env": {MARK_VAR: self.mark}}

    def config(self, name: str, servers: dict[str, Any], **gateway: Any) -> Path:
        path = self.tmp / name / "config.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"mcpServers": servers, "gateway": {"call_timeout": 30,
                                                                      "connect_timeout": READY_BOUND, **gateway}}))
        return path

    def gateway_args(self, config: Path) -> list[str]:
        # An empty pipeline directory: otherwise the gateway falls back to ./pipelines of the cwd.
        return ["--auto-register", str(config), "--pipelines", str(self.empty_pipelines)]

    def stdio(self, command: str, args: list[str], role: str) -> Client:
        """A stdio client whose process (and its children) carry the run's mark; stderr to a log."""
        name = self.unique(role)
        transport = StdioTransport(command, args, env={MARK_VAR: self.mark, ROLE_VAR: name}, keep_alive=False,
                                   log_file=self.log(name))
        client = Client(transport, timeout=CLIENT_TIMEOUT, init_timeout=READY_BOUND)
        self.roles[id(client)] = name
        return client

    def gateway_stdio(self, config: Path, role: str = "gateway") -> Client:
        return self.stdio(GATEWAY, self.gateway_args(config), role)

    def serve_http(self, args: list[str], port: int, what: str) -> contextlib.AbstractContextManager[Any]:
        return serve(args, port, self.mark, self.log(self.unique(what.split()[0])), what)

    def gateway_http(self, config: Path, port: int) -> contextlib.AbstractContextManager[Any]:
        args = [GATEWAY, *self.gateway_args(config), "--transport", "streamable-http", "--port", str(port)]
        return self.serve_http(args, port, "gateway http")

    def process_of(self, client: Client) -> psutil.Process:
        role = self.roles[id(client)]
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                if child.environ().get(ROLE_VAR) == role:
                    return child
        raise RuntimeError(f"no process found for {role}")


def settle(mark: str) -> float | None:
    """Waits until every process of ours is gone; how long that took, or None if some are left."""
    started = time.monotonic()
    while marked_processes(mark):
        if time.monotonic() - started > SETTLE_BOUND:
            return None
        time.sleep(0.1)
    return round(time.monotonic() - started, 2)


async def wait_ready(client: Client, count: int) -> float:
    """Polls list_servers until `count` backends are ready; seconds taken. A failed backend raises."""
    started = time.perf_counter()
    with anyio.fail_after(READY_BOUND):
        while True:
            result = await client.call_tool("list_servers", {}, timeout=CLIENT_TIMEOUT)
            servers = result.structured_content["servers"]
            failed = [f"{s['name']}: {s['last_error']}" for s in servers if s["status"] in ("failed", "down")]
            if failed:
                raise RuntimeError("backends failed to start: " + "; ".join(failed)[:1000])
            if len(servers) >= count and all(s["status"] == "ready" for s in servers):
                return time.perf_counter() - started
            await anyio.sleep(0.05)


@contextlib.asynccontextmanager
async def entered(*clients: Client) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        yield


# -- measuring -----------------------------------------------------------------------------------

Target = Callable[[int], Awaitable[Answer]]


def target(client: Client, make: Callable[[int], tuple[str, dict[str, Any]]]) -> Target:
    async def one(i: int) -> Answer:
        tool, args = make(i)
        return await call(client, tool, args)
    return one


def fixed(tool: str, args: dict[str, Any]) -> Callable[[int], tuple[str, dict[str, Any]]]:
    return lambda _i: (tool, args)


def via_call_backend(server: str, tool: str, params: dict[str, Any]) -> Callable[[int], tuple[str, dict[str, Any]]]:
    return fixed("call_backend", {"server": server, "tool": tool, "params": params})


async def interleave(paths: dict[str, Target], per_path: int, block: int,
                     ok: Callable[[Answer], bool]) -> tuple[dict[str, list[float]], Counter[str]]:
    """`per_path` calls on every path, in blocks taking turns; the starting path rotates per block."""
    samples: dict[str, list[float]] = {name: [] for name in paths}
    failures: Counter[str] = Counter()
    names = list(paths)
    seq = 0
    for b in range(max(1, per_path // block)):
        shift = b % len(names)
        for name in names[shift:] + names[:shift]:
            for _ in range(block):
                answer = await paths[name](seq)
                seq += 1
                if ok(answer):
                    samples[name].append(answer.seconds)
                else:
                    failures[f"{name}: {answer.kind}: {answer.text[:200]}"] += 1
    return samples, failures


def echoed(answer: Answer) -> bool:
    return answer.kind == "result" and answer.text == "hi"


def one_mib(answer: Answer) -> bool:
    return answer.kind == "result" and len(answer.text) == MIB


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p99(values: list[float]) -> float:
    return percentile(values, 0.99)


def note_failures(run: Run, failures: Counter[str]) -> None:
    for text, n in failures.most_common(5):
        run.note(f"{n} failed calls: {text}")


async def load(clients: list[Client], make: Callable[[int, str], tuple[str, dict[str, Any]]], calls: int,
               concurrency: int) -> tuple[float, Echoes]:
    """`calls` echo calls, `concurrency` in flight over `clients`; wall seconds and the outcomes."""
    echoes = Echoes()
    budget = calls

    async def worker(w: int) -> None:
        nonlocal budget
        client = clients[w % len(clients)]
        while budget > 0:
            budget -= 1
            payload = uuid.uuid4().hex
            tool, args = make(budget, payload)
            echoes.record(await call(client, tool, args), payload)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for w in range(concurrency):
            tg.start_soon(worker, w)
    return time.perf_counter() - started, echoes


async def load_turn(run: Run, label: str, clients: list[Client],
                    make: Callable[[int, str], tuple[str, dict[str, Any]]], pid: Any, s: Any, bound: float
                    ) -> tuple[float, int, dict[str, float]]:
    """One turn of load on one path, with the CPU it took (`pid` as CpuMeter takes it): wall seconds,
    calls answered, CPU; lost or crossed calls are noted under `label`."""
    meter = CpuMeter(pid)
    with anyio.fail_after(bound):
        wall, echoes = await load(clients, make, s.throughput_chunk, s.concurrency)
    if echoes.lost or echoes.crossed:
        run.note(f"{label}: {echoes.lost} lost, {echoes.crossed} crossed: {dict(echoes.errors.most_common(3))}")
    return wall, echoes.ok, meter.stop(wall)


def describe(snapshot: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in snapshot.items())


def ms(seconds: float) -> float:
    return seconds * 1000


# -- groups --------------------------------------------------------------------------------------


async def group_pipeline(run: Run) -> None:
    """benchmarks/pipelines.py's three measurements, per round, against the same real pool."""
    s = run.settings
    pb = pipeline_bench
    overhead = run.metric("pipeline", f"engine overhead per step ({pb.CHAIN}-step chain)", "< 1 ms", 1.0,
                          unit=" ms", labels=("chain", f"{pb.CHAIN} direct pool calls"))
    parallel = run.metric("pipeline", "two parallel 300 ms steps", "< 1.3×", 1.3,
                          labels=("pipeline", "one step"))
    foreach = run.metric("pipeline", "foreach 20 × 200 ms, concurrency 10", "< 1.3×", 1.3,
                         labels=("pipeline", "2 × 200 ms"))
    spec = pb.ServerSpec(command=sys.executable, args=[BENCH_SERVER], env={MARK_VAR: run.mark})
    async with pb.bench_pool() as pool:
        await pool.start_all({"b": spec, "c": spec})
        compiled = {name: pb.compile_pipeline(raw, name) for name, raw in
                    (("chain", pb.chain()), ("parallel", pb.PARALLEL), ("foreach", pb.FOREACH))}
        for _ in range(20):
            await pb.echo(pool)

        async def timed_pipeline(name: str) -> float:
            started = time.perf_counter()
            with anyio.fail_after(CALL_BOUND):
                report = await pb.run_pipeline(compiled[name], {}, pool)
            if report["status"] != "ok":
                raise RuntimeError(f"pipeline {name}: {json.dumps(report)[:500]}")
            return time.perf_counter() - started

        for r in range(s.rounds):
            # pipelines.py takes one chain and one direct run; on a shared machine their difference is
            # mostly noise, so a round takes the median of a few pairs.
            directs, chains = [], []
            for _ in range(OVERHEAD_PAIRS):
                started = time.perf_counter()
                for _ in range(pb.CHAIN):
                    await pb.echo(pool)
                directs.append(time.perf_counter() - started)
                chains.append(await timed_pipeline("chain"))
            chain, direct = p50(chains), p50(directs)
            overhead.add(ms(p50([c - d for c, d in zip(chains, directs)])) / pb.CHAIN, ms(chain), ms(direct))
            par = await timed_pipeline("parallel")
            parallel.add(par / 0.300, ms(par), 300.0)
            each = await timed_pipeline("foreach")
            foreach.add(each / 0.400, ms(each), 400.0)
            print(f"  round {r + 1}: overhead {overhead.values[-1]:.3f} ms/step, parallel "
                  f"{parallel.values[-1]:.2f}×, foreach {foreach.values[-1]:.2f}×", flush=True)


async def group_stdio(run: Run) -> None:
    s = run.settings
    config = run.config("stdio", {"bench": run.backend()})
    direct = run.stdio(sys.executable, [BENCH_SERVER], "direct")
    gateway = run.gateway_stdio(config)
    lean = run.stdio(sys.executable, [LEAN_RELAY, "stdio", "--", sys.executable, BENCH_SERVER], "lean-relay")
    clients = [direct, gateway, lean]
    proxy = run.stdio(sys.executable, [PROXY_SCRIPT], "fastmcp-proxy") if s.proxy else None
    if proxy:
        clients.append(proxy)

    hi = {"text": "hi"}
    echo: dict[str, Target] = {"direct": target(direct, fixed("echo", hi)),
                               "bench__echo": target(gateway, fixed("bench__echo", hi)),
                               "call_backend": target(gateway, via_call_backend("bench", "echo", hi)),
                               "lean_relay": target(lean, fixed("echo", hi))}
    mib = {"kb": 1024}
    blob: dict[str, Target] = {"direct": target(direct, fixed("blob", mib)),
                               "bench__blob": target(gateway, fixed("bench__blob", mib)),
                               "call_backend": target(gateway, via_call_backend("bench", "blob", mib))}
    if proxy:
        echo["fastmcp_proxy"] = target(proxy, fixed("echo", hi))
        blob["fastmcp_proxy"] = target(proxy, fixed("blob", mib))

    n = s.latency_calls
    lat: dict[tuple[str, str], Metric] = {}
    references = {"fastmcp_proxy": ("FastMCP proxy (reference)", "proxy"),
                  "lean_relay": ("the leanest relay, benchmarks/lean_relay.py (reference)", "lean relay")}
    for path in ("bench__echo", "call_backend", "fastmcp_proxy", "lean_relay"):
        if path not in echo:
            continue
        label, kind = references.get(path, (path, "gateway"))
        reference = path in references
        lat[path, "p50"] = run.metric("latency, stdio", f"{label}: p50 of {n} sequential echo",
                                      "—" if reference else "≤ 1.25×", None if reference else 1.25,
                                      labels=(kind, "direct"))
        lat[path, "p99"] = run.metric("latency, stdio", f"{label}: p99", "—" if reference else "≤ 2×",
                                      None if reference else 2.0, labels=(kind, "direct"))
    payload = {path: run.metric("payload", f"blob(1024), 1 MiB, {path}, stdio (median of {s.payload_reps})",
                                "≤ 1.5×" if path != "fastmcp_proxy" else "—",
                                1.5 if path != "fastmcp_proxy" else None,
                                labels=("proxy" if path == "fastmcp_proxy" else "gateway", "direct"))
               for path in blob if path != "direct"}

    async with entered(*clients):
        await wait_ready(gateway, 1)
        for paths, check, warm in ((echo, echoed, 20), (blob, one_mib, 2)):
            _, failures = await interleave(paths, warm, warm, check)
            note_failures(run, failures)
        for r in range(s.rounds):
            samples, failures = await interleave(echo, n, BLOCK, echoed)
            note_failures(run, failures)
            base50, base99 = p50(samples["direct"]), p99(samples["direct"])
            for (path, q), metric in lat.items():
                got, base = (p50(samples[path]), base50) if q == "p50" else (p99(samples[path]), base99)
                metric.add(got / base, ms(got), ms(base))
            big, failures = await interleave(blob, s.payload_reps, 1, one_mib)
            note_failures(run, failures)
            if not big["direct"]:
                raise RuntimeError("no direct 1 MiB call succeeded")
            for path, metric in payload.items():
                if big[path]:
                    metric.add(p50(big[path]) / p50(big["direct"]), ms(p50(big[path])), ms(p50(big["direct"])))
            print(f"  round {r + 1}: " + ", ".join(f"{p} {q} {m.values[-1]:.2f}×" for (p, q), m in lat.items())
                  + "; 1 MiB " + ", ".join(f"{p} {m.values[-1]:.2f}×" for p, m in payload.items() if m.values),
                  flush=True)
        snapshot = run.record.extra["gateway_process_after"] = process_snapshot(run.process_of(gateway).pid)
        run.note(f"gateway process after the latency and 1 MiB calls: {describe(snapshot)}")


async def group_http(run: Run) -> None:
    s = run.settings
    ten = [f"bench{i}" for i in range(10)]
    cfg1 = run.config("http1", {"bench": run.backend()})
    cfg10 = run.config("http10", {name: run.backend() for name in ten})
    ports = {"direct": run.port(), "gateway1": run.port(), "gateway10": run.port(), "lean": run.port()}
    urls = {name: f"http://127.0.0.1:{port}/mcp" for name, port in ports.items()}
    # The same 10 backends reached directly, each over its own HTTP: calling ten processes in turn
    # is slower than calling one (each call wakes a process idle for nine calls), with or without
    # a gateway in front, so round robin is compared with round robin.
    ten_ports = [run.port() for _ in ten]
    n = s.http_calls
    lat1 = run.metric("latency, HTTP", f"gateway HTTP front, 1 stdio backend: p50 of {n} sequential echo",
                      "≤ 1.25×", 1.25, labels=("gateway", "backend's own HTTP"))
    lean_lat = run.metric("latency, HTTP", "reference: the leanest relay (benchmarks/lean_relay.py) in front of "
                          "the same stdio backend: p50", "—", None, labels=("lean relay", "backend's own HTTP"))
    lat10 = run.metric("latency, HTTP", "gateway HTTP front, 10 stdio backends called in turn: p50, vs the same "
                       "calls to 10 backends over their own HTTP", "≤ 1.3×", 1.3,
                       labels=("gateway", "10 backends' own HTTP"))
    lat10_vs1 = run.metric("latency, HTTP", "10 backends called in turn, vs 1 backend's own HTTP (reference)", "—",
                           None, labels=("gateway", "backend's own HTTP"))
    direct10_vs1 = run.metric("latency, HTTP", "reference: 10 backends' own HTTP called in turn, vs 1 backend's "
                              "own HTTP (no gateway)", "—", None, labels=("10 backends' own HTTP", "backend's own HTTP"))
    lat1_99 = run.metric("latency, HTTP", "1 backend: p99 (reference)", "—", None,
                         labels=("gateway", "backend's own HTTP"))
    lat10_99 = run.metric("latency, HTTP", "10 backends called in turn: p99 (reference)", "—", None,
                          labels=("gateway", "10 backends' own HTTP"))
    lat10_one = run.metric("latency, HTTP", "10 backends, every call to bench0 (reference): p50", "—", None,
                           labels=("gateway", "backend's own HTTP"))
    tp1 = run.metric("throughput", f"{s.throughput_calls} echo, {s.concurrency} in flight, {s.clients} clients "
                     f"(paths take turns every {s.throughput_chunk}): gateway HTTP, 1 stdio backend", "≥ 0.95×",
                     0.95, higher_is_better=True, abs_unit="calls/s", labels=("gateway", "backend's own HTTP"))
    tp10 = run.metric("throughput", "same, gateway with 10 stdio backends, calls spread (reference)", "—", None,
                      higher_is_better=True, abs_unit="calls/s", labels=("gateway", "backend's own HTTP"))
    lean_tp = run.metric("throughput", "same, the leanest relay in front of the stdio backend (reference)", "—",
                         None, higher_is_better=True, abs_unit="calls/s", labels=("lean relay", "backend's own HTTP"))
    blob_auto = run.metric("payload", f"blob(1024) over HTTP, auto client (median of {s.payload_reps}; reference)",
                           "—", None, labels=("gateway", "backend's own HTTP"))

    with contextlib.ExitStack() as procs:
        direct = procs.enter_context(run.serve_http([sys.executable, BENCH_SERVER, "http", str(ports["direct"])],
                                                    ports["direct"], "bench_server.py http"))
        gw1 = procs.enter_context(run.gateway_http(cfg1, ports["gateway1"]))
        gw10 = procs.enter_context(run.gateway_http(cfg10, ports["gateway10"]))
        lean = procs.enter_context(run.serve_http(
            [sys.executable, LEAN_RELAY, "http", str(ports["lean"]), "--", sys.executable, BENCH_SERVER], ports["lean"],
            "lean_relay.py http"))
        for port in ten_ports:
            procs.enter_context(run.serve_http([sys.executable, BENCH_SERVER, "http", str(port)], port,
                                               "bench_server.py http"))
        pids = {"direct": direct.proc.pid, "gateway1": gw1.proc.pid, "gateway10": gw10.proc.pid,
                "lean": lean.proc.pid}
        # Where the CPU goes per call explains a throughput ratio on a 2-core machine better than the ratio.
        cpu: dict[str, Counter[str]] = {name: Counter() for name in pids}
        served: Counter[str] = Counter()
        async with contextlib.AsyncExitStack() as stack:
            single = {name: await stack.enter_async_context(http_client(url, timeout=CLIENT_TIMEOUT))
                      for name, url in urls.items()}
            await wait_ready(single["gateway1"], 1)
            await wait_ready(single["gateway10"], 10)
            many = {name: await stack.enter_async_context(connected(url, s.clients, "auto"))
                    for name, url in urls.items()}
            direct10 = [await stack.enter_async_context(http_client(f"http://127.0.0.1:{port}/mcp", timeout=CLIENT_TIMEOUT))
                        for port in ten_ports]

            hi = {"text": "hi"}
            echo = {"direct": target(single["direct"], fixed("echo", hi)),
                    "gateway1": target(single["gateway1"], fixed("bench__echo", hi)),
                    "gateway10": target(single["gateway10"], lambda i: (f"bench{i % 10}__echo", hi)),
                    "gateway10_one": target(single["gateway10"], fixed("bench0__echo", hi)),
                    "direct10": lambda i: call(direct10[i % 10], "echo", hi),
                    "lean": target(single["lean"], fixed("echo", hi))}
            blob = {"direct": target(single["direct"], fixed("blob", {"kb": 1024})),
                    "gateway1": target(single["gateway1"], fixed("bench__blob", {"kb": 1024}))}
            makers: dict[str, Callable[[int, str], tuple[str, dict[str, Any]]]] = {
                "direct": lambda i, p: ("echo", {"text": p}),
                "gateway1": lambda i, p: ("bench__echo", {"text": p}),
                "gateway10": lambda i, p: (f"bench{i % 10}__echo", {"text": p}),
                "lean": lambda i, p: ("echo", {"text": p})}

            _, failures = await interleave(echo, 20, 20, echoed)
            note_failures(run, failures)
            for name, clients in many.items():
                await load(clients, makers[name], 4 * s.concurrency, s.concurrency)
            before = run.record.extra["gateway1_process_before_load"] = process_snapshot(gw1.proc.pid)

            order = list(many)
            for r in range(s.rounds):
                samples, failures = await interleave(echo, n, BLOCK, echoed)
                note_failures(run, failures)
                base50, base99 = p50(samples["direct"]), p99(samples["direct"])
                lat1.add(p50(samples["gateway1"]) / base50, ms(p50(samples["gateway1"])), ms(base50))
                base10 = p50(samples["direct10"])
                lat10.add(p50(samples["gateway10"]) / base10, ms(p50(samples["gateway10"])), ms(base10))
                lat10_vs1.add(p50(samples["gateway10"]) / base50, ms(p50(samples["gateway10"])), ms(base50))
                direct10_vs1.add(base10 / base50, ms(base10), ms(base50))
                lat1_99.add(p99(samples["gateway1"]) / base99, ms(p99(samples["gateway1"])), ms(base99))
                lat10_99.add(p99(samples["gateway10"]) / p99(samples["direct10"]), ms(p99(samples["gateway10"])),
                             ms(p99(samples["direct10"])))
                lat10_one.add(p50(samples["gateway10_one"]) / base50, ms(p50(samples["gateway10_one"])), ms(base50))
                lean_lat.add(p50(samples["lean"]) / base50, ms(p50(samples["lean"])), ms(base50))

                walls: Counter[str] = Counter()
                oks: Counter[str] = Counter()
                for chunk in range(max(1, s.throughput_calls // s.throughput_chunk)):
                    shift = (chunk + r) % len(order)
                    for name in order[shift:] + order[:shift]:
                        wall, ok, used = await load_turn(run, f"throughput round {r + 1}, {name}", many[name],
                                                         makers[name], pids[name], s, GROUP_BOUND["http"] / 3)
                        cpu[name].update({k: used[k] for k in ("driver", "server", "children", "others", "machine")})
                        walls[name] += wall
                        oks[name] += ok
                        served[name] += ok
                rate = {name: oks[name] / walls[name] for name in order}
                tp1.add(rate["gateway1"] / rate["direct"], rate["gateway1"], rate["direct"])
                tp10.add(rate["gateway10"] / rate["direct"], rate["gateway10"], rate["direct"])
                lean_tp.add(rate["lean"] / rate["direct"], rate["lean"], rate["direct"])

                big, failures = await interleave(blob, s.payload_reps, 1, one_mib)
                note_failures(run, failures)
                if big["direct"] and big["gateway1"]:
                    blob_auto.add(p50(big["gateway1"]) / p50(big["direct"]), ms(p50(big["gateway1"])),
                                  ms(p50(big["direct"])))
                print(f"  round {r + 1}: p50 1 backend {lat1.values[-1]:.2f}×, 10 backends {lat10.values[-1]:.2f}×; "
                      f"throughput {tp1.values[-1]:.2f}× ({rate['gateway1']:.0f} vs {rate['direct']:.0f} calls/s), "
                      f"10 backends {tp10.values[-1]:.2f}×; lean relay {lean_lat.values[-1]:.2f}× / "
                      f"{lean_tp.values[-1]:.2f}×", flush=True)
            after = run.record.extra["gateway1_process_after_load"] = process_snapshot(gw1.proc.pid)
            run.note(f"gateway (1 backend) process before the latency and load rounds: {describe(before)}; after: "
                     f"{describe(after)}")
            run.record.extra["throughput_cpu_ms_per_call"] = {
                name: {k: round(1000 * v / served[name], 3) for k, v in used.items()} for name, used in cpu.items()}
            for name, used in cpu.items():
                per = {k: 1000 * v / served[name] for k, v in used.items()}
                run.note(f"throughput, {name}: CPU ms per call: driver (this process) {per['driver']:.2f}, server "
                         f"process {per['server']:.2f}, its backends {per['children']:.2f}, other processes "
                         f"{per['others']:.2f}")

            # Last, so that whatever a failing large result does cannot disturb the figures above.
            await payload_over_http(run, "backend's own HTTP", urls["direct"], lambda kb: ("blob", {"kb": kb}),
                                    "echo", None)
            await payload_over_http(run, "gateway, bench__blob", urls["gateway1"],
                                    lambda kb: ("bench__blob", {"kb": kb}), "bench__echo", gw1.log)
            await payload_over_http(run, "gateway, call_backend", urls["gateway1"],
                                    lambda kb: ("call_backend", {"server": "bench", "tool": "blob",
                                                                 "params": {"kb": kb}}),
                                    "bench__echo", gw1.log)
            answer = await call(single["gateway1"], "bench__echo", hi)
            run.note(f"after the large-result checks the gateway still answers a fresh echo: "
                     f"{answer.kind} in {ms(answer.seconds):.1f} ms")


async def payload_over_http(run: Run, name: str, url: str, make: Callable[[int], tuple[str, dict[str, Any]]],
                            echo_tool: str, gateway_log: Path | None) -> None:
    """What a 1 MiB result (and a few sizes around a 1 MiB event) does to auto and legacy clients."""
    sizes = {"auto": [1024], "legacy": [256, 511, 512, 1024]}
    for mode, kbs in sizes.items():
        for kb in kbs:
            log_before = gateway_log.stat().st_size if gateway_log and gateway_log.exists() else 0
            entry: dict[str, Any] = {"target": name, "mode": mode, "kb": kb}
            tool, args = make(kb)
            started = time.perf_counter()
            try:
                with anyio.fail_after(CALL_BOUND):
                    async with http_client(url, mode=mode, timeout=CLIENT_TIMEOUT) as client:
                        entry["protocol"] = client.protocol_version
                        started = time.perf_counter()
                        answer = await call(client, tool, args)
                        entry["seconds"] = round(answer.seconds, 3)
                        if answer.kind == "result" and len(answer.text) == kb * 1024:
                            entry["outcome"] = "ok"
                        elif answer.kind == "result":
                            entry["outcome"] = f"wrong size: {len(answer.text)} characters"
                        elif "TimeoutError" in answer.text or "timed out" in answer.text:
                            entry["outcome"] = "timeout"
                        else:
                            entry["outcome"] = "error result" if answer.kind == "error" else "exception"
                        if entry["outcome"] != "ok":
                            entry["detail"] = answer.text[:400]
                        after = await call(client, echo_tool, {"text": "hi"})
                        entry["same_session_echo_after"] = (
                            "ok" if echoed(after) else f"{after.kind}: {after.text[:200]}")
            except TimeoutError:
                entry.update(outcome="timeout", detail=f"no answer within {CALL_BOUND:g}s",
                             seconds=round(time.perf_counter() - started, 3))
            except Exception as exc:
                entry.update(outcome="exception", detail=f"{type(exc).__name__}: {exc}"[:400],
                             seconds=round(time.perf_counter() - started, 3))
            if gateway_log and gateway_log.exists():
                with gateway_log.open("rb") as f:
                    f.seek(log_before)
                    new = f.read().decode(errors="replace").strip().splitlines()
                entry["gateway_stderr_lines"] = len(new)
                if new:
                    entry["gateway_stderr_first"] = new[0][:300]
            run.payload_http.append(entry)
            print(f"  {entry['target']}, {mode} client, {kb} KiB: {entry['outcome']} "
                  f"({entry.get('detail', '')[:120]})", flush=True)


async def group_fanout(run: Run) -> None:
    s = run.settings
    ten = [f"bench{i}" for i in range(10)]
    config = run.config("fanout", {name: run.backend() for name in ten})
    direct = run.stdio(sys.executable, [BENCH_SERVER], "direct")
    gateway = run.gateway_stdio(config)
    concurrent = run.metric("fan-out", "10 backends × sleep(200), 10 concurrent calls through the gateway (stdio)",
                            "≤ 1.10×", 1.10, labels=("gateway", "one direct sleep(200)"))
    piped = run.metric("fan-out", "one route_pipeline, custom, 10 parallel sleep(200) steps", "≤ 1.10×", 1.10,
                       labels=("gateway", "one direct sleep(200)"))
    floor = run.metric("fan-out", "reference: 10 direct clients, one per backend, 10 concurrent sleep(200)", "—",
                       None, labels=("10 direct", "one direct sleep(200)"))
    spread = [run.stdio(sys.executable, [BENCH_SERVER], "direct") for _ in ten]
    pipeline = {"name": "fanout", "description": "ten parallel sleeps",
                "steps": {f"s{i}": {"server": name, "tool": "sleep", "args": {"ms": 200}}
                          for i, name in enumerate(ten)}}
    engine_ms: list[float] = []

    async def one_direct() -> None:
        answer = await call(direct, "sleep", {"ms": 200})
        if answer.kind != "result":
            raise RuntimeError(f"direct sleep: {answer.kind}: {answer.text[:300]}")

    async def ten_calls() -> None:
        answers: list[Answer] = []

        async def one(name: str) -> None:
            answers.append(await call(gateway, f"{name}__sleep", {"ms": 200}))

        async with anyio.create_task_group() as tg:
            for name in ten:
                tg.start_soon(one, name)
        bad = [f"{a.kind}: {a.text[:200]}" for a in answers if a.kind != "result"]
        if bad:
            raise RuntimeError(f"fan-out calls failed: {bad[:3]}")

    async def one_pipeline() -> None:
        with anyio.fail_after(CALL_BOUND):
            result = await gateway.call_tool("route_pipeline", {"scenario": "custom", "pipeline": pipeline},
                                             raise_on_error=False)
        report = result.structured_content or {}
        if result.is_error or report.get("status") != "ok":
            text = getattr(result.content[0], "text", "") if result.content else ""
            raise RuntimeError(f"route_pipeline: {json.dumps(report)[:300] if report else text[:300]}")
        engine_ms.append(report.get("duration_ms", float("nan")))

    async def ten_direct() -> None:
        answers: list[Answer] = []

        async def one(client: Client) -> None:
            answers.append(await call(client, "sleep", {"ms": 200}))

        async with anyio.create_task_group() as tg:
            for client in spread:
                tg.start_soon(one, client)
        bad = [f"{a.kind}: {a.text[:200]}" for a in answers if a.kind != "result"]
        if bad:
            raise RuntimeError(f"direct fan-out calls failed: {bad[:3]}")

    kinds: dict[str, Callable[[], Awaitable[None]]] = {"direct": one_direct, "concurrent": ten_calls,
                                                       "pipeline": one_pipeline, "ten_direct": ten_direct}

    async with entered(direct, gateway, *spread):
        await wait_ready(gateway, 10)
        for fn in kinds.values():
            await fn()
        engine_ms.clear()
        for r in range(s.rounds):
            times: dict[str, list[float]] = {k: [] for k in kinds}
            names = list(kinds)
            for rep in range(s.fanout_reps):
                shift = (rep + r) % len(names)
                for kind in names[shift:] + names[:shift]:
                    started = time.perf_counter()
                    await kinds[kind]()
                    times[kind].append(time.perf_counter() - started)
            base = p50(times["direct"])
            concurrent.add(p50(times["concurrent"]) / base, ms(p50(times["concurrent"])), ms(base))
            piped.add(p50(times["pipeline"]) / base, ms(p50(times["pipeline"])), ms(base))
            floor.add(p50(times["ten_direct"]) / base, ms(p50(times["ten_direct"])), ms(base))
            print(f"  round {r + 1}: concurrent {concurrent.values[-1]:.2f}×, pipeline {piped.values[-1]:.2f}×, "
                  f"10 direct clients {floor.values[-1]:.2f}× (direct {ms(base):.0f} ms)", flush=True)
    run.record.extra["pipeline_duration_ms_reported_by_engine"] = {
        "median": statistics.median(engine_ms), "min": min(engine_ms), "max": max(engine_ms)}
    run.note(f"the 10-step pipeline's own duration_ms: median {statistics.median(engine_ms):.0f} ms "
             f"(min {min(engine_ms):.0f}, max {max(engine_ms):.0f})")


async def group_isolation(run: Run) -> None:
    s = run.settings
    cancel_log = run.tmp / "hang-cancelled.log"
    servers = {"bench0": run.backend(), "bench1": run.backend(),
               "hangs": {"command": sys.executable, "args": [TESTING_SERVER], "timeout": 30,
                         "env": {MARK_VAR: run.mark, "TEST_BACKEND_CANCEL_LOG": str(cancel_log)}}}
    gateway = run.gateway_stdio(run.config("isolation", servers))
    metric = run.metric("isolation", f"p50 of echo to 2 healthy backends with {s.hang_calls} `hangs__hang` calls in "
                        "flight (one client session, stdio)", "≤ 1.1×", 1.1,
                        labels=("with hangs", "without"))
    echo = {"echo": target(gateway, lambda i: (f"bench{i % 2}__echo", {"text": "hi"}))}
    started_hangs = 0
    early: Counter[str] = Counter()

    @contextlib.asynccontextmanager
    async def hanging() -> AsyncIterator[None]:
        nonlocal started_hangs

        async def hang() -> None:
            result = await gateway.call_tool("hangs__hang", {}, timeout=CALL_BOUND, raise_on_error=False)
            text = getattr(result.content[0], "text", "") if result.content else ""
            early[f"is_error={result.is_error}: {text[:200]}"] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(s.hang_calls):
                tg.start_soon(hang)
                started_hangs += 1
            await anyio.sleep(0.3)  # so that the calls have reached the backend
            yield
            tg.cancel_scope.cancel()

    async with entered(gateway):
        await wait_ready(gateway, 3)
        _, failures = await interleave(echo, 40, 40, echoed)
        note_failures(run, failures)
        for r in range(s.rounds):
            quiet: list[float] = []
            busy: list[float] = []
            for pair in range(s.isolation_pairs):
                for with_hangs in ((False, True) if (pair + r) % 2 == 0 else (True, False)):
                    if with_hangs:
                        async with hanging():
                            samples, failures = await interleave(echo, s.isolation_block, s.isolation_block, echoed)
                        busy += samples["echo"]
                    else:
                        samples, failures = await interleave(echo, s.isolation_block, s.isolation_block, echoed)
                        quiet += samples["echo"]
                    note_failures(run, failures)
            metric.add(p50(busy) / p50(quiet), ms(p50(busy)), ms(p50(quiet)))
            print(f"  round {r + 1}: {metric.values[-1]:.2f}× ({ms(p50(busy)):.2f} vs {ms(p50(quiet)):.2f} ms)",
                  flush=True)
        after = await call(gateway, "hangs__echo", {"text": "hi"})
        run.note(f"hangs__echo on the same session after all hang calls were cancelled: {after.kind} "
                 f"{after.text[:120]!r} in {ms(after.seconds):.1f} ms")
        await anyio.sleep(1.0)  # cancellations travel client → gateway → backend
        cancelled = cancel_log.read_text().count("hang cancelled") if cancel_log.exists() else 0
        run.note(f"{started_hangs} hang calls started and cancelled by the client; the backend saw {cancelled} "
                 f"of them cancelled")
        if early:
            run.note(f"hang calls that ended before being cancelled: {dict(early)}")
        run.record.extra["hang_calls"] = {"started": started_hangs, "cancelled_in_backend": cancelled,
                                          "ended_early": dict(early)}


async def group_startup(run: Run) -> None:
    s = run.settings
    config = run.config("startup", {f"bench{i}": run.backend() for i in range(10)})
    bare = run.config("startup-empty", {})
    metric = run.metric("startup", "gateway ready (list_servers: 10 stdio backends ready) vs 10 direct clients "
                        "started together", "≤ 1.05×", 1.05, abs_unit="s", labels=("gateway", "direct"))
    alone = run.metric("startup", "reference: gateway with no backends, ready, vs the same 10 direct clients", "—",
                       None, abs_unit="s", labels=("gateway alone", "direct"))

    async def gateway_ready(config: Path, count: int) -> float:
        client = run.gateway_stdio(config)
        started = time.perf_counter()
        async with client:
            await wait_ready(client, count)
            elapsed = time.perf_counter() - started
        return elapsed

    async def direct_ready() -> float:
        clients = [run.stdio(sys.executable, [BENCH_SERVER], "direct") for _ in range(10)]
        started = time.perf_counter()

        async def ready(client: Client) -> None:
            await client.__aenter__()
            await client.list_tools()

        try:
            with anyio.fail_after(READY_BOUND):
                async with anyio.create_task_group() as tg:
                    for client in clients:
                        tg.start_soon(ready, client)
            return time.perf_counter() - started
        finally:
            for client in clients:
                with contextlib.suppress(Exception):
                    await client.close()

    starts: dict[str, Callable[[], Awaitable[float]]] = {
        "gateway": lambda: gateway_ready(config, 10), "direct": direct_ready, "alone": lambda: gateway_ready(bare, 0)}
    for r in range(s.rounds):
        got: dict[str, float] = {}
        kinds = list(starts)
        for kind in kinds[r % 3:] + kinds[:r % 3]:
            got[kind] = await starts[kind]()
            if settle(run.mark) is None:
                run.note(f"round {r + 1}: processes still running {SETTLE_BOUND:g}s after the {kind} clients closed")
        metric.add(got["gateway"] / got["direct"], got["gateway"], got["direct"])
        alone.add(got["alone"] / got["direct"], got["alone"], got["direct"])
        print(f"  round {r + 1}: {metric.values[-1]:.2f}× ({got['gateway']:.2f} vs {got['direct']:.2f} s; gateway "
              f"alone {got['alone']:.2f} s)", flush=True)


async def group_observe(run: Run) -> None:
    s = run.settings
    on = run.config("observe-on", {"bench": run.backend()}, audit={"file": "audit.jsonl"})
    off = run.config("observe-off", {"bench": run.backend()}, audit={"enabled": False}, metrics=False)
    labels = ("audit and metrics on", "off")
    n = s.latency_calls
    stdio_p50 = run.metric("observe", f"stdio: p50 of {n} sequential echo", "≤ 1.05×", 1.05, labels=labels)
    http_p50 = run.metric("observe", f"streamable HTTP: p50 of {s.http_calls} sequential echo", "≤ 1.05×", 1.05,
                          labels=labels)
    http_tp = run.metric("observe", f"streamable HTTP: {s.throughput_calls} echo, {s.concurrency} in flight "
                         f"(turns every {s.throughput_chunk // 4})", "≥ 0.97×", 0.97, higher_is_better=True,
                         abs_unit="calls/s", labels=labels)
    http_cpu = run.metric("observe", "streamable HTTP under that load: the gateway process's CPU per call",
                          "≤ 1.03×", 1.03, abs_unit="ms", labels=labels)
    hi = {"text": "hi"}
    ports = {"on": run.port(), "off": run.port()}
    stdio = {"on": run.gateway_stdio(on, "gateway-on"), "off": run.gateway_stdio(off, "gateway-off")}
    with contextlib.ExitStack() as procs:
        pids = {name: procs.enter_context(run.gateway_http(config, ports[name])).proc.pid
                for name, config in (("on", on), ("off", off))}
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(entered(*stdio.values()))
            http = {name: await stack.enter_async_context(http_client(f"http://127.0.0.1:{port}/mcp", timeout=CLIENT_TIMEOUT))
                    for name, port in ports.items()}
            many = {name: await stack.enter_async_context(connected(f"http://127.0.0.1:{port}/mcp", s.clients, "auto"))
                    for name, port in ports.items()}
            for client in (*stdio.values(), *http.values()):
                await wait_ready(client, 1)
            over_stdio = {name: target(client, fixed("bench__echo", hi)) for name, client in stdio.items()}
            over_http = {name: target(client, fixed("bench__echo", hi)) for name, client in http.items()}
            for paths in (over_stdio, over_http):
                note_failures(run, (await interleave(paths, 20, 20, echoed))[1])
            for clients in many.values():
                await load(clients, lambda i, p: ("bench__echo", {"text": p}), 4 * s.concurrency, s.concurrency)
            for r in range(s.rounds):
                for metric, paths, calls in ((stdio_p50, over_stdio, n), (http_p50, over_http, s.http_calls)):
                    samples, failures = await interleave(paths, calls, BLOCK, echoed)
                    note_failures(run, failures)
                    metric.add(p50(samples["on"]) / p50(samples["off"]), ms(p50(samples["on"])), ms(p50(samples["off"])))
                walls: Counter[str] = Counter()
                oks: Counter[str] = Counter()
                cpu: Counter[str] = Counter()
                chunk = s.throughput_chunk // 4  # short turns: both see the same neighbours on a shared machine
                for turn in range(max(1, s.throughput_calls // chunk)):
                    for name in (["on", "off"] if (turn + r) % 2 == 0 else ["off", "on"]):
                        meter = CpuMeter(pids[name])
                        with anyio.fail_after(GROUP_BOUND["observe"] / 3):
                            wall, echoes = await load(many[name], lambda i, p: ("bench__echo", {"text": p}),
                                                      chunk, s.concurrency)
                        cpu[name] += meter.stop(wall)["server"]
                        walls[name] += wall
                        oks[name] += echoes.ok
                rate = {name: oks[name] / walls[name] for name in walls}
                per_call = {name: 1000 * cpu[name] / oks[name] for name in walls}
                http_tp.add(rate["on"] / rate["off"], rate["on"], rate["off"])
                http_cpu.add(per_call["on"] / per_call["off"], per_call["on"], per_call["off"])
                print(f"  round {r + 1}: stdio p50 {stdio_p50.values[-1]:.3f}×, HTTP p50 {http_p50.values[-1]:.3f}×, "
                      f"HTTP throughput {http_tp.values[-1]:.3f}×, gateway CPU per call {http_cpu.values[-1]:.3f}×",
                      flush=True)


ERA = {"auto": "2026-07-28", "legacy": "2025-11-25"}


def peer_versions() -> dict[str, str]:
    """Each bridge that benchmarks/peers_setup.sh installed, with its version (and what it runs on)."""
    found: dict[str, str] = {}
    if MCP_PROXY.exists():
        def dist(name: str) -> str:
            hits = sorted(PEERS.glob(f"mcp-proxy/lib/python*/site-packages/{name}-*.dist-info"))
            return hits[-1].name.removesuffix(".dist-info").split("-", 1)[1] if hits else "?"
        found["mcp-proxy"] = f"{dist('mcp_proxy')} (mcp {dist('mcp')})"
    node = shutil.which("node")
    package = SUPERGATEWAY.parent.parent / "package.json"
    if package.exists() and node:
        node_version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
        found["supergateway"] = f"{json.loads(package.read_text())['version']} (Node.js {node_version})"
    return found


def peer_command(peer: str, port: int) -> list[str]:
    """The bridge serving stdio bench_server.py over streamable HTTP at http://127.0.0.1:PORT/mcp.

    Per-message logging off in both (the gateway logs nothing per call either). supergateway runs
    --stateful: without it, it starts (and initializes) a new backend process for every request;
    stateful, it starts one backend process per client session. mcp-proxy shares one backend.
    """
    backend = [sys.executable, BENCH_SERVER]
    if peer == "mcp-proxy":
        # --pass-environment: the backend inherits the run's mark (mcp-proxy otherwise gives it a bare env).
        return [str(MCP_PROXY), "--host", "127.0.0.1", "--port", str(port), "--pass-environment",
                "--log-level", "WARNING", "--", *backend]
    return [shutil.which("node") or "node", str(SUPERGATEWAY), "--stdio", shlex.join(backend),
            "--outputTransport", "streamableHttp", "--port", str(port), "--stateful", "--logLevel", "none"]


@contextlib.asynccontextmanager
async def closing_quietly(run: Run, what: str, url: str, mode: str) -> AsyncIterator[Client]:
    """An HTTP client whose failure to close (a peer that drops the connection first) is a note, not an error."""
    client = Client(StreamableHttpTransport(url, httpx_client_factory=pooled_http_client), mode=mode,
                    timeout=CLIENT_TIMEOUT, init_timeout=READY_BOUND)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(client)
        try:
            yield client
        finally:
            try:
                await stack.aclose()
            except Exception as exc:
                run.note(f"{what}: closing a client raised {type(exc).__name__}: {str(exc)[:200]}")


async def group_peers(run: Run) -> None:
    """Two one-server bridges over the same stdio backend, beside the gateway's HTTP front, in both eras."""
    s = run.settings
    n = s.http_calls
    versions = peer_versions()
    run.record.extra["peer_versions"] = versions
    missing = [peer for peer in ("mcp-proxy", "supergateway") if peer not in versions]
    if missing:
        run.note(f"**not measured: {', '.join(missing)}**: not installed in {PEERS.relative_to(ROOT)} (run "
                 "`bash benchmarks/peers_setup.sh`); the gateway's rows are measured all the same")
    if versions:
        run.note("peers: " + "; ".join(f"{peer} {version}" for peer, version in versions.items()))
    cfg = run.config("peers", {"bench": run.backend()})
    ports = {"direct": run.port(), "gateway": run.port(), **{peer: run.port() for peer in versions}}
    url = {server: f"http://127.0.0.1:{port}/mcp" for server, port in ports.items()}
    tool = {server: "bench__echo" if server == "gateway" else "echo" for server in ports}
    # path -> (server, client mode). Each row is a path compared with "direct" in the same era.
    paths = {f"{server} {ERA[mode]}": (server, mode) for server, mode in
             (("direct", "auto"), ("gateway", "auto"), ("direct", "legacy"), ("gateway", "legacy"),
              *((peer, "legacy") for peer in versions))}
    label = {"gateway": "this gateway (HTTP front, 1 stdio backend)", "mcp-proxy": "mcp-proxy (reference)",
             "supergateway": "supergateway --stateful (reference)"}
    lat: dict[str, Metric] = {}
    tp: dict[str, Metric] = {}
    for path, (server, mode) in paths.items():
        if server == "direct":
            continue
        base = f"backend's own HTTP, {ERA[mode]}"
        lat[path] = run.metric("peers: latency, HTTP", f"{label[server]}, {ERA[mode]} client: p50 of {n} sequential "
                               "echo", "—", None, labels=(server, base))
        tp[path] = run.metric("peers: throughput", f"{label[server]}, {ERA[mode]}: {s.throughput_calls} echo, "
                              f"{s.concurrency} in flight, {s.clients} clients", "—", None, higher_is_better=True,
                              abs_unit="calls/s", labels=(server, base))

    def base_of(path: str) -> str:
        return f"direct {ERA[paths[path][1]]}"

    with contextlib.ExitStack() as procs:
        started = {"direct": procs.enter_context(run.serve_http([sys.executable, BENCH_SERVER, "http",
                                                                 str(ports["direct"])], ports["direct"],
                                                                "bench_server.py http")),
                   "gateway": procs.enter_context(run.gateway_http(cfg, ports["gateway"]))}
        for peer in versions:
            command = peer_command(peer, ports[peer])
            shown = shlex.join(command).replace(sys.executable, ".venv/bin/python").replace(str(ROOT) + "/", "")
            run.note(f"{peer}: `{shown}`")
            started[peer] = procs.enter_context(run.serve_http(command, ports[peer], peer))
        pids = {server: proc.proc.pid for server, proc in started.items()}
        cpu: dict[str, Counter[str]] = {path: Counter() for path in paths}
        served: Counter[str] = Counter()
        async with contextlib.AsyncExitStack() as stack:
            single: dict[str, Client] = {}
            many: dict[str, list[Client]] = {}
            for path, (server, mode) in paths.items():
                single[path] = await stack.enter_async_context(closing_quietly(run, path, url[server], mode))
                if path.startswith("gateway 2026"):
                    await wait_ready(single[path], 1)
            for path, (server, mode) in paths.items():
                many[path] = [await stack.enter_async_context(closing_quietly(run, path, url[server], mode))
                              for _ in range(s.clients)]
                got = {client.protocol_version for client in (single[path], *many[path])}
                if got != {ERA[mode]}:
                    run.note(f"**{path}: the clients negotiated {sorted(map(str, got))}, not {ERA[mode]}**")
            run.note("protocol versions negotiated: " + ", ".join(
                f"{path}: {single[path].protocol_version}" for path in paths))

            echo = {path: target(single[path], fixed(tool[server], {"text": "hi"}))
                    for path, (server, _mode) in paths.items()}

            def maker(server: str) -> Callable[[int, str], tuple[str, dict[str, Any]]]:
                return lambda _i, payload: (tool[server], {"text": payload})

            makers = {path: maker(server) for path, (server, _mode) in paths.items()}
            _, failures = await interleave(echo, 20, 20, echoed)
            note_failures(run, failures)
            for path, clients in many.items():
                await load(clients, makers[path], 4 * s.concurrency, s.concurrency)

            order = list(paths)
            for r in range(s.rounds):
                samples, failures = await interleave(echo, n, BLOCK, echoed)
                note_failures(run, failures)
                for path, metric in lat.items():
                    got, base = samples[path], samples[base_of(path)]
                    if got and base:
                        metric.add(p50(got) / p50(base), ms(p50(got)), ms(p50(base)))

                walls: Counter[str] = Counter()
                oks: Counter[str] = Counter()
                for chunk in range(max(1, s.throughput_calls // s.throughput_chunk)):
                    shift = (chunk + r) % len(order)
                    for path in order[shift:] + order[:shift]:
                        wall, ok, used = await load_turn(run, f"throughput round {r + 1}, turn {chunk + 1}, {path}",
                                                         many[path], makers[path], pids[paths[path][0]], s,
                                                         GROUP_BOUND["peers"] / 3)
                        cpu[path].update({k: used[k] for k in ("driver", "server", "children", "others")})
                        walls[path] += wall
                        oks[path] += ok
                        served[path] += ok
                rate = {path: oks[path] / walls[path] for path in order}
                for path, metric in tp.items():
                    if rate[base_of(path)]:
                        metric.add(rate[path] / rate[base_of(path)], rate[path], rate[base_of(path)])
                print(f"  round {r + 1}: " + "; ".join(
                    f"{path} p50 {lat[path].values[-1] if lat[path].values else float('nan'):.2f}×, "
                    f"throughput {tp[path].values[-1] if tp[path].values else float('nan'):.2f}× "
                    f"({rate[path]:.0f} vs {rate[base_of(path)]:.0f} calls/s)" for path in lat), flush=True)

            for server, pid in pids.items():
                snapshot = process_snapshot(pid)
                run.note(f"{server} process after the load: {describe(snapshot)}")
            run.record.extra["throughput_cpu_ms_per_call"] = {
                path: {k: round(1000 * v / served[path], 3) for k, v in used.items()}
                for path, used in cpu.items() if served[path]}
            for path, used in cpu.items():
                if served[path]:
                    per = {k: 1000 * v / served[path] for k, v in used.items()}
                    run.note(f"throughput, {path}: CPU ms per call: server process {per['server']:.2f}, its backends "
                             f"{per['children']:.2f}, driver (this process) {per['driver']:.2f}, others "
                             f"{per['others']:.2f}")

        # What a 2026-07-28 (auto) client gets from each peer: a few calls, outside the figures above.
        for peer in versions:
            try:
                with anyio.fail_after(CALL_BOUND):
                    async with closing_quietly(run, f"{peer} auto", url[peer], "auto") as client:
                        negotiated = client.protocol_version
                        answers = [await call(client, "echo", {"text": "hi"}) for _ in range(3)]
                run.note(f"{peer} with an auto client: negotiated {negotiated}; 3 echo calls: "
                         + ", ".join(f"{a.kind} {ms(a.seconds):.1f} ms" for a in answers))
            except Exception as exc:
                run.note(f"{peer} with an auto client: {type(exc).__name__}: {str(exc)[:200]}")


async def group_memory(run: Run) -> None:
    s = run.settings
    twenty = [f"bench{i}" for i in range(20)]
    config = run.config("memory", {name: run.backend() for name in twenty})
    metric = run.metric("memory", "gateway process RSS with 20 stdio backends (backends excluded) vs one bare "
                        "bench_server.py", "≤ 1.10×", 1.10, abs_unit="MB", labels=("gateway", "bare server"))
    alone = run.metric("memory", "reference: gateway with no backends, RSS, vs the same bare server", "—", None,
                       abs_unit="MB", labels=("gateway alone", "bare server"))
    empty = run.config("memory-empty", {})
    uss: dict[str, list[float]] = {"gateway": [], "gateway alone": [], "bare server": []}

    async def measure(client: Client, tools: list[str]) -> tuple[float, float]:
        async with client:
            for tool in tools:
                answer = await call(client, tool, {"text": "hi"})
                if not echoed(answer):
                    raise RuntimeError(f"{tool}: {answer.kind}: {answer.text[:200]}")
            await anyio.sleep(1.0)
            info = run.process_of(client).memory_full_info()
            return info.rss / 1e6, info.uss / 1e6

    async def gateway_rss(config: Path, names: list[str]) -> tuple[float, float]:
        client = run.gateway_stdio(config)
        async with client:
            await wait_ready(client, len(names))
            return await measure(client, [f"{name}__echo" for name in names])

    kinds: dict[str, Callable[[], Awaitable[tuple[float, float]]]] = {
        "gateway": lambda: gateway_rss(config, twenty), "gateway alone": lambda: gateway_rss(empty, []),
        "bare server": lambda: measure(run.stdio(sys.executable, [BENCH_SERVER], "bare"), ["echo"])}
    for r in range(s.rounds):
        got: dict[str, tuple[float, float]] = {}
        order = list(kinds)
        for kind in order[r % 3:] + order[:r % 3]:
            got[kind] = await kinds[kind]()
            uss[kind].append(round(got[kind][1], 1))
            settle(run.mark)
        bare = got["bare server"][0]
        metric.add(got["gateway"][0] / bare, got["gateway"][0], bare)
        alone.add(got["gateway alone"][0] / bare, got["gateway alone"][0], bare)
        print(f"  round {r + 1}: {metric.values[-1]:.2f}× ({got['gateway'][0]:.1f} vs {bare:.1f} MB RSS; gateway "
              f"alone {got['gateway alone'][0]:.1f} MB)", flush=True)
    run.record.extra["uss_mb"] = uss
    run.note("USS (memory private to the process) per round: " + "; ".join(f"{k} {v} MB" for k, v in uss.items()))


GROUP_FUNCS: dict[str, Callable[[Run], Awaitable[None]]] = {
    "pipeline": group_pipeline, "stdio": group_stdio, "http": group_http, "fanout": group_fanout,
    "isolation": group_isolation, "startup": group_startup, "memory": group_memory, "observe": group_observe,
    "peers": group_peers}


# -- report --------------------------------------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    if unit == "calls/s":
        return f"{value:.0f} calls/s"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:.2f} {unit}" if value < 100 else f"{value:.0f} {unit}"


def ratio(value: float, unit: str) -> str:
    return f"{value:.3f}{unit}" if unit.strip() == "ms" else f"{value:.2f}{unit}"


def ratio_near(value: float, m: Metric) -> str:
    """A ratio, with a third decimal when two would round it onto its limit and hide the verdict."""
    if m.limit is not None and m.unit == "×" and round(value, 2) == m.limit:
        return f"{value:.3f}×"
    return ratio(value, m.unit)


def metric_row(m: Metric) -> str:
    if not m.values:
        return f"| {m.bench} | {m.what} | no data | | {m.target} | no data |"
    sm = m.summary()
    value = f"**{ratio_near(sm['median'], m)}** ({ratio_near(sm['min'], m)}–{ratio_near(sm['max'], m)})"
    absolute = " · ".join(f"{label} {fmt(v, m.abs_unit)}" for label, v in sm["absolute"].items())
    verdict = {"met": "✓ met", "missed": "✗ **missed**", "reference": "reference"}.get(sm["verdict"], sm["verdict"])
    if sm["verdict"].startswith("met ("):
        verdict = "✓ " + sm["verdict"]
    return f"| {m.bench} | {m.what} | {value} | {absolute} | {m.target} | {verdict} |"


def markdown(report: dict[str, Any], run: Run) -> str:
    st, env = report["settings"], report["environment"]
    source = env["gateway_source"]
    per_group = {name: g["gateway_source"] for name, g in report["groups"].items()}
    sources = ", ".join(f"{name} {code}" for name, code in per_group.items())
    lines = [
        "# mcp-gateway benchmark suite",
        "",
        f"`benchmarks/suite.py` {'--quick ' if st['quick'] else ''}--rounds {st['rounds']}: "
        f"{report['duration_s']:.0f} s, {env['cpus']} CPUs, Python {env['python']}, fastmcp {env['fastmcp']}, "
        f"mcp {env['mcp']}, gateway at {source['commit']}"
        + (f" with local changes in {len(source['changed'])} files" if source["changed"] else "") + ". "
        f"Load average {env['loadavg_start']} at the start, {env['loadavg_end']} at the end.",
        "",
        *([f"**The gateway code changed during the run** (another session works in this checkout): {sources}.", ""]
          if len(set(per_group.values())) > 1 else []),
        "Each ratio is gateway ÷ baseline from the same round (for throughput, gateway ÷ baseline calls/s); "
        "**median** (min–max) over rounds. Absolute figures are medians over rounds. A target is met when the "
        "median meets it.",
        "",
        "| bench | measure | ratio | absolute | target | result |",
        "|---|---|---|---|---|---|",
        *(metric_row(m) for m in run.metrics),
        "",
    ]
    missed = [m for m in run.metrics if m.verdict() == "missed"]
    lines += ["## Missed targets", ""]
    lines += [f"- {m.bench}, {m.what}: median {ratio_near(statistics.median(m.values), m)} "
              f"(rounds: {', '.join(ratio_near(v, m) for v in m.values)}), target {m.target}" for m in missed] \
        or ["none"]
    lines.append("")

    if run.payload_http:
        lines += ["## 1 MiB results over streamable HTTP", "",
                  "`blob(kb)` returns kb KiB of text; FastMCP sends it twice (as text content and as structured "
                  "content), so one answer is about 2 × kb KiB of JSON.", "",
                  "| server | client mode | protocol | blob KiB | outcome | s | same session afterwards | "
                  "gateway stderr lines | detail |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for e in run.payload_http:
            lines.append(f"| {e['target']} | {e['mode']} | {e.get('protocol', '?')} | {e['kb']} | {e['outcome']} | "
                         f"{e.get('seconds', '')} | {e.get('same_session_echo_after', '')} | "
                         f"{e.get('gateway_stderr_lines', '—')} | {e.get('detail', '').replace('|', '/')[:200]} |")
        lines.append("")

    lines += ["## Per group", ""]
    for name, g in report["groups"].items():
        m = g["machine"]
        head = (f"- **{name}**: {g['duration_s']:.0f} s; machine busy {m.get('machine_busy_pct')} %, of which other "
                f"processes {m.get('others_pct_of_machine')} % ({m.get('others_cpu_s')} CPU-s); "
                f"tracebacks in our processes' stderr: {g['tracebacks_in_logs']}; "
                + (f"all processes gone {g['settled_s']} s after the group" if g["settled_s"] is not None
                   else "**processes still running after the group**"))
        lines.append(head + f"; gateway code {g['gateway_source']}")
        if g["error"]:
            lines.append(f"  - **failed**: {g['error']}")
        lines += [f"  - {text}" for text in g["notes"]]
    lines += ["", "## Cleanup", "",
              f"Processes left at the end: {report['cleanup']['leaked_processes'] or 'none'}; ports still open: "
              f"{report['cleanup']['open_ports'] or 'none'}."]
    return "\n".join(lines) + "\n"


# -- main ----------------------------------------------------------------------------------------


def source_fingerprint() -> str:
    """The gateway code a process started now would run: commit plus a hash of uncommitted changes."""
    def git(*args: str) -> bytes:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=False).stdout
    diff = git("diff", "HEAD", "--", "gateway") + git("ls-files", "--others", "--exclude-standard", "--", "gateway")
    commit = git("rev-parse", "--short", "HEAD").decode().strip()
    return f"{commit}+{hashlib.sha1(diff).hexdigest()[:8]}" if diff else commit


def scan_logs(paths: list[Path]) -> tuple[int, str | None, int, list[str]]:
    """Tracebacks, the first one's tail, stderr lines, and a few distinct lines, in our processes' logs."""
    total, first, lines, distinct = 0, None, 0, []
    for path in paths:
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        n = text.count("Traceback")
        if n and first is None:
            start = text.index("Traceback")
            first = f"{path.name}: " + " / ".join(text[start:].splitlines()[-3:])[:400]
        total += n
        for line in filter(None, (raw.strip() for raw in text.splitlines())):
            lines += 1
            shaped = load_http.shape(line)[:200]
            entry = f"{path.stem.split('-', 1)[1].rsplit('-', 1)[0]}: {shaped}"
            if len(distinct) < 5 and entry not in distinct:
                distinct.append(entry)
    return total, first, lines, distinct


async def run_groups(run: Run, groups: list[str]) -> None:
    for name in groups:
        run.group = name
        run.groups[name] = record = GroupRecord(gateway_source=source_fingerprint())
        logs_before = len(run.logs)
        print(f"[{name}]", flush=True)
        meter = MachineMeter()
        started = time.perf_counter()
        try:
            with anyio.fail_after(GROUP_BOUND[name] * (0.5 if run.settings.quick else 1)):
                await GROUP_FUNCS[name](run)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__} " \
                f"(bound {GROUP_BOUND[name]}s)"
            record.error = message[:1500]
            print(f"  {name} failed: {message[:500]}", flush=True)
        record.duration_s = round(time.perf_counter() - started, 1)
        record.settled_s = settle(run.mark)
        record.machine = meter.stop()
        record.tracebacks_in_logs, first, lines, distinct = scan_logs(run.logs[logs_before:])
        if first:
            record.notes.append(f"first traceback: {first}")
        if lines:
            record.notes.append(f"{lines} stderr lines from our processes, e.g. {distinct}")


def interrupted(_signum: int, _frame: Any) -> None:
    # As SIGINT: asyncio then cancels the run, which unwinds every client, instead of raising
    # KeyboardInterrupt wherever the signal lands.
    os.kill(os.getpid(), signal.SIGINT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds per bench (default 3, 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds: about 3 minutes")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups of {', '.join(GROUPS)}")
    parser.add_argument("--no-proxy", action="store_true", help="leave out the FastMCP proxy reference")
    args = parser.parse_args()
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    settings = Settings.make(args.rounds, args.quick, not args.no_proxy)
    signal.signal(signal.SIGTERM, interrupted)  # a killed suite still stops what it started
    mark = uuid.uuid4().hex
    began = time.perf_counter()
    env = {"cpus": os.cpu_count(), "python": platform.python_version(), "fastmcp": metadata.version("fastmcp"),
           "mcp": metadata.version("mcp"), "gateway_source": git_state(),
           "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="gateway-suite-") as tmp:
        run = Run(settings, Path(tmp), mark)
        try:
            anyio.run(run_groups, run, groups)
        except KeyboardInterrupt:
            left = wait_gone(mark, None, timeout=SETTLE_BOUND)["leaked_processes"]
            # A partial run must not replace the last complete report.
            print(f"suite: interrupted; no report written; processes it had to kill: {left or 'none'}",
                  file=sys.stderr)
            return 130
        cleanup = wait_gone(mark, None, timeout=SETTLE_BOUND)
        open_ports = [p for p in run.ports if port_open(p)]
    env["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report = {"settings": asdict(settings), "environment": env, "duration_s": round(time.perf_counter() - began, 1),
              "metrics": [m.summary() for m in run.metrics], "payload_http": run.payload_http,
              "groups": {name: asdict(g) for name, g in run.groups.items()},
              "cleanup": {"leaked_processes": cleanup["leaked_processes"], "open_ports": open_ports}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "report.json").write_text(json.dumps(report, indent=2, default=str))
    text = markdown(report, run)
    (RESULTS / "report.md").write_text(text)
    print()
    print(text, end="")
    failed = any(g.error for g in run.groups.values()) or cleanup["leaked_processes"] or open_ports
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
