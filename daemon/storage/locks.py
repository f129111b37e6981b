"""One holder among daemons, kept by the database: a PostgreSQL advisory lock, or a lock
file beside a SQLite database (one box, so one machine's file lock is enough).

The PostgreSQL lock lives as long as the session holding it: a daemon that dies loses its
connection and with it the lock, so another takes over without waiting for an expiry.
"""
from __future__ import annotations

import fcntl
import logging
import os
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)


class DatabaseLock:
    """``acquire()`` is True while this object holds lock ``key`` (idempotent, re-checked)."""

    def __init__(self, engine: Engine, key: int, name: str) -> None:
        self.engine = engine
        self.key = key
        self.name = name  # the SQLite lock file's suffix: <database>.<name>.lock
        self._conn: Any = None
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self.engine.dialect.name == "postgresql":
            if self._conn is not None:
                try:  # still ours while the session lives
                    self._conn.execute(text("SELECT 1"))
                    return True
                except Exception:
                    self._drop()
            conn = self.engine.connect()
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
            conn.commit()
            if got:
                self._conn = conn
                return True
            conn.close()
            return False
        if self._fd is not None:
            return True
        path = f"{self.engine.url.database or 'hotline.db'}.{self.name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                logger.debug("closing the %s lock connection failed", self.name, exc_info=True)
            self._conn = None

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                self._conn.commit()
            except Exception:
                logger.debug("advisory unlock failed", exc_info=True)
            self._drop()
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
