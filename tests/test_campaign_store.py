"""Campaign state in the database: CSV import, do-not-call, claims, attempts and restarts.
Every test runs on SQLite and on PostgreSQL."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.definition.config import load_center
from daemon.storage import campaigns as cs
from daemon.storage.schema import campaign_attempts, campaign_contacts
from daemon.storage.store import make_engine, migrate

REPO = Path(__file__).resolve().parent.parent
T0 = 1_796_000_000_000  # a moment in ms


@pytest.fixture(scope="module")
def city():
    return load_center(REPO / "config", env={}).tenant("cityutil")


@pytest.fixture
def engine(empty_db_url):
    migrate(empty_db_url)
    eng = make_engine(empty_db_url)
    yield eng
    eng.dispose()


REVISIT_CSV = (REPO / "config/cityutil/contacts/revisit.csv").read_text(encoding="utf-8")


def contacts(engine, campaign="revisit"):
    c = campaign_contacts.c
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(c.id, c.number, c.name, c.status, c.attempts, c.next_ms, c.fields)
            .where(c.campaign == campaign).order_by(c.id))]


def test_import_normalises_numbers_and_a_reimport_changes_nothing_but_names(engine, city):
    revisit = city.campaign("revisit")
    got = cs.import_contacts(engine, city, revisit, REVISIT_CSV, "revisit.csv", at_ms=T0)
    assert (got.rows, got.inserted, got.updated) == (4, 4, 0)
    rows = contacts(engine)
    assert [r["number"] for r in rows] == ["+8613800138001", "+8613800138002", "+8613800138003",
                                           "+862161234567"]
    assert '"work_order": "WO-2026-1201"' in rows[0]["fields"]
    again = cs.import_contacts(engine, city, revisit, REVISIT_CSV.replace("王伟", "王 伟"),
                               "revisit.csv", at_ms=T0 + 1)
    assert (again.inserted, again.updated) == (0, 4)
    assert [r["id"] for r in contacts(engine)] == [r["id"] for r in rows]
    assert contacts(engine)[0]["name"] == "王 伟"


def test_a_csv_with_bad_rows_lists_every_one_with_its_line_and_writes_nothing(engine, city):
    bad = ("number,name,external_id,work_order,district\n"
           "13800138001,A,WO-1,WO-1,xuhui\n"
           "not-a-number,B,WO-2,WO-2,xuhui\n"
           "13800138003,C,WO-3,,xuhui\n"
           "13800138004,D,WO-1,WO-4,xuhui\n"
           "13800138005,E,WO-5,WO-5\n")
    with pytest.raises(cs.ImportErrors) as info:
        cs.import_contacts(engine, city, city.campaign("revisit"), bad, "bad.csv", at_ms=T0)
    assert info.value.errors == [
        "bad.csv:3: 'not-a-number' is not a phone number (The string supplied did not seem to "
        "be a phone number.)",
        "bad.csv:4: empty field(s) work_order",
        "bad.csv:5: external_id WO-1 is already on line 2",
        "bad.csv:6: 4 values for 5 columns",
    ]
    assert contacts(engine) == []


def test_a_header_without_the_campaign_fields_is_refused(engine, city):
    with pytest.raises(cs.ImportErrors) as info:
        cs.import_contacts(engine, city, city.campaign("revisit"), "number,colour\n1380013800\n",
                           "h.csv", at_ms=T0)
    assert info.value.errors[0].startswith("h.csv:1: the header lacks work_order, district")
    assert info.value.errors[1].startswith("h.csv:1: unknown column(s) colour")


def test_dnc_numbers_are_never_claimed_however_they_were_written(engine, city):
    revisit = city.campaign("revisit")
    added, errs = cs.dnc_add(engine, city, ["0086 138 0013 8002"], reason="asked", at_ms=T0)
    assert (added, errs) == (1, [])
    cs.import_contacts(engine, city, revisit, REVISIT_CSV, "revisit.csv", at_ms=T0)
    # a number put on the list after the import is taken off too
    cs.dnc_add(engine, city, ["021-61234567"], at_ms=T0)
    with engine.begin() as conn:
        got = cs.claim_batch(conn, "cityutil", "revisit", 10, "d1", T0 + 5)
    assert [c.number for c in got] == ["+8613800138001", "+8613800138003"]
    assert [r["status"] for r in contacts(engine)] == ["dialing", "dnc", "dialing", "dnc"]
    assert [r["number"] for r in cs.dnc_list(engine, "cityutil")] == ["+8613800138002",
                                                                       "+862161234567"]


def test_retries_follow_the_delay_per_result_until_max_attempts(engine, city):
    revisit = city.campaign("revisit")  # busy 900 s, no_answer 3600 s, 3 attempts
    cs.import_contacts(engine, city, revisit, REVISIT_CSV.splitlines()[0] + "\n"
                       + REVISIT_CSV.splitlines()[1] + "\n", "one.csv", at_ms=T0)
    now = T0
    results = []
    for result in ("busy", "no_answer", "busy"):
        with engine.begin() as conn:
            (c,) = cs.claim_batch(conn, "cityutil", "revisit", 5, "d1", now)
            aid = cs.begin_attempt(conn, c, f"call-{c.attempts}", "fs1", now)
            assert cs.claim_batch(conn, "cityutil", "revisit", 5, "d1", now) == []
        nxt = cs.finish_attempt(engine, city, revisit, aid, result, at_ms=now + 20_000)
        results.append((nxt.status, nxt.next_ms - now - 20_000))
        with engine.begin() as conn:  # not due before its retry time
            assert cs.claim_batch(conn, "cityutil", "revisit", 5, "d1", nxt.next_ms - 1) == []
        now = nxt.next_ms
    assert results == [("pending", 900_000), ("pending", 3_600_000), ("finished", 0)]
    a = campaign_attempts.c
    with engine.connect() as conn:
        assert conn.execute(select(a.attempt_id, a.result).order_by(a.attempt)).all() == [
            ("1:1", "busy"), ("1:2", "no_answer"), ("1:3", "busy")]


def test_an_optout_puts_the_number_on_the_tenants_list_for_every_campaign(engine, city):
    notice = city.campaign("outage_notice")
    outage = (REPO / "config/cityutil/contacts/outage.csv").read_text(encoding="utf-8")
    cs.import_contacts(engine, city, notice, outage, "outage.csv", at_ms=T0)
    cs.import_contacts(engine, city, city.campaign("revisit"),
                       "number,work_order,district\n13900139001,WO-9,minhang\n", "r.csv",
                       at_ms=T0)
    with engine.begin() as conn:
        first = cs.claim_batch(conn, "cityutil", "outage_notice", 1, "d1", T0)[0]
        aid = cs.begin_attempt(conn, first, "call-1", "fs1", T0)
    assert cs.finish_attempt(engine, city, notice, aid, "optout", at_ms=T0 + 30_000).status \
        == "optout"
    assert [r["number"] for r in cs.dnc_list(engine, "cityutil")] == ["+8613900139001"]
    assert [r["status"] for r in contacts(engine, "revisit")] == ["dnc"]


def test_restart_mid_campaign_dials_no_one_twice_and_skips_no_one(engine, city):
    revisit = city.campaign("revisit")
    cs.import_contacts(engine, city, revisit, REVISIT_CSV, "revisit.csv", at_ms=T0)
    # dialer 1 claims three, writes attempts for two (one call still up, one ended
    # unseen), then dies before it dialed the third
    with engine.begin() as conn:
        a, b, c = cs.claim_batch(conn, "cityutil", "revisit", 3, "d1", T0)
        cs.begin_attempt(conn, a, "call-a", "fs1", T0)
        cs.begin_attempt(conn, b, "call-b", "fs1", T0)
    # dialer 2 starts a minute later: recovers, then claims what is due
    out, live = cs.recover(engine, city, revisit, older_than_ms=T0 + 1, at_ms=T0 + 60_000,
                           live_calls=frozenset({"call-a"}))
    assert out == {"released": 1, "lost": 1, "live": 1}
    assert [s.call_id for s in live] == ["call-a"]
    with engine.begin() as conn:
        got = cs.claim_batch(conn, "cityutil", "revisit", 10, "d2", T0 + 60_000)
    # c (never dialed) and the untouched fourth are dialed now; a is still up, b waits for
    # its retry (its attempt counts as lost)
    assert sorted(x.id for x in got) == sorted([c.id, contacts(engine)[3]["id"]])
    rows = {r["id"]: r for r in contacts(engine)}
    assert rows[a.id]["status"] == "dialing" and rows[b.id]["status"] == "pending"
    assert rows[b.id]["attempts"] == 1 and rows[b.id]["next_ms"] == T0 + 60_000 + 7_200_000
    assert rows[c.id]["attempts"] == 0


def test_two_dialers_claiming_at_once_get_each_contact_exactly_once(engine, city):
    revisit = city.campaign("revisit")
    lines = ["number,external_id,work_order,district"]
    lines += [f"1390000{i:04d},E{i},W{i},d" for i in range(600)]
    cs.import_contacts(engine, city, revisit, "\n".join(lines) + "\n", "many.csv", at_ms=T0)
    claimed: dict[str, list[int]] = {"d1": [], "d2": []}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def dialer(owner: str) -> None:
        try:
            barrier.wait()
            while True:
                with engine.begin() as conn:
                    got = cs.claim_batch(conn, "cityutil", "revisit", 7, owner, T0)
                if not got:
                    return
                claimed[owner] += [g.id for g in got]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=dialer, args=(o,)) for o in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    everyone = claimed["d1"] + claimed["d2"]
    assert len(everyone) == len(set(everyone)) == 600
    assert claimed["d1"] and claimed["d2"]  # both really worked
