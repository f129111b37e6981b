"""Commands on the statistics: KPI reports, the calls behind a KPI, staffing."""
from __future__ import annotations

from pathlib import Path

import click

from daemon.cli.base import (
    UserError,
    _database_errors,
    _existing_database,
    _report_env,
    echo_json,
    hotline,
)


def _write_out(text: str, out: str | None) -> None:
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:  # a missing folder, a file in the way, no permission
        raise UserError(f"cannot write --out {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {out}", err=True)


def _fmt(fmt: str, as_json: bool) -> str:
    if as_json and fmt not in ("table", "json"):
        raise UserError(f"--json and --format {fmt} contradict each other: give one")
    return "json" if as_json else fmt


def _report_options(fn):
    for opt in reversed([
        click.option("--from", "from_", metavar="WHEN",
                     help="Start, on the tenant's wall clock (UTC with --utc): YYYY-MM-DD, "
                          "YYYY-MM-DDTHH:MM[Z|+HH:MM], today, yesterday. "
                          "Default: the first call in the database."),
        click.option("--to", metavar="WHEN",
                     help="End: a date is inclusive, a date-time exclusive. "
                          "Default: the last call."),
        click.option("--utc", is_flag=True,
                     help="Read --from/--to, align the intervals and print times in UTC "
                          "instead of the tenant's zone."),
        click.option("--tenant", default=None,
                     help="Tenant id (or its domain; default: every tenant)."),
        click.option("--queue", default=None, help="Only this queue (id without domain)."),
        click.option("--agent", default=None, help="Only this agent (id without domain)."),
        click.option("--db", "db_url", default=None, metavar="URL",
                     help="Statistics database (default: from the settings)."),
        click.option("--config", "config_dir", default=None, metavar="DIR",
                     help="Call-center YAML directory (default: from the settings)."),
    ]):
        fn = opt(fn)
    return fn


@hotline.group("report", invoke_without_command=True)
@_report_options
@click.option("--interval", default="day", show_default=True,
              type=click.Choice(["15m", "30m", "1h", "day", "week", "month"]))
@click.option("--by", default="tenant", show_default=True,
              type=click.Choice(["tenant", "queue", "team", "agent", "number", "ivr",
                                 "disposition"]),
              help="Rows per tenant, queue, team, agent, dialed number (DID), IVR choices "
                   "or disposition code of the answered calls.")
@click.option("--kpi", "kpis", default=None, metavar="ID,...",
              help="KPI ids to show (default: all; see docs/KPIS.md).")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "csv", "json", "html"]))
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--out", default=None, metavar="FILE", help="Write to FILE instead of stdout.")
@click.pass_context
def report_cmd(ctx: click.Context, from_: str | None, to: str | None, utc: bool,
               tenant: str | None, queue: str | None, agent: str | None, db_url: str | None,
               config_dir: str | None, interval: str, by: str, kpis: str | None, fmt: str,
               as_json: bool, out: str | None) -> None:
    """KPI report per interval and tenant/queue/team/agent.

    Times are in the tenant's zone (intervals aligned to its wall clock), or in UTC
    with --utc. The JSON is the rows of the table (interval_start/interval_end with
    their UTC offset, tenant id, group, KPIs); the thresholds used go to stderr.
    Sub-command `report calls` lists the calls behind one KPI.
    """
    if ctx.invoked_subcommand is not None:
        return
    from daemon.stats.report import (
        ReportError,
        ReportRequest,
        build_report,
        make_engine,
        render,
        threshold_notes,
    )

    fmt = _fmt(fmt, as_json)
    db, center = _report_env(db_url, config_dir)
    ids = tuple(k.strip() for k in kpis.split(",") if k.strip()) if kpis else ()
    req = ReportRequest(from_, to, interval, by, tenant, queue, agent, ids, utc=utc)
    notes: list[str] = []
    with _existing_database(db):
        engine = make_engine(db)
        try:
            with engine.connect() as conn:
                if fmt == "html":
                    from daemon.stats.report_html import render_html

                    text = render_html(conn, center, req)
                else:
                    report = build_report(conn, center, req)
                    text = render(report, fmt)
                    if fmt in ("csv", "json"):  # table and html state them in the body
                        notes = threshold_notes(report)
        except ReportError as exc:
            raise UserError(str(exc)) from None
        finally:
            engine.dispose()
    _write_out(text, out)
    for line in notes:  # stderr: the csv/json body stays plain rows
        click.echo(line, err=True)


