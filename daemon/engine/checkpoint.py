"""The segment engine's working memory as plain JSON values, and back (a restart's checkpoint).

A daemon that stops (or dies) while calls are up must go on with exactly the state an
engine that never stopped would have: which rings are open, the talk piece and hold
counters, the agent's open intervals and running wrap-up, the wrap-up times learnt from
the switch, the duplicate-event window, the purge clock. ``encode(engine)`` copies all of
it into lists, dicts and scalars (safe to keep while the engine goes on: frozen records
are copied field by field); ``restore(engine, value)`` puts it back into a fresh engine.

The format is tagged JSON (``{"o": class, "f": fields}`` for the engine's own dataclasses,
``{"t": [...]}`` tuples, ``{"s": [...]}`` sets, ``{"d": [[k, v], ...]}`` dicts in their
insertion order), never pickle: a file in the journal directory is read back at start,
and reading it must not run code. Only the classes named in ``_CLASSES`` are rebuilt, each
with exactly its current fields: a checkpoint written by a different version of the
engine is refused (``CheckpointError``) rather than half-applied, and the caller falls
back to replaying the journal from its beginning.
"""
from __future__ import annotations

import hashlib
from dataclasses import fields, is_dataclass
from typing import TYPE_CHECKING, Any

from daemon.engine.records import AgentInterval, Segment
from daemon.engine.segments_agents import WrapUp, _Agent
from daemon.engine.segments_state import CallbackLegs, CallState, Visit

if TYPE_CHECKING:
    from daemon.engine.segments import SegmentEngine

FORMAT = 1
_CLASSES: dict[str, type] = {cls.__name__: cls
                             for cls in (Segment, AgentInterval, CallState, Visit, CallbackLegs,
                                         WrapUp, _Agent)}
_FIELDS = {name: tuple(f.name for f in fields(cls)) for name, cls in _CLASSES.items()}
# what the engine learns from the stream; everything else it holds is configuration (from
# the model, read again at start) or scratch space that is empty between two events
SAVED = ("agent_wrapup_s", "_calls", "_legs", "_internal", "_segs", "_emitted_calls", "_seen",
         "_last_purge_ms", "_clock_ms", "_jump_ms", "_heartbeat_ms", "_campaign_legs")
CONFIG = ("node", "short_abandon_s", "internal_numbers", "did_tenants", "agent_extensions")
SCRATCH = ("_out", "_dirty_segs", "_dirty_calls", "_event_node", "_handlers")
# kept apart: _book (its agents) and _emitted_segs (stored as its difference to _segs)
DERIVED = ("_book", "_emitted_segs")


def fingerprint() -> str:
    """Changes whenever a class the checkpoint holds gains, loses or renames a field."""
    text = repr(sorted(_FIELDS.items())) + repr(SAVED)
    return f"{FORMAT}:{hashlib.sha1(text.encode()).hexdigest()[:12]}"


class CheckpointError(ValueError):
    """A checkpoint that this engine cannot take back (other version, damaged)."""


def _enc(value: Any) -> Any:
    if value is None or value.__class__ in (str, int, float, bool):
        return value
    cls = value.__class__
    if cls is tuple:
        return {"t": [_enc(v) for v in value]}
    if cls is list:
        return [_enc(v) for v in value]
    if cls in (set, frozenset):
        return {"s": sorted(value)}
    if cls is dict:
        return {"d": [[_enc(k), _enc(v)] for k, v in value.items()]}
    name = cls.__name__
    if is_dataclass(value) and _CLASSES.get(name) is cls:
        return {"o": name, "f": [_enc(getattr(value, f)) for f in _FIELDS[name]]}
    raise TypeError(f"engine state holds a {name}, which a checkpoint cannot keep")


def _dec(value: Any) -> Any:
    if value is None or value.__class__ in (str, int, float, bool):
        return value
    if value.__class__ is list:
        return [_dec(v) for v in value]
    if value.__class__ is not dict or len(value) not in (1, 2):
        raise CheckpointError(f"unexpected value in a checkpoint: {str(value)[:60]}")
    if "t" in value:
        return tuple(_dec(v) for v in value["t"])
    if "s" in value:
        return set(value["s"])
    if "d" in value:
        return {_dec(k): _dec(v) for k, v in value["d"]}
    name = value.get("o")
    cls = _CLASSES.get(name) if isinstance(name, str) else None
    values = value.get("f")
    if cls is None or not isinstance(values, list) or len(values) != len(_FIELDS[name]):
        raise CheckpointError(f"a checkpoint holds an unknown or changed record: {name!r}")
    obj = object.__new__(cls)  # frozen dataclasses too: no __post_init__ anywhere
    obj.__dict__.update(zip(_FIELDS[name], (_dec(v) for v in values)))
    return obj


def encode(engine: SegmentEngine) -> dict[str, Any]:
    """The engine's state between two events, as JSON values (see the module docstring)."""
    if engine._out or engine._dirty_segs or engine._dirty_calls:
        raise RuntimeError("a checkpoint is taken between two events, after feed() returned")
    segs, emitted = engine._segs, engine._emitted_segs
    # the last version emitted of every segment is the current one, except in odd cases
    # (a segment put and forgotten in the same event): keep only the differences
    emitted_diff = {k: v for k, v in emitted.items() if segs.get(k) is not v}
    never_emitted = [k for k in segs if k not in emitted]
    return {"format": fingerprint(),
            "state": {name: _enc(getattr(engine, name)) for name in SAVED},
            "agents": _enc(engine._book._agents),
            "emitted_diff": _enc(emitted_diff), "never_emitted": never_emitted}


def restore(engine: SegmentEngine, value: Any) -> None:
    """Give a fresh engine the state ``encode`` saved; CheckpointError if it cannot be."""
    if not isinstance(value, dict) or value.get("format") != fingerprint():
        raise CheckpointError("checkpoint written by another version of the engine")
    try:
        state = {name: _dec(value["state"][name]) for name in SAVED}
        agents = _dec(value["agents"])
        emitted_diff = _dec(value["emitted_diff"])
        never_emitted = value["never_emitted"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"damaged checkpoint: {exc}") from None
    # wrap-up times: the configuration's for agents the checkpoint does not know (added to
    # the YAML since), what the engine had learnt from the switch for the others
    state["agent_wrapup_s"] = {**engine.agent_wrapup_s, **state["agent_wrapup_s"]}
    for name, item in state.items():
        setattr(engine, name, item)
    engine._book._agents = agents
    emitted = dict(engine._segs)
    for key in never_emitted:
        emitted.pop(key, None)
    emitted.update(emitted_diff)
    engine._emitted_segs = emitted
