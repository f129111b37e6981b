"""Rebuild the statistics database from journals and captures (``hotline replay``).

Each input is read frame by frame (plain or gzip), every ``text/event-plain``
frame goes through a segment engine, and the engine's records are upserted by
the ``Store``. Records have deterministic ids, so replaying the same files
again rewrites the same rows: the database does not change.

Streams: a capture stands alone (it starts with a fresh switch), so each file
gets a fresh engine - except the files of one daemon journal, named
``<prefix>-<UTC>Z-<seq>.esl[.gz]`` (see ``daemon.storage.journal``): the files given
that share a directory and prefix are chained in sequence order through one
engine, because a call may span a rotation. At the end of each stream
``engine.finish()`` closes what the stream closed implicitly (pending
wrap-ups) and, for a capture, the agents' status and state intervals at its last
event; calls still up stay in progress.

The node of a stream: for a daemon journal, the node name in its file names
(the daemon writes that same name as the ``node`` of its rows, so a journal
replays to identical rows); for any other file, the ``FreeSWITCH-Switchname``
of its first event. What a switch reported after a daemon's (re)connect is in its
journal too (``switch_state_frame``) and reconciles calls here where it did there.

Convergence: a call whose whole life is in the replayed streams (its caller leg's
CHANNEL_CREATE is in them) gets exactly the segments the replay produced for it;
rows of that call under other ids - left by an older daemon that restarted in the
middle of the call - are deleted. Likewise the node's agent intervals that began
within a stream's time span and that the replay did not produce, for the agents
whose changes the streams hold. So a replay over
an existing database gives the rows a replay into an empty one gives.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from daemon.storage.journal import JOURNAL_NAME, iter_chunks, iter_frame_batches, switch_state_of
from daemon.storage.store import Store
from daemon.switch.events import Event
from daemon.switch.frames import EslParser

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayStats:
    files: int
    streams: int
    bytes: int  # bytes of the input files (compressed size for .gz)
    frames: int
    events: int
    garbage: int  # stretches of bytes skipped as not-ESL
    errors: int  # events the engine failed on (logged with the call id)
    calls: int  # distinct records produced
    segments: int
    intervals: int
    stale: int = 0  # rows of the replayed span the replay did not produce, deleted (see above)


class NotEslError(ValueError):
    """An input file that is not an ESL capture or journal (one sentence per file)."""


SNIFF_BYTES = 1 << 20  # a capture or journal has its first frame long before this


def is_esl(path: str | Path, limit: int = SNIFF_BYTES) -> bool:
    """Whether ``path`` (plain or gzip) starts with ESL frames: a frame with a
    Content-Type within its first ``limit`` bytes. An empty file is a journal that
    was just rotated: it counts as ESL (with no events)."""
    parser = EslParser()
    seen = 0
    for data, _pos in iter_chunks(path):
        seen += len(data)
        frames, _skipped = parser.feed_resync(data)
        if any(f.content_type for f in frames):
            return True
        if seen >= limit:
            break
    return seen == 0


def check_inputs(paths: Iterable[str | Path]) -> None:
    """Refuse, before anything is written, files that are missing or not ESL."""
    files = [Path(p) for p in paths]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such file: {', '.join(missing)}")
    foreign = [str(p) for p in files if not is_esl(p)]
    if foreign:
        raise NotEslError(f"not an ESL capture or journal: {', '.join(foreign)} (hotline replay "
                          "reads the .esl/.esl.gz files the daemon journals or a capture of "
                          "an ESL event stream)")


def plan_streams(paths: Iterable[str | Path]) -> list[list[Path]]:
    """Group input files into event streams (journal files chained, others alone)."""
    streams: list[list[Path]] = []
    journals: dict[tuple[Path, str], list[tuple[str, int, Path]]] = {}
    order: list[tuple[str, Any]] = []
    for raw in paths:
        path = Path(raw)
        m = JOURNAL_NAME.match(path.name)
        if m:
            key = (path.resolve().parent, m["prefix"])
            if key not in journals:
                journals[key] = []
                order.append(("journal", key))
            entry = (int(m["seq"]), m["stamp"], path)
            if entry not in journals[key]:
                journals[key].append(entry)
        else:
            order.append(("file", path))
    for kind, item in order:
        if kind == "journal":
            streams.append([p for _, _, p in sorted(journals[item])])
        else:
            streams.append([item])
    return streams


def stream_node(stream: Sequence[Path]) -> str | None:
    """The node a daemon journal names in its files (``<node>-<UTC>Z-<seq>.esl``), else None."""
    m = JOURNAL_NAME.match(stream[0].name) if stream else None
    return m["prefix"] if m else None


def _default_engine_factory(center: Any, node: str) -> Any:
    from daemon.engine.segments import engine_for

    return engine_for(center, node)


def replay(paths: Sequence[str | Path], db_url: str, center: Any = None, *,
           progress: Callable[[int], None] | None = None,
           engine_factory: Callable[[Any, str], Any] | None = None,
           store: Store | None = None) -> ReplayStats:
    """Feed journals/captures through the engine into ``db_url``; returns what was done.

    ``progress(n)`` is called with the number of input bytes consumed since the last call.
    Raises ``FileNotFoundError`` / :class:`NotEslError` (nothing written) for a missing
    file or one that is not ESL.
    """
    factory = engine_factory or _default_engine_factory
    files = [Path(p) for p in paths]
    check_inputs(files)
    own_store = store is None
    if store is None:
        store = Store(db_url, batch_size=2000, max_buffer=200_000)
    frames = events = errors = 0
    garbage: list[str] = []
    calls: set[str] = set()
    segments: dict[str, str] = {}  # segment id -> call id
    intervals: dict[str, str] = {}  # interval id -> agent
    created: set[str] = set()  # channels whose CHANNEL_CREATE the streams hold
    spans: list[tuple[str, int, int]] = []  # (node, first, last event time) of each stream
    streams = plan_streams(files)
    total_bytes = 0
    try:
        for stream in streams:
            engine = None
            journal_node = stream_node(stream)
            node = ""
            first_ms = last_ms = 0
            for path in stream:
                last = 0
                for batch, pos in iter_frame_batches(path, errors=garbage):
                    for frame in batch:
                        frames += 1
                        if not frame.is_event:
                            presence = switch_state_of(frame)
                            reconcile = getattr(engine, "reconcile", None)
                            if presence is not None and reconcile is not None:
                                out = reconcile(presence)
                                if out:
                                    _remember(out, calls, segments, intervals)
                                    store.write(out)
                            continue
                        event = Event.from_frame(frame)
                        if event.name == "CHANNEL_CREATE" and event.uuid:
                            created.add(event.uuid)
                        if engine is None:
                            node = (journal_node or event.get("FreeSWITCH-Switchname")
                                    or event.get("FreeSWITCH-Hostname") or "")
                            engine = factory(center, node)
                        event.node = node
                        events += 1
                        stamp = event.timestamp_ms
                        if stamp > 0:
                            first_ms = stamp if not first_ms else min(first_ms, stamp)
                            last_ms = max(last_ms, stamp)
                        try:
                            out = engine.feed(event)
                        except Exception:  # the engine isolates calls itself; this is a last guard
                            errors += 1
                            logger.exception("engine failed on %r (call %s) in %s", event,
                                             event.get("Unique-ID"), path)
                            continue
                        if out:
                            _remember(out, calls, segments, intervals)
                            store.write(out)
                    if progress is not None and pos > last:
                        progress(pos - last)
                    last = pos
                total_bytes += path.stat().st_size
            if engine is not None:
                # a capture is a recording that stands alone: its agents' intervals end
                # with it; a daemon journal's stay open, as the daemon left them (the next
                # interval of the same agent closes them, see Store)
                out = engine.finish(close_agent_intervals=journal_node is None)
                if out:
                    _remember(out, calls, segments, intervals)
                    store.write(out)
                if first_ms:
                    spans.append((node, first_ms, last_ms))
        store.flush()
        whole = calls & created
        by_call: dict[str, set[str]] = {call_id: set() for call_id in whole}
        for seg_id, call_id in segments.items():
            owned = by_call.get(call_id)
            if owned is not None:
                owned.add(seg_id)
        stale = store.remove_stale_segments(by_call)
        for span_node, first, last in spans:
            stale += store.remove_stale_intervals(span_node, first, last, set(intervals),
                                                  set(intervals.values()))
    finally:
        if own_store:
            store.close()
    return ReplayStats(files=len(files), streams=len(streams), bytes=total_bytes, frames=frames,
                       events=events, garbage=len(garbage), errors=errors, calls=len(calls),
                       segments=len(segments), intervals=len(intervals), stale=stale)


def _remember(out: Any, calls: set[str], segments: dict[str, str],
              intervals: dict[str, str]) -> None:
    calls.update(c.call_id for c in out.calls)
    segments.update((s.segment_id, s.call_id) for s in out.segments)
    intervals.update((i.interval_id, i.agent) for i in out.intervals)
