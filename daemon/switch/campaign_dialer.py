"""The campaign dialer: dials the contacts of running campaigns over ESL, one dialer per site.

A round (``tick``), only in the dialer holding the lock (``storage.locks.DatabaseLock``):

1. for every campaign an operator set ``running`` (``campaign_runs``) and the model knows,
   gather what :func:`daemon.switch.pacing.plan` needs: the window (``may_dial``), calls in
   flight (contacts in ``dialing``: the database, so every daemon sees the same), free
   agents (the live snapshot, less agents this dialer has reserved), the day's answered and
   abandoned calls;
2. claim that many contacts (``claim_batch``: no contact is claimed twice), write each
   attempt (``begin_attempt``) and commit, THEN send ``bgapi originate`` with the attempt's
   id as ``origination_uuid``;
3. results come from the switch: the originate job (``-ERR USER_BUSY``) and the channel
   events (answer, bridge, ``CHANNEL_HANGUP_COMPLETE`` with its Hangup-Cause) ->
   :func:`attempt_result` (pure) -> ``finish_attempt``.

What is dialed (``originate_command``): progressive -> the contact, and once it answers
the queue's entry ``hotline-queue-<id>`` (mod_callcenter hands it to the free agent; with a
fixed agent list, a bridge to the reserved agent's phone); preview -> the agent's phone
first with the contact's name as caller name, then the contact (the agent declining is a
skip, not an attempt); notice -> the contact, and the message prompts played in order.

The lock: PostgreSQL ``pg_try_advisory_lock`` on a connection held while leading (it is
released when that connection dies, so a crashed daemon's lock goes with it); SQLite (one
box) an ``flock`` on a file beside the database. Redis is not needed.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.engine import Engine

from daemon.definition.campaigns import Campaign, may_dial
from daemon.definition.model import CallCenter, Tenant
from daemon.definition.phone import dial_form, tenant_region
from daemon.definition.render import queue_dest
from daemon.storage import campaigns as cs
from daemon.storage.locks import DatabaseLock
from daemon.storage.schema import campaign_attempts, campaign_contacts
from daemon.switch.dialer import AVAILABLE, queue_agents
from daemon.switch.events import Event
from daemon.switch.pacing import CampaignLive, plan

logger = logging.getLogger(__name__)

LOCK_KEY = 0x686F746C  # "hotl": the advisory lock id every campaign dialer takes
BUSY_CAUSES = ("USER_BUSY",)
NO_ANSWER_CAUSES = ("NO_ANSWER", "NO_USER_RESPONSE", "ORIGINATOR_CANCEL", "ALLOTTED_TIMEOUT",
                    "RECOVERY_ON_TIMER_EXPIRE")
ABANDON_AFTER_MS = 2000  # answered contact with no agent within this: abandoned
# what the dialer's own link listens to: job results, its channels, the queue's bridge
SUBSCRIBE = ("BACKGROUND_JOB", "CHANNEL_ANSWER", "CHANNEL_BRIDGE", "CHANNEL_HANGUP_COMPLETE",
             "CUSTOM", "callcenter::info")


# ---- results (pure) --------------------------------------------------------------------
def cause_result(cause: str) -> str:
    """A hangup cause of an unanswered attempt -> busy | no_answer | failed."""
    cause = (cause or "").strip().upper()
    if cause in BUSY_CAUSES:
        return "busy"
    if cause in NO_ANSWER_CAUSES:
        return "no_answer"
    return "failed"


def attempt_result(campaign_type: str, *, answered_ms: int | None, bridged_ms: int | None,
                   cause: str, opted_out: bool = False) -> str:
    """What an ended attempt was: answered (notice heard), connected (an agent took it),
    abandoned (answered, no agent), optout, or the cause's busy/no_answer/failed."""
    if not answered_ms:
        return cause_result(cause)
    if opted_out:
        return "optout"
    if campaign_type == "notice":
        return "answered"
    return "connected" if bridged_ms else "abandoned"


