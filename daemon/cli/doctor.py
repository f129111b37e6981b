"""``hotline doctor``: read-only checks of the running switches against the YAML model."""
from __future__ import annotations

import click

from daemon.cli.base import UserError, _load_center_or_fail, echo_json, hotline


@hotline.command("doctor")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--node", help="Only this ESL node (a name from the settings).")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def doctor_cmd(directory: str | None, node: str | None, as_json: bool) -> None:
    """Check each switch: modules loaded, agents' phones registered in their tenant's
    domain, no site-wide tod_tz_offset. Changes nothing; exit 1 when a problem is found."""
    from daemon.cli.switch import _control_settings
    from daemon.switch.doctor import doctor, format_reports
    from daemon.switch.reload import ReloadError, esl_connect, select_nodes

    settings = _control_settings()
    _, center = _load_center_or_fail(directory or settings.config_dir)
    try:
        nodes = select_nodes(settings, node)
    except ReloadError as exc:
        raise UserError(str(exc)) from None
    reports = doctor(center, nodes, esl_connect())
    problems = sum(r.problems for r in reports)
    if as_json:
        echo_json({"problems": problems, "nodes": [r.to_dict() for r in reports]})
    else:
        click.echo(format_reports(reports))
    if problems:
        # a UserError, not click's Exit: the entry point runs click with
        # standalone_mode=False, where Exit(1) is returned and the process exits 0
        raise UserError(f"{problems} problem(s) found")
