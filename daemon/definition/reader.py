"""Reading YAML nodes into typed values: the checks and the error list every loader shares.

``config`` (the call center) and ``settings`` (the runtime) both read YAML through a
``_Reader``, which collects every problem as ``file:line:col: sentence`` instead of stopping.
"""
from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from daemon.definition import model as m
from daemon.definition.model import Source
from daemon.definition.yamlsrc import ConfigError, YNode


class ConfigErrors(Exception):
    """Every problem of one load, sorted by file, line and column."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors: list[ConfigError] = sorted(set(errors))
        super().__init__("\n".join(str(e) for e in self.errors))


_BAD = object()  # a reader found a problem and reported it
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DIGITS = re.compile(r"^[0-9*#]+$")
_NUMBER = re.compile(r"^\+?[0-9]+$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
def suggest(word: str, candidates: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the nearest candidate, or ``.`` when nothing is close."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else "."


def _err(src: Source, message: str) -> ConfigError:
    return ConfigError(src.file, src.line, src.column, message)


class _Reader:
    """Typed readers over YNodes; every problem is collected, readers return _BAD."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[ConfigError] = []

    def error(self, src: Source, message: str) -> None:
        self.errors.append(_err(src, message))

    # ---- structure -------------------------------------------------------------------
    def mapping(self, node: YNode, what: str, allowed: Iterable[str],
                required: Iterable[str] = ()) -> dict[str, YNode] | None:
        if node.kind != "map":
            if node.is_null:
                node_map: dict[str, YNode] = {}
            else:
                self.error(node.src, f"{what} must be a mapping of keys, not {node.describe()}.")
                return None
        else:
            node_map = node.value
        allowed = tuple(allowed)
        for key in node_map:
            if key not in allowed:
                self.error(node.keys[key], f"unknown key '{key}' in {what}{suggest(key, allowed)}")
        for key in required:
            if key not in node_map or node_map[key].is_null:
                self.error(node.src, f"{what} needs a '{key}'.")
        return {k: v for k, v in node_map.items() if k in allowed}

    def entries(self, node: YNode, what: str) -> dict[str, YNode]:
        """A mapping of id → body (bodies unchecked)."""
        if node.is_null:
            return {}
        if node.kind != "map":
            self.error(node.src, f"{what} must be a mapping of id to settings, not "
                                 f"{node.describe()}.")
            return {}
        return node.value

    def seq(self, node: YNode, what: str) -> list[YNode]:
        if node.is_null:
            return []
        if node.kind != "seq":
            self.error(node.src, f"{what} must be a list, not {node.describe()}.")
            return []
        return node.value

    # ---- scalars ---------------------------------------------------------------------
    def text(self, node: YNode, what: str) -> Any:
        if node.kind != "scalar" or node.is_null:
            self.error(node.src, f"{what} must be a text value, not {node.describe()}.")
            return _BAD
        return node.value if isinstance(node.value, str) else node.raw

    def ident(self, node: YNode, what: str) -> Any:
        value = self.text(node, what)
        if value is not _BAD and not _ID.match(value):
            self.error(node.src, f"{what} is '{value}', but it may only use letters, digits, "
                                 f"'_', '.' and '-' and must start with a letter or digit.")
            return _BAD
        return value

    def integer(self, node: YNode, what: str, lo: int | None = 0, hi: int | None = None) -> Any:
        v = node.value
        if node.kind != "scalar" or isinstance(v, bool) or not isinstance(v, int) \
                or not re.fullmatch(r"[-+]?[0-9_]+", node.raw):
            self.error(node.src, f"{what} must be a whole number, not {node.describe()}.")
            return _BAD
        if lo is not None and v < lo or hi is not None and v > hi:
            bounds = (f"between {lo} and {hi}" if hi is not None else f"at least {lo}")
            self.error(node.src, f"{what} must be {bounds}, not {v}.")
            return _BAD
        return v

    def number(self, node: YNode, what: str, lo: float = 0.0, hi: float | None = None) -> Any:
        v = node.value
        if node.kind != "scalar" or isinstance(v, bool) or not isinstance(v, (int, float)):
            self.error(node.src, f"{what} must be a number, not {node.describe()}.")
            return _BAD
        if v < lo or hi is not None and v > hi:
            bounds = f"between {lo:g} and {hi:g}" if hi is not None else f"at least {lo:g}"
            self.error(node.src, f"{what} must be {bounds}, not {v:g}.")
            return _BAD
        return float(v)

    def boolean(self, node: YNode, what: str) -> Any:
        if node.kind != "scalar" or not isinstance(node.value, bool):
            self.error(node.src, f"{what} must be true or false, not {node.describe()}.")
            return _BAD
        return node.value

    def choice(self, node: YNode, what: str, values: Iterable[str]) -> Any:
        value = self.text(node, what)
        values = tuple(values)
        if value is not _BAD and value not in values:
            close = suggest(value, values)
            listed = ", ".join(values)
            self.error(node.src, f"{what} is '{value}', which is not one of {listed}{close}")
            return _BAD
        return value

    def digits(self, node: YNode, what: str, max_len: int = 16) -> Any:
        value = self.text(node, what)
        if value is _BAD:
            return _BAD
        if not _DIGITS.match(value) or len(value) > max_len:
            self.error(node.src, f"{what} is '{value}', but it must be 1 to {max_len} keypad "
                                 f"digits (0-9, * and #).")
            return _BAD
        return value

    def phone_number(self, node: YNode, what: str) -> Any:
        value = self.text(node, what)
        if value is not _BAD and not _NUMBER.match(value):
            self.error(node.src, f"{what} is '{value}', but it must be digits, optionally "
                                 f"with a leading '+'.")
            return _BAD
        return value

    def secret(self, node: YNode, what: str) -> Any:
        """Text whose ``${VAR}`` / ``${VAR:-default}`` references come from the environment."""
        value = self.text(node, what)
        if value is _BAD:
            return _BAD
        missing: list[str] = []

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            missing.append(name)
            return ""

        resolved = _ENV_REF.sub(sub, value)
        if missing:
            self.error(node.src, f"{what} refers to the environment variable {missing[0]}, "
                                 f"which is not set (set it, or write "
                                 f"${{{missing[0]}:-default}}).")
            return _BAD
        return resolved

    def time(self, raw: str, src: Source, what: str) -> dt.time | None:
        match = _TIME.match(raw.strip())
        if not match:
            self.error(src, f"{what} has '{raw}', which is not a time of day like 08:30.")
            return None
        hour, minute = int(match.group(1)), int(match.group(2))
        if hour == 24 and minute == 0:
            return dt.time.max
        if hour > 23 or minute > 59:
            self.error(src, f"{what} has '{raw}', which is not a valid time of day "
                            f"(00:00 to 24:00).")
            return None
        return dt.time(hour, minute)

    def time_ranges(self, node: YNode, what: str) -> tuple[m.TimeRange, ...] | None:
        """``"08:30-12:00"``, a list of those, or ``closed`` / ``[]`` for none."""
        items = node.value if node.kind == "seq" else [node]
        if node.is_null or node.kind == "scalar" and node.raw.strip().lower() == "closed":
            return ()
        out: list[m.TimeRange] = []
        ok = True
        for item in items:
            if item.kind != "scalar" or item.is_null:
                self.error(item.src, f"{what} must be time ranges like 08:30-12:00, not "
                                     f"{item.describe()}.")
                ok = False
                continue
            raw = item.raw if isinstance(item.value, (str, int)) else str(item.value)
            parts = raw.split("-")
            if len(parts) != 2:
                self.error(item.src, f"{what} has '{raw}', which is not a time range like "
                                     f"08:30-12:00.")
                ok = False
                continue
            start = self.time(parts[0], item.src, what)
            end = self.time(parts[1], item.src, what)
            if start is None or end is None:
                ok = False
                continue
            if end <= start:
                self.error(item.src, f"{what} has '{raw}', which ends before it starts (a "
                                     f"range cannot cross midnight; split it at 24:00).")
                ok = False
                continue
            out.append(m.TimeRange(start, end))
        out.sort(key=lambda r: r.start)
        for a, b in zip(out, out[1:]):
            if b.start < a.end:
                self.error(node.src, f"{what} has overlapping ranges "
                                     f"({_fmt_range(a)} and {_fmt_range(b)}).")
                ok = False
        return tuple(out) if ok else None

    def date(self, node: YNode, what: str) -> Any:
        v = node.value
        if isinstance(v, dt.datetime):
            v = v.date()
        if isinstance(v, dt.date):
            return v
        if node.kind == "scalar" and isinstance(v, str):
            try:
                return dt.date.fromisoformat(v.strip())
            except ValueError:
                pass
        self.error(node.src, f"{what} must be a date like 2026-10-01, not {node.describe()}.")
        return _BAD


def _fmt_time(t: dt.time) -> str:
    return "24:00" if t == dt.time.max else t.strftime("%H:%M")


def _fmt_range(r: m.TimeRange) -> str:
    return f"{_fmt_time(r.start)}-{_fmt_time(r.end)}"


def config_files(path: str | Path) -> list[Path]:
    """The YAML files of a config directory (sorted, recursive, hidden ones skipped)."""
    root = Path(path)
    if root.is_file():
        return [root]
    found = [p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(found)
