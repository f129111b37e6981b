"""Live state in memory and in real Redis, the switch's list parsers, Redis down and back."""
from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest
import redis

from daemon.engine.records import LiveChange
from daemon.live.state import (
    MemoryLiveState,
    RedisLiveState,
    parse_agent_list,
    parse_member_list,
    parse_pipe_table,
    snapshot_from_redis,
)

T0 = 1_795_345_627_000

# as mod_callcenter 1.10 prints them: a header line, pipe-separated rows, "+OK"
AGENT_LIST = """name|instance_id|uuid|type|contact|status|state|max_no_answer|wrap_up_time|reject_delay_time|busy_delay_time|no_answer_delay_time|last_bridge_start|last_bridge_end|last_offered_call|last_status_change|no_answer_count|calls_answered|talk_time|ready_time|external_calls_count
1001@hotline.test|single_box||callback|[leg_timeout=5]user/1001@127.0.0.1|Available|In a queue call|3|3|0|0|10|1795345630|0|1795345629|1795345600|0|1|0|0|0
1002@hotline.test|single_box||callback|[leg_timeout=5]user/1002@127.0.0.1|On Break|Waiting|3|4|0|0|10|0|0|0|1795345610|0|0|0|0|0
1003@hotline.test|single_box||callback|[leg_timeout=5]user/1003@127.0.0.1|Logged Out|Idle|3|5|0|0|10|0|0|0|1795345500|0|0|0|0|0
+OK
"""
MEMBER_LIST = """queue|instance_id|uuid|session_uuid|cid_number|cid_name|system_epoch|joined_epoch|rejoined_epoch|bridge_epoch|abandoned_epoch|base_score|skill_score|serving_agent|serving_system|state|score
billing@hotline.test|single_box|m-1|call-1|13800138001|Alice|1795345620|1795345620|0|0|0|0|0|||Waiting|7
billing@hotline.test|single_box|m-2|call-2|13800138002|Bob|1795345610|1795345610|0|0|0|0|0|1001@hotline.test|single_box|Trying|17
billing@hotline.test|single_box|m-3|call-3|13800138003|Carol|1795345600|1795345600|0|1795345605|0|0|0|1002@hotline.test|single_box|Answered|27
+OK
"""


def agent(name: str, at: int, **data) -> LiveChange:
    return LiveChange("agent", name, tuple(data.items()), at)


def member(queue: str, at: int, **data) -> LiveChange:
    return LiveChange("member", queue, tuple(data.items()), at)


A_DAY = [
    agent("1001@hotline.test", T0, status="Available", state="Waiting", since_ms=T0),
    agent("1002@hotline.test", T0, status="On Break", reason="lunch", since_ms=T0),
    member("billing@hotline.test", T0 + 1000, action="join", call_id="c1", caller="138001",
           joined_ms=T0 + 1000),
    member("billing@hotline.test", T0 + 3000, action="join", call_id="c2", caller="138002",
           joined_ms=T0 + 3000),
    agent("1001@hotline.test", T0 + 4000, state="Receiving", call_id="c1"),
    agent("1001@hotline.test", T0 + 6000, state="In a queue call", call_id="c1"),
    member("billing@hotline.test", T0 + 6000, action="leave", call_id="c1", outcome="answered"),
]


def check_a_day(snap: dict) -> None:
    assert snap["agents"]["1001@hotline.test"]["state"] == "In a queue call"
    assert snap["agents"]["1001@hotline.test"]["call_id"] == "c1"
    assert snap["agents"]["1002@hotline.test"]["reason"] == "lunch"
    assert snap["agents_by_state"]["In a queue call"] == ["1001@hotline.test"]
    assert snap["agents_by_status"]["On Break"] == ["1002@hotline.test"]
    billing = snap["queues"]["billing@hotline.test"]
    assert billing["count"] == 1
    assert billing["waiting"][0]["call_id"] == "c2"
    assert billing["oldest_joined_ms"] == T0 + 3000
    assert billing["longest_wait_ms"] == 7000  # snapshot taken at T0 + 10 s


# --- parsers ---------------------------------------------------------------------------------


def test_agent_list_of_mod_callcenter_parses_into_rows():
    rows = parse_agent_list(AGENT_LIST)
    assert [(r.name, r.status, r.state, r.wrap_up_time) for r in rows] == [
        ("1001@hotline.test", "Available", "In a queue call", 3),
        ("1002@hotline.test", "On Break", "Waiting", 4),
        ("1003@hotline.test", "Logged Out", "Idle", 5)]
    assert rows[0].contact == "[leg_timeout=5]user/1001@127.0.0.1"
    assert rows[0].last_bridge_start == 1795345630


