"""Commands on outbound campaigns and the do-not-call list: import, control, progress, results.

``hotline campaign list|import|start|pause|resume|stop|status|results`` and
``hotline dnc add|import|list``. Commands that change state create or upgrade the database's
tables first (like the daemon); the ones that only read need an existing database.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from daemon.cli.base import (
    UserError,
    _database_errors,
    _default_db_url,
    _load_center_or_fail,
    echo_json,
    hotline,
)

DB_HELP = "Database URL (default: from the settings, else sqlite:///hotline.db)."
CONFIG_HELP = "Call-center YAML directory (default: from the settings)."


def _tenant(center: Any, tenant_id: str | None) -> Any:
    if tenant_id is None:
        if len(center.tenants) == 1:
            return center.tenants[0]
        ids = ", ".join(t.id for t in center.tenants)
        raise UserError(f"several tenants ({ids}): say which with --tenant")
    tenant = center.tenant(tenant_id) or center.tenant_by_domain(tenant_id)
    if tenant is None:
        raise UserError(f"no tenant '{tenant_id}' in the configuration")
    return tenant


def _campaign(tenant: Any, campaign_id: str) -> Any:
    campaign = tenant.campaign(campaign_id)
    if campaign is None:
        known = ", ".join(c.id for c in tenant.campaigns) or "none"
        raise UserError(f"tenant '{tenant.id}' has no campaign '{campaign_id}' (it has: {known})")
    return campaign


def _engine(url: str, *, write: bool):
    """An engine on a migrated database (write) or an existing one (read)."""
    from sqlalchemy import inspect

    from daemon.storage.store import make_engine, migrate

    if write:
        migrate(url)
    else:  # reading never creates a database (SQLite would make an empty file)
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        name = parsed.database
        if parsed.get_backend_name() == "sqlite" and name not in (None, "", ":memory:") \
                and not name.startswith("file:") and not Path(name).is_file():
            raise UserError(f"the database {name} does not exist: import contacts first "
                            "(hotline campaign import) or give --db")
    engine = make_engine(url)
    if not write:
        with engine.connect() as conn:
            if not inspect(conn).has_table("campaign_contacts"):
                engine.dispose()
                raise UserError("the database has no campaign tables yet: import contacts "
                                "first (hotline campaign import) or give --db")
    return engine


def _read_text(path: str) -> str:
    from daemon.storage.campaigns import MAX_CSV_BYTES

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: no such file")
    if p.stat().st_size > MAX_CSV_BYTES:
        raise UserError(f"{path}: larger than {MAX_CSV_BYTES // 2**20} MB")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


@hotline.group("campaign")
def campaign_group() -> None:
    """Outbound campaigns: contacts, control, progress and results (docs/ADMIN.md)."""


@campaign_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--campaign", "campaign_id", required=True, help="The campaign's id.")
@click.option("--tenant", "tenant_id", default=None, help="The tenant (id or domain).")
@click.option("--db", "db_url", default=None, help=DB_HELP)
@click.option("--config", "config_dir", default=None, help=CONFIG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def import_cmd(file: str, campaign_id: str, tenant_id: str | None, db_url: str | None,
               config_dir: str | None, as_json: bool) -> None:
    """Import contacts from a CSV (header: number, name, external_id and the campaign's
    fields). Every bad row is listed; if any is bad nothing is imported. Importing the same
    file again changes nothing (contacts are keyed by external_id, else by number)."""
    from daemon.storage.campaigns import ImportErrors, import_contacts

    _, center = _load_center_or_fail(config_dir)
    tenant = _tenant(center, tenant_id)
    campaign = _campaign(tenant, campaign_id)
    text = _read_text(file)
    url = db_url or _default_db_url()
    with _database_errors(url):
        engine = _engine(url, write=True)
        try:
            got = import_contacts(engine, tenant, campaign, text, file)
        except ImportErrors as exc:
            for line in exc.errors:
                click.echo(line, err=True)
            raise UserError(f"{file}: {len(exc.errors)} error(s), nothing imported") from None
        finally:
            engine.dispose()
    data = {"file": file, "campaign": campaign.id, "rows": got.rows, "new": got.inserted,
            "updated": got.updated, "on_dnc_list": got.on_dnc}
    if as_json:
        echo_json(data)
    else:
        click.echo(f"{file}: {got.rows} contact(s) for campaign {campaign.id}: {got.inserted} "
                   f"new, {got.updated} already known, {got.on_dnc} on the do-not-call list")


def _set_state(campaign_id: str, tenant_id: str | None, db_url: str | None,
               config_dir: str | None, state: str, allowed_from: tuple[str, ...]) -> None:
    from daemon.storage.campaigns import run_state, set_run_state

    _, center = _load_center_or_fail(config_dir)
    tenant = _tenant(center, tenant_id)
    campaign = _campaign(tenant, campaign_id)
    url = db_url or _default_db_url()
    with _database_errors(url):
        engine = _engine(url, write=True)
        try:
            with engine.connect() as conn:
                before = run_state(conn, tenant.id, campaign.id)
            if before not in allowed_from:
                raise UserError(f"campaign {campaign.id} is {before}; it cannot be set to "
                                f"{state} from there")
            set_run_state(engine, tenant.id, campaign.id, state)
        finally:
            engine.dispose()
    click.echo(f"campaign {campaign.id}: {before} -> {state}")


def _state_command(name: str, state: str, allowed_from: tuple[str, ...], doc: str) -> None:
    @campaign_group.command(name, help=doc)
    @click.argument("campaign_id")
    @click.option("--tenant", "tenant_id", default=None, help="The tenant (id or domain).")
    @click.option("--db", "db_url", default=None, help=DB_HELP)
    @click.option("--config", "config_dir", default=None, help=CONFIG_HELP)
    def cmd(campaign_id: str, tenant_id: str | None, db_url: str | None,
            config_dir: str | None) -> None:
        _set_state(campaign_id, tenant_id, db_url, config_dir, state, allowed_from)


_state_command("start", "running", ("stopped",),
               "Start a campaign: the daemon's dialer dials its contacts inside its hours.")
_state_command("pause", "paused", ("running",),
               "Pause a running campaign (calls up go on; no new ones).")
_state_command("resume", "running", ("paused",), "Resume a paused campaign.")
_state_command("stop", "stopped", ("running", "paused"),
               "Stop a campaign (its contacts keep their attempts; start it again later).")


def _status_rows(engine: Any, tenant: Any, campaigns: list[Any]) -> list[dict[str, Any]]:
    from daemon.definition.campaigns import may_dial, next_window_start
    from daemon.storage.campaigns import progress, run_state

    import contextlib

    now = dt.datetime.now(dt.timezone.utc)
    rows = []
    empty = {s: 0 for s in ("pending", "dialing", "done", "finished", "dnc", "optout",
                            "contacts", "attempts")}
    with (engine.connect() if engine is not None else contextlib.nullcontext()) as conn:
        for c in campaigns:
            window = may_dial(tenant, c, now)
            nxt = None if window.open else next_window_start(tenant, c, now)
            rows.append({
                "tenant": tenant.id, "campaign": c.id, "name": c.name, "type": c.type,
                "state": run_state(conn, tenant.id, c.id) if conn is not None else "stopped",
                "window_open": window.open,
                "window": window.reason,
                "next_window": (nxt.astimezone(_zone(tenant)).isoformat(timespec="minutes")
                                if nxt else None),
                **(progress(conn, tenant.id, c.id) if conn is not None else empty)})
    return rows


@campaign_group.command("list")
@click.option("--tenant", "tenant_id", default=None, help="Just this tenant.")
@click.option("--db", "db_url", default=None, help=DB_HELP)
@click.option("--config", "config_dir", default=None, help=CONFIG_HELP)
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def list_cmd(tenant_id: str | None, db_url: str | None, config_dir: str | None,
             as_json: bool) -> None:
    """The campaigns of the YAML with their state and progress."""
    _, center = _load_center_or_fail(config_dir)
    tenants = [_tenant(center, tenant_id)] if tenant_id else list(center.tenants)
    url = db_url or _default_db_url()
    with _database_errors(url):
        try:
            engine = _engine(url, write=False)
        except UserError:  # nothing imported yet: the campaigns of the YAML, untouched
            engine = None
        try:
            rows = [r for t in tenants for r in _status_rows(engine, t, list(t.campaigns))]
        finally:
            if engine is not None:
                engine.dispose()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no campaigns in the configuration")
        return
    click.echo(f"{'tenant':<12} {'campaign':<16} {'type':<12} {'state':<8} {'contacts':>8} "
               f"{'pending':>8} {'done':>6} {'attempts':>8}")
    for r in rows:
        click.echo(f"{r['tenant']:<12} {r['campaign']:<16} {r['type']:<12} {r['state']:<8} "
                   f"{r['contacts']:>8} {r['pending']:>8} {r['done']:>6} {r['attempts']:>8}")


@campaign_group.command("status")
@click.argument("campaign_id")
@click.option("--tenant", "tenant_id", default=None, help="The tenant (id or domain).")
@click.option("--db", "db_url", default=None, help=DB_HELP)
@click.option("--config", "config_dir", default=None, help=CONFIG_HELP)
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def status_cmd(campaign_id: str, tenant_id: str | None, db_url: str | None,
               config_dir: str | None, as_json: bool) -> None:
    """A campaign's state, dialing window and contacts per status."""
    _, center = _load_center_or_fail(config_dir)
    tenant = _tenant(center, tenant_id)
    campaign = _campaign(tenant, campaign_id)
    url = db_url or _default_db_url()
    with _database_errors(url):
        engine = _engine(url, write=False)
        try:
            (row,) = _status_rows(engine, tenant, [campaign])
        finally:
            engine.dispose()
    if as_json:
        echo_json(row)
        return
    click.echo(f"campaign {row['campaign']} ({row['name']}, {row['type']}): {row['state']}")
    click.echo(f"  window: {'open' if row['window_open'] else 'closed'} - {row['window']}"
               + (f"; opens {row['next_window']}" if row["next_window"] else ""))
    click.echo(f"  contacts {row['contacts']}: pending {row['pending']}, dialing "
               f"{row['dialing']}, done {row['done']}, finished {row['finished']}, dnc "
               f"{row['dnc']}, opted out {row['optout']}; attempts {row['attempts']}")


