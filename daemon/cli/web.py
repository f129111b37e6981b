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


@web.command("serve")
@click.option("--settings", "settings_path", type=click.Path(dir_okay=False),
              help="Settings file (YAML); default $HOTLINE_SETTINGS.")
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Where to listen (default: http_listen of the settings).")
def serve_cmd(settings_path: str | None, listen: str | None) -> None:
    """Serve the console and API from Redis and the database, beside the daemons.

    For several daemons sharing one Redis (each daemon's own console shows only its
    switches). Needs redis_url; runs until SIGTERM or SIGINT.
    """
    from gevent import monkey

    monkey.patch_all()  # before sockets and threads are made: cooperative Redis and DB waits

    import logging
    import signal
    from pathlib import Path

    import gevent
    import gevent.event

    from daemon.definition.config import ConfigErrors, load_center
    from daemon.definition.settings import load_settings
    from daemon.live.http_api import HttpApi
    from daemon.live.web.redis_source import RedisSource
    from daemon.service import _secrets, configure_logging

    try:
        settings = load_settings(settings_path)
        center = load_center(settings.config_dir) if Path(settings.config_dir).is_dir() else None
    except ConfigErrors as exc:
        raise UserError(f"the settings or configuration are not valid: {exc}") from None
    if not settings.redis_url:
        raise UserError("hotline web serve reads the live state from Redis: set redis_url "
                        "(a single daemon without Redis serves its console itself)")
    configure_logging(logging.getLogger().level, _secrets(settings))
    source = RedisSource(settings.redis_url)
    try:
        api = HttpApi(listen or settings.http_listen, source.snapshot, center,
                      users=settings.http_users, session_minutes=settings.http_session_minutes,
                      tls_cert=settings.http_tls_cert, tls_key=settings.http_tls_key,
                      database_url=settings.database_url, subscribe=source.subscribe,
                      config_dir=settings.config_dir,
                      redis_up=lambda: source.connected)
        api.start(source.health)
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot serve the console: {exc}") from None
    stop = gevent.event.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stop.set)
    stop.wait()
    api.stop()
    source.close()
