"""The callback dialer: which request is due (pure), then dialing through the ESL test peer
with the real Redis (place kept, retries, one dialer among two daemons, nothing twice)."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from daemon.definition.config import load_center
from daemon.switch.dialer import (
    CallbackDialer,
    CallbackRequest,
    available_agents,
    due_requests,
    queue_agents,
)
from daemon.switch.esl import EslConnection
from daemon.switch.events import Event
from tests.test_control import RecordingPeer

REPO = Path(__file__).resolve().parent.parent
Q = "billing@hotline.test"
T0 = 1_800_000_000_000  # ms


def req(call_id: str, joined: int, queue: str = Q, **kw) -> CallbackRequest:
    return CallbackRequest(call_id, queue, "13900000000", joined, **kw)


# --- the decision ------------------------------------------------------------------------------

def test_request_waits_while_a_caller_who_joined_earlier_is_still_waiting():
    r = req("cb", T0)
    free = {Q: ["1001@hotline.test"]}
    assert due_requests([r], {Q: [T0 - 5_000, T0 + 9_000]}, free, T0 + 60_000) == []
    due = due_requests([r], {Q: [T0 + 9_000]}, {Q: ["1001@hotline.test"]}, T0 + 60_000)
    assert [(a.request.call_id, a.agent) for a in due] == [("cb", "1001@hotline.test")]


def test_request_needs_a_free_agent_of_its_queue():
    assert due_requests([req("cb", T0)], {}, {Q: [], "sales@hotline.test": ["1004@hotline.test"]},
                        T0) == []


def test_requests_go_in_joined_order_with_distinct_agents_and_never_overtake():
    a, b, c = req("a", T0 + 2), req("b", T0 + 1), req("c", T0 + 3)
    due = due_requests([a, b, c], {}, {Q: ["x", "y"]}, T0 + 10)
    assert [(d.request.call_id, d.agent) for d in due] == [("b", "x"), ("a", "y")]
    # an earlier request with no agent blocks later ones of the same queue only
    other = req("o", T0 + 5, queue="sales@hotline.test")
    due = due_requests([b, other], {}, {Q: [], "sales@hotline.test": ["z"]}, T0 + 10)
    assert [d.request.call_id for d in due] == ["o"]


def test_request_in_backoff_or_not_pending_is_not_due():
    waiting = req("w", T0, next_ms=T0 + 60_000)
    dialing = req("d", T0, status="dialing")
    assert due_requests([waiting, dialing], {}, {Q: ["x", "y"]}, T0 + 59_999) == []
    due = due_requests([waiting], {}, {Q: ["x"]}, T0 + 60_000)
    assert [d.request.call_id for d in due] == ["w"]


def test_available_agents_are_free_agents_of_the_queue_lowest_level_first():
    snap = {"agents": {
        "1001@hotline.test": {"status": "Available", "state": "Waiting", "since_ms": 50},
        "1002@hotline.test": {"status": "Available", "state": "Waiting", "since_ms": 10},
        "1003@hotline.test": {"status": "On Break", "state": "Waiting"},
        "1004@hotline.test": {"status": "Available (On Demand)", "state": "Waiting", "since_ms": 1},
        "1005@hotline.test": {"status": "Available", "state": "In a queue call"},
    }}
    tiers = {Q: [(1, 1, "1001@hotline.test"), (1, 2, "1002@hotline.test"),
                 (1, 3, "1003@hotline.test"), (2, 1, "1004@hotline.test"),
                 (1, 4, "1005@hotline.test")]}
    assert available_agents(snap, tiers)[Q] == ["1002@hotline.test", "1001@hotline.test",
                                                "1004@hotline.test"]


# --- dialing through the peer, requests and lock in the real Redis ----------------------------

@pytest.fixture(scope="module")
def center():
    return load_center(REPO / "config")


class Switch:
    """Peer replies for the dial: agents answer (or not), customers answer (or not)."""

    def __init__(self, peer: RecordingPeer) -> None:
        self.peer = peer
        self.agent_reply = "+OK"
        self.customer_replies: list[str] = []
        self.ids = itertools.count(1)
        peer.script("sendevent", "+OK ev")
        peer.script("api originate", self.originate)
        peer.script("api uuid_bridge", "+OK\n")
        peer.script("api uuid_kill", "+OK\n")
        self.agent_state = "Waiting"
        peer.script("api callcenter_config agent get state", lambda line: self.agent_state)

    def originate(self, line: str) -> str:
        if "}user/" in line:
            return f"{self.agent_reply} agent-leg-{next(self.ids)}\n" if self.agent_reply == "+OK" \
                else f"{self.agent_reply}\n"
        reply = self.customer_replies.pop(0) if self.customer_replies else "+OK"
        return f"+OK customer-leg-{next(self.ids)}\n" if reply == "+OK" else f"{reply}\n"

    def dial_commands(self) -> list[str]:
        return [c[4:] for c in self.peer.commands
                if c.startswith("api ") and c.split(" ")[1] in ("originate", "uuid_bridge",
                                                                "uuid_kill", "callcenter_config")]


@pytest.fixture
def switch():
    with RecordingPeer() as peer:
        yield Switch(peer)


@pytest.fixture
def conns(switch):
    opened = []

    def connect(node: str):
        c = EslConnection(switch.peer.host, switch.peer.port, switch.peer.password).connect()
        opened.append(c)
        return c
    yield connect
    for c in opened:
        c.close()


def request_event(call_id: str = "call-1", joined: int = T0) -> Event:
    return Event.from_headers({
        "Event-Name": "CUSTOM", "Event-Subclass": "hotline::callback",
        "Event-Date-Timestamp": str((joined + 30_000) * 1000),
        "Hotline-Action": "request", "Hotline-Call-ID": call_id, "Hotline-Queue": Q,
        "Hotline-Number": "13900000001", "Hotline-Joined-MS": str(joined)})


def snap(waiting: list[int] = (), free: tuple[str, ...] = ("1001@hotline.test",)):
    return {"agents": {a: {"status": "Available", "state": "Waiting", "since_ms": 1} for a in free},
            "queues": {Q: {"waiting": [{"call_id": f"w{j}", "caller": "", "joined_ms": j}
                                       for j in waiting]}}}


def make(redis_url, center, conns, state: dict, owner: str, **kw) -> CallbackDialer:
    return CallbackDialer(redis_url, center, conns, lambda: state["snap"], owner=owner,
                          default_node="n1", **kw)


def test_callback_keeps_the_place_then_calls_agent_then_customer_and_bridges(
        redis_url, center, conns, switch):
    state = {"snap": snap(waiting=[T0 - 1_000])}
    d = make(redis_url, center, conns, state, "A")
    assert d.on_event(request_event()) is True
    assert d.tick(T0 + 60_000) == []  # a caller who joined earlier still waits
    assert switch.dial_commands() == []
    state["snap"] = snap(waiting=[T0 + 5_000])  # that caller was served; a later one waits
    results = d.tick(T0 + 61_000)
    assert results == [{"call_id": "call-1", "agent": "1001@hotline.test", "outcome": "connected",
                        "attempt": 1}]
    cmds = switch.dial_commands()
    assert cmds[:2] == ["callcenter_config agent get state 1001@hotline.test",
                        "callcenter_config agent set state 1001@hotline.test Idle"]
    assert cmds[2].startswith("originate {hotline_callback_call_id=call-1,")
    restore = "callcenter_config agent set state 1001@hotline.test Waiting"
    assert f"api_hangup_hook='{restore}'" in cmds[2]
    assert cmds[2].endswith("}user/1001@hotline.test &park()")
    # the customer leaves through the tenant's outbound route (config/demo.yaml: pstn)
    assert cmds[3].endswith("}sofia/gateway/demo_trunk/13900000001 &park()")
    assert "origination_caller_id_number=4008001234" in cmds[3]
    assert "hotline_outbound_route=pstn" in cmds[3]
    assert cmds[4] == "uuid_bridge agent-leg-1 customer-leg-2"
    assert len(cmds) == 5
    events = switch.peer.events_sent()
    assert events == [{"Event-Name": "CUSTOM", "Event-Subclass": "hotline::callback",
                       "Hotline-Action": "result", "Hotline-Outcome": "connected",
                       "Hotline-Call-ID": "call-1", "Hotline-Queue": Q,
                       "Hotline-Number": "13900000001", "Hotline-Agent": "1001@hotline.test",
                       "Hotline-Joined-MS": str(T0), "Hotline-Attempts": "1"}]
    assert d.store.open_requests() == []
    assert d.tick(T0 + 999_000) == []  # never dialed twice
    d.close()


def test_a_number_no_route_takes_fails_at_once_without_ringing_the_agent(
        redis_url, center, conns, switch):
    # demo's only route takes 6 to 15 digits: a 4-digit number has no way out
    state = {"snap": snap()}
    d = make(redis_url, center, conns, state, "A")
    d.on_event(Event.from_headers({
        "Event-Name": "CUSTOM", "Event-Subclass": "hotline::callback",
        "Hotline-Action": "request", "Hotline-Call-ID": "call-9", "Hotline-Queue": Q,
        "Hotline-Number": "5555", "Hotline-Joined-MS": str(T0)}))
    results = d.tick(T0 + 61_000)
    assert [(r["outcome"], r["error"]) for r in results] == [
        ("failed", "no outbound route of tenant demo takes 5555 (outbound_routes in its YAML)")]
    assert switch.dial_commands() == []  # nobody rung
    result = switch.peer.events_sent()[0]
    assert result["Hotline-Outcome"] == "failed" and "Hotline-Agent" not in result
    assert d.store.open_requests() == []
    d.close()


def test_the_route_builds_the_customers_dial_string(center):
    from daemon.definition.model import OutboundRoute

    city = center.tenant("cityutil")
    mobile = city.outbound_route("13900000064")
    assert (mobile.name, mobile.endpoint("13900000064")) == (
        "mobiles", "sofia/gateway/cityutil_trunk/13900000064")
    assert city.outbound_route("02163001234").name == "landlines"
    assert city.outbound_route("12345") is None
    lan = OutboundRoute("lan", r"^\d+$", dial_string="sofia/internal/{number}@10.0.0.5",
                        prefix="9")
    assert lan.endpoint("5551234") == "sofia/internal/95551234@10.0.0.5"


def test_customer_not_answering_is_retried_with_backoff_then_recorded_no_answer(
        redis_url, center, conns, switch):
    state = {"snap": snap()}
    d = make(redis_url, center, conns, state, "A", max_attempts=3, retry_base_s=60)
    d.on_event(request_event())
    switch.customer_replies = ["-ERR NO_ANSWER"] * 3
    first = d.tick(T0 + 1_000)
    assert first[0]["outcome"] == "retry" and first[0]["retry_at_ms"] == T0 + 61_000
    assert "uuid_kill agent-leg-1" in switch.dial_commands()
    assert d.tick(T0 + 60_999) == []  # backing off
    second = d.tick(T0 + 61_000)
    assert second[0]["outcome"] == "retry" and second[0]["retry_at_ms"] == T0 + 61_000 + 120_000
    last = d.tick(T0 + 181_000)
    assert last[0]["outcome"] == "no-answer" and last[0]["attempt"] == 3
    assert [e["Hotline-Outcome"] for e in switch.peer.events_sent()] == ["no-answer"]
    agent_originates = [c for c in switch.dial_commands() if "}user/" in c]
    assert len(agent_originates) == 3
    assert d.store.get("call-1").status == "no-answer"
    assert d.tick(T0 + 10_000_000) == []
    d.close()


def test_agent_not_answering_does_not_count_against_the_customer(redis_url, center, conns, switch):
    state = {"snap": snap()}
    d = make(redis_url, center, conns, state, "A", agent_retry_s=15)
    d.on_event(request_event())
    switch.agent_reply = "-ERR NO_ANSWER"
    out = d.tick(T0)
    assert out[0]["outcome"] == "agent-no-answer"
    assert switch.dial_commands()[-1] == (
        "callcenter_config agent set state 1001@hotline.test Waiting")
    stored = d.store.get("call-1")
    assert (stored.attempts, stored.agent_misses, stored.status) == (0, 1, "pending")
    switch.agent_reply = "+OK"
    assert d.tick(T0 + 15_000)[0]["outcome"] == "connected"
    d.close()


def test_one_dialer_among_two_daemons_and_nothing_dialed_twice(redis_url, center, conns, switch):
    state = {"snap": snap(free=("1001@hotline.test", "1002@hotline.test"))}
    a = make(redis_url, center, conns, state, "daemon-a")
    b = make(redis_url, center, conns, state, "daemon-b")
    assert a.on_event(request_event("call-1")) is True
    assert b.on_event(request_event("call-1")) is False  # both daemons saw it: stored once
    assert a.tick(T0) != []
    assert b.tick(T0) == []  # not the leader
    assert len([c for c in switch.dial_commands() if "}user/" in c]) == 1
    # the leader stops; the other takes over and dials the next request, the first not again
    a.close()
    b.on_event(request_event("call-2", T0 + 10))
    out = b.tick(T0 + 20)
    assert [r["call_id"] for r in out] == ["call-2"]
    assert len([c for c in switch.dial_commands() if "}user/" in c]) == 2
    # an attempt is claimed once, even by a dialer that lost the lock
    r = b.store.get("call-2")
    assert b.store.claim(CallbackRequest(**{**r.__dict__, "status": "pending"}), "x", T0) is False
    b.close()


def test_agent_taken_by_a_queue_call_meanwhile_is_left_alone(redis_url, center, conns, switch):
    d = make(redis_url, center, conns, {"snap": snap()}, "A")
    d.on_event(request_event())
    switch.agent_state = "Receiving"
    assert d.tick(T0)[0]["outcome"] == "agent-busy"
    assert switch.dial_commands() == ["callcenter_config agent get state 1001@hotline.test"]
    stored = d.store.get("call-1")
    assert (stored.status, stored.attempts, stored.agent_misses) == ("pending", 0, 0)
    switch.agent_state = "Waiting"
    assert d.tick(T0 + 1)[0]["outcome"] == "connected"
    d.close()


def test_requests_survive_a_restart_of_the_dialer(redis_url, center, conns, switch):
    state = {"snap": snap(free=())}
    d = make(redis_url, center, conns, state, "A")
    d.on_event(request_event())
    assert d.tick(T0) == []
    d.close()
    again = make(redis_url, center, conns, {"snap": snap()}, "B")
    assert [r.call_id for r in again.store.open_requests()] == ["call-1"]
    assert again.tick(T0 + 1)[0]["outcome"] == "connected"
    again.close()


def test_queue_agents_come_from_the_model_tiers(center):
    tiers = queue_agents(center)
    assert tiers["sales@hotline.test"] == [(1, 1, "1004@hotline.test")]


def test_build_dialer_needs_the_model_and_keeps_requests_in_redis_or_the_database(
        redis_url, center, tmp_path):
    from daemon.definition.model import EslNode, Settings
    from daemon.storage.callbacks import SqlCallbackStore
    from daemon.switch.dialer import build_dialer

    no_redis = Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}")
    d = build_dialer(no_redis, center, lambda n: None, dict)
    assert isinstance(d.store, SqlCallbackStore) and d.is_leader()
    d.close()
    with_redis = Settings(redis_url=redis_url, esl_nodes=(EslNode("n7"),))
    assert build_dialer(with_redis, None, lambda n: None, dict) is None
    d = build_dialer(with_redis, center, lambda n: None, dict)
    assert d is not None and d.default_node == "n7" and d.is_leader()
    d.close()
