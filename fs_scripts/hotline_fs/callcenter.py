"""mod_callcenter API commands (``callcenter_config``) and how to read their replies.

Facts from mod_callcenter.c (FreeSWITCH 1.10):
- ``callcenter_config`` splits its arguments with ``switch_separate_string``, which
  honours single quotes: a status with a space is written ``'Logged Out'``.
  Replies: ``+OK`` or ``-ERR <why>`` (``-ERR Agent not found!``, ...).
- ``agent get status|state|uuid <agent>`` returns the bare value; ``uuid`` is the
  agent's bridged channel, set at bridge-agent-start and cleared at bridge end.
- ``agent list <agent>`` prints a ``|``-separated header line, one row, ``+OK``.
- Wrap-up is not a state: the dispatcher offers a call only when
  ``last_bridge_end < now - wrap_up_time`` (and ``ready_time <= now``, state
  Waiting, status not On Break). Neither ``set state Waiting`` nor
  ``set ready_time 0`` ends it; only ``wrap_up_time`` does.
"""
from __future__ import annotations

from .session import Session

AVAILABLE = "Available"
LOGGED_OUT = "Logged Out"
ON_BREAK = "On Break"
WAITING = "Waiting"
# States in which the agent is busy with a queue call: never force "Waiting" then.
BUSY_STATES = frozenset({"Receiving", "In a queue call"})


def quote(value: str) -> str:
    """Quote a value for switch_separate_string when it holds a space (as the captures do)."""
    return f"'{value}'" if " " in value else value


def set_status(agent: str, status: str) -> str:
    return f"callcenter_config agent set status {agent} {quote(status)}"


def set_state(agent: str, state: str) -> str:
    return f"callcenter_config agent set state {agent} {quote(state)}"


def get(key: str, agent: str) -> str:
    return f"callcenter_config agent get {key} {agent}"


def set_wrap_up(agent: str, seconds: int) -> str:
    return f"callcenter_config agent set wrap_up_time {agent} {seconds}"


def agent_list(agent: str) -> str:
    return f"callcenter_config agent list {agent}"


def failed(reply: str | None) -> bool:
    """True when an API reply is an error (or nothing came back)."""
    if reply is None:
        return True
    text = reply.strip()
    return text.startswith("-ERR") or text.startswith("-USAGE")


def value(reply: str | None) -> str | None:
    """The value of a ``get`` reply, or None on error/empty."""
    if failed(reply):
        return None
    text = (reply or "").strip()
    return text or None


def parse_agent_list(reply: str | None) -> dict[str, str] | None:
    """``agent list <agent>`` → {column: value}; None when the agent is not there."""
    if failed(reply):
        return None
    lines = [line for line in (reply or "").splitlines() if line.strip() and line.strip() != "+OK"]
    if len(lines) < 2:
        return None
    header = lines[0].split("|")
    row = lines[1].split("|")
    extra = len(row) - len(header)
    if extra > 0 and "contact" in header:
        # A contact with '|' in it splits into too many cells: glue them back.
        i = header.index("contact")
        row = row[:i] + ["|".join(row[i:i + extra + 1])] + row[i + extra + 1:]
    if len(row) != len(header):
        return None
    return dict(zip(header, row))


def status_of(s: Session, agent: str) -> str | None:
    return value(s.api(get("status", agent)))


def state_of(s: Session, agent: str) -> str | None:
    return value(s.api(get("state", agent)))
