"""YAML with locations: every value keeps the file, line and column it was written at.

``yaml.compose`` (SafeLoader rules, libyaml when available) builds the node graph; we turn
it into small ``YNode`` wrappers. Composing never expands aliases (an alias is the same node
object again), so an alias bomb is caught by measuring the graph's expanded size *before*
anything walks it. Files are refused before parsing when they are too big or binary.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from daemon.definition.model import Source

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 5 * 1024 * 1024
# A legitimate 5 MB file has well under a million nodes; a billion-laughs file has 10**9.
MAX_EXPANDED_NODES = 1_000_000
# our schema nests about 8 levels; anything far deeper is garbage or an attack
MAX_DEPTH = 100

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# libyaml (PyYAML >= 6.0.3 bundles one with a limit of its own) stops at 1000 levels while
# its scanner looks ahead, before our limit sees the events; its words for that:
_LIBRARY_DEPTH_ERROR = "maximum nesting depth"
MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, order=True)
class ConfigError:
    """A problem at a place in a file: ``file:line:column: message``."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        if self.line <= 0:  # about a whole file or directory, or an environment variable
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class YamlFileError(Exception):
    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error


class _KeySources(Mapping[str, Source]):
    """Where each key of a mapping was written; Sources are made only when asked for."""

    __slots__ = ("file", "pos")

    def __init__(self, file: str) -> None:
        self.file = file
        self.pos: dict[str, tuple[int, int]] = {}

    def __getitem__(self, key: str) -> Source:
        line, column = self.pos[key]
        return Source(self.file, line, column)

    def __iter__(self) -> Iterator[str]:
        return iter(self.pos)

    def __len__(self) -> int:
        return len(self.pos)


class YNode:
    """A YAML value with its location.

    kind "map": ``value`` is ``dict[str, YNode]`` (keys as written) and ``keys`` holds the
    key's own location; "seq": ``list[YNode]``; "scalar": the resolved Python value
    (YAML 1.1 core types) and ``raw`` the text as written (times and digits are read from
    ``raw`` because YAML 1.1 turns ``9:30`` into the integer 570).
    """

    # slots and a lazily made Source: a big config has hundreds of thousands of nodes
    __slots__ = ("kind", "value", "raw", "size", "_file", "_line", "_column", "_src", "_keys")

    def __init__(self, kind: str, src: Source | None, value: Any, raw: str = "") -> None:
        self.kind = kind
        self.value = value
        self.raw = raw
        self.size = 1  # values inside, once every alias is expanded (alias-bomb guard)
        self._src = src
        self._keys: _KeySources | None = None
        if src is not None:
            self._file, self._line, self._column = src.file, src.line, src.column

    @classmethod
    def at(cls, kind: str, file: str, line: int, column: int, value: Any,
           raw: str = "") -> YNode:
        node = cls(kind, None, value, raw)
        node._file, node._line, node._column = file, line, column
        return node

    @property
    def src(self) -> Source:
        if self._src is None:
            self._src = Source(self._file, self._line, self._column)
        return self._src

    @property
    def keys(self) -> _KeySources:
        if self._keys is None:
            self._keys = _KeySources(self._file)
        return self._keys

    @property
    def is_null(self) -> bool:
        return self.kind == "scalar" and self.value is None

    def describe(self) -> str:
        if self.kind == "map":
            return "a mapping"
        if self.kind == "seq":
            return "a list"
        v = self.value
        if v is None:
            return "nothing (null)"
        if isinstance(v, bool):
            return f"the boolean {self.raw}"
        if isinstance(v, (int, float)):
            return f"the number {self.raw}"
        if self.raw == "":
            return "an empty text"
        return f"'{self.raw}'"


_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE = "\0merge"  # frame key of a plain "<<"
_INT_TAG = "tag:yaml.org,2002:int"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"
# bytes are never a configuration value: refused rather than carried into the model
_REFUSED_SCALAR_TAGS = frozenset({"tag:yaml.org,2002:binary"})
_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9_]*)")
_BOOLS = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}


_Pos = tuple[int, int]  # 1-based line, column


class _Frame:
    """An open mapping or sequence while composing."""

    __slots__ = ("node", "key", "key_pos", "merges")

    def __init__(self, node: YNode) -> None:
        self.node = node
        self.key: str | None = None
        self.key_pos: _Pos | None = None
        self.merges: list[tuple[YNode, _Pos]] = []


_INVALID = "\0invalid"  # frame key after a key that was a list, mapping or alias
_KEY_COLLECTION = "\0collection"  # a list or mapping is being read as a key


