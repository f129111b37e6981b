"""Caller-side features: post-call survey, callback request, agent-id announcement.

Survey and callback run in two ways:

* after ``callcenter`` (the queue's exit dispatcher): each returns at once (doing
  nothing) when it does not apply, so the dialplan goes on to the queue's fallback:

      callcenter → hotline_survey (only if cc_cause=answered)
                 → hotline_callback (only if the caller pressed a cc_exit_keys key)
                 → fallback (timeout / no agent)

* as an action of their own (an IVR menu option, a number rule, a queue's
  ``on_timeout``): the dialplan sets ``hotline_callback_request=true`` (survey:
  ``hotline_survey_request=true``, or a channel that never met ``callcenter``), and
  the script runs, then hangs up.
"""
from __future__ import annotations

import re

from . import callcenter as cc
from .common import EVENT_CALLBACK, EVENT_SURVEY, LAST_CALL_REALM, fire, qualify, tenant_domain
from .prompts import digit_files, play, prompt
from .session import Session

CALLBACK_REQUEST_VAR = "hotline_callback_request"
SURVEY_REQUEST_VAR = "hotline_survey_request"

SURVEY_TRIES = 3
SURVEY_TIMEOUT_MS = 6000
SCORES = ("1", "2", "3", "4", "5")

CALLBACK_TRIES = 3
CALLBACK_CONFIRM_TIMEOUT_MS = 6000
CALLBACK_ENTER_TIMEOUT_MS = 10000
_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")



def _flag(s: Session, name: str) -> bool:
    return (s.get(name) or "").strip().lower() == "true"


def _queue_arg(args: str) -> str:
    # The dialplan may pass ${hotline_queue}; a variable left unexpanded is no queue name.
    given = args.strip()
    return "" if "${" in given else given


def survey_applies(s: Session) -> bool:
    """Whether this run is a survey: after an answered queue call, or one asked for.

    * ``cc_cause=answered``: the agent hung up on a queue call (the exit dispatcher).
    * ``hotline_survey_request=true``: a survey action (menu option, number rule).
    * no ``cc_cause`` at all: this channel never went through ``callcenter``, so the
      script was not chained after a queue - a survey action on a plain call.
    Any other ``cc_cause`` (timeout, cancel...) without the flag: the caller left a
    queue unanswered and the script was chained after it; nothing to rate.
    """
    if _flag(s, SURVEY_REQUEST_VAR):
        return True
    cause = (s.get("cc_cause") or "").strip()
    return cause in ("", "answered")


def survey(s: Session, args: str) -> None:
    """Ask the caller for 1-5, fire ``hotline::survey``, hang up.

    Runs after an answered queue call, or as a survey action of its own (see
    ``survey_applies``); the queue is ARGS, else ``cc_queue``, else
    ``hotline_queue``, the agent ``cc_agent``; a header whose value the channel does
    not have is left out.
    No valid key after the tries (or the caller hangs up during it) still fires
    the event, without Hotline-Score: the survey was offered, not answered.
    """
    if not s.ready() or not survey_applies(s):
        return  # not answered by an agent (or caller gone): the dialplan goes on
    call_id = s.get("uuid") or ""
    agent = s.get("cc_agent") or ""
    queue = qualify(_queue_arg(args) or s.get("cc_queue") or s.get("hotline_queue") or "",
                    tenant_domain(s))
    score: str | None = None
    play(s, "survey")
    for _ in range(SURVEY_TRIES):
        if not s.ready():
            break
        got = s.collect(prompt(s, "survey_digit"), 1, 1, SURVEY_TIMEOUT_MS, "")
        if got in SCORES:
            score = got
            break
        if not s.ready():
            break
        play(s, "invalid")
    headers = {"Hotline-Call-ID": call_id}
    # a survey action on a call that met no queue/agent: leave those headers out (not "")
    if queue:
        headers["Hotline-Queue"] = queue
    if agent:
        headers["Hotline-Agent"] = agent
    if score is not None:
        headers["Hotline-Score"] = score
    fire(s, EVENT_SURVEY, headers)
    if s.ready():
        play(s, "thanks")
        play(s, "goodbye")
        s.hangup()


def _read_back(s: Session, number: str) -> None:
    play(s, "callback_number_is")
    for path in digit_files(number):
        s.play(path)


def confirm_number(s: Session, default: str) -> str | None:
    """The number to call back, confirmed with 1 (2 = enter another); None = gave up."""
    candidate: str | None = default if _NUMBER.match(default or "") else None
    for _ in range(CALLBACK_TRIES):
        if not s.ready():
            return None
        if candidate is None:
            got = s.collect(prompt(s, "callback_enter"), 3, 20, CALLBACK_ENTER_TIMEOUT_MS, "#")
            if not _NUMBER.match(got):
                if not s.ready():
                    return None
                play(s, "invalid")
                continue
            candidate = got
        _read_back(s, candidate)
        choice = s.collect(prompt(s, "callback_confirm"), 1, 1, CALLBACK_CONFIRM_TIMEOUT_MS, "")
        if choice == "1":
            return candidate
        if choice == "2":
            candidate = None
            continue
        if not s.ready():
            return None
        play(s, "invalid")
    return None


def switch_now_ms(s: Session) -> int:
    """Now in epoch ms on the switch's clock (``strmicroepoch``, the clock of
    Event-Date-Timestamp); the host clock when the API gives no number."""
    reply = (s.api("strmicroepoch") or "").strip()
    if reply.isdigit():
        return int(reply) // 1000
    return int(s.now() * 1000)


