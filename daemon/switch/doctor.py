"""Read-only checks of a running FreeSWITCH against the call-center model (``hotline doctor``).

Each check reads something over ESL and turns it into :class:`Finding` rows; the pure
``*_findings`` functions take the command output, so tests feed them what a real switch
prints. Nothing here changes the switch.

* modules: ``module_exists mod_callcenter`` / ``mod_python3`` (/ ``mod_conference`` when
  a tenant has rooms). The stock ``modules.conf.xml`` of FreeSWITCH 1.10 loads neither
  mod_callcenter nor mod_python3.
* registrations: ``show registrations as json``. The stock ``sip_profiles/internal.xml``
  forces every registration into the default domain (``force-register-domain``,
  ``force-register-db-domain``, ``force-subscription-domain``): a desk phone of tenant
  ``hotline.test`` then registers as ``1001@<default domain>`` and mod_callcenter's
  ``user/1001@hotline.test`` never finds it. An agent's extension registered only under
  another domain is that problem.
* time zone: ``global_getvar tod_tz_offset``. A numeric value wins over ``timezone`` in
  mod_dialplan_xml's time conditions; Hotline's contexts neutralise it (rendered
  ``tod_tz_offset=none``), every other context of the switch is shifted.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Protocol, Sequence

from daemon.definition.model import CallCenter, EslNode

logger = logging.getLogger(__name__)

OK, WARNING, PROBLEM = "ok", "warning", "problem"
FORCED_DOMAIN_PARAMS = ("force-register-domain", "force-register-db-domain",
                        "force-subscription-domain")


class ApiConnection(Protocol):
    def api(self, cmd: str, timeout: float | None = None) -> str: ...


@dataclass(frozen=True)
class Finding:
    check: str  # modules | registrations | timezone | connection
    status: str  # ok | warning | problem
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


# --- pure: command output -> findings ------------------------------------------------------

def needed_modules(center: CallCenter) -> list[str]:
    modules = ["mod_callcenter", "mod_python3"]
    if any(t.conferences for t in center.tenants):
        modules.append("mod_conference")
    return modules


def module_findings(loaded: Mapping[str, str]) -> list[Finding]:
    """``module -> module_exists reply`` ("true" / "false")."""
    missing = [m for m, reply in loaded.items() if reply.strip().lower() != "true"]
    if not missing:
        return [Finding("modules", OK, f"loaded: {', '.join(loaded)}")]
    return [Finding("modules", PROBLEM,
                    f"{m} is not loaded: add <load module=\"{m}\"/> to "
                    "autoload_configs/modules.conf.xml (the stock file loads neither "
                    "mod_callcenter nor mod_python3) and restart FreeSWITCH") for m in missing]


def parse_registrations(text: str) -> list[tuple[str, str]]:
    """(user, realm) pairs of ``show registrations as json`` (``-ERR`` or no rows: [])."""
    body = text.strip()
    if not body.startswith("{"):
        return []
    try:
        data = json.loads(body)
    except ValueError:
        return []
    rows = data.get("rows") or []
    return [(str(r.get("reg_user") or ""), str(r.get("realm") or "")) for r in rows
            if isinstance(r, dict)]


def registration_findings(center: CallCenter,
                          registrations: Iterable[tuple[str, str]]) -> list[Finding]:
    """Agents whose desk phone is registered, but only under another domain."""
    realms: dict[str, set[str]] = {}
    for user, realm in registrations:
        realms.setdefault(user, set()).add(realm.lower())
    findings: list[Finding] = []
    registered = 0
    for t in center.tenants:
        for a in t.agents:
            seen = realms.get(a.extension)
            if not seen:
                continue
            if t.domain.lower() in seen:
                registered += 1
                continue
            others = ", ".join(f"{a.extension}@{r}" for r in sorted(seen))
            findings.append(Finding(
                "registrations", PROBLEM,
                f"agent {t.qualified(a.id)}: the desk phone is registered as {others}, not "
                f"@{t.domain}, so mod_callcenter's user/{a.extension}@{t.domain} never reaches "
                f"it. The SIP profile forces registrations into one domain: remove "
                f"{', '.join(FORCED_DOMAIN_PARAMS)} from sip_profiles/internal.xml "
                f"(docs/RENDER.md), restart the profile, and let the phones register again."))
    if not findings:
        total = sum(len(t.agents) for t in center.tenants)
        findings.append(Finding("registrations", OK,
                                f"{registered} of {total} agent phones registered, each in "
                                "its tenant's domain"))
    return findings


def timezone_findings(tod_tz_offset: str) -> list[Finding]:
    value = tod_tz_offset.strip()
    if value.startswith("-ERR") or not value.lstrip("+-").isdigit():
        return [Finding("timezone", OK, "no site-wide tod_tz_offset")]
    return [Finding("timezone", WARNING,
                    f"the switch sets tod_tz_offset={value} globally: it wins over timezone "
                    "in every dialplan time condition. Hotline's tenant contexts neutralise it "
                    "(tod_tz_offset=none before their schedules); other contexts are shifted. "
                    "Remove it from vars.xml unless that is meant.")]


# --- over ESL ----------------------------------------------------------------------------

def check_node(conn: ApiConnection, center: CallCenter, timeout: float = 5.0) -> list[Finding]:
    """Every check against one switch (read-only)."""
    loaded = {m: conn.api(f"module_exists {m}", timeout) for m in needed_modules(center)}
    findings = module_findings(loaded)
    findings += check_registrations(conn, center, timeout)
    findings += timezone_findings(conn.api("global_getvar tod_tz_offset", timeout))
    return findings


def check_registrations(conn: ApiConnection, center: CallCenter,
                        timeout: float = 5.0) -> list[Finding]:
    return registration_findings(
        center, parse_registrations(conn.api("show registrations as json", timeout)))


@dataclass(frozen=True)
class NodeReport:
    node: str
    findings: tuple[Finding, ...]

    @property
    def problems(self) -> int:
        return sum(f.status == PROBLEM for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "problems": self.problems,
                "findings": [f.to_dict() for f in self.findings]}


def doctor(center: CallCenter, nodes: Sequence[EslNode], connect: Any,
           timeout: float = 5.0) -> list[NodeReport]:
    """Run the checks on every node; a node that cannot be reached is a problem row."""
    reports = []
    for node in nodes:
        try:
            conn = connect(node)
        except Exception as exc:
            reports.append(NodeReport(node.name, (Finding(
                "connection", PROBLEM, f"cannot connect to {node.host}:{node.port}: {exc}"),)))
            continue
        try:
            reports.append(NodeReport(node.name, tuple(check_node(conn, center, timeout))))
        except Exception as exc:  # a link dropped mid-way: say which node, keep the others
            logger.debug("doctor node=%s failed", node.name, exc_info=True)
            reports.append(NodeReport(node.name, (Finding(
                "connection", PROBLEM, f"the switch stopped answering: {exc}"),)))
        finally:
            close = getattr(conn, "close", None)
            if close is not None:
                close()
    return reports


def format_reports(reports: Sequence[NodeReport]) -> str:
    lines = []
    for r in reports:
        lines.append(f"node {r.node}: " + (f"{r.problems} problem(s)" if r.problems else "ok"))
        lines += [f"  {f.status:8} {f.check}: {f.message}" for f in r.findings]
    return "\n".join(lines)
