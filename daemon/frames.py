"""ESL wire framing: bytes in, frames out. Never touches a socket.

A frame is a block of ``Name: value`` header lines ended by a blank line,
followed by ``Content-Length`` bytes of body when that header is present.
For ``text/event-plain`` the body is itself a header block (the event).

Values are kept as raw bytes and percent-decoded only when read, and only after
the lines were split: a caller-controlled ``%0A`` therefore stays inside its
own header value and cannot inject a header (greenswitch decodes before
splitting, which is the hole this module closes).
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

MAX_HEADER_BLOCK = 64 * 1024  # an envelope larger than this is garbage, not a frame
MAX_BODY = 16 * 1024 * 1024


class FrameError(ValueError):
    """The byte stream is not ESL; the parser resynchronises after raising it."""


def parse_header_block(block: bytes) -> dict[bytes, bytes]:
    """Split ``Name: value`` lines; values stay percent-encoded bytes."""
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


def decode(value: bytes) -> str:
    if b"%" in value:
        return unquote(value.decode("utf-8", "replace"))
    return value.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Frame:
    headers: dict[bytes, bytes]  # envelope headers, raw
    body: bytes

    @property
    def content_type(self) -> str:
        return decode(self.headers.get(b"Content-Type", b""))

    def header(self, name: str) -> str | None:
        raw = self.headers.get(name.encode())
        return None if raw is None else decode(raw)


class EslParser:
    """Incremental ESL frame parser (h11 style): ``feed(bytes) -> list[Frame]``."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._envelope: dict[bytes, bytes] | None = None
        self._need = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        if data:
            self._buf += data
        frames: list[Frame] = []
        buf = self._buf
        while True:
            if self._envelope is None:
                # skip stray blank lines between frames
                start = 0
                while start < len(buf) and buf[start] in (0x0A, 0x0D):
                    start += 1
                if start:
                    del buf[:start]
                end = buf.find(b"\n\n")
                if end < 0:
                    if len(buf) > MAX_HEADER_BLOCK:
                        del buf[:]
                        raise FrameError("header block larger than %d bytes" % MAX_HEADER_BLOCK)
                    break
                envelope = parse_header_block(bytes(buf[:end]))
                del buf[: end + 2]
                if not envelope:
                    raise FrameError("frame without headers")
                length = envelope.get(b"Content-Length")
                if length is None:
                    frames.append(Frame(envelope, b""))
                    continue
                try:
                    need = int(length)
                except ValueError:
                    raise FrameError("bad Content-Length %r" % length) from None
                if need < 0 or need > MAX_BODY:
                    raise FrameError("Content-Length %d out of range" % need)
                self._envelope, self._need = envelope, need
            if len(buf) < self._need:
                break
            body = bytes(buf[: self._need])
            del buf[: self._need]
            frames.append(Frame(self._envelope, body))
            self._envelope = None
        return frames
