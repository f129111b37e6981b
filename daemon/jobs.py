"""The leader's scheduled jobs: roll-ups and partition maintenance, run in one place only.

Each job runs in a greenlet of every daemon but does its work only while that daemon
is the leader (daemon/leader.py), so exactly one daemon rolls up and maintains
partitions at any time; a job that fails is logged and tried again next round.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

logger = logging.getLogger(__name__)


class Jobs:
    def __init__(self, engine: Any, center: Any, is_leader: Callable[[], bool], *,
                 rollup_every_s: float = 60.0, partitions_every_s: float = 3600.0,
                 retention_months: int = 0, ahead_months: int = 3,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine, self.center, self.is_leader = engine, center, is_leader
        self.rollup_every_s, self.partitions_every_s = rollup_every_s, partitions_every_s
        self.retention_months, self.ahead_months = retention_months, ahead_months
        self.clock = clock
        self.runs: dict[str, int] = {"rollup": 0, "partitions": 0}
        self._stop = gevent.event.Event()
        self._greenlets: list[gevent.Greenlet] = []

    def start(self) -> Jobs:
        self._greenlets = [gevent.spawn(self._loop, "rollup", self.rollup_every_s, self.rollup),
                           gevent.spawn(self._loop, "partitions", self.partitions_every_s,
                                        self.partitions)]
        return self

    def stop(self) -> None:
        self._stop.set()
        gevent.joinall(self._greenlets, timeout=10)

    def rollup(self, batch: int = 100) -> int:
        """Roll up every marked bucket, ``batch`` buckets per transaction, yielding in
        between: after the migration marks years of history, SQLite (whose calls block the
        gevent hub) still lets the events through between batches."""
        from daemon.stats import rollup

        ths = rollup.thresholds_by_tenant(self.center) if self.center is not None else {}
        done = 0
        while not self._stop.is_set() and self.is_leader():
            with self.engine.begin() as conn:
                n = rollup.refresh(conn, ths, max_buckets=batch)
            done += n
            if n < batch:
                break
            gevent.sleep(0.01)
        return done

    def partitions(self) -> Any:
        from daemon.storage import partitions

        with self.engine.begin() as conn:
            return partitions.maintain(conn, int(self.clock() * 1000),
                                       ahead_months=self.ahead_months,
                                       retention_months=self.retention_months or None)

    def _loop(self, name: str, every_s: float, job: Callable[[], Any]) -> None:
        while not self._stop.is_set():
            if self.is_leader():
                try:
                    result = job()
                    self.runs[name] += 1
                    logger.info("job %s done result=%s", name, result)
                except Exception as exc:
                    logger.warning("job %s failed: %s", name, exc)
            self._stop.wait(every_s)
