"""Webhook benchmark: deliveries per second, and answer -> screen-pop webhook latency.

    .venv/bin/python bench/webhooks.py [--db URL] [--messages 3000] [--concurrency 16] [--calls 200]

1. Throughput: ``--messages`` outbox rows of one subscription, delivered by the real
   worker (signed, kept-alive connections, one row update per delivery) to a threaded
   http.server on 127.0.0.1 in this process: deliveries per second (target >= 500/s).
2. Latency: ``--calls`` answered calls (the answered_ivr capture's records under fresh
   call ids, one every 50 ms) through the real Store (its writer flushing every 0.2 s as
   in the daemon, the outbox hook in its transaction) and the worker: from the moment
   the talk segment is handed to the store to the receiver getting ``call.answered``;
   p50/p99 (target p99 < 300 ms).
Everything runs in one gevent-patched process, like the daemon (figures, not tests).
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.definition import model as m  # noqa: E402
from daemon.engine.records import EngineOutput  # noqa: E402
from daemon.integrations.delivery import WebhookDelivery  # noqa: E402
from daemon.storage import outbox  # noqa: E402
from daemon.storage.store import Store, make_engine, migrate  # noqa: E402
from tests import scenario  # noqa: E402
from tests.webhook_receiver import Receiver  # noqa: E402

SECRET = "bench-secret-0123456789"


def center(url: str, concurrency: int) -> m.CallCenter:
    sub = m.WebhookSubscription(name="bench", url=url, events=m.WEBHOOK_EVENTS, secret=SECRET,
                                concurrency=concurrency)
    return m.CallCenter((m.Tenant(id="demo", domain="hotline.test", timezone="UTC",
                                  webhooks=(sub,)),))


def throughput(db: str, messages: int, concurrency: int) -> float:
    migrate(db)
    with Receiver() as rx:
        rx.start()
        writer = outbox.OutboxWriter(center(rx.url, concurrency))
        now = outbox.now_ms()
        events = [outbox.WebhookEvent(str(uuid.uuid4()), "agent.status_changed", "hotline.test",
                                      now, {"agent": "1001@hotline.test", "status": "Available",
                                            "reason": None, "since": "x"})
                  for _ in range(messages)]
        engine = make_engine(db)
        with engine.begin() as conn:
            conn.execute(outbox._insert(conn), writer._messages(events))
        engine.dispose()
        worker = WebhookDelivery(db, center(rx.url, concurrency), idle_poll_s=0.05)
        start = time.perf_counter()
        worker.start()
        while len(rx.received) < messages:
            gevent.sleep(0.01)
        elapsed = time.perf_counter() - start
        worker.stop()
    return messages / elapsed


def latency(db: str, calls: int) -> list[float]:
    outputs = scenario.replay("answered_ivr").outputs
    with Receiver() as rx:
        rx.start()
        c = center(rx.url, 8)
        writer = outbox.OutboxWriter(c)
        store = Store(db, outbox=writer, spill_dir=tempfile.mkdtemp())
        worker = WebhookDelivery(db, c, idle_poll_s=0.3)
        writer.on_commit(worker.wake)
        store.start_writer()
        worker.start()
        handed: dict[str, float] = {}
        for _ in range(calls):
            cid = str(uuid.uuid4())
            for out in outputs:
                renamed = EngineOutput(
                    calls=[dataclasses.replace(x, call_id=cid) for x in out.calls],
                    segments=[dataclasses.replace(s, call_id=cid,
                                                  segment_id=cid + s.segment_id[36:])
                              for s in out.segments])
                store.write(renamed)
                if any(s.kind == "talk" for s in out.segments) and cid not in handed:
                    handed[cid] = time.time()
            gevent.sleep(0.05)
        deadline = time.time() + 30
        answered: dict[str, float] = {}
        while len(answered) < calls and time.time() < deadline:
            for r in list(rx.received):
                body = r.json
                if body["type"] == "call.answered":
                    answered.setdefault(body["data"]["call_id"], r.at)
            gevent.sleep(0.05)
        worker.stop()
        store.close()
    order = sorted(handed, key=handed.get)
    slow = [i for i, c in enumerate(order) if c in answered and answered[c] - handed[c] > 0.5]
    if slow:
        print(f"calls slower than 500 ms, by position: {slow}")
    return sorted((answered[c] - handed[c]) * 1000 for c in answered)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--calls", type=int, default=200)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    db1 = args.db or f"sqlite:///{tmp / 'throughput.db'}"
    db2 = args.db or f"sqlite:///{tmp / 'latency.db'}"
    rate = throughput(db1, args.messages, args.concurrency)
    print(f"deliveries: {args.messages} in one subscription, concurrency {args.concurrency}: "
          f"{rate:.0f}/s")
    lat = latency(db2, args.calls)
    if not lat:
        print("latency: no call.answered received")
        return
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"slowest: {[round(x) for x in lat[-5:]]}")
    print(f"answer -> call.answered webhook: {len(lat)} calls, p50 {statistics.median(lat):.0f} ms,"
          f" p99 {p99:.0f} ms, max {lat[-1]:.0f} ms")


if __name__ == "__main__":
    main()
