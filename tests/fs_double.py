"""A recording double of the fs_scripts session interface, and a stand-in ``freeswitch`` module.

``RecordingSession`` implements ``hotline_fs.session.Session``: it answers
scripted key presses, scripted API replies, and records every call in order in
``calls`` (with shortcuts ``commands``, ``events``, ``played``, ``vars_set``).

``FakeFreeswitch`` / ``FakeCoreSession`` stand in for what mod_python3 embeds
(the ``freeswitch`` module and its ``CoreSession``), to check that each entry
module adapts the real session correctly.
"""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Callable, Iterable, Mapping

FS_SCRIPTS = Path(__file__).resolve().parent.parent / "fs_scripts"
if str(FS_SCRIPTS) not in sys.path:  # FreeSWITCH puts its scripts dir on PYTHONPATH the same way
    sys.path.insert(0, str(FS_SCRIPTS))

Reply = str | Callable[[str], str]


class RecordingSession:
    """Scripted and recording ``Session``.

    ``keys``: what the caller presses at each ``collect`` in turn ("" = timeout).
    When the keys run out, ``collect`` times out. ``hangs_up_after``: the caller
    hangs up after that many ``collect`` calls. ``replies``: API reply by exact
    command or by command prefix (longest prefix wins); anything else gets "+OK\\n".
    """

    def __init__(self, variables: Mapping[str, str] | None = None, keys: Iterable[str] = (),
                 replies: Mapping[str, Reply] | None = None, now: float = 1_700_000_000.0,
                 hangs_up_after: int | None = None, fire_ok: bool = True) -> None:
        self.variables: dict[str, str] = dict(variables or {})
        self.keys = list(keys)
        self.replies = dict(replies or {})
        self._now = now
        self.hangs_up_after = hangs_up_after
        self.fire_ok = fire_ok
        self.calls: list[tuple] = []
        self.up = True
        self.answered = False
        self.collects = 0

    # --- Session interface
    def answer(self) -> None:
        self.calls.append(("answer",))
        self.answered = True

    def ready(self) -> bool:
        return self.up

    def play(self, path: str) -> None:
        self.calls.append(("play", path))

    def collect(self, prompt: str, min_digits: int, max_digits: int, timeout_ms: int,
                terminators: str = "#") -> str:
        self.calls.append(("collect", prompt, min_digits, max_digits, timeout_ms, terminators))
        self.collects += 1
        if self.hangs_up_after is not None and self.collects >= self.hangs_up_after:
            self.up = False  # the caller hangs up while this prompt plays
        got = self.keys.pop(0) if self.keys and self.up else ""
        return got[:max_digits]

    def get(self, name: str) -> str | None:
        return self.variables.get(name)

    def set(self, name: str, value: str) -> None:
        self.calls.append(("set", name, value))
        self.variables[name] = value

    def api(self, command: str) -> str:
        self.calls.append(("api", command))
        if command in self.replies:
            reply = self.replies[command]
        else:
            prefixes = [p for p in self.replies if command.startswith(p)]
            reply = self.replies[max(prefixes, key=len)] if prefixes else "+OK\n"
        return reply(command) if callable(reply) else reply

    def fire(self, subclass: str, headers: Mapping[str, str]) -> bool:
        self.calls.append(("fire", subclass, dict(headers)))
        return self.fire_ok

    def execute(self, app: str, data: str) -> None:
        self.calls.append(("execute", app, data))

    def sleep(self, ms: int) -> None:
        self.calls.append(("sleep", ms))

    def now(self) -> float:
        return self._now

    def log(self, level: str, message: str) -> None:
        self.calls.append(("log", level, message))

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        self.calls.append(("hangup", cause))
        self.up = False

    # --- what the tests read
    @property
    def commands(self) -> list[str]:
        return [c[1] for c in self.calls if c[0] == "api"]

    @property
    def events(self) -> list[tuple[str, dict[str, str]]]:
        return [(c[1], c[2]) for c in self.calls if c[0] == "fire"]

    @property
    def played(self) -> list[str]:
        return [c[1] for c in self.calls if c[0] == "play"]

    @property
    def prompts(self) -> list[str]:
        """Prompts of the collect calls, in order."""
        return [c[1] for c in self.calls if c[0] == "collect"]

    @property
    def hung_up(self) -> bool:
        return any(c[0] == "hangup" for c in self.calls)

    def logged(self, level: str) -> list[str]:
        return [c[2] for c in self.calls if c[0] == "log" and c[1] == level]

    def order(self, *kinds: str) -> list[tuple]:
        """The calls of these kinds, in order (e.g. order("fire", "api"))."""
        return [c for c in self.calls if c[0] in kinds]