def test_member_list_of_mod_callcenter_parses_into_rows():
    rows = parse_member_list(MEMBER_LIST)
    assert [(r.session_uuid, r.cid_number, r.state, r.joined_epoch) for r in rows] == [
        ("call-1", "13800138001", "Waiting", 1795345620),
        ("call-2", "13800138002", "Trying", 1795345610),
        ("call-3", "13800138003", "Answered", 1795345600)]


def test_an_empty_list_is_just_ok_and_an_error_is_refused():
    assert parse_pipe_table("+OK\n") == []
    assert parse_agent_list("") == []
    with pytest.raises(ValueError):
        parse_pipe_table("-ERR Invalid!\n")


def test_a_contact_with_a_pipe_keeps_the_columns_aligned():
    text = "name|contact|status|state\n1001@t|{a=1}user/1001|x|Available|Waiting\n+OK\n"
    row = parse_agent_list(text)[0]
    assert (row.contact, row.status, row.state) == ("{a=1}user/1001|x", "Available", "Waiting")


# --- memory ----------------------------------------------------------------------------------


def test_memory_live_state_follows_agents_and_waiting_calls():
    live = MemoryLiveState()
    seen: list[dict] = []
    live.subscribe(seen.append)
    live.apply(A_DAY)
    check_a_day(live.snapshot(now_ms=T0 + 10_000))
    assert len(seen) == len(A_DAY) and seen[0]["kind"] == "agent"


def test_an_agent_back_from_a_call_has_no_current_call_and_a_new_status_drops_the_reason():
    live = MemoryLiveState()
    live.apply(A_DAY + [agent("1001@hotline.test", T0 + 20_000, state="Waiting"),
                        agent("1002@hotline.test", T0 + 20_000, status="Available")])
    snap = live.snapshot(now_ms=T0 + 30_000)
    assert "call_id" not in snap["agents"]["1001@hotline.test"]
    assert "reason" not in snap["agents"]["1002@hotline.test"]


def test_rebuild_after_a_reconnect_takes_the_switch_lists_as_the_truth():
    live = MemoryLiveState()
    live.apply(A_DAY)
    live.rebuild(agents=parse_agent_list(AGENT_LIST), members=parse_member_list(MEMBER_LIST),
                 at_ms=T0 + 10_000)
    snap = live.snapshot(now_ms=1795345630_000)
    assert snap["agents"]["1001@hotline.test"]["call_id"] == "c1"  # still on the same call
    assert snap["agents"]["1002@hotline.test"]["reason"] == "lunch"  # still on the same break
    assert snap["agents"]["1003@hotline.test"]["status"] == "Logged Out"
    billing = snap["queues"]["billing@hotline.test"]
    assert [w["call_id"] for w in billing["waiting"]] == ["call-2", "call-1"]  # answered one left
    assert billing["longest_wait_ms"] == 20_000


# --- redis -----------------------------------------------------------------------------------


