"""The tiers a queue really has: explicit ones, or generated from required skills.

mod_callcenter has no skills, only tiers (agent, queue, level, position): lower levels are
offered first, and with ``tier-rules-apply`` a caller reaches level N only after waiting
``tier-rule-wait-second`` (times N with ``tier-rule-wait-multiply-level``). Hotline gives
it skills-based routing by generating the tiers:

* an agent belongs to a skills queue when it has **every** required skill at or above the
  required minimum level;
* the agent's *fit* is its weakest level among the required skills (a 9 in billing and a
  4 in gas is a 4 for a billing+gas queue);
* tier **level** = dense rank of the fit, best first: the best-fitting agents are level 1,
  the next fit down is level 2, and so on (so skill level 10 -> tier level 1; there are
  never empty levels, which would only add waiting with tier rules);
* tier **position** = the agent's order within its level, following the order agents are
  listed in the tenant (1-based).

The result depends only on the model, so it is deterministic.
"""
from __future__ import annotations

import logging
import weakref

from daemon.definition.model import Agent, Queue, Tenant, Tier

logger = logging.getLogger(__name__)

# tenant -> {skill: [(agent order, agent, level)]}: built once per tenant object, because a
# big center asks for hundreds of queues over thousands of agents. Keyed by id() with a
# weakref guard (hashing a frozen Tenant would walk every field on each call).
_SkillIndex = dict[str, list[tuple[int, Agent, int]]]
_INDEX: dict[int, tuple[weakref.ref[Tenant], _SkillIndex]] = {}


def _skill_index(tenant: Tenant) -> _SkillIndex:
    hit = _INDEX.get(id(tenant))
    if hit is not None and hit[0]() is tenant:
        return hit[1]
    index: _SkillIndex = {}
    for order, agent in enumerate(tenant.agents):
        for skill, level in agent.skills:
            index.setdefault(skill, []).append((order, agent, level))
    key = id(tenant)
    _INDEX[key] = (weakref.ref(tenant, lambda _ref, k=key: _INDEX.pop(k, None)), index)
    return index


def agent_fit(agent: Agent, queue: Queue) -> int | None:
    """The agent's weakest required skill level, or None when it lacks a required skill."""
    levels = dict(agent.skills)
    fit: int | None = None
    for req in queue.skills:
        have = levels.get(req.skill)
        if have is None or have < req.min_level:
            return None
        fit = have if fit is None else min(fit, have)
    return fit


def effective_tiers(tenant: Tenant, queue: Queue) -> tuple[Tier, ...]:
    """Explicit tiers as written, else tiers generated from the queue's required skills."""
    if queue.tiers:
        return queue.tiers
    if not queue.skills:
        return ()
    index = _skill_index(tenant)
    # start from the agents holding the rarest required skill, then check the others
    reqs = sorted(queue.skills, key=lambda r: len(index.get(r.skill, ())))
    first = reqs[0]
    fit_by_order: dict[int, tuple[Agent, int]] = {
        order: (agent, level) for order, agent, level in index.get(first.skill, ())
        if level >= first.min_level}
    for req in reqs[1:]:
        have = {order: level for order, _, level in index.get(req.skill, ())
                if level >= req.min_level}
        fit_by_order = {o: (a, min(f, have[o])) for o, (a, f) in fit_by_order.items()
                        if o in have}
    qualified = [fit_by_order[o] for o in sorted(fit_by_order)]
    ranks = {fit: i for i, fit in enumerate(sorted({f for _, f in qualified}, reverse=True), 1)}
    positions: dict[int, int] = {}
    tiers: list[Tier] = []
    for agent, fit in qualified:
        level = ranks[fit]  # type: ignore[index]
        positions[level] = positions.get(level, 0) + 1
        tiers.append(Tier(agent.id, level, positions[level], queue.src))
    tiers.sort(key=lambda t: (t.level, t.position))
    return tuple(tiers)
