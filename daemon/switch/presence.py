"""Agent status lamps (BLF): ``PRESENCE_IN`` for ``agent+<id>@<domain>``.

Convention (docs/DESK_PHONES.md, as FusionPBX's blf_notify does it): a desk phone's BLF
key subscribed to ``agent+1001@hotline.test`` lights when mod_sofia sees a
``PRESENCE_IN`` with ``proto: agent`` and ``from: 1001@hotline.test``; ``answer-state``
picks the lamp: confirmed (on) = Available, early (blinking) = On Break, terminated (off)
= Logged Out.

:class:`PresencePublisher` has the live state's ``apply(changes)`` shape, so the daemon
hands it the same :class:`daemon.engine.records.LiveChange` batches it gives ``daemon.live.state``;
it sends one ``sendevent PRESENCE_IN`` per agent whose *status* changed, to every node
(phones may be registered on any of them). ``publish_all`` lights every lamp after a
(re)connect. Sending never raises into the daemon.

A phone that subscribes to a lamp (after a reboot, or its subscription expired) makes
mod_sofia fire ``PRESENCE_PROBE`` with ``proto: agent`` and ``to: agent+1001@<domain>``
(sofia_presence.c, SUBSCRIBE handling); nothing else knows an agent's status, so
``answer_probe`` sends the lamp again with the status last published - otherwise the
lamp stays dark until the agent's status next changes.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Iterable, Mapping, Sequence

from daemon.engine.records import LiveChange

logger = logging.getLogger(__name__)

ANSWER_STATES = {
    "Available": "confirmed",
    "Available (On Demand)": "confirmed",
    "On Break": "early",
    "Logged Out": "terminated",
}
_NAMESPACE = uuid.UUID("6f1c3a52-8d0e-4a8e-9c61-2f6c0d7b9a10")


def presence_headers(agent: str, status: str) -> list[tuple[str, str]]:
    """Headers of the PRESENCE_IN event for ``agent`` (qualified) in ``status``."""
    state = ANSWER_STATES.get(status, "terminated")
    return [
        ("proto", "agent"),
        ("from", agent),
        ("login", agent),
        ("event_type", "presence"),
        ("alt_event_type", "dialog"),
        ("Presence-Call-Direction", "outbound"),
        # stable per agent: the phone replaces the lamp's dialog instead of stacking them
        ("unique-id", str(uuid.uuid5(_NAMESPACE, agent))),
        ("channel-state", "CS_ROUTING" if state != "terminated" else "CS_HANGUP"),
        ("answer-state", state),
        ("status", status or "Logged Out"),
        ("rpid", "unknown"),
        ("event_count", "1"),
    ]


def presence_command(agent: str, status: str) -> str:
    """The whole ``sendevent PRESENCE_IN`` command text (header lines, no blank line)."""
    lines = ["sendevent PRESENCE_IN"]
    for k, v in presence_headers(agent, status):
        if "\n" in v or "\r" in v:
            raise ValueError(f"presence header {k} holds a line break")
        lines.append(f"{k}: {v}")
    return "\n".join(lines)


Sender = Callable[[str], Any]  # sends one ESL command text, e.g. EslConnection.command

PROBE_PROTO = "agent"


def probed_agent(proto: str | None, to: str | None) -> str | None:
    """The agent a ``PRESENCE_PROBE`` asks about (``proto: agent``,
    ``to: agent+1001@hotline.test`` -> ``1001@hotline.test``); None for any other probe
    (a phone's own line, a plain extension's BLF)."""
    if (proto or "").strip().lower() != PROBE_PROTO or not to:
        return None
    user, sep, domain = to.strip().partition("@")
    prefix = PROBE_PROTO + "+"
    if not sep or not user.lower().startswith(prefix) or not domain:
        return None
    agent = user[len(prefix):]
    return f"{agent}@{domain}" if agent else None


class PresencePublisher:
    """Sends PRESENCE_IN for agent status changes through ``senders`` (one per node)."""

    def __init__(self, senders: Mapping[str, Sender] | Sequence[Sender]) -> None:
        self.senders: dict[str, Sender] = (dict(senders) if isinstance(senders, Mapping)
                                           else {str(i): s for i, s in enumerate(senders)})
        self.sent = 0
        self.failed = 0
        self._last: dict[str, str] = {}

    def apply(self, changes: Sequence[LiveChange]) -> None:
        for change in changes:
            if change.kind != "agent":
                continue
            data = dict(change.data)
            status = data.get("status")
            if status is None:
                continue  # a state change (Waiting/Receiving/...) leaves the lamp as it is
            self.publish(change.key, str(status))

    def publish(self, agent: str, status: str, force: bool = False) -> None:
        if not force and self._last.get(agent) == status:
            return
        self._last[agent] = status
        cmd = presence_command(agent, status)
        for node, send in self.senders.items():
            try:
                reply = send(cmd)
                data = str(getattr(reply, "data", reply) or "")
                if data.startswith("-ERR"):
                    raise RuntimeError(data)
                self.sent += 1
            except Exception as exc:  # a lamp is not worth the daemon: log and go on
                self.failed += 1
                logger.warning("presence for %s on node %s failed: %s", agent, node, exc)

    def status_of(self, agent: str) -> str | None:
        """The status last published for ``agent`` (None: never published)."""
        return self._last.get(agent)

    def answer_probe(self, agent: str) -> bool:
        """Send ``agent``'s lamp again (a phone subscribed to it); False when the agent's
        status is not known (not an agent of the model, or no snapshot yet: the lamps of
        the snapshot follow)."""
        status = self._last.get(agent)
        if status is None:
            return False
        self.publish(agent, status, force=True)
        return True

    def publish_all(self,
                    agents: Mapping[str, Mapping[str, Any]] | Iterable[tuple[str, str]]) -> None:
        """Every lamp from a live snapshot's ``agents`` (name -> {status...}) or pairs."""
        items = ((n, str(a.get("status") or "Logged Out")) for n, a in agents.items()) \
            if isinstance(agents, Mapping) else agents
        for name, status in items:
            self.publish(name, status, force=True)


