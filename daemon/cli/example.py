"""``hotline example``: a copy of the bundled example center to start from."""
from __future__ import annotations

import shutil
from pathlib import Path

import click

from daemon.bundle import bundled
from daemon.cli.base import UserError, hotline


@hotline.command()
@click.option("--out", "out_dir", default="config", show_default=True,
              type=click.Path(file_okay=False),
              help="The folder to create (config/ is where the other commands look).")
def example(out_dir: str) -> None:
    """Write the example call center (YAML) into a new folder to start from.

    The example is a city water-and-gas hotline and the small demo tenant of
    the recorded switch. Into config/ (the default), `hotline validate`,
    `hotline render --out out` and `hotline trace` run on it from this folder
    without further arguments.

    \b
    Example:
      hotline example && hotline validate && hotline render --out out
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out_dir} already exists and is not an empty folder; "
                        f"give another --out")
    if not out.parent.is_dir():
        raise UserError(f"cannot create {out_dir}: the folder {out.parent} does not exist")
    try:
        shutil.copytree(bundled("config"), out, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    except OSError as exc:
        raise UserError(f"cannot write {out_dir}: {exc.strerror or exc}") from None
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    click.echo(f"wrote the example center to {out_dir}: {', '.join(files)}")
