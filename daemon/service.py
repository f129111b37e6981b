"""The daemon's manager: supervisors -> journal -> engine -> store / live.

Like wazo-call-logd's manager, the core is five lines (``_handle``): journal
the raw frames, make each event, feed the node's engine, write, publish. Every
collaborator comes in through the constructor, so tests hand in recording
objects and ``run_daemon`` hands in the real ones.

Ordering: all nodes' supervisors put ``(node, frames)`` (one socket read) on
one queue and a single loop consumes it, so the journal is written before the
engine sees an event and each node's events reach its engine in the order the
switch sent them. A switch snapshot (after a (re)connect) travels through the
same queue, ahead of the events received since subscribing (the supervisor
holds those back while it asks), so the live-state rebuild is never applied
on top of newer events.

Failures stay local: an engine, store or live-state exception is logged and
the next event goes on; a journal write error is logged loudly and counted
(statistics keep flowing; only replay loses those frames).

Two optional collaborators act on the switches (docs/ADMIN.md): the callback
dialer (``hotline::callback`` requests are handed to ``dialer.on_event``; its
``run(stop)`` greenlet dials) and the BLF presence lamps (``presence.apply``
gets every live-change batch, ``presence.publish_all`` every rebuild). Both
use command connections of their own, never the event links, and both stop
at SIGTERM before the store's last flush.

The HTTP surface (daemon/live/http_api.py and daemon/live/web/, ``settings.http_listen``)
serves the live state, ``health()``, /metrics and the web console; it starts with ``run``
and stops at SIGTERM before the live state is closed. A taken port or a bad address is
logged and the daemon counts calls without it.

Restarts (``journal_dir`` given; docs/ADMIN.md "Restarts and crashes"): every
``checkpoint_every`` events (or ``checkpoint_interval_s``) and at stop, each node's engine
state and journal position become a checkpoint, saved once the store has committed every
record before it (``daemon.storage.checkpoint``). At start, once the links are up (events
wait in the queue), ``recover`` restores each node's engine from its checkpoint and
replays the journal from there to its end before the first new event: calls up across a
stop or a crash go on as if the daemon never stopped, and records lost with a killed
process are emitted again. What a switch snapshot made the engine do (reconcile) is
journaled too (``switch_state_frame``), so a replay repeats it.
"""
from __future__ import annotations

import functools
import logging
import re
import signal
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import gevent
import gevent.event
import gevent.queue

from daemon.definition.model import Settings
from daemon.engine.records import EngineOutput, LiveChange
from daemon.engine.segments_state import SwitchPresence
from daemon.switch.events import Event
from daemon.switch.frames import Frame
from daemon.switch.supervisor import Supervisor, SwitchSnapshot

logger = logging.getLogger(__name__)


class JournalLike(Protocol):
    def append(self, raw: bytes) -> None: ...


class EngineLike(Protocol):
    def feed(self, event: Event) -> EngineOutput: ...


class StoreLike(Protocol):
    def write(self, out: EngineOutput) -> None: ...


class LiveLike(Protocol):
    def apply(self, changes: Sequence[LiveChange]) -> None: ...


class DialerLike(Protocol):
    def on_event(self, event: Event, node: str = "") -> bool: ...

    def run(self, stop: Any, interval_s: float = 2.0) -> None: ...

    def close(self) -> None: ...


class HttpLike(Protocol):
    def start(self, health: Callable[[], Mapping[str, Any]] | None = None) -> Any: ...

    def stop(self) -> None: ...


_STOP = object()
# Events handled between two yields to the hub. The store's writer (a greenlet) makes one
# database round trip per turn, so a long run of events without yielding starves it.
YIELD_EVERY = 16
# a checkpoint costs ~10-50 ms for a busy center's state; a restart replays at most this
# many events (or this many seconds of them) per node
CHECKPOINT_EVERY = 2000
CHECKPOINT_INTERVAL_S = 60.0


