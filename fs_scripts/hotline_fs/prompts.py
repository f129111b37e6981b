"""What the scripts play: FreeSWITCH stock sounds (en-us-callie) and tone_stream cues.

Every prompt can be replaced per call with the channel variable
``hotline_prompt_<key>`` (e.g. a recorded "please rate our service, 1 to 5"
for ``hotline_prompt_survey``); render may set those per tenant/queue.

Tone language used on the desk phone:
    done    rising three-note chime      - the change was made
    invalid two short low beeps           - that key/code is not valid, try again
    failed  falling five-note cascade     - nothing was changed (not allowed / switch error)
    beep    one short high beep           - enter digits now
"""
from __future__ import annotations

from .session import Session

DONE = "tone_stream://%(200,0,500,600,700)"
INVALID = "tone_stream://%(250,100,300);%(250,100,300)"
FAILED = "tone_stream://%(500,0,300,200,100,50,25)"
BEEP = "tone_stream://%(150,0,880)"

DEFAULTS: dict[str, str] = {
    "logged_in": "ivr/ivr-you_are_now_logged_in.wav",
    "logged_out": "ivr/ivr-you_are_now_logged_out.wav",
    "enter_pin": "ivr/ivr-please_enter_pin_followed_by_pound.wav",
    "bad_pin": "voicemail/vm-fail_auth.wav",
    "invalid": "ivr/ivr-that_was_an_invalid_entry.wav",
    "done": DONE,
    "failed": FAILED,
    "invalid_tone": INVALID,
    "enter_reason": BEEP,  # break reason digit
    "enter_code": BEEP,  # disposition code
    "enter_agent": BEEP,  # agent id to supervise
    "survey": "ivr/ivr-thank_you_for_calling.wav",  # record "rate us 1 to 5" and override
    "survey_digit": BEEP,
    "thanks": "ivr/ivr-thank_you.wav",
    "goodbye": "voicemail/vm-goodbye.wav",
    "callback_number_is": BEEP,  # before the caller's number is read back
    "callback_confirm": BEEP,  # "1 to confirm, 2 to enter another number"
    "callback_enter": BEEP,  # "enter the number, then #"
    "callback_registered": "ivr/ivr-thank_you.wav",
    "announce_pre": BEEP,  # record "agent number" and override
    "announce_post": "",  # record "is serving you" and override; "" = nothing
}


def prompt(s: Session, key: str) -> str:
    override = s.get(f"hotline_prompt_{key}")
    return override if override else DEFAULTS[key]


def play(s: Session, key: str) -> None:
    path = prompt(s, key)
    if path:
        s.play(path)


def digit_files(number: str) -> list[str]:
    """The stock digit files that read ``number`` out, digit by digit."""
    return [f"digits/{d}.wav" for d in number if d.isdigit()]
