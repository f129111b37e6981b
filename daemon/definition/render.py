"""Render the model to FreeSWITCH 1.10 XML (and the desk-phone scripts with their data file).

``render(center, out_dir)`` writes a tree that mirrors FreeSWITCH's conf directory::

    dialplan/<domain>.xml               one context per tenant (named by its domain)
    dialplan/public/<domain>.xml        DIDs arriving in the stock "public" context -> tenant
    ivr_menus/<domain>.xml              the tenant's menus (ivr.conf includes ../ivr_menus/*.xml)
    directory/<domain>.xml              one user per agent desk phone
    autoload_configs/callcenter.conf.xml  queues, agents, tiers of every tenant
    autoload_configs/conference.conf.xml  conference profiles
    conference_profiles/hotline.xml     the same profiles, to include into a stock conference.conf
    autoload_configs/ivr.conf.xml       the include of ivr_menus/
    scripts/hotline_data.json           PINs, break reasons, dispositions for fs_scripts
    scripts/hotline_*.py, scripts/hotline_fs/  the fs_scripts themselves, copied unchanged

``scripts/`` is the one folder the FreeSWITCH host needs from Hotline: it goes into the
switch's ``$${script_dir}``, and the scripts read the data file next to themselves.

All decisions are made here, in Python, into plain view dicts; the Jinja2 templates in
``dialplan_templates/`` only loop and print (StrictUndefined, XML autoescape; the three
big templates print views pre-escaped by ``xml_text``, see there). Output is
deterministic: the same model gives byte-identical files. Each file is written atomically
(temporary file + rename), so FreeSWITCH never reads half a file on ``reloadxml``.

Call flow conventions (docs/RENDER.md has the full picture):

* Every queue has the entry destination ``hotline-queue-<id>`` and an exit dispatcher
  ``hotline-qexit-<id>`` reached when ``callcenter`` gives the caller back (answered and
  survey on / exit key = callback / timeout or no agent = the queue's ``on_timeout``).
* Every menu has the entry ``hotline-ivr-<name>``; menu options transfer to destinations
  (queue/menu/agent extension/room, or ``hotline-action-<kind>-<hash>`` for the others).
* Schedules become channel variables ``hotline_sched_<name>`` = open|closed, set inline
  while the dialplan hunts (see daemon/schedule.py), which the rule extensions test.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from daemon.bundle import bundled
from daemon.definition.gcpause import paused_gc
from daemon.definition.model import (
    Action,
    ActionKind,
    CallCenter,
    Conference,
    IvrMenu,
    Queue,
    Rule,
    Tenant,
)
from daemon.definition.schedule import time_conditions
from daemon.definition.tiers import effective_tiers

logger = logging.getLogger(__name__)

TEMPLATE_DIR = bundled("dialplan_templates")

# Action/dialplan view types: (application, data | None, inline)
Step = tuple[str, "str | None", bool]


def _comment(text: object) -> Markup:
    """Text safe inside <!-- -->: no '--', and markup escaped (a name must never be able to
    smuggle an <X-PRE-PROCESS> line into FreeSWITCH's preprocessor)."""
    s = (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
         .replace("--", "- -").replace("\n", " "))
    if s.endswith("-"):
        s += " "
    return Markup(s)


@functools.lru_cache(maxsize=1 << 16)
def xml_text(value: str) -> str:
    """``value`` escaped for XML text and attributes (& < > " ').

    The three big templates (dialplan, directory, callcenter.conf: tens of thousands of
    rows for a large center) print views that were escaped here, once per distinct
    string, inside ``{% autoescape false %}``; Jinja's per-value autoescape made rendering
    about 15x slower. Every other template keeps the environment's autoescape.
    """
    return str(escape(value))


_ENV: jinja2.Environment | None = None


def environment() -> jinja2.Environment:
    """The shared Jinja2 environment (StrictUndefined, XML autoescape, trailing newline)."""
    global _ENV
    if _ENV is None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
            undefined=jinja2.StrictUndefined,
            autoescape=True,  # every template here produces XML
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["comment"] = _comment
        _ENV = env
    return _ENV


# ---- names --------------------------------------------------------------------------------
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


def slug(text: str) -> str:
    """A name fragment safe in extension names, variable names and destinations."""
    return _SLUG.sub("_", text).strip("_") or "x"


def var_slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def menu_name(tenant: Tenant, menu: str) -> str:
    """ivr.conf menu names are global to the switch, so they carry the domain."""
    return f"{menu}@{tenant.domain}"


def queue_dest(queue_id: str) -> str:
    return f"hotline-queue-{slug(queue_id)}"


def queue_exit_dest(queue_id: str) -> str:
    return f"hotline-qexit-{slug(queue_id)}"


def ivr_dest(menu: str) -> str:
    return f"hotline-ivr-{slug(menu)}"


def sched_var(schedule: str) -> str:
    return f"hotline_sched_{var_slug(schedule)}"


def action_key(action: Action) -> str:
    raw = json.dumps([action.kind.value, action.target, action.prompt])
    return hashlib.sha1(raw.encode()).hexdigest()[:8]


def action_dest(action: Action) -> str:
    return f"hotline-action-{action.kind.value}-{action_key(action)}"


_META = re.compile(r"([.^$*+?{}\[\]\\|()])")


def rx(value: str) -> str:
    """``value`` as a literal inside a PCRE (only metacharacters escaped, so it stays readable)."""
    return _META.sub(r"\\\1", value)


def exact(value: str) -> str:
    """An anchored regular expression matching exactly ``value``."""
    return f"^{rx(value)}$"


def any_of(values: Iterable[str]) -> str:
    return f"^({'|'.join(rx(v) for v in values)})$"


def caller_regex(patterns: Sequence[str]) -> str:
    """Caller patterns are regular expressions as written (validated by daemon.definition.config)."""
    if len(patterns) == 1:
        return patterns[0]
    return "|".join(f"(?:{p})" for p in patterns)


TOD_TZ_OFFSET_OFF = "none"  # not a number: time conditions use the channel's timezone
CONFERENCE_PROFILES = "conference_profiles/hotline.xml"  # for an include inside <profiles>
ANNOUNCE_MODULE = "hotline_announce"  # fs_scripts entry run on the caller's leg at the bridge
# what the agent's leg gets from the caller's (mod_callcenter's cc_export_vars)
AGENT_LEG_EXPORTS = ("domain_name", "hotline_tenant", "hotline_queue")
# the key tasks of a call are scheduled in the group named by the caller's uuid (they die
# with the channel); leaving the queue deletes them
CALLBACK_KEY_DISARM = "${sched_del(${uuid})}"


def arms_key_later(q: Queue) -> bool:
    """The queue's callback key is armed only after the caller has waited a while."""
    return q.callback.enabled and q.callback.after_s > 0


def sound_path(sound: str) -> str:
    """A sound for an API command (uuid_displace): those resolve a relative path against
    the switch's base dir, not its sounds dir, so a relative one is made absolute."""
    if "://" in sound or sound.startswith(("/", "$")):
        return sound
    return f"$${{sounds_dir}}/{sound}"


def exit_key_schedule(q: Queue) -> list[tuple[int, str]]:
    """(seconds after the join, API command with the placeholder ``{uuid}`` for the call)
    that offer the queue's key.

    mod_callcenter's callcenter loop reads ``cc_exit_keys`` once per music-on-hold round
    (callcenter_function: ``ht.exit_keys = switch_channel_get_variable(...)`` before
    ``switch_ivr_play_file``); a key pressed during a round that began without it is
    dropped by ``moh_on_dtmf``, and ``local_stream`` music never ends by itself. So:

    * ``uuid_setvar <call> cc_exit_keys <key>``;
    * ``uuid_break <call>``: CF_BREAK ends the current round (``switch_ivr_play_file``
      returns SWITCH_STATUS_BREAK; no digit, so no exit), the loop starts the next round
      at once and that round reads the key: from here on every press is honoured;
    * with a prompt, ``uuid_displace <call> start <prompt> 0`` plays the offer over the
      music - only once the key works.

    All at ``after_s``, in this order: switch_scheduler.c appends each task to its list
    and one pass runs every due task in list order, inline (sched_api without ``&``), so
    tasks of the same second run in the order they were scheduled.
    """
    cb = q.callback
    steps = [(cb.after_s, f"uuid_setvar {{uuid}} cc_exit_keys {cb.exit_key}"),
             (cb.after_s, "uuid_break {uuid}")]
    if cb.prompt:
        steps.append((cb.after_s, f"uuid_displace {{uuid}} start {sound_path(cb.prompt)} 0"))
    return steps


def describe_action(tenant: Tenant, action: Action | None) -> str:
    """A short human description (comments in the XML, trace output)."""
    if action is None:
        return "hang up"
    k, t = action.kind, action.target
    text = {
        ActionKind.IVR: f"IVR menu {t}",
        ActionKind.QUEUE: f"queue {t}",
        ActionKind.AGENT: f"agent {t}",
        ActionKind.EXTENSION: f"extension {t}",
        ActionKind.VOICEMAIL: f"voicemail box {t}",
        ActionKind.CONFERENCE: f"conference room {t}",
        ActionKind.PLAYBACK: f"play {action.prompt} then hang up",
        ActionKind.TRANSFER: f"transfer to external number {t}",
        ActionKind.CALLBACK: f"callback request for queue {t}",
        ActionKind.SURVEY: f"survey{' for queue ' + t if t else ''}",
        ActionKind.HANGUP: f"hang up{' (' + t + ')' if t else ''}",
        ActionKind.SCHEDULE: f"schedule {t}",
    }[k]
    if action.prompt and k != ActionKind.PLAYBACK:
        text = f"play {action.prompt}, then {text}"
    return text


# ---- actions -> dialplan steps ------------------------------------------------------------
class _TenantRender:
    """Builds the views of one tenant; collects the action destinations it needs."""

    def __init__(self, tenant: Tenant) -> None:
        self.t = tenant
        self.ctx = tenant.domain
        self.agents = {a.id: a for a in tenant.agents}
        self.menus = {m.name: m for m in tenant.ivr_menus}
        self.action_exts: dict[str, Action] = {}

    def transfer(self, dest: str) -> Step:
        return ("transfer", f"{dest} XML {self.ctx}", False)

    def qualified(self, queue_id: str) -> str:
        return self.t.qualified(queue_id)

    def dest_of(self, action: Action) -> str:
        """A destination in the tenant's context that performs ``action`` (IVR options)."""
        k = action.kind
        if not action.prompt or k == ActionKind.PLAYBACK:
            if k == ActionKind.QUEUE:
                return queue_dest(action.target or "")
            if k == ActionKind.IVR:
                return ivr_dest(action.target or "")
            if k == ActionKind.AGENT:
                agent = self.agents.get(action.target or "")
                return agent.extension if agent else (action.target or "")
            if k in (ActionKind.EXTENSION, ActionKind.CONFERENCE):
                return action.target or ""
        dest = action_dest(action)
        self.action_exts[dest] = action
        return dest

    def steps(self, action: Action | None, *, inline_ivr: bool = False) -> list[Step]:
        """The dialplan applications that carry out ``action`` on the current channel."""
        if action is None:
            return [("hangup", "NORMAL_CLEARING", False)]
        k, target = action.kind, action.target or ""
        out: list[Step] = []
        if action.prompt and k != ActionKind.PLAYBACK:
            out += [("answer", None, False), ("playback", action.prompt, False)]
        if k == ActionKind.IVR:
            if inline_ivr:
                out += self.ivr_steps(self.menus.get(target), target)
            else:
                out.append(self.transfer(ivr_dest(target)))
        elif k == ActionKind.QUEUE:
            out.append(self.transfer(queue_dest(target)))
        elif k == ActionKind.AGENT:
            agent = self.agents.get(target)
            out.append(self.transfer(agent.extension if agent else target))
        elif k in (ActionKind.EXTENSION, ActionKind.CONFERENCE):
            out.append(self.transfer(target))
        elif k == ActionKind.VOICEMAIL:
            out += [("answer", None, False), ("sleep", "500", False),
                    ("voicemail", f"default {self.ctx} {target}", False),
                    ("hangup", "NORMAL_CLEARING", False)]
        elif k == ActionKind.PLAYBACK:
            out += [("answer", None, False), ("playback", action.prompt or target, False),
                    ("hangup", "NORMAL_CLEARING", False)]
        elif k == ActionKind.TRANSFER:
            # external numbers leave through the tenant's own outbound routes (the last
            # section of its context); a tenant without any hands them to the stock
            # "default" context, where a site may route them by hand
            out.append(("transfer", f"{target} XML "
                        f"{self.ctx if self.t.outbound_routes else 'default'}", False))
        elif k == ActionKind.CALLBACK:
            q = self.qualified(target)
            # not a queue's exit key (no cc_exit_key): tell hotline_callback it was asked for
            out += [("answer", None, False), ("set", f"hotline_queue={q}", False),
                    ("set", "hotline_callback_request=true", False),
                    ("python", f"hotline_callback {q}", False),
                    ("hangup", "NORMAL_CLEARING", False)]
        elif k == ActionKind.SURVEY:
            q = self.qualified(target) if target else "${hotline_queue}"
            # not after an answered queue call (no cc_cause=answered): tell hotline_survey it was asked for
            out += [("answer", None, False), ("set", "hotline_survey_request=true", False),
                    ("python", f"hotline_survey {q}", False),
                    ("hangup", "NORMAL_CLEARING", False)]
        elif k == ActionKind.HANGUP:
            out.append(("hangup", target or "NORMAL_CLEARING", False))
        else:  # ActionKind.SCHEDULE is reserved and never loaded
            out.append(("hangup", "NORMAL_CLEARING", False))
        return out

    def ivr_steps(self, menu: IvrMenu | None, name: str) -> list[Step]:
        steps: list[Step] = [("answer", None, False), ("sleep", "300", False),
                             ("set", f"hotline_ivr={name}", False),
                             ("ivr", menu_name(self.t, name), False)]
        # ivr returns only when the caller did not get anywhere (max failures/timeouts)
        failure = menu.on_failure if menu else None
        if failure is None:
            return steps + [("hangup", "NORMAL_CLEARING", False)]
        return steps + self.steps(failure)

    # ---- the context ----------------------------------------------------------------------
    def tenant_vars(self) -> list[Step]:
        return [("set", f"domain_name={self.ctx}", False),
                ("set", f"hotline_tenant={self.ctx}", False)]

    def dialplan(self) -> dict[str, Any]:
        t = self.t
        sections = [
            self.numbers_section(),
            self.ivr_section(),
            self.queue_section(),
            self.agent_section(),
            self.conference_section(),
            self.feature_section(),
        ]
        # then: the action destinations the sections above asked for
        sections.append(self.action_section())
        # last, so every internal number above wins over a route's pattern
        sections.append(self.outbound_section())
        # tuples for the template: unpacked in for-loops, no attribute lookups per row
        return {"tenant": t.id, "domain": t.domain, "context": xml_text(t.domain),
                "timezone": t.timezone,
                "sections": [(_comment(s["comment"]), [_ext_row(e) for e in s["extensions"]])
                             for s in sections if s["extensions"]]}

    def numbers_section(self) -> dict[str, Any]:
        t = self.t
        exts: list[dict[str, Any]] = []
        if t.numbers:
            dids = [n.did for n in t.numbers]
            setup = self.tenant_vars() + [
                ("set", f"timezone={t.timezone}", True),
                # mod_dialplan_xml prefers a numeric tod_tz_offset (a channel variable, or
                # a site-wide global it falls back to) over timezone: a non-number makes it
                # use the tenant's zone (check_tz in mod_dialplan_xml.c)
                ("set", f"tod_tz_offset={TOD_TZ_OFFSET_OFF}", True),
                ("set", "hotline_number=${destination_number}", False),
            ]
            exts.append(ext("hotline_numbers_setup", [cond_field("destination_number",
                                                                 any_of(dids), setup)],
                            cont=True, comment=f"every number: time zone {t.timezone} for the "
                                               f"schedule conditions below"))
        # schedules, evaluated only for the numbers whose rules use them
        used: dict[str, list[str]] = {}
        for n in t.numbers:
            for rule in n.rules:
                if rule.schedule is not None and n.did not in used.setdefault(rule.schedule, []):
                    used[rule.schedule].append(n.did)
        schedules = {s.name: s for s in t.schedules}
        for sname, dids in used.items():
            sched = schedules.get(sname)
            if sched is None:
                continue
            var = sched_var(sname)
            for i, tc in enumerate(time_conditions(sched)):
                acts: list[Step] = [("set", f"{var}={tc.state}", True),
                                    ("set", f"{var}_why={tc.label}", True)]
                conds = [cond_field("destination_number", any_of(dids), [])]
                conds.append({"attrs": list(tc.attrs), "actions": acts})
                exts.append(ext(f"sched_{slug(sname)}_{i}", conds, cont=True,
                                comment=f"schedule {sname}: {tc.label} -> {tc.state}"))
        for n in t.numbers:
            for i, rule in enumerate(n.rules, 1):
                exts.append(self.rule_ext(n.did, i, rule))
            exts.append(ext(f"did_{slug(n.did)}_nomatch", [cond_field(
                "destination_number", exact(n.did),
                [("log", f"WARNING no rule of number {n.did} matched", False),
                 ("hangup", "CALL_REJECTED", False)])],
                comment=f"number {n.did}: no rule matched"))
        return {"comment": "Numbers (DIDs): ordered rules, first match wins", "extensions": exts}

    def rule_ext(self, did: str, index: int, rule: Rule) -> dict[str, Any]:
        conds = [cond_field("destination_number", exact(did), [])]
        why = []
        if rule.schedule is not None:
            when = rule.when or "open"
            conds.append(cond_field(f"${{{sched_var(rule.schedule)}}}", f"^{when}$", []))
            why.append(f"schedule {rule.schedule} {when}")
        if rule.callers:
            conds.append(cond_field("caller_id_number", caller_regex(rule.callers), []))
            why.append(f"caller matches {', '.join(rule.callers)}")
        acts = [("set", f"hotline_rule={rule.name}", False)]
        acts += self.steps(rule.action, inline_ivr=True)
        conds[-1]["actions"] = one_answer(acts)
        comment = (f"number {did} rule {index} '{rule.name}'"
                   f" ({'; '.join(why) or 'always'}): {describe_action(self.t, rule.action)}")
        return ext(f"did_{slug(did)}_{index}_{slug(rule.name)}", conds, comment=comment)

    def ivr_section(self) -> dict[str, Any]:
        exts = []
        for menu in self.t.ivr_menus:
            exts.append(ext(f"ivr_{slug(menu.name)}", [cond_field(
                "destination_number", exact(ivr_dest(menu.name)),
                self.tenant_vars() + self.ivr_steps(menu, menu.name))],
                comment=f"IVR menu {menu.name}; after max failures/timeouts: "
                        f"{describe_action(self.t, menu.on_failure)}"))
        return {"comment": "IVR menu entries", "extensions": exts}

    def queue_section(self) -> dict[str, Any]:
        exts = []
        for q in self.t.queues:
            exts += self.queue_exts(q)
        return {"comment": "Queues: entry (cc_* variables, callcenter) and exit dispatch",
                "extensions": exts}

    def queue_exts(self, q: Queue) -> list[dict[str, Any]]:
        qn = self.qualified(q.id)
        exit_dest = queue_exit_dest(q.id)
        acts: list[Step] = [("answer", None, False)] + self.tenant_vars()
        acts.append(("set", f"hotline_queue={qn}", False))
        if q.survey:
            # the caller stays up after the agent hangs up, and comes back to the dispatcher
            acts += [("set", "hangup_after_bridge=false", False),
                     ("set", f"transfer_after_bridge={exit_dest}:XML:{self.ctx}", False)]
        else:
            acts.append(("set", "hangup_after_bridge=true", False))
        # hotline_announce runs on the caller's leg inside the bridge to the agent, once the
        # bridge is up (switch_ivr_bridge.c runs bridge_pre_execute_app there): nothing runs
        # on the agent's leg, so mod_callcenter bridges as soon as the phone answers. It
        # remembers the call for *28, stops the callback key tasks and - unless
        # hotline_announce_agent=false - tells the caller the agent's id. Plain words only:
        # a ${...} here would be expanded by "set" now, not at the bridge.
        acts += [("set", f"hotline_announce_agent={_bool(q.announce_agent_id)}", False),
                 ("set", "bridge_pre_execute_app=python", False),
                 ("set", f"bridge_pre_execute_data={ANNOUNCE_MODULE}", False),
                 ("set", f"cc_export_vars={','.join(AGENT_LEG_EXPORTS)}", False)]
        acts += self.exit_key_steps(q)
        # mod_callcenter sets cc_exit_key but never clears it: a key pressed in an earlier
        # queue must not read as a callback request when this queue ends
        acts += [("unset", "cc_exit_key", False), ("callcenter", qn, False)]
        if arms_key_later(q):
            # left the queue unanswered (timeout, key, no agent): the key tasks must not fire
            # into the fallback's prompts or the next queue
            acts.append(("set", f"hotline_callback_task={CALLBACK_KEY_DISARM}", False))
        acts.append(self.transfer(exit_dest))
        desc = [f"strategy {q.strategy}"]
        if q.max_wait_s:
            desc.append(f"max wait {q.max_wait_s} s")
        if q.callback.enabled:
            desc.append(f"callback key {q.callback.exit_key} after {q.callback.after_s} s")
        dests = [queue_dest(q.id)] + ([q.extension] if q.extension else [])
        entry = ext(f"queue_{slug(q.id)}", [cond_field("destination_number",
                                                      any_of(dests) if q.extension
                                                      else exact(dests[0]), acts)],
                    comment=f"queue {qn} ({q.name}): {', '.join(desc)}")
        exts = [entry]
        answered: list[Step] = [("hangup", "NORMAL_CLEARING", False)]
        if q.survey:
            answered = [("python", f"hotline_survey {qn}", False),
                        ("hangup", "NORMAL_CLEARING", False)]
        exts.append(ext(f"queue_{slug(q.id)}_answered", [
            cond_field("destination_number", exact(exit_dest), []),
            cond_field("${cc_cause}", "^answered$", answered)],
            comment=f"queue {qn}: the agent hung up" + (" -> survey" if q.survey else "")))
        if q.callback.enabled:
            exts.append(ext(f"queue_{slug(q.id)}_callback", [
                cond_field("destination_number", exact(exit_dest), []),
                # the script hangs up once the caller confirmed a number; when it returns
                # without one, the caller goes on to the queue's fallback
                cond_field("${cc_exit_key}", exact(q.callback.exit_key), [
                    ("python", f"hotline_callback {qn}", False)] + self.steps(q.on_timeout))],
                comment=f"queue {qn}: the caller pressed {q.callback.exit_key} for a callback"))
        exts.append(ext(f"queue_{slug(q.id)}_fallback", [cond_field(
            "destination_number", exact(exit_dest), self.steps(q.on_timeout))],
            comment=f"queue {qn}: timeout / no agent -> {describe_action(self.t, q.on_timeout)}"))
        return exts

    def exit_key_steps(self, q: Queue) -> list[Step]:
        """Arm the queue's callback key (see ``exit_key_schedule``); clear a key an earlier
        queue of the call left armed (cc_exit_keys stays on the channel)."""
        if not q.callback.enabled:
            return [("unset", "cc_exit_keys", False)]
        if q.callback.after_s <= 0:
            return [("set", f"cc_exit_keys={q.callback.exit_key}", False)]
        steps: list[Step] = [("unset", "cc_exit_keys", False)]
        names = ("hotline_callback_arm", "hotline_callback_task", "hotline_callback_offer")
        for name, (at, cmd) in zip(names, exit_key_schedule(q)):
            api = cmd.replace("{uuid}", "${uuid}")
            steps.append(("set", f"{name}=${{sched_api(+{at} ${{uuid}} {api})}}", False))
        return steps

    def agent_section(self) -> dict[str, Any]:
        exts = []
        for a in self.t.agents:
            acts: list[Step] = self.tenant_vars() + [
                ("set", "hangup_after_bridge=true", False),
                ("set", f"call_timeout={a.ring_timeout_s}", False),
                ("bridge", f"user/{a.extension}@{self.ctx}", False),
            ]
            exts.append(ext(f"agent_{slug(a.id)}", [cond_field(
                "destination_number", exact(a.extension), acts)],
                comment=f"agent {a.id} ({a.name}): desk phone {a.extension}"))
        return {"comment": "Agent desk phones", "extensions": exts}

    def conference_section(self) -> dict[str, Any]:
        exts = []
        for c in self.t.conferences:
            exts.append(ext(f"conference_{slug(c.room)}", [cond_field(
                "destination_number", exact(c.room), self.conference_steps(c))],
                comment=f"conference room {c.room} ({c.name})"))
        return {"comment": "Conference rooms", "extensions": exts}

    def conference_steps(self, c: Conference) -> list[Step]:
        acts: list[Step] = [("answer", None, False)] + self.tenant_vars()
        if c.max_members:
            acts.append(("set", f"conference_max_members={c.max_members}", False))
        if c.moderator_pin:
            acts.append(("set", f"conference_moderator_pin={c.moderator_pin}", False))
        if c.record:
            path = (f"$${{recordings_dir}}/hotline/{self.ctx}/conference-{c.room}-"
                    "${strftime(%Y%m%d-%H%M%S)}.wav")
            acts.append(("set", f"conference_auto_record={path}", False))
        data = f"{c.room}@{self.ctx}@{conference_profile(c)}"
        if c.pin:
            data += f"+{c.pin}"
        acts.append(("conference", data, False))
        return acts

    def feature_section(self) -> dict[str, Any]:
        fc = self.t.feature_codes
        plain = [("login", fc.login, "hotline_login"), ("logout", fc.logout, "hotline_logout"),
                 ("toggle", fc.toggle, "hotline_toggle"), ("ready", fc.ready, "hotline_ready"),
                 ("end_wrapup", fc.end_wrapup, "hotline_wrapup")]
        exts = []
        for key, code, module in plain:
            exts.append(self.feature_ext(key, exact(code), module))
        exts.append(self.feature_ext("break", f"^{rx(fc.break_)}(\\d*)$",
                                     "hotline_break", "$1"))
        exts.append(self.feature_ext("disposition", f"^{rx(fc.disposition)}(\\d*)$",
                                     "hotline_disposition", "$1"))
        for key, code, mode in (("eavesdrop", fc.eavesdrop, "listen"),
                                ("whisper", fc.whisper, "whisper"),
                                ("barge", fc.barge, "barge")):
            exts.append(self.feature_ext(key, f"^{rx(code)}(\\d+)$",
                                         "hotline_supervise", f"{mode} $1"))
        return {"comment": "Feature codes dialed from the desk phones (fs_scripts)",
                "extensions": exts}

    def feature_ext(self, key: str, regex: str, module: str, args: str = "") -> dict[str, Any]:
        data = f"{module} {args}" if args else module
        acts = self.tenant_vars() + [("python", data, False)]
        return ext(f"feature_{key}", [cond_field("destination_number", regex, acts)],
                   comment=f"feature code {key}")

    def action_section(self) -> dict[str, Any]:
        exts = []
        done: set[str] = set()
        # steps() of an action destination may not ask for new destinations, but loop anyway
        while len(done) < len(self.action_exts):
            for dest in sorted(self.action_exts):
                if dest in done:
                    continue
                done.add(dest)
                action = self.action_exts[dest]
                exts.append(ext(dest.replace("hotline-", "", 1).replace("-", "_"), [cond_field(
                    "destination_number", exact(dest), self.tenant_vars() + self.steps(action))],
                    comment=describe_action(self.t, action)))
        exts.sort(key=lambda e: e["name"])
        return {"comment": "Action destinations used by IVR options", "extensions": exts}

    def outbound_section(self) -> dict[str, Any]:
        exts = []
        for route in self.t.outbound_routes:
            acts: list[Step] = self.tenant_vars() + [
                ("set", f"hotline_outbound_route={route.name}", False)]
            if route.caller_id_number:
                acts.append(("set", f"effective_caller_id_number={route.caller_id_number}",
                             False))
            if route.caller_id_name:
                acts.append(("set", f"effective_caller_id_name={route.caller_id_name}", False))
            acts += [("set", "hangup_after_bridge=true", False),
                     ("bridge", route.endpoint("${destination_number}"), False)]
            exts.append(ext(f"outbound_{slug(route.name)}", [cond_field(
                "destination_number", route.pattern, acts)],
                comment=f"outbound route {route.name}: numbers matching {route.pattern} "
                        f"via {route.gateway and 'gateway ' + route.gateway or route.dial_string}"))
        return {"comment": "Outbound routes (first match wins; internal numbers above win)",
                "extensions": exts}

    # ---- IVR menus --------------------------------------------------------------------------
    def menus_view(self) -> dict[str, Any]:
        out = []
        agent_exts = sorted({a.extension for a in self.t.agents})
        for menu in self.t.ivr_menus:
            entries = []
            for opt in menu.options:
                dest = self.dest_of(opt.action)
                entries.append({"action": "menu-exec-app", "digits": opt.digits,
                                "param": f"transfer {dest} XML {self.ctx}",
                                "comment": describe_action(self.t, opt.action)})
            if menu.direct_extension_dialing and agent_exts:
                entries.append({"action": "menu-exec-app",
                                "digits": f"/^({'|'.join(rx(e) for e in agent_exts)})$/",
                                "param": f"transfer $1 XML {self.ctx}",
                                "comment": "direct extension dialing (agent desk phones)"})
            out.append({
                "name": menu_name(self.t, menu.name),
                "attrs": [
                    ("greet-long", menu.greet_long),
                    ("greet-short", menu.greet_short),
                    ("invalid-sound", menu.invalid_sound),
                    ("exit-sound", menu.exit_sound),
                    ("confirm-macro", ""),
                    ("confirm-key", ""),
                    ("confirm-attempts", "3"),
                    ("timeout", str(menu.timeout_ms)),
                    ("inter-digit-timeout", str(menu.inter_digit_timeout_ms)),
                    ("max-failures", str(menu.max_failures)),
                    ("max-timeouts", str(menu.max_timeouts)),
                    ("digit-len", str(menu.digit_len)),
                ],
                "entries": entries,
                "comment": f"tenant {self.t.id}: menu {menu.name}; on failure: "
                           f"{describe_action(self.t, menu.on_failure)}",
            })
        return {"tenant": self.t.id, "domain": self.t.domain, "menus": out}


def ext(name: str, conditions: list[dict[str, Any]], *, cont: bool = False,
        comment: str | None = None) -> dict[str, Any]:
    return {"name": name, "continue": cont, "conditions": conditions, "comment": comment}


def _ext_row(e: dict[str, Any]) -> tuple[Any, ...]:
    """An extension as escaped tuples (the dialplan template prints it without escaping)."""
    x = xml_text
    conds = [([(k, x(v)) for k, v in c["attrs"]],
              [(app, None if data is None else x(data), inline)
               for app, data, inline in c["actions"]])
             for c in e["conditions"]]
    return (x(e["name"]), e["continue"], conds,
            _comment(e["comment"]) if e["comment"] else None)


def one_answer(actions: list[Step]) -> list[Step]:
    """Drop repeated ``answer`` steps (a prompt, then an action that answers too)."""
    seen_answer = False
    kept: list[Step] = []
    for step in actions:
        if step[0] == "answer":
            if seen_answer:
                continue
            seen_answer = True
        kept.append(step)
    return kept


def cond_field(field: str, expression: str, actions: list[Step]) -> dict[str, Any]:
    return {"attrs": [("field", field), ("expression", expression)],
            "actions": one_answer(actions)}


def conference_profile(c: Conference) -> str:
    return c.profile


# ---- callcenter.conf ---------------------------------------------------------------------
def _bool(v: bool) -> str:
    return "true" if v else "false"


def queue_params(tenant: Tenant, q: Queue) -> list[tuple[str, str]]:
    """mod_callcenter queue params (names from mod_callcenter.c queue_set_config, 1.10)."""
    params = [("strategy", q.strategy), ("moh-sound", q.moh_sound)]
    if q.announce_sound:
        params += [("announce-sound", q.announce_sound),
                   ("announce-frequency", str(q.announce_frequency_s))]
    if q.record:
        template = q.record_template or (
            f"$${{recordings_dir}}/hotline/{tenant.domain}/${{strftime(%Y-%m-%d)}}/"
            "${uuid}.wav")
        params.append(("record-template", template))
    params += [
        ("time-base-score", q.time_base_score),
        ("max-wait-time", str(q.max_wait_s)),
        ("max-wait-time-with-no-agent", str(q.max_wait_no_agent_s)),
        ("max-wait-time-with-no-agent-time-reached", str(q.max_wait_no_agent_time_reached_s)),
        ("tier-rules-apply", _bool(q.tier_rules_apply)),
        ("tier-rule-wait-second", str(q.tier_rule_wait_second)),
        ("tier-rule-wait-multiply-level", _bool(q.tier_rule_wait_multiply_level)),
        ("tier-rule-no-agent-no-wait", _bool(q.tier_rule_no_agent_no_wait)),
        ("discard-abandoned-after", str(q.discard_abandoned_after_s)),
        ("abandoned-resume-allowed", _bool(q.abandoned_resume_allowed)),
    ]
    if q.strategy == "ring-progressively":
        params.append(("ring-progressively-delay", str(q.ring_cycle_s)))
    return params


def callcenter_view(center: CallCenter) -> dict[str, Any]:
    """Escaped rows (see xml_text) of queues, agents and tiers of every tenant."""
    x = xml_text
    queues: list[Any] = []
    agents: list[Any] = []
    tiers: list[Any] = []
    for t in center.tenants:
        for q in t.queues:
            queues.append((x(t.qualified(q.id)), [(k, x(v)) for k, v in queue_params(t, q)],
                           _comment(f"tenant {t.id}: {q.name}")))
        for a in t.agents:
            agents.append((_comment(f"tenant {t.id}: {a.name}"), [
                ("name", x(t.qualified(a.id))),
                ("type", "callback"),
                ("contact", x(f"[leg_timeout={a.ring_timeout_s}]user/{a.extension}@{t.domain}")),
                ("max-no-answer", str(a.max_no_answer)),
                ("wrap-up-time", str(a.wrap_up_s)),
                ("reject-delay-time", str(a.reject_delay_s)),
                ("busy-delay-time", str(a.busy_delay_s)),
                ("no-answer-delay-time", str(a.no_answer_delay_s)),
            ]))
        for q in t.queues:
            qn = x(t.qualified(q.id))
            tiers += [(x(t.qualified(tier.agent)), qn, str(tier.level), str(tier.position))
                      for tier in effective_tiers(t, q)]
    return {"queues": queues, "agents": agents, "tiers": tiers}


# ---- conference.conf / directory / data --------------------------------------------------
def conference_view(center: CallCenter) -> dict[str, Any]:
    names = sorted({c.profile for t in center.tenants for c in t.conferences})
    profiles = []
    for name in names:
        profiles.append({"name": name, "params": [
            ("rate", "8000"),
            ("interval", "20"),
            ("energy-level", "100"),
            ("moh-sound", "$${hold_music}"),
            ("enter-sound", "tone_stream://%(200,0,500,600,700)"),
            ("exit-sound", "tone_stream://%(500,0,300,200,100,50,25)"),
            ("pin-sound", "conference/conf-pin.wav"),
            ("bad-pin-sound", "conference/conf-bad-pin.wav"),
            ("caller-controls", "default"),
            ("caller-id-name", "Hotline Conference"),
            ("comfort-noise", "true"),
        ]})
    return {"profiles": profiles}


def directory_view(tenant: Tenant) -> dict[str, Any]:
    """Escaped rows (see xml_text): one directory user per agent desk phone."""
    x = xml_text
    users = []
    for a in tenant.agents:
        params = [("password", a.password)]
        variables = [
            ("user_context", tenant.domain),
            ("accountcode", a.extension),
            ("effective_caller_id_name", a.name),
            ("effective_caller_id_number", a.extension),
            ("hotline_tenant", tenant.domain),
            ("hotline_agent", tenant.qualified(a.id)),
            ("hotline_agent_id", a.id),
            ("hotline_agent_pin_required", _bool(a.pin is not None)),
        ]
        if a.team:
            variables.append(("callgroup", a.team))
        users.append((x(a.extension), [(k, x(v)) for k, v in params],
                      [(k, x(v)) for k, v in variables], _comment(f"agent {a.id}: {a.name}")))
    return {"tenant": tenant.id, "domain": tenant.domain, "domain_xml": x(tenant.domain),
            "users": users}


def scripts_data(center: CallCenter) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for t in center.tenants:
        data[t.domain] = {
            "tenant": t.id,
            "agents": {a.extension: {"id": a.id, "pin": a.pin} for a in t.agents},
            "break_reasons": {b.digit: b.name for b in t.break_reasons},
            "dispositions": {d.code: d.name for d in t.dispositions},
        }
        # only team supervisors may listen/whisper/barge; without any, fs_scripts allow anyone
        sup_ids = {team.supervisor for team in t.teams if team.supervisor}
        if sup_ids:
            data[t.domain]["supervisors"] = sorted(a.extension for a in t.agents
                                                   if a.id in sup_ids)
    return data


# ---- writing -----------------------------------------------------------------------------
# Rendered files that hold secrets: the directory (SIP passwords) and the desk-phone data
# file (agent PINs). They get owner read/write and group read, the group being the one of
# the directory they are written to (the FreeSWITCH group in a stock install, which is what
# lets the switch read them); everybody else gets nothing, whatever the umask.
SECRET_MODE = 0o640
PUBLIC_MODE = 0o644


def holds_secrets(path: Path) -> bool:
    """True for a rendered file with passwords or PINs in it (see ``SECRET_MODE``)."""
    return path.name == "hotline_data.json" or (path.parent.name == "directory"
                                               and path.suffix == ".xml")


def write_atomic(path: Path, content: str, *, secret: bool | None = None) -> None:
    """Write ``content`` (UTF-8) so readers see the old file or the new one, never half.

    A file holding secrets (``secret``, by default ``holds_secrets(path)``) is never
    readable by others, not even for a moment: the temporary file is created 0600
    (mkstemp), given the directory's group, made 0640 and only then renamed into place.
    """
    secret = holds_secrets(path) if secret is None else secret
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(content)
            if secret:
                _give_directory_group(fh.fileno(), path)
        os.chmod(tmp, SECRET_MODE if secret else PUBLIC_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _give_directory_group(fd: int, path: Path) -> None:
    gid = path.parent.stat().st_gid
    if os.fstat(fd).st_gid == gid:
        return
    try:
        os.fchown(fd, -1, gid)
    except OSError:  # not a member of that group: the file keeps ours (still 0640)
        logger.warning("cannot give %s the group %d of its directory; check that FreeSWITCH "
                       "can read it", path, gid)


def render_files(center: CallCenter, odbc_dsn: str | None = None) -> dict[str, str]:
    """Relative path -> file content for the whole center (no I/O but reading the shipped
    scripts once per process).

    ``odbc_dsn`` (settings ``callcenter_odbc_dsn``): mod_callcenter keeps its agents,
    tiers and members in that database instead of each node's own SQLite, so every node
    shares them (docs/SCALE.md)."""
    with paused_gc():
        files = _render_files(center, odbc_dsn)
    files.update(fs_script_files())
    return files


SCRIPTS_DIR = "scripts"  # the rendered folder that goes into FreeSWITCH's $${script_dir}
DATA_FILE = f"{SCRIPTS_DIR}/hotline_data.json"


@functools.lru_cache(maxsize=1)
def fs_script_files() -> dict[str, str]:
    """The fs_scripts (entry modules and the hotline_fs package) as rendered files under
    ``scripts/``, byte for byte, so the render output is all the switch host needs."""
    root = bundled("fs_scripts")
    return {f"{SCRIPTS_DIR}/{path.relative_to(root).as_posix()}": path.read_text("utf-8")
            for path in sorted(root.rglob("*.py")) if "__pycache__" not in path.parts}


def _render_files(center: CallCenter, odbc_dsn: str | None = None) -> dict[str, str]:
    env = environment()
    files: dict[str, str] = {}
    for t in center.tenants:
        tr = _TenantRender(t)
        menus = tr.menus_view()  # first: IVR options register the action destinations
        files[f"dialplan/{t.domain}.xml"] = env.get_template("dialplan.xml.j2").render(
            ctx=tr.dialplan())
        files[f"dialplan/public/{t.domain}.xml"] = env.get_template("public.xml.j2").render(
            tenant=t.id, domain=t.domain, dids=any_of(n.did for n in t.numbers)
            if t.numbers else None)
        files[f"ivr_menus/{t.domain}.xml"] = env.get_template("ivr_menus.xml.j2").render(
            ctx=menus)
        files[f"directory/{t.domain}.xml"] = env.get_template("directory.xml.j2").render(
            ctx=directory_view(t))
    files["autoload_configs/callcenter.conf.xml"] = env.get_template(
        "callcenter.conf.xml.j2").render(ctx=callcenter_view(center),
                                         odbc_dsn=xml_text(odbc_dsn) if odbc_dsn else None)
    files["autoload_configs/conference.conf.xml"] = env.get_template(
        "conference.conf.xml.j2").render(ctx=conference_view(center))
    # the same profiles as a fragment, for sites that keep the stock conference.conf.xml
    # and include Hotline's profiles inside its <profiles> (docs/RENDER.md)
    files[CONFERENCE_PROFILES] = env.get_template("conference_profiles.xml.j2").render(
        ctx=conference_view(center))
    files["autoload_configs/ivr.conf.xml"] = env.get_template("ivr.conf.xml.j2").render()
    files[DATA_FILE] = json.dumps(
        scripts_data(center), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return files


RENDERED_MARK = "<!-- Rendered by Hotline"
PER_TENANT_DIRS = ("dialplan", "dialplan/public", "ivr_menus", "directory")


def stale_files(out_dir: str | Path, keep: Iterable[Path]) -> list[Path]:
    """Per-tenant files an earlier render wrote that the model no longer has (a removed
    tenant): FreeSWITCH would otherwise keep loading them. Only files carrying Hotline's
    header are considered, so hand-written files next to them are never touched."""
    out = Path(out_dir)
    kept = {Path(p) for p in keep}
    stale = []
    for sub in PER_TENANT_DIRS:
        for path in sorted((out / sub).glob("*.xml")):
            if path in kept:
                continue
            with path.open(encoding="utf-8", errors="replace") as fh:
                if fh.read(len(RENDERED_MARK)) == RENDERED_MARK:
                    stale.append(path)
    return stale


def render(center: CallCenter, out_dir: str | Path, odbc_dsn: str | None = None) -> list[Path]:
    """Render ``center`` under ``out_dir``; returns the written paths, sorted.

    Per-tenant files of tenants no longer in the model (left by an earlier render into the
    same directory) are removed, see ``stale_files``.
    """
    out = Path(out_dir)
    written = []
    for rel, content in sorted(render_files(center, odbc_dsn).items()):
        path = out / rel
        write_atomic(path, content)  # 0640 for files with PINs or passwords (holds_secrets)
        written.append(path)
    for path in stale_files(out, written):
        logger.info("removing %s: its tenant is no longer in the model", path)
        path.unlink()
    logger.info("rendered %d files into %s", len(written), out)
    return written
