"""200 open live-stream clients: what they cost the daemon (CPU, event -> DB p99).

    .venv/bin/python bench/web_clients.py [--clients 200] [--rate 2000] [--seconds 20] [--pg URL]

Two runs on the same paced stream (bench/ingest.py's synthetic day, the ESL test peer
in a process of its own stamping each event with its send time), each into a fresh
PostgreSQL database, the daemon (build_service: journal, engine, store, live state,
web) in this process:

* without clients;
* with ``--clients`` wallboards reading /live/stream, held by a separate process (so
  their own CPU is not counted), all connected before the measured window.

Measured over the same window of each run (from 3 s after the stream starts to its
end): this process's CPU time (hub and threads), and event -> DB latency from the
store's flushes as bench/ingest.py measures it (p50/p99). Figures, not assertions.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ingest import TimedEngine, fresh_database, percentile, start_peer  # noqa: E402
from web_latency import cpu_seconds, free_port, paced_file  # noqa: E402

WARMUP_S = 3.0


def hold_clients(port: int, n: int) -> None:
    """(--hold mode, its own process) open ``n`` live streams and read them until killed."""
    import socket

    received = [0]

    def client() -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(b"GET /live/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return
            received[0] += len(chunk)

    jobs = [gevent.spawn(client) for _ in range(n)]
    print("connected", flush=True)
    gevent.joinall(jobs)


def cpu_now() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def run(args: argparse.Namespace, path: Path, work: Path, clients: int) -> dict:
    from daemon.definition.config import load_center
    from daemon.definition.model import EslNode, Settings
    from daemon.engine.segments import engine_for
    from daemon.service import build_service

    db_url, drop = fresh_database(args.pg)
    peer, esl_port = start_peer(path, pace=args.rate)
    http_port = free_port()
    stamps: list[int] = []
    clock = [0.0, 0.0]
    flushed: list[tuple[float, int]] = []  # (commit time in µs, events fed before it)
    holder = None
    try:
        settings = Settings(esl_nodes=(EslNode("bench", "127.0.0.1", esl_port, "ClueCon"),),
                            database_url=db_url, journal_dir=str(work / f"j{clients}"),
                            config_dir=str(REPO / "config"),
                            http_listen=f"127.0.0.1:{http_port}")
        service = build_service(settings, load_center(REPO / "config"))
        service.engine_factory = lambda center, node: TimedEngine(engine_for(center, node),
                                                                  stamps, clock)
        store = service.store
        real_flush = store.flush

        def timed_flush() -> None:
            upto = len(stamps)
            real_flush()
            flushed.append((time.time() * 1e6, upto))

        store.flush = timed_flush  # type: ignore[method-assign]
        if args.no_today:
            service.http.today_interval_s = 1e9  # isolates the stream's own cost
        # the stream starts when the daemon subscribes: connect the clients first
        service.http.start(service.health)
        service._http_started = True
        service._start_http = lambda: None  # type: ignore[method-assign]
        if clients:
            holder = subprocess.Popen([sys.executable, __file__, "--hold", str(http_port),
                                       "--clients", str(clients)], stdout=subprocess.PIPE,
                                      text=True)
            assert holder.stdout is not None and holder.stdout.readline().strip() == "connected"
            deadline = time.monotonic() + 60
            while len(service.http.hub.clients) < clients and time.monotonic() < deadline:
                gevent.sleep(0.05)
        connected = len(service.http.hub.clients)
        runner = gevent.spawn(service.run)
        while not stamps:
            gevent.sleep(0.01)
        gevent.sleep(WARMUP_S)
        worker = getattr(getattr(service.http.today, "_proc", None), "pid", None)
        cpu0, t0, first = cpu_now(), time.time(), len(stamps)
        wcpu0 = cpu_seconds(worker) if worker else 0.0  # started with the web, before the load
        gevent.sleep(args.seconds)
        cpu, wall, last = cpu_now() - cpu0, time.time() - t0, len(stamps)
        wcpu = (cpu_seconds(worker) - wcpu0) if worker else 0.0
        views = [c.sent for c in service.http.hub.clients]
        service.stop()
        runner.join(120)
    finally:
        if holder is not None:
            holder.kill()
        peer.kill()
        drop()
    # event -> DB latency of the events fed inside the window
    latencies: list[float] = []
    done = 0
    for at_us, upto in flushed:
        for i in range(max(done, first), min(upto, last)):
            latencies.append((at_us - stamps[i]) / 1000)
        done = max(done, upto)
    return {"clients": connected, "cpu_pct": 100 * cpu / wall,
            "worker_pct": 100 * wcpu / wall, "rate": (last - first) / wall,
            "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
            "views": sum(views) / max(1, len(views)) / wall}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pg", default=os.environ.get(
        "HOTLINE_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--no-today", action="store_true",
                        help="no today-so-far refresh (the KPI queries) while clients watch")
    parser.add_argument("--hold", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hold:
        return hold_clients(args.hold, args.clients)
    import logging

    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="hotline-web-clients-"))
    try:
        path = paced_file(work, int(args.rate * (args.seconds + WARMUP_S + 10)))
        without = run(args, path, work, 0)
        with_clients = run(args, path, work, args.clients)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, r in (("without clients", without),
                    (f"with {with_clients['clients']} live-stream clients", with_clients)):
        print(f"{name:32s}: {r['rate']:6.0f} events/s, daemon CPU {r['cpu_pct']:5.1f}% of a "
              f"core, event -> DB p50 {r['p50']:6.0f} ms, p99 {r['p99']:6.0f} ms"
              + (f", {r['views']:.1f} views/s per client, today-figures worker "
                 f"{r['worker_pct']:.1f}% of a core" if r["clients"] else ""))
    extra = with_clients["cpu_pct"] - without["cpu_pct"]
    change = 100 * (with_clients["p99"] - without["p99"]) / without["p99"]
    print(f"extra daemon CPU {extra:+.1f} points of a core; event -> DB p99 changes {change:+.0f}%")


if __name__ == "__main__":
    main(sys.argv[1:])
