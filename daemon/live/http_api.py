"""The daemon's local HTTP API: live state as JSON, read-only (``settings.http_listen``).

A single-box install runs without Redis (../shared/DESIGN.md); then this is how
``hotline queue status``, a wallboard or a monitoring check reads what the
daemon holds. Endpoints (GET or HEAD only):

* ``/health`` - ``ok`` and each ESL node's connection state (503 when not ok);
* ``/live`` - the whole live snapshot (agents, agents by state/status, queues);
* ``/live/queues/<qualified queue>`` - one queue's waiting callers;
* ``/live/agents/<qualified agent>`` - one agent.

Times are ISO 8601 UTC with milliseconds (``"2026-11-22T11:07:09.492Z"``, as in
docs/CALLS_JSON.md); durations stay integers in ``*_ms``. Every answer, errors
included, is a JSON object; an error is ``{"error": "<one sentence>", "status": N}``.

No authentication and no TLS: it must listen on loopback (the default,
``127.0.0.1:8089``) or sit behind a proxy that adds both. It runs in the
daemon's gevent hub (``gevent.pywsgi``); a bounded pool of handler greenlets
and a per-connection socket timeout keep a misbehaving client from holding the
daemon's memory or connections.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import socket
from typing import Any, Callable, Iterable, Mapping

import gevent.pool
from gevent import pywsgi

logger = logging.getLogger(__name__)

MAX_TARGET = 1024  # path + query characters; names are short, anything longer is not ours
CONNECTION_TIMEOUT_S = 10.0  # a client that stops sending mid-request is dropped
MAX_CONNECTIONS = 64
CLIENT_TIMEOUT_S = 1.5  # `hotline queue status` falls back to the switch after this

# snapshot keys holding instants (epoch ms) -> their ISO names; other *_ms keys are durations
TIME_KEYS = {"at_ms": "at", "since_ms": "since", "updated_ms": "updated_at",
             "joined_ms": "joined_at", "oldest_joined_ms": "oldest_joined_at"}

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           414: "URI Too Long", 500: "Internal Server Error", 503: "Service Unavailable"}
ALLOWED_METHODS = ("GET", "HEAD")
ENDPOINTS = "/health, /live, /live/queues/<queue>, /live/agents/<agent>"


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

class _Reply(Exception):
    def __init__(self, status: int, body: Mapping[str, Any],
                 headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, list(headers)


def _error(status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> _Reply:
    return _Reply(status, {"error": message, "status": status}, headers)


def _encode(body: Mapping[str, Any]) -> bytes:
    return (json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _raw_response(status: int, message: str) -> bytes:
    """A whole response for errors pywsgi answers before the application runs."""
    body = _encode({"error": message, "status": status})
    return (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nConnection: close\r\n"
            f"Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body


class _Handler(pywsgi.WSGIHandler):
    """pywsgi's handler with JSON errors, a socket timeout and no tracebacks for bad input."""

    def handle(self) -> None:
        try:
            self.socket.settimeout(CONNECTION_TIMEOUT_S)
        except OSError:
            return
        super().handle()

    def handle_one_request(self):  # type: ignore[no-untyped-def]
        result = super().handle_one_request()
        if isinstance(result, tuple):  # pywsgi refused the request line or the headers
            status = int(result[0])
            message = ("request line too long" if status == 414
                       else "not an HTTP request this API understands")
            return result[0], _raw_response(status, message)
        return result

    def _handle_client_error(self, ex: BaseException):  # type: ignore[no-untyped-def]
        # pywsgi prints a traceback for some of these; one log line is enough
        logger.info("http: bad request from %s: %s", self.client_address,
                    str(ex)[:200] or ex.__class__.__name__)
        return ("400", b"")  # the JSON response is made in handle_one_request