def write_data(path: Path, tenants: Mapping[str, object]) -> Path:
    path.write_text(json.dumps(tenants), encoding="utf-8")
    return path


def serve_data(monkeypatch, path: Path) -> Path:
    """Make ``path`` the data file the scripts read (on a switch: next to them, in
    ``$${script_dir}``; here the checkout's fs_scripts/ must stay untouched)."""
    from hotline_fs import data

    monkeypatch.setattr(data, "DATA_FILE", str(path))
    return path


# --- stand-in for the switch's embedded ``freeswitch`` module -------------------------


class FakeCoreSession:
    """What mod_python3 hands to ``handler``: records the CoreSession methods called."""

    def __init__(self, variables: Mapping[str, str], digits: Iterable[str] = ()) -> None:
        self.variables = dict(variables)
        self.digits = list(digits)
        self.calls: list[tuple] = []
        self.up = True

    def answer(self) -> int:
        self.calls.append(("answer",))
        return 1

    def ready(self) -> bool:
        return self.up

    def streamFile(self, path: str, starting_sample_count: int = 0) -> int:  # noqa: N802
        self.calls.append(("streamFile", path))
        return 1

    def read(self, min_digits: int, max_digits: int, prompt: str, timeout: int,  # noqa: A003
             terminators: str, digit_timeout: int = 0) -> str:
        self.calls.append(("read", min_digits, max_digits, prompt, timeout, terminators))
        return self.digits.pop(0) if self.digits else ""

    def getVariable(self, name: str) -> str | None:  # noqa: N802
        return self.variables.get(name)

    def setVariable(self, name: str, value: str) -> None:  # noqa: N802
        self.calls.append(("setVariable", name, value))
        self.variables[name] = value

    def execute(self, app: str, data: str | None = None) -> None:
        self.calls.append(("execute", app, data))

    def sleep(self, ms: int, sync: int = 0) -> int:
        self.calls.append(("sleep", ms))
        return 1

    def hangup(self, cause: str = "") -> None:
        self.calls.append(("hangup", cause))
        self.up = False


class FakeFreeswitch(types.ModuleType):
    """Stand-in for the ``freeswitch`` module: API, Event, consoleLog, recorded."""

    def __init__(self, replies: Mapping[str, str] | None = None) -> None:
        super().__init__("freeswitch")
        self.replies = dict(replies or {})
        self.api_commands: list[str] = []
        self.fired: list[tuple[str, str, list[tuple[str, str]]]] = []
        self.console: list[tuple[str, str]] = []
        module = self

        class API:
            def __init__(self, session: object = None) -> None:
                pass

            def executeString(self, command: str) -> str:  # noqa: N802
                module.api_commands.append(command)
                return module.replies.get(command, "+OK\n")

        class Event:
            def __init__(self, kind: str, subclass: str = "") -> None:
                self.kind, self.subclass, self.headers = kind, subclass, []

            def addHeader(self, name: str, value: str) -> bool:  # noqa: N802
                self.headers.append((name, value))
                return True

            def fire(self) -> bool:
                module.fired.append((self.kind, self.subclass, list(self.headers)))
                return True

        self.API = API
        self.Event = Event

    def consoleLog(self, level: str, message: str) -> None:  # noqa: N802
        self.console.append((level, message))
