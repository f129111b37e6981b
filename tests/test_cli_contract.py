"""One CLI contract: every command, through the real entry point ``cli.main``.

A user's mistake exits 1 with one line on stderr saying what is wrong; exit 2 is kept for
bugs. Read commands never create a database. Every read command has --json. calls, report
and trace read times the same way (tenant's clock by default, --utc, ISO, today,
yesterday). validate reports every mistake in one run. Tenants are named by their id.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from daemon.definition.moments import MomentError, parse_moment
from daemon.live.http_api import HttpApi
from tests.conftest import CAPTURES, REPO
from tests.test_http_api import AGENT, blocking, busy_center_state, closed_port, settings_file

EXAMPLE = REPO / "config"
ANSWERED = "30082806-037b-4dba-8e24-9e170e1bf74c"  # answered_ivr, 12:07:09 in Berlin


class _Entry:
    """Lets CliRunner drive ``cli.main`` itself, with its exit-code contract."""

    name = "hotline"

    def main(self, args=(), prog_name=None, **_):
        main(list(args))


_NO_SWITCH: list[int] = []


def no_switch() -> str:
    """An ESL address where nothing listens (this machine may run a real FreeSWITCH)."""
    if not _NO_SWITCH:
        _NO_SWITCH.append(closed_port())
    return f"127.0.0.1:{_NO_SWITCH[0]}:ClueCon"


def hotline(*args: str, env: dict[str, str | None] | None = None):
    """Run ``hotline ARGS`` through ``cli.main``; settings come only from ``env``."""
    base = {"HOTLINE_SETTINGS": None, "HOTLINE_DATABASE_URL": None, "HOTLINE_CONFIG_DIR": None,
            "HOTLINE_REDIS_URL": None, "HOTLINE_ESL": no_switch(), "HOTLINE_HTTP_LISTEN": ""}
    return CliRunner().invoke(_Entry(), list(args), env={**base, **(env or {})})


def one_line_user_error(result, *words: str) -> str:
    """Exit 1, nothing but one line on stderr, mentioning ``words``."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output and "internal error" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    """Two recorded calls of tenant demo (hotline.test, Europe/Berlin) in SQLite."""
    path = tmp_path_factory.mktemp("contract") / "calls.db"
    url = f"sqlite:///{path}"
    done = hotline("replay", "--quiet", str(CAPTURES / "answered_ivr.esl"),
                   str(CAPTURES / "queue_timeout.esl"), "--db", url, "--config", str(EXAMPLE))
    assert done.exit_code == 0, done.output
    return url


def with_db(db: str, *args: str) -> tuple[str, ...]:
    return (*args, "--db", db, "--config", str(EXAMPLE))


# --- a user's mistake: exit 1, one line ------------------------------------------------------

def test_an_impossible_date_in_report_is_one_line_exit_1(db):
    one_line_user_error(hotline(*with_db(db, "report", "--from", "2026-13-01")),
                        "--from '2026-13-01' is not a date of the calendar")
    one_line_user_error(hotline(*with_db(db, "report", "calls", "--kpi", "abandon_rate",
                                         "--from", "2026-02-30")),
                        "--from '2026-02-30' is not a date of the calendar")


def test_report_out_into_a_missing_folder_is_one_line_exit_1(db, tmp_path):
    out = tmp_path / "missing" / "report.txt"
    one_line_user_error(hotline(*with_db(db, "report", "--out", str(out))),
                        f"cannot write --out {out}", "No such file or directory")


def test_render_out_under_a_regular_file_is_one_line_exit_1(tmp_path):
    (tmp_path / "plain").write_text("a file, not a folder")
    one_line_user_error(hotline("render", str(EXAMPLE), "--out", str(tmp_path / "plain" / "fs")),
                        "cannot write to --out", "Not a directory")
    one_line_user_error(hotline("render", str(EXAMPLE), "--out", str(tmp_path / "plain")),
                        "'--out'", "is a file", "hotline render --help")


def test_a_usage_mistake_is_one_line_that_points_at_the_help():
    one_line_user_error(hotline("report", "--bogus"), "No such option '--bogus'",
                        "see 'hotline report --help'")
    one_line_user_error(hotline("report", "--json", "--format", "csv"), "contradict")


def test_a_bare_hotline_prints_the_help():
    result = hotline()
    assert result.exit_code == 0 and "Commands:" in result.stdout


@pytest.mark.parametrize("args", [
    ("calls",), ("report",), ("report", "calls", "--kpi", "asa"), ("recordings",),
    ("qa", "score", "c1", "90", "--agent", "1001", "--by", "lead"),
    ("disposition", "c1", "1"), ("replay", "--quiet", str(CAPTURES / "hold.esl")),
    ("staffing", "--queue", "billing", "--tenant", "demo", "--date", "2026-11-23"),
])
def test_postgresql_without_its_driver_says_which_extra_to_install(args, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # as on a machine without the extra
    result = hotline(*args, "--db", "postgresql+psycopg2://hotline@127.0.0.1/hotline",
                     env={"HOTLINE_CONFIG_DIR": str(EXAMPLE)})
    one_line_user_error(result, "pip install 'hotline[postgres]'")


def test_an_unreachable_database_is_exit_1_for_report_as_for_calls():
    url = "postgresql+psycopg2://postgres:s3cret@127.0.0.1:1/none"
    for args in (("report",), ("calls",), ("report", "calls", "--kpi", "asa")):
        line = one_line_user_error(hotline(*args, "--db", url, "--config", str(EXAMPLE)),
                                   "cannot use the database")
        assert "s3cret" not in line


@pytest.mark.parametrize("tagged,word", [
    ("!!timestamp x", "'x' is not a valid !!timestamp value"),
    ("!!bool maybe", "'maybe' is not a valid !!bool value"),
    ('!!int ""', "'' is not a valid !!int value"),
    ("!!binary aGVsbG8=", "the tag !!binary is not supported here"),
])
def test_explicit_yaml_tags_with_bad_values_are_file_line_col_sentences(tagged, word, tmp_path):
    cfg = tmp_path / "c"
    cfg.mkdir()
    text = (EXAMPLE / "demo.yaml").read_text().replace("    language: en",
                                                       f"    language: {tagged}")
    (cfg / "demo.yaml").write_text(text)
    line = text[:text.index(tagged)].count("\n") + 1
    result = hotline("validate", str(cfg))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"{cfg / 'demo.yaml'}:{line}:15: {word}; "
                                          + ("write plain values." if "tag" in word else
                                             "write the value without the tag, or fix it.")]
    # the same in a settings file
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"settings:\n  journal_dir: {tagged}\n")
    result = hotline("calls", env={"HOTLINE_SETTINGS": str(settings)})
    assert result.exit_code == 1 and f"{settings}:2:16: {word}" in result.output
    assert "internal error" not in result.output


# --- read commands never create anything ------------------------------------------------------

@pytest.mark.parametrize("args", [
    ("calls",), ("report",), ("report", "calls", "--kpi", "asa"), ("recordings",),
    ("qa", "score", "c1", "90", "--agent", "1001", "--by", "lead"), ("disposition", "c1", "1"),
    ("staffing", "--queue", "billing", "--tenant", "demo", "--date", "2026-11-23"),
])
def test_read_commands_in_a_folder_without_a_database_create_nothing(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_user_error(hotline(*args, env={"HOTLINE_CONFIG_DIR": str(EXAMPLE)}),
                        "hotline.db", "does not exist")
    mistyped = tmp_path / "hotlnie.db"
    one_line_user_error(hotline(*args, "--db", f"sqlite:///{mistyped}",
                                env={"HOTLINE_CONFIG_DIR": str(EXAMPLE)}), "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_a_database_without_hotline_tables_is_not_migrated_by_a_read(tmp_path):
    sqlite3.connect(tmp_path / "other.db").close()
    url = f"sqlite:///{tmp_path / 'other.db'}"
    for args in (("calls",), ("report",), ("disposition", "c1", "1")):
        one_line_user_error(hotline(*args, "--db", url, "--config", str(EXAMPLE)),
                            "has no Hotline tables yet")
    with sqlite3.connect(tmp_path / "other.db") as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_postgresql_database_that_does_not_exist_is_named(pg_database_url):
    from sqlalchemy.engine import make_url

    missing = make_url(pg_database_url).set(database="hotline_no_such_database")
    url = missing.render_as_string(hide_password=False)
    for args in (("calls",), ("report",), ("disposition", "c1", "1")):
        one_line_user_error(hotline(*args, "--db", url, "--config", str(EXAMPLE)),
                            "cannot use the database", "hotline_no_such_database",
                            "does not exist")


# --- --json on every read command ---------------------------------------------------------------

READ_COMMANDS = [("validate",), ("trace",), ("calls",), ("report",), ("report", "calls"),
                 ("agent", "status"), ("queue", "status"), ("recordings",), ("staffing",),
                 ("reload",)]


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_every_read_command_documents_json(command):
    result = hotline(*command, "--help")
    assert result.exit_code == 0 and "--json" in result.stdout


def test_report_json_is_the_rows_of_the_table(db):
    as_json = json.loads(hotline(*with_db(db, "report", "--json", "--kpi",
                                          "total_calls,answered")).stdout)
    assert as_json == json.loads(hotline(*with_db(db, "report", "--format", "json", "--kpi",
                                                  "total_calls,answered")).stdout)
    demo = [r for r in as_json if r["tenant"] == "demo"]
    assert [(r["interval_start"], r["total_calls"], r["answered"]) for r in demo] == [
        ("2026-11-22T00:00:00+01:00", 2, 1)]
    table = hotline(*with_db(db, "report", "--tenant", "demo", "--kpi", "total_calls,answered"))
    assert re.search(r"^2026-11-22\s+2\s+1$", table.stdout, re.MULTILINE), table.stdout
    drill = json.loads(hotline(*with_db(db, "report", "calls", "--kpi", "answered",
                                        "--json")).stdout)
    assert {r["call_id"] for r in drill} >= {ANSWERED}


def test_calls_json_and_table_show_the_same_calls(db):
    log = json.loads(hotline(*with_db(db, "calls", "--json")).stdout)
    table = hotline(*with_db(db, "calls")).stdout
    heads = [line.split()[:2] for line in table.splitlines() if line and not line[0].isspace()]
    assert heads == [[c["started_at"], c["call_id"]] for c in log]


def test_trace_and_validate_json(tmp_path):
    data = json.loads(hotline("trace", "4008001234", "--at", "2026-11-23 09:05", "--digits", "1",
                              "--config", str(EXAMPLE), "--json").stdout)
    assert data["tenant"] == "demo" and data["at"] == "2026-11-23T09:05:00+01:00"
    assert json.loads(hotline("validate", str(EXAMPLE), "--json").stdout)["ok"] is True


# --- one time convention ------------------------------------------------------------------------

NOON_UTC = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)


def test_the_one_reader_of_times():
    berlin = "Europe/Berlin"
    assert parse_moment("2026-11-22", berlin).isoformat() == "2026-11-22T00:00:00+01:00"
    assert parse_moment("2026-11-22", berlin, end=True).isoformat() == "2026-11-23T00:00:00+01:00"
    assert parse_moment("2026-11-22 09:05", berlin).isoformat() == "2026-11-22T09:05:00+01:00"
    assert parse_moment("2026-11-22T09:05Z", berlin).isoformat() == "2026-11-22T09:05:00+00:00"
    assert parse_moment("2026-11-22T09:05+08:00", "UTC").utcoffset() == dt.timedelta(hours=8)
    assert parse_moment("today", berlin, now=NOON_UTC).isoformat() == "2026-11-23T00:00:00+01:00"
    assert parse_moment("yesterday", berlin, end=True, now=NOON_UTC).isoformat() == \
        "2026-11-23T00:00:00+01:00"
    assert parse_moment("today 09:05", "UTC", now=NOON_UTC).isoformat() == \
        "2026-11-23T09:05:00+00:00"
    # the day a tenant is in decides "today": 23:30 UTC is already tomorrow in Shanghai
    late = dt.datetime(2026, 11, 23, 23, 30, tzinfo=dt.timezone.utc)
    assert parse_moment("today", "Asia/Shanghai", now=late).date() == dt.date(2026, 11, 24)
    for bad in ("2026-13-01", "2026-02-30", "last tuesday", "", "22/11/2026", "todayish"):
        with pytest.raises(MomentError):
            parse_moment(bad, berlin, option="--from")


@pytest.mark.parametrize("command", [("calls", "--from"), ("report", "--from"),
                                     ("trace", "4008001234", "--at")])
def test_calls_report_and_trace_read_the_same_words_the_same_way(command, db):
    def run(word: str):
        if command[0] == "trace":  # the model only, no database
            return hotline(*command, word, "--config", str(EXAMPLE))
        return hotline(*with_db(db, *command, word))

    for word in ("today", "yesterday", "2026-11-22", "2026-11-22T09:05Z", "today 09:05"):
        result = run(word)
        assert result.exit_code == 0, (word, result.output)
    line = one_line_user_error(run("2026-02-30"))
    assert line == (f"Error: {command[-1]} '2026-02-30' is not a date of the calendar (write "
                    "YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (optionally with Z or +HH:MM), today, "
                    "yesterday, 'today HH:MM', now)")


def test_calls_are_on_the_tenants_clock_unless_utc(db):
    local = json.loads(hotline(*with_db(db, "calls", "--json", "--call", ANSWERED)).stdout)[0]
    utc = json.loads(hotline(*with_db(db, "calls", "--json", "--utc", "--call", ANSWERED)).stdout)[0]
    assert (local["started_at"], utc["started_at"]) == ("2026-11-22T12:07:09.492+01:00",
                                                        "2026-11-22T11:07:09.492Z")
    assert local["segments"][0]["started_at"].endswith("+01:00")
    # 12:07 on demo's clock is 11:07 UTC: after 11:30 in Berlin, before 11:30 in UTC
    after = hotline(*with_db(db, "calls", "--json", "--tenant", "demo", "--from", "2026-11-22 11:30"))
    assert ANSWERED in after.stdout
    utc_after = hotline(*with_db(db, "calls", "--json", "--utc", "--from", "2026-11-22 11:30"))
    assert ANSWERED not in utc_after.stdout


def test_report_utc_aligns_intervals_to_utc(db):
    rows = json.loads(hotline(*with_db(db, "report", "--json", "--tenant", "demo", "--utc",
                                       "--interval", "1h", "--kpi", "total_calls")).stdout)
    assert [(r["interval_start"], r["total_calls"]) for r in rows] == [
        ("2026-11-22T11:00:00+00:00", 2)]


def test_trace_utc_reads_at_as_utc():
    local = json.loads(hotline("trace", "4008001234", "--at", "2026-11-23 08:05", "--utc",
                               "--config", str(EXAMPLE), "--json").stdout)
    assert local["at"] == "2026-11-23T09:05:00+01:00"  # the walk stays on demo's clock


# --- validate: every mistake in one run --------------------------------------------------------

def test_validate_reports_reference_errors_beside_the_errors_that_stop_a_tenant(tmp_path):
    (tmp_path / "x.yaml").write_text(
        "tenants:\n"
        "  x:\n"
        "    domain: x.test\n"
        "    timezone: Mars/Olympus\n"
        "    numbers:\n"
        "      '100':\n"
        "        rules:\n"
        "          - {name: r, action: {queue: nosuch}}\n"
        "    queues:\n"
        "      q1:\n"
        "        tiers:\n"
        "          - {agent: ghost, level: 1}\n")
    (tmp_path / "broken.yaml").write_text("tenants: [\n  # defines queue maybe_here\n")
    (tmp_path / "y.yaml").write_text(
        "tenants:\n"
        "  y:\n"
        "    domain: y.test\n"
        "    timezone: UTC\n"
        "    numbers:\n"
        "      '200':\n"
        "        rules:\n"
        "          - {name: a, action: {queue: maybe_here}}\n"
        "      '201':\n"
        "        rules:\n"
        "          - {name: b, action: {queue: surely_not}}\n")
    result = hotline("validate", str(tmp_path))
    assert result.exit_code == 1
    messages = [line.split(": ", 1)[1] for line in result.stdout.splitlines()]
    assert messages[0].startswith("malformed YAML")
    assert messages[1:] == [
        "'timezone' of tenant 'x' is 'Mars/Olympus', which is not a known time zone.",
        "rule 'r' of number 100 refers to queue 'nosuch', which tenant 'x' does not define.",
        "a tier of queue 'q1' refers to agent 'ghost', which tenant 'x' does not define.",
        # maybe_here may be defined in the file that could not be read: not said
        "rule 'b' of number 201 refers to queue 'surely_not', which tenant 'y' does not define.",
    ]


# --- refusing what does not exist ----------------------------------------------------------------

def test_qa_score_and_disposition_refuse_a_call_that_does_not_exist(db):
    one_line_user_error(hotline(*with_db(db, "disposition", "no-such-call", "1")),
                        "no call no-such-call in the database")
    one_line_user_error(hotline(*with_db(db, "qa", "score", "no-such-call", "90", "--agent",
                                         "1001", "--by", "lead")),
                        "no call no-such-call in the database")


def test_replay_refuses_a_file_that_is_not_esl(tmp_path):
    import gzip

    notes = tmp_path / "notes.txt"
    notes.write_text("Meeting notes\n\nnothing to replay here\n")
    packed = tmp_path / "photo.esl.gz"
    packed.write_bytes(gzip.compress(bytes(range(256)) * 100))
    for junk in (notes, packed):
        one_line_user_error(hotline("replay", "--quiet", str(junk), "--db",
                                    f"sqlite:///{tmp_path / 'r.db'}"),
                            f"not an ESL capture or journal: {junk}")
    assert not (tmp_path / "r.db").exists()
    (tmp_path / "just-rotated.esl").write_bytes(b"")  # an empty journal file is fine
    ok = hotline("replay", "--quiet", str(tmp_path / "just-rotated.esl"), "--db",
                 f"sqlite:///{tmp_path / 'r.db'}")
    assert ok.exit_code == 0 and "0 events" in ok.stdout


def test_report_with_a_missing_config_directory_is_an_error(db, tmp_path):
    for args in (("report",), ("calls",), ("disposition", "c1", "1")):
        one_line_user_error(hotline(*args, "--db", db, "--config", str(tmp_path / "nope")),
                            f"--config {tmp_path / 'nope'}: no such directory")


# --- agent status reads the daemon's live state --------------------------------------------------

@pytest.fixture
def api():
    """The daemon's HTTP API serving a live state: 1001 on break (lunch), 1002 waiting."""
    from daemon.definition.config import load_center

    server = HttpApi("127.0.0.1:0", busy_center_state().snapshot, load_center(EXAMPLE)).start()
    try:
        yield server
    finally:
        server.stop()


