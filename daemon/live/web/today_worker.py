"""The wallboard's "today so far" figures, computed in a process of its own.

The KPI queries are mostly Python (building and compiling SQL) and would hold the
daemon's GIL for a good part of a second per refresh, in the middle of its event
processing; in a child process (at a lower priority) they cost the daemon nothing.
The protocol is one line each way: the daemon writes the moment to compute for
(epoch ms), the worker answers ``{"figures": {...}, "error": null}`` as one JSON line.
It exits when its stdin closes (the daemon stopped or died).

    python -m daemon.live.web.today_worker DATABASE_URL CONFIG_DIR
"""
from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

logger = logging.getLogger(__name__)


def serve(db_url: str, config_dir: str) -> None:
    from daemon.definition.config import load_center
    from daemon.live.http_api import _report_engine
    from daemon.live.web.board import TodayFigures

    center = load_center(config_dir)
    engine = _report_engine(db_url)
    now = [0]
    today = TodayFigures(engine, center, now_ms=lambda: now[0])
    for line in sys.stdin:
        try:
            now[0] = int(line.strip())
        except ValueError:
            continue
        figures = today.refresh()
        sys.stdout.write(json.dumps({"figures": figures, "error": today.error},
                                    separators=(",", ":")) + "\n")
        sys.stdout.flush()


class TodayProcess:
    """The daemon's side: same attributes as ``TodayFigures`` (figures, error, refresh)."""

    def __init__(self, db_url: str, config_dir: str, now_ms: Any) -> None:
        self.db_url = db_url
        self.config_dir = config_dir
        self.now_ms = now_ms
        self.figures: dict[str, Any] = {}
        self.error: str | None = None
        self._proc: Any = None

    def start(self) -> Any:
        """Start the worker now (it loads the model and connects before it is asked)."""
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        return self._proc

    def _start(self) -> Any:
        from gevent import subprocess

        self._proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.live.web.today_worker", self.db_url, self.config_dir],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1, preexec_fn=lambda: os.nice(5))  # noqa: PLW1509 - no threads yet
        return self._proc

    def refresh(self) -> dict[str, Any]:
        """Ask the worker (started on first use, restarted if it died); cooperative waits."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            proc = self._start()
        try:
            proc.stdin.write(f"{self.now_ms()}\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            answer = json.loads(line)
        except (OSError, ValueError) as exc:
            self.error = "today's figures unavailable: the worker stopped"
            logger.warning("wallboard: today worker failed: %s", exc)
            self.close()
            return self.figures
        self.figures, self.error = answer.get("figures") or {}, answer.get("error")
        return self.figures

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.stdin.close()
                proc.wait(timeout=5)
            except Exception:
                proc.kill()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    serve(sys.argv[1], sys.argv[2])