class _Composer:
    """Builds YNodes straight from libyaml's parse events, iteratively.

    libyaml's own composer recurses in C and crashes the interpreter on a document nested
    a hundred thousand levels deep, so we compose ourselves: with a depth limit, and with
    the expanded size of every node counted as it closes (an alias adds the size of what
    it points at), which stops an alias bomb while it is being read.
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.resolver = yaml.resolver.Resolver()
        self.constructor = yaml.constructor.SafeConstructor()
        self.anchors: dict[str, YNode] = {}
        self.tags: dict[tuple[str, Any], str] = {}
        self.open: set[int] = set()
        self.errors: list[ConfigError] = []

    def error(self, pos: _Pos, message: str) -> None:
        self.errors.append(ConfigError(self.file, pos[0], pos[1], message))

    def fail(self, pos: _Pos, message: str) -> YamlFileError:
        return _fail(self.file, pos[0], pos[1], message)

    def scalar(self, ev: yaml.ScalarEvent, pos: _Pos) -> YNode:
        value = ev.value
        tag = ev.tag
        if tag is None or tag == "!":
            cache_key = (value, ev.implicit)
            tag = self.tags.get(cache_key)
            if tag is None:  # resolving is regex work; configs repeat the same values a lot
                tag = self.tags[cache_key] = self.resolver.resolve(yaml.ScalarNode, value,
                                                                   ev.implicit)
        file, line, column = self.file, pos[0], pos[1]
        if tag == _STR_TAG or tag == MERGE_TAG:  # "<<" is only special as a key (see compose)
            return YNode.at("scalar", file, line, column, value, value)
        # the common plain forms without the constructor's generic machinery
        if tag == _INT_TAG and _PLAIN_INT.fullmatch(value):
            return YNode.at("scalar", file, line, column, int(value.replace("_", "")), value)
        if tag == _BOOL_TAG and value.lower() in _BOOLS:
            return YNode.at("scalar", file, line, column, _BOOLS[value.lower()], value)
        if tag == _NULL_TAG:
            return YNode.at("scalar", file, line, column, None, value)
        build = self.constructor.yaml_constructors.get(tag)
        if build is None or tag in _REFUSED_SCALAR_TAGS:
            self.error(pos, f"the tag {_short_tag(tag)} is not supported here; write plain "
                            f"values.")
            return YNode.at("scalar", file, line, column, value, value)
        node = yaml.ScalarNode(tag, value, ev.start_mark, ev.end_mark, ev.style)
        try:
            built = build(self.constructor, node)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            self.error(pos, f"cannot read the value '{value}': {problem}.")
            built = value
        except Exception:  # noqa: BLE001 - see below
            # PyYAML's constructors assume an explicit tag (!!bool maybe, !!int "",
            # !!timestamp x) fits its regex and fail with KeyError, IndexError or
            # AttributeError when it does not: the value is wrong, not the program
            self.error(pos, f"'{value}' is not a valid {_short_tag(tag)} value; write the "
                            f"value without the tag, or fix it.")
            built = value
        return YNode.at("scalar", file, line, column, built, value)

    def compose(self, text: str, loader: type = _Loader) -> YNode | None:
        stack: list[_Frame] = []
        root: YNode | None = None
        documents = 0
        scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
        map_start, seq_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
        map_end, seq_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
        for ev in yaml.parse(text, Loader=loader):
            cls = type(ev)
            if cls is scalar_event:  # by far the most frequent: first
                mark = ev.start_mark
                pos = (mark.line + 1, mark.column + 1)
                node = self.scalar(ev, pos)
                if ev.anchor:
                    self.anchors[ev.anchor] = node
                if not stack:
                    root = node
                    continue
                frame = stack[-1]
                if frame.key is None and frame.node.kind == "map":
                    # a key; "<<" is a merge key only when written plain
                    plain_merge = ev.value == "<<" and ev.implicit[0]
                    frame.key, frame.key_pos = (_MERGE if plain_merge else ev.value), pos
                else:
                    self.attach(frame, node, pos)
                continue
            if cls is map_end or cls is seq_end:
                frame = stack.pop()
                node = frame.node
                self.open.discard(id(node))
                if frame.merges:
                    self.apply_merges(node, frame.merges)
                pos = (node._line, node._column)
                if node.size > MAX_EXPANDED_NODES:
                    raise self.fail(pos, f"the anchors and aliases here expand to more than "
                                         f"{MAX_EXPANDED_NODES:,} values; refusing the file as "
                                         f"an alias bomb.")
                if not stack:
                    root = node
                else:
                    self.attach(stack[-1], node, pos)
                continue
            mark = ev.start_mark
            pos = (mark.line + 1, mark.column + 1)
            if cls is alias_event:
                target = self.anchors.get(ev.anchor)
                if target is None:
                    raise self.fail(pos, f"the alias *{ev.anchor} refers to no anchor "
                                         f"&{ev.anchor} defined before it.")
                if id(target) in self.open:
                    raise self.fail(pos, f"the alias *{ev.anchor} refers to its own enclosing "
                                         f"anchor (a recursive structure), which a "
                                         f"configuration cannot be.")
                if not stack:
                    root = target
                else:
                    self.attach(stack[-1], target, pos)
                continue
            if cls is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise self.fail(pos, "only one YAML document per file is allowed (found a "
                                         "second '---').")
                continue
            if cls is not map_start and cls is not seq_start:
                continue  # stream start/end, document end
            # a collection starts
            if len(stack) >= MAX_DEPTH:
                raise self.fail(pos, f"the values are nested more than {MAX_DEPTH} levels deep.")
            if ev.tag not in (None, "!", _MAP_TAG, _SEQ_TAG):
                self.error(pos, f"the tag {_short_tag(ev.tag)} is not supported here; write "
                                f"plain values.")
            if cls is map_start:
                node = YNode.at("map", self.file, pos[0], pos[1], {})
            else:
                node = YNode.at("seq", self.file, pos[0], pos[1], [])
            if stack and stack[-1].key is None and stack[-1].node.kind == "map":
                self.error(pos, "a key must be a plain name, not a list or mapping.")
                stack[-1].key, stack[-1].key_pos = _KEY_COLLECTION, pos
            if ev.anchor:
                self.anchors[ev.anchor] = node
            self.open.add(id(node))
            stack.append(_Frame(node))
        return root

    def attach(self, frame: _Frame, node: YNode, pos: _Pos) -> None:
        parent = frame.node
        parent.size += node.size  # an alias counts everything it stands for
        if parent.kind == "seq":
            parent.value.append(node)
            return
        key, key_pos = frame.key, frame.key_pos
        frame.key = frame.key_pos = None
        if key is None or key_pos is None:  # an alias written as a key
            self.error(pos, "a key must be a plain name, not a list or mapping.")
            frame.key, frame.key_pos = _INVALID, pos
            return
        if key == _KEY_COLLECTION:  # that collection was the key: drop the value after it
            frame.key, frame.key_pos = _INVALID, pos
            return
        if key == _INVALID:
            return
        if key == _MERGE:
            frame.merges.append((node, key_pos))
            return
        keys = parent.keys.pos
        if key in keys:
            self.error(key_pos, f"the key '{key}' is given twice in this mapping (first at "
                                f"line {keys[key][0]}).")
            return
        parent.value[key] = node
        keys[key] = key_pos

    def apply_merges(self, node: YNode, merges: list[tuple[YNode, _Pos]]) -> None:
        """``<<: *defaults``: explicit keys win; of several merged maps the first wins."""
        keys = node.keys.pos
        for merged, pos in merges:
            parts = merged.value if merged.kind == "seq" else [merged]
            for part in parts:
                if part.kind != "map":
                    self.error(pos, "'<<' must merge a mapping (or a list of mappings).")
                    continue
                for k, v in part.value.items():
                    if k not in node.value:
                        node.value[k] = v
                        keys[k] = part.keys.pos[k]


def _short_tag(tag: str) -> str:
    """``tag:yaml.org,2002:bool`` as the user wrote it: ``!!bool``."""
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix):] if tag.startswith(prefix) else tag


def _fail(file: str, line: int, column: int, message: str) -> YamlFileError:
    return YamlFileError(ConfigError(file, line, column, message))


def _too_deep(name: str, text: str, exc: yaml.MarkedYAMLError) -> YamlFileError:
    """Our depth error where the nesting first passes ``MAX_DEPTH``, not libyaml's own.

    The pure-Python parser has no limit of its own and only looks ahead one line (at most
    1024 characters) for a flow key, so composing again with it reaches our check;
    this runs only for a file already known to be too deep."""
    try:
        _Composer(name).compose(text, loader=yaml.SafeLoader)
    except YamlFileError as ours:
        return ours
    except yaml.YAMLError:
        pass
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return _fail(name, line, col, f"the values are nested more than {MAX_DEPTH} levels deep.")


def load_yaml(path: Path, display: str | None = None) -> tuple[YNode | None, list[ConfigError]]:
    """Parse one file. Returns (root or None for an empty file, value-level errors).

    Raises ``YamlFileError`` when the file as a whole cannot be used (too big, binary,
    malformed, alias bomb): one error pointing at the spot.
    """
    name = display or str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise _fail(name, 1, 1, f"cannot read the file: {exc.strerror}.") from None
    if size > MAX_FILE_BYTES:
        raise _fail(name, 1, 1, f"the file is {size / 1048576:.1f} MB; configuration files may "
                                f"be at most {MAX_FILE_BYTES // 1048576} MB.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(name, 1, 1, f"cannot read the file: {exc.strerror}.") from None
    if b"\x00" in data:
        raise _fail(name, 1, 1, "the file is binary, not YAML text.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _fail(name, line, 1, "the file is not UTF-8 text (binary data or another "
                                   "encoding).") from None
    composer = _Composer(name)
    try:
        tree = composer.compose(text)
    except yaml.MarkedYAMLError as exc:
        if _LIBRARY_DEPTH_ERROR in f"{exc.problem} {exc.context}":
            raise _too_deep(name, text, exc) from None
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = (exc.problem or exc.context or "syntax error").strip()
        if exc.context and exc.context_mark and exc.problem:
            what += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise _fail(name, line, col, f"malformed YAML: {what}.") from None
    except yaml.YAMLError as exc:  # ReaderError and friends have no mark
        position = getattr(exc, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else 1
        raise _fail(name, line, 1, f"malformed YAML: {exc}.".replace("\n", " ")) from None
    return tree, composer.errors