@campaign_group.command("results")
@click.argument("campaign_id", required=False)
@click.option("--tenant", "tenant_id", default=None, help="The tenant (id or domain).")
@click.option("--from", "from_", default=None, metavar="WHEN", help="First day (default: 30 "
              "days ago).")
@click.option("--to", default=None, metavar="WHEN", help="Last day, inclusive (default: today).")
@click.option("--by", "by", default="campaign,day", show_default=True,
              help="Grouping: campaign, agent, day (comma-separated).")
@click.option("--db", "db_url", default=None, help=DB_HELP)
@click.option("--config", "config_dir", default=None, help=CONFIG_HELP)
@click.option("--json", "as_json", is_flag=True, help="As JSON (rates 0-1).")
def results_cmd(campaign_id: str | None, tenant_id: str | None, from_: str | None,
                to: str | None, by: str, db_url: str | None, config_dir: str | None,
                as_json: bool) -> None:
    """Outbound KPIs (docs/KPIS.md "Outbound") per campaign, agent and day."""
    from daemon.stats.intervals import intervals, local_midnight_ms
    from daemon.stats.outbound import BYS, outbound_kpis

    _, center = _load_center_or_fail(config_dir)
    tenant = _tenant(center, tenant_id)
    if campaign_id is not None:
        _campaign(tenant, campaign_id)
    groups = tuple(b.strip() for b in by.split(",") if b.strip())
    bad = [b for b in groups if b not in BYS]
    if bad or not groups:
        raise UserError(f"--by takes {', '.join(BYS)}, not '{by}'")
    today = dt.datetime.now(dt.timezone.utc).astimezone(_zone(tenant)).date()
    try:
        first = dt.date.fromisoformat(from_) if from_ else today - dt.timedelta(days=30)
        last = dt.date.fromisoformat(to) if to else today
    except ValueError as exc:
        raise UserError(f"--from/--to take dates like 2026-12-08 ({exc})") from None
    if last < first:
        raise UserError(f"--to {last} is before --from {first}")
    days = intervals(local_midnight_ms(first, tenant.timezone),
                     local_midnight_ms(last + dt.timedelta(days=1), tenant.timezone), "day",
                     tenant.timezone)
    url = db_url or _default_db_url()
    with _database_errors(url):
        engine = _engine(url, write=False)
        try:
            with engine.connect() as conn:
                rows = outbound_kpis(conn, tenant, days, by=groups,
                                     campaigns=[campaign_id] if campaign_id else None)
        finally:
            engine.dispose()
    if as_json:
        echo_json([r.to_dict() for r in rows])
        return
    if not rows:
        click.echo("no attempts in that range")
        return

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v * 100:.1f}%"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    head = " ".join(f"{g:<14}" for g in groups)
    click.echo(f"{head} {'attempts':>8} {'connects':>8} {'conn%':>7} {'success':>7} "
               f"{'att/ct':>6} {'done':>5} {'talk s':>7} {'handle s':>8} {'aband%':>7}")
    for r in rows:
        keys = " ".join(f"{str(getattr(r, g) or '-'):<14}" for g in groups)
        click.echo(f"{keys} {r.attempts:>8} {r.connects:>8} {pct(r.connect_rate):>7} "
                   f"{r.successes:>7} {num(r.attempts_per_contact):>6} "
                   f"{r.contacts_completed:>5} {num(r.avg_talk_s):>7} {num(r.avg_handle_s):>8} "
                   f"{pct(r.abandon_rate):>7}")


