"""``hotline reload``: bring running switches to the YAML without dropping a call.

Two halves, as the design asks:

* :func:`plan_node` is pure: the desired callcenter.conf (rendered), the one the switch
  was last given (conf dir) and what the switch runs (``daemon.switch.switchstate``) in, an
  ordered list of :class:`Step` (a ``callcenter_config`` command and the commands that
  undo it) plus what is deferred, out. No I/O, unit-tested command by command.
* :func:`reload_center` does it: render -> compare files -> plan every node -> (dry run:
  stop) -> back up and write the changed files atomically -> per node ``reloadxml`` and
  the steps -> list again and re-plan (a correct result plans nothing) -> on any failure
  restore the files and undo what was applied, newest first, on every node touched.

Rules (docs/ADMIN.md says them to admins):

* Names are ours when they are in the new or the previous rendered file or carry the
  domain of a tenant in the model; anything else on the switch is left alone.
* A queue with live members (Waiting / Trying / Answered) is not unloaded: deferred, its
  tiers kept so its callers are still served; a later reload unloads it.
* An agent on a call (state Receiving / In a queue call) is not deleted: its status goes
  to Logged Out now (no new calls), its tiers are deleted except the one of the queue it
  is serving, and the agent is reported deferred; the next reload deletes it once its
  state is back to Waiting / Idle. A tier whose agent is serving that tier's queue is
  never deleted mid-call either.
* ``queue reload`` (changed params) keeps the queue's callers: mod_callcenter keeps
  members in its members table, not in the queue object it rebuilds from the XML.

Step order: queue load, queue reload, agent add (+ set of its params), agent set, tier
set, tier add, tier del, agent logout (deferred delete), agent del, queue unload - so a
tier never points at an agent or queue that does not exist yet or any more.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from daemon.definition.model import CallCenter, EslNode, Settings
from daemon.definition.render import SCRIPTS_DIR, render_files, write_atomic
from daemon.switch.switchstate import (
    AGENT_KEYS,
    ApiConnection,
    CcConfig,
    SwitchError,
    SwitchState,
    checked,
    domain_of,
    parse_callcenter_conf,
    queue_column,
    read_switch_state,
)

logger = logging.getLogger(__name__)

CC_CONF = "autoload_configs/callcenter.conf.xml"
PREVIOUS_DIR = ".hotline-previous"
MANIFEST = ".hotline-manifest.json"
LOCK_FILE = ".hotline-reload.lock"
CC = "callcenter_config"


class ReloadError(Exception):
    """The reload could not start (unknown node, unreachable switch before any change)."""


def quote(value: str) -> str:
    """callcenter_config splits on spaces but honours single quotes (switch_separate_string)."""
    return f"'{value}'" if " " in value or value == "" else value


@dataclass(frozen=True)
class Step:
    kind: str  # queue | agent | tier
    action: str  # load | reload | unload | add | set | del | logout
    target: str  # queue, agent, or "queue agent" for tiers
    command: str  # the api command, without "api "
    undo: tuple[str, ...] = ()  # api commands that revert it (run after the files are restored)


@dataclass(frozen=True)
class Deferred:
    kind: str  # queue | agent | tier
    target: str
    reason: str


@dataclass(frozen=True)
class NodePlan:
    node: str
    steps: tuple[Step, ...] = ()
    deferred: tuple[Deferred, ...] = ()

    def to_dict(self) -> dict:
        return {"node": self.node, "commands": [s.command for s in self.steps],
                "steps": [asdict(s) for s in self.steps],
                "deferred": [asdict(d) for d in self.deferred]}


def _norm(key: str, value: str) -> str:
    return value.lower() if key == "type" else value


def _queue_changed(want: dict[str, str], old: dict[str, str] | None,
                   running: dict[str, str]) -> bool:
    """Does the loaded queue differ from the wanted params?

    Params the list shows are compared with the switch; the others (announce-sound) and
    values the switch expands (``$${...}`` in record-template) with the previous file.
    """
    for param, value in want.items():
        col = queue_column(param)
        if col in running and "$${" not in value:
            if running[col] != value:
                return True
        elif old is not None and old.get(param) != value:
            return True
    if old is not None and set(old) - set(want):
        return True  # a param was removed (e.g. announce-sound): back to the module default
    return False


def plan_node(node: str, desired: CcConfig, old: CcConfig, running: SwitchState,
              domains: Iterable[str]) -> NodePlan:
    """The ordered commands that turn ``running`` into ``desired`` on one node (pure)."""
    domains = set(domains)

    def ours(name: str) -> bool:
        return (name in desired.queues or name in desired.agents or name in old.queues
                or name in old.agents or domain_of(name) in domains)

    steps: dict[str, list[Step]] = {k: [] for k in (
        "qload", "qreload", "aadd", "aset", "tset", "tadd", "tdel", "alogout", "adel", "qunload")}
    deferred: list[Deferred] = []

    # queues
    gone_queues: set[str] = set()
    kept_queues: set[str] = set()
    for q, params in sorted(desired.queues.items()):
        if q not in running.queues:
            steps["qload"].append(Step("queue", "load", q, f"{CC} queue load {q}",
                                       (f"{CC} queue unload {q}",)))
        elif _queue_changed(params, old.queues.get(q), running.queues[q]):
            steps["qreload"].append(Step("queue", "reload", q, f"{CC} queue reload {q}",
                                         (f"{CC} queue reload {q}",)))
    for q in sorted(running.queues):
        if q in desired.queues or not ours(q):
            continue
        live = running.live_members(q)
        if live:
            kept_queues.add(q)
            deferred.append(Deferred("queue", q, f"{len(live)} caller(s) waiting or talking; "
                                                 "unloaded by a later reload"))
        else:
            gone_queues.add(q)
            steps["qunload"].append(Step("queue", "unload", q, f"{CC} queue unload {q}",
                                         (f"{CC} queue load {q}",)))

    # agents
    for a, attrs in sorted(desired.agents.items()):
        have = running.agents.get(a)
        if have is None:
            typ = attrs.get("type", "callback")
            steps["aadd"].append(Step("agent", "add", a, f"{CC} agent add {a} {quote(typ)}",
                                      (f"{CC} agent del {a}",)))
            for key in AGENT_KEYS:
                if key != "type" and key in attrs:
                    steps["aadd"].append(Step("agent", "set", a,
                                              f"{CC} agent set {key} {a} {quote(attrs[key])}"))
            continue
        for key in AGENT_KEYS:
            if key not in attrs:
                continue
            now = have.param(key)
            if _norm(key, now) != _norm(key, attrs[key]):
                steps["aset"].append(Step(
                    "agent", "set", a, f"{CC} agent set {key} {a} {quote(attrs[key])}",
                    (f"{CC} agent set {key} {a} {quote(now)}",)))
    leaving_on_call: dict[str, str | None] = {}
    for a in sorted(running.agents):
        have = running.agents[a]
        if a in desired.agents or not ours(a):
            continue
        if have.on_call:
            serving = running.serving_queue(a)
            leaving_on_call[a] = serving
            if have.status != "Logged Out":
                steps["alogout"].append(Step(
                    "agent", "logout", a, f"{CC} agent set status {a} 'Logged Out'",
                    (f"{CC} agent set status {a} {quote(have.status)}",)))
            deferred.append(Deferred("agent", a, f"on a call ({have.state}); logged out now, "
                                                 "deleted by the next reload after the call"))
        else:
            readd = [f"{CC} agent add {a} {quote(have.param('type') or 'callback')}"]
            readd += [f"{CC} agent set {k} {a} {quote(v)}" for k, v in have.params
                      if k != "type"]
            readd.append(f"{CC} agent set status {a} {quote(have.status or 'Logged Out')}")
            steps["adel"].append(Step("agent", "del", a, f"{CC} agent del {a}", tuple(readd)))

    # tiers
    for (q, a), (level, position) in sorted(desired.tiers.items()):
        have_tier = running.tiers.get((q, a))
        if have_tier is None:
            steps["tadd"].append(Step("tier", "add", f"{q} {a}",
                                      f"{CC} tier add {q} {a} {level} {position}",
                                      (f"{CC} tier del {q} {a}",)))
            continue
        if have_tier.level != level:
            steps["tset"].append(Step("tier", "set", f"{q} {a}",
                                      f"{CC} tier set level {q} {a} {level}",
                                      (f"{CC} tier set level {q} {a} {have_tier.level}",)))
        if have_tier.position != position:
            steps["tset"].append(Step("tier", "set", f"{q} {a}",
                                      f"{CC} tier set position {q} {a} {position}",
                                      (f"{CC} tier set position {q} {a} {have_tier.position}",)))
    for (q, a), tier in sorted(running.tiers.items()):
        if (q, a) in desired.tiers or not (ours(q) or ours(a)):
            continue
        if q in kept_queues:
            continue  # the queue's callers still need its agents
        if running.serving_queue(a) == q and running.agents.get(a) is not None \
                and running.agents[a].on_call:
            deferred.append(Deferred("tier", f"{q} {a}", "the agent is on a call from this "
                                                         "queue; deleted by a later reload"))
            continue
        steps["tdel"].append(Step("tier", "del", f"{q} {a}", f"{CC} tier del {q} {a}",
                                  (f"{CC} tier add {q} {a} {tier.level} {tier.position}",)))

    ordered = [s for k in steps for s in steps[k]]
    return NodePlan(node, tuple(ordered), tuple(deferred))


# --- files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileChange:
    path: str  # as rendered: relative to the conf dir, or scripts/... (the script dir)
    change: str  # added | changed | removed


@dataclass(frozen=True)
class Places:
    """Where the rendered files go on the switch host: the XML under the conf dir, the
    rendered ``scripts/`` (the desk-phone scripts and their data file) into the script dir,
    the one place the scripts read their data from. The backup of the previous files and
    the manifest stay in the conf dir, keyed by the rendered path."""

    conf_dir: Path
    script_dir: Path

    @classmethod
    def of(cls, settings: Settings) -> Places:
        return cls(Path(settings.freeswitch_conf_dir), Path(settings.freeswitch_script_dir))

    def path(self, rel: str) -> Path:
        head, _, rest = rel.partition("/")
        return self.script_dir / rest if head == SCRIPTS_DIR else self.conf_dir / rel


def file_changes(rendered: dict[str, str], places: Places) -> list[FileChange]:
    out = []
    for rel, content in sorted(rendered.items()):
        path = places.path(rel)
        if not path.exists():
            out.append(FileChange(rel, "added"))
        elif path.read_text(encoding="utf-8") != content:
            out.append(FileChange(rel, "changed"))
    for rel in sorted(set(_manifest(places.conf_dir)) - set(rendered)):
        if places.path(rel).exists():
            out.append(FileChange(rel, "removed"))
    return out


def _manifest(conf_dir: Path) -> list[str]:
    try:
        return list(json.loads((conf_dir / MANIFEST).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return []


def write_files(rendered: dict[str, str], changes: Sequence[FileChange], places: Places) -> Path:
    """Keep the current versions in ``.hotline-previous/``, then write the new ones atomically."""
    conf_dir = places.conf_dir
    prev = conf_dir / PREVIOUS_DIR
    if prev.exists():
        shutil.rmtree(prev)
    prev.mkdir(parents=True)
    added = []
    for ch in changes:
        src = places.path(ch.path)
        if ch.change == "added":
            added.append(ch.path)
            continue
        dst = prev / ch.path
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    old_manifest = conf_dir / MANIFEST
    if old_manifest.exists():
        shutil.copy2(old_manifest, prev / MANIFEST)
    write_atomic(prev / "ADDED.json", json.dumps(added))
    for ch in changes:
        if ch.change == "removed":
            places.path(ch.path).unlink()
        else:
            # write_atomic keeps files with PINs or passwords at 0640 (render.holds_secrets)
            write_atomic(places.path(ch.path), rendered[ch.path])
    write_atomic(conf_dir / MANIFEST, json.dumps(sorted(rendered), indent=1) + "\n")
    return prev


def restore_files(places: Places) -> None:
    """Put back what ``write_files`` saved (and remove what it added)."""
    conf_dir = places.conf_dir
    prev = conf_dir / PREVIOUS_DIR
    added = json.loads((prev / "ADDED.json").read_text(encoding="utf-8"))
    for rel in added:
        try:
            places.path(rel).unlink()
        except FileNotFoundError:
            pass
    for path in sorted(prev.rglob("*")):
        if path.is_file() and path.name not in ("ADDED.json", MANIFEST):
            rel = path.relative_to(prev).as_posix()
            write_atomic(places.path(rel), path.read_text(encoding="utf-8"))
    if (prev / MANIFEST).exists():
        write_atomic(conf_dir / MANIFEST, (prev / MANIFEST).read_text(encoding="utf-8"))
    else:
        try:
            (conf_dir / MANIFEST).unlink()
        except FileNotFoundError:
            pass


# --- doing it ---------------------------------------------------------------------------------


@dataclass
class NodeResult:
    node: str
    plan: NodePlan
    applied: list[str] = field(default_factory=list)
    error: str | None = None
    rolled_back: bool = False
    undo_errors: list[str] = field(default_factory=list)
    # what the switch does wrong that a reload cannot fix (daemon.switch.doctor)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = self.plan.to_dict()
        d.update({"applied": list(self.applied), "error": self.error,
                  "rolled_back": self.rolled_back, "undo_errors": list(self.undo_errors),
                  "warnings": list(self.warnings)})
        return d


@dataclass
class ReloadReport:
    dry_run: bool
    conf_dir: str
    script_dir: str
    files: list[FileChange]
    nodes: list[NodeResult]
    ok: bool = True
    error: str | None = None
    rolled_back: bool = False
    previous_dir: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"dry_run": self.dry_run, "ok": self.ok, "error": self.error,
                "rolled_back": self.rolled_back, "conf_dir": self.conf_dir,
                "script_dir": self.script_dir,
                "previous_dir": self.previous_dir, "warnings": list(self.warnings),
                "files": [asdict(f) for f in self.files],
                "nodes": [n.to_dict() for n in self.nodes]}


Connect = Callable[[EslNode], ApiConnection]


def esl_connect(timeout: float = 5.0) -> Connect:
    def connect(node: EslNode) -> ApiConnection:
        from daemon.switch.esl import EslConnection

        return EslConnection(node.host, node.port, node.password, timeout).connect()
    return connect


def _close(conn: ApiConnection) -> None:
    close = getattr(conn, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # closing a broken link is not worth failing the reload over
            logger.debug("closing the ESL connection failed", exc_info=True)


def script_dir_mismatch(node: str, conn: ApiConnection, script_dir: Path,
                        timeout: float) -> str | None:
    """A sentence when the switch imports its scripts from another folder than the one
    reload writes the data file to: the desk phones would not see the reload (issue 9).

    Only a warning: with the switch on another box the same folder may be mounted under
    another path. A switch that does not say (an error, no answer) is not second-guessed."""
    try:
        where = conn.api("global_getvar script_dir", timeout).strip()
    except Exception:
        logger.debug("node %s: global_getvar script_dir failed", node, exc_info=True)
        return None
    if not where.startswith("/") or "\n" in where or Path(where) == script_dir:
        return None
    return (f"node {node} reads its desk-phone scripts from {where}, but "
            f"freeswitch_script_dir is {script_dir}: the phones do not see the data file "
            f"this reload writes; set freeswitch_script_dir to {where} (or mount it there)")


def select_nodes(settings: Settings, node: str | None) -> list[EslNode]:
    nodes = list(settings.esl_nodes)
    if node is None:
        return nodes
    chosen = [n for n in nodes if n.name == node]
    if not chosen:
        raise ReloadError(f"no ESL node named {node!r} (known: {', '.join(n.name for n in nodes)})")
    return chosen


def reload_center(center: CallCenter, settings: Settings, *, dry_run: bool = False,
                  node: str | None = None, connect: Connect | None = None,
                  timeout: float = 5.0) -> ReloadReport:
    """Render, compare, and (unless ``dry_run``) apply to every selected node."""
    connect = connect or esl_connect(timeout)
    places = Places.of(settings)
    conf_dir = places.conf_dir
    rendered = render_files(center)
    changes = file_changes(rendered, places)
    desired = parse_callcenter_conf(rendered.get(CC_CONF))
    old_path = conf_dir / CC_CONF
    old = parse_callcenter_conf(
        old_path.read_text(encoding="utf-8") if old_path.exists() else None)
    domains = {t.domain for t in center.tenants}
    report = ReloadReport(dry_run, str(conf_dir), str(places.script_dir), changes, [])

    conns: list[tuple[EslNode, ApiConnection]] = []
    try:
        for n in select_nodes(settings, node):
            try:
                conn = connect(n)
            except Exception as exc:
                raise ReloadError(
                    f"node {n.name}: cannot connect to {n.host}:{n.port}: {exc}") from exc
            conns.append((n, conn))
            try:
                state = read_switch_state(conn, timeout)
            except Exception as exc:
                raise ReloadError(
                    f"node {n.name}: cannot read mod_callcenter's state: {exc}") from exc
            plan = plan_node(n.name, desired, old, state, domains)
            report.nodes.append(NodeResult(n.name, plan, warnings=_doctor_warnings(
                conn, center, n.name, timeout)))
            mismatch = script_dir_mismatch(n.name, conn, places.script_dir, timeout)
            if mismatch:
                report.warnings.append(mismatch)
        if dry_run:
            return report
        with _reload_lock(conf_dir):
            _apply(report, rendered, changes, places, desired, old, domains,
                   [c for _, c in conns], timeout)
        return report
    finally:
        for _, conn in conns:
            _close(conn)


def _doctor_warnings(conn: ApiConnection, center: CallCenter, node: str,
                     timeout: float) -> list[str]:
    """Agents' phones registered under another domain: the reload succeeds, but their
    queue calls will never ring (see daemon.switch.doctor)."""
    from daemon.switch.doctor import PROBLEM, check_registrations

    try:
        return [f.message for f in check_registrations(conn, center, timeout)
                if f.status == PROBLEM]
    except Exception as exc:  # a check must never fail the reload
        logger.warning("reload node=%s: registration check failed: %s", node, exc)
        return []


@contextlib.contextmanager
def _reload_lock(conf_dir: Path) -> Iterator[None]:
    """One reload at a time per conf dir (two admins reloading would undo each other)."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    with open(conf_dir / LOCK_FILE, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ReloadError(f"another hotline reload is running on {conf_dir}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _apply(report: ReloadReport, rendered: dict[str, str], changes: list[FileChange],
           places: Places, desired: CcConfig, old: CcConfig, domains: set[str],
           conns: list[ApiConnection], timeout: float) -> None:
    prev = write_files(rendered, changes, places) if changes else None
    report.previous_dir = str(prev) if prev else None
    touched: list[tuple[NodeResult, ApiConnection, list[Step]]] = []
    try:
        for i, (result, conn) in enumerate(zip(report.nodes, conns)):
            applied: list[Step] = []
            touched.append((result, conn, applied))
            if i:
                # nodes sharing mod_callcenter's agents and tiers (odbc-dsn) already got
                # them from the nodes before: plan again from what this node runs now
                result.plan = plan_node(result.node, desired, old,
                                        read_switch_state(conn, timeout), domains)
            reply = checked(conn, "reloadxml", timeout)
            result.applied.append("reloadxml")
            logger.info("reload node=%s reloadxml: %s", result.node, reply.strip())
            for step in result.plan.steps:
                checked(conn, step.command, timeout)
                applied.append(step)
                result.applied.append(step.command)
            # the check: what the switch runs now must plan nothing more
            after = read_switch_state(conn, timeout)
            again = plan_node(result.node, desired, desired, after, domains)
            if again.steps:
                raise SwitchError("the switch does not match after the reload; still to do: "
                                  + "; ".join(s.command for s in again.steps))
    except Exception as exc:
        failed = touched[-1][0] if touched else None
        msg = f"node {failed.node}: {exc}" if failed else str(exc)
        logger.error("reload failed, rolling back: %s", msg)
        if failed is not None:
            failed.error = str(exc)
        report.ok = False
        report.error = msg
        _rollback(places, touched, timeout, restore=prev is not None)
        report.rolled_back = True


