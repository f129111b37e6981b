"""Shared steps: who is calling (tenant + agent of this phone), PINs, digit menus, API calls."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from . import callcenter as cc
from . import data
from .prompts import play, prompt
from .session import Session

EVENT_AGENT = "hotline::agent"
EVENT_DISPOSITION = "hotline::disposition"
EVENT_SURVEY = "hotline::survey"
EVENT_CALLBACK = "hotline::callback"

# mod_hash realm holding, per agent (qualified name), the call id of the last queue call
# the agent answered; written by hotline_announce on the agent leg at answer, read by *28.
# mod_callcenter itself forgets the call at bridge end (``agent get uuid`` is cleared).
LAST_CALL_REALM = "hotline_last_call"

PIN_TRIES = 3
DIGIT_TRIES = 2  # first prompt + one re-prompt, then give up
DIGIT_TIMEOUT_MS = 5000
PIN_MAX_DIGITS = 16

# The channel variables that name the SIP user of the phone, most trustworthy first:
# user_name is set by sofia from the authenticated directory user; the others are
# what the phone claims (From user, caller id).
PHONE_USER_VARS = ("user_name", "sip_from_user", "caller_id_number")


@dataclass(frozen=True)
class Desk:
    """The desk phone that dialed the feature code: its tenant and its agent."""

    tenant: data.TenantData
    agent: data.AgentRecord

    @property
    def name(self) -> str:
        """The mod_callcenter agent name, e.g. ``1001@hotline.test``."""
        return self.tenant.qualified(self.agent.id)


def finish(s: Session, key: str) -> None:
    """Confirm with a prompt/tone and hang up (the phone goes back on hook)."""
    if s.ready():
        play(s, key)
        s.hangup()


def phone_user(s: Session) -> str | None:
    for var in PHONE_USER_VARS:
        value = s.get(var)
        if value:
            return value
    return None


def tenant_domain(s: Session) -> str | None:
    return s.get("hotline_tenant") or s.get("domain_name")


def load_tenant(s: Session) -> data.TenantData | None:
    """This call's tenant from the data file; on failure logs, plays 'failed', hangs up."""
    domain = tenant_domain(s)
    path = data.DATA_FILE
    try:
        tenants = data.load(path)
    except data.DataError as exc:
        s.log("err", str(exc))
        finish(s, "failed")
        return None
    tenant = tenants.get(domain or "")
    if tenant is None:
        s.log("err", f"tenant {domain!r} is not in {path} (hotline_tenant/domain_name)")
        finish(s, "failed")
        return None
    return tenant


def identify(s: Session) -> Desk | None:
    """Find the agent sitting at this phone; on failure logs, plays 'failed', hangs up."""
    tenant = load_tenant(s)
    if tenant is None:
        return None
    user = phone_user(s)
    agent = tenant.agents.get(user) if user else None
    if agent is None:
        s.log("warning", f"phone {user}@{tenant.domain} is not an agent's desk phone")
        finish(s, "failed")
        return None
    return Desk(tenant, agent)


def check_pin(s: Session, desk: Desk) -> bool:
    """Ask for the agent's PIN (3 tries) when one is needed; True = go ahead.

    A PIN is asked when the agent has one, unless the dialplan sets
    ``hotline_agent_pin_required=false``. With ``=true`` an agent without a PIN
    is refused (the admin asked for PINs; this agent has none yet).
    """
    required = (s.get("hotline_agent_pin_required") or "").strip().lower()
    if required == "false":
        return True
    if desk.agent.pin is None:
        if required == "true":
            s.log("warning", f"{desk.name}: PIN required but none configured")
            return False
        return True
    for _ in range(PIN_TRIES):
        got = s.collect(prompt(s, "enter_pin"), 1, PIN_MAX_DIGITS, DIGIT_TIMEOUT_MS, "#")
        if got == desk.agent.pin:
            return True
        if not s.ready():
            return False
        play(s, "bad_pin")
    s.log("warning", f"{desk.name}: wrong PIN {PIN_TRIES} times")  # never log the digits
    return False


def choose(s: Session, table: Mapping[str, str], given: str, prompt_key: str) -> str | None:
    """A key of ``table``: ``given`` if valid, else collected (one re-prompt); None = gave up.

    An invalid ``given`` counts as the first try.
    """
    if given in table:
        return given
    tries = DIGIT_TRIES
    if given:
        tries -= 1
        play(s, "invalid")
    max_len = max((len(k) for k in table), default=1)
    for _ in range(tries):
        got = s.collect(prompt(s, prompt_key), 1, max_len, DIGIT_TIMEOUT_MS, "#")
        if got in table:
            return got
        if not s.ready():
            return None
        play(s, "invalid")
    return None


def api_ok(s: Session, command: str) -> bool:
    reply = s.api(command)
    if cc.failed(reply):
        s.log("err", f"{command!r} failed: {(reply or '').strip() or 'no reply'}")
        return False
    return True


def fire(s: Session, subclass: str, headers: Mapping[str, str]) -> None:
    if not s.fire(subclass, headers):
        s.log("err", f"could not fire {subclass} {dict(headers)}")


def qualify(name: str, domain: str | None) -> str:
    """``billing`` → ``billing@domain``; already qualified names stay as they are."""
    if not name or "@" in name or not domain:
        return name
    return f"{name}@{domain}"