def _zone(tenant: Any):
    import zoneinfo

    return zoneinfo.ZoneInfo(tenant.timezone)


# ---- do-not-call ---------------------------------------------------------------------------
@hotline.group("dnc")
def dnc_group() -> None:
    """The do-not-call list of a tenant: numbers no campaign ever dials."""


def _dnc_add(tenant: Any, numbers: list[str], reason: str, source: str, db_url: str | None,
             filename: str = "") -> int:
    from daemon.storage.campaigns import dnc_add

    url = db_url or _default_db_url()
    with _database_errors(url):
        engine = _engine(url, write=True)
        try:
            added, errors = dnc_add(engine, tenant, numbers, reason=reason, source=source,
                                    filename=filename)
        finally:
            engine.dispose()
    if errors:
        for line in errors:
            click.echo(line, err=True)
        raise UserError(f"{len(errors)} bad number(s), nothing added")
    return added


@dnc_group.command("add")
@click.argument("numbers", nargs=-1, required=True)
@click.option("--tenant", "tenant_id", default=None, help="The tenant (id or domain).")
@click.option("--reason", default="", help="Why (kept with the numbers).")
@click.option("--db", "db_url", default=None, help=DB_HELP)
@click.option("--config", "config_dir", default=None, help=CONFIG_HELP)
def dnc_add_cmd(numbers: tuple[str, ...], tenant_id: str | None, reason: str,
                db_url: str | None, config_dir: str | None) -> None:
    """Add numbers (written any way the tenant's region writes them)."""
    _, center = _load_center_or_fail(config_dir)
    tenant = _tenant(center, tenant_id)
    added = _dnc_add(tenant, list(numbers), reason, "cli", db_url)
    click.echo(f"{added} number(s) added to the do-not-call list of {tenant.id} "
               f"({len(numbers) - added} already on it)")


