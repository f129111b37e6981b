"""hotline staffing: forecast from history (SQLite and PostgreSQL) or a volume file,
Erlang C per interval, shrinkage, and the comparison with the YAML schedule."""
from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, insert

from daemon.definition.model import Agent, CallCenter, Queue, Shift, SkillRequirement, Tenant, Tier
from daemon.stats.forecast import ForecastError, day_intervals, from_file, from_history
from daemon.stats.staffing import (
    StaffingError,
    aht_from_history,
    build_plan,
    format_table,
    parse_percent,
    parse_target,
    scheduled_agents,
)
from daemon.storage import schema

TZ = "America/New_York"  # 2026-11-01 ends daylight time: the history spans both offsets
DOMAIN = "acme.test"
BILLING = f"billing@{DOMAIN}"
DAY = dt.date(2026, 11, 23)  # a Monday; history Mondays: 11-16, 11-09, 11-02, 10-26


def _ms(day: dt.date, hh: int, mm: int, ss: int = 0, ms: int = 0) -> int:
    local = dt.datetime(day.year, day.month, day.day, hh, mm, ss, ms * 1000, tzinfo=ZoneInfo(TZ))
    return int(local.timestamp() * 1000)


def _create_tables(url: str) -> None:
    try:
        from daemon.storage.store import migrate
    except ImportError:  # the store helper's migrations are not there yet
        engine = create_engine(url)
        schema.metadata.create_all(engine)
        engine.dispose()
        return
    migrate(url)


