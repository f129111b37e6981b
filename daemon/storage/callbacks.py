"""Callback requests in the database: the callback dialer's store when there is no Redis.

The same interface as ``daemon.switch.dialer.CallbackStore`` (Redis): ``add`` is idempotent
per call, ``claim`` moves a request from pending to dialing only for exactly the attempt it
was read at (an UPDATE ... WHERE status = 'pending' AND attempts = n: nothing is dialed
twice), and the leader lock is ``storage.locks.DatabaseLock`` (a PostgreSQL advisory lock;
a lock file beside SQLite). So a site without Redis dials its callbacks too: several
daemons on one PostgreSQL, or one box on SQLite.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update

from daemon.storage.locks import DatabaseLock
from daemon.storage.schema import callback_requests

logger = logging.getLogger(__name__)

LOCK_KEY = 0x686F7463  # "hotc": the callback dialer's advisory lock
FINAL = ("connected", "no-answer", "failed")
_FIELDS = ("call_id", "queue", "number", "joined_ms", "node", "requested_ms", "attempts",
           "agent_misses", "next_ms", "status", "last_error", "agent")


class SqlCallbackStore:
    """Requests as rows of ``callback_requests``; ``request_type`` builds them back
    (``daemon.switch.dialer.CallbackRequest``, passed in so storage imports no switch code)."""

    def __init__(self, url: str, request_type: Any) -> None:
        from daemon.storage.store import make_engine, migrate

        migrate(url)
        self.engine = make_engine(url)
        self.request_type = request_type
        self.lock = DatabaseLock(self.engine, LOCK_KEY, "callbacks")

    def _req(self, row: Any) -> Any:
        return self.request_type(**{k: row._mapping[k] for k in _FIELDS})

    def add(self, req: Any) -> bool:
        from daemon.storage.campaigns import _upsert

        c = callback_requests.c
        with self.engine.begin() as conn:
            known = conn.execute(select(c.call_id).where(c.call_id == req.call_id)).first()
            if known is not None:
                return False
            _upsert(conn, callback_requests, [{k: getattr(req, k) for k in _FIELDS}],
                    ("call_id",), ())
        return True

    def get(self, call_id: str) -> Any:
        c = callback_requests.c
        with self.engine.connect() as conn:
            row = conn.execute(select(*[c[k] for k in _FIELDS])
                               .where(c.call_id == call_id)).first()
        return None if row is None else self._req(row)

    def open_requests(self) -> list[Any]:
        c = callback_requests.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(*[c[k] for k in _FIELDS])
                                .where(c.status.in_(("pending", "dialing")))
                                .order_by(c.joined_ms, c.call_id)).all()
        return [self._req(r) for r in rows]

    def claim(self, req: Any, owner: str, now_ms: int) -> bool:
        c = callback_requests.c
        with self.engine.begin() as conn:
            got = conn.execute(update(callback_requests).where(
                c.call_id == req.call_id, c.status == "pending", c.attempts == req.attempts,
                c.agent_misses == req.agent_misses)
                .values(status="dialing", owner=owner, claimed_ms=now_ms))
        return got.rowcount == 1

    def claimed_ms(self, call_id: str) -> int:
        c = callback_requests.c
        with self.engine.connect() as conn:
            return int(conn.execute(select(c.claimed_ms).where(c.call_id == call_id)).scalar()
                       or 0)

    def save(self, req: Any) -> None:
        c = callback_requests.c
        with self.engine.begin() as conn:
            conn.execute(update(callback_requests).where(c.call_id == req.call_id)
                         .values(**{k: getattr(req, k) for k in _FIELDS if k != "call_id"}))

    def acquire(self, owner: str, ttl_ms: int) -> bool:  # ttl: the session is the lease
        return self.lock.acquire()

    def release(self, owner: str) -> None:
        self.lock.release()

    def close(self) -> None:
        self.lock.release()
        self.engine.dispose()
