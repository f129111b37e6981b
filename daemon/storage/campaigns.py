"""Campaign contacts, attempts, run states and the do-not-call list, in the database.

The campaign's state lives here and only here, so a restarted daemon (or a second one)
continues where the first stopped:

* ``import_contacts`` reads a CSV (every bad row reported with its line, nothing written
  if any row is bad) and upserts by (tenant, campaign, contact key): a re-import updates
  names and fields and never resets attempts;
* ``claim_batch`` moves the next due contacts from ``pending`` to ``dialing`` in one
  statement; on PostgreSQL the inner SELECT takes ``FOR UPDATE SKIP LOCKED``, so two
  dialers never claim the same contact; on SQLite one statement holds the write lock;
* ``begin_attempt`` writes the attempt row (and counts the attempt) BEFORE the originate;
  ``finish_attempt`` records the result and decides the contact's next state
  (:func:`after_result`, pure);
* ``recover`` is what a dialer runs when it starts: claims left by a dead dialer.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.engine import Connection, Engine

from daemon.definition.campaigns import Campaign
from daemon.definition.model import Tenant
from daemon.definition.phone import BadNumber, normalise, tenant_region
from daemon.storage.schema import campaign_attempts, campaign_contacts, campaign_runs, dnc_numbers

logger = logging.getLogger(__name__)

RUN_STATES = ("running", "paused", "stopped")
BUILTIN_COLUMNS = ("number", "name", "external_id")
RETRYABLE = ("busy", "no_answer", "failed", "machine", "lost")
MAX_CSV_BYTES = 512 * 1024 * 1024


def now_ms() -> int:
    return int(time.time() * 1000)


class ImportErrors(ValueError):
    """Rows of a CSV that cannot be imported; ``errors`` are ``FILE:LINE: message``."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__(f"{len(errors)} bad row(s)")
        self.errors = list(errors)


@dataclass(frozen=True)
class ContactRow:
    """One valid CSV row: the contact key is the external id, else the normalised number."""

    line: int
    contact_key: str
    number: str
    name: str
    external_id: str | None
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ImportResult:
    rows: int
    inserted: int
    updated: int
    on_dnc: int


@dataclass(frozen=True)
class Claimed:
    """A contact claimed for dialing."""

    id: int
    tenant: str
    campaign: str
    number: str
    name: str
    attempts: int  # attempts made before this one
    fields: dict[str, str] = field(default_factory=dict)


# ---- CSV -----------------------------------------------------------------------------------
def read_contacts_csv(text_: str, filename: str, campaign: Campaign,
                      region: str | None) -> list[ContactRow]:
    """Every row of a contact CSV, or ImportErrors listing every bad row (pure)."""
    errors: list[str] = []
    reader = csv.reader(io.StringIO(text_.lstrip("\ufeff")))
    try:
        header = next(reader)
    except StopIteration:
        raise ImportErrors([f"{filename}:1: the file is empty (it needs a header row with "
                            f"'number')"]) from None
    cols = [h.strip() for h in header]
    required = ("number",) + campaign.fields
    missing = [c for c in required if c not in cols]
    unknown = [c for c in cols if c not in BUILTIN_COLUMNS + campaign.fields]
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if missing:
        errors.append(f"{filename}:1: the header lacks {', '.join(missing)} (campaign "
                      f"'{campaign.id}' needs number and its fields: "
                      f"{', '.join(campaign.fields) or 'none'})")
    if unknown:
        errors.append(f"{filename}:1: unknown column(s) {', '.join(unknown)} (campaign "
                      f"'{campaign.id}' has number, name, external_id"
                      f"{', ' + ', '.join(campaign.fields) if campaign.fields else ''})")
    if dup:
        errors.append(f"{filename}:1: column(s) given twice: {', '.join(dup)}")
    if errors:
        raise ImportErrors(errors)
    rows: list[ContactRow] = []
    seen: dict[str, int] = {}
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(cols):
            errors.append(f"{filename}:{line}: {len(values)} values for {len(cols)} columns")
            continue
        rec = {c: v.strip() for c, v in zip(cols, values)}
        try:
            number = normalise(rec["number"], region)
        except BadNumber as exc:
            errors.append(f"{filename}:{line}: {exc}")
            continue
        empty = [f for f in campaign.fields if not rec.get(f)]
        if empty:
            errors.append(f"{filename}:{line}: empty field(s) {', '.join(empty)}")
            continue
        ext = rec.get("external_id") or None
        key = f"id:{ext}" if ext else number
        if len(key) > 128 or len(rec.get("name", "")) > 128:
            errors.append(f"{filename}:{line}: the name or external_id is longer than 128 "
                          f"characters")
            continue
        if key in seen:
            what = f"external_id {ext}" if ext else f"number {number}"
            errors.append(f"{filename}:{line}: {what} is already on line {seen[key]}")
            continue
        seen[key] = line
        rows.append(ContactRow(line, key, number, rec.get("name", ""), ext,
                               tuple((f, rec[f]) for f in campaign.fields)))
    if errors:
        raise ImportErrors(errors)
    return rows


