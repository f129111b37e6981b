"""Call-center models built directly from the dataclasses (no YAML), for render/trace tests.

``city_center()`` mirrors the example's shape: a utility hotline in Asia/Shanghai with
lunch break, Saturday mornings, holidays, a 24/7 emergency queue, part-time agents on a
higher tier, survey, agent-id announcement and callback; plus the small ``demo`` tenant
that is exactly the capture switch (hotline.test, DID 4008001234, menu hotline_main).
"""
from __future__ import annotations

import datetime as dt

from daemon.definition.model import (
    Action,
    ActionKind,
    Agent,
    BreakReason,
    CallbackOffer,
    CallCenter,
    Closure,
    Conference,
    DateException,
    Disposition,
    IvrMenu,
    IvrOption,
    Number,
    Queue,
    Rule,
    Schedule,
    Shift,
    Skill,
    SkillRequirement,
    Team,
    Tenant,
    Tier,
    TimeRange,
)

T = dt.time


def hours(*spans: tuple[str, str]) -> tuple[TimeRange, ...]:
    def parse(s: str) -> dt.time:
        if s == "24:00":
            return dt.time.max
        h, m = s.split(":")
        return dt.time(int(h), int(m))

    return tuple(TimeRange(parse(a), parse(b)) for a, b in spans)


def act(kind: str, target: str | None = None, prompt: str | None = None) -> Action:
    return Action(ActionKind(kind), target, prompt)


WEEKDAY = hours(("08:30", "12:00"), ("13:30", "17:30"))
BUSINESS = Schedule(
    name="business",
    weekly=(WEEKDAY, WEEKDAY, WEEKDAY, WEEKDAY, WEEKDAY, hours(("09:00", "12:00")), ()),
    closures=(
        Closure("National Day", dt.date(2026, 10, 1), dt.date(2026, 10, 7)),
        Closure("New Year", dt.date(2026, 12, 31), dt.date(2027, 1, 2)),
    ),
    exceptions=(
        DateException(dt.date(2026, 10, 10), WEEKDAY, "National Day make-up Saturday"),
        DateException(dt.date(2026, 11, 27), (), "staff training day"),
    ),
)


def _agent(aid: str, name: str, team: str, skills: dict[str, int], **kw: object) -> Agent:
    return Agent(id=aid, name=name, extension=aid, password=f"pw-{aid}", team=team,
                 skills=tuple(sorted(skills.items())), **kw)  # type: ignore[arg-type]


WEEK_SHIFT = tuple(Shift(d, T(8, 0), T(18, 0)) for d in range(5)) + (Shift(5, T(8, 30), T(12, 30)),)