class Service:
    """Runs until :meth:`stop`; then drains what was received, flushes and returns."""

    def __init__(self, settings: Settings, center: Any,
                 journal: JournalLike | Callable[[str], JournalLike],
                 engine_factory: Callable[[Any, str], EngineLike],
                 store: StoreLike, live: LiveLike, *,
                 supervisor_factory: Callable[..., Supervisor] = Supervisor,
                 sync_interval_s: float = 1.0, max_backlog: int = 256,
                 dialer: DialerLike | None = None, presence: LiveLike | None = None,
                 dialer_interval_s: float = 2.0,
                 closers: Sequence[Callable[[], None]] = (),
                 http: HttpLike | None = None, journal_dir: str | Path | None = None,
                 checkpoint_every: int = CHECKPOINT_EVERY,
                 checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self.settings = settings
        self.center = center
        self._journal = journal
        self.engine_factory = engine_factory
        self.store = store
        self.live = live
        self.supervisor_factory = supervisor_factory
        self.sync_interval_s = sync_interval_s
        self.journals: dict[str, JournalLike] = {}
        self.engines: dict[str, EngineLike] = {}
        self.supervisors: list[Supervisor] = []
        self.snapshots: dict[str, SwitchSnapshot] = {}
        self.events = 0
        self.errors = 0
        self.journal_errors = 0
        self.dialer = dialer
        self.presence = presence
        self.dialer_interval_s = dialer_interval_s
        self.closers = list(closers)  # e.g. the command connections; called last at stop
        self.http = http
        self._http_started = False
        self._dialer_stop = gevent.event.Event()
        self._dialer_greenlet: gevent.Greenlet | None = None
        # bounded (socket reads, ~64 events each): a slow database or engine pushes back on
        # the links instead of growing the heap (a full heap makes every GC pass slower)
        self._queue: gevent.queue.Queue = gevent.queue.Queue(maxsize=max_backlog)
        self._stopped = gevent.event.Event()
        self._running = False
        # restarts: checkpoints and recovery need the journal files (see the module docstring)
        self.journal_dir = Path(journal_dir) if journal_dir is not None else None
        self.checkpoint_every = max(1, checkpoint_every)
        self.checkpoint_interval_s = checkpoint_interval_s
        self._unsaved: dict[str, int] = {}  # node -> events since its last checkpoint
        self._saved_at: dict[str, float] = {}  # node -> monotonic time of that checkpoint
        self.recovered: dict[str, int] = {}  # node -> journal events replayed at start

    # --- inputs (called from the supervisors' greenlets) ------------------------------------
    def on_frames(self, node: str, frames: list[Frame]) -> None:
        if frames:
            self._queue.put((node, frames))

    @property
    def backlog(self) -> int:
        """Socket reads waiting for the loop (the web's live stream waits while there are)."""
        return self._queue.qsize()

    def on_snapshot(self, snapshot: SwitchSnapshot) -> None:
        self._queue.put((snapshot.node, snapshot))

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        """Start a supervisor per node and process until :meth:`stop`."""
        self._running = True
        start_writer = getattr(self.store, "start_writer", None)
        if start_writer is not None:
            start_writer()
        start_presence = getattr(self.presence, "start", None)
        if start_presence is not None:
            start_presence()
        if self.dialer is not None:
            self._dialer_greenlet = gevent.spawn(self.dialer.run, self._dialer_stop,
                                                 self.dialer_interval_s)
        self._start_http()
        for node in self.settings.esl_nodes:
            self.supervisors.append(
                self.supervisor_factory(node, self.on_frames, self.on_snapshot).start())
        logger.info("daemon started nodes=%s", ",".join(n.name for n in self.settings.esl_nodes))
        syncer = gevent.spawn(self._sync_journals) if self.sync_interval_s else None
        summaries = self._start_summaries()
        try:
            # the links are up and what they receive waits in the queue: the engines first
            # take back where the last process left off
            self.recover()
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                try:
                    self._handle(*item)
                except Exception:  # last guard: the loop itself must outlive any surprise
                    self.errors += 1
                    logger.exception("event loop error node=%s", item[0])
                gevent.sleep(0)  # one socket read's worth at a time: readers and writer get turns
        finally:
            if syncer is not None:
                syncer.kill(block=False)
            if summaries is not None:
                summaries.kill(block=False)
            self._shutdown()

    def _handle(self, node: str, item: list[Frame] | SwitchSnapshot) -> None:
        if isinstance(item, SwitchSnapshot):
            return self._rebuild(item)
        self._journal_append(node, b"".join(f.raw for f in item))  # before processing
        engine = self.engine(node)
        dialer = self.dialer
        for i, frame in enumerate(item, 1):
            event = Event(frame.body, node)
            self._output(self._feed(engine, event))
            # the engine has read (and cached) the event's name: only CUSTOM events cost more
            if dialer is not None and event.name == "CUSTOM":
                self._callback(dialer, event, node)
            elif event.name == "PRESENCE_PROBE":
                self._probe(event)
            if not i % YIELD_EVERY:
                gevent.sleep(0)  # the store's writer gets a turn per database round trip
        self._count_for_checkpoint(node, len(item))

    # --- restarts ----------------------------------------------------------------------------
    def recover(self) -> None:
        """Each node's engine as the last process left it: its checkpoint, then its journal
        from there to the end (records re-emitted to the store; live state, lamps and the
        dialer are not replayed: the switch snapshot that follows the connect is their truth)."""
        if self.journal_dir is None:
            return
        from daemon.engine.checkpoint import CheckpointError
        from daemon.storage.checkpoint import load
        from daemon.storage.journal import (
            JournalPosition,
            journal_files,
            journal_seq,
            read_from,
            switch_state_of,
        )

        for node in self.settings.esl_nodes:
            name = node.name
            prefix = journal_prefix(name)
            started = time.monotonic()
            engine = self.engine(name)
            checkpoint = load(self.journal_dir, prefix)
            start = None
            if checkpoint is not None:
                try:
                    engine.restore(checkpoint.engine)  # type: ignore[attr-defined]
                    start = checkpoint.position
                except (CheckpointError, AttributeError) as exc:
                    logger.warning("checkpoint of node=%s not usable (%s): replaying its whole "
                                   "journal", name, exc)
                    engine = self.engines[name] = self.engine_factory(self.center, name)
            events = 0
            garbage: list[str] = []
            # replayed from its first file, the journal is a whole replay: the calls it holds
            # from their start get exactly its segments (see remove_stale_segments)
            whole = start is None and hasattr(self.store, "remove_stale_segments")
            created: set[str] = set()
            produced: dict[str, set[str]] = {}
            intervals: dict[str, str] = {}  # interval id -> agent
            first_ms = last_ms = 0
            for frame in read_from(self.journal_dir, prefix, start, errors=garbage):
                if frame.is_event:
                    event = Event(frame.body, name)
                    out = self._feed(engine, event)
                    events += 1
                    if whole:
                        if event.name == "CHANNEL_CREATE" and event.uuid:
                            created.add(event.uuid)
                        stamp = event.timestamp_ms
                        if stamp > 0:
                            first_ms = stamp if not first_ms else min(first_ms, stamp)
                            last_ms = max(last_ms, stamp)
                else:
                    presence = switch_state_of(frame)
                    reconcile = getattr(engine, "reconcile", None)
                    if presence is None or reconcile is None:
                        continue
                    out = reconcile(presence)
                if whole:
                    for seg in out.segments:
                        produced.setdefault(seg.call_id, set()).add(seg.segment_id)
                    intervals.update((i.interval_id, i.agent) for i in out.intervals)
                try:
                    self.store.write(out)
                except Exception:
                    self.errors += 1
                    logger.exception("writing recovered records failed node=%s", name)
                if not events % (YIELD_EVERY * 8):
                    gevent.sleep(0)  # the writer drains what recovery produces
            if whole and first_ms:
                # after every record before it (old spill files included) is committed
                keep = {c: ids for c, ids in produced.items() if c in created}
                self.store.when_committed(functools.partial(  # type: ignore[attr-defined]
                    _remove_stale, self.store, name, keep, (first_ms, last_ms), intervals))
            self.recovered[name] = events
            if events:
                # the next journal file (this process's first) begins where the replay ended:
                # a crash before the first periodic checkpoint does not replay all this again
                last = max((journal_seq(p) or 0 for p in journal_files(self.journal_dir, prefix)),
                           default=0)
                self.checkpoint(name, JournalPosition(last + 1, 0))
            logger.info("engine recovered node=%s from=%s events_replayed=%d damaged=%d in %.2fs",
                        name, "checkpoint" if start is not None else "journal start", events,
                        len(garbage), time.monotonic() - started)

    def _count_for_checkpoint(self, node: str, events: int) -> None:
        if self.journal_dir is None:
            return
        unsaved = self._unsaved[node] = self._unsaved.get(node, 0) + events
        now = time.monotonic()
        saved_at = self._saved_at.setdefault(node, now)
        if unsaved >= self.checkpoint_every or now - saved_at >= self.checkpoint_interval_s:
            self.checkpoint(node)

    def checkpoint(self, node: str, position: Any = None) -> bool:
        """Hand the store a checkpoint of ``node`` to save once its records are committed;
        at the end of what its journal holds, unless ``position`` says where that is."""
        if self.journal_dir is None:
            return False
        journal, engine = self.journals.get(node), self.engines.get(node)
        take = getattr(engine, "checkpoint", None)
        if position is None:
            position = getattr(journal, "position", lambda: None)()
        when_committed = getattr(self.store, "when_committed", None)
        if take is None or position is None or when_committed is None:
            return False
        from daemon.storage.checkpoint import Checkpoint, save

        try:
            if journal is not None:
                journal.sync()  # type: ignore[union-attr]  # the frames before it are on disk first
            checkpoint = Checkpoint(journal_prefix(node), position, take())
        except Exception:  # a checkpoint missed costs a longer replay at the next start
            logger.exception("checkpoint failed node=%s", node)
            return False
        directory = self.journal_dir
        when_committed(lambda: save(directory, checkpoint))
        self._unsaved[node] = 0
        self._saved_at[node] = time.monotonic()
        return True

    def _output(self, out: EngineOutput) -> None:
        try:
            self.store.write(out)
            self.live.apply(out.live)
        except Exception:  # both are built not to raise; if one does, the journal still has it
            self.errors += 1
            logger.exception("writing engine output failed")
        if self.presence is not None and out.live:
            try:
                self.presence.apply(out.live)  # queues the lamps; sending is its own greenlet
            except Exception:
                self.errors += 1
                logger.exception("presence update failed")

    def _callback(self, dialer: DialerLike, event: Event, node: str) -> None:
        if event.subclass != "hotline::callback":
            return
        try:
            dialer.on_event(event, node)  # stores a request (Redis); results are ignored there
        except Exception:  # Redis away: the callback segment is still recorded by the engine
            self.errors += 1
            logger.exception("callback request not stored node=%s call=%s", node,
                             event.get("Hotline-Call-ID"))

    def _probe(self, event: Event) -> None:
        """A phone subscribed to a lamp: the presence worker answers with the status."""
        probe = getattr(self.presence, "probe", None)
        if probe is None:
            return
        try:
            probe(event.get("proto"), event.get("to"))
        except Exception:
            self.errors += 1
            logger.exception("presence probe failed to=%s", event.get("to"))

    def _journal_append(self, node: str, raw: bytes) -> None:
        try:
            self.journal(node).append(raw)
        except OSError as exc:
            # keep counting calls; the frames are lost for replay only, and we say so loudly
            self.journal_errors += 1
            logger.error("journal write failed node=%s bytes=%d error=%s", node, len(raw), exc)

    def _feed(self, engine: EngineLike, event: Event) -> EngineOutput:
        self.events += 1
        try:
            return engine.feed(event)
        except Exception:  # the engine isolates calls itself; this is the last guard
            self.errors += 1
            logger.exception("engine failed node=%s event=%s call=%s", event.node, event.name,
                             event.uuid)
            return EngineOutput()

    def stop(self) -> None:
        """Ask the loop to finish: links closed first, then everything received is processed.

        Never blocks (it may run as a signal handler in the hub): the work is a greenlet.
        """
        if self._stopped.is_set():
            return
        self._stopped.set()
        logger.info("daemon stopping")
        gevent.spawn(self._stop_sequence)

    def _stop_sequence(self) -> None:
        for sup in self.supervisors:
            sup.stop()
        self._queue.put(_STOP)  # after what the links delivered: all of it is processed

    # --- collaborators per node ------------------------------------------------------------
    def journal(self, node: str) -> JournalLike:
        journal = self.journals.get(node)
        if journal is None:
            source = self._journal
            journal = self.journals[node] = source if hasattr(source, "append") else source(node)
        return journal

    def engine(self, node: str) -> EngineLike:
        engine = self.engines.get(node)
        if engine is None:
            engine = self.engines[node] = self.engine_factory(self.center, node)
        return engine

    def _rebuild(self, snapshot: SwitchSnapshot) -> None:
        """Live state from every node's latest report (agents de-duplicated by name)."""
        from daemon.live.state import parse_agent_list, parse_member_list

        self.snapshots[snapshot.node] = snapshot
        agents: dict[str, Any] = {}
        members: list[Any] = []
        for snap in self.snapshots.values():
            try:
                for row in parse_agent_list(snap.agents):
                    agents[row.name] = row
                for text in snap.members.values():
                    members.extend(parse_member_list(text))
            except ValueError as exc:
                logger.warning("switch state unreadable node=%s error=%s", snap.node, exc)
        rebuild = getattr(self.live, "rebuild", None)
        if rebuild is not None:
            rebuild(agents=list(agents.values()), members=members, at_ms=snapshot.taken_ms)
        snap = getattr(self.live, "snapshot", None)
        if self.presence is not None and snap is not None:
            try:  # every lamp again: the switch (and its phones) may have restarted
                self.presence.publish_all(snap()["agents"])
            except Exception:
                logger.exception("presence refresh failed node=%s", snapshot.node)
        # an engine that can reconcile calls in flight with the switch's channel list gets it;
        # what it was given goes to the journal first, like an event, so a replay repeats it
        reconcile = getattr(self.engine(snapshot.node), "reconcile", None)
        if reconcile is not None:
            from daemon.storage.journal import switch_state_frame

            presence = SwitchPresence.of(snapshot)
            self._journal_append(snapshot.node, switch_state_frame(presence))
            try:
                self._output(reconcile(presence))
            except Exception:
                logger.exception("engine reconcile failed node=%s", snapshot.node)
        logger.info("live state rebuilt node=%s agents=%d members=%d channels=%d", snapshot.node,
                    len(agents), len(members), len(snapshot.channels.get("rows", []) or []))

    def _stop_dialer(self, timeout: float = 5.0) -> None:
        greenlet, self._dialer_greenlet = self._dialer_greenlet, None
        if greenlet is None:
            return
        self._dialer_stop.set()  # noticed between rounds; run() then releases the lock
        greenlet.join(timeout)
        if not greenlet.dead:
            # a dial in progress (originate waits up to ring time): the claim stays
            # "dialing" and goes back to pending after the dialer's stale-claim time
            logger.warning("callback dialer still busy at stop; interrupted")
            greenlet.kill(block=True, timeout=1)
            try:
                self.dialer.close()  # type: ignore[union-attr]
            except Exception:
                logger.exception("closing the callback dialer failed")

    def _sync_journals(self) -> None:
        while True:
            gevent.sleep(self.sync_interval_s)
            for journal in list(self.journals.values()):
                sync = getattr(journal, "sync", None)
                if sync is not None:
                    try:
                        sync()
                    except OSError:
                        logger.exception("journal sync failed")

    def counters(self) -> Any:
        """The running counters (daemon/live/counters.py): the summary line and /metrics."""
        from daemon.live.counters import read_counters

        return read_counters(self)

    def _start_summaries(self) -> gevent.Greenlet | None:
        # one line every summary_interval_s (0 = off): a quiet log is not a dead daemon
        interval = getattr(self.settings, "summary_interval_s", 0)
        if not interval:
            return None
        from daemon.live.counters import log_summaries

        return gevent.spawn(log_summaries, self.counters, interval, gevent.sleep)

    def _start_http(self) -> None:
        if self.http is None:
            return
        try:
            self.http.start(self.health)
            self._http_started = True
        except OSError as exc:  # port taken, address not local: the statistics go on without it
            logger.error("http API not started: %s", exc)

    def health(self) -> dict[str, Any]:
        """For ``GET /health``: ok = every node connected, the database written (and Redis,
        when used); ``database.error`` says why a database refuses us for good."""
        nodes = {sup.node.name: {"connected": sup.up.is_set(), "attempts": sup.attempts,
                                 "sessions": sup.sessions} for sup in self.supervisors}
        out: dict[str, Any] = {"ok": bool(nodes) and all(n["connected"] for n in nodes.values()),
                               "nodes": nodes, "events": self.events, "errors": self.errors,
                               "journal_errors": self.journal_errors}
        db_up = getattr(self.store, "healthy", None)
        if isinstance(db_up, bool):  # a database that refuses us for good says why
            out["database"] = {"connected": db_up}
            for key, attr in (("error", "problem"), ("spill_error", "spill_problem")):
                if getattr(self.store, attr, None):
                    out["database"][key] = getattr(self.store, attr)
            out["ok"] = out["ok"] and db_up
        redis_up = getattr(self.live, "connected", None)
        if isinstance(redis_up, bool):
            out["redis_connected"] = redis_up
            out["ok"] = out["ok"] and redis_up
        if self._stopped.is_set():
            out["ok"], out["stopping"] = False, True
        return out

    def _shutdown(self) -> None:
        for sup in self.supervisors:
            sup.stop()
        self._stop_dialer()
        if self._http_started:  # before the live state it reads is closed
            self._http_started = False
            try:
                self.http.stop()  # type: ignore[union-attr]
            except Exception:
                logger.exception("stopping the http API failed")
        for node in list(self.engines):
            if self._unsaved.get(node):
                self.checkpoint(node)  # saved by the store's last flush: the next start is quick
        close_presence = getattr(self.presence, "close", None)
        if close_presence is not None:
            try:
                close_presence()
            except Exception:
                logger.exception("closing presence failed")
        for name, close in (("store", getattr(self.store, "close", None)),
                            ("live", getattr(self.live, "close", None))):
            if close is not None:
                try:
                    close()
                except Exception:
                    logger.exception("closing %s failed", name)
        for journal in self.journals.values():
            close = getattr(journal, "close", None)
            if close is not None:
                close()
        for close in self.closers:
            try:
                close()
            except Exception:
                logger.exception("closing %r failed", close)
        logger.info("daemon stopped events=%d errors=%d journal_errors=%d", self.events,
                    self.errors, self.journal_errors)


def _remove_stale(store: Any, node: str, segments: dict[str, set[str]], span: tuple[int, int],
                  intervals: dict[str, str]) -> None:
    """What a whole-journal recovery did not produce goes (see Store.remove_stale_*)."""
    store.remove_stale_segments(segments)
    store.remove_stale_intervals(node, span[0], span[1], set(intervals), set(intervals.values()))


# --- the `hotline daemon` entry ----------------------------------------------------------

class KeyValueFormatter(logging.Formatter):
    """``ts=... level=... logger=... msg="..."``: one greppable line per record (UTC)."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage().replace('"', "'").replace("\n", " | ")
        line = (f'ts={self.formatTime(record, "%Y-%m-%dT%H:%M:%S")}.{int(record.msecs):03d}Z '
                f'level={record.levelname.lower()} logger={record.name} msg="{msg}"')
        if record.exc_info:
            line += ' exc="' + self.formatException(record.exc_info).replace("\n", " | ") + '"'
        return line


class RedactSecrets(logging.Filter):
    """Belt and braces: no configured password reaches a log line, whoever logs it."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if any(s in msg for s in self.secrets):
            for secret in self.secrets:
                msg = msg.replace(secret, "***")
            record.msg, record.args = msg, None
        return True


def configure_logging(level: int, secrets: Sequence[str]) -> None:
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(KeyValueFormatter())
        handler.addFilter(RedactSecrets(secrets))
    root.setLevel(min(level, logging.INFO))
    if level > logging.DEBUG:
        logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter at every start


def _secrets(settings: Settings) -> list[str]:
    secrets = [n.password for n in settings.esl_nodes]
    for url in (settings.database_url, settings.redis_url):
        if url:
            try:
                from sqlalchemy.engine import make_url

                password = make_url(url).password
            except Exception:  # not a URL SQLAlchemy knows (redis://): no password to hide
                password = None
            if password:
                secrets.append(str(password))
    return secrets


def journal_prefix(node: str) -> str:
    """The journal file prefix of a node: its name made file-name safe, as ``Journal`` does.

    The daemon also writes this as the ``node`` of every row, so replaying a journal
    (``hotline replay`` takes the node from the file name) gives back identical rows.
    For every ordinary name (``local``, ``fs1``, a host name) it is the name itself.
    """
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", node).strip(".") or "journal"


def build_service(settings: Settings, center: Any = None) -> Service:
    """The real collaborators for ``settings``."""
    from daemon.live.http_api import HttpApi
    from daemon.live.state import make_live_state
    from daemon.storage.journal import Journal
    from daemon.storage.store import Store
    from daemon.switch.control import NodeConnections
    from daemon.switch.dialer import build_dialer
    from daemon.switch.presence import PresencePublisher, PresenceWorker

    def journal_for(node: str) -> Journal:
        # one journal per node (its files are one stream for replay)
        return Journal(Path(settings.journal_dir), settings.journal_max_bytes,
                       prefix=journal_prefix(node), compress=settings.journal_compress,
                       retention_days=settings.journal_retention_days)

    def engine_for(center: Any, node: str) -> Any:
        from daemon.engine.segments import engine_for as make

        return make(center, journal_prefix(node))

    # webhooks (daemon/integrations): queued with the records, sent by their own greenlets
    from daemon.integrations.delivery import start_webhooks
    webhook_outbox, webhooks_stop = start_webhooks(settings, center)
    # next to the journal, not in /tmp: spilled records must survive a reboot
    store = Store(settings.database_url, spill_dir=Path(settings.journal_dir) / "spill",
                  outbox=webhook_outbox)
    store, leader_closers = _with_leadership(settings, center, store)
    live = make_live_state(settings.redis_url)
    nodes = settings.esl_nodes
    # command connections of their own, one set each: a lamp never waits behind a
    # 30 s originate, and neither ever waits behind the event links
    lamp_conns = NodeConnections(nodes)
    presence = PresenceWorker(PresencePublisher({n.name: lamp_conns.sender(n.name)
                                                 for n in nodes}))
    closers: list[Callable[[], None]] = [lamp_conns.close, webhooks_stop, *leader_closers]
    from daemon.integrations.screenpop import LiveFanout, build_screen_pop
    screen_pop, screen_pop_close = build_screen_pop(settings, center)  # desk-phone names
    if screen_pop is not None:
        presence, closers = LiveFanout(presence, screen_pop), closers + [screen_pop_close]
    dialer = None
    dial_conns = NodeConnections(nodes)
    try:  # requests and lock in Redis, or without Redis in the database (storage/callbacks)
        dialer = build_dialer(settings, center, dial_conns, live.snapshot)
    except Exception as exc:  # a database that refuses: statistics go on, callbacks wait
        logger.error("callback dialer off: %s", exc)
    if dialer is not None:
        closers.append(dial_conns.close)
    from daemon.switch.campaign_dialer import build_campaign_runner

    campaigns = build_campaign_runner(settings, center, live.snapshot)
    if campaigns is not None:  # outbound campaigns: their own link and lock, no Redis needed
        campaigns.start()
        closers.append(campaigns.close)
    http = None
    if settings.http_listen:
        # the console's agent actions get command connections of their own, like the lamps
        web_conns = NodeConnections(nodes)
        closers.append(web_conns.close)
        try:  # the web console and API (docs/WEB.md)
            http = HttpApi(settings.http_listen, live.snapshot, center,
                           users=settings.http_users,
                           session_minutes=settings.http_session_minutes,
                           tls_cert=settings.http_tls_cert, tls_key=settings.http_tls_key,
                           database_url=settings.database_url, subscribe=live.subscribe,
                           config_dir=settings.config_dir, control=web_conns,
                           audit_path=str(Path(settings.journal_dir) / "audit.jsonl"),
                           redis_up=(lambda: getattr(live, "connected", None)))
        except ValueError as exc:  # a typo in the settings must not stop the statistics
            logger.error("http API disabled: %s", exc)
    else:
        logger.info("http API disabled (http_listen is empty)")
    service = Service(settings, center, journal_for, engine_for, store, live,
                      dialer=dialer, presence=presence, closers=closers, http=http,
                      journal_dir=settings.journal_dir)
    if http is not None:
        http.service = service  # /metrics reads its counters
    return service


def _with_leadership(settings: Settings, center: Any, store: Any
                     ) -> tuple[Any, list[Callable[[], None]]]:
    """Several daemons for the same switches (docs/SCALE.md): the store written only by
    the leader, and the leader's singleton jobs (roll-ups, partitions)."""
    from daemon.jobs import Jobs
    from daemon.leader import GatedStore, Leadership, SoleLease, lease_for

    # a lone daemon never steps down: a database outage must not make it drop records
    lease = (lease_for(settings.database_url, settings.redis_url) if settings.leader_election
             else SoleLease())
    leadership = Leadership(lease)
    gated = GatedStore(store, leadership)
    leadership.on_promote = gated.promote
    leadership.start()
    jobs = Jobs(store.engine, center, lambda: leadership.is_leader,
                rollup_every_s=settings.rollup_interval_s,
                retention_months=settings.retention_months).start()
    return gated, [jobs.stop, leadership.stop]


def run_daemon(settings: Settings, center: Any = None, *,
               log_level: int = logging.INFO, install_signals: bool = True,
               service_factory: Callable[[Settings, Any], Service] = build_service) -> int:
    """Run until SIGTERM/SIGINT, flush, return 0 (the exit code).

    Call it after ``gevent.monkey.patch_all()`` (``hotline daemon`` does).
    """
    configure_logging(log_level, _secrets(settings))
    service = service_factory(settings, center)
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(sig, service.stop)
    service.run()
    return 0


def describe(settings: Settings) -> Mapping[str, Any]:
    """What the daemon will connect to (no passwords), for logs and --help output."""
    return {"nodes": [f"{n.name}={n.host}:{n.port}" for n in settings.esl_nodes],
            "database": settings.database_url.split("@")[-1],
            "redis": bool(settings.redis_url), "journal_dir": settings.journal_dir,
            "http_listen": settings.http_listen}
