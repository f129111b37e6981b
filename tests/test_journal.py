"""The raw-event journal: byte-exact frames, rotation, gzip, reading captures back."""
from __future__ import annotations

import gzip

import pytest

from daemon.storage.journal import JOURNAL_NAME, Journal, encode_frame, journal_files, read_frames
from daemon.switch.frames import EslParser
from tests.conftest import CAPTURES


def event_frames(name: str):
    return [f for f in read_frames(CAPTURES / name) if f.is_event]


def test_journal_holds_exactly_the_bytes_the_switch_sent(tmp_path):
    frames = event_frames("answered_ivr.esl")
    raw = b"".join(f.raw for f in frames)
    with Journal(tmp_path, prefix="vm") as journal:
        for frame in frames:
            journal.append(frame.raw)
    files = journal_files(tmp_path, "vm")
    assert len(files) == 1
    assert files[0].read_bytes() == raw
    capture = (CAPTURES / "answered_ivr.esl").read_bytes()
    assert raw in capture  # the capture is auth replies + these very frames + bye


def test_a_journal_file_reads_back_as_the_same_frames_as_the_capture(tmp_path):
    frames = event_frames("hold.esl")
    with Journal(tmp_path) as journal:
        for frame in frames:
            journal.append_frame(frame)
    back = list(read_frames(journal_files(tmp_path, "journal")[0]))
    assert [(f.headers, f.body) for f in back] == [(f.headers, f.body) for f in frames]


def test_journal_rotates_by_size_with_utc_stamp_and_sequence_and_loses_no_frame(tmp_path):
    frames = event_frames("abandoned_short.esl")
    with Journal(tmp_path, max_bytes=50_000, prefix="node-1") as journal:
        for frame in frames:
            journal.append(frame.raw)
    files = journal_files(tmp_path, "node-1")
    assert len(files) > 3
    assert all(f.stat().st_size <= 50_000 for f in files)
    seqs = [int(JOURNAL_NAME.match(f.name)["seq"]) for f in files]
    assert seqs == list(range(1, len(files) + 1))
    assert b"".join(f.read_bytes() for f in files) == b"".join(f.raw for f in frames)


def test_a_reopened_journal_continues_the_sequence(tmp_path):
    frames = event_frames("ivr_only.esl")
    with Journal(tmp_path) as journal:
        journal.append(frames[0].raw)
    with Journal(tmp_path) as journal:
        journal.append(frames[1].raw)
    names = [f.name for f in journal_files(tmp_path, "journal")]
    assert [JOURNAL_NAME.match(n)["seq"] for n in names] == ["000001", "000002"]


def test_rotated_files_are_gzipped_and_read_back_like_plain_ones(tmp_path):
    frames = event_frames("queue_timeout.esl")
    with Journal(tmp_path, max_bytes=60_000, compress=True) as journal:
        for frame in frames:
            journal.append(frame.raw)
    files = journal_files(tmp_path, "journal")
    assert all(f.name.endswith(".esl.gz") for f in files[:-1])
    assert files[-1].name.endswith(".esl")  # the last one was not rotated
    back = [f for path in files for f in read_frames(path)]
    assert [f.raw for f in back] == [f.raw for f in frames]


def test_the_gzipped_busy_hour_capture_reads_as_every_event(tmp_path):
    frames = list(read_frames(CAPTURES / "busy_hour.esl.gz"))
    events = [f for f in frames if f.is_event]
    assert len(events) == 17587  # the capture README's count
    assert frames[0].content_type == "auth/request"
    assert frames[-1].content_type == "text/disconnect-notice"


def test_garbage_between_frames_is_skipped_and_reported(tmp_path):
    frames = event_frames("ivr_only.esl")[:3]
    path = tmp_path / "broken.esl"
    path.write_bytes(frames[0].raw + b"Content-Length: xyz\nContent-Type: text/event-plain\n\n"
                     + frames[1].raw + frames[2].raw)
    errors: list[str] = []
    back = [f for f in read_frames(path, errors=errors) if f.is_event]
    assert back[0].raw == frames[0].raw and back[-1].raw == frames[2].raw
    assert errors and "Content-Length" in errors[0]


def test_a_frame_cut_off_at_the_end_of_a_file_is_reported_not_invented(tmp_path):
    frame = event_frames("ivr_only.esl")[0]
    path = tmp_path / "cut.esl.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(frame.raw + frame.raw[:100])
    errors: list[str] = []
    assert len(list(read_frames(path, errors=errors))) == 1
    assert "incomplete frame" in errors[0]


def test_encode_frame_of_a_frame_without_raw_bytes_rebuilds_the_wire_format():
    frame = event_frames("ivr_only.esl")[0]
    rebuilt = encode_frame(type(frame)(frame.headers, frame.body))
    assert rebuilt == frame.raw
    assert EslParser().feed(rebuilt)[0].body == frame.body


def test_a_bad_fsync_policy_is_refused_and_a_node_name_becomes_a_safe_file_name(tmp_path):
    with pytest.raises(ValueError):
        Journal(tmp_path, fsync="sometimes")
    with Journal(tmp_path / "j", prefix="../fs 1/x") as journal:
        journal.append(event_frames("ivr_only.esl")[0].raw)
        written = journal.path
    assert written.parent == tmp_path / "j"
    assert JOURNAL_NAME.match(written.name)["prefix"] == "_fs_1_x"
    assert Journal(tmp_path / "k", prefix="").prefix == "journal"


def test_a_gzip_file_cut_short_yields_every_frame_before_the_cut(tmp_path):
    frames = event_frames("hold.esl")
    whole = gzip.compress(b"".join(f.raw for f in frames))
    path = tmp_path / "cut.esl.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    errors: list[str] = []
    back = list(read_frames(path, errors=errors))
    assert 10 < len(back) < len(frames)
    assert [f.raw for f in back] == [f.raw for f in frames[: len(back)]]
    assert any("cut short" in e for e in errors)


