"""The ESL frame parser and lazy events, h11 style: real captures fed whole, byte by
byte, cut at random points, with trailing garbage; injection and garbage resync."""
from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from daemon.switch.events import Event
from daemon.switch.frames import MAX_BODY, MAX_HEADER_BLOCK, EslParser, FrameError

CAPTURES = Path(__file__).resolve().parent / "data" / "captures"
ALL_CAPTURES = sorted(CAPTURES.glob("*.esl")) + [CAPTURES / "busy_hour.esl.gz"]


def read_capture(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def parse_whole(data: bytes) -> list:
    parser = EslParser()
    frames = parser.feed(data)
    assert parser.buffered == 0
    return frames


def parse_in_pieces(data: bytes, cuts: list[int]) -> list:
    parser = EslParser()
    frames = []
    last = 0
    for cut in sorted(cuts) + [len(data)]:
        frames += parser.feed(data[last:cut])
        last = cut
    assert parser.buffered == 0
    return frames


def event_frame(body: bytes) -> bytes:
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=lambda p: p.name)
def test_every_capture_parses_whole_into_frames_that_rebuild_it_byte_for_byte(path):
    data = read_capture(path)
    frames = parse_whole(data)
    events = [f for f in frames if f.is_event]
    assert frames[0].content_type == "auth/request"
    assert frames[-1].content_type == "text/disconnect-notice"
    assert frames[-1].text.startswith("Disconnected, goodbye.")
    # one event per envelope the switch wrote, and nothing lost or added anywhere
    assert len(events) == data.count(b"Content-Type: text/event-plain\n\n")
    assert b"".join(f.raw for f in frames) == data
    for frame in events:
        event = Event.from_frame(frame)
        if event.get("API-Command") and not event.name:
            # an api_hangup_hook's API event: the channel's variables under their bare
            # names, no Event-Name, no timestamp (capture README, callback_connected)
            assert event.timestamp_us == 0
            continue
        assert event.name
        assert event.timestamp_us > 1_700_000_000_000_000


@pytest.mark.parametrize("name", ["agent_status.esl", "ivr_only.esl"])
def test_capture_fed_one_byte_at_a_time_gives_the_same_frames(name):
    data = (CAPTURES / name).read_bytes()
    whole = parse_whole(data)
    parser = EslParser()
    frames = []
    for i in range(len(data)):
        frames += parser.feed(data[i:i + 1])
    assert [f.raw for f in frames] == [f.raw for f in whole]
    assert [f.headers for f in frames] == [f.headers for f in whole]


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=lambda p: p.name)
def test_capture_cut_at_random_points_gives_the_same_frames(path):
    data = read_capture(path)
    whole = [f.raw for f in parse_whole(data)]
    rng = random.Random(path.name)
    for _ in range(5):
        cuts = rng.sample(range(1, len(data)), min(len(data) - 1, rng.choice([3, 50, 700])))
        assert [f.raw for f in parse_in_pieces(data, cuts)] == whole


def test_capture_cut_inside_every_envelope_and_body_boundary():
    data = (CAPTURES / "ivr_only.esl").read_bytes()
    whole = [f.raw for f in parse_whole(data)]
    # cut right before, at and after each blank line that ends an envelope
    cuts = set()
    pos = data.find(b"\n\n")
    while pos >= 0:
        cuts.update({pos, pos + 1, pos + 2})
        pos = data.find(b"\n\n", pos + 1)
    assert [f.raw for f in parse_in_pieces(data, sorted(c for c in cuts if 0 < c < len(data)))] == whole


def test_capture_with_trailing_garbage_keeps_every_frame_then_reports_the_garbage():
    data = (CAPTURES / "agent_status.esl").read_bytes()
    expected = [f.raw for f in parse_whole(data)]
    parser = EslParser()
    with pytest.raises(FrameError) as info:
        parser.feed(data + b"\x00\xffthis is not ESL at all\n\n")
    assert [f.raw for f in info.value.frames] == expected
    assert parser.buffered == 0


