"""Event -> wallboard update in a real browser, at 2,000 events/s.

    .venv/bin/python bench/web_latency.py [--rate 2000] [--seconds 20] [--pg URL]

1. The busy-hour capture (bench/ingest.py's synthetic day) is served by the ESL test
   peer in a process of its own, paced at ``--rate`` events/s; the peer stamps every
   event's ``Event-Date-Timestamp`` with the moment it sends it.
2. ``hotline daemon`` (a process, monkey-patched, as in production) takes the stream
   into a scratch PostgreSQL database and serves the wallboard on loopback.
3. Headless Chromium (selenium, Debian's chromedriver) opens /wallboard. For every view
   the live stream pushes, the page notes when the next frame showed it and the switch
   times of the oldest and newest change it carries (``window.hotlineViews``).
4. Latency per view: drawn - oldest change (the worst event of that view) and drawn -
   newest change (the best); p50/p99 over all views after the first second.

Browser, peer and daemon share the machine's clock. Figures, not assertions.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ingest import build_day, fresh_database, percentile, start_peer  # noqa: E402

from daemon.switch.frames import EslParser  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def paced_file(work: Path, events: int) -> Path:
    day = work / "day.esl"
    per_copy, _ = build_day(1, day)
    build_day(events // per_copy + 1, day)
    out = work / "paced.esl"
    with day.open("rb") as src:
        frames, _ = EslParser().feed_resync(src.read())
    out.write_bytes(b"".join(f.raw for f in frames[:events]))
    return out


def events_received(port: int) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("hotline_events_received_total"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pg", default=os.environ.get(
        "HOTLINE_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args(argv)
    events = int(args.rate * (args.seconds + 30))  # the stream outlasts the measurement
    work = Path(tempfile.mkdtemp(prefix="hotline-web-bench-"))
    db_url, drop = fresh_database(args.pg)
    peer = daemon = driver = None
    try:
        path = paced_file(work, events)
        peer, esl_port = start_peer(path, pace=args.rate)
        http_port = free_port()
        settings = work / "settings.yaml"
        settings.write_text(f"esl: \"bench=127.0.0.1:{esl_port}:ClueCon\"\n"
                            f"database_url: \"{db_url}\"\n"
                            f"journal_dir: \"{work / 'journal'}\"\n"
                            f"config_dir: \"{REPO / 'config'}\"\n"
                            f"http_listen: \"127.0.0.1:{http_port}\"\n")
        # the browser first, then the daemon: its first subscription starts the paced stream
        driver = browser()
        daemon = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "daemon",
                                   "--settings", str(settings)], cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=(work / "d.log").open("wb"))
        deadline = time.monotonic() + 30
        while True:
            try:
                driver.get(f"http://127.0.0.1:{http_port}/wallboard")
                if "wallboard" in driver.title:
                    break
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the daemon's wallboard did not come up")
            time.sleep(0.2)
        started = time.monotonic()
        cpu0, n0 = cpu_seconds(daemon.pid), events_received(http_port)
        time.sleep(args.seconds)
        cpu, n1 = cpu_seconds(daemon.pid) - cpu0, events_received(http_port)
        wall = time.monotonic() - started
        views = driver.execute_script("return window.hotlineViews")
    finally:
        if driver is not None:
            driver.quit()
        if daemon is not None:
            daemon.terminate()
            daemon.wait(60)
        if peer is not None:
            peer.kill()
        drop()
        shutil.rmtree(work, ignore_errors=True)
    views = views[5:]  # the first views carry what queued up while the page loaded
    worst = [drawn - oldest for _, drawn, oldest, _, _ in views]
    best = [drawn - newest for _, drawn, _, newest, _ in views]
    in_daemon = [built - oldest for _, _, oldest, _, built in views]
    to_screen = [drawn - built for _, drawn, _, _, built in views]
    print(f"paced at {args.rate:.0f}/s; the daemon received {(n1 - n0) / wall:.0f} events/s "
          f"while measured ({wall:.0f} s), {len(views)} views drawn "
          f"({len(views) / max(wall, 1e-9):.1f}/s); daemon CPU {100 * cpu / wall:.0f}% of a core")
    print(f"event -> wallboard drawn, oldest event of each view: "
          f"p50 {percentile(worst, 50):.0f} ms,"
          f" p99 {percentile(worst, 99):.0f} ms, max {max(worst, default=float('nan')):.0f} ms")
    print(f"event -> wallboard drawn, newest event of each view: p50 {percentile(best, 50):.0f} ms,"
          f" p99 {percentile(best, 99):.0f} ms")
    print(f"  of which in the daemon (oldest event -> view built): p50 "
          f"{percentile(in_daemon, 50):.0f} ms, p99 {percentile(in_daemon, 99):.0f} ms; "
          f"view built -> drawn: p50 {percentile(to_screen, 50):.0f} ms, "
          f"p99 {percentile(to_screen, 99):.0f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
