"""Commands on the webhook outbox: what is pending, dead, delivered; retry and replay."""
from __future__ import annotations

import click

from daemon.cli.base import UserError, _database_errors, _default_db_url, echo_json, hotline
from daemon.definition.model import WEBHOOK_EVENTS

_DB = click.option("--db", "db_url", help="Database URL (default: from the settings, else "
                                         "sqlite:///hotline.db).")
_TENANT = click.option("--tenant", help="Just this tenant (its domain).")
_SUB = click.option("--subscription", help="Just this subscription (its name in the YAML).")


@hotline.group("webhooks")
def webhooks_group() -> None:
    """The webhook outbox (docs/WEBHOOKS.md): status, retry dead messages, replay a period."""


def _engine(db_url: str | None):
    from daemon.storage.store import make_engine, migrate

    url = db_url or _default_db_url()
    with _database_errors(url):
        migrate(url)  # an older database simply has an empty outbox
    return url, make_engine(url)


@webhooks_group.command("status")
@_DB
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def status_cmd(db_url: str | None, as_json: bool) -> None:
    """Messages per subscription: pending, delivered, dead; the oldest pending; the last error."""
    from daemon.storage import outbox

    url, engine = _engine(db_url)
    try:
        with _database_errors(url), engine.connect() as conn:
            rows = outbox.status(conn, outbox.now_ms())
    finally:
        engine.dispose()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no webhook messages")
        return
    click.echo(f"{'tenant':<20} {'subscription':<16} {'pending':>8} {'delivered':>10} "
               f"{'dead':>6} {'oldest pending':>15}  last error")
    for r in rows:
        oldest = "-" if r["oldest_pending_s"] is None else f"{r['oldest_pending_s']:.0f}s"
        click.echo(f"{r['tenant']:<20} {r['subscription']:<16} {r['pending']:>8} "
                   f"{r['delivered']:>10} {r['dead']:>6} {oldest:>15}  {r['last_error'] or ''}")


@webhooks_group.command("retry")
@_DB
@_TENANT
@_SUB
def retry_cmd(db_url: str | None, tenant: str | None, subscription: str | None) -> None:
    """Send dead messages again (the running daemon picks them up)."""
    from daemon.storage import outbox

    url, engine = _engine(db_url)
    try:
        with _database_errors(url), engine.begin() as conn:
            count = outbox.retry_dead(conn, tenant=tenant, subscription=subscription)
    finally:
        engine.dispose()
    click.echo(f"{count} dead message{'s' if count != 1 else ''} queued again")


@webhooks_group.command("replay")
@click.option("--from", "from_", required=True, metavar="DATE",
              help="Events that occurred at or after (ISO date/time, UTC).")
@click.option("--to", required=True, metavar="DATE",
              help="Events that occurred before (a bare date includes that day).")
@click.option("--event", "event_type", type=click.Choice(WEBHOOK_EVENTS), help="Just this event.")
@_DB
@_TENANT
@_SUB
def replay_cmd(from_: str, to: str, event_type: str | None, db_url: str | None,
               tenant: str | None, subscription: str | None) -> None:
    """Send a period's messages again, delivered or not (same idempotency keys)."""
    from daemon.storage import outbox
    from daemon.definition.moments import MomentError, parse_ms

    try:  # the outbox spans tenants: its times are read in UTC (the help says so)
        start = parse_ms(from_, "UTC", option="--from")
        end = parse_ms(to, "UTC", end=True, option="--to")
    except MomentError as exc:
        raise UserError(str(exc)) from None
    if end <= start:
        raise UserError("--to must be after --from")
    url, engine = _engine(db_url)
    try:
        with _database_errors(url), engine.begin() as conn:
            count = outbox.replay(conn, start, end, tenant=tenant, subscription=subscription,
                                  event_type=event_type)
    finally:
        engine.dispose()
    click.echo(f"{count} message{'s' if count != 1 else ''} queued again")
