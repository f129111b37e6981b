"""The HTTP server under the console and API: gevent.pywsgi with deadlines and size limits.

It runs in the daemon's gevent hub, so it must never let a client hold the daemon:

* a per-request deadline (``REQUEST_DEADLINE_S``) covers the request line, the headers and
  the body together: a client sending a byte every few seconds is cut off when the
  deadline passes, not only when one read stalls (eight such clients used to starve a
  pool of eight);
* the body is read whole, up to ``MAX_BODY`` bytes, before the application runs (413 past
  that); headers past pywsgi's limit and request lines past 8 KB are refused;
* every socket operation also has a timeout, so a browser that stops reading a response
  (or the live stream) is dropped instead of holding a greenlet;
* a bounded pool of connection greenlets (``MAX_CONNECTIONS``); the live stream has its
  own cap (``daemon/live/web/stream.py``).

Errors pywsgi answers before the application runs are JSON like every other error.
"""
from __future__ import annotations

import io
import json
import logging
from typing import Any, Callable, Iterable, Mapping

import gevent
import gevent.pool
from gevent import pywsgi

logger = logging.getLogger(__name__)

REQUEST_DEADLINE_S = 10.0  # request line + headers + body, all of it
SOCKET_TIMEOUT_S = 10.0  # any single send or receive
MAX_BODY = 64 * 1024  # a login form is a few hundred bytes
MAX_CONNECTIONS = 1024

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           413: "Content Too Large", 414: "URI Too Long", 429: "Too Many Requests",
           500: "Internal Server Error", 503: "Service Unavailable"}


def encode_json(body: Mapping[str, Any]) -> bytes:
    return (json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def raw_response(status: int, message: str) -> bytes:
    """A whole response for errors answered before the application runs."""
    body = encode_json({"error": message, "status": status})
    return (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nConnection: close\r\n"
            f"Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body


class _Deadline(Exception):
    """The request did not arrive whole within REQUEST_DEADLINE_S."""


class Handler(pywsgi.WSGIHandler):
    """pywsgi's handler with a per-request deadline, a body limit and JSON errors."""

    deadline_s = REQUEST_DEADLINE_S

    def handle(self) -> None:
        try:
            self.socket.settimeout(SOCKET_TIMEOUT_S)
        except OSError:
            return
        super().handle()

    def handle_one_request(self):  # type: ignore[no-untyped-def]
        # armed until the application starts (run_application cancels it): an idle
        # keep-alive connection is closed by it too, freeing its pool slot
        self._deadline = gevent.Timeout(self.deadline_s, _Deadline())
        self._deadline.start()
        try:
            result = super().handle_one_request()
        except _Deadline:
            # an idle keep-alive connection ends the same way: not worth more than debug
            logger.debug("http: connection from %s idle or its request incomplete after "
                         "%.0f s; closed", self.client_address, self.deadline_s)
            return None
        finally:
            self._deadline.close()
        if isinstance(result, tuple):  # pywsgi refused the request line or the headers
            status = int(result[0])
            message = ("request line too long" if status == 414
                       else "not an HTTP request this server understands")
            return result[0], raw_response(status, message)
        return result

    def run_application(self) -> None:
        env = self.environ
        has_body = (env.get("CONTENT_LENGTH") not in (None, "", "0")
                    or "chunked" in str(env.get("HTTP_TRANSFER_ENCODING", "")).lower())
        if has_body:
            data = self.wsgi_input.read(MAX_BODY + 1)  # still under the deadline
            if len(data) > MAX_BODY:
                self._deadline.close()
                self.close_connection = True
                self.result = [encode_json({"error": f"the body may be at most {MAX_BODY} "
                                                     "bytes", "status": 413})]
                self.start_response("413 Content Too Large",
                                    [("Content-Type", "application/json; charset=utf-8"),
                                     ("Connection", "close")])
                self.process_result()
                return
            env["wsgi.input"] = io.BytesIO(data)
            env["CONTENT_LENGTH"] = str(len(data))
        self._deadline.close()  # the request is in: a long answer (the live stream) may stream
        super().run_application()

    def _handle_client_error(self, ex: BaseException):  # type: ignore[no-untyped-def]
        # pywsgi prints a traceback for some of these; one log line is enough
        logger.info("http: bad request from %s: %s", self.client_address,
                    str(ex)[:200] or ex.__class__.__name__)
        return ("400", b"")  # the JSON response is made in handle_one_request


class AccessLog:
    """pywsgi's access log lines, at debug level (a wallboard page is busy)."""

    def write(self, line: str) -> None:
        logger.debug("http: %s", line.strip())


class ErrorLog:
    def write(self, line: str) -> None:
        if line.strip():
            logger.warning("http: %s", line.strip()[:500])

    def flush(self) -> None:
        pass

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)


def make_server(listen: tuple[str, int], app: Callable[..., Any], *,
                max_connections: int = MAX_CONNECTIONS, certfile: str | None = None,
                keyfile: str | None = None) -> pywsgi.WSGIServer:
    """An unstarted server; TLS when ``certfile`` and ``keyfile`` are given."""
    ssl_args: dict[str, Any] = {}
    if certfile and keyfile:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # TLS 1.2 and up
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(certfile, keyfile)  # OSError (ssl.SSLError) when unreadable
        ssl_args = {"ssl_context": context}
    return pywsgi.WSGIServer(
        listen, app, handler_class=Handler, spawn=gevent.pool.Pool(max_connections),
        log=AccessLog(), error_log=ErrorLog(),
        # SERVER_NAME given: pywsgi would otherwise resolve the host name at start
        environ={"SERVER_NAME": "hotline"}, **ssl_args)
