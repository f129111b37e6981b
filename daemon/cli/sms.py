"""Commands on SMS to callers: the opt-out list, and what was sent, failed or skipped."""
from __future__ import annotations

import contextlib
import time

import click

from daemon.cli.base import UserError, _database_errors, echo_json, hotline
from daemon.cli.customers import _CONFIG, _DB, _TENANT, _engine, _tenant


@hotline.group("sms")
def sms_group() -> None:
    """SMS to callers (docs/SMS.md): opt-out list, results."""


def _number(number: str, tenant) -> str:
    from daemon.integrations.customers import normalise

    e164 = normalise(number, tenant.country)
    if e164 is None:
        raise UserError(f"'{number}' is not a phone number"
                        f"{' in ' + tenant.country if tenant.country else ''}")
    return e164


@contextlib.contextmanager
def _opt_out_list(number: str, tenant: str, config_dir: str | None, db_url: str | None):
    """(connection in a transaction, the opt-out table, the tenant, NUMBER as E.164)."""
    from daemon.storage import schema

    t = _tenant(config_dir, tenant)
    e164 = _number(number, t)
    url, engine = _engine(db_url)
    try:
        with _database_errors(url), engine.begin() as conn:
            yield conn, schema.sms_opt_out, t, e164
    finally:
        engine.dispose()


@sms_group.command("opt-out")
@click.argument("number")
@_TENANT
@_CONFIG
@_DB
def opt_out_cmd(number: str, tenant: str, config_dir: str | None, db_url: str | None) -> None:
    """NUMBER gets no more SMS from the tenant (texts queued from now on are skipped)."""
    with _opt_out_list(number, tenant, config_dir, db_url) as (conn, table, t, e164):
        exists = conn.execute(table.select().where(table.c.tenant == t.domain,
                                                   table.c.number == e164)).first()
        if not exists:
            conn.execute(table.insert().values(tenant=t.domain, number=e164,
                                               created_ms=int(time.time() * 1000)))
    click.echo(f"{e164} opted out of SMS from tenant '{t.id}'")


@sms_group.command("opt-in")
@click.argument("number")
@_TENANT
@_CONFIG
@_DB
def opt_in_cmd(number: str, tenant: str, config_dir: str | None, db_url: str | None) -> None:
    """NUMBER may get SMS from the tenant again."""
    with _opt_out_list(number, tenant, config_dir, db_url) as (conn, table, t, e164):
        gone = conn.execute(table.delete().where(table.c.tenant == t.domain,
                                                 table.c.number == e164)).rowcount
    if not gone:
        raise UserError(f"{e164} had not opted out of SMS from tenant '{t.id}'")
    click.echo(f"{e164} may get SMS from tenant '{t.id}' again")


@sms_group.command("status")
@_DB
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def status_cmd(db_url: str | None, as_json: bool) -> None:
    """SMS per tenant and event: sent, pending, failed (dead), skipped and why."""
    from sqlalchemy import func, select

    from daemon.storage import outbox

    ob = outbox.ob
    url, engine = _engine(db_url)
    try:
        with _database_errors(url), engine.connect() as conn:
            rows = conn.execute(
                select(ob.c.tenant, ob.c.event, ob.c.status, ob.c.last_error, func.count())
                .where(ob.c.subscription == outbox.SMS)
                .group_by(ob.c.tenant, ob.c.event, ob.c.status, ob.c.last_error)
                .order_by(ob.c.tenant, ob.c.event, ob.c.status)).all()
    finally:
        engine.dispose()
    names = {outbox.DELIVERED: "sent", outbox.DEAD: "failed"}
    out = [{"tenant": t, "event": e, "result": names.get(s, s),
            "reason": err if s in (outbox.SKIPPED, outbox.DEAD) else None, "count": n}
           for t, e, s, err, n in rows]
    if as_json:
        echo_json(out)
        return
    if not out:
        click.echo("no SMS")
        return
    for r in out:
        click.echo(f"{r['tenant']:<20} {r['event']:<20} {r['result']:<8} {r['count']:>6}"
                   f"{'  ' + r['reason'] if r['reason'] else ''}")
