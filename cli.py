"""Hotline's command line (``hotline``, a click group; ``main`` is the console entry).

It parses arguments, calls into ``daemon``, prints.

Exit codes: 0 ok, 1 user error (bad config, bad arguments, nothing found),
2 internal error.
"""
from __future__ import annotations

import json
import logging
import sys

import click

from daemon import __version__


class UserError(click.ClickException):
    """A mistake the user can fix: printed as one sentence, exit code 1."""

    exit_code = 1


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hotline")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def hotline(verbose: int) -> None:
    """Hotline: call-center control for FreeSWITCH.

    Describe the center in YAML (config/), validate and render it to FreeSWITCH
    XML, run the daemon that turns switch events into call statistics, and read
    the reports.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# --- model / render / trace (issue: call centers as YAML) ---------------------------------

def _load_center_or_fail(directory: str | None):
    """Load + validate the YAML; print every error like ``validate`` and exit 1 on any."""
    from daemon.config import ConfigErrors, load_center

    if directory is None:
        from daemon.settings import load_settings

        try:
            directory = load_settings().config_dir
        except ConfigErrors as exc:
            for err in exc.errors:
                click.echo(str(err))
            raise UserError(f"the settings have {len(exc.errors)} error(s)") from None
    try:
        return directory, load_center(directory)
    except ConfigErrors as exc:
        for err in exc.errors:
            click.echo(str(err))
        count = len(exc.errors)
        raise UserError(f"{directory}: {count} error{'s' if count != 1 else ''}") from None


@hotline.command()
@click.argument("directory", required=False, type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Where to write the FreeSWITCH files (mirrors the conf directory).")
def render(directory: str | None, out_dir: str) -> None:
    """Validate the YAML, then write the FreeSWITCH XML that runs it.

    DIRECTORY holds the YAML files (default: the config_dir setting, normally
    config/). Nothing is written when the configuration has errors (they are
    printed like `hotline validate`, exit code 1). OUTDIR mirrors FreeSWITCH's
    conf directory: dialplan/, dialplan/public/, ivr_menus/, directory/,
    autoload_configs/ (callcenter, conference, ivr) and scripts/hotline_data.json.
    The same YAML always gives byte-identical files; docs/RENDER.md shows the
    include lines for a stock freeswitch.xml.

    \b
    Example:
      hotline render config/ --out build/freeswitch
    """
    from pathlib import Path

    from daemon.render import render as render_center

    directory, center = _load_center_or_fail(directory)
    written = render_center(center, out_dir)
    click.echo(f"wrote {len(written)} files to {out_dir}:")
    for path in written:
        click.echo(f"  {Path(path).relative_to(out_dir)}")


@hotline.command()
@click.argument("number")
@click.option("--at", "at", default=None, metavar="'YYYY-MM-DD HH:MM'",
              help="When the call comes in, on the tenant's wall clock (default: now).")
@click.option("--caller", default=None, metavar="NUMBER", help="The caller's number.")
@click.option("--digits", default="", metavar="D1,D2,...",
              help="What the caller enters at each menu prompt, in order (e.g. 1,2).")
@click.option("--tenant", default=None, help="Tenant id, when the number is ambiguous.")
@click.option("--config", "config_dir", default=None, metavar="DIR",
              help="Call-center YAML directory (default: the config_dir setting).")
@click.option("--json", "as_json", is_flag=True, help="Print the steps as JSON (for scripts).")
def trace(number: str, at: str | None, caller: str | None, digits: str, tenant: str | None,
          config_dir: str | None, as_json: bool) -> None:
    """Walk a call through the model and explain every step.

    NUMBER is a number (DID) of a tenant, or an agent extension / conference
    room. The trace shows which rule matched and why (schedule open or closed,
    holiday, caller pattern), which menu and which digit went where (invalid
    digits and silence lead to the menu's on_failure), which queue with which
    agents on which tier and whether they are on shift then, and where the call
    ends. Use it to check a change before reloading the switch.

    \b
    Examples:
      hotline trace 96116 --at "2026-11-23 09:05" --caller 13800000000 --digits 1
      hotline trace 96116 --at "2026-10-01 10:00" --json
    """
    from daemon.trace import TraceError, trace_call

    _, center = _load_center_or_fail(config_dir)
    try:
        result = trace_call(center, number, at, caller=caller,
                            digits=[d for d in digits.split(",") if d.strip()], tenant=tenant)
    except TraceError as exc:
        raise UserError(str(exc)) from None
    if as_json:
        echo_json(result.to_dict())
    else:
        for line in result.lines():
            click.echo(line)


@hotline.command()
@click.argument("directory", required=False, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (for scripts).")
def validate(directory: str | None, as_json: bool) -> None:
    """Check a call-center configuration without touching the switch.

    DIRECTORY holds the YAML files (default: the config_dir setting, normally
    config/). Every problem is reported at once as FILE:LINE:COLUMN: sentence,
    with the nearest valid name for a misspelled key or reference. Exit code 0
    when the configuration is valid, 1 when it has errors.

    \b
    Examples:
      hotline validate
      hotline validate /etc/hotline/config --json
    """
    from daemon.config import ConfigErrors, validate as validate_dir

    if directory is None:
        from daemon.settings import load_settings

        try:
            directory = load_settings().config_dir
        except ConfigErrors as exc:
            result = {"ok": False, "path": None, "summary": None,
                      "errors": [{"file": e.file, "line": e.line, "column": e.column,
                                  "message": e.message, "text": str(e)} for e in exc.errors]}
            if as_json:
                echo_json(result)
            else:
                for err in exc.errors:
                    click.echo(str(err))
            raise UserError(f"the settings have {len(exc.errors)} error(s)") from None
    outcome = validate_dir(directory)
    if as_json:
        echo_json(outcome.to_dict())
        if not outcome.ok:
            raise click.exceptions.Exit(1)
        return
    if outcome.ok:
        assert outcome.summary is not None
        click.echo(f"OK: {outcome.summary.sentence()} in {directory}")
        return
    for err in outcome.errors:
        click.echo(str(err))
    count = len(outcome.errors)
    raise UserError(f"{directory}: {count} error{'s' if count != 1 else ''}")


# --- daemon / replay / calls (issue: the daemon) ------------------------------------------

@hotline.command("daemon")
@click.option("--settings", "settings_path", type=click.Path(dir_okay=False),
              help="Settings file (YAML, top-level 'settings:'); default $HOTLINE_SETTINGS.")
def daemon_cmd(settings_path: str | None) -> None:
    """Run the daemon: ESL events from every switch -> journal -> segments -> database.

    Runs until SIGTERM or SIGINT, then writes what it holds and exits 0.
    Logs are key=value lines on stderr; passwords never appear in them.
    """
    from gevent import monkey

    monkey.patch_all()  # first thing on this path only: cooperative sockets, threads, DB waits
    from pathlib import Path

    from daemon.config import ConfigErrors, load_center
    from daemon.service import run_daemon
    from daemon.settings import load_settings

    try:
        settings = load_settings(settings_path)
        center = load_center(settings.config_dir) if Path(settings.config_dir).is_dir() else None
    except ConfigErrors as exc:
        raise UserError(f"the settings or configuration are not valid: {exc}") from None
    run_daemon(settings, center, log_level=logging.getLogger().level)


def _default_db_url() -> str:
    """The database from the settings (``load_settings``), else the embedded default."""
    try:
        from daemon.config import ConfigErrors
        from daemon.settings import load_settings
    except ImportError:
        return "sqlite:///hotline.db"
    try:
        settings = load_settings()
    except ConfigErrors as exc:
        raise UserError(f"the settings are not valid (give --db to bypass them): {exc}") from None
    return settings.database_url or "sqlite:///hotline.db"


import contextlib  # noqa: E402 - kept inside this section (cli.py sections are owned per issue)


@contextlib.contextmanager
def _database_errors(url: str):
    """A database that cannot be reached or named is the user's to fix: one sentence, exit 1."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    from daemon.store import StoreUnavailable

    try:
        yield
    except (OperationalError, StoreUnavailable) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise UserError(f"cannot use the database {_safe_url(url)}: {reason}") from None
    except ArgumentError as exc:
        raise UserError(f"not a database URL: {_safe_url(url)} ({exc})") from None


def _safe_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: show it without anything after a colon-at pair
        return url.split("@")[-1]


def _load_center_for_replay(config_dir: str | None):
    """The call-center model that gives wrap-up times; the example config/ by default."""
    from pathlib import Path

    explicit = config_dir is not None
    path = Path(config_dir) if explicit else Path(__file__).resolve().parent / "config"
    try:
        from daemon.config import ConfigErrors, load_center
    except ImportError:
        if explicit:
            raise UserError("this installation cannot read call-center configurations") from None
        return None
    if not explicit and not path.is_dir():
        return None
    try:
        return load_center(path)
    except ConfigErrors as exc:
        if explicit:
            raise UserError(f"the configuration in {path} is not valid: {exc}") from None
        logging.getLogger("hotline").warning("example config %s not usable (%s); replaying "
                                             "without wrap-up times", path, exc)
        return None
    except Exception:
        if explicit:
            raise
        # the example config is a convenience: a replay must not depend on it
        logging.getLogger("hotline").warning("example config %s could not be loaded; replaying "
                                             "without wrap-up times", path, exc_info=True)
        return None


@hotline.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--db", "db_url", help="Database URL (default: from the settings, else sqlite:///hotline.db).")
@click.option("--config", "config_dir", type=click.Path(file_okay=False),
              help="Call-center config directory (default: the example config/).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def replay(files: tuple[str, ...], db_url: str | None, config_dir: str | None, quiet: bool) -> None:
    """Rebuild calls and segments from journals or captures (plain or .gz).

    Running it twice changes nothing. Files of one daemon journal
    (<node>-<UTC>Z-<seq>.esl[.gz]) are replayed as one stream; any other file
    is a stream of its own.
    """
    from pathlib import Path

    from daemon.replay import replay as run_replay

    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise UserError(f"no such file: {', '.join(missing)}")
    center = _load_center_for_replay(config_dir)
    url = db_url or _default_db_url()
    total = sum(Path(f).stat().st_size for f in files)
    with _database_errors(url):
        if quiet:
            stats = run_replay(files, url, center)
        else:
            with click.progressbar(length=total, label="replaying", file=sys.stderr,
                                   show_pos=False) as bar:
                stats = run_replay(files, url, center, progress=bar.update)
    click.echo(f"{stats.files} file(s), {stats.streams} stream(s), {stats.events} events: "
               f"{stats.calls} calls, {stats.segments} segments, {stats.intervals} agent intervals"
               f" -> {url}")
    if stats.garbage or stats.errors:
        click.echo(f"warning: {stats.garbage} garbage stretch(es) skipped, {stats.errors} event(s) "
                   "the engine failed on (see the log)", err=True)


@hotline.command()
@click.option("--from", "from_", metavar="DATE", help="Calls that started at or after (ISO date/time, UTC).")
@click.option("--to", metavar="DATE", help="Calls that started before (a bare date includes that day).")
@click.option("--call", "call_id", metavar="UUID", help="Just this call.")
@click.option("--tenant", help="Just this tenant (domain).")
@click.option("--json", "as_json", is_flag=True, help="The call log as JSON (docs/CALLS_JSON.md).")
@click.option("--db", "db_url", help="Database URL (default: from the settings, else sqlite:///hotline.db).")
def calls(from_: str | None, to: str | None, call_id: str | None, tenant: str | None,
          as_json: bool, db_url: str | None) -> None:
    """The call log: each call with its segments."""
    from daemon.calllog import call_log, format_table, parse_when

    try:
        start = parse_when(from_) if from_ else None
        end = parse_when(to, end=True) if to else None
    except ValueError as exc:
        raise UserError(f"bad --from/--to: {exc}") from None
    if start is not None and end is not None and end <= start:
        raise UserError("--to must be after --from")
    url = db_url or _default_db_url()
    from daemon.store import migrate

    with _database_errors(url):
        migrate(url)  # an empty or older database is a valid, empty call log
        log = call_log(url, start_ms=start, end_ms=end, call_id=call_id, tenant=tenant)
    if call_id and not log:
        raise UserError(f"no call {call_id} in {url}")
    if as_json:
        echo_json(log)
    else:
        click.echo(format_table(log))


# --- reports / KPIs / staffing / QA (issue: statistics) -----------------------------------

def _report_env(db_url: str | None, config_dir: str | None):
    """(database URL, model or None) for report/qa/disposition; config errors are user errors."""
    from daemon.config import ConfigErrors
    from daemon.report import load_environment

    try:
        return load_environment(db_url, config_dir)
    except ConfigErrors as exc:
        for err in exc.errors:
            click.echo(str(err), err=True)
        raise UserError(f"the configuration has {len(exc.errors)} error(s)") from None


def _write_out(text: str, out: str | None) -> None:
    if out is None:
        click.echo(text, nl=False)
        return
    from pathlib import Path

    Path(out).write_text(text, encoding="utf-8")
    click.echo(f"wrote {out}", err=True)


def _report_options(fn):
    for opt in reversed([
        click.option("--from", "from_", metavar="WHEN",
                     help="Start (tenant time zone): YYYY-MM-DD[THH:MM], today, yesterday. "
                          "Default: the first call in the database."),
        click.option("--to", metavar="WHEN",
                     help="End: a date is inclusive, a date-time exclusive. "
                          "Default: the last call."),
        click.option("--tenant", default=None, help="Tenant id (default: every tenant)."),
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
@click.option("--out", default=None, metavar="FILE", help="Write to FILE instead of stdout.")
@click.pass_context
def report_cmd(ctx: click.Context, from_: str | None, to: str | None, tenant: str | None,
           queue: str | None, agent: str | None, db_url: str | None, config_dir: str | None,
           interval: str, by: str, kpis: str | None, fmt: str, out: str | None) -> None:
    """KPI report per interval and tenant/queue/team/agent (times in the tenant's zone).

    Sub-command `report calls` lists the calls behind one KPI.
    """
    if ctx.invoked_subcommand is not None:
        return
    from daemon.report import (ReportError, ReportRequest, build_report, make_engine, render,
                               threshold_notes)

    db, center = _report_env(db_url, config_dir)
    ids = tuple(k.strip() for k in kpis.split(",") if k.strip()) if kpis else ()
    req = ReportRequest(from_, to, interval, by, tenant, queue, agent, ids)
    engine = make_engine(db)
    notes: list[str] = []
    try:
        with engine.connect() as conn:
            if fmt == "html":
                from daemon.report_html import render_html

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
def report_calls(from_: str | None, to: str | None, tenant: str | None, queue: str | None,
                 agent: str | None, db_url: str | None, config_dir: str | None, kpi_id: str,
                 fmt: str) -> None:
    """List the calls in a KPI's numerator and denominator (drill-down)."""
    from daemon.report import ReportError, ReportRequest, drill_calls, drill_text, make_engine

    db, center = _report_env(db_url, config_dir)
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            rows = drill_calls(conn, center, ReportRequest(from_, to, "day", "tenant", tenant,
                                                           queue, agent), kpi_id)
    except ReportError as exc:
        raise UserError(str(exc)) from None
    finally:
        engine.dispose()
    if fmt == "json":
        echo_json(rows)
    else:
        click.echo(drill_text(rows, kpi_id, fmt), nl=False)


@hotline.group("qa")
def qa_group() -> None:
    """Quality-assurance scores of calls (they feed the qa_score KPI)."""


@qa_group.command("score")
@click.argument("call_id")
@click.argument("score", type=int)
@click.option("--agent", required=True, help="The agent scored (id, or id@domain).")
@click.option("--by", "scored_by", required=True, metavar="NAME", help="Who scored the call.")
@click.option("--note", default=None, help="A remark kept with the score.")
@click.option("--db", "db_url", default=None, metavar="URL", help="Statistics database.")
@click.option("--config", "config_dir", default=None, metavar="DIR", help="Call-center YAML.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored score as JSON.")
def qa_score_cmd(call_id: str, score: int, agent: str, scored_by: str, note: str | None,
             db_url: str | None, config_dir: str | None, as_json: bool) -> None:
    """Give CALL_ID a QA score of SCORE (0-100) for AGENT."""
    from dataclasses import asdict

    from daemon.qa import InputError, add_qa_score
    from daemon.report import make_engine

    db, center = _report_env(db_url, config_dir)
    engine = make_engine(db)
    try:
        with engine.begin() as conn:
            saved = add_qa_score(conn, center, call_id, score, agent, scored_by, note)
    except InputError as exc:
        raise UserError(str(exc)) from None
    finally:
        engine.dispose()
    if as_json:
        echo_json(asdict(saved))
        return
    warn = "" if saved.call_known else " (call not in the database yet)"
    click.echo(f"QA score {saved.score} for {saved.agent} on call {call_id} by "
               f"{saved.scored_by}{warn}")


@hotline.command("disposition")
@click.argument("call_id")
@click.argument("code")
@click.option("--agent", default=None, help="The agent (default: the agent who talked last).")
@click.option("--db", "db_url", default=None, metavar="URL", help="Statistics database.")
@click.option("--config", "config_dir", default=None, metavar="DIR", help="Call-center YAML.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored disposition as JSON.")
def disposition_cmd(call_id: str, code: str, agent: str | None, db_url: str | None,
                config_dir: str | None, as_json: bool) -> None:
    """Set the disposition CODE of CALL_ID (checked against the tenant's codes)."""
    from dataclasses import asdict

    from daemon.qa import InputError, set_disposition
    from daemon.report import make_engine

    db, center = _report_env(db_url, config_dir)
    engine = make_engine(db)
    try:
        with engine.begin() as conn:
            saved = set_disposition(conn, center, call_id, code, agent)
    except InputError as exc:
        raise UserError(str(exc)) from None
    finally:
        engine.dispose()
    if as_json:
        echo_json(asdict(saved))
        return
    what = f" ({saved.name}{', resolved' if saved.resolved else ''})" if saved.name else ""
    warn = "" if saved.call_known else " (call not in the database yet; code not checked)"
    click.echo(f"call {call_id}: disposition {saved.code}{what}{warn}")


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

    from daemon.config import ConfigErrors, load_center
    from daemon.settings import load_settings
    from daemon.staffing import StaffingError, build_plan, format_table

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
    try:
        plan = build_plan(
            center, queue, date, tenant_id=tenant, target=target, aht_s=aht,
            shrinkage=shrinkage, max_occupancy=max_occupancy, interval_min=int(interval_min),
            weeks=weeks, volume=volume, db_url=db_url or settings.database_url,
        )
    except StaffingError as exc:
        raise UserError(str(exc)) from exc
    data = plan.to_dict()
    if as_json:
        echo_json(data)
    else:
        click.echo(format_table(data))


# --- desk phones / reload / control (issue: desk-phone agents and admin control) ----------

def _control_settings():
    from daemon.config import ConfigErrors
    from daemon.settings import load_settings

    try:
        return load_settings()
    except ConfigErrors as exc:
        for err in exc.errors:
            click.echo(str(err))
        raise UserError(f"the settings have {len(exc.errors)} error(s)") from None


@contextlib.contextmanager
def _switch(settings, node: str | None):
    """An ESL connection to the chosen node (default: the first one)."""
    from daemon.esl import EslConnection, EslError

    nodes = [n for n in settings.esl_nodes if node is None or n.name == node]
    if not nodes:
        raise UserError(f"no ESL node named {node!r}")
    n = nodes[0]
    try:
        conn = EslConnection(n.host, n.port, n.password, 5.0).connect()
    except EslError as exc:
        raise UserError(f"cannot reach the switch {n.name} ({n.host}:{n.port}): {exc}") from None
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def _control_errors():
    from daemon.control import ControlError
    from daemon.esl import EslError

    try:
        yield
    except (ControlError, EslError) as exc:
        raise UserError(str(exc)) from None


@hotline.command("reload")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--node", help="Only this ESL node (a name from the settings).")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def reload_cmd(directory: str | None, dry_run: bool, node: str | None, as_json: bool) -> None:
    """Validate, render and apply the YAML to the running switches without dropping calls.

    Changed files go to the FreeSWITCH conf dir (the previous ones are kept in
    .hotline-previous/), then reloadxml and only the callcenter_config commands needed;
    a failure rolls everything back. See docs/ADMIN.md.
    """
    from daemon.reload import ReloadError, format_report, reload_center

    settings = _control_settings()
    _, center = _load_center_or_fail(directory or settings.config_dir)
    try:
        report = reload_center(center, settings, dry_run=dry_run, node=node)
    except ReloadError as exc:
        raise UserError(str(exc)) from None
    data = report.to_dict()
    if as_json:
        echo_json(data)
    else:
        click.echo(format_report(data))
    if not report.ok:
        raise UserError(f"reload failed and was rolled back: {report.error}")


@hotline.group("agent")
def agent_group() -> None:
    """Agent status over ESL: login, logout, break, ready, status."""


def _agent_action(action: str, agent: str, reason: str | None, node: str | None,
                  as_json: bool) -> None:
    from daemon.control import agent_action

    settings = _control_settings()
    _, center = _load_center_or_fail(settings.config_dir)
    with _control_errors(), _switch(settings, node) as conn:
        data = agent_action(conn, center, agent, action, reason)
    if as_json:
        echo_json(data)
    else:
        extra = f" ({data['reason']})" if data["reason"] else ""
        click.echo(f"{data['agent']}: {data['previous_status']} -> {data['status']}{extra}")


_node_option = click.option("--node", help="ESL node (default: the first in the settings).")
_json_option = click.option("--json", "as_json", is_flag=True, help="JSON output.")


@agent_group.command("login")
@click.argument("agent")
@_node_option
@_json_option
def agent_login(agent: str, node: str | None, as_json: bool) -> None:
    """Log AGENT in (Available, Waiting)."""
    _agent_action("login", agent, None, node, as_json)


@agent_group.command("logout")
@click.argument("agent")
@_node_option
@_json_option
def agent_logout(agent: str, node: str | None, as_json: bool) -> None:
    """Log AGENT out (a call in progress goes on)."""
    _agent_action("logout", agent, None, node, as_json)


@agent_group.command("break")
@click.argument("agent")
@click.argument("reason", required=False)
@_node_option
@_json_option
def agent_break(agent: str, reason: str | None, node: str | None, as_json: bool) -> None:
    """Put AGENT on break, with a REASON (name or digit of the tenant's break reasons)."""
    _agent_action("break", agent, reason, node, as_json)


@agent_group.command("ready")
@click.argument("agent")
@_node_option
@_json_option
def agent_ready(agent: str, node: str | None, as_json: bool) -> None:
    """Back from break: AGENT Available and Waiting."""
    _agent_action("ready", agent, None, node, as_json)


@agent_group.command("status")
@click.argument("agent", required=False)
@_node_option
@_json_option
def agent_status_cmd(agent: str | None, node: str | None, as_json: bool) -> None:
    """Status and state of AGENT (default: every agent of the configuration)."""
    from daemon.control import agent_status

    settings = _control_settings()
    _, center = _load_center_or_fail(settings.config_dir)
    with _control_errors(), _switch(settings, node) as conn:
        rows = agent_status(conn, center, agent)
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        where = "not on the switch" if not r["on_switch"] else f"{r['status']} / {r['state']}"
        click.echo(f"{r['agent']:32} {where:40} {' '.join(r['queues'])}")


@hotline.group("queue")
def queue_group() -> None:
    """Queue status."""


@queue_group.command("status")
@click.argument("queue", required=False)
@click.option("--switch", "from_switch", is_flag=True,
              help="Ask the switch even when Redis or the daemon could answer.")
@_node_option
@_json_option
def queue_status_cmd(queue: str | None, from_switch: bool, node: str | None,
                     as_json: bool) -> None:
    """Waiting callers (wait times, longest wait) and agents by state, per queue.

    Reads the daemon's live state from Redis (redis_url), else from the daemon's HTTP
    API (http_listen), else asks the switch; the output says which.
    """
    from daemon.control import queue_status, read_live_state

    settings = _control_settings()
    _, center = _load_center_or_fail(settings.config_dir)
    with _control_errors():
        live, skipped = (None, []) if from_switch else read_live_state(settings.redis_url,
                                                                        settings.http_listen)
        if live is not None:
            data = queue_status(center, queue, live=live)
        else:
            with _switch(settings, node) as conn:
                data = queue_status(center, queue, conn=conn)
    if skipped:
        data["skipped"] = skipped
    if as_json:
        echo_json(data)
        return
    source = {"redis": "Redis (the daemon's live state)", "switch": "the switch",
              "daemon": f"the daemon's HTTP API ({data.get('source_url', '')})"}
    click.echo(f"source: {source.get(data['source'], data['source'])}"
               + (f" ({'; '.join(skipped)})" if skipped else ""))
    for name, q in data["queues"].items():
        longest = "-" if q["longest_wait_s"] is None else f"{q['longest_wait_s']} s"
        click.echo(f"{name}: {q['count']} waiting, longest {longest}")
        for w in q["waiting"]:
            click.echo(f"  {w['caller'] or '?':16} {w['wait_s']:>6} s  {w['call_id']}")
        for state, agents in q["agents"].items():
            click.echo(f"  {state}: {', '.join(agents)}")


@hotline.command("supervise")
@click.argument("mode", type=click.Choice(["listen", "whisper", "barge"]))
@click.argument("agent")
@click.option("--from", "extension", required=True, help="The supervisor's extension.")
@_node_option
@_json_option
def supervise_cmd(mode: str, agent: str, extension: str, node: str | None, as_json: bool) -> None:
    """Ring the supervisor's phone and join AGENT's current call (listen|whisper|barge)."""
    from daemon.control import supervise

    settings = _control_settings()
    _, center = _load_center_or_fail(settings.config_dir)
    with _control_errors(), _switch(settings, node) as conn:
        data = supervise(conn, center, mode, agent, extension)
    if as_json:
        echo_json(data)
    else:
        click.echo(f"{extension} joined {data['agent']} ({mode}), call leg {data['agent_leg']}")


@hotline.command("recordings")
@click.option("--call", "call_id", help="Only this call.")
@click.option("--db", "db_url", help="Database URL (default: from the settings).")
@_json_option
def recordings_cmd(call_id: str | None, db_url: str | None, as_json: bool) -> None:
    """Recorded talk segments and their file paths."""
    from daemon.control import recordings

    url = db_url or _default_db_url()
    center = None
    try:
        from daemon.config import ConfigErrors, load_center

        center = load_center(_control_settings().config_dir)
    except (ConfigErrors, OSError, UserError):
        center = None  # the paths stored in the database are shown all the same
    with _database_errors(url):
        rows = recordings(url, call_id, center)
    if call_id and not rows:
        raise UserError(f"no talk segment of call {call_id}")
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        mark = " (expected path)" if r["derived"] else ""
        click.echo(f"{r['call_id']}  {r['agent'] or '-':24} {r['recording'] or '(none)'}{mark}")


def main() -> None:
    """Console entry point with the exit-code contract: internal errors exit 2."""
    try:
        hotline.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        # usage mistakes are user errors too (click would say 2, which we keep for internal ones)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except Exception as exc:  # an internal error: one line, no traceback unless -vv
        logging.getLogger("hotline").debug("internal error", exc_info=True)
        click.echo(f"hotline: internal error: {exc.__class__.__name__}: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
