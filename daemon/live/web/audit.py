"""The console's audit trail: who did what to which agent, when, and how it went.

One JSON line per write action, appended to ``<journal_dir>/audit.jsonl`` (next to the
journal: a disk that survives a reboot) and logged as ``audit: ...``. The line is
written before the answer goes back, also when the action failed.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class Audit:
    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None

    def record(self, *, user: str, role: str, action: str, target: str,
               outcome: str, detail: dict[str, Any] | None = None,
               address: str = "") -> dict[str, Any]:
        entry = {"at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
                 "user": user, "role": role, "from": address, "action": action,
                 "target": target, "outcome": outcome, **(detail or {})}
        logger.info("audit: user=%s role=%s from=%s action=%s target=%s outcome=%s", user, role,
                    address, action, target, outcome)
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            except OSError as exc:  # the action happened: say loudly that its trail did not
                logger.error("audit trail not written to %s: %s", self.path, exc)
        return entry
