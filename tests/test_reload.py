"""``hotline reload`` against the ESL test peer: the exact command sequence per change.

The peer answers with ``FakeCallcenter`` (tests/test_reload_switch.py), a mod_callcenter
stand-in whose queues load from the callcenter.conf in the tmp conf dir. Every scenario
starts from a switch in sync with the example config (config/: demo = hotline.test and
cityutil), changes the model the way an admin edits YAML, reloads, and asserts what was
sent, what the switch runs afterwards and what the conf dir holds.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from daemon.definition.config import load_center
from daemon.definition.model import Agent, CallCenter, EslNode, Queue, Settings, Tenant, Tier
from daemon.switch.reload import PREVIOUS_DIR, format_report, plan_node, reload_center
from daemon.switch.switchstate import parse_callcenter_conf, read_switch_state
from tests.eslpeer import EslPeer, real_switch
from tests.test_reload_switch import FakeCallcenter

REPO = Path(__file__).resolve().parent.parent
CC = "callcenter_config"


@pytest.fixture(scope="module")
def center() -> CallCenter:
    return load_center(REPO / "config")


@pytest.fixture
def peer():
    with EslPeer() as p:
        yield p


def settings_for(conf_dir: Path, *peers: EslPeer) -> Settings:
    nodes = tuple(EslNode(f"n{i + 1}", p.host, p.port, p.password) for i, p in enumerate(peers))
    return Settings(freeswitch_conf_dir=str(conf_dir),
                    freeswitch_script_dir=str(conf_dir.parent / f"{conf_dir.name}-scripts"),
                    esl_nodes=nodes)


@pytest.fixture
def synced(center, peer, tmp_path):
    """A conf dir and a switch that run the example config; the peer's log emptied."""
    conf = tmp_path / "freeswitch"
    fake = FakeCallcenter(peer, conf)
    report = reload_center(center, settings_for(conf, peer))
    assert report.ok, report.error
    peer.commands.clear()
    return conf, fake


def sent(peer: EslPeer) -> list[str]:
    """What changed the switch: api commands other than reads."""
    out = []
    for c in peer.commands:
        if not c.startswith("api "):
            continue
        c = c[4:]
        if " list" in c or " get " in c or c.startswith(("global_getvar ", "show ")):  # reads
            continue
        out.append(c)
    return out


def with_tenant(center: CallCenter, tenant_id: str, **changes) -> CallCenter:
    tenants = tuple(dataclasses.replace(t, **changes) if t.id == tenant_id else t
                    for t in center.tenants)
    return CallCenter(tenants)


def demo(center: CallCenter) -> Tenant:
    return center.tenant("demo")


def without_demo_agent(center: CallCenter, agent_id: str) -> CallCenter:
    """The admin deletes an agent of the demo tenant and its tiers from the YAML."""
    t = demo(center)
    queues = tuple(dataclasses.replace(q, tiers=tuple(x for x in q.tiers if x.agent != agent_id))
                   for q in t.queues)
    return with_tenant(center, "demo", queues=queues,
                       agents=tuple(a for a in t.agents if a.id != agent_id))


def level_1004_to_1(billing: Queue) -> tuple[Tier, ...]:
    return tuple(dataclasses.replace(x, level=1) if x.agent == "1004" else x
                 for x in billing.tiers)


def with_queue(center: CallCenter, queue_id: str, **changes) -> CallCenter:
    t = demo(center)
    queues = tuple(dataclasses.replace(q, **changes) if q.id == queue_id else q for q in t.queues)
    return with_tenant(center, "demo", queues=queues)


# --- first reload ----------------------------------------------------------------------------

def test_first_reload_into_an_empty_switch_writes_files_and_adds_everything(center, peer, tmp_path):
    conf = tmp_path / "fs"
    fake = FakeCallcenter(peer, conf)
    report = reload_center(center, settings_for(conf, peer))
    assert report.ok and not report.rolled_back
    assert {f.change for f in report.files} == {"added"}
    assert (conf / "autoload_configs/callcenter.conf.xml").exists()
    cmds = sent(peer)
    assert cmds[0] == "reloadxml"
    assert cmds[1] == f"{CC} queue load billing@hotline.cityutil.cn"
    # queues first, then agents, then tiers: a tier never points at nothing
    first_agent = next(i for i, c in enumerate(cmds) if " agent add " in c)
    first_tier = next(i for i, c in enumerate(cmds) if " tier add " in c)
    last_queue = max(i for i, c in enumerate(cmds) if " queue load " in c)
    assert last_queue < first_agent < first_tier
    want = parse_callcenter_conf((conf / "autoload_configs/callcenter.conf.xml").read_text())
    assert set(fake.queues) == set(want.queues) and set(fake.agents) == set(want.agents)
    assert set(fake.tiers) == set(want.tiers)


