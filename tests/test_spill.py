"""The spill directory is private and what is read back from it is checked.

A fault probe planted a file in the old predictable ``/tmp/hotline-spill-<hash>`` and the
next ``hotline replay`` wrote its fake call into the database. Now the directory must be
ours alone (0700, our uid, no symlink) and every file must be one we wrote (our uid,
not writable by others, a trailer with its row count and SHA-256, known tables, columns
and types); anything else is never written, it is logged and moved aside.
"""
from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select

from daemon.storage import schema
from daemon.storage.store import Store, _dump_rows, default_spill_dir, rows_of
from tests.conftest import CAPTURES
from tests.test_store import call, day_of_calls

FAKE_CALL = ["calls", {"call_id": "planted-fake-call", "tenant": "hotline.test", "node": "vm",
                       "direction": "inbound", "caller": "10086", "caller_name": "x",
                       "dialed": "4008001234", "started_ms": 1795345627000, "ended_ms": None,
                       "outcome": "answered", "ivr_path": "", "first_queue": None}]
NOBODY = 65534


def call_ids(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(select(schema.calls.c.call_id)).scalars())
    finally:
        engine.dispose()


def plant(path: Path, lines: list, trailer: bool = False) -> Path:
    if trailer:
        _dump_rows(path, [tuple(x) for x in lines])
    else:  # what the probe planted: our old format, no trailer
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_the_default_spill_dir_is_in_the_users_state_dir_not_a_shared_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    url = f"sqlite:///{tmp_path / 'h.db'}"
    store = Store(url)
    store.close()
    assert store.spill_dir == default_spill_dir(url)
    assert store.spill_dir.parent == tmp_path / "state" / "hotline"
    assert stat.S_IMODE(store.spill_dir.stat().st_mode) == 0o700
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert not str(default_spill_dir(url)).startswith(tempfile.gettempdir() + "/hotline-spill")
    assert default_spill_dir(url).parent == tmp_path / "home" / ".local" / "state" / "hotline"


def test_spill_files_are_written_0600_in_a_0700_directory_and_read_back(tmp_path):
    spill = tmp_path / "spill"
    url = f"sqlite:///{tmp_path / 'not-yet' / 'h.db'}"  # its directory is missing: no database
    store = Store(url, spill_dir=spill, max_buffer=10)
    store.write(day_of_calls(8, version=1))  # 16 records: over max_buffer -> a spill file
    [file] = store.spilled_files()
    assert stat.S_IMODE(spill.stat().st_mode) == 0o700
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    (tmp_path / "not-yet").mkdir()  # the database can be created now
    store.flush()
    store.close()
    assert len(call_ids(url)) == 8 and not store.spilled_files()


