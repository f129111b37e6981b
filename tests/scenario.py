"""Scenario helpers: replay a recorded capture through the segment engine and read the result.

``replay("answered_ivr")`` parses ``tests/data/captures/answered_ivr.esl`` (or
``.esl.gz``) with the real ESL parser, feeds every event to a fresh engine
configured like the capture's switch, and returns a :class:`Replay`: the last
version of every record (records re-emitted with the same id replace earlier
ones, as the store upserts them) plus the raw outputs in order.
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from daemon.engine.records import AgentInterval, CallRecord, EngineOutput, LiveChange, Segment
from daemon.engine.segments import SegmentEngine
from daemon.switch.events import Event
from daemon.switch.frames import EslParser

CAPTURES = Path(__file__).resolve().parent / "data" / "captures"
REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"  # its demo tenant is the capture switch
# Recorded on a switch running the rendered bundled example (README "Captures recorded with
# the rendered example center"): tenants hotline.test (demo) and hotline.cityutil.cn
# (cityutil) of config/, so they are replayed through an engine built from that config.
RENDERED_CAPTURES = ("exit_key_callback", "exit_key_ignored", "survey_call", "whisper_barge",
                     "agent_on_call_logout", "callback_connected")

# The capture switch's agents (README "The switch and the tenant").
WRAPUP_S = {f"100{n}@hotline.test": s for n, s in ((1, 3), (2, 4), (3, 5), (4, 4), (5, 3), (6, 3))}


def capture_path(name: str) -> Path:
    for candidate in (CAPTURES / f"{name}.esl", CAPTURES / f"{name}.esl.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no capture {name} in {CAPTURES}")


@lru_cache(maxsize=None)
def _capture_bytes(name: str) -> bytes:
    path = capture_path(name)
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def events(name: str) -> list[Event]:
    """Every ``text/event-plain`` event of a capture, in sending order (fresh objects)."""
    frames = EslParser().feed(_capture_bytes(name))
    return [Event.from_frame(f) for f in frames if f.content_type == "text/event-plain"]


@lru_cache(maxsize=None)
def truth(name: str) -> dict:
    return json.loads((CAPTURES / f"{name}.truth.json").read_text())


def engine() -> SegmentEngine:
    return SegmentEngine(node="", agent_wrapup_s=WRAPUP_S)


@lru_cache(maxsize=None)
def _repo_center():
    from daemon.definition.config import load_center

    return load_center(REPO_CONFIG)


def config_engine() -> SegmentEngine:
    """An engine configured from config/ (demo and cityutil), as the daemon builds it."""
    from daemon.engine.segments import engine_for

    return engine_for(_repo_center(), "")


def capture_engine(name: str) -> SegmentEngine:
    """The engine configured like the switch that recorded capture ``name``."""
    return config_engine() if name in RENDERED_CAPTURES else engine()


@dataclass
class Replay:
    outputs: list[EngineOutput] = field(default_factory=list)
    calls: dict[str, CallRecord] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)
    intervals: dict[str, AgentInterval] = field(default_factory=dict)
    live: list[LiveChange] = field(default_factory=list)

    def add(self, out: EngineOutput) -> None:
        self.outputs.append(out)
        for c in out.calls:
            self.calls[c.call_id] = c
        for s in out.segments:
            self.segments[s.segment_id] = s
        for i in out.intervals:
            self.intervals[i.interval_id] = i
        self.live.extend(out.live)

    def segs(self, call_id: str, kind: str | None = None) -> list[Segment]:
        """A call's segments (of one kind), in start order."""
        found = [s for s in self.segments.values()
                 if s.call_id == call_id and (kind is None or s.kind == kind)]
        return sorted(found, key=lambda s: (s.started_ms, s.segment_id))

    def visit(self, call_id: str, member_uuid: str, kind: str) -> list[Segment]:
        return [s for s in self.segs(call_id, kind) if s.visit_id == member_uuid]


def feed_all(eng: SegmentEngine, evs: Iterable[Event], replay: Replay | None = None) -> Replay:
    replay = replay if replay is not None else Replay()
    for ev in evs:
        replay.add(eng.feed(ev))
    replay.add(eng.finish())
    return replay


def replay(name: str, eng: SegmentEngine | None = None) -> Replay:
    return feed_all(eng if eng is not None else capture_engine(name), events(name))


def seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000.0


# --- comparison with a capture's truth file -----------------------------------------

TOLERANCE_S = 0.05