def test_reload_of_an_unchanged_center_sends_only_reloadxml(center, peer, synced):
    report = reload_center(center, settings_for(synced[0], peer))
    assert report.ok and report.files == []
    assert sent(peer) == ["reloadxml"]


# --- the scenarios of the issue ---------------------------------------------------------------

def test_add_agent_adds_it_with_its_params_then_its_tier(center, peer, synced):
    conf, fake = synced
    t = demo(center)
    new = Agent(id="1007", name="Agent 1007", extension="1007", password="pw")
    billing = t.queue("billing")
    changed = with_queue(with_tenant(center, "demo", agents=t.agents + (new,)), "billing",
                         tiers=billing.tiers + (Tier("1007", 1, 6),))
    report = reload_center(changed, settings_for(conf, peer))
    assert report.ok, report.error
    assert sent(peer) == [
        "reloadxml",
        f"{CC} agent add 1007@hotline.test callback",
        f"{CC} agent set contact 1007@hotline.test [leg_timeout=15]user/1007@hotline.test",
        f"{CC} agent set max_no_answer 1007@hotline.test 3",
        f"{CC} agent set wrap_up_time 1007@hotline.test 10",
        f"{CC} agent set reject_delay_time 1007@hotline.test 10",
        f"{CC} agent set busy_delay_time 1007@hotline.test 60",
        f"{CC} agent set no_answer_delay_time 1007@hotline.test 10",
        f"{CC} tier add billing@hotline.test 1007@hotline.test 1 6",
    ]
    assert fake.agents["1007@hotline.test"]["status"] == "Logged Out"
    changes = {f.path: f.change for f in report.files}
    assert changes["directory/hotline.test.xml"] == "changed"
    assert changes["autoload_configs/callcenter.conf.xml"] == "changed"
    # the previous set is kept
    prev = conf / PREVIOUS_DIR / "autoload_configs/callcenter.conf.xml"
    assert "1007@hotline.test" not in prev.read_text()
    assert "1007@hotline.test" in (conf / "autoload_configs/callcenter.conf.xml").read_text()


def test_remove_agent_on_a_call_logs_it_out_and_defers_the_delete(center, peer, synced):
    conf, fake = synced
    fake.agents["1002@hotline.test"].update(status="Available", state="In a queue call")
    fake.add_member("billing@hotline.test", "call-1", 1795345944, state="Answered",
                    agent="1002@hotline.test")
    changed = without_demo_agent(center, "1002")
    report = reload_center(changed, settings_for(conf, peer))
    assert report.ok, report.error
    assert sent(peer) == [
        "reloadxml",
        f"{CC} tier del outage@hotline.test 1002@hotline.test",
        f"{CC} agent set status 1002@hotline.test 'Logged Out'",
    ]
    deferred = {(d.kind, d.target) for d in report.nodes[0].plan.deferred}
    assert deferred == {("agent", "1002@hotline.test"),
                        ("tier", "billing@hotline.test 1002@hotline.test")}
    assert "1002@hotline.test" in fake.agents  # the call goes on
    assert ("billing@hotline.test", "1002@hotline.test") in fake.tiers

    # the call ends: the next reload deletes what was deferred
    fake.agents["1002@hotline.test"]["state"] = "Waiting"
    fake.members["billing@hotline.test"] = []
    peer.commands.clear()
    report = reload_center(changed, settings_for(conf, peer))
    assert report.ok, report.error
    assert sent(peer) == [
        "reloadxml",
        f"{CC} tier del billing@hotline.test 1002@hotline.test",
        f"{CC} agent del 1002@hotline.test",
    ]
    assert "1002@hotline.test" not in fake.agents


