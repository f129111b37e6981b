"""The wallboard's figures: live state per tenant, queue and agent, plus "today so far".

``board()`` is pure: a live snapshot, the model, today's KPI figures and the calls
the web layer has seen joining queues in, one tenant-scoped view out (what the page
shows and the live stream sends). ``TodayFigures`` computes the "today so far" part
with the same code as ``hotline report --from today`` (``daemon.stats.report``), per
queue and per agent, in each tenant's zone.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections import OrderedDict
from typing import Any, Callable, Mapping

from daemon.definition.model import CallCenter, Tenant

logger = logging.getLogger(__name__)

TODAY_KPIS = ("offered", "answered", "abandoned", "short_abandoned", "service_level", "asa")
AGENT_KPIS = ("answered",)
MAX_REMEMBERED_CALLS = 20_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def agent_queues(center: CallCenter | None) -> dict[str, tuple[str, ...]]:
    """Qualified agent -> the qualified queues whose tiers (explicit or by skill) name it."""
    if center is None:
        return {}
    from daemon.definition.tiers import effective_tiers

    out: dict[str, list[str]] = {}
    for t in center.tenants:
        for q in t.queues:
            for tier in effective_tiers(t, q):
                out.setdefault(t.qualified(tier.agent), []).append(t.qualified(q.id))
    return {a: tuple(sorted(set(qs))) for a, qs in out.items()}


class CallsSeen:
    """call id -> (queue, caller) from the live stream's member joins (bounded, newest kept).

    The agent's live entry names only the call id; this is how the wallboard says which
    caller and which queue an agent is on. Calls that joined before this process started
    are unknown ("-").
    """

    def __init__(self, limit: int = MAX_REMEMBERED_CALLS) -> None:
        self.limit = limit
        self._calls: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def note(self, message: Mapping[str, Any]) -> None:
        if message.get("kind") != "member":
            return
        data = message.get("data") or {}
        call_id = str(data.get("call_id") or "")
        if call_id and data.get("action") == "join":
            self._calls[call_id] = (str(message.get("key") or ""), str(data.get("caller") or ""))
            self._calls.move_to_end(call_id)
            while len(self._calls) > self.limit:
                self._calls.popitem(last=False)

    def note_snapshot(self, snap: Mapping[str, Any]) -> None:
        for queue, q in snap.get("queues", {}).items():
            for w in q.get("waiting", []):
                if w.get("call_id") and w["call_id"] not in self._calls:
                    self._calls[w["call_id"]] = (queue, w.get("caller") or "")

    def get(self, call_id: str | None) -> tuple[str, str] | None:
        return self._calls.get(call_id) if call_id else None


class TodayFigures:
    """Per tenant: {"at_ms", "queues": {queue: {kpi: value}}, "agents": {agent: handled}}."""

    def __init__(self, engine: Any, center: CallCenter | None,
                 now_ms: Callable[[], int] = _now_ms) -> None:
        self.engine = engine
        self.center = center
        self.now_ms = now_ms
        self.figures: dict[str, dict[str, Any]] = {}
        self.error: str | None = None

    def refresh(self) -> dict[str, dict[str, Any]]:
        """Recompute every tenant's figures (blocking: run it in a thread)."""
        from daemon.stats.report import ReportError, ReportRequest, build_report

        now = self.now_ms()
        out: dict[str, dict[str, Any]] = {}
        try:
            with self.engine.connect() as conn:
                tenants = self.center.tenants if self.center is not None else ()
                for t in tenants:
                    queues = build_report(conn, self.center, ReportRequest(
                        start="today", by="queue", tenant=t.id, kpis=TODAY_KPIS), now_ms=now)
                    agents = build_report(conn, self.center, ReportRequest(
                        start="today", by="agent", tenant=t.id, kpis=AGENT_KPIS), now_ms=now)
                    out[t.id] = {
                        "at_ms": now,
                        "queues": {r["queue"]: {k: r[k] for k in TODAY_KPIS}
                                   for r in queues.rows if r.get("queue")},
                        "agents": {r["agent"]: r["answered"] for r in agents.rows
                                   if r.get("agent")},
                    }
        except ReportError as exc:  # no statistics yet: the live part still shows
            self.error = str(exc)
            return self.figures
        except Exception as exc:  # the database away: say so on the board, keep going
            logger.warning("wallboard: today's figures not computed: %s", exc)
            self.error = f"today's figures unavailable: {exc.__class__.__name__}"
            return self.figures
        self.error = None
        self.figures = out
        return out


