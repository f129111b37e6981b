"""Phone numbers as a tenant means them: one normal form (E.164) for contacts and do-not-call.

A tenant's home region (``CN`` for Asia/Shanghai) comes from its time zone through the
system's ``zone.tab`` (the IANA table of zones per country): national numbers written the
local way (``138 0013 8001``, ``021 6123 4567``) and international ones (``+86 ...``,
``0086 ...``) end up the same string, so a do-not-call entry matches however a CSV wrote
the number. ``phonenumbers`` (Google's libphonenumber data) does the parsing.
"""
from __future__ import annotations

import functools
from pathlib import Path

import phonenumbers

_ZONE_TABS = (Path("/usr/share/zoneinfo/zone.tab"), Path("/usr/share/zoneinfo/zone1970.tab"))


class BadNumber(ValueError):
    """A number that cannot be a phone number of the tenant's region; str() says why."""


@functools.cache
def _zone_regions() -> dict[str, str]:
    out: dict[str, str] = {}
    for tab in _ZONE_TABS:
        try:
            lines = tab.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("#") or not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) >= 3:
                out.setdefault(cols[2], cols[0].split(",")[0])
    return out


def region_of(timezone: str) -> str | None:
    """``Asia/Shanghai`` -> ``CN``; None for zones of no country (``UTC``)."""
    return _zone_regions().get(timezone)


def normalise(raw: str, region: str | None) -> str:
    """``raw`` as E.164 (``+8613800138001``); raises BadNumber with a short reason."""
    text = (raw or "").strip()
    if not text:
        raise BadNumber("the number is empty")
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        num = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException as exc:
        raise BadNumber(f"'{raw}' is not a phone number ({exc._msg})") from None
    if not phonenumbers.is_possible_number(num):
        raise BadNumber(f"'{raw}' has the wrong length for a number of "
                        f"{phonenumbers.region_code_for_number(num) or region or 'its region'}")
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def dial_form(e164: str, region: str | None) -> str:
    """What the tenant's routes dial: the national form inside the home region
    (``+8613800138001`` -> ``13800138001``, ``+862161234567`` -> ``02161234567``), the
    E.164 digits with ``00`` abroad."""
    num = phonenumbers.parse(e164, None)
    if region is not None and phonenumbers.region_code_for_number(num) == region:
        national = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.NATIONAL)
        return "".join(ch for ch in national if ch.isdigit())
    return "00" + e164.lstrip("+")


def tenant_region(tenant: object) -> str | None:
    """The region a tenant's numbers are read in: its ``country`` when the model has one,
    else the country of its time zone."""
    return getattr(tenant, "country", None) or region_of(getattr(tenant, "timezone", ""))
