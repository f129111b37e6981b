"""Live state: who is doing what now, which calls wait where (``LiveState``).

Two implementations with one interface:

* ``MemoryLiveState`` - a single-box daemon without Redis keeps it here and
  serves ``snapshot()`` itself; subscribers get each change as a dict.
* ``RedisLiveState(url)`` - the same state in Redis so several daemons and the
  CLI can read it (``snapshot_from_redis``), plus the pub/sub channel
  ``hotline:live`` carrying one JSON message per change.

Redis keys (all under ``hotline:live:``, which nothing else may use):

* ``hotline:live:agents`` set of agents; ``hotline:live:agent:<agent>`` hash with
  status, state, reason, call_id, since_ms, updated_ms (only fields that are set);
* ``hotline:live:agents:state:<state>`` set of the agents in that state;
* ``hotline:live:queues`` set of queues; ``hotline:live:queue:<queue>:waiting``
  sorted set call_id -> joined_ms (its first element is the longest wait);
  ``hotline:live:queue:<queue>:callers`` hash call_id -> caller number.

Messages on ``hotline:live``: ``{"kind": "agent"|"member", "key": ..., "data":
{...}, "at_ms": ...}`` per change, and ``{"kind": "resync"|"rebuild", "at_ms": ...}``
when the whole state was rewritten (after a Redis outage or a switch reconnect):
a subscriber then re-reads the keys.

Redis down: ``apply`` never raises into the daemon. The state lives on in an
in-process mirror (the latest state, not a backlog of changes, so memory stays
bounded); an ``apply`` after the backoff (``retry_s`` doubling up to
``retry_max_s``) tries to reconnect and, once Redis answers, rewrites the whole
state in one MULTI/EXEC and publishes ``resync``.

A watcher (a greenlet under gevent, else a thread) looks at Redis every ``watch_s``
seconds: the moment Redis answers again the whole state is rewritten - not at the
next change, which on a quiet queue may be minutes away while Redis shows callers
who left long ago - and a Redis that restarted (its ``run_id`` changed: empty, or
an old snapshot loaded) while the daemon never noticed is rewritten too. The
watcher's probes never run in the daemon's event loop.

``rebuild(agents=..., members=...)`` replaces the state with what the switch
reports after a reconnect: rows of ``callcenter_config agent list`` and of
``callcenter_config queue list members <queue>`` (see ``parse_agent_list`` /
``parse_member_list``).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from daemon.engine.records import LiveChange

logger = logging.getLogger(__name__)

CHANNEL = "hotline:live"
PREFIX = "hotline:live"  # every key of the live state lives under it (resync rewrites them all)
CALL_STATES = ("Receiving", "In a queue call")
WAITING_MEMBER_STATES = ("Waiting", "Trying")


# --- mod_callcenter list output -----------------------------------------------------------------


@dataclass(frozen=True)
class AgentRow:
    """One row of ``callcenter_config agent list``."""

    name: str  # qualified, e.g. 1001@hotline.test
    status: str
    state: str
    contact: str = ""
    type: str = ""
    wrap_up_time: int = 0
    last_bridge_start: int = 0  # epoch seconds
    last_bridge_end: int = 0
    last_status_change: int = 0


@dataclass(frozen=True)
class MemberRow:
    """One row of ``callcenter_config queue list members <queue>``."""

    queue: str
    uuid: str  # CC-Member-UUID (this queue stay)
    session_uuid: str  # the caller's leg = call id
    cid_number: str
    cid_name: str
    joined_epoch: int
    rejoined_epoch: int
    bridge_epoch: int
    serving_agent: str
    state: str  # Waiting | Trying | Answered | Abandoned


def parse_pipe_table(text: str) -> list[dict[str, str]]:
    """mod_callcenter's list output: a ``|``-separated header line, rows, then ``+OK``.

    An empty list is just ``+OK``. Raises ValueError on ``-ERR ...``.
    """
    lines = [line.rstrip("\r") for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("-ERR") or line.startswith("-USAGE"):
            raise ValueError(f"callcenter_config answered: {line}")
    lines = [line for line in lines if line.strip() != "+OK"]
    if not lines:
        return []
    header = lines[0].split("|")
    rows = []
    for line in lines[1:]:
        parts = line.split("|")
        if len(parts) > len(header):
            # a value containing "|" (e.g. a contact string): keep the tail columns aligned
            extra = len(parts) - len(header)
            idx = header.index("contact") if "contact" in header else len(header) - 1
            parts = parts[:idx] + ["|".join(parts[idx:idx + extra + 1])] + parts[idx + extra + 1:]
        if len(parts) != len(header):
            logger.warning("skipping malformed list row: %r", line[:200])
            continue
        rows.append(dict(zip(header, parts)))
    return rows


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def parse_agent_list(text: str) -> list[AgentRow]:
    return [AgentRow(name=r.get("name", ""), status=r.get("status", ""), state=r.get("state", ""),
                     contact=r.get("contact", ""), type=r.get("type", ""),
                     wrap_up_time=_int(r.get("wrap_up_time")),
                     last_bridge_start=_int(r.get("last_bridge_start")),
                     last_bridge_end=_int(r.get("last_bridge_end")),
                     last_status_change=_int(r.get("last_status_change")))
            for r in parse_pipe_table(text) if r.get("name")]


def parse_member_list(text: str) -> list[MemberRow]:
    return [MemberRow(queue=r.get("queue", ""), uuid=r.get("uuid", ""),
                      session_uuid=r.get("session_uuid", ""), cid_number=r.get("cid_number", ""),
                      cid_name=r.get("cid_name", ""), joined_epoch=_int(r.get("joined_epoch")),
                      rejoined_epoch=_int(r.get("rejoined_epoch")),
                      bridge_epoch=_int(r.get("bridge_epoch")),
                      serving_agent=r.get("serving_agent", ""), state=r.get("state", ""))
            for r in parse_pipe_table(text) if r.get("queue")]


# --- the state itself ---------------------------------------------------------------------------


def change_message(change: LiveChange) -> dict[str, Any]:
    return {"kind": change.kind, "key": change.key, "data": dict(change.data),
            "at_ms": change.at_ms}


class _State:
    """Agents and waiting members, plain dicts (shared by both implementations)."""

    def __init__(self) -> None:
        self.agents: dict[str, dict[str, Any]] = {}
        self.queues: dict[str, dict[str, dict[str, Any]]] = {}

    def apply(self, change: LiveChange) -> None:
        data = dict(change.data)
        if change.kind == "agent":
            agent = self.agents.setdefault(change.key, {})
            if "status" in data and "reason" not in data:
                agent.pop("reason", None)  # a reason belongs to the status it came with
            if data.get("state") and data["state"] not in CALL_STATES and "call_id" not in data:
                agent.pop("call_id", None)
            for name, value in data.items():
                if value is None:
                    agent.pop(name, None)
                else:
                    agent[name] = value
            agent["updated_ms"] = change.at_ms
        elif change.kind == "member":
            waiting = self.queues.setdefault(change.key, {})
            call_id = str(data.get("call_id") or "")
            if not call_id:
                return
            if data.get("action") == "leave":
                waiting.pop(call_id, None)
            else:
                joined = data.get("joined_ms")
                joined_ms = int(joined) if joined is not None else change.at_ms
                waiting[call_id] = {"caller": data.get("caller") or "", "joined_ms": joined_ms}
        else:
            logger.debug("ignoring live change of kind %r", change.kind)

    def rebuild(self, agents: Iterable[AgentRow], members: Iterable[MemberRow], at_ms: int) -> None:
        old = self.agents
        self.agents = {}
        for row in agents:
            entry: dict[str, Any] = {"status": row.status, "state": row.state, "updated_ms": at_ms}
            prev = old.get(row.name, {})
            # the list does not say which call an agent is on, nor the break reason: keep what
            # we knew if the agent is still in the same status/state
            if prev.get("status") == row.status and prev.get("reason"):
                entry["reason"] = prev["reason"]
            if row.state in CALL_STATES and prev.get("state") == row.state and prev.get("call_id"):
                entry["call_id"] = prev["call_id"]
            if row.last_status_change:
                entry["since_ms"] = row.last_status_change * 1000
            self.agents[row.name] = entry
        queues = {q: {} for q in self.queues}
        for m in members:
            waiting = queues.setdefault(m.queue, {})
            if m.state in WAITING_MEMBER_STATES and m.session_uuid:
                joined = m.rejoined_epoch or m.joined_epoch
                waiting[m.session_uuid] = {"caller": m.cid_number, "joined_ms": joined * 1000}
        self.queues = queues

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        by_state: dict[str, list[str]] = {}
        by_status: dict[str, list[str]] = {}
        for name in sorted(self.agents):
            a = self.agents[name]
            by_state.setdefault(a.get("state") or "Unknown", []).append(name)
            by_status.setdefault(a.get("status") or "Unknown", []).append(name)
        queues = {}
        for q in sorted(self.queues):
            members = sorted(self.queues[q].items(), key=lambda kv: (kv[1]["joined_ms"], kv[0]))
            oldest = members[0][1]["joined_ms"] if members else None
            queues[q] = {
                "waiting": [{"call_id": cid, "caller": m["caller"], "joined_ms": m["joined_ms"],
                             "wait_ms": max(0, now_ms - m["joined_ms"])} for cid, m in members],
                "count": len(members),
                "oldest_joined_ms": oldest,
                "longest_wait_ms": None if oldest is None else max(0, now_ms - oldest),
            }
        return {"at_ms": now_ms,
                "agents": {name: dict(self.agents[name]) for name in sorted(self.agents)},
                "agents_by_state": by_state, "agents_by_status": by_status, "queues": queues}


def _now_ms() -> int:
    return int(time.time() * 1000)


class LiveState:
    """The interface the daemon uses; see the module docstring.

    ``subscribe(callback)``: in-process listeners (the wallboard's live stream) get every
    change message as a dict, whichever implementation holds the state.
    """

    _subscribers: list[Callable[[dict[str, Any]], None]]

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> None:
        if not hasattr(self, "_subscribers"):
            self._subscribers = []
        self._subscribers.append(callback)

    def _publish(self, message: dict[str, Any]) -> None:
        for callback in getattr(self, "_subscribers", ()):
            try:
                callback(message)
            except Exception:
                logger.exception("live-state subscriber failed")

    def apply(self, changes: Sequence[LiveChange]) -> None:
        raise NotImplementedError

    def rebuild(self, agents: Iterable[AgentRow] = (), members: Iterable[MemberRow] = (),
                at_ms: int | None = None) -> None:
        raise NotImplementedError

    def snapshot(self, now_ms: int | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class MemoryLiveState(LiveState):
    """Live state in the daemon's memory; ``subscribe(callback)`` stands in for pub/sub."""

    def __init__(self) -> None:
        self._state = _State()
        self._subscribers = []

    def apply(self, changes: Sequence[LiveChange]) -> None:
        for change in changes:
            self._state.apply(change)
            self._publish(change_message(change))

    def rebuild(self, agents: Iterable[AgentRow] = (), members: Iterable[MemberRow] = (),
                at_ms: int | None = None) -> None:
        at = _now_ms() if at_ms is None else at_ms
        self._state.rebuild(agents, members, at)
        self._publish({"kind": "rebuild", "at_ms": at})

    def snapshot(self, now_ms: int | None = None) -> dict[str, Any]:
        return self._state.snapshot(_now_ms() if now_ms is None else now_ms)


class RedisLiveState(LiveState):
    """Live state in Redis, with an in-process mirror that outlives Redis outages."""

    def __init__(self, url: str, *, prefix: str = PREFIX, channel: str = CHANNEL,
                 timeout_s: float = 1.0, retry_s: float = 1.0, retry_max_s: float = 30.0,
                 watch_s: float | None = 1.0) -> None:
        import redis

        self._redis_mod = redis
        self.url = url
        self.prefix = prefix
        self.channel = channel
        self.retry_s = retry_s
        self.retry_max_s = max(retry_s, retry_max_s)
        self._delay = 0.0
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                           socket_connect_timeout=timeout_s,
                                           retry_on_timeout=False, decode_responses=True)
        self._state = _State()
        self._subscribers = []
        self._dirty = True  # write the whole (empty) state on first contact: clears stale keys
        self._next_try = 0.0
        self._failures = 0
        self._run_id: str | None = None  # the Redis server our last full write went to
        # apply (the daemon's loop) and the watcher both write: one at a time, and never
        # while the mirror is half-updated
        self._lock = threading.RLock()
        self._closed = False
        self._try_resync("resync")  # clears what a previous daemon left; failing is fine here
        self.watch_s = watch_s
        self._watcher = _spawn(self._watch) if watch_s else None

    @property
    def connected(self) -> bool:
        """False while Redis is unreachable (the mirror holds the state)."""
        return not self._dirty

    # -- keys ------------------------------------------------------------------------------------

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix,) + parts)

    def _agent_ops(self, pipe: Any, name: str, old_state: str | None) -> None:
        entry = self._state.agents.get(name, {})
        key = self._k("agent", name)
        pipe.delete(key)
        fields = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in entry.items()}
        if fields:
            pipe.hset(key, mapping=fields)
        pipe.sadd(self._k("agents"), name)
        new_state = entry.get("state")
        if old_state and old_state != new_state:
            pipe.srem(self._k("agents", "state", old_state), name)
        if new_state:
            pipe.sadd(self._k("agents", "state", new_state), name)

    def _member_ops(self, pipe: Any, queue: str, call_id: str) -> None:
        pipe.sadd(self._k("queues"), queue)
        member = self._state.queues.get(queue, {}).get(call_id)
        waiting, callers = self._k("queue", queue, "waiting"), self._k("queue", queue, "callers")
        if member is None:
            pipe.zrem(waiting, call_id)
            pipe.hdel(callers, call_id)
        else:
            pipe.zadd(waiting, {call_id: member["joined_ms"]})
            pipe.hset(callers, call_id, member["caller"])

    # -- interface -------------------------------------------------------------------------------

    def apply(self, changes: Sequence[LiveChange]) -> None:
        if not changes:
            return
        with self._lock:
            self._apply(changes)

    def _apply(self, changes: Sequence[LiveChange]) -> None:
        try:
            pipe = self.client.pipeline(transaction=True)
        except Exception:  # pragma: no cover - building a pipeline does no I/O
            pipe = None
        for change in changes:
            old_state = None
            if change.kind == "agent":
                old_state = self._state.agents.get(change.key, {}).get("state")
            self._state.apply(change)
            if self._subscribers:
                self._publish(change_message(change))
            if pipe is None or self._dirty:
                continue
            if change.kind == "agent":
                self._agent_ops(pipe, change.key, old_state)
            elif change.kind == "member":
                call_id = str(dict(change.data).get("call_id") or "")
                if call_id:
                    self._member_ops(pipe, change.key, call_id)
            pipe.publish(self.channel, json.dumps(change_message(change), separators=(",", ":")))
        if self._dirty:
            self._try_resync("resync")
            return
        try:
            pipe.execute()
        except self._redis_mod.RedisError as exc:
            self._lost(exc)

    def rebuild(self, agents: Iterable[AgentRow] = (), members: Iterable[MemberRow] = (),
                at_ms: int | None = None) -> None:
        at = _now_ms() if at_ms is None else at_ms
        with self._lock:
            self._state.rebuild(agents, members, at)
            self._publish({"kind": "rebuild", "at_ms": at})
            self._dirty = True
            self._next_try = 0.0
            self._try_resync("rebuild")

    def resync(self) -> bool:
        """Try to rewrite the whole state to Redis now; True if Redis took it."""
        with self._lock:
            self._next_try = 0.0
            if not self._dirty:
                return True
            return self._try_resync("resync")

    def check(self) -> None:
        """One look at Redis (what the watcher does every ``watch_s``): rewrite the whole
        state at once if Redis is back after an outage or restarted under us."""
        try:
            run_id = self.client.info("server").get("run_id")
        except self._redis_mod.RedisError as exc:
            if not self._dirty:
                with self._lock:
                    self._lost(exc)
            return
        if not self._dirty and run_id == self._run_id:
            return
        with self._lock:
            if not self._dirty:
                logger.warning("Redis restarted (its data is not ours any more): rewriting "
                               "the live state")
                self._failures += 1
            self._dirty = True
            self._next_try = 0.0
            self._try_resync("resync")

    def _watch(self) -> None:
        while not self._closed:
            time.sleep(self.watch_s)  # cooperative under gevent (monkey-patched)
            if self._closed:
                return
            try:
                self.check()
            except Exception:  # the watcher must outlive any surprise
                logger.exception("Redis watcher error")

    def snapshot(self, now_ms: int | None = None) -> dict[str, Any]:
        return self._state.snapshot(_now_ms() if now_ms is None else now_ms)

    def close(self) -> None:
        self._closed = True
        try:
            self.client.close()
        except Exception:  # closing a dead connection is not worth a traceback
            pass

    # -- outage handling -------------------------------------------------------------------------

    def _lost(self, exc: BaseException) -> None:
        if not self._dirty:
            logger.warning("Redis unreachable (%s): keeping live state in memory, will resync", exc)
        self._dirty = True
        self._failures += 1
        # exponential backoff: an unreachable (not refusing) Redis costs up to timeout_s per
        # attempt inside the daemon's loop, so attempts get rarer the longer it stays away
        self._delay = min(self.retry_max_s, max(self.retry_s, self._delay * 2))
        self._next_try = time.monotonic() + self._delay

    def _try_resync(self, kind: str) -> bool:
        if time.monotonic() < self._next_try:
            return False
        try:
            run_id = self.client.info("server").get("run_id")
            stale = list(self.client.scan_iter(match=self._k("*"), count=1000))
            pipe = self.client.pipeline(transaction=True)
            if stale:
                pipe.delete(*stale)
            for name in self._state.agents:
                self._agent_ops(pipe, name, None)
            for queue, waiting in self._state.queues.items():
                pipe.sadd(self._k("queues"), queue)
                for call_id in waiting:
                    self._member_ops(pipe, queue, call_id)
            pipe.publish(self.channel, json.dumps({"kind": kind, "at_ms": _now_ms()}))
            pipe.execute()
        except self._redis_mod.RedisError as exc:
            self._lost(exc)
            return False
        if self._failures:
            logger.info("Redis reachable again: live state resynchronised")
        self._run_id = run_id
        self._dirty = False
        self._delay = 0.0
        return True


