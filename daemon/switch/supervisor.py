"""One supervisor per FreeSWITCH node: connect, subscribe, snapshot, reconnect.

The supervisor owns the link to one switch for the daemon's whole life. Each
attempt builds a *fresh* :class:`daemon.switch.esl.EslConnection` (greenswitch
instances cannot reconnect), authenticates, subscribes with ``event plain`` to
exactly what the engine consumes, asks the switch for its live state (agents,
queue members, channels) and hands that to ``on_snapshot``; event frames go
to ``on_frames(node_name, frames)`` untouched (raw bytes kept for the journal),
one list per socket read. When the link drops it waits with exponential backoff plus jitter
and starts over; the delay resets after a connection that worked.
"""
from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import gevent
import gevent.event

from daemon.definition.model import EslNode
from daemon.switch.esl import EslConnection, EslError
from daemon.switch.frames import Frame

logger = logging.getLogger(__name__)

# What the segment engine consumes (names checked against the FreeSWITCH 1.10 captures
# and mod_callcenter / mod_conference / mod_dptools sources). CUSTOM subclasses follow
# the CUSTOM token, as `event plain` wants them. CHANNEL_EXECUTE_COMPLETE ends music on
# hold / voicemail / IVR applications; CHANNEL_PARK/PROGRESS are not needed.
ENGINE_EVENTS: tuple[str, ...] = (
    "CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE",
    "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY", "DTMF",
    "BACKGROUND_JOB", "HEARTBEAT", "API",
    "PRESENCE_PROBE",  # a desk phone subscribed to an agent lamp (answered by daemon.switch.presence)
    "CUSTOM", "callcenter::info", "conference::maintenance", "menu::enter", "menu::exit",
    "hotline::survey", "hotline::callback", "hotline::disposition", "hotline::agent",
)

# the switch sends HEARTBEAT every 20 s: three missed ones mean the link is dead
IDLE_TIMEOUT_S = 65.0


@dataclass(frozen=True)
class SwitchSnapshot:
    """What a switch reported right after a (re)connect, as raw command output."""

    node: str
    agents: str  # `callcenter_config agent list`
    queues: str  # `callcenter_config queue list`
    # queue -> `callcenter_config queue list members <queue>`
    members: dict[str, str] = field(default_factory=dict)
    channels: dict = field(default_factory=dict)  # `show channels as json`, parsed
    taken_ms: int = 0  # daemon clock; only used to stamp the rebuild

    def queue_names(self) -> list[str]:
        from daemon.live.state import parse_pipe_table

        try:
            return [r["name"] for r in parse_pipe_table(self.queues) if r.get("name")]
        except ValueError:
            return []


