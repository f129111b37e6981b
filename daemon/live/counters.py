"""Counters the daemon keeps for its metrics and log summary: events received per node.

Plain integers bumped on the event path (one dict update per socket read, not per
event); ``/metrics`` reads them at scrape time.
"""
from __future__ import annotations


class Counters:
    """Monotonic counts since the daemon started."""

    def __init__(self) -> None:
        self.events_by_node: dict[str, int] = {}

    def events(self, node: str, n: int) -> None:
        self.events_by_node[node] = self.events_by_node.get(node, 0) + n