def _dur(segs) -> float | None:
    if not segs or any(s.ended_ms is None for s in segs):
        return None
    return round(sum(s.duration_ms for s in segs) / 1000.0, 3)


def compare_visit(rep: Replay, call_id: str, v: dict,
                  wrapup_s: object = None) -> list[tuple[str, object, object]]:
    """(field, truth, engine) for every truth value of one queue stay. ``wrapup_s``: the
    call's value, for truth files that give it per call rather than per stay."""
    mu = v["member_uuid"]
    rows: list[tuple[str, object, object]] = []
    q = rep.visit(call_id, mu, "queue")
    queue = q[0] if q else None
    rows.append(("queue", v["queue"], queue.queue if queue else None))
    want_outcome = {"transferred": "transferred-out"}.get(v["outcome"], v["outcome"])
    rows.append(("outcome", want_outcome, queue.outcome if queue else None))
    rows.append(("wait_s", v["wait_s"], seconds(queue.duration_ms) if queue else None))
    rings = rep.visit(call_id, mu, "ring")
    got_offers = sorted((r.agent, seconds(r.duration_ms), r.outcome) for r in rings)
    want_offers = sorted((o["agent"], o["ring_s"], o["result"]) for o in v["offers"])
    rows.append(("offers", want_offers, got_offers))
    talks = rep.visit(call_id, mu, "talk")
    holds = rep.visit(call_id, mu, "hold")
    wraps = rep.visit(call_id, mu, "wrapup")
    answered = [r for r in rings if r.outcome == "answered"]
    rows.append(("agent", v["agent"], answered[0].agent if answered else None))
    rows.append(("ring_s", v["ring_s"], seconds(answered[0].duration_ms) if answered else None))
    rows.append(("talk_s", v["talk_s"], _dur(talks)))
    if v["hold_s"] is not None:
        rows.append(("hold_s", v["hold_s"], _dur(holds) or 0))
    rows.append(("holds", len(v["holds"]), len(holds)))
    rows.append(("wrapup_s", v.get("wrapup_s", wrapup_s), _dur(wraps)))
    if v["talk_s"] is not None:
        want_by = v["hangup_by"]
        rows.append(("hangup_by", want_by, talks[-1].hangup_by if talks else None))
    if v.get("transfer_target"):
        tr = rep.visit(call_id, mu, "transfer")
        got = f"{tr[0].target} ({dict(tr[0].attrs).get('target_queue')})" if tr else None
        rows.append(("transfer_target", v["transfer_target"], got))
        rows.append(("transfer_method", v.get("transfer_method"),
                     dict(tr[0].attrs).get("method") if tr else None))
    return rows


def compare_call(rep: Replay, c: dict) -> list[tuple[str, object, object]]:
    call_id = c["call_uuid"]
    rec = rep.calls.get(call_id)
    rows: list[tuple[str, object, object]] = [("call exists", True, rec is not None)]
    if rec is None:
        return rows
    rows.append(("caller", c["caller_number"], rec.caller))
    # the DID; a caller who dialed a queue entry directly (no DID) dialed that
    rows.append(("dialed", c["did"] if c["did"] is not None else c.get("dialed"), rec.dialed))
    if c["outcome"] in ("ivr-only", "conference"):
        rows.append(("call outcome", c["outcome"], rec.outcome))
    if c.get("ivr_s") is not None:
        ivr = rep.segs(call_id, "ivr")
        rows.append(("ivr_s", c["ivr_s"], _dur(ivr)))
    if c.get("ivr_choice"):
        rows.append(("ivr choice", c["ivr_choice"], rec.ivr_path.split(",")[-1]))
    if c.get("conference"):
        conf = rep.segs(call_id, "conference")
        rows.append(("conference", c["conference"]["name"], conf[0].target if conf else None))
        rows.append(("in_conference_s", c["conference"]["in_conference_s"], _dur(conf)))
    for i, v in enumerate(c.get("queue_visits") or []):
        name = v["queue"].split("@")[0]
        # a per-call wrap-up describes the first stay; a later stay without agent has none
        wrapup_s = c.get("wrapup_s") if i == 0 else None
        rows.extend((f"{name} {k}", a, b)
                    for k, a, b in compare_visit(rep, call_id, v, wrapup_s))
    rows.append(("visits", len(c.get("queue_visits") or []), len(rep.segs(call_id, "queue"))))
    if c.get("survey"):
        rows.extend(_compare_survey(rep, call_id, c))
    if c.get("supervision"):
        rows.extend(_compare_supervision(rep, call_id, c))
    if c.get("callback"):
        rows.extend(_compare_callback(rep, call_id, c))
    return rows


