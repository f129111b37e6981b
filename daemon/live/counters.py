"""The daemon's running counters: what the periodic log line and ``/metrics`` both read.

Pull, not push: ``read_counters(service)`` samples what the collaborators already
count (supervisors, engines, store, journals, live state), so the event path pays
nothing for them. Totals only count up from the daemon's start; rates come from two
samples (``rates``), which is how Prometheus treats them too.

``summary_line(previous, current)`` is the one line the daemon logs every
``settings.summary_interval_s`` (60 s by default), so a quiet log never means a dead
daemon::

    summary nodes=fs1:up:12.5/s,fs2:down:0.0/s events=48211 calls_in_flight=14
    engine_errors=0 journal_errors=0 writer_pending=3 writer_lag_s=0.1 spill_files=0
    db=ok journal_bytes=52.3MB journal_disk=11.8MB redis=up frames_refused=0 frames_stalled=0
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeCounters:
    name: str
    connected: bool
    events: int  # event frames received from this node since the daemon started
    connects: int  # connection attempts (1 = never reconnected)
    frames_refused: int  # Content-Length over the bound: the link was dropped
    frames_stalled: int  # a frame that did not complete in time: the link was dropped


@dataclass(frozen=True)
class Counters:
    at: float  # time.monotonic() of the sample
    nodes: tuple[NodeCounters, ...]
    events: int  # events handled by the manager (all nodes)
    engine_errors: int
    journal_errors: int
    calls_in_flight: int  # calls up (not hung up) as the engines see them
    writer_pending: int  # records buffered in memory, waiting for the database
    writer_lag_s: float  # seconds since the writer last had nothing waiting
    spill_files: int
    database_ok: bool
    database_error: str | None
    journal_bytes: int  # bytes journaled since the daemon started
    journal_disk_bytes: int  # bytes the journal directory holds now (all nodes, gzipped too)
    redis_connected: bool | None  # None: no Redis configured


def _journal_disk_bytes(directory: str | None) -> int:
    if not directory:
        return 0
    total = 0
    try:
        for path in Path(directory).iterdir():
            if path.name.endswith((".esl", ".esl.gz")):
                try:
                    total += path.stat().st_size
                except OSError:  # rotated or deleted meanwhile
                    pass
    except OSError:
        return 0
    return total


def read_counters(service: Any) -> Counters:
    """A sample of ``service`` (a ``daemon.service.Service``; read by duck typing)."""
    nodes = tuple(
        NodeCounters(name=sup.node.name, connected=sup.up.is_set(),
                     events=getattr(sup, "events_received", 0), connects=sup.attempts,
                     frames_refused=getattr(sup, "oversized_frames", 0),
                     frames_stalled=getattr(sup, "stalled_frames", 0))
        for sup in service.supervisors)
    in_flight = 0
    for engine in list(service.engines.values()):
        in_flight += getattr(engine, "calls_in_flight", 0)
    store = service.store
    spilled = getattr(store, "spilled_files", None)
    journals = list(service.journals.values())
    redis = getattr(service.live, "connected", None)
    return Counters(
        at=time.monotonic(), nodes=nodes, events=service.events,
        engine_errors=service.errors, journal_errors=service.journal_errors,
        calls_in_flight=in_flight,
        writer_pending=getattr(store, "pending", 0),
        writer_lag_s=getattr(store, "lag_s", 0.0),
        spill_files=len(spilled()) if spilled is not None else 0,
        database_ok=bool(getattr(store, "healthy", True)),
        database_error=getattr(store, "problem", None),
        journal_bytes=sum(getattr(j, "bytes", 0) for j in journals),
        journal_disk_bytes=_journal_disk_bytes(getattr(service.settings, "journal_dir", None)),
        redis_connected=redis if isinstance(redis, bool) else None)


def rates(previous: Counters | None, current: Counters) -> dict[str, float]:
    """Events per second of each node between two samples (since start without one)."""
    before = {n.name: n.events for n in previous.nodes} if previous else {}
    span = current.at - previous.at if previous else 0.0
    out = {}
    for node in current.nodes:
        delta = node.events - before.get(node.name, 0)
        out[node.name] = delta / span if span > 0 else 0.0
    return out


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n}B"  # pragma: no cover


def summary_line(previous: Counters | None, current: Counters) -> str:
    per_node = rates(previous, current)
    nodes = ",".join(f"{n.name}:{'up' if n.connected else 'down'}:{per_node[n.name]:.1f}/s"
                     for n in current.nodes) or "none"
    db = "ok" if current.database_ok else ("refused" if current.database_error else "down")
    redis = {None: "off", True: "up", False: "down"}[current.redis_connected]
    return (f"summary nodes={nodes} events={current.events} "
            f"calls_in_flight={current.calls_in_flight} engine_errors={current.engine_errors} "
            f"journal_errors={current.journal_errors} writer_pending={current.writer_pending} "
            f"writer_lag_s={current.writer_lag_s:.1f} spill_files={current.spill_files} db={db} "
            f"journal_bytes={_size(current.journal_bytes)} "
            f"journal_disk={_size(current.journal_disk_bytes)} redis={redis} "
            f"frames_refused={sum(n.frames_refused for n in current.nodes)} "
            f"frames_stalled={sum(n.frames_stalled for n in current.nodes)}")


def log_summaries(sample: Callable[[], Counters], interval_s: float,
                  sleep: Callable[[float], Any]) -> None:
    """Log ``summary_line`` every ``interval_s`` until killed (the daemon's greenlet)."""
    previous = sample()
    while True:
        sleep(interval_s)
        try:
            current = sample()
            logger.info("%s", summary_line(previous, current))
            previous = current
        except Exception:  # a counter that cannot be read must not end the summaries
            logger.exception("summary failed")
