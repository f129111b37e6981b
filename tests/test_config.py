"""The YAML model: the example loads as described, broken copies give exact errors."""
from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import pytest

from daemon.definition import model as m
from daemon.definition.config import ConfigErrors, load_center

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config"


# ---- helpers ----------------------------------------------------------------------------
@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A private copy of config/ to break."""
    dst = tmp_path / "config"
    shutil.copytree(EXAMPLE, dst)
    return dst


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def where(path: Path, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """1-based line and column of the n-th occurrence of ``needle`` in ``path``."""
    text = path.read_text(encoding="utf-8")
    pos = -1
    for _ in range(occurrence):
        pos = text.index(needle, pos + 1)
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, column


def errors_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_center(path, env={} if env is None else env)
    return [str(e) for e in info.value.errors]


def at(path: Path, needle: str, message: str, occurrence: int = 1) -> str:
    line, column = where(path, needle, occurrence)
    return f"{path}:{line}:{column}: {message}"


# ---- the example ------------------------------------------------------------------------
def test_example_loads_on_a_clean_machine_with_no_environment():
    center = load_center(EXAMPLE, env={})
    assert [t.id for t in center.tenants] == ["cityutil", "demo"]
    city = center.tenant("cityutil")
    assert city.domain == "hotline.cityutil.cn"
    assert city.timezone == "Asia/Shanghai"
    assert city.language == "zh"


def test_cityutil_is_a_realistic_utility_hotline():
    city = load_center(EXAMPLE, env={}).tenant("cityutil")
    # two-level IVR: billing, outage (sub-menu water / gas), new connection, operator
    main = next(x for x in city.ivr_menus if x.name == "main")
    actions = {o.digits: (o.action.kind, o.action.target) for o in main.options}
    assert actions["1"] == (m.ActionKind.QUEUE, "billing")
    assert actions["2"] == (m.ActionKind.IVR, "outage")
    assert actions["3"] == (m.ActionKind.QUEUE, "new_connection")
    assert actions["0"] == (m.ActionKind.QUEUE, "operator")
    outage = next(x for x in city.ivr_menus if x.name == "outage")
    assert {o.digits: o.action.target for o in outage.options}["2"] == "emergency"
    # business hours with lunch and Saturday mornings, closed Sunday
    business = city.schedules[0]
    assert [(r.start, r.end) for r in business.weekly[0]] == [
        (dt.time(8, 30), dt.time(12)), (dt.time(13), dt.time(17, 30))]
    assert [(r.start, r.end) for r in business.weekly[5]] == [(dt.time(9), dt.time(12))]
    assert business.weekly[6] == ()
    # national holidays of 2026 and 2027, and make-up working days as exceptions
    names = {c.name for c in business.closures}
    assert {"National Day 2026", "Spring Festival 2026", "National Day 2027"} <= names
    national = next(c for c in business.closures if c.name == "National Day 2026")
    assert (national.first, national.last) == (dt.date(2026, 10, 1), dt.date(2026, 10, 7))
    makeup = next(x for x in business.exceptions if x.date == dt.date(2026, 10, 10))
    assert makeup.date.weekday() == 5 and len(makeup.hours) == 2
    # the emergency queue is open 24/7: its number has one unconditional rule
    emergency_line = next(n for n in city.numbers if n.did == "96777")
    assert [(r.schedule, r.callers, r.action.target) for r in emergency_line.rules] == [
        (None, (), "emergency")]
    # blacklist and VIP patterns come before the schedule rules
    hotline = next(n for n in city.numbers if n.did == "96116")
    assert hotline.rules[0].action.kind is m.ActionKind.HANGUP and hotline.rules[0].callers
    assert hotline.rules[1].name == "vip" and hotline.rules[1].action.target == "operator"
    assert hotline.rules[2].schedule == "business" and hotline.rules[2].when == "open"
    # 3+ queues, 12+ agents in 3 teams with skills
    assert len(city.queues) >= 3
    assert len(city.agents) >= 12
    assert {t.id for t in city.teams} == {"billing", "field", "service"}
    assert all(a.team and a.skills for a in city.agents)
    # part-time agents on level 2, taking calls after 60 s of waiting
    billing = city.queue("billing")
    assert billing.tier_rules_apply and billing.tier_rule_wait_second == 60
    assert billing.tier_rule_wait_multiply_level is False
    part_timers = {a.id for a in city.agents if a.end_date is not None}
    assert part_timers and {t.agent for t in billing.tiers if t.level == 2} == part_timers
    # survey, agent-id announcement and callback after 90 s
    assert billing.survey and billing.announce_agent_id
    assert billing.callback == m.CallbackOffer(enabled=True, after_s=90, exit_key="*")
    # skills-based queues have at least one agent with the skill
    assert city.queue("emergency").skills[0].skill == "gas_safety"
    # supervisors' room, break reasons, dispositions, costs per month, default feature codes
    assert city.conferences[0].room == "6001" and city.conferences[0].pin == "6001"
    assert {b.name for b in city.break_reasons} == {"lunch", "training", "meeting", "restroom"}
    assert any(d.resolved for d in city.dispositions)
    assert (city.costs[0].first, city.costs[0].last) == (dt.date(2026, 11, 1),
                                                          dt.date(2026, 11, 30))
    assert city.feature_codes == m.FeatureCodes()
    # weekly shifts and roster dates
    night = city.agent("2009")
    assert {(s.weekday, s.start, s.end) for s in night.shifts} == {
        (d, dt.time(0), dt.time(8)) for d in range(7)}
    assert city.agent("2014").start_date == dt.date(2026, 9, 1)


def test_demo_tenant_is_exactly_the_switch_of_the_recorded_captures():
    demo = load_center(EXAMPLE, env={}).tenant("demo")
    assert (demo.domain, demo.timezone) == ("hotline.test", "Europe/Berlin")
    (number,) = demo.numbers
    assert number.did == "4008001234"
    assert [(r.action.kind, r.action.target) for r in number.rules] == [
        (m.ActionKind.IVR, "hotline_main")]
    (menu,) = demo.ivr_menus
    assert menu.name == "hotline_main"
    assert (menu.timeout_ms, menu.inter_digit_timeout_ms, menu.max_failures, menu.max_timeouts,
            menu.digit_len) == (6000, 2000, 2, 2, 1)
    queue_options = {o.digits: o.action.target for o in menu.options
                     if o.action.kind is m.ActionKind.QUEUE}
    assert queue_options == {"1": "billing", "2": "outage", "3": "sales"}

    def tiers(q: str) -> list[tuple[str, int, int]]:
        return [(t.agent, t.level, t.position) for t in demo.queue(q).tiers]

    billing, outage, sales = demo.queue("billing"), demo.queue("outage"), demo.queue("sales")
    assert billing.strategy == "longest-idle-agent" and billing.max_wait_s == 0
    assert tiers("billing") == [("1001", 1, 1), ("1002", 1, 2), ("1003", 1, 3), ("1005", 1, 4),
                                ("1006", 1, 5), ("1004", 2, 1)]
    assert outage.strategy == "ring-all" and outage.tier_rules_apply is False
    assert tiers("outage") == [("1003", 1, 1), ("1004", 1, 2), ("1001", 2, 1), ("1002", 2, 2)]
    assert sales.strategy == "longest-idle-agent" and sales.max_wait_s == 8
    assert tiers("sales") == [("1004", 1, 1)]
    assert sales.on_timeout.kind is m.ActionKind.PLAYBACK
    for q in (billing, outage, sales):
        assert (q.service_level_s, q.short_abandon_s, q.moh_sound) == (20, 20, "local_stream://moh")
        assert q.tier_rules_apply is False
    wrapups = {a.id: a.wrap_up_s for a in demo.agents}
    assert wrapups == {"1001": 3, "1002": 4, "1003": 5, "1004": 4, "1005": 3, "1006": 3}
    for a in demo.agents:
        assert (a.max_no_answer, a.no_answer_delay_s, a.reject_delay_s, a.busy_delay_s) == \
            (3, 10, 10, 10)
        assert a.ring_timeout_s == (10 if a.id == "1005" else 5)
        assert a.password == "1234"  # ${HOTLINE_SIP_100N:-1234}: the stock default
    (room,) = demo.conferences
    assert (room.room, room.profile) == ("3001", "hotline")


def test_sip_password_comes_from_the_environment_when_set():
    center = load_center(EXAMPLE, env={"HOTLINE_SIP_1001": "s3cret"})
    assert center.tenant("demo").agent("1001").password == "s3cret"
    assert center.tenant("demo").agent("1002").password == "1234"


def test_model_is_frozen_and_keeps_sources():
    center = load_center(EXAMPLE, env={})
    queue = center.tenant("demo").queue("sales")
    with pytest.raises(dataclasses.FrozenInstanceError):
        queue.max_wait_s = 99  # type: ignore[misc]
    line, column = where(EXAMPLE / "demo.yaml", "sales:")
    assert queue.src == m.Source(str(EXAMPLE / "demo.yaml"), line, column)


def test_loading_twice_gives_equal_models():
    assert load_center(EXAMPLE, env={}) == load_center(EXAMPLE, env={})


# ---- broken copies: one error each, exact place and sentence --------------------------
def test_unknown_key_is_an_error_with_the_nearest_key(example):
    f = example / "cityutil" / "queues.yaml"
    edit(f, "        max_wait_s: 480\n", "        max_wiat_s: 480\n")
    assert errors_of(example) == [at(f, "max_wiat_s",
                                     "unknown key 'max_wiat_s' in queue 'new_connection'; did you "
                                     "mean 'max_wait_s'?")]


def test_ivr_option_to_a_missing_queue_suggests_the_nearest_queue(example):
    f = example / "cityutil" / "ivr.yaml"
    edit(f, '"3": {queue: new_connection}', '"3": {queue: new_conection}')
    assert errors_of(example) == [at(f, "{queue: new_conection}",
                                     "option 3 of IVR menu 'main' refers to queue 'new_conection', "
                                     "which tenant 'cityutil' does not define; did you mean "
                                     "'new_connection'?")]


def test_duplicate_digit_in_a_menu(example):
    f = example / "demo.yaml"
    edit(f, '          "9": {ivr: hotline_main}', '          "1": {ivr: hotline_main}')
    line1, _ = where(f, '"1": {queue: billing}')
    assert errors_of(example) == [at(f, '"1": {ivr: hotline_main}',
                                     f"the key '1' is given twice in this mapping (first at line "
                                     f"{line1}).")]


def test_did_in_two_tenants(example):
    f = example / "demo.yaml"
    edit(f, '      "4008001234":', '      "96116":')
    first_line, _ = where(example / "cityutil" / "tenant.yaml", '"96116":')
    assert errors_of(example) == [at(
        f, '"96116":', f"number 96116 is in tenant 'demo' and in tenant 'cityutil' "
                       f"({example / 'cityutil' / 'tenant.yaml'}:{first_line}); a number belongs "
                       f"to one tenant.")]


def test_agent_in_two_tenants(example):
    f = example / "cityutil" / "agents.yaml"
    edit(f, '      "2016": ', '      "1006": ')
    for queues_file_edit in ('{agent: "2016", level: 2}',):
        q = example / "cityutil" / "queues.yaml"
        q.write_text(q.read_text().replace(queues_file_edit, '{agent: "1006", level: 2}'))
    demo = example / "demo.yaml"
    line, _ = where(f, '"1006": ')
    assert errors_of(example) == [at(
        demo, '"1006":', f"agent '1006' is in tenant 'demo' and in tenant 'cityutil' "
                         f"({f}:{line}); an agent belongs to one tenant.")]


def test_bad_strategy_lists_the_valid_ones_and_the_nearest(example):
    f = example / "demo.yaml"
    edit(f, "strategy: ring-all", "strategy: ring-al")
    (error,) = errors_of(example)
    assert error.startswith(at(f, "ring-al", "'strategy' of queue 'outage' is 'ring-al', which "
                                             "is not one of ring-all, longest-idle-agent"))
    assert error.endswith("did you mean 'ring-all'?")


def test_queue_requiring_a_skill_no_agent_has(example):
    f = example / "cityutil" / "queues.yaml"
    edit(f, "skills: {new_connection: 2}", "skills: {english: 9}")
    assert errors_of(example) == [at(f, "english: 9", "queue 'new_connection' requires skill "
                                                      "'english' at level 9 or more, but no agent "
                                                      "of tenant 'cityutil' has it.")]


def test_queue_requiring_an_undeclared_skill_suggests_the_nearest(example):
    f = example / "cityutil" / "queues.yaml"
    edit(f, "skills: {gas_safety: 1}", "skills: {gas_safty: 1}")
    assert errors_of(example) == [at(f, "gas_safty", "queue 'emergency' refers to skill "
                                                     "'gas_safty', which tenant 'cityutil' does "
                                                     "not define; did you mean 'gas_safety'?")]


def test_tier_with_unknown_agent_and_agent_with_unknown_team(example):
    f = example / "demo.yaml"
    edit(f, '{agent: "1004", level: 1, position: 1}', '{agent: "10004", level: 1, position: 1}')
    a = example / "cityutil" / "agents.yaml"
    edit(a, "        team: field\n", "        team: feild\n")
    errors = errors_of(example)
    assert at(f, '{agent: "10004"', "a tier of queue 'sales' refers to agent '10004', which "
                                    "tenant 'demo' does not define; did you mean '1004'?") in errors
    # the field-team anchor is merged into five agents: one error each, at the agent
    assert sum("refers to team 'feild'" in e and "did you mean 'field'?" in e for e in errors) == 5
    assert len(errors) == 6


def test_several_errors_are_reported_in_one_run_sorted(example):
    q = example / "cityutil" / "queues.yaml"
    edit(q, "strategy: round-robin", "strategy: robin")
    edit(q, "        max_wait_s: 480\n", "        max_wait_s: -5\n")
    i = example / "cityutil" / "ivr.yaml"
    edit(i, '"2": {ivr: outage}', '"2": {ivr: outages}')
    d = example / "demo.yaml"
    edit(d, "    timezone: Europe/Berlin", "    timezone: Europe/Berln")
    errors = errors_of(example)
    assert len(errors) == 4
    assert errors == sorted(errors, key=lambda e: (e.split(":")[0], int(e.split(":")[1])))
    assert errors[0].startswith(at(i, "{ivr: outages}", "option 2 of IVR menu 'main' refers to "
                                                        "IVR menu 'outages'"))
    assert at(q, "-5", "'max_wait_s' of queue 'new_connection' must be between 0 and 86400, "
                       "not -5.") in errors
    assert at(d, "Europe/Berln", "'timezone' of tenant 'demo' is 'Europe/Berln', which is not a "
                                 "known time zone; did you mean 'Europe/Berlin'?") in errors


def test_missing_environment_variable_is_an_error_at_its_reference(example):
    f = example / "demo.yaml"
    edit(f, "${HOTLINE_SIP_1003:-1234}", "${HOTLINE_SIP_1003}")
    assert errors_of(example) == [at(f, "${HOTLINE_SIP_1003}",
                                     "'password' of agent '1003' refers to the environment "
                                     "variable HOTLINE_SIP_1003, which is not set (set it, or "
                                     "write ${HOTLINE_SIP_1003:-default}).")]
    assert load_center(example, env={"HOTLINE_SIP_1003": "x"}).tenant("demo").agent("1003") \
        .password == "x"


def test_times_out_of_range_and_ranges_ending_before_they_start(example):
    f = example / "cityutil" / "tenant.yaml"
    edit(f, 'sat: "09:00-12:00"', 'sat: ["09:00-25:00", "14:00-13:00"]')
    assert errors_of(example) == [
        at(f, '"09:00-25:00"', "hours of 'sat' in 'weekly' of schedule 'business' has '25:00', "
                               "which is not a valid time of day (00:00 to 24:00)."),
        at(f, '"14:00-13:00"', "hours of 'sat' in 'weekly' of schedule 'business' has "
                               "'14:00-13:00', which ends before it starts (a range cannot cross "
                               "midnight; split it at 24:00)."),
    ]


def test_a_weekday_listed_twice_contradicts(example):
    f = example / "cityutil" / "tenant.yaml"
    edit(f, "          sun: closed\n", "          sun: closed\n          fri: \"08:00-20:00\"\n")
    first, _ = where(f, "mon-fri:")
    assert errors_of(example) == [at(f, 'fri: "08:00', f"fri is given twice in 'weekly' of "
                                                       f"schedule 'business' (also at line "
                                                       f"{first}); each weekday may appear once.")]


def test_an_exception_inside_a_holiday_contradicts(example):
    f = example / "cityutil" / "tenant.yaml"
    edit(f, "date: 2026-10-10, name: make-up day (National Day)",
         "date: 2026-10-03, name: make-up day (National Day)")
    assert errors_of(example) == [at(
        f, "{<<: *makeup, date: 2026-10-03", "exception 2026-10-03 of schedule 'business' falls "
                                             "inside closure 'National Day 2026' (2026-10-01 to "
                                             "2026-10-07); a day is either closed or has its own "
                                             "hours, not both.")]


def test_digits_must_be_keypad_digits(example):
    f = example / "demo.yaml"
    edit(f, '"3": {queue: sales}', '"x": {queue: sales}')
    assert errors_of(example) == [at(f, '"x"', "option of IVR menu 'hotline_main' is 'x', but it "
                                               "must be 1 to 10 keypad digits (0-9, * and #).")]


def test_feature_codes_colliding_with_each_other_and_with_an_extension(example):
    f = example / "cityutil" / "tenant.yaml"
    edit(f, 'logout: "*23"', 'logout: "*22"')
    edit(f, 'whisper: "*34"', 'whisper: "2001"')
    edit(f, 'ready: "*26"', 'ready: "*251"')
    errors = errors_of(example)
    ext_line, _ = where(example / "cityutil" / "agents.yaml", '"2001": &billing')
    login_line, _ = where(f, 'login: "*22"')
    assert at(f, '"*22"', f"feature code 'logout' uses *22, which is already feature code "
                          f"'login' ({f}:{login_line}).", occurrence=2) in errors
    assert at(f, '"2001"', f"feature code 'whisper' uses 2001, which is already the extension of "
                           f"agent '2001' ({example / 'cityutil' / 'agents.yaml'}:{ext_line}).") \
        in errors
    assert at(f, '"*251"', "feature code 'ready' (*251) starts with feature code 'break' (*25), "
                           "which takes digits after it, so *251 is ambiguous.") in errors
    assert len(errors) == 3


def test_break_reason_digit_given_twice(example):
    f = example / "cityutil" / "tenant.yaml"
    edit(f, '      "4": restroom', '      "3": restroom')
    line, _ = where(f, '"3": meeting')
    assert errors_of(example) == [at(f, '"3": restroom', f"the key '3' is given twice in this "
                                                         f"mapping (first at line {line}).")]


def test_a_queue_defined_twice_across_files_of_one_tenant(example):
    extra = example / "cityutil" / "zz_more.yaml"
    extra.write_text("tenants:\n  cityutil:\n    queues:\n      billing:\n"
                     "        tiers: [\"2001\"]\n", encoding="utf-8")
    first, _ = where(example / "cityutil" / "queues.yaml", "billing:")
    queues = example / "cityutil" / "queues.yaml"
    assert errors_of(example) == [f"{extra}:4:7: queue 'billing' of tenant 'cityutil' is defined "
                                  f"twice (first at {queues}:{first})."]


def test_a_tenant_split_over_files_merges_its_collections(example):
    extra = example / "cityutil" / "more.yaml"
    extra.write_text("tenants:\n  cityutil:\n    queues:\n      complaints:\n"
                     "        strategy: top-down\n        tiers: [\"2001\", \"2011\"]\n",
                     encoding="utf-8")
    city = load_center(example, env={}).tenant("cityutil")
    assert city.queue("complaints").tiers == (
        m.Tier("2001", 1, 1, m.Source(str(extra), 6, 17)),
        m.Tier("2011", 1, 2, m.Source(str(extra), 6, 25)))
    assert city.queue("billing") is not None


def test_a_single_valued_tenant_key_given_in_two_files(example):
    extra = example / "cityutil" / "zz_more.yaml"
    extra.write_text("tenants:\n  cityutil:\n    timezone: Asia/Tokyo\n", encoding="utf-8")
    first, _ = where(example / "cityutil" / "tenant.yaml", "timezone:")
    assert errors_of(example) == [f"{extra}:3:5: 'timezone' of tenant 'cityutil' is already given "
                                  f"at {example / 'cityutil' / 'tenant.yaml'}:{first}."]


def test_a_rule_after_an_unconditional_rule_can_never_match(example):
    f = example / "demo.yaml"
    edit(f, "          - name: always\n            action: {ivr: hotline_main}\n",
         "          - name: always\n            action: {ivr: hotline_main}\n"
         "          - name: later\n            action: hangup\n")
    assert errors_of(example) == [at(f, "name: later", "rule 'later' of number 4008001234 can "
                                                         "never match, because rule 'always' "
                                                         "before it has no conditions and always "
                                                         "matches.")]


def test_wrong_types_are_reported_plainly(example):
    f = example / "demo.yaml"
    edit(f, "        max_wait_s: 8\n", "        max_wait_s: eight\n")
    edit(f, "    tier_rules_apply: false             #",
         "    tier_rules_apply: maybe             #")
    assert errors_of(example) == [
        at(f, "maybe", "'tier_rules_apply' of queue 'outage' must be true or false, not 'maybe'."),
        at(f, "eight", "'max_wait_s' of queue 'sales' must be a whole number, not 'eight'."),
    ]


# ---- files that cannot be used at all --------------------------------------------------
def test_malformed_yaml_points_at_the_line(example):
    f = example / "demo.yaml"
    edit(f, "    language: en\n", "    language: [en\n")
    (error,) = errors_of(example)
    line, _ = where(f, "language: [en")
    assert error.startswith(f"{f}:")
    assert "malformed YAML" in error and f"at line {line}" in error


def test_alias_bomb_is_refused(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    (error,) = errors_of(tmp_path)
    assert "alias bomb" in error and error.startswith(f"{tmp_path / 'bomb.yaml'}:")


def test_recursive_alias_is_refused(tmp_path):
    (tmp_path / "r.yaml").write_text("tenants: &t\n  x: *t\n")
    (error,) = errors_of(tmp_path)
    assert error == (f"{tmp_path / 'r.yaml'}:2:6: the alias *t refers to its own enclosing "
                     f"anchor (a recursive structure), which a configuration cannot be.")


def test_deeply_nested_garbage_is_refused_without_crashing(tmp_path):
    # libyaml (PyYAML >= 6.0.3) gives up at 1000 levels with its own error; either way
    # the sentence is ours and points where the nesting passes 100 levels
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    (tmp_path / "deep150.yaml").write_text("a: " + "[" * 150 + "]" * 150 + "\n")
    assert errors_of(tmp_path) == [
        f"{tmp_path / name}:1:103: the values are nested more than 100 levels deep."
        for name in ("deep.yaml", "deep150.yaml")]


def test_huge_file_is_refused_before_parsing(tmp_path):
    (tmp_path / "huge.yaml").write_bytes(b"# " + b"x" * (5 * 1024 * 1024) + b"\n")
    assert errors_of(tmp_path) == [f"{tmp_path / 'huge.yaml'}:1:1: the file is 5.0 MB; "
                                   f"configuration files may be at most 5 MB."]


def test_binary_garbage_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "b.yml").write_bytes(b"tenants:\n  x: \xff\xfe\n")
    assert errors_of(tmp_path) == [f"{tmp_path / 'a.yaml'}:1:1: the file is binary, not YAML text.",
                                   f"{tmp_path / 'b.yml'}:2:1: the file is not UTF-8 text (binary "
                                   f"data or another encoding)."]


def test_root_that_is_not_a_mapping(tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    assert errors_of(tmp_path) == [f"{tmp_path / 'list.yaml'}:1:1: the top level of list.yaml "
                                   f"must be a mapping of keys, not a list."]


def test_empty_and_missing_directories(tmp_path):
    assert errors_of(tmp_path) == [f"{tmp_path}: the configuration directory has no .yaml or "
                                   f".yml files."]
    assert errors_of(tmp_path / "nope") == [f"{tmp_path / 'nope'}: the configuration directory "
                                            f"does not exist."]


def test_misspelled_top_level_key(tmp_path):
    (tmp_path / "a.yaml").write_text("tenant:\n  x: {}\n")
    assert errors_of(tmp_path) == [f"{tmp_path / 'a.yaml'}:1:1: unknown key 'tenant' in the top "
                                   f"level of a.yaml; did you mean 'tenants'?"]


def test_a_second_document_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("tenants: {}\n---\ntenants: {}\n")
    assert errors_of(tmp_path) == [f"{tmp_path / 'a.yaml'}:2:1: only one YAML document per file "
                                   f"is allowed (found a second '---')."]


def test_a_broken_file_gives_one_error_not_an_echo_in_every_reference(example):
    f = example / "cityutil" / "agents.yaml"
    edit(f, "        team: field\n", "        team: field: x\n")
    (error,) = errors_of(example)
    assert error.startswith(f"{f}:") and "malformed YAML: mapping values are not allowed" in error


def test_mutated_examples_only_ever_raise_config_errors(tmp_path):
    """Seeded random edits of the example: every outcome is a model or a list of sentences."""
    import random

    rng = random.Random(20261122)
    files = sorted(EXAMPLE.rglob("*.yaml"))
    texts = {f: f.read_text(encoding="utf-8") for f in files}
    junk = ["", "[", "]", "{", "}", ":", "- ", "null", "true", "-1", "9:30", "2026-02-30", "&a",
            "*a", "<<: *a", "'", "\t", "?", "!!python/object:os.system", "1e999", "~", "|", "#"]
    outcomes = {"ok": 0, "errors": 0}
    for i in range(80):
        victim = rng.choice(files)
        lines = texts[victim].split("\n")
        for _ in range(rng.randint(1, 3)):
            j = rng.randrange(len(lines))
            k = rng.randrange(len(lines[j]) + 1)
            if rng.random() < 0.2:
                lines.insert(j, lines[rng.randrange(len(lines))])
            else:
                lines[j] = lines[j][:k] + rng.choice(junk) + lines[j][k + rng.randint(0, 1):]
        root = tmp_path / f"c{i}"
        for f in files:
            dst = root / f.relative_to(EXAMPLE)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text("\n".join(lines) if f == victim else texts[f], encoding="utf-8")
        try:
            load_center(root, env={})
            outcomes["ok"] += 1
        except ConfigErrors as exc:
            outcomes["errors"] += 1
            assert exc.errors
            for e in exc.errors:
                assert e.message[-1] in ".?" and "Traceback" not in e.message
                assert e.line >= 1 and e.column >= 1 and Path(e.file).is_relative_to(root)
    assert outcomes["errors"] > 30


def test_rules_with_the_same_conditions_or_after_open_and_closed_contradict(example):
    f = example / "cityutil" / "tenant.yaml"
    edit(f, "          - name: after hours        # nights, lunch break, Sundays and holidays\n"
            "            action: {ivr: after_hours}\n",
         "          - name: closed\n            schedule: business\n            when: closed\n"
         "            action: {ivr: after_hours}\n"
         "          - name: never\n            action: hangup\n")
    edit(f, "          - name: vip                #",
         "          - {name: vip again, callers: ['^12345$', '^02163\\d{6}$'], action: hangup}\n"
         "          - name: vip                #")
    # the rules are shared by both hotline numbers (a YAML alias): one error per number
    assert errors_of(example) == [
        at(f, "name: vip                #", f"rule 'vip' of number {did} can never match, "
                                            f"because rule 'vip again' before it has the same "
                                            f"conditions.")
        for did in ("4006196116", "96116")
    ]
    edit(f, "callers: ['^12345$', '^02163\\d{6}$'], action: hangup}", "callers: ['^1$'], "
                                                                  "action: hangup}")
    assert errors_of(example) == [
        at(f, "name: never", f"rule 'never' of number {did} can never match, because rules "
                             f"'office hours' and 'closed' before it cover both open and closed "
                             f"hours of schedule 'business'.")
        for did in ("4006196116", "96116")
    ]


# ---- a small tenant, one mistake at a time ------------------------------------------------
SMALL = """\
tenants:
  t:
    domain: t.test
    timezone: UTC
    skills: {s: S}
    schedules:
      hours: {weekly: {mon-fri: "09:00-17:00"}}
    numbers:
      "100":
        rules:
          - {schedule: hours, when: open, action: {queue: q}}
          - {action: hangup}
    queues:
      q: {tiers: ["1"], max_wait_s: 300}
    agents:
      "1": {password: x, skills: {s: 3}}