class History:
    """Hand-built segments rows, inserted in one go."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.n = 0

    def call(self, entered_ms: int, queue: str = BILLING, outcome: str = "abandoned",
             talk_s: int = 0, hold_s: int = 0, wrapup_s: int = 0) -> None:
        self.n += 1
        call_id = f"call-{self.n}"
        self._seg(call_id, "queue", entered_ms, entered_ms + 5000, queue, entered_ms, outcome)
        at = entered_ms + 5000
        for kind, secs in (("talk", talk_s), ("hold", hold_s), ("wrapup", wrapup_s)):
            if secs:
                self._seg(call_id, kind, at, at + secs * 1000, queue, entered_ms, None)
                at += secs * 1000

    def _seg(self, call_id, kind, start, end, queue, entered, outcome) -> None:
        self.rows.append({
            "segment_id": f"{call_id}:{kind}:1", "call_id": call_id, "tenant": DOMAIN,
            "node": "fs1", "kind": kind, "started_ms": start, "ended_ms": end,
            "duration_ms": end - start, "caller": "5551000", "dialed": "8000", "queue": queue,
            "agent": f"1001@{DOMAIN}" if kind != "queue" else None, "outcome": outcome,
            "visit_id": f"{call_id}-member", "queue_entered_ms": entered,
        })

    def write(self, url: str) -> None:
        _create_tables(url)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(insert(schema.segments), self.rows)
        engine.dispose()


def _history() -> History:
    h = History()
    d16, d09, d02, d26, d19 = (dt.date(2026, 11, 16), dt.date(2026, 11, 9), dt.date(2026, 11, 2),
                               dt.date(2026, 10, 26), dt.date(2026, 10, 19))
    # 2026-11-16: 6 calls in 09:00-09:30, 2 in 09:30-10:00
    for minute in (0, 1, 5, 14, 20, 29):
        h.call(_ms(d16, 9, minute))
    h.call(_ms(d16, 9, 30))
    h.call(_ms(d16, 9, 59, 59))
    # 2026-11-09: 4 calls at 09:00-09:30, one a millisecond before 09:00 local
    for minute in (2, 10, 16, 25):
        h.call(_ms(d09, 9, minute))
    h.call(_ms(d09, 8, 59, 59, 999))
    # 2026-11-02: the queue was closed (no calls) -> left out of the mean
    # 2026-10-26, still daylight time (UTC-4): 2 calls in 09:00-09:30 local, both answered
    # with handle times 100+20+30 = 150 s and 200+0+10 = 210 s -> AHT 180 s
    h.call(_ms(d26, 9, 10), outcome="answered", talk_s=100, hold_s=20, wrapup_s=30)
    h.call(_ms(d26, 9, 20), outcome="answered", talk_s=200, wrapup_s=10)
    # five weeks back: outside --weeks 4, inside --weeks 5
    for _ in range(10):
        h.call(_ms(d19, 9, 0), outcome="answered", talk_s=600)
    # other queue at the same time, and a call on the day being planned: never counted
    h.call(_ms(d16, 9, 0), queue=f"sales@{DOMAIN}")
    h.call(_ms(DAY, 9, 0))
    return h


@pytest.fixture
def history_db(empty_db_url):
    _history().write(empty_db_url)
    return empty_db_url


def _row(forecast, label):
    for iv, calls in zip(forecast.intervals, forecast.calls):
        if iv.label == label:
            return calls
    raise AssertionError(f"no interval {label}")


# --- forecast from history ------------------------------------------------------------------

def test_history_forecast_is_the_mean_of_the_weeks_with_calls_in_local_time(history_db):
    fc = from_history(history_db, BILLING, DAY, TZ, minutes=30, weeks=4)
    assert fc.method == "history"
    assert fc.weeks_used == (dt.date(2026, 11, 16), dt.date(2026, 11, 9), dt.date(2026, 10, 26))
    assert "same weekday (Monday)" in fc.description and "3 of them with calls" in fc.description
    assert len(fc.intervals) == 48
    assert _row(fc, "09:00") == pytest.approx((6 + 4 + 2) / 3)
    assert _row(fc, "09:30") == pytest.approx(2 / 3)
    assert _row(fc, "08:30") == pytest.approx(1 / 3)  # 08:59:59.999 belongs to 08:30
    assert _row(fc, "10:00") == 0.0
    assert sum(fc.calls) == pytest.approx(15 / 3)


def test_history_forecast_in_15_minute_intervals_and_more_weeks(history_db):
    fc = from_history(history_db, BILLING, DAY, TZ, minutes=15, weeks=4)
    assert len(fc.intervals) == 96
    # 09:00-09:15: 11-16 {0,1,5,14}, 11-09 {2,10}, 10-26 {10} -> 7 / 3
    assert _row(fc, "09:00") == pytest.approx(7 / 3)
    assert _row(fc, "09:15") == pytest.approx((2 + 2 + 1) / 3)
    five = from_history(history_db, BILLING, DAY, TZ, minutes=30, weeks=5)
    assert len(five.weeks_used) == 4
    assert _row(five, "09:00") == pytest.approx((6 + 4 + 2 + 10) / 4)


def test_history_forecast_of_a_queue_without_calls_is_zero(history_db):
    fc = from_history(history_db, f"empty@{DOMAIN}", DAY, TZ, minutes=30, weeks=4)
    assert fc.weeks_used == ()
    assert set(fc.calls) == {0.0}
    assert "forecast is 0" in fc.description


def test_aht_from_history_is_mean_talk_hold_wrapup_of_answered_calls(history_db):
    start = _ms(DAY - dt.timedelta(weeks=4), 0, 0)
    mean, answered = aht_from_history(history_db, BILLING, start, _ms(DAY, 0, 0))
    assert answered == 2
    assert mean == pytest.approx((150 + 210) / 2)


# --- volume files ---------------------------------------------------------------------------

def test_volume_file_with_clock_times_iso_datetimes_and_gaps(tmp_path):
    path = tmp_path / "volume.csv"
    path.write_text(
        "interval,calls\n"
        "# a comment line\n"
        "09:00,100\n"
        "9:30,12.5\n"
        "2026-11-23T10:00,7\n"
        "2026-11-23T15:30:00+00:00,3\n",  # 10:30 in New York
        encoding="utf-8",
    )
    fc = from_file(path, DAY, TZ, minutes=30)
    assert fc.method == "file" and str(path) in fc.description
    assert _row(fc, "09:00") == 100
    assert _row(fc, "09:30") == 12.5
    assert _row(fc, "10:00") == 7
    assert _row(fc, "10:30") == 3
    assert _row(fc, "11:00") == 0  # not in the file
    assert sum(fc.calls) == pytest.approx(122.5)


@pytest.mark.parametrize(("content", "line", "words"), [
    ("interval,calls\n09:00,10\n9h00,3\n", 3, "HH:MM"),
    ("09:10,4\n", 1, "not the start of a 30-minute interval"),
    ("09:00,-1\n", 1, "0 or more"),
    ("09:00,many\n", 1, "must be a number"),
    ("09:00,1\n10:00,2\n09:00,3\n", 3, "already given on line 1"),
    ("2026-11-24T09:00,5\n", 1, "is not on 2026-11-23"),
    ("09:00,1,2\n", 1, "expected 2 columns"),
])
def test_bad_volume_rows_name_the_line(tmp_path, content, line, words):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ForecastError) as info:
        from_file(path, DAY, TZ, minutes=30)
    message = str(info.value)
    assert f"bad.csv:{line}:" in message
    assert words in message


def test_missing_volume_file_is_a_clear_error(tmp_path):
    with pytest.raises(ForecastError, match="cannot read the volume file"):
        from_file(tmp_path / "nope.csv", DAY, TZ)


def test_clock_change_days_have_23_and_25_hours_of_intervals():
    assert len(day_intervals(dt.date(2026, 11, 1), TZ, 30)) == 50
    assert len(day_intervals(dt.date(2026, 3, 8), TZ, 30)) == 46
    assert len(day_intervals(dt.date(2026, 3, 8), TZ, 15)) == 92
    fall = day_intervals(dt.date(2026, 11, 1), TZ, 30)
    assert [iv.label for iv in fall].count("01:30") == 2  # the repeated hour, twice


@pytest.mark.parametrize("day", [dt.date(2026, 3, 8), dt.date(2026, 11, 1), DAY])
@pytest.mark.parametrize("minutes", [15, 30])
def test_forecast_intervals_are_the_report_intervals(day, minutes):
    """One implementation: the staffing plan's intervals are those of `hotline report`."""
    from daemon.stats.intervals import intervals, local_midnight_ms

    midnight, next_midnight = (local_midnight_ms(day, TZ),
                               local_midnight_ms(day + dt.timedelta(days=1), TZ))
    report = intervals(midnight, next_midnight, f"{minutes}m", TZ)
    plan = day_intervals(day, TZ, minutes)
    assert [(iv.start_ms, iv.end_ms) for iv in plan] == [(iv.start_ms, iv.end_ms) for iv in report]
    assert [iv.start for iv in plan] == [iv.start for iv in report]


