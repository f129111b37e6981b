"""Daemon memory with thousands of calls in flight at once.

    /work/venv/bin/python bench/memory.py [--calls 5000] [--step 1000]

Synthesises ``--calls`` simultaneous calls from the captures: each copy of a capture's
events gets fresh UUIDs (the first 8 hex digits of every UUID rewritten, as
bench/ingest.py does) and only the events before the call's first hangup are sent, so
every call is still in flight (queued, ringing or talking) when the memory is read. A
real ``hotline daemon`` process (SQLite, no Redis) receives them from the ESL test
peer; its RSS (/proc/PID/status VmRSS) is read after each ``--step`` calls, once every
event has been processed (its journal stops growing). Printed: RSS at each step and
the growth per call (least squares over the steps).
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gevent

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon.switch.events import Event
from daemon.switch.supervisor import ENGINE_EVENTS
from tests.eslpeer import EslPeer, capture_event_frames

CAPTURES = REPO / "tests" / "data" / "captures"
TEMPLATES = ("sip_agent", "hold", "abandoned_long", "queue_timeout", "noanswer_rollover")
UUID = re.compile(rb"[0-9a-f]{8}(?=-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
PASSWORD = "ClueCon"


def in_flight(name: str) -> bytes:
    """The capture's subscribed events up to (not including) its first hangup."""
    out = []
    for f in capture_event_frames(CAPTURES / f"{name}.esl"):
        e = Event(f[f.index(b"\n\n") + 2:])
        if e.name not in ENGINE_EVENTS or (e.name == "CUSTOM" and e.subclass not in ENGINE_EVENTS):
            continue
        if e.name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
            break
        out.append(f)
    return b"".join(out)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def settle(journal: Path, quiet_s: float = 1.5, timeout: float = 300) -> None:
    last, since, deadline = -1, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        size = sum(p.stat().st_size for p in journal.glob("*.esl"))
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        gevent.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--step", type=int, default=1000)
    args = ap.parse_args()
    blobs = [in_flight(n) for n in TEMPLATES]
    tmp = Path(tempfile.mkdtemp(prefix="hotline-bench-memory-"))
    with EslPeer(password=PASSWORD) as peer:
        settings = tmp / "settings.yaml"
        settings.write_text(
            "settings:\n"
            f"  esl: \"bench=127.0.0.1:{peer.port}:{PASSWORD}\"\n"
            f"  database_url: \"sqlite:///{tmp / 'hotline.db'}\"\n"
            f"  journal_dir: \"{tmp / 'journal'}\"\n"
            f"  config_dir: \"{REPO / 'config'}\"\n"
            "  http_listen: \"\"\n")
        proc = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "daemon",
                                 "--settings", str(settings)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=(tmp / "daemon.log").open("wb"))
        try:
            peer.wait_subscribed(timeout=60)
            gevent.sleep(2)
            points = [(0, rss_kb(proc.pid))]
            print(f"calls in flight 0: RSS {points[0][1] / 1024:.1f} MB")
            sent = 0
            while sent < args.calls:
                batch = []
                for k in range(sent, min(sent + args.step, args.calls)):
                    batch.append(UUID.sub(b"%08x" % (0xC0000000 + k), blobs[k % len(blobs)]))
                peer.inject(b"".join(batch))
                sent += len(batch)
                settle(tmp / "journal")
                points.append((sent, rss_kb(proc.pid)))
                print(f"calls in flight {sent}: RSS {points[-1][1] / 1024:.1f} MB")
        finally:
            proc.terminate()
            proc.wait(60)
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    slope = (sum((x - mx) * (y - my) for x, y in points)
             / sum((x - mx) ** 2 for x, _ in points))
    print(f"growth {slope:.1f} KB per call in flight (least squares over {n} points); "
          f"peak RSS {max(p[1] for p in points) / 1024:.1f} MB")


if __name__ == "__main__":
    main()
