"""Rendering: parse the XML and assert the structure FreeSWITCH will act on."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from factories import city_center, city_tenant, demo_tenant

from daemon.definition.model import (
    Action,
    ActionKind,
    CallCenter,
    IvrOption,
    Number,
    Queue,
    Rule,
    SkillRequirement,
    Tier,
)
from daemon.definition.render import render, render_files
from daemon.definition.tiers import effective_tiers

CITY = "cityutil.hotline.local"
DEMO = "hotline.test"


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("render")
    render(city_center(), path)
    return path


def parse(out: Path, rel: str) -> ET.Element:
    return ET.parse(out / rel).getroot()


def context(out: Path, domain: str) -> ET.Element:
    root = parse(out, f"dialplan/{domain}.xml")
    ctx = root.find("context")
    assert ctx is not None and ctx.get("name") == domain
    return ctx


def extension(ctx: ET.Element, name: str) -> ET.Element:
    ext = ctx.find(f"extension[@name='{name}']")
    assert ext is not None, f"no extension {name}"
    return ext


def actions(ext: ET.Element) -> list[tuple[str, str | None]]:
    return [(a.get("application") or "", a.get("data")) for a in ext.iter("action")]


def test_render_writes_the_freeswitch_conf_tree(out: Path) -> None:
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                   if p.is_file() and p.parent.name != "scripts" and "hotline_fs" not in p.parts)
    assert files == [
        "autoload_configs/callcenter.conf.xml", "autoload_configs/conference.conf.xml",
        "autoload_configs/ivr.conf.xml", "conference_profiles/hotline.xml",
        f"dialplan/{CITY}.xml", f"dialplan/{DEMO}.xml",
        f"dialplan/public/{CITY}.xml", f"dialplan/public/{DEMO}.xml",
        f"directory/{CITY}.xml", f"directory/{DEMO}.xml",
        f"ivr_menus/{CITY}.xml", f"ivr_menus/{DEMO}.xml",
    ]
    assert (out / "scripts/hotline_data.json").is_file()
    for path in out.rglob("*.xml"):
        ET.parse(path)  # every file is well-formed


def test_queue_strategy_params_and_explicit_tier_levels(out: Path) -> None:
    cc = parse(out, "autoload_configs/callcenter.conf.xml")
    assert cc.get("name") == "callcenter.conf"
    outage = cc.find(f"queues/queue[@name='outage@{DEMO}']")
    assert outage is not None
    params = {p.get("name"): p.get("value") for p in outage.findall("param")}
    assert params["strategy"] == "ring-all"
    assert params["tier-rules-apply"] == "false"
    assert params["moh-sound"] == "local_stream://moh"
    sales = cc.find(f"queues/queue[@name='sales@{DEMO}']")
    assert {p.get("name"): p.get("value") for p in sales.findall("param")}["max-wait-time"] == "8"
    tiers = [(t.get("agent"), t.get("level"), t.get("position"))
             for t in cc.findall(f"tiers/tier[@queue='outage@{DEMO}']")]
    assert tiers == [(f"1003@{DEMO}", "1", "1"), (f"1004@{DEMO}", "1", "2"),
                     (f"1001@{DEMO}", "2", "1"), (f"1002@{DEMO}", "2", "2")]


def test_only_documented_mod_callcenter_params_and_attributes(out: Path) -> None:
    # queue params: mod_callcenter.c queue_set_config (1.10); agent attrs: load_agent
    queue_params = {"strategy", "moh-sound", "announce-sound", "announce-frequency",
                    "record-template", "time-base-score", "ring-progressively-delay",
                    "tier-rules-apply", "tier-rule-wait-second", "tier-rule-wait-multiply-level",
                    "tier-rule-no-agent-no-wait", "discard-abandoned-after",
                    "abandoned-resume-allowed", "max-wait-time", "max-wait-time-with-no-agent",
                    "max-wait-time-with-no-agent-time-reached"}
    agent_attrs = {"name", "type", "contact", "status", "max-no-answer", "wrap-up-time",
                   "reject-delay-time", "busy-delay-time", "no-answer-delay-time"}
    cc = parse(out, "autoload_configs/callcenter.conf.xml")
    assert {p.get("name") for p in cc.iter("param")} <= queue_params
    for agent in cc.iter("agent"):
        assert set(agent.attrib) <= agent_attrs
        assert agent.get("type") == "callback"
    for tier in cc.iter("tier"):
        assert set(tier.attrib) == {"agent", "queue", "level", "position"}


def test_agent_contact_and_delays_follow_the_capture_switch(out: Path) -> None:
    cc = parse(out, "autoload_configs/callcenter.conf.xml")
    a = cc.find(f"agents/agent[@name='1005@{DEMO}']")
    assert a.get("contact") == f"[leg_timeout=10]user/1005@{DEMO}"
    assert a.get("wrap-up-time") == "3"
    assert a.get("max-no-answer") == "3"
    assert a.get("no-answer-delay-time") == "10"
    assert a.get("status") is None  # a reload must not log agents out


def test_skills_generate_tiers_best_fit_first_part_timers_last(out: Path) -> None:
    cc = parse(out, "autoload_configs/callcenter.conf.xml")
    tiers = [(t.get("agent").split("@")[0], int(t.get("level")), int(t.get("position")))
             for t in cc.findall(f"tiers/tier[@queue='billing@{CITY}']")]
    # billing >= 3: fits 9 (1001, 1004), 8 (1002), 6 (1003), 5 (1009), 4 (1011), 3 (1012)
    assert tiers == [("1001", 1, 1), ("1004", 1, 2), ("1002", 2, 1), ("1003", 3, 1),
                     ("1009", 4, 1), ("1011", 5, 1), ("1012", 6, 1)]
    billing = cc.find(f"queues/queue[@name='billing@{CITY}']")
    params = {p.get("name"): p.get("value") for p in billing.findall("param")}
    assert params["tier-rules-apply"] == "true"
    assert params["tier-rule-wait-second"] == "60"


def test_effective_tiers_weakest_required_skill_decides_and_min_level_excludes() -> None:
    tenant = city_tenant()
    q = Queue(id="gas_billing", name="x",
              skills=(SkillRequirement("billing", 5), SkillRequirement("gas", 1)))
    # only 1001 has billing>=5 and gas: fit = min(9, 5) = 5
    assert effective_tiers(tenant, q) == (Tier("1001", 1, 1, q.src),)
    explicit = Queue(id="e", name="e", tiers=(Tier("1003", 2, 1), Tier("1001", 1, 1)))
    assert effective_tiers(tenant, explicit) == explicit.tiers  # as written
    none = Queue(id="n", name="n", skills=(SkillRequirement("billing", 10),))
    assert effective_tiers(tenant, none) == ()


def test_ivr_option_transfers_to_the_queue_entry_that_runs_callcenter(out: Path) -> None:
    menus = parse(out, f"ivr_menus/{DEMO}.xml")
    menu = menus.find(f"menu[@name='hotline_main@{DEMO}']")
    assert menu.get("max-failures") == "2" and menu.get("timeout") == "6000"
    entries = {e.get("digits"): (e.get("action"), e.get("param")) for e in menu.findall("entry")}
    assert entries["1"] == ("menu-exec-app", f"transfer hotline-queue-billing XML {DEMO}")
    ctx = context(out, DEMO)
    entry = extension(ctx, "queue_billing")
    cond = entry.find("condition")
    assert cond.get("field") == "destination_number"
    assert cond.get("expression") == "^hotline-queue-billing$"
    acts = actions(entry)
    assert ("callcenter", f"billing@{DEMO}") in acts
    assert ("set", "hangup_after_bridge=true") in acts
    assert acts[-1] == ("transfer", f"hotline-qexit-billing XML {DEMO}")
    # the DID answers and runs the menu, like the capture switch
    did = extension(ctx, "did_4008001234_1_always")
    assert ("ivr", f"hotline_main@{DEMO}") in actions(did)


def test_ivr_playback_option_gets_an_action_destination(out: Path) -> None:
    menu = parse(out, f"ivr_menus/{CITY}.xml").find(f"menu[@name='billing_menu@{CITY}']")
    param = next(e.get("param") for e in menu.findall("entry") if e.get("digits") == "2")
    dest = param.split()[1]
    assert dest.startswith("hotline-action-playback-")
    ctx = context(out, CITY)
    ext = next(e for e in ctx.findall("extension")
               if e.find("condition").get("expression") == f"^{dest}$")
    assert ("playback", "sounds/city/balance-info.wav") in actions(ext)
    assert actions(ext)[-1] == ("hangup", "NORMAL_CLEARING")


def test_queue_entry_sets_cc_and_hotline_variables_for_announce_survey_callback(out: Path) -> None:
    ctx = context(out, CITY)
    acts = actions(extension(ctx, "queue_billing"))
    assert ("set", f"hotline_queue=billing@{CITY}") in acts
    assert ("set", f"hotline_tenant={CITY}") in acts
    assert ("set", "hotline_announce_agent=true") in acts
    # the announcement runs on the caller's leg inside the bridge, nothing on the agent's leg
    assert ("set", "bridge_pre_execute_app=python") in acts
    assert ("set", "bridge_pre_execute_data=hotline_announce") in acts
    assert not any(d and "execute_on_answer" in d for _, d in acts)
    assert ("set", "cc_export_vars=domain_name,hotline_tenant,hotline_queue") in acts
    assert ("set", "hangup_after_bridge=false") in acts  # survey: the caller stays
    assert ("set", f"transfer_after_bridge=hotline-qexit-billing:XML:{CITY}") in acts
    # the key: the variable one second before the offer, then a break that starts the next
    # music round (which reads it); the tasks are deleted when the caller leaves the queue
    arm = "${sched_api(+90 ${uuid} uuid_setvar ${uuid} cc_exit_keys *)}"
    brk = "${sched_api(+90 ${uuid} uuid_break ${uuid})}"
    assert acts.index(("set", f"hotline_callback_arm={arm}")) < acts.index(
        ("set", f"hotline_callback_task={brk}"))
    queue_at = acts.index(("callcenter", f"billing@{CITY}"))
    assert acts[queue_at + 1] == ("set", "hotline_callback_task=${sched_del(${uuid})}")
    assert ("unset", "cc_exit_keys") in acts[:queue_at]  # nothing armed before the offer
    assert not any(d and "playback_timeout_sec" in d for _, d in acts)
    answered = extension(ctx, "queue_billing_answered")
    conds = answered.findall("condition")
    assert conds[1].get("field") == "${cc_cause}" and conds[1].get("expression") == "^answered$"
    assert actions(answered)[0] == ("python", f"hotline_survey billing@{CITY}")
    callback = extension(ctx, "queue_billing_callback")
    assert callback.findall("condition")[1].get("field") == "${cc_exit_key}"
    assert actions(callback)[0] == ("python", f"hotline_callback billing@{CITY}")
    # no number confirmed: the script returns and the caller gets the queue's fallback
    assert ("voicemail", f"default {CITY} 8000") in actions(callback)
    fallback = actions(extension(ctx, "queue_billing_fallback"))
    assert ("voicemail", f"default {CITY} 8000") in fallback
    # a queue without the extras keeps the plain capture idiom
    plain = actions(extension(ctx, "queue_new_connection"))
    assert ("set", "hangup_after_bridge=true") in plain
    # hotline_announce still runs (it remembers the call for *28) but stays silent
    assert ("set", "hotline_announce_agent=false") in plain
    assert ("set", "bridge_pre_execute_data=hotline_announce") in plain
    assert not any(d and d.startswith("transfer_after_bridge") for _, d in plain)
    # no offer: a key an earlier queue of the call armed is taken away
    assert ("unset", "cc_exit_keys") in plain
    assert not any(d and ("cc_exit_keys=" in d or "sched_" in d) for _, d in plain)


def test_holiday_closure_and_lunch_break_become_time_conditions(out: Path) -> None:
    ctx = context(out, CITY)
    conds = []
    for ext in ctx.findall("extension"):
        if not ext.get("name").startswith("sched_business_"):
            continue
        assert ext.get("continue") == "true"
        cond = ext.findall("condition")[1]
        state = next(a.get("data") for a in cond.findall("action")
                     if a.get("data").startswith("hotline_sched_business="))
        assert all(a.get("inline") == "true" for a in cond.findall("action"))
        attrs = {k: v for k, v in cond.attrib.items()}
        conds.append((attrs, state.split("=")[1]))
    # lunch: weekday hours are two ranges with a gap 12:00-13:30
    assert ({"wday": "mon,tue,wed,thu,fri", "time-of-day": "08:30-12:00"}, "open") in conds
    assert ({"wday": "mon,tue,wed,thu,fri", "time-of-day": "13:30-17:30"}, "open") in conds
    assert ({"wday": "sat", "time-of-day": "09:00-12:00"}, "open") in conds
    # the holiday closes whole days, and comes after the weekly hours (last match wins)
    holiday = ({"year": "2026", "mon": "10", "mday": "1-7"}, "closed")
    assert conds.index(holiday) > conds.index(
        ({"wday": "sat", "time-of-day": "09:00-12:00"}, "open"))
    # a closure across the new year is split per month
    assert ({"year": "2026", "mon": "12", "mday": "31"}, "closed") in conds
    assert ({"year": "2027", "mon": "1", "mday": "1-2"}, "closed") in conds
    # the closed rule routes to the after-hours menu
    closed = extension(ctx, "did_4001234567_3_closed")
    sched_cond = closed.findall("condition")[1]
    assert sched_cond.get("field") == "${hotline_sched_business}"
    assert sched_cond.get("expression") == "^closed$"
    assert ("ivr", f"after_hours@{CITY}") in actions(closed)
    setup = extension(ctx, "hotline_numbers_setup")
    tz = next(a for a in setup.iter("action") if a.get("data") == "timezone=Asia/Shanghai")
    assert tz.get("inline") == "true"  # set before the time conditions are evaluated
    # a site-wide tod_tz_offset (a number) would win over timezone in mod_dialplan_xml and
    # shift every schedule: the tenant's numbers set a non-number, inline, before them
    off = next(a for a in setup.iter("action") if (a.get("data") or "").startswith("tod_tz"))
    assert off.get("data") == "tod_tz_offset=none" and off.get("inline") == "true"
    assert not off.get("data").split("=")[1].lstrip("-").isdigit()
    names = [e.get("name") for e in ctx.findall("extension")]
    assert names.index("hotline_numbers_setup") < min(
        i for i, n in enumerate(names) if n.startswith("sched_"))


def test_caller_pattern_rule_comes_first(out: Path) -> None:
    ctx = context(out, CITY)
    names = [e.get("name") for e in ctx.findall("extension")
             if e.get("name").startswith("did_4001234567_")]
    assert names == ["did_4001234567_1_blocked", "did_4001234567_2_open",
                     "did_4001234567_3_closed", "did_4001234567_nomatch"]
    cond = extension(ctx, "did_4001234567_1_blocked").findall("condition")[1]
    assert cond.get("field") == "caller_id_number"
    assert cond.get("expression") == r"^1380000000\d$"


def test_feature_codes_call_the_fs_scripts_entry_modules(out: Path) -> None:
    ctx = context(out, CITY)
    got = {}
    for ext in ctx.findall("extension"):
        if ext.get("name").startswith("feature_"):
            expr = ext.find("condition").get("expression")
            python = [d for a, d in actions(ext) if a == "python"]
            assert ("set", f"hotline_tenant={CITY}") in actions(ext)
            got[expr] = python[0]
    assert got == {
        r"^\*22$": "hotline_login",
        r"^\*23$": "hotline_logout",
        r"^\*24$": "hotline_toggle",
        r"^\*25(\d*)$": "hotline_break $1",
        r"^\*26$": "hotline_ready",
        r"^\*27$": "hotline_wrapup",
        r"^\*28(\d*)$": "hotline_disposition $1",
        r"^\*33(\d+)$": "hotline_supervise listen $1",
        r"^\*34(\d+)$": "hotline_supervise whisper $1",
        r"^\*35(\d+)$": "hotline_supervise barge $1",
    }


def test_directory_user_has_password_context_and_agent_variables(out: Path) -> None:
    root = parse(out, f"directory/{CITY}.xml")
    domain = root.find("domain")
    assert domain.get("name") == CITY
    user = domain.find("users/user[@id='1001']")
    params = {p.get("name"): p.get("value") for p in user.findall("params/param")}
    assert params == {"password": "pw-1001"}
    variables = {v.get("name"): v.get("value") for v in user.findall("variables/variable")}
    assert variables["user_context"] == CITY
    assert variables["hotline_agent"] == f"1001@{CITY}"
    assert variables["hotline_agent_pin_required"] == "true"
    other = domain.find("users/user[@id='1002']")
    assert {v.get("name"): v.get("value") for v in other.findall(
        "variables/variable")}["hotline_agent_pin_required"] == "false"
    assert "sofia_contact" in domain.find("params/param[@name='dial-string']").get("value")


def test_conference_room_pin_limits_and_profile(out: Path) -> None:
    ctx = context(out, CITY)
    acts = actions(extension(ctx, "conference_3001"))
    assert ("conference", f"3001@{CITY}@hotline+1234") in acts
    assert ("set", "conference_max_members=10") in acts
    assert ("set", "conference_moderator_pin=4321") in acts
    demo = actions(extension(context(out, DEMO), "conference_3001"))
    assert ("conference", f"3001@{DEMO}@hotline") in demo  # exactly the capture switch
    conf = parse(out, "autoload_configs/conference.conf.xml")
    assert [p.get("name") for p in conf.findall("profiles/profile")] == ["hotline"]
    # the same profiles as a fragment to include inside a stock conference.conf's <profiles>
    fragment = parse(out, "conference_profiles/hotline.xml")
    assert fragment.tag == "include"
    assert [(p.get("name"), [(x.get("name"), x.get("value")) for x in p.findall("param")])
            for p in fragment.findall("profile")] == [
        (p.get("name"), [(x.get("name"), x.get("value")) for x in p.findall("param")])
        for p in conf.findall("profiles/profile")]


def test_public_context_hands_dids_to_the_tenant_context(out: Path) -> None:
    root = parse(out, f"dialplan/public/{CITY}.xml")
    cond = root.find("extension/condition")
    assert cond.get("expression") == "^(4001234567|4009110000)$"
    assert ("transfer", f"$1 XML {CITY}") in [(a.get("application"), a.get("data"))
                                               for a in cond.findall("action")]
    ivr = parse(out, "autoload_configs/ivr.conf.xml")
    assert ivr.find("menus/X-PRE-PROCESS").get("data") == "../ivr_menus/*.xml"


def test_scripts_data_has_pins_break_reasons_and_dispositions(out: Path) -> None:
    data = json.loads((out / "scripts/hotline_data.json").read_text("utf-8"))
    city = data[CITY]
    assert city["tenant"] == "cityutil"
    assert city["agents"]["1001"] == {"id": "1001", "pin": "1234"}
    assert city["agents"]["1002"] == {"id": "1002", "pin": None}
    assert city["break_reasons"] == {"1": "lunch", "2": "training", "3": "meeting"}
    assert city["dispositions"]["1"] == "resolved"
    assert city["supervisors"] == ["1001", "1005", "1009"]  # the teams' supervisors
    assert data[DEMO]["break_reasons"] == {}
    assert "supervisors" not in data[DEMO]  # no teams: anyone may supervise


def test_render_writes_the_desk_phone_scripts_beside_their_data_file(out: Path) -> None:
    # scripts/ is the whole install on the switch host: every fs_scripts module, unchanged,
    # next to the data file they read
    source = Path(__file__).resolve().parent.parent / "fs_scripts"
    shipped = sorted(p.relative_to(source).as_posix() for p in source.rglob("*.py")
                     if "__pycache__" not in p.parts)
    scripts = out / "scripts"
    written = sorted(p.relative_to(scripts).as_posix() for p in scripts.rglob("*")
                     if p.is_file() and p.name != "hotline_data.json")
    assert written == shipped
    assert "hotline_login.py" in written and "hotline_fs/data.py" in written
    assert (scripts / "hotline_data.json").stat().st_mode & 0o777 == 0o640  # login PINs
    for rel in shipped:
        assert (scripts / rel).read_bytes() == (source / rel).read_bytes(), rel


def test_render_is_deterministic_byte_for_byte(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    render(city_center(), a)
    render(city_center(), b)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    # rendering again over the same tree rewrites the same bytes and leaves no temp files
    render(city_center(), a)
    assert sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()) == files_a


def test_names_with_ampersand_and_angle_brackets_are_escaped(tmp_path: Path) -> None:
    base = demo_tenant()
    tricky = 'Bill & "Pay" <urgent>'
    queues = (Queue(id="billing", name=tricky, tiers=base.queues[0].tiers,
                    moh_sound="local_stream://moh?a=1&b=2"),) + base.queues[1:]
    agents = (base.agents[0].__class__(**{**base.agents[0].__dict__, "name": "O'Neil & <Co>",
                                          "password": "p<&>\"'"}),) + base.agents[1:]
    rule = Rule('night & "weekend" <b>', Action(ActionKind.PLAYBACK, None, "sounds/a&b's.wav"),
                callers=(r"^(?:1[3-9]\d{9}|<x>)$",))
    numbers = (Number("4008001234", "Demo & <test>", (rule,) + base.numbers[0].rules),)
    center = CallCenter((base.__class__(**{**base.__dict__, "queues": queues,
                                           "agents": agents, "numbers": numbers}),))
    render(center, tmp_path)
    cc = parse(tmp_path, "autoload_configs/callcenter.conf.xml")
    billing = cc.find(f"queues/queue[@name='billing@{DEMO}']")
    moh = billing.find("param[@name='moh-sound']").get("value")
    assert moh == "local_stream://moh?a=1&b=2"
    directory = parse(tmp_path, f"directory/{DEMO}.xml")
    user = directory.find("domain/users/user[@id='1001']")
    assert user.find("params/param[@name='password']").get("value") == "p<&>\"'"
    assert user.find("variables/variable[@name='effective_caller_id_name']").get(
        "value") == "O'Neil & <Co>"
    text = (tmp_path / f"dialplan/{DEMO}.xml").read_text("utf-8")
    assert "<urgent>" not in text and "<b>" not in text  # comments are sanitised too
    ctx = ET.fromstring(text).find("context")
    ext = next(e for e in ctx.findall("extension") if e.get("name").startswith("did_4008001234_1"))
    conds = ext.findall("condition")
    assert conds[1].get("expression") == r"^(?:1[3-9]\d{9}|<x>)$"
    assert ("set", 'hotline_rule=night & "weekend" <b>') in actions(ext)
    assert ("playback", "sounds/a&b's.wav") in actions(ext)
    assert cc.find(f"tiers/tier[@queue='billing@{DEMO}']") is not None


def test_render_files_is_pure_and_matches_disk(out: Path) -> None:
    files = render_files(city_center())
    for rel, content in files.items():
        assert (out / rel).read_text("utf-8") == content


def test_queue_with_a_dialable_extension_is_reachable_by_number(tmp_path: Path) -> None:
    base = demo_tenant()
    q = base.queues[0].__class__(**{**base.queues[0].__dict__, "extension": "7001"})
    center = CallCenter((base.__class__(**{**base.__dict__, "queues": (q,) + base.queues[1:]}),))
    render(center, tmp_path)
    entry = extension(context(tmp_path, DEMO), "queue_billing")
    assert entry.find("condition").get("expression") == "^(hotline-queue-billing|7001)$"


def test_direct_extension_dialing_and_ivr_callback_request(tmp_path: Path) -> None:
    base = city_tenant()
    menu = base.ivr_menus[2]  # after_hours
    menu = menu.__class__(**{**menu.__dict__, "direct_extension_dialing": True, "digit_len": 4,
                             "options": menu.options + (
                                 IvrOption("3", Action(ActionKind.CALLBACK, "billing")),)})
    tenant = base.__class__(**{**base.__dict__, "ivr_menus": base.ivr_menus[:2] + (menu,)})
    render(CallCenter((tenant,)), tmp_path)
    m = parse(tmp_path, f"ivr_menus/{CITY}.xml").find(f"menu[@name='after_hours@{CITY}']")
    entries = {e.get("digits"): e.get("param") for e in m.findall("entry")}
    agents = "|".join(sorted(a.extension for a in base.agents))
    assert entries[f"/^({agents})$/"] == f"transfer $1 XML {CITY}"
    dest = entries["3"].split()[1]
    ext = next(e for e in context(tmp_path, CITY).findall("extension")
               if e.find("condition").get("expression") == f"^{dest}$")
    assert actions(ext)[-3:] == [("set", "hotline_callback_request=true"),
                                 ("python", f"hotline_callback billing@{CITY}"),
                                 ("hangup", "NORMAL_CLEARING")]


def test_example_config_renders_the_capture_switch_for_demo(tmp_path: Path) -> None:
    from daemon.definition.config import load_center

    render(load_center(Path(__file__).resolve().parent.parent / "config"), tmp_path)
    for path in tmp_path.rglob("*.xml"):
        ET.parse(path)
    cc = parse(tmp_path, "autoload_configs/callcenter.conf.xml")
    tiers = [(t.get("agent"), t.get("level"), t.get("position"))
             for t in cc.findall(f"tiers/tier[@queue='billing@{DEMO}']")]
    assert tiers == [(f"100{n}@{DEMO}", lvl, pos) for n, lvl, pos in
                     ((1, "1", "1"), (2, "1", "2"), (3, "1", "3"), (5, "1", "4"), (6, "1", "5"),
                      (4, "2", "1"))]
    contacts = {a.get("name"): (a.get("contact"), a.get("wrap-up-time"))
                for a in cc.findall("agents/agent") if a.get("name").endswith(DEMO)}
    assert contacts[f"1003@{DEMO}"] == (f"[leg_timeout=5]user/1003@{DEMO}", "5")
    assert contacts[f"1005@{DEMO}"] == (f"[leg_timeout=10]user/1005@{DEMO}", "3")
    menu = parse(tmp_path, f"ivr_menus/{DEMO}.xml").find(f"menu[@name='hotline_main@{DEMO}']")
    assert [e.get("digits") for e in menu.findall("entry")] == ["1", "2", "3", "9"]
    did = actions(extension(context(tmp_path, DEMO), "did_4008001234_1_always"))
    assert [a for a, _ in did] == ["set", "answer", "sleep", "set", "ivr", "playback", "hangup"]


def test_rerender_removes_files_of_a_removed_tenant_but_not_hand_written_ones(
        tmp_path: Path) -> None:
    render(city_center(), tmp_path)
    mine = tmp_path / "dialplan" / "local_extras.xml"
    mine.write_text("<include/>\n", "utf-8")
    render(CallCenter((demo_tenant(),)), tmp_path)
    assert not (tmp_path / f"dialplan/{CITY}.xml").exists()
    assert not (tmp_path / f"directory/{CITY}.xml").exists()
    assert (tmp_path / f"dialplan/{DEMO}.xml").exists()
    assert mine.exists()


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_files_with_passwords_or_pins_are_never_world_readable_whatever_the_umask(
        tmp_path: Path, umask: int) -> None:
    import os
    import stat

    old = os.umask(umask)
    try:
        written = render(city_center(), tmp_path)
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in written}
    secret = {rel: mode for rel, mode in modes.items()
              if rel.startswith("directory/") or rel == "scripts/hotline_data.json"}
    assert secret and all(mode == 0o640 for mode in secret.values()), secret  # SIP passwords, PINs
    assert all(mode == 0o644 for rel, mode in modes.items() if rel not in secret), modes
    # the group is the directory's (the FreeSWITCH group in a stock install)
    data = tmp_path / "scripts/hotline_data.json"
    assert data.stat().st_gid == data.parent.stat().st_gid
    assert not [p for p in tmp_path.rglob("*.tmp")]
