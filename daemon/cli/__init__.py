"""Hotline's command line: one module per group of commands, all on the ``hotline`` click group.

The modules only parse arguments, call into ``daemon`` and print. Exit codes: 0 ok,
1 a user's mistake (bad config, bad arguments, nothing found), 2 an internal error.
"""
from __future__ import annotations

import logging
import sys

import click

# the command modules register their commands on import
from daemon.cli import (campaign, customers, definition, doctor, example, sms,  # noqa: F401
                         stats, storage, switch, web, webhooks)
from daemon.cli.base import UserError, echo_json, hotline

__all__ = ["hotline", "main", "UserError", "echo_json"]


def main(argv: list[str] | None = None) -> None:
    """Console entry point with the exit-code contract: a user's mistake exits 1 with one
    line on stderr, an internal error exits 2. ``argv`` defaults to ``sys.argv[1:]``."""
    try:
        # without standalone mode click returns (not raises) the code of a ctx.exit(N)
        code = hotline.main(args=argv, prog_name="hotline", standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:  # a bare `hotline` asks for the help
        click.echo(exc.format_message())
        sys.exit(0)
    except click.UsageError as exc:
        # usage mistakes are user errors too (click would say 2, which we keep for internal
        # ones), told in one line that points at the help instead of repeating the usage
        where = exc.ctx.command_path if exc.ctx is not None else "hotline"
        click.echo(f"Error: {exc.format_message()} (see '{where} --help')", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except Exception as exc:  # an internal error: one line, no traceback unless -vv
        logging.getLogger("hotline").debug("internal error", exc_info=True)
        click.echo(f"hotline: internal error: {exc.__class__.__name__}: {exc}", err=True)
        sys.exit(2)
