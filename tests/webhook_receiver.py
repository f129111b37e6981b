"""A real HTTP receiver for webhook tests: a threaded http.server on 127.0.0.1.

``mode`` decides each answer: "ok" (204), "500", "garbage" (bytes that are not HTTP),
"hang" (never answers until the mode changes). ``stop()`` closes the port; ``start()``
opens the same port again, so a subscription's URL stays valid while the receiver is down.
"""
from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def key(self) -> str:
        return self.headers["Hotline-Idempotency-Key"]

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.received: list[Received] = []  # every request answered 2xx
        self.attempts = 0  # every request that arrived
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def keys(self) -> list[str]:
        with self._lock:
            return [r.key for r in self.received]

    def start(self) -> "Receiver":
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.attempts += 1
                while receiver.mode == "hang" and receiver._server is not None:
                    time.sleep(0.02)
                mode = receiver.mode
                if mode == "garbage":
                    self.wfile.write(b"\x00\x01 this is not HTTP\r\n\r\n")
                    self.close_connection = True
                    return
                if mode == "500":
                    self.send_response(500)
                    self.send_header("Content-Length", "5")
                    self.end_headers()
                    self.wfile.write(b"oops!")
                    return
                with receiver._lock:
                    receiver.received.append(Received(dict(self.headers.items()), body,
                                                      time.time()))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True
            # socketserver's default backlog of 5 drops the SYNs of a sender opening more
            # connections at once, which then wait for TCP's 1 s retransmission
            request_queue_size = 128

        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def reserve_port(self) -> "Receiver":
        """A free port for the URL, with nobody listening yet (the receiver is 'down')."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        return self

    def __enter__(self) -> "Receiver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> None:
    """``python tests/webhook_receiver.py --port 8099 [--secret S]``: print each webhook."""
    import argparse
    import sys

    from daemon.integrations.webhooks import verify

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--secret", default="demo-secret-change-me-0123")
    args = p.parse_args(argv)
    rx = Receiver()
    rx.port = args.port
    rx.start()
    print(f"listening on {rx.url}", flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.1)
            for got in rx.received[seen:]:
                ok = verify(args.secret, got.headers.get("Hotline-Timestamp", ""), got.body,
                            got.headers.get("Hotline-Signature", ""), now_s=time.time())
                print(f"{got.headers.get('Hotline-Event')} signature={'ok' if ok else 'BAD'} "
                      f"{got.body.decode()}", flush=True)
            seen = len(rx.received)
    except KeyboardInterrupt:
        rx.stop()
        sys.exit(0)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    main(sys.argv[1:])
