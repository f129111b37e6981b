"""Commands on the customer directory: import a CSV, show who a number is."""
from __future__ import annotations

import click

from daemon.cli.base import (
    UserError,
    _database_errors,
    _default_db_url,
    _load_center_or_fail,
    echo_json,
    hotline,
)

_DB = click.option("--db", "db_url", help="Database URL (default: from the settings, else "
                                         "sqlite:///hotline.db).")
_CONFIG = click.option("--config", "config_dir", type=click.Path(file_okay=False),
                       help="Call-center YAML (default: from the settings).")
_TENANT = click.option("--tenant", required=True, help="The tenant (its id or its domain).")


@hotline.group("customers")
def customers_group() -> None:
    """The customer directory per tenant (docs/CUSTOMERS.md)."""


def _tenant(config_dir: str | None, tenant: str):
    _directory, center = _load_center_or_fail(config_dir)
    found = center.tenant(tenant) or center.tenant_by_domain(tenant)
    if found is None:
        known = ", ".join(t.id for t in center.tenants) or "none"
        raise UserError(f"no tenant '{tenant}' (tenants: {known})")
    return found


def _engine(db_url: str | None):
    from daemon.storage.store import make_engine, migrate

    url = db_url or _default_db_url()
    with _database_errors(url):
        migrate(url)
    return url, make_engine(url)


@customers_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@_TENANT
@_CONFIG
@_DB
def import_cmd(file: str, tenant: str, config_dir: str | None, db_url: str | None) -> None:
    """Import a customer CSV: every row checked first, nothing written if one is bad.

    Columns: number,name[,account_id,vip,tags,language,notes]; tags separated by ';'.
    Importing the same file again changes nothing."""
    from daemon.integrations.customers import CsvErrors, import_customers, read_csv

    t = _tenant(config_dir, tenant)
    try:
        customers = read_csv(file, t.country)
    except CsvErrors as exc:
        for line in exc.errors:
            click.echo(line, err=True)
        count = len(exc.errors)
        raise UserError(f"{file}: {count} error{'s' if count != 1 else ''}, nothing imported") \
            from None
    url, engine = _engine(db_url)
    try:
        with _database_errors(url), engine.begin() as conn:
            count = import_customers(conn, t.domain, customers)
    finally:
        engine.dispose()
    click.echo(f"{count} customer{'s' if count != 1 else ''} imported into tenant '{t.id}'")


@customers_group.command("show")
@click.argument("number")
@_TENANT
@_CONFIG
@_DB
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def show_cmd(number: str, tenant: str, config_dir: str | None, db_url: str | None,
             as_json: bool) -> None:
    """Who calls from NUMBER (as a caller would present it: any national or + form)."""
    from daemon.integrations.customers import caller_key, find

    t = _tenant(config_dir, tenant)
    url, engine = _engine(db_url)
    try:
        with _database_errors(url), engine.connect() as conn:
            customer = find(conn, t.domain, number, t.country)
    finally:
        engine.dispose()
    if customer is None:
        raise UserError(f"no customer {caller_key(number, t.country)} in tenant '{t.id}'")
    if as_json:
        echo_json(customer.to_dict())
        return
    for key, value in customer.to_dict().items():
        if isinstance(value, list):
            value = ", ".join(value)
        click.echo(f"{key + ':':<12} {'' if value is None else value}")