# What a desk phone runs: the scripts reload put into the script dir, imported from there
# the way mod_python3 imports them (the script dir first on the path), in a fresh process.
DESK_LOGIN = """
import json, sys
sys.path.insert(0, sys.argv[1])
from hotline_fs import agent, data
sys.path.append(sys.argv[2])
from fs_double import RecordingSession
s = RecordingSession({"user_name": sys.argv[3], "domain_name": "hotline.test"},
                     replies={"callcenter_config agent get state": "Waiting"})
agent.login(s, "")
print(json.dumps({"data_file": data.DATA_FILE, "events": s.events,
                  "warnings": s.logged("warning")}))
"""


def desk_login(script_dir: Path, extension: str) -> dict:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", DESK_LOGIN, str(script_dir),
                           str(REPO / "tests"), extension],
                          capture_output=True, text=True, timeout=60, cwd=script_dir)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_reload_that_removes_an_agent_reaches_the_desk_phones(center, peer, synced):
    # issue 9: reload wrote the data file where the scripts did not look, so *22 from a
    # removed agent's phone still logged in; now reload writes the scripts and their data
    # file into the script dir, the one place the scripts read
    conf, fake = synced
    script_dir = Path(settings_for(conf, peer).freeswitch_script_dir)
    assert (script_dir / "hotline_login.py").is_file()
    assert (script_dir / "hotline_fs/data.py").is_file()
    before = desk_login(script_dir, "1002")
    assert before["data_file"] == str(script_dir / "hotline_data.json")
    assert [e[1]["Hotline-Action"] for e in before["events"]] == ["login"]

    changed = without_demo_agent(center, "1002")
    report = reload_center(changed, settings_for(conf, peer))
    assert report.ok, report.error
    assert {f.path: f.change for f in report.files}["scripts/hotline_data.json"] == "changed"
    data = json.loads((script_dir / "hotline_data.json").read_text("utf-8"))
    assert "1002" not in data["hotline.test"]["agents"]
    assert "1001" in data["hotline.test"]["agents"]
    assert not (conf / "scripts").exists()  # no second copy in the conf dir to go stale

    after = desk_login(script_dir, "1002")
    assert after["events"] == []
    assert after["warnings"] == ["phone 1002@hotline.test is not an agent's desk phone"]


def test_reload_warns_when_the_switch_reads_its_scripts_from_another_folder(center, peer,
                                                                           synced):
    conf, fake = synced
    settings = settings_for(conf, peer)
    peer.script("api global_getvar script_dir", f"{settings.freeswitch_script_dir}\n")
    assert reload_center(center, settings, dry_run=True).warnings == []

    peer.script("api global_getvar script_dir", "/usr/local/freeswitch/scripts\n")
    report = reload_center(center, settings, dry_run=True)
    assert report.warnings == [
        f"node n1 reads its desk-phone scripts from /usr/local/freeswitch/scripts, but "
        f"freeswitch_script_dir is {settings.freeswitch_script_dir}: the phones do not see "
        f"the data file this reload writes; set freeswitch_script_dir to "
        f"/usr/local/freeswitch/scripts (or mount it there)"]
    assert f"warning: {report.warnings[0]}" in format_report(report.to_dict()).splitlines()


def test_change_tier_level_sets_only_that_level(center, peer, synced):
    conf, fake = synced
    billing = demo(center).queue("billing")
    tiers = level_1004_to_1(billing)
    report = reload_center(with_queue(center, "billing", tiers=tiers), settings_for(conf, peer))
    assert report.ok, report.error
    assert sent(peer) == ["reloadxml",
                          f"{CC} tier set level billing@hotline.test 1004@hotline.test 1"]
    assert fake.tiers[("billing@hotline.test", "1004@hotline.test")]["level"] == "1"


def test_change_strategy_reloads_that_queue_only(center, peer, synced):
    conf, fake = synced
    fake.add_member("sales@hotline.test", "call-9", 1795345944)  # a reload keeps callers
    report = reload_center(with_queue(center, "sales", strategy="ring-all"),
                           settings_for(conf, peer))
    assert report.ok, report.error
    assert sent(peer) == ["reloadxml", f"{CC} queue reload sales@hotline.test"]
    assert fake.queues["sales@hotline.test"]["strategy"] == "ring-all"
    assert "autoload_configs/callcenter.conf.xml" in [f.path for f in report.files]