def test_concatenated_gzip_members_read_as_one_stream(tmp_path):
    frames = event_frames("ivr_only.esl")
    half = len(frames) // 2
    path = tmp_path / "two-members.esl.gz"
    path.write_bytes(gzip.compress(b"".join(f.raw for f in frames[:half]))
                     + gzip.compress(b"".join(f.raw for f in frames[half:])))
    assert [f.raw for f in read_frames(path)] == [f.raw for f in frames]


DISK_FULL = r"""
import resource, signal, sys
from daemon.storage.journal import Journal, read_frames
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
frames = [f for f in read_frames(sys.argv[1]) if f.is_event]
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
journal = Journal(sys.argv[2], max_bytes=1 << 30)
resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, hard))  # the disk "fills up"
results = [journal.append(f.raw) for f in frames[:40]]
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
after = journal.append(frames[40].raw)
journal.close()
print(results.count(True), results.count(False), journal.errors, after, len(journal.files()))
"""


def test_a_full_disk_costs_journal_frames_but_never_the_daemon_and_it_recovers(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-c", DISK_FULL, str(CAPTURES / "hold.esl"),
                           str(tmp_path / "j")], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    ok, failed, errors, after, files = done.stdout.split()
    assert int(ok) > 0 and int(failed) > 0 and int(errors) == int(failed)
    assert after == "True" and int(files) >= 2  # writing resumed in a new file


# --- retention ------------------------------------------------------------------------------

DAY = 86400


def age(path, days: float) -> None:
    import os
    import time

    when = time.time() - days * DAY
    os.utime(path, (when, when))


def test_files_older_than_the_retention_are_deleted_at_open_and_at_each_rotation(tmp_path):
    frames = event_frames("queue_timeout.esl")
    with Journal(tmp_path, max_bytes=60_000, prefix="fs1", compress=True) as journal:
        for frame in frames:
            journal.append(frame.raw)
    old = journal_files(tmp_path, "fs1")
    assert len(old) > 3
    for path in old[:2]:
        age(path, 40)  # last written 40 days ago
    age(old[2], 20)
    other_node = tmp_path / "fs2-20261101T000000000000Z-000001.esl.gz"
    other_node.write_bytes(gzip.compress(frames[0].raw))
    age(other_node, 400)  # another node's journal: its own Journal prunes it
    stranger = tmp_path / "notes.txt"
    stranger.write_text("not a journal")
    age(stranger, 400)

    journal = Journal(tmp_path, max_bytes=60_000, prefix="fs1", compress=True, retention_days=30)
    assert journal_files(tmp_path, "fs1") == old[2:]  # the 40-day-old ones are gone at open
    for frame in frames[:40]:
        journal.append(frame.raw)
    age(old[2], 31)
    for frame in frames[40:]:  # rotations: the next one prunes again
        journal.append(frame.raw)
    journal.close()
    left = journal_files(tmp_path, "fs1")
    assert old[2] not in left and left[0] == old[3]
    assert other_node.exists() and stranger.exists()


def test_zero_retention_keeps_everything(tmp_path):
    frames = event_frames("ivr_only.esl")
    with Journal(tmp_path, prefix="fs1") as journal:
        journal.append(frames[0].raw)
    [path] = journal_files(tmp_path, "fs1")
    age(path, 3650)
    with Journal(tmp_path, prefix="fs1", retention_days=0) as journal:
        journal.append(frames[1].raw)
    assert path.exists()


def test_plain_files_an_earlier_run_left_are_gzipped_at_the_first_rotation(tmp_path):
    frames = event_frames("queue_timeout.esl")
    with Journal(tmp_path, prefix="fs1") as journal:  # a run without compression ...
        for frame in frames[:30]:
            journal.append(frame.raw)
    [left] = journal_files(tmp_path, "fs1")
    (tmp_path / (left.name + ".gz.tmp")).write_bytes(b"\x1f\x8b half a gzip")  # ... and a crash
    age(left, 2)
    with Journal(tmp_path, max_bytes=60_000, prefix="fs1", compress=True,
                 retention_days=30) as journal:
        assert left.exists()  # untouched at open: start-up recovery may be reading it
        assert not (tmp_path / (left.name + ".gz.tmp")).exists()
        for frame in frames[30:]:
            journal.append(frame.raw)
    files = journal_files(tmp_path, "fs1")
    assert all(f.name.endswith(".esl.gz") for f in files[:-1]) and files[0].name == left.name + ".gz"
    import time
    assert files[0].stat().st_mtime < time.time() - DAY  # keeps its age for the retention
    back = [f for path in files for f in read_frames(path)]
    assert [f.raw for f in back] == [f.raw for f in frames]


def test_the_daemon_gzips_its_rotated_journal_and_applies_the_retention_setting(tmp_path):
    import dataclasses

    from daemon.definition.model import EslNode, Settings
    from daemon.service import build_service

    settings = Settings(esl_nodes=(EslNode("fs1", "127.0.0.1", 1, "pw"),),
                        database_url=f"sqlite:///{tmp_path / 'h.db'}", http_listen="",
                        journal_dir=str(tmp_path / "journal"), journal_max_bytes=1024 * 1024)
    assert settings.journal_compress is True and settings.journal_retention_days == 90
    settings = dataclasses.replace(settings, journal_retention_days=7)
    service = build_service(settings)
    journal = service.journal("fs1")
    service.store.close()
    assert (journal.compress, journal.retention_days, journal.prefix) == (True, 7, "fs1")
