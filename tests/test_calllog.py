"""The call log (`hotline calls`) and `hotline replay` from the command line."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import hotline
from daemon.engine.records import CallRecord, EngineOutput, Segment
from daemon.storage.calllog import (
    CALL_FIELDS,
    SEGMENT_FIELDS,
    call_log,
    format_table,
    iso_ms,
)
from daemon.storage.store import Store
from tests.conftest import CAPTURES, REPO

EXAMPLE = str(REPO / "config")  # tenant demo (hotline.test) on Europe/Berlin time

ANSWERED = "30082806-037b-4dba-8e24-9e170e1bf74c"  # answered_ivr
TIMEOUT = "2e518ac2-c8da-4e74-b7c0-b0364b7af5aa"  # queue_timeout


def run(*args: str):
    if args and args[0] == "calls":
        args = (*args, "--config", EXAMPLE)
    return CliRunner().invoke(hotline, list(args), catch_exceptions=False)


@pytest.fixture
def replayed_url(empty_db_url):
    result = run("replay", "--quiet", str(CAPTURES / "answered_ivr.esl"),
                 str(CAPTURES / "queue_timeout.esl"), "--db", empty_db_url)
    assert result.exit_code == 0, result.output
    assert "2 calls" in result.output
    return empty_db_url


def test_times_are_iso_8601_utc_with_milliseconds():
    assert iso_ms(1_795_345_629_492) == "2026-11-22T11:07:09.492Z"
    assert iso_ms(1_795_345_629_000) == "2026-11-22T11:07:09.000Z"
    assert iso_ms(None) is None


def test_times_on_a_tenants_clock_carry_its_offset():
    from zoneinfo import ZoneInfo

    assert iso_ms(1_795_345_629_492, ZoneInfo("Europe/Berlin")) == "2026-11-22T12:07:09.492+01:00"


def test_calls_json_lists_every_call_with_every_documented_field(replayed_url):
    result = run("calls", "--json", "--db", replayed_url)
    assert result.exit_code == 0
    calls = json.loads(result.output)
    assert [c["call_id"] for c in calls] == [ANSWERED, TIMEOUT]  # oldest first
    for call in calls:
        assert list(call) == list(CALL_FIELDS)
        for seg in call["segments"]:
            assert list(seg) == list(SEGMENT_FIELDS)
    answered = calls[0]
    assert answered["started_at"] == "2026-11-22T12:07:09.492+01:00"  # demo's wall clock
    assert answered["outcome"] == "answered"
    assert (answered["tenant"], answered["domain"]) == ("demo", "hotline.test")
    ivr = answered["segments"][0]
    assert (ivr["kind"], ivr["queue"], ivr["agent"], ivr["outcome"], ivr["digits"]) == (
        "ivr", None, None, None, "1")
    # (the wrap-up after the talk depends on the example config's wrap-up times)
    assert [s["kind"] for s in answered["segments"]][:4] == ["ivr", "queue", "ring", "talk"]


def test_calls_from_to_selects_calls_by_start_time(replayed_url):
    result = run("calls", "--json", "--db", replayed_url, "--from", "2026-11-22T11:08:00Z")
    assert [c["call_id"] for c in json.loads(result.output)] == [TIMEOUT]
    result = run("calls", "--json", "--db", replayed_url, "--to", "2026-11-22T11:08:00Z")
    assert [c["call_id"] for c in json.loads(result.output)] == [ANSWERED]
    result = run("calls", "--json", "--db", replayed_url, "--from", "2026-11-22", "--to", "2026-11-22")
    assert len(json.loads(result.output)) == 2
    result = run("calls", "--json", "--db", replayed_url, "--from", "2026-11-23")
    assert json.loads(result.output) == []
    result = run("calls", "--json", "--db", replayed_url, "--tenant", "other.example")
    assert result.exit_code == 1 and "no tenant 'other.example' (tenants: cityutil, demo)" in \
        result.output
    result = run("calls", "--json", "--db", replayed_url, "--tenant", "cityutil")
    assert json.loads(result.output) == []  # a tenant of the model without calls
    result = run("calls", "--json", "--db", replayed_url, "--tenant", "hotline.test")
    assert len(json.loads(result.output)) == 2
    result = run("calls", "--json", "--db", replayed_url, "--tenant", "demo")
    assert len(json.loads(result.output)) == 2


def test_from_and_to_are_read_on_the_tenants_clock_unless_utc(replayed_url):
    # the answered call starts 12:07:09 Berlin = 11:07:09 UTC, the timeout one 12:10:43
    result = run("calls", "--json", "--db", replayed_url, "--from", "2026-11-22 12:08")
    assert [c["call_id"] for c in json.loads(result.output)] == [TIMEOUT]
    result = run("calls", "--json", "--db", replayed_url, "--utc", "--from", "2026-11-22 12:08")
    assert json.loads(result.output) == []
    result = run("calls", "--json", "--db", replayed_url, "--utc", "--to", "2026-11-22 11:08")
    [only] = json.loads(result.output)
    assert (only["call_id"], only["started_at"]) == (ANSWERED, "2026-11-22T11:07:09.492Z")


def test_calls_for_one_call_prints_a_table_for_humans(replayed_url):
    result = run("calls", "--db", replayed_url, "--call", TIMEOUT)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert TIMEOUT in lines[0] and "timeout" in lines[0]
    assert any(line.split()[:1] == ["queue"] and "sales@hotline.test" in line for line in lines)


def test_a_bad_date_is_a_user_error_with_exit_code_1(replayed_url):
    result = run("calls", "--db", replayed_url, "--from", "last tuesday")
    assert result.exit_code == 1
    assert "cannot read --from 'last tuesday'" in result.output
    assert run("calls", "--db", replayed_url, "--from", "2026-11-23", "--to", "2026-11-22").exit_code == 1


def test_an_unknown_call_and_a_missing_file_are_user_errors(replayed_url, tmp_path):
    assert run("calls", "--db", replayed_url, "--call", "no-such-call").exit_code == 1
    result = run("replay", str(tmp_path / "missing.esl"), "--db", replayed_url)
    assert result.exit_code == 1 and "no such file" in result.output


def test_replaying_again_from_the_cli_leaves_the_call_log_identical(replayed_url):
    before = run("calls", "--json", "--db", replayed_url).output
    again = run("replay", "--quiet", str(CAPTURES / "queue_timeout.esl"),
                str(CAPTURES / "answered_ivr.esl"), "--db", replayed_url)
    assert again.exit_code == 0
    assert run("calls", "--json", "--db", replayed_url).output == before


def test_a_missing_database_is_refused_and_not_created(tmp_path):
    result = run("calls", "--db", f"sqlite:///{tmp_path / 'new.db'}")
    assert result.exit_code == 1 and "does not exist" in result.output
    assert not (tmp_path / "new.db").exists()


def test_an_empty_hotline_database_is_an_empty_call_log(empty_db_url):
    from daemon.storage.store import migrate

    migrate(empty_db_url)
    result = run("calls", "--db", empty_db_url)
    assert result.exit_code == 0 and result.output.strip() == "No calls."


def test_open_calls_and_extra_segment_fields_come_out_as_stored(empty_db_url, tmp_path):
    store = Store(empty_db_url, spill_dir=tmp_path / "spill")
    store.write(EngineOutput(
        calls=[CallRecord("c1", "hotline.test", "vm", "138", "400", 1_000, None, "in-progress")],
        segments=[Segment("c1:survey:0", "c1", "hotline.test", "vm", "survey", 2_000, 2_500,
                          queue="billing@hotline.test", agent="1001@hotline.test", score=5,
                          attrs=(("question", "1"),))]))
    store.close()
    [call] = call_log(empty_db_url)
    assert call["ended_at"] is None and call["duration_ms"] is None
    survey = call["segments"][0]
    assert (survey["score"], survey["attrs"], survey["duration_ms"]) == (5, {"question": "1"}, 500)
    assert "score=5" in format_table([call])


def test_replaying_a_file_that_is_not_esl_is_refused_before_anything_is_written(tmp_path):
    junk = tmp_path / "notes.esl"
    junk.write_bytes(b"these are not events\n\n" + bytes(range(256)) * 10)
    result = CliRunner().invoke(hotline, ["replay", "--quiet", str(CAPTURES / "hold.esl"),
                                          str(junk), "--db", f"sqlite:///{tmp_path / 'j.db'}"])
    assert result.exit_code == 1
    assert f"not an ESL capture or journal: {junk}" in result.output
    assert not (tmp_path / "j.db").exists()


def test_an_unreachable_or_unknown_database_is_a_user_error_without_the_password(tmp_path):
    result = run("calls", "--db", "postgresql+psycopg2://postgres:s3cret@127.0.0.1:1/none")
    assert result.exit_code == 1
    assert "cannot use the database" in result.output and "s3cret" not in result.output
    junk = tmp_path / "x.esl"
    junk.write_bytes(b"")
    result = run("replay", "--quiet", str(junk), "--db", "nosuchdb://x")
    assert result.exit_code == 1 and "not a database URL" in result.output


def test_the_example_in_docs_calls_json_is_what_replaying_answered_ivr_gives(tmp_path):
    from daemon.engine.segments import SegmentEngine
    from daemon.storage.replay import replay
    from tests.conftest import REPO

    doc = (REPO / "docs" / "CALLS_JSON.md").read_text()
    example = json.loads(doc.split("## Example", 1)[1].split("```json", 1)[1].split("```", 1)[0])
    url = f"sqlite:///{tmp_path / 'doc.db'}"
    replay([CAPTURES / "answered_ivr.esl"], url, None, engine_factory=lambda _center, node:
           SegmentEngine(node=node, agent_wrapup_s={"1001@hotline.test": 3}))
    from daemon.definition.config import load_center

    assert call_log(url, center=load_center(EXAMPLE)) == example


def test_the_call_log_reads_a_sqlite_database_while_the_daemon_holds_a_write_transaction(tmp_path):
    import sqlite3

    url = f"sqlite:///{tmp_path / 'busy.db'}"
    store = Store(url, spill_dir=tmp_path / "spill")
    store.write(EngineOutput(calls=[CallRecord("c1", "t", "vm", "1", "2", 1_000, 2_000, "answered")]))
    store.flush()
    writer = sqlite3.connect(tmp_path / "busy.db", timeout=0)
    writer.execute("BEGIN IMMEDIATE")  # the daemon mid-batch
    writer.execute("UPDATE calls SET outcome = 'abandoned'")
    try:
        assert [c["outcome"] for c in call_log(url)] == ["answered"]  # WAL: readers go on
    finally:
        writer.rollback()
        writer.close()
        store.close()
