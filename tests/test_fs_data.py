"""The desk-phone scripts read their data file from one place: next to themselves.

Run as FreeSWITCH runs them: the rendered ``scripts/`` folder first on the path, in a
fresh process, so the checkout's fs_scripts play no part.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.definition.config import load_center
from daemon.definition.render import render

REPO = Path(__file__).resolve().parent.parent

LOGIN = """
import json, sys
sys.path.insert(0, sys.argv[1])
from hotline_fs import agent, data
sys.path.append(sys.argv[2])
from fs_double import RecordingSession
s = RecordingSession(json.loads(sys.argv[3]),
                     replies={"callcenter_config agent get state": "Waiting"})
agent.login(s, "")
print(json.dumps({"data_file": data.DATA_FILE, "events": s.events, "errors": s.logged("err")}))
"""


def login_from(scripts: Path, variables: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", LOGIN, str(scripts), str(REPO / "tests"),
                           json.dumps(variables)],
                          capture_output=True, text=True, timeout=60, cwd=scripts.parent)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def scripts(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("render")
    render(load_center(REPO / "config"), out)
    return out / "scripts"


def test_rendered_scripts_read_the_data_file_rendered_next_to_them(scripts):
    got = login_from(scripts, {"user_name": "1002", "domain_name": "hotline.test"})
    assert got["data_file"] == str(scripts / "hotline_data.json")
    assert got["events"] == [["hotline::agent", {"Hotline-Agent": "1002@hotline.test",
                                                 "Hotline-Action": "login"}]]


def test_no_other_data_file_is_read_when_the_one_next_to_the_scripts_is_missing(scripts, tmp_path):
    # a copy elsewhere (an old channel variable, the conf dir) must never win over the one
    # place reload writes: without that file the phone fails and the log names it
    copy = tmp_path / "scripts"
    copy.mkdir()
    for path in scripts.rglob("*.py"):
        (copy / path.relative_to(scripts)).parent.mkdir(parents=True, exist_ok=True)
        (copy / path.relative_to(scripts)).write_bytes(path.read_bytes())
    elsewhere = tmp_path / "hotline_data.json"
    elsewhere.write_bytes((scripts / "hotline_data.json").read_bytes())
    got = login_from(copy, {"user_name": "1002", "domain_name": "hotline.test",
                            "hotline_data": str(elsewhere)})
    assert got["events"] == []
    assert got["errors"] == [f"{copy / 'hotline_data.json'}: data file not found (hotline "
                             f"render writes it into scripts/ with these scripts; hotline "
                             f"reload updates it)"]
