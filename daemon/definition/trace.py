"""``hotline trace``: walk the model the way a call would, and say why at every step.

``trace_call(center, number, at, caller=..., digits=...)`` returns a ``Trace``: the tenant
and local time, then typed steps — which rule of the number matched and why (schedule
open/closed with the holiday or exception that decided, caller pattern), which menu, which
digits went to which option (invalid entries and silence count towards the menu's
max_failures / max_timeouts, after which its ``on_failure`` runs), which queue with which
agents on which tier and whether they are rostered and on shift at that moment, and where
the call ends. Human output (``Trace.lines()``) and ``--json`` (``Trace.to_dict()``) come
from the same steps.

It follows the rendered dialplan's semantics (daemon/render.py, daemon/schedule.py): rules
in order, first match wins; a number with no matching rule is rejected.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon.definition.model import Action, ActionKind, CallCenter, IvrMenu, Queue, Tenant
from daemon.definition.moments import MomentError, parse_moment
from daemon.definition.render import describe_action
from daemon.definition.schedule import agent_availability, schedule_state
from daemon.definition.tiers import effective_tiers

logger = logging.getLogger(__name__)

MAX_STEPS = 200  # a menu that loops to itself with digits left would otherwise never end


class TraceError(ValueError):
    """The trace cannot start (unknown number, ambiguous tenant, bad time): one sentence."""


@dataclass(frozen=True)
class TraceStep:
    """One thing that happens to the call. ``kind`` is stable for scripts (see to_dict)."""

    kind: str  # number, rule, rule-skip, ivr, digits, invalid, timeout, menu-exit, queue,
    #            tier, fallback, callback-offer, transfer, end
    text: str
    data: Mapping[str, Any] = field(default_factory=dict)
    depth: int = 0  # indentation: steps that happen only "if nobody answers" are nested

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "depth": self.depth, **dict(self.data)}


@dataclass(frozen=True)
class Trace:
    number: str
    tenant: str
    domain: str
    timezone: str
    at: dt.datetime  # aware, in the tenant's time zone
    caller: str | None
    digits: tuple[str, ...]
    steps: tuple[TraceStep, ...]
    end: str  # where the call ends (the last "end" step's text)
    unused_digits: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "tenant": self.tenant,
            "domain": self.domain,
            "timezone": self.timezone,
            "at": self.at.isoformat(),
            "caller": self.caller,
            "digits": list(self.digits),
            "unused_digits": list(self.unused_digits),
            "steps": [s.to_dict() for s in self.steps],
            "end": self.end,
        }

    def lines(self) -> list[str]:
        head = (f"{self.number} (tenant {self.tenant}, {self.domain}) at "
                f"{self.at.strftime('%a %Y-%m-%d %H:%M')} {self.timezone}"
                + (f", caller {self.caller}" if self.caller else ""))
        out = [head]
        n = 0
        for s in self.steps:
            if s.kind == "tier":
                out.append("      " + "  " * s.depth + s.text)
                continue
            n += 1
            out.append(f"{n:>3}. " + "  " * s.depth + s.text)
        if self.unused_digits:
            out.append(f"     (digits not used: {','.join(self.unused_digits)})")
        out.append(f"  => {self.end}")
        return out


def parse_at(value: str | dt.datetime | None, tz: zoneinfo.ZoneInfo,
             *, utc: bool = False) -> dt.datetime:
    """A moment in the tenant's zone: naive times are read as the tenant's wall clock
    (as UTC with ``utc``); the words are those of ``daemon.definition.moments``."""
    if value is None:
        return dt.datetime.now(tz)
    if isinstance(value, str):
        try:
            value = parse_moment(value, "UTC" if utc else tz.key, option="--at")
        except MomentError as exc:
            raise TraceError(str(exc)) from None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc if utc else tz).astimezone(tz)
    return value.astimezone(tz)


def _find_entry(center: CallCenter, number: str,
                tenant_id: str | None) -> tuple[Tenant, str]:
    tenants = center.tenants
    if tenant_id is not None:
        t = center.tenant(tenant_id)
        if t is None:
            known = ", ".join(x.id for x in tenants)
            raise TraceError(f"there is no tenant '{tenant_id}' (tenants: {known})")
        tenants = (t,)
    dids = [(t, "number") for t in tenants if any(n.did == number for n in t.numbers)]
    if dids:
        return dids[0]
    internal = [(t, kind) for t in tenants for kind, values in (
        ("agent", [a.extension for a in t.agents]),
        ("conference", [c.room for c in t.conferences]),
        ("queue", [q.extension for q in t.queues if q.extension]),
    ) if number in values]
    if len(internal) == 1:
        return internal[0]
    if len(internal) > 1:
        names = ", ".join(sorted({t.id for t, _ in internal}))
        raise TraceError(f"{number} is an extension in several tenants ({names}); "
                         f"pick one with --tenant")
    known = sorted(n.did for t in tenants for n in t.numbers)
    raise TraceError(f"{number} is not a number of any tenant"
                     + (f" (numbers: {', '.join(known)})" if known else ""))


class _Walker:
    def __init__(self, tenant: Tenant, at: dt.datetime, caller: str | None,
                 digits: Sequence[str]) -> None:
        self.t = tenant
        self.at = at
        self.caller = caller
        self.digits = list(digits)
        self.steps: list[TraceStep] = []
        self.end = "the call ends"

    def add(self, kind: str, text: str, depth: int = 0, **data: Any) -> None:
        if len(self.steps) >= MAX_STEPS:
            return
        self.steps.append(TraceStep(kind, text, data, depth))

    def finish(self, text: str, depth: int = 0, **data: Any) -> None:
        self.add("end", text, depth, **data)
        if depth == 0:
            self.end = text

    # ---- numbers ---------------------------------------------------------------------------
    def number(self, did: str) -> None:
        num = next(n for n in self.t.numbers if n.did == did)
        self.add("number", f"number {did} ({num.name}) of tenant {self.t.id}",
                 did=did, name=num.name)
        schedules = {s.name: s for s in self.t.schedules}
        for i, rule in enumerate(num.rules, 1):
            ok, why = True, []
            if rule.schedule is not None:
                sched = schedules.get(rule.schedule)
                want = rule.when or "open"
                if sched is None:
                    ok, state = False, None
                    why.append(f"schedule {rule.schedule} is not defined")
                else:
                    state = schedule_state(sched, self.at)
                    is_open = "open" if state.open else "closed"
                    why.append(f"schedule {rule.schedule} is {is_open}: {state.reason}")
                    ok = ok and is_open == want
                    if is_open != want:
                        why[-1] += f" (rule wants {want})"
            if rule.callers:
                hit = None
                if self.caller is not None:
                    hit = next((p for p in rule.callers if re.search(p, self.caller)), None)
                if hit is not None:
                    why.append(f"caller {self.caller} matches {hit}")
                else:
                    ok = False
                    if self.caller is None:
                        why.append(f"no caller number given (--caller) for "
                                   f"{', '.join(rule.callers)}")
                    else:
                        why.append(f"caller {self.caller} does not match "
                                   f"{', '.join(rule.callers)}")
            reason = "; ".join(why) or "no conditions"
            data = {"rule": rule.name, "index": i, "reason": reason}
            if not ok:
                self.add("rule-skip", f"rule {i} '{rule.name}' does not match: {reason}", **data)
                continue
            self.add("rule", f"rule {i} '{rule.name}' matches ({reason}) -> "
                             f"{describe_action(self.t, rule.action)}", **data)
            self.action(rule.action, 0, set())
            return
        self.finish("no rule matched: the call is rejected (CALL_REJECTED)", cause="CALL_REJECTED")

    # ---- actions ---------------------------------------------------------------------------
    def action(self, action: Action | None, depth: int, seen: set[str]) -> None:
        if len(self.steps) >= MAX_STEPS:
            self.finish("trace stopped: too many steps (a loop?)", depth)
            return
        if action is None:
            self.finish("hang up", depth, action="hangup")
            return
        if action.prompt and action.kind != ActionKind.PLAYBACK:
            self.add("play", f"plays {action.prompt}", depth, sound=action.prompt)
        k, target = action.kind, action.target or ""
        if k == ActionKind.IVR:
            menu = next((m for m in self.t.ivr_menus if m.name == target), None)
            if menu is None:
                self.finish(f"IVR menu {target} is not defined", depth)
            else:
                self.ivr(menu, depth, seen)
        elif k == ActionKind.QUEUE:
            queue = self.t.queue(target)
            if queue is None:
                self.finish(f"queue {target} is not defined", depth)
            else:
                self.queue(queue, depth, seen)
        elif k == ActionKind.AGENT:
            agent = self.t.agent(target)
            if agent is None:
                self.finish(f"agent {target} is not defined", depth)
            else:
                av = agent_availability(agent, self.at)
                self.finish(f"rings agent {agent.id} ({agent.name}) at desk phone "
                            f"{agent.extension} ({av.reason})", depth, action="agent",
                            agent=agent.id, extension=agent.extension)
        elif k == ActionKind.EXTENSION:
            self.extension(target, depth, seen)
        elif k == ActionKind.CONFERENCE:
            self.conference(target, depth)
        elif k == ActionKind.VOICEMAIL:
            self.finish(f"voicemail box {target}: the caller leaves a message", depth,
                        action="voicemail", box=target)
        elif k == ActionKind.PLAYBACK:
            self.finish(f"plays {action.prompt} and hangs up", depth, action="playback",
                        sound=action.prompt)
        elif k == ActionKind.TRANSFER:
            self.finish(f"transferred to external number {target}", depth, action="transfer",
                        to=target)
        elif k == ActionKind.CALLBACK:
            self.finish(f"takes a callback request for queue {target} (hotline_callback)",
                        depth, action="callback", queue=self.t.qualified(target))
        elif k == ActionKind.SURVEY:
            self.finish("satisfaction survey (hotline_survey), then hangs up", depth,
                        action="survey")
        elif k == ActionKind.HANGUP:
            cause = target or "NORMAL_CLEARING"
            self.finish(f"hangs up ({cause})", depth, action="hangup", cause=cause)
        else:
            self.finish(f"{k.value}: not a call destination", depth)

    def extension(self, number: str, depth: int, seen: set[str]) -> None:
        agent = next((a for a in self.t.agents if a.extension == number), None)
        if agent is not None:
            self.action(Action(ActionKind.AGENT, agent.id), depth, seen)
        elif any(c.room == number for c in self.t.conferences):
            self.conference(number, depth)
        elif any(n.did == number for n in self.t.numbers):
            self.add("transfer", f"transferred to number {number}", depth)
            self.number(number)
        else:
            self.finish(f"transferred to extension {number} of context {self.t.domain}",
                        depth, action="extension", extension=number)

    def conference(self, room: str, depth: int) -> None:
        conf = next((c for c in self.t.conferences if c.room == room), None)
        if conf is None:
            self.finish(f"conference room {room} is not defined", depth)
            return
        extra = []
        if conf.pin:
            extra.append("asks for the PIN")
        if conf.max_members:
            extra.append(f"max {conf.max_members} members")
        if conf.record:
            extra.append("recorded")
        self.finish(f"joins conference room {room} ({conf.name})"
                    + (f": {', '.join(extra)}" if extra else ""), depth,
                    action="conference", room=room)

    # ---- IVR -------------------------------------------------------------------------------
    def ivr(self, menu: IvrMenu, depth: int, seen: set[str]) -> None:
        # the same menu again with no new digits would play forever: say so and stop
        key = f"ivr:{menu.name}:{len(self.digits)}"
        if key in seen:
            self.finish(f"back to IVR menu {menu.name} with no new digits: the caller hears it "
                        f"again until hanging up (a loop)", depth, action="ivr", menu=menu.name)
            return
        seen = seen | {key}
        self.add("ivr", f"IVR menu {menu.name}: plays {menu.greet_long}", depth, menu=menu.name)
        options = {o.digits: o for o in menu.options}
        exts = {a.extension: a for a in self.t.agents} if menu.direct_extension_dialing else {}
        failures = timeouts = 0
        while True:
            if not self.digits:
                timeouts += 1
                if timeouts >= menu.max_timeouts:
                    self.add("timeout", f"no digits: {menu.timeout_ms / 1000:g} s timeout "
                                        f"x{menu.max_timeouts} (max_timeouts) -> the menu "
                                        f"gives up", depth, menu=menu.name,
                             timeouts=menu.max_timeouts)
                    break
                continue
            entry = self.digits.pop(0)
            opt = options.get(entry)
            if opt is not None:
                self.add("digits", f"caller presses {entry} -> "
                                   f"{describe_action(self.t, opt.action)}", depth,
                         menu=menu.name, digits=entry)
                self.action(opt.action, depth, seen)
                return
            if entry in exts:
                agent = exts[entry]
                self.add("digits", f"caller dials extension {entry} (direct dialing)", depth,
                         menu=menu.name, digits=entry)
                self.action(Action(ActionKind.AGENT, agent.id), depth, seen)
                return
            failures += 1
            self.add("invalid", f"caller presses {entry}: not an option of {menu.name} "
                                f"(invalid {failures}/{menu.max_failures}), plays "
                                f"{menu.invalid_sound}", depth, menu=menu.name, digits=entry,
                     failures=failures)
            if failures >= menu.max_failures:
                self.add("menu-exit", "max_failures reached -> the menu gives up", depth,
                         menu=menu.name)
                break
        self.add("menu-exit", f"menu {menu.name} plays {menu.exit_sound}; on_failure: "
                              f"{describe_action(self.t, menu.on_failure)}", depth,
                 menu=menu.name)
        if menu.on_failure is None:
            self.finish("hangs up after the menu (no on_failure)", depth, action="hangup")
        else:
            self.action(menu.on_failure, depth, seen)

    # ---- queues ----------------------------------------------------------------------------
    def queue(self, q: Queue, depth: int, seen: set[str]) -> None:
        qn = self.t.qualified(q.id)
        if q.id in seen:
            self.finish(f"back to queue {qn} (already visited: the fallback loops)", depth,
                        action="queue", queue=qn)
            return
        seen = seen | {q.id}
        tiers = effective_tiers(self.t, q)
        source = "explicit tiers" if q.tiers else (
            "tiers from skills " + ", ".join(f"{r.skill}>={r.min_level}" for r in q.skills))
        wait = f"max wait {q.max_wait_s} s" if q.max_wait_s else "no max wait"
        self.add("queue", f"queue {qn} ({q.name}): {q.strategy}, {wait}, {source}", depth,
                 queue=qn, strategy=q.strategy, max_wait_s=q.max_wait_s)
        levels = sorted({t.level for t in tiers})
        on_shift = 0
        agents = {a.id: a for a in self.t.agents}
        for tier in tiers:
            agent = agents.get(tier.agent)
            if agent is None:
                continue
            av = agent_availability(agent, self.at)
            if av.rostered and av.on_shift is not False:
                on_shift += 1
            after = offered_after_s(q, tier.level, levels)
            offered = "offered at once" if after == 0 else f"offered after {after} s (tier rules)"
            if after and q.tier_rule_no_agent_no_wait:
                offered += ", at once when no agent of a lower level is logged in"
            self.add("tier", f"level {tier.level} pos {tier.position}: agent {agent.id} "
                             f"({agent.name}) - {av.reason}; {offered}", depth,
                     agent=self.t.qualified(agent.id), level=tier.level,
                     position=tier.position, rostered=av.rostered, on_shift=av.on_shift,
                     offered_after_s=after)
        first_wait = offered_after_s(q, levels[0], levels) if tiers else 0
        if first_wait:
            self.add("queue-warning", f"tier rules hold back the first level too: nobody is "
                                      f"offered a caller before {first_wait} s (set "
                                      f"tier_rule_no_agent_no_wait: true to offer the first "
                                      f"level at once)", depth, queue=qn)
        if not tiers:
            self.add("queue-warning", "the queue has no agents at all", depth, queue=qn)
        elif on_shift == 0:
            self.add("queue-warning", "no agent of this queue is rostered and on shift now: "
                                      "the caller waits for the timeout", depth, queue=qn)
        extras = []
        if q.announce_agent_id:
            extras.append("the agent's id is announced")
        if q.survey:
            extras.append("survey after the agent hangs up")
        if extras:
            self.add("queue-info", "when answered: " + ", ".join(extras), depth, queue=qn)
        if q.callback.enabled:
            self.add("callback-offer", f"after {q.callback.after_s} s the caller may press "
                                       f"{q.callback.exit_key} for a callback", depth,
                     queue=qn, after_s=q.callback.after_s, exit_key=q.callback.exit_key)
        self.finish(f"waits in queue {qn} for an agent", depth, action="queue", queue=qn)
        if q.max_wait_s or q.max_wait_no_agent_s or q.on_timeout is not None:
            when = []
            if q.max_wait_s:
                when.append(f"after {q.max_wait_s} s")
            if q.max_wait_no_agent_s:
                when.append(f"after {q.max_wait_no_agent_s} s with no agent logged in")
            cond = " or ".join(when) or "when the queue gives the caller back"
            self.add("fallback", f"if nobody answers ({cond}): "
                                 f"{describe_action(self.t, q.on_timeout)}", depth, queue=qn)
            self.action(q.on_timeout, depth + 1, seen)


def offered_after_s(q: Queue, level: int, levels: Sequence[int]) -> int:
    """Seconds a caller waits before agents of ``level`` are offered the call.

    mod_callcenter (agents_callback, 1.10) starts every member at tier 0, so with
    tier-rules-apply even the lowest level is held back unless tier-rule-no-agent-no-wait
    (which lets a level through at once when no agent of the levels before it is logged in;
    for the lowest level there are none). Each higher level needs level x wait with
    tier-rule-wait-multiply-level, else the plain wait.
    """
    if not q.tier_rules_apply:
        return 0
    if q.tier_rule_no_agent_no_wait and levels and level == levels[0]:
        return 0
    return q.tier_rule_wait_second * level if q.tier_rule_wait_multiply_level \
        else q.tier_rule_wait_second


def trace_call(center: CallCenter, number: str, at: str | dt.datetime | None = None, *,
               caller: str | None = None, digits: Sequence[str] = (),
               tenant: str | None = None, utc: bool = False) -> Trace:
    """Walk ``number`` at ``at`` (tenant wall clock when naive, UTC with ``utc``); see the
    module doc."""
    t, kind = _find_entry(center, number, tenant)
    try:
        tz = zoneinfo.ZoneInfo(t.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise TraceError(f"tenant {t.id} has an unknown time zone {t.timezone!r}") from None
    when = parse_at(at, tz, utc=utc)
    digits = tuple(d.strip() for d in digits if d.strip())
    w = _Walker(t, when, caller, digits)
    if kind == "number":
        w.number(number)
    elif kind == "agent":
        w.extension(number, 0, set())
    elif kind == "queue":
        queue = next(q for q in t.queues if q.extension == number)
        w.queue(queue, 0, set())
    else:
        w.conference(number, 0)
    return Trace(number=number, tenant=t.id, domain=t.domain, timezone=t.timezone, at=when,
                 caller=caller, digits=digits, steps=tuple(w.steps), end=w.end,
                 unused_digits=tuple(w.digits))
