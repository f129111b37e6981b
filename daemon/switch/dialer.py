"""The callback dialer: callers who asked to be called back keep their place in the queue.

Flow
----
1. ``hotline::callback`` ``Hotline-Action: request`` (fired by fs_scripts/hotline_callback
   when the caller confirmed a number) -> :meth:`CallbackDialer.on_event` stores the
   request in Redis, keyed by the call id, so a restart loses nothing and two daemons
   that both see the event store it once.
2. :func:`due_requests` (pure) decides what is due: a pending request whose retry time
   has come, when no live caller of its queue joined before it (``Hotline-Joined-MS`` is
   when the caller joined the queue, so the place is kept) and an agent of that queue is
   available (status Available / Available (On Demand), state Waiting). Requests of one
   queue go in joined order; each agent takes one request per round.
3. :meth:`CallbackDialer.tick` - only in the daemon holding the Redis lock - claims each
   due request atomically (pending -> dialing, for exactly the attempt number it read:
   nothing is dialed twice), checks the agent is still Waiting on the switch, and dials:
   the agent's phone first (``originate
   {...}user/EXT@domain &park()``; the agent's state is set to Idle meanwhile, so
   mod_callcenter offers it no queue call, and an ``api_hangup_hook`` on the agent's leg
   sets it back to Waiting when that leg ends), then the customer through the tenant's
   first outbound route that takes the number (``originate {...}sofia/gateway/GW/
   <prefix>NUMBER &park()``, or the route's ``dial_string``; its caller id), then
   ``uuid_bridge``. A number no route of the tenant takes fails at once (outcome
   ``failed``, nobody rung): the switch would only answer NO_ROUTE_DESTINATION.
4. The agent not answering does not count against the customer: the request goes back
   after ``agent_retry_s`` (at most ``max_agent_misses`` times). The customer not
   answering (or any failure after the agent answered) counts an attempt; attempts are
   retried after ``retry_base_s * 2**(n-1)`` up to ``max_attempts``. The final outcome -
   connected / no-answer / failed - is fired as ``hotline::callback``
   ``Hotline-Action: result`` (``sendevent CUSTOM``); the segment engine turns it into the
   call's ``callback`` segment.

Leadership: one Redis key ``hotline:callback:lock`` set with NX + PX (expiry) holding the
owner id, renewed on every tick by its owner (compare-and-expire script); a daemon that
dies stops renewing and another takes over after ``lock_ttl_ms``.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

from daemon.definition.model import CallCenter, Tenant
from daemon.definition.tiers import effective_tiers
from daemon.switch.events import Event

logger = logging.getLogger(__name__)

PREFIX = "hotline:callback"
AVAILABLE = ("Available", "Available (On Demand)")
NO_ANSWER_CAUSES = ("NO_ANSWER", "USER_BUSY", "NO_USER_RESPONSE", "CALL_REJECTED",
                    "ORIGINATOR_CANCEL", "ALLOTTED_TIMEOUT")
FINAL = ("connected", "no-answer", "failed")


@dataclass(frozen=True)
class CallbackRequest:
    call_id: str
    queue: str  # qualified
    number: str
    joined_ms: int
    node: str = ""
    requested_ms: int = 0
    attempts: int = 0  # customer attempts made
    agent_misses: int = 0
    next_ms: int = 0  # not before
    status: str = "pending"  # pending | dialing | connected | no-answer | failed
    last_error: str = ""
    agent: str = ""

    def to_fields(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_fields(cls, f: Mapping[str, str]) -> "CallbackRequest":
        ints = ("joined_ms", "requested_ms", "attempts", "agent_misses", "next_ms")
        return cls(**{k: (int(f[k]) if k in ints else f[k])
                      for k in cls.__dataclass_fields__ if k in f})


@dataclass(frozen=True)
class Assignment:
    request: CallbackRequest
    agent: str  # qualified


# --- the decision (pure) ------------------------------------------------------------------------


def due_requests(requests: Iterable[CallbackRequest], waiting: Mapping[str, Iterable[int]],
                 available: Mapping[str, Sequence[str]], now_ms: int) -> list[Assignment]:
    """Which requests to dial now, and with which agent.

    ``waiting``: queue -> joined_ms of its live waiting callers; ``available``: queue ->
    its available agents, best first. A request is due when it is pending, its retry time
    has come, nobody still waiting in its queue joined before it, and an agent of the
    queue is free; requests of a queue go in joined order and take distinct agents.
    """
    earliest = {q: min(js, default=None) for q, js in ((q, list(v)) for q, v in waiting.items())}
    taken: set[str] = set()
    out = []
    blocked_queues: set[str] = set()
    for req in sorted(requests, key=lambda r: (r.joined_ms, r.call_id)):
        if req.status != "pending" or req.next_ms > now_ms or req.queue in blocked_queues:
            continue
        first = earliest.get(req.queue)
        if first is not None and first < req.joined_ms:
            continue  # a caller ahead of it is still waiting: the place is kept, not jumped
        agent = next((a for a in available.get(req.queue, ()) if a not in taken), None)
        if agent is None:
            # later requests of this queue must not overtake this one
            blocked_queues.add(req.queue)
            continue
        taken.add(agent)
        out.append(Assignment(req, agent))
    return out


def queue_agents(center: CallCenter) -> dict[str, list[tuple[int, int, str]]]:
    """queue -> [(level, position, agent)] from the model's tiers."""
    out: dict[str, list[tuple[int, int, str]]] = {}
    for t in center.tenants:
        for q in t.queues:
            out[t.qualified(q.id)] = sorted((x.level, x.position, t.qualified(x.agent))
                                            for x in effective_tiers(t, q))
    return out