def test_add_queue_loads_it_then_adds_its_tiers(center, peer, synced):
    conf, fake = synced
    t = demo(center)
    support = Queue(id="support", name="Support", tiers=(Tier("1001"), Tier("1003", 2, 1)))
    report = reload_center(with_tenant(center, "demo", queues=t.queues + (support,)),
                           settings_for(conf, peer))
    assert report.ok, report.error
    assert sent(peer) == [
        "reloadxml",
        f"{CC} queue load support@hotline.test",
        f"{CC} tier add support@hotline.test 1001@hotline.test 1 1",
        f"{CC} tier add support@hotline.test 1003@hotline.test 2 1",
    ]
    assert fake.queues["support@hotline.test"]["strategy"] == "longest-idle-agent"


def test_remove_queue_with_waiting_callers_is_deferred_then_unloaded(center, peer, synced):
    conf, fake = synced
    fake.add_member("sales@hotline.test", "call-1", 1795345944)
    t = demo(center)
    changed = with_tenant(center, "demo", queues=tuple(q for q in t.queues if q.id != "sales"))
    report = reload_center(changed, settings_for(conf, peer))
    assert report.ok, report.error
    assert sent(peer) == ["reloadxml"]  # nothing unloaded, the caller's agents kept
    assert [(d.kind, d.target) for d in report.nodes[0].plan.deferred] == [
        ("queue", "sales@hotline.test")]
    assert "sales@hotline.test" in fake.queues
    assert ("sales@hotline.test", "1004@hotline.test") in fake.tiers

    fake.members["sales@hotline.test"] = []
    peer.commands.clear()
    report = reload_center(changed, settings_for(conf, peer))
    assert report.ok, report.error
    assert sent(peer) == ["reloadxml", f"{CC} tier del sales@hotline.test 1004@hotline.test",
                          f"{CC} queue unload sales@hotline.test"]
    assert "sales@hotline.test" not in fake.queues


def test_failure_halfway_rolls_back_commands_and_files(center, peer, synced):
    conf, fake = synced
    before_files = {p.relative_to(conf): p.read_bytes() for p in conf.rglob("*")
                    if p.is_file() and PREVIOUS_DIR not in p.parts}
    before_switch = fake.snapshot()
    t = demo(center)
    new = Agent(id="1007", name="Agent 1007", extension="1007", password="pw")
    support = Queue(id="support", name="Support", tiers=(Tier("1007"),))
    billing = t.queue("billing")
    tiers = level_1004_to_1(billing)
    changed = with_queue(with_tenant(center, "demo", agents=t.agents + (new,),
                                     queues=t.queues + (support,)), "billing", tiers=tiers)
    fake.fail["tier add support@hotline.test"] = "-ERR Unknown Error!\n"
    report = reload_center(changed, settings_for(conf, peer))
    assert not report.ok and report.rolled_back
    assert "tier add support@hotline.test 1007@hotline.test" in report.error
    assert sent(peer) == [
        "reloadxml",
        f"{CC} queue load support@hotline.test",
        f"{CC} agent add 1007@hotline.test callback",
        f"{CC} agent set contact 1007@hotline.test [leg_timeout=15]user/1007@hotline.test",
        f"{CC} agent set max_no_answer 1007@hotline.test 3",
        f"{CC} agent set wrap_up_time 1007@hotline.test 10",
        f"{CC} agent set reject_delay_time 1007@hotline.test 10",
        f"{CC} agent set busy_delay_time 1007@hotline.test 60",
        f"{CC} agent set no_answer_delay_time 1007@hotline.test 10",
        f"{CC} tier set level billing@hotline.test 1004@hotline.test 1",
        f"{CC} tier add support@hotline.test 1007@hotline.test 1 1",  # fails here
        # rollback: files restored, then the applied steps undone newest first
        "reloadxml",
        f"{CC} tier set level billing@hotline.test 1004@hotline.test 2",
        f"{CC} agent del 1007@hotline.test",
        f"{CC} queue unload support@hotline.test",
    ]
    assert fake.snapshot() == before_switch
    after_files = {p.relative_to(conf): p.read_bytes() for p in conf.rglob("*")
                   if p.is_file() and PREVIOUS_DIR not in p.parts}
    assert after_files == before_files


