"""A mod_callcenter stand-in behind the ESL test peer, and the list parsers against it.

``FakeCallcenter`` answers ``api callcenter_config ...`` and ``api reloadxml`` on an
:class:`EslPeer` the way mod_callcenter 1.10 does (list formats from mod_callcenter.c:
header line of column names, rows, ``+OK``; queues loaded from the callcenter.conf the
last ``reloadxml`` saw). The reload, control and dialer tests drive it; the peer records
every command so they assert exact sequences.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from daemon.switch.switchstate import (
    parse_agents,
    parse_callcenter_conf,
    parse_queues,
    parse_tiers,
    read_switch_state,
)
from tests.eslpeer import EslPeer

AGENT_COLS = ("name|instance_id|uuid|type|contact|status|state|max_no_answer|wrap_up_time|"
              "reject_delay_time|busy_delay_time|no_answer_delay_time|last_bridge_start|"
              "last_bridge_end|last_offered_call|last_status_change|no_answer_count|"
              "calls_answered|talk_time|ready_time|external_calls_count").split("|")
QUEUE_COLS = ("name|strategy|moh_sound|time_base_score|tier_rules_apply|tier_rule_wait_second|"
              "tier_rule_wait_multiply_level|tier_rule_no_agent_no_wait|discard_abandoned_after|"
              "abandoned_resume_allowed|max_wait_time|max_wait_time_with_no_agent|"
              "max_wait_time_with_no_agent_time_reached|record_template|calls_answered|"
              "calls_abandoned|ring_progressively_delay|skip_agents_with_external_calls|"
              "agent_no_answer_status").split("|")
QUEUE_DEFAULTS = {"strategy": "longest-idle-agent", "moh_sound": "", "time_base_score": "queue",
                  "tier_rules_apply": "false", "tier_rule_wait_second": "0",
                  "tier_rule_wait_multiply_level": "false", "tier_rule_no_agent_no_wait": "true",
                  "discard_abandoned_after": "60", "abandoned_resume_allowed": "false",
                  "max_wait_time": "0", "max_wait_time_with_no_agent": "0",
                  "max_wait_time_with_no_agent_time_reached": "5", "record_template": "",
                  "calls_answered": "0", "calls_abandoned": "0", "ring_progressively_delay": "10",
                  "skip_agents_with_external_calls": "true", "agent_no_answer_status": "On Break"}
MEMBER_COLS = ("queue|instance_id|uuid|session_uuid|cid_number|cid_name|system_epoch|joined_epoch|"
               "rejoined_epoch|bridge_epoch|abandoned_epoch|base_score|skill_score|serving_agent|"
               "serving_system|state|score").split("|")
TIER_COLS = ["queue", "agent", "state", "level", "position"]
RECORDINGS_DIR = "/var/lib/freeswitch/recordings"


def table(cols: list[str], rows: list[dict]) -> str:
    if not rows:
        return "+OK\n"
    lines = ["|".join(cols)] + ["|".join(str(r.get(c, "")) for c in cols) for r in rows]
    return "\n".join(lines) + "\n+OK\n"


class FakeCallcenter:
    """mod_callcenter's API on a peer. ``fail[prefix] = reply`` makes a command fail;
    ``ignore`` prefixes answer +OK but change nothing (a switch that lies)."""

    def __init__(self, peer: EslPeer, conf_dir: Path | None = None) -> None:
        self.peer = peer
        self.conf_dir = conf_dir
        self.agents: dict[str, dict[str, str]] = {}
        self.tiers: dict[tuple[str, str], dict[str, str]] = {}
        self.queues: dict[str, dict[str, str]] = {}
        self.members: dict[str, list[dict[str, str]]] = {}
        self.xml_queues: dict[str, dict[str, str]] = {}
        self.fail: dict[str, str] = {}
        self.ignore: set[str] = set()
        self.reloads = 0
        peer.script("api callcenter_config", self.callcenter)
        peer.script("api reloadxml", self.reloadxml)

    # --- set-up helpers -----------------------------------------------------------------
    def boot(self) -> None:
        """As a switch starting with the conf dir's callcenter.conf: everything loaded."""
        self.reloadxml("api reloadxml")
        conf = parse_callcenter_conf((self.conf_dir / "autoload_configs/callcenter.conf.xml")
                                     .read_text())
        for q in conf.queues:
            self.queues[q] = self._queue_cols(q)
        for a, attrs in conf.agents.items():
            self.agents[a] = self._new_agent(a, attrs.get("type", "callback"))
            self.agents[a].update({k: v for k, v in attrs.items()})
        for (q, a), (level, pos) in conf.tiers.items():
            self.tiers[(q, a)] = {"queue": q, "agent": a, "state": "Ready", "level": str(level),
                                  "position": str(pos)}

    def snapshot(self) -> tuple:
        return (repr(sorted(self.agents.items())), repr(sorted(self.tiers.items())),
                repr(sorted(self.queues.items())))

    def add_member(self, queue: str, call_id: str, joined: int, state: str = "Waiting",
                   agent: str = "", number: str = "13800138000") -> None:
        self.members.setdefault(queue, []).append({
            "queue": queue, "instance_id": "single_box", "uuid": f"m-{call_id}",
            "session_uuid": call_id, "cid_number": number, "cid_name": "Caller",
            "system_epoch": str(joined), "joined_epoch": str(joined), "rejoined_epoch": "0",
            "bridge_epoch": "0", "abandoned_epoch": "0", "base_score": "0", "skill_score": "0",
            "serving_agent": agent, "serving_system": "single_box" if agent else "",
            "state": state, "score": "0"})

    # --- the switch ---------------------------------------------------------------------
    def reloadxml(self, line: str) -> str:
        self.reloads += 1
        if "reloadxml" in self.fail:
            return self.fail["reloadxml"]
        path = self.conf_dir / "autoload_configs/callcenter.conf.xml" if self.conf_dir else None
        self.xml_queues = (parse_callcenter_conf(path.read_text()).queues
                           if path is not None and path.exists() else {})
        return "+OK [Success]\n"

    def _queue_cols(self, q: str) -> dict[str, str]:
        cols = dict(QUEUE_DEFAULTS, name=q)
        for param, value in self.xml_queues[q].items():
            col = param.replace("-", "_")
            if col in cols:  # the preprocessor expands $${...} when the XML is read
                cols[col] = value.replace("$${recordings_dir}", RECORDINGS_DIR)
        return cols

    @staticmethod
    def _new_agent(name: str, typ: str) -> dict[str, str]:
        a = {c: "0" for c in AGENT_COLS}
        a.update({"name": name, "instance_id": "single_box", "uuid": "", "type": typ,
                  "contact": "", "status": "Logged Out", "state": "Waiting"})
        return a

    def callcenter(self, line: str) -> str:
        cmd = line[len("api callcenter_config "):]
        for prefix, reply in self.fail.items():
            if cmd.startswith(prefix):
                return reply
        if any(cmd.startswith(p) for p in self.ignore):
            return "+OK\n"
        args = shlex.split(cmd)
        section, action, rest = args[0], args[1], args[2:]
        return getattr(self, f"_{section}_{action}")(rest)

    def _agent_add(self, rest: list[str]) -> str:
        name, typ = rest
        if name in self.agents:
            return "-ERR Agent already exist!\n"
        self.agents[name] = self._new_agent(name, typ)
        return "+OK\n"

    def _agent_del(self, rest: list[str]) -> str:
        self.agents.pop(rest[0], None)
        for key in [k for k in self.tiers if k[1] == rest[0]]:
            del self.tiers[key]
        return "+OK\n"

    def _agent_set(self, rest: list[str]) -> str:
        key, name, value = rest
        if name not in self.agents:
            return "-ERR Agent not found!\n"
        self.agents[name][key] = value
        return "+OK\n"

    def _agent_get(self, rest: list[str]) -> str:
        key, name = rest
        if name not in self.agents:
            return "-ERR Agent not found!\n"
        return self.agents[name].get(key, "")

    def _agent_list(self, rest: list[str]) -> str:
        return table(AGENT_COLS, [self.agents[n] for n in sorted(self.agents)])

    def _tier_add(self, rest: list[str]) -> str:
        q, a, level, pos = rest
        if q not in self.queues:
            return "-ERR Queue not found!\n"
        if a not in self.agents:
            return "-ERR Agent not found!\n"
        if (q, a) in self.tiers:
            return "-ERR Tier already exist!\n"
        self.tiers[(q, a)] = {"queue": q, "agent": a, "state": "Ready", "level": level,
                              "position": pos}
        return "+OK\n"

    def _tier_set(self, rest: list[str]) -> str:
        key, q, a, value = rest
        if (q, a) not in self.tiers:
            return "-ERR Tier not found!\n"
        self.tiers[(q, a)][key] = value
        return "+OK\n"

    def _tier_del(self, rest: list[str]) -> str:
        self.tiers.pop((rest[0], rest[1]), None)
        return "+OK\n"

    def _tier_list(self, rest: list[str]) -> str:
        rows = sorted(self.tiers.values(), key=lambda t: (int(t["level"]), int(t["position"]),
                                                          t["queue"], t["agent"]))
        return table(TIER_COLS, rows)

    def _queue_load(self, rest: list[str]) -> str:
        q = rest[0]
        if q not in self.queues:
            if q not in self.xml_queues:
                return "-ERR Invalid Queue not found!\n"
            self.queues[q] = self._queue_cols(q)
        return "+OK\n"

    def _queue_reload(self, rest: list[str]) -> str:
        q = rest[0]
        self.queues.pop(q, None)
        return self._queue_load(rest)

    def _queue_unload(self, rest: list[str]) -> str:
        self.queues.pop(rest[0], None)
        return "+OK\n"

    def _queue_list(self, rest: list[str]) -> str:
        if not rest:
            return table(QUEUE_COLS, [self.queues[q] for q in sorted(self.queues)])
        what, q = rest[0], rest[1]
        if what == "members":
            return table(MEMBER_COLS, self.members.get(q, []))
        if what == "agents":
            names = sorted(a for (qq, a) in self.tiers if qq == q)
            return table(AGENT_COLS, [self.agents[a] for a in names if a in self.agents])
        return table(TIER_COLS, [t for t in self.tiers.values() if t["queue"] == q])


