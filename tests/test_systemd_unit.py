"""docs/systemd/hotline.service: the invariants an operator relies on, and systemd's own check.

The unit runs ``hotline daemon`` as an unprivileged user, restarts it after a failure,
stops it with SIGTERM (the daemon flushes and exits 0 on it), and confines it: no new
privileges, the whole file system read-only except its state directory, a private /tmp.
The example settings it points at must load and keep everything the daemon writes
inside the writable paths.
"""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

from daemon.definition.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "docs" / "systemd" / "hotline.service"
SETTINGS = REPO / "docs" / "systemd" / "settings.yaml"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       comment_prefixes=("#", ";"), empty_lines_in_values=False)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_runs_hotline_daemon_as_an_unprivileged_user_and_restarts_it_on_failure():
    service = unit()["Service"]
    assert service["ExecStart"].split()[-2:] == ["hotline", "daemon"] or \
        service["ExecStart"].endswith("/hotline daemon")
    assert service["User"] not in ("", "root", "0") and service["Group"] not in ("", "root", "0")
    assert service["Restart"] == "on-failure" and int(service["RestartSec"]) > 0
    assert service["KillSignal"] == "SIGTERM"
    # the daemon flushes the store (10 s at most) and closes links and the API at SIGTERM
    assert int(service["TimeoutStopSec"]) >= 30
    assert service["Environment"].startswith("HOTLINE_SETTINGS=/etc/hotline/")


def test_the_unit_is_confined_and_may_write_only_its_state_directory():
    service = unit()["Service"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes" and service["ProtectHome"] == "yes"
    assert service["CapabilityBoundingSet"] == ""  # no capability at all
    writable = service["ReadWritePaths"].split()
    state = "/var/lib/" + service["StateDirectory"]
    assert writable == [state] and service["WorkingDirectory"] == state
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}


def test_the_example_settings_load_and_keep_the_journal_and_spill_in_the_writable_path():
    env = {"HOTLINE_DATABASE_URL": "postgresql+psycopg2://hotline:pw@db.example/hotline",
           "HOTLINE_ESL_PASSWORD": "ClueCon-prod"}
    settings = load_settings(str(SETTINGS), env=env)
    state = Path("/var/lib/" + unit()["Service"]["StateDirectory"])
    journal = Path(settings.journal_dir)
    assert journal.is_absolute() and state in journal.parents
    assert state in (journal / "spill").parents  # the daemon's spill lives next to the journal
    assert settings.esl_nodes[0].password == "ClueCon-prod"
    assert settings.journal_compress and settings.journal_retention_days == 90
    assert settings.http_listen.startswith("127.0.0.1:")  # loopback: no authentication yet


def test_systemd_analyze_verifies_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (Debian package systemd) is needed: apt-get install systemd"
    hotline = Path(sys.executable).parent / "hotline"
    assert hotline.exists()
    text = UNIT.read_text().replace("/opt/hotline/bin/hotline", str(hotline))
    copy = tmp_path / "hotline.service"
    copy.write_text(text)
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), \
        done.stdout + done.stderr
