"""Typed FreeSWITCH events, decoded lazily: only the headers that are read get decoded."""
from __future__ import annotations

from .frames import Frame, decode, parse_header_block


class Event:
    """One ``text/event-plain`` event.

    ``get(name)`` percent-decodes a single header on demand. ``timestamp_us`` is
    the switch's ``Event-Date-Timestamp`` (microseconds), the only clock the
    engine uses.
    """

    __slots__ = ("_raw", "_headers", "_cache")

    def __init__(self, body: bytes) -> None:
        self._raw = body
        self._headers: dict[bytes, bytes] | None = None
        self._cache: dict[str, str | None] = {}

    @classmethod
    def from_frame(cls, frame: Frame) -> "Event":
        return cls(frame.body)

    @classmethod
    def from_headers(cls, headers: dict[str, str]) -> "Event":
        """Build an event from decoded headers (tests, custom events)."""
        from urllib.parse import quote

        body = "".join(f"{k}: {quote(str(v), safe='')}\n" for k, v in headers.items())
        return cls(body.encode())

    @property
    def raw(self) -> bytes:
        return self._raw

    def _table(self) -> dict[bytes, bytes]:
        if self._headers is None:
            self._headers = parse_header_block(self._raw)
        return self._headers

    def get(self, name: str, default: str | None = None) -> str | None:
        try:
            value = self._cache[name]
        except KeyError:
            raw = self._table().get(name.encode())
            value = None if raw is None else decode(raw)
            self._cache[name] = value
        return default if value is None else value

    def __contains__(self, name: str) -> bool:
        return name.encode() in self._table()

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
        value = self.get("Event-Date-Timestamp")
        try:
            return int(value) if value else 0
        except ValueError:
            return 0

    @property
    def timestamp_ms(self) -> int:
        return self.timestamp_us // 1000

    def __repr__(self) -> str:
        return f"Event({self.name!r}, {self.subclass!r}, uuid={self.uuid!r})"
