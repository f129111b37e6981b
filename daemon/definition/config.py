"""Load a config directory of YAML files into the frozen model, validating everything.

``load_center(path)`` reads every ``*.yaml``/``*.yml`` file under ``path`` (sorted, hidden
files skipped), merges them and returns a ``CallCenter`` or raises ``ConfigErrors`` with
*every* problem found, each at file:line:column with one sentence (docs/CONFIG.md).

Merge rule: a file's top-level keys are ``tenants`` and ``settings``. A tenant may be
split over several files by its id: its single-valued keys (name, domain, timezone,
language, feature_codes, country, screen_pop, crm_lookup, sms) may be given in one file
only; its collections (numbers, schedules, ivr_menus, queues, agents, teams, skills,
conferences, break_reasons, dispositions, webhooks) combine entry by entry, and an entry id given twice is an error; costs
(a list) are concatenated.
"""
from __future__ import annotations

import datetime as dt
import difflib
import functools
import logging
import os
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.definition import model as m
from daemon.definition.campaigns import check_campaigns, read_campaign
from daemon.definition.gcpause import paused_gc
from daemon.definition.integrations import (
    read_country,
    read_crm_lookup,
    read_sms,
    read_webhook,
)
from daemon.definition.model import Action, ActionKind, Source
from daemon.definition.reader import _BAD, _ID, ConfigErrors, _Reader, config_files, suggest
from daemon.definition.settings import check_settings_nodes
from daemon.definition.yamlsrc import MAX_FILE_BYTES, ConfigError, YamlFileError, YNode, load_yaml

logger = logging.getLogger(__name__)

__all__ = ["ConfigError", "ConfigErrors", "load_center", "config_files", "CenterSummary",
           "summarize"]

_DAY_INDEX = {d: i for i, d in enumerate(m.WEEKDAYS)}

TENANT_SINGLE = ("name", "domain", "timezone", "language", "feature_codes", "country",
                 "screen_pop", "crm_lookup", "sms")
TENANT_COLLECTIONS = ("numbers", "schedules", "ivr_menus", "queues", "agents", "teams",
                      "skills", "conferences", "break_reasons", "dispositions",
                      "outbound_routes", "webhooks", "campaigns")
TENANT_LISTS = ("costs",)
TENANT_KEYS = TENANT_SINGLE + TENANT_COLLECTIONS + TENANT_LISTS
_SINGULAR = {"numbers": "number", "schedules": "schedule", "ivr_menus": "IVR menu",
             "queues": "queue", "agents": "agent", "teams": "team", "skills": "skill",
             "conferences": "conference room", "break_reasons": "break reason",
             "dispositions": "disposition", "outbound_routes": "outbound route",
             "webhooks": "webhook", "campaigns": "campaign"}
ACTION_KINDS = ("ivr", "queue", "agent", "extension", "voicemail", "conference", "playback",
                "transfer", "callback", "survey", "hangup")
FEATURE_KEYS = {"login": "login", "logout": "logout", "toggle": "toggle", "break": "break_",
                "ready": "ready", "end_wrapup": "end_wrapup", "disposition": "disposition",
                "eavesdrop": "eavesdrop", "whisper": "whisper", "barge": "barge"}
# codes the agent dials with something appended (reason digit, disposition code, agent id)
FEATURE_WITH_SUFFIX = ("break", "disposition", "eavesdrop", "whisper", "barge")



_SHIFTS: dict[tuple[int, dt.time, dt.time], m.Shift] = {}


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())  # a directory walk: once per process


def _day_keys(key: str) -> list[int] | None:
    """``mon`` → [0]; ``mon-fri`` → [0..4]; ``daily`` → all; ``weekend`` → sat, sun."""
    k = key.strip().lower()
    if k in ("daily", "all"):
        return list(range(7))
    if k == "weekdays":
        return list(range(5))
    if k == "weekend":
        return [5, 6]
    if k in _DAY_INDEX:
        return [_DAY_INDEX[k]]
    if "-" in k:
        a, _, b = k.partition("-")
        if a in _DAY_INDEX and b in _DAY_INDEX and _DAY_INDEX[a] <= _DAY_INDEX[b]:
            return list(range(_DAY_INDEX[a], _DAY_INDEX[b] + 1))
    return None


_DAY_WORDS = list(m.WEEKDAYS) + ["mon-fri", "mon-sat", "sat-sun", "daily", "weekdays", "weekend"]


@dataclass
class _Entry:
    """One collection entry while building a tenant: its id, body and where the id was written."""

    id: str
    node: YNode
    src: Source


