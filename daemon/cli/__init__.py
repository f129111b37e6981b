"""Hotline's command line: one module per group of commands, all on the ``hotline`` click group.

The modules only parse arguments, call into ``daemon`` and print. Exit codes: 0 ok,
1 a user's mistake (bad config, bad arguments, nothing found), 2 an internal error.
"""
from __future__ import annotations

import logging
import sys

import click

from daemon.cli import definition, stats, storage, switch, web  # noqa: F401 - they register their commands
from daemon.cli.base import UserError, echo_json, hotline

__all__ = ["hotline", "main", "UserError", "echo_json"]


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

