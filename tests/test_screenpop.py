"""Screen pop on the desk phone: the caller-ID name an agent's phone shows, safe for SIP and
for mod_callcenter's dial string, set on the caller's channel when the caller joins a queue
- checked against the commands the ESL test peer records."""
from __future__ import annotations

import datetime as dt
import shutil
import zoneinfo
from pathlib import Path

import pytest
from click.testing import CliRunner

from daemon.cli import hotline
from daemon.definition.config import load_center
from daemon.integrations.screenpop import clean, display_name, setvar_commands
from daemon.service import build_service
from tests.eslpeer import capture_event_frames, real_switch
from tests.test_daemon import wait_for
from tests.test_daemon_integration import peer, running, settings_for  # noqa: F401 - fixture
from tests.test_daemon_cli import subscribed

REPO = Path(__file__).resolve().parent.parent
CAPTURES = REPO / "tests" / "data" / "captures"
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
AT = dt.datetime(2026, 11, 22, 11, 27, tzinfo=BERLIN)


def test_a_vip_customer_is_shown_with_the_mark_the_queue_and_the_time_she_joined():
    li_na = {"name": "李娜", "vip": 2, "account_id": "ACC-1002"}
    assert display_name("13800138002", li_na, "Billing", AT) == "VIP2 李娜 · Billing 11:27"


def test_an_unknown_caller_is_shown_by_number():
    assert display_name("13800138009", None, "Billing", AT) == "13800138009 · Billing 11:27"
    assert display_name("", None, None, None) == "?"


def test_quotes_backslashes_and_control_characters_never_reach_the_invite():
    nasty = {"name": 'O\'Brien "The Boss"\\\r\nINVITE sip:x\x00\x07 \u202e', "vip": 0}
    shown = display_name("1", nasty, "Billing", AT, max_chars=80)
    assert shown == "O’Brien ’The Boss’ INVITE sip:x · Billing 11:27"
    assert not any(ch in shown for ch in "'\"\\\r\n\x00")


def test_dial_string_syntax_is_neutralised_so_mod_callcenter_originate_stays_whole():
    assert clean("A{b=c},[d]^e|f`g") == "A(b=c) (d) e/f’g"


def test_a_long_name_is_shortened_and_the_queue_and_time_are_kept():
    long = {"name": "Wolfeschlegelsteinhausenbergerdorff Hubert Blaine", "vip": 1}
    shown = display_name("1", long, "Billing", AT)
    assert len(shown) == 40 and shown.startswith("VIP1 Wolfeschlegel") and "…" in shown
    assert shown.endswith(" · Billing 11:27")


def test_commands_refuse_anything_but_a_channel_uuid():
    with pytest.raises(ValueError):
        setvar_commands("abc def\napi shutdown", "x", None)


@pytest.mark.skipif(bool(real_switch()), reason="drives the test peer's control plane")
def test_a_known_caller_joining_billing_gets_her_name_on_the_agents_phone(peer, tmp_path):  # noqa: F811
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config, ignore=shutil.ignore_patterns("settings.yaml"))
    settings = settings_for(peer, tmp_path)
    csv = tmp_path / "customers.csv"
    csv.write_text("number,name,account_id,vip\n+86 138 0013 8001,王芳 \"Fang\",ACC-1001,3\n",
                   encoding="utf-8")
    imported = CliRunner().invoke(hotline, ["customers", "import", str(csv), "--tenant", "demo",
                                            "--db", settings.database_url, "--config", str(config)])
    assert imported.exit_code == 0, imported.output
    service = build_service(settings, load_center(config))
    frames = [f for f in capture_event_frames(CAPTURES / "answered_ivr.esl") if subscribed(f)]
    with running(service):
        peer.wait_subscribed()
        peer.replay(frames)
        wait_for(lambda: any("uuid_setvar" in c for c in peer.commands), timeout=10,
                 what="screen-pop variables set")
        wait_for(lambda: sum("uuid_setvar" in c for c in peer.commands) == 3, timeout=5,
                 what="all three")
    call = "30082806-037b-4dba-8e24-9e170e1bf74c"
    joined = dt.datetime.fromtimestamp(1795345631.492, BERLIN)
    assert [c for c in peer.commands if "uuid_setvar" in c] == [
        f"api uuid_setvar {call} effective_caller_id_name VIP3 王芳 ’Fang’ · Billing "
        f"{joined:%H:%M}",
        f"api uuid_setvar {call} hotline_customer_id ACC-1001",
        f"api uuid_setvar {call} hotline_vip 3",
    ]
