"""The daemon's supervisors and manager against the ESL test peer.

The manager's collaborators here are recording objects with the real shapes
(journal.append, engine.feed, store.write, live.apply): these tests check the
manager's wiring and ordering, not the database (tests/test_daemon_cli.py runs
the real ones end to end)."""
from __future__ import annotations

from pathlib import Path

import gevent
import pytest

from daemon.definition.model import EslNode, Settings
from daemon.engine.records import EngineOutput, LiveChange
from daemon.service import Service
from daemon.switch.events import Event
from daemon.switch.supervisor import ENGINE_EVENTS, Supervisor, SwitchSnapshot, backoff_delay
from tests.eslpeer import EslPeer, capture_event_frames, event_frame, real_switch

CAPTURES = Path(__file__).resolve().parent / "data" / "captures"

REAL = real_switch()

AGENT_LIST = ("name|instance_id|uuid|type|contact|status|state|max_no_answer|wrap_up_time|"
              "reject_delay_time|busy_delay_time|no_answer_delay_time|last_bridge_start|"
              "last_bridge_end|last_offered_call|last_status_change|no_answer_count|"
              "calls_answered|talk_time|ready_time|external_calls_count\n"
              "1001@hotline.test|single_box||callback|[leg_timeout=5]user/1001@127.0.0.1|"
              "Available|Waiting|3|3|10|60|10|0|0|0|1795345944|0|0|0|0|0\n+OK\n")
QUEUE_LIST = ("name|strategy|moh_sound|time_base_score|tier_rules_apply|tier_rule_wait_second|"
              "tier_rule_no_agent_no_wait|discard_abandoned_after|abandoned_resume_allowed|"
              "tier_rule_wait_multiply_level|max_wait_time|max_wait_time_with_no_agent|"
              "max_wait_time_with_no_agent_time_reached|record_template|calls_answered|"
              "calls_abandoned|ring_progressively_delay\n"
              "billing@hotline.test|longest-idle-agent|local_stream://moh|system|false|300|false|"
              "60|false|true|0|0|5||0|0|10\n+OK\n")
MEMBERS = ("queue|instance_id|uuid|session_uuid|cid_number|cid_name|system_epoch|joined_epoch|"
           "rejoined_epoch|bridge_epoch|abandoned_epoch|base_score|skill_score|serving_agent|"
           "serving_system|state|score\n"
           "billing@hotline.test|single_box|m-1|call-1|13800138000|Ann|1795345944|1795345944|0|0|0|"
           "0|0|||Waiting|0\n+OK\n")


