"""Commands on the call center as YAML describes it: validate, render, trace."""
from __future__ import annotations

from pathlib import Path

import click

from daemon.cli.base import UserError, _load_center_or_fail, echo_json, hotline


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
    autoload_configs/ (callcenter, conference, ivr) and scripts/ (the desk-phone
    scripts with their data file hotline_data.json, for $${script_dir}).
    The same YAML always gives byte-identical files; docs/RENDER.md shows the
    include lines for a stock freeswitch.xml.

    \b
    Example:
      hotline render config/ --out build/freeswitch
    """

    from daemon.definition.render import render as render_center

    directory, center = _load_center_or_fail(directory)
    try:
        written = render_center(center, out_dir, odbc_dsn=_odbc_dsn())
    except OSError as exc:  # a file where a folder must be, no permission, a full disk
        where = f" ({exc.filename})" if exc.filename else ""
        raise UserError(f"cannot write to --out {out_dir}: {exc.strerror or exc}{where}") \
            from None
    click.echo(f"wrote {len(written)} files to {out_dir}:")
    for path in written:
        click.echo(f"  {Path(path).relative_to(out_dir)}")


@hotline.command()
@click.argument("number")
@click.option("--at", "at", default=None, metavar="WHEN",
              help="When the call comes in, on the tenant's wall clock (UTC with --utc): "
                   "'YYYY-MM-DD HH:MM', an ISO time with Z or +HH:MM, 'today 09:05', "
                   "'yesterday 18:30', now (default).")
@click.option("--utc", is_flag=True,
              help="Read --at as UTC (the walk and its output stay on the tenant's clock).")
@click.option("--caller", default=None, metavar="NUMBER", help="The caller's number.")
@click.option("--digits", default="", metavar="D1,D2,...",
              help="What the caller enters at each menu prompt, in order (e.g. 1,2).")
@click.option("--tenant", default=None, help="Tenant id, when the number is ambiguous.")
@click.option("--config", "config_dir", default=None, metavar="DIR",
              help="Call-center YAML directory (default: the config_dir setting).")
@click.option("--json", "as_json", is_flag=True, help="Print the steps as JSON (for scripts).")
def trace(number: str, at: str | None, utc: bool, caller: str | None, digits: str,
          tenant: str | None, config_dir: str | None, as_json: bool) -> None:
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
    from daemon.definition.trace import TraceError, trace_call

    _, center = _load_center_or_fail(config_dir)
    try:
        result = trace_call(center, number, at, caller=caller,
                            digits=[d for d in digits.split(",") if d.strip()], tenant=tenant,
                            utc=utc)
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
    from daemon.definition.config import ConfigErrors
    from daemon.definition.config import validate as validate_dir

    if directory is None:
        from daemon.definition.settings import load_settings

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


def _odbc_dsn() -> str | None:
    """settings ``callcenter_odbc_dsn``: mod_callcenter's shared database (docs/SCALE.md)."""
    from daemon.definition.config import ConfigErrors
    from daemon.definition.settings import load_settings

    try:
        return load_settings().callcenter_odbc_dsn or None
    except ConfigErrors as exc:
        for err in exc.errors:
            click.echo(str(err))
        raise UserError(f"the settings have {len(exc.errors)} error(s)") from None