def available_agents(snapshot: Mapping[str, Any],
                     tiers: Mapping[str, Sequence[tuple[int, int, str]]]) -> dict[str, list[str]]:
    """queue -> free agents (lowest tier level first, then longest in their status)."""
    agents = snapshot.get("agents", {})
    out = {}
    for q, rows in tiers.items():
        free = []
        for level, position, name in rows:
            a = agents.get(name) or {}
            if a.get("status") in AVAILABLE and a.get("state") == "Waiting":
                free.append((level, int(a.get("since_ms") or 0), position, name))
        out[q] = [name for *_, name in sorted(free)]
    return out


def waiting_joined(snapshot: Mapping[str, Any]) -> dict[str, list[int]]:
    return {q: [int(w["joined_ms"]) for w in v.get("waiting", ())]
            for q, v in snapshot.get("queues", {}).items()}


def request_from_event(event: Event, node: str = "") -> CallbackRequest | None:
    if event.subclass != "hotline::callback" or event.get("Hotline-Action") != "request":
        return None
    call_id, queue, number = (event.get("Hotline-Call-ID"), event.get("Hotline-Queue"),
                              event.get("Hotline-Number"))
    if not (call_id and queue and number):
        logger.warning("callback request without call id, queue or number: %s", call_id)
        return None
    ts = event.timestamp_ms or 0
    try:
        joined = int(event.get("Hotline-Joined-MS") or ts)
    except ValueError:
        joined = ts
    return CallbackRequest(call_id, queue, number, joined, node=node, requested_ms=ts)


# --- Redis: requests, claims, the lock ----------------------------------------------------------

_ADD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
"""
_CLAIM = """
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then return 0 end
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'agent_misses') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'dialing', 'owner', ARGV[3], 'claimed_ms', ARGV[4])
return 1
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class CallbackStore:
    """Requests in Redis: hash ``<prefix>:req:<call id>``, sorted set ``<prefix>:pending``."""

    def __init__(self, url: str, prefix: str = PREFIX) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                           decode_responses=True)
        self.prefix = prefix
        self._add = self.client.register_script(_ADD)
        self._claim = self.client.register_script(_CLAIM)
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)

    def key(self, call_id: str) -> str:
        return f"{self.prefix}:req:{call_id}"

    def add(self, req: CallbackRequest) -> bool:
        """Store a new request; False when the call already has one (idempotent)."""
        flat: list[str] = []
        for k, v in req.to_fields().items():
            flat += [k, v]
        return bool(self._add(keys=[self.key(req.call_id), f"{self.prefix}:pending"],
                              args=[req.joined_ms, req.call_id, *flat]))

    def get(self, call_id: str) -> CallbackRequest | None:
        f = self.client.hgetall(self.key(call_id))
        return CallbackRequest.from_fields(f) if f.get("queue") else None

    def open_requests(self) -> list[CallbackRequest]:
        ids = self.client.zrange(f"{self.prefix}:pending", 0, -1)
        pipe = self.client.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.key(i))
        return [CallbackRequest.from_fields(f) for f in pipe.execute() if f.get("queue")]

    def claim(self, req: CallbackRequest, owner: str, now_ms: int) -> bool:
        args = [str(req.attempts), str(req.agent_misses), owner, str(now_ms)]
        return bool(self._claim(keys=[self.key(req.call_id)], args=args))

    def claimed_ms(self, call_id: str) -> int:
        return int(self.client.hget(self.key(call_id), "claimed_ms") or 0)

    def save(self, req: CallbackRequest) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key(req.call_id), mapping=req.to_fields())
        if req.status in FINAL:
            pipe.zrem(f"{self.prefix}:pending", req.call_id)
            pipe.expire(self.key(req.call_id), 7 * 86400)  # kept a week for `hotline` to show
        pipe.execute()

    # the lock
    def acquire(self, owner: str, ttl_ms: int) -> bool:
        lock = f"{self.prefix}:lock"
        if self.client.set(lock, owner, nx=True, px=ttl_ms):
            return True
        return bool(self._renew(keys=[lock], args=[owner, ttl_ms]))

    def release(self, owner: str) -> None:
        self._release(keys=[f"{self.prefix}:lock"], args=[owner])

    def close(self) -> None:
        self.client.close()