# --- the parsers against real 1.10 output --------------------------------------------------

AGENT_LIST_110 = (
    "name|instance_id|uuid|type|contact|status|state|max_no_answer|wrap_up_time|"
    "reject_delay_time|busy_delay_time|no_answer_delay_time|last_bridge_start|last_bridge_end|"
    "last_offered_call|last_status_change|no_answer_count|calls_answered|talk_time|ready_time|"
    "external_calls_count\n"
    "1001@hotline.test|single_box||callback|[leg_timeout=5]user/1001@127.0.0.1|Available|"
    "In a queue call|3|3|10|60|10|1795345944|0|1795345940|1795345900|0|2|8|0|0\n+OK\n")
QUEUE_LIST_110 = (
    "|".join(QUEUE_COLS) + "\n"
    "support@default|longest-idle-agent|local_stream://moh|system|false|300|true|false|60|false|"
    "0|0|5||0|0|0|true|On Break\n+OK\n")
TIER_LIST_110 = "queue|agent|state|level|position\nsupport@default|1001|Ready|1|1\n+OK\n"


def test_agent_list_of_mod_callcenter_110_is_read_by_column_name():
    agents = parse_agents(AGENT_LIST_110)
    a = agents["1001@hotline.test"]
    assert (a.status, a.state, a.on_call) == ("Available", "In a queue call", True)
    assert a.param("contact") == "[leg_timeout=5]user/1001@127.0.0.1"
    assert a.param("wrap_up_time") == "3" and a.param("no_answer_delay_time") == "10"


