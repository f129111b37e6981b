"""Typed FreeSWITCH events, decoded lazily: only the headers that are read get decoded.

A real event is ~3 KB with ~150 headers, of which the engine reads a handful.
``Event.get`` therefore finds ``\\nName: `` by byte search in the raw body
(C speed, no split of the whole block) and percent-decodes that one value,
after the line was isolated, so an encoded ``%0A`` can never become a header.
"""
from __future__ import annotations

from daemon.switch.frames import Frame, decode, parse_header_block

_MISSING = object()
_KEYS: dict[str, bytes] = {}  # "Name" -> b"\nName: " (interned search keys)
# "Name" -> (b"\nName: ", b"Name: "): both forms built once, not sliced on every get
_KEY_PAIRS: dict[str, tuple[bytes, bytes]] = {}
_CL_KEY = b"\nContent-Length: "


def _key(name: str) -> bytes:
    key = _KEYS.get(name)
    if key is None:
        key = _KEYS[name] = b"\n" + name.encode() + b": "
    return key


def _key_pair(name: str) -> tuple[bytes, bytes]:
    pair = _KEY_PAIRS.get(name)
    if pair is None:
        key = _key(name)
        pair = _KEY_PAIRS[name] = (key, key[1:])
    return pair


class Event:
    """One ``text/event-plain`` event.

    ``get(name)`` percent-decodes a single header on demand. ``timestamp_us`` is
    the switch's ``Event-Date-Timestamp`` (microseconds), the only clock the
    engine uses. ``node`` is the FreeSWITCH node the event came from (set by the
    daemon's supervisor; "" when unknown).
    """

    __slots__ = ("_raw", "_headers", "_cache", "_end", "_ts", "_clear", "node")

    def __init__(self, body: bytes, node: str = "") -> None:
        self._raw = body
        self._headers: dict[bytes, bytes] | None = None
        self._cache: dict[str, str | None] = {}
        self._end = -1  # end of the header block, computed on first need
        self._ts = -1
        # raw[:_clear] holds no "\nContent-Length: ": every header found before it is in
        # the header block without computing where that block ends (see _in_headers)
        self._clear = 0
        self.node = node

    @classmethod
    def from_frame(cls, frame: Frame, node: str = "") -> "Event":
        return cls(frame.body, node)

    @classmethod
    def from_headers(cls, headers: dict[str, str], body: str | None = None) -> "Event":
        """Build an event from decoded headers (tests, custom events)."""
        from urllib.parse import quote

        text = "".join(f"{k}: {quote(str(v), safe='')}\n" for k, v in headers.items())
        if body is not None:
            text += f"Content-Length: {len(body.encode())}\n\n{body}"
        return cls(text.encode())

    @property
    def raw(self) -> bytes:
        return self._raw

    @property
    def body(self) -> str:
        """The event's own body after its headers (BACKGROUND_JOB result, API output)."""
        end = self._header_end()
        return self._raw[end + 2:].decode("utf-8", "replace") if end < len(self._raw) else ""

    def _header_end(self) -> int:
        end = self._end
        if end < 0:
            # Only an event with a body of its own (BACKGROUND_JOB, ...) has a Content-Length
            # header, written last before the blank line. Searching for that rare key is ~10x
            # cheaper than searching for b"\n\n" in a body made of newlines.
            cl = self._raw.find(b"\nContent-Length: ")
            if cl < 0:
                end = len(self._raw)
            else:
                end = self._raw.find(b"\n\n", cl)
                if end < 0:
                    end = len(self._raw)
            self._end = end
        return end

    def _table(self) -> dict[bytes, bytes]:
        if self._headers is None:
            self._headers = parse_header_block(self._raw[: self._header_end()])
        return self._headers

    def _in_headers(self, i: int) -> bool:
        """Whether the header line found at ``i`` lies in the header block, not in a body.

        The block can only end before ``i`` if a Content-Length header (an event with a
        body of its own, rare) comes before ``i``. Looking for that in ``raw[:i]`` alone,
        and only in the part not looked at yet, costs far less than finding the block's
        end in every event (a search through the whole ~3 KB event)."""
        clear = self._clear
        if i <= clear:
            return True
        if self._raw.find(_CL_KEY, max(0, clear - len(_CL_KEY)), i) < 0:
            self._clear = i
            return True
        return i <= (self._end if self._end >= 0 else self._header_end())

    def get_raw(self, name: str) -> bytes | None:
        """The still-encoded value of the first header called ``name``."""
        raw = self._raw
        key, bare = _KEY_PAIRS.get(name) or _key_pair(name)
        if raw.startswith(bare):
            start = len(bare)
        else:
            i = raw.find(key)
            if i < 0 or not self._in_headers(i):
                return None
            start = i + len(key)
        stop = raw.find(b"\n", start)
        value = raw[start:] if stop < 0 else raw[start:stop]
        return value[:-1] if value[-1:] == b"\r" else value

    def get(self, name: str, default: str | None = None) -> str | None:
        cache = self._cache
        value = cache.get(name, _MISSING)
        if value is _MISSING:
            # get_raw inlined: this runs ~5 times per event on the daemon's hot path
            raw = self._raw
            key, bare = _KEY_PAIRS.get(name) or _key_pair(name)
            value = None
            if raw.startswith(bare):
                start = len(bare)
            else:
                i = raw.find(key)
                start = -1 if i < 0 or not (i <= self._clear or self._in_headers(i)) \
                    else i + len(key)
            if start >= 0:
                stop = raw.find(b"\n", start)
                found = raw[start:] if stop < 0 else raw[start:stop]
                if found[-1:] == b"\r":
                    found = found[:-1]
                # decoding first and testing the text for "%" is cheaper than testing the
                # bytes; a "%" byte always decodes to "%" (it is ASCII, never part of a
                # UTF-8 sequence), so both tests agree
                value = found.decode("utf-8", "replace")
                if "%" in value:
                    value = decode(found)
            cache[name] = value
        return default if value is None else value  # type: ignore[return-value]

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def headers(self) -> dict[str, str]:
        return {k.decode("utf-8", "replace"): decode(v) for k, v in self._table().items()}

    @property
    def name(self) -> str:
        return self.get("Event-Name", "") or ""

    @property
    def subclass(self) -> str | None:
        return self.get("Event-Subclass")

    @property
    def uuid(self) -> str | None:
        return self.get("Unique-ID")

    @property
    def timestamp_us(self) -> int:
        ts = self._ts
        if ts < 0:
            value = self.get("Event-Date-Timestamp")
            try:
                ts = int(value) if value else 0
            except ValueError:
                ts = 0
            self._ts = ts
        return ts

    @property
    def timestamp_ms(self) -> int:
        return self.timestamp_us // 1000

    def __repr__(self) -> str:
        return f"Event({self.name!r}, {self.subclass!r}, uuid={self.uuid!r})"
