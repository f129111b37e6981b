"""The raw-event journal: every frame as the switch sent it, appended before it is processed.

Format: exactly the bytes of ``event plain`` frames (``Content-Length: N``,
``Content-Type: text/event-plain``, a blank line, N bytes of body), one after
the other - the format of ``../shared/esl-captures/*.esl``, so ``hotline
replay`` reads journals and captures alike, plain or gzip-compressed.

Files: ``<dir>/<prefix>-<UTC YYYYmmddTHHMMSSffffff>Z-<seq>.esl`` (prefix = node
name, default "journal"; seq counts on across restarts). A file is rotated
when the next frame would take it past ``max_bytes``; with ``compress=True``
the rotated file is gzip-compressed to ``.esl.gz`` in a background OS thread
(the plain one is removed once the compressed copy is synced; a crash meanwhile
leaves the plain file, which replays just the same). The UTC time is the daemon's wall clock when
the file was opened: it only orders and names files, no statistic reads it.

Retention (``retention_days``, 0 = keep everything): when a journal opens and at every
rotation, its own files (same directory and prefix) whose last write is older than
that are deleted - never the file being written. At open, plain files an earlier run
left behind (a crash before their gzip finished) are compressed like rotated ones, and
half-written ``.gz.tmp`` files are removed. The file-name scheme stays as it is:
``hotline replay`` (and anything else reading journals) takes ``.esl`` and ``.esl.gz``
alike.

Files of one journal (same directory and prefix) form ONE event stream:
``hotline replay`` chains them in sequence order (seq counts on across restarts,
so a wall clock set back does not reorder them) through one engine, so a call
that spans a rotation is rebuilt whole. Any other file is its own stream.

fsync policy (``fsync=``):
* ``"rotate"`` (default): every append is written to the OS at once (``write``
  unbuffered), so a daemon crash loses nothing; the file is fsynced when it is
  rotated or closed and whenever the daemon calls ``sync()`` (it does after each
  database batch), so a power cut loses at most the frames since that sync.
* ``"always"``: fsync after every frame (slow; for small installations that
  must survive power loss without any gap).
* ``"never"``: leave it to the OS.

Positions: ``Journal.position()`` is where the next frame will go (file sequence
number and byte offset in the uncompressed file); ``read_from(dir, prefix,
position)`` yields the frames of one journal from such a position on (a daemon's
restart replays its journal from its last checkpoint, ``daemon.storage.checkpoint``).

Besides the switch's events, the daemon journals what a switch reported after a
(re)connect that the engine acted on (``switch_state_frame``: content type
``text/x-hotline-switch-state``, a JSON body with the uuids of its channels and
queue members), so replaying a journal reconciles calls where the daemon did.
"""
from __future__ import annotations

import datetime as dt
import glob
import gzip
import json
import logging
import os
import re
import shutil
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from daemon.engine.segments_state import SwitchPresence
from daemon.switch.frames import EslParser, Frame

logger = logging.getLogger(__name__)

JOURNAL_NAME = re.compile(
    r"^(?P<prefix>.+)-(?P<stamp>\d{8}T\d{12}Z)-(?P<seq>\d{6,})\.esl(?:\.gz)?$")
FSYNC_POLICIES = ("rotate", "always", "never")
READ_CHUNK = 1 << 20


SWITCH_STATE_TYPE = "text/x-hotline-switch-state"