def test_switch_that_does_not_apply_a_command_fails_the_check_and_rolls_back(center, peer, synced):
    conf, fake = synced
    fake.ignore.add("tier set level")
    billing = demo(center).queue("billing")
    tiers = level_1004_to_1(billing)
    report = reload_center(with_queue(center, "billing", tiers=tiers), settings_for(conf, peer))
    assert not report.ok and report.rolled_back
    assert "does not match" in report.error
    assert sent(peer)[-2:] == ["reloadxml",
                               f"{CC} tier set level billing@hotline.test 1004@hotline.test 2"]
    assert 'agent="1004@hotline.test" queue="billing@hotline.test" level="2"' in (
        conf / "autoload_configs/callcenter.conf.xml").read_text()


def test_dry_run_plans_without_touching_files_or_switch(center, peer, synced):
    conf, fake = synced
    before = fake.snapshot()
    before_conf = (conf / "autoload_configs/callcenter.conf.xml").read_bytes()
    report = reload_center(with_queue(center, "sales", strategy="ring-all"),
                           settings_for(conf, peer), dry_run=True)
    assert report.dry_run and report.ok
    assert report.nodes[0].plan.to_dict()["commands"] == [f"{CC} queue reload sales@hotline.test"]
    assert sent(peer) == []  # not even reloadxml
    assert fake.snapshot() == before
    assert (conf / "autoload_configs/callcenter.conf.xml").read_bytes() == before_conf
    text = format_report(report.to_dict())
    assert "dry run" in text and "queue reload sales@hotline.test" in text


def test_reload_reports_per_node_and_each_node_gets_its_own_plan(center, synced, peer, tmp_path):
    conf, fake = synced
    with EslPeer() as peer2:
        fake2 = FakeCallcenter(peer2, conf)
        fake2.boot()
        del fake2.tiers[("outage@hotline.test", "1001@hotline.test")]  # node 2 drifted
        report = reload_center(center, settings_for(conf, peer, peer2))
        assert report.ok, report.error
        assert [n.node for n in report.nodes] == ["n1", "n2"]
        assert report.nodes[0].plan.steps == ()
        assert [s.command for s in report.nodes[1].plan.steps] == [
            f"{CC} tier add outage@hotline.test 1001@hotline.test 2 1"]
        assert ("outage@hotline.test", "1001@hotline.test") in fake2.tiers
        only = reload_center(center, settings_for(conf, peer, peer2), node="n2", dry_run=True)
        assert [n.node for n in only.nodes] == ["n2"]


def test_nodes_sharing_agents_and_tiers_plan_again_before_their_turn(center, synced, peer):
    conf, fake = synced
    with EslPeer() as peer2:  # a second switch on the same mod_callcenter database
        peer2.script("api callcenter_config", fake.callcenter)
        peer2.script("api reloadxml", fake.reloadxml)
        billing = demo(center).queue("billing")
        report = reload_center(with_queue(center, "billing", tiers=level_1004_to_1(billing)),
                               settings_for(conf, peer, peer2))
        assert report.ok, report.error
        assert sent(peer) == ["reloadxml",
                              f"{CC} tier set level billing@hotline.test 1004@hotline.test 1"]
        assert sent(peer2) == ["reloadxml"]