"""


@pytest.mark.parametrize(("old", "new", "needle", "message"), [
    ('"1": {password: x, skills: {s: 3}}',
     '"1": {password: x, skills: {s: 3}}\n      alice: {password: x}', "alice",
     "agent 'alice' needs an 'extension' (its desk phone's number), because its id is not a "
     "number."),
    ("tiers: [\"1\"]", "tiers: [\"1\"], skills: {s: 1}", "{s: 1}",
     "queue 'q' lists both tiers and skills; give explicit tiers or required skills, not both."),
    ("max_wait_s: 300}", "max_wait_s: 300, callback: {after_s: 300}}", "q:",
     "queue 'q' offers a callback after 300 s but callers leave after max_wait_s 300 s."),
    ("{action: hangup}", "{when: closed, action: hangup}", "closed",
     "rule 2 of number 100 says when: closed but names no schedule."),
    ("{action: hangup}", "{action: {queue: q, ivr: m}}", "{queue: q, ivr: m}",
     "the action of rule 2 of number 100 must name exactly one action (ivr, queue, agent, "
     "extension, voicemail, conference, playback, transfer, callback, survey, hangup), not 2."),
    ("{action: hangup}", "{action: {queu: q}}", "queu: q}}",
     "'queu' in the action of rule 2 of number 100 is not an action; did you mean 'queue'?"),
    ("{action: hangup}", "{action: {transfer: 'abc'}}", "'abc'",
     "the transfer number of the action of rule 2 of number 100 is 'abc', but it must be "
     "digits, optionally with a leading '+'."),
    ("{action: hangup}", "{callers: ['(unclosed'], action: hangup}", "'(unclosed'",
     "caller pattern '(unclosed' of rule 2 of number 100 is not a valid regular expression: "
     "missing ), unterminated subpattern."),
    ("    domain: t.test\n", "", "t:", "tenant 't' needs a 'domain'."),
    ('hours: {weekly: {mon-fri: "09:00-17:00"}}',
     'hours: {weekly: {mon-fri: "09:00-17:00"}, holidays: [{name: a, from: 2026-01-01, '
     'to: 2026-01-05}, {name: b, date: 2026-01-03}]}', "{name: b",
     "closure 'b' (2026-01-03 to 2026-01-03) overlaps closure 'a' (2026-01-01 to 2026-01-05) in "
     "schedule 'hours'."),
    ('hours: {weekly: {mon-fri: "09:00-17:00"}}',
     'hours: {weekly: {mon-fri: ["09:00-12:00", "11:00-17:00"]}}', '["09:00',
     "hours of 'mon-fri' in 'weekly' of schedule 'hours' has overlapping ranges (09:00-12:00 "
     "and 11:00-17:00)."),
    ('hours: {weekly: {mon-fri: "09:00-17:00"}}', 'hours: {weekly: {mon-fry: "09:00-17:00"}}',
     "mon-fry", "'mon-fry' in 'weekly' of schedule 'hours' is not a weekday or weekday range; "
                "did you mean 'mon-fri'?"),
    ("    skills: {s: S}\n",
     "    skills: {s: S}\n    costs: [{month: 2026-11, amount: 5}, "
     "{from: 2026-11-30, to: 2026-12-31, amount: 6}]\n", "{from: 2026-11-30",
     "cost period 2026-11-30 to 2026-12-31 overlaps the period 2026-11-01 to 2026-11-30 of "
     "tenant 't'."),
    ("    skills: {s: S}\n", "    skills: {s: S}\n    conferences: {'100': {name: r}}\n",
     '"100":', "number 100 uses 100, which is already conference room 100 (FILE:6)."),
    ("    skills: {s: S}\n", "    skills: {s: S}\n    conferences: {'200': {pin: '12a'}}\n",
     "'12a'", "'pin' of conference room '200' must be 1 to 12 digits."),
    ("    skills: {s: S}\n", "    skills: {s: S}\n    dispositions: {'12345': done}\n",
     "'12345'", "disposition code is '12345', but it must be 1 to 4 keypad digits (0-9, * and "
                "#)."),
    ("    skills: {s: S}\n", "    skills: {s: S}\n    break_reasons: {'12': lunch}\n",
     "'12'", "break reason digit is '12', but it must be 1 to 1 keypad digits (0-9, * and #)."),
    ("    skills: {s: S}\n", "    skills: {s: S}\n    ivr_menus: {m: {greet_long: a.wav, "
                             "options: {'12': hangup}}}\n", "'12'",
     "option 12 of IVR menu 'm' has 2 digits but the menu's digit_len is 1."),
])
def test_one_mistake_in_a_small_tenant(tmp_path, old, new, needle, message):
    f = tmp_path / "t.yaml"
    assert SMALL.count(old) == 1
    f.write_text(SMALL.replace(old, new), encoding="utf-8")
    assert errors_of(tmp_path) == [at(f, needle, message.replace("FILE", str(f)))]


def test_the_small_tenant_is_valid(tmp_path):
    (tmp_path / "t.yaml").write_text(SMALL, encoding="utf-8")
    tenant = load_center(tmp_path, env={}).tenants[0]
    assert tenant.name == "t" and tenant.language == "en"
    assert tenant.queue("q").tiers[0].agent == "1"


def test_a_time_zone_that_names_a_directory_is_a_plain_error(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text(SMALL.replace("timezone: UTC", "timezone: Europe"), encoding="utf-8")
    (error,) = errors_of(tmp_path)
    assert error.startswith(at(f, "Europe", "'timezone' of tenant 't' is 'Europe', which is not "
                                            "a known time zone"))


def test_demo_tenant_agrees_with_every_capture_truth_file():
    """The truth files name the switch's queues and agents: the demo tenant must match them."""
    import json

    center = load_center(EXAMPLE, env={})
    demo = center.tenant("demo")
    truths = sorted((REPO / "tests" / "data" / "captures").glob("*.truth.json"))
    assert len(truths) >= 13
    for path in truths:
        truth = json.loads(path.read_text(encoding="utf-8"))
        if "did" not in truth:
            # recorded with the rendered example center (demo and cityutil): callers dialed
            # a queue entry directly; the tenant's agents and queues are the truth's
            tenant = next(t for t in center.tenants if t.domain == truth["tenant"])
            for name, spec in truth["agents"].items():
                if "wrap_up_time_s" in spec:
                    assert tenant.agent(name.split("@")[0]).wrap_up_s == spec["wrap_up_time_s"]
            for name, spec in truth["queues"].items():
                queue = tenant.queue(name.split("@")[0])
                assert spec.get("strategy", queue.strategy) == queue.strategy, path.name
                # the entry dialed: the queue's extension or its rendered entry destination
                assert spec.get("entry", queue.extension) in (
                    queue.extension, f"hotline-queue-{queue.id}"), (path.name, name)
            continue
        assert truth["tenant"] == demo.domain and truth["did"] == demo.numbers[0].did
        assert truth["short_abandon_threshold_s"] == 20
        for name, spec in truth["agents"].items():
            agent_id, domain = name.split("@")
            assert domain == demo.domain
            assert demo.agent(agent_id).wrap_up_s == spec["wrap_up_time_s"], (path.name, name)
        menu = demo.ivr_menus[0]
        for name, spec in truth["queues"].items():
            queue = demo.queue(name.split("@")[0])
            assert queue.strategy == spec["strategy"]
            assert queue.max_wait_s == spec.get("max_wait_time_s", 0)
            assert queue.short_abandon_s == truth["short_abandon_threshold_s"]
            option = next(o for o in menu.options if o.digits == spec["ivr_digit"])
            assert (option.action.kind, option.action.target) == (m.ActionKind.QUEUE, queue.id)
            assert queue.extension == spec["entry"], (path.name, name)