def _chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _upsert(conn: Connection, table: Any, rows: list[dict[str, Any]], keys: Sequence[str],
            update_cols: Sequence[str]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        # psycopg2's executemany sends one statement per row (3,000 rows/s) and SQLAlchemy's
        # multi-row VALUES spends its time compiling; execute_values pages the rows into
        # a few statements on the same connection and transaction (bench/campaigns.py)
        from psycopg2.extras import execute_values

        cols = list(rows[0])
        conflict = (f"DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in update_cols)}"
                    if update_cols else "DO NOTHING")
        sql = (f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES %s "
               f"ON CONFLICT ({', '.join(keys)}) {conflict}")
        cur = conn.connection.dbapi_connection.cursor()
        try:
            execute_values(cur, sql, [tuple(r[c] for c in cols) for r in rows], page_size=1000)
        finally:
            cur.close()
        return
    from sqlalchemy.dialects.sqlite import insert

    stmt = insert(table)
    if update_cols:
        stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={c: stmt.excluded[c] for c in update_cols})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    conn.execute(stmt, rows)


def import_contacts(engine: Engine, tenant: Tenant, campaign: Campaign, text_: str,
                    filename: str, *, at_ms: int | None = None) -> ImportResult:
    """Validate the whole CSV, then upsert it in one transaction (ImportErrors: nothing
    written). A contact already known keeps its attempts and status."""
    rows = read_contacts_csv(text_, filename, campaign, tenant_region(tenant))
    now = now_ms() if at_ms is None else at_ms
    with engine.begin() as conn:
        existing = _existing_keys(conn, tenant.id, campaign.id, [r.contact_key for r in rows])
        dnc = _dnc_set(conn, tenant.id, [r.number for r in rows])
        payload = [{
            "tenant": tenant.id, "campaign": campaign.id, "contact_key": r.contact_key,
            "number": r.number, "name": r.name, "external_id": r.external_id,
            "fields": json.dumps(dict(r.fields), ensure_ascii=False, sort_keys=True),
            "status": "dnc" if r.number in dnc else "pending", "attempts": 0, "next_ms": 0,
            "imported_ms": now, "updated_ms": now} for r in rows]
        for chunk in _chunks(payload, 5000):
            _upsert(conn, campaign_contacts, list(chunk), ("tenant", "campaign", "contact_key"),
                    ("number", "name", "external_id", "fields", "updated_ms"))
    inserted = sum(1 for r in rows if r.contact_key not in existing)
    return ImportResult(len(rows), inserted, len(rows) - inserted,
                        sum(1 for r in rows if r.number in dnc))


def _existing_keys(conn: Connection, tenant: str, campaign: str, keys: list[str]) -> set[str]:
    out: set[str] = set()
    c = campaign_contacts.c
    for chunk in _chunks(keys, 5000):
        out.update(conn.execute(select(c.contact_key).where(
            c.tenant == tenant, c.campaign == campaign, c.contact_key.in_(list(chunk)))).scalars())
    return out