def wait_for(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    with gevent.Timeout(timeout, AssertionError(f"{what} not reached")):
        while not predicate():
            gevent.sleep(0.005)


@pytest.fixture
def peer():
    """The test peer (its control plane); skipped against a real switch."""
    if REAL:
        pytest.skip("drives the test peer's control plane")
    with EslPeer(password="node-pw") as p:
        yield p


@pytest.fixture
def switch_node():
    """The real switch (HOTLINE_TEST_ESL) or a fresh peer, as an ESL node."""
    if REAL:
        host, port, password = REAL
        yield EslNode("real", host, port, password)
        return
    with EslPeer(password="node-pw") as p:
        yield node_of(p, "real")


def node_of(peer: EslPeer, name: str = "n1") -> EslNode:
    return EslNode(name, peer.host, peer.port, peer.password)


class Recorder:
    """Journal, engine factory, store and live state in one: records the order of calls."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.log: list[tuple[str, object]] = []
        self.journaled: list[bytes] = []
        self.fed: list[Event] = []
        self.fail_on = fail_on
        self.closed: list[str] = []
        self.rebuilds: list[dict] = []

    # journal
    def append(self, raw: bytes) -> None:
        self.journaled.append(raw)
        self.log.append(("journal", raw))

    # engine (factory and engine)
    def engine_factory(self, center, node: str) -> "Recorder.Engine":
        self.log.append(("engine-made", node))
        return Recorder.Engine(self, node)

    class Engine:
        def __init__(self, rec: "Recorder", node: str) -> None:
            self.rec, self.node = rec, node

        def feed(self, event: Event) -> EngineOutput:
            # the frame must already be in the journal when the engine sees it
            assert self.rec.journaled and event.raw in self.rec.journaled[-1]
            self.rec.fed.append(event)
            self.rec.log.append(("engine", event.name))
            if self.rec.fail_on and event.get("Event-Sequence") == self.rec.fail_on:
                raise RuntimeError("engine bug")
            return EngineOutput(live=[LiveChange("agent", f"{self.node}:{event.name}", (), 0)])

    # store
    def write(self, out: EngineOutput) -> None:
        self.log.append(("store", len(out.live)))

    def close(self) -> None:
        self.closed.append("closed")

    # live
    def apply(self, changes) -> None:
        self.log.append(("live", [c.key for c in changes]))

    def rebuild(self, agents=(), members=(), at_ms=None) -> None:
        self.log.append(("rebuild", None))
        self.rebuilds.append({"agents": [a.name for a in agents], "members": [m.session_uuid for m in members]})


def make_service(nodes, rec: Recorder, **kw) -> Service:
    def sup_factory(node, on_frames, on_snapshot):
        return Supervisor(node, on_frames, on_snapshot, backoff_initial=0.01, backoff_max=0.05, timeout=2.0)

    settings = Settings(esl_nodes=tuple(nodes))
    return Service(settings, None, rec, rec.engine_factory, rec, rec,
                   supervisor_factory=sup_factory, sync_interval_s=0, **kw)


# --- supervisor -------------------------------------------------------------------------

def test_subscription_covers_every_event_the_engine_consumes():
    from daemon.engine import segments
    subscribed = set(ENGINE_EVENTS)
    assert {n.decode() for n in segments._INTERESTING} <= subscribed
    assert set(segments._INTERESTING_SUBCLASSES) <= subscribed
    # subclasses come after CUSTOM, as `event plain` wants them
    custom = ENGINE_EVENTS.index("CUSTOM")
    assert all("::" in e for e in ENGINE_EVENTS[custom + 1:])
    assert not any("::" in e for e in ENGINE_EVENTS[:custom])


def test_supervisor_connects_subscribes_and_reads_the_switch_state(switch_node):
    snaps: list[SwitchSnapshot] = []
    sup = Supervisor(switch_node, lambda n, frames: None, snaps.append).start()
    try:
        wait_for(lambda: snaps, timeout=15, what="snapshot")
        assert sup.up.is_set() and sup.sessions == 1
    finally:
        sup.stop()
    assert snaps[0].node == "real"
    assert "+OK" in snaps[0].agents or "name|" in snaps[0].agents
    assert isinstance(snaps[0].channels, dict)


def test_supervisor_subscribes_to_the_engine_events_and_tags_frames_with_the_node(peer):
    got = []
    sup = Supervisor(node_of(peer, "east"),
                     lambda node, frames: got.extend((node, f) for f in frames)).start()
    try:
        peer.wait_command("event plain")
        assert peer.commands[:2] == ["auth node-pw", "event plain " + " ".join(ENGINE_EVENTS)]
        wait_for(sup.up.is_set)
        sent = peer.replay(CAPTURES / "ivr_only.esl")
        wait_for(lambda: len(got) == sent)
        assert {node for node, _ in got} == {"east"}
        # CHANNEL_STATE, CODEC, PRESENCE_IN ... were never sent: the switch filters for us
        names = {Event.from_frame(f).name for _, f in got}
        assert "CHANNEL_STATE" not in names and "CHANNEL_CREATE" in names
    finally:
        sup.stop()


def test_supervisor_hands_over_the_switch_state_after_connecting(peer):
    peer.script("api callcenter_config agent list", AGENT_LIST)
    peer.script("api callcenter_config queue list", QUEUE_LIST)
    peer.script("api callcenter_config queue list members billing@hotline.test", MEMBERS)  # later wins
    peer.script("api show channels as json", '{"row_count":1,"rows":[{"uuid":"call-1"}]}')
    snaps: list[SwitchSnapshot] = []
    sup = Supervisor(node_of(peer), lambda n, frames: None, snaps.append).start()
    try:
        wait_for(lambda: snaps, what="snapshot")
    finally:
        sup.stop()
    snap = snaps[0]
    assert snap.node == "n1"
    assert snap.queue_names() == ["billing@hotline.test"]
    assert "call-1" in snap.members["billing@hotline.test"]
    assert snap.channels["rows"][0]["uuid"] == "call-1"


def test_supervisor_reconnects_with_a_fresh_connection_each_time(peer):
    made = []

    def factory(*args, **kw):
        from daemon.switch.esl import EslConnection

        conn = EslConnection(*args, **kw)
        made.append(conn)
        return conn

    sup = Supervisor(node_of(peer), lambda n, frames: None, connection_factory=factory,
                     backoff_initial=0.01, backoff_max=0.02).start()
    try:
        for round_ in (1, 2, 3):
            wait_for(lambda: sup.sessions == round_ and sup.up.is_set(), what=f"session {round_}")
            if round_ < 3:
                peer.disconnect()
    finally:
        sup.stop()
    assert len({id(c) for c in made}) == len(made) >= 3
    assert peer.commands.count("auth node-pw") == 3
    assert not made[-1].connected


def test_supervisor_keeps_retrying_while_the_switch_refuses_then_connects(peer):
    peer.refuse = True
    sup = Supervisor(node_of(peer), lambda n, frames: None, backoff_initial=0.005, backoff_max=0.01).start()
    try:
        wait_for(lambda: sup.attempts >= 4, what="four attempts")
        assert sup.sessions == 0 and not sup.up.is_set()
        peer.refuse = False
        wait_for(sup.up.is_set, what="connected")
    finally:
        sup.stop()
    assert sup.sessions == 1


def test_backoff_doubles_up_to_the_maximum_with_bounded_jitter():
    low = [backoff_delay(a, 0.5, 30, lambda: 0.0) for a in range(10)]
    high = [backoff_delay(a, 0.5, 30, lambda: 1.0) for a in range(10)]
    assert high[:7] == [0.5, 1, 2, 4, 8, 16, 30]
    assert all(h == 2 * lo for lo, h in zip(low, high))
    assert max(high) == 30
    assert backoff_delay(1000, 0.5, 30, lambda: 0.5) == 22.5


def test_supervisor_stop_returns_while_the_switch_ignores_exit(peer):
    peer.ignore_exit = True
    sup = Supervisor(node_of(peer), lambda n, frames: None).start()
    wait_for(sup.up.is_set)
    with gevent.Timeout(10, AssertionError("stop() hung")):
        sup.stop(timeout=1)
    assert not sup.up.is_set()


# --- the manager --------------------------------------------------------------------------

def run_service(service: Service) -> gevent.Greenlet:
    return gevent.spawn(service.run)


def test_each_frame_is_journaled_before_the_engine_sees_it_then_written_and_published(peer):
    rec = Recorder()
    service = make_service([node_of(peer)], rec)
    runner = run_service(service)
    try:
        peer.wait_subscribed()
        sent = peer.replay(CAPTURES / "ivr_only.esl")
        wait_for(lambda: len(rec.fed) == sent)
    finally:
        service.stop()
        runner.join(5)
    assert runner.successful()
    def subscribed(frame: bytes) -> bool:
        event = Event(frame[frame.index(b"\n\n") + 2:])
        return event.name in ENGINE_EVENTS and (event.name != "CUSTOM" or event.subclass in ENGINE_EVENTS)

    expected = [f for f in capture_event_frames(CAPTURES / "ivr_only.esl") if subscribed(f)]
    assert b"".join(rec.journaled) == b"".join(expected) and sent == len(expected) < 72
    steps = [kind for kind, _ in rec.log if kind not in ("engine-made", "journal", "rebuild")]
    assert steps == ["engine", "store", "live"] * sent  # (journal-before-engine: Recorder.Engine)
    assert rec.closed == ["closed"] * 3  # store, live state and journal closed (flushed) on stop


def test_engine_failure_on_one_event_is_logged_and_the_next_events_go_on(peer, caplog):
    rec = Recorder(fail_on="2")
    service = make_service([node_of(peer)], rec)
    runner = run_service(service)
    try:
        peer.wait_subscribed()
        for seq in range(1, 5):
            peer.send_event({"Event-Name": "HEARTBEAT", "Event-Sequence": seq})
        wait_for(lambda: len(rec.fed) == 4)
    finally:
        service.stop()
        runner.join(5)
    assert service.errors == 1 and service.events == 4
    assert b"".join(rec.journaled).count(b"Event-Name: HEARTBEAT") == 4
    assert "engine failed node=n1 event=HEARTBEAT" in caplog.text


def test_events_sent_before_stop_are_all_journaled_and_processed(peer):
    class SlowRecorder(Recorder):
        class Engine(Recorder.Engine):
            def feed(self, event):
                gevent.sleep(0.001)  # a busy engine: frames pile up in the daemon's queues
                return super().feed(event)

        def engine_factory(self, center, node):
            return SlowRecorder.Engine(self, node)

    rec = SlowRecorder()
    service = make_service([node_of(peer)], rec)
    runner = run_service(service)
    peer.wait_subscribed()
    frames = [event_frame({"Event-Name": "HEARTBEAT", "Event-Sequence": i, "Pad": "x" * 3000})
              for i in range(300)]
    peer.replay(frames)
    wait_for(lambda: len(rec.fed) >= 5)
    service.stop()  # while most of them are still queued or unread
    runner.join(10)
    assert len(rec.fed) == 300
    assert b"".join(rec.journaled) == b"".join(frames)


def test_two_nodes_at_once_each_get_their_own_engine_and_node_name():
    if REAL:
        pytest.skip("drives the test peer's control plane")
    with EslPeer(password="a-pw") as east, EslPeer(password="b-pw") as west:
        rec = Recorder()
        service = make_service([node_of(east, "east"), node_of(west, "west")], rec)
        runner = run_service(service)
        try:
            east.wait_subscribed()
            west.wait_subscribed()
            east.send_event({"Event-Name": "HEARTBEAT", "Event-Sequence": 1})
            west.send_event({"Event-Name": "API", "Event-Sequence": 1})
            wait_for(lambda: len(rec.fed) == 2)
        finally:
            service.stop()
            runner.join(5)
    assert {(e.node, e.name) for e in rec.fed} == {("east", "HEARTBEAT"), ("west", "API")}
    assert sorted(n for kind, n in rec.log if kind == "engine-made") == ["east", "west"]
    assert sorted(service.engines) == ["east", "west"]


def test_switch_restart_rebuilds_live_state_from_what_the_switch_reports(peer):
    peer.script("api callcenter_config agent list", AGENT_LIST)
    peer.script("api callcenter_config queue list", QUEUE_LIST)
    peer.script("api callcenter_config queue list members billing@hotline.test", MEMBERS)  # later wins
    rec = Recorder()
    service = make_service([node_of(peer)], rec)
    runner = run_service(service)
    try:
        wait_for(lambda: len(rec.rebuilds) == 1, what="first rebuild")
        peer.disconnect()  # the switch restarts
        wait_for(lambda: len(rec.rebuilds) == 2, what="rebuild after reconnect")
    finally:
        service.stop()
        runner.join(5)
    assert rec.rebuilds[-1] == {"agents": ["1001@hotline.test"], "members": ["call-1"]}
    assert service.supervisors[0].sessions == 2


def test_events_arriving_while_the_switch_state_is_read_are_applied_after_the_rebuild(peer):
    def agent_list(line: str) -> str:
        # the switch emits an event before it answers: it is older than nothing in the
        # snapshot, but must not be overwritten by it
        peer.send_event({"Event-Name": "CUSTOM", "Event-Subclass": "callcenter::info",
                         "CC-Action": "agent-status-change", "CC-Agent": "1001@hotline.test",
                         "CC-Agent-Status": "On Break"})
        gevent.sleep(0.05)
        return AGENT_LIST

    peer.script("api callcenter_config agent list", agent_list)
    rec = Recorder()
    service = make_service([node_of(peer)], rec)
    runner = run_service(service)
    try:
        wait_for(lambda: rec.fed and rec.rebuilds, what="event and rebuild")
    finally:
        service.stop()
        runner.join(5)
    order = [kind for kind, _ in rec.log if kind in ("rebuild", "journal", "engine")]
    assert order == ["rebuild", "journal", "engine"]


def test_store_failure_and_full_disk_journal_do_not_stop_the_daemon(peer, caplog):
    class BrokenStore(Recorder):
        def write(self, out):
            raise RuntimeError("store bug")

    class FullDisk(Recorder):
        def append(self, raw):
            raise OSError(28, "No space left on device")

    rec = BrokenStore()
    disk = FullDisk()
    settings = Settings(esl_nodes=(node_of(peer),))
    class PlainEngine:
        def feed(self, event):
            return EngineOutput()

    service = Service(settings, None, disk, lambda center, node: PlainEngine(), rec, rec, sync_interval_s=0,
                      supervisor_factory=lambda n, f, s: Supervisor(n, f, s, timeout=2.0))
    runner = run_service(service)
    try:
        peer.wait_subscribed()
        for seq in range(3):
            peer.send_event({"Event-Name": "HEARTBEAT", "Event-Sequence": seq})
            wait_for(lambda: service.events == seq + 1)
    finally:
        service.stop()
        runner.join(5)
    assert runner.successful()
    assert service.events == 3 and service.errors == 3 and service.journal_errors >= 1
    assert "journal write failed" in caplog.text and "No space left" in caplog.text


class Reconciling(Recorder):
    class Engine(Recorder.Engine):
        def reconcile(self, snapshot):
            self.rec.log.append(("reconcile", snapshot.node))
            return EngineOutput()

    def engine_factory(self, center, node):
        return Reconciling.Engine(self, node)


def test_an_engine_that_can_reconcile_gets_the_switch_snapshot(peer):
    rec = Reconciling()
    service = make_service([node_of(peer)], rec)
    runner = run_service(service)
    try:
        wait_for(lambda: ("reconcile", "n1") in rec.log, what="reconcile")
    finally:
        service.stop()
        runner.join(5)
    assert [k for k, _ in rec.log].index("rebuild") < [k for k, _ in rec.log].index("reconcile")
