"""Commands on the stored calls: the daemon, replay, the call log, QA scores and dispositions."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from daemon.bundle import bundled
from daemon.cli.base import (
    UserError,
    _database_errors,
    _default_db_url,
    _existing_database,
    _report_env,
    _safe_url,
    echo_json,
    hotline,
)


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

    from daemon.definition.config import ConfigErrors, load_center
    from daemon.definition.settings import load_settings
    from daemon.service import run_daemon

    try:
        settings = load_settings(settings_path)
        center = load_center(settings.config_dir) if Path(settings.config_dir).is_dir() else None
    except ConfigErrors as exc:
        raise UserError(f"the settings or configuration are not valid: {exc}") from None
    run_daemon(settings, center, log_level=logging.getLogger().level)


def _load_center_for_replay(config_dir: str | None):
    """The call-center model that gives wrap-up times; the example config/ by default."""

    explicit = config_dir is not None
    path = Path(config_dir) if explicit else bundled("config")
    try:
        from daemon.definition.config import ConfigErrors, load_center
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

    A file that is not ESL is refused (exit code 1) before anything is written.
    The database is created or upgraded when needed. Running it twice changes nothing. Files of one daemon journal
    (<node>-<UTC>Z-<seq>.esl[.gz]) are replayed as one stream; any other file
    is a stream of its own.
    """

    from daemon.storage.replay import NotEslError, check_inputs
    from daemon.storage.replay import replay as run_replay

    try:
        check_inputs(files)
    except (FileNotFoundError, NotEslError) as exc:
        raise UserError(str(exc)) from None
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
    if stats.stale:
        click.echo(f"{stats.stale} segment(s) of replayed calls that the replay did not produce "
                   "removed (left by an older daemon)")
    if stats.garbage or stats.errors:
        click.echo(f"warning: {stats.garbage} garbage stretch(es) skipped, {stats.errors} event(s) "
                   "the engine failed on (see the log)", err=True)


@hotline.command()
@click.option("--from", "from_", metavar="WHEN",
              help="Calls that started at or after WHEN: YYYY-MM-DD, YYYY-MM-DDTHH:MM[Z|+HH:MM], "
                   "today, yesterday; on each call's tenant's wall clock (UTC with --utc).")
@click.option("--to", metavar="WHEN", help="Calls that started before WHEN (a date includes "
                                           "that whole day).")
@click.option("--call", "call_id", metavar="UUID", help="Just this call.")
@click.option("--tenant", help="Just this tenant: its id (demo) or its domain (hotline.test).")
@click.option("--utc", is_flag=True, help="Read --from/--to and print times in UTC instead of "
                                          "each tenant's local time.")
@click.option("--json", "as_json", is_flag=True, help="The call log as JSON (docs/CALLS_JSON.md).")
@click.option("--db", "db_url", help="Database URL (default: from the settings, else sqlite:///hotline.db).")
@click.option("--config", "config_dir", default=None, metavar="DIR",
              help="Call-center YAML (default: from the settings): tenant ids and time zones.")
def calls(from_: str | None, to: str | None, call_id: str | None, tenant: str | None,
          utc: bool, as_json: bool, db_url: str | None, config_dir: str | None) -> None:
    """The call log: each call with its segments.

    Times are on the wall clock of each call's tenant (ISO 8601 with the UTC offset),
    or in UTC with --utc. --from/--to are read the same way: with several tenants, a
    date means each tenant's own day. Tenants are named by their id; the JSON has
    the domain as a field of its own. A tenant the configuration does not know is
    named by its domain, in UTC. The database must exist: this command never creates
    one.
    """
    from daemon.storage.calllog import CallLogError, call_log, format_table

    url, center = _report_env(db_url, config_dir)
    with _existing_database(url):
        try:
            log = call_log(url, start=from_, end=to, call_id=call_id, tenant=tenant,
                           center=center, utc=utc)
        except CallLogError as exc:
            raise UserError(str(exc)) from None
    if call_id and not log:
        raise UserError(f"no call {call_id} in {_safe_url(url)}")
    if as_json:
        echo_json(log)
    else:
        click.echo(format_table(log))


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
    """Give CALL_ID a QA score of SCORE (0-100) for AGENT.

    The call must be in the database (exit code 1 otherwise) and AGENT must have
    talked to its caller.
    """
    from dataclasses import asdict

    from daemon.stats.report import make_engine
    from daemon.storage.qa import InputError, add_qa_score

    db, center = _report_env(db_url, config_dir)
    with _existing_database(db):
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
    click.echo(f"QA score {saved.score} for {saved.agent} on call {call_id} by "
               f"{saved.scored_by}")


@hotline.command("disposition")
@click.argument("call_id")
@click.argument("code")
@click.option("--agent", default=None, help="The agent (default: the agent who talked last).")
@click.option("--db", "db_url", default=None, metavar="URL", help="Statistics database.")
@click.option("--config", "config_dir", default=None, metavar="DIR", help="Call-center YAML.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored disposition as JSON.")
def disposition_cmd(call_id: str, code: str, agent: str | None, db_url: str | None,
                config_dir: str | None, as_json: bool) -> None:
    """Set the disposition CODE of CALL_ID (checked against the tenant's codes).

    The call must be in the database (exit code 1 otherwise); an earlier code of the
    call is replaced.
    """
    from dataclasses import asdict

    from daemon.stats.report import make_engine
    from daemon.storage.qa import InputError, set_disposition

    db, center = _report_env(db_url, config_dir)
    with _existing_database(db):
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
    click.echo(f"call {call_id}: disposition {saved.code}{what}")