def test_trailing_partial_frame_waits_for_more_bytes():
    data = (CAPTURES / "agent_status.esl").read_bytes()
    expected = parse_whole(data)
    parser = EslParser()
    frames = parser.feed(data + b"Content-Length: 500\nContent-Type: text/event-plain\n\nEvent-Na")
    assert len(frames) == len(expected)
    assert parser.buffered > 0
    body = b"Event-Name: HEARTBEAT\n".ljust(500, b"x")
    more = parser.feed(body[len(b"Event-Na"):])
    assert len(more) == 1 and Event.from_frame(more[0]).name == "HEARTBEAT"


GOOD = event_frame(b"Event-Name: HEARTBEAT\nEvent-Date-Timestamp: 1795345944096762\n\n")


@pytest.mark.parametrize("garbage", [
    b"random junk without any colon\n\n",
    b"Content-Length: twelve\nContent-Type: text/event-plain\n\n",
    b"Content-Length: -5\nContent-Type: text/event-plain\n\n",
    b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % (MAX_BODY + 1),
    b"Reply-Text: +OK but no content type\n\n",
    b"\x00\x01\x02\xff\xfe: \x80\n\n",
], ids=["no-colon", "non-numeric-length", "negative-length", "huge-length", "no-content-type", "binary"])
def test_garbage_frame_raises_frame_error_and_the_next_frame_still_parses(garbage):
    parser = EslParser()
    frames, errors = parser.feed_resync(GOOD + garbage + GOOD)
    assert len(errors) == 1 and isinstance(errors[0], FrameError)
    assert [f.raw for f in frames] == [GOOD, GOOD]
    assert parser.buffered == 0


def test_garbage_fed_byte_by_byte_never_crashes_and_resyncs():
    stream = GOOD + b"Content-Length: x\nContent-Type: y\n\n" + b"junk\n\n" + GOOD
    parser = EslParser()
    frames, errors = [], []
    for i in range(len(stream)):
        got, errs = parser.feed_resync(stream[i:i + 1])
        frames += got
        errors += errs
    assert [f.raw for f in frames] == [GOOD, GOOD]
    assert len(errors) == 2


def test_endless_header_block_is_dropped_instead_of_growing_the_buffer():
    parser = EslParser()
    frames, errors = parser.feed_resync(b"X: " + b"y" * (MAX_HEADER_BLOCK + 10))
    assert frames == [] and len(errors) == 1
    assert parser.buffered == 0
    assert parser.feed(GOOD)[0].raw == GOOD


def test_random_bytes_never_crash_the_parser():
    rng = random.Random(7)
    parser = EslParser()
    for _ in range(300):
        blob = bytes(rng.choice(b"ab:\n \x00Content-Length: 1234567890") for _ in range(rng.randint(1, 200)))
        parser.feed_resync(blob)
    # after any amount of junk, a blank line plus a good frame is understood again
    frames, _ = parser.feed_resync(b"\n\n" * 3 + GOOD + GOOD)
    assert GOOD in [f.raw for f in frames]


def test_content_length_counts_bytes_not_characters():
    body = "Event-Name: CUSTOM\nCaller-Caller-ID-Name: Zoë Ülkü 张伟\n\n".encode()
    frames = EslParser().feed(event_frame(body) + GOOD)
    assert len(frames) == 2
    assert Event.from_frame(frames[0]).get("Caller-Caller-ID-Name") == "Zoë Ülkü 张伟"


INJECTED = (b"Event-Name: CUSTOM\n"
            b"Event-Subclass: callcenter%3A%3Ainfo\n"
            b"Caller-Caller-ID-Name: a%0ACC-Action%3A%20member-queue-end\n"
            b"CC-Member-CID-Name: a%0ACC-Action%3A%20member-queue-end\n"
            b"CC-Action: agent-offering\n"
            b"Event-Date-Timestamp: 1795345944096762\n\n")


def test_caller_id_name_with_encoded_newline_cannot_inject_a_header():
    frame = EslParser().feed(event_frame(INJECTED))[0]
    event = Event.from_frame(frame)
    assert event.get("CC-Action") == "agent-offering"
    assert event.get("Caller-Caller-ID-Name") == "a\nCC-Action: member-queue-end"
    assert event.headers()["CC-Action"] == "agent-offering"
    assert list(event.headers()).count("CC-Action") == 1