# --- the plan -------------------------------------------------------------------------------

def _monday(start: str, end: str) -> Shift:
    stop = dt.time.max if end == "24:00" else dt.time.fromisoformat(end)
    return Shift(0, dt.time.fromisoformat(start), stop)


def _agent(agent_id: str, shifts=(), skills=(), start=None, end=None) -> Agent:
    return Agent(id=agent_id, name=agent_id, extension=agent_id, password="x", shifts=tuple(shifts),
                 skills=tuple(skills), start_date=start, end_date=end)


def _center() -> CallCenter:
    agents = (
        _agent("1001", [_monday("09:00", "17:00")]),
        _agent("1002", [_monday("08:00", "09:15"), _monday("09:15", "12:00")]),  # back to back
        _agent("1003", [_monday("09:00", "17:00")], end=dt.date(2026, 11, 22)),  # has left
        _agent("1004", [_monday("09:00", "17:00")], skills=[("sales", 5)]),  # other queue only
        _agent("1005", [_monday("09:00", "17:00")], start=dt.date(2026, 11, 24)),  # starts later
        _agent("1006", [_monday("09:10", "17:00")]),  # misses the start of 09:00-09:30
        _agent("1007", [Shift(6, dt.time(22, 0), dt.time.max), _monday("00:00", "02:00")]),
        _agent("1008", [Shift(1, dt.time(9, 0), dt.time(17, 0))]),  # Tuesdays
    )
    billing = Queue(id="billing", name="Billing", service_level_s=30, service_level_target_pct=90.0,
                    tiers=tuple(Tier(a) for a in
                                ("1001", "1002", "1003", "1005", "1006", "1007", "1008")))
    sales = Queue(id="sales", name="Sales", skills=(SkillRequirement("sales", 3),))
    tenant = Tenant(id="acme", domain=DOMAIN, timezone=TZ, queues=(billing, sales), agents=agents)
    return CallCenter((tenant,))


