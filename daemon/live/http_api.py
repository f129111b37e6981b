"""The daemon's HTTP surface on ``settings.http_listen``: JSON API, web console, /metrics.

A single-box install runs without Redis (../shared/DESIGN.md); then this is how
``hotline queue status``, a wallboard or a monitoring check reads what the
daemon holds. JSON endpoints (GET or HEAD only):

* ``/health`` - ``ok`` and each ESL node's connection state (503 when not ok);
* ``/live`` - the whole live snapshot (agents, agents by state/status, queues);
* ``/live/queues/<qualified queue>`` - one queue's waiting callers;
* ``/live/agents/<qualified agent>`` - one agent.

Times are ISO 8601 UTC with milliseconds (``"2026-11-22T11:07:09.492Z"``, as in
docs/CALLS_JSON.md); durations stay integers in ``*_ms``. Every answer, errors
included, is a JSON object; an error is ``{"error": "<one sentence>", "status": N}``.

The console (wallboard, reports, call log) and ``/metrics`` are the Flask application
of ``daemon/live/web/`` (docs/WEB.md); this module keeps the JSON shapes, the
``HttpApi`` the daemon starts, and the client ``hotline queue status`` uses. Without
``http_users`` it may only listen on loopback (the default ``127.0.0.1:8089``); with
them every route needs a login. It runs in the daemon's gevent hub
(``daemon/live/web/server.py``: per-request deadline, body limit, bounded pool).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import socket
from typing import Any, Callable, Mapping, Sequence

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 1024  # live-stream clients hold one each (capped at 500 by the stream)
CLIENT_TIMEOUT_S = 1.5  # `hotline queue status` falls back to the switch after this

# snapshot keys holding instants (epoch ms) -> their ISO names; other *_ms keys are durations
TIME_KEYS = {"at_ms": "at", "since_ms": "since", "updated_ms": "updated_at",
             "joined_ms": "joined_at", "oldest_joined_ms": "oldest_joined_at"}



# --- times and listen addresses ---------------------------------------------------------

def iso_ms(ms: int) -> str:
    """Epoch milliseconds as ``2026-11-22T11:07:09.492Z`` (the calls JSON format)."""
    t = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def parse_iso_ms(text: str) -> int:
    """The inverse of :func:`iso_ms` (ValueError when it is not that format)."""
    t = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp()) * 1000 + t.microsecond // 1000


def parse_listen(text: str | None) -> tuple[str, int] | None:
    """``host:port`` / ``[v6]:port`` / ``:port`` (= loopback) -> (host, port); "" -> None.

    Raises ValueError with a sentence for anything else.
    """
    text = (text or "").strip()
    if not text:
        return None
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"http_listen {text!r} is not host:port (e.g. 127.0.0.1:8089)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"http_listen {text!r}: write an IPv6 address in brackets, [::1]:8089")
    return host or "127.0.0.1", int(port_text)


def client_base_url(listen: str | None) -> str | None:
    """Where a local client reaches the API (a wildcard bind is reached over loopback)."""
    addr = parse_listen(listen)
    if addr is None:
        return None
    host, port = addr
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# --- JSON shapes ------------------------------------------------------------------------

def _times(entry: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in entry.items():
        name = TIME_KEYS.get(key)
        if name is None:
            out[key] = value
        elif value is None or isinstance(value, bool) or not isinstance(value, int):
            out[name] = value  # null (no caller waiting) or a value we cannot read: as it is
        else:
            out[name] = iso_ms(value)
    return out


def queue_json(queue: Mapping[str, Any]) -> dict[str, Any]:
    out = _times({k: v for k, v in queue.items() if k != "waiting"})
    out["waiting"] = [_times(w) for w in queue.get("waiting", [])]
    return out


def snapshot_json(snap: Mapping[str, Any]) -> dict[str, Any]:
    """A live snapshot (``LiveState.snapshot()``) with ISO times."""
    return {"at": iso_ms(int(snap["at_ms"])),
            "agents": {name: _times(a) for name, a in snap.get("agents", {}).items()},
            "agents_by_state": dict(snap.get("agents_by_state", {})),
            "agents_by_status": dict(snap.get("agents_by_status", {})),
            "queues": {name: queue_json(q) for name, q in snap.get("queues", {}).items()}}


def snapshot_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """Back to the snapshot shape ``live.snapshot()`` gives (epoch ms), for the CLI."""
    def ms(entry: Mapping[str, Any]) -> dict[str, Any]:
        back = {v: k for k, v in TIME_KEYS.items()}
        out: dict[str, Any] = {}
        for key, value in entry.items():
            name = back.get(key)
            out[name or key] = parse_iso_ms(value) if name and isinstance(value, str) else value
        return out

    queues = {}
    for name, q in data.get("queues", {}).items():
        queue = ms({k: v for k, v in q.items() if k != "waiting"})
        queue["waiting"] = [ms(w) for w in q.get("waiting", [])]
        queues[name] = queue
    return {"at_ms": parse_iso_ms(data["at"]),
            "agents": {name: ms(a) for name, a in data.get("agents", {}).items()},
            "agents_by_state": data.get("agents_by_state", {}),
            "agents_by_status": data.get("agents_by_status", {}), "queues": queues}


# --- the server -------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpApi:
    """The daemon's web surface: the JSON API, the console, /metrics, on ``listen``.

    ``listen`` as in the settings (``127.0.0.1:8089``; port 0 = any free port, see
    :attr:`address`). ``center`` (optional) makes configured queues and agents that
    the live state has not seen yet answer 200 instead of 404. ``users`` (settings
    ``http_users``) turn authentication on; without them only a loopback address may be
    bound (ValueError otherwise). ``subscribe`` registers the wallboard's change
    callback with the live state; ``database_url`` enables reports, the call log and
    today's figures; ``service`` (the running daemon) feeds /metrics.
    """

    def __init__(self, listen: str, snapshot: Callable[[], Mapping[str, Any]],
                 center: Any = None, *, max_connections: int = MAX_CONNECTIONS,
                 users: Sequence[Any] = (), session_minutes: int = 60,
                 tls_cert: str | None = None, tls_key: str | None = None,
                 database_url: str | None = None,
                 subscribe: Callable[[Callable[[dict[str, Any]], None]], None] | None = None,
                 service: Any = None, redis_up: Callable[[], bool | None] | None = None,
                 today_interval_s: float = 5.0, now_ms: Callable[[], int] | None = None,
                 config_dir: str | None = None, control: Callable[[], Any] | None = None,
                 audit_path: str | None = None,
                 stream_interval_s: float = 0.05) -> None:
        from daemon.live.web.auth import Authenticator

        addr = parse_listen(listen)
        if addr is None:
            raise ValueError("http_listen is empty: the HTTP API is disabled")
        if not users and not is_loopback(addr[0]):
            raise ValueError(f"http_listen {listen} is not a loopback address: define "
                             "http_users (docs/WEB.md) or listen on 127.0.0.1")
        if bool(tls_cert) != bool(tls_key):
            raise ValueError("http_tls_cert and http_tls_key go together")
        self.listen = addr
        self.snapshot = snapshot
        self.center = center
        self.health: Callable[[], Mapping[str, Any]] | None = None
        self.service = service
        self.max_connections = max_connections
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self.auth = Authenticator(users, idle_s=session_minutes * 60.0)
        self.database_url = database_url
        self.config_dir = config_dir
        self.control = control  # agent actions from the console (None: read-only console)
        self.audit_path = audit_path
        self.subscribe = subscribe
        self.redis_up = redis_up
        self.today_interval_s = today_interval_s
        self.stream_interval_s = stream_interval_s
        self._now_ms = now_ms or _now_ms
        self._known_queues, self._known_agents = _configured(center)
        self._server: Any = None
        self.ctx: Any = None
        self.hub: Any = None
        self.today: Any = None
        self._today_greenlet: Any = None
        self._pool: Any = None
        self._db: Any = None

    @property
    def requests(self) -> int:
        return self.ctx.requests if self.ctx is not None else 0

    @property
    def errors(self) -> int:
        return self.ctx.errors if self.ctx is not None else 0

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) actually bound, once started."""
        if self._server is None:
            return None
        host, port = self._server.address[:2]
        return host, port

    def start(self, health: Callable[[], Mapping[str, Any]] | None = None) -> "HttpApi":
        """Bind and serve in the background (raises OSError when the address is taken)."""
        import gevent
        import gevent.threadpool

        from daemon.live.metrics import ServiceCollector, render
        from daemon.live.web.app import WebContext, create_app, guard
        from daemon.live.web.audit import Audit
        from daemon.live.web.board import CallsSeen, TodayFigures, agent_queues, board
        from daemon.live.web.server import make_server
        from daemon.live.web.stream import LiveHub

        if health is not None:
            self.health = health
        self._pool = gevent.threadpool.ThreadPool(1)
        if self.database_url:
            self._db = _report_engine(self.database_url)
            from pathlib import Path

            if self.config_dir and self.center is not None and Path(self.config_dir).is_dir():
                from daemon.live.web.today_worker import TodayProcess

                # the KPI queries in a process of their own: they never hold the daemon's GIL
                self.today = TodayProcess(self.database_url,
                                          str(Path(self.config_dir).resolve()), self._now_ms)
            else:
                self.today = TodayFigures(self._db, self.center, self._now_ms)
        calls = CallsSeen()
        queues_of = agent_queues(self.center)

        def view(scope: str | None) -> dict[str, Any]:
            snap = self.snapshot()
            calls.note_snapshot(snap)
            links = {}
            if self.health is not None:
                links = {n: bool(v.get("connected")) for n, v in
                         dict(self.health()).get("nodes", {}).items()}
            today = self.today
            return board(snap, self.center, today.figures if today else {}, calls,
                         tenant=scope, today_error=today.error if today else None,
                         links=links, queues_of=queues_of)

        def busy() -> bool:  # more than the read being processed now: a real backlog
            return getattr(self.service, "backlog", 0) > 1

        self.hub = LiveHub(view, on_message=calls.note, min_interval_s=self.stream_interval_s,
                           busy=busy)
        collector = ServiceCollector(self.snapshot, self.service, lambda: queues_of,
                                     self.redis_up)
        self.ctx = WebContext(
            snapshot=self.snapshot, center=self.center, health=self._health, auth=self.auth,
            hub=self.hub, metrics=lambda: render(collector), db=self._db,
            run_db=lambda fn, *a: self._pool.apply(fn, a), tls=bool(self.tls_cert),
            control=self.control, audit=Audit(self.audit_path),
            known_queues=self._known_queues, known_agents=self._known_agents)
        app = guard(create_app(self.ctx))
        server = make_server(self.listen, app, max_connections=self.max_connections,
                             certfile=self.tls_cert, keyfile=self.tls_key)
        server.start()
        self._server = server
        if self.subscribe is not None:
            self.subscribe(self.hub.notify)
        self.hub.start()
        if self.today is not None:
            start_worker = getattr(self.today, "start", None)
            if start_worker is not None:
                start_worker()  # forked now, while the daemon is small and idle
            self._today_greenlet = gevent.spawn(self._refresh_today)
        host, port = self.address or self.listen
        logger.info("http API listening on %s:%d%s%s", host, port,
                    " (TLS)" if self.tls_cert else "",
                    f", {len(self.auth.users)} logins" if self.auth.required
                    else ", no logins (loopback only)")
        return self

    def _health(self) -> Mapping[str, Any]:
        info = dict(self.health()) if self.health is not None else {"ok": True}
        if self._db is not None:
            db_ok, error = self._check_database()
            # beside what the writer knows (connected, ``error``: why the database refuses us
            # for good), a ping now: the writer's flag misses an outage while it is idle
            known = dict(info.get("database") or {"connected": True})
            known["connected"] = bool(known.get("connected", True)) and db_ok
            if error:
                known["unreachable"] = error
            info["database"] = known
            info["ok"] = bool(info.get("ok", True)) and db_ok
        return info

    def _check_database(self, timeout_s: float = 2.0) -> tuple[bool, str | None]:
        """SELECT 1 off the hub within ``timeout_s`` (the store's own flag misses idle outages)."""
        import gevent

        def ping() -> None:
            from sqlalchemy import text

            with self._db.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            with gevent.Timeout(timeout_s):
                gevent.get_hub().threadpool.apply(ping)
        except gevent.Timeout:
            return False, f"no answer within {timeout_s:g} s"
        except Exception as exc:
            return False, f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}"
        return True, None

    def _refresh_today(self) -> None:
        import gevent

        from daemon.live.web.board import TodayFigures

        while True:
            # only while a wallboard is open: an idle daemon runs no KPI queries
            if self.hub is not None and self.hub.clients:
                try:
                    if isinstance(self.today, TodayFigures):
                        self._pool.apply(self.today.refresh)
                    else:  # a worker process: waiting for its answer is cooperative
                        self.today.refresh()
                    self.hub.notify()
                except Exception:
                    logger.exception("wallboard: refreshing today's figures failed")
            gevent.sleep(self.today_interval_s)

    def stop(self, timeout: float = 2.0) -> None:
        if self.hub is not None:
            self.hub.stop()
        if self._today_greenlet is not None:
            self._today_greenlet.kill(block=False)
            self._today_greenlet = None
        close_today = getattr(self.today, "close", None)
        if close_today is not None:
            close_today()
        server, self._server = self._server, None
        if server is not None:
            server.stop(timeout=timeout)
            logger.info("http API stopped requests=%d", self.requests)
        if self._db is not None:
            self._db.dispose()
        if self._pool is not None:
            self._pool.kill()


