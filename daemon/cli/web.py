"""Commands around the web console: make a secret's hash for the settings' ``http_users``."""
from __future__ import annotations

import click

from daemon.cli.base import UserError, hotline


@hotline.group("web")
def web() -> None:
    """The web console and API (docs/WEB.md); the daemon serves them on http_listen."""


@web.command("hash-secret")
@click.option("--secret", envvar="HOTLINE_WEB_SECRET", default=None,
              help="The secret (default: asked twice, not echoed; or $HOTLINE_WEB_SECRET).")
def hash_secret_cmd(secret: str | None) -> None:
    """Print the scrypt hash of a login's secret, for `secret:` of an http_users entry."""
    from daemon.live.web.auth import hash_secret

    if secret is None:
        secret = click.prompt("Secret", hide_input=True, confirmation_prompt=True)
    if len(secret) < 8:
        raise UserError("the secret must have at least 8 characters")
    click.echo(hash_secret(secret))