def _by_label(plan):
    return {iv.label: iv for iv in plan.intervals}


def test_scheduled_agents_follow_tiers_roster_and_shifts():
    center = _center()
    tenant = center.tenants[0]
    billing, sales = tenant.queues
    ivs = {iv.label: iv for iv in day_intervals(DAY, TZ, 30)}
    assert scheduled_agents(tenant, billing, DAY, ivs["09:00"]) == ("1001", "1002")
    assert scheduled_agents(tenant, billing, DAY, ivs["09:30"]) == ("1001", "1002", "1006")
    assert scheduled_agents(tenant, billing, DAY, ivs["12:00"]) == ("1001", "1006")
    assert scheduled_agents(tenant, billing, DAY, ivs["00:00"]) == ("1007",)
    assert scheduled_agents(tenant, billing, DAY, ivs["17:00"]) == ()
    assert scheduled_agents(tenant, sales, DAY, ivs["09:00"]) == ("1004",)


def test_plan_from_volume_file_reproduces_the_published_example_and_compares_schedule(tmp_path):
    # Call Centre Helper's example (see tests/test_erlang.py): 100 calls in 30 min, AHT 180 s,
    # 80/20 -> 14 agents, SL 88.8 %, Pw 17.4 %; 30 % shrinkage -> 20 to schedule
    path = tmp_path / "volume.csv"
    path.write_text("interval,calls\n09:00,100\n09:30,0\n", encoding="utf-8")
    plan = build_plan(_center(), "billing", DAY, target="80/20", aht_s=180, shrinkage="30%",
                      volume=path, interval_min=30)
    rows = _by_label(plan)
    nine = rows["09:00"]
    assert nine.traffic == pytest.approx(10.0)
    assert nine.required == 14
    assert nine.service_level_pct == pytest.approx(88.8, abs=0.1)
    assert nine.p_wait_pct == pytest.approx(17.4, abs=0.05)
    assert nine.required_scheduled == 20
    assert nine.scheduled == 2 and nine.difference == -18
    idle = rows["09:30"]
    assert idle.required == 0 and idle.required_scheduled == 0
    assert idle.service_level_pct == 100.0 and idle.asa_s == 0.0
    assert idle.scheduled == 3 and idle.difference == 3
    assert plan.aht.method == "option" and plan.target_source == "--target"
    data = plan.to_dict()
    assert data["totals"]["intervals_under"] == 1
    assert data["totals"]["peak_agents_with_shrinkage"] == 20
    json.dumps(data)  # JSON-ready as is


def test_plan_from_history_takes_aht_and_target_from_db_and_yaml(history_db):
    plan = build_plan(_center(), f"billing@{DOMAIN}", DAY, db_url=history_db, interval_min=30)
    assert plan.target.pct == 90.0 and plan.target.seconds == 30
    assert plan.target_source == "queue YAML"
    assert plan.aht.method == "history" and plan.aht.seconds == pytest.approx(180.0)
    assert "2 answered calls" in plan.aht.description
    assert plan.forecast.method == "history"
    nine = _by_label(plan)["09:00"]
    assert nine.calls == pytest.approx(4.0)
    assert nine.traffic == pytest.approx(4.0 * 180 / 1800)
    assert nine.required >= 1 and nine.service_level_pct >= 90.0
    assert nine.scheduled == 2


def test_table_and_json_come_from_the_same_figures(tmp_path):
    path = tmp_path / "volume.csv"
    path.write_text("09:00,100\n", encoding="utf-8")
    plan = build_plan(_center(), "billing", DAY, target="80/20", aht_s=180, shrinkage="30",
                      volume=path)
    data = plan.to_dict()
    table = format_table(data)
    line = next(ln for ln in table.splitlines() if ln.startswith("09:00-09:30"))
    cells = line.split()
    assert cells[1:5] == ["100.0", "10.00", "14", "88.8"]
    assert cells[-3:] == ["20", "2", "-18"]
    assert all(len(ln) <= 100 for ln in table.splitlines())


