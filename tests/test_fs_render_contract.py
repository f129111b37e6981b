"""Render ↔ fs_scripts contract on the example center: the rendered dialplan calls only
entry modules that exist, and the rendered data file drives the scripts."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from fs_double import FS_SCRIPTS, RecordingSession, serve_data
from hotline_fs import agent, caller, data

REPO = FS_SCRIPTS.parent


@pytest.fixture(scope="module")
def rendered():
    from daemon.definition.config import load_center
    from daemon.definition.render import render_files

    return render_files(load_center(REPO / "config"))


def python_calls(xml_text: str) -> list[str]:
    """Every module a rendered dialplan runs with mod_python3 (actions, and the bridge hook
    ``bridge_pre_execute_app=python`` + ``bridge_pre_execute_data=<module>``)."""
    root = ET.fromstring(xml_text)
    modules = []
    for action in root.iter("action"):
        app, value = action.get("application"), action.get("data") or ""
        if app == "python":
            modules.append(value.split()[0])
        elif app == "set" and value.startswith("bridge_pre_execute_data="):
            modules.append(value.split("=", 1)[1].split()[0])
    return modules


def test_rendered_dialplan_calls_only_existing_entry_modules(rendered):
    entry = {p.stem for p in FS_SCRIPTS.glob("hotline_*.py")}
    called = set()
    for path, text in rendered.items():
        if re.fullmatch(r"dialplan/[^/]+\.xml", path):
            called |= set(python_calls(text))
    assert called, "the example center renders no fs_scripts calls"
    assert called <= entry
    # every agent feature code of the example is wired
    assert "hotline_announce" in called  # the bridge hook of every queue
    assert {"hotline_login", "hotline_logout", "hotline_toggle", "hotline_break", "hotline_ready",
            "hotline_wrapup", "hotline_disposition", "hotline_supervise"} <= called


def test_rendered_data_file_logs_an_example_agent_in(rendered, tmp_path, monkeypatch):
    path = serve_data(monkeypatch, tmp_path / "hotline_data.json")
    path.write_text(rendered["scripts/hotline_data.json"], encoding="utf-8")
    tenants = data.load(str(path))
    domain, tenant = sorted(tenants.items())[0]
    desk = sorted(tenant.agents.values(), key=lambda a: a.extension)[0]
    keys = [desk.pin] if desk.pin else []
    s = RecordingSession({"user_name": desk.extension, "hotline_tenant": domain}, keys=keys)
    agent.login(s, "")
    name = f"{desk.id}@{domain}"
    assert s.events == [("hotline::agent", {"Hotline-Agent": name, "Hotline-Action": "login"})]
    assert s.commands[0] == f"callcenter_config agent set status {name} Available"


# --- the caller scripts inside the rendered call flow ------------------------------------
# A tiny dialplan walker: the extension FreeSWITCH would pick for a destination (every
# condition must match; the continue="true" ones only set schedule/number variables for
# the inbound numbers, and the rest use no anti-actions or time conditions), then
# its actions as the switch runs them - set -> channel variable, python -> the feature on
# the recording double - stopping where the channel goes down, hangs up or is transferred.

CITY = "cityutil.hotline.local"
_VAR = re.compile(r"\$\{([^}]+)\}")


def expand(text: str, variables: dict[str, str]) -> str:
    return _VAR.sub(lambda m: variables.get(m.group(1), ""), text)


def hunt(ctx: ET.Element, dest: str, variables: dict[str, str]) -> ET.Element:
    for ext in ctx.findall("extension"):
        conds = ext.findall("condition")
        if ext.get("continue") == "true" or any(c.get("field") is None for c in conds):
            continue
        if all(re.search(c.get("expression"), dest if c.get("field") == "destination_number"
                         else expand(c.get("field"), variables)) for c in conds):
            return ext
    raise AssertionError(f"no extension for {dest}")


def run(ext: ET.Element, s: RecordingSession) -> list[tuple[str, str]]:
    """Run the extension on the double; returns the dialplan actions other than set/python."""
    features = {"hotline_callback": caller.callback, "hotline_survey": caller.survey}
    rest: list[tuple[str, str]] = []
    for action in ext.iter("action"):
        if not s.ready():
            break
        app, value = action.get("application"), action.get("data") or ""
        if app == "set":
            name, _, val = value.partition("=")
            s.variables[name] = expand(val, s.variables)
        elif app == "python":
            module, _, args = value.partition(" ")
            features[module](s, expand(args, s.variables))
        else:
            rest.append((app, value))
            if app in ("hangup", "transfer"):
                break
    return rest


@pytest.fixture(scope="module")
def flows():
    """The factory city tenant with a callback/survey menu and queues whose timeout
    offers a callback (new_connection: of itself, operator: of billing)."""
    import dataclasses

    from factories import act, city_tenant

    from daemon.definition.model import CallCenter, IvrOption
    from daemon.definition.render import render_files

    t = city_tenant()
    menu = t.ivr_menus[2]
    menu = dataclasses.replace(menu, options=menu.options + (
        IvrOption("3", act("callback", "billing")), IvrOption("4", act("survey", "billing")),
        IvrOption("5", act("survey"))))
    timeouts = {"new_connection": act("callback", "new_connection"),
                "operator": act("callback", "billing")}
    queues = tuple(dataclasses.replace(q, on_timeout=timeouts[q.id]) if q.id in timeouts else q
                   for q in t.queues)
    files = render_files(CallCenter((dataclasses.replace(
        t, ivr_menus=t.ivr_menus[:2] + (menu,), queues=queues),)))
    ivr = ET.fromstring(files[f"ivr_menus/{CITY}.xml"])
    entries = {e.get("digits"): e.get("param")
               for e in ivr.find(f".//menu[@name='after_hours@{CITY}']").findall("entry")}
    return ET.fromstring(files[f"dialplan/{CITY}.xml"]).find("context"), entries


def caller_leg(**extra: str) -> dict[str, str]:
    return {"uuid": "call-1", "caller_id_number": "13800138001", "domain_name": CITY, **extra}


def option_dest(entries: dict[str, str], digit: str) -> str:
    return entries[digit].split()[1]  # "transfer <dest> XML <context>"


def test_rendered_menu_callback_option_requests_a_callback_at_the_moment_asked(flows):
    ctx, entries = flows
    s = RecordingSession(caller_leg(), keys=["1"], replies={"strmicroepoch": "1700000500123456"})
    dest = option_dest(entries, "3")
    run(hunt(ctx, dest, s.variables), s)
    assert s.events == [("hotline::callback", {
        "Hotline-Call-ID": "call-1", "Hotline-Queue": f"billing@{CITY}",
        "Hotline-Number": "13800138001", "Hotline-Joined-MS": "1700000500123",
        "Hotline-Action": "request"})]
    assert s.hung_up


def test_rendered_menu_callback_option_without_a_number_ends_the_call(flows):
    ctx, entries = flows
    s = RecordingSession(caller_leg())
    run(hunt(ctx, option_dest(entries, "3"), s.variables), s)
    assert s.events == [] and s.hung_up


@pytest.mark.parametrize("digit,queue", [("4", f"billing@{CITY}"), ("5", None)])
def test_rendered_menu_survey_option_runs_the_survey(flows, digit, queue):
    ctx, entries = flows
    s = RecordingSession(caller_leg(), keys=["5"])
    run(hunt(ctx, option_dest(entries, digit), s.variables), s)
    headers = {"Hotline-Call-ID": "call-1", "Hotline-Score": "5"}
    if queue:
        headers["Hotline-Queue"] = queue
    assert s.events == [("hotline::survey", headers)]
    assert s.hung_up


def exited(queue: str) -> dict[str, str]:
    # what mod_callcenter 1.10 leaves after the exit key (CC_MEMBER_CANCEL_REASON_EXIT_WITH_KEY)
    return caller_leg(cc_cause="cancel", cc_cancel_reason="EXIT_WITH_KEY", cc_exit_key="*",
                      cc_queue=f"{queue}@{CITY}", cc_queue_joined_epoch="1700000000",
                      hotline_queue=f"{queue}@{CITY}")


def test_rendered_exit_key_without_a_number_goes_on_to_the_queue_fallback(flows):
    ctx, _ = flows
    s = RecordingSession(exited("billing"))
    ext = hunt(ctx, "hotline-qexit-billing", s.variables)
    assert ext.get("name") == "queue_billing_callback"
    rest = run(ext, s)
    assert s.events == [] and not s.hung_up  # the script left the call to the dialplan
    assert ("voicemail", f"default {CITY} 8000") in rest  # billing's on_timeout


def test_rendered_exit_key_left_from_an_earlier_queue_does_not_offer_a_callback(flows):
    ctx, _ = flows
    # * pressed in another queue earlier; now billing timed out: the exit-key condition
    # matches (mod_callcenter never clears cc_exit_key), the script must stand aside
    s = RecordingSession({**exited("billing"), "cc_cancel_reason": "TIMEOUT"}, keys=["1"])
    ext = hunt(ctx, "hotline-qexit-billing", s.variables)
    assert ext.get("name") == "queue_billing_callback"
    rest = run(ext, s)
    assert s.events == [] and s.prompts == []
    assert ("voicemail", f"default {CITY} 8000") in rest


def test_rendered_exit_key_with_a_number_requests_the_callback_and_hangs_up(flows):
    ctx, _ = flows
    s = RecordingSession(exited("billing"), keys=["1"])
    rest = run(hunt(ctx, "hotline-qexit-billing", s.variables), s)
    assert s.events[0][1]["Hotline-Joined-MS"] == "1700000000000"
    assert s.hung_up and rest == []


@pytest.mark.parametrize("queue,target,joined_ms", [
    ("new_connection", "new_connection", "1700000000000"),  # same queue: keeps its place
    ("operator", "billing", "1700000500123"),  # another queue: the moment of the request
])
def test_rendered_timeout_offering_a_callback_requests_it(flows, queue, target, joined_ms):
    ctx, _ = flows
    s = RecordingSession(caller_leg(cc_cause="timeout", cc_queue=f"{queue}@{CITY}",
                                    cc_queue_joined_epoch="1700000000",
                                    hotline_queue=f"{queue}@{CITY}"),
                         keys=["1"], replies={"strmicroepoch": "1700000500123456"})
    ext = hunt(ctx, f"hotline-qexit-{queue}", s.variables)
    assert ext.get("name") == f"queue_{queue}_fallback"
    run(ext, s)
    assert [(e[1]["Hotline-Queue"], e[1]["Hotline-Joined-MS"]) for e in s.events] == [
        (f"{target}@{CITY}", joined_ms)]
    assert s.hung_up


def test_rendered_answered_call_runs_the_survey_with_the_agent(flows):
    ctx, _ = flows
    s = RecordingSession(caller_leg(cc_cause="answered", cc_agent=f"1001@{CITY}",
                                    cc_queue=f"billing@{CITY}"), keys=["4"])
    run(hunt(ctx, "hotline-qexit-billing", s.variables), s)
    assert s.events == [("hotline::survey", {
        "Hotline-Call-ID": "call-1", "Hotline-Queue": f"billing@{CITY}",
        "Hotline-Agent": f"1001@{CITY}", "Hotline-Score": "4"})]


# --- outbound routes: the rendered context has a way out -----------------------------------

def test_rendered_tenant_context_routes_external_numbers_out_and_keeps_internal_ones(rendered):
    ctx = ET.fromstring(rendered["dialplan/hotline.cityutil.cn.xml"]).find("context")
    names = [e.get("name") for e in ctx.findall("extension")]
    assert names[-2:] == ["outbound_mobiles", "outbound_landlines"]  # after every internal one
    out = hunt(ctx, "13900000064", {})
    assert out.get("name") == "outbound_mobiles"
    acts = [(a.get("application"), a.get("data")) for a in out.iter("action")]
    assert ("set", "effective_caller_id_number=96116") in acts
    assert ("set", "effective_caller_id_name=City Water and Gas") in acts
    assert acts[-1] == ("bridge", "sofia/gateway/cityutil_trunk/${destination_number}")
    assert hunt(ctx, "02163001234", {}).get("name") == "outbound_landlines"
    # a desk phone and a queue number still reach their own extensions
    assert hunt(ctx, "2002", {}).get("name") == "agent_2002"
    with pytest.raises(AssertionError, match="no extension"):
        hunt(ctx, "12345", {})  # no route takes it: the switch says NO_ROUTE_DESTINATION


def test_rendered_transfer_action_leaves_through_the_tenants_routes():
    import dataclasses

    from factories import city_tenant

    from daemon.definition.model import Action, ActionKind, CallCenter, OutboundRoute, Rule
    from daemon.definition.render import render_files

    t = city_tenant()
    number = dataclasses.replace(t.numbers[0], rules=(
        Rule("out", Action(ActionKind.TRANSFER, "13800138000")),))
    routed = dataclasses.replace(t, numbers=(number,), outbound_routes=(
        OutboundRoute("pstn", r"^1\d{10}$", gateway="trunk"),))
    for tenant, context in ((routed, CITY), (dataclasses.replace(routed, outbound_routes=()),
                                            "default")):
        ctx = ET.fromstring(render_files(CallCenter((tenant,)))[f"dialplan/{CITY}.xml"])
        acts = [(a.get("application"), a.get("data")) for a in ctx.iter("action")]
        assert ("transfer", f"13800138000 XML {context}") in acts


def test_example_conference_profiles_do_not_clash_with_the_stock_ones(rendered):
    # the stock conference.conf.xml of FreeSWITCH 1.10 has these; mod_conference takes the
    # first profile of a name, so the example must not render one of them
    stock = {"default", "wideband", "ultrawideband", "cdquality", "sla", "video-mcu-stereo",
             "video-mcu-stereo-320", "video-mcu-stereo-480", "video-mcu-stereo-720"}
    root = ET.fromstring(rendered["conference_profiles/hotline.xml"])
    assert {p.get("name") for p in root.findall("profile")} == {"hotline"}
    assert not {p.get("name") for p in root.findall("profile")} & stock
