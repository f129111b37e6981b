"""Call-volume forecast per 15/30-minute interval of one day, for ``hotline staffing``.

Two sources:

- **history** (default): the mean number of *offered* calls (queue segments, counted
  in the interval in which the caller entered the queue) in the same interval of the
  same weekday over the past N weeks. Weeks in which the queue had no offered call at
  all that day (closed, a holiday, before the queue existed) are left out of the mean,
  so they do not drag the forecast to zero; the result names the weeks it used.
- **file** (``--volume FILE``): a CSV of ``interval,calls`` rows.

Intervals are aligned to the tenant's time zone: each is a [start_ms, end_ms) pair of
epoch milliseconds computed in Python by ``daemon.stats.intervals`` (the reports' intervals:
stepping in real time from local midnight), passed to SQL as a VALUES CTE, and counted
there against ``segments.queue_entered_ms`` — one portable query for SQLite and
PostgreSQL, no database time-zone functions.
"""
from __future__ import annotations

import csv
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine, text

from daemon.stats.intervals import intervals as report_intervals
from daemon.stats.intervals import local_midnight_ms, to_ms

logger = logging.getLogger(__name__)

INTERVAL_MINUTES = (15, 30)
MAX_WEEKS = 52


class ForecastError(ValueError):
    """A problem the user can fix (bad volume file, bad arguments): one sentence."""


@dataclass(frozen=True)
class Interval:
    """One interval of a day in the tenant's time zone."""

    start: dt.datetime  # aware, tenant time zone
    end: dt.datetime
    start_ms: int  # epoch ms, inclusive
    end_ms: int  # epoch ms, exclusive

    @property
    def label(self) -> str:
        return self.start.strftime("%H:%M")


@dataclass(frozen=True)
class Forecast:
    """Forecast calls per interval and how they were obtained."""

    day: dt.date
    timezone: str
    interval_min: int
    intervals: tuple[Interval, ...]
    calls: tuple[float, ...]  # one per interval
    method: str  # "history" | "file"
    description: str  # one sentence for humans, e.g. "mean of the same weekday over ..."
    weeks: int = 0  # history: weeks looked at
    weeks_used: tuple[dt.date, ...] = ()  # history: the past days that had calls
    source: str = ""  # file: the path


def day_intervals(day: dt.date, timezone: str, minutes: int) -> tuple[Interval, ...]:
    """The intervals of ``day`` (local midnight to local midnight) in ``timezone``.

    The bounds are those of the reports (``daemon.stats.intervals``, one implementation):
    stepping happens in real time from local midnight, so a day when clocks change has
    23 or 25 hours' worth of intervals and each still lasts exactly ``minutes``.
    """
    if minutes not in INTERVAL_MINUTES:
        raise ForecastError(f"the interval must be 15 or 30 minutes, not {minutes}")
    first = local_midnight_ms(day, timezone)
    last = local_midnight_ms(day + dt.timedelta(days=1), timezone)
    return tuple(Interval(start=iv.start, end=iv.end, start_ms=iv.start_ms, end_ms=iv.end_ms)
                 for iv in report_intervals(first, last, f"{minutes}m", timezone))


def count_offered(
    db_url: str, queue: str, bounds: list[tuple[int, int, int]]
) -> dict[int, int]:
    """Offered calls (queue segments of ``queue``, qualified) per ``(id, start_ms, end_ms)``
    bound, by queue entry time. Ids with no calls are absent from the result."""
    if not bounds:
        return {}
    rows = ", ".join(f"(:i{n}, :s{n}, :e{n})" for n in range(len(bounds)))
    params: dict[str, object] = {"queue": queue, "kind": "queue"}
    for n, (ident, start, end) in enumerate(bounds):
        params[f"i{n}"], params[f"s{n}"], params[f"e{n}"] = int(ident), int(start), int(end)
    # The CTE carries the Python-computed bounds and the count stays in SQL. A correlated
    # COUNT per bound (rather than JOIN ... GROUP BY) pins the plan to one index range scan
    # of (queue, kind, queue_entered_ms) per interval: without table statistics PostgreSQL
    # planned the join as a hash join over every segment of the queue, 20-30x slower.
    sql = text(
        f"WITH bounds (iv, start_ms, end_ms) AS (VALUES {rows}) "
        "SELECT b.iv, (SELECT COUNT(*) FROM segments s "
        " WHERE s.queue = :queue AND s.kind = :kind "
        " AND s.queue_entered_ms >= b.start_ms AND s.queue_entered_ms < b.end_ms) AS n "
        "FROM bounds b"
    )
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return {int(iv): int(n) for iv, n in conn.execute(sql, params) if n}
    finally:
        engine.dispose()


