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
        c = svc.counters()  # the same sample as the daemon's summary line (live/counters.py)
        events = CounterMetricFamily("hotline_events_received", "ESL events received, per node",
                                     labels=["node"])
        up = GaugeMetricFamily("hotline_node_up", "1 while the ESL event link to a node is up",
                               labels=["node"])
        refused = CounterMetricFamily("hotline_frames_refused", "Links dropped for a frame "
                                      "over the size bound", labels=["node"])
        stalled = CounterMetricFamily("hotline_frames_stalled", "Links dropped for a frame that "
                                      "did not complete in time", labels=["node"])
        for node in c.nodes:
            events.add_metric([node.name], node.events)
            up.add_metric([node.name], 1 if node.connected else 0)
            refused.add_metric([node.name], node.frames_refused)
            stalled.add_metric([node.name], node.frames_stalled)
        yield from (events, up, refused, stalled)
        yield CounterMetricFamily("hotline_engine_errors", "Engine, store or live-state errors "
                                  "caught on the event path", value=c.engine_errors)
        yield CounterMetricFamily("hotline_journal_errors", "Journal appends that failed",
                                  value=c.journal_errors)
        yield GaugeMetricFamily("hotline_calls_in_flight", "Calls the engines are following now",
                                value=c.calls_in_flight)
        yield GaugeMetricFamily("hotline_writer_buffered_records",
                                "Records waiting for the database writer", value=c.writer_pending)
        yield GaugeMetricFamily("hotline_writer_lag_seconds",
                                "Seconds since the writer last had nothing waiting",
                                value=c.writer_lag_s)
        yield GaugeMetricFamily("hotline_spill_files", "Spill files waiting for the database",
                                value=c.spill_files)
        yield GaugeMetricFamily("hotline_database_up", "0 while database writes fail",
                                value=1 if c.database_ok else 0)
        yield CounterMetricFamily("hotline_journal_written_bytes",
                                  "Bytes appended to the raw-event journal since the start",
                                  value=c.journal_bytes)
        yield GaugeMetricFamily("hotline_journal_disk_bytes",
                                "Bytes the journal directory holds now",
                                value=c.journal_disk_bytes)
        stats = getattr(svc.store, "stats", None)
        if stats is not None:
            yield CounterMetricFamily("hotline_writer_rows_written", "Rows upserted",
                                      value=stats.rows_written)
            yield CounterMetricFamily("hotline_writer_failures", "Failed database write attempts",
                                      value=stats.failures)

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