def agent_status(settings: str, *args: str):
    return blocking(lambda: hotline("agent", "status", *args,
                                    env={"HOTLINE_SETTINGS": settings, "HOTLINE_ESL": None,
                                         "HOTLINE_HTTP_LISTEN": None}))


def test_agent_status_reads_the_running_daemons_api_and_says_so(api, tmp_path):
    host, port = api.address
    settings = settings_file(tmp_path, f"{host}:{port}", closed_port())  # no switch to ask
    result = agent_status(settings, "1001")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"source: the daemon's HTTP API (http://127.0.0.1:{port})"
    assert lines[1].split()[:4] == [AGENT, "On", "Break", "/"] and "(lunch)" in lines[1]
    data = json.loads(agent_status(settings, "--json").stdout)
    assert data["source"] == "daemon" and data["source_url"] == f"http://127.0.0.1:{port}"
    rows = {r["agent"]: r for r in data["agents"]}
    assert (rows[AGENT]["status"], rows[AGENT]["reason"]) == ("On Break", "lunch")
    assert rows["1002@hotline.test"]["state"] == "Waiting"
    assert "billing@hotline.test" in rows[AGENT]["queues"]
    assert rows["1004@hotline.test"]["on_switch"] is False  # the daemon has not seen it


def test_agent_status_prefers_redis(api, tmp_path, redis_url):
    from daemon.engine.records import LiveChange
    from daemon.live.state import RedisLiveState

    live = RedisLiveState(redis_url)
    live.apply([LiveChange("agent", AGENT, (("status", "Available"), ("state", "In a queue call"),
                                            ("call_id", "call-9")), 1)])
    live.close()
    host, port = api.address
    data = json.loads(agent_status(settings_file(tmp_path, f"{host}:{port}", closed_port(),
                                                 redis_url), "1001", "--json").stdout)
    assert data["source"] == "redis"
    assert [(r["status"], r["state"], r["call_id"]) for r in data["agents"]] == [
        ("Available", "In a queue call", "call-9")]