def test_injection_attempt_without_a_real_header_leaves_it_absent():
    body = b"Event-Name: CHANNEL_CREATE\nCaller-Caller-ID-Name: a%0ACC-Action%3A%20member-queue-end\n\n"
    event = Event.from_frame(EslParser().feed(event_frame(body))[0])
    assert event.get("CC-Action") is None
    assert "CC-Action" not in event
    assert "CC-Action" not in event.headers()


def test_greenswitch_own_parser_is_injected_which_is_why_we_replaced_it():
    from greenswitch.esl import ESLEvent

    body = b"Event-Name: CHANNEL_CREATE\nCaller-Caller-ID-Name: a%0ACC-Action%3A%20member-queue-end\n"
    assert ESLEvent(body.decode()).headers.get("CC-Action") == "member-queue-end"  # the hole
    assert Event(body).get("CC-Action") is None  # ours


def test_event_reads_only_its_header_block_not_the_job_body():
    body = (b"Job-UUID: 7f4d\nEvent-Name: BACKGROUND_JOB\nContent-Length: 27\n\n"
            b"Event-Name: FAKE\n+OK done\n\n")
    event = Event(body)
    assert event.name == "BACKGROUND_JOB"
    assert event.get("Job-UUID") == "7f4d"
    assert event.body.startswith("Event-Name: FAKE")


def test_event_first_header_wins_and_missing_header_gives_default():
    event = Event(b"Event-Name: API\nUnique-ID: one\nUnique-ID: two\n\n")
    assert event.uuid == "one"
    assert event.get("Nope", "x") == "x"
    assert event.timestamp_us == 0 and event.timestamp_ms == 0


def test_event_from_headers_round_trips_values_with_newlines_and_percent():
    event = Event.from_headers({"Event-Name": "CUSTOM", "Hotline-Reason": "lunch\n100%: yes",
                                "Event-Date-Timestamp": "1795345944096762"})
    assert event.get("Hotline-Reason") == "lunch\n100%: yes"
    assert event.timestamp_ms == 1795345944096


def test_percent_decoding_is_memoised_within_a_bound():
    from daemon.switch import frames
    values = [f"caller%20{i}%40hotline.test".encode() for i in range(frames._DECODED_MAX + 50)]
    assert [frames.decode(v) for v in values][-1] == f"caller {frames._DECODED_MAX + 49}@hotline.test"
    assert len(frames._DECODED) <= frames._DECODED_MAX
    assert frames.decode(b"Z%C3%B6e%ZZ") == "Zöe%ZZ"  # invalid escapes stay as they are


def test_an_event_longer_than_any_switch_sends_is_refused_not_waited_for():
    """A 16 MiB Content-Length once swallowed the rest of a stream as its body."""
    from daemon.switch.frames import MAX_EVENT_BODY, FrameTooLarge

    big = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % (16 * 1024 * 1024)
    parser = EslParser()
    with pytest.raises(FrameTooLarge, match="over the bound of 1048576 bytes"):
        parser.feed(GOOD + big + GOOD * 46)
    frames, _errors = parser.feed_resync(b"")
    assert [f.raw for f in frames] == [GOOD] * 46  # the parser resynchronises (a live link also reconnects)
    just = b"Event-Name: HEARTBEAT\n".ljust(MAX_EVENT_BODY, b"x")
    assert EslParser().feed(b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s"
                            % (len(just), just))[0].body == just


def test_a_command_reply_may_be_larger_than_an_event_up_to_its_own_bound():
    from daemon.switch.frames import MAX_BODY, FrameTooLarge

    body = b"{" + b"x" * (4 * 1024 * 1024) + b"}"  # `show channels as json` of a full switch
    frame = b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(body), body)
    assert EslParser().feed(frame)[0].body == body
    with pytest.raises(FrameTooLarge):
        EslParser().feed(b"Content-Type: api/response\nContent-Length: %d\n\n" % (MAX_BODY + 1))


def test_the_frame_in_progress_is_visible_until_it_completes():
    parser = EslParser()
    assert parser.partial is None and parser.completed == 0
    parser.feed(GOOD + GOOD[:10])
    assert parser.completed == 1 and parser.partial == (10, 0)  # envelope not complete yet
    head = GOOD.index(b"\n\n") + 2
    parser.feed(GOOD[10:head + 5])
    assert parser.partial == (head + 5, len(GOOD))
    parser.feed(GOOD[head + 5:])
    assert parser.partial is None and parser.completed == 2
