"""Manual inputs for the KPIs: QA scores given by supervisors, dispositions entered from the CLI.

QA scores (0-100) feed ``qa_score``; dispositions feed first-call resolution
(a code marked ``resolved: true`` in the tenant's YAML counts the call as
resolved). Phone-entered dispositions are stored by the daemon as events
arrive (source "phone"); ``hotline disposition`` stores source "cli" and
replaces an earlier code for the same call.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from daemon.definition.model import CallCenter, Tenant
from daemon.storage import schema

logger = logging.getLogger(__name__)


class InputError(ValueError):
    """A QA score or disposition that cannot be stored (one sentence for the user)."""


@dataclass(frozen=True)
class QaScore:
    id: int
    call_id: str
    agent: str
    score: int
    scored_by: str
    note: str | None
    scored_ms: int
    call_known: bool


@dataclass(frozen=True)
class DispositionEntry:
    call_id: str
    code: str
    name: str | None  # the code's name in the tenant's YAML, when known
    resolved: bool | None
    agent: str | None
    source: str
    entered_ms: int
    call_known: bool


def _now_ms() -> int:
    return int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)


def _call_tenant(conn: Connection, center: CallCenter | None, call_id: str
                 ) -> tuple[bool, str | None, Tenant | None]:
    domain = conn.execute(select(schema.calls.c.tenant)
                          .where(schema.calls.c.call_id == call_id)).scalar()
    if domain is None:
        domain = conn.execute(select(schema.segments.c.tenant)
                              .where(schema.segments.c.call_id == call_id).limit(1)).scalar()
    tenant = center.tenant_by_domain(domain) if (center and domain) else None
    return domain is not None, domain, tenant


def _qualify(agent: str, domain: str | None, center: CallCenter | None) -> str:
    if "@" in agent:
        return agent
    if domain is None and center is not None and len(center.tenants) == 1:
        domain = center.tenants[0].domain
    if domain is None:
        raise InputError(f"cannot tell the tenant of agent {agent!r}: write it as "
                         f"{agent}@<tenant domain>")
    return f"{agent}@{domain}"


def add_qa_score(conn: Connection, center: CallCenter | None, call_id: str, score: int,
                 agent: str, scored_by: str, note: str | None = None,
                 now_ms: int | None = None) -> QaScore:
    """Store one QA score (0-100) of ``agent`` on ``call_id``."""
    if not 0 <= score <= 100:
        raise InputError(f"a QA score is 0-100, not {score}")
    if not scored_by.strip():
        raise InputError("say who scored the call (--by NAME)")
    known, domain, tenant = _call_tenant(conn, center, call_id)
    if not known:
        raise InputError(f"no call {call_id} in the database (check the id with `hotline calls`)")
    qualified = _qualify(agent, domain, center)
    if tenant is not None and tenant.agent(qualified.split("@", 1)[0]) is None:
        raise InputError(f"tenant {tenant.id!r} has no agent {agent!r}")
    took_part = conn.execute(select(schema.segments.c.segment_id).where(
        schema.segments.c.call_id == call_id, schema.segments.c.agent == qualified,
        schema.segments.c.kind == "talk").limit(1)
    ).scalar()
    if took_part is None:
        raise InputError(f"agent {agent!r} did not talk to the caller of call {call_id}")
    ms = _now_ms() if now_ms is None else now_ms
    new_id = conn.execute(insert(schema.qa_scores).values(
        call_id=call_id, agent=qualified, score=score, scored_by=scored_by.strip(), note=note,
        scored_ms=ms)).inserted_primary_key[0]
    return QaScore(int(new_id), call_id, qualified, score, scored_by.strip(), note, ms, known)


def set_disposition(conn: Connection, center: CallCenter | None, call_id: str, code: str,
                    agent: str | None = None, now_ms: int | None = None) -> DispositionEntry:
    """Store the disposition code of a call (source "cli"), replacing an earlier one.

    The call must be in the database (a mistyped id would otherwise be stored for a
    call that never comes); when its tenant is in the model, the code must be one of
    the tenant's dispositions.
    """
    code = code.strip()
    if not code:
        raise InputError("a disposition code cannot be empty")
    known, domain, tenant = _call_tenant(conn, center, call_id)
    if not known:
        raise InputError(f"no call {call_id} in the database (check the id with `hotline calls`)")
    name = resolved = None
    if tenant is not None:
        match = next((d for d in tenant.dispositions if d.code == code), None)
        if match is None:
            codes = ", ".join(f"{d.code} ({d.name})" for d in tenant.dispositions) or "none"
            raise InputError(f"tenant {tenant.id!r} has no disposition {code!r}; "
                             f"its codes: {codes}")
        name, resolved = match.name, match.resolved
    if agent is not None:
        agent = _qualify(agent, domain, center)
    elif known:
        s = schema.segments
        agent = conn.execute(select(s.c.agent).where(
            s.c.call_id == call_id, s.c.kind == "talk", s.c.agent.is_not(None))
            .order_by(s.c.started_ms.desc()).limit(1)).scalar()
    ms = _now_ms() if now_ms is None else now_ms
    d = schema.dispositions
    conn.execute(delete(d).where(d.c.call_id == call_id))
    conn.execute(insert(d).values(call_id=call_id, agent=agent, code=code, source="cli",
                                  entered_ms=ms))
    return DispositionEntry(call_id, code, name, resolved, agent, "cli", ms, known)