def city_tenant() -> Tenant:
    agents = (
        _agent("1001", "Li Wei", "billing", {"billing": 9, "gas": 5}, pin="1234",
               wrap_up_s=30, shifts=WEEK_SHIFT),
        _agent("1002", "Wang Fang", "billing", {"billing": 8}, shifts=WEEK_SHIFT),
        _agent("1003", "Zhang Min", "billing", {"billing": 6, "new_connection": 7},
               shifts=WEEK_SHIFT),
        _agent("1004", "Liu Yang", "billing", {"billing": 9}, shifts=WEEK_SHIFT),
        _agent("1005", "Chen Jie", "outage", {"outage": 9, "gas": 8}),
        _agent("1006", "Yang Lei", "outage", {"outage": 8, "water": 9}),
        _agent("1007", "Zhao Jing", "outage", {"outage": 7, "water": 7}),
        _agent("1008", "Huang Tao", "outage", {"outage": 6}),
        _agent("1009", "Zhou Xin", "sales", {"new_connection": 9, "billing": 5},
               shifts=WEEK_SHIFT),
        _agent("1010", "Wu Hao", "sales", {"new_connection": 8}, shifts=WEEK_SHIFT,
               start_date=dt.date(2026, 12, 1)),
        # part-time: lower skill levels -> higher tier levels, reached after 60 s
        _agent("1011", "Xu Na (part-time)", "billing", {"billing": 4},
               shifts=(Shift(0, T(13, 0), T(17, 0)), Shift(2, T(13, 0), T(17, 0)))),
        _agent("1012", "Sun Li (part-time)", "billing", {"billing": 3},
               end_date=dt.date(2026, 6, 30)),
    )
    queues = (
        Queue(id="billing", name="Billing & payments", strategy="longest-idle-agent",
              tier_rules_apply=True, tier_rule_wait_second=60,
              tier_rule_wait_multiply_level=False, tier_rule_no_agent_no_wait=True,
              max_wait_s=600,
              skills=(SkillRequirement("billing", 3),), announce_agent_id=True, survey=True,
              callback=CallbackOffer(True, 90, "*"),
              on_timeout=act("voicemail", "8000", "sounds/city/leave-message.wav")),
        Queue(id="emergency", name="Emergency outage (24/7)", strategy="ring-all",
              tiers=(Tier("1005", 1, 1), Tier("1006", 1, 2), Tier("1007", 2, 1),
                     Tier("1008", 2, 2)),
              announce_agent_id=True),
        Queue(id="new_connection", name="New connections", strategy="top-down",
              skills=(SkillRequirement("new_connection", 5),), record=True,
              on_timeout=act("queue", "operator")),
        Queue(id="operator", name="Operator", strategy="round-robin",
              tiers=(Tier("1002", 1, 1), Tier("1009", 1, 2)), max_wait_s=300,
              on_timeout=act("playback", None, "sounds/city/call-back-later.wav")),
    )
    menus = (
        IvrMenu("main", greet_long="sounds/city/main-long.wav",
                greet_short="sounds/city/main-short.wav",
                invalid_sound="ivr/ivr-that_was_an_invalid_entry.wav",
                exit_sound="voicemail/vm-goodbye.wav", max_failures=3, max_timeouts=2,
                options=(IvrOption("1", act("ivr", "billing_menu")),
                         IvrOption("2", act("queue", "emergency")),
                         IvrOption("3", act("queue", "new_connection")),
                         IvrOption("0", act("queue", "operator"))),
                on_failure=act("queue", "operator")),
        IvrMenu("billing_menu", greet_long="sounds/city/billing-long.wav",
                greet_short="sounds/city/billing-short.wav",
                invalid_sound="ivr/ivr-that_was_an_invalid_entry.wav",
                exit_sound="voicemail/vm-goodbye.wav",
                options=(IvrOption("1", act("queue", "billing")),
                         IvrOption("2", act("playback", None, "sounds/city/balance-info.wav")),
                         IvrOption("9", act("ivr", "main"))),
                on_failure=act("hangup")),
        IvrMenu("after_hours", greet_long="sounds/city/closed-long.wav",
                greet_short="sounds/city/closed-short.wav",
                invalid_sound="ivr/ivr-that_was_an_invalid_entry.wav",
                exit_sound="voicemail/vm-goodbye.wav", max_timeouts=1,
                options=(IvrOption("1", act("queue", "emergency")),
                         IvrOption("2", act("voicemail", "8000"))),
                on_failure=act("hangup", "NORMAL_CLEARING", "sounds/city/goodbye.wav")),
    )
    numbers = (
        Number("4001234567", "City utility hotline", (
            Rule("blocked", act("hangup", "CALL_REJECTED"), callers=(r"^1380000000\d$",)),
            Rule("open", act("ivr", "main"), schedule="business", when="open"),
            Rule("closed", act("ivr", "after_hours"), schedule="business", when="closed"),
        )),
        Number("4009110000", "Emergency line (24/7)", (
            Rule("always", act("queue", "emergency")),
        )),
    )
    return Tenant(
        id="cityutil", domain="cityutil.hotline.local", timezone="Asia/Shanghai",
        language="zh", numbers=numbers, schedules=(BUSINESS,), ivr_menus=menus,
        queues=queues, agents=agents,
        teams=(Team("billing", "Billing", "1001"), Team("outage", "Outage", "1005"),
               Team("sales", "Connections", "1009")),
        skills=tuple(Skill(s, s) for s in ("billing", "gas", "new_connection", "outage",
                                           "water")),
        conferences=(Conference("3001", "Supervisors & <leads>", "hotline", pin="1234",
                                moderator_pin="4321", max_members=10, record=True),),
        break_reasons=(BreakReason("1", "lunch"), BreakReason("2", "training"),
                       BreakReason("3", "meeting")),
        dispositions=(Disposition("1", "resolved", True), Disposition("2", "callback needed"),
                      Disposition("3", "complaint")),
    )


def demo_tenant() -> Tenant:
    """Exactly the capture switch (../shared/esl-captures/switch-config)."""
    tone = "tone_stream://%(600,0,300)"
    agents = tuple(Agent(id=str(n), name=f"Agent {n}", extension=str(n), password="1234",
                         wrap_up_s=w, ring_timeout_s=10 if n == 1005 else 5)
                   for n, w in ((1001, 3), (1002, 4), (1003, 5), (1004, 4), (1005, 3),
                                (1006, 3)))
    queues = (
        Queue(id="billing", name="Billing", tiers=tuple(
            Tier(a, 1, i) for i, a in enumerate(("1001", "1002", "1003", "1005", "1006"), 1))
            + (Tier("1004", 2, 1),)),
        Queue(id="outage", name="Outage", strategy="ring-all",
              tiers=(Tier("1003", 1, 1), Tier("1004", 1, 2), Tier("1001", 2, 1),
                     Tier("1002", 2, 2))),
        Queue(id="sales", name="Sales", max_wait_s=8, tiers=(Tier("1004", 1, 1),),
              on_timeout=act("playback", None,
                             "tone_stream://%(800,200,480,620);%(800,200,480,620)")),
    )
    menu = IvrMenu(
        "hotline_main",
        greet_long="tone_stream://%(400,200,523);%(400,200,659);%(400,200,784);%(400,1000,1047)",
        greet_short="tone_stream://%(400,200,784);%(400,600,1047)",
        invalid_sound="tone_stream://%(250,100,300);%(250,100,300)", exit_sound=tone,
        timeout_ms=6000, max_failures=2, max_timeouts=2,
        options=(IvrOption("1", act("queue", "billing")), IvrOption("2", act("queue", "outage")),
                 IvrOption("3", act("queue", "sales"))))
    return Tenant(
        id="demo", domain="hotline.test", timezone="Asia/Shanghai",
        numbers=(Number("4008001234", "Demo hotline", (Rule("always", act("ivr", "hotline_main")),)),),
        ivr_menus=(menu,), queues=queues, agents=agents,
        conferences=(Conference("3001", "Demo room", "hotline"),),
    )


def city_center() -> CallCenter:
    return CallCenter((city_tenant(), demo_tenant()))