def _tenant_of(name: str, tenants: Mapping[str, Tenant]) -> Tenant | None:
    return tenants.get(name.rpartition("@")[2])


def _local(name: str) -> str:
    return name.rpartition("@")[0] or name


def board(snap: Mapping[str, Any], center: CallCenter | None, today: Mapping[str, Any],
          calls: CallsSeen, *, tenant: str | None, today_error: str | None = None,
          links: Mapping[str, bool] | None = None,
          queues_of: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, Any]:
    """The wallboard view for one tenant scope (None: every tenant).

    ``queues_of``: ``agent_queues(center)``, computed once by the caller (tiers by skill
    cost a walk over every agent).
    """
    domains = {t.domain: t for t in center.tenants} if center is not None else {}
    by_agent = agent_queues(center) if queues_of is None else queues_of
    view: dict[str, Any] = {"at_ms": snap.get("at_ms", _now_ms()), "tenants": [],
                            "links": dict(links or {}), "today_error": today_error}
    tenants = list(center.tenants) if center is not None else []
    if center is None:  # no model: one pseudo-tenant per domain seen in the live state
        seen = {n.rpartition("@")[2] for n in list(snap.get("queues", {}))
                + list(snap.get("agents", {}))}
        tenants = [Tenant(id=d, domain=d, timezone="UTC", name=d) for d in sorted(seen)]
        domains = {t.domain: t for t in tenants}
    for t in tenants:
        if tenant is not None and t.id != tenant:
            continue
        fig = today.get(t.id, {})
        queues_out = []
        queue_ids = [t.qualified(q.id) for q in t.queues] + sorted(
            q for q in snap.get("queues", {}) if _tenant_of(q, domains) is t
            and q not in {t.qualified(x.id) for x in t.queues})
        for qname in queue_ids:
            model_q = t.queue(_local(qname))
            live_q = snap.get("queues", {}).get(qname, {})
            by_status: dict[str, int] = {}
            by_state: dict[str, int] = {}
            for aname, a in snap.get("agents", {}).items():
                if qname in by_agent.get(aname, ()):
                    st = a.get("status") or "Unknown"
                    by_status[st] = by_status.get(st, 0) + 1
                    s2 = a.get("state") or "Unknown"
                    by_state[s2] = by_state.get(s2, 0) + 1
            queues_out.append({
                "id": qname, "name": model_q.name if model_q else _local(qname),
                "waiting": [{"caller": w.get("caller") or "", "wait_ms": w.get("wait_ms"),
                             "joined_ms": w.get("joined_ms")} for w in live_q.get("waiting", [])],
                "count": live_q.get("count", 0),
                "longest_wait_ms": live_q.get("longest_wait_ms"),
                "sl_threshold_s": model_q.service_level_s if model_q else 20,
                "sl_target_pct": model_q.service_level_target_pct if model_q else 80.0,
                "agents_by_status": by_status, "agents_by_state": by_state,
                "today": fig.get("queues", {}).get(_local(qname)),
            })
        agents_out = []
        names = [t.qualified(a.id) for a in t.agents] + sorted(
            a for a in snap.get("agents", {}) if _tenant_of(a, domains) is t
            and a not in {t.qualified(x.id) for x in t.agents})
        for aname in names:
            model_a = t.agent(_local(aname))
            a = snap.get("agents", {}).get(aname, {})
            seen = calls.get(a.get("call_id"))
            since = a.get("since_ms") or a.get("updated_ms")
            agents_out.append({
                "id": aname, "name": model_a.name if model_a else _local(aname),
                "status": a.get("status"), "reason": a.get("reason"), "state": a.get("state"),
                "since_ms": since,
                "call_id": a.get("call_id"),
                "caller": seen[1] if seen else None,
                "queue": _local(seen[0]) if seen else None,
                "handled_today": fig.get("agents", {}).get(_local(aname), 0 if fig else None),
            })
        view["tenants"].append({"id": t.id, "name": t.name or t.id, "timezone": t.timezone,
                                "today_at_ms": fig.get("at_ms"), "queues": queues_out,
                                "agents": agents_out,
                                "day": _day(t, view["at_ms"])})
    return view


def _day(t: Tenant, at_ms: int) -> str:
    from zoneinfo import ZoneInfo

    return dt.datetime.fromtimestamp(at_ms / 1000, ZoneInfo(t.timezone)).date().isoformat()
