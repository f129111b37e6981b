"""The rendered dialplan routes calls the way ``hotline trace`` says it does.

A small model of FreeSWITCH's XML dialplan hunting (mod_dialplan_xml + switch_xml.c time
checks) runs the rendered context for a call at a given local time: extensions in order,
all conditions must hold, ``inline="true"`` sets take effect during the hunt, ``continue``
goes on hunting, ``${var}`` fields are expanded, time attributes are evaluated in the
channel's ``timezone``. It covers exactly the subset Hotline renders.
"""
from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
import zoneinfo
from pathlib import Path

import pytest
from factories import city_center

from daemon.definition.config import load_center
from daemon.definition.render import render
from daemon.definition.trace import trace_call

CITY = "cityutil.hotline.local"
REPO = Path(__file__).resolve().parent.parent
FS_DOW = {"sun": 1, "mon": 2, "tue": 3, "wed": 4, "thu": 5, "fri": 6, "sat": 7}


def _dow_match(expr: str, wday: int) -> bool:
    for part in expr.split(","):
        if "-" in part:
            a, b = (FS_DOW.get(x, int(x) if x.isdigit() else 0) for x in part.split("-"))
            if a <= wday <= b:
                return True
        elif FS_DOW.get(part, int(part) if part.isdigit() else 0) == wday:
            return True
    return False


def _number_match(expr: str, val: int) -> bool:
    if "-" in expr:
        lo, hi = expr.split("-")
        return int(lo) <= val <= int(hi)
    return any(int(x) == val for x in expr.split(","))


def _tod_match(expr: str, t: dt.time) -> bool:
    def secs(s: str) -> int:
        parts = [int(x) for x in s.split(":")] + [0]
        return parts[0] * 3600 + parts[1] * 60 + parts[2]

    start, end = expr.split("-")
    val = t.hour * 3600 + t.minute * 60 + t.second
    return secs(start) <= val < secs(end)  # switch_tod_cmp: end exclusive


def _time_match(cond: ET.Element, now: dt.datetime) -> bool:
    checks = {
        "year": lambda e: _number_match(e, now.year),
        "mon": lambda e: _number_match(e, now.month),
        "mday": lambda e: _number_match(e, now.day),
        "wday": lambda e: _dow_match(e, now.isoweekday() % 7 + 1),
        "time-of-day": lambda e: _tod_match(e, now.time()),
    }
    for attr, check in checks.items():
        if attr in cond.attrib and not check(cond.get(attr)):
            return False
    unknown = set(cond.attrib) - set(checks) - {"field", "expression"}
    assert not unknown, f"simulator does not know {unknown}"
    return True


def hunt(ctx: ET.Element, dest: str, caller: str, utc: dt.datetime) -> list[tuple[str, str]]:
    """The actions FreeSWITCH would execute for a call to ``dest`` (one hunt, no transfers)."""
    chan: dict[str, str] = {"destination_number": dest, "caller_id_number": caller}
    run: list[tuple[str, str]] = []

    def expand(s: str) -> str:
        return re.sub(r"\$\{([A-Za-z0-9_]+)\}", lambda m: chan.get(m.group(1), ""), s)

    for ext in ctx.findall("extension"):
        matched = True
        collected: list[tuple[str, str]] = []
        for cond in ext.findall("condition"):
            now = utc.astimezone(zoneinfo.ZoneInfo(chan.get("timezone", "UTC")))
            if "field" in cond.attrib:
                field = cond.get("field")
                value = expand(field) if field.startswith("${") else chan.get(field, "")
                ok = re.search(cond.get("expression"), value) is not None
            else:
                ok = _time_match(cond, now)
            if not ok:
                matched = False
                break
            for a in cond.findall("action"):
                app, data = a.get("application"), a.get("data") or ""
                if a.get("inline") == "true":
                    assert app == "set"
                    k, _, v = data.partition("=")
                    chan[k] = expand(v)
                else:
                    collected.append((app, data))
        if matched:
            run += collected
            if ext.get("continue") != "true":
                break
    return run