def originate_command(tenant: Tenant, campaign: Campaign, contact: cs.Claimed, call_id: str,
                      owner: str, agent: str | None) -> str:
    """The ``originate`` arguments for one attempt (without ``bgapi``)."""
    number = dial_form(contact.number, tenant_region(tenant))
    common = [f"origination_uuid={call_id}", f"hotline_campaign={campaign.id}",
              f"hotline_contact={contact.id}", f"hotline_dialer={owner}",
              f"originate_timeout={campaign.ring_s}"]
    contact_leg = f"loopback/{number}/{tenant.domain}"
    name = _safe(contact.name) or number
    if campaign.type == "preview":
        ext = _extension(tenant, agent)
        agent_vars = common + [f"origination_caller_id_name={name}",
                               f"origination_caller_id_number={number}"]
        return (f"{{{','.join(agent_vars)}}}user/{ext}@{tenant.domain} "
                f"&bridge({{origination_caller_id_number={campaign.caller_id}}}{contact_leg})")
    leg_vars = common + [f"origination_caller_id_number={campaign.caller_id}",
                         "ignore_early_media=true"]
    if campaign.type == "notice":
        prompts = "!".join(_fill(p, contact) for p in campaign.message)
        if campaign.connect_key is None and campaign.optout_key is None:
            return f"{{{','.join(leg_vars)}}}{contact_leg} &playback(file_string://{prompts})"
        # the message once, one digit collected into hotline_notice_digit; then, by that
        # digit (nested variable expansion, evaluated when each app runs): the opt-out key
        # sets hotline_optout=true (the dialer reads it from the hangup event and puts the
        # number on the do-not-call list), the connect key transfers into the queue's entry,
        # any other digit or none ends the call (transfer to nothing)
        if campaign.optout_key is not None:
            leg_vars.append(f"hotline_notice_optout_{campaign.optout_key}=true")
        if campaign.connect_key is not None and campaign.queue is not None:
            leg_vars.append(f"hotline_notice_go_{campaign.connect_key}="
                            f"{queue_dest(campaign.queue)} XML {tenant.domain}")
        apps = [f"play_and_get_digits:1 1 1 5000 # file_string://{prompts} "
                f"silence_stream://250 hotline_notice_digit \\d",
                "set:hotline_optout=${hotline_notice_optout_${hotline_notice_digit}}",
                "transfer:${hotline_notice_go_${hotline_notice_digit}}"]
        return f"{{{','.join(leg_vars)}}}{contact_leg} '{','.join(apps)}' inline"
    if campaign.queue is not None:
        return (f"{{{','.join(leg_vars)}}}{contact_leg} "
                f"{queue_dest(campaign.queue)} XML {tenant.domain}")
    ext = _extension(tenant, agent)
    return f"{{{','.join(leg_vars)}}}{contact_leg} &bridge(user/{ext}@{tenant.domain})"


def _safe(value: str) -> str:
    # originate variables are comma-separated and brace-delimited: keep those out
    return "".join(ch for ch in value if ch not in "{},'\"\n\r ").strip()


def _fill(prompt: str, contact: cs.Claimed) -> str:
    out = prompt.replace("${number}", contact.number).replace("${name}", _safe(contact.name))
    for k, v in contact.fields.items():
        out = out.replace("${" + k + "}", _safe(v))
    return out


def _extension(tenant: Tenant, agent: str | None) -> str:
    local = (agent or "").partition("@")[0]
    a = tenant.agent(local)
    if a is None:
        raise ValueError(f"agent {agent} is not in tenant {tenant.id}")
    return a.extension


# ---- the dialer ------------------------------------------------------------------------
@dataclass
class _InFlight:
    attempt_id: str
    tenant: Tenant
    campaign: Campaign
    agent: str | None
    answered_ms: int | None = None
    bridged_ms: int | None = None