def _compare_survey(rep: Replay, call_id: str, c: dict) -> list[tuple[str, object, object]]:
    """The after-call survey: its score, queue and agent, and that nobody transferred."""
    want = [(e["Hotline-Queue"], e["Hotline-Agent"], int(e["Hotline-Score"]))
            for e in c["survey"]["hotline_survey_events"]]
    got = [(s.queue, s.agent, s.score) for s in rep.segs(call_id, "survey")]
    rows: list[tuple[str, object, object]] = [("surveys", want, got)]
    # the caller reaches the survey when leaving the agent: the survey runs to the hangup
    visit = c["queue_visits"][-1]
    start = visit["times"].get("caller_left_agent")
    if start is not None and got:
        survey = rep.segs(call_id, "survey")[0]
        rows.append(("survey start", round(start, 3), seconds(survey.started_ms)))
        rows.append(("survey end", c["times"]["caller_hangup"], seconds(survey.ended_ms)))
    rows.append(("transfers", len([v for v in c["queue_visits"] if v["outcome"] == "transferred"]),
                 len(rep.segs(call_id, "transfer"))))
    return rows


def _compare_supervision(rep: Replay, call_id: str, c: dict) -> list[tuple[str, object, object]]:
    """Who listened to the call, how and when: one supervision segment per session."""
    want = [(s["mode"], s["channel"].split("/")[-1].split("@")[0], s["eavesdrop_start"],
             round(s["hangup"] - s["eavesdrop_start"], 3))
            for s in c["supervision"]]
    got = [(dict(s.attrs).get("mode"), s.target, seconds(s.started_ms), seconds(s.duration_ms))
           for s in rep.segs(call_id, "supervision")]
    return [("supervision", want, got)]


def _compare_callback(rep: Replay, call_id: str, c: dict) -> list[tuple[str, object, object]]:
    """A connected callback: the request, the agent's ring and the conversation."""
    cb = c["callback"]
    rows: list[tuple[str, object, object]] = []
    (seg,) = rep.segs(call_id, "callback") or (None,)
    result = cb["result"]
    rows.append(("callback outcome", cb["outcome"], seg.outcome if seg else None))
    rows.append(("callback agent", result["Hotline-Agent"], seg.agent if seg else None))
    rows.append(("callback attempts", result["Hotline-Attempts"],
                 dict(seg.attrs).get("attempts") if seg else None))
    visit = c["queue_visits"][-1]
    rows.append(("callback queue entered", visit["times"]["queue_join"],
                 seconds(seg.queue_entered_ms) if seg else None))
    leg = cb["dial_agent"]["leg_uuid"]
    rings = [s for s in rep.segs(call_id, "ring") if s.visit_id is None]
    talks = [s for s in rep.segs(call_id, "talk") if s.visit_id is None]
    rows.append(("callback ring", [(result["Hotline-Agent"],
                                    round(cb["dial_agent"]["answered"] - cb["dial_agent"]["created"], 3),
                                    "answered")],
                 [(r.agent, seconds(r.duration_ms), r.outcome) for r in rings]))
    rows.append(("callback talk_s", cb["talk_s"], _dur(talks)))
    rows.append(("callback talk agent", result["Hotline-Agent"], talks[0].agent if talks else None))
    rows.append(("callback talk start", cb["bridged"], seconds(talks[0].started_ms) if talks else None))
    rows.append(("callback talk leg", leg, dict(talks[0].attrs).get("agent_leg") if talks else None))
    want_by = "caller" if cb["hangup_by"].startswith("customer") else cb["hangup_by"].split()[0]
    rows.append(("callback hangup_by", want_by, talks[-1].hangup_by if talks else None))
    return rows


def matches(want: object, got: object) -> bool:
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return abs(want - got) <= TOLERANCE_S + 1e-9
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(
            len(a) == len(b) and all(matches(x, y) for x, y in zip(a, b))
            for a, b in zip(want, got))
    return want == got


def mismatches(rep: Replay, calls: list[dict]) -> tuple[int, list[str]]:
    """(number of truth values checked, descriptions of those that differ)."""
    checked, bad = 0, []
    for c in calls:
        for what, want, got in compare_call(rep, c):
            checked += 1
            if not matches(want, got):
                bad.append(f"{c['call_uuid']} {what}: truth {want!r}, engine {got!r}")
    return checked, bad
