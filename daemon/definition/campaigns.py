"""Outbound campaigns: what the YAML says about them, read and checked, and when they may dial.

A tenant's ``campaigns:`` collection (docs/CONFIG.md "Campaigns") becomes frozen
``Campaign`` objects on ``Tenant.campaigns``. ``config.py`` calls :func:`read_campaign`
for each entry and :func:`check_campaigns` once the tenant is built (references to queues,
agents, schedules and dispositions).

When a campaign may dial (:func:`may_dial`) is decided here, once, for the dialer, the
CLI and the tests: inside the campaign's own ``hours`` (tenant time zone), inside its
``schedule`` when it names one, never on a holiday of *any* schedule of the tenant (a
closure, or an exception day with no hours), and never at night (``NIGHT``: validation
refuses hours that reach into it, and ``may_dial`` refuses it again at run time).
"""
from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

from daemon.definition import model as m
from daemon.definition.model import NOWHERE, Source
from daemon.definition.reader import _BAD, _Reader
from daemon.definition.schedule import schedule_state
from daemon.definition.yamlsrc import YNode

CAMPAIGN_TYPES = ("preview", "progressive", "notice")
RESULTS = ("busy", "no_answer", "failed", "machine")  # results that may be retried
DEFAULT_RETRY_S = {"busy": 600, "no_answer": 1800, "failed": 3600, "machine": 7200}
# No campaign calls before 08:00 or from 21:00 on (local time), whatever its hours say:
# consumer-protection rules in most places forbid evening and night calls.
NIGHT_ENDS = dt.time(8, 0)
NIGHT_STARTS = dt.time(21, 0)
KEYS = ("name", "type", "queue", "agents", "caller_id", "hours", "schedule", "max_attempts",
        "retry_s", "max_concurrent", "route", "route_max_concurrent", "priority",
        "abandon_cap_pct", "ring_s", "fields", "message", "connect_key", "optout_key")


@dataclass(frozen=True)
class Campaign:
    """One outbound campaign of a tenant (ids unqualified, like queues)."""

    id: str
    name: str
    type: str  # preview | progressive | notice
    caller_id: str
    hours: tuple[tuple[m.TimeRange, ...], ...]  # 7 entries, index 0 = Monday
    queue: str | None = None  # the queue whose agents take the calls (notice: "press 1")
    agents: tuple[str, ...] = ()  # or a fixed list of agents
    schedule: str | None = None  # a tenant schedule the campaign must also be open in
    max_attempts: int = 3
    retry_s: tuple[tuple[str, int], ...] = tuple(sorted(DEFAULT_RETRY_S.items()))
    max_concurrent: int = 10
    route: str | None = None  # an outbound route by name (gateway and prefix)
    route_max_concurrent: int | None = None  # calls of every campaign on that route
    priority: int = 5  # 1 (lowest) .. 10; higher campaigns get free agents first
    abandon_cap_pct: float = 3.0  # progressive: answered contacts left without an agent
    ring_s: int = 30  # how long a contact's phone rings before it counts as no answer
    fields: tuple[str, ...] = ()  # per-contact columns the CSV must carry
    message: tuple[str, ...] = ()  # notice: prompts played in order; ${field} from the contact
    connect_key: str | None = "1"  # notice: press to talk to an agent (needs a queue)
    optout_key: str | None = "9"  # notice: press to stop these calls (do-not-call)
    src: Source = NOWHERE

    def retry_delay_s(self, result: str) -> int:
        return dict(self.retry_s).get(result, DEFAULT_RETRY_S.get(result, 3600))


@dataclass(frozen=True)
class DialWindow:
    """Whether a campaign may dial at a moment, and the one-line reason."""

    open: bool
    reason: str


def holidays(tenant: m.Tenant) -> tuple[tuple[dt.date, dt.date, str], ...]:
    """Every closed day of the tenant: closures of all its schedules, and exception days
    without hours (``(first, last, name)``)."""
    out = []
    for s in tenant.schedules:
        out += [(c.first, c.last, c.name) for c in s.closures]
        out += [(e.date, e.date, e.name or e.date.isoformat()) for e in s.exceptions if not e.hours]
    return tuple(sorted(out))


