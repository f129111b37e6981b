"""Erlang B and Erlang C: the queueing math behind ``hotline staffing``.

Model (M/M/N, Erlang C): calls arrive at random (Poisson), handle times are
exponential, callers wait in an unlimited queue and never abandon. With
traffic intensity ``A = calls × AHT / interval`` (Erlangs) and ``N`` agents:

- ``C(N, A)``: probability that a call has to wait at all;
- service level ``SL(t) = 1 − C · exp(−(N − A) · t / AHT)``: share answered within t;
- average speed of answer ``ASA = C · AHT / (N − A)``.

Nothing here computes ``A**N`` or ``N!``: Erlang B comes from the recurrence
``B(0) = 1, B(n) = A·B(n−1) / (n + A·B(n−1))`` (every term stays in [0, 1]) and
``C = N·B / (N − A·(1 − B))``. That keeps 10,000 Erlangs as cheap and exact as 10.

Edges: no traffic needs no agents (C = 0, SL = 100 %, ASA = 0); ``A ≥ N`` is an
overloaded queue whose wait grows without bound, reported as C = 1, SL = 0 and
ASA = None (infinite) rather than a negative or divide-by-zero value.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

logger = logging.getLogger(__name__)


def traffic_intensity(calls: float, aht_s: float, period_s: float) -> float:
    """Offered load in Erlangs: ``calls`` arriving in ``period_s`` seconds, each ``aht_s`` long."""
    if period_s <= 0:
        raise ValueError("the period must be longer than 0 seconds")
    if calls < 0 or aht_s < 0:
        raise ValueError("calls and handle time cannot be negative")
    return calls * aht_s / period_s


def erlang_b(agents: int, traffic: float) -> float:
    """Erlang B: probability that a call finds all ``agents`` lines busy (blocked calls cleared)."""
    _check(agents, traffic)
    b = 1.0
    for n in range(1, agents + 1):
        b = traffic * b / (n + traffic * b)
    return b


def _c_from_b(agents: int, traffic: float, b: float) -> float:
    if traffic <= 0:
        return 0.0
    if agents <= traffic:
        return 1.0
    return agents * b / (agents - traffic * (1.0 - b))


def erlang_c(agents: int, traffic: float) -> float:
    """Erlang C: probability that a call waits (0..1); 1.0 when ``traffic >= agents``."""
    _check(agents, traffic)
    if traffic <= 0:
        return 0.0
    if agents <= traffic:
        return 1.0
    return _c_from_b(agents, traffic, erlang_b(agents, traffic))


def _sl_from_c(agents: int, traffic: float, c: float, aht_s: float, target_s: float) -> float:
    if traffic <= 0:
        return 1.0
    if agents <= traffic:
        return 0.0
    return max(0.0, 1.0 - c * math.exp(-(agents - traffic) * target_s / aht_s))


def service_level(agents: int, traffic: float, aht_s: float, target_s: float) -> float:
    """Share of calls (0..1) answered within ``target_s`` seconds."""
    _check_times(aht_s, target_s)
    return _sl_from_c(agents, traffic, erlang_c(agents, traffic), aht_s, target_s)


def asa(agents: int, traffic: float, aht_s: float) -> float | None:
    """Average speed of answer in seconds; None when the queue is overloaded (infinite)."""
    _check_times(aht_s, 0)
    if traffic <= 0:
        return 0.0
    if agents <= traffic:
        return None
    return erlang_c(agents, traffic) * aht_s / (agents - traffic)


@dataclass(frozen=True)
class Staffing:
    """The Erlang C figures at one staffing level."""

    agents: int
    traffic: float  # Erlangs
    p_wait: float  # 0..1
    service_level: float  # 0..1
    asa_s: float | None  # None = infinite (overloaded)
    occupancy: float | None  # traffic / agents, 0..1 (None with no agents)


def evaluate(agents: int, traffic: float, aht_s: float, target_s: float) -> Staffing:
    """All Erlang C figures for ``agents`` agents offered ``traffic`` Erlangs."""
    _check(agents, traffic)
    _check_times(aht_s, target_s)
    c = erlang_c(agents, traffic)
    return Staffing(
        agents=agents,
        traffic=traffic,
        p_wait=c,
        service_level=_sl_from_c(agents, traffic, c, aht_s, target_s),
        asa_s=asa(agents, traffic, aht_s),
        occupancy=(traffic / agents) if agents > 0 else None,
    )


def agents_required(
    traffic: float,
    aht_s: float,
    target_s: float,
    target_sl: float,
    max_occupancy: float | None = None,
) -> int:
    """The smallest number of agents whose service level within ``target_s`` reaches
    ``target_sl`` (0..1) and, if given, whose occupancy stays at or below ``max_occupancy``.

    No traffic needs no agents. The search starts at the first N above A and walks up
    one agent at a time, stepping the Erlang B recurrence once per agent, so the cost is
    O(A + agents added) however large A is.
    """
    _check(0, traffic)
    _check_times(aht_s, target_s)
    if not 0 < target_sl < 1:
        # 100 % within t is never reached by Erlang C (the wait has an exponential tail)
        raise ValueError("the service-level target must be above 0 % and below 100 %")
    if max_occupancy is not None and not 0 < max_occupancy <= 1:
        raise ValueError("the maximum occupancy must be above 0 % and at most 100 %")
    if traffic <= 0:
        return 0
    n = math.floor(traffic) + 1  # the first N with N > A
    b = erlang_b(n, traffic)
    while True:
        c = _c_from_b(n, traffic, b)
        sl = _sl_from_c(n, traffic, c, aht_s, target_s)
        occupancy_ok = max_occupancy is None or traffic / n <= max_occupancy
        if sl >= target_sl and occupancy_ok:
            return n
        n += 1
        b = traffic * b / (n + traffic * b)


def _check(agents: int, traffic: float) -> None:
    if agents < 0:
        raise ValueError("the number of agents cannot be negative")
    if traffic < 0 or math.isnan(traffic) or math.isinf(traffic):
        raise ValueError("traffic intensity must be a finite number of Erlangs, 0 or more")


def _check_times(aht_s: float, target_s: float) -> None:
    if not aht_s > 0:
        raise ValueError("the average handle time must be longer than 0 seconds")
    if target_s < 0:
        raise ValueError("the service-level answer time cannot be negative")