@report_cmd.command("calls")
@_report_options
@click.option("--kpi", "kpi_id", required=True, metavar="ID", help="The KPI to explain.")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "csv", "json"]))
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def report_calls(from_: str | None, to: str | None, utc: bool, tenant: str | None,
                 queue: str | None, agent: str | None, db_url: str | None,
                 config_dir: str | None, kpi_id: str, fmt: str, as_json: bool) -> None:
    """List the calls in a KPI's numerator and denominator (drill-down).

    `at` is on the tenant's wall clock with its UTC offset (UTC with --utc).
    """
    from daemon.stats.report import ReportError, ReportRequest, drill_calls, drill_text, make_engine

    fmt = _fmt(fmt, as_json)
    db, center = _report_env(db_url, config_dir)
    with _existing_database(db):
        engine = make_engine(db)
        try:
            with engine.connect() as conn:
                rows = drill_calls(conn, center, ReportRequest(
                    from_, to, "day", "tenant", tenant, queue, agent, utc=utc), kpi_id)
        except ReportError as exc:
            raise UserError(str(exc)) from None
        finally:
            engine.dispose()
    if fmt == "json":
        echo_json(rows)
    else:
        click.echo(drill_text(rows, kpi_id, fmt), nl=False)


@hotline.command()
@click.option("--queue", "queue", required=True, help="Queue id (billing) or billing@domain.")
@click.option("--date", "day", required=True, metavar="YYYY-MM-DD", help="The day to plan.")
@click.option("--target", default=None, metavar="PCT/SECONDS",
              help="Service-level target, e.g. 80/20 (default: the queue's YAML).")
@click.option("--aht", type=float, default=None, metavar="SECONDS",
              help="Average handle time (default: mean talk+hold+wrap-up from history).")
@click.option("--shrinkage", default=None, metavar="PCT",
              help="Share of paid time off the phones, e.g. 30%.")
@click.option("--max-occupancy", default=None, metavar="PCT",
              help="Cap on agent occupancy, e.g. 85%.")
@click.option("--interval", "interval_min", type=click.Choice(["15", "30"]), default="30",
              help="Interval length in minutes.")
@click.option("--weeks", type=int, default=4, show_default=True,
              help="Weeks of history (same weekday) the forecast averages.")
@click.option("--volume", type=click.Path(dir_okay=False), default=None,
              help="CSV 'interval,calls' to use instead of the history forecast.")
@click.option("--tenant", default=None, help="Tenant id, when queue ids repeat across tenants.")
@click.option("--config", "config_dir", default=None, metavar="DIR",
              help="Call-center YAML directory.")
@click.option("--db", "db_url", default=None, metavar="URL", help="Statistics database URL.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def staffing(queue: str, day: str, target: str | None, aht: float | None, shrinkage: str | None,
             max_occupancy: str | None, interval_min: str, weeks: int, volume: str | None,
             tenant: str | None, config_dir: str | None, db_url: str | None, as_json: bool) -> None:
    """Agents needed per interval (Erlang C) for a queue and day, against the YAML schedule."""
    import datetime as dt
    import os

    from daemon.definition.config import ConfigErrors, load_center
    from daemon.definition.settings import load_settings
    from daemon.stats.staffing import StaffingError, build_plan, format_table

    try:
        date = dt.date.fromisoformat(day)
    except ValueError:
        raise UserError(f"--date must be a date like 2026-11-23, not {day!r}") from None
    env = dict(os.environ)
    if config_dir:  # the settings: block of that directory applies too
        env["HOTLINE_CONFIG_DIR"] = config_dir
    try:
        settings = load_settings(env=env)
        center = load_center(settings.config_dir)
    except ConfigErrors as exc:
        raise UserError(f"the configuration is not valid:\n{exc}") from exc
    url = db_url or settings.database_url
    try:
        with _database_errors(url):  # (only read when there is no --volume/--aht)
            plan = build_plan(
                center, queue, date, tenant_id=tenant, target=target, aht_s=aht,
                shrinkage=shrinkage, max_occupancy=max_occupancy,
                interval_min=int(interval_min), weeks=weeks, volume=volume, db_url=url,
            )
    except StaffingError as exc:
        raise UserError(str(exc)) from exc
    data = plan.to_dict()
    if as_json:
        echo_json(data)
    else:
        click.echo(format_table(data))
