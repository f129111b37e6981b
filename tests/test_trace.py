"""``hotline trace``: each scenario reads like the call it walks."""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from factories import BUSINESS, city_center, city_tenant

from cli import hotline
from daemon.definition.model import Action, ActionKind, CallCenter
from daemon.definition.schedule import agent_availability, schedule_state, time_conditions
from daemon.definition.trace import TraceError, trace_call

REPO = Path(__file__).resolve().parent.parent
CITY = "cityutil.hotline.local"
DID = "4001234567"


def kinds(trace) -> list[str]:
    return [s.kind for s in trace.steps]


def step(trace, kind: str):
    return next(s for s in trace.steps if s.kind == kind)


def test_business_hours_monday_morning_reaches_the_main_menu() -> None:
    t = trace_call(city_center(), DID, "2026-11-23 09:05", caller="13900000000")
    rule = step(t, "rule")
    assert rule.data["rule"] == "open"
    assert "schedule business is open: mon hours 08:30-12:00" in rule.text
    assert step(t, "ivr").data["menu"] == "main"
    assert t.at.isoformat() == "2026-11-23T09:05:00+08:00"


def test_lunch_break_goes_to_the_after_hours_menu() -> None:
    t = trace_call(city_center(), DID, "2026-11-23 12:30")
    skipped = [s for s in t.steps if s.kind == "rule-skip"]
    assert "outside mon hours 08:30-12:00, 13:30-17:30" in skipped[1].text
    assert step(t, "rule").data["rule"] == "closed"
    assert step(t, "ivr").data["menu"] == "after_hours"


def test_saturday_afternoon_is_closed_but_saturday_morning_open() -> None:
    assert step(trace_call(city_center(), DID, "2026-11-28 10:00"), "rule").data["rule"] == "open"
    t = trace_call(city_center(), DID, "2026-11-28 15:00")
    assert step(t, "rule").data["rule"] == "closed"
    assert "outside sat hours 09:00-12:00" in t.steps[2].text


def test_national_holiday_names_the_closure() -> None:
    t = trace_call(city_center(), DID, "2026-10-02 10:00")
    assert step(t, "rule").data["rule"] == "closed"
    assert "closed for 'National Day' (2026-10-01..2026-10-07)" in t.steps[2].text


def test_make_up_saturday_exception_opens_with_weekday_hours() -> None:
    t = trace_call(city_center(), DID, "2026-10-10 14:00")
    assert step(t, "rule").data["rule"] == "open"
    assert "exception 'National Day make-up Saturday' opens 13:30-17:30" in step(t, "rule").text


def test_emergency_line_24_7_lists_agents_by_tier_with_roster() -> None:
    t = trace_call(city_center(), "4009110000", "2026-10-02 03:00")
    q = step(t, "queue")
    assert q.data["queue"] == f"emergency@{CITY}" and q.data["strategy"] == "ring-all"
    tiers = [(s.data["agent"], s.data["level"], s.data["position"])
             for s in t.steps if s.kind == "tier"]
    assert tiers == [(f"1005@{CITY}", 1, 1), (f"1006@{CITY}", 1, 2),
                     (f"1007@{CITY}", 2, 1), (f"1008@{CITY}", 2, 2)]
    assert t.end == f"waits in queue emergency@{CITY} for an agent"


def test_digits_path_through_sub_menu_to_skills_queue_with_part_timers_after_60s() -> None:
    t = trace_call(city_center(), DID, "2026-11-23 14:00", digits=["1", "1"])
    assert [s.data.get("menu") for s in t.steps if s.kind == "ivr"] == ["main", "billing_menu"]
    assert [s.data["digits"] for s in t.steps if s.kind == "digits"] == ["1", "1"]
    tiers = {s.data["agent"].split("@")[0]: s for s in t.steps if s.kind == "tier"}
    assert tiers["1001"].data["level"] == 1 and "offered at once" in tiers["1001"].text
    assert tiers["1011"].data["level"] == 5
    assert "offered after 60 s (tier rules)" in tiers["1011"].text
    assert tiers["1011"].data["offered_after_s"] == 60
    assert "queue-warning" not in kinds(t)
    assert tiers["1011"].data["on_shift"] is True  # Monday 13:00-17:00 part-time shift
    assert tiers["1012"].data["rostered"] is False  # left in June
    offer = step(t, "callback-offer")
    assert offer.data == {"queue": f"billing@{CITY}", "after_s": 90, "exit_key": "*"}
    fallback = step(t, "fallback")
    assert "voicemail box 8000" in fallback.text
    assert t.steps[-1].depth == 1 and t.steps[-1].data["action"] == "voicemail"
    assert t.end == f"waits in queue billing@{CITY} for an agent"