# --- the dialer -------------------------------------------------------------------------------


def build_dialer(settings: Any, center: CallCenter | None, connect: Callable[[str], Any],
                 snapshot: Callable[[], Mapping[str, Any]]) -> "CallbackDialer | None":
    """The daemon's dialer, or None when it cannot run (no call-center model). Requests and
    the lock live in Redis, or without Redis in the database (storage.callbacks)."""
    if center is None:
        logger.info("callback dialer off: it needs the call-center configuration")
        return None
    nodes = getattr(settings, "esl_nodes", ())
    store = None
    if not getattr(settings, "redis_url", None):
        from daemon.storage.callbacks import SqlCallbackStore

        store = SqlCallbackStore(settings.database_url, CallbackRequest)
    return CallbackDialer(settings.redis_url or "", center, connect, snapshot,
                          default_node=nodes[0].name if nodes else "", store=store)


def _first(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


class CallbackDialer:
    """Records requests (every daemon) and dials them (the one holding the lock).

    ``connect(node)`` returns the ESL connection of a node (anything with ``api`` and
    ``command``); ``snapshot()`` the live state (``daemon.live.state`` snapshot dict).
    """

    def __init__(self, redis_url: str, center: CallCenter, connect: Callable[[str], Any],
                 snapshot: Callable[[], Mapping[str, Any]], *, owner: str | None = None,
                 default_node: str = "", lock_ttl_ms: int = 15000, max_attempts: int = 3,
                 retry_base_s: int = 60, agent_retry_s: int = 15, max_agent_misses: int = 5,
                 ring_s: int = 25, customer_dial: str | None = None,
                 stale_claim_s: int = 300, prefix: str = PREFIX,
                 clock: Callable[[], float] = time.time, store: Any = None) -> None:
        # Redis, or any store with the same methods (storage.callbacks: the database)
        self.store = store if store is not None else CallbackStore(redis_url, prefix)
        self.center = center
        self.connect = connect
        self.snapshot = snapshot
        self.owner = owner or f"dialer-{uuid.uuid4()}"
        self.default_node = default_node
        self.lock_ttl_ms = lock_ttl_ms
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.agent_retry_s = agent_retry_s
        self.max_agent_misses = max_agent_misses
        self.ring_s = ring_s
        # a dial string with {number}/{domain} for every customer, instead of the tenants'
        # outbound routes (a test switch's loopback)
        self.customer_dial = customer_dial
        self.stale_claim_s = stale_claim_s
        self.clock = clock
        self.tiers = queue_agents(center)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # requests in
    def on_event(self, event: Event, node: str = "") -> bool:
        """Store a callback request event; True when it was new."""
        req = request_from_event(event, node or self.default_node)
        if req is None:
            return False
        added = self.store.add(req)
        logger.info("callback request call=%s queue=%s %s", req.call_id, req.queue,
                    "stored" if added else "already known")
        return added

    # leadership
    def is_leader(self) -> bool:
        try:
            return self.store.acquire(self.owner, self.lock_ttl_ms)
        except Exception as exc:  # Redis down: nobody dials rather than two
            logger.warning("callback dialer lock unavailable: %s", exc)
            return False

    def release(self) -> None:
        try:
            self.store.release(self.owner)
        except Exception:
            logger.debug("releasing the dialer lock failed", exc_info=True)

    # the round
    def tick(self, now_ms: int | None = None) -> list[dict[str, Any]]:
        """One round: when leader, dial what is due; returns what each attempt did."""
        if not self.is_leader():
            return []
        now = self.now_ms() if now_ms is None else now_ms
        requests = self.store.open_requests()
        requests = [self._unstick(r, now) for r in requests]
        snap = self.snapshot()
        plan = due_requests(requests, waiting_joined(snap), available_agents(snap, self.tiers), now)
        results = []
        for a in plan:
            if not self.store.claim(a.request, self.owner, now):
                continue  # someone else's (a lost lock) or changed under us: never twice
            try:
                results.append(self._dial(a.request, a.agent, now))
            except Exception as exc:
                logger.exception("callback call=%s failed", a.request.call_id)
                results.append(self._customer_failed(a.request, a.agent, now, f"error: {exc}"))
        return results

    def _unstick(self, req: CallbackRequest, now: int) -> CallbackRequest:
        """A claim whose dialer died mid-call goes back to pending, counted as an attempt."""
        if req.status != "dialing":
            return req
        if now - self.store.claimed_ms(req.call_id) < self.stale_claim_s * 1000:
            return req
        req = replace(req, status="pending", attempts=req.attempts + 1, next_ms=now)
        self.store.save(req)
        return req

    def _agent_ext(self, agent: str) -> tuple[Tenant, str]:
        local, _, domain = agent.partition("@")
        tenant = self.center.tenant_by_domain(domain)
        model_agent = tenant.agent(local) if tenant else None
        if tenant is None or model_agent is None:
            raise ValueError(f"agent {agent} is not in the configuration")
        return tenant, model_agent.extension

    def customer_leg(self, tenant: Tenant, number: str) -> tuple[str, list[str]] | None:
        """(endpoint, caller-id variables) that reach ``number`` from ``tenant``; None when
        no outbound route of the tenant takes it."""
        if self.customer_dial is not None:
            return self.customer_dial.format(number=number, domain=tenant.domain), []
        route = tenant.outbound_route(number)
        if route is None:
            return None
        ids = [f"hotline_outbound_route={route.name}"]
        if route.caller_id_number:
            ids.append(f"origination_caller_id_number={route.caller_id_number}")
        if route.caller_id_name:
            ids.append(f"origination_caller_id_name={route.caller_id_name}")
        return route.endpoint(number), ids

    def _dial(self, req: CallbackRequest, agent: str, now: int) -> dict[str, Any]:
        tenant, ext = self._agent_ext(agent)
        leg = self.customer_leg(tenant, req.number)
        if leg is None:  # before ringing anyone (so no agent on the result): no retry can help
            return self._final(req, "", req, "failed",
                               f"no outbound route of tenant {tenant.id} takes {req.number} "
                               "(outbound_routes in its YAML)")
        dial, caller_ids = leg
        conn = self.connect(req.node or self.default_node)
        timeout = self.ring_s + 10
        # the live state may be a moment old: an agent mod_callcenter has just offered a
        # queue call to is left alone (and the request goes back, uncounted)
        state = _first(conn.api(f"callcenter_config agent get state {agent}", 5))
        if state != "Waiting":
            self.store.save(replace(req, status="pending", next_ms=now))
            return {"call_id": req.call_id, "agent": agent, "outcome": "agent-busy",
                    "state": state}
        conn.api(f"callcenter_config agent set state {agent} Idle", 5)
        restore = f"callcenter_config agent set state {agent} Waiting"
        agent_vars = ",".join([
            f"hotline_callback_call_id={req.call_id}",
            f"hotline_callback_queue={req.queue}",
            f"origination_caller_id_number={req.number}",
            "origination_caller_id_name=Callback",
            f"originate_timeout={self.ring_s}",
            "hangup_after_bridge=true",
            f"api_hangup_hook='{restore}'",
        ])
        dial_agent = f"originate {{{agent_vars}}}user/{ext}@{tenant.domain} &park()"
        reply = _first(conn.api(dial_agent, timeout))
        if not reply.startswith("+OK"):
            conn.api(restore, 5)
            return self._agent_missed(req, agent, now, reply)
        agent_leg = reply[3:].strip()
        # the route's caller id (the tenant's public number) wins over the agent's extension
        variables = [f"hotline_callback_call_id={req.call_id}",
                     f"hotline_callback_queue={req.queue}"]
        if not any(v.startswith("origination_caller_id_number=") for v in caller_ids):
            variables.append(f"origination_caller_id_number={ext}")
        customer_vars = ",".join([*variables, *caller_ids, f"originate_timeout={self.ring_s}",
                                  "hangup_after_bridge=true"])
        reply = _first(conn.api(f"originate {{{customer_vars}}}{dial} &park()", timeout))
        if not reply.startswith("+OK"):
            conn.api(f"uuid_kill {agent_leg}", 5)
            return self._customer_failed(req, agent, now, reply, conn)
        customer_leg = reply[3:].strip()
        reply = _first(conn.api(f"uuid_bridge {agent_leg} {customer_leg}", 10))
        if not reply.startswith("+OK"):
            conn.api(f"uuid_kill {agent_leg}", 5)
            conn.api(f"uuid_kill {customer_leg}", 5)
            return self._customer_failed(req, agent, now, reply, conn)
        done = replace(req, status="connected", attempts=req.attempts + 1, agent=agent,
                       last_error="")
        self.store.save(done)
        self._result(conn, done, "connected", agent)
        return {"call_id": req.call_id, "agent": agent, "outcome": "connected",
                "attempt": done.attempts}

    def _agent_missed(self, req: CallbackRequest, agent: str, now: int, why: str) -> dict[str, Any]:
        misses = req.agent_misses + 1
        if misses >= self.max_agent_misses:
            return self._final(req, agent, replace(req, agent_misses=misses), "failed",
                               f"agents did not answer: {why}")
        self.store.save(replace(req, status="pending", agent_misses=misses,
                                next_ms=now + self.agent_retry_s * 1000, last_error=why))
        return {"call_id": req.call_id, "agent": agent, "outcome": "agent-no-answer",
                "retry_at_ms": now + self.agent_retry_s * 1000}

    def _customer_failed(self, req: CallbackRequest, agent: str, now: int, why: str,
                         conn: Any = None) -> dict[str, Any]:
        attempts = req.attempts + 1
        cause = why.replace("-ERR", "").strip()
        if attempts >= self.max_attempts:
            outcome = "no-answer" if cause in NO_ANSWER_CAUSES else "failed"
            return self._final(req, agent, replace(req, attempts=attempts), outcome, why, conn)
        retry = now + self.retry_base_s * 1000 * 2 ** (attempts - 1)
        self.store.save(replace(req, status="pending", attempts=attempts, next_ms=retry,
                                last_error=why))
        return {"call_id": req.call_id, "agent": agent, "outcome": "retry", "attempt": attempts,
                "error": why, "retry_at_ms": retry}

    def _final(self, req: CallbackRequest, agent: str, upd: CallbackRequest, outcome: str,
               why: str, conn: Any = None) -> dict[str, Any]:
        done = replace(upd, status=outcome, last_error=why, agent=agent)
        self.store.save(done)
        try:
            self._result(conn or self.connect(req.node or self.default_node), done, outcome, agent)
        except Exception:
            logger.exception("callback result event for %s not sent", req.call_id)
        return {"call_id": req.call_id, "agent": agent, "outcome": outcome,
                "attempt": done.attempts, "error": why}

    def _result(self, conn: Any, req: CallbackRequest, outcome: str, agent: str) -> None:
        from daemon.switch.control import fire_event

        headers = {"Hotline-Action": "result", "Hotline-Outcome": outcome,
                   "Hotline-Call-ID": req.call_id, "Hotline-Queue": req.queue,
                   "Hotline-Number": req.number, "Hotline-Agent": agent,
                   "Hotline-Joined-MS": str(req.joined_ms),
                   "Hotline-Attempts": str(req.attempts)}
        if not agent:  # nobody was rung (no route): no agent header rather than an empty one
            del headers["Hotline-Agent"]
        fire_event(conn, "hotline::callback", headers)
        logger.info("callback call=%s outcome=%s attempts=%d", req.call_id, outcome, req.attempts)

    def run(self, stop: Any, interval_s: float = 2.0) -> None:
        """The daemon's dialer greenlet: a round every ``interval_s`` until ``stop`` is set.

        ``stop`` is a gevent.event.Event; its ``wait(interval)`` is the sleep, so a stop is
        noticed at once. A failing round is logged and the next one goes on.
        """
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                logger.exception("callback dialer round failed")
            stop.wait(interval_s)
        self.close()

    def close(self) -> None:
        self.release()
        self.store.close()
