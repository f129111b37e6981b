"""Outbound KPIs per campaign, agent and day, on SQLite and PostgreSQL, from attempts made
the way the dialer makes them."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from daemon.definition.config import load_center
from daemon.stats.intervals import intervals, local_midnight_ms
from daemon.stats.outbound import outbound_kpis
from daemon.storage import campaigns as cs
from daemon.storage.schema import dispositions
from daemon.storage.store import make_engine, migrate

REPO = Path(__file__).resolve().parent.parent
TZ = "Asia/Shanghai"
DAY1 = local_midnight_ms(dt.date(2026, 12, 8), TZ) + 10 * 3600_000  # 10:00 local
DAY2 = DAY1 + 86400_000


@pytest.fixture
def engine(empty_db_url):
    migrate(empty_db_url)
    eng = make_engine(empty_db_url)
    yield eng
    eng.dispose()


def dial(engine, city, number_result_pairs, at, agent="1001@hotline.cityutil.cn"):
    """Claim one contact per result and finish it like the dialer would."""
    revisit = city.campaign("revisit")
    for i, (result, answered_after, bridged_after, talk) in enumerate(number_result_pairs):
        with engine.begin() as conn:
            (c,) = cs.claim_batch(conn, "cityutil", "revisit", 1, "d", at + i)
            call = f"call-{c.id}-{c.attempts}"
            aid = cs.begin_attempt(conn, c, call, "fs1", at + i, agent)
        ans = None if answered_after is None else at + i + answered_after
        br = None if bridged_after is None else ans + bridged_after
        end = at + i + (talk or 20_000) + (answered_after or 0) + (bridged_after or 0)
        cs.finish_attempt(engine, city, revisit, aid, result, at_ms=end, answered_ms=ans,
                          bridged_ms=br, cause="NORMAL_CLEARING" if ans else "USER_BUSY")
        yield call


def test_attempts_connects_talk_handle_and_the_abandon_rate_per_day(engine):
    city = load_center(REPO / "config", env={}).tenant("cityutil")
    lines = ["number,external_id,work_order,district"]
    lines += [f"1380000{i:04d},E{i},W{i},d" for i in range(5)]
    cs.import_contacts(engine, city, city.campaign("revisit"), "\n".join(lines) + "\n", "c.csv",
                       at_ms=DAY1 - 3600_000)
    # day 1: two connected (one with disposition 1 = resolved), one abandoned (agent 3 s
    # late), one busy, one answered but never bridged
    calls = list(dial(engine, city, [("connected", 5000, 500, 60_000),
                                     ("connected", 8000, 1000, 120_000),
                                     ("connected", 4000, 3000, 30_000),
                                     ("busy", None, None, None),
                                     ("abandoned", 6000, None, None)], DAY1))
    with engine.begin() as conn:
        conn.execute(dispositions.insert(), [
            {"call_id": calls[0], "agent": "1001@hotline.cityutil.cn", "code": "1",
             "source": "phone", "entered_ms": DAY1 + 70_000},
            {"call_id": calls[1], "agent": "1001@hotline.cityutil.cn", "code": "3",
             "source": "phone", "entered_ms": DAY1 + 140_000}])
    # day 2: the busy and the abandoned contacts are called again (busy after 15 min is
    # due; the abandoned after its busy delay too), both connected
    list(dial(engine, city, [("connected", 5000, 500, 60_000),
                             ("connected", 5000, 500, 60_000)], DAY2))
    days = intervals(DAY1 - 10 * 3600_000, DAY2 + 3600_000, "day", TZ)
    with engine.connect() as conn:
        rows = outbound_kpis(conn, city, days, by=("campaign", "day"))
        by_agent = outbound_kpis(conn, city, days, by=("agent",))
    d1, d2 = rows
    assert (d1.day, d1.attempts, d1.connects) == ("2026-12-08", 5, 4)
    assert d1.connect_rate == pytest.approx(0.8)
    assert d1.successes == 1 and dict(d1.by_disposition) == {"1": 1, "3": 1}
    # abandoned: the one 3 s late and the one never bridged, of 4 answered
    assert d1.abandon_rate == pytest.approx(0.5)
    assert d1.avg_talk_s == pytest.approx((60 + 120 + 30) / 3)
    assert d1.contacts_completed == 3  # the three connected are done
    assert (d2.day, d2.attempts, d2.contacts_completed) == ("2026-12-09", 2, 2)
    assert by_agent[0].attempts == 7
    assert by_agent[0].attempts_per_contact == pytest.approx(7 / 5)