class HttpApi:
    """Serves ``snapshot()`` (and ``health()``, given at :meth:`start`) on ``listen``.

    ``listen`` as in the settings (``127.0.0.1:8089``; port 0 = any free port, see
    :attr:`address`). ``center`` (optional) makes configured queues and agents that
    the live state has not seen yet answer 200 instead of 404.
    """

    def __init__(self, listen: str, snapshot: Callable[[], Mapping[str, Any]],
                 center: Any = None, *, max_connections: int = MAX_CONNECTIONS) -> None:
        addr = parse_listen(listen)
        if addr is None:
            raise ValueError("http_listen is empty: the HTTP API is disabled")
        self.listen = addr
        self.snapshot = snapshot
        self.health: Callable[[], Mapping[str, Any]] | None = None
        self.max_connections = max_connections
        self.requests = 0
        self.errors = 0
        self._known_queues, self._known_agents = _configured(center)
        self._server: pywsgi.WSGIServer | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) actually bound, once started."""
        if self._server is None:
            return None
        host, port = self._server.address[:2]
        return host, port

    def start(self, health: Callable[[], Mapping[str, Any]] | None = None) -> "HttpApi":
        """Bind and serve in the background (raises OSError when the address is taken)."""
        if health is not None:
            self.health = health
        server = pywsgi.WSGIServer(
            self.listen, self.app, handler_class=_Handler,
            spawn=gevent.pool.Pool(self.max_connections),
            log=_AccessLog(), error_log=_ErrorLog(),
            # SERVER_NAME given: pywsgi would otherwise resolve the host name at start
            environ={"SERVER_NAME": "hotline"})
        server.start()
        self._server = server
        host, port = self.address or self.listen
        if host not in ("127.0.0.1", "::1", "localhost"):
            logger.warning("http API listens on %s:%d: it has no authentication; keep it "
                           "behind a proxy that adds it", host, port)
        logger.info("http API listening on %s:%d", host, port)
        return self

    def stop(self, timeout: float = 2.0) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(timeout=timeout)
            logger.info("http API stopped requests=%d", self.requests)

    # --- the WSGI application -------------------------------------------------------------
    def app(self, environ: Mapping[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self.requests += 1
        method = environ.get("REQUEST_METHOD", "")
        try:
            status, body, headers = 200, self._route(environ), []
        except _Reply as reply:
            status, body, headers = reply.status, reply.body, reply.headers
        except Exception:  # a bug here must not reach the client as a traceback
            self.errors += 1
            logger.exception("http API error path=%r", str(environ.get("PATH_INFO", ""))[:200])
            status, body, headers = 500, {"error": "internal error", "status": 500}, []
        data = _encode(body)
        start_response(f"{status} {REASONS.get(status, 'Error')}",
                       [("Content-Type", "application/json; charset=utf-8"),
                        ("Content-Length", str(len(data))), ("Cache-Control", "no-store"),
                        *headers])
        return [] if method == "HEAD" else [data]

    def _route(self, environ: Mapping[str, Any]) -> Mapping[str, Any]:
        raw_path = str(environ.get("PATH_INFO", ""))
        query = str(environ.get("QUERY_STRING", ""))
        if len(raw_path) + len(query) > MAX_TARGET:
            raise _error(414, f"the path and query may be at most {MAX_TARGET} characters")
        try:  # pywsgi decodes %XX as latin-1; names are UTF-8
            path = raw_path.encode("latin-1").decode("utf-8")
        except UnicodeError:
            raise _error(400, "the path is not valid UTF-8") from None
        if any(ord(c) < 32 or ord(c) == 127 for c in path):
            raise _error(400, "the path holds control characters")
        parts = [p for p in path.split("/") if p]
        if not _known_path(parts):
            raise _error(404, f"no such path; the API has {ENDPOINTS}")
        method = environ.get("REQUEST_METHOD", "")
        if method not in ALLOWED_METHODS:
            raise _error(405, f"method {method[:20]} not allowed; the API is read-only (GET)",
                         [("Allow", ", ".join(ALLOWED_METHODS))])
        if parts == ["health"]:
            return self._health()
        snap = snapshot_json(self.snapshot())
        if parts == ["live"]:
            return snap
        kind, name = parts[1], parts[2]
        if kind == "queues":
            queue = snap["queues"].get(name)
            if queue is None:
                if name not in self._known_queues:
                    raise _error(404, f"no queue {name} (write it qualified: name@domain)")
                queue = {"waiting": [], "count": 0, "oldest_joined_at": None,
                         "longest_wait_ms": None}
            return {"at": snap["at"], "queue": name, **queue}
        agent = snap["agents"].get(name)
        if agent is None:
            if name not in self._known_agents:
                raise _error(404, f"no agent {name} (write it qualified: id@domain)")
            agent = {}  # configured, but no status seen yet
        return {"at": snap["at"], "agent": name, **agent}

    def _health(self) -> Mapping[str, Any]:
        info = dict(self.health()) if self.health is not None else {"ok": True}
        body = {"ok": bool(info.pop("ok", True)), "at": iso_ms(_now_ms()), **info}
        if not body["ok"]:
            raise _Reply(503, body)
        return body


def _known_path(parts: list[str]) -> bool:
    return (parts in (["health"], ["live"])
            or (len(parts) == 3 and parts[0] == "live" and parts[1] in ("queues", "agents")))


def _configured(center: Any) -> tuple[frozenset[str], frozenset[str]]:
    if center is None:
        return frozenset(), frozenset()
    queues = {t.qualified(q.id) for t in center.tenants for q in t.queues}
    agents = {t.qualified(a.id) for t in center.tenants for a in t.agents}
    return frozenset(queues), frozenset(agents)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


class _AccessLog:
    """pywsgi's access log lines, at debug level (a wallboard polls every second)."""

    def write(self, line: str) -> None:
        logger.debug("http: %s", line.strip())


class _ErrorLog:
    def write(self, line: str) -> None:
        if line.strip():
            logger.warning("http: %s", line.strip()[:500])

    def flush(self) -> None:
        pass

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)


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