def _dnc_set(conn: Connection, tenant: str, numbers: list[str]) -> set[str]:
    out: set[str] = set()
    for chunk in _chunks(sorted(set(numbers)), 5000):
        out.update(conn.execute(select(dnc_numbers.c.number).where(
            dnc_numbers.c.tenant == tenant, dnc_numbers.c.number.in_(list(chunk)))).scalars())
    return out


# ---- do-not-call -------------------------------------------------------------------------
def dnc_add(engine: Engine, tenant: Tenant, raw_numbers: Iterable[str], *, reason: str = "",
            source: str = "cli", at_ms: int | None = None,
            filename: str = "") -> tuple[int, list[str]]:
    """Add numbers (normalised) to the tenant's list; contacts waiting with those numbers in
    any campaign are taken off (status ``dnc``). Returns (added, errors); with any error
    nothing is written."""
    region = tenant_region(tenant)
    numbers: list[str] = []
    errors: list[str] = []
    for i, raw in enumerate(raw_numbers, start=1):
        try:
            numbers.append(normalise(raw, region))
        except BadNumber as exc:
            errors.append(f"{filename}:{i}: {exc}" if filename else str(exc))
    if errors:
        return 0, errors
    now = now_ms() if at_ms is None else at_ms
    with engine.begin() as conn:
        before = _dnc_set(conn, tenant.id, numbers)
        _upsert(conn, dnc_numbers, [{"tenant": tenant.id, "number": n, "reason": reason[:128],
                                     "source": source, "added_ms": now}
                                    for n in sorted(set(numbers))], ("tenant", "number"), ())
        _take_off(conn, tenant.id, numbers, "dnc", now)
    return len(set(numbers) - before), []


def _take_off(conn: Connection, tenant: str, numbers: list[str], status: str, now: int) -> None:
    c = campaign_contacts.c
    for chunk in _chunks(sorted(set(numbers)), 5000):
        conn.execute(update(campaign_contacts).where(
            c.tenant == tenant, c.number.in_(list(chunk)), c.status == "pending")
            .values(status=status, updated_ms=now))


def dnc_list(engine: Engine, tenant: str) -> list[dict[str, Any]]:
    d = dnc_numbers.c
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(d.number, d.reason, d.source, d.added_ms).where(d.tenant == tenant)
            .order_by(d.number))]


# ---- run states --------------------------------------------------------------------------
def set_run_state(engine: Engine, tenant: str, campaign: str, state: str,
                  at_ms: int | None = None) -> str:
    """Set a campaign's state; returns the state before (``stopped`` when never set)."""
    if state not in RUN_STATES:
        raise ValueError(state)
    with engine.begin() as conn:
        before = run_state(conn, tenant, campaign)
        _upsert(conn, campaign_runs, [{"tenant": tenant, "campaign": campaign, "state": state,
                                       "changed_ms": now_ms() if at_ms is None else at_ms}],
                ("tenant", "campaign"), ("state", "changed_ms"))
    return before


def run_state(conn: Connection, tenant: str, campaign: str) -> str:
    r = campaign_runs.c
    got = conn.execute(select(r.state).where(r.tenant == tenant, r.campaign == campaign)).scalar()
    return got or "stopped"


def running_campaigns(conn: Connection) -> list[tuple[str, str]]:
    r = campaign_runs.c
    return [(t, c) for t, c in conn.execute(
        select(r.tenant, r.campaign).where(r.state == "running").order_by(r.tenant, r.campaign))]


# ---- claiming ----------------------------------------------------------------------------
# The due contacts are chosen once, in a MATERIALIZED CTE: an ``IN (SELECT ... LIMIT n)``
# subquery may be re-run by PostgreSQL's planner and then claims more than n rows.
_CLAIM_SQL = """
WITH due AS {materialized} (
    SELECT c.id FROM campaign_contacts c
    WHERE c.tenant = :tenant AND c.campaign = :campaign AND c.status = 'pending'
      AND c.next_ms <= :now
      AND NOT EXISTS (SELECT 1 FROM dnc_numbers d WHERE d.tenant = c.tenant
                      AND d.number = c.number)
    ORDER BY c.next_ms, c.id
    LIMIT :limit{lock})
UPDATE campaign_contacts SET status = 'dialing', claimed_by = :owner, claimed_ms = :now,
       updated_ms = :now
WHERE status = 'pending' AND id IN (SELECT id FROM due)
RETURNING id, number, name, attempts, fields
"""