def test_redis_live_state_writes_keys_publishes_changes_and_reads_back(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = client.pubsub()
    pubsub.subscribe("hotline:live")
    pubsub.get_message(timeout=2)  # the subscribe confirmation
    live = RedisLiveState(redis_url)  # first contact: writes the whole (empty) state
    live.apply(A_DAY)
    check_a_day(live.snapshot(now_ms=T0 + 10_000))
    check_a_day(snapshot_from_redis(redis_url, now_ms=T0 + 10_000))
    assert client.smembers("hotline:live:agents:state:In a queue call") == {"1001@hotline.test"}
    assert client.smembers("hotline:live:agents:state:Waiting") == set()
    assert client.zrange("hotline:live:queue:billing@hotline.test:waiting", 0, -1) == ["c2"]
    messages = []
    while (m := pubsub.get_message(timeout=2)) is not None:
        messages.append(json.loads(m["data"]))
        if len(messages) == len(A_DAY) + 1:
            break
    kinds = [m["kind"] for m in messages]
    assert kinds[0] == "resync"  # first contact writes the whole state
    assert kinds[1:] == [c.kind for c in A_DAY]
    assert messages[-1]["data"] == {"action": "leave", "call_id": "c1", "outcome": "answered"}
    pubsub.close()
    live.close()
    client.close()


def test_redis_rebuild_clears_stale_live_keys_and_leaves_other_hotline_keys_alone(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.set("hotline:leader", "daemon-2")  # someone else's key
    live = RedisLiveState(redis_url)
    live.apply(A_DAY)
    live.rebuild(agents=parse_agent_list(AGENT_LIST)[2:], members=[], at_ms=T0)
    snap = snapshot_from_redis(redis_url, now_ms=T0)
    assert list(snap["agents"]) == ["1003@hotline.test"]
    assert snap["queues"]["billing@hotline.test"]["count"] == 0
    assert client.get("hotline:leader") == "daemon-2"
    live.close()
    client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of this test's own, on a free port, that the test stops and restarts."""

    def __init__(self, tmp_path) -> None:
        self.port = _free_port()
        self.dir = tmp_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_redis_down_and_back_apply_never_raises_and_the_state_is_resynchronised(own_redis):
    live = RedisLiveState(own_redis.url, retry_s=0.0)
    live.apply(A_DAY[:3])
    assert snapshot_from_redis(own_redis.url, now_ms=T0)["queues"]["billing@hotline.test"]["count"] == 1

    own_redis.stop()  # Redis dies while the calls go on
    live.apply(A_DAY[3:])  # must not raise into the daemon
    assert not live.connected
    check_a_day(live.snapshot(now_ms=T0 + 10_000))  # the daemon's view is complete meanwhile

    own_redis.start()  # back, empty (no persistence)
    live.apply([agent("1003@hotline.test", T0 + 8000, status="Logged Out")])
    assert live.connected
    snap = snapshot_from_redis(own_redis.url, now_ms=T0 + 10_000)
    check_a_day(snap)
    assert snap["agents"]["1003@hotline.test"]["status"] == "Logged Out"
    live.close()


def test_redis_unreachable_from_the_start_keeps_state_in_memory_until_resync(own_redis):
    url = own_redis.url
    own_redis.stop()
    live = RedisLiveState(url, retry_s=3600.0)  # no automatic retry in this test
    live.apply(A_DAY)
    assert not live.connected
    own_redis.start()
    assert live.resync()
    check_a_day(snapshot_from_redis(url, now_ms=T0 + 10_000))
    live.close()


def test_a_snapshot_prints_for_humans_with_waits_and_agents():
    from daemon.live.state import format_snapshot

    live = MemoryLiveState()
    live.apply(A_DAY)
    text = format_snapshot(live.snapshot(now_ms=T0 + 10_000))
    assert "billing@hotline.test: 1 waiting, longest 7 s" in text
    assert "1002@hotline.test  On Break (lunch)  ?" in text
    assert "1001@hotline.test  Available  In a queue call  call c1" in text
    assert format_snapshot(MemoryLiveState().snapshot(now_ms=0)) == "No live state."


# --- Redis back after an outage: rewritten at once, not at the next change ------------------


@pytest.fixture
def redis_via_proxy(redis_url):
    """(direct URL, URL through a TCP proxy the test cuts and restores) of the test Redis."""
    from urllib.parse import urlparse

    from tests.test_store import TcpProxy

    parsed = urlparse(redis_url)
    proxy = TcpProxy((parsed.hostname or "127.0.0.1", parsed.port or 6379))
    yield redis_url, f"redis://127.0.0.1:{proxy.port}{parsed.path}", proxy
    proxy.close()


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def waiting(url: str) -> list[str]:
    queue = snapshot_from_redis(url, now_ms=T0 + 10_000)["queues"].get("billing@hotline.test")
    return [w["call_id"] for w in queue["waiting"]] if queue else []


def test_when_redis_comes_back_the_callers_who_left_meanwhile_vanish_at_once(redis_via_proxy):
    """The probe saw two phantom waiting callers for 55 s: Redis came back, nothing changed
    on the switch for a while, so nothing rewrote it."""
    direct, proxied, proxy = redis_via_proxy
    live = RedisLiveState(proxied, retry_s=30.0, watch_s=0.1)  # backoff far longer than the test
    live.apply(A_DAY[:4])  # c1 and c2 wait
    assert waiting(direct) == ["c1", "c2"]

    proxy.cut()
    live.apply([member("billing@hotline.test", T0 + 5000, action="leave", call_id="c1",
                       outcome="abandoned"),
                member("billing@hotline.test", T0 + 6000, action="leave", call_id="c2",
                       outcome="abandoned")])
    assert waiting(direct) == ["c1", "c2"]  # stale while the link is down
    assert wait_until(lambda: not live.connected, 5)

    proxy.restore()  # ... and the switch stays quiet: no change comes to trigger a write
    assert wait_until(lambda: waiting(direct) == [], 5), "phantom callers still in Redis"
    assert live.connected
    assert snapshot_from_redis(direct)["agents"]["1002@hotline.test"]["status"] == "On Break"
    live.close()


def test_a_redis_that_restarted_empty_unnoticed_is_rewritten(own_redis):
    live = RedisLiveState(own_redis.url, watch_s=0.1)
    live.apply(A_DAY)
    own_redis.stop()
    own_redis.start()  # between two changes: the daemon wrote nothing meanwhile
    assert wait_until(lambda: snapshot_from_redis(own_redis.url)["agents"], 5), \
        "the restarted Redis stayed empty"
    check_a_day(snapshot_from_redis(own_redis.url, now_ms=T0 + 10_000))
    live.close()
