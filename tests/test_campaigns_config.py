"""Campaigns in the YAML: the example's two campaigns load; mistakes come back at file:line;
the dialing window keeps nights and holidays free across DST changes and midnight."""
from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import zoneinfo
from pathlib import Path

import pytest

from daemon.definition import model as m
from daemon.definition.campaigns import may_dial, next_window_start
from daemon.definition.config import ConfigErrors, load_center

REPO = Path(__file__).resolve().parent.parent
UTC = dt.timezone.utc


@pytest.fixture
def example(tmp_path: Path) -> Path:
    dst = tmp_path / "config"
    shutil.copytree(REPO / "config", dst)
    return dst


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_center(path, env={})
    return [str(e) for e in info.value.errors]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def line_of(path: Path, needle: str) -> int:
    text = path.read_text(encoding="utf-8")
    return text.count("\n", 0, text.index(needle)) + 1


def test_the_example_has_a_revisit_and_an_outage_notice():
    t = load_center(REPO / "config", env={}).tenant("cityutil")
    revisit, notice = t.campaign("revisit"), t.campaign("outage_notice")
    assert (revisit.type, revisit.queue, revisit.max_attempts) == ("progressive", "billing", 3)
    assert revisit.retry_delay_s("busy") == 900 and revisit.retry_delay_s("machine") == 7200
    assert revisit.fields == ("work_order", "district")
    assert (notice.type, notice.connect_key, notice.optout_key) == ("notice", "1", "9")
    assert notice.message[1] == "cityutil/district-${district}.wav"


def test_night_hours_an_unknown_queue_and_a_notice_without_message_are_each_reported(example):
    f = example / "cityutil" / "campaigns.yaml"
    edit(f, 'daily: "09:00-20:00"', 'daily: "07:00-20:00"')
    edit(f, "queue: billing ", "queue: bilings ")
    edit(f, "type: notice", "type: notise")
    errs = errors_of(example)
    hours_line = line_of(f, 'daily: "07:00-20:00"')
    assert any(f"campaigns.yaml:{hours_line}:" in e and "reach into the night on mon (07:00-20:00)"
               in e for e in errs), errs
    assert any("campaign 'revisit' refers to queue 'bilings'" in e and "billing" in e
               for e in errs), errs
    assert any(f"campaigns.yaml:{line_of(f, 'type: notise')}:" in e
               and "'notise', which is not one of preview, progressive, notice" in e
               for e in errs), errs


def test_a_notice_using_an_undeclared_field_and_keys_clashing_are_refused(example):
    f = example / "cityutil" / "campaigns.yaml"
    edit(f, "fields: [district, date]", "fields: [district]")
    errs = errors_of(example)
    assert any("uses ${date}, which is not one of its 'fields'" in e for e in errs), errs


def test_a_progressive_campaign_without_agents_is_refused(example):
    f = example / "cityutil" / "campaigns.yaml"
    edit(f, "        queue: billing               # the billing desk's agents take the revisits\n",
         "")
    errs = errors_of(example)
    assert any(f"campaigns.yaml:{line_of(f, 'revisit:')}:" in e and
               "progressive campaign and needs a 'queue' or 'agents'" in e for e in errs), errs


# ---- the dialing window ---------------------------------------------------------------------
def _tenant(tz: str, campaign_hours: str = "09:00-20:00") -> tuple[m.Tenant, object]:
    center = load_center(REPO / "config", env={})
    city = center.tenant("cityutil")
    start, end = (dt.time.max if x == "24:00" else dt.time.fromisoformat(x)
                  for x in campaign_hours.split("-"))
    rng = m.TimeRange(start, end)
    c = dataclasses.replace(city.campaign("outage_notice"), hours=tuple((rng,) for _ in range(7)))
    return dataclasses.replace(city, timezone=tz, campaigns=(c,)), c


def at(tz: str, text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(tz)).astimezone(UTC)


def test_window_follows_the_local_clock_across_the_spring_dst_change():
    # Europe/Berlin jumps 02:00 -> 03:00 on 2026-03-29: 09:00 local is 07:00 UTC that day,
    # 08:00 UTC the day before
    t, c = _tenant("Europe/Berlin")
    assert not may_dial(t, c, dt.datetime(2026, 3, 29, 6, 59, tzinfo=UTC)).open
    assert may_dial(t, c, dt.datetime(2026, 3, 29, 7, 0, tzinfo=UTC)).open
    assert not may_dial(t, c, dt.datetime(2026, 3, 28, 7, 30, tzinfo=UTC)).open
    assert may_dial(t, c, dt.datetime(2026, 3, 28, 8, 0, tzinfo=UTC)).open
    # the autumn change (2026-10-25, 03:00 -> 02:00): 20:00 local closes at 19:00 UTC
    assert may_dial(t, c, dt.datetime(2026, 10, 25, 18, 59, tzinfo=UTC)).open
    assert not may_dial(t, c, dt.datetime(2026, 10, 25, 19, 0, tzinfo=UTC)).open


def test_no_call_around_midnight_even_when_an_hour_list_would_allow_it():
    t, c = _tenant("Asia/Shanghai", "08:00-24:00")  # validation refuses this; run time too
    for local in ("2026-12-07T23:59", "2026-12-08T00:00", "2026-12-08T00:30", "2026-12-07T21:00",
                  "2026-12-08T07:59"):
        w = may_dial(t, c, at("Asia/Shanghai", local))
        assert not w.open and w.reason.startswith("night"), (local, w)
    assert may_dial(t, c, at("Asia/Shanghai", "2026-12-08T08:00")).open
    assert may_dial(t, c, at("Asia/Shanghai", "2026-12-07T20:59")).open


def test_no_call_on_a_holiday_of_any_schedule_and_the_next_window_skips_it():
    t, c = _tenant("Asia/Shanghai")
    w = may_dial(t, c, at("Asia/Shanghai", "2026-10-03T10:00"))
    assert not w.open and "National Day 2026" in w.reason
    nxt = next_window_start(t, c, at("Asia/Shanghai", "2026-10-03T10:00"))
    assert nxt == at("Asia/Shanghai", "2026-10-08T09:00")


def test_the_campaign_schedule_closes_the_lunch_break():
    city = load_center(REPO / "config", env={}).tenant("cityutil")
    revisit = city.campaign("revisit")  # hours 14:00-17:30 and schedule business (13:00-17:30)
    assert may_dial(city, revisit, at("Asia/Shanghai", "2026-12-08T14:30")).open
    w = may_dial(city, revisit, at("Asia/Shanghai", "2026-12-08T12:30"))
    assert not w.open and "outside the campaign's hours" in w.reason
    # Saturday 2026-12-12 09:15: the campaign's sat hours start 09:30
    assert not may_dial(city, revisit, at("Asia/Shanghai", "2026-12-12T09:15")).open
    assert may_dial(city, revisit, at("Asia/Shanghai", "2026-12-12T09:45")).open
