"""An ESL test peer: a gevent TCP server speaking FreeSWITCH's inbound Event Socket protocol.

Wire behaviour (what a FreeSWITCH 1.10 ``mod_event_socket`` does):
``auth/request`` greeting, ``auth PASSWORD`` (``+OK accepted`` / ``-ERR invalid``
and close), ``api`` (``api/response`` with Content-Length), ``bgapi``
(``+OK Job-UUID: ...`` then a ``BACKGROUND_JOB`` event, honouring a
``Job-UUID:`` header in the command), ``event plain ...``, ``filter``,
``noevents``, ``nixevent``, ``sendmsg``, ``exit`` (``+OK bye`` and a
``text/disconnect-notice``). Events reach a connection only if it subscribed
to them (and they pass its filters), like on a switch.

Control plane for tests: scripted replies (``script(prefix, text | callable |
None)``; ``None`` = never answer), the recorded ``commands``, ``inject`` raw
bytes, ``send_event``, ``replay`` a capture's event frames, ``disconnect``
(optionally in the middle of a frame), ``trickle`` (send N bytes at a time,
yielding in between: a slow link), ``refuse`` (accept and close at once),
``ignore_exit`` (answer nothing to ``exit`` and keep the socket open).

The peer also keeps the state a switch would have after the events it has sent
(``SwitchModel``: channels from CHANNEL_CREATE/DESTROY, mod_callcenter's agents,
queues, tiers and members from ``callcenter::info``) and answers ``show channels
as json`` and the ``callcenter_config`` lists from it, in FreeSWITCH 1.10's output
formats: a daemon that reconnects or restarts in the middle of a replayed capture
is told which calls are still up, as a real switch would tell it.

Run as a program it serves a capture/journal file to whoever subscribes
(``python tests/eslpeer.py serve FILE --port N``), which bench/ingest.py uses
to drive a daemon from another process.
"""
from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import sys
import time
import uuid
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import quote

import gevent
import gevent.event
import gevent.lock
import gevent.server
import gevent.socket as gsocket

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.switch.events import Event  # noqa: E402
from daemon.switch.frames import EslParser  # noqa: E402

DISCONNECT_BODY = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
CORE_UUID = "00000000-0000-4000-8000-00000000e51e"

Reply = str | Callable[[str], "str | None"] | None


def encode_value(value: object) -> str:
    return quote(str(value), safe="")


def event_body(headers: dict[str, object], body: str | None = None) -> bytes:
    text = "".join(f"{k}: {encode_value(v)}\n" for k, v in headers.items())
    if body is not None:
        raw = body.encode()
        return text.encode() + b"Content-Length: %d\n\n" % len(raw) + raw
    return text.encode() + b"\n"


def event_frame(headers: dict[str, object], body: str | None = None) -> bytes:
    """One ``text/event-plain`` frame as the switch writes it."""
    payload = event_body(headers, body)
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(payload) + payload