def _joined_ms(s: Session, queue: str, requested: bool) -> int:
    """The place the callback keeps: when the caller joined the queue.

    Exit key: ``cc_queue_joined_epoch`` of the queue just left. Requested by an
    action: the moment of the request - unless the caller has just waited in that
    very queue (its ``on_timeout`` offers the callback), who keeps the queue's place.
    """
    joined = (s.get("cc_queue_joined_epoch") or "").strip()
    same_queue = (s.get("cc_queue") or "") == queue
    if joined.isdigit() and (not requested or same_queue):
        return int(joined) * 1000
    return switch_now_ms(s)


EXIT_KEY_REASONS = ("EXIT_WITH_KEY",)


def left_with_exit_key(s: Session) -> bool:
    """Whether ``callcenter`` just gave the caller back because of an exit key.

    mod_callcenter (1.10, callcenter_function) sets ``cc_exit_key`` when the key ends
    the wait, then ``cc_cause=cancel`` and ``cc_cancel_reason=EXIT_WITH_KEY``
    (CC_MEMBER_CANCEL_REASON_EXIT_WITH_KEY). It never clears ``cc_exit_key``: a key
    pressed in an earlier queue stays on the channel, so a later queue's timeout
    (``TIMEOUT``), abandon (``BREAK_OUT``) or answered call must not read it as a
    callback request.
    """
    if not s.get("cc_exit_key"):
        return False
    cause = (s.get("cc_cause") or "").strip().lower()
    reason = (s.get("cc_cancel_reason") or "").strip().upper()
    return cause == "cancel" and reason in EXIT_KEY_REASONS


def callback(s: Session, args: str) -> None:
    """Confirm a number to call back, fire the request, thank and hang up.

    Two ways in:

    * the caller left the queue with the exit key (``left_with_exit_key``). Without a
      confirmed number nothing is fired and the script returns without hanging up:
      the dialplan goes on to the queue's fallback.
    * a callback action (menu option, number rule, queue ``on_timeout``): the
      dialplan sets ``hotline_callback_request=true``. Without a confirmed number
      the caller hears goodbye and the call ends (nothing is fired).

    Fires ``hotline::callback`` (Hotline-Action=request) with Hotline-Joined-MS (see
    ``_joined_ms``), so the daemon's dialer keeps the caller's place.
    """
    requested = _flag(s, CALLBACK_REQUEST_VAR)
    if not s.ready() or not (requested or left_with_exit_key(s)):
        return  # not a callback request: the dialplan goes on
    call_id = s.get("uuid") or ""
    # ARGS names the queue; else the queue just left (exit key) / the one the action set
    order = ("hotline_queue", "cc_queue") if requested else ("cc_queue", "hotline_queue")
    queue = qualify(_queue_arg(args) or s.get(order[0]) or s.get(order[1]) or "",
                    tenant_domain(s))
    joined_ms = _joined_ms(s, queue, requested)
    number = confirm_number(s, (s.get("caller_id_number") or "").strip())
    if number is None:
        s.log("info", f"{call_id}: callback request abandoned (no confirmed number)")
        if requested and s.ready():
            play(s, "goodbye")
            s.hangup()
        return
    fire(s, EVENT_CALLBACK, {
        "Hotline-Call-ID": call_id,
        "Hotline-Queue": queue,
        "Hotline-Number": number,
        "Hotline-Joined-MS": str(joined_ms),
        "Hotline-Action": "request",
    })
    if s.ready():
        play(s, "callback_registered")
        play(s, "goodbye")
        s.hangup()


def announce(s: Session, args: str) -> None:
    """On the caller's leg, inside the bridge to the agent who answered a queue call.

    The queue extension sets ``bridge_pre_execute_app=python`` /
    ``bridge_pre_execute_data=hotline_announce`` on the caller's leg; FreeSWITCH's bridge
    (switch_ivr_bridge.c, audio_bridge_thread) runs it once the bridge is up, so the
    agent's phone is bridged the moment it answers and ring/wait times stay exact. While
    it runs the two legs do not hear each other (the bridge suspends the agent's side).

    1. Runs once per queue bridge: a later bridge of the same call (a transfer to a desk
       phone) must not announce the old agent again.
    2. Deletes the call's callback key tasks (``sched_del <call>``) when the queue armed
       them: a key offer must not fire into the conversation.
    3. Remembers the call for ``*28``: ``hash insert/hotline_last_call/<agent>/<call id>``.
    4. Unless ``hotline_announce_agent=false``, plays "agent <id>" to the caller (this
       channel: only the caller hears it).

    The agent is read from the agent's leg (``cc_agent_uuid``, set by mod_callcenter
    before the bridge; that leg carries ``cc_agent``); the caller's own ``cc_agent`` is set
    just after the bridge starts and may still name the agent of an earlier queue.
    """
    call = s.get("uuid") or ""
    s.set("bridge_pre_execute_app", "")
    if s.get("hotline_callback_task"):
        s.api(f"sched_del {call}")
    agent = ""
    agent_leg = (s.get("cc_agent_uuid") or "").strip()
    if agent_leg:
        reply = s.api(f"uuid_getvar {agent_leg} cc_agent").strip()
        if "@" in reply and not cc.failed(reply):
            agent = reply
    agent = agent or (s.get("cc_agent") or "").strip()
    if not agent or not call:
        s.log("warning", f"announce: no agent ({agent!r}) on call {call!r}")
        return
    reply = s.api(f"hash insert/{LAST_CALL_REALM}/{agent}/{call}")
    if cc.failed(reply):
        s.log("err", f"announce: cannot remember the last call of {agent}: {reply.strip()}")
    if (s.get("hotline_announce_agent") or "").strip().lower() == "false" or not s.ready():
        return
    parts = [prompt(s, "announce_pre"), *digit_files(agent.split("@")[0]),
             prompt(s, "announce_post")]
    s.play("file_string://" + "!".join(p for p in parts if p))
