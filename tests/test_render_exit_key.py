"""The callback exit key of a rendered queue works from the moment it is offered.

mod_callcenter 1.10 (callcenter_function) waits in a loop of music-on-hold rounds; each
round reads ``cc_exit_keys`` once, before ``switch_ivr_play_file``, and a digit pressed
during a round that read no key is dropped (``moh_on_dtmf``). A round ends when the music
ends (never, for ``local_stream``), at ``playback_timeout_sec``, or on CF_BREAK
(``uuid_break``). ``MohWait`` below is that loop; the rendered queue extension's
``sched_api`` tasks drive it. It reproduces capture exit_key_ignored for the arming
rendered before (key set at +90 s while 5 s rounds ran: a press 3 s later is lost).
"""
from __future__ import annotations

import dataclasses
import math
import re
import xml.etree.ElementTree as ET

import pytest
from factories import city_center

from daemon.definition.model import CallbackOffer, CallCenter
from daemon.definition.render import render_files

CITY = "cityutil.hotline.local"
SCHED = re.compile(r"^\$\{sched_api\(\+(\d+) \$\{uuid\} (.+)\)\}$")


@dataclasses.dataclass
class MohWait:
    """mod_callcenter's wait loop for one caller: which presses end the wait."""

    tasks: list[tuple[float, str]]  # (seconds after the join, API command), in schedule order
    round_s: float | None = None  # playback_timeout_sec; None = the music never ends
    keys: str = ""  # cc_exit_keys at the join

    def honours(self, press_at: float, digit: str = "*") -> bool:
        keys, round_keys = self.keys, self.keys  # the first round reads them at the join
        next_round = self.round_s if self.round_s else math.inf
        # sched tasks of one second run in the order they were scheduled (stable sort)
        pending = sorted(self.tasks, key=lambda t: t[0])
        while True:
            next_task = pending[0][0] if pending else math.inf
            at = min(next_round, next_task)
            if at > press_at:
                return digit in round_keys
            if next_round <= next_task:  # worst case: a round that starts with a task reads first
                round_keys = keys
                next_round += self.round_s or math.inf
                continue
            _, cmd = pending.pop(0)
            words = cmd.split()
            if words[0] == "uuid_setvar" and words[2] == "cc_exit_keys":
                keys = words[3] if len(words) > 3 else ""
            elif words[0] == "uuid_break":  # CF_BREAK: the round ends, the next one reads
                round_keys = keys
                next_round = at + (self.round_s or math.inf)


def entry_actions(center: CallCenter, domain: str, queue: str) -> list[tuple[str, str]]:
    ctx = ET.fromstring(render_files(center)[f"dialplan/{domain}.xml"]).find("context")
    ext = ctx.find(f"extension[@name='queue_{queue}']")
    return [(a.get("application"), a.get("data") or "") for a in ext.iter("action")]


def wait_of(actions: list[tuple[str, str]]) -> MohWait:
    """The wait the rendered entry sets up, up to ``callcenter``."""
    tasks, round_s, keys = [], None, ""
    for app, data in actions:
        if app == "callcenter":
            break
        name, _, value = data.partition("=")
        if app == "set" and (m := SCHED.match(value)):
            tasks.append((float(m.group(1)), m.group(2).replace("${uuid}", "call")))
        elif app == "set" and name == "playback_timeout_sec":
            round_s = float(value)
        elif app == "set" and name == "cc_exit_keys":
            keys = value
        elif app == "unset" and data == "cc_exit_keys":
            keys = ""
    return MohWait(tasks, round_s, keys)


def test_the_wait_model_reproduces_capture_exit_key_ignored():
    # what the example rendered before: the key set at +90 s, music restarted every 5 s;
    # on the real switch the setvar ran as a round began at 90.00 and * at 93.04 was lost
    before = MohWait([(90.0, "uuid_setvar call cc_exit_keys *")], round_s=5.0)
    assert not before.honours(93.04)
    assert before.honours(96.54)  # exit_key_callback: a press in the next round counts


@pytest.fixture(scope="module")
def billing_wait() -> MohWait:
    return wait_of(entry_actions(city_center(), CITY, "billing"))


@pytest.mark.parametrize("after", [0.0, 0.001, 0.5, 1.0, 3.04, 4.99, 5.0, 7.0, 60.0, 600.0])
def test_rendered_key_is_honoured_from_the_moment_it_is_offered(billing_wait, after):
    # billing: callback key * after 90 s
    assert billing_wait.honours(90.0 + after)


@pytest.mark.parametrize("at", [0.0, 30.0, 89.0, 89.99])
def test_rendered_key_does_nothing_before_it_is_offered(billing_wait, at):
    assert not billing_wait.honours(at)
    assert not billing_wait.honours(at, "1")


def test_rendered_key_needs_no_music_restarts(billing_wait):
    # the music plays through (no playback_timeout_sec): only the offer starts a new round
    assert billing_wait.round_s is None
    assert [cmd.split()[0] for _, cmd in billing_wait.tasks] == ["uuid_setvar", "uuid_break"]


def test_rendered_offer_prompt_plays_only_once_the_key_works():
    center = city_center()
    tenant = center.tenants[0]
    queues = tuple(dataclasses.replace(q, callback=dataclasses.replace(
        q.callback, prompt="city/press_star_for_callback.wav", after_s=45))
        if q.id == "billing" else q for q in tenant.queues)
    center = CallCenter(tenants=(dataclasses.replace(tenant, queues=queues),
                                 *center.tenants[1:]))
    wait = wait_of(entry_actions(center, tenant.domain, "billing"))
    cmds = [cmd for _, cmd in wait.tasks]
    assert cmds == ["uuid_setvar call cc_exit_keys *", "uuid_break call",
                    "uuid_displace call start $${sounds_dir}/city/press_star_for_callback.wav 0"]
    assert {at for at, _ in wait.tasks} == {45.0}
    assert wait.honours(45.0) and not wait.honours(44.9)


def test_a_key_offered_from_the_join_is_set_before_the_queue():
    center = city_center()
    tenant = center.tenants[0]
    queues = tuple(dataclasses.replace(q, callback=CallbackOffer(True, 0, "0"))
                   if q.id == "billing" else q for q in tenant.queues)
    center = CallCenter(tenants=(dataclasses.replace(tenant, queues=queues),
                                 *center.tenants[1:]))
    wait = wait_of(entry_actions(center, tenant.domain, "billing"))
    assert wait.tasks == [] and wait.honours(0.0, "0")