def _report_engine(url: str) -> Any:
    """An engine for the web's reads, used from one worker thread: no pool to share."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    args = {"timeout": 5} if url.startswith("sqlite") else {"connect_timeout": 3}
    return create_engine(url, poolclass=NullPool, connect_args=args)


def _configured(center: Any) -> tuple[frozenset[str], frozenset[str]]:
    if center is None:
        return frozenset(), frozenset()
    queues = {t.qualified(q.id) for t in center.tenants for q in t.queues}
    agents = {t.qualified(a.id) for t in center.tenants for a in t.agents}
    return frozenset(queues), frozenset(agents)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


# --- the client (``hotline queue status``) ----------------------------------------------

class ApiUnavailable(Exception):
    """The daemon's API did not answer (not running, disabled, or not the daemon)."""


def fetch_snapshot(listen: str | None, timeout: float = CLIENT_TIMEOUT_S) -> dict[str, Any]:
    """``GET /live`` from the local daemon -> the snapshot shape (epoch ms)."""
    import http.client
    import urllib.error
    import urllib.request

    base = client_base_url(listen)
    if base is None:
        raise ApiUnavailable("http_listen is empty")
    url = base + "/live"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own URL
            data = json.loads(resp.read(16 * 1024 * 1024))
        return snapshot_from_json(data)
    except urllib.error.HTTPError as exc:
        raise ApiUnavailable(f"{url} answered {exc.code}") from None
    except (OSError, socket.timeout, http.client.HTTPException) as exc:
        # refused, timed out, reset, or something that does not speak HTTP on that port
        reason = getattr(exc, "reason", exc)
        raise ApiUnavailable(f"{url}: {reason or exc.__class__.__name__}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ApiUnavailable(f"{url} did not answer with a live snapshot ({exc})") from None