class PresenceWorker:
    """Runs a :class:`PresencePublisher` in a greenlet of its own, for the daemon.

    The daemon's event loop hands it every live-change batch (``apply``) and every
    rebuild (``publish_all``) and never waits: a lamp is a command round trip per node,
    and a node that is down costs a connect timeout, which must not hold up the
    statistics. Pending lamps are coalesced per agent (the newest status wins), so the
    backlog is bounded by the number of agents however long a switch is away.
    """

    def __init__(self, publisher: PresencePublisher) -> None:
        import gevent.event

        self.publisher = publisher
        self._pending: dict[str, tuple[str, bool]] = {}  # agent -> (status, force)
        self._wake = gevent.event.Event()
        self._closing = False
        self._greenlet: Any = None

    def apply(self, changes: Sequence[LiveChange]) -> None:
        for change in changes:
            if change.kind != "agent":
                continue
            status = dict(change.data).get("status")
            if status is not None:  # a state change (Waiting/Receiving/...) keeps the lamp
                self._queue(change.key, str(status), False)

    def publish_all(self,
                    agents: Mapping[str, Mapping[str, Any]] | Iterable[tuple[str, str]]) -> None:
        items = ((n, str(a.get("status") or "Logged Out")) for n, a in agents.items()) \
            if isinstance(agents, Mapping) else agents
        for name, status in items:
            self._queue(name, status, True)

    def probe(self, proto: str | None, to: str | None) -> bool:
        """A ``PRESENCE_PROBE`` (its ``proto`` and ``to`` headers) from the event loop:
        queue the probed agent's lamp with its current status (a status still pending
        wins). False when the probe is not for a known agent lamp."""
        agent = probed_agent(proto, to)
        if agent is None:
            return False
        pending = self._pending.get(agent)
        status = pending[0] if pending else self.publisher.status_of(agent)
        if status is None:
            logger.debug("presence probe for %s: status not known", agent)
            return False
        self._queue(agent, status, True)
        return True

    def _queue(self, agent: str, status: str, force: bool) -> None:
        previous = self._pending.get(agent)
        self._pending[agent] = (status, force or bool(previous and previous[1]))
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> "PresenceWorker":
        import gevent

        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)
        return self

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, {}
                for agent, (status, force) in batch.items():
                    try:
                        self.publisher.publish(agent, status, force=force)
                    except Exception:  # e.g. a name the command cannot carry: skip that lamp
                        logger.exception("presence for %s not sent", agent)
            if self._closing:
                return

    def close(self, timeout: float = 2.0) -> None:
        """Send what is pending (within ``timeout``), then stop."""
        self._closing = True
        self._wake.set()
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None:
            greenlet.join(timeout)
            if not greenlet.dead:
                logger.warning("presence: %d lamp(s) not sent at stop", len(self._pending))
                greenlet.kill(block=False)