def capture_event_frames(path: str | Path) -> list[bytes]:
    """The raw ``text/event-plain`` frames of a capture or journal (.esl or .esl.gz)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    frames, _ = EslParser().feed_resync(data)
    return [f.raw for f in frames if f.is_event]


def _headers(frame: bytes) -> Event:
    return Event(frame[frame.find(b"\n\n") + 2:])


class PeerConnection:
    """One client connected to the peer."""

    def __init__(self, peer: "EslPeer", sock: gsocket.socket, address: tuple) -> None:
        self.peer = peer
        self.sock = sock
        self.address = address
        self.authed = False
        self.all_events = False
        self.events: set[str] = set()
        self.subclasses: set[str] = set()  # CUSTOM subclasses (the tokens after CUSTOM)
        self.filters: list[tuple[str, str]] = []
        self.closed = gevent.event.Event()
        self.commands: list[str] = []
        self._wlock = gevent.lock.Semaphore()

    # --- output ---------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Write whole frames: like the switch, never interleave two writers' bytes."""
        if self.closed.is_set():
            return
        chunk = self.peer.trickle
        with self._wlock:
            try:
                if chunk:
                    for i in range(0, len(data), chunk):
                        self.sock.sendall(data[i:i + chunk])
                        gevent.sleep(self.peer.trickle_delay)
                else:
                    self.sock.sendall(data)
            except OSError:
                self.close()

    def reply(self, text: str, extra: dict[str, str] | None = None) -> None:
        head = "Content-Type: command/reply\n"
        head += "".join(f"{k}: {v}\n" for k, v in (extra or {}).items())
        self.write(f"{head}Reply-Text: {text}\n\n".encode())

    def api_response(self, text: str) -> None:
        body = text.encode()
        self.write(b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body)

    def wants(self, frame: bytes) -> bool:
        if not (self.all_events or self.events):
            return False
        event = _headers(frame)
        if not self.all_events:
            name = event.name
            if name not in self.events:
                return False
            if name == "CUSTOM" and event.subclass and event.subclass not in self.subclasses:
                return False
        if self.filters:
            return any(event.get(h) == v for h, v in self.filters)
        return True

    def send_events(self, frames: Iterable[bytes], *, check: bool = True) -> int:
        out = [f for f in frames if not check or self.wants(f)]
        if out:
            self.write(b"".join(out))
        return len(out)

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        try:
            self.sock.shutdown(gsocket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # --- input ----------------------------------------------------------------------
    def serve(self) -> None:
        self.write(b"Content-Type: auth/request\n\n")
        buf = b""
        while not self.closed.is_set():
            try:
                data = self.sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            buf += data
            while b"\n\n" in buf:
                block, buf = buf.split(b"\n\n", 1)
                block = block.replace(b"\r", b"").strip(b"\n")
                if block:
                    self.handle(block.decode("utf-8", "replace"))
        self.close()

    def handle(self, block: str) -> None:
        line, _, rest = block.partition("\n")
        headers = dict(h.split(": ", 1) for h in rest.split("\n") if ": " in h)
        self.commands.append(line)
        self.peer.commands.append(line)
        self.peer.command_seen.set()
        verb, _, arg = line.partition(" ")
        if not self.authed:
            if verb == "auth":
                if arg == self.peer.password:
                    self.authed = True
                    self.reply("+OK accepted")
                else:
                    self.reply("-ERR invalid")
                    self.close()
            else:
                self.reply("-ERR command not found")
            return
        if verb == "exit":
            if self.peer.ignore_exit:
                return
            self.reply("+OK bye")
            self.write(b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n"
                       % len(DISCONNECT_BODY) + DISCONNECT_BODY)
            self.close()
            return
        if self.peer.originator is not None and verb in ("api", "bgapi") \
                and arg.startswith("originate ") and self.peer.scripted(line) is _NONE:
            self.peer.originator.handle(self, verb, arg, headers)  # scripted call outcomes
            return
        scripted = self.peer.scripted(line)
        if scripted is not _NONE:
            if scripted is None:
                return  # scripted silence: the command never gets an answer
            if verb == "bgapi":
                self.bgapi(arg, headers, scripted)
            elif verb == "api":
                self.api_response(scripted)
            else:
                self.reply(scripted)
            return
        if verb == "api":
            self.api_response(self.peer.default_api(arg))
        elif verb == "bgapi":
            self.bgapi(arg, headers, self.peer.default_api(arg))
        elif verb == "event":
            fmt, _, names = arg.partition(" ")
            if fmt != "plain":
                self.reply("-ERR invalid event format")  # the peer speaks plain only
                return
            custom = False
            keywords = 0
            for token in names.split():
                if custom:
                    self.subclasses.add(token)
                elif token == "ALL":
                    self.all_events = True
                    keywords += 1
                elif token.isupper():  # an event type name (the switch checks its table)
                    self.events.add(token)
                    custom = token == "CUSTOM"
                    keywords += 1
            if not keywords:
                self.reply("-ERR no keywords supplied")
                return
            self.reply("+OK event listener enabled plain")
        elif verb == "nixevent":
            for token in arg.split():
                self.events.discard(token)
                self.subclasses.discard(token)
            self.reply("+OK events nixed")
        elif verb == "noevents":
            if not (self.events or self.all_events):
                self.reply("-ERR not listening for events")
                return
            self.events.clear()
            self.subclasses.clear()
            self.all_events = False
            self.reply("+OK no longer listening for events")
        elif verb == "filter":
            header, _, value = arg.partition(" ")
            if header == "delete":
                self.filters = [f for f in self.filters if f[0] != value.split(" ")[0]]
                self.reply(f"+OK filter deleted. [{value}]")
            else:
                self.filters.append((header, value))
                self.reply(f"+OK filter added. [{header}]=[{value}]")
        elif verb == "sendmsg":
            self.reply("+OK")
        elif verb == "sendevent":
            # the switch fires the event: every subscriber, the sender included, gets it
            event_uuid = str(uuid.uuid4())
            fired = {"Event-Name": arg.strip() or "CUSTOM", "Core-UUID": CORE_UUID,
                     "Event-UUID": event_uuid,
                     "Event-Date-Timestamp": str(int(time.time() * 1_000_000))}
            fired.update((k, v) for k, v in headers.items() if k != "Content-Length")
            self.reply(f"+OK {event_uuid}")
            self.peer.send_event(fired)
        else:
            self.reply("-ERR command not found")

    def bgapi(self, arg: str, headers: dict[str, str], result: str) -> None:
        job = headers.get("Job-UUID") or str(uuid.uuid4())
        self.reply(f"+OK Job-UUID: {job}", {"Job-UUID": job})
        cmd, _, cmd_arg = arg.partition(" ")
        frame = event_frame({
            "Job-UUID": job, "Job-Command": cmd, "Job-Command-Arg": cmd_arg,
            "Event-Name": "BACKGROUND_JOB", "Core-UUID": CORE_UUID,
            "Event-Date-Timestamp": int(time.time() * 1e6),
        }, result)
        if self.wants(frame):
            self.write(frame)


_NONE = object()

# column lists as FreeSWITCH 1.10 prints them: the `channels` table of switch_core_sqldb.c,
# mod_callcenter.c's agents / tiers / members tables (members listed with a computed
# `score`) and its hand-written `queue list` header
CHANNEL_COLUMNS = (
    "uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num",
    "ip_addr", "dest", "application", "application_data", "dialplan", "context", "read_codec",
    "read_rate", "read_bit_rate", "write_codec", "write_rate", "write_bit_rate", "secure",
    "hostname", "presence_id", "presence_data", "accountcode", "callstate", "callee_name",
    "callee_num", "callee_direction", "call_uuid", "sent_callee_name", "sent_callee_num",
    "initial_cid_name", "initial_cid_num", "initial_ip_addr", "initial_dest",
    "initial_dialplan", "initial_context")
AGENT_COLUMNS = (
    "name", "instance_id", "uuid", "type", "contact", "status", "state", "max_no_answer",
    "wrap_up_time", "reject_delay_time", "busy_delay_time", "no_answer_delay_time",
    "last_bridge_start", "last_bridge_end", "last_offered_call", "last_status_change",
    "no_answer_count", "calls_answered", "talk_time", "ready_time", "external_calls_count")
TIER_COLUMNS = ("queue", "agent", "state", "level", "position")
MEMBER_COLUMNS = (
    "queue", "instance_id", "uuid", "session_uuid", "cid_number", "cid_name", "system_epoch",
    "joined_epoch", "rejoined_epoch", "bridge_epoch", "abandoned_epoch", "base_score",
    "skill_score", "serving_agent", "serving_system", "state", "score")
QUEUE_COLUMNS = (
    "name", "strategy", "moh_sound", "time_base_score", "tier_rules_apply",
    "tier_rule_wait_second", "tier_rule_wait_multiply_level", "tier_rule_no_agent_no_wait",
    "discard_abandoned_after", "abandoned_resume_allowed", "max_wait_time",
    "max_wait_time_with_no_agent", "max_wait_time_with_no_agent_time_reached",
    "record_template", "calls_answered", "calls_abandoned", "ring_progressively_delay",
    "skip_agents_with_external_calls", "agent_no_answer_status")
# channel headers -> columns, refreshed by every channel event
_CHANNEL_HEADERS = (
    ("direction", "Call-Direction"), ("name", "Channel-Name"), ("state", "Channel-State"),
    ("cid_name", "Caller-Caller-ID-Name"), ("cid_num", "Caller-Caller-ID-Number"),
    ("ip_addr", "Caller-Network-Addr"), ("dest", "Caller-Destination-Number"),
    ("dialplan", "Caller-Dialplan"), ("context", "Caller-Context"),
    ("hostname", "FreeSWITCH-Hostname"), ("presence_id", "Channel-Presence-ID"),
    ("presence_data", "Channel-Presence-Data"), ("accountcode", "variable_accountcode"),
    ("callstate", "Channel-Call-State"), ("callee_name", "Caller-Callee-ID-Name"),
    ("callee_num", "Caller-Callee-ID-Number"), ("callee_direction", "Caller-Direction"),
    ("call_uuid", "Channel-Call-UUID"), ("read_codec", "Channel-Read-Codec-Name"),
    ("read_rate", "Channel-Read-Codec-Rate"), ("read_bit_rate", "Channel-Read-Codec-Bit-Rate"),
    ("write_codec", "Channel-Write-Codec-Name"), ("write_rate", "Channel-Write-Codec-Rate"),
    ("write_bit_rate", "Channel-Write-Codec-Bit-Rate"))


def _epoch_s(event: Event) -> int:
    return event.timestamp_ms // 1000


class SwitchModel:
    """What a switch holds after the events it sent: channels and mod_callcenter's tables.

    Fed every event frame the peer sends (whoever receives it: a switch's calls go on
    while no client listens), it answers the state commands a daemon asks after a
    (re)connect the way FreeSWITCH 1.10 does (see the column lists above).
    """

    def __init__(self) -> None:
        self.channels: dict[str, dict[str, str]] = {}
        self.agents: dict[str, dict[str, str]] = {}
        self.members: dict[str, dict[str, str]] = {}  # member uuid -> row
        self.queues: dict[str, None] = {}
        self.tiers: dict[tuple[str, str], None] = {}

    # --- events in ----------------------------------------------------------------------
    def observe(self, frame: bytes) -> None:
        event = _headers(frame)
        name = event.name
        if name and name.startswith("CHANNEL_"):
            self._channel(event, name)
        elif name == "CUSTOM" and event.subclass == "callcenter::info":
            self._callcenter(event)

    def _channel(self, event: Event, name: str) -> None:
        uid = event.uuid
        if not uid:
            return
        if name == "CHANNEL_DESTROY":
            self.channels.pop(uid, None)
            return
        row = self.channels.get(uid)
        if row is None:
            if name != "CHANNEL_CREATE":
                return  # a channel created before the capture began: the switch had it, we cannot know
            created_us = int(event.get("Caller-Channel-Created-Time") or event.timestamp_ms * 1000)
            row = self.channels[uid] = dict.fromkeys(CHANNEL_COLUMNS, "")
            row.update(uuid=uid, created_epoch=str(created_us // 1_000_000),
                       created=dt.datetime.fromtimestamp(created_us / 1e6).strftime(
                           "%Y-%m-%d %H:%M:%S"))
            for column, header in (("initial_cid_name", "Caller-Caller-ID-Name"),
                                   ("initial_cid_num", "Caller-Caller-ID-Number"),
                                   ("initial_ip_addr", "Caller-Network-Addr"),
                                   ("initial_dest", "Caller-Destination-Number"),
                                   ("initial_dialplan", "Caller-Dialplan"),
                                   ("initial_context", "Caller-Context")):
                row[column] = event.get(header) or ""
        for column, header in _CHANNEL_HEADERS:
            value = event.get(header)
            if value is not None:
                row[column] = value
        if name == "CHANNEL_EXECUTE":
            row["application"] = event.get("Application") or ""
            row["application_data"] = event.get("Application-Data") or ""

    def _agent(self, name: str) -> dict[str, str]:
        row = self.agents.get(name)
        if row is None:
            row = self.agents[name] = dict.fromkeys(AGENT_COLUMNS, "0")
            row.update(name=name, instance_id="single_box", uuid="", type="callback",
                       contact="", status="Logged Out", state="Waiting")
        return row

    def _callcenter(self, event: Event) -> None:
        action = event.get("CC-Action") or ""
        queue = event.get("CC-Queue") or ""
        agent = event.get("CC-Agent") or ""
        now = str(_epoch_s(event))
        if queue:
            self.queues.setdefault(queue, None)
        if agent:
            row = self._agent(agent)
            if queue:
                self.tiers.setdefault((queue, agent), None)
            if action == "agent-status-change":
                row.update(status=event.get("CC-Agent-Status") or row["status"],
                           last_status_change=now)
            elif action == "agent-state-change":
                row["state"] = event.get("CC-Agent-State") or row["state"]
            elif action == "agent-offering":
                row["last_offered_call"] = now
            elif action == "bridge-agent-start":
                row["last_bridge_start"] = now
            elif action == "bridge-agent-end":
                row["last_bridge_end"] = now
        member = event.get("CC-Member-UUID") or ""
        if not member:
            return
        if action == "member-queue-start":
            self.members[member] = {
                "queue": queue, "instance_id": "single_box", "uuid": member,
                "session_uuid": event.get("CC-Member-Session-UUID") or "",
                "cid_number": event.get("CC-Member-CID-Number") or "",
                "cid_name": event.get("CC-Member-CID-Name") or "", "system_epoch": now,
                "joined_epoch": now, "rejoined_epoch": "0", "bridge_epoch": "0",
                "abandoned_epoch": "0", "base_score": "0", "skill_score": "0",
                "serving_agent": "", "serving_system": "", "state": "Waiting"}
        elif action == "member-queue-end":
            self.members.pop(member, None)
        elif member in self.members:
            row = self.members[member]
            if action == "agent-offering":
                row.update(state="Trying", serving_agent=agent, serving_system="single_box")
            elif action == "bridge-agent-start":
                row.update(state="Answered", bridge_epoch=now)
            elif action == "bridge-agent-fail" and row["serving_agent"] == agent:
                row.update(state="Waiting", serving_agent="", serving_system="")

    # --- commands out ---------------------------------------------------------------------
    def show_channels_json(self) -> str:
        if not self.channels:
            return '{"row_count": 0}\n'
        rows = sorted(self.channels.values(), key=lambda r: int(r["created_epoch"] or 0))
        return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"))

    def show_channels(self) -> str:
        rows = sorted(self.channels.values(), key=lambda r: int(r["created_epoch"] or 0))
        lines = [",".join(CHANNEL_COLUMNS)] + [",".join(r[c] for c in CHANNEL_COLUMNS)
                                               for r in rows]
        return "\n".join(lines) + f"\n\n{len(rows)} total.\n"

    @staticmethod
    def _table(columns: tuple[str, ...], rows: Iterable[dict[str, str]]) -> str:
        rows = list(rows)
        if not rows:
            return "+OK\n"  # list_result_callback prints the header with the first row only
        lines = ["|".join(columns)] + ["|".join(r.get(c, "") for c in columns) for r in rows]
        return "\n".join(lines) + "\n+OK\n"

    def callcenter(self, args: list[str], now_s: int) -> str:
        if args[:2] == ["agent", "list"]:
            names = args[2:3] or sorted(self.agents)
            return self._table(AGENT_COLUMNS, (self.agents[n] for n in names if n in self.agents))
        if args[:2] == ["tier", "list"]:
            return self._table(TIER_COLUMNS, ({"queue": q, "agent": a, "state": "Ready",
                                               "level": "1", "position": "1"}
                                              for q, a in sorted(self.tiers)))
        if args[:3] == ["queue", "list", "members"]:
            rows = []
            for row in self.members.values():
                if len(args) < 4 or row["queue"] == args[3]:
                    score = now_s - int(row["joined_epoch"])
                    rows.append(dict(row, score=str(score)))
            rows.sort(key=lambda r: (r["queue"], -int(r["score"])))
            return self._table(MEMBER_COLUMNS, rows)
        if args[:2] == ["queue", "list"] and len(args) == 2:
            lines = ["|".join(QUEUE_COLUMNS)]
            for name in sorted(self.queues):
                lines.append("|".join((name, "ring-all", "local_stream://moh", "system", "false",
                                       "300", "true", "false", "60", "false", "0", "0", "5",
                                       "", "0", "0", "10", "false", "On Break")))
            return "\n".join(lines) + "\n+OK\n"
        return "+OK\n"


class EslPeer:
    """The test switch. ``with EslPeer() as peer: peer.host, peer.port``."""

    def __init__(self, password: str = "ClueCon", host: str = "127.0.0.1", port: int = 0) -> None:
        self.password = password
        self.replies: list[tuple[str, Reply]] = []
        self.commands: list[str] = []
        self.command_seen = gevent.event.Event()
        self.connections: list[PeerConnection] = []
        self.refuse = False
        self.ignore_exit = False
        self.trickle = 0
        self.trickle_delay = 0.0
        self.accepted = 0
        self.model = SwitchModel()  # what the switch holds after the events sent so far
        self._last_event_s = 0  # switch time of the latest event sent (a capture's clock)
        self.originator: "Originator | None" = None  # answers originate (see Originator)
        self._connected = gevent.event.Event()
        self._server = gevent.server.StreamServer((host, port), self._accept)

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> "EslPeer":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(timeout=1)
        for conn in self.connections:
            conn.close()

    def __enter__(self) -> "EslPeer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return self._server.server_host

    @property
    def port(self) -> int:
        return self._server.server_port

    def _accept(self, sock: gsocket.socket, address: tuple) -> None:
        self.accepted += 1
        if self.refuse:
            sock.close()
            return
        conn = PeerConnection(self, sock, address)
        self.connections.append(conn)
        self._connected.set()
        conn.serve()

    # --- control plane ----------------------------------------------------------------
    def script(self, prefix: str, reply: Reply) -> None:
        """Answer commands starting with ``prefix`` (e.g. ``"api status"``) with ``reply``.

        A str is the reply text (api/bgapi: the output), a callable gets the
        command line and returns it, ``None`` means never answer. Later scripts win.
        """
        self.replies.insert(0, (prefix, reply))

    def scripted(self, line: str) -> object:
        for prefix, reply in self.replies:
            if line.startswith(prefix):
                return reply(line) if callable(reply) else reply
        return _NONE

    def default_api(self, arg: str) -> str:
        cmd = arg.split(" ", 1)[0]
        if cmd == "status":
            return ("UP 0 years, 0 days, 0 hours, 0 minutes, 1 second\n"
                    "FreeSWITCH (Version 1.10.12) is ready\n")
        words = arg.split()
        if cmd == "show":
            if words[1:2] == ["channels"]:
                if "json" in words:
                    return self.model.show_channels_json()
                return self.model.show_channels()
            return '{"row_count": 0}\n' if "json" in arg else "\n0 total.\n"
        if cmd == "callcenter_config":
            return self.model.callcenter(words[1:], self._last_event_s or int(time.time()))
        if cmd == "hostname":
            return "vm"
        return f"-ERR {cmd} Command not found!\n"

    @property
    def live(self) -> list[PeerConnection]:
        return [c for c in self.connections if not c.closed.is_set()]

    def wait_connection(self, count: int = 1, timeout: float = 5.0) -> PeerConnection:
        """Wait until ``count`` clients connected in total; the newest one."""
        with gevent.Timeout(timeout, AssertionError(f"no connection #{count} to the peer")):
            while len(self.connections) < count:
                self._connected.clear()
                self._connected.wait()
        return self.connections[count - 1]

    def wait_command(self, prefix: str, timeout: float = 5.0) -> str:
        with gevent.Timeout(timeout, AssertionError(f"no command {prefix!r}; got {self.commands}")):
            while True:
                for line in self.commands:
                    if line.startswith(prefix):
                        return line
                self.command_seen.clear()
                self.command_seen.wait()

    def wait_subscribed(self, timeout: float = 5.0) -> PeerConnection:
        with gevent.Timeout(timeout, AssertionError("no subscribed connection")):
            while True:
                for conn in self.live:
                    if conn.events or conn.all_events:
                        return conn
                gevent.sleep(0.005)

    def inject(self, data: bytes) -> None:
        """Raw bytes to every live client (no subscription check: anything goes)."""
        for conn in self.live:
            conn.write(data)

    def _observe(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.model.observe(frame)
        if frames:
            stamp = _headers(frames[-1]).timestamp_ms
            if stamp:
                self._last_event_s = stamp // 1000

    def send_event(self, headers: dict[str, object], body: str | None = None) -> int:
        """An event to every client subscribed to it; returns how many got it."""
        frame = event_frame(headers, body)
        self._observe([frame])
        return sum(conn.send_events([frame]) for conn in self.live)

    def replay(self, frames_or_path: Iterable[bytes] | str | Path) -> int:
        """A capture's event frames (or given frames) to the subscribed clients."""
        if isinstance(frames_or_path, (str, Path)):
            frames = capture_event_frames(frames_or_path)
        else:
            frames = list(frames_or_path)
        self._observe(frames)
        return sum(conn.send_events(frames) for conn in self.live)

    def disconnect(self, mid_frame: bool = False) -> None:
        """Drop every client; ``mid_frame`` first sends half of an event frame."""
        for conn in self.live:
            if mid_frame:
                frame = event_frame({"Event-Name": "HEARTBEAT", "Core-UUID": CORE_UUID,
                                     "Event-Info": "x" * 200})
                conn.write(frame[: len(frame) // 2 + 30])
            conn.close()


# --- program mode: serve a file to the bench ------------------------------------------

# --- originate: scripted call outcomes (the campaign dialer's tests) --------------------------
@dataclass(frozen=True)
class Outcome:
    """How a dialed number behaves.

    ``answer``: rings ``ring_s``, answers (CHANNEL_ANSWER; the originate job says
    ``+OK <uuid>``), is bridged after ``bridge_after_s`` (CHANNEL_BRIDGE; None = never, the
    call ends without an agent), talks ``talk_s``, hangs up NORMAL_CLEARING. ``busy``:
    USER_BUSY at once. ``no_answer``: rings until the originate_timeout, NO_ANSWER.
    ``failure``: the switch refuses the call (``cause``, CALL_REJECTED by default; with
    ``channel=False`` no channel is ever created, e.g. a gateway that is down).
    ``late_answer``: the person would answer after the originate_timeout - FreeSWITCH has
    hung up with NO_ANSWER by then, so that is all anyone sees.
    """

    kind: str = "answer"
    ring_s: float = 0.05
    talk_s: float = 0.1
    bridge_after_s: float | None = 0.01
    cause: str | None = None
    channel: bool = True
    variables: tuple[tuple[str, str], ...] = ()  # extra channel variables on the events


_DEFAULT_CAUSE = {"busy": "USER_BUSY", "no_answer": "NO_ANSWER", "late_answer": "NO_ANSWER",
                  "failure": "CALL_REJECTED"}


def parse_originate(arg: str) -> tuple[dict[str, str], str]:
    """``originate {a=1,b=2}loopback/138.../ctx &park()`` -> ({a: 1, b: 2}, dial string)."""
    rest = arg.partition(" ")[2].strip()
    variables: dict[str, str] = {}
    if rest.startswith("{"):
        body, _, rest = rest[1:].partition("}")
        for item in body.split(","):
            k, _, v = item.partition("=")
            variables[k.strip()] = v.strip().strip("'")
    return variables, rest.split(" ", 1)[0]


def dialed_number(dial: str) -> str:
    """``loopback/13800138001/ctx`` -> 13800138001; ``user/1001@dom`` -> 1001."""
    kind, _, rest = dial.partition("/")
    return rest.split("/", 1)[0].split("@", 1)[0] if kind in ("loopback", "user", "sofia") \
        else rest.split("/")[-1]


class Originator:
    """Answers ``api``/``bgapi originate`` with scripted outcomes and the channel events a
    FreeSWITCH 1.10 sends for them (``mod_commands`` originate: ``+OK <uuid>`` /
    ``-ERR <CAUSE>``; CHANNEL_CREATE, CHANNEL_ANSWER, CHANNEL_BRIDGE,
    CHANNEL_HANGUP_COMPLETE with ``Hangup-Cause``).

    ``outcome_for(number, command_line)`` decides; ``calls`` records (uuid, number, vars).
    Install with ``peer.originator = Originator(peer, outcome_for)``.
    """

    def __init__(self, peer: "EslPeer", outcome_for: Callable[[str, str], Outcome]) -> None:
        self.peer = peer
        self.outcome_for = outcome_for
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def handle(self, conn: PeerConnection, verb: str, arg: str, headers: dict[str, str]) -> None:
        variables, dial = parse_originate(arg)
        number = dialed_number(dial)
        call_uuid = variables.get("origination_uuid") or str(uuid.uuid4())
        self.calls.append((call_uuid, number, variables))
        outcome = self.outcome_for(number, arg)
        job = headers.get("Job-UUID") or str(uuid.uuid4())
        if verb == "bgapi":
            conn.reply(f"+OK Job-UUID: {job}", {"Job-UUID": job})

        def finish(result: str) -> None:
            if verb == "api":
                conn.api_response(result)
                return
            frame = event_frame({
                "Event-Name": "BACKGROUND_JOB", "Core-UUID": CORE_UUID, "Job-UUID": job,
                "Job-Command": "originate", "Job-Command-Arg": arg.partition(" ")[2],
                "Event-Date-Timestamp": int(time.time() * 1e6)}, result)
            if conn.wants(frame):
                conn.write(frame)

        gevent.spawn(self._run, outcome, call_uuid, number, dial, variables, finish)

    def _event(self, name: str, call_uuid: str, number: str, dial: str,
               variables: dict[str, str], outcome: Outcome, **extra: object) -> None:
        now = int(time.time() * 1e6)
        headers: dict[str, object] = {
            "Event-Name": name, "Core-UUID": CORE_UUID, "Event-Date-Timestamp": now,
            "Channel-Name": f"{dial.split('/')[0]}/{number}-a", "Unique-ID": call_uuid,
            "Call-Direction": "outbound", "Channel-Call-UUID": call_uuid,
            "Caller-Direction": "outbound", "Caller-Destination-Number": number,
            "Caller-Caller-ID-Number": variables.get("origination_caller_id_number", ""),
            "Caller-Unique-ID": call_uuid, "variable_origination_uuid": call_uuid}
        headers.update(extra)
        for k, v in list(variables.items()) + list(outcome.variables):
            headers[f"variable_{k}"] = v
        self.peer.send_event(headers)

    def _run(self, o: Outcome, call_uuid: str, number: str, dial: str,
             variables: dict[str, str], finish: Callable[[str], None]) -> None:
        timeout = float(variables.get("originate_timeout") or 60)
        cause = o.cause or _DEFAULT_CAUSE.get(o.kind, "NORMAL_CLEARING")
        ev = lambda name, **kw: self._event(name, call_uuid, number, dial, variables, o, **kw)  # noqa: E731
        created = int(time.time() * 1e6)
        if o.kind == "failure" and not o.channel:
            finish(f"-ERR {cause}\n")
            return
        ev("CHANNEL_CREATE", **{"Answer-State": "ringing", "Channel-State": "CS_INIT",
                                "Caller-Channel-Created-Time": created})
        if o.kind in ("busy", "failure"):
            gevent.sleep(min(o.ring_s, timeout))
            ev("CHANNEL_HANGUP_COMPLETE", **{"Answer-State": "hangup", "Hangup-Cause": cause,
                                             "Caller-Channel-Created-Time": created,
                                             "Caller-Channel-Answered-Time": 0})
            finish(f"-ERR {cause}\n")
            return
        if o.kind in ("no_answer", "late_answer") or o.ring_s >= timeout:
            # scaled: the peer's clock runs in the outcome's seconds, the dialer's
            # originate_timeout is in real seconds; the outcome's ring time stands for it
            gevent.sleep(o.ring_s)
            ev("CHANNEL_HANGUP_COMPLETE", **{"Answer-State": "hangup",
                                             "Hangup-Cause": "NO_ANSWER",
                                             "Caller-Channel-Created-Time": created,
                                             "Caller-Channel-Answered-Time": 0})
            finish("-ERR NO_ANSWER\n")
            return
        gevent.sleep(o.ring_s)
        answered = int(time.time() * 1e6)
        ev("CHANNEL_ANSWER", **{"Answer-State": "answered",
                                "Caller-Channel-Answered-Time": answered})
        finish(f"+OK {call_uuid}\n")
        bridged = 0
        if o.bridge_after_s is not None:
            gevent.sleep(o.bridge_after_s)
            bridged = int(time.time() * 1e6)
            ev("CHANNEL_BRIDGE", **{"Answer-State": "answered",
                                    "Caller-Channel-Bridged-Time": bridged})
        gevent.sleep(o.talk_s)
        ev("CHANNEL_HANGUP_COMPLETE", **{"Answer-State": "hangup",
                                         "Hangup-Cause": o.cause or "NORMAL_CLEARING",
                                         "Caller-Channel-Created-Time": created,
                                         "Caller-Channel-Answered-Time": answered,
                                         "Caller-Channel-Bridged-Time": bridged})


def _serve(path: str, port: int, password: str, pace: float, repeat: int) -> None:
    """Serve ``path``'s event frames to each client once it subscribes.

    pace = events per second (0 = as fast as the socket takes them); when pacing,
    ``Event-Date-Timestamp`` is rewritten to the moment of sending, so a
    consumer can measure event -> database latency against it.
    """
    frames = capture_event_frames(path) * repeat
    count, total = len(frames), sum(len(f) for f in frames)
    chunks: list[bytes] = []  # ~1 MB of whole frames each: replies may go between chunks
    if not pace:
        pending: list[bytes] = []
        size = 0
        for frame in frames:
            pending.append(frame)
            size += len(frame)
            if size >= 1 << 20:
                chunks.append(b"".join(pending))
                pending, size = [], 0
        if pending:
            chunks.append(b"".join(pending))
        frames = []  # the chunks hold the bytes now
    done = gevent.event.Event()

    class BenchPeer(EslPeer):
        def _accept(self, sock: gsocket.socket, address: tuple) -> None:
            conn = PeerConnection(self, sock, address)
            self.connections.append(conn)
            gevent.spawn(self._stream, conn)
            conn.serve()

        def _stream(self, conn: PeerConnection) -> None:
            while not (conn.events or conn.all_events):
                if conn.closed.wait(0.002):
                    return
            start = time.perf_counter()
            if not pace:
                for chunk in chunks:
                    conn.write(chunk)
            else:
                for i, frame in enumerate(frames):
                    due = start + i / pace
                    delay = due - time.perf_counter()
                    if delay > 0:
                        gevent.sleep(delay)
                    conn.write(_stamp(frame, time.time()))
            sys.stdout.write(f"sent {count} {total} {time.perf_counter() - start:.3f}\n")
            sys.stdout.flush()

    peer = BenchPeer(password=password, port=port).start()
    sys.stdout.write(f"listening {peer.port}\n")
    sys.stdout.flush()
    try:
        done.wait()
    finally:
        peer.stop()


def _stamp(frame: bytes, now: float) -> bytes:
    """Rewrite Event-Date-Timestamp (same digit count, so Content-Length stays)."""
    key = b"\nEvent-Date-Timestamp: "
    i = frame.find(key)
    if i < 0:
        return frame
    start = i + len(key)
    stop = frame.find(b"\n", start)
    stamp = str(int(now * 1e6)).encode().rjust(stop - start, b"0")[-(stop - start):]
    return frame[:start] + stamp + frame[stop:]


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="eslpeer")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("file")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--password", default=os.environ.get("ESLPEER_PASSWORD", "ClueCon"))
    serve.add_argument("--pace", type=float, default=0.0)
    serve.add_argument("--repeat", type=int, default=1)
    dial = sub.add_parser("dial", help="answer originate with outcomes by the number's last "
                                       "digit (docs/ADMIN.md 'Campaigns')")
    dial.add_argument("--port", type=int, default=8021)
    dial.add_argument("--password", default=os.environ.get("ESLPEER_PASSWORD", "ClueCon"))
    args = parser.parse_args(argv)
    if args.cmd == "dial":
        _dial(args.port, args.password)
        return
    _serve(args.file, args.port, args.password, args.pace, args.repeat)


DEMO_OUTCOMES = {"1": Outcome("answer", ring_s=2, talk_s=5, bridge_after_s=0.5),
                 "2": Outcome("busy", ring_s=1), "3": Outcome("no_answer", ring_s=5),
                 "4": Outcome("failure"), "5": Outcome("late_answer", ring_s=5)}


def _dial(port: int, password: str) -> None:
    """A switch for trying campaigns by hand: a number ending in 1 answers (and is bridged),
    2 is busy, 3 does not answer, 4 is rejected, 5 would answer too late; others answer."""
    peer = EslPeer(password, port=port)
    peer.originator = Originator(
        peer, lambda number, line: DEMO_OUTCOMES.get(number[-1:], DEMO_OUTCOMES["1"]))
    peer.start()
    print(f"eslpeer dial: listening on {peer.host}:{peer.port}", flush=True)
    try:
        while True:
            gevent.sleep(3600)
    except KeyboardInterrupt:
        peer.stop()



if __name__ == "__main__":
    main(sys.argv[1:])


# --- pytest helpers ---------------------------------------------------------------------

def real_switch() -> tuple[str, int, str] | None:
    """``HOTLINE_TEST_ESL=host:port:password`` -> the real FreeSWITCH to test against."""
    spec = os.environ.get("HOTLINE_TEST_ESL")
    if not spec:
        return None
    host, port, password = spec.split(":", 2)
    return host, int(port), password
