"""Schedule evaluation: business hours, closures and one-off exceptions of a tenant.

Two consumers share the same reading of a ``Schedule`` so they cannot disagree:

* ``hotline trace`` asks ``schedule_state(schedule, local_dt)`` whether a moment (in the
  tenant's time zone) is open and why;
* ``daemon.definition.render`` asks ``time_conditions(schedule)`` for the ordered FreeSWITCH time
  conditions that set a channel variable to ``open``/``closed`` while the dialplan hunts.

Precedence, lowest to highest: outside the weekly hours = closed; inside = open; a closure
(holiday) day = closed; a one-off exception day = its own hours (no hours = closed all day).
The dialplan reproduces this with "last writer wins": one ``continue="true"`` extension per
condition, in this order, each setting the variable inline.

FreeSWITCH facts this relies on (switch_xml.c, 1.10): ``wday`` 1 = Sunday … 7 = Saturday
(names and comma lists allowed); ``time-of-day`` "hh:mm[:ss]-hh:mm[:ss]" matches
start <= t < end (so "24:00" as an end means end of day); ``year``/``mon``/``mday`` are
numbers or "a-b" ranges. All of these are evaluated in the channel's ``timezone``
variable. ``date-time`` is NOT used: it is compared with mktime() in the server's own
zone, not the channel's.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from daemon.definition.model import (
    WEEKDAYS,
    Agent,
    Closure,
    DateException,
    Schedule,
    Shift,
    TimeRange,
)

logger = logging.getLogger(__name__)

# FreeSWITCH day names, index 0 = Monday like the model's weekly tuple
FS_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class ScheduleState:
    """Whether a schedule is open at a moment, and the one-line reason."""

    open: bool
    reason: str
    closure: str | None = None  # the holiday/closure name when closed by one
    exception: str | None = None  # the exception's name (or date) when one decided


@dataclass(frozen=True)
class TimeCondition:
    """One FreeSWITCH time condition and the state it sets when it matches.

    ``attrs`` are the condition's attributes in a fixed order (tuples keep the model
    hashable and the output deterministic); an empty ``attrs`` always matches.
    """

    state: str  # "open" | "closed"
    attrs: tuple[tuple[str, str], ...]
    label: str


def fmt_time(t: dt.time, *, end: bool = False) -> str:
    """``08:30`` (seconds only when set); ``dt.time.max`` as an end is ``24:00``."""
    if end and t == dt.time.max:
        return "24:00"
    if t.second:
        return f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return f"{t.hour:02d}:{t.minute:02d}"


def fmt_range(r: TimeRange) -> str:
    return f"{fmt_time(r.start)}-{fmt_time(r.end, end=True)}"


def _closure_on(schedule: Schedule, day: dt.date) -> Closure | None:
    return next((c for c in schedule.closures if c.first <= day <= c.last), None)


def _exception_on(schedule: Schedule, day: dt.date) -> DateException | None:
    return next((e for e in schedule.exceptions if e.date == day), None)


def schedule_state(schedule: Schedule, when: dt.datetime) -> ScheduleState:
    """Is ``schedule`` open at ``when`` (a wall-clock time in the tenant's zone)?"""
    day, t = when.date(), when.time().replace(tzinfo=None)
    exc = _exception_on(schedule, day)
    if exc is not None:
        label = exc.name or day.isoformat()
        hit = next((r for r in exc.hours if r.contains(t)), None)
        if hit is not None:
            return ScheduleState(True, f"exception '{label}' opens {fmt_range(hit)}",
                                 exception=label)
        if exc.hours:
            hours = ", ".join(fmt_range(r) for r in exc.hours)
            return ScheduleState(False, f"exception '{label}' is open only {hours}",
                                 exception=label)
        return ScheduleState(False, f"exception '{label}' closes the whole day", exception=label)
    closure = _closure_on(schedule, day)
    if closure is not None:
        span = (closure.first.isoformat() if closure.first == closure.last
                else f"{closure.first.isoformat()}..{closure.last.isoformat()}")
        return ScheduleState(False, f"closed for '{closure.name}' ({span})", closure=closure.name)
    wd = day.weekday()
    ranges = schedule.weekly[wd] if wd < len(schedule.weekly) else ()
    hit = next((r for r in ranges if r.contains(t)), None)
    if hit is not None:
        return ScheduleState(True, f"{WEEKDAYS[wd]} hours {fmt_range(hit)}")
    if not ranges:
        return ScheduleState(False, f"closed all day on {WEEKDAYS[wd]}")
    hours = ", ".join(fmt_range(r) for r in ranges)
    return ScheduleState(False, f"outside {WEEKDAYS[wd]} hours {hours}")


def _month_spans(first: dt.date, last: dt.date) -> Iterator[tuple[int, int, int, int]]:
    """(year, month, first mday, last mday) pieces of an inclusive date span."""
    cur = first
    while cur <= last:
        nxt_month = (cur.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        end = min(last, nxt_month - dt.timedelta(days=1))
        yield cur.year, cur.month, cur.day, end.day
        cur = end + dt.timedelta(days=1)


def _day_attrs(year: int, month: int, d1: int, d2: int) -> tuple[tuple[str, str], ...]:
    mday = str(d1) if d1 == d2 else f"{d1}-{d2}"
    return (("year", str(year)), ("mon", str(month)), ("mday", mday))


def time_conditions(schedule: Schedule) -> tuple[TimeCondition, ...]:
    """The ordered conditions whose last match decides open/closed (see module doc)."""
    out: list[TimeCondition] = [TimeCondition("closed", (), "default: closed")]
    # weekly ranges: one condition per distinct range, listing the days that share it
    by_range: dict[TimeRange, list[int]] = {}
    for wd, ranges in enumerate(schedule.weekly[:7]):
        for r in ranges:
            by_range.setdefault(r, []).append(wd)
    for r, days in sorted(by_range.items(), key=lambda kv: (kv[1][0], kv[0].start, kv[0].end)):
        names = ",".join(FS_DAY_NAMES[d] for d in days)
        out.append(TimeCondition("open", (("wday", names), ("time-of-day", fmt_range(r))),
                                 f"{names} {fmt_range(r)}"))
    for c in sorted(schedule.closures, key=lambda c: (c.first, c.last, c.name)):
        for year, month, d1, d2 in _month_spans(c.first, c.last):
            out.append(TimeCondition("closed", _day_attrs(year, month, d1, d2),
                                     f"closure {c.name}"))
    for e in sorted(schedule.exceptions, key=lambda e: e.date):
        day = _day_attrs(e.date.year, e.date.month, e.date.day, e.date.day)
        label = e.name or e.date.isoformat()
        out.append(TimeCondition("closed", day, f"exception {label}"))
        for r in e.hours:
            out.append(TimeCondition("open", day + (("time-of-day", fmt_range(r)),),
                                     f"exception {label} {fmt_range(r)}"))
    return tuple(out)


def _shift_covers(shift: Shift, when: dt.datetime) -> bool:
    t = when.time().replace(tzinfo=None)
    wd = when.weekday()
    if shift.start < shift.end:
        return shift.weekday == wd and shift.start <= t < shift.end
    # overnight shift (end <= start): the evening of its day and the morning after
    return ((shift.weekday == wd and t >= shift.start)
            or ((shift.weekday + 1) % 7 == wd and t < shift.end))


@dataclass(frozen=True)
class AgentAvailability:
    rostered: bool  # within start/end dates
    on_shift: bool | None  # None = the agent has no shift schedule
    reason: str


def agent_availability(agent: Agent, when: dt.datetime) -> AgentAvailability:
    """Roster (start/end dates) and weekly shifts of ``agent`` at a tenant-local moment."""
    day = when.date()
    if agent.start_date is not None and day < agent.start_date:
        return AgentAvailability(False, None, f"starts {agent.start_date.isoformat()}")
    if agent.end_date is not None and day > agent.end_date:
        return AgentAvailability(False, None, f"left {agent.end_date.isoformat()}")
    if not agent.shifts:
        return AgentAvailability(True, None, "rostered, no shift schedule")
    hit = next((s for s in agent.shifts if _shift_covers(s, when)), None)
    if hit is None:
        return AgentAvailability(True, False, "rostered, off shift")
    return AgentAvailability(
        True, True,
        f"on shift {WEEKDAYS[hit.weekday]} {fmt_time(hit.start)}-{fmt_time(hit.end, end=True)}")