def test_invalid_digit_then_silence_leads_to_on_failure() -> None:
    t = trace_call(city_center(), DID, "2026-11-23 09:05", digits=["7"])
    invalid = step(t, "invalid")
    assert invalid.data == {"menu": "main", "digits": "7", "failures": 1}
    timeout = step(t, "timeout")
    assert timeout.data["timeouts"] == 2  # the main menu's max_timeouts
    assert step(t, "menu-exit").data["menu"] == "main"
    assert step(t, "queue").data["queue"] == f"operator@{CITY}"  # on_failure


def test_three_invalid_digits_reach_max_failures() -> None:
    t = trace_call(city_center(), DID, "2026-11-23 09:05", digits=["7", "8", "6", "1"])
    assert [s.data["failures"] for s in t.steps if s.kind == "invalid"] == [1, 2, 3]
    assert "timeout" not in kinds(t)
    assert t.unused_digits == ("1",)


def test_caller_pattern_blacklist_wins_over_the_schedule() -> None:
    t = trace_call(city_center(), DID, "2026-11-23 09:05", caller="13800000003")
    assert step(t, "rule").data["rule"] == "blocked"
    assert t.end == "hangs up (CALL_REJECTED)"


def test_playback_option_ends_the_call() -> None:
    t = trace_call(city_center(), DID, "2026-11-23 09:05", digits=["1", "2"])
    assert t.end == "plays sounds/city/balance-info.wav and hangs up"


def test_fallback_chain_follows_queue_on_timeout() -> None:
    t = trace_call(city_center(), DID, "2026-11-23 09:05", digits=["3"])
    queues = [s.data["queue"] for s in t.steps if s.kind == "queue"]
    assert queues == [f"new_connection@{CITY}", f"operator@{CITY}"]
    assert [s.depth for s in t.steps if s.kind == "queue"] == [0, 1]
    assert t.steps[-1].depth == 2 and t.steps[-1].data["action"] == "playback"


def test_json_shape_is_stable_for_scripts() -> None:
    t = trace_call(city_center(), DID, "2026-11-23 09:05", caller="139", digits=["0"])
    data = json.loads(json.dumps(t.to_dict()))
    assert set(data) == {"number", "tenant", "domain", "timezone", "at", "caller", "digits",
                         "unused_digits", "steps", "end"}
    assert data["tenant"] == "cityutil" and data["digits"] == ["0"]
    assert all({"kind", "text", "depth"} <= set(s) for s in data["steps"])
    assert data["steps"][0]["kind"] == "number"


def test_unknown_number_and_bad_time_are_trace_errors() -> None:
    with pytest.raises(TraceError, match="not a number of any tenant"):
        trace_call(city_center(), "999", "2026-11-23 09:05")
    with pytest.raises(TraceError, match="cannot read --at 'tomorrow'"):
        trace_call(city_center(), DID, "tomorrow")
    with pytest.raises(TraceError, match="no tenant 'nope'"):
        trace_call(city_center(), DID, "2026-11-23 09:05", tenant="nope")


def test_extension_in_two_tenants_needs_tenant() -> None:
    with pytest.raises(TraceError, match="several tenants"):
        trace_call(city_center(), "1001", "2026-11-23 09:05")
    t = trace_call(city_center(), "1001", "2026-11-23 09:05", tenant="cityutil")
    assert t.end.startswith("rings agent 1001 (Li Wei) at desk phone 1001")


