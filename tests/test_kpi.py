"""KPIs against hand-built datasets: every value below is worked out by hand in the comments.

Tenant "acme" (domain acme.test) in Asia/Shanghai (UTC+8). Day D = Monday 2026-03-02.
Queues: billing (defaults: SL 20 s, short abandon 20 s, ring cycle 6 s, FCR 72 h),
sales (SL 30 s, short abandon 10 s, ring cycle 5 s, FCR 24 h), vip (never called).
Agents 1001, 1002 (team red), 1003, 1004 (team blue).
"""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import insert

from daemon.definition.model import Agent, CallCenter, Cost, Disposition, Queue, Shift, Team, Tenant
from daemon.stats import kpi as K
from daemon.stats.intervals import intervals, local_ms
from daemon.stats.report import ReportRequest, build_report, drill_calls, make_engine
from daemon.storage import schema

TZ = "Asia/Shanghai"
DOMAIN = "acme.test"
D = dt.date(2026, 3, 2)  # a Monday
NOW = local_ms(dt.date(2026, 6, 1), dt.time(0), TZ)  # long after every dataset


def at(day: dt.date, hh: int, mm: int, ss: int = 0, ms: int = 0) -> int:
    return local_ms(day, dt.time(hh, mm, ss), TZ) + ms


def agent(aid: str, team: str, **kw) -> Agent:
    return Agent(aid, f"Agent {aid}", aid, "pw", team=team, **kw)


def tenant(**kw) -> Tenant:
    base = dict(
        id="acme", domain=DOMAIN, timezone=TZ,
        queues=(Queue("billing", "Billing"),
                Queue("sales", "Sales", service_level_s=30, short_abandon_s=10, ring_cycle_s=5,
                      fcr_window_h=24),
                Queue("vip", "VIP")),
        agents=(agent("1001", "red", start_date=dt.date(2025, 1, 1),
                      shifts=(Shift(0, dt.time(9), dt.time(17)),)),
                agent("1002", "red", end_date=dt.date(2026, 3, 15),
                      shifts=(Shift(0, dt.time(9), dt.time(17)),)),
                agent("1003", "blue", start_date=dt.date(2026, 2, 1),
                      shifts=(Shift(0, dt.time(13), dt.time(17)),)),
                agent("1004", "blue", start_date=dt.date(2026, 3, 10))),
        teams=(Team("red", "Red"), Team("blue", "Blue")),
        dispositions=(Disposition("1", "Solved", resolved=True), Disposition("2", "Pending")),
        costs=(Cost(D, D, 700.0),),
    )
    base.update(kw)
    return Tenant(**base)


def center(**kw) -> CallCenter:
    return CallCenter((tenant(**kw),))


def q(x: str) -> str:
    return f"{x}@{DOMAIN}"


