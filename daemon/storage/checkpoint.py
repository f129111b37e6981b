"""A node's restart point: the engine's state at a journal position whose records are all in the database.

The daemon takes a checkpoint every few thousand events (and at stop): the engine's
working memory (``daemon.engine.checkpoint``) and the journal position it corresponds
to. It is written to ``<journal_dir>/checkpoint/<node>.json.gz`` only once the store has
committed every record the engine emitted up to that position (``Store.when_committed``),
so the file is also the node's durable "journal committed up to here" watermark, and it
can be read at start even while the database is down.

At start (``Service.recover``) the engine is restored from it and the journal is replayed
from its position to the end: the state is then exactly that of an engine that never
stopped, and every record the previous process emitted after the checkpoint - in memory,
in the store's buffer, lost with the process - is emitted again and written. Without a
checkpoint (first start, or one from another engine version) the node's whole journal is
replayed from its first file through a fresh engine, which gives the same state, slower.

The file is written atomically (temporary name, fsync, rename, directory fsync), in a
directory only the daemon's user may read: it holds caller numbers.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.storage.journal import JournalPosition

logger = logging.getLogger(__name__)

SUBDIR = "checkpoint"
# a checkpoint of a large center is a few MB of JSON; anything far larger is not ours
MAX_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Checkpoint:
    node: str
    position: JournalPosition
    engine: dict[str, Any]  # daemon.engine.checkpoint.encode()


def checkpoint_path(journal_dir: str | Path, prefix: str) -> Path:
    return Path(journal_dir) / SUBDIR / f"{prefix}.json.gz"


def save(journal_dir: str | Path, checkpoint: Checkpoint) -> Path:
    """Write atomically; the previous checkpoint stays until the new one is complete."""
    path = checkpoint_path(journal_dir, checkpoint.node)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = gzip.compress(json.dumps({"node": checkpoint.node,
                                     "position": checkpoint.position.as_dict(),
                                     "engine": checkpoint.engine},
                                    separators=(",", ":")).encode(), compresslevel=1)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    try:  # the rename itself survives a power cut only once the directory is synced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # not every file system lets a directory be opened or synced
        pass
    return path


def load(journal_dir: str | Path, prefix: str) -> Checkpoint | None:
    """The node's checkpoint, or None when there is none or it cannot be read (logged:
    the caller replays the whole journal instead, which is slower but just as exact)."""
    path = checkpoint_path(journal_dir, prefix)
    if not path.exists():
        return None
    unsafe = _unsafe(path)
    if unsafe:
        logger.warning("checkpoint %s ignored (%s): replaying the whole journal", path, unsafe)
        return None
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except (OSError, EOFError) as exc:
        logger.warning("checkpoint %s unreadable (%s): replaying the whole journal", path, exc)
        return None
    try:
        if len(raw) > MAX_BYTES:
            raise ValueError("too large")
        value = json.loads(raw)
        if value.get("node") != prefix or not isinstance(value.get("engine"), dict):
            raise ValueError("not this node's checkpoint")
        return Checkpoint(prefix, JournalPosition.from_dict(value.get("position")),
                          value["engine"])
    except (ValueError, AttributeError) as exc:
        logger.warning("checkpoint %s damaged (%s): replaying the whole journal", path, exc)
        return None


def _unsafe(path: Path) -> str | None:
    """Why a checkpoint must not be trusted: another user could have written it."""
    uid = os.getuid()
    for item in (path.parent, path):
        st = item.lstat()
        if st.st_uid != uid:
            return f"{item} belongs to another user"
        if st.st_mode & 0o022:
            return f"{item} is writable by other users"
    return None