@pytest.mark.parametrize("how", ["world-writable", "another-owner", "symlink"])
def test_a_spill_directory_that_is_not_ours_alone_is_never_read(empty_db_url, tmp_path, caplog, how):
    spill = tmp_path / "spill"
    spill.mkdir()
    plant(spill / "spill-000000000001.jsonl", [FAKE_CALL], trailer=True)
    if how == "world-writable":
        spill.chmod(0o777)
    elif how == "another-owner":
        assert os.geteuid() == 0, "the test suite runs as root in CI; chown needs it"
        os.chown(spill, NOBODY, NOBODY)
        spill.chmod(0o700)
    else:
        real, spill = spill, tmp_path / "link"
        spill.symlink_to(real)
    with caplog.at_level(logging.ERROR, logger="daemon.storage.store"):
        store = Store(empty_db_url, spill_dir=spill)
        store.write(day_of_calls(2, version=1))
        store.flush()
        store.close()
    assert call_ids(empty_db_url) == {"call-00000", "call-00001"}  # no planted call
    assert store.spill_problem and "refusing to use it" in store.spill_problem
    assert any("refusing to use it" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("case", ["no-trailer", "tampered", "unknown-column", "wrong-type",
                                  "unknown-table", "world-writable-file", "another-owner",
                                  "symlink"])
def test_a_planted_or_damaged_spill_file_is_refused_and_the_genuine_ones_written(
        empty_db_url, tmp_path, caplog, case):
    spill = tmp_path / "spill"
    spill.mkdir(mode=0o700)
    good = [(t, row) for t, _k, row in rows_of(day_of_calls(3, version=1))]
    _dump_rows(spill / "spill-000000000001.jsonl", good)
    bad = spill / "spill-000000000002.jsonl"
    fake = json.loads(json.dumps(FAKE_CALL))
    if case == "no-trailer":
        plant(bad, [FAKE_CALL])
    elif case == "tampered":
        plant(bad, [["calls", call_row_of("honest")]], trailer=True)
        bad.write_text(bad.read_text().replace("honest", "forged"))
    elif case == "unknown-column":
        fake[1]["is_admin"] = 1
        plant(bad, [fake], trailer=True)
    elif case == "wrong-type":
        fake[1]["started_ms"] = "yesterday"
        plant(bad, [fake], trailer=True)
    elif case == "unknown-table":
        plant(bad, [["qa_scores", {"id": 1}]], trailer=True)
    elif case == "world-writable-file":
        plant(bad, [FAKE_CALL], trailer=True)
        bad.chmod(0o666)
    elif case == "another-owner":
        plant(bad, [FAKE_CALL], trailer=True)
        os.chown(bad, NOBODY, NOBODY)
    else:
        elsewhere = plant(tmp_path / "elsewhere.jsonl", [FAKE_CALL], trailer=True)
        bad.symlink_to(elsewhere)
    with caplog.at_level(logging.ERROR, logger="daemon.storage.store"):
        store = Store(empty_db_url, spill_dir=spill)
        store.flush()
        store.close()
    assert call_ids(empty_db_url) == {"call-00000", "call-00001", "call-00002"}
    assert not list(spill.glob("spill-*.jsonl"))
    assert (spill / "refused-spill-000000000002.jsonl").is_symlink() or \
        (spill / "refused-spill-000000000002.jsonl").is_file()
    assert [r for r in caplog.records if "NOT written to the database" in r.getMessage()]


def call_row_of(call_id: str) -> dict:
    [(_table, _key, row)] = rows_of(type(day_of_calls(0))(calls=[call(call_id)]))
    return row


def test_a_whole_busy_hour_of_records_survives_the_strict_reading(tmp_path):
    """Every row the engine really makes passes the checks (types, lengths, columns)."""
    from daemon.engine.segments import engine_for
    from daemon.storage.journal import read_frames
    from daemon.storage.store import _read_spill
    from daemon.switch.events import Event

    engine = engine_for(None, "vm")
    rows = []
    for frame in read_frames(CAPTURES / "busy_hour.esl.gz"):
        if frame.is_event:
            rows += [(t, r) for t, _k, r in rows_of(engine.feed(Event.from_frame(frame)))]
    rows += [(t, r) for t, _k, r in rows_of(engine.finish())]
    assert len(rows) > 1000
    _dump_rows(tmp_path / "spill-1.jsonl", rows)
    back = _read_spill(tmp_path / "spill-1.jsonl")
    assert back == [(t, r) for t, r in json.loads(json.dumps(rows))]


def test_hotline_replay_never_writes_a_planted_spill_file(tmp_path, monkeypatch):
    """The probe's scenario: a file planted where replay spills, then `hotline replay`."""
    from cli import hotline

    state = tmp_path / "state"
    url = f"sqlite:///{tmp_path / 'h.db'}"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    spill = default_spill_dir(url)
    spill.mkdir(parents=True, mode=0o700)
    plant(spill / "spill-000000000001.jsonl", [FAKE_CALL])
    old_tmp = Path(tempfile.gettempdir()) / "hotline-spill-planted-by-the-test"  # the old place
    result = CliRunner().invoke(hotline, ["replay", "--quiet", "--db", url,
                                          str(CAPTURES / "answered_ivr.esl")])
    assert result.exit_code == 0, result.output
    ids = call_ids(url)
    assert ids and "planted-fake-call" not in ids
    assert (spill / "refused-spill-000000000001.jsonl").is_file()
    assert not old_tmp.exists()