def test_queue_and_tier_lists_of_mod_callcenter_110_parse():
    assert parse_queues(QUEUE_LIST_110)["support@default"]["strategy"] == "longest-idle-agent"
    tier = parse_tiers(TIER_LIST_110)[("support@default", "1001")]
    assert (tier.level, tier.position, tier.state) == (1, 1, "Ready")
    assert parse_tiers("+OK\n") == {}


def test_switch_state_is_read_through_the_peer_including_members():
    with EslPeer() as peer:
        fake = FakeCallcenter(peer)
        fake.xml_queues = {"q@d": {"strategy": "ring-all"}}
        fake._queue_load(["q@d"])
        fake._agent_add(["1@d", "callback"])
        fake.add_member("q@d", "call-1", 1795345944)
        from daemon.switch.esl import EslConnection

        with EslConnection(peer.host, peer.port, peer.password) as conn:
            state = read_switch_state(conn)
    assert state.queues["q@d"]["strategy"] == "ring-all"
    assert list(state.agents) == ["1@d"]
    assert [m.session_uuid for m in state.live_members("q@d")] == ["call-1"]
    assert [c for c in peer.commands if c.startswith("api")] == [
        "api callcenter_config agent list", "api callcenter_config tier list",
        "api callcenter_config queue list", "api callcenter_config queue list members q@d"]
