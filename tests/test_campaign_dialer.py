"""The campaign dialer against the ESL test peer: outcomes become attempts and retries, a
restart dials no one twice, two dialers on one database -> one dials. SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from pathlib import Path

import gevent
import pytest
from sqlalchemy import select

from daemon.definition.config import load_center
from daemon.storage import campaigns as cs
from daemon.storage.schema import campaign_attempts, campaign_contacts
from daemon.storage.store import make_engine, migrate
from daemon.switch.campaign_dialer import (
    SUBSCRIBE,
    CampaignDialer,
    attempt_result,
    cause_result,
    originate_command,
)
from daemon.switch.esl import EslConnection
from tests.eslpeer import EslPeer, Originator, Outcome

REPO = Path(__file__).resolve().parent.parent
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
# Tuesday 2026-12-08 10:00 in Shanghai: inside the revisit's hours and the business schedule
TUESDAY_10 = dt.datetime(2026, 12, 8, 10, 0, tzinfo=SHANGHAI).timestamp()
EVENTS = list(SUBSCRIBE)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def center():
    return load_center(REPO / "config", env={})


@pytest.fixture
def engine(empty_db_url):
    migrate(empty_db_url)
    eng = make_engine(empty_db_url)
    yield eng
    eng.dispose()


def billing_agents_waiting(center) -> dict:
    city = center.tenant("cityutil")
    from daemon.switch.dialer import queue_agents

    names = [n for *_, n in queue_agents(center)[city.qualified("billing")]]
    return {"agents": {n: {"status": "Available", "state": "Waiting", "since_ms": i}
                       for i, n in enumerate(names)}}


OUTCOMES = {"13800138001": Outcome("answer"), "13800138002": Outcome("busy"),
            "13800138003": Outcome("no_answer"),
            "02161234567": Outcome("failure", channel=False, cause="NORMAL_TEMPORARY_FAILURE")}


def start_dialer(peer, engine, center, clock, owner):
    holder: dict = {}
    conn = EslConnection(peer.host, peer.port, "ClueCon", 5.0,
                         on_event=lambda e: holder["d"].on_event(e)).connect()
    conn.subscribe(EVENTS)
    snap = billing_agents_waiting(center)
    holder["d"] = CampaignDialer(engine, center, conn, lambda: snap, node="fs1", owner=owner,
                                 clock=clock)
    return holder["d"], conn


def wait_until(cond, timeout=5.0):
    with gevent.Timeout(timeout, AssertionError("condition not met in time")):
        while not cond():
            gevent.sleep(0.02)


def state(engine):
    c = campaign_contacts.c
    with engine.connect() as conn:
        return {r.number: (r.status, r.attempts, r.last_result, r.next_ms) for r in conn.execute(
            select(c.number, c.status, c.attempts, c.last_result, c.next_ms)
            .where(c.campaign == "revisit"))}


def load_revisit(engine, center):
    city = center.tenant("cityutil")
    cs.import_contacts(engine, city, city.campaign("revisit"),
                       (REPO / "config/cityutil/contacts/revisit.csv").read_text("utf-8"),
                       "revisit.csv")
    cs.set_run_state(engine, "cityutil", "revisit", "running")


# ---- pure pieces -------------------------------------------------------------------------
def test_hangup_causes_map_to_the_retry_results():
    assert [cause_result(c) for c in ("USER_BUSY", "NO_ANSWER", "NO_USER_RESPONSE",
                                      "CALL_REJECTED", "NORMAL_TEMPORARY_FAILURE")] == \
        ["busy", "no_answer", "no_answer", "failed", "failed"]
    assert attempt_result("progressive", answered_ms=5, bridged_ms=None, cause="") == "abandoned"
    assert attempt_result("progressive", answered_ms=5, bridged_ms=6, cause="") == "connected"
    assert attempt_result("notice", answered_ms=5, bridged_ms=None, cause="",
                          opted_out=True) == "optout"


def test_originate_strings_per_campaign_type(center):
    city = center.tenant("cityutil")
    contact = cs.Claimed(7, "cityutil", "outage_notice", "+8613900139001", "陈静", 0,
                         {"district": "minhang", "date": "2026-12-08"})
    notice = originate_command(city, city.campaign("outage_notice"), contact, "u-1", "d1", None)
    assert notice.startswith("{origination_uuid=u-1,hotline_campaign=outage_notice,")
    assert "hotline_notice_optout_9=true" in notice
    assert "hotline_notice_go_1=hotline-queue-outage_water XML hotline.cityutil.cn" in notice
    assert ("}loopback/13900139001/hotline.cityutil.cn 'play_and_get_digits:1 1 1 5000 # "
            "file_string://cityutil/notice-intro.wav!cityutil/district-minhang.wav!"
            "cityutil/outage-on.wav!cityutil/date-2026-12-08.wav!") in notice
    assert notice.endswith(" silence_stream://250 hotline_notice_digit \\d,"
                           "set:hotline_optout=${hotline_notice_optout_${hotline_notice_digit}},"
                           "transfer:${hotline_notice_go_${hotline_notice_digit}}' inline")
    revisit = originate_command(city, city.campaign("revisit"), contact, "u-2", "d1",
                                "1001@hotline.cityutil.cn")
    assert revisit.endswith("loopback/13900139001/hotline.cityutil.cn hotline-queue-billing XML "
                            "hotline.cityutil.cn")
    assert "origination_caller_id_number=96116" in revisit and "originate_timeout=30" in revisit


# ---- against the peer ----------------------------------------------------------------------
def test_a_round_dials_each_due_contact_once_and_results_become_retries(engine, center):
    load_revisit(engine, center)
    clock = Clock(TUESDAY_10)
    with EslPeer() as peer:
        peer.originator = Originator(peer, lambda number, line: OUTCOMES[number])
        dialer, conn = start_dialer(peer, engine, center, clock, "d1")
        try:
            out = dialer.tick()
            assert out == [{"campaign": "revisit", "dialed": 4, "reason": "4/4 calls up"}] or \
                out[0]["dialed"] == 4, out
            wait_until(lambda: not dialer.in_flight)
            t0 = int(TUESDAY_10 * 1000)
            got = state(engine)
            assert {k: v[:3] for k, v in got.items()} == {
                "+8613800138001": ("done", 1, "connected"),
                "+8613800138002": ("pending", 1, "busy"),
                "+8613800138003": ("pending", 1, "no_answer"),
                "+862161234567": ("pending", 1, "failed")}
            assert got["+8613800138002"][3] == t0 + 900_000  # busy: 15 min
            assert got["+862161234567"][3] == t0 + 7_200_000  # failed: 2 h
            assert dialer.tick()[0]["dialed"] == 0  # nothing due yet
            clock.t += 900
            assert dialer.tick()[0]["dialed"] == 1  # the busy one, once
            wait_until(lambda: not dialer.in_flight)
            assert state(engine)["+8613800138002"][:3] == ("pending", 2, "busy")
            numbers = [n for _, n, _ in peer.originator.calls]
            assert sorted(numbers) == sorted(["13800138001", "13800138002", "13800138003",
                                              "02161234567", "13800138002"])
            a = campaign_attempts.c
            with engine.connect() as db:
                causes = dict(db.execute(select(a.number, a.cause).where(a.attempt == 1)).all())
            assert causes["+8613800138002"] == "USER_BUSY"
            assert causes["+862161234567"] == "NORMAL_TEMPORARY_FAILURE"
        finally:
            dialer.lock.release()
            conn.close()


def test_nothing_is_dialed_at_night_or_on_a_holiday(engine, center):
    load_revisit(engine, center)
    for moment in (dt.datetime(2026, 12, 8, 22, 30, tzinfo=SHANGHAI),
                   dt.datetime(2026, 10, 2, 10, 0, tzinfo=SHANGHAI)):  # National Day
        with EslPeer() as peer:
            peer.originator = Originator(peer, lambda number, line: OUTCOMES[number])
            dialer, conn = start_dialer(peer, engine, center, Clock(moment.timestamp()), "d1")
            try:
                out = dialer.tick()
                assert out[0]["dialed"] == 0 and "window" in out[0]["reason"], out
                assert peer.originator.calls == []
            finally:
                dialer.lock.release()
                conn.close()


def test_a_slow_agent_is_an_abandon_and_the_contact_is_called_again(engine, center):
    load_revisit(engine, center)
    slow = {n: Outcome("answer", bridge_after_s=None) for n in OUTCOMES}
    with EslPeer() as peer:
        peer.originator = Originator(peer, lambda number, line: slow[number])
        dialer, conn = start_dialer(peer, engine, center, Clock(TUESDAY_10), "d1")
        try:
            dialer.tick()
            wait_until(lambda: not dialer.in_flight)
            assert {v[2] for v in state(engine).values()} == {"abandoned"}
            assert {v[0] for v in state(engine).values()} == {"pending"}
        finally:
            dialer.lock.release()
            conn.close()


def test_restart_mid_campaign_calls_up_are_left_alone_and_no_one_is_dialed_twice(engine, center):
    load_revisit(engine, center)
    long_call = {n: Outcome("answer", ring_s=0.05, talk_s=30) for n in OUTCOMES}
    with EslPeer() as peer:
        peer.originator = Originator(peer, lambda number, line: long_call[number])
        first, conn1 = start_dialer(peer, engine, center, Clock(TUESDAY_10), "d1")
        first.tick()
        wait_until(lambda: len(peer.originator.calls) == 4)
        up = [u for u, _, _ in peer.originator.calls]
        # the first daemon dies: its lock goes, its calls stay up on the switch
        first.lock.release()
        conn1.close()
        peer.script("api show channels as json", json.dumps(
            {"row_count": 4, "rows": [{"uuid": u} for u in up]}))
        second, conn2 = start_dialer(peer, engine, center, Clock(TUESDAY_10 + 60), "d2")
        try:
            assert second.tick()[0]["dialed"] == 0
            assert len(peer.originator.calls) == 4  # nobody dialed twice
            assert {v[0] for v in state(engine).values()} == {"dialing"}
            # the new dialer follows the calls it found up to their end
            assert sorted(second.in_flight) == sorted(up)
            for u in up:
                peer.send_event({"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": u,
                                 "Hangup-Cause": "NORMAL_CLEARING",
                                 "Caller-Channel-Answered-Time": 1796000000000000,
                                 "Caller-Channel-Bridged-Time": 1796000000500000})
            wait_until(lambda: not second.in_flight)
            assert {v[:3] for v in state(engine).values()} == {("done", 1, "connected")}
        finally:
            second.lock.release()
            conn2.close()


def test_two_dialers_on_one_database_one_dials(engine, center):
    load_revisit(engine, center)
    with EslPeer() as peer:
        peer.originator = Originator(peer, lambda number, line: OUTCOMES[number])
        a, conn_a = start_dialer(peer, engine, center, Clock(TUESDAY_10), "d1")
        b, conn_b = start_dialer(peer, engine, center, Clock(TUESDAY_10), "d2")
        try:
            assert a.tick()[0]["dialed"] == 4
            assert b.tick() == []  # not the leader
            wait_until(lambda: not a.in_flight)
            a.lock.release()
            assert b.tick() != []  # takes over once the first lets go
        finally:
            a.lock.release()
            b.lock.release()
            conn_a.close()
            conn_b.close()


def test_the_agent_the_queue_bridged_is_the_attempts_agent(engine, center):
    load_revisit(engine, center)
    queued = {n: Outcome("answer", bridge_after_s=None, talk_s=0.4) for n in OUTCOMES}
    with EslPeer() as peer:
        peer.originator = Originator(peer, lambda number, line: queued[number])
        dialer, conn = start_dialer(peer, engine, center, Clock(TUESDAY_10), "d1")
        try:
            dialer.tick()
            wait_until(lambda: dialer.in_flight and all(
                f.answered_ms for f in dialer.in_flight.values()))
            for call_id in list(dialer.in_flight):
                # what mod_callcenter says when it bridges the member to an agent
                peer.send_event({"Event-Name": "CUSTOM", "Event-Subclass": "callcenter::info",
                                 "CC-Action": "bridge-agent-start",
                                 "CC-Agent": "1002@hotline.cityutil.cn",
                                 "CC-Member-Session-UUID": call_id,
                                 "Event-Date-Timestamp": "1796000000000000"})
            wait_until(lambda: not dialer.in_flight)
            a = campaign_attempts.c
            with engine.connect() as db:
                rows = db.execute(select(a.agent, a.result)).all()
            assert set(rows) == {("1002@hotline.cityutil.cn", "connected")}
        finally:
            dialer.lock.release()
            conn.close()


def test_a_notice_contact_pressing_the_optout_key_goes_on_the_dnc_list(engine, center):
    city = center.tenant("cityutil")
    cs.import_contacts(engine, city, city.campaign("outage_notice"),
                       (REPO / "config/cityutil/contacts/outage.csv").read_text("utf-8"),
                       "outage.csv")
    cs.set_run_state(engine, "cityutil", "outage_notice", "running")
    # 13900139002 presses 9: the dialplan sets hotline_optout=true on the channel
    outcomes = {"13900139001": Outcome("answer", bridge_after_s=None),
                "13900139002": Outcome("answer", bridge_after_s=None,
                                       variables=(("hotline_optout", "true"),)),
                "13900139003": Outcome("busy")}
    with EslPeer() as peer:
        peer.originator = Originator(peer, lambda number, line: outcomes[number])
        dialer, conn = start_dialer(peer, engine, center, Clock(TUESDAY_10), "d1")
        try:
            assert dialer.tick()[0]["dialed"] == 3
            wait_until(lambda: not dialer.in_flight)
            c = campaign_contacts.c
            with engine.connect() as db:
                got = dict(db.execute(select(c.number, c.status)
                                      .where(c.campaign == "outage_notice")).all())
            assert got == {"+8613900139001": "done", "+8613900139002": "optout",
                           "+8613900139003": "pending"}
            assert [r["number"] for r in cs.dnc_list(engine, "cityutil")] == ["+8613900139002"]
        finally:
            dialer.lock.release()
            conn.close()
