"""Prometheus metrics (prometheus-client), in a registry of the gateway's own.

Calls are counted from the same records as the audit trail. Label values are bounded: a server or
tool the gateway does not know is counted as "unknown", so no client can grow the series without end.
Backends' status and restarts are read from the pool when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.backends.backend import State
from gateway.backends.invocation import Invocation
from gateway.backends.pool import BackendPool
from gateway.interceptors.observe import CallRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Backends(Collector):
    def __init__(self, pool: BackendPool) -> None:
        self._pool = pool

    def collect(self) -> Iterable[Metric]:
        status = GaugeMetricFamily("gateway_backend_status", "1 for the state each backend is in",
                                   labels=["server", "status"])
        restarts = CounterMetricFamily("gateway_backend_restarts", "sessions a backend started after its first",
                                       labels=["server"])
        tools = GaugeMetricFamily("gateway_backend_tools", "tools a backend offers", labels=["server"])
        for backend in self._pool.backends():
            state = backend.refresh_state()
            for each in State:
                status.add_metric([backend.name, each.value], 1.0 if each is state else 0.0)
            restarts.add_metric([backend.name], max(0, backend.sessions - 1))
            tools.add_metric([backend.name], len(backend.catalog.tools))
        return [status, restarts, tools]


class Metrics:
    def __init__(self, pool: BackendPool, known_pipeline: Callable[[str], bool]) -> None:
        self._pool = pool
        self._known_pipeline = known_pipeline
        self.registry = CollectorRegistry()
        self._calls = Counter("gateway_calls", "backend requests that ended, by road and outcome",
                              ["server", "tool", "road", "outcome"], registry=self.registry)
        self._latency = Histogram("gateway_call_duration_seconds", "time from the gateway's entry to the answer",
                                  ["server", "road"], buckets=BUCKETS, registry=self.registry)
        self.calls_in_flight = 0
        Gauge("gateway_calls_in_flight", "backend requests under way",
              registry=self.registry).set_function(lambda: self.calls_in_flight)
        self._runs = Counter("gateway_pipeline_runs", "pipeline runs, by how they ended", ["pipeline", "status"],
                             registry=self.registry)
        self._steps = Counter("gateway_pipeline_steps", "pipeline steps, by how they ended", ["pipeline", "status"],
                              registry=self.registry)
        self.registry.register(_Backends(pool))
        self._series: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}

    def _server(self, name: str) -> str:
        return name if name in self._pool else "unknown"

    def started(self, invocation: Invocation) -> None:
        self.calls_in_flight += 1

    def finished(self, record: CallRecord) -> None:
        server = self._server(record.server)
        self.calls_in_flight -= 1
        tool = "-"
        if record.method == "tools/call":
            known = server != "unknown" and record.target in self._pool.get(server).catalog.tools
            tool = record.target if known and record.target else "unknown"
        key = (server, tool, record.road.value, record.outcome)
        series = self._series.get(key)
        if series is None:  # labels() is a few µs a call; the series of a label set never change
            series = self._series[key] = (self._calls.labels(*key), self._latency.labels(server, record.road.value))
        series[0].inc()
        series[1].observe(record.duration)

    def pipeline_finished(self, report: dict[str, Any]) -> None:
        pipeline = str(report.get("pipeline"))
        pipeline = pipeline if self._known_pipeline(pipeline) else "custom"
        self._runs.labels(pipeline, str(report.get("status"))).inc()
        for step in (report.get("steps") or {}).values():
            self._steps.labels(pipeline, str(step.get("status"))).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