def claim_batch(conn: Connection, tenant: str, campaign: str, limit: int, owner: str,
                at_ms: int) -> list[Claimed]:
    """Claim up to ``limit`` due contacts for ``owner`` (call inside a transaction).

    The index ``ix_campaign_contacts_due`` (tenant, campaign, status, next_ms, id) serves
    the inner SELECT in order, so the cost is the batch size, not the list size.
    """
    if limit <= 0:
        return []
    pg = conn.dialect.name == "postgresql"
    sql = _CLAIM_SQL.format(materialized="MATERIALIZED" if pg else "",
                            lock=" FOR UPDATE SKIP LOCKED" if pg else "")
    rows = conn.execute(text(sql), {
        "owner": owner, "now": at_ms, "tenant": tenant, "campaign": campaign,
        "limit": limit}).all()
    out = [Claimed(r.id, tenant, campaign, r.number, r.name, r.attempts,
                   json.loads(r.fields) if r.fields else {}) for r in rows]
    return sorted(out, key=lambda x: x.id)


def release(conn: Connection, contact_ids: Sequence[int], at_ms: int) -> None:
    """Give claimed contacts back untouched (nothing was dialed)."""
    c = campaign_contacts.c
    if contact_ids:
        conn.execute(update(campaign_contacts).where(c.id.in_(list(contact_ids)),
                                                     c.status == "dialing")
                     .values(status="pending", claimed_by=None, claimed_ms=None,
                             updated_ms=at_ms))


def begin_attempt(conn: Connection, contact: Claimed, call_id: str, node: str, at_ms: int,
                  agent: str | None = None) -> str:
    """Write the attempt BEFORE the originate (and count it); returns the attempt id."""
    n = contact.attempts + 1
    attempt_id = f"{contact.id}:{n}"
    conn.execute(campaign_attempts.insert().values(
        attempt_id=attempt_id, tenant=contact.tenant, campaign=contact.campaign,
        contact_id=contact.id, attempt=n, number=contact.number, call_id=call_id, node=node,
        agent=agent, started_ms=at_ms))
    c = campaign_contacts.c
    conn.execute(update(campaign_contacts).where(c.id == contact.id)
                 .values(attempts=n, updated_ms=at_ms))
    return attempt_id


@dataclass(frozen=True)
class NextState:
    status: str  # pending | done | finished | optout
    next_ms: int


def after_result(campaign: Campaign, result: str, attempts: int, at_ms: int) -> NextState:
    """The contact's state after an attempt's result (pure): reached -> done; opted out ->
    optout; a retryable result -> pending after the campaign's delay for it, or finished
    when the attempts are used up."""
    if result in ("answered", "connected"):
        return NextState("done", at_ms)
    if result == "optout":
        return NextState("optout", at_ms)
    if attempts >= campaign.max_attempts:
        return NextState("finished", at_ms)
    # an abandoned contact (answered, no agent) is called again soon; a lost attempt (the
    # dialer died, result unknown) waits like a failure
    key = {"abandoned": "busy", "lost": "failed"}.get(result, result)
    return NextState("pending", at_ms + campaign.retry_delay_s(key) * 1000)


