"""Outbound KPIs: per campaign, agent and day, in one SQL query over the campaign attempts.

Definitions (published in docs/KPIS.md, "Outbound"). An attempt belongs to the day (in the
tenant's zone) it was dialed in (``campaign_attempts.started_ms``); only attempts with a
result count (a call still up is counted once it ends). The day is found with the same
binary-search ``bucket`` as every KPI of ``daemon.stats.kpi``; resolved disposition codes
come from the model as a ``VALUES`` list (``rows_cte``), so SQLite and PostgreSQL run the
same SQL.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, and_, case, distinct, func, or_, select
from sqlalchemy.engine import Connection

from daemon.definition.model import Tenant
from daemon.stats.intervals import Interval
from daemon.stats.kpi import bucket, rows_cte
from daemon.storage.schema import campaign_attempts, campaign_contacts, dispositions

ABANDON_AFTER_MS = 2000
BYS = ("campaign", "agent", "day")
KPIS = ("attempts", "connects", "connect_rate", "successes", "attempts_per_contact",
        "contacts_completed", "avg_talk_s", "avg_handle_s", "abandon_rate")


@dataclass(frozen=True)
class OutboundRow:
    """One group's outbound KPIs; rates are 0-1, None when undefined (nothing to divide)."""

    campaign: str | None
    agent: str | None
    day: str | None  # YYYY-MM-DD in the tenant's zone
    attempts: int
    connects: int
    connect_rate: float | None
    successes: int
    attempts_per_contact: float | None
    contacts_completed: int
    avg_talk_s: float | None
    avg_handle_s: float | None
    abandon_rate: float | None
    by_disposition: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["by_disposition"] = dict(self.by_disposition)
        return d


def _div(a: Any, b: Any) -> float | None:
    return None if not b else float(a or 0) / float(b)


def outbound_kpis(conn: Connection, tenant: Tenant, days: Sequence[Interval], *,
                  by: Sequence[str] = ("campaign", "day"),
                  campaigns: Sequence[str] | None = None) -> list[OutboundRow]:
    """The outbound KPIs of ``tenant`` over ``days`` (day intervals), grouped ``by``."""
    if not days:
        return []
    bad = [b for b in by if b not in BYS]
    if bad:
        raise ValueError(f"unknown grouping {bad[0]!r} (one of {', '.join(BYS)})")
    a, c, d = campaign_attempts.c, campaign_contacts.c, dispositions.c
    resolved = rows_cte("resolved_codes", [("code", String)],
                        [(x.code,) for x in tenant.dispositions if x.resolved])
    progressive = rows_cte("progressive_campaigns", [("id", String)],
                           [(x.id,) for x in tenant.campaigns if x.type == "progressive"])
    day = bucket(a.started_ms, days).label("day_idx")
    base = (select(a.attempt_id, a.campaign, a.agent, a.contact_id, a.attempt, a.result,
                   a.started_ms, a.answered_ms, a.bridged_ms, a.ended_ms, day,
                   d.code.label("disposition"), c.status.label("contact_status"),
                   c.attempts.label("contact_attempts"))
            .select_from(campaign_attempts
                         .outerjoin(dispositions, d.call_id == a.call_id)
                         .join(campaign_contacts, c.id == a.contact_id))
            .where(a.tenant == tenant.id, a.result.is_not(None),
                   a.started_ms >= days[0].start_ms, a.started_ms < days[-1].end_ms))
    if campaigns:
        base = base.where(a.campaign.in_(list(campaigns)))
    r = base.cte("att")
    connected = r.c.bridged_ms.is_not(None)
    person = and_(r.c.answered_ms.is_not(None), r.c.result != "machine")
    is_prog = r.c.campaign.in_(select(progressive.c.id))
    abandoned = and_(person, is_prog, or_(r.c.bridged_ms.is_(None),
                                          r.c.bridged_ms - r.c.answered_ms > ABANDON_AFTER_MS))
    final = and_(r.c.attempt == r.c.contact_attempts,
                 r.c.contact_status.in_(("done", "finished", "optout")))
    success = and_(connected, r.c.disposition.in_(select(resolved.c.code)))
    cols = {"campaign": r.c.campaign, "agent": r.c.agent, "day": r.c.day_idx}
    keys = [cols[b].label(b) for b in by]

    def n(cond: Any) -> Any:
        return func.sum(case((cond, 1), else_=0))

    q = (select(*keys,
                func.count().label("attempts"),
                n(person).label("connects"),
                n(success).label("successes"),
                func.count(distinct(r.c.contact_id)).label("contacts"),
                func.count(distinct(case((final, r.c.contact_id)))).label("completed"),
                func.avg(case((connected, r.c.ended_ms - r.c.bridged_ms))).label("talk_ms"),
                func.avg(case((connected, r.c.ended_ms - r.c.started_ms))).label("handle_ms"),
                n(and_(person, is_prog)).label("prog_answered"),
                n(abandoned).label("abandoned"))
         .where(r.c.day_idx.is_not(None))
         .group_by(*keys).order_by(*keys))
    disp_q = (select(*keys, r.c.disposition, func.count().label("n"))
              .where(r.c.day_idx.is_not(None), r.c.disposition.is_not(None))
              .group_by(*keys, r.c.disposition))
    by_disp: dict[tuple, list[tuple[str, int]]] = {}
    for row in conn.execute(disp_q):
        key = tuple(row._mapping[b] for b in by)
        by_disp.setdefault(key, []).append((row.disposition, row.n))
    out = []
    for row in conn.execute(q):
        m = row._mapping
        key = tuple(m[b] for b in by)
        day_label = None
        if "day" in by and m["day"] is not None:
            day_label = days[int(m["day"])].start.date().isoformat()
        out.append(OutboundRow(
            campaign=m["campaign"] if "campaign" in by else None,
            agent=m["agent"] if "agent" in by else None, day=day_label,
            attempts=m["attempts"], connects=int(m["connects"] or 0),
            connect_rate=_div(m["connects"], m["attempts"]),
            successes=int(m["successes"] or 0),
            attempts_per_contact=_div(m["attempts"], m["contacts"]),
            contacts_completed=int(m["completed"] or 0),
            avg_talk_s=None if m["talk_ms"] is None else round(float(m["talk_ms"]) / 1000, 1),
            avg_handle_s=None if m["handle_ms"] is None else round(float(m["handle_ms"]) / 1000,
                                                                     1),
            abandon_rate=_div(m["abandoned"], m["prog_answered"]),
            by_disposition=tuple(sorted(by_disp.get(key, [])))))
    return out