def test_a_second_reload_at_the_same_time_is_refused(center, peer, synced):
    import fcntl

    from daemon.switch.reload import LOCK_FILE, ReloadError

    conf, fake = synced
    with open(conf / LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(ReloadError, match="another hotline reload"):
            reload_center(center, settings_for(conf, peer))
    assert sent(peer) == []


def test_names_of_other_domains_on_the_switch_are_left_alone(center, peer, synced):
    conf, fake = synced
    fake._agent_add(["9999@other.example", "callback"])
    report = reload_center(center, settings_for(conf, peer))
    assert report.ok and sent(peer) == ["reloadxml"]
    assert "9999@other.example" in fake.agents


def test_removed_tenant_files_are_removed_and_restored_on_rollback(center, peer, synced):
    conf, fake = synced
    only_demo = CallCenter(tuple(t for t in center.tenants if t.id == "demo"))
    report = reload_center(only_demo, settings_for(conf, peer), dry_run=True)
    removed = {f.path for f in report.files if f.change == "removed"}
    assert "dialplan/hotline.cityutil.cn.xml" in removed
    fake.fail["agent del"] = "-ERR Unknown Error!\n"
    report = reload_center(only_demo, settings_for(conf, peer))
    assert report.rolled_back
    assert (conf / "dialplan/hotline.cityutil.cn.xml").exists()
    manifest = json.loads((conf / ".hotline-manifest.json").read_text())
    assert "dialplan/hotline.cityutil.cn.xml" in manifest  # the previous manifest is back


def test_plan_is_pure_and_orders_queue_agent_tier_changes():
    from daemon.switch.switchstate import CcConfig, SwitchAgent, SwitchState, SwitchTier

    desired = CcConfig(queues={"q@d": {"strategy": "ring-all"}},
                       agents={"a@d": {"type": "callback", "contact": "user/a@d"}},
                       tiers={("q@d", "a@d"): (1, 1)})
    running = SwitchState(agents={"old@d": SwitchAgent("old@d", "Available", "Waiting",
                                                       (("type", "callback"),))},
                          tiers={("q@d", "old@d"): SwitchTier("q@d", "old@d", 1, 1)},
                          queues={"gone@d": {"name": "gone@d"}})
    plan = plan_node("n", desired, CcConfig(), running, {"d"})
    assert [s.command for s in plan.steps] == [
        f"{CC} queue load q@d",
        f"{CC} agent add a@d callback",
        f"{CC} agent set contact a@d user/a@d",
        f"{CC} tier add q@d a@d 1 1",
        f"{CC} tier del q@d old@d",
        f"{CC} agent del old@d",
        f"{CC} queue unload gone@d",
    ]
    assert plan.steps[5].undo == (f"{CC} agent add old@d callback",
                                  f"{CC} agent set status old@d Available")


def test_after_a_reload_the_switch_matches_the_rendered_conf(center, peer, synced):
    conf, fake = synced
    from daemon.switch.esl import EslConnection

    with EslConnection(peer.host, peer.port, peer.password) as conn:
        state = read_switch_state(conn)
    want = parse_callcenter_conf((conf / "autoload_configs/callcenter.conf.xml").read_text())
    again = plan_node("n1", want, want, state, {t.domain for t in center.tenants})
    assert again.steps == ()


def test_cli_reload_failure_prints_the_rollback_and_exits_1(center, peer, synced, tmp_path):
    from click.testing import CliRunner

    from cli import hotline

    conf, fake = synced
    fake.fail["queue reload"] = "-ERR Invalid Queue not found!\n"
    config = tmp_path / "config"
    config.mkdir()
    demo_yaml = (REPO / "config/demo.yaml").read_text()
    # the sales queue's strategy, wherever the key sits in its block
    (config / "demo.yaml").write_text(re.sub(
        r"(\n      sales:\n(?:        .*\n)*?        strategy: )longest-idle-agent", r"\1ring-all",
        demo_yaml, count=1))
    assert (config / "demo.yaml").read_text() != demo_yaml
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"freeswitch_conf_dir: {conf}\n"
                        f"freeswitch_script_dir: {conf.parent / f'{conf.name}-scripts'}\n"
                        f"esl: {peer.host}:{peer.port}:{peer.password}\n")
    result = CliRunner().invoke(hotline, ["reload", str(config)],
                                env={"HOTLINE_SETTINGS": str(settings), "HOTLINE_ESL": None,
                                     "HOTLINE_CONFIG_DIR": None})
    assert result.exit_code == 1
    assert "reload FAILED and was rolled back" in result.output
    assert "queue reload sales@hotline.test" in result.output


# --- a real switch (HOTLINE_TEST_ESL=host:port:password): read-only ---------------------------

@pytest.mark.skipif(real_switch() is None, reason="HOTLINE_TEST_ESL is not set")
def test_real_switch_reload_dry_run_plans_without_changing_anything(center, tmp_path):
    host, port, password = real_switch()
    settings = Settings(freeswitch_conf_dir=str(tmp_path / "fs"),
                        freeswitch_script_dir=str(tmp_path / "fs-scripts"),
                        esl_nodes=(EslNode("real", host, port, password),))
    report = reload_center(center, settings, dry_run=True)
    assert report.ok and report.nodes[0].node == "real"
    assert not (tmp_path / "fs").exists()
    assert all(f.change == "added" for f in report.files)