def test_files_without_tenants(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    assert errors_of(tmp_path) == [f"{tmp_path}: no tenant is defined: the YAML files are empty."]
    (tmp_path / "s.yaml").write_text("settings:\n  journal_dir: j\n")
    assert errors_of(tmp_path) == [f"{tmp_path / 's.yaml'}:1:1: no tenant is defined: add a "
                                   f"top-level 'tenants:' mapping."]


def test_a_list_used_as_a_key_is_one_error_and_the_rest_still_loads(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text("tenants:\n  ? [a, b]\n  : c\n  t: {domain: t.test, timezone: UTC, "
                 "queues: {q: {tiers: ['1']}}, agents: {'1': {password: x}}}\n  u: {}\n")
    errors = errors_of(tmp_path)
    assert errors[0] == f"{f}:2:5: a key must be a plain name, not a list or mapping."
    # tenant t was read normally; only the empty tenant u is reported besides
    assert all("tenant 'u'" in e for e in errors[1:]) and len(errors) == 3


def test_a_tenant_with_an_empty_body(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text("tenants:\n  t:\n")
    assert errors_of(tmp_path) == [f"{f}:2:3: tenant 't' needs a 'domain'.",
                                   f"{f}:2:3: tenant 't' needs a 'timezone'."]


# ---- queue extensions ---------------------------------------------------------------------
def test_demo_queue_extensions_render_the_entries_of_the_recording_switch():
    """Dialing 7001/7002/7003 in hotline.test runs callcenter for billing/outage/sales."""
    import json
    import re
    import xml.etree.ElementTree as ET

    from daemon.definition.render import render_files

    center = load_center(EXAMPLE, env={})
    demo = center.tenant("demo")
    assert {q.id: q.extension for q in demo.queues} == {
        "billing": "7001", "outage": "7002", "sales": "7003"}
    truth = json.loads((REPO / "tests" / "data" / "captures" / "blind_transfer.truth.json")
                       .read_text(encoding="utf-8"))
    dialplan = ET.fromstring(render_files(center)[f"dialplan/{demo.domain}.xml"])
    for qualified, spec in truth["queues"].items():
        runs = []
        for cond in dialplan.iter("condition"):
            if cond.get("field") == "destination_number" \
                    and re.fullmatch(cond.get("expression", ""), spec["entry"]):
                runs += [a.get("data") for a in cond.iter("action")
                         if a.get("application") == "callcenter"]
        assert runs == [qualified], (spec["entry"], runs)


def test_cityutil_queues_have_their_own_extensions():
    city = load_center(EXAMPLE, env={}).tenant("cityutil")
    assert {q.id: q.extension for q in city.queues} == {
        "billing": "7001", "outage_water": "7002", "emergency": "7003",
        "new_connection": "7004", "operator": "7000"}


def test_a_queue_extension_must_be_plain_digits(example):
    f = example / "demo.yaml"
    edit(f, 'extension: "7002"', 'extension: "*70"')
    assert errors_of(example) == [at(f, '"*70"', "'extension' of queue 'outage' is '*70', but "
                                                 "it must be 1 to 10 digits (0-9).")]


def test_a_queue_extension_already_dialable_in_the_tenant_is_an_error(example):
    f = example / "cityutil" / "queues.yaml"
    agents = example / "cityutil" / "agents.yaml"
    tenant = example / "cityutil" / "tenant.yaml"
    edit(f, 'extension: "7001"', 'extension: "2003"')        # agent 2003's desk phone
    edit(f, 'extension: "7002"', 'extension: "6001"')        # the conference room
    edit(f, 'extension: "7003"', 'extension: "96777"')       # a DID of the tenant
    edit(f, 'extension: "7004"', 'extension: "7000"')        # the operator queue's
    edit(tenant, 'ready: "*26"', 'ready: "7000"')            # and a feature code
    agent_line, _ = where(agents, '"2003": {')
    outage_line, _ = where(f, '"6001"')
    emergency_line, _ = where(f, '"96777"')
    new_connection_line, _ = where(f, '"7000"', occurrence=1)
    already_new_connection = (f"which is already the extension of queue 'new_connection' "
                              f"({f}:{new_connection_line}).")
    expected = [
        at(f, '"2003"', f"the extension of queue 'billing' uses 2003, which is already the "
                        f"extension of agent '2003' ({agents}:{agent_line})."),
        at(agents, '"6001":', f"conference room 6001 uses 6001, which is already the extension "
                              f"of queue 'outage_water' ({f}:{outage_line})."),
        at(tenant, '"96777":', f"number 96777 uses 96777, which is already the extension of "
                               f"queue 'emergency' ({f}:{emergency_line})."),
        at(f, '"7000"', f"the extension of queue 'operator' uses 7000, {already_new_connection}",
           occurrence=2),
        at(tenant, '"7000"', f"feature code 'ready' uses 7000, {already_new_connection}"),
    ]
    assert errors_of(example) == sorted(expected, key=_position)


def _position(error: str) -> tuple[str, int, int]:
    file, line, column, _ = error.split(":", 3)
    return file, int(line), int(column)


def test_cityutil_full_timers_get_callers_at_once_and_part_timers_after_60_s():
    """mod_callcenter starts callers at tier 0: without tier_rule_no_agent_no_wait level 1
    would wait tier_rule_wait_second too (daemon/trace.py offered_after_s)."""
    from daemon.definition.trace import trace_call

    center = load_center(EXAMPLE, env={})
    city = center.tenant("cityutil")
    for digit, queue in (("1", "billing"), ("0", "operator")):
        q = city.queue(queue)
        assert (q.tier_rules_apply, q.tier_rule_no_agent_no_wait) == (True, True)
        # Monday 14:00: the business schedule is open, part-timers 2015/2016 are on shift
        t = trace_call(center, "96116", "2026-11-23 14:00", digits=[digit])
        tiers = [s for s in t.steps if s.kind == "tier"]
        waits = {(s.data["level"], s.data["offered_after_s"]) for s in tiers}
        assert waits == {(1, 0), (2, 60)}, (queue, waits)
        part_timers = {s.data["agent"].split("@")[0] for s in tiers if s.data["level"] == 2}
        assert part_timers == {"2014", "2015", "2016"}
        assert not [s for s in t.steps if s.kind == "queue-warning"], queue


# ---- outbound routes and the callback offer prompt ----------------------------------------
def test_outbound_routes_load_in_priority_order_with_their_caller_id():
    city = load_center(EXAMPLE, env={}).tenant("cityutil")
    assert [(r.name, r.gateway, r.caller_id_number) for r in city.outbound_routes] == [
        ("mobiles", "cityutil_trunk", "96116"), ("landlines", "cityutil_trunk", "96116")]
    assert city.outbound_routes[0].pattern == r"^1[3-9]\d{9}$"


def test_outbound_route_needs_exactly_one_way_out(example):
    f = example / "cityutil" / "tenant.yaml"
    edit(f, "        gateway: cityutil_trunk      # a sofia gateway",
         "        dial_string: sofia/internal/{number}@10.0.0.5\n"
         "        gateway: cityutil_trunk      # a sofia gateway")
    assert errors_of(example) == [at(f, "mobiles:", "outbound route 'mobiles' needs either a "
                                     "'gateway' (sofia/gateway/<name>/<number>) or a "
                                     "'dial_string' with {number}, not both.")]


def test_outbound_route_with_a_bad_pattern_or_dial_string_says_where(example):
    f = example / "cityutil" / "tenant.yaml"
    edit(f, "pattern: '^0\\d{9,11}$'", "pattern: '^0(\\d{9,11}$'")
    edit(f, "caller_id_number: \"96116\"    # customers", "caller_id_number: \"96 116\"    # customers")
    errors = errors_of(example)  # in file order
    assert errors[0] == at(f, '"96 116"', "'caller_id_number' of outbound route 'mobiles' is "
                           "'96 116', but it must be digits, optionally with a leading '+'.")
    assert errors[1].startswith(at(f, "'^0(", "'pattern' of outbound route 'landlines' '^0(\\d{9,11}$' "
                                   "is not a valid regular expression: "))
    assert len(errors) == 2


def test_dial_string_must_say_where_the_number_goes(example):
    f = example / "demo.yaml"
    edit(f, "gateway: demo_trunk", "dial_string: sofia/gateway/demo_trunk")
    assert errors_of(example) == [at(f, "sofia/gateway/demo_trunk", "'dial_string' of outbound "
                                     "route 'pstn' is 'sofia/gateway/demo_trunk', but it must be "
                                     "one FreeSWITCH endpoint with {number} where the number goes "
                                     "(e.g. sofia/internal/{number}@10.0.0.5), without spaces, "
                                     "commas or other braces.")]


def test_callback_prompt_is_one_sound_path(example):
    f = example / "cityutil" / "queues.yaml"
    text = f.read_text(encoding="utf-8")
    first = 'callback: {enabled: true, after_s: 90, exit_key: "*"}'
    f.write_text(text.replace(first, 'callback: {enabled: true, after_s: 90, exit_key: "*", '
                                     'prompt: "cityutil/zh/press star.wav"}', 1), encoding="utf-8")
    assert errors_of(example) == [at(f, '"cityutil/zh/press star.wav"',
                                     "'prompt' of 'callback' of queue 'billing' is "
                                     "'cityutil/zh/press star.wav', but a sound path must be one "
                                     "word (no spaces).")]


def test_example_records_under_the_switchs_recordings_dir():
    # $${recordings_dir} is the switch's own setting, whatever its packaging
    billing = load_center(EXAMPLE, env={}).tenant("cityutil").queue("billing")
    assert billing.record_template == "$${recordings_dir}/cityutil/${strftime(%Y-%m-%d)}/${uuid}.wav"
