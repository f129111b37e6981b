"""Moments a user types (``--from``, ``--to``, ``--at``), read on a tenant's wall clock.

One reader for ``hotline calls``, ``report`` and ``trace``, so the three accept the
same words and mean the same thing by them:

* ``2026-11-22`` - that day (as an end of a range: the whole day, so the next midnight);
* ``2026-11-22T09:05``, ``2026-11-22 09:05[:30[.123]]`` - that wall-clock time;
* ``...Z`` or ``...+08:00`` - that instant, whatever the zone;
* ``today``, ``yesterday`` - that day, optionally with a time (``today 09:05``);
* ``now`` - this instant.

A time without an offset is read in the zone given (a tenant's zone, or UTC when the
user asked for ``--utc``). Anything else raises :class:`MomentError` with a sentence.
"""
from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ACCEPTED = ("YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (optionally with Z or +HH:MM), "
            "today, yesterday, 'today HH:MM', now")

_DAY_WORDS = {"today": 0, "yesterday": 1}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_WORD_TIME = re.compile(r"(today|yesterday)(?:[ T](\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?))?")


class MomentError(ValueError):
    """A --from/--to/--at value that cannot be read (the message is one sentence)."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MomentError(f"unknown time zone {name!r}") from None


def parse_moment(text: str, tz: str, *, end: bool = False,
                 now: dt.datetime | None = None, option: str = "the time") -> dt.datetime:
    """``text`` as an aware datetime; naive values are on the wall clock of ``tz``.

    ``end=True`` reads a bare day (``2026-11-22``, ``today``) as the end of a range that
    includes that day: the next midnight. ``now`` (aware) fixes "today" for tests.
    ``option`` names the option in the error sentence (``--from``).
    """
    where = zone(tz)
    value = text.strip()
    current = (now or dt.datetime.now(dt.timezone.utc)).astimezone(where)
    lowered = value.lower()
    if lowered == "now":
        return current
    word = _WORD_TIME.fullmatch(lowered)
    if word:
        day = current.date() - dt.timedelta(days=_DAY_WORDS[word[1]])
        if word[2] is None:
            return _midnight(day + dt.timedelta(days=1) if end else day, where)
        value = f"{day.isoformat()}T{word[2]}"
    elif _DATE.fullmatch(value):
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise MomentError(f"{option} {text!r} is not a date of the calendar "
                              f"(write {ACCEPTED})") from None
        return _midnight(day + dt.timedelta(days=1) if end else day, where)
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    try:
        if not _DATE.match(value):
            raise ValueError(value)
        moment = dt.datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        raise MomentError(f"cannot read {option} {text!r}: write {ACCEPTED}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=where)
    return moment


def parse_ms(text: str, tz: str, *, end: bool = False, now: dt.datetime | None = None,
             option: str = "the time") -> int:
    """:func:`parse_moment` as epoch milliseconds."""
    return round(parse_moment(text, tz, end=end, now=now, option=option).timestamp() * 1000)


def _midnight(day: dt.date, where: ZoneInfo) -> dt.datetime:
    # a midnight skipped by DST resolves (fold=0) to the transition: the day starts then
    return dt.datetime.combine(day, dt.time(0), where)