def finish_attempt(engine: Engine, tenant: Tenant, campaign: Campaign, attempt_id: str,
                   result: str, *, at_ms: int, cause: str | None = None,
                   answered_ms: int | None = None, bridged_ms: int | None = None,
                   agent: str | None = None) -> NextState:
    """Record an attempt's result and move its contact on (idempotent: a result already
    recorded is kept)."""
    a = campaign_attempts.c
    c = campaign_contacts.c
    with engine.begin() as conn:
        row = conn.execute(select(a.contact_id, a.attempt, a.result, a.number)
                           .where(a.attempt_id == attempt_id)).one_or_none()
        if row is None:
            raise KeyError(attempt_id)
        if row.result is not None:
            st = conn.execute(select(c.status, c.next_ms).where(c.id == row.contact_id)).one()
            return NextState(st.status, st.next_ms)
        values: dict[str, Any] = {"result": result, "cause": cause, "answered_ms": answered_ms,
                                  "bridged_ms": bridged_ms, "ended_ms": at_ms}
        if agent is not None:
            values["agent"] = agent
        conn.execute(update(campaign_attempts).where(a.attempt_id == attempt_id).values(**values))
        nxt = after_result(campaign, result, row.attempt, at_ms)
        conn.execute(update(campaign_contacts).where(c.id == row.contact_id).values(
            status=nxt.status, next_ms=nxt.next_ms, last_result=result, claimed_by=None,
            claimed_ms=None, updated_ms=at_ms))
        if result == "optout":
            _upsert(conn, dnc_numbers, [{"tenant": tenant.id, "number": row.number,
                                         "reason": f"opted out in campaign {campaign.id}",
                                         "source": "optout", "added_ms": at_ms}],
                    ("tenant", "number"), ())
            _take_off(conn, tenant.id, [row.number], "dnc", at_ms)
    return nxt


@dataclass(frozen=True)
class Stale:
    """A contact left in ``dialing`` by a dialer that is gone."""

    contact_id: int
    attempt_id: str | None  # None: claimed, but the attempt was never written (not dialed)
    call_id: str | None
    agent: str | None = None


def stale_claims(conn: Connection, tenant: str, campaign: str, older_than_ms: int
                 ) -> list[Stale]:
    c, a = campaign_contacts.c, campaign_attempts.c
    rows = conn.execute(
        select(c.id, a.attempt_id, a.call_id, a.agent)
        .select_from(campaign_contacts.outerjoin(
            campaign_attempts, and_(a.contact_id == c.id, a.attempt == c.attempts,
                                    a.result.is_(None))))
        .where(c.tenant == tenant, c.campaign == campaign, c.status == "dialing",
               c.claimed_ms < older_than_ms)).all()
    return [Stale(r.id, r.attempt_id, r.call_id, r.agent) for r in rows]


def recover(engine: Engine, tenant: Tenant, campaign: Campaign, older_than_ms: int,
            at_ms: int, live_calls: Iterable[str] = ()) -> tuple[dict[str, int], list[Stale]]:
    """Claims a dead dialer left: never dialed -> back to pending (not counted); dialed and
    still up on the switch (``live_calls``) -> left alone and returned, so the new dialer
    follows them to their hangup; dialed and gone -> result ``lost`` (counted, retried after
    the failure delay). Returns the counts and the live ones."""
    live_calls = frozenset(live_calls)
    with engine.connect() as conn:
        stale = stale_claims(conn, tenant.id, campaign.id, older_than_ms)
    out = {"released": 0, "lost": 0, "live": 0}
    live: list[Stale] = []
    for s in stale:
        if s.attempt_id is None:
            with engine.begin() as conn:
                release(conn, [s.contact_id], at_ms)
            out["released"] += 1
        elif s.call_id in live_calls:
            out["live"] += 1
            live.append(s)
        else:
            finish_attempt(engine, tenant, campaign, s.attempt_id, "lost", at_ms=at_ms)
            out["lost"] += 1
    return out, live


# ---- progress ----------------------------------------------------------------------------
def progress(conn: Connection, tenant: str, campaign: str) -> dict[str, int]:
    """Contacts per status and attempts made."""
    c, a = campaign_contacts.c, campaign_attempts.c
    out = {s: 0 for s in ("pending", "dialing", "done", "finished", "dnc", "optout")}
    for status, n in conn.execute(select(c.status, func.count()).where(
            c.tenant == tenant, c.campaign == campaign).group_by(c.status)):
        out[status] = n
    out["contacts"] = sum(out.values())
    out["attempts"] = conn.execute(select(func.count()).select_from(campaign_attempts).where(
        a.tenant == tenant, a.campaign == campaign)).scalar() or 0
    return out
