"""A daemon stopped or killed while calls are up stores exactly what a daemon that never
stopped stores: row by row, on SQLite and PostgreSQL, also when it dies during a
database outage.

The honest test is real processes: ``hotline daemon`` against the ESL test peer, which
serves the busy-hour capture over TCP in pieces and, like a switch, answers the
daemon's questions after each (re)connect from the events it has sent so far. Between
two pieces the daemon gets SIGTERM (it flushes) or SIGKILL (it dies with records in
memory, in the store's buffer, half processed; once also again while it replays its
journal), then starts again. The pieces are cut where the switch is between two events
(the daemon had read everything sent): a real switch does not keep events for a client
that is not connected, so the test does not send any while the daemon is down. The in-process tests below cut the same capture at
many more points, cheaply.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import gevent
import pytest
from sqlalchemy import MetaData, create_engine, select

from daemon.engine.checkpoint import CONFIG, DERIVED, SAVED, SCRATCH, CheckpointError
from daemon.engine.segments import SegmentEngine
from daemon.storage import schema
from daemon.storage.journal import Journal, journal_files, read_from
from daemon.storage.replay import replay
from daemon.switch.events import Event
from daemon.switch.supervisor import ENGINE_EVENTS, SwitchSnapshot
from tests.eslpeer import EslPeer, SwitchModel, capture_event_frames, real_switch
from tests.scenario import Replay, capture_path, engine, events
from tests.test_store import pg_via_proxy  # noqa: F401 - fixture: PostgreSQL behind a cuttable proxy

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "ClueCon-restart"
TABLES = (schema.calls, schema.segments, schema.agent_intervals, schema.dispositions)

if real_switch():
    pytest.skip("replays a capture through the peer's control plane", allow_module_level=True)


def subscribed(frame: bytes) -> bool:
    event = Event(frame[frame.index(b"\n\n") + 2:])
    return event.name in ENGINE_EVENTS and (event.name != "CUSTOM" or event.subclass in ENGINE_EVENTS)


ALL_FRAMES = capture_event_frames(capture_path("busy_hour"))
FRAMES = [f for f in ALL_FRAMES if subscribed(f)]  # what a daemon's subscription gets


# --- in process: many cut points, cheaply -------------------------------------------------

def clean_replay() -> Replay:
    rep, eng = Replay(), engine()
    for ev in events("busy_hour"):
        rep.add(eng.feed(ev))
    return rep


def test_an_engine_restored_from_a_checkpoint_anywhere_in_the_busy_hour_ends_like_one_that_never_stopped():
    clean = clean_replay()
    evs = events("busy_hour")
    for cut in range(0, len(evs) + 1, 1423):  # 13 points, through calls in every state
        rep, first = Replay(), engine()
        for ev in evs[:cut]:
            rep.add(first.feed(ev))
        state = json.loads(json.dumps(first.checkpoint()))  # through its file format
        second = engine()
        second.restore(state)
        for ev in evs[cut:]:
            rep.add(second.feed(ev))
        assert rep.calls == clean.calls, cut
        assert rep.segments == clean.segments, cut
        assert rep.intervals == clean.intervals, cut


def test_every_attribute_of_the_engine_is_either_checkpointed_configuration_or_scratch():
    # an attribute added later must be sorted into one of these, or restarts lose it
    assert set(vars(SegmentEngine())) == set(SAVED) | set(CONFIG) | set(SCRATCH) | set(DERIVED)


def test_a_checkpoint_of_another_engine_version_or_a_damaged_one_is_refused():
    eng = engine()
    for ev in events("sip_agent"):
        eng.feed(ev)
    state = json.loads(json.dumps(eng.checkpoint()))
    with pytest.raises(CheckpointError):
        engine().restore(dict(state, format="0:other"))
    text = json.dumps(state, separators=(",", ":"))
    assert '"o":"Visit"' in text
    damaged = json.loads(text.replace('"o":"Visit"', '"o":"os.system"'))
    with pytest.raises(CheckpointError):
        engine().restore(damaged)


def snapshot_of(model: SwitchModel, now_s: int) -> SwitchSnapshot:
    queues = sorted(model.queues)
    members = {q: model.callcenter(["queue", "list", "members", q], now_s) for q in queues}
    return SwitchSnapshot("", model.callcenter(["agent", "list"], now_s), "", members,
                          json.loads(model.show_channels_json()))


def test_a_reconnect_anywhere_in_the_busy_hour_closes_no_call_the_switch_still_has():
    # the peer answers from the events it sent; calls whose caller hung up but whose agent
    # leg or queue member is still on the switch are not closed early by reconcile
    eng, model = engine(), SwitchModel()
    closed_at = []
    for k, frame in enumerate(ALL_FRAMES):
        event = Event(frame[frame.index(b"\n\n") + 2:])
        eng.feed(event)
        model.observe(frame)
        if k % 89 == 0:
            probe = engine()
            probe.restore(eng.checkpoint())
            out = probe.reconcile(snapshot_of(model, event.timestamp_ms // 1000))
            if out.calls or out.segments:
                closed_at.append((k, [s.segment_id for s in out.segments]))
    assert closed_at == []


def test_the_peer_lists_channels_and_members_in_the_switchs_formats():
    model = SwitchModel()
    assert model.show_channels_json() == '{"row_count": 0}\n'
    assert model.callcenter(["agent", "list"], 0) == "+OK\n"
    for frame in ALL_FRAMES[:2500]:
        model.observe(frame)
    channels = json.loads(model.show_channels_json())
    assert channels["row_count"] == len(channels["rows"]) > 0
    assert list(channels["rows"][0])[:4] == ["uuid", "direction", "created", "created_epoch"]
    from daemon.live.state import parse_agent_list, parse_member_list

    members = [m for q in sorted(model.queues)
               for m in parse_member_list(model.callcenter(["queue", "list", "members", q], 0))]
    assert members and {m.state for m in members} <= {"Waiting", "Trying", "Answered"}
    assert all(m.session_uuid and m.uuid for m in members)
    agents = parse_agent_list(model.callcenter(["agent", "list"], 0))
    assert {a.name for a in agents} >= {"1001@hotline.test", "1002@hotline.test"}


def test_a_ring_first_seen_at_its_bridge_keeps_the_id_of_its_offering():
    # an engine that missed the agent-offering (started in the middle of the ring) must
    # not make a second ring row under another id
    full = clean_replay()
    no_offers = Replay()
    eng = engine()
    for ev in events("busy_hour"):
        if ev.get("CC-Action") != "agent-offering":
            no_offers.add(eng.feed(ev))
    answered = {k for k, s in no_offers.segments.items()
                if s.kind == "ring" and s.outcome == "answered"}
    assert answered and answered <= set(full.segments)


def test_a_journal_is_read_back_from_a_position(tmp_path):
    journal = Journal(tmp_path, max_bytes=40_000, prefix="vm", compress=True)
    for frame in FRAMES[:100]:
        journal.append(frame)
    middle = journal.position()
    for frame in FRAMES[100:300]:
        journal.append(frame)
    journal.close()
    files = journal_files(tmp_path, "vm")
    assert len(files) > 2  # the rest spans rotations
    assert files[0].name.endswith(".esl.gz")  # compressed since: offsets are uncompressed bytes
    assert [f.raw for f in read_from(tmp_path, "vm", middle)] == FRAMES[100:300]
    assert [f.raw for f in read_from(tmp_path, "vm")] == FRAMES[:300]


def test_a_replay_over_rows_left_by_a_bad_restart_converges_to_the_clean_rows(tmp_path, empty_db_url):
    path = capture_path("sip_agent")
    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    replay([path], clean_url)
    replay([path], empty_db_url)
    engine_ = create_engine(empty_db_url)
    with engine_.begin() as conn:  # what an old daemon restarted mid-call wrote
        ring = conn.execute(select(schema.segments).where(schema.segments.c.kind == "ring")).first()
        row = dict(ring._mapping)
        conn.execute(schema.segments.insert().values(
            dict(row, segment_id=row["segment_id"].rsplit(":", 1)[0] + ":1795347781000",
                 started_ms=row["started_ms"] // 1000 * 1000)))
    engine_.dispose()
    stats = replay([path], empty_db_url)
    assert stats.stale == 1
    assert table_contents(empty_db_url) == table_contents(clean_url)


# --- real processes ----------------------------------------------------------------------

def table_contents(url: str) -> dict[str, dict]:
    engine_ = create_engine(url)
    try:
        with engine_.connect() as conn:
            out = {}
            for table in TABLES:
                pk = next(iter(table.primary_key.columns))
                out[table.name] = {r._mapping[pk.name]: tuple(r) for r in conn.execute(select(table))}
            return out
    finally:
        engine_.dispose()


def differences(clean: dict, got: dict) -> dict[str, tuple[list, list, list]]:
    """table -> (missing, extra, differing) keys, only for tables that differ."""
    out = {}
    for name, rows in clean.items():
        have = got.get(name, {})
        missing = sorted(set(rows) - set(have))
        extra = sorted(set(have) - set(rows))
        differing = sorted(k for k in set(rows) & set(have) if rows[k] != have[k])
        if missing or extra or differing:
            out[name] = (missing[:5], extra[:5], [(rows[k], have[k]) for k in differing[:3]])
    return out


def wipe(url: str) -> None:
    engine_ = create_engine(url)
    meta = MetaData()
    meta.reflect(engine_)
    meta.drop_all(engine_)
    with engine_.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    engine_.dispose()


def wait_for(predicate, timeout: float, what: str) -> None:
    with gevent.Timeout(timeout, AssertionError(f"{what} not reached")):
        while not predicate():
            gevent.sleep(0.02)


class DaemonRun:
    """One journal directory and database; daemons started and stopped on it in turn."""

    def __init__(self, tmp_path: Path, peer: EslPeer, db_url: str) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.dir = tmp_path
        self.peer = peer
        self.journal = tmp_path / "journal"
        self.settings = tmp_path / "settings.yaml"
        self.settings.write_text(
            "settings:\n"
            f"  esl: \"vm=127.0.0.1:{peer.port}:{PASSWORD}\"\n"
            f"  database_url: \"{db_url}\"\n"
            f"  journal_dir: \"{self.journal}\"\n"
            f"  config_dir: \"{REPO / 'config'}\"\n"
            "  http_listen: \"\"\n")
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.sent = 0
        self.logs: list[Path] = []

    def start_and_kill_while_recovering(self) -> None:
        """A daemon killed as it replays its journal (before it takes a new event)."""
        log = self.dir / f"daemon-{self.starts}-killed-early.log"
        self.logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-c", "import cli; cli.main()", "daemon", "--settings", str(self.settings)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        wait_for(lambda: "daemon started nodes=" in log.read_text(), 60, "daemon started")
        proc.kill()
        proc.wait(30)

    def start(self) -> None:
        log = self.dir / f"daemon-{self.starts}.log"
        known = len(self.peer.connections)
        self.logs.append(log)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import cli; cli.main()", "daemon", "--settings", str(self.settings)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        self.starts += 1
        # its event link connected, subscribed and asked for the switch's state (the lamps
        # have a connection of their own): the snapshot is answered from what was sent
        # before, so nothing is sent while it is asked
        wait_for(lambda: any("api show channels as json" in c.commands
                             for c in self.peer.connections[known:]),
                 60, f"daemon start #{self.starts} and its snapshot")

    def send_until(self, cut: int) -> None:
        self.peer.replay(FRAMES[self.sent:cut])
        self.sent = cut
        last = FRAMES[cut - 1]
        # every frame sent is in the journal (written before the engine sees it)
        wait_for(lambda: self._journal_ends_with(last), 60, f"frame {cut} journaled")

    def _journal_ends_with(self, frame: bytes) -> bool:
        files = journal_files(self.journal, "vm")
        if not files:
            return False
        with open(files[-1], "rb") as fh:
            size = fh.seek(0, 2)
            if size < len(frame):
                return False
            fh.seek(size - len(frame))
            return fh.read() == frame

    def stop(self, how: str) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
        wait_for(lambda: self.proc.poll() is not None, 60, "daemon exit")
        if how == "term":
            assert self.proc.returncode == 0, self.logs[-1].read_text()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def checkpoint_stamp(self) -> int | None:
        path = self.journal / "checkpoint" / "vm.json.gz"
        return path.stat().st_mtime_ns if path.exists() else None

    def log_text(self) -> str:
        return "\n".join(p.read_text() for p in self.logs)


def run(tmp_path: Path, db_url: str, stops: list[tuple[int, str]], *, proxy=None,
        before=None) -> DaemonRun:
    """Serve the busy hour to a daemon, stopping it at each (frame, how) and starting it
    again; ``before(i, proxy)`` runs before piece i is sent (outages)."""
    with EslPeer(password=PASSWORD) as peer:
        daemon = DaemonRun(tmp_path, peer, db_url)
        try:
            daemon.start()
            for i, (cut, how) in enumerate(stops):
                if before is not None:
                    before(i, proxy)
                saved = daemon.checkpoint_stamp()
                daemon.send_until(cut)
                if how == "kill-later":
                    gevent.sleep(0.6)  # the writer has flushed, a checkpoint may be saved
                elif how == "kill-after-checkpoint":  # one saved since this piece was sent
                    wait_for(lambda: daemon.checkpoint_stamp() != saved, 60, "a checkpoint saved")
                daemon.stop("kill" if how.startswith("kill") else how)
                if before is not None:
                    before(i + 0.5, proxy)
                if how == "kill-twice":
                    daemon.start_and_kill_while_recovering()
                daemon.start()
            daemon.send_until(len(FRAMES))
            gevent.sleep(0.3)
            daemon.stop("term")
        finally:
            daemon.close()
    return daemon


def clean_rows(tmp_path: Path, db_url: str) -> dict:
    clean = run(tmp_path / "clean", db_url, [])
    rows = table_contents(db_url)
    assert len(rows["calls"]) == 150, clean.log_text()
    wipe(db_url)
    return rows


# stop points across the busy hour: waits, rings, talks, holds and wrap-ups are up at each
STOPS = [(1100, "kill"), (2500, "term"), (3900, "kill-later"), (5200, "kill-twice"),
         (6500, "term"), (7600, "kill")]


def test_daemon_stopped_and_killed_six_times_in_the_busy_hour_stores_what_a_clean_run_stores(
        tmp_path, empty_db_url):
    clean = clean_rows(tmp_path, empty_db_url)
    daemon = run(tmp_path / "restarted", empty_db_url, STOPS)
    assert differences(clean, table_contents(empty_db_url)) == {}, daemon.log_text()[-3000:]
    logs = daemon.log_text()
    # after a SIGTERM the next start replays nothing; after a kill, from the last checkpoint
    assert logs.count("engine recovered node=vm from=checkpoint events_replayed=0 ") == 2, logs
    assert logs.count("engine recovered node=vm from=checkpoint") >= 4, logs
    assert "Traceback" not in logs and "level=error" not in logs


def test_daemon_killed_during_a_database_outage_catches_up_from_its_journal(
        tmp_path, pg_via_proxy):
    direct, proxied, proxy = pg_via_proxy
    clean = clean_rows(tmp_path, direct)

    def outages(step: float, proxy) -> None:
        if step == 1:  # gone after a first checkpoint; back only after three stops in the outage
            proxy.cut()
        elif step == 3.5:
            proxy.restore()

    # killed twice and stopped once (its records spilled to disk) while the database is away
    stops = [(2500, "kill-after-checkpoint"), (4800, "kill"), (5900, "kill-later"),
             (6700, "term"), (7500, "kill")]
    daemon = run(tmp_path / "restarted", proxied, stops, proxy=proxy, before=outages)
    assert differences(clean, table_contents(direct)) == {}, daemon.log_text()[-3000:]
    logs = daemon.log_text()
    assert "database unreachable" in logs
    # the checkpoint saved before the outage is where the starts during and after it begin
    assert logs.count("engine recovered node=vm from=checkpoint") == 5, logs
    assert "records spilled" in logs


def test_a_first_start_without_a_checkpoint_replays_the_journal_and_drops_rows_an_older_daemon_left(
        tmp_path, empty_db_url):
    from daemon.definition.model import EslNode, Settings
    from daemon.engine.segments import engine_for
    from daemon.service import Service
    from daemon.storage.store import Store

    journal_dir = tmp_path / "journal"
    journal = Journal(journal_dir, prefix="vm")
    sent = [f for f in capture_event_frames(capture_path("sip_agent")) if subscribed(f)]
    for frame in sent:
        journal.append(frame)
    journal.close()
    files = journal_files(journal_dir, "vm")
    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    replay(files, clean_url)
    # the rows an older daemon wrote, with a ring under the id it gave a ring it met only at
    # its bridge after a restart (CC-Agent-Called-Time in whole seconds)
    replay(files, empty_db_url)
    engine_ = create_engine(empty_db_url)
    with engine_.begin() as conn:
        ring = dict(conn.execute(select(schema.segments)
                                 .where(schema.segments.c.kind == "ring")).first()._mapping)
        conn.execute(schema.segments.insert().values(
            dict(ring, segment_id=ring["segment_id"].rsplit(":", 1)[0] + ":1795345631000")))
    engine_.dispose()

    class NoLive:
        def apply(self, changes) -> None:
            raise AssertionError("recovery does not replay live state")

    store = Store(empty_db_url, spill_dir=tmp_path / "spill")
    settings = Settings(esl_nodes=(EslNode("vm"),), journal_dir=str(journal_dir))
    service = Service(settings, None, lambda node: Journal(journal_dir, prefix=node),
                      engine_for, store, NoLive(), journal_dir=journal_dir)
    service.recover()
    store.close()
    assert service.recovered == {"vm": len(sent)}  # no checkpoint: the whole journal
    assert table_contents(empty_db_url) == table_contents(clean_url)


def test_a_checkpoint_file_other_users_could_have_written_is_not_trusted(tmp_path):
    from daemon.storage.checkpoint import Checkpoint, checkpoint_path, load, save
    from daemon.storage.journal import JournalPosition

    eng = engine()
    for ev in events("sip_agent"):
        eng.feed(ev)
    save(tmp_path, Checkpoint("vm", JournalPosition(3, 1234), eng.checkpoint()))
    path = checkpoint_path(tmp_path, "vm")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    loaded = load(tmp_path, "vm")
    assert loaded is not None and loaded.position == JournalPosition(3, 1234)
    path.chmod(0o666)
    assert load(tmp_path, "vm") is None  # replays the whole journal instead
    path.chmod(0o600)
    path.write_bytes(b"\x1f\x8b garbage")
    assert load(tmp_path, "vm") is None


def test_a_replay_removes_an_agent_interval_a_restarted_older_daemon_started_and_mends_the_one_it_cut(
        tmp_path, empty_db_url):
    from sqlalchemy import update

    path = capture_path("busy_hour")
    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    replay([path], clean_url)
    replay([path], empty_db_url)
    ai = schema.agent_intervals
    engine_ = create_engine(empty_db_url)
    with engine_.begin() as conn:  # a fresh engine after a restart saw "Waiting" again
        first = dict(conn.execute(select(ai).where(ai.c.kind == "state", ai.c.ended_ms.is_not(None))
                                  .order_by(ai.c.duration_ms.desc())).first()._mapping)
        cut = first["started_ms"] + 1000
        conn.execute(ai.insert().values(dict(first, interval_id=f"{first['agent']}:state:{cut}",
                                             started_ms=cut, duration_ms=first["ended_ms"] - cut)))
        conn.execute(update(ai).where(ai.c.interval_id == first["interval_id"])
                     .values(ended_ms=cut, duration_ms=1000))
    engine_.dispose()
    stats = replay([path], empty_db_url)
    assert stats.stale == 1
    assert table_contents(empty_db_url) == table_contents(clean_url)


def test_a_caller_gone_while_the_agent_leg_or_the_queue_member_is_still_on_the_switch_stays_open():
    from daemon.engine.segments_state import SwitchPresence

    t0 = 1_795_345_640_000

    def ev(at_ms: int, **headers: str) -> Event:
        return Event.from_headers({"Event-Date-Timestamp": str(at_ms * 1000), **headers})

    cc = {"Event-Name": "CUSTOM", "Event-Subclass": "callcenter::info",
          "CC-Queue": "billing@hotline.test", "CC-Member-Session-UUID": "call-1",
          "CC-Member-UUID": "m-1", "CC-Agent": "1001@hotline.test"}
    eng = engine()
    for event in (
            ev(t0, **{"Event-Name": "CHANNEL_CREATE", "Unique-ID": "call-1",
                      "Call-Direction": "inbound", "Caller-Caller-ID-Number": "13900000001",
                      "Caller-Destination-Number": "7001"}),
            ev(t0 + 100, **cc, **{"CC-Action": "member-queue-start"}),
            ev(t0 + 200, **cc, **{"CC-Action": "agent-offering"}),
            ev(t0 + 3000, **cc, **{"CC-Action": "bridge-agent-start", "CC-Agent-UUID": "leg-1"}),
            # the caller hangs up; mod_callcenter's bridge end and queue end are still to come
            ev(t0 + 9000, **{"Event-Name": "CHANNEL_HANGUP", "Unique-ID": "call-1"})):
        eng.feed(event)

    def closes(channels: set[str], members: set[str]) -> list[str]:
        probe = engine()
        probe.restore(eng.checkpoint())
        out = probe.reconcile(SwitchPresence("", frozenset(channels), frozenset(members)))
        return sorted(s.kind for s in out.segments if dict(s.attrs).get("closed_by") == "reconcile")

    assert closes({"leg-1"}, set()) == []  # the agent's leg is still bridged
    assert closes(set(), {"m-1"}) == []  # mod_callcenter still lists the stay
    assert closes(set(), set()) == ["talk", "wrapup"]  # nothing left: it ended unheard
