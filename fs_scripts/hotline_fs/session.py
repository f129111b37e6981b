"""The narrow session interface the feature logic talks to, and its mod_python3 adapter.

Feature functions never touch the ``freeswitch`` module: they take a ``Session``
(answer, play, collect digits, get/set variable, api, fire event, execute,
log, hangup). ``FsSession`` adapts the real mod_python3 ``CoreSession`` to it;
``tests/fs_double.py`` records every call instead.

``freeswitch`` is imported lazily (only inside the switch, at call time), so the
scripts import cleanly anywhere and tests can put a stand-in module into
``sys.modules``.
"""
from __future__ import annotations

import time
import traceback
from typing import Any, Callable, Mapping, Protocol

# A prompt passed to switch_ivr_read must be a playable path; this one is short silence.
NO_PROMPT = "silence_stream://100"


class Session(Protocol):
    """What a feature may do with the channel it runs on."""

    def answer(self) -> None: ...

    def ready(self) -> bool: ...

    def play(self, path: str) -> None: ...

    def collect(self, prompt: str, min_digits: int, max_digits: int, timeout_ms: int,
                terminators: str = "#") -> str:
        """Play ``prompt`` (interruptible) and return the digits pressed ("" = nothing)."""
        ...

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def api(self, command: str) -> str:
        """Run an API command line (``"callcenter_config agent list 1001@x"``); return its reply."""
        ...

    def fire(self, subclass: str, headers: Mapping[str, str]) -> bool:
        """Fire a CUSTOM event with this subclass; the switch adds Event-Date-Timestamp."""
        ...

    def execute(self, app: str, data: str) -> None: ...

    def sleep(self, ms: int) -> None: ...

    def now(self) -> float:
        """Epoch seconds on the switch's clock."""
        ...

    def log(self, level: str, message: str) -> None: ...

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None: ...


def _freeswitch() -> Any:
    # Imported at call time: the module exists only inside FreeSWITCH (mod_python3).
    import freeswitch  # type: ignore[import-not-found]

    return freeswitch


class FsSession:
    """``Session`` over mod_python3's ``CoreSession`` (the ``session`` handed to ``handler``)."""

    def __init__(self, session: Any) -> None:
        self._s = session
        self._fs = _freeswitch()

    def answer(self) -> None:
        self._s.answer()

    def ready(self) -> bool:
        return bool(self._s.ready())

    def play(self, path: str) -> None:
        self._s.streamFile(path)

    def collect(self, prompt: str, min_digits: int, max_digits: int, timeout_ms: int,
                terminators: str = "#") -> str:
        # CoreSession.read = switch_ivr_read: plays the prompt with barge-in, returns the
        # digits without the terminator; unlike playAndGetDigits it plays no "bad input"
        # file by itself, so retries and their prompts stay in the (tested) logic.
        digits = self._s.read(min_digits, max_digits, prompt or NO_PROMPT, timeout_ms, terminators)
        return digits or ""

    def get(self, name: str) -> str | None:
        value = self._s.getVariable(name)
        return None if value is None else str(value)

    def set(self, name: str, value: str) -> None:
        self._s.setVariable(name, value)

    def api(self, command: str) -> str:
        reply = self._fs.API().executeString(command)
        return "" if reply is None else str(reply)

    def fire(self, subclass: str, headers: Mapping[str, str]) -> bool:
        event = self._fs.Event("CUSTOM", subclass)
        for name, value in headers.items():
            event.addHeader(name, value)
        return bool(event.fire())

    def execute(self, app: str, data: str) -> None:
        self._s.execute(app, data)

    def sleep(self, ms: int) -> None:
        self._s.sleep(ms)

    def now(self) -> float:
        return time.time()

    def log(self, level: str, message: str) -> None:
        self._fs.consoleLog(level, "hotline: " + message + "\n")

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        self._s.hangup(cause)


Feature = Callable[[Session, str], None]


def run(feature: Feature, session: Any, args: Any) -> None:
    """Entry-module glue: adapt the real session, run the feature, log any crash.

    A crash is logged with its traceback on the switch console and the call is
    hung up, so a desk phone never stays in silence after a script error.
    """
    fs_session = FsSession(session)
    try:
        feature(fs_session, "" if args is None else str(args).strip())
    except Exception:  # noqa: BLE001 - last resort inside the switch: log, hang up, never raise
        fs_session.log("err", f"{getattr(feature, '__name__', feature)} failed:\n"
                              + traceback.format_exc())
        if fs_session.ready():
            fs_session.hangup("NORMAL_TEMPORARY_FAILURE")