def test_aware_time_is_converted_to_the_tenant_zone() -> None:
    utc = dt.datetime(2026, 11, 23, 1, 5, tzinfo=dt.UTC)
    t = trace_call(city_center(), DID, utc)
    assert t.at.strftime("%H:%M") == "09:05" and step(t, "rule").data["rule"] == "open"


# ---- schedule and roster evaluation --------------------------------------------------------
def test_schedule_state_precedence_exception_over_closure_over_weekly() -> None:
    def state(s: str):
        return schedule_state(BUSINESS, dt.datetime.fromisoformat(s))

    assert state("2026-11-23 08:29").open is False
    assert state("2026-11-23 08:30").open is True
    assert state("2026-11-23 12:00").open is False  # ranges are [start, end)
    assert state("2026-11-29 10:00").reason == "closed all day on sun"
    assert state("2026-10-01 10:00").closure == "National Day"
    assert state("2026-11-27 10:00").exception == "staff training day"
    assert state("2026-11-27 10:00").open is False


def test_time_conditions_order_is_default_weekly_closures_exceptions() -> None:
    states = [(c.state, c.label.split()[0]) for c in time_conditions(BUSINESS)]
    assert states[0] == ("closed", "default:")
    kinds_ = [label for _, label in states]
    assert kinds_.index("closure") > kinds_.index("sat")
    assert kinds_.index("exception") > kinds_.index("closure")


def test_agent_availability_roster_and_overnight_shift() -> None:
    tenant = city_tenant()
    a1010 = tenant.agent("1010")
    assert a1010 is not None
    assert agent_availability(a1010, dt.datetime(2026, 11, 23, 9)).rostered is False
    from daemon.definition.model import Agent, Shift

    night = Agent("9", "Night", "9", "x", shifts=(Shift(4, dt.time(22), dt.time(6)),))
    assert agent_availability(night, dt.datetime(2026, 11, 27, 23)).on_shift is True  # Fri
    assert agent_availability(night, dt.datetime(2026, 11, 28, 5)).on_shift is True  # Sat am
    assert agent_availability(night, dt.datetime(2026, 11, 28, 7)).on_shift is False
    assert agent_availability(Agent("8", "n", "8", "x"), dt.datetime(2026, 1, 1)).on_shift is None


# ---- the CLI -----------------------------------------------------------------------------
def test_cli_trace_example_config_human_and_json() -> None:
    runner = CliRunner()
    res = runner.invoke(hotline, ["trace", "96116", "--at", "2026-11-23 09:05",
                                  "--caller", "13800000000", "--digits", "1",
                                  "--config", str(REPO / "config")])
    assert res.exit_code == 0, res.output
    assert "rule 3 'office hours' matches" in res.output
    assert "queue billing@hotline.cityutil.cn" in res.output
    res = runner.invoke(hotline, ["trace", "96116", "--at", "2026-10-01 10:00", "--json",
                                  "--config", str(REPO / "config")])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    rule = next(s for s in data["steps"] if s["kind"] == "rule")
    assert rule["rule"] == "after hours"
    assert "National Day 2026" in data["steps"][3]["reason"]


def test_cli_trace_user_errors_exit_1() -> None:
    runner = CliRunner()
    cfg = ["--config", str(REPO / "config")]
    res = runner.invoke(hotline, ["trace", "12", "--at", "2026-11-23 09:05", *cfg])
    assert res.exit_code == 1 and "is not a number of any tenant" in res.output
    res = runner.invoke(hotline, ["trace", "96116", "--at", "noon", *cfg])
    assert res.exit_code == 1 and "cannot read --at 'noon'" in res.output


