"""What a switch's mod_callcenter is running, read over ESL, and what a callcenter.conf says.

mod_callcenter (1.10) answers its list commands with a ``|``-separated header line of
column names, one row per record, then ``+OK`` (``list_result_callback`` in
mod_callcenter.c; ``queue list`` writes its own header from the in-memory queues):

* ``callcenter_config agent list``: name|instance_id|uuid|type|contact|status|state|
  max_no_answer|wrap_up_time|reject_delay_time|busy_delay_time|no_answer_delay_time|...
* ``callcenter_config tier list``: queue|agent|state|level|position
* ``callcenter_config queue list``: name|strategy|moh_sound|time_base_score|tier_rules_apply|
  ...|record_template|calls_answered|calls_abandoned|ring_progressively_delay|...
* ``callcenter_config queue list members <queue>``: queue|instance_id|uuid|session_uuid|
  cid_number|...|serving_agent|serving_system|state|...

Rows are read by column name, so columns added by later versions do no harm. The
same state is also read from a ``callcenter.conf.xml`` (the rendered one and the one
in the switch's conf dir), so ``daemon.switch.reload`` compares like with like.
"""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Protocol

from daemon.live.state import MemberRow, parse_member_list, parse_pipe_table

logger = logging.getLogger(__name__)

CALL_STATES = ("Receiving", "In a queue call")
# agent attributes of callcenter.conf <agent> = columns of `agent list` = keys of `agent set`
AGENT_KEYS = ("type", "contact", "max_no_answer", "wrap_up_time", "reject_delay_time",
              "busy_delay_time", "no_answer_delay_time")
# member states in which a caller is still in the queue or talking through it
LIVE_MEMBER_STATES = ("Waiting", "Trying", "Answered")


class ApiConnection(Protocol):
    def api(self, cmd: str, timeout: float | None = None) -> str: ...


class SwitchError(Exception):
    """A switch answered a command with -ERR (or not at all)."""


@dataclass(frozen=True)
class SwitchAgent:
    name: str
    status: str
    state: str
    params: tuple[tuple[str, str], ...]  # AGENT_KEYS present in the list, in that order
    uuid: str = ""

    @property
    def on_call(self) -> bool:
        return self.state in CALL_STATES

    def param(self, key: str) -> str:
        return dict(self.params).get(key, "")


@dataclass(frozen=True)
class SwitchTier:
    queue: str
    agent: str
    level: int
    position: int
    state: str = ""


@dataclass(frozen=True)
class SwitchState:
    """One node's mod_callcenter: agents, tiers, loaded queues (params by column) and members."""

    agents: dict[str, SwitchAgent] = field(default_factory=dict)
    tiers: dict[tuple[str, str], SwitchTier] = field(default_factory=dict)  # (queue, agent)
    queues: dict[str, dict[str, str]] = field(default_factory=dict)
    members: dict[str, tuple[MemberRow, ...]] = field(default_factory=dict)

    def live_members(self, queue: str) -> tuple[MemberRow, ...]:
        return tuple(m for m in self.members.get(queue, ()) if m.state in LIVE_MEMBER_STATES)

    def serving_queue(self, agent: str) -> str | None:
        """The queue whose caller ``agent`` is talking to (or being offered), if any."""
        for queue, rows in self.members.items():
            for m in rows:
                if m.serving_agent == agent and m.state in ("Trying", "Answered"):
                    return queue
        return None


def _int(value: str, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def parse_agents(text: str) -> dict[str, SwitchAgent]:
    out = {}
    for r in parse_pipe_table(text):
        if not r.get("name"):
            continue
        params = tuple((k, r[k]) for k in AGENT_KEYS if k in r)
        out[r["name"]] = SwitchAgent(r["name"], r.get("status", ""), r.get("state", ""), params,
                                     r.get("uuid", ""))
    return out


def parse_tiers(text: str) -> dict[tuple[str, str], SwitchTier]:
    out = {}
    for r in parse_pipe_table(text):
        if r.get("queue") and r.get("agent"):
            out[(r["queue"], r["agent"])] = SwitchTier(
                r["queue"], r["agent"], _int(r.get("level", "1"), 1),
                _int(r.get("position", "1"), 1), r.get("state", ""))
    return out


def parse_queues(text: str) -> dict[str, dict[str, str]]:
    return {r["name"]: r for r in parse_pipe_table(text) if r.get("name")}


def checked(conn: ApiConnection, cmd: str, timeout: float) -> str:
    """``api cmd``; raises SwitchError when the answer starts with -ERR / -USAGE."""
    text = conn.api(cmd, timeout)
    head = text.lstrip()
    if head.startswith("-ERR") or head.startswith("-USAGE"):
        raise SwitchError(f"{cmd}: {head.splitlines()[0] if head else '(empty)'}")
    return text


def read_switch_state(conn: ApiConnection, timeout: float = 5.0,
                      member_queues: bool = True) -> SwitchState:
    """List agents, tiers, queues and (for every loaded queue) its members."""
    try:
        agents = parse_agents(checked(conn, "callcenter_config agent list", timeout))
        tiers = parse_tiers(checked(conn, "callcenter_config tier list", timeout))
        queues = parse_queues(checked(conn, "callcenter_config queue list", timeout))
        members: dict[str, tuple[MemberRow, ...]] = {}
        if member_queues:
            for q in sorted(queues):
                members[q] = tuple(parse_member_list(
                    checked(conn, f"callcenter_config queue list members {q}", timeout)))
    except ValueError as exc:  # parse_pipe_table on -ERR
        raise SwitchError(str(exc)) from None
    return SwitchState(agents, tiers, queues, members)


# --- callcenter.conf.xml ---------------------------------------------------------------------


@dataclass(frozen=True)
class CcConfig:
    """Queues (param name -> value), agents (AGENT_KEYS -> value) and tiers of a callcenter.conf."""

    queues: dict[str, dict[str, str]] = field(default_factory=dict)
    agents: dict[str, dict[str, str]] = field(default_factory=dict)
    tiers: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # -> (level, pos)


def parse_callcenter_conf(text: str | None) -> CcConfig:
    """The queues/agents/tiers of a callcenter.conf.xml (None or empty text: nothing)."""
    if not text or not text.strip():
        return CcConfig()
    root = ET.fromstring(text)
    queues: dict[str, dict[str, str]] = {}
    for q in root.iter("queue"):
        name = q.get("name")
        if name:
            queues[name] = {p.get("name", ""): p.get("value", "") for p in q.iter("param")}
    agents: dict[str, dict[str, str]] = {}
    for a in root.iter("agent"):
        name = a.get("name")
        if name:
            agents[name] = {k.replace("-", "_"): v for k, v in a.attrib.items() if k != "name"}
    tiers: dict[tuple[str, str], tuple[int, int]] = {}
    for t in root.iter("tier"):
        queue, agent = t.get("queue"), t.get("agent")
        if queue and agent:
            tiers[(queue, agent)] = (_int(t.get("level", "1"), 1), _int(t.get("position", "1"), 1))
    return CcConfig(queues, agents, tiers)


def queue_column(param: str) -> str:
    """callcenter.conf queue param -> its ``queue list`` column (``moh-sound`` -> ``moh_sound``)."""
    return param.replace("-", "_")


def domain_of(name: str) -> str:
    return name.rpartition("@")[2] if "@" in name else ""
