"""Agent features dialed from the desk phone: login, logout, toggle, break, ready,
end wrap-up early, disposition code.

Each one answers, identifies the agent from the phone's SIP user, fires
``hotline::agent`` BEFORE changing anything with ``callcenter_config`` (so the
daemon attaches the reason to the status interval that follows), confirms with a
prompt or tone and hangs up.
"""
from __future__ import annotations

from . import callcenter as cc
from .common import (EVENT_AGENT, EVENT_DISPOSITION, LAST_CALL_REALM, Desk, api_ok, check_pin,
                     choose, finish, fire, identify)
from .session import Session


def _agent_event(s: Session, desk: Desk, action: str, reason: str | None = None) -> None:
    headers = {"Hotline-Agent": desk.name, "Hotline-Action": action}
    if reason:
        headers["Hotline-Reason"] = reason
    fire(s, EVENT_AGENT, headers)


def _make_available(s: Session, desk: Desk, action: str, confirm: str) -> None:
    _agent_event(s, desk, action)
    if not api_ok(s, cc.set_status(desk.name, cc.AVAILABLE)):
        finish(s, "failed")
        return
    # A status change does not touch the state; an agent left in Idle (e.g. after
    # 'Available (On Demand)') would never be offered a call. Never while on a call.
    if cc.state_of(s, desk.name) not in cc.BUSY_STATES:
        api_ok(s, cc.set_state(desk.name, cc.WAITING))
    finish(s, confirm)


def _logged_in(s: Session, desk: Desk) -> bool:
    """Break and ready are for logged-in agents only: ready must not bypass the login PIN."""
    status = cc.status_of(s, desk.name)
    if status is None:
        s.log("err", f"{desk.name}: mod_callcenter does not know this agent")
        return False
    if status == cc.LOGGED_OUT:
        s.log("info", f"{desk.name}: logged out - log in first")
        return False
    return True


def _login(s: Session, desk: Desk) -> None:
    if not check_pin(s, desk):
        finish(s, "failed")
        return
    _make_available(s, desk, "login", "logged_in")


def _logout(s: Session, desk: Desk) -> None:
    _agent_event(s, desk, "logout")
    if not api_ok(s, cc.set_status(desk.name, cc.LOGGED_OUT)):
        finish(s, "failed")
        return
    finish(s, "logged_out")


def login(s: Session, args: str) -> None:
    """*22: log in (PIN if configured) → Available, state Waiting."""
    s.answer()
    desk = identify(s)
    if desk:
        _login(s, desk)


def logout(s: Session, args: str) -> None:
    """*23: log out → 'Logged Out'."""
    s.answer()
    desk = identify(s)
    if desk:
        _logout(s, desk)


def toggle(s: Session, args: str) -> None:
    """*24: logged out → log in (as *22); otherwise log out (as *23)."""
    s.answer()
    desk = identify(s)
    if not desk:
        return
    status = cc.status_of(s, desk.name)
    if status is None:
        s.log("err", f"{desk.name}: mod_callcenter does not know this agent")
        finish(s, "failed")
    elif status == cc.LOGGED_OUT:
        _login(s, desk)
    else:
        _logout(s, desk)


def take_break(s: Session, args: str) -> None:
    """*25<digit>: go On Break with a reason (digit collected when not dialed).

    Logged-in agents only. A tenant without break reasons: ``*25`` alone is a break
    without a reason; ``*25<digit>`` is refused (failed tone, nothing changes) - the
    digit names no reason, as ``hotline agent break --reason`` refuses one.
    """
    s.answer()
    desk = identify(s)
    if not desk:
        return
    if not _logged_in(s, desk):
        finish(s, "failed")
        return
    reasons = desk.tenant.break_reasons
    reason: str | None = None
    if reasons:
        digit = choose(s, reasons, args.strip(), "enter_reason")
        if digit is None:
            s.log("warning", f"{desk.name}: no valid break reason entered")
            finish(s, "failed")
            return
        reason = reasons[digit]
    elif args.strip():
        s.log("warning", f"{desk.name}: break reason {args.strip()!r} dialed, but tenant "
                         f"{desk.tenant.domain} defines no break reasons (dial the break code "
                         "alone)")
        finish(s, "failed")
        return
    _agent_event(s, desk, "break", reason)
    if not api_ok(s, cc.set_status(desk.name, cc.ON_BREAK)):
        finish(s, "failed")
        return
    finish(s, "done")