class _TenantBuilder:
    def __init__(self, r: _Reader, tenant_id: str, parts: list[tuple[YNode, Source]]) -> None:
        self.r = r
        self.id = tenant_id
        self.parts = parts
        self.what = f"tenant '{tenant_id}'"
        self.single: dict[str, YNode] = {}
        self.coll: dict[str, dict[str, _Entry]] = {k: {} for k in TENANT_COLLECTIONS}
        self.lists: dict[str, list[YNode]] = {k: [] for k in TENANT_LISTS}
        self.src = parts[0][1]
        # collections whose container is unusable: references into them would only echo that
        self.broken: set[str] = set()
        # a file of the directory could not be read: what it defined is unknown, so
        # "does not exist" is only said of names that file does not even mention
        # (its text, set by load_center; None when every file was read)
        self.unread_text: str | None = None
        self.queue_ext_src: dict[str, Source] = {}  # queue id -> where its extension was written
        # what could be read of a tenant that cannot be built (domain "": unknown), still
        # checked against the other tenants
        self.provisional: m.Tenant | None = None

    # ---- merging the parts of a tenant ----------------------------------------------------
    def merge(self) -> None:
        for body, part_src in self.parts:
            fields_ = self.r.mapping(body, self.what, TENANT_KEYS)
            if fields_ is None:
                continue
            for key in body.value if body.kind == "map" else ():
                if key not in TENANT_KEYS:  # probably a misspelled collection: see _check_tenant
                    self.broken.update(difflib.get_close_matches(key, TENANT_COLLECTIONS, 1, 0.6))
            for key, node in fields_.items():
                if key in TENANT_SINGLE:
                    if key in self.single:
                        first = self.single[key].src
                        self.r.error(body.keys[key], f"'{key}' of {self.what} is already given "
                                                     f"at {first.file}:{first.line}.")
                    else:
                        self.single[key] = node
                        if key == "domain":  # the tenant "lives" where its domain is written
                            self.src = part_src
                elif key in TENANT_LISTS:
                    self.lists[key].extend(self.r.seq(node, f"'{key}' of {self.what}"))
                else:
                    what = f"'{key}' of {self.what}"
                    target = self.coll[key]
                    if not (node.kind == "map" or node.is_null):
                        self.broken.add(key)
                    for eid, enode in self.r.entries(node, what).items():
                        esrc = node.keys[eid]
                        if eid in target:
                            first = target[eid].src
                            self.r.error(esrc, f"{_SINGULAR[key]} '{eid}' of {self.what} is "
                                               f"defined twice (first at {first.file}:"
                                               f"{first.line}).")
                            continue
                        target[eid] = _Entry(eid, enode, esrc)

    # ---- building ----------------------------------------------------------------------
    def build(self) -> m.Tenant | None:
        self.merge()
        r = self.r
        if not _ID.match(self.id):
            r.error(self.src, f"tenant id '{self.id}' may only use letters, digits, '_', '.' "
                              f"and '-'.")
        for key in ("domain", "timezone"):
            # with a file unreadable, the key may well be written there
            if key not in self.single and self.unread_text is None:
                r.error(self.src, f"{self.what} needs a '{key}'.")
        domain = self._single("domain", lambda n, w: r.ident(n, w))
        timezone = self._single("timezone", self._timezone)
        language = self._single("language", lambda n, w: r.text(n, w), "en")
        name = self._single("name", lambda n, w: r.text(n, w), self.id)

        self.skills = tuple(self._skill(e) for e in self.coll["skills"].values())
        self.teams = tuple(self._team(e) for e in self.coll["teams"].values())
        self.schedules = tuple(s for s in (self._schedule(e)
                                           for e in self.coll["schedules"].values()) if s)
        self.agents = tuple(a for a in (self._agent(e) for e in self.coll["agents"].values()) if a)
        self.conferences = tuple(c for c in (self._conference(e)
                                             for e in self.coll["conferences"].values()) if c)
        self.queues = tuple(q for q in (self._queue(e) for e in self.coll["queues"].values()) if q)
        self.menus = tuple(x for x in (self._menu(e)
                                       for e in self.coll["ivr_menus"].values()) if x)
        self.numbers = tuple(n for n in (self._number(e)
                                         for e in self.coll["numbers"].values()) if n)
        breaks = tuple(b for b in (self._break(e)
                                   for e in self.coll["break_reasons"].values()) if b)
        dispositions = tuple(d for d in (self._disposition(e)
                                         for e in self.coll["dispositions"].values()) if d)
        costs = self._costs()
        routes = tuple(x for x in (self._route(e)
                                   for e in self.coll["outbound_routes"].values()) if x)
        codes = self._single("feature_codes", self._feature_codes, m.FeatureCodes())
        webhooks = tuple(w for w in (read_webhook(r, e.id, e.node, e.src, self.what)
                                     for e in self.coll["webhooks"].values()) if w)
        country = self._single("country", lambda n, w: read_country(r, n, w))
        screen_pop = self._single("screen_pop", r.boolean, False)
        crm = self._single("crm_lookup", lambda n, w: read_crm_lookup(r, n, w))
        sms = self._single("sms", lambda n, w: read_sms(
            r, n, w, name if isinstance(name, str) else self.id, [q.name for q in self.queues]))
        campaigns = tuple(c for c in (read_campaign(r, self._weekly, e.id, e.node, e.src)
                                      for e in self.coll["campaigns"].values()) if c)

        if _BAD in (domain, timezone, language, name, codes) or domain is None \
                or timezone is None:
            # the tenant cannot be built, but its references can still be checked on what
            # was read: every mistake in one run, not the next batch after a fix
            self.provisional = m.Tenant(
                id=self.id, name=self.id, domain="", timezone="UTC", numbers=self.numbers,
                schedules=self.schedules, ivr_menus=self.menus, queues=self.queues,
                agents=self.agents, teams=self.teams, skills=self.skills,
                conferences=self.conferences, break_reasons=breaks, dispositions=dispositions,
                costs=costs, src=self.src, campaigns=campaigns,
            )
            _check_tenant(r, self.provisional, self, codes_known=codes is not _BAD)
            return None
        tenant = m.Tenant(
            id=self.id, name=name, domain=domain, timezone=timezone, language=language,
            numbers=self.numbers, schedules=self.schedules, ivr_menus=self.menus,
            queues=self.queues, agents=self.agents, teams=self.teams, skills=self.skills,
            conferences=self.conferences, feature_codes=codes, break_reasons=breaks,
            dispositions=dispositions, costs=costs, src=self.src, outbound_routes=routes,
            webhooks=webhooks,
            country=None if country is _BAD else country, screen_pop=screen_pop is True,
            crm_lookup=None if crm is _BAD else crm, sms=None if sms is _BAD else sms,
            campaigns=campaigns,
        )
        _check_tenant(r, tenant, self)
        return tenant

    def _single(self, key: str, read: Callable[[YNode, str], Any], default: Any = None) -> Any:
        node = self.single.get(key)
        if node is None:
            return default
        return read(node, f"'{key}' of {self.what}")

    def _timezone(self, node: YNode, what: str) -> Any:
        value = self.r.text(node, what)
        if value is _BAD:
            return _BAD
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # "Europe" is a directory
            known = _known_zones()
            self.r.error(node.src, f"{what} is '{value}', which is not a known time zone"
                                   f"{suggest(value, known)}")
            return _BAD
        return value

    def _fields(self, body: dict[str, YNode], what: str,
                spec: dict[str, Callable[[YNode, str], Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, node in body.items():
            reader = spec.get(key)
            if reader is None:
                continue
            value = reader(node, f"'{key}' of {what}")
            if value is not _BAD:
                out[key] = value
        return out

    # ---- skills, teams -------------------------------------------------------------------
    def _skill(self, e: _Entry) -> m.Skill:
        self.r.ident(YNode("scalar", e.src, e.id, raw=e.id), "skill id")
        if e.node.kind == "scalar" and not e.node.is_null:
            return m.Skill(e.id, self.r.text(e.node, f"skill '{e.id}'"), e.src)
        body = self.r.mapping(e.node, f"skill '{e.id}'", ("name",)) or {}
        name = self.r.text(body["name"], f"'name' of skill '{e.id}'") if "name" in body else e.id
        return m.Skill(e.id, e.id if name is _BAD else name, e.src)

    def _team(self, e: _Entry) -> m.Team:
        what = f"team '{e.id}'"
        if e.node.kind == "scalar" and not e.node.is_null:
            return m.Team(e.id, self.r.text(e.node, what), src=e.src)
        body = self.r.mapping(e.node, what, ("name", "supervisor")) or {}
        got = self._fields(body, what, {"name": self.r.text, "supervisor": self.r.text})
        return m.Team(e.id, got.get("name", e.id), got.get("supervisor"), e.src)

    # ---- schedules -----------------------------------------------------------------------
    def _weekly(self, node: YNode, what: str) -> tuple[tuple[m.TimeRange, ...], ...] | None:
        days: list[tuple[m.TimeRange, ...] | None] = [None] * 7
        given: list[Source | None] = [None] * 7
        if node.kind != "map":
            self.r.error(node.src, f"{what} must map weekdays (mon, mon-fri, ...) to time "
                                   f"ranges, not {node.describe()}.")
            return None
        ok = True
        for key, val in node.value.items():
            ksrc = node.keys[key]
            idx = _day_keys(key)
            if idx is None:
                self.r.error(ksrc, f"'{key}' in {what} is not a weekday or weekday range"
                                   f"{suggest(key, _DAY_WORDS)}")
                ok = False
                continue
            ranges = self.r.time_ranges(val, f"hours of '{key}' in {what}")
            for i in idx:
                if given[i] is not None:
                    first = given[i]
                    self.r.error(ksrc, f"{m.WEEKDAYS[i]} is given twice in {what} (also at line "
                                       f"{first.line}); each weekday may appear once.")
                    ok = False
                    continue
                given[i] = ksrc
                days[i] = ranges
            if ranges is None:
                ok = False
        if not ok:
            return None
        return tuple(d or () for d in days)

    def _schedule(self, e: _Entry) -> m.Schedule | None:
        r = self.r
        what = f"schedule '{e.id}'"
        body = r.mapping(e.node, what, ("weekly", "closures", "holidays", "exceptions"))
        if body is None:
            return None
        weekly = self._weekly(body["weekly"], f"'weekly' of {what}") if "weekly" in body \
            else tuple(() for _ in range(7))
        closures: list[m.Closure] = []
        for key in ("closures", "holidays"):
            for item in r.seq(body[key], f"'{key}' of {what}") if key in body else []:
                c = self._closure(item, f"an entry of '{key}' in {what}")
                if c:
                    closures.append(c)
        exceptions: list[m.DateException] = []
        for item in r.seq(body["exceptions"], f"'exceptions' of {what}") \
                if "exceptions" in body else []:
            x = self._exception(item, f"an exception in {what}")
            if x:
                exceptions.append(x)
        # contradictions: overlapping closures, a date both closed and specially open,
        # the same date given twice as an exception
        closures.sort(key=lambda c: (c.first, c.last))
        for a, b in zip(closures, closures[1:]):
            if b.first <= a.last:
                r.error(b.src, f"closure '{b.name}' ({b.first} to {b.last}) overlaps closure "
                               f"'{a.name}' ({a.first} to {a.last}) in {what}.")
        seen: dict[dt.date, m.DateException] = {}
        for x in exceptions:
            if x.date in seen:
                r.error(x.src, f"the date {x.date} has two exceptions in {what} (first at line "
                               f"{seen[x.date].src.line}).")
            seen[x.date] = x
            for c in closures:
                if c.first <= x.date <= c.last:
                    r.error(x.src, f"exception {x.date} of {what} falls inside closure "
                                   f"'{c.name}' ({c.first} to {c.last}); a day is either closed "
                                   f"or has its own hours, not both.")
        if weekly is None:
            return None
        return m.Schedule(e.id, weekly, tuple(closures),
                          tuple(sorted(exceptions, key=lambda x: x.date)), e.src)

    def _closure(self, node: YNode, what: str) -> m.Closure | None:
        body = self.r.mapping(node, what, ("name", "date", "from", "to"), ("name",))
        if body is None:
            return None
        got = self._fields(body, what, {"name": self.r.text, "date": self.r.date,
                                        "from": self.r.date, "to": self.r.date})
        if "date" in body and ("from" in body or "to" in body):
            self.r.error(node.src, f"{what} has 'date' and 'from'/'to'; give one day or a range.")
            return None
        if "date" not in body and not ("from" in body and "to" in body):
            self.r.error(node.src, f"{what} needs a 'date', or 'from' and 'to'.")
            return None
        if "name" not in got or ("date" not in got and ("from" not in got or "to" not in got)):
            return None
        first = got.get("date", got.get("from"))
        last = got.get("date", got.get("to"))
        if last < first:
            self.r.error(body["to"].src, f"{what} ends ({last}) before it starts ({first}).")
            return None
        return m.Closure(got["name"], first, last, node.src)

    def _exception(self, node: YNode, what: str) -> m.DateException | None:
        body = self.r.mapping(node, what, ("date", "name", "hours"), ("date",))
        if body is None:
            return None
        got = self._fields(body, what, {"date": self.r.date, "name": self.r.text})
        hours = self.r.time_ranges(body["hours"], f"'hours' of {what}") if "hours" in body else ()
        if "date" not in got or hours is None:
            return None
        return m.DateException(got["date"], hours, got.get("name", ""), node.src)

    # ---- actions -------------------------------------------------------------------------
    def action(self, node: YNode, what: str) -> m.Action | None:
        r = self.r
        if node.kind == "scalar" and node.raw == "hangup":
            return Action(ActionKind.HANGUP, src=node.src)
        if node.kind != "map":
            r.error(node.src, f"{what} must be an action such as {{queue: billing}} or "
                              f"hangup, not {node.describe()}.")
            return None
        kinds = [k for k in node.value if k != "prompt"]
        unknown = [k for k in kinds if k not in ACTION_KINDS]
        for k in unknown:
            r.error(node.keys[k], f"'{k}' in {what} is not an action{suggest(k, ACTION_KINDS)}")
        kinds = [k for k in kinds if k in ACTION_KINDS]
        if unknown:
            return None
        if len(kinds) != 1:
            r.error(node.src, f"{what} must name exactly one action ({', '.join(ACTION_KINDS)})"
                              f", not {len(kinds)}.")
            return None
        kind = kinds[0]
        value = node.value[kind]
        prompt = None
        if "prompt" in node.value:
            prompt = r.text(node.value["prompt"], f"'prompt' of {what}")
            if prompt is _BAD:
                return None
        if kind == "hangup":
            target = None if value.is_null or value.value is True else r.text(value, what)
            return None if target is _BAD else Action(ActionKind.HANGUP, target, prompt, node.src)
        if kind == "playback":
            sound = r.text(value, f"the playback sound of {what}")
            return None if sound is _BAD else Action(ActionKind.PLAYBACK, None, sound, node.src)
        if kind == "survey" and (value.is_null or value.value is True):
            return Action(ActionKind.SURVEY, None, prompt, node.src)
        if kind == "transfer":
            target = r.phone_number(value, f"the transfer number of {what}")
        elif kind in ("extension", "conference", "voicemail"):
            target = r.digits(value, f"the {kind} of {what}")
        else:
            target = r.text(value, f"the {kind} of {what}")
        if target is _BAD:
            return None
        return Action(ActionKind(kind), target, prompt, node.src)

    # ---- IVR ----------------------------------------------------------------------------
    def _menu(self, e: _Entry) -> m.IvrMenu | None:
        r = self.r
        what = f"IVR menu '{e.id}'"
        keys = ("greet_long", "greet_short", "invalid_sound", "exit_sound", "timeout_ms",
                "inter_digit_timeout_ms", "max_failures", "max_timeouts", "digit_len",
                "direct_extension_dialing", "options", "on_failure")
        body = r.mapping(e.node, what, keys, ("greet_long",))
        if body is None:
            return None

        def ms(n: YNode, w: str) -> Any:
            return r.integer(n, w, 0, 600_000)

        got = self._fields(body, what, {
            "greet_long": r.text, "greet_short": r.text, "invalid_sound": r.text,
            "exit_sound": r.text, "timeout_ms": ms, "inter_digit_timeout_ms": ms,
            "max_failures": lambda n, w: r.integer(n, w, 1, 20),
            "max_timeouts": lambda n, w: r.integer(n, w, 1, 20),
            "digit_len": lambda n, w: r.integer(n, w, 1, 10),
            "direct_extension_dialing": r.boolean,
        })
        if "greet_long" not in got:
            return None
        options: list[m.IvrOption] = []
        if "options" in body:
            onode = body["options"]
            for digits, anode in r.entries(onode, f"'options' of {what}").items():
                dsrc = onode.keys[digits]
                dnode = YNode("scalar", dsrc, digits, raw=digits)
                d = r.digits(dnode, f"option of {what}", 10)
                act = self.action(anode, f"option {digits} of {what}")
                if d is _BAD or act is None:
                    continue
                options.append(m.IvrOption(d, act, dsrc))
        digit_len = got.get("digit_len", 1)
        for opt in options:
            if len(opt.digits) > digit_len:
                r.error(opt.src, f"option {opt.digits} of {what} has {len(opt.digits)} digits but "
                                 f"the menu's digit_len is {digit_len}.")
        on_failure = None
        if "on_failure" in body:
            on_failure = self.action(body["on_failure"], f"'on_failure' of {what}")
        return m.IvrMenu(
            name=e.id, greet_long=got["greet_long"],
            greet_short=got.get("greet_short", got["greet_long"]),
            invalid_sound=got.get("invalid_sound", "ivr/ivr-that_was_an_invalid_entry.wav"),
            exit_sound=got.get("exit_sound", "voicemail/vm-goodbye.wav"),
            timeout_ms=got.get("timeout_ms", 10000),
            inter_digit_timeout_ms=got.get("inter_digit_timeout_ms", 2000),
            max_failures=got.get("max_failures", 3), max_timeouts=got.get("max_timeouts", 3),
            digit_len=digit_len, direct_extension_dialing=got.get("direct_extension_dialing",
                                                                  False),
            options=tuple(options), on_failure=on_failure, src=e.src,
        )

    # ---- queues --------------------------------------------------------------------------
    def _queue(self, e: _Entry) -> m.Queue | None:
        r = self.r
        what = f"queue '{e.id}'"
        if r.ident(YNode("scalar", e.src, e.id, raw=e.id), "queue id") is _BAD:
            return None
        simple: dict[str, Callable[[YNode, str], Any]] = {
            "name": r.text,
            "strategy": lambda n, w: r.choice(n, w, m.STRATEGIES),
            "moh_sound": r.text, "announce_sound": r.text,
            "announce_frequency_s": lambda n, w: r.integer(n, w, 0, 3600),
            "max_wait_s": lambda n, w: r.integer(n, w, 0, 86400),
            "max_wait_no_agent_s": lambda n, w: r.integer(n, w, 0, 86400),
            "max_wait_no_agent_time_reached_s": lambda n, w: r.integer(n, w, 0, 86400),
            "tier_rules_apply": r.boolean,
            "tier_rule_wait_second": lambda n, w: r.integer(n, w, 0, 86400),
            "tier_rule_wait_multiply_level": r.boolean,
            "tier_rule_no_agent_no_wait": r.boolean,
            "time_base_score": lambda n, w: r.choice(n, w, ("system", "queue")),
            "discard_abandoned_after_s": lambda n, w: r.integer(n, w, 0, 86400),
            "abandoned_resume_allowed": r.boolean,
            "record": r.boolean, "record_template": r.text,
            "service_level_s": lambda n, w: r.integer(n, w, 1, 3600),
            "service_level_target_pct": lambda n, w: r.number(n, w, 0.0, 100.0),
            "short_abandon_s": lambda n, w: r.integer(n, w, 0, 600),
            "ring_cycle_s": lambda n, w: r.integer(n, w, 1, 120),
            "fcr_window_h": lambda n, w: r.integer(n, w, 1, 24 * 30),
            "announce_agent_id": r.boolean, "survey": r.boolean,
            "extension": lambda n, w: self._queue_extension(e.id, n, w),
        }
        keys = tuple(simple) + ("on_timeout", "callback", "tiers", "skills")
        body = r.mapping(e.node, what, keys)
        if body is None:
            return None
        got = self._fields(body, what, simple)
        got.setdefault("name", e.id)
        if "on_timeout" in body:
            act = self.action(body["on_timeout"], f"'on_timeout' of {what}")
            if act:
                got["on_timeout"] = act
        if "callback" in body:
            cb = self._callback(body["callback"], f"'callback' of {what}")
            if cb:
                got["callback"] = cb
        tiers: list[m.Tier] = []
        if "tiers" in body:
            per_level: dict[int, int] = {}
            seen: dict[str, Source] = {}
            for item in r.seq(body["tiers"], f"'tiers' of {what}"):
                t = self._tier(item, f"a tier of {what}", per_level)
                if t is None:
                    continue
                if t.agent in seen:
                    r.error(t.src, f"agent '{t.agent}' has two tiers in {what} (first at line "
                                   f"{seen[t.agent].line}).")
                    continue
                seen[t.agent] = t.src
                tiers.append(t)
        skills: list[m.SkillRequirement] = []
        if "skills" in body:
            snode = body["skills"]
            for skill, lnode in r.entries(snode, f"'skills' of {what}").items():
                lvl = r.integer(lnode, f"minimum level of skill '{skill}' in {what}", 1, 10)
                if lvl is not _BAD:
                    skills.append(m.SkillRequirement(skill, lvl, snode.keys[skill]))
        if tiers and skills:
            r.error(body["skills"].src, f"{what} lists both tiers and skills; give explicit "
                                        f"tiers or required skills, not both.")
        elif not tiers and not skills:
            r.error(e.src, f"{what} has no agents: give 'tiers' or required 'skills'.")
        return m.Queue(id=e.id, tiers=tuple(tiers), skills=tuple(skills), src=e.src, **got)

    def _queue_extension(self, queue_id: str, node: YNode, what: str) -> Any:
        """Plain digits only: desk phones transfer callers to it, and * / # start feature codes."""
        value = self.r.text(node, what)
        if value is _BAD:
            return _BAD
        if not re.fullmatch(r"[0-9]{1,10}", value):
            self.r.error(node.src, f"{what} is '{value}', but it must be 1 to 10 digits (0-9).")
            return _BAD
        # where the number was written, for the uniqueness check in _check_tenant
        self.queue_ext_src[queue_id] = node.src
        return value

    def _callback(self, node: YNode, what: str) -> m.CallbackOffer | None:
        r = self.r
        if node.kind == "scalar" and isinstance(node.value, bool):
            return m.CallbackOffer(enabled=node.value)
        body = r.mapping(node, what, ("enabled", "after_s", "exit_key", "prompt"))
        if body is None:
            return None
        got = self._fields(body, what, {
            "enabled": r.boolean, "after_s": lambda n, w: r.integer(n, w, 0, 86400),
            "exit_key": lambda n, w: r.digits(n, w, 1), "prompt": self._sound})
        got.setdefault("enabled", True)
        return m.CallbackOffer(**got)

    def _sound(self, node: YNode, what: str) -> Any:
        """A sound path or URL that is handed to an API command as one argument."""
        value = self.r.text(node, what)
        if value is _BAD:
            return _BAD
        if not value or any(c.isspace() for c in value):
            self.r.error(node.src, f"{what} is '{value}', but a sound path must be one word "
                                   "(no spaces).")
            return _BAD
        return value

    def _tier(self, node: YNode, what: str, per_level: dict[int, int]) -> m.Tier | None:
        r = self.r
        if node.kind == "scalar" and not node.is_null:  # "- 1001": level 1, next position
            agent = r.text(node, what)
            if agent is _BAD:
                return None
            per_level[1] = per_level.get(1, 0) + 1
            return m.Tier(agent, 1, per_level[1], node.src)
        body = r.mapping(node, what, ("agent", "level", "position"), ("agent",))
        if body is None:
            return None
        got = self._fields(body, what, {"agent": r.text,
                                        "level": lambda n, w: r.integer(n, w, 1, 99),
                                        "position": lambda n, w: r.integer(n, w, 1, 999)})
        if "agent" not in got:
            return None
        level = got.get("level", 1)
        per_level[level] = per_level.get(level, 0) + 1
        return m.Tier(got["agent"], level, got.get("position", per_level[level]), node.src)

    # ---- agents -------------------------------------------------------------------------
    def _agent(self, e: _Entry) -> m.Agent | None:
        r = self.r
        what = f"agent '{e.id}'"
        if r.ident(YNode("scalar", e.src, e.id, raw=e.id), "agent id") is _BAD:
            return None

        def delay(n: YNode, w: str) -> Any:
            return r.integer(n, w, 0, 3600)

        simple: dict[str, Callable[[YNode, str], Any]] = {
            "name": r.text, "extension": lambda n, w: r.digits(n, w, 10),
            "password": r.secret, "team": r.text,
            "wrap_up_s": delay, "max_no_answer": lambda n, w: r.integer(n, w, 0, 100),
            "no_answer_delay_s": delay, "reject_delay_s": delay, "busy_delay_s": delay,
            "ring_timeout_s": lambda n, w: r.integer(n, w, 1, 600),
            "pin": lambda n, w: self._pin(n, w), "start_date": r.date, "end_date": r.date,
        }
        body = r.mapping(e.node, what, tuple(simple) + ("skills", "shifts"), ("password",))
        if body is None:
            return None
        got = self._fields(body, what, simple)
        skills: list[tuple[str, int]] = []
        if "skills" in body:
            snode = body["skills"]
            for skill, lnode in r.entries(snode, f"'skills' of {what}").items():
                lvl = r.integer(lnode, f"level of skill '{skill}' of {what}", 1, 10)
                if lvl is not _BAD:
                    skills.append((skill, lvl))
        shifts: list[m.Shift] = []
        if "shifts" in body:
            weekly = self._weekly(body["shifts"], f"'shifts' of {what}")
            for day, ranges in enumerate(weekly or ()):
                for rg in ranges:
                    # rosters repeat the same few shifts thousands of times: share them
                    key = (day, rg.start, rg.end)
                    shift = _SHIFTS.get(key)
                    if shift is None:
                        shift = _SHIFTS[key] = m.Shift(day, rg.start, rg.end)
                    shifts.append(shift)
        start, end = got.get("start_date"), got.get("end_date")
        if start and end and end < start:
            r.error(body["end_date"].src, f"'end_date' of {what} ({end}) is before its "
                                          f"start_date ({start}).")
        if "extension" not in body and not e.id.isdigit():
            r.error(e.src, f"{what} needs an 'extension' (its desk phone's number), because its "
                           f"id is not a number.")
            return None
        if "password" not in got:
            return None
        got.setdefault("name", e.id)
        got.setdefault("extension", e.id)
        return m.Agent(id=e.id, skills=tuple(sorted(skills)), shifts=tuple(shifts), src=e.src,
                       **got)

    def _pin(self, node: YNode, what: str) -> Any:
        value = self.r.secret(node, what)
        if value is not _BAD and not re.fullmatch(r"[0-9]{1,12}", value):
            self.r.error(node.src, f"{what} must be 1 to 12 digits.")
            return _BAD
        return value

    # ---- conferences, break reasons, dispositions, costs --------------------------------
    def _conference(self, e: _Entry) -> m.Conference | None:
        r = self.r
        what = f"conference room '{e.id}'"
        if r.digits(YNode("scalar", e.src, e.id, raw=e.id), "conference room number",
                    10) is _BAD:
            return None
        simple: dict[str, Callable[[YNode, str], Any]] = {
            "name": r.text, "profile": r.ident, "pin": self._pin, "moderator_pin": self._pin,
            "max_members": lambda n, w: r.integer(n, w, 0, 10000), "record": r.boolean}
        body = r.mapping(e.node, what, tuple(simple))
        if body is None:
            return None
        got = self._fields(body, what, simple)
        got.setdefault("name", e.id)
        return m.Conference(room=e.id, src=e.src, **got)

    def _break(self, e: _Entry) -> m.BreakReason | None:
        what = f"break reason {e.id}"
        d = self.r.digits(YNode("scalar", e.src, e.id, raw=e.id), "break reason digit", 1)
        name = self.r.text(e.node, f"the name of {what}")
        if d is _BAD or name is _BAD:
            return None
        return m.BreakReason(d, name, e.src)

    def _disposition(self, e: _Entry) -> m.Disposition | None:
        r = self.r
        what = f"disposition {e.id}"
        code = r.digits(YNode("scalar", e.src, e.id, raw=e.id), "disposition code", 4)
        if e.node.kind == "scalar":
            name = r.text(e.node, f"the name of {what}")
            resolved: Any = False
        else:
            body = r.mapping(e.node, what, ("name", "resolved"), ("name",))
            if body is None:
                return None
            got = self._fields(body, what, {"name": r.text, "resolved": r.boolean})
            name, resolved = got.get("name", _BAD), got.get("resolved", False)
        if code is _BAD or name is _BAD:
            return None
        return m.Disposition(code, name, resolved, e.src)

    def _route(self, e: _Entry) -> m.OutboundRoute | None:
        r = self.r
        what = f"outbound route '{e.id}'"
        if r.ident(YNode("scalar", e.src, e.id, raw=e.id), "outbound route name") is _BAD:
            return None
        simple: dict[str, Callable[[YNode, str], Any]] = {
            "pattern": self._regex, "gateway": r.ident, "dial_string": self._dial_string,
            "prefix": self._dial_prefix, "caller_id_number": r.phone_number,
            "caller_id_name": self._caller_name}
        body = r.mapping(e.node, what, tuple(simple))
        if body is None:
            return None
        got = self._fields(body, what, simple)
        if len(got) < len(body):  # a field was refused (said so already)
            return None
        if ("gateway" in got) == ("dial_string" in got):
            r.error(e.src, f"{what} needs either a 'gateway' (sofia/gateway/<name>/<number>) "
                           f"or a 'dial_string' with {{number}}, not "
                           f"{'both' if 'gateway' in got else 'neither'}.")
            return None
        return m.OutboundRoute(name=e.id, src=e.src, **got)

    def _regex(self, node: YNode, what: str) -> Any:
        pat = self.r.text(node, what)
        if pat is _BAD:
            return _BAD
        try:
            re.compile(pat)
        except re.error as exc:
            self.r.error(node.src, f"{what} '{pat}' is not a valid regular expression: "
                                   f"{exc.msg}.")
            return _BAD
        return pat

    def _dial_string(self, node: YNode, what: str) -> Any:
        value = self.r.text(node, what)
        if value is _BAD:
            return _BAD
        if "{number}" not in value or any(c.isspace() or c in "{}," for c in
                                          value.replace("{number}", "")):
            self.r.error(node.src, f"{what} is '{value}', but it must be one FreeSWITCH "
                                   "endpoint with {number} where the number goes (e.g. "
                                   "sofia/internal/{number}@10.0.0.5), without spaces, "
                                   "commas or other braces.")
            return _BAD
        return value

    def _dial_prefix(self, node: YNode, what: str) -> Any:
        value = self.r.text(node, what)
        if value is not _BAD and not re.fullmatch(r"\+?[0-9*#]{0,16}", value):
            self.r.error(node.src, f"{what} is '{value}', but it must be up to 16 digits "
                                   "(0-9, * or #), optionally after a '+'.")
            return _BAD
        return value

    def _caller_name(self, node: YNode, what: str) -> Any:
        value = self.r.text(node, what)
        # it goes into an originate variables block and a dialplan set: keep it one plain value
        if value is not _BAD and (not value or any(c in value for c in ",{}'\"\n\r")):
            self.r.error(node.src, f"{what} is '{value}', but it must not be empty nor hold "
                                   "commas, braces, quotes or line breaks.")
            return _BAD
        return value

    def _costs(self) -> tuple[m.Cost, ...]:
        r = self.r
        out: list[m.Cost] = []
        for node in self.lists["costs"]:
            what = f"a cost of {self.what}"
            body = r.mapping(node, what, ("month", "from", "to", "amount", "currency"),
                             ("amount",))
            if body is None:
                continue
            got = self._fields(body, what, {"from": r.date, "to": r.date,
                                            "amount": lambda n, w: r.number(n, w, 0.0),
                                            "currency": r.text})
            first = last = None
            if "month" in body:
                raw = body["month"].raw if body["month"].kind == "scalar" else ""
                match = re.fullmatch(r"(\d{4})-(\d{2})", raw)
                if not match or not 1 <= int(match.group(2)) <= 12:
                    r.error(body["month"].src, f"'month' of {what} must look like 2026-11.")
                    continue
                year, month = int(match.group(1)), int(match.group(2))
                first = dt.date(year, month, 1)
                last = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1))
                if "from" in body or "to" in body:
                    r.error(node.src, f"{what} has 'month' and 'from'/'to'; give one.")
                    continue
            elif "from" in got and "to" in got:
                first, last = got["from"], got["to"]
            else:
                if "from" not in body or "to" not in body:
                    r.error(node.src, f"{what} needs a 'month', or 'from' and 'to'.")
                continue
            if last < first:
                r.error(node.src, f"{what} ends ({last}) before it starts ({first}).")
                continue
            if "amount" not in got:
                continue
            out.append(m.Cost(first, last, got["amount"], got.get("currency", "CNY"), node.src))
        out.sort(key=lambda c: c.first)
        for a, b in zip(out, out[1:]):
            if b.first <= a.last:
                r.error(b.src, f"cost period {b.first} to {b.last} overlaps the period "
                               f"{a.first} to {a.last} of {self.what}.")
        return tuple(out)

    def _feature_codes(self, node: YNode, what: str) -> Any:
        r = self.r
        body = r.mapping(node, what, tuple(FEATURE_KEYS))
        if body is None:
            return _BAD
        got: dict[str, Any] = {}
        self.feature_src: dict[str, Source] = {}
        for key, vnode in body.items():
            code = r.digits(vnode, f"feature code '{key}'", 8)
            if code is not _BAD:
                got[FEATURE_KEYS[key]] = code
                self.feature_src[key] = vnode.src
        return m.FeatureCodes(**got)

    # ---- numbers -------------------------------------------------------------------------
    def _number(self, e: _Entry) -> m.Number | None:
        r = self.r
        what = f"number {e.id}"
        if r.phone_number(YNode("scalar", e.src, e.id, raw=e.id), "number") is _BAD:
            return None
        body = r.mapping(e.node, what, ("name", "rules"), ("rules",))
        if body is None:
            return None
        name = r.text(body["name"], f"'name' of {what}") if "name" in body else e.id
        rules: list[m.Rule] = []
        for i, item in enumerate(r.seq(body.get("rules", YNode("seq", e.src, [])),
                                       f"'rules' of {what}"), 1):
            rule = self._rule(item, f"rule {i} of {what}", i)
            if rule:
                rules.append(rule)
        if "rules" in body and body["rules"].kind == "seq" and not body["rules"].value:
            r.error(body["rules"].src, f"{what} has no rules, so no call to it can go anywhere.")
        self._unreachable_rules(rules, what)
        return m.Number(e.id, e.id if name is _BAD else name, tuple(rules), e.src)

    def _unreachable_rules(self, rules: list[m.Rule], what: str) -> None:
        """Rules that can never match contradict what the engineer meant: report the first."""
        seen: dict[tuple[str | None, str | None, tuple[str, ...]], m.Rule] = {}
        covered: dict[str, dict[str, m.Rule]] = {}  # schedule → {"open"/"closed": rule}
        for i, rule in enumerate(rules):
            key = (rule.schedule, rule.when, rule.callers)
            if key in seen:
                r_first = seen[key]
                self.r.error(rule.src, f"rule '{rule.name}' of {what} can never match, because "
                                       f"rule '{r_first.name}' before it has the same "
                                       f"conditions.")
                return
            seen[key] = rule
            if rule.schedule is not None and not rule.callers:
                covered.setdefault(rule.schedule, {})[rule.when or "open"] = rule
            both = next((v for v in covered.values() if len(v) == 2), None)
            always = rule.schedule is None and not rule.callers
            if (always or both) and i + 1 < len(rules):
                later = rules[i + 1]
                why = (f"rule '{rule.name}' before it has no conditions and always matches"
                       if always else f"rules '{both['open'].name}' and '{both['closed'].name}' "
                                      f"before it cover both open and closed hours of schedule "
                                      f"'{both['open'].schedule}'")
                self.r.error(later.src, f"rule '{later.name}' of {what} can never match, because "
                                        f"{why}.")
                return

    def _rule(self, node: YNode, what: str, index: int) -> m.Rule | None:
        r = self.r
        body = r.mapping(node, what, ("name", "schedule", "when", "callers", "action"),
                         ("action",))
        if body is None:
            return None
        got = self._fields(body, what, {"name": r.text, "schedule": r.text,
                                        "when": lambda n, w: r.choice(n, w, ("open", "closed"))})
        name = got.get("name", f"rule {index}")
        callers: list[str] = []
        if "callers" in body:
            cnode = body["callers"]
            items = cnode.value if cnode.kind == "seq" else [cnode]
            for item in items:
                pat = r.text(item, f"a caller pattern of {what}")
                if pat is _BAD:
                    continue
                try:
                    re.compile(pat)
                except re.error as exc:
                    r.error(item.src, f"caller pattern '{pat}' of {what} is not a valid regular "
                                      f"expression: {exc.msg}.")
                    continue
                callers.append(pat)
        if "when" in got and "schedule" not in body:
            r.error(body["when"].src, f"{what} says when: {got['when']} but names no schedule.")
        when = got.get("when", "open") if "schedule" in got else None
        act = self.action(body["action"], f"the action of {what}") if "action" in body else None
        if act is None:
            return None
        return m.Rule(name, act, got.get("schedule"), when, tuple(callers), node.src)


# ---- cross references --------------------------------------------------------------------
def _check_tenant(r: _Reader, t: m.Tenant, b: _TenantBuilder, *,
                  codes_known: bool = True) -> None:
    tw = f"tenant '{t.id}'"
    queues = {q.id: q for q in t.queues}
    menus = {x.name: x for x in t.ivr_menus}
    agents = {a.id: a for a in t.agents}
    rooms = {c.room: c for c in t.conferences}
    skills = {s.id for s in t.skills}
    teams = {x.id for x in t.teams}
    schedules = {s.name for s in t.schedules}
    # ids that were written but did not build (already reported) must not cause "unknown" noise
    written = {k: set(v) for k, v in b.coll.items()}

    def ref(src: Source, what: str, kind: str, name: str, known: Iterable[str],
            coll: str) -> None:
        if name in known or name in written[coll] or coll in b.broken:
            return
        if b.unread_text is not None and (name in b.unread_text or "\0" in b.unread_text):
            return  # it may be defined in the file that could not be read
        r.error(src, f"{what} refers to {kind} '{name}', which {tw} does not define"
                     f"{suggest(name, known)}")

    def check_action(a: m.Action | None, what: str) -> None:
        if a is None:
            return
        k = a.kind
        if k in (ActionKind.QUEUE, ActionKind.CALLBACK) or (k == ActionKind.SURVEY and a.target):
            ref(a.src, what, "queue", a.target or "", queues, "queues")
        elif k == ActionKind.IVR:
            ref(a.src, what, "IVR menu", a.target or "", menus, "ivr_menus")
        elif k == ActionKind.AGENT:
            ref(a.src, what, "agent", a.target or "", agents, "agents")
        elif k == ActionKind.CONFERENCE:
            ref(a.src, what, "conference room", a.target or "", rooms, "conferences")

    for n in t.numbers:
        for rule in n.rules:
            what = f"rule '{rule.name}' of number {n.did}"
            if rule.schedule is not None:
                ref(rule.src, what, "schedule", rule.schedule, schedules, "schedules")
            check_action(rule.action, what)
    for menu in t.ivr_menus:
        for opt in menu.options:
            check_action(opt.action, f"option {opt.digits} of IVR menu '{menu.name}'")
        check_action(menu.on_failure, f"'on_failure' of IVR menu '{menu.name}'")
    for team in t.teams:
        if team.supervisor is not None:
            ref(team.src, f"team '{team.id}'", "agent", team.supervisor, agents, "agents")
    for a in t.agents:
        if a.team is not None:
            ref(a.src, f"agent '{a.id}'", "team", a.team, teams, "teams")
        for skill, _ in a.skills:
            ref(a.src, f"agent '{a.id}'", "skill", skill, skills, "skills")
    best_level: dict[str, int] = {}
    for a in t.agents:
        for skill, level in a.skills:
            best_level[skill] = max(level, best_level.get(skill, 0))
    for q in t.queues:
        qw = f"queue '{q.id}'"
        check_action(q.on_timeout, f"'on_timeout' of {qw}")
        for tier in q.tiers:
            ref(tier.src, f"a tier of {qw}", "agent", tier.agent, agents, "agents")
        for req in q.skills:
            if req.skill not in skills:
                ref(req.src, qw, "skill", req.skill, skills, "skills")
                continue
            if b.unread_text is None and best_level.get(req.skill, 0) < req.min_level:
                r.error(req.src, f"{qw} requires skill '{req.skill}' at level {req.min_level} "
                                 f"or more, but no agent of {tw} has it.")
        if q.callback.enabled and q.max_wait_s and q.callback.after_s >= q.max_wait_s:
            r.error(q.src, f"{qw} offers a callback after {q.callback.after_s} s but callers "
                           f"leave after max_wait_s {q.max_wait_s} s.")
    check_campaigns(r, t, ref)
    # numbers the switch dials inside the context: extensions, rooms, feature codes
    dialable: dict[str, tuple[str, Source]] = {}

    def claim(number: str, what: str, src: Source) -> None:
        if number in dialable:
            other, osrc = dialable[number]
            r.error(src, f"{what} uses {number}, which is already {other} "
                         f"({osrc.file}:{osrc.line}).")
        else:
            dialable[number] = (what, src)

    for a in t.agents:
        claim(a.extension, f"the extension of agent '{a.id}'", a.src)
    for q in t.queues:
        if q.extension is not None:
            claim(q.extension, f"the extension of queue '{q.id}'",
                  b.queue_ext_src.get(q.id, q.src))
    for c in t.conferences:
        claim(c.room, f"conference room {c.room}", c.src)
    for n in t.numbers:
        claim(n.did, f"number {n.did}", n.src)
    codes = {key: getattr(t.feature_codes, attr) for key, attr in FEATURE_KEYS.items()}
    code_src = getattr(b, "feature_src", {})
    default_src = b.single["feature_codes"].src if "feature_codes" in b.single else t.src
    if not codes_known:  # the feature_codes block is wrong (reported): no guesses from it
        return
    for key, code in codes.items():
        src = code_src.get(key, default_src)
        claim(code, f"feature code '{key}'", src)
    for key, code in codes.items():
        if key not in FEATURE_WITH_SUFFIX:
            continue
        for other, ocode in codes.items():
            if other != key and ocode != code and ocode.startswith(code):
                r.error(code_src.get(other, default_src),
                        f"feature code '{other}' ({ocode}) starts with feature code '{key}' "
                        f"({code}), which takes digits after it, so {ocode} is ambiguous.")


def _check_center(r: _Reader, tenants: list[m.Tenant]) -> None:
    agent_home: dict[str, tuple[m.Tenant, m.Agent]] = {}
    did_home: dict[str, tuple[m.Tenant, m.Number]] = {}
    domain_home: dict[str, m.Tenant] = {}
    for t in tenants:
        if not t.domain:  # a tenant whose domain could not be read
            pass
        elif t.domain in domain_home:
            first = domain_home[t.domain]
            r.error(t.src, f"tenant '{t.id}' uses domain {t.domain}, which tenant '{first.id}' "
                           f"already uses ({first.src.file}:{first.src.line}).")
        else:
            domain_home[t.domain] = t
        for a in t.agents:
            if a.id in agent_home:
                ft, fa = agent_home[a.id]
                r.error(a.src, f"agent '{a.id}' is in tenant '{t.id}' and in tenant '{ft.id}' "
                               f"({fa.src.file}:{fa.src.line}); an agent belongs to one tenant.")
            else:
                agent_home[a.id] = (t, a)
        for n in t.numbers:
            if n.did in did_home:
                ft, fn = did_home[n.did]
                r.error(n.src, f"number {n.did} is in tenant '{t.id}' and in tenant '{ft.id}' "
                               f"({fn.src.file}:{fn.src.line}); a number belongs to one tenant.")
            else:
                did_home[n.did] = (t, n)


# ---- files -------------------------------------------------------------------------------
@dataclass
class Tree:
    """The parsed files of a config directory."""

    files: list[tuple[Path, YNode]]
    errors: list[ConfigError]
    unreadable: int = 0  # files that could not be used at all (their errors are in errors)
    unread_text: str = ""  # the raw text of those files: which names they may define


def read_tree(path: str | Path) -> Tree:
    """Parse every file of a config directory; file-level problems come back as errors."""
    root = Path(path)
    if not root.exists():
        return Tree([], [ConfigError(str(root), 0, 0, "the configuration directory does not "
                                                      "exist.")])
    files = config_files(root)
    if not files:
        return Tree([], [ConfigError(str(root), 0, 0, "the configuration directory has no "
                                                      ".yaml or .yml files.")])
    out = Tree([], [])
    for file in files:
        try:
            tree, errs = load_yaml(file, str(file))
        except YamlFileError as exc:
            out.errors.append(exc.error)
            out.unreadable += 1
            out.unread_text += _raw_text(file)
            continue
        out.errors.extend(errs)
        if tree is not None:
            out.files.append((file, tree))
    return out


def _raw_text(file: Path) -> str:
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            return "\0"  # too big to tell: every name may be in it
        return file.read_bytes().decode("utf-8", "replace") + "\n"
    except OSError:
        return "\0"


TOP_KEYS = ("tenants", "settings")


def load_center(path: str | Path, env: Mapping[str, str] | None = None) -> m.CallCenter:
    """Load and validate a config directory (or one file).

    Raises ``ConfigErrors`` listing every problem. ``env`` (default ``os.environ``) resolves
    ``${VAR}`` references in secrets. The garbage collector is paused meanwhile: loading
    builds a big acyclic tree, and collector passes over it cost a quarter of the time.
    """
    with paused_gc():
        return _load_center(path, os.environ if env is None else env)


def _load_center(path: str | Path, env: Mapping[str, str]) -> m.CallCenter:
    r = _Reader(env)
    parsed = read_tree(path)
    trees = parsed.files
    r.errors.extend(parsed.errors)
    parts: dict[str, list[tuple[YNode, Source]]] = {}
    settings_nodes: list[YNode] = []
    for file, tree in trees:
        top = r.mapping(tree, f"the top level of {file.name}", TOP_KEYS)
        if top is None:
            continue
        if "settings" in top:
            settings_nodes.append(top["settings"])
        if "tenants" in top:
            tnode = top["tenants"]
            for tid, body in r.entries(tnode, "'tenants'").items():
                parts.setdefault(tid, []).append((body, tnode.keys[tid]))
    if settings_nodes:
        r.errors.extend(check_settings_nodes(settings_nodes, r.env, in_config_dir=True))
    if not parts and not r.errors:
        if trees:
            r.error(trees[0][1].src, "no tenant is defined: add a top-level 'tenants:' mapping.")
        else:  # only empty files
            r.errors.append(ConfigError(str(path), 0, 0, "no tenant is defined: the YAML files "
                                                         "are empty."))
    unreadable = parsed.unreadable > 0
    tenants: list[m.Tenant] = []
    read: list[m.Tenant] = []  # and the tenants that could not be built, as far as read
    for tid, tparts in parts.items():
        builder = _TenantBuilder(r, tid, tparts)
        builder.unread_text = parsed.unread_text if unreadable else None
        tenant = builder.build()
        if tenant is not None:
            tenants.append(tenant)
        if (tenant or builder.provisional) is not None:
            read.append(tenant or builder.provisional)
    _check_center(r, read)
    if r.errors:
        raise ConfigErrors(r.errors)
    center = m.CallCenter(tuple(tenants))
    logger.info("loaded %d tenants from %s", len(tenants), path)
    return center


@dataclass(frozen=True)
class CenterSummary:
    tenants: int
    numbers: int
    ivr_menus: int
    queues: int
    agents: int
    conferences: int

    def sentence(self) -> str:
        return (f"{self.tenants} tenants, {self.numbers} numbers, {self.ivr_menus} IVR menus, "
                f"{self.queues} queues, {self.agents} agents, {self.conferences} conference rooms")


def summarize(center: m.CallCenter) -> CenterSummary:
    ts = center.tenants
    return CenterSummary(len(ts), sum(len(t.numbers) for t in ts),
                         sum(len(t.ivr_menus) for t in ts), sum(len(t.queues) for t in ts),
                         sum(len(t.agents) for t in ts), sum(len(t.conferences) for t in ts))


@dataclass(frozen=True)
class Validation:
    """What ``hotline validate`` reports: the summary, or every error."""

    path: str
    summary: CenterSummary | None
    errors: tuple[ConfigError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "path": self.path,
            "summary": None if self.summary is None else vars(self.summary),
            "errors": [{"file": e.file, "line": e.line, "column": e.column,
                        "message": e.message, "text": str(e)} for e in self.errors],
        }


def validate(path: str | Path, env: Mapping[str, str] | None = None) -> Validation:
    """Load ``path`` and report the outcome instead of raising."""
    try:
        center = load_center(path, env)
    except ConfigErrors as exc:
        return Validation(str(path), None, tuple(exc.errors))
    return Validation(str(path), summarize(center), ())
