"""Leadership between daemons for the same switches: one writes, the others stand by hot.

Design (docs/SCALE.md): active/standby with a lease. Every daemon connects to every
node, journals and feeds its engine, so a standby's engine knows every call in flight.
Only the leader writes records to the database and runs the singleton jobs (roll-ups,
partition maintenance); the callback dialer keeps its own Redis lock
(daemon/switch/dialer.py). A standby keeps the records of the last ``window_s`` seconds;
when it takes over it writes them first (the dead leader may not have committed them;
the upserts make a second write harmless) and then writes as it goes.

The lease is held on an existing engine, never a home-made consensus:
* Redis (``redis_url`` set): ``SET key token NX PX ttl``, renewed by compare-and-expire
  every ttl/3; a leader that cannot renew before ``ttl - margin`` stops writing at once,
  before any other daemon can get the key. Each acquisition INCRs ``<key>:epoch``: the
  fencing token, logged and shown in ``health``.
* PostgreSQL without Redis: ``pg_try_advisory_lock`` on a dedicated connection; the
  server releases it the moment that connection dies.
* SQLite: one box, one daemon: always the leader.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import gevent
import gevent.event

from daemon.engine.records import EngineOutput

logger = logging.getLogger(__name__)

LEASE_KEY = "hotline:leader"
TTL_S = 3.0  # a dead leader's lease runs out after this: failover in ttl + one try
TRY_EVERY_S = 0.25
MARGIN_S = 0.5  # a leader stops writing this long before its lease could run out
ADVISORY_KEY = 14_000_001  # pg_try_advisory_lock(key): the leadership of Hotline daemons

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Lease(Protocol):
    def acquire(self) -> int | None: ...  # the fencing epoch, None when someone else holds it

    def renew(self) -> bool: ...

    def release(self) -> None: ...


class RedisLease:
    def __init__(self, url: str, key: str = LEASE_KEY, ttl_s: float = TTL_S) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=ttl_s / 3,
                                           socket_connect_timeout=ttl_s / 3)
        self.key, self.ttl_ms = key, int(ttl_s * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)

    def acquire(self) -> int | None:
        if not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return None
        return int(self.client.incr(f"{self.key}:epoch"))

    def renew(self) -> bool:
        return bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.token])


class PgAdvisoryLease:
    """A session advisory lock on a connection of its own (not the store's pool)."""

    def __init__(self, url: str, key: int = ADVISORY_KEY) -> None:
        from sqlalchemy import create_engine, pool

        self.engine = create_engine(url, poolclass=pool.NullPool)
        self.key = key
        self.conn: Any = None
        self.epoch = 0

    def acquire(self) -> int | None:
        if self.conn is None:
            self.conn = self.engine.connect()
        got = self.conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({self.key})").scalar()
        self.conn.commit()
        if not got:
            return None
        self.epoch += 1
        return self.epoch

    def renew(self) -> bool:
        held = self.conn.exec_driver_sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            f"AND pid = pg_backend_pid() AND objid = {self.key}").scalar()
        self.conn.commit()
        return bool(held)

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()  # the server drops the session lock with the session
            finally:
                self.conn = None


class SoleLease:
    """SQLite: one box, one daemon."""

    def acquire(self) -> int | None:
        return 1

    def renew(self) -> bool:
        return True

    def release(self) -> None:
        pass


def lease_for(database_url: str, redis_url: str | None, ttl_s: float = TTL_S) -> Lease:
    if redis_url:
        return RedisLease(redis_url, ttl_s=ttl_s)
    if database_url.startswith("postgresql"):
        return PgAdvisoryLease(database_url)
    return SoleLease()


class Leadership:
    """Holds or waits for the lease in a greenlet; ``is_leader`` is false the moment the
    lease might have run out (its own clock), so two daemons never write at once."""

    def __init__(self, lease: Lease, *, ttl_s: float = TTL_S, try_every_s: float = TRY_EVERY_S,
                 on_promote: Callable[[], None] | None = None,
                 on_demote: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lease, self.ttl_s, self.try_every_s = lease, ttl_s, try_every_s
        self.on_promote, self.on_demote = on_promote, on_demote
        self.clock = clock
        self.epoch: int | None = None
        self._valid_until = 0.0
        self._stop = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None

    @property
    def is_leader(self) -> bool:
        return self.epoch is not None and self.clock() < self._valid_until

    def start(self) -> Leadership:
        self._greenlet = gevent.spawn(self._run)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._greenlet is not None:
            self._greenlet.join(timeout=self.ttl_s)
        if self.epoch is not None:
            try:
                self.lease.release()  # the standby takes over at once, not after the ttl
            except Exception:
                logger.warning("releasing the leader lease failed", exc_info=True)
            self.epoch = None

    def tick(self) -> None:
        """One round: renew the lease held, or try to get it."""
        started = self.clock()
        if self.epoch is None:
            try:
                epoch = self.lease.acquire()
            except Exception as exc:
                logger.warning("leader lease unreachable: %s", exc)
                return
            if epoch is not None:
                self.epoch = epoch
                self._valid_until = started + self.ttl_s - MARGIN_S
                logger.info("leader now epoch=%s", epoch)
                if self.on_promote is not None:
                    self.on_promote()
            return
        try:
            held = self.lease.renew()
        except Exception as exc:  # unreachable: still ours until the lease could run out
            logger.warning("leader lease unreachable: %s", exc)
            held = None
        if held:
            self._valid_until = started + self.ttl_s - MARGIN_S
        elif held is False or self.clock() >= self._valid_until:
            logger.warning("leader lease lost epoch=%s: standing by", self.epoch)
            self.epoch = None
            if self.on_demote is not None:
                self.on_demote()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.try_every_s if self.epoch is None else self.ttl_s / 3)


class GatedStore:
    """The store, written only while leader; a standby keeps the last ``window_s`` seconds
    of records and writes them when it takes over."""

    def __init__(self, store: Any, leadership: Leadership, window_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.leadership, self.window_s, self.clock = store, leadership, window_s, clock
        self._recent: list[tuple[float, EngineOutput]] = []
        self.replayed = 0

    def write(self, out: EngineOutput) -> None:
        if not (out.calls or out.segments or out.intervals):
            return
        if self.leadership.is_leader:
            if self._recent:
                self.promote()
            self.store.write(out)
            return
        now = self.clock()
        self._recent.append((now, out))
        cut = 0
        while cut < len(self._recent) and self._recent[cut][0] < now - self.window_s:
            cut += 1
        if cut:
            del self._recent[:cut]

    def promote(self) -> None:
        """Write the kept records (oldest first; the store keeps the last version of each)."""
        kept, self._recent = self._recent, []
        for _, out in kept:
            self.store.write(out)
        self.replayed += len(kept)
        if kept:
            logger.info("took over: %d recent engine outputs written again", len(kept))

    def __getattr__(self, name: str) -> Any:  # flush, close, start_writer, stats, ...
        return getattr(self.store, name)
