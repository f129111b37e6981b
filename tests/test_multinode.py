"""Several FreeSWITCH nodes into one daemon, and mod_callcenter's shared database.

Two ESL test peers replay different captures into one ``hotline daemon`` process
(PostgreSQL, Redis): every call and segment keeps the node it came from. ``hotline
render`` writes callcenter.conf's ``odbc-dsn`` when the settings ask for it.
"""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from cli import hotline
from tests.eslpeer import EslPeer, capture_event_frames, real_switch
from tests.test_daemon_cli import subscribed, wait_for
from tests.test_failover import wiped

REPO = Path(__file__).resolve().parent.parent
CAPTURES = Path(__file__).resolve().parent / "data" / "captures"
PASSWORD = "pw-nodes"

if real_switch():
    pytest.skip("drives the peers' control plane", allow_module_level=True)


def call_ids(name: str) -> set[str]:
    truth = json.loads((CAPTURES / f"{name}.truth.json").read_text())
    return {c["call_uuid"] for c in truth["calls"]}


def test_two_nodes_into_one_daemon_every_row_keeps_its_node(tmp_path, pg_database_url, redis_url):
    import subprocess
    import sys

    url = wiped(pg_database_url)
    one, two = "sip_agent", "abandoned_long"
    with EslPeer(password=PASSWORD) as fs1, EslPeer(password=PASSWORD) as fs2:
        settings = tmp_path / "settings.yaml"
        settings.write_text(
            "settings:\n"
            f"  esl: \"fs1=127.0.0.1:{fs1.port}:{PASSWORD},fs2=127.0.0.1:{fs2.port}:{PASSWORD}\"\n"
            f"  database_url: \"{url}\"\n"
            f"  redis_url: \"{redis_url}\"\n"
            f"  journal_dir: \"{tmp_path / 'journal'}\"\n"
            f"  config_dir: \"{REPO / 'config'}\"\n"
            "  http_listen: \"\"\n")
        log = tmp_path / "daemon.log"
        proc = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "daemon",
                                 "--settings", str(settings)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        try:
            for peer in (fs1, fs2):
                peer.wait_subscribed(timeout=60)
                wait_for(lambda p=peer: "api show channels as json" in p.commands, 30,
                         "snapshot")
            for peer, name in ((fs1, one), (fs2, two)):
                frames = [f for f in capture_event_frames(CAPTURES / f"{name}.esl")
                          if subscribed(f)]
                assert peer.replay(frames) == len(frames)
            engine = create_engine(url)

            def stored() -> dict[str, set[str]]:
                with engine.connect() as conn:
                    rows = conn.execute(text("SELECT node, call_id FROM calls")).all()
                return {n: {c for nn, c in rows if nn == n} for n in ("fs1", "fs2")}
            wait_for(lambda: stored() == {"fs1": call_ids(one), "fs2": call_ids(two)}, 30,
                     "both nodes' calls stored")
            proc.send_signal(signal.SIGTERM)
            wait_for(lambda: proc.poll() is not None, 30, "daemon exit")
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, log.read_text()
    with engine.connect() as conn:
        segs = conn.execute(text("SELECT node, call_id FROM segments")).all()
        bad = conn.execute(text(
            "SELECT count(*) FROM segments s JOIN calls c ON c.call_id = s.call_id "
            "WHERE s.node <> c.node")).scalar()
    engine.dispose()
    assert {n for n, _ in segs} == {"fs1", "fs2"}
    assert {c for n, c in segs if n == "fs1"} <= call_ids(one)
    assert {c for n, c in segs if n == "fs2"} <= call_ids(two)
    assert bad == 0
    # one journal per node, named after it
    assert sorted({p.name.split("-")[0] for p in (tmp_path / "journal").glob("*.esl")}) == \
        ["fs1", "fs2"]


def test_render_writes_callcenter_odbc_dsn_when_the_settings_ask(tmp_path, monkeypatch):
    settings = tmp_path / "settings.yaml"
    settings.write_text("settings:\n  callcenter_odbc_dsn: \"${CC_DSN}\"\n")
    monkeypatch.setenv("HOTLINE_SETTINGS", str(settings))
    monkeypatch.setenv("CC_DSN", "pgsql://hostaddr=10.0.0.5 dbname=callcenter user=cc "
                                 "password=s&cret")
    out = tmp_path / "out"
    result = CliRunner().invoke(hotline, ["render", str(REPO / "config"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    conf = (out / "autoload_configs" / "callcenter.conf.xml").read_text()
    assert ('<param name="odbc-dsn" value="pgsql://hostaddr=10.0.0.5 dbname=callcenter '
            'user=cc password=s&amp;cret"/>') in conf
    monkeypatch.delenv("HOTLINE_SETTINGS")
    result = CliRunner().invoke(hotline, ["render", str(REPO / "config"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    conf = (out / "autoload_configs" / "callcenter.conf.xml").read_text()
    assert "pgsql://" not in conf and '<!--<param name="odbc-dsn"' in conf  # each node its own