def test_agent_status_without_daemon_or_switch_is_one_line_exit_1(tmp_path):
    settings = settings_file(tmp_path, f"127.0.0.1:{closed_port()}", closed_port())
    result = agent_status(settings)
    one_line_user_error(result, "cannot reach the switch")


# --- one name per tenant -----------------------------------------------------------------------

def test_calls_and_report_name_the_tenant_by_its_id(db):
    [call, _] = json.loads(hotline(*with_db(db, "calls", "--json")).stdout)
    assert (call["tenant"], call["domain"]) == ("demo", "hotline.test")
    rows = json.loads(hotline(*with_db(db, "report", "--json", "--kpi", "total_calls")).stdout)
    assert "demo" in {r["tenant"] for r in rows}
    for name in ("demo", "hotline.test"):  # the id, and the domain for compatibility
        picked = json.loads(hotline(*with_db(db, "calls", "--json", "--tenant", name)).stdout)
        assert len(picked) == 2
        assert len(json.loads(hotline(*with_db(db, "report", "--json", "--tenant", name,
                                               "--kpi", "total_calls")).stdout)) == 1


# --- the help is true ----------------------------------------------------------------------------

def test_every_command_of_the_readme_tour_has_help():
    readme = (REPO / "README.md").read_text()
    tour = readme.split("## A short tour of the CLI", 1)[1].split("\n## ", 1)[0]
    commands = set()
    for cell in re.findall(r"^\| `hotline ([a-z ]+?)(?: [A-Z\[\-]|\\|`)", tour, re.MULTILINE):
        commands.add(tuple(cell.split()))
    assert {("agent", "status"), ("agent", "login"), ("report", "calls"), ("supervise", "listen"),
            ("calls",), ("validate",)} <= commands
    for command in commands:
        result = hotline(*command, "--help")
        assert result.exit_code == 0, (command, result.output)


def test_help_names_the_time_convention():
    for command in (("calls",), ("report",), ("trace",)):
        assert "--utc" in hotline(*command, "--help").stdout
    assert "live state" in hotline("agent", "status", "--help").stdout
    assert "today" in hotline("calls", "--help").stdout
    assert Path(REPO / "docs" / "CALLS_JSON.md").read_text().count("`domain`") >= 1


def test_validate_json_of_a_bad_config_exits_1_through_the_real_entry_point(tmp_path):
    bad = tmp_path / "center"
    bad.mkdir()
    (bad / "t.yaml").write_text("tenants:\n  t:\n    domain: t.example\n    timezone: Mars/Base\n")
    done = subprocess.run([sys.executable, str(REPO / "cli.py"), "validate", str(bad), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert json.loads(done.stdout)["ok"] is False
