"""Ingest benchmark: a large synthetic day through the daemon into PostgreSQL.

    /work/venv/bin/python bench/ingest.py [--copies 24] [--rounds 3] [--pg URL] [--store-batch-mode]

1. Builds a synthetic day from the busy-hour capture: the events the daemon
   subscribes to, repeated ``--copies`` times, each copy with every UUID
   rewritten (distinct calls, channels and Core-UUID) and every switch
   timestamp shifted (copy k starts where copy k-1 ended).
2. Serves it over TCP from the ESL test peer in a process of its own (it does
   not take turns in the daemon's gevent hub), as fast as the socket takes it.
3. In the same run, on the same bytes:
   * greenswitch 0.0.19 alone: ``InboundESL`` + one ``'*'`` handler that counts;
   * our ``EslConnection`` alone (receive + parse, counting frames);
   * the daemon end to end: supervisor -> journal -> SegmentEngine -> Store
     (PostgreSQL, batched upserts) -> live state; the time runs until the last
     event is processed and again until the store has committed everything.
4. Latency: the peer paces events at 2,000/s and stamps each with its send
   time (``Event-Date-Timestamp``); each store flush records when the events
   fed before it were committed: event -> DB latency p50/p99.

The receive / end-to-end measurements run in ``--rounds`` interleaved rounds
(greenswitch, then ours, on the same bytes) and the medians are printed: on a
shared two-core machine single figures move by a factor of two with whatever
else runs, the interleaved ratio much less. ``--store-batch-mode`` adds a run
with the store's generic path instead of its PostgreSQL one: SQLAlchemy's
executemany of the upsert with psycopg2 ``executemany_mode="values_plus_batch"``
rather than psycopg2's ``execute_values`` (pages of 1,000 rows per statement).
Nothing here is asserted (figures, not tests).

    /work/venv/bin/python bench/ingest.py --copies 4 --rounds 1   # a quick look
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import gzip  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon.switch.esl import EslConnection  # noqa: E402
from daemon.switch.events import Event  # noqa: E402
from daemon.switch.frames import EslParser  # noqa: E402
from daemon.switch.supervisor import ENGINE_EVENTS  # noqa: E402

CAPTURE = REPO / "tests" / "data" / "captures" / "busy_hour.esl.gz"
PEER = REPO / "tests" / "eslpeer.py"
PASSWORD = "ClueCon"
UUID = re.compile(rb"[0-9a-f]{8}(?=-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
STAMP = re.compile(rb"(?<![0-9])(1[78][0-9]{8})([0-9]{6})?(?![0-9])")


def subscribed(body: bytes) -> bool:
    event = Event(body)
    name = event.name
    return name in ENGINE_EVENTS and (name != "CUSTOM" or event.subclass in ENGINE_EVENTS)


def build_day(copies: int, out: Path) -> tuple[int, int]:
    """Write the synthetic stream to ``out``; returns (events, bytes)."""
    frames, _ = EslParser().feed_resync(gzip.decompress(CAPTURE.read_bytes()))
    template = [f.raw for f in frames if f.is_event and subscribed(f.body)]
    stamps = [Event(f[f.index(b"\n\n") + 2:]).timestamp_us for f in template]
    span_s = (max(stamps) - min(stamps)) // 1_000_000 + 60
    blob = b"".join(template)
    events = total = 0
    with out.open("wb") as fh:
        for k in range(copies):
            prefix = b"%08x" % (0xB0000000 + k)
            shift_s = k * span_s

            def shift(m: re.Match) -> bytes:
                seconds = int(m.group(1)) + shift_s
                return b"%d%s" % (seconds, m.group(2) or b"")

            copy = UUID.sub(prefix, blob)
            copy = STAMP.sub(shift, copy) if shift_s else copy
            fh.write(copy)
            events += len(template)
            total += len(copy)
    return events, total


def start_peer(path: Path, pace: float = 0.0) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, str(PEER), "serve", str(path), "--port", "0",
                             "--password", PASSWORD, "--pace", str(pace)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != "listening":
        raise RuntimeError("the ESL peer did not start")
    return proc, int(line[1])


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            return False
        gevent.sleep(0.002)
    return True


def bench_greenswitch(port: int, n: int, timeout: float) -> float:
    from greenswitch.esl import InboundESL

    count = [0]

    def counter(event) -> None:
        count[0] += 1

    esl = InboundESL("127.0.0.1", port, PASSWORD)
    esl.connect()
    esl.register_handle("*", counter)
    start = time.perf_counter()
    esl.send("event plain ALL")
    ok = wait_until(lambda: count[0] >= n, timeout)
    elapsed = time.perf_counter() - start
    esl.connected = False  # its stop() would wait on a reply that may never be matched
    esl._run = False
    esl.sock.close()
    if not ok:
        print(f"  greenswitch received only {count[0]} of {n} events in {timeout:.0f} s")
    return count[0] / elapsed


def bench_receive(port: int, n: int, timeout: float) -> float:
    count = [0]

    def counter(frame) -> None:
        count[0] += 1

    conn = EslConnection("127.0.0.1", port, PASSWORD, 10.0, on_frame=counter).connect()
    start = time.perf_counter()
    conn.subscribe(ENGINE_EVENTS)
    wait_until(lambda: count[0] >= n, timeout)
    elapsed = time.perf_counter() - start
    conn.close(timeout=1)
    return count[0] / elapsed


class TimedEngine:
    """The real engine, noting each event's switch stamp (the peer's send time when paced)."""

    def __init__(self, engine, stamps: list[int], clock: list[float]) -> None:
        self.engine = engine
        self.stamps = stamps
        self.clock = clock  # [first event seen, last event processed] (perf_counter)

    def feed(self, event):
        if not self.stamps:
            self.clock[0] = time.perf_counter()
        self.stamps.append(event.timestamp_us)
        out = self.engine.feed(event)
        self.clock[1] = time.perf_counter()
        return out


def bench_daemon(port: int, n: int, db_url: str, timeout: float, batch_mode: bool = False) -> dict:
    from daemon.definition.model import EslNode, Settings
    from daemon.engine.segments import engine_for
    from daemon.live.state import MemoryLiveState
    from daemon.service import Service
    from daemon.storage.journal import Journal
    from daemon.storage.store import Store

    journal_dir = Path(tempfile.mkdtemp(prefix="hotline-bench-journal-"))
    stamps: list[int] = []
    clock = [0.0, 0.0]
    latencies_ms: list[float] = []
    store = Store(db_url, batch_size=2000, max_buffer=500_000)
    if batch_mode:
        # the store's generic path (SQLite's, and PostgreSQL's before execute_values):
        # SQLAlchemy executemany, psycopg2 sending pages of statements
        from sqlalchemy import create_engine

        store._multi_values = False
        store.engine.dispose()
        store.engine = create_engine(db_url, pool_pre_ping=True,
                                     executemany_mode="values_plus_batch")
    committed = [0]
    real_flush = store.flush

    def timed_flush() -> None:
        upto = len(stamps)  # everything fed so far is already in the store's buffer
        real_flush()
        now_us = time.time() * 1e6
        latencies_ms.extend((now_us - s) / 1000 for s in stamps[committed[0]:upto])
        committed[0] = max(committed[0], upto)

    store.flush = timed_flush  # type: ignore[method-assign]
    settings = Settings(esl_nodes=(EslNode("bench", "127.0.0.1", port, PASSWORD),),
                        database_url=db_url, journal_dir=str(journal_dir))
    service = Service(settings, None,
                      lambda node: Journal(journal_dir, 1 << 30, prefix=node),
                      lambda center, node: TimedEngine(engine_for(center, node), stamps, clock),
                      store, MemoryLiveState())
    # roll-ups on: the triggers mark buckets on every upsert (migration 0105_rollups) and
    # the leader's job rolls them up while the events land, as in the daemon
    from daemon.jobs import Jobs

    jobs = Jobs(store.engine, None, lambda: True, rollup_every_s=2.0).start()
    runner = gevent.spawn(service.run)
    # (the loop may starve this poller while it works: times come from the engine's clock)
    wait_until(lambda: service.events >= n, timeout)
    events = service.events
    service.stop()  # drains, then store.close() commits what is left
    runner.join(120)
    jobs.stop()
    start = clock[0]
    processed = clock[1] - start
    stored = time.perf_counter() - start
    shutil.rmtree(journal_dir, ignore_errors=True)
    return {"events": events, "processed_s": processed, "stored_s": stored,
            "rate": events / processed, "rate_stored": events / stored,
            "latencies_ms": latencies_ms, "rows": store.stats.rows_written,
            "errors": service.errors}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def fresh_database(admin_url: str) -> tuple[str, callable]:
    from sqlalchemy import create_engine, text

    name = f"hotline_bench_{os.getpid()}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()

    return admin_url.rsplit("/", 1)[0] + "/" + name, drop


def _daemon_run(args: argparse.Namespace, port: int, n: int, batch_mode: bool = False) -> dict:
    db_url, drop = fresh_database(args.pg)
    try:
        return bench_daemon(port, n, db_url, args.timeout, batch_mode=batch_mode)
    finally:
        drop()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=24,
                        help="copies of the busy hour (default 24)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds (greenswitch, ours): medians are reported, "
                             "since other work on the machine moves single figures a lot")
    parser.add_argument("--pg", default=os.environ.get(
        "HOTLINE_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL admin URL; a scratch database is created and dropped")
    parser.add_argument("--paced-rate", type=float, default=2000.0)
    parser.add_argument("--paced-events", type=int, default=20000)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--store-batch-mode", action="store_true",
                        help="also run end to end with the store's SQLAlchemy executemany path "
                             "(psycopg2 executemany_mode=values_plus_batch) instead of execute_values")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    gs: list[float] = []
    rx: list[float] = []
    full: list[dict] = []
    batched: list[dict] = []
    try:
        day = work / "day.esl"
        t0 = time.perf_counter()
        n, size = build_day(args.copies, day)
        print(f"synthetic day: {n} events, {size / 1e6:.0f} MB ({size // n} B/event), "
              f"{args.copies} x busy hour, built in {time.perf_counter() - t0:.1f} s")

        peer, port = start_peer(day)
        try:
            for r in range(args.rounds):
                gs.append(bench_greenswitch(port, n, args.timeout))
                rx.append(bench_receive(port, n, args.timeout))
                full.append(_daemon_run(args, port, n))
                line = (f"round {r + 1}: greenswitch {gs[-1]:,.0f}/s, receive+parse {rx[-1]:,.0f}/s, "
                        f"end to end {full[-1]['rate']:,.0f}/s processed, "
                        f"{full[-1]['rate_stored']:,.0f}/s incl. commit")
                if args.store_batch_mode:
                    batched.append(_daemon_run(args, port, n, batch_mode=True))
                    line += f", batch-mode store {batched[-1]['rate_stored']:,.0f}/s"
                print(line, flush=True)
        finally:
            peer.kill()

        paced_file = work / "paced.esl"
        with day.open("rb") as src, paced_file.open("wb") as dst:
            frames, _ = EslParser().feed_resync(src.read(size * args.paced_events // n + 1_000_000))
            dst.write(b"".join(f.raw for f in frames[:args.paced_events]))
        peer, port = start_peer(paced_file, pace=args.paced_rate)
        try:
            paced = _daemon_run(args, port, args.paced_events)
        finally:
            peer.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    gs_rate = med(gs)
    stored = med(r["rate_stored"] for r in full)
    lat = paced["latencies_ms"]
    rows = [
        ("greenswitch 0.0.19 bare receive (catch-all counter)", f"{gs_rate:10,.0f} events/s", ""),
        ("hotline EslConnection receive + parse only", f"{med(rx):10,.0f} events/s", ""),
        ("hotline daemon end to end, events processed",
         f"{med(r['rate'] for r in full):10,.0f} events/s", ""),
        ("hotline daemon end to end, incl. final DB commit", f"{stored:10,.0f} events/s",
         f"({full[0]['rows']:,} rows upserted, {sum(r['errors'] for r in full)} engine errors)"),
        ("ratio end-to-end (incl. commit) / greenswitch bare", f"{stored / gs_rate:10.2f} x",
         "(per round: " + ", ".join(f"{r['rate_stored'] / g:.2f}" for r, g in zip(full, gs)) + ")"),
    ]
    if batched:
        b_stored = med(r["rate_stored"] for r in batched)
        rows.append(("  same, store via SQLAlchemy executemany (values_plus_batch)",
                     f"{b_stored:10,.0f} events/s",
                     f"(processed {med(r['rate'] for r in batched):,.0f}/s; "
                     f"{b_stored / gs_rate:.2f} x)"))
    rows.append((f"event -> DB latency at {args.paced_rate:,.0f} events/s: p50",
                 f"{percentile(lat, 50):10.1f} ms", ""))
    rows.append(("                                        p99", f"{percentile(lat, 99):10.1f} ms",
                 f"({len(lat):,} events, max {max(lat) if lat else float('nan'):.1f} ms)"))
    print(f"\nmedians of {args.rounds} round(s):")
    for label, value, note in rows:
        print(f"{label:58} {value}   {note}".rstrip())


if __name__ == "__main__":
    main(sys.argv[1:])
