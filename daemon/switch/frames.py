"""ESL wire framing: bytes in, frames out. Never touches a socket.

A frame is a block of ``Name: value`` header lines ended by a blank line,
followed by ``Content-Length`` bytes of body when that header is present.
For ``text/event-plain`` the body is itself a header block (the event).

Values are kept as raw bytes and percent-decoded only when read, and only after
the lines were split: a caller-controlled ``%0A`` therefore stays inside its
own header value and cannot inject a header (greenswitch decodes before
splitting, which is the hole this module closes).

The parser is built for throughput: one growing ``bytearray`` with a read
position (compacted once per ``feed``, not once per frame), bodies copied out
exactly once, and the envelope (two short lines) parsed with a fast path.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

MAX_HEADER_BLOCK = 64 * 1024  # an envelope larger than this is garbage, not a frame
# Body bounds: what a FreeSWITCH 1.10 really sends, with a wide margin. The largest event of
# every capture in ../shared/esl-captures (a busy hour, 17,592 events, included) is 18.5 KB:
# an event is one channel's headers and variables. Events get 1 MiB (over 50x that). Other
# frames are command replies; the largest is the snapshot's `show channels as json` at about
# 1.2 KB a channel, so 8 MiB holds some 6,000 channels - more than one switch carries. A
# Content-Length above the bound is not a frame the switch sent: believed, it would swallow
# the stream behind it as its "body" (16 MiB is hours of a quiet switch's events).
MAX_EVENT_BODY = 1024 * 1024
MAX_BODY = 8 * 1024 * 1024

EVENT_PLAIN = b"text/event-plain"


class FrameError(ValueError):
    """The byte stream is not ESL; the parser resynchronises after raising it.

    ``frames`` holds the good frames parsed in the same ``feed`` call before the
    garbage, so nothing is lost: hand them on, then call ``feed(b"")`` to go on
    (or use :meth:`EslParser.feed_resync`, which does both).
    """

    def __init__(self, message: str, frames: list["Frame"] | None = None) -> None:
        super().__init__(message)
        self.frames: list[Frame] = frames or []


class FrameTooLarge(FrameError):
    """A Content-Length over the bound (``MAX_EVENT_BODY`` / ``MAX_BODY``).

    The parser drops the envelope and goes on like for any garbage, but a live link
    that sent one cannot be trusted to be in step: ``esl`` drops it and reconnects.
    """


def parse_header_block(block: bytes) -> dict[bytes, bytes]:
    """Split ``Name: value`` lines; values stay percent-encoded bytes.

    The first occurrence of a name wins, so a duplicate can never override.
    """
    headers: dict[bytes, bytes] = {}
    for line in block.split(b"\n"):
        if not line:
            continue
        name, sep, value = line.partition(b": ")
        if not sep:
            name, sep, value = line.partition(b":")
            if not sep:
                continue  # a line without a colon carries nothing we can use
        headers.setdefault(name.rstrip(b"\r"), value.rstrip(b"\r"))
    return headers


_DECODED: dict[bytes, str] = {}  # short encoded values repeat a lot (queues, agents, subclasses)
_DECODED_MAX = 8192


def decode(value: bytes) -> str:
    """Percent-decode one header value (UTF-8, bad bytes replaced)."""
    if b"%" not in value:
        return value.decode("utf-8", "replace")
    text = _DECODED.get(value)
    if text is None:
        text = unquote_to_bytes(value).decode("utf-8", "replace")
        if len(value) <= 96:
            if len(_DECODED) >= _DECODED_MAX:
                _DECODED.clear()  # bounded: caller-controlled values cannot grow it
            _DECODED[value] = text
    return text


@dataclass(frozen=True, slots=True)
class Frame:
    headers: dict[bytes, bytes]  # envelope headers, raw
    body: bytes
    # the frame exactly as received (envelope + blank line + body): what the journal stores
    raw: bytes = b""

    @property
    def content_type(self) -> str:
        return decode(self.headers.get(b"Content-Type", b""))

    @property
    def is_event(self) -> bool:
        return self.headers.get(b"Content-Type") == EVENT_PLAIN

    def header(self, name: str) -> str | None:
        raw = self.headers.get(name.encode())
        return None if raw is None else decode(raw)

    @property
    def text(self) -> str:
        """The body as text (api/response, command results)."""
        return self.body.decode("utf-8", "replace")


_CL = b"Content-Length: "
_FAST_EVENT_TAIL = b"\nContent-Type: text/event-plain"


def _envelope(block: bytes) -> dict[bytes, bytes]:
    # The switch writes every event envelope as exactly these two lines; skip the
    # general split for them (this runs once per event).
    if block.startswith(_CL) and block.endswith(_FAST_EVENT_TAIL):
        length = block[len(_CL): len(block) - len(_FAST_EVENT_TAIL)]
        if length.isdigit():
            return {b"Content-Length": length, b"Content-Type": EVENT_PLAIN}
    return parse_header_block(block)


class EslParser:
    """Incremental ESL frame parser (h11 style): ``feed(bytes) -> list[Frame]``.

    Content-Length is counted in bytes. On garbage it raises :class:`FrameError`
    after dropping the offending bytes, keeping everything after them, so the
    next ``feed`` continues from the next frame boundary.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # start of unparsed data in _buf
        self._envelope: dict[bytes, bytes] | None = None
        self._frame_start = 0
        self._need = 0
        self._scanned = 0  # how far the current envelope search already looked
        self.completed = 0  # frames parsed so far (a reader tells a stalled frame by it)

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    @property
    def partial(self) -> tuple[int, int] | None:
        """(bytes received, bytes expected - 0 while the envelope is not complete) of the
        frame in progress, or None between frames."""
        if self._envelope is not None:
            return len(self._buf) - self._frame_start, \
                self._pos - self._frame_start + self._need
        rest = self.buffered  # blank lines between frames are consumed as they come
        return (rest, 0) if rest else None

    def feed_resync(self, data: bytes) -> tuple[list[Frame], list[FrameError]]:
        """Like :meth:`feed` but never raises: good frames plus the errors skipped over."""
        frames: list[Frame] = []
        errors: list[FrameError] = []
        while True:
            try:
                frames.extend(self.feed(data))
                return frames, errors
            except FrameError as exc:
                frames.extend(exc.frames)
                exc.frames = []
                errors.append(exc)
                data = b""

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        if data:
            buf += data
        frames: list[Frame] = []
        view = memoryview(buf)  # slices of it are copied once (bytes(buf[a:b]) copies twice)
        try:
            self._parse(buf, view, frames)
        except FrameError as exc:
            exc.frames = frames
            raise
        finally:
            view.release()  # before _compact resizes the buffer
            self._compact()
        return frames

    def _compact(self) -> None:
        # keep the pending frame's envelope: the journal wants the frame's raw bytes
        cut = self._frame_start if self._envelope is not None else self._pos
        if cut:
            del self._buf[:cut]
            self._pos -= cut
            self._frame_start -= cut
            if self._scanned:
                self._scanned -= cut

    def _parse(self, buf: bytearray, view: memoryview, frames: list[Frame]) -> None:
        size = len(buf)
        pos = self._pos
        while True:
            if self._envelope is None:
                # skip stray blank lines between frames
                while pos < size and buf[pos] in (0x0A, 0x0D):
                    pos += 1
                self._pos = pos
                if pos >= size:
                    self._scanned = 0
                    return
                end = buf.find(b"\n\n", max(pos, self._scanned - 1))
                if end < 0:
                    if size - pos > MAX_HEADER_BLOCK:
                        self._pos = size
                        self._scanned = 0
                        raise FrameError("header block larger than %d bytes" % MAX_HEADER_BLOCK)
                    self._scanned = size
                    return
                self._scanned = 0
                block = bytes(view[pos:end])
                start, pos = pos, end + 2
                self._pos = pos
                envelope = _envelope(block)
                if not envelope:
                    raise FrameError("frame without headers: %r" % block[:80])
                if b"Content-Type" not in envelope:
                    raise FrameError("frame without Content-Type: %r" % block[:80])
                length = envelope.get(b"Content-Length")
                if length is None:
                    frames.append(Frame(envelope, b"", bytes(view[start:pos])))
                    self.completed += 1
                    continue
                try:
                    need = int(length)
                except ValueError:
                    raise FrameError("bad Content-Length %r" % length[:40]) from None
                if need < 0:
                    raise FrameError("Content-Length %d out of range" % need)
                bound = MAX_EVENT_BODY if envelope.get(b"Content-Type") == EVENT_PLAIN \
                    else MAX_BODY
                if need > bound:
                    raise FrameTooLarge("Content-Length %d over the bound of %d bytes for %s"
                                        % (need, bound, decode(envelope[b"Content-Type"])[:40]))
                self._envelope, self._need, self._frame_start = envelope, need, start
            end = pos + self._need
            if size < end:
                return
            raw = bytes(view[self._frame_start:end])
            frames.append(Frame(self._envelope, raw[pos - self._frame_start:], raw))
            self.completed += 1
            self._envelope = None
            pos = self._pos = end