class Data:
    """Rows for the statistics tables, built call by call."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.segments: list[dict] = []
        self.intervals: list[dict] = []
        self.qa: list[dict] = []
        self.dispositions: list[dict] = []

    def call(self, call_id: str, start: int, outcome: str, caller: str = "",
             first_queue: str | None = None) -> None:
        self.calls.append(dict(call_id=call_id, tenant=DOMAIN, node="fs1", direction="inbound",
                               caller=caller, caller_name="", dialed="4008001234",
                               started_ms=start, ended_ms=start + 600_000, outcome=outcome,
                               ivr_path="", first_queue=q(first_queue) if first_queue else None))

    def seg(self, call_id: str, kind: str, disc: str, start: int, dur_s: float, **kw) -> None:
        end = start + int(dur_s * 1000)
        row = dict(segment_id=f"{call_id}:{kind}:{disc}", call_id=call_id, tenant=DOMAIN,
                   node="fs1", kind=kind, started_ms=start, ended_ms=end, duration_ms=end - start,
                   caller=kw.pop("caller", ""), dialed="4008001234")
        for key in ("queue", "agent"):
            if kw.get(key):
                kw[key] = q(kw[key])
        row.update(kw)
        self.segments.append(row)

    def visit(self, call_id: str, queue: str, entered: int, wait_s: float, outcome: str, *,
              agent: str | None = None, caller: str = "", visit: str | None = None,
              ring_s: float = 0, talk: tuple[float, ...] = (), hold_s: float = 0,
              wrap_s: float = 0, disposition: str | None = None) -> None:
        """One queue stay; answered ones get ring, talk (split around one hold) and wrap-up."""
        v = visit or f"{call_id}-v"
        common = dict(visit_id=v, queue_entered_ms=entered, caller=caller, queue=queue)
        self.seg(call_id, "queue", v, entered, wait_s, outcome=outcome, agent=agent, **common)
        if agent is None:
            return
        answer = entered + int(wait_s * 1000)
        self.seg(call_id, "ring", f"{v}:{agent}", answer - int(ring_s * 1000), ring_s,
                 outcome="answered", agent=agent, **common)
        t = answer
        for n, part in enumerate(talk):
            self.seg(call_id, "talk", f"{v}:{n}", t, part, agent=agent,
                     disposition=disposition if n == 0 else None, **common)
            t += int(part * 1000)
            if n == 0 and hold_s:
                self.seg(call_id, "hold", f"{v}:{n}", t, hold_s, agent=agent, **common)
                t += int(hold_s * 1000)
        if wrap_s:
            self.seg(call_id, "wrapup", v, t, wrap_s, agent=agent, **common)

    def status(self, agent: str, kind: str, value: str, start: int, end: int | None) -> None:
        self.intervals.append(dict(
            interval_id=f"{q(agent)}:{kind}:{start}", tenant=DOMAIN, node="fs1", agent=q(agent),
            kind=kind, value=value, reason=None, started_ms=start, ended_ms=end,
            duration_ms=None if end is None else end - start))

    def insert(self, url: str) -> None:
        engine = make_engine(url)
        with engine.begin() as conn:
            for table, rows in ((schema.calls, self.calls), (schema.segments, self.segments),
                                (schema.agent_intervals, self.intervals),
                                (schema.qa_scores, self.qa),
                                (schema.dispositions, self.dispositions)):
                if rows:  # executemany needs the same keys in every row
                    cols = [c.name for c in table.columns if c.name != "id"]
                    conn.execute(insert(table), [{c: r.get(c) for c in cols} for r in rows])
        engine.dispose()


def migrated(url: str) -> str:
    from daemon.storage.store import migrate

    migrate(url)
    return url


def call_data() -> Data:
    """The call dataset of day D, 09:00-10:00 local (plus later repeat calls).

    billing: 10 offered, 7 answered (5 within 20 s), 3 abandoned (1 short, after 8 s):
      b1 5 s 1001, b2 10 s 1001, b3 15 s 1002, b4 20 s 1002, b5 18 s 1003, b6 30 s 1003,
      b7 40 s 1001 then transferred to sales, b8 8 s short, b9 25 s, b10 60 s abandoned.
    sales (SL 30 s, short abandon 10 s): s1 = b7's call, 25 s, answered by 1003;
      s2 waited 15 s, stored 'short-abandon' by an engine using 20 s: with sales' 10 s it is a
      counted abandon; s3 timeout after 30 s.
    """
    d = Data()
    B = "billing"
    d.visit("b1", B, at(D, 9, 1), 5, "answered", agent="1001", caller="A", ring_s=6, talk=(100,),
            wrap_s=10)
    d.visit("b2", B, at(D, 9, 5), 10, "answered", agent="1001", caller="B", ring_s=3,
            talk=(120, 80), hold_s=30, wrap_s=10)
    d.visit("b3", B, at(D, 9, 10), 15, "answered", agent="1002", caller="C", ring_s=12, talk=(60,),
            wrap_s=20)
    d.seg("b3", "ring", "b3-v:1001", at(D, 9, 10), 3, outcome="no-answer", agent="1001",
          queue=B, visit_id="b3-v", queue_entered_ms=at(D, 9, 10))
    d.visit("b4", B, at(D, 9, 15), 20, "answered", agent="1002", caller="D", ring_s=6, talk=(90,),
            wrap_s=20)
    d.visit("b5", B, at(D, 9, 20), 18, "answered", agent="1003", caller="", ring_s=6, talk=(120,),
            wrap_s=5)
    d.visit("b6", B, at(D, 9, 25), 30, "answered", agent="1003", caller="F", ring_s=6,
            talk=(100, 50), hold_s=60, wrap_s=5, disposition="1")
    d.visit("b7", B, at(D, 9, 30), 40, "transferred-out", agent="1001", caller="G", ring_s=6,
            talk=(60,), wrap_s=10, visit="b7-v1")
    d.seg("b7", "transfer", "1", at(D, 9, 31, 40), 0, agent="1001", queue=B, visit_id="b7-v1",
          queue_entered_ms=at(D, 9, 30), transfer_type="blind", target="7002")
    d.visit("b8", B, at(D, 9, 35), 8, "short-abandon", caller="H")
    d.visit("b9", B, at(D, 9, 40), 25, "abandoned", caller="I")
    d.seg("b9", "ring", "b9-v:1002", at(D, 9, 40, 15), 10, outcome="caller-abandoned",
          agent="1002", queue=B, visit_id="b9-v", queue_entered_ms=at(D, 9, 40))
    d.visit("b10", B, at(D, 9, 45), 60, "abandoned", caller="J")
    d.visit("b7", "sales", at(D, 9, 31, 40), 25, "answered", agent="1003", caller="G", ring_s=5,
            talk=(80,), wrap_s=5, visit="b7-v2")
    d.visit("s2", "sales", at(D, 9, 55), 15, "short-abandon", caller="K")
    d.visit("s3", "sales", at(D, 9, 57), 30, "timeout", caller="L")
    for cid, caller, first in (("b1", "A", B), ("b2", "B", B), ("b3", "C", B), ("b4", "D", B),
                               ("b5", "", B), ("b6", "F", B), ("b7", "G", B), ("b8", "H", B),
                               ("b9", "I", B), ("b10", "J", B), ("s2", "K", "sales"),
                               ("s3", "L", "sales")):
        start = next(s["queue_entered_ms"] for s in d.segments
                     if s["call_id"] == cid and s["kind"] == "queue") - 30_000
        d.call(cid, start, "answered", caller, first)
    d.call("i1", at(D, 9, 58), "ivr-only", "M")
    d.call("k1", at(D, 9, 59), "blocked", "N")
    # repeat calls for first-call resolution (no queue: outcome voicemail)
    d.call("rA", at(D + dt.timedelta(days=1), 10, 0), "voicemail", "A")  # A within 72 h
    d.call("rB", at(D + dt.timedelta(days=4), 10, 0), "voicemail", "B")  # B after 96 h
    d.call("rC", at(D, 15, 0), "voicemail", "C")  # C within 72 h
    d.call("rF", at(D, 20, 0), "voicemail", "F")  # F within 72 h
    d.call("rG", at(D + dt.timedelta(days=1), 12, 0), "voicemail", "G")  # 26 h: sales 24 h window
    # surveys: b1 5, b2 4, b3 2, b6 no answer, s1 (b7's sales stay) 3
    for cid, v, ag, score, queue in (("b1", "b1-v", "1001", 5, B), ("b2", "b2-v", "1001", 4, B),
                                     ("b3", "b3-v", "1002", 2, B), ("b6", "b6-v", "1003", None, B),
                                     ("b7", "b7-v2", "1003", 3, "sales")):
        entered = next(s["queue_entered_ms"] for s in d.segments if s.get("visit_id") == v)
        d.seg(cid, "survey", "1", entered + 400_000, 5, agent=ag, queue=queue, visit_id=v,
              queue_entered_ms=entered, score=score)
    d.dispositions += [dict(call_id="b1", agent=q("1001"), code="1", source="phone",
                            entered_ms=at(D, 9, 3)),
                       dict(call_id="b4", agent=q("1002"), code="2", source="cli",
                            entered_ms=at(D, 9, 18))]
    d.qa += [dict(call_id="b1", agent=q("1001"), score=80, scored_by="qa", note=None,
                  scored_ms=at(D + dt.timedelta(days=2), 10, 0)),
             dict(call_id="b2", agent=q("1001"), score=90, scored_by="qa", note=None,
                  scored_ms=at(D + dt.timedelta(days=2), 10, 0)),
             dict(call_id="b3", agent=q("1002"), score=70, scored_by="qa", note="rude",
                  scored_ms=at(D + dt.timedelta(days=2), 10, 0))]
    return d


def run(url: str, interval: str = "1h", by: str = "tenant", start: str = "2026-03-02T09:00",
        end: str = "2026-03-02T10:00", **kw) -> list[dict]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rep = build_report(conn, kw.pop("model", center()),
                               ReportRequest(start, end, interval, by, **kw), now_ms=NOW)
    finally:
        engine.dispose()
    return rep.rows


@pytest.fixture
def calls_db(empty_db_url):
    url = migrated(empty_db_url)
    call_data().insert(url)
    return url


def test_billing_hour_matches_the_worked_example(calls_db):
    rows = run(calls_db, by="queue", queue="billing")
    assert len(rows) == 1
    r = rows[0]
    assert r["interval_start"] == "2026-03-02T09:00:00+08:00"
    assert r["interval_end"] == "2026-03-02T10:00:00+08:00"
    assert (r["offered"], r["answered"], r["abandoned"], r["short_abandoned"]) == (10, 7, 3, 1)
    assert r["service_level"] == pytest.approx(100 * 5 / 9, abs=1e-3)
    assert r["abandon_rate"] == pytest.approx(100 * 2 / 9, abs=1e-3)
    assert r["answered_pct"] == pytest.approx(70.0)
    assert r["asa"] == pytest.approx((5 + 10 + 15 + 20 + 18 + 30 + 40) / 7, abs=1e-3)
    assert r["avg_queue_time"] == pytest.approx((138 + 8 + 25 + 60) / 10, abs=1e-3)
    assert r["avg_abandon_time"] == pytest.approx((8 + 25 + 60) / 3, abs=1e-3)
    assert r["longest_wait"] == pytest.approx(60.0)
    assert r["transfer_rate"] == pytest.approx(100 / 7, abs=1e-3)
    # rings: 6,3,12,6,6,6,6 s of 6 s cycles = 7.5 rings over 7 answered
    assert r["avg_rings"] == pytest.approx(7.5 / 7, abs=1e-3)
    assert r["avg_ring_time"] == pytest.approx(45 / 7, abs=1e-3)
    # calls that started in billing: b1..b10
    assert r["total_calls"] == 10 and r["blocked"] == 0 and r["ivr_only"] == 0
    assert r["queue_placement_rate"] == pytest.approx(100.0)
    # agent-only KPIs are not defined by queue
    assert r["occupancy"] is None and r["adherence"] is None and r["cost_per_call"] is None


def test_sales_thresholds_come_from_the_queue(calls_db):
    r = run(calls_db, by="queue", queue="sales")[0]
    # s1 answered in 25 s (<= 30 s), s2 15 s abandon is long under a 10 s threshold, s3 timeout
    assert (r["offered"], r["answered"], r["abandoned"], r["short_abandoned"]) == (3, 1, 1, 0)
    assert r["service_level"] == pytest.approx(100 / 3, abs=1e-3)
    assert r["abandon_rate"] == pytest.approx(100 / 3, abs=1e-3)
    assert r["answered_pct"] == pytest.approx(100 / 3, abs=1e-3)
    assert r["avg_rings"] == pytest.approx(1.0)  # 5 s ring / 5 s cycle


def test_timeout_stays_offered_neither_answered_nor_abandoned(calls_db):
    rows = drill(calls_db, "answered_pct", queue="sales")
    s3 = [r for r in rows if r["call_id"] == "s3"]
    assert [r["part"] for r in s3] == ["denominator"]


def test_tenant_hour_all_call_kpis(calls_db):
    r = run(calls_db)[0]
    # billing + sales: offered 13 (b7's call counted once in each queue), answered 8
    assert (r["offered"], r["answered"], r["abandoned"], r["short_abandoned"]) == (13, 8, 4, 1)
    assert r["service_level"] == pytest.approx(100 * 6 / 12, abs=1e-3)
    assert r["abandon_rate"] == pytest.approx(100 * 3 / 12, abs=1e-3)
    # handled 8: talk 100+200+60+90+120+150+60+80 = 860, hold 30+60, wrap-up 85
    assert r["avg_talk_time"] == pytest.approx(860 / 8)
    assert r["avg_hold_time"] == pytest.approx(90 / 8)
    assert r["acw"] == pytest.approx(85 / 8)
    assert r["aht"] == pytest.approx(1035 / 8)
    assert r["avg_rings"] == pytest.approx(8.5 / 8)
    # surveys 5, 4, 2, 3 (one unanswered): mean 3.5, satisfied (>= 4) 2 of 4
    assert r["satisfaction"] == pytest.approx(3.5)
    assert r["satisfied_pct"] == pytest.approx(50.0)
    # 14 calls started in the hour: 12 queued, 1 IVR-only, 1 blocked
    assert (r["total_calls"], r["blocked"], r["ivr_only"]) == (14, 1, 1)
    assert r["blocked_rate"] == pytest.approx(100 / 14, abs=1e-3)
    assert r["queue_placement_rate"] == pytest.approx(1200 / 14, abs=1e-3)
    # 700 for day D spread over 24 h: 700/24 in this hour, over 14 calls
    assert r["cost_per_call"] == pytest.approx(700 / 24 / 14, abs=1e-3)
    # QA: 80, 90, 70 -> 80
    assert r["qa_score"] == pytest.approx(80.0)


def test_fcr_uses_repeat_window_and_resolved_dispositions(calls_db):
    # answered with a known number: b1 b2 b3 b4 b6 b7(billing) b7(sales) = 7 (b5 is anonymous)
    # resolved: b1 (disposition 1), b2 (repeat after 96 h), b4 (no repeat; code 2 is not
    # 'resolved'), b6 (talk disposition 1), sales stay (repeat after 26 h > 24 h);
    # not: b3 (repeat after 6 h), billing b7 (repeat after 26 h < 72 h) -> 5/7
    r = run(calls_db)[0]
    assert r["fcr"] == pytest.approx(500 / 7, abs=1e-3)
    rows = drill(calls_db, "fcr")
    assert sorted(r["call_id"] for r in rows if r["part"] == "denominator") == ["b3", "b7"]
    assert sorted(r["call_id"] for r in rows if r["part"] == "both") == [
        "b1", "b2", "b4", "b6", "b7"]


def test_by_agent_and_team(calls_db):
    rows = {r["agent"]: r for r in run(calls_db, by="agent")}
    assert list(rows) == ["1001", "1002", "1003", "1004"]
    a1, a2, a3, a4 = rows["1001"], rows["1002"], rows["1003"], rows["1004"]
    assert (a1["answered"], a2["answered"], a3["answered"], a4["answered"]) == (3, 2, 3, 0)
    assert a1["aht"] == pytest.approx((360 + 30 + 30) / 3, abs=1e-3)
    assert a2["aht"] == pytest.approx((150 + 40) / 2, abs=1e-3)
    assert a3["aht"] == pytest.approx((350 + 60 + 15) / 3, abs=1e-3)
    assert a4["aht"] is None and a4["asa"] is None  # no calls: undefined, not 0
    assert a1["asa"] == pytest.approx(55 / 3, abs=1e-3)
    assert a1["transfer_rate"] == pytest.approx(100 / 3, abs=1e-3)
    assert a1["satisfaction"] == pytest.approx(4.5)
    assert a1["qa_score"] == pytest.approx(85.0) and a2["qa_score"] == pytest.approx(70.0)
    assert a3["qa_score"] is None
    assert a1["offered"] is None  # offered is a queue measure
    teams = {r["team"]: r for r in run(calls_db, by="team")}
    assert list(teams) == ["red", "blue"]
    assert teams["red"]["answered"] == 5
    assert teams["red"]["aht"] == pytest.approx(610 / 5)
    assert teams["blue"]["aht"] == pytest.approx(425 / 3, abs=1e-3)
    assert teams["red"]["qa_score"] == pytest.approx(80.0)


def test_queue_with_no_calls_gets_a_zero_row(calls_db):
    rows = {r["queue"]: r for r in run(calls_db, by="queue")}
    assert set(rows) == {"billing", "sales", "vip", "(none)"}
    vip = rows["vip"]
    assert vip["offered"] == 0 and vip["answered"] == 0 and vip["total_calls"] == 0
    assert vip["service_level"] is None and vip["asa"] is None and vip["abandon_rate"] is None
    # the IVR-only and blocked calls never reached a queue
    assert rows["(none)"]["total_calls"] == 2 and rows["(none)"]["offered"] == 0


def test_day_interval_counts_calls_by_start_and_queue_entry(calls_db):
    r = run(calls_db, interval="day", start="2026-03-02", end="2026-03-02")[0]
    assert r["interval_start"] == "2026-03-02T00:00:00+08:00"
    assert r["offered"] == 13
    # 14 in the hour + the repeat calls of C (15:00) and F (20:00)
    assert r["total_calls"] == 16
    assert r["cost_per_call"] == pytest.approx(700 / 16)


def test_empty_period_gives_zero_rows(calls_db):
    rows = run(calls_db, interval="1h", start="2026-03-04T09:00", end="2026-03-04T12:00")
    assert len(rows) == 3
    for r in rows:
        assert r["offered"] == 0 and r["total_calls"] == 0 and r["answered"] == 0
        assert r["service_level"] is None and r["aht"] is None and r["fcr"] is None


def drill(url: str, kpi_id: str, **kw) -> list[dict]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return drill_calls(conn, center(), ReportRequest(
                "2026-03-02T09:00", "2026-03-02T10:00", **kw), kpi_id, now_ms=NOW)
    finally:
        engine.dispose()


def test_drill_down_lists_numerator_and_denominator_calls(calls_db):
    rows = drill(calls_db, "abandon_rate", queue="billing")
    parts = {r["call_id"]: r["part"] for r in rows}
    # long abandons in both; answered in the denominator only; the short abandon in neither
    assert parts["b9"] == "both" and parts["b10"] == "both"
    assert "b8" not in parts
    assert sorted(c for c, p in parts.items() if p == "denominator") == [
        "b1", "b2", "b3", "b4", "b5", "b6", "b7"]
    asa_rows = drill(calls_db, "asa", queue="billing")
    assert sum(r["value"] for r in asa_rows if r["part"] == "both") == pytest.approx(138)


def test_drill_down_across_sources_lists_both_parts(calls_db):
    rows = drill(calls_db, "aht", agent="1002")
    num = [r for r in rows if r["part"] == "numerator"]
    den = [r for r in rows if r["part"] == "denominator"]
    assert sorted(r["call_id"] for r in den) == ["b3", "b4"]
    assert sum(r["value"] for r in num) == pytest.approx(150 + 40)


# --- agent time: occupancy, calls per hour, adherence, attendance, turnover -----------------


def agent_data() -> Data:
    """Day D. Shifts: 1001 and 1002 09:00-17:00, 1003 13:00-17:00 (1004 starts on 10 March).

    1001: Available 08:50-12:00, On Break 12:00-12:30, Available 12:30-17:30, then Logged Out:
      ready inside the shift 3 h + 4.5 h = 7.5 h of 8 h; logged in 8 h 40 min.
      States: Waiting 09:00-10:00, In a queue call 10:00-10:30, Waiting 10:30-12:00; one call
      entered 09:59:50, talk 10:00-10:20, hold 10:20-10:30, wrap-up 10:30-10:35.
      Occupancy = 1800 s / (1800 s + (3600 + 5400 - 300) s) = 1800/10500.
    1002: Available 10:00-14:00 then Logged Out: ready 4 h of 8 h; logged in 4 h.
    1003: never logs in (4 h scheduled).
    """
    d = Data()
    d.status("1001", "status", "Logged Out", at(D, 0, 0), at(D, 8, 50))
    d.status("1001", "status", "Available", at(D, 8, 50), at(D, 12, 0))
    d.status("1001", "status", "On Break", at(D, 12, 0), at(D, 12, 30))
    d.status("1001", "status", "Available", at(D, 12, 30), at(D, 17, 30))
    d.status("1001", "status", "Logged Out", at(D, 17, 30), None)
    d.status("1001", "state", "Waiting", at(D, 9, 0), at(D, 10, 0))
    d.status("1001", "state", "In a queue call", at(D, 10, 0), at(D, 10, 30))
    d.status("1001", "state", "Waiting", at(D, 10, 30), at(D, 12, 0))
    d.status("1002", "status", "Available", at(D, 10, 0), at(D, 14, 0))
    d.status("1002", "status", "Logged Out", at(D, 14, 0), None)
    d.visit("c1", "billing", at(D, 9, 59, 50), 10, "answered", agent="1001", caller="Z",
            ring_s=5, talk=(1200,), hold_s=600, wrap_s=300)
    d.call("c1", at(D, 9, 59, 0), "answered", "Z", "billing")
    return d


@pytest.fixture
def agents_db(empty_db_url):
    url = migrated(empty_db_url)
    agent_data().insert(url)
    return url


def test_agent_time_kpis_by_agent(agents_db):
    rows = {r["agent"]: r for r in run(agents_db, interval="day", by="agent", start="2026-03-02",
                                       end="2026-03-02")}
    a1, a2, a3 = rows["1001"], rows["1002"], rows["1003"]
    assert a1["adherence"] == pytest.approx(100 * 7.5 / 8)
    assert a2["adherence"] == pytest.approx(50.0)
    assert a3["adherence"] == pytest.approx(0.0)
    assert rows["1004"]["adherence"] is None  # not scheduled: undefined
    assert (a1["attendance"], a2["attendance"], a3["attendance"]) == (100.0, 100.0, 0.0)
    assert a1["occupancy"] == pytest.approx(100 * 1800 / 10500, abs=1e-3)
    assert a1["calls_per_hour"] == pytest.approx(1 / (8 + 40 / 60), abs=1e-4)
    assert a2["calls_per_hour"] == pytest.approx(0.0)
    assert a3["calls_per_hour"] is None  # never logged in


def test_agent_time_kpis_for_the_tenant(agents_db):
    r = run(agents_db, interval="day", start="2026-03-02", end="2026-03-02")[0]
    assert r["adherence"] == pytest.approx(100 * 11.5 / 20)
    assert r["attendance"] == pytest.approx(200 / 3, abs=1e-3)
    assert r["calls_per_hour"] == pytest.approx(1 / (12 + 40 / 60), abs=1e-4)
    team = {x["team"]: x for x in run(agents_db, interval="day", by="team", start="2026-03-02",
                                      end="2026-03-02")}
    assert team["red"]["adherence"] == pytest.approx(100 * 11.5 / 16)
    assert team["blue"]["attendance"] == pytest.approx(0.0)


def test_occupancy_is_clipped_to_the_interval(agents_db):
    rows = run(agents_db, interval="1h", by="agent", agent="1001", start="2026-03-02T09:00",
               end="2026-03-02T11:00")
    # 09-10: waiting only -> 0 %; 10-11: busy 1800 s, waiting 1800 s minus wrap-up 300 s
    assert rows[0]["occupancy"] == pytest.approx(0.0)
    assert rows[1]["occupancy"] == pytest.approx(100 * 1800 / 3300, abs=1e-3)


def test_turnover_over_a_month(agents_db):
    r = run(agents_db, interval="month", start="2026-03-01", end="2026-03-31")[0]
    # 1002 leaves after 15 March; headcount 1 March: 1001 1002 1003 = 3, 31 March: 1001 1003
    # 1004 = 3 -> 1 / 3
    assert r["interval_start"] == "2026-03-01T00:00:00+08:00"
    assert r["turnover"] == pytest.approx(100 / 3, abs=1e-3)
    rows = {x["team"]: x for x in run(agents_db, interval="month", by="team",
                                      start="2026-03-01", end="2026-03-31")}
    assert rows["red"]["turnover"] == pytest.approx(100 / 1.5, abs=1e-3)
    assert rows["blue"]["turnover"] == pytest.approx(0.0)


# --- intervals and time zones ------------------------------------------------------------


def boundary_data() -> Data:
    """Queue entries at local times chosen to sit on interval edges (Asia/Shanghai)."""
    d = Data()
    times = [at(D, 9, 7), at(D, 9, 20), at(D, 9, 44, 59, 999), at(D, 9, 45), at(D, 10, 10),
             at(D, 23, 59, 59),  # 15:59:59 UTC: local day D
             at(D + dt.timedelta(days=1), 0, 0, 30),  # 16:00:30 UTC on D: local day D+1
             at(dt.date(2026, 3, 9), 12, 0),  # next week
             at(dt.date(2026, 3, 31), 23, 59, 59),  # last second of March, local
             at(dt.date(2026, 4, 1), 0, 0)]  # first instant of April, local
    for n, t in enumerate(times):
        d.visit(f"x{n}", "billing", t, 5, "abandoned" if n % 2 else "short-abandon", caller=str(n))
        d.call(f"x{n}", t - 10_000, "abandoned", str(n), "billing")
    return d


@pytest.fixture
def boundary_db(empty_db_url):
    url = migrated(empty_db_url)
    boundary_data().insert(url)
    return url


SIZES = [
    ("15m", "2026-03-02T09:00", "2026-03-02T10:15", [1, 1, 1, 1, 1]),
    ("30m", "2026-03-02T09:00", "2026-03-02T10:30", [2, 2, 1]),
    ("1h", "2026-03-02T09:00", "2026-03-02T11:00", [4, 1]),
    ("day", "2026-03-02", "2026-03-04", [6, 1, 0]),
    ("week", "2026-03-02", "2026-03-15", [7, 1]),
    ("month", "2026-03-01", "2026-04-30", [9, 1]),
]


def test_every_interval_size(boundary_db):
    # 09:44:59.999 and 09:45:00 fall on either side of a quarter-hour edge; 31 March
    # 23:59:59 and 1 April 00:00 on either side of a month edge
    for size, start, end, expected in SIZES:
        rows = run(boundary_db, interval=size, start=start, end=end, kpis=("offered",))
        assert [r["offered"] for r in rows] == expected, size


def test_call_at_235959_local_lands_in_that_local_day(boundary_db):
    rows = run(boundary_db, interval="day", start="2026-03-02", end="2026-03-03",
               kpis=("offered", "total_calls"))
    assert [(r["interval_start"], r["offered"]) for r in rows] == [
        ("2026-03-02T00:00:00+08:00", 6), ("2026-03-03T00:00:00+08:00", 1)]
    # the same data in UTC days would put the 00:00:30 call on 2 March
    utc = center(timezone="UTC")
    rows = run(boundary_db, interval="day", start="2026-03-02", end="2026-03-02",
               kpis=("offered",), model=utc)
    assert rows[0]["interval_start"] == "2026-03-02T00:00:00+00:00" and rows[0]["offered"] == 7


def test_fifteen_minute_day_has_96_rows_with_zeros(boundary_db):
    rows = run(boundary_db, interval="15m", start="2026-03-02", end="2026-03-02",
               kpis=("offered", "service_level"))
    assert len(rows) == 96
    assert sum(r["offered"] for r in rows) == 6
    assert rows[0]["offered"] == 0 and rows[0]["service_level"] is None
    assert rows[-1]["interval_start"] == "2026-03-02T23:45:00+08:00" and rows[-1]["offered"] == 1


def test_intervals_are_dst_safe():
    # Europe/Berlin 2026-03-29: 02:00 -> 03:00; 2026-10-25: 03:00 -> 02:00
    tz = "Europe/Berlin"
    spring = intervals(local_ms(dt.date(2026, 3, 29), dt.time(0), tz),
                       local_ms(dt.date(2026, 3, 30), dt.time(0), tz), "1h", tz)
    assert len(spring) == 23
    assert [iv.start.strftime("%H") for iv in spring[:3]] == ["00", "01", "03"]
    autumn = intervals(local_ms(dt.date(2026, 10, 25), dt.time(0), tz),
                       local_ms(dt.date(2026, 10, 26), dt.time(0), tz), "15m", tz)
    assert len(autumn) == 100
    days = intervals(local_ms(dt.date(2026, 10, 24), dt.time(0), tz),
                     local_ms(dt.date(2026, 10, 27), dt.time(0), tz), "day", tz)
    assert [iv.end_ms - iv.start_ms for iv in days] == [86400_000, 90000_000, 86400_000]
    weeks = intervals(local_ms(dt.date(2026, 10, 21), dt.time(12), tz),
                      local_ms(dt.date(2026, 10, 22), dt.time(0), tz), "week", tz)
    assert [iv.start.isoformat() for iv in weeks] == ["2026-10-19T00:00:00+02:00"]
    assert weeks[0].end.isoformat() == "2026-10-26T00:00:00+01:00"
    months = intervals(local_ms(dt.date(2026, 12, 5), dt.time(0), tz),
                       local_ms(dt.date(2027, 1, 5), dt.time(0), tz), "month", tz)
    assert [iv.start.date().isoformat() for iv in months] == ["2026-12-01", "2027-01-01"]


def test_every_kpi_has_a_unit_title_and_definition():
    for k in K.KPIS.values():
        assert k.title and k.unit and k.doc, k.id
    issue_ids = {"adherence", "acw", "avg_abandon_time", "cost_per_call", "aht", "avg_hold_time",
                 "avg_rings", "avg_queue_time", "asa", "avg_talk_time", "calls_per_hour",
                 "qa_score", "occupancy", "abandon_rate", "attendance", "blocked_rate", "fcr",
                 "queue_placement_rate", "transfer_rate", "answered_pct", "service_level",
                 "total_calls", "turnover", "offered", "answered", "abandoned",
                 "short_abandoned", "blocked", "ivr_only", "satisfaction", "longest_wait"}
    assert issue_ids <= set(K.KPIS)