def _spawn(fn: Callable[[], None]) -> Any:
    """A greenlet when gevent patched threading (the daemon), else a daemon thread."""
    try:
        from gevent import monkey

        patched = monkey.is_module_patched("threading")
    except ImportError:  # pragma: no cover - gevent is a dependency
        patched = False
    if patched:
        import gevent

        return gevent.spawn(fn)
    thread = threading.Thread(target=fn, name="hotline-redis-watcher", daemon=True)
    thread.start()
    return thread


def snapshot_from_redis(url: str, now_ms: int | None = None, *,
                        prefix: str = PREFIX) -> dict[str, Any]:
    """Read the live state another process keeps in Redis (for ``hotline queue status``)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                  decode_responses=True)
    state = _State()
    try:
        for name in sorted(client.smembers(f"{prefix}:agents")):
            raw = client.hgetall(f"{prefix}:agent:{name}")
            entry: dict[str, Any] = {}
            for k, v in raw.items():
                entry[k] = int(v) if k.endswith("_ms") and v.lstrip("-").isdigit() else v
            state.agents[name] = entry
        for queue in sorted(client.smembers(f"{prefix}:queues")):
            callers = client.hgetall(f"{prefix}:queue:{queue}:callers")
            waiting = client.zrange(f"{prefix}:queue:{queue}:waiting", 0, -1, withscores=True)
            state.queues[queue] = {cid: {"caller": callers.get(cid, ""), "joined_ms": int(score)}
                                   for cid, score in waiting}
    finally:
        client.close()
    return state.snapshot(_now_ms() if now_ms is None else now_ms)


def make_live_state(redis_url: str | None) -> LiveState:
    """Redis when configured, else memory (the single-box default)."""
    return RedisLiveState(redis_url) if redis_url else MemoryLiveState()


def changes_from_mapping(items: Iterable[Mapping[str, Any]]) -> list[LiveChange]:
    """LiveChange objects from plain dicts (tests, HTTP API)."""
    return [LiveChange(kind=i["kind"], key=i["key"], data=tuple(dict(i.get("data", {})).items()),
                       at_ms=int(i.get("at_ms", 0))) for i in items]


def format_snapshot(snap: Mapping[str, Any]) -> str:
    """A snapshot for humans (``hotline queue status``): queues with waits, then agents."""
    lines = []
    for queue, q in snap.get("queues", {}).items():
        longest = q.get("longest_wait_ms")
        lines.append(f"{queue}: {q['count']} waiting"
                     + (f", longest {longest / 1000:.0f} s" if longest is not None else ""))
        for w in q["waiting"]:
            lines.append(f"    {w['call_id']}  {w['caller'] or '-'}  "
                         f"waiting {w['wait_ms'] / 1000:.0f} s")
    if lines:
        lines.append("")
    for name, a in snap.get("agents", {}).items():
        status = a.get("status", "?") + (f" ({a['reason']})" if a.get("reason") else "")
        extra = f"  call {a['call_id']}" if a.get("call_id") else ""
        lines.append(f"{name}  {status}  {a.get('state', '?')}{extra}")
    return "\n".join(lines) if lines else "No live state."
