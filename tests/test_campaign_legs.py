"""A campaign dialer's call is not an inbound call: neither its own leg nor the loopback twin
that runs the tenant's dialplan to route the number out becomes a call record."""
from __future__ import annotations

from daemon.switch.events import Event
from tests.scenario import engine, feed_all

A = "5a1e0000-0000-4000-8000-00000000000a"
B = "5a1e0000-0000-4000-8000-00000000000b"
T0 = 1796400000000


def ev(name: str, uuid: str, ms: int, **headers: str) -> Event:
    base = {"Event-Name": name, "Unique-ID": uuid, "Event-Date-Timestamp": str(ms * 1000),
            "FreeSWITCH-Switchname": "vm", "Caller-Caller-ID-Number": "96116",
            "Caller-Destination-Number": "13800138001",
            "Caller-Context": "hotline.cityutil.cn"}
    return Event.from_headers({**base, **headers})


def test_the_dialers_leg_and_its_loopback_twin_make_no_inbound_call():
    a = {"Call-Direction": "outbound", "Channel-Name": "loopback/13800138001-a",
         "variable_hotline_campaign": "revisit", "variable_hotline_contact": "7"}
    b = {"Call-Direction": "inbound", "Channel-Name": "loopback/13800138001-b",
         "variable_other_loopback_leg_uuid": A}
    out = feed_all(engine(), [
        ev("CHANNEL_CREATE", A, T0, **a), ev("CHANNEL_CREATE", B, T0 + 1, **b),
        ev("CHANNEL_ANSWER", B, T0 + 5000, **b), ev("CHANNEL_ANSWER", A, T0 + 5001, **a),
        ev("CHANNEL_HANGUP_COMPLETE", B, T0 + 60000, **b, **{"Hangup-Cause": "NORMAL_CLEARING"}),
        ev("CHANNEL_HANGUP_COMPLETE", A, T0 + 60001, **a, **{"Hangup-Cause": "NORMAL_CLEARING"}),
    ])
    assert out.calls == {} and out.segments == {}


def test_without_the_campaign_variable_the_same_twin_would_be_an_inbound_call():
    b = {"Call-Direction": "inbound", "Channel-Name": "loopback/13800138001-b",
         "variable_other_loopback_leg_uuid": A}
    out = feed_all(engine(), [ev("CHANNEL_CREATE", B, T0, **b),
                              ev("CHANNEL_HANGUP_COMPLETE", B, T0 + 9000, **b,
                                 **{"Hangup-Cause": "NORMAL_CLEARING"})])
    assert list(out.calls) == [B]


def test_a_progressive_contact_waiting_in_a_queue_is_no_inbound_queue_call():
    a = {"Call-Direction": "outbound", "Channel-Name": "loopback/13800138001-a",
         "variable_hotline_campaign": "revisit"}
    member = {"Event-Subclass": "callcenter::info", "CC-Queue": "billing@hotline.cityutil.cn",
              "CC-Member-UUID": "5a1e0000-0000-4000-8000-0000000000cc",
              "CC-Member-Session-UUID": A, "CC-Member-Joined-Time": str(T0 // 1000 + 5),
              "CC-Member-CID-Number": "13800138001"}
    out = feed_all(engine(), [
        ev("CHANNEL_CREATE", A, T0, **a), ev("CHANNEL_ANSWER", A, T0 + 5000, **a),
        ev("CUSTOM", A, T0 + 5001, **member, **{"CC-Action": "member-queue-start"}),
        ev("CUSTOM", A, T0 + 9000, **member, **{"CC-Action": "member-queue-end",
                                               "CC-Cause": "Cancel",
                                               "CC-Cancel-Reason": "BREAK_OUT"}),
        ev("CHANNEL_HANGUP_COMPLETE", A, T0 + 9001, **a, **{"Hangup-Cause": "NORMAL_CLEARING"}),
    ])
    assert out.calls == {} and out.segments == {}
