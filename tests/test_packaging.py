"""The built package works without the source tree, as a new user installs it.

A wheel is built from a copy of the sources (what the repository holds, nothing the
checkout has generated), installed into a fresh virtualenv outside the checkout with the
versions of constraints.txt, and the commands a new user runs first are run from a folder
that has no Hotline in it: ``hotline example``, ``validate``, ``render``, ``trace``, and a
replay + HTML report (the migrations and the report template ship too).
Slow (a virtualenv and its dependencies, about a minute); it runs in CI like every test.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from daemon.cli import hotline

REPO = Path(__file__).resolve().parent.parent
# what a clean clone does not have (or the build does not read)
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                     "__pycache__", "*.pyc", "*.db", "out", "journal", "tests",
                                     "bench", ".pytest_cache", "_bundled")


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} exit {done.returncode}:\n" \
                                 f"{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def clean_env() -> dict[str, str]:
    """The environment without anything that points into the checkout or at settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HOTLINE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV",
                                                          "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(REPO)))
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory, clean_env) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(REPO, src, ignore=NOT_SOURCES)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"),
         str(src)], base, clean_env)
    (built,) = (base / "dist").glob("hotline-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory, clean_env) -> Path:
    """A fresh virtualenv outside the checkout with the wheel installed; its bin/."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    run([sys.executable, "-m", "venv", str(venv)], venv.parent, clean_env)
    run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "-c",
         str(REPO / "constraints.txt"), str(wheel)], venv.parent, clean_env)
    return venv / "bin"


def test_wheel_carries_templates_scripts_example_migrations_and_report_template(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = "daemon/_bundled/"
    assert f"{bundled}dialplan_templates/dialplan.xml.j2" in names
    assert f"{bundled}fs_scripts/hotline_login.py" in names
    assert f"{bundled}fs_scripts/hotline_fs/data.py" in names
    assert f"{bundled}config/demo.yaml" in names
    assert f"{bundled}config/cityutil/queues.yaml" in names
    assert "daemon/storage/migrations/script.py.mako" in names
    assert "daemon/storage/migrations/versions/0001_initial_schema.py" in names
    assert "daemon/stats/templates/report.html" in names
    for package in ("definition", "switch", "engine", "storage", "stats", "live", "cli"):
        assert f"daemon/{package}/__init__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_a_new_user_validates_renders_and_traces_the_example_without_the_source_tree(
        installed, tmp_path, clean_env):
    where = run([str(installed / "python"), "-c",
                 "import daemon, daemon.bundle as b; print(daemon.__file__); "
                 "print(b.bundled('dialplan_templates'))"], tmp_path, clean_env)
    module, templates = where.split()
    assert not module.startswith(str(REPO)) and "_bundled" in templates

    home = tmp_path / "center"
    home.mkdir()
    hl = str(installed / "hotline")
    assert "wrote the example center to config" in run([hl, "example"], home, clean_env)
    assert run([hl, "validate"], home, clean_env).startswith("OK: 2 tenants")
    run([hl, "render", "--out", "out"], home, clean_env)
    out = home / "out"
    assert (out / "dialplan/hotline.test.xml").is_file()
    assert (out / "autoload_configs/callcenter.conf.xml").is_file()
    scripts = out / "scripts"
    assert (scripts / "hotline_data.json").is_file()
    assert (scripts / "hotline_login.py").read_bytes() == \
        (REPO / "fs_scripts/hotline_login.py").read_bytes()
    assert (scripts / "hotline_fs/data.py").is_file()
    trace = run([hl, "trace", "4008001234", "--at", "2026-11-23 09:05", "--digits", "1"],
                home, clean_env)
    assert "waits in queue" in trace

    # storage and reports: the migrations and the HTML template come from the wheel too
    capture = REPO / "tests/data/captures/answered_ivr.esl"
    run([hl, "replay", str(capture), "--db", "sqlite:///calls.db"], home, clean_env)
    run([hl, "report", "--format", "html", "--out", "report.html", "--db",
         "sqlite:///calls.db"], home, clean_env)
    assert "<html" in (home / "report.html").read_text("utf-8").lower()


def test_example_refuses_a_folder_that_already_holds_something(tmp_path):
    from click.testing import CliRunner

    (tmp_path / "config").mkdir()
    (tmp_path / "config/mine.yaml").write_text("tenants: {}\n")
    result = CliRunner().invoke(hotline, ["example", "--out", str(tmp_path / "config")])
    assert result.exit_code == 1
    assert "already exists and is not an empty folder" in result.output
    assert sorted(p.name for p in (tmp_path / "config").iterdir()) == ["mine.yaml"]