def backoff_delay(attempt: int, initial: float, maximum: float, rng: Callable[[], float]) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random."""
    base = min(maximum, initial * (2 ** min(attempt, 30)))
    return base / 2 + base / 2 * rng()


ConnectionFactory = Callable[..., EslConnection]


class Supervisor:
    """Keeps one node's ESL link up; see the module docstring."""

    def __init__(self, node: EslNode, on_frames: Callable[[str, list[Frame]], None],
                 on_snapshot: Callable[[SwitchSnapshot], None] | None = None, *,
                 events: tuple[str, ...] = ENGINE_EVENTS, timeout: float = 5.0,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 idle_timeout: float | None = IDLE_TIMEOUT_S,
                 connection_factory: ConnectionFactory = EslConnection,
                 rng: Callable[[], float] = random.random) -> None:
        self.node = node
        self.on_frames = on_frames
        self.on_snapshot = on_snapshot
        self.events = events
        self.timeout = timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.idle_timeout = idle_timeout
        self.connection_factory = connection_factory
        self.rng = rng
        self.attempts = 0  # connection attempts so far
        self.sessions = 0  # attempts that got as far as subscribing
        self.events_received = 0  # event frames handed on (counters: events/s per node)
        # frames the links refused or gave up on, over every connection (esl.py drops the link)
        self.oversized_frames = 0
        self.stalled_frames = 0
        self.connection: EslConnection | None = None
        self.up = gevent.event.Event()  # set while connected and subscribed
        # frames received while the snapshot is taken: handed on right after it
        self._held: list[Frame] | None = None
        self._stopping = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None

    def __repr__(self) -> str:
        return f"Supervisor({self.node.name}@{self.node.host}:{self.node.port})"

    def start(self) -> "Supervisor":
        self._greenlet = gevent.spawn(self._run)
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Close the link and end the loop; returns within about ``timeout`` s."""
        self._stopping.set()
        conn = self.connection
        if conn is not None:
            conn.close(timeout=timeout)  # waits for the switch's "+OK bye": nothing left unread
        if self._greenlet is not None:
            self._greenlet.join(timeout)
            if not self._greenlet.dead:
                self._greenlet.kill(block=False)

    def _forward(self, frames: list[Frame]) -> None:
        self.events_received += len(frames)
        held = self._held
        if held is not None:
            held.extend(frames)
        else:
            self.on_frames(self.node.name, frames)

    def _run(self) -> None:
        failures = 0
        node = self.node
        while not self._stopping.is_set():
            self.attempts += 1
            conn = self.connection_factory(node.host, node.port, node.password, self.timeout,
                                           on_frames=self._forward, idle_timeout=self.idle_timeout)
            self.connection = conn
            try:
                conn.connect()
                conn.subscribe(self.events)
                self.sessions += 1
                failures = 0
                self.up.set()
                logger.info("switch up node=%s host=%s port=%s attempt=%d",
                            node.name, node.host, node.port, self.attempts)
                self._take_snapshot(conn)
                while not self._stopping.is_set() and not conn.wait_closed(1.0):
                    pass
            except EslError as exc:
                logger.warning("switch unreachable node=%s host=%s port=%s error=%s",
                               node.name, node.host, node.port, exc)
            except Exception:  # the supervisor must outlive any surprise
                logger.exception("supervisor error node=%s", node.name)
            finally:
                self.up.clear()
                conn.close(timeout=1.0)
                stats = getattr(conn, "stats", {})
                self.oversized_frames += stats.get("oversized", 0)
                self.stalled_frames += stats.get("stalled", 0)
            if self._stopping.is_set():
                break
            delay = backoff_delay(failures, self.backoff_initial, self.backoff_max, self.rng)
            failures += 1
            logger.info("switch down node=%s reconnect_in=%.2fs", node.name, delay)
            self._stopping.wait(delay)
        logger.info("supervisor stopped node=%s", node.name)

    def _take_snapshot(self, conn: EslConnection) -> None:
        """Ask for the live state; a failure here is logged, the link stays up.

        Events are already subscribed (none may be missed), but the ones that arrive
        while the switch answers are held back and handed on *after* the snapshot:
        state rebuilt from the snapshot, then every event since subscribing applied
        on top, converges to the switch's state (the other order would let the older
        snapshot overwrite newer events).
        """
        if self.on_snapshot is None:
            return
        self._held = []
        try:
            snap = self._read_snapshot(conn)
            if snap is not None:
                try:
                    self.on_snapshot(snap)
                except Exception:
                    logger.exception("snapshot handler failed node=%s", self.node.name)
        finally:
            held, self._held = self._held, None
            if held:
                self.on_frames(self.node.name, held)

    def _read_snapshot(self, conn: EslConnection) -> SwitchSnapshot | None:
        try:
            agents = conn.api("callcenter_config agent list", self.timeout)
            queues = conn.api("callcenter_config queue list", self.timeout)
            snap = SwitchSnapshot(self.node.name, agents, queues, taken_ms=int(time.time() * 1000))
            for queue in snap.queue_names():
                snap.members[queue] = conn.api(f"callcenter_config queue list members {queue}",
                                               self.timeout)
            text = conn.api("show channels as json", self.timeout)
        except EslError as exc:
            logger.warning("live state not read node=%s error=%s", self.node.name, exc)
            return None
        try:
            snap.channels.update(json.loads(text) if text.strip().startswith("{") else {})
        except ValueError:
            logger.warning("unreadable channel list node=%s", self.node.name)
        return snap