@dataclass(frozen=True, order=True)
class JournalPosition:
    """A place in one journal: the file's sequence number and a byte offset in it
    (uncompressed; a file compressed since reads the same)."""

    seq: int
    offset: int

    def as_dict(self) -> dict[str, int]:
        return {"seq": self.seq, "offset": self.offset}

    @classmethod
    def from_dict(cls, value: Any) -> "JournalPosition":
        try:
            seq, offset = int(value["seq"]), int(value["offset"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"not a journal position: {str(value)[:80]}") from None
        if seq < 0 or offset < 0:
            raise ValueError(f"not a journal position: {value}")
        return cls(seq, offset)


def switch_state_frame(presence: SwitchPresence) -> bytes:
    """A journal frame holding what reconcile was given (see the module docstring)."""
    body = json.dumps({"node": presence.node,
                       "channels": None if presence.channels is None else sorted(presence.channels),
                       "members": sorted(presence.members)}, separators=(",", ":")).encode()
    return (b"Content-Length: %d\nContent-Type: %s\n\n" % (len(body), SWITCH_STATE_TYPE.encode())
            + body)


def switch_state_of(frame: Frame) -> SwitchPresence | None:
    """The SwitchPresence a ``switch_state_frame`` holds; None for any other frame (or a
    damaged one: a reconcile skipped keeps calls open, which the next one fixes)."""
    if frame.content_type != SWITCH_STATE_TYPE:
        return None
    try:
        value = json.loads(frame.body)
        channels = value["channels"]
        return SwitchPresence(str(value["node"]),
                              None if channels is None else frozenset(map(str, channels)),
                              frozenset(map(str, value["members"])))
    except (ValueError, KeyError, TypeError):
        logger.warning("damaged switch-state frame in a journal: skipped")
        return None


def encode_frame(frame: Frame) -> bytes:
    """The frame's wire bytes: as received when the parser kept them, else re-serialized
    (Content-Length first, like the switch)."""
    if frame.raw:
        return frame.raw
    headers = dict(frame.headers)
    lines = []
    if frame.body or b"Content-Length" in headers:
        headers.pop(b"Content-Length", None)
        lines.append(b"Content-Length: %d" % len(frame.body))
    for name, value in headers.items():
        lines.append(name + b": " + value)
    return b"\n".join(lines) + b"\n\n" + frame.body


class Journal:
    """Appends raw frames to rotated files (see the module docstring)."""

    def __init__(self, directory: str | Path, max_bytes: int = 256 * 1024 * 1024, *,
                 prefix: str = "journal", compress: bool = False, fsync: str = "rotate",
                 retention_days: int = 0) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {', '.join(FSYNC_POLICIES)}")
        # the prefix is a node name from the settings: make it a safe file-name word, never fail
        prefix = re.sub(r"[^A-Za-z0-9_.@-]", "_", prefix).strip(".") or "journal"
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max(1, max_bytes)
        self.prefix = prefix
        self.compress = compress
        self.fsync = fsync
        self._seq = self._last_seq()
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._size = 0
        self.frames = 0
        self.bytes = 0
        self.errors = 0  # appends that failed (disk full, ...)
        self.retention_days = max(0, retention_days)
        self._left_overs_done = not compress
        self._compressing: list = []
        self._tidy_left_overs()
        self.prune()

    @property
    def path(self) -> Path | None:
        """The file being written (None before the first append)."""
        return self._path

    def files(self) -> list[Path]:
        """This journal's files, oldest first."""
        return journal_files(self.directory, self.prefix)

    def position(self) -> JournalPosition | None:
        """Where the next frame goes: the end of what was appended (None before the first
        append, or after a failed one: nothing known to be on disk there)."""
        if self._file is None or self._path is None:
            return None
        return JournalPosition(self._seq, self._size)

    def append(self, raw: bytes) -> bool:
        """Append one frame's bytes exactly as received (envelope + body).

        A failing disk (full, read-only) must not stop the daemon from counting calls:
        the error is logged and counted in ``errors``, False is returned, and the next
        append starts a new file.
        """
        try:
            if self._file is None or (self._size and self._size + len(raw) > self.max_bytes):
                self._rotate()
            assert self._file is not None
            view = memoryview(raw)
            while view:  # an unbuffered write may be short
                view = view[self._file.write(view) or 0:]
            self._size += len(raw)
            if self.fsync == "always":
                os.fsync(self._file.fileno())
        except OSError as exc:
            self.errors += 1
            if self.errors == 1 or self.errors % 1000 == 0:
                logger.error("journal write failed (%d so far): %s", self.errors, exc)
            self._abandon_current()
            return False
        self.frames += 1
        self.bytes += len(raw)
        return True

    def prune(self, now: float | None = None) -> list[Path]:
        """Delete this journal's files last written more than ``retention_days`` ago."""
        if not self.retention_days:
            return []
        cutoff = (time.time() if now is None else now) - self.retention_days * 86400
        deleted = []
        for path in self.files():
            if path == self._path:
                continue
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    deleted.append(path)
            except FileNotFoundError:
                continue  # its gzip replaced it meanwhile
            except OSError as exc:
                logger.error("journal file %s not deleted: %s", path, exc)
        if deleted:
            logger.info("journal retention: deleted %d file(s) older than %d days (%s .. %s)",
                        len(deleted), self.retention_days, deleted[0].name, deleted[-1].name)
        return deleted

    def _tidy_left_overs(self) -> None:
        for path in self.directory.glob(f"{glob.escape(self.prefix)}-*.esl.gz.tmp"):
            path.unlink(missing_ok=True)  # a gzip cut short; its plain file is still there

    def _compress_left_overs(self) -> None:
        # plain files of earlier runs (their last file, or a gzip a crash interrupted);
        # done at the first rotation, not at open, so that whatever reads the journal at
        # start-up (recovery, replay) never sees a file vanish under it
        self._left_overs_done = True
        for path in self.files():
            if path.suffix == ".esl" and path != self._path:
                gz = path.with_name(path.name + ".gz")
                if gz.exists():
                    gz.unlink()  # the plain one is whole: its gzip never finished
                self._compressing.append(_in_background(_gzip_file, path))

    def append_frame(self, frame: Frame) -> None:
        self.append(encode_frame(frame))

    def sync(self) -> None:
        if self._file is not None and self.fsync != "never":
            try:
                os.fsync(self._file.fileno())
            except OSError as exc:
                logger.error("journal fsync failed: %s", exc)

    def close(self) -> None:
        self._close_current(final=True)

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------

    def _last_seq(self) -> int:
        seqs = [int(m["seq"]) for p in self.directory.iterdir()
                if (m := JOURNAL_NAME.match(p.name)) and m["prefix"] == self.prefix]
        return max(seqs, default=0)

    def _rotate(self) -> None:
        self._close_current(final=False)
        self._seq += 1
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f") + "Z"
        path = self.directory / f"{self.prefix}-{stamp}-{self._seq:06d}.esl"
        # unbuffered: each append reaches the OS at once, so a daemon crash loses no frame
        self._file = open(path, "xb", buffering=0)
        self._path = path
        self._size = 0
        logger.info("journal file %s opened", path)

    def _abandon_current(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    def _close_current(self, final: bool) -> None:
        if self._file is None:
            return
        f, path = self._file, self._path
        self._file = None
        if self.fsync != "never":
            os.fsync(f.fileno())
        f.close()
        if path is not None and self.compress and not final:
            self._compressing = [job for job in self._compressing if not _done(job)]
            self._compressing.append(_in_background(_gzip_file, path))
            if not self._left_overs_done:
                self._compress_left_overs()
        if not final:
            self.prune()
        if final:
            self._path = None
            for job in self._compressing:
                wait = getattr(job, "join", None) or job.wait  # thread | gevent AsyncResult
                wait()
            self._compressing = []


def _in_background(fn, *args):
    """Run ``fn`` in a real OS thread (gzip of 256 MB must not freeze the gevent hub;
    zlib releases the GIL). Returns a thread or a gevent AsyncResult."""
    try:
        from gevent import monkey

        patched = monkey.is_module_patched("threading")
    except ImportError:  # pragma: no cover - gevent is a dependency
        patched = False
    if patched:
        import gevent

        return gevent.get_hub().threadpool.spawn(fn, *args)
    thread = threading.Thread(target=fn, args=args, name="hotline-journal-gzip", daemon=True)
    thread.start()
    return thread


def _done(job) -> bool:
    ready = getattr(job, "ready", None)
    return ready() if ready is not None else not job.is_alive()


def _gzip_file(path: Path) -> Path | None:
    target = path.with_name(path.name + ".gz")
    tmp = target.with_name(target.name + ".tmp")
    try:
        return _gzip_to(path, target, tmp)
    except FileNotFoundError:  # deleted by retention meanwhile
        tmp.unlink(missing_ok=True)
        return None
    except OSError as exc:  # disk full: the plain file stays, and replays just the same
        logger.error("journal file %s not compressed: %s", path, exc)
        tmp.unlink(missing_ok=True)
        return None


def _gzip_to(path: Path, target: Path, tmp: Path) -> Path:
    st = path.stat()
    with open(path, "rb") as src, open(tmp, "wb") as raw:
        with gzip.GzipFile(filename=path.name, mode="wb", fileobj=raw, compresslevel=6) as gz:
            shutil.copyfileobj(src, gz, READ_CHUNK)
        raw.flush()
        os.fsync(raw.fileno())
    os.utime(tmp, (st.st_atime, st.st_mtime))  # retention goes by the last frame's time
    os.replace(tmp, target)
    path.unlink()
    return target


def journal_seq(path: Path) -> int | None:
    m = JOURNAL_NAME.match(path.name)
    return int(m["seq"]) if m else None


def read_from(directory: str | Path, prefix: str, start: JournalPosition | None = None, *,
              errors: list[str] | None = None) -> Iterator[Frame]:
    """Every frame of one journal from ``start`` on (None: from its first file). A start
    beyond the end of its file (frames a power cut took before they were synced) just
    means nothing more from that file."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    last_seq = None
    for path in journal_files(directory, prefix):
        seq = journal_seq(path) or 0
        if (start is not None and seq < start.seq) or seq == last_seq:
            continue  # (a crash while compressing leaves .esl and .esl.gz: the plain one is whole)
        last_seq = seq
        skip = start.offset if start is not None and seq == start.seq else 0
        parser = EslParser()
        for data, _pos in iter_chunks(path, errors=errors):
            if skip:
                if len(data) <= skip:
                    skip -= len(data)
                    continue
                data, skip = data[skip:], 0
            yield from _feed(parser, data, path, errors)
        if parser.buffered and errors is not None:
            errors.append(f"{path}: {parser.buffered} bytes of an incomplete frame at the end")


def journal_files(directory: str | Path, prefix: str) -> list[Path]:
    files = []
    for p in Path(directory).iterdir():
        m = JOURNAL_NAME.match(p.name)
        if m and m["prefix"] == prefix:
            files.append((int(m["seq"]), m["stamp"], p))
    # for one seq the plain file sorts first (see read_from)
    return [p for _, _, p in sorted(files, key=lambda f: (f[0], f[1], f[2].name.endswith(".gz")))]


def open_stream(path: str | Path) -> BinaryIO:
    """Open a journal or capture for reading; gzip is recognised by its magic bytes."""
    f = open(path, "rb")
    magic = f.read(2)
    f.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    return f


def iter_chunks(path: str | Path, chunk: int = READ_CHUNK, *,
                errors: list[str] | None = None) -> Iterator[tuple[bytes, int]]:
    """(data, bytes of the file consumed so far); for .gz the position is in compressed bytes.

    gzip is decompressed incrementally, member after member, so a file cut short (a
    copy interrupted, a disk full) still yields everything before the cut; the damage is
    logged and reported in ``errors``.
    """
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic != b"\x1f\x8b":
            while data := raw.read(chunk):
                yield data, raw.tell()
            return
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        while True:
            compressed = raw.read(chunk)
            if not compressed:
                break
            try:
                data = inflater.decompress(compressed)
                while inflater.eof and inflater.unused_data:  # concatenated gzip members
                    rest = inflater.unused_data
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    data += inflater.decompress(rest)
            except zlib.error as exc:
                _damaged(path, f"corrupt gzip data ({exc})", errors)
                return
            if data:
                yield data, raw.tell()
        if not inflater.eof:
            _damaged(path, "gzip stream cut short", errors)


def _damaged(path: str | Path, what: str, errors: list[str] | None) -> None:
    logger.warning("%s: %s; read up to there", path, what)
    if errors is not None:
        errors.append(f"{path}: {what}")


def read_frames(path: str | Path, *, errors: list[str] | None = None) -> Iterator[Frame]:
    """Every frame of a journal or capture (plain or .gz), in order.

    Garbage between frames is skipped (the parser resynchronises); a description of
    each skipped stretch is appended to ``errors`` when given.
    """
    for frames, _pos in iter_frame_batches(path, errors=errors):
        yield from frames


def iter_frame_batches(path: str | Path, *, errors: list[str] | None = None
                       ) -> Iterator[tuple[list[Frame], int]]:
    """Frames chunk by chunk with the file position reached (for progress bars)."""
    parser = EslParser()
    for data, pos in iter_chunks(path, errors=errors):
        frames = _feed(parser, data, path, errors)
        yield frames, pos
    if parser.buffered and errors is not None:
        errors.append(f"{path}: {parser.buffered} bytes of an incomplete frame at the end")


def _feed(parser: EslParser, data: bytes, path: str | Path,
          errors: list[str] | None) -> list[Frame]:
    frames, skipped = parser.feed_resync(data)
    for exc in skipped:
        logger.warning("%s: skipping garbage: %s", path, exc)
        if errors is not None:
            errors.append(f"{path}: {exc}")
    return frames