# --- arguments ------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["80-20", "80", "/20", "0/20", "100/20", "eighty/20"])
def test_bad_target_is_refused(bad):
    with pytest.raises(StaffingError, match="80/20|above 0 and below 100"):
        parse_target(bad)


def test_targets_and_percentages_parse():
    assert parse_target("80/20").pct == 80 and parse_target("80/20").seconds == 20
    assert parse_target("90%/15").seconds == 15
    assert parse_percent("30%", "--shrinkage") == pytest.approx(0.30)
    assert parse_percent("0", "--shrinkage") == 0.0


@pytest.mark.parametrize("bad", ["120%", "100%", "-5%", "lots"])
def test_bad_shrinkage_is_refused(bad):
    with pytest.raises(StaffingError, match="--shrinkage"):
        parse_percent(bad, "--shrinkage")


def test_unknown_queue_suggests_the_nearest(tmp_path):
    with pytest.raises(StaffingError, match="did you mean 'billing'"):
        build_plan(_center(), "biling", DAY, aht_s=180, volume=tmp_path / "x.csv")


def test_history_without_answered_calls_asks_for_aht(empty_db_url):
    _create_tables(empty_db_url)
    with pytest.raises(StaffingError, match="give --aht"):
        build_plan(_center(), "billing", DAY, db_url=empty_db_url)


def test_missing_sqlite_file_is_a_clear_error(tmp_path):
    with pytest.raises(StaffingError, match="does not exist"):
        build_plan(_center(), "billing", DAY, aht_s=180, db_url=f"sqlite:///{tmp_path / 'none.db'}")


# --- the command ----------------------------------------------------------------------------

CONFIG_YAML = """\
tenants:
  acme:
    domain: acme.test
    timezone: America/New_York
    queues:
      billing:
        name: Billing
        service_level_s: 20
        service_level_target_pct: 80
        tiers:
          - {agent: "1001"}
          - {agent: "1002"}
    agents:
      "1001": {password: x, shifts: {mon-fri: "09:00-17:00"}}
      "1002": {password: x, shifts: {mon: ["08:00-09:15", "09:15-12:00"]}}
"""


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    for var in ("HOTLINE_CONFIG_DIR", "HOTLINE_DATABASE_URL", "HOTLINE_SETTINGS"):
        monkeypatch.delenv(var, raising=False)
    d = tmp_path / "config"
    d.mkdir()
    (d / "acme.yaml").write_text(CONFIG_YAML, encoding="utf-8")
    return d


def _run(*args):
    from click.testing import CliRunner

    from cli import hotline

    return CliRunner().invoke(hotline, ["staffing", *args], catch_exceptions=False)


def test_command_json_from_history(config_dir, history_db):
    result = _run("--queue", "billing", "--date", "2026-11-23", "--shrinkage", "25%",
                  "--config", str(config_dir), "--db", history_db, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["queue"] == BILLING and data["timezone"] == TZ
    assert data["target"] == {"service_level_pct": 80.0, "answer_time_s": 20,
                              "source": "queue YAML"}
    assert data["aht"]["method"] == "history" and data["aht"]["seconds"] == 180.0
    assert data["forecast"]["weeks_used"] == ["2026-11-16", "2026-11-09", "2026-10-26"]
    nine = next(r for r in data["intervals"] if r["interval_start"].startswith("2026-11-23T09:00"))
    assert nine["calls"] == 4.0 and nine["traffic_erlangs"] == 0.4
    assert nine["agents_scheduled"] == 2 and nine["scheduled_agents"] == ["1001", "1002"]
    assert nine["over_under"] == nine["agents_scheduled"] - nine["agents_with_shrinkage"]


def test_command_table_from_volume_file_without_database(config_dir, tmp_path):
    volume = tmp_path / "v.csv"
    volume.write_text("09:00,100\n", encoding="utf-8")
    result = _run("--queue", "billing", "--date", "2026-11-23", "--aht", "180", "--volume",
                  str(volume), "--shrinkage", "30%", "--config", str(config_dir),
                  "--db", f"sqlite:///{tmp_path / 'absent.db'}")
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("09:00-09:30"))
    assert line.split()[3] == "14" and line.split()[-3:] == ["20", "2", "-18"]
    assert "volume file" in result.output and "--aht 180" in result.output


