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

# --- daemon / replay / calls (issue: the daemon) ------------------------------------------

# --- reports / KPIs / staffing / QA (issue: statistics) -----------------------------------

# --- desk phones / reload / control (issue: desk-phone agents and admin control) ----------


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
