"""Replay of the recorded captures into SQLite and PostgreSQL, read back through the call log.

Each scenario test reads like the call it checks; the numbers are the capture's
truth file (within 0.05 s). The engine is the real one, configured with the
capture switch's wrap-up times (capture README); one test replays with the
example config/ instead, whose demo tenant is that switch.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from daemon.storage import schema
from daemon.storage.calllog import call_log
from daemon.storage.journal import Journal, journal_files, read_frames
from daemon.storage.replay import plan_streams
from tests.conftest import CAPTURES, REPO

TOL_MS = 50


# the capture switch's agents and their wrap-up-time (README "The switch and the tenant")
WRAPUP_S = {f"100{n}@hotline.test": s for n, s in ((1, 3), (2, 4), (3, 5), (4, 4), (5, 3), (6, 3))}


class CaptureSwitch:
    """Stands for ``center`` in these tests: replay gets engines configured like the switch."""


def capture_engine(center, node: str):
    from daemon.engine.segments import SegmentEngine

    return SegmentEngine(node=node, agent_wrapup_s=WRAPUP_S)


def replay(paths, url, center, **kw):
    from daemon.storage.replay import replay as run

    if isinstance(center, CaptureSwitch):
        return run(paths, url, None, engine_factory=capture_engine, **kw)
    return run(paths, url, center, **kw)


@pytest.fixture(scope="module")
def center():
    return CaptureSwitch()


def truth(name: str) -> dict:
    return json.loads((CAPTURES / f"{name}.truth.json").read_text())


def capture(name: str) -> Path:
    plain = CAPTURES / f"{name}.esl"
    return plain if plain.exists() else CAPTURES / f"{name}.esl.gz"


def replayed(name: str, url: str, center) -> list[dict]:
    replay([capture(name)], url, center)
    return call_log(url)


def kinds(call: dict) -> list[str]:
    return [s["kind"] for s in call["segments"]]


def only(call: dict, kind: str, **match) -> dict:
    found = [s for s in call["segments"] if s["kind"] == kind
             and all(s[k] == v for k, v in match.items())]
    assert len(found) == 1, f"expected one {kind} {match}, got {found}"
    return found[0]


def secs_close(ms: int | None, seconds: float | None) -> bool:
    return ms is not None and seconds is not None and abs(ms - seconds * 1000) <= TOL_MS


def dump(url: str) -> dict[str, list[tuple]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {t.name: sorted(tuple(r) for r in conn.execute(select(t)))
                    for t in (schema.calls, schema.segments, schema.agent_intervals,
                              schema.dispositions)}
    finally:
        engine.dispose()


# --- scenarios ---------------------------------------------------------------------------------


def test_caller_picks_billing_1001_answers_and_the_caller_hangs_up(empty_db_url, center):
    t = truth("answered_ivr")["calls"][0]
    [call] = replayed("answered_ivr", empty_db_url, center)
    assert (call["call_id"], call["outcome"], call["caller"], call["dialed"]) == (
        t["call_uuid"], "answered", t["caller_number"], "4008001234")
    assert call["started_at"] == "2026-11-22T11:07:09.492Z"
    assert kinds(call) == ["ivr", "queue", "ring", "talk", "wrapup"]
    assert only(call, "ivr")["digits"] == "1"
    queue = only(call, "queue")
    assert (queue["queue"], queue["outcome"]) == ("billing@hotline.test", "answered")
    assert secs_close(queue["duration_ms"], t["wait_s"])
    ring = only(call, "ring")
    assert ring["agent"] == "1001@hotline.test" and secs_close(ring["duration_ms"], t["ring_s"])
    talk = only(call, "talk")
    assert secs_close(talk["duration_ms"], t["talk_s"]) and talk["hangup_by"] == "caller"
    assert secs_close(only(call, "wrapup")["duration_ms"], t["wrapup_s"])


def test_caller_waits_25_s_and_hangs_up_is_abandoned_not_short(empty_db_url, center):
    [call] = replayed("abandoned_long", empty_db_url, center)
    queue = only(call, "queue")
    assert queue["outcome"] == "abandoned" and secs_close(queue["duration_ms"], 25.0)
    assert call["outcome"] == "abandoned"
    assert "talk" not in kinds(call)


def test_caller_hangs_up_after_5_s_in_the_queue_is_a_short_abandon(empty_db_url, center):
    [call] = replayed("abandoned_short", empty_db_url, center)
    queue = only(call, "queue")
    assert queue["outcome"] == "short-abandon" and secs_close(queue["duration_ms"], 5.02)


def test_first_agent_does_not_answer_and_the_call_rolls_over_to_1002(empty_db_url, center):
    t = truth("noanswer_rollover")["calls"][0]
    [call] = replayed("noanswer_rollover", empty_db_url, center)
    assert only(call, "ring", agent="1001@hotline.test")["outcome"] == "no-answer"
    answered = only(call, "ring", agent="1002@hotline.test")
    assert answered["outcome"] == "answered" and secs_close(answered["duration_ms"], t["ring_s"])
    assert secs_close(only(call, "queue")["duration_ms"], t["wait_s"])
    assert secs_close(only(call, "wrapup")["duration_ms"], 4.0)  # 1002's wrap-up-time


def test_agent_puts_the_caller_on_hold_once_talk_is_split_around_it(empty_db_url, center):
    t = truth("hold")["calls"][0]
    [call] = replayed("hold", empty_db_url, center)
    assert kinds(call) == ["ivr", "queue", "ring", "talk", "hold", "talk", "wrapup"]
    talk_ms = sum(s["duration_ms"] for s in call["segments"] if s["kind"] == "talk")
    assert secs_close(talk_ms, t["talk_s"])
    assert secs_close(only(call, "hold")["duration_ms"], t["hold_s"])
    assert call["segments"][-2]["hangup_by"] == "agent"


def test_billing_agent_blind_transfers_the_caller_to_outage(empty_db_url, center):
    [call] = replayed("blind_transfer", empty_db_url, center)
    billing = only(call, "queue", queue="billing@hotline.test")
    outage = only(call, "queue", queue="outage@hotline.test")
    assert billing["outcome"] == "transferred-out" and outage["outcome"] == "answered"
    assert billing["visit_id"] != outage["visit_id"]
    transfer = only(call, "transfer")
    assert (transfer["transfer_type"], transfer["target"], transfer["duration_ms"]) == ("blind", "7002", 0)
    assert call["outcome"] == "answered"


def test_sales_gives_up_after_max_wait_time(empty_db_url, center):
    [call] = replayed("queue_timeout", empty_db_url, center)
    queue = only(call, "queue")
    assert (queue["queue"], queue["outcome"]) == ("sales@hotline.test", "timeout")
    assert secs_close(queue["duration_ms"], 7.52)
    assert call["outcome"] == "timeout"


def test_caller_hangs_up_in_the_ivr_without_pressing_anything(empty_db_url, center):
    [call] = replayed("ivr_only", empty_db_url, center)
    assert call["outcome"] == "ivr-only" and kinds(call) == ["ivr"]
    assert secs_close(call["segments"][0]["duration_ms"], 4.5)


def test_every_single_call_capture_matches_its_truth_in_the_call_log(empty_db_url, center):
    names = ["answered_ivr", "abandoned_long", "abandoned_short", "noanswer_rollover", "hold",
             "queue_timeout", "sip_agent", "loopback_agent"]
    replay([capture(n) for n in names], empty_db_url, center)
    log = {c["call_id"]: c for c in call_log(empty_db_url)}
    assert len(log) == len(names)
    for name in names:
        t = truth(name)["calls"][0]
        call = log[t["call_uuid"]]
        queue = only(call, "queue")
        assert queue["outcome"] == t["outcome"], name
        assert secs_close(queue["duration_ms"], t["wait_s"]), name
        if t["agent"]:
            assert queue["agent"] == t["agent"], name
            wrap = only(call, "wrapup")
            assert secs_close(wrap["duration_ms"], t["wrapup_s"]), name


# --- idempotency and streams -----------------------------------------------------------------


def test_replaying_every_capture_twice_changes_nothing(empty_db_url, center):
    files = sorted(CAPTURES.glob("*.esl")) + [CAPTURES / "busy_hour.esl.gz"]
    first = replay(files, empty_db_url, center)
    before = dump(empty_db_url)
    second = replay(files, empty_db_url, center)
    after = dump(empty_db_url)
    assert before == after
    assert first == second
    assert first.calls == len(before["calls"]) >= 150 + 12
    assert first.streams == len(files)


def test_a_rotated_daemon_journal_replays_as_one_stream_like_the_capture(tmp_path, center):
    frames = [f for f in read_frames(capture("answered_ivr")) if f.is_event]
    with Journal(tmp_path / "journal", max_bytes=40_000, prefix="vm", compress=True) as journal:
        for frame in frames:
            journal.append(frame.raw)
    files = journal_files(tmp_path / "journal", "vm")
    assert len(files) > 5  # the call spans many rotations
    shuffled = files[:]
    random.Random(7).shuffle(shuffled)
    assert plan_streams(shuffled) == [files]
    from_journal = f"sqlite:///{tmp_path / 'j.db'}"
    from_capture = f"sqlite:///{tmp_path / 'c.db'}"
    replay(shuffled, from_journal, center)
    replay([capture("answered_ivr")], from_capture, center)
    journal_rows, capture_rows = dump(from_journal), dump(from_capture)
    intervals_j = journal_rows.pop("agent_intervals")
    intervals_c = capture_rows.pop("agent_intervals")
    assert journal_rows == capture_rows
    # the same intervals; only a capture, a recording standing alone, ends the ones the
    # daemon's journal leaves open
    assert [row[:8] for row in intervals_j] == [row[:8] for row in intervals_c]  # id .. started
    ended = {row[0]: row for row in intervals_c}
    for row in intervals_j:
        if row[8] is None:  # ended_ms
            assert ended[row[0]][8] is not None
        else:
            assert ended[row[0]] == row


def test_plan_streams_keeps_captures_apart_and_chains_each_journal_by_sequence(tmp_path):
    a1 = tmp_path / "vm-20261122T110000000000Z-000001.esl"
    a2 = tmp_path / "vm-20261122T100000000000Z-000002.esl.gz"  # the clock was set back
    b1 = tmp_path / "vm2-20261122T110000000000Z-000001.esl"
    other = tmp_path / "answered_ivr.esl"
    assert plan_streams([a2, other, b1, a1]) == [[a1, a2], [other], [b1]]


def test_replay_with_the_example_config_takes_wrap_up_times_from_its_demo_tenant(tmp_path):
    from daemon.definition.config import load_center

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    replay([capture("noanswer_rollover")], url, load_center(REPO / "config"))
    [call] = call_log(url)
    wrap = only(call, "wrapup")
    assert wrap["agent"] == "1002@hotline.test" and secs_close(wrap["duration_ms"], 4.0)


def test_replay_without_a_config_still_rebuilds_the_calls(empty_db_url):
    stats = replay([capture("answered_ivr")], empty_db_url, None)
    assert stats.calls == 1 and stats.errors == 0
    assert call_log(empty_db_url)[0]["outcome"] == "answered"


def test_agent_keys_in_a_disposition_code_after_the_call_and_it_lands_in_dispositions(tmp_path, center):
    from urllib.parse import quote

    t = truth("answered_ivr")["calls"][0]
    frames = [f for f in read_frames(capture("answered_ivr")) if f.is_event]
    last_us = max(int(f.body.split(b"Event-Date-Timestamp: ")[1].split(b"\n")[0]) for f in frames)
    at_us = last_us - 2_000_000  # during 1001's wrap-up, after the call
    headers = {"Event-Name": "CUSTOM", "Event-Subclass": "hotline::disposition",
               "FreeSWITCH-Switchname": "vm", "Event-Date-Timestamp": str(at_us),
               "Hotline-Call-ID": t["call_uuid"], "Hotline-Agent": "1001@hotline.test",
               "Hotline-Code": "SALE"}
    body = "".join(f"{k}: {quote(v, safe='')}\n" for k, v in headers.items()).encode()
    custom = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body
    path = tmp_path / "with_disposition.esl"
    path.write_bytes(b"".join(f.raw for f in frames) + custom)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    replay([path], url, center)
    [call] = call_log(url)
    assert only(call, "talk")["disposition"] == "SALE"
    rows = dump(url)["dispositions"]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (t["call_uuid"], "1001@hotline.test", "SALE", "phone")]