def _rollback(places: Places, touched: list[tuple[NodeResult, ApiConnection, list[Step]]],
              timeout: float, restore: bool) -> None:
    if restore:
        restore_files(places)
    for result, conn, applied in reversed(touched):
        result.rolled_back = True
        cmds = ["reloadxml"] + [u for step in reversed(applied) for u in step.undo]
        for cmd in cmds:
            try:
                checked(conn, cmd, timeout)
            except Exception as exc:  # keep undoing the rest: a half rollback is worse
                logger.error("rollback node=%s command failed: %s: %s", result.node, cmd, exc)
                result.undo_errors.append(f"{cmd}: {exc}")


def format_report(data: dict) -> str:
    """Human text of ``ReloadReport.to_dict()`` (cli prints it)."""
    lines = []
    head = "plan (dry run, nothing changed)" if data["dry_run"] else (
        "reload done" if data["ok"] else "reload FAILED and was rolled back")
    lines.append(f"{head}; conf dir {data['conf_dir']}, scripts in {data['script_dir']}")
    if data["error"]:
        lines.append(f"error: {data['error']}")
    lines += [f"warning: {w}" for w in data.get("warnings", ())]
    if data["files"]:
        lines.append("files:")
        lines += [f"  {f['change']:8} {f['path']}" for f in data["files"]]
    else:
        lines.append("files: unchanged")
    for n in data["nodes"]:
        lines.append(f"node {n['node']}:")
        if not n["commands"]:
            lines.append("  mod_callcenter: nothing to change")
        lines += [f"  {c}" for c in n["commands"]]
        lines += [f"  deferred {d['kind']} {d['target']}: {d['reason']}"
                  for d in n["deferred"]]
        lines += [f"  WARNING {w}" for w in n.get("warnings", ())]
        if n["error"]:
            lines.append(f"  error: {n['error']}")
        if n["rolled_back"]:
            failed = len(n["undo_errors"])
            note = f" ({failed} undo command(s) failed)" if failed else ""
            lines.append("  rolled back" + note)
    if data.get("previous_dir") and data["ok"]:
        lines.append(f"previous files kept in {data['previous_dir']}")
    return "\n".join(lines)