class CampaignDialer:
    """``conn`` is an ESL connection (``bgapi``, ``subscribe``) whose ``on_event`` calls
    :meth:`on_event`; ``snapshot()`` the live state (agents' status and state)."""

    def __init__(self, engine: Engine, center: CallCenter, conn: Any,
                 snapshot: Callable[[], Mapping[str, Any]], *, node: str = "",
                 owner: str | None = None, clock: Callable[[], float] = time.time,
                 spawn: Callable[..., Any] | None = None) -> None:
        self.engine = engine
        self.center = center
        self.conn = conn
        self.snapshot = snapshot
        self.node = node
        self.owner = owner or f"dialer-{uuid.uuid4().hex[:12]}"
        self.clock = clock
        self.lock = DatabaseLock(engine, LOCK_KEY, "dialer")
        self.tiers = queue_agents(center)
        self.in_flight: dict[str, _InFlight] = {}  # call id -> attempt
        self._recovered = False
        if spawn is None:
            import gevent

            spawn = gevent.spawn
        self.spawn = spawn

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- inputs of the plan
    def _free_agents(self, tenant: Tenant, campaign: Campaign,
                     snap: Mapping[str, Any]) -> tuple[str, ...]:
        agents = snap.get("agents", {})
        if campaign.queue is not None:
            names = [n for *_, n in self.tiers.get(tenant.qualified(campaign.queue), [])]
        else:
            names = [tenant.qualified(a) for a in campaign.agents]
        reserved = {f.agent for f in self.in_flight.values() if f.agent}
        free = []
        for name in names:
            a = agents.get(name) or {}
            if a.get("status") in AVAILABLE and a.get("state") == "Waiting" \
                    and name not in reserved:
                free.append((int(a.get("since_ms") or 0), name))
        return tuple(n for _, n in sorted(free))

    def _live(self, tenant: Tenant, campaign: Campaign, running: bool, now: int,
              snap: Mapping[str, Any]) -> CampaignLive:
        when = dt.datetime.fromtimestamp(now / 1000, dt.timezone.utc)
        window = may_dial(tenant, campaign, when).open
        c, a = campaign_contacts.c, campaign_attempts.c
        import zoneinfo

        local = when.astimezone(zoneinfo.ZoneInfo(tenant.timezone))
        day_start = int(local.replace(hour=0, minute=0, second=0, microsecond=0)
                        .timestamp() * 1000)
        with self.engine.connect() as conn:
            flying = conn.execute(select(func.count()).where(
                c.tenant == tenant.id, c.campaign == campaign.id,
                c.status == "dialing")).scalar() or 0
            late = or_(a.bridged_ms.is_(None), a.bridged_ms - a.answered_ms > ABANDON_AFTER_MS)
            answered, abandoned = conn.execute(select(
                func.count(a.answered_ms),
                func.sum(case((and_(a.answered_ms.is_not(None), late), 1), else_=0)))
                .where(a.tenant == tenant.id, a.campaign == campaign.id,
                       a.started_ms >= day_start, a.result.is_not(None))).one()
        return CampaignLive(tenant.id, campaign, running, window, flying,
                            self._free_agents(tenant, campaign, snap) if campaign.type != "notice"
                            else (), int(answered or 0), int(abandoned or 0))

    def _route_in_use(self, lives: Sequence[CampaignLive]) -> dict[str, int]:
        out: dict[str, int] = {}
        for lv in lives:
            if lv.campaign.route:
                out[lv.campaign.route] = out.get(lv.campaign.route, 0) + lv.in_flight
        return out

    # -- the round
    def tick(self) -> list[dict[str, Any]]:
        """One round; returns what was dialed (and why not)."""
        if not self.lock.acquire():
            return []
        now = self.now_ms()
        if not self._recovered:
            self._recover(now)
        with self.engine.connect() as conn:
            running = set(cs.running_campaigns(conn))
        snap = self.snapshot()
        lives = []
        for t in self.center.tenants:
            for camp in t.campaigns:
                if (t.id, camp.id) in running:
                    lives.append(self._live(t, camp, True, now, snap))
        decisions = plan(lives, self._route_in_use(lives))
        out: list[dict[str, Any]] = []
        for d in decisions:
            tenant = self.center.tenant(d.tenant)
            campaign = tenant.campaign(d.campaign) if tenant else None
            if tenant is None or campaign is None or d.dial <= 0:
                out.append({"campaign": d.campaign, "dialed": 0, "reason": d.reason})
                continue
            with self.engine.begin() as conn:
                claimed = cs.claim_batch(conn, tenant.id, campaign.id, d.dial, self.owner, now)
                started = []
                for i, contact in enumerate(claimed):
                    agent = d.agents[i] if i < len(d.agents) else None
                    call_id = str(uuid.uuid4())
                    aid = cs.begin_attempt(conn, contact, call_id, self.node, now, agent)
                    started.append((contact, call_id, aid, agent))
            # committed: the attempts exist before anything is dialed
            for contact, call_id, aid, agent in started:
                self.in_flight[call_id] = _InFlight(aid, tenant, campaign, agent)
                cmd = originate_command(tenant, campaign, contact, call_id, self.owner, agent)
                self.spawn(self._originate, call_id, cmd, campaign.ring_s + 15)
            out.append({"campaign": d.campaign, "dialed": len(started), "reason": d.reason})
        return out

    def _recover(self, now: int) -> None:
        """Claims left by a dialer that died: see ``storage.campaigns.recover``."""
        live_calls: frozenset[str] = frozenset()
        try:
            raw = self.conn.api("show channels as json", 5) if hasattr(self.conn, "api") else ""
            import json

            rows = (json.loads(raw).get("rows") or []) if raw.strip().startswith("{") else []
            live_calls = frozenset(r.get("uuid", "") for r in rows)
        except Exception:
            logger.warning("could not list the switch's channels; treating none as live")
        for t in self.center.tenants:
            for camp in t.campaigns:
                # this dialer holds the only lock and has claimed nothing yet: every
                # claim in the database is a dead dialer's
                got, live = cs.recover(self.engine, t, camp, now + 1, now,
                                       live_calls - set(self.in_flight))
                for s in live:  # still up on the switch: follow them to their hangup
                    self.in_flight[s.call_id or ""] = _InFlight(s.attempt_id or "", t, camp,
                                                                s.agent)
                if any(got.values()):
                    logger.info("campaign %s/%s recovered %s", t.id, camp.id, got)
        self._recovered = True

    def _originate(self, call_id: str, cmd: str, timeout_s: float) -> None:
        try:
            result = self.conn.bgapi(f"originate {cmd}", timeout_s)
        except Exception as exc:
            # the link (or the job's answer) is lost, not necessarily the call: the result
            # is unknown. The attempt stays; the next round recovers it from the switch's
            # channels (still up -> followed, gone -> "lost")
            logger.warning("originate %s: no job result (%s); recovering next round", call_id,
                           exc)
            self.in_flight.pop(call_id, None)
            self._recovered = False
            return
        result = (result or "").strip()
        if result.startswith("-ERR"):
            # no channel, or one that never answered: the cause is the job's
            self._finish(call_id, None, None, result[4:].strip(), False)

    # -- results
    def on_event(self, event: Event) -> None:
        """Channel events of our calls (``Unique-ID`` = the attempt's call id), and
        mod_callcenter's ``bridge-agent-start`` for them: the agent who really took the call
        (a queue picks its own agent; the one reserved only held a place)."""
        if event.name == "CUSTOM":
            if event.subclass == "callcenter::info" \
                    and event.get("CC-Action") == "bridge-agent-start":
                f = self.in_flight.get(event.get("CC-Member-Session-UUID") or "")
                if f is not None:
                    f.agent = event.get("CC-Agent") or f.agent
                    f.bridged_ms = f.bridged_ms or event.timestamp_ms or self.now_ms()
            return
        call_id = event.get("Unique-ID") or ""
        f = self.in_flight.get(call_id)
        if f is None:
            return
        ts = (event.timestamp_ms or self.now_ms())
        if event.name == "CHANNEL_ANSWER":
            f.answered_ms = f.answered_ms or ts
        elif event.name == "CHANNEL_BRIDGE":
            f.bridged_ms = f.bridged_ms or ts
        elif event.name == "CHANNEL_HANGUP_COMPLETE":
            answered = _usec_ms(event.get("Caller-Channel-Answered-Time")) or f.answered_ms
            bridged = _usec_ms(event.get("Caller-Channel-Bridged-Time")) or f.bridged_ms
            if f.campaign.type == "preview":
                # the first leg is the agent's: the contact's answer is the bridge
                answered, bridged = (bridged, bridged) if bridged else (None, None)
            self._finish(call_id, answered, bridged, event.get("Hangup-Cause") or "",
                         event.get("variable_hotline_optout") == "true")

    def _finish(self, call_id: str, answered_ms: int | None, bridged_ms: int | None,
                cause: str, opted_out: bool) -> None:
        f = self.in_flight.pop(call_id, None)
        if f is None:
            return  # already finished (job and hangup both report a failure)
        result = attempt_result(f.campaign.type, answered_ms=answered_ms,
                                bridged_ms=bridged_ms, cause=cause, opted_out=opted_out)
        if f.campaign.type == "preview" and not answered_ms and cause in (
                "CALL_REJECTED", "USER_BUSY", "NO_ANSWER"):
            result = "failed"  # the agent declined or missed it: counted like a failure
        try:
            cs.finish_attempt(self.engine, f.tenant, f.campaign, f.attempt_id, result,
                              at_ms=self.now_ms(), cause=cause or None, answered_ms=answered_ms,
                              bridged_ms=bridged_ms, agent=f.agent)
        except Exception:
            logger.exception("recording the result of attempt %s failed", f.attempt_id)
        logger.info("campaign %s attempt %s: %s (%s)", f.campaign.id, f.attempt_id, result,
                    cause)

    def run(self, stop: Any, interval_s: float = 1.0) -> None:
        """The daemon's greenlet: a round every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                logger.exception("campaign dialer round failed")
            stop.wait(interval_s)
        self.lock.release()


def _usec_ms(value: str | None) -> int | None:
    try:
        v = int(value or 0)
    except ValueError:
        return None
    return v // 1000 if v > 0 else None


# ---- in the daemon -----------------------------------------------------------------------
class CampaignRunner:
    """The daemon's campaign dialer: its own event connection to the first switch (the
    originates' results come on it), reconnected when lost, a round every ``interval_s``."""

    def __init__(self, settings: Any, center: CallCenter, snapshot: Callable[[], Any], *,
                 interval_s: float = 1.0, retry_s: float = 2.0) -> None:
        from daemon.storage.store import make_engine

        self.settings = settings
        self.center = center
        self.snapshot = snapshot
        self.interval_s = interval_s
        self.retry_s = retry_s
        self.engine = make_engine(settings.database_url)
        self.node = settings.esl_nodes[0]
        self.dialer: CampaignDialer | None = None
        self._stop: Any = None
        self._greenlet: Any = None

    def start(self) -> None:
        import gevent
        import gevent.event

        self._stop = gevent.event.Event()
        self._greenlet = gevent.spawn(self._run)

    def _connect(self) -> Any:
        from daemon.switch.esl import EslConnection

        holder: dict[str, CampaignDialer] = {}
        conn = EslConnection(self.node.host, self.node.port, self.node.password, 5.0,
                             on_event=lambda e: holder["d"].on_event(e) if "d" in holder else None)
        conn.connect()
        conn.subscribe(SUBSCRIBE)
        if self.dialer is None:
            self.dialer = CampaignDialer(self.engine, self.center, conn, self.snapshot,
                                         node=self.node.name)
        else:  # a new link: calls in flight are recovered from the switch's channels
            self.dialer.conn = conn
            self.dialer.in_flight.clear()
            self.dialer._recovered = False
        holder["d"] = self.dialer
        return conn

    def _any_running(self) -> bool:
        try:
            with self.engine.connect() as conn:
                return bool(cs.running_campaigns(conn))
        except Exception:  # tables not made yet (the store migrates at start), database down
            logger.debug("campaign states unreadable", exc_info=True)
            return False

    def _run(self) -> None:
        while not self._stop.is_set():
            # no link and no lock while no campaign runs: an idle site sees no dialer at all
            if not self._any_running():
                if self.dialer is not None:
                    self.dialer.lock.release()
                self._stop.wait(self.retry_s)
                continue
            conn = None
            try:
                conn = self._connect()
                while not self._stop.is_set() and conn.connected and self._any_running():
                    try:
                        self.dialer.tick()  # type: ignore[union-attr]
                    except Exception:
                        logger.exception("campaign dialer round failed")
                    self._stop.wait(self.interval_s)
            except Exception as exc:
                logger.warning("campaign dialer: no link to %s (%s); retrying", self.node.name,
                               exc)
            finally:
                if conn is not None:
                    conn.close()
            self._stop.wait(self.retry_s)
        if self.dialer is not None:
            self.dialer.lock.release()

    def close(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._greenlet is not None:
            self._greenlet.join(5)
        self.engine.dispose()


def build_campaign_runner(settings: Any, center: CallCenter | None,
                          snapshot: Callable[[], Any]) -> CampaignRunner | None:
    """The daemon's campaign dialer, or None when no tenant has a campaign."""
    if center is None or not any(t.campaigns for t in center.tenants):
        return None
    if not getattr(settings, "esl_nodes", ()):
        logger.warning("campaign dialer off: no switch in the settings")
        return None
    return CampaignRunner(settings, center, snapshot)
