"""Admin control over ESL: agent status, queue status, supervise, recordings.

Every function returns plain data (dicts/lists); ``cli.py`` prints it as a table or
JSON. The switch is reached through anything with ``api(cmd, timeout)`` and
``command(text, timeout)`` (an :class:`daemon.switch.esl.EslConnection`).

Agent actions fire the same ``hotline::agent`` custom event as the desk-phone feature
codes *before* changing the status (``sendevent CUSTOM`` over ESL), so the segment
engine attaches a break reason to the status interval that follows.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

from daemon.definition.model import CallCenter, EslNode, Tenant
from daemon.live.state import CALL_STATES, parse_member_list
from daemon.switch.switchstate import SwitchError, checked, parse_agents, parse_pipe_table

logger = logging.getLogger(__name__)

AGENT_ACTIONS = ("login", "logout", "break", "ready")
SUPERVISE_MODES: dict[str, tuple[bool, bool]] = {  # mode -> (whisper to agent, to caller)
    "listen": (False, False),
    "whisper": (True, False),
    "barge": (True, True),
}


NO_REPLY = "-err no reply"  # mod_event_socket's answer to an API command with empty output


class ControlError(Exception):
    """A control request that cannot be done (unknown agent, not on a call, -ERR)."""


class Switch(Protocol):
    def api(self, cmd: str, timeout: float | None = None) -> str: ...

    def command(self, text: str, timeout: float | None = None) -> Any: ...


@dataclass(frozen=True)
class AgentRef:
    tenant: Tenant
    id: str

    @property
    def qualified(self) -> str:
        return self.tenant.qualified(self.id)


class NodeConnections:
    """One command connection per ESL node, opened on first use and again after a drop.

    For the daemon's own commands (callback dialer, presence lamps): separate from the
    event connections, so a 30 s ``originate`` never holds up the event stream's commands.
    Call it with a node name ("" = the first node).
    """

    def __init__(self, nodes: Sequence[EslNode], timeout: float = 5.0) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.first = nodes[0].name if nodes else ""
        self.timeout = timeout
        self._conns: dict[str, Any] = {}

    def __call__(self, node: str = "") -> Any:
        from daemon.switch.esl import EslConnection

        name = node or self.first
        conn = self._conns.get(name)
        if conn is not None and conn.connected:
            return conn
        n = self.nodes.get(name)
        if n is None:
            raise ControlError(f"no ESL node named {name!r}")
        conn = EslConnection(n.host, n.port, n.password, self.timeout).connect()
        self._conns[name] = conn
        return conn

    def sender(self, node: str) -> Callable[[str], Any]:
        """``send(command_text)`` on that node (what PresencePublisher takes)."""
        return lambda text: self(node).command(text, self.timeout)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


def resolve_agent(center: CallCenter, name: str) -> AgentRef:
    """``1001`` or ``1001@hotline.test`` -> the agent of the model (unique across tenants)."""
    local, _, domain = name.partition("@")
    hits = [AgentRef(t, local) for t in center.tenants
            if (not domain or t.domain == domain) and t.agent(local) is not None]
    if not hits:
        raise ControlError(f"no agent {name} in the configuration")
    if len(hits) > 1:
        raise ControlError(f"agent {name} exists in several tenants; write it as "
                           f"{local}@<domain> ({', '.join(h.tenant.domain for h in hits)})")
    return hits[0]


def resolve_queue(center: CallCenter, name: str) -> str:
    local, _, domain = name.partition("@")
    hits = [t.qualified(local) for t in center.tenants
            if (not domain or t.domain == domain) and t.queue(local) is not None]
    if not hits:
        raise ControlError(f"no queue {name} in the configuration")
    if len(hits) > 1:
        raise ControlError(f"queue {name} exists in several tenants; write it as {local}@<domain>")
    return hits[0]


def break_reason(tenant: Tenant, reason: str | None) -> str | None:
    """A break reason by name or digit (None: no reason). A reason the tenant does not
    define is refused - also when it defines none: the engine would store it on the break
    interval and the reports would count a reason nobody configured."""
    if reason is None:
        return None
    for r in tenant.break_reasons:
        if reason in (r.name, r.digit):
            return r.name
    if not tenant.break_reasons:
        raise ControlError(f"no break reason {reason!r} in tenant {tenant.id}: it defines no "
                           f"break reasons (give none, or add break_reasons to the tenant)")
    names = ", ".join(f"{r.digit}={r.name}" for r in tenant.break_reasons)
    raise ControlError(f"no break reason {reason!r} in tenant {tenant.id} ({names})")


def fire_event(conn: Switch, subclass: str, headers: dict[str, str], timeout: float = 5.0) -> None:
    """``sendevent CUSTOM`` with ``Event-Subclass``; the switch stamps and broadcasts it."""
    lines = ["sendevent CUSTOM", f"Event-Subclass: {subclass}"]
    for k, v in headers.items():
        if "\n" in v or "\r" in v:  # a header line break would inject headers
            raise ControlError(f"header {k} holds a line break")
        lines.append(f"{k}: {v}")
    reply = conn.command("\n".join(lines), timeout)
    data = getattr(reply, "data", str(reply))
    if str(data).startswith("-ERR"):
        raise ControlError(f"sendevent {subclass}: {data}")


def _value(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def agent_action(conn: Switch, center: CallCenter, agent: str, action: str,
                 reason: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """login | logout | break [reason] | ready, as the desk-phone codes do it."""
    if action not in AGENT_ACTIONS:
        raise ControlError(f"unknown agent action {action!r} ({'|'.join(AGENT_ACTIONS)})")
    ref = resolve_agent(center, agent)
    name = ref.qualified
    reason_name = break_reason(ref.tenant, reason) if action == "break" else None
    commands: list[str] = []

    def api(cmd: str) -> str:
        commands.append(cmd)
        try:
            return checked(conn, cmd, timeout)
        except SwitchError as exc:
            raise ControlError(str(exc)) from None

    status = _value(api(f"callcenter_config agent get status {name}"))
    if action in ("break", "ready") and status == "Logged Out":
        raise ControlError(f"{name} is logged out; log in first")
    headers = {"Hotline-Agent": name, "Hotline-Action": action}
    if reason_name:
        headers["Hotline-Reason"] = reason_name
    fire_event(conn, "hotline::agent", headers, timeout)
    if action in ("login", "ready"):
        api(f"callcenter_config agent set status {name} Available")
        state = _value(api(f"callcenter_config agent get state {name}"))
        if state not in CALL_STATES:
            api(f"callcenter_config agent set state {name} Waiting")
        new_status = "Available"
    elif action == "logout":
        api(f"callcenter_config agent set status {name} 'Logged Out'")
        new_status = "Logged Out"
    else:
        api(f"callcenter_config agent set status {name} 'On Break'")
        new_status = "On Break"
    return {"agent": name, "action": action, "reason": reason_name, "previous_status": status,
            "status": new_status, "commands": commands}


def agent_status(conn: Switch, center: CallCenter, agent: str | None = None,
                 timeout: float = 5.0) -> list[dict[str, Any]]:
    """Rows of ``callcenter_config agent list`` (one agent, or every agent of the model)."""
    try:
        agents = parse_agents(checked(conn, "callcenter_config agent list", timeout))
        tiers = parse_pipe_table(checked(conn, "callcenter_config tier list", timeout))
    except (SwitchError, ValueError) as exc:
        raise ControlError(str(exc)) from None
    if agent is not None:
        names = [resolve_agent(center, agent).qualified]
    else:
        names = sorted({t.qualified(a.id) for t in center.tenants for a in t.agents})
    out = []
    for name in names:
        row = agents.get(name)
        out.append({"agent": name, "on_switch": row is not None,
                    "status": row.status if row else None, "state": row.state if row else None,
                    "queues": sorted(t["queue"] for t in tiers if t.get("agent") == name)})
    return out


@dataclass(frozen=True)
class LiveSource:
    """A live snapshot and where it came from: ``redis`` or ``daemon`` (its HTTP API)."""

    source: str
    snapshot: Mapping[str, Any]
    where: str = ""  # the daemon's URL; "" for Redis (its URL may hold a password)


def read_live_state(redis_url: str | None, http_listen: str | None,
                    now_ms: int | None = None) -> tuple[LiveSource | None, list[str]]:
    """The daemon's live state: Redis when configured, else (or when Redis fails) the
    daemon's local HTTP API. None when neither answers (the caller asks the switch);
    the list says why each source was passed over.
    """
    skipped: list[str] = []
    if redis_url:
        import redis

        from daemon.live.state import snapshot_from_redis

        try:
            return LiveSource("redis", snapshot_from_redis(redis_url, now_ms)), skipped
        except redis.RedisError as exc:
            skipped.append(f"redis: {exc}")
    if http_listen:
        from daemon.live.http_api import ApiUnavailable, client_base_url, fetch_snapshot

        try:
            snap = fetch_snapshot(http_listen)
            return LiveSource("daemon", snap, client_base_url(http_listen) or ""), skipped
        except (ApiUnavailable, ValueError) as exc:
            skipped.append(f"daemon http: {exc}")
    return None, skipped


def queue_status(center: CallCenter, queue: str | None = None, *, redis_url: str | None = None,
                 conn: Switch | None = None, now_ms: int | None = None,
                 timeout: float = 5.0, live: LiveSource | None = None) -> dict[str, Any]:
    """Waiting callers (wait times, longest wait) and agents by state, per queue.

    From ``live`` (see :func:`read_live_state`) or the daemon's live state in Redis when
    ``redis_url`` is given, else straight from the switch (``queue list members`` /
    ``queue list agents``). ``source`` in the result says which.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    names = [resolve_queue(center, queue)] if queue else sorted(
        t.qualified(q.id) for t in center.tenants for q in t.queues)
    if live is None and redis_url:
        from daemon.live.state import snapshot_from_redis

        live = LiveSource("redis", snapshot_from_redis(redis_url, now))
    out: dict[str, Any] = {"source": live.source if live else "switch", "at_ms": now,
                           "queues": {}}
    if live is not None and live.where:
        out["source_url"] = live.where
    if live is not None:
        snap = live.snapshot
        members_of = {q: [(w["call_id"], w["caller"], w["joined_ms"]) for w in v["waiting"]]
                      for q, v in snap["queues"].items()}
        agent_rows = {n: (a.get("status", ""), a.get("state", ""))
                      for n, a in snap["agents"].items()}
        tiers = _model_tiers(center)
    else:
        if conn is None:
            raise ControlError("queue status needs Redis or a switch connection")
        members_of, agent_rows, tiers = {}, {}, {}
        try:
            for q in names:
                rows = parse_member_list(checked(conn, f"callcenter_config queue list members {q}",
                                                 timeout))
                members_of[q] = [(m.session_uuid, m.cid_number,
                                  (m.rejoined_epoch or m.joined_epoch) * 1000)
                                 for m in rows if m.state in ("Waiting", "Trying")]
                agents = parse_agents(checked(conn, f"callcenter_config queue list agents {q}",
                                              timeout))
                tiers[q] = sorted(agents)
                for n, a in agents.items():
                    agent_rows[n] = (a.status, a.state)
        except (SwitchError, ValueError) as exc:
            raise ControlError(str(exc)) from None
    for q in names:
        waiting = sorted(members_of.get(q, []), key=lambda m: (m[2], m[0]))
        by_state: dict[str, list[str]] = {}
        for a in tiers.get(q, []):
            status, state = agent_rows.get(a, ("", ""))
            label = _agent_label(status, state)
            by_state.setdefault(label, []).append(a)
        longest = max((now - j for _, _, j in waiting), default=None)
        out["queues"][q] = {
            "waiting": [{"call_id": c, "caller": n, "joined_ms": j,
                         "wait_s": max(0, now - j) // 1000} for c, n, j in waiting],
            "count": len(waiting),
            "longest_wait_s": None if longest is None else max(0, longest) // 1000,
            "agents": {k: sorted(v) for k, v in sorted(by_state.items())},
        }
    return out


def agent_status_live(center: CallCenter, live: LiveSource,
                      agent: str | None = None) -> list[dict[str, Any]]:
    """The rows of :func:`agent_status`, from the daemon's live state instead of the switch.

    ``on_switch`` says whether the daemon knows the agent (it mirrors the switch's agent
    list); ``queues`` are the agent's tiers in the model, as the daemon loaded them onto
    the switch. A break reason and the call an agent is on come along when known.
    """
    if agent is not None:
        names = [resolve_agent(center, agent).qualified]
    else:
        names = sorted({t.qualified(a.id) for t in center.tenants for a in t.agents})
    queues_of: dict[str, list[str]] = {}
    for q, members in _model_tiers(center).items():
        for a in members:
            queues_of.setdefault(a, []).append(q)
    known = live.snapshot.get("agents", {})
    out = []
    for name in names:
        row = known.get(name)
        out.append({"agent": name, "on_switch": row is not None,
                    "status": row.get("status") if row else None,
                    "state": row.get("state") if row else None,
                    "queues": sorted(queues_of.get(name, [])),
                    "reason": row.get("reason") if row else None,
                    "call_id": row.get("call_id") if row else None})
    return out


def _agent_label(status: str, state: str) -> str:
    if not status:
        return "unknown"
    if status == "Logged Out":
        return "logged out"
    if status == "On Break":
        return "on break"
    if state in CALL_STATES:
        return "on a call"
    if state == "Waiting":
        return "available"
    return f"{status.lower()} ({state.lower() or 'no state'})"


def _model_tiers(center: CallCenter) -> dict[str, list[str]]:
    from daemon.definition.tiers import effective_tiers

    return {t.qualified(q.id): sorted(t.qualified(x.agent) for x in effective_tiers(t, q))
            for t in center.tenants for q in t.queues}


def supervise(conn: Switch, center: CallCenter, mode: str, agent: str, extension: str,
              timeout: float = 5.0, ring_s: int = 30) -> dict[str, Any]:
    """Ring the supervisor's phone ``user/EXT@domain`` into ``eavesdrop`` of the agent's leg."""
    if mode not in SUPERVISE_MODES:
        raise ControlError(f"unknown mode {mode!r} (listen|whisper|barge)")
    ref = resolve_agent(center, agent)
    name = ref.qualified
    reply = conn.api(f"callcenter_config agent get uuid {name}", timeout).strip()
    # an agent without a call has an empty uuid, which mod_event_socket answers with
    # "-ERR no reply" (it says so for every empty API result)
    if reply.lower() == NO_REPLY:
        raise ControlError(f"{name} is not on a call")
    if reply.startswith(("-ERR", "-USAGE")):
        raise ControlError(f"callcenter_config agent get uuid {name}: {reply.splitlines()[0]}")
    leg = _value(reply)
    if not leg or conn.api(f"uuid_exists {leg}", timeout).strip() != "true":
        raise ControlError(f"{name} is not on a call")
    to_agent, to_caller = SUPERVISE_MODES[mode]
    variables = ",".join([
        f"origination_caller_id_name={mode}_{ref.id}",
        f"origination_caller_id_number={ref.id}",
        f"originate_timeout={ring_s}",
        "eavesdrop_enable_dtmf=true",
        "eavesdrop_bridge_aleg=true",
        "eavesdrop_bridge_bleg=true",
        # eavesdrop's media bug sits on the agent's leg: whisper_aleg mixes into what the
        # switch reads from the agent's phone (heard by the caller), whisper_bleg into what
        # it writes to the agent's phone (heard by the agent) - mod_dptools/switch_ivr_async.c
        f"eavesdrop_whisper_aleg={'true' if to_caller else 'false'}",
        f"eavesdrop_whisper_bleg={'true' if to_agent else 'false'}",
    ])
    cmd = f"originate {{{variables}}}user/{extension}@{ref.tenant.domain} &eavesdrop({leg})"
    reply = conn.api(cmd, ring_s + timeout).strip()
    if not reply.startswith("+OK"):
        raise ControlError(
            f"the supervisor's phone {extension} did not join: {reply or 'no reply'}")
    return {"agent": name, "mode": mode, "extension": extension, "agent_leg": leg,
            "supervisor_leg": reply[3:].strip(), "command": cmd}


def recordings(db_url: str, call_id: str | None = None,
               center: CallCenter | None = None) -> list[dict[str, Any]]:
    """Talk segments with their recording path (from the database).

    When the segment has no path yet but its queue records (``record: true``), the path
    the queue's record template gives for this call is shown, marked ``derived``.
    """
    from sqlalchemy import create_engine, select

    from daemon.storage.schema import segments

    engine = create_engine(db_url)
    try:
        q = select(segments.c.call_id, segments.c.segment_id, segments.c.queue, segments.c.agent,
                   segments.c.started_ms, segments.c.ended_ms, segments.c.recording
                   ).where(segments.c.kind == "talk")
        if call_id:
            q = q.where(segments.c.call_id == call_id)
        else:
            q = q.where(segments.c.recording.is_not(None)) if center is None else q
        q = q.order_by(segments.c.started_ms, segments.c.segment_id)
        with engine.connect() as c:
            rows = [dict(r._mapping) for r in c.execute(q)]
    finally:
        engine.dispose()
    templates = _record_templates(center) if center is not None else {}
    out = []
    for r in rows:
        path, derived = r["recording"], False
        if not path and r["queue"] in templates:
            path, derived = _expand(templates[r["queue"]], r["call_id"], r["started_ms"]), True
        if path is None and not call_id:
            continue
        out.append({"call_id": r["call_id"], "segment_id": r["segment_id"], "queue": r["queue"],
                    "agent": r["agent"], "started_ms": r["started_ms"], "ended_ms": r["ended_ms"],
                    "recording": path, "derived": derived})
    return out


def _record_templates(center: CallCenter) -> dict[str, str]:
    from daemon.definition.render import queue_params

    out = {}
    for t in center.tenants:
        for q in t.queues:
            params = dict(queue_params(t, q))
            if "record-template" in params:
                out[t.qualified(q.id)] = params["record-template"]
    return out


def _expand(template: str, call_id: str, started_ms: int | None) -> str:
    """The few variables Hotline's templates use: ${uuid} (the caller's leg), ${strftime(...)}."""
    import datetime as dt
    import re

    when = dt.datetime.fromtimestamp((started_ms or 0) / 1000, dt.timezone.utc)
    text = template.replace("${uuid}", call_id)
    return re.sub(r"\$\{strftime\(([^)]*)\)\}", lambda m: when.strftime(m.group(1)), text)