def may_dial(tenant: m.Tenant, campaign: Campaign, when_utc: dt.datetime) -> DialWindow:
    """May ``campaign`` dial at ``when_utc`` (an aware datetime)? Read in the tenant's zone."""
    local = when_utc.astimezone(zoneinfo.ZoneInfo(tenant.timezone))
    day, t = local.date(), local.time().replace(tzinfo=None)
    if t < NIGHT_ENDS or t >= NIGHT_STARTS:
        return DialWindow(False, f"night ({local:%H:%M} local): no calls before "
                                 f"{NIGHT_ENDS:%H:%M} or from {NIGHT_STARTS:%H:%M}")
    for first, last, name in holidays(tenant):
        if first <= day <= last:
            return DialWindow(False, f"holiday '{name}' ({day.isoformat()})")
    ranges = campaign.hours[day.weekday()]
    if not any(r.contains(t) for r in ranges):
        return DialWindow(False, f"outside the campaign's hours on {m.WEEKDAYS[day.weekday()]} "
                                 f"({local:%H:%M} local)")
    if campaign.schedule is not None:
        sched = next((s for s in tenant.schedules if s.name == campaign.schedule), None)
        if sched is not None:
            st = schedule_state(sched, local.replace(tzinfo=None))
            if not st.open:
                return DialWindow(False, f"schedule '{sched.name}' is closed: {st.reason}")
    return DialWindow(True, f"{m.WEEKDAYS[day.weekday()]} {local:%H:%M} local, in hours")


def next_window_start(tenant: m.Tenant, campaign: Campaign, after_utc: dt.datetime,
                      horizon_days: int = 31) -> dt.datetime | None:
    """The first moment at or after ``after_utc`` the campaign may dial (minute steps at
    range starts), or None within ``horizon_days``. For "next call at" displays."""
    zone = zoneinfo.ZoneInfo(tenant.timezone)
    if may_dial(tenant, campaign, after_utc).open:
        return after_utc
    local = after_utc.astimezone(zone)
    for d in range(horizon_days + 1):
        day = local.date() + dt.timedelta(days=d)
        starts = sorted({r.start for r in campaign.hours[day.weekday()]} | {NIGHT_ENDS})
        for s in starts:
            cand = dt.datetime.combine(day, s, zone)
            if cand >= after_utc and may_dial(tenant, campaign, cand).open:
                return cand.astimezone(dt.timezone.utc)
    return None


