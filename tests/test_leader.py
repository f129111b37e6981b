"""The leader lease between daemons: exactly one leader, takeover after the leader goes,
a leader that loses its lease stops writing, and the standby's records are written
when it takes over. Real Redis and PostgreSQL."""
from __future__ import annotations

import gevent
import pytest
import redis

from daemon.engine.records import CallRecord, EngineOutput
from daemon.leader import LEASE_KEY, GatedStore, Leadership, PgAdvisoryLease, RedisLease, SoleLease


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Sink:
    """Stands in for the store's ``write`` (the store itself is tested in test_store)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def write(self, out: EngineOutput) -> None:
        self.calls += [c.call_id for c in out.calls]


def out(call_id: str) -> EngineOutput:
    o = EngineOutput()
    o.calls.append(CallRecord(call_id, "t", "fs1", "", "", 1, None, "in-progress"))
    return o


def test_two_daemons_on_redis_one_leads_and_the_other_takes_over_when_its_lease_expires(
        redis_url):
    a, b = RedisLease(redis_url, ttl_s=1.0), RedisLease(redis_url, ttl_s=1.0)
    la, lb = Leadership(a, ttl_s=1.0), Leadership(b, ttl_s=1.0)
    la.tick()
    lb.tick()
    assert la.is_leader and not lb.is_leader
    assert la.epoch == 1
    # a dies without releasing: its key expires after the ttl, then b gets it (epoch 2)
    gevent.sleep(1.1)
    lb.tick()
    assert lb.is_leader and lb.epoch == 2
    # a wakes up: its renewal fails (the key is b's) and it stops writing at once
    la.tick()
    assert not la.is_leader
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.get(LEASE_KEY) == b.token
    lb.stop()  # SIGTERM: released at once
    assert client.get(LEASE_KEY) is None
    client.close()


def test_a_leader_that_cannot_renew_stops_before_its_lease_can_run_out(redis_url):
    clock = Clock()
    lease = RedisLease(redis_url, ttl_s=3.0)
    lead = Leadership(lease, ttl_s=3.0, clock=clock)
    lead.tick()
    assert lead.is_leader
    lease.client.connection_pool.disconnect()
    lease.client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    lease._renew = lease.client.register_script("return 1")
    clock.t += 1.0
    lead.tick()  # unreachable: still ours until 0.5 s before the lease could run out
    assert lead.is_leader
    clock.t += 1.6
    assert not lead.is_leader  # 2.6 s > 3.0 - 0.5: no longer writes, even before a tick


def test_without_redis_a_postgres_advisory_lock_on_its_own_connection_leads(pg_database_url):
    a, b = PgAdvisoryLease(pg_database_url), PgAdvisoryLease(pg_database_url)
    la, lb = Leadership(a), Leadership(b)
    try:
        la.tick()
        lb.tick()
        assert la.is_leader and not lb.is_leader
        la.tick()
        assert la.is_leader  # renewed: the lock is still held by its session
        a.conn.invalidate()  # the leader's connection dies: the server frees the lock
        a.conn = None
        for _ in range(40):  # the server ends the dead session within moments
            lb.tick()
            if lb.is_leader:
                break
            gevent.sleep(0.05)
        assert lb.is_leader
    finally:
        for lease in (a, b):
            lease.release()
            lease.engine.dispose()


def test_sqlite_is_one_box_one_daemon_always_the_leader():
    lead = Leadership(SoleLease())
    lead.tick()
    assert lead.is_leader


@pytest.mark.parametrize("promoted_by", ["tick", "next write"])
def test_the_standby_writes_its_recent_records_when_it_takes_over(redis_url, promoted_by):
    holder = Leadership(RedisLease(redis_url))
    holder.tick()
    lead = Leadership(RedisLease(redis_url))
    sink = Sink()
    clock = Clock()
    gated = GatedStore(sink, lead, window_s=30.0, clock=clock)
    if promoted_by == "tick":
        lead.on_promote = gated.promote
    lead.tick()
    gated.write(out("old"))
    clock.t += 31  # older than the window: the leader surely committed it
    gated.write(out("c1"))
    gated.write(out("c2"))
    assert sink.calls == []  # a standby writes nothing
    holder.stop()  # the leader goes (SIGTERM releases the lease)
    lead.tick()
    assert lead.is_leader
    gated.write(out("c3"))
    assert sink.calls == ["c1", "c2", "c3"]
    lead.stop()


def test_the_rollup_job_catches_up_in_small_transactions_and_only_while_leader(tmp_path):
    """After the migration marked a long history, the job rolls it up batch by batch."""
    from sqlalchemy import func, select

    from daemon.jobs import Jobs
    from daemon.stats import rollup as R
    from daemon.storage import schema
    from daemon.storage.store import make_engine, migrate
    from tests.test_kpi import center
    from tests.test_rollup import generated

    url = f"sqlite:///{tmp_path / 'h.db'}"
    migrate(url)
    generated(seed=11, calls=150).insert(url)
    engine = make_engine(url)
    leading = [False]
    jobs = Jobs(engine, center(), lambda: leading[0])
    assert jobs.rollup(batch=10) == 0  # a standby rolls up nothing
    leading[0] = True
    with engine.connect() as conn:
        marked = conn.execute(select(func.count(schema.rollup_changes.c.bucket_ms.distinct())))\
            .scalar()
    assert marked > 30
    assert jobs.rollup(batch=10) == marked
    with engine.connect() as conn:
        assert R.pending(conn) == 0
    engine.dispose()
