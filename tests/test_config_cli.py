"""`hotline validate`: exit codes, file:line:col lines, --json."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from cli import hotline

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config"


def test_validate_the_example_prints_ok_and_exits_0():
    result = CliRunner().invoke(hotline, ["validate", str(EXAMPLE)], env={})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: 2 tenants, 4 numbers, 4 IVR menus, 8 queues, 22 agents")


def test_validate_defaults_to_the_configured_directory(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "c")
    result = CliRunner().invoke(hotline, ["validate"],
                                env={"HOTLINE_CONFIG_DIR": str(tmp_path / "c")})
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith(f"in {tmp_path / 'c'}")


def test_validate_reports_every_error_and_exits_1(tmp_path):
    cfg = tmp_path / "c"
    shutil.copytree(EXAMPLE, cfg)
    demo = cfg / "demo.yaml"
    text = demo.read_text()
    text = text.replace("strategy: ring-all", "strategy: ringall")
    text = text.replace('"3": {queue: sales}', '"3": {queue: sale}')
    demo.write_text(text)
    result = CliRunner().invoke(hotline, ["validate", str(cfg)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{demo}:37:16: option 3 of IVR menu 'hotline_main' refers to "
                               f"queue 'sale'")
    assert lines[0].endswith("did you mean 'sales'?")
    line = text[:text.index("ringall")].count("\n") + 1  # the file changes; the column not
    assert lines[1].startswith(f"{demo}:{line}:19: 'strategy' of queue 'outage' is 'ringall'")
    assert f"{cfg}: 2 errors" in result.stderr


def test_validate_json_for_scripts(tmp_path):
    ok = CliRunner().invoke(hotline, ["validate", str(EXAMPLE), "--json"])
    assert ok.exit_code == 0
    data = json.loads(ok.output)
    assert data["ok"] is True and data["summary"]["agents"] == 22 and data["errors"] == []
    (tmp_path / "a.yaml").write_text("tenants:\n  x:\n    domain: x.test\n    timezone: UTC\n"
                                     "    queues: {q: {strategy: nope, tiers: []}}\n")
    bad = CliRunner().invoke(hotline, ["validate", str(tmp_path), "--json"])
    assert bad.exit_code == 1
    data = json.loads(bad.stdout)
    assert data["ok"] is False
    assert [(e["line"], e["column"]) for e in data["errors"]] == [(5, 14), (5, 28)]
    assert data["errors"][0]["message"] == "queue 'q' has no agents: give 'tiers' or required " \
                                           "'skills'."


def test_validate_missing_directory_and_help():
    result = CliRunner().invoke(hotline, ["validate", "/nonexistent/hotline"])
    assert result.exit_code == 1
    assert result.stdout == "/nonexistent/hotline: the configuration directory does not exist.\n"
    help_text = CliRunner().invoke(hotline, ["validate", "--help"]).output
    assert "FILE:LINE:COLUMN" in help_text and "--json" in help_text