@pytest.fixture(scope="module")
def city_ctx(tmp_path_factory: pytest.TempPathFactory) -> ET.Element:
    out = tmp_path_factory.mktemp("dp")
    render(city_center(), out)
    return ET.parse(out / f"dialplan/{CITY}.xml").getroot().find("context")


def at(local: str) -> dt.datetime:
    return dt.datetime.fromisoformat(local).replace(
        tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai")).astimezone(dt.UTC)


def rule_of(actions: list[tuple[str, str]]) -> str | None:
    return next((d.split("=", 1)[1] for a, d in actions if a == "set"
                 and d.startswith("hotline_rule=")), None)


@pytest.mark.parametrize("local,caller,rule,first_app", [
    ("2026-11-23 09:05", "13900000000", "open", ("ivr", f"main@{CITY}")),  # Monday morning
    ("2026-11-23 12:30", "13900000000", "closed", ("ivr", f"after_hours@{CITY}")),  # lunch
    ("2026-11-23 13:30", "13900000000", "open", ("ivr", f"main@{CITY}")),  # lunch is over
    ("2026-11-23 17:30", "13900000000", "closed", ("ivr", f"after_hours@{CITY}")),  # end excl.
    ("2026-11-28 10:00", "13900000000", "open", ("ivr", f"main@{CITY}")),  # Saturday morning
    ("2026-11-28 15:00", "13900000000", "closed", ("ivr", f"after_hours@{CITY}")),  # Sat pm
    ("2026-10-02 10:00", "13900000000", "closed", ("ivr", f"after_hours@{CITY}")),  # holiday
    ("2026-10-10 14:00", "13900000000", "open", ("ivr", f"main@{CITY}")),  # make-up Saturday
    ("2026-11-27 10:00", "13900000000", "closed", ("ivr", f"after_hours@{CITY}")),  # closed day
    ("2027-01-01 10:00", "13900000000", "closed", ("ivr", f"after_hours@{CITY}")),  # new year
    ("2026-11-23 09:05", "13800000001", "blocked", ("hangup", "CALL_REJECTED")),  # blacklist
])
def test_dialplan_routes_each_moment_like_trace(city_ctx: ET.Element, local: str, caller: str,
                                                rule: str, first_app: tuple[str, str]) -> None:
    run = hunt(city_ctx, "4001234567", caller, at(local))
    assert rule_of(run) == rule
    assert first_app in run
    traced = trace_call(city_center(), "4001234567", local, caller=caller)
    matched = next(s for s in traced.steps if s.kind == "rule")
    assert matched.data["rule"] == rule


def test_emergency_line_is_open_at_night_on_a_holiday(city_ctx: ET.Element) -> None:
    run = hunt(city_ctx, "4009110000", "13900000000", at("2026-10-02 03:00"))
    assert ("transfer", f"hotline-queue-emergency XML {CITY}") in run
    trace = trace_call(city_center(), "4009110000", "2026-10-02 03:00")
    assert trace.end == f"waits in queue emergency@{CITY} for an agent"


def test_example_config_dialplan_agrees_with_trace_over_a_week(tmp_path: Path) -> None:
    center = load_center(REPO / "config")
    render(center, tmp_path)
    tenant = center.tenant("cityutil")
    assert tenant is not None
    ctx = ET.parse(tmp_path / f"dialplan/{tenant.domain}.xml").getroot().find("context")
    did = tenant.numbers[0].did
    start = dt.datetime(2026, 9, 28, 0, 0)  # a week that runs into the National Day holiday
    for step in range(0, 14 * 24 * 60, 37):  # every 37 minutes for two weeks
        local = start + dt.timedelta(minutes=step)
        utc = local.replace(tzinfo=zoneinfo.ZoneInfo(tenant.timezone)).astimezone(dt.UTC)
        run = hunt(ctx, did, "13900000000", utc)
        traced = trace_call(center, did, local, caller="13900000000")
        matched = next(s for s in traced.steps if s.kind == "rule")
        assert rule_of(run) == matched.data["rule"], local
