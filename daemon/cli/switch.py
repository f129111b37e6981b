"""Commands that act on the switches: reload, agent and queue control, supervision, recordings."""
from __future__ import annotations

import contextlib

import click

from daemon.cli.base import (
    UserError,
    _default_db_url,
    _existing_database,
    _load_center_or_fail,
    echo_json,
    hotline,
)


def _control_settings():
    from daemon.definition.config import ConfigErrors
    from daemon.definition.settings import load_settings

    try:
        return load_settings()
    except ConfigErrors as exc:
        for err in exc.errors:
            click.echo(str(err))
        raise UserError(f"the settings have {len(exc.errors)} error(s)") from None


@contextlib.contextmanager
def _switch(settings, node: str | None):
    """An ESL connection to the chosen node (default: the first one)."""
    from daemon.switch.esl import EslConnection, EslError

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
    from daemon.switch.control import ControlError
    from daemon.switch.esl import EslError

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
    from daemon.switch.reload import ReloadError, format_report, reload_center

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
    """Agents: login, logout, break, ready (over ESL); status (from the daemon's live state)."""


def _agent_action(action: str, agent: str, reason: str | None, node: str | None,
                  as_json: bool) -> None:
    from daemon.switch.control import agent_action

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


_SOURCES = {"redis": "Redis (the daemon's live state)", "switch": "the switch",
            "daemon": "the daemon's HTTP API"}


def _source_line(data: dict, skipped: list[str]) -> str:
    where = _SOURCES.get(data["source"], data["source"])
    if data.get("source_url"):
        where += f" ({data['source_url']})"
    return f"source: {where}" + (f" ({'; '.join(skipped)})" if skipped else "")


@agent_group.command("status")
@click.argument("agent", required=False)
@click.option("--switch", "from_switch", is_flag=True,
              help="Ask the switch even when Redis or the daemon could answer.")
@_node_option
@_json_option
def agent_status_cmd(agent: str | None, from_switch: bool, node: str | None,
                     as_json: bool) -> None:
    """Status and state of AGENT (default: every agent of the configuration).

    Reads the daemon's live state from Redis (redis_url), else from the daemon's HTTP
    API (http_listen), else asks the switch; the output says which (JSON: source,
    and agents with agent, on_switch, status, state, queues, reason, call_id).
    """
    from daemon.switch.control import agent_status, agent_status_live, read_live_state

    settings = _control_settings()
    _, center = _load_center_or_fail(settings.config_dir)
    with _control_errors():
        live, skipped = (None, []) if from_switch else read_live_state(settings.redis_url,
                                                                        settings.http_listen)
        data: dict = {"source": live.source if live is not None else "switch"}
        if live is not None:
            if live.where:
                data["source_url"] = live.where
            data["agents"] = agent_status_live(center, live, agent)
        else:
            with _switch(settings, node) as conn:
                rows = agent_status(conn, center, agent)
            data["agents"] = [{**r, "reason": None, "call_id": None} for r in rows]
    if skipped:
        data["skipped"] = skipped
    if as_json:
        echo_json(data)
        return
    click.echo(_source_line(data, skipped))
    for r in data["agents"]:
        where = "not on the switch" if not r["on_switch"] else f"{r['status']} / {r['state']}"
        if r.get("reason"):
            where += f" ({r['reason']})"
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
    from daemon.switch.control import queue_status, read_live_state

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
    click.echo(_source_line(data, skipped))
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
    from daemon.switch.control import supervise

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
    from daemon.switch.control import recordings

    url = db_url or _default_db_url()
    center = None
    try:
        from daemon.definition.config import ConfigErrors, load_center

        center = load_center(_control_settings().config_dir)
    except (ConfigErrors, OSError, UserError):
        center = None  # the paths stored in the database are shown all the same
    with _existing_database(url):
        rows = recordings(url, call_id, center)
    if call_id and not rows:
        raise UserError(f"no talk segment of call {call_id}")
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        mark = " (expected path)" if r["derived"] else ""
        click.echo(f"{r['call_id']}  {r['agent'] or '-':24} {r['recording'] or '(none)'}{mark}")
