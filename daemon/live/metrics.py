"""The daemon's Prometheus metrics (``GET /metrics``), read from the running service at scrape time.

Nothing is counted on the event path for this module: a scrape reads the counters the
daemon keeps anyway (``Service.counters``, the store's stats, the journals' byte counts,
the supervisors' link state) and the live snapshot, and builds the families then. A
daemon without scrapers pays nothing.

Names follow Prometheus conventions (``hotline_`` prefix, ``_total`` counters, base
units: seconds and bytes). docs/WEB.md lists them; docs/grafana-hotline.json charts them.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServiceCollector:
    """A prometheus_client collector over one running daemon (``service`` may be None)."""

    def __init__(self, snapshot: Callable[[], Mapping[str, Any]], service: Any = None,
                 agent_queues: Callable[[], Mapping[str, tuple[str, ...]]] | None = None,
                 redis_up: Callable[[], bool | None] | None = None) -> None:
        self.snapshot = snapshot
        self.service = service
        self.agent_queues = agent_queues or (lambda: {})
        self.redis_up = redis_up

    def collect(self) -> Iterator[Metric]:
        yield from self._service_metrics()
        if self.redis_up is not None:
            state = self.redis_up()
            if state is not None:  # None: this process does not use Redis
                yield GaugeMetricFamily("hotline_redis_up", "1 while Redis is reachable",
                                        value=1 if state else 0)
        yield from self._live_metrics()

    def _service_metrics(self) -> Iterator[Metric]:
        svc = self.service
        if svc is None:
            return
        events = CounterMetricFamily("hotline_events_received", "ESL events received, per node",
                                     labels=["node"])
        counters = getattr(svc, "counters", None)
        by_node = dict(getattr(counters, "events_by_node", {}) or {})
        for sup in getattr(svc, "supervisors", []):
            by_node.setdefault(sup.node.name, 0)
        for node, n in sorted(by_node.items()):
            events.add_metric([node], n)
        yield events
        yield CounterMetricFamily("hotline_engine_errors", "Engine, store or live-state errors "
                                  "caught on the event path", value=getattr(svc, "errors", 0))
        yield CounterMetricFamily("hotline_journal_errors", "Journal appends that failed",
                                  value=getattr(svc, "journal_errors", 0))
        up = GaugeMetricFamily("hotline_node_up", "1 while the ESL event link to a node is up",
                               labels=["node"])
        for sup in getattr(svc, "supervisors", []):
            up.add_metric([sup.node.name], 1 if sup.up.is_set() else 0)
        yield up
        in_flight = GaugeMetricFamily("hotline_calls_in_flight",
                                      "Calls the engine is following now", labels=["node"])
        for node, engine in sorted(getattr(svc, "engines", {}).items()):
            # the engine's call table (private: read-only here, its size is all we need)
            calls = getattr(engine, "calls", None) or getattr(engine, "_calls", None)
            if calls is not None:
                in_flight.add_metric([node], len(calls))
        yield in_flight
        store = getattr(svc, "store", None)
        pending = getattr(store, "pending", None)
        if pending is not None:
            yield GaugeMetricFamily("hotline_writer_buffered_records",
                                    "Records waiting for the database writer",
                                    value=pending() if callable(pending) else pending)
        lag = getattr(store, "lag_s", None)
        if lag is not None:
            yield GaugeMetricFamily("hotline_writer_lag_seconds",
                                    "Age of the oldest record the writer has not written",
                                    value=lag() if callable(lag) else lag)
        stats = getattr(store, "stats", None)
        if stats is not None:
            yield CounterMetricFamily("hotline_writer_rows_written", "Rows upserted",
                                      value=stats.rows_written)
            yield CounterMetricFamily("hotline_writer_failures", "Failed database write attempts",
                                      value=stats.failures)
        healthy = getattr(store, "healthy", None)
        if isinstance(healthy, bool):
            yield GaugeMetricFamily("hotline_database_up", "0 while database writes fail",
                                    value=1 if healthy else 0)
        journal = CounterMetricFamily("hotline_journal_written_bytes",
                                      "Bytes appended to the raw-event journal", labels=["node"])
        for node, j in sorted(getattr(svc, "journals", {}).items()):
            journal.add_metric([node], getattr(j, "bytes", 0))
        yield journal

    def _live_metrics(self) -> Iterator[Metric]:
        snap = self.snapshot()
        waiting = GaugeMetricFamily("hotline_queue_callers_waiting", "Callers waiting now",
                                    labels=["queue"])
        longest = GaugeMetricFamily("hotline_queue_longest_wait_seconds",
                                    "The longest current wait (0: nobody waits)",
                                    labels=["queue"])
        for name, q in sorted(snap.get("queues", {}).items()):
            waiting.add_metric([name], q.get("count", 0))
            longest.add_metric([name], (q.get("longest_wait_ms") or 0) / 1000)
        yield waiting
        yield longest
        agents = GaugeMetricFamily("hotline_queue_agents",
                                   "Agents of a queue (by its tiers) by status and state",
                                   labels=["queue", "status", "state"])
        counts: dict[tuple[str, str, str], int] = {}
        queues_of = self.agent_queues()
        for name, a in snap.get("agents", {}).items():
            for queue in queues_of.get(name, ()):
                key = (queue, a.get("status") or "Unknown", a.get("state") or "Unknown")
                counts[key] = counts.get(key, 0) + 1
        for key, n in sorted(counts.items()):
            agents.add_metric(list(key), n)
        yield agents
        yield GaugeMetricFamily("hotline_metrics_scraped_at_seconds", "When this scrape ran",
                                value=time.time())


def render(collector: ServiceCollector) -> bytes:
    """One scrape in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    return generate_latest(registry)