@dnc_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--tenant", "tenant_id", default=None, help="The tenant (id or domain).")
@click.option("--reason", default="", help="Why (kept with the numbers).")
@click.option("--db", "db_url", default=None, help=DB_HELP)
@click.option("--config", "config_dir", default=None, help=CONFIG_HELP)
def dnc_import_cmd(file: str, tenant_id: str | None, reason: str, db_url: str | None,
                   config_dir: str | None) -> None:
    """Add the numbers of a file: one per line, or a CSV whose first column is the number
    (a header line 'number' is skipped)."""
    import csv
    import io

    _, center = _load_center_or_fail(config_dir)
    tenant = _tenant(center, tenant_id)
    rows = [r for r in csv.reader(io.StringIO(_read_text(file).lstrip("\ufeff")))]
    numbers = [r[0] if r else "" for r in rows]
    if numbers and numbers[0].strip().lower() == "number":
        numbers = numbers[1:]
        offset = 1
    else:
        offset = 0
    # blank lines are allowed; their line numbers still count for error messages
    kept = [(i + 1 + offset, n) for i, n in enumerate(numbers) if n.strip()]
    from daemon.definition.phone import BadNumber, normalise, tenant_region

    errors = []
    for line, n in kept:
        try:
            normalise(n, tenant_region(tenant))
        except BadNumber as exc:
            errors.append(f"{file}:{line}: {exc}")
    if errors:
        for e in errors:
            click.echo(e, err=True)
        raise UserError(f"{file}: {len(errors)} bad number(s), nothing added")
    added = _dnc_add(tenant, [n for _, n in kept], reason, "import", db_url)
    click.echo(f"{file}: {added} number(s) added to the do-not-call list of {tenant.id} "
               f"({len(kept) - added} already on it)")


@dnc_group.command("list")
@click.option("--tenant", "tenant_id", default=None, help="The tenant (id or domain).")
@click.option("--db", "db_url", default=None, help=DB_HELP)
@click.option("--config", "config_dir", default=None, help=CONFIG_HELP)
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def dnc_list_cmd(tenant_id: str | None, db_url: str | None, config_dir: str | None,
                 as_json: bool) -> None:
    """The tenant's do-not-call numbers (E.164), with why and since when."""
    from daemon.storage.campaigns import dnc_list

    _, center = _load_center_or_fail(config_dir)
    tenant = _tenant(center, tenant_id)
    url = db_url or _default_db_url()
    with _database_errors(url):
        engine = _engine(url, write=False)
        try:
            rows = dnc_list(engine, tenant.id)
        finally:
            engine.dispose()
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        since = dt.datetime.fromtimestamp(r["added_ms"] / 1000, _zone(tenant))
        click.echo(f"{r['number']:<18} {r['source']:<7} {since:%Y-%m-%d %H:%M}  {r['reason']}")
    click.echo(f"{len(rows)} number(s)")