@pytest.mark.parametrize(("args", "words"), [
    (["--target", "80-20"], "--target must look like 80/20"),
    (["--shrinkage", "120%"], "--shrinkage must be"),
    (["--queue", "biling"], "did you mean 'billing'"),
    (["--date", "23/11/2026"], "--date must be a date"),
    (["--weeks", "0"], "--weeks must be between 1 and 52"),
])
def test_command_bad_arguments_exit_1_with_a_sentence(config_dir, tmp_path, args, words):
    volume = tmp_path / "v.csv"
    volume.write_text("09:00,10\n", encoding="utf-8")
    base = {"--queue": "billing", "--date": "2026-11-23"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = [x for kv in base.items() for x in kv]
    result = _run(*argv, "--aht", "180", "--volume", str(volume), "--config", str(config_dir))
    assert result.exit_code == 1
    assert words in result.output
    assert "Traceback" not in result.output


def test_history_across_clock_changes_matches_local_times(empty_db_url):
    h = History()
    # Sunday 2026-11-01 clocks go back at 02:00: 01:00-01:30 local happens twice
    first = int(dt.datetime(2026, 11, 1, 1, 10, tzinfo=ZoneInfo(TZ)).timestamp() * 1000)
    second = int(dt.datetime(2026, 11, 1, 1, 10, fold=1, tzinfo=ZoneInfo(TZ)).timestamp() * 1000)
    assert second - first == 3600 * 1000
    for _ in range(2):
        h.call(first)
    for _ in range(4):
        h.call(second)
    # an ordinary Sunday with 5 calls at 01:10
    for _ in range(5):
        h.call(_ms(dt.date(2026, 10, 25), 1, 10))
    h.write(empty_db_url)
    # planning a normal Sunday: the repeated hour counts once, as the mean of its two
    # occurrences: ((2 + 4) / 2 + 5) / 2 = 4
    fc = from_history(empty_db_url, BILLING, dt.date(2026, 11, 8), TZ, minutes=30, weeks=2)
    assert _row(fc, "01:00") == pytest.approx(4.0)
    assert [iv.label for iv in fc.intervals].count("01:00") == 1
    # planning the fall-back day itself: both 01:00 intervals get the ordinary history
    fall = from_history(empty_db_url, BILLING, dt.date(2026, 11, 1), TZ, minutes=30, weeks=2)
    assert fall.weeks_used == (dt.date(2026, 10, 25),)
    assert [c for iv, c in zip(fall.intervals, fall.calls) if iv.label == "01:00"] == [5.0, 5.0]


def test_queue_in_two_tenants_needs_tenant_or_domain(tmp_path):
    center = _center()
    other = Tenant(id="beta", domain="beta.test", timezone="UTC",
                   queues=(Queue(id="billing", name="Billing"),))
    both = CallCenter(center.tenants + (other,))
    volume = tmp_path / "v.csv"
    volume.write_text("09:00,10\n", encoding="utf-8")
    with pytest.raises(StaffingError, match="several tenants"):
        build_plan(both, "billing", DAY, aht_s=180, volume=volume)
    plan = build_plan(both, "billing", DAY, aht_s=180, volume=volume, tenant_id="beta")
    assert plan.tenant == "beta"
    assert build_plan(both, "billing@beta.test", DAY, aht_s=180, volume=volume).timezone == "UTC"
    with pytest.raises(StaffingError, match="unknown tenant 'bta': did you mean 'beta'"):
        build_plan(both, "billing", DAY, aht_s=180, volume=volume, tenant_id="bta")
