"""Callbacks without Redis: the callback dialer keeps its requests and its lock in the
database (SQLite and PostgreSQL) and dials exactly as with Redis - place kept, nothing twice,
one dialer among two daemons."""
from __future__ import annotations

from daemon.storage.callbacks import SqlCallbackStore
from daemon.switch.dialer import CallbackDialer, CallbackRequest
from tests.test_dialer import T0, center, conns, request_event, snap, switch  # noqa: F401


def make(url, center, conns, state, owner, **kw) -> CallbackDialer:  # noqa: F811
    return CallbackDialer("", center, conns, lambda: state["snap"], owner=owner,
                          default_node="n1", store=SqlCallbackStore(url, CallbackRequest), **kw)


def test_a_request_is_stored_once_and_dialed_once_with_its_place_kept(
        empty_db_url, center, conns, switch):  # noqa: F811
    state = {"snap": snap(waiting=[T0 - 1_000])}
    d = make(empty_db_url, center, conns, state, "A")
    assert d.on_event(request_event()) is True
    assert d.on_event(request_event()) is False  # a second daemon saw the same event
    assert d.tick(T0 + 60_000) == []  # a caller who joined earlier still waits
    state["snap"] = snap(waiting=[T0 + 5_000])
    assert d.tick(T0 + 61_000) == [{"call_id": "call-1", "agent": "1001@hotline.test",
                                    "outcome": "connected", "attempt": 1}]
    assert d.store.open_requests() == []
    assert d.store.get("call-1").status == "connected"
    assert d.tick(T0 + 999_000) == []  # never dialed twice
    d.close()


def test_retries_back_off_then_the_outcome_is_no_answer(empty_db_url, center, conns, switch):  # noqa: F811
    state = {"snap": snap()}
    d = make(empty_db_url, center, conns, state, "A", max_attempts=2, retry_base_s=60)
    d.on_event(request_event())
    switch.customer_replies = ["-ERR NO_ANSWER"] * 2
    assert d.tick(T0 + 1_000)[0]["outcome"] == "retry"
    assert d.tick(T0 + 60_999) == []
    assert d.tick(T0 + 61_000)[0]["outcome"] == "no-answer"
    d.close()


def test_two_daemons_one_dials(empty_db_url, center, conns, switch):  # noqa: F811
    state = {"snap": snap()}
    a = make(empty_db_url, center, conns, state, "A")
    b = make(empty_db_url, center, conns, state, "B")
    a.on_event(request_event())
    b.on_event(request_event())
    assert b.is_leader() is True  # b asks first and leads
    assert a.tick(T0 + 1_000) == []
    assert [r["outcome"] for r in b.tick(T0 + 1_000)] == ["connected"]
    b.close()
    assert a.is_leader() is True  # the lock went with b
    a.close()

