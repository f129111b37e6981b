"""The ``hotline`` click group and what every command module shares: errors, JSON, databases."""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

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


def _default_db_url() -> str:
    """The database from the settings (``load_settings``), else the embedded default."""
    try:
        from daemon.definition.config import ConfigErrors
        from daemon.definition.settings import load_settings
    except ImportError:
        return "sqlite:///hotline.db"
    try:
        settings = load_settings()
    except ConfigErrors as exc:
        raise UserError(f"the settings are not valid (give --db to bypass them): {exc}") from None
    return settings.database_url or "sqlite:///hotline.db"


@contextlib.contextmanager
def _database_errors(url: str):
    """A database that cannot be reached or named is the user's to fix: one sentence, exit 1."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    from daemon.storage.store import StoreUnavailable

    try:
        yield
    except (OperationalError, StoreUnavailable) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise UserError(f"cannot use the database {_safe_url(url)}: {reason}") from None
    except ArgumentError as exc:
        raise UserError(f"not a database URL: {_safe_url(url)} ({exc})") from None
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("psycopg"):
            raise
        raise UserError("PostgreSQL needs its driver, which is not installed: "
                        "pip install 'hotline[postgres]'") from None


@contextlib.contextmanager
def _existing_database(url: str):
    """Around a command that reads (or adds rows to) the statistics: the database must
    already exist and hold Hotline's tables. Reading never creates one (SQLite would
    quietly make an empty file) and never migrates; database errors are user errors."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from daemon.storage.store import make_engine

    with _database_errors(url):
        parsed = make_url(url)
        name = parsed.database
        if parsed.get_backend_name() == "sqlite" and name not in (None, "", ":memory:") \
                and not name.startswith("file:") and not Path(name).is_file():
            raise UserError(f"the database {name} does not exist: give --db, or fill it with "
                            "the daemon or `hotline replay` first")
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                ready = inspect(conn).has_table("calls")
        finally:
            engine.dispose()
        if not ready:
            raise UserError(f"the database {_safe_url(url)} has no Hotline tables yet: fill it "
                            "with the daemon or `hotline replay` first")
        yield


def _safe_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: show it without anything after a colon-at pair
        return url.split("@")[-1]


def _load_center_or_fail(directory: str | None):
    """Load + validate the YAML; print every error like ``validate`` and exit 1 on any."""
    from daemon.definition.config import ConfigErrors, load_center

    if directory is None:
        from daemon.definition.settings import load_settings

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


def _report_env(db_url: str | None, config_dir: str | None):
    """(database URL, model or None) for report/qa/disposition/calls; config errors are user
    errors. Without --config a missing config_dir of the settings means "no model"; a
    --config DIR that does not exist is a mistake."""
    from daemon.definition.config import ConfigErrors
    from daemon.stats.report import load_environment

    if config_dir is not None and not Path(config_dir).is_dir():
        raise UserError(f"--config {config_dir}: no such directory")
    try:
        return load_environment(db_url, config_dir)
    except ConfigErrors as exc:
        for err in exc.errors:
            click.echo(str(err), err=True)
        raise UserError(f"the configuration has {len(exc.errors)} error(s)") from None
