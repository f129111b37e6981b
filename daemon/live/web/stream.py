"""The wallboard's live stream (Server-Sent Events): one latest view per client, never a backlog.

The daemon's event loop only calls :meth:`LiveHub.notify` (a flag and a dict update:
O(1), never blocks, never touches a socket). A broadcaster greenlet wakes at most every
``min_interval_s`` while something changed (and every ``heartbeat_s`` anyway, so a
page can tell a quiet queue from a dead link), builds the view once per tenant scope,
serialises it once, and hands the same bytes to every client of that scope.

Each client holds one slot: the newest view. A slow browser skips views it did not
take in time (it always gets the latest, never a stale backlog) and one that stops
reading is dropped by the socket timeout; memory is one shared payload per scope,
whatever the number of clients. ``max_clients`` caps the open streams.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Iterator

import gevent
import gevent.event

logger = logging.getLogger(__name__)

MAX_CLIENTS = 500
SENDS_PER_S = 600  # views x clients per second: many wallboards get fewer views each
MAX_DEFER_S = 0.05  # how long a view waits for the daemon's event backlog to clear


class Client:
    def __init__(self, scope: str | None) -> None:
        self.scope = scope
        self.latest: bytes | None = None
        self.ready = gevent.event.Event()
        self.sent = 0


class LiveHub:
    """Fan-out of wallboard views; ``view(scope)`` builds the dict for one tenant scope."""

    def __init__(self, view: Callable[[str | None], dict[str, Any]], *,
                 min_interval_s: float = 0.05, heartbeat_s: float = 5.0,
                 max_clients: int = MAX_CLIENTS,
                 on_message: Callable[[dict[str, Any]], None] | None = None,
                 busy: Callable[[], bool] | None = None) -> None:
        self.view = view
        self.busy = busy
        self.min_interval_s = min_interval_s
        self.heartbeat_s = heartbeat_s
        self.max_clients = max_clients
        self.on_message = on_message
        self.clients: set[Client] = set()
        self._dirty = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self.broadcasts = 0
        self.last_change_ms = 0
        # switch times of the oldest and newest change not yet in a view: the page shows
        # how far behind the switch it is, and the bench measures event -> screen with them
        self._changes: list[int] = []

    # -- the daemon side -----------------------------------------------------------------
    def notify(self, message: dict[str, Any] | None = None) -> None:
        """A live change happened (live-state subscriber; cheap, never raises)."""
        if message is not None and self.on_message is not None:
            try:
                self.on_message(message)
            except Exception:  # a bookkeeping bug must not reach the event loop
                logger.exception("wallboard bookkeeping failed")
        self.last_change_ms = int(time.time() * 1000)
        at = message.get("at_ms") if message is not None else None
        if isinstance(at, int):
            if self._changes:
                self._changes[0] = min(self._changes[0], at)
                self._changes[1] = max(self._changes[1], at)
            else:
                self._changes = [at, at]
        self._dirty.set()

    def start(self) -> "LiveHub":
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)
        return self

    def stop(self) -> None:
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None:
            greenlet.kill(block=False)
        for client in list(self.clients):
            client.latest = None
            client.ready.set()  # wakes its stream, which then ends
        self.clients.clear()

    def _run(self) -> None:
        while True:
            self._dirty.wait(self.heartbeat_s)
            self._dirty.clear()
            if self.clients:
                self._yield_to_events()
                try:
                    self.broadcast()
                except Exception:
                    logger.exception("wallboard broadcast failed")
            # coalesce a burst of changes into one view; with many clients, fewer views each
            gevent.sleep(max(self.min_interval_s, len(self.clients) / SENDS_PER_S))

    def _yield_to_events(self) -> None:
        """Events first: while the daemon has socket reads queued, the view waits (a while)."""
        if self.busy is None:
            return
        deadline = time.monotonic() + MAX_DEFER_S
        while time.monotonic() < deadline:
            try:
                if not self.busy():
                    return
            except Exception:
                return
            gevent.sleep(0.005)

    def broadcast(self) -> None:
        payloads: dict[str | None, bytes] = {}
        changes, self._changes = self._changes, []
        for client in list(self.clients):
            payload = payloads.get(client.scope)
            if payload is None:
                payload = payloads[client.scope] = self.encode(client.scope, changes)
            client.latest = payload
            client.ready.set()
        self.broadcasts += 1

    def encode(self, scope: str | None, changes: list[int] | None = None) -> bytes:
        view = self.view(scope)
        view["changes_ms"] = changes or None  # [oldest, newest] switch time since the last view
        view["built_ms"] = int(time.time() * 1000)
        data = json.dumps(view, separators=(",", ":"), ensure_ascii=False)
        return b"event: board\ndata: " + data.encode("utf-8") + b"\n\n"

    # -- the browser side ----------------------------------------------------------------
    def open(self, scope: str | None) -> Client | None:
        """A new client, or None when the cap is reached (the route answers 503)."""
        if len(self.clients) >= self.max_clients:
            return None
        client = Client(scope)
        client.latest = self.encode(scope)  # the whole view at once, also after a reconnect
        client.ready.set()
        self.clients.add(client)
        return client

    def stream(self, client: Client) -> Iterator[bytes]:
        """The bytes of one SSE response; ends when the hub stops or the client goes."""
        try:
            yield b"retry: 2000\n\n"  # EventSource reconnects 2 s after a daemon restart
            while client in self.clients:
                if not client.ready.wait(self.heartbeat_s * 2):
                    yield b": idle\n\n"  # keeps proxies from closing a quiet stream
                    continue
                client.ready.clear()
                payload, client.latest = client.latest, None
                if payload is None:
                    continue
                client.sent += 1
                yield payload
        finally:
            self.clients.discard(client)
