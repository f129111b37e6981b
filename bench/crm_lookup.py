"""CRM lookup benchmark: the set-up time a caller's lookup adds, cold and warm cache.

    .venv/bin/python bench/crm_lookup.py [--lookups 500] [--crm-ms 5]

A threaded http.server on 127.0.0.1 plays the CRM (answers after ``--crm-ms``); the real
``CrmClient`` (gevent-patched, like the daemon) looks up ``--lookups`` distinct numbers
(cold: an HTTP round trip each), then the same numbers again (warm: the TTL cache).
Prints p50/p99 of the time each lookup took (figures, not tests).
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import http.server  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.definition.model import CrmLookup  # noqa: E402
from daemon.integrations.crm import CrmClient  # noqa: E402


def serve(delay_s: float) -> str:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            time.sleep(delay_s)
            body = json.dumps({"name": "Customer", "vip": 1}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/who?n={{number}}"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lookups", type=int, default=500)
    ap.add_argument("--crm-ms", type=float, default=5.0)
    args = ap.parse_args()
    client = CrmClient(CrmLookup(url=serve(args.crm_ms / 1000), timeout_ms=300))
    numbers = [f"+86138{n:08d}" for n in range(args.lookups)]
    for label in ("cold", "warm"):
        took = []
        for number in numbers:
            start = time.perf_counter()
            assert client.lookup(number) is not None
            took.append((time.perf_counter() - start) * 1000)
        print(f"{label}: {len(took)} lookups, CRM answering in {args.crm_ms:g} ms: "
              f"p50 {statistics.median(took):.2f} ms, p99 {pct(took, 0.99):.2f} ms")


if __name__ == "__main__":
    main()
