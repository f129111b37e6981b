"""The data file ``hotline_data.json``: agents, break reasons, dispositions per tenant.

It lives in exactly one place: next to these scripts, in FreeSWITCH's ``$${script_dir}``
(``DATA_FILE``). ``hotline render --out OUT`` writes the scripts and the data file together
into ``OUT/scripts/``; copying that folder into the script dir is the whole install, and
``hotline reload`` writes the data file (and the scripts) into the same script dir
(setting ``freeswitch_script_dir``). There is no other place to look, so a stale copy
elsewhere can never win over what the last reload wrote.

Format (keys are tenant domains)::

    {
      "hotline.test": {
        "agents": {"1001": {"id": "1001", "pin": "4321"}, "1002": {"id": "1002", "pin": null}},
        "break_reasons": {"1": "lunch", "2": "training"},
        "dispositions": {"1": "resolved", "21": "callback-needed"},
        "supervisors": ["2000"]
      }
    }

``agents`` is keyed by the desk phone's SIP user (the extension). ``supervisors``
is optional: when present only those extensions may listen/whisper/barge.
A top-level ``{"tenants": {...}}`` wrapper is accepted too.

The file is read on every call (it is small), so a reload takes effect at once.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

# The folder holding the hotline_*.py entry modules and this package: the script dir
# FreeSWITCH imports them from.
SCRIPT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_FILE = os.path.join(SCRIPT_DIR, "hotline_data.json")


class DataError(Exception):
    """The data file is missing or unreadable; the message says which file and why."""


@dataclass(frozen=True)
class AgentRecord:
    id: str  # unqualified agent id; mod_callcenter name is f"{id}@{domain}"
    extension: str
    pin: str | None = None


@dataclass(frozen=True)
class TenantData:
    domain: str
    agents: dict[str, AgentRecord]  # by extension
    break_reasons: dict[str, str]  # digit -> name
    dispositions: dict[str, str]  # code -> name
    supervisors: frozenset[str] | None = None  # None = anyone in the tenant's context

    def agent_by_id(self, agent_id: str) -> AgentRecord | None:
        return next((a for a in self.agents.values() if a.id == agent_id), None)

    def qualified(self, agent_id: str) -> str:
        return f"{agent_id}@{self.domain}"


def _strings(raw: object, what: str, path: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise DataError(f"{path}: {what} must be an object")
    return {str(k): str(v) for k, v in raw.items()}


def _tenant(domain: str, raw: object, path: str) -> TenantData:
    if not isinstance(raw, dict):
        raise DataError(f"{path}: tenant {domain} must be an object")
    agents: dict[str, AgentRecord] = {}
    raw_agents = raw.get("agents") or {}
    if not isinstance(raw_agents, dict):
        raise DataError(f"{path}: {domain}.agents must be an object")
    for ext, entry in raw_agents.items():
        if not isinstance(entry, dict) or not entry.get("id"):
            raise DataError(f"{path}: {domain}.agents.{ext} needs an id")
        pin = entry.get("pin")
        pin = None if pin in (None, "") else str(pin)
        agents[str(ext)] = AgentRecord(str(entry["id"]), str(ext), pin)
    sup = raw.get("supervisors")
    return TenantData(
        domain=domain,
        agents=agents,
        break_reasons=_strings(raw.get("break_reasons"), f"{domain}.break_reasons", path),
        dispositions=_strings(raw.get("dispositions"), f"{domain}.dispositions", path),
        supervisors=None if sup is None else frozenset(str(x) for x in sup),
    )


def load(path: str) -> dict[str, TenantData]:
    """All tenants of the data file, by domain. Raises ``DataError``."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        raise DataError(f"{path}: data file not found (hotline render writes it into "
                        "scripts/ with these scripts; hotline reload updates it)") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read data file: {exc}") from None
    if isinstance(raw, dict) and isinstance(raw.get("tenants"), dict):
        raw = raw["tenants"]
    if not isinstance(raw, dict):
        raise DataError(f"{path}: top level must be an object keyed by tenant domain")
    return {str(domain): _tenant(str(domain), body, path) for domain, body in raw.items()}