def ready(s: Session, args: str) -> None:
    """*26: back from break → Available, state Waiting (logged-in agents only)."""
    s.answer()
    desk = identify(s)
    if not desk:
        return
    if not _logged_in(s, desk):
        finish(s, "failed")
        return
    _make_available(s, desk, "ready", "done")


def end_wrapup(s: Session, args: str) -> None:
    """*27: end the wrap-up after a call now.

    mod_callcenter offers the agent a call only when
    ``last_bridge_end < now - wrap_up_time``; the only knob is ``wrap_up_time``.
    So: schedule the configured value back for the moment the wrap-up would
    have ended anyway (``sched_api``), then set it to 0. Restoring earlier
    would put the agent back into wrap-up; restoring at the natural end cannot.
    """
    s.answer()
    desk = identify(s)
    if not desk:
        return
    row = cc.parse_agent_list(s.api(cc.agent_list(desk.name)))
    try:
        wrap_up = int(row["wrap_up_time"]) if row else -1
        last_end = int(row["last_bridge_end"]) if row else -1
    except (KeyError, ValueError):
        wrap_up = last_end = -1
    if wrap_up < 0:
        s.log("err", f"{desk.name}: cannot read wrap_up_time/last_bridge_end from agent list")
        finish(s, "failed")
        return
    elapsed = int(s.now()) - last_end
    if wrap_up == 0 or last_end <= 0 or elapsed > wrap_up:
        s.log("info", f"{desk.name}: not in wrap-up, nothing to end")
        finish(s, "done")
        return
    restore = cc.set_wrap_up(desk.name, wrap_up)
    if not api_ok(s, f"sched_api +{wrap_up - elapsed + 1} hotline_wrapup_{desk.name} {restore}"):
        finish(s, "failed")  # nothing changed: without the restore we must not zero it
        return
    _agent_event(s, desk, "end-wrapup")
    if not api_ok(s, cc.set_wrap_up(desk.name, 0)):
        finish(s, "failed")
        return
    finish(s, "done")


def last_call(s: Session, agent: str) -> str | None:
    """The call id (caller's leg uuid) of the agent's last queue call, or None."""
    got = cc.value(s.api(f"hash select/{LAST_CALL_REALM}/{agent}"))
    if got and got != "_undef_":
        return got
    # Still on the call (e.g. entered from a second line): ask the agent's leg.
    leg = cc.value(s.api(cc.get("uuid", agent)))
    if leg:
        got = cc.value(s.api(f"uuid_getvar {leg} cc_member_session_uuid"))
        if got and got != "_undef_":
            return got
    return None


def disposition(s: Session, args: str) -> None:
    """*28<code>: set the disposition code of the agent's last call."""
    s.answer()
    desk = identify(s)
    if not desk:
        return
    codes = desk.tenant.dispositions
    if not codes:
        s.log("err", f"tenant {desk.tenant.domain} has no disposition codes")
        finish(s, "failed")
        return
    call_id = last_call(s, desk.name)
    if call_id is None:
        s.log("warning", f"{desk.name}: no last call to put a disposition on")
        finish(s, "failed")
        return
    code = choose(s, codes, args.strip(), "enter_code")
    if code is None:
        s.log("warning", f"{desk.name}: no valid disposition code entered")
        finish(s, "failed")
        return
    fire(s, EVENT_DISPOSITION, {"Hotline-Call-ID": call_id, "Hotline-Agent": desk.name,
                                "Hotline-Code": code})
    finish(s, "done")
