"""The call-center model: what the YAML describes, as frozen typed objects.

Loading (``daemon.definition.config``) builds these once; everything downstream (render,
trace, reload, KPIs, fs_scripts data) reads only these objects, never raw dicts.
Every object that came from YAML carries ``src`` so later checks can still point
at file:line:column.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import Enum


@dataclass(frozen=True, order=True)
class Source:
    """Where a YAML node was written (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


NOWHERE = Source("<built-in>", 0, 0)


class ActionKind(str, Enum):
    IVR = "ivr"
    QUEUE = "queue"
    AGENT = "agent"
    EXTENSION = "extension"
    VOICEMAIL = "voicemail"
    CONFERENCE = "conference"
    PLAYBACK = "playback"  # play a prompt, then hang up
    TRANSFER = "transfer"  # to an external number
    CALLBACK = "callback"  # take a callback request
    SURVEY = "survey"
    HANGUP = "hangup"
    SCHEDULE = "schedule"  # not user-facing: reserved


@dataclass(frozen=True)
class Action:
    """Where a call goes next. ``target`` names the menu/queue/agent/room/number."""

    kind: ActionKind
    target: str | None = None
    prompt: str | None = None  # playback / voicemail greeting / hangup announcement
    # YAML forms (daemon/config.py): {queue: id}, {ivr: menu}, {agent: id}, {extension: n},
    # {voicemail: box}, {conference: room}, {transfer: +number}, {callback: queue},
    # {survey: queue|null}, {playback: sound} (sound in ``prompt``, target None, then hang up),
    # hangup / {hangup: CAUSE} (cause in ``target``); an optional ``prompt:`` key is played first.
    src: Source = NOWHERE


@dataclass(frozen=True)
class TimeRange:
    start: dt.time
    end: dt.time  # exclusive; 24:00 is written as dt.time.max

    def contains(self, t: dt.time) -> bool:
        return self.start <= t < self.end if self.end != dt.time.max else self.start <= t


@dataclass(frozen=True)
class Closure:
    """A holiday or closure: whole days from ``first`` to ``last`` inclusive."""

    name: str
    first: dt.date
    last: dt.date
    src: Source = NOWHERE


@dataclass(frozen=True)
class DateException:
    """A one-off day with its own hours (e.g. a make-up working Saturday); no ranges = closed."""

    date: dt.date
    hours: tuple[TimeRange, ...]
    name: str = ""
    src: Source = NOWHERE


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Schedule:
    """Business hours: weekly ranges (index 0 = Monday), closures, one-off exceptions."""

    name: str
    weekly: tuple[tuple[TimeRange, ...], ...]  # 7 entries
    closures: tuple[Closure, ...] = ()
    exceptions: tuple[DateException, ...] = ()
    src: Source = NOWHERE


@dataclass(frozen=True)
class Rule:
    """One entry rule of a number: the first rule whose conditions all hold decides.

    ``schedule`` + ``when``: "open" (inside the schedule's hours) or "closed".
    ``callers``: caller-number patterns (FreeSWITCH/perl regex or prefixes as written).
    A rule with no conditions always matches (the default).
    """

    name: str
    action: Action
    schedule: str | None = None
    when: str | None = None  # "open" | "closed"
    callers: tuple[str, ...] = ()
    src: Source = NOWHERE


@dataclass(frozen=True)
class Number:
    """A DID and its entry flow."""

    did: str
    name: str
    rules: tuple[Rule, ...]
    src: Source = NOWHERE


@dataclass(frozen=True)
class IvrOption:
    digits: str
    action: Action
    src: Source = NOWHERE


@dataclass(frozen=True)
class IvrMenu:
    name: str
    greet_long: str
    greet_short: str
    invalid_sound: str
    exit_sound: str
    timeout_ms: int = 10000
    inter_digit_timeout_ms: int = 2000
    max_failures: int = 3
    max_timeouts: int = 3
    digit_len: int = 1
    direct_extension_dialing: bool = False
    options: tuple[IvrOption, ...] = ()
    on_failure: Action | None = None  # where the caller goes after max failures/timeouts
    src: Source = NOWHERE


STRATEGIES = (
    "ring-all",
    "longest-idle-agent",
    "round-robin",
    "top-down",
    "agent-with-least-talk-time",
    "agent-with-fewest-calls",
    "sequentially-by-agent-order",
    "random",
    "ring-progressively",
)


@dataclass(frozen=True)
class Tier:
    agent: str  # agent id, unqualified (e.g. "1001")
    level: int = 1
    position: int = 1
    src: Source = NOWHERE


@dataclass(frozen=True)
class SkillRequirement:
    skill: str
    min_level: int = 1
    src: Source = NOWHERE


@dataclass(frozen=True)
class CallbackOffer:
    enabled: bool = False
    after_s: int = 90  # offered once the caller has waited this long
    exit_key: str = "*"
    # played to the waiting caller at after_s, the moment the key is honoured ("press * ...")
    prompt: str | None = None


@dataclass(frozen=True)
class Queue:
    id: str  # unqualified, e.g. "billing"; FreeSWITCH name is f"{id}@{tenant.domain}"
    name: str
    strategy: str = "longest-idle-agent"
    moh_sound: str = "local_stream://moh"
    announce_sound: str | None = None
    announce_frequency_s: int = 0
    max_wait_s: int = 0  # 0 = forever
    max_wait_no_agent_s: int = 0
    max_wait_no_agent_time_reached_s: int = 5
    tier_rules_apply: bool = False
    tier_rule_wait_second: int = 300
    tier_rule_wait_multiply_level: bool = True
    tier_rule_no_agent_no_wait: bool = False
    time_base_score: str = "system"
    discard_abandoned_after_s: int = 60
    abandoned_resume_allowed: bool = False
    record: bool = False
    record_template: str | None = None
    # Hotline's own
    service_level_s: int = 20
    service_level_target_pct: float = 80.0
    short_abandon_s: int = 20
    ring_cycle_s: int = 6
    fcr_window_h: int = 72
    on_timeout: Action | None = None  # fallback after max wait / no agents
    announce_agent_id: bool = False
    survey: bool = False
    callback: CallbackOffer = field(default_factory=CallbackOffer)
    tiers: tuple[Tier, ...] = ()  # explicit tiers
    skills: tuple[SkillRequirement, ...] = ()  # skills-based: tiers generated from agents
    src: Source = NOWHERE
    # optional dialable number of the queue's entry (desk phones transfer callers to it);
    # render always also gives the queue the named entry hotline-queue-<id>
    extension: str | None = None


@dataclass(frozen=True)
class Shift:
    weekday: int  # 0 = Monday
    start: dt.time
    end: dt.time


@dataclass(frozen=True)
class Agent:
    id: str  # unqualified, e.g. "1001"; FreeSWITCH name is f"{id}@{tenant.domain}"
    name: str
    extension: str  # the SIP desk phone's directory user
    password: str  # resolved secret (from ${ENV}); never logged
    team: str | None = None
    skills: tuple[tuple[str, int], ...] = ()  # (skill, level 1-10), sorted by skill
    wrap_up_s: int = 10
    max_no_answer: int = 3
    no_answer_delay_s: int = 10
    reject_delay_s: int = 10
    busy_delay_s: int = 60
    ring_timeout_s: int = 15  # leg_timeout of the contact
    pin: str | None = None  # optional desk-phone login PIN
    start_date: dt.date | None = None  # roster
    end_date: dt.date | None = None
    shifts: tuple[Shift, ...] = ()
    src: Source = NOWHERE


@dataclass(frozen=True)
class Team:
    id: str
    name: str
    supervisor: str | None = None  # agent id
    src: Source = NOWHERE


@dataclass(frozen=True)
class Skill:
    id: str
    name: str
    src: Source = NOWHERE


@dataclass(frozen=True)
class Conference:
    room: str  # the extension callers dial, also the room name's user part
    name: str
    profile: str = "default"
    pin: str | None = None
    moderator_pin: str | None = None
    max_members: int = 0  # 0 = unlimited
    record: bool = False
    src: Source = NOWHERE


@dataclass(frozen=True)
class BreakReason:
    digit: str
    name: str
    src: Source = NOWHERE


@dataclass(frozen=True)
class Disposition:
    code: str  # the digits an agent enters
    name: str
    resolved: bool = False  # counts as resolved for first-call resolution
    src: Source = NOWHERE


@dataclass(frozen=True)
class FeatureCodes:
    """Keypad codes dialed from the desk phone (defaults follow common FreeSWITCH practice)."""

    login: str = "*22"
    logout: str = "*23"
    toggle: str = "*24"
    break_: str = "*25"  # followed by the reason digit, e.g. *251
    ready: str = "*26"
    end_wrapup: str = "*27"
    disposition: str = "*28"  # followed by the disposition code
    eavesdrop: str = "*33"  # followed by the agent id
    whisper: str = "*34"
    barge: str = "*35"


@dataclass(frozen=True)
class Cost:
    first: dt.date
    last: dt.date
    amount: float
    currency: str = "CNY"
    src: Source = NOWHERE


WEBHOOK_EVENTS = ("call.offered", "call.answered", "call.ended", "call.abandoned",
                  "callback.requested", "survey.completed", "agent.status_changed")


@dataclass(frozen=True)
class WebhookSubscription:
    """Where a tenant's business systems want to hear about its calls (docs/WEBHOOKS.md)."""

    name: str  # unique within the tenant; the outbox keys deliveries by tenant/name
    url: str
    events: tuple[str, ...]  # among WEBHOOK_EVENTS
    secret: str  # resolved from ${ENV}; signs every request; never logged
    concurrency: int = 4  # requests in flight to this URL at most
    timeout_s: float = 5.0  # per request
    dead_letter_after_s: int = 3 * 24 * 3600  # undelivered this long after the event: dead
    src: Source = NOWHERE

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"WebhookSubscription(name={self.name!r}, url={self.url!r}, events={self.events!r})"


@dataclass(frozen=True)
class CrmLookup:
    """A tenant's CRM asked who a caller is (daemon/integrations/crm.py)."""

    url: str  # with {number}: the caller's E.164 number, URL-encoded
    token: str | None = None  # sent as a bearer token; resolved from ${ENV}; never logged
    timeout_ms: int = 300
    cache_ttl_s: int = 300
    breaker_failures: int = 5
    breaker_open_s: int = 30
    src: Source = NOWHERE

    def __repr__(self) -> str:
        return f"CrmLookup(url={self.url!r}, timeout_ms={self.timeout_ms})"


@dataclass(frozen=True)
class SmsTemplate:
    event: str  # a webhook event type among daemon.integrations.sms.SMS_EVENTS
    text: str  # with {variables}
    src: Source = NOWHERE


@dataclass(frozen=True)
class SmsConfig:
    """A tenant's SMS to callers (docs/SMS.md)."""

    templates: tuple[SmsTemplate, ...]
    sender: str | None = None
    rate_limit_per_day: int = 3  # messages to one number in 24 hours at most
    max_segments: int = 2
    src: Source = NOWHERE

    def template(self, event: str) -> SmsTemplate | None:
        return next((t for t in self.templates if t.event == event), None)


@dataclass(frozen=True)
class SmsGateway:
    """The generic HTTP SMS gateway of the settings (docs/SMS.md)."""

    url: str
    method: str = "POST"
    body: str = '{"to": "{to}", "text": "{text}", "from": "{sender}"}'
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()  # e.g. Authorization from ${ENV}; never logged
    timeout_s: float = 5.0
    concurrency: int = 4

    def __repr__(self) -> str:
        return f"SmsGateway(url={self.url!r}, method={self.method!r})"


@dataclass(frozen=True)
class Tenant:
    id: str
    domain: str  # FreeSWITCH domain and dialplan context
    timezone: str
    language: str = "en"
    numbers: tuple[Number, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    ivr_menus: tuple[IvrMenu, ...] = ()
    queues: tuple[Queue, ...] = ()
    agents: tuple[Agent, ...] = ()
    teams: tuple[Team, ...] = ()
    skills: tuple[Skill, ...] = ()
    conferences: tuple[Conference, ...] = ()
    feature_codes: FeatureCodes = field(default_factory=FeatureCodes)
    break_reasons: tuple[BreakReason, ...] = ()
    dispositions: tuple[Disposition, ...] = ()
    costs: tuple[Cost, ...] = ()
    src: Source = NOWHERE
    name: str = ""  # display name (defaults to the id when loaded from YAML)
    webhooks: tuple[WebhookSubscription, ...] = ()  # daemon/integrations/webhooks.py
    country: str | None = None  # ISO 3166 region callers' numbers are read in, e.g. "CN"
    screen_pop: bool = False  # name callers on the agents' phones (integrations/screenpop.py)
    crm_lookup: CrmLookup | None = None  # asked when the directory does not know a caller
    sms: SmsConfig | None = None  # texts to callers (daemon/integrations/sms.py)
    outbound_routes: tuple["OutboundRoute", ...] = ()  # in priority order

    def outbound_route(self, number: str) -> "OutboundRoute | None":
        """The first route that takes ``number`` (None: the tenant cannot call it)."""
        return next((r for r in self.outbound_routes if r.matches(number)), None)

    # outbound campaigns (daemon.definition.campaigns.Campaign; typed loosely here so the
    # model does not import the module that reads them)
    campaigns: tuple = ()

    def campaign(self, campaign_id: str):  # -> Campaign | None
        return next((c for c in self.campaigns if c.id == campaign_id), None)

    def queue(self, queue_id: str) -> Queue | None:
        return next((q for q in self.queues if q.id == queue_id), None)

    def agent(self, agent_id: str) -> Agent | None:
        return next((a for a in self.agents if a.id == agent_id), None)

    def qualified(self, local_id: str) -> str:
        """``billing`` → ``billing@domain`` (mod_callcenter's queue/agent names)."""
        return f"{local_id}@{self.domain}"


@dataclass(frozen=True)
class OutboundRoute:
    """A way out of the tenant for numbers matching ``pattern`` (first matching route wins).

    The endpoint is ``sofia/gateway/<gateway>/<prefix><number>``, or ``dial_string`` with
    ``{number}`` replaced by ``<prefix><number>`` (any FreeSWITCH endpoint, e.g.
    ``sofia/internal/{number}@10.0.0.5``). Used by the rendered tenant context (transfer
    actions, desk phones dialing out) and by the callback dialer for the customer's leg.
    """

    name: str
    pattern: str = r"^\+?[0-9]+$"  # a regular expression the dialed number must match
    gateway: str | None = None
    dial_string: str | None = None
    prefix: str = ""
    caller_id_number: str | None = None
    caller_id_name: str | None = None
    src: Source = NOWHERE

    def matches(self, number: str) -> bool:
        import re

        return re.search(self.pattern, number) is not None

    def endpoint(self, number: str) -> str:
        """The dial string for ``number`` (no variables block)."""
        dialed = f"{self.prefix}{number}"
        if self.dial_string is not None:
            return self.dial_string.replace("{number}", dialed)
        return f"sofia/gateway/{self.gateway}/{dialed}"


@dataclass(frozen=True)
class EslNode:
    name: str
    host: str = "127.0.0.1"
    port: int = 8021
    password: str = "ClueCon"  # never logged

    def __repr__(self) -> str:  # keep the password out of logs and tracebacks
        return f"EslNode(name={self.name!r}, host={self.host!r}, port={self.port})"


@dataclass(frozen=True)
class WebUser:
    """A login of the web console and API (settings ``http_users``).

    ``secret`` is a hash (``scrypt$...`` / ``pbkdf2_sha256$...``, made by ``hotline web
    hash-secret``) or the plain secret read from a ``${ENV}`` reference, never a literal.
    ``tenant`` None = every tenant; otherwise the one tenant id this login sees.
    """

    name: str
    secret: str
    role: str = "viewer"  # admin | supervisor | viewer
    tenant: str | None = None


@dataclass(frozen=True)
class Settings:
    config_dir: str = "config"
    database_url: str = "sqlite:///hotline.db"
    redis_url: str | None = None
    esl_nodes: tuple[EslNode, ...] = (EslNode("local"),)
    journal_dir: str = "journal"
    journal_max_bytes: int = 64 * 1024 * 1024
    freeswitch_conf_dir: str = "/etc/freeswitch"
    # the switch's $${script_dir} (Debian packages' default): the desk-phone scripts and
    # their data file, the one place they read it from
    freeswitch_script_dir: str = "/usr/share/freeswitch/scripts"
    http_listen: str = "127.0.0.1:8089"
    journal_compress: bool = True  # gzip a journal file once it is rotated
    # several daemons for the same switches: only the holder of the lease (Redis, else a
    # PostgreSQL advisory lock) writes; off, the one daemon always writes (docs/SCALE.md)
    leader_election: bool = False
    journal_retention_days: int = 90  # journal files older than this are deleted; 0 = keep all
    summary_interval_s: float = 60.0  # the daemon's one-line summary in the log; 0 = off
    sms_gateway: SmsGateway | None = None  # where SMS are sent (docs/SMS.md)
    # the web console and API (docs/WEB.md): who may log in; TLS when not behind a proxy
    http_users: tuple[WebUser, ...] = ()
    http_tls_cert: str | None = None
    http_tls_key: str | None = None
    http_session_minutes: int = 60  # idle time after which a console login expires
    retention_months: int = 0  # calls/segments older than this many months dropped; 0 = keep
    rollup_interval_s: float = 60.0  # how often the leader rolls up changed 15-minute buckets
    # rendered as callcenter.conf's odbc-dsn: mod_callcenter's tables shared by every node
    callcenter_odbc_dsn: str | None = None


@dataclass(frozen=True)
class CallCenter:
    """The whole model: every tenant of one config directory."""

    tenants: tuple[Tenant, ...]

    def tenant(self, tenant_id: str) -> Tenant | None:
        return next((t for t in self.tenants if t.id == tenant_id), None)

    def tenant_by_domain(self, domain: str) -> Tenant | None:
        return next((t for t in self.tenants if t.domain == domain), None)