# ---- reading ---------------------------------------------------------------------------
def read_campaign(r: _Reader, weekly: Any, cid: str, node: YNode, src: Source) -> Campaign | None:
    """One ``campaigns:`` entry; every problem goes to ``r`` at file:line."""
    what = f"campaign '{cid}'"
    if r.ident(YNode("scalar", src, cid, raw=cid), "campaign id") is _BAD:
        return None
    body = r.mapping(node, what, KEYS, ("type", "caller_id", "hours"))
    if body is None:
        return None

    def ranged(lo: int, hi: int) -> Any:
        return lambda n, w: r.integer(n, w, lo, hi)

    spec = {
        "name": r.text, "type": lambda n, w: r.choice(n, w, CAMPAIGN_TYPES),
        "queue": r.text, "caller_id": r.phone_number, "schedule": r.text,
        "max_attempts": ranged(1, 20), "max_concurrent": ranged(1, 1000),
        "route": r.ident, "route_max_concurrent": ranged(1, 10000), "priority": ranged(1, 10),
        "abandon_cap_pct": lambda n, w: r.number(n, w, 0.0, 100.0),
        "ring_s": ranged(5, 120), "connect_key": lambda n, w: r.digits(n, w, 1),
        "optout_key": lambda n, w: r.digits(n, w, 1),
    }
    got: dict[str, Any] = {}
    for key, reader in spec.items():
        if key in body and not body[key].is_null:
            v = reader(body[key], f"'{key}' of {what}")
            if v is not _BAD:
                got[key] = v
        elif key in body and key in ("connect_key", "optout_key"):
            got[key] = None  # written as null: the key is off
    hours = weekly(body["hours"], f"'hours' of {what}") if "hours" in body else None
    if hours is not None:
        for wd, ranges in enumerate(hours):
            for rg in ranges:
                if rg.start < NIGHT_ENDS or rg.end > NIGHT_STARTS:
                    r.error(body["hours"].src,
                            f"'hours' of {what} reach into the night on {m.WEEKDAYS[wd]} "
                            f"({rg.start:%H:%M}-{'24:00' if rg.end == dt.time.max else rg.end.strftime('%H:%M')}"
                            f"); campaigns call only between {NIGHT_ENDS:%H:%M} and "
                            f"{NIGHT_STARTS:%H:%M}.")
                    hours = None
                    break
            if hours is None:
                break
    agents: list[str] = []
    if "agents" in body:
        for item in r.seq(body["agents"], f"'agents' of {what}"):
            a = r.text(item, f"an agent of {what}")
            if a is not _BAD:
                agents.append(str(a))
    retry: dict[str, int] = dict(DEFAULT_RETRY_S)
    if "retry_s" in body:
        rbody = r.mapping(body["retry_s"], f"'retry_s' of {what}", RESULTS) or {}
        for key, n in rbody.items():
            v = r.integer(n, f"the {key} retry of {what}", 60, 30 * 86400)
            if v is not _BAD:
                retry[key] = v
    fields_: list[str] = []
    if "fields" in body:
        for item in r.seq(body["fields"], f"'fields' of {what}"):
            f = r.ident(item, f"a field of {what}")
            if f is not _BAD:
                if f in fields_ or f in ("number", "name", "external_id"):
                    r.error(item.src, f"field '{f}' of {what} is given twice or is a built-in "
                                      f"column (number, name, external_id).")
                else:
                    fields_.append(f)
    message: list[str] = []
    if "message" in body:
        for item in r.seq(body["message"], f"'message' of {what}"):
            p = r.text(item, f"a prompt of the message of {what}")
            if p is not _BAD:
                message.append(p)
    ctype = got.get("type")
    if ctype is None or hours is None or "caller_id" not in got:
        return None
    # who takes the calls: preview and progressive need agents; a notice needs them only
    # for its "press 1"
    if "queue" in got and agents:
        r.error(src, f"{what} names both a 'queue' and 'agents'; give one.")
        return None
    connect_key = got.get("connect_key", "1")
    optout_key = got.get("optout_key", "9")
    if ctype in ("preview", "progressive") and "queue" not in got and not agents:
        r.error(src, f"{what} is a {ctype} campaign and needs a 'queue' or 'agents' to take "
                     f"the calls.")
        return None
    if ctype == "notice":
        if not message:
            r.error(src, f"{what} is a notice and needs a 'message' (a list of prompts).")
            return None
        if connect_key is not None and "queue" not in got and not agents:
            r.error(src, f"{what} offers 'connect_key' {connect_key} but names no 'queue' to "
                         f"connect to (give a queue, or connect_key: null).")
            return None
        if connect_key is not None and connect_key == optout_key:
            r.error(src, f"{what} uses {connect_key} both to connect and to opt out.")
            return None
        for p in message:
            for ref in _fields_in(p):
                if ref not in fields_ and ref not in ("number", "name"):
                    r.error(body["message"].src, f"the message of {what} uses ${{{ref}}}, "
                                                 f"which is not one of its 'fields'.")
                    return None
    elif "message" in body:
        r.error(body["message"].src, f"'message' of {what} is for notice campaigns only.")
        return None
    return Campaign(
        id=cid, name=got.get("name", cid), type=ctype, caller_id=got["caller_id"], hours=hours,
        queue=got.get("queue"), agents=tuple(agents), schedule=got.get("schedule"),
        max_attempts=got.get("max_attempts", 3), retry_s=tuple(sorted(retry.items())),
        max_concurrent=got.get("max_concurrent", 10), route=got.get("route"),
        route_max_concurrent=got.get("route_max_concurrent"), priority=got.get("priority", 5),
        abandon_cap_pct=got.get("abandon_cap_pct", 3.0), ring_s=got.get("ring_s", 30),
        fields=tuple(fields_), message=tuple(message),
        connect_key=connect_key if ctype == "notice" else None,
        optout_key=optout_key if ctype == "notice" else None, src=src)


def _fields_in(prompt: str) -> list[str]:
    import re

    return re.findall(r"\$\{([A-Za-z0-9_.-]+)\}", prompt)


def check_campaigns(r: _Reader, t: m.Tenant, ref: Any) -> None:
    """References of the tenant's campaigns; ``ref(src, what, kind, name, known, coll)`` is
    config's reporter (it knows which names were written but did not build).

    Routes are not in the model yet (another change adds them): a campaign's ``route`` is
    kept by name and not checked here.
    """
    queues = {q.id for q in t.queues}
    agents = {a.id for a in t.agents}
    schedules = {s.name for s in t.schedules}
    for c in t.campaigns:
        what = f"campaign '{c.id}'"
        if c.queue is not None:
            ref(c.src, what, "queue", c.queue, queues, "queues")
        for a in c.agents:
            ref(c.src, what, "agent", a, agents, "agents")
        if c.schedule is not None:
            ref(c.src, what, "schedule", c.schedule, schedules, "schedules")
    # one route shared by campaigns: its limit is one number
    limits: dict[str, tuple[int, Campaign]] = {}
    for c in t.campaigns:
        if c.route is None or c.route_max_concurrent is None:
            continue
        if c.route in limits and limits[c.route][0] != c.route_max_concurrent:
            other = limits[c.route][1]
            r.error(c.src, f"campaign '{c.id}' limits route '{c.route}' to "
                           f"{c.route_max_concurrent} calls, campaign '{other.id}' to "
                           f"{limits[c.route][0]} ({other.src.file}:{other.src.line}); give one "
                           f"limit.")
        limits.setdefault(c.route, (c.route_max_concurrent, c))
