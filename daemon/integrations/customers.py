"""The customer directory: who calls, per tenant, keyed by the caller's normalised number.

Numbers are read with ``phonenumbers`` in the tenant's ``country`` (leading zeros,
national and international prefixes: ``013800138001``, ``008613800138001`` and
``+86 138 0013 8001`` are one customer, ``+8613800138001``). A caller id that is no
possible number (an internal extension, "anonymous") is kept as its digits.

``read_csv`` checks a whole file and reports every bad row with its line number;
``import_customers`` writes a checked file in one transaction (an upsert: importing
the same file twice changes nothing); ``find`` / ``find_many`` read the directory.
"""
from __future__ import annotations

import csv
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from daemon.definition import phone
from daemon.storage import schema

COLUMNS = ("number", "name", "account_id", "vip", "tags", "language", "notes")
REQUIRED = ("number", "name")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
_MAX = {"name": 128, "account_id": 64, "notes": 2000}
cu = schema.customers


@dataclass(frozen=True)
class Customer:
    number: str  # E.164
    name: str
    account_id: str | None = None
    vip: int = 0  # 0 = not a VIP, 1-9
    tags: tuple[str, ...] = ()
    language: str | None = None
    notes: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "name": self.name, "account_id": self.account_id,
                "vip": self.vip, "tags": list(self.tags), "language": self.language,
                "notes": self.notes}


def normalise(number: str, region: str | None) -> str | None:
    """E.164 of a number as dialled in ``region``, or None if it is no possible number
    (the one reading of numbers: ``daemon.definition.phone``, also for campaigns and DNC)."""
    try:
        return phone.normalise(number, region or None)
    except phone.BadNumber:
        return None


def caller_key(caller: str, region: str | None) -> str:
    """The directory key of a caller id: E.164 when it is a number, else its digits."""
    return normalise(caller, region) or re.sub(r"[^0-9+*#]", "", caller or "")


class CsvErrors(Exception):
    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


def read_csv(path: str | Path, region: str | None) -> list[Customer]:
    """Every row of a customer CSV (header: number,name[,account_id,vip,tags,language,notes]),
    or ``CsvErrors`` listing every bad row as ``FILE:LINE: sentence``."""
    path = Path(path)
    errors: list[str] = []
    out: dict[str, tuple[int, Customer]] = {}
    try:
        fh = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise CsvErrors([f"{path}: cannot read it: {exc.strerror}"]) from None
    with fh:
        try:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CsvErrors([f"{path}:1: not a readable CSV file: {exc}"]) from None
        unknown = [h for h in header if h not in COLUMNS]
        missing = [c for c in REQUIRED if c not in header]
        if unknown or missing or not header:
            what = []
            if missing:
                what.append(f"needs the column(s) {', '.join(missing)}")
            if unknown:
                what.append(f"has unknown column(s) {', '.join(unknown)}")
            raise CsvErrors([f"{path}:1: the header {' and '.join(what) or 'is empty'} "
                             f"(columns: {', '.join(COLUMNS)})."])
        try:
            for row in reader:
                line = reader.line_num
                if None in row:
                    errors.append(f"{path}:{line}: more values than the header has columns.")
                    continue
                if not any((v or "").strip() for v in row.values()):
                    continue  # a blank line
                customer, problems = _customer(row, region)
                for problem in problems:
                    errors.append(f"{path}:{line}: {problem}")
                if customer is None:
                    continue
                if customer.number in out:
                    first = out[customer.number][0]
                    errors.append(f"{path}:{line}: number {row['number'].strip()} is "
                                  f"{customer.number}, already given at line {first}.")
                    continue
                out[customer.number] = (line, customer)
        except (csv.Error, UnicodeDecodeError) as exc:
            errors.append(f"{path}:{reader.line_num}: not readable as CSV: {exc}")
    if errors:
        raise CsvErrors(errors)
    return [c for _line, c in out.values()]


def _customer(row: Mapping[str, str | None], region: str | None
              ) -> tuple[Customer | None, list[str]]:
    values = {k: (v or "").strip() for k, v in row.items()}
    problems: list[str] = []
    number = normalise(values["number"], region) if values["number"] else None
    if not values["number"]:
        problems.append("the number is empty.")
    elif number is None:
        problems.append(f"'{values['number']}' is not a phone number"
                        f"{' in ' + region if region else ' (give it with +country code)'}.")
    if not values["name"]:
        problems.append("the name is empty.")
    for key, limit in _MAX.items():
        if len(values.get(key, "")) > limit:
            problems.append(f"the {key} is longer than {limit} characters.")
    vip = 0
    if values.get("vip"):
        if values["vip"].isdigit() and 0 <= int(values["vip"]) <= 9:
            vip = int(values["vip"])
        else:
            problems.append(f"vip is '{values['vip']}', but it must be a whole number from 0 "
                            f"(not a VIP) to 9.")
    language = values.get("language") or None
    if language and not _LANGUAGE.match(language):
        problems.append(f"language is '{language}', which is not a language tag like en or "
                        f"zh-CN.")
    tags = tuple(t.strip() for t in (values.get("tags") or "").split(";") if t.strip())
    if any(len(t) > 32 for t in tags):
        problems.append("a tag is longer than 32 characters.")
    if problems or number is None:
        return None, problems
    return Customer(number=number, name=values["name"], account_id=values.get("account_id") or None,
                    vip=vip, tags=tags, language=language,
                    notes=values.get("notes") or None), []


def import_customers(conn: Connection, domain: str, customers: Iterable[Customer],
                     now_ms: int | None = None) -> int:
    """Upsert checked customers of one tenant (call inside a transaction)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    now = int(time.time() * 1000) if now_ms is None else now_ms
    rows = [{"tenant": domain, "number": c.number, "name": c.name, "account_id": c.account_id,
             "vip": c.vip, "tags": ";".join(c.tags) or None, "language": c.language,
             "notes": c.notes, "updated_ms": now} for c in customers]
    if not rows:
        return 0
    stmt = insert(cu)
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant", "number"],
        set_={k: stmt.excluded[k] for k in ("name", "account_id", "vip", "tags", "language",
                                            "notes", "updated_ms")})
    for start in range(0, len(rows), 500):
        conn.execute(stmt, rows[start:start + 500])
    return len(rows)


def _from_row(row: Any) -> Customer:
    return Customer(number=row.number, name=row.name, account_id=row.account_id, vip=row.vip,
                    tags=tuple(t for t in (row.tags or "").split(";") if t),
                    language=row.language, notes=row.notes)


def find(conn: Connection, domain: str, number: str, region: str | None) -> Customer | None:
    key = caller_key(number, region)
    row = conn.execute(select(cu).where(cu.c.tenant == domain, cu.c.number == key)).first()
    return _from_row(row) if row else None


def find_many(conn: Connection, wanted: Mapping[str, set[str]]) -> dict[tuple[str, str], Customer]:
    """(domain, E.164 key) -> customer, for the keys asked per domain."""
    out: dict[tuple[str, str], Customer] = {}
    for domain, keys in wanted.items():
        keys_list = sorted(k for k in keys if k)
        for start in range(0, len(keys_list), 500):
            rows = conn.execute(select(cu).where(and_(
                cu.c.tenant == domain, cu.c.number.in_(keys_list[start:start + 500]))))
            for row in rows:
                out[(domain, row.number)] = _from_row(row)
    return out