def from_history(
    db_url: str, queue: str, day: dt.date, timezone: str, minutes: int = 30, weeks: int = 4
) -> Forecast:
    """Mean offered calls per interval over the same weekday of the past ``weeks`` weeks
    (weeks without any call in the queue that day are left out of the mean)."""
    if not 1 <= weeks <= MAX_WEEKS:
        raise ForecastError(f"--weeks must be between 1 and {MAX_WEEKS}, not {weeks}")
    target = day_intervals(day, timezone, minutes)
    past_days = [day - dt.timedelta(weeks=k) for k in range(1, weeks + 1)]
    # Weeks are matched by local wall-clock start ("09:00"): that is what makes Monday
    # 09:00 the same interval in every week, whatever the UTC offset was. Around clock
    # changes a label can occur twice in a day (the repeated hour) or not at all (the
    # skipped one): a week's value for a label is the mean of its occurrences that day,
    # and a label is averaged over the used weeks that have it.
    bounds: list[tuple[int, int, int]] = []
    where: dict[int, tuple[int, str]] = {}  # bound id -> (week index, label)
    slots: dict[int, dict[str, int]] = {}  # week -> label -> occurrences that day
    for w, past in enumerate(past_days):
        week_slots = slots.setdefault(w, {})
        for iv in day_intervals(past, timezone, minutes):
            ident = len(bounds)
            bounds.append((ident, iv.start_ms, iv.end_ms))
            where[ident] = (w, iv.label)
            week_slots[iv.label] = week_slots.get(iv.label, 0) + 1
    counts = count_offered(db_url, queue, bounds)
    per_week: dict[int, dict[str, int]] = {}
    for ident, n in counts.items():
        w, label = where[ident]
        week = per_week.setdefault(w, {})
        week[label] = week.get(label, 0) + n
    used = sorted(w for w, by_label in per_week.items() if sum(by_label.values()) > 0)
    calls: list[float] = []
    for iv in target:
        having = [w for w in used if iv.label in slots[w]]
        if not having:
            calls.append(0.0)
            continue
        total = sum(per_week[w].get(iv.label, 0) / slots[w][iv.label] for w in having)
        calls.append(total / len(having))
    weekday = day.strftime("%A")
    if used:
        description = (
            f"mean offered calls per interval on the same weekday ({weekday}) over the past "
            f"{weeks} weeks, {len(used)} of them with calls "
            f"({', '.join(past_days[w].isoformat() for w in used)})"
        )
    else:
        description = (
            f"no offered calls in this queue on the same weekday ({weekday}) in the past "
            f"{weeks} weeks: forecast is 0"
        )
    logger.debug("forecast %s %s: %s", queue, day, description)
    return Forecast(
        day=day,
        timezone=timezone,
        interval_min=minutes,
        intervals=target,
        calls=tuple(calls),
        method="history",
        description=description,
        weeks=weeks,
        weeks_used=tuple(past_days[w] for w in used),
    )


def from_file(path: str | Path, day: dt.date, timezone: str, minutes: int = 30) -> Forecast:
    """Calls per interval from a CSV ``interval,calls`` file (header row optional).

    ``interval`` is a local start time ``HH:MM`` or an ISO datetime (naive = tenant time
    zone; with an offset = converted to it) on ``day``; it must start one of the day's
    intervals. ``calls`` is a number >= 0. Intervals the file leaves out have 0 calls.
    """
    target = day_intervals(day, timezone, minutes)
    tz = ZoneInfo(timezone)
    by_ms = {iv.start_ms: n for n, iv in enumerate(target)}
    by_clock: dict[str, list[int]] = {}
    for n, iv in enumerate(target):
        by_clock.setdefault(iv.label, []).append(n)
    calls = [0.0] * len(target)
    seen: dict[int, int] = {}  # interval index -> line
    name = str(path)
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ForecastError(f"cannot read the volume file {name}: {exc.strerror}") from exc
    with handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if not row or all(not cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
                continue
            if line_no == 1 and row[0].strip().lower() == "interval":
                continue  # header
            where = f"{name}:{line_no}"
            if len(row) != 2:
                raise ForecastError(
                    f"{where}: expected 2 columns 'interval,calls', found {len(row)}"
                )
            when, value = row[0].strip(), row[1].strip()
            index = _interval_index(when, day, tz, minutes, by_ms, by_clock, where)
            try:
                n = float(value)
            except ValueError:
                raise ForecastError(f"{where}: calls must be a number, not {value!r}") from None
            if not n >= 0 or n == float("inf"):
                raise ForecastError(
                    f"{where}: calls must be a finite number of 0 or more, not {value!r}"
                )
            if index in seen:
                raise ForecastError(
                    f"{where}: interval {when} is already given on line {seen[index]}"
                )
            seen[index] = line_no
            calls[index] = n
    return Forecast(
        day=day,
        timezone=timezone,
        interval_min=minutes,
        intervals=target,
        calls=tuple(calls),
        method="file",
        description=f"calls per interval from the volume file {name}",
        source=name,
    )


def _interval_index(
    when: str,
    day: dt.date,
    tz: ZoneInfo,
    minutes: int,
    by_ms: dict[int, int],
    by_clock: dict[str, list[int]],
    where: str,
) -> int:
    if len(when) in (4, 5) and ":" in when and "T" not in when:
        try:
            clock = dt.datetime.strptime(when, "%H:%M").strftime("%H:%M")
        except ValueError:
            raise ForecastError(_bad_interval(where, when)) from None
        found = by_clock.get(clock)
        if not found:
            raise ForecastError(
                f"{where}: {when} is not the start of a {minutes}-minute interval "
                f"on {day.isoformat()}"
            )
        return found[0]
    try:
        moment = dt.datetime.fromisoformat(when)
    except ValueError:
        raise ForecastError(_bad_interval(where, when)) from None
    moment = moment.replace(tzinfo=tz) if moment.tzinfo is None else moment.astimezone(tz)
    if moment.date() != day:
        raise ForecastError(
            f"{where}: {when} is not on {day.isoformat()} in time zone {tz.key}"
        )
    index = by_ms.get(to_ms(moment))
    if index is None or moment.second or moment.microsecond:
        raise ForecastError(f"{where}: {when} is not the start of a {minutes}-minute interval")
    return index


def _bad_interval(where: str, when: str) -> str:
    return f"{where}: interval must be HH:MM or an ISO datetime, not {when!r}"
