"""Report intervals in a tenant's time zone, as [start_ms, end_ms) bounds.

Every report interval is aligned to the tenant's wall clock (15-minute rows start
at :00/:15/:30/:45 local time, days at local midnight, weeks on Monday, months on
the 1st) and is computed here, in Python, with ``zoneinfo``; the KPI queries only
join these integer bounds, so no database time-zone function is needed and SQLite
and PostgreSQL agree.

Daylight-saving time: days, weeks and months start at local midnight, so a
DST-change day is 23 or 25 hours long. Sub-day intervals step through real time
from local midnight (15 minutes of real time each, cut at the next midnight),
so the repeated autumn hour yields two rows with different UTC offsets and the
skipped spring hour yields none — no interval is empty by construction and no
call can fall in two.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

SIZES = ("15m", "30m", "1h", "day", "week", "month")
_SUB_DAY_MS = {"15m": 15 * 60_000, "30m": 30 * 60_000, "1h": 60 * 60_000}


@dataclass(frozen=True)
class Interval:
    """One report row's time range: [start_ms, end_ms) epoch ms, with its local labels."""

    start_ms: int
    end_ms: int
    tz: str

    @property
    def start(self) -> dt.datetime:
        return from_ms(self.start_ms, self.tz)

    @property
    def end(self) -> dt.datetime:
        return from_ms(self.end_ms, self.tz)


def from_ms(ms: int, tz: str) -> dt.datetime:
    """Epoch ms -> aware datetime in ``tz``."""
    return dt.datetime.fromtimestamp(ms / 1000, ZoneInfo(tz))


def to_ms(moment: dt.datetime) -> int:
    """Aware datetime -> epoch ms."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return int(round(moment.timestamp() * 1000))


def local_midnight_ms(day: dt.date, tz: str) -> int:
    """Epoch ms of the first instant of ``day`` in ``tz``.

    A midnight skipped by DST (e.g. clocks jump 00:00 -> 01:00) resolves, with
    fold=0, to the transition instant: the day starts when it really starts.
    """
    return to_ms(dt.datetime.combine(day, dt.time(0), ZoneInfo(tz)))


def local_ms(day: dt.date, time: dt.time, tz: str) -> int:
    """Epoch ms of a local wall-clock moment (fold=0 for repeated/skipped times)."""
    if time == dt.time.max:  # "24:00": the next local midnight
        return local_midnight_ms(day + dt.timedelta(days=1), tz)
    return to_ms(dt.datetime.combine(day, time, ZoneInfo(tz)))


def _period_start(day: dt.date, size: str) -> dt.date:
    if size == "week":
        return day - dt.timedelta(days=day.weekday())
    if size == "month":
        return day.replace(day=1)
    return day


def _next_period(day: dt.date, size: str) -> dt.date:
    if size == "week":
        return day + dt.timedelta(days=7)
    if size == "month":
        return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return day + dt.timedelta(days=1)


def floor_ms(ms: int, size: str, tz: str) -> int:
    """Start of the ``size`` interval (aligned in ``tz``) containing the instant ``ms``."""
    day = from_ms(ms, tz).date()
    if size in _SUB_DAY_MS:
        start = local_midnight_ms(day, tz)
        if start > ms:  # only possible around a skipped midnight
            day -= dt.timedelta(days=1)
            start = local_midnight_ms(day, tz)
        step = _SUB_DAY_MS[size]
        return start + (ms - start) // step * step
    return local_midnight_ms(_period_start(day, size), tz)


def intervals(start_ms: int, end_ms: int, size: str, tz: str) -> list[Interval]:
    """The aligned intervals covering [start_ms, end_ms), widened outward to whole intervals.

    The first interval is the one containing ``start_ms``, the last the one
    containing ``end_ms - 1``.
    """
    if size not in SIZES:
        raise ValueError(f"unknown interval {size!r} (one of {', '.join(SIZES)})")
    ZoneInfo(tz)  # fail early on an unknown zone
    if end_ms <= start_ms:
        return []
    out: list[Interval] = []
    first = floor_ms(start_ms, size, tz)
    day = from_ms(first, tz).date()
    if size in _SUB_DAY_MS:
        step = _SUB_DAY_MS[size]
        cursor = first
        while cursor < end_ms:
            day_end = local_midnight_ms(from_ms(cursor, tz).date() + dt.timedelta(days=1), tz)
            while cursor < day_end and cursor < end_ms:
                nxt = min(cursor + step, day_end)
                out.append(Interval(cursor, nxt, tz))
                cursor = nxt
        return out
    period = _period_start(day, size)
    cursor = local_midnight_ms(period, tz)
    while cursor < end_ms:
        period = _next_period(period, size)
        nxt = local_midnight_ms(period, tz)
        out.append(Interval(cursor, nxt, tz))
        cursor = nxt
    return out
