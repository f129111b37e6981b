"""Supervisor feature codes: listen (*33), whisper (*34), barge (*35) + agent id.

The agent's current call leg is ``callcenter_config agent get uuid <agent>``
(set by mod_callcenter for the length of the bridge). ``eavesdrop <uuid>`` puts a
media bug on that leg (switch_ivr_eavesdrop_session, switch_ivr_async.c):
``eavesdrop_whisper_aleg`` mixes the supervisor into what the switch *reads* from the
agent's phone, i.e. what the caller hears; ``eavesdrop_whisper_bleg`` mixes it into
what the switch *writes* to the agent's phone, i.e. what the agent hears. So

    listen  : hear both, nobody hears the supervisor
    whisper : eavesdrop_whisper_bleg=true - only the agent hears the supervisor
    barge   : whisper to both - a three-way call

DTMF stays enabled during eavesdrop (stock keys: 2 talk to agent, 1 talk to
caller, 3 three-way, 0 back to listening).
"""
from __future__ import annotations

from . import callcenter as cc
from .common import DIGIT_TIMEOUT_MS, DIGIT_TRIES, finish, load_tenant, phone_user
from .prompts import play, prompt
from .session import Session

MODES: dict[str, tuple[bool, bool]] = {  # mode -> (whisper to agent, whisper to caller)
    "listen": (False, False),
    "whisper": (True, False),  # to the agent = the agent leg's write side (whisper_bleg)
    "barge": (True, True),
}


def supervise(s: Session, args: str) -> None:
    parts = args.split()
    mode = parts[0].lower() if parts else ""
    target = parts[1] if len(parts) > 1 else ""
    s.answer()
    if mode not in MODES:
        s.log("err", f"supervise: unknown mode {mode!r} (listen|whisper|barge)")
        finish(s, "failed")
        return
    tenant = load_tenant(s)
    if tenant is None:
        return
    me = phone_user(s)
    if tenant.supervisors is not None and me not in tenant.supervisors:
        s.log("warning", f"supervise: {me}@{tenant.domain} is not a supervisor")
        finish(s, "failed")
        return
    agent = tenant.agent_by_id(target) if target else None
    tries = DIGIT_TRIES
    if target and agent is None:
        tries -= 1
        play(s, "invalid")
    while agent is None and tries > 0 and s.ready():
        tries -= 1
        got = s.collect(prompt(s, "enter_agent"), 1, 10, DIGIT_TIMEOUT_MS, "#")
        agent = tenant.agent_by_id(got) if got else None
        if agent is None and s.ready():
            play(s, "invalid")
    if agent is None:
        s.log("warning", f"supervise: no valid agent id from {me}@{tenant.domain}")
        finish(s, "failed")
        return
    name = tenant.qualified(agent.id)
    leg = cc.value(s.api(cc.get("uuid", name)))
    if not leg or s.api(f"uuid_exists {leg}").strip() != "true":
        s.log("info", f"supervise: {name} is not on a call")
        finish(s, "failed")
        return
    to_agent, to_caller = MODES[mode]
    s.set("eavesdrop_enable_dtmf", "true")
    s.set("eavesdrop_bridge_aleg", "true")
    s.set("eavesdrop_bridge_bleg", "true")
    # the bug sits on the agent's leg: its read side goes to the caller (aleg), its write
    # side to the agent's phone (bleg)
    s.set("eavesdrop_whisper_aleg", "true" if to_caller else "false")
    s.set("eavesdrop_whisper_bleg", "true" if to_agent else "false")
    s.log("notice", f"supervise: {me}@{tenant.domain} {mode} on {name} ({leg})")
    s.execute("eavesdrop", leg)
    if s.ready():
        s.hangup()