def test_cli_trace_and_render_refuse_a_broken_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    shutil.copytree(REPO / "config", cfg)
    demo = cfg / "demo.yaml"
    demo.write_text(demo.read_text("utf-8").replace("{queue: sales}", "{queue: salse}"), "utf-8")
    runner = CliRunner()
    res = runner.invoke(hotline, ["trace", "4008001234", "--config", str(cfg)])
    assert res.exit_code == 1
    assert "salse" in res.output and "did you mean 'sales'" in res.output
    out = tmp_path / "out"
    res = runner.invoke(hotline, ["render", str(cfg), "--out", str(out)])
    assert res.exit_code == 1 and "demo.yaml:" in res.output
    assert not out.exists()  # nothing written when the YAML has errors


def test_cli_render_example_writes_and_lists_files(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(hotline, ["render", str(REPO / "config"), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    # 12 XML files and the data file, plus the desk-phone scripts it ships beside them
    scripts = len(list((REPO / "fs_scripts").rglob("*.py")))
    assert res.output.startswith(f"wrote {13 + scripts} files to {tmp_path}:")
    assert "  dialplan/hotline.test.xml" in res.output.splitlines()
    assert "  scripts/hotline_login.py" in res.output.splitlines()
    assert (tmp_path / "autoload_configs/callcenter.conf.xml").is_file()


def test_trace_a_queue_extension_number() -> None:
    from factories import demo_tenant

    from daemon.definition.model import CallCenter

    base = demo_tenant()
    q = base.queues[2].__class__(**{**base.queues[2].__dict__, "extension": "7003"})
    center = CallCenter((base.__class__(**{**base.__dict__, "queues": base.queues[:2] + (q,)}),))
    t = trace_call(center, "7003", "2026-11-23 09:05")
    assert step(t, "queue").data["queue"] == "sales@hotline.test"
    fallback = step(t, "fallback")
    assert "after 8 s" in fallback.text
    assert t.steps[-1].data["action"] == "playback"


def test_menu_that_fails_back_to_itself_is_reported_as_a_loop() -> None:
    from factories import act, demo_tenant

    from daemon.definition.model import CallCenter

    base = demo_tenant()
    menu = base.ivr_menus[0].__class__(**{**base.ivr_menus[0].__dict__,
                                          "on_failure": act("ivr", "hotline_main")})
    center = CallCenter((base.__class__(**{**base.__dict__, "ivr_menus": (menu,)}),))
    t = trace_call(center, "4008001234", "2026-11-23 09:05", digits=["7"])
    assert [s.kind for s in t.steps].count("ivr") == 2  # once with the digit, once without
    assert t.end.startswith("back to IVR menu hotline_main with no new digits")
    assert len(t.steps) < 20


def test_tier_rules_without_no_agent_no_wait_hold_back_the_first_level_too() -> None:
    """mod_callcenter starts each caller at tier 0: level 1 waits too unless no-agent-no-wait."""
    from daemon.definition.model import Queue, Tier
    from daemon.definition.trace import offered_after_s

    q = Queue(id="q", name="q", tier_rules_apply=True, tier_rule_wait_second=30,
              tier_rule_wait_multiply_level=True, tiers=(Tier("1001", 1, 1), Tier("1002", 2, 1)))
    assert offered_after_s(q, 1, [1, 2]) == 30 and offered_after_s(q, 2, [1, 2]) == 60
    fixed = q.__class__(**{**q.__dict__, "tier_rule_no_agent_no_wait": True})
    assert offered_after_s(fixed, 1, [1, 2]) == 0 and offered_after_s(fixed, 2, [1, 2]) == 60
    off = q.__class__(**{**q.__dict__, "tier_rules_apply": False})
    assert offered_after_s(off, 2, [1, 2]) == 0
    tenant = city_tenant()
    tenant = tenant.__class__(**{**tenant.__dict__, "queues": (q,), "numbers": (
        tenant.numbers[1].__class__("4009110000", "x", (
            tenant.numbers[1].rules[0].__class__("always", Action(ActionKind.QUEUE, "q")),)),)})
    t = trace_call(CallCenter((tenant,)), "4009110000", "2026-11-23 09:05")
    warning = step(t, "queue-warning")
    assert "nobody is offered a caller before 30 s" in warning.text
