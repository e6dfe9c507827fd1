"""Strict YAML: bytes -> a :class:`Document` with a line and column for every value.

Why not ``yaml.safe_load``: it silently keeps the last of two duplicate keys, accepts
merge keys, builds ``datetime.date`` objects, NaN and infinities, and lets an alias bomb
explode later in validation or serialisation (reliability-notes §3). Here the libyaml
parser (pure-Python fallback when the C extension is missing) produces *events*, and this
module builds the values itself with an explicit stack, so that:

* nesting depth, node count and alias expansion are bounded before anything is built
  (no ``RecursionError``, no billion laughs);
* duplicate keys, non-string keys, merge keys (``<<``), unknown or Python tags, several
  documents, NaN and infinities are findings with ``file:line:column``;
* dates stay strings (``2024-01-01``) and every plain scalar that YAML 1.1 reads as
  something other than a string (``no``, ``010``, ``1:30``, ``3.10``) is remembered with its
  source text, so schema errors can say what the text was read as and how to quote it;
* ``!unset`` is the one custom tag: it marks an inherited key for removal.

The module is pure: it takes bytes and a display name and returns values, never raises
for bad input.
"""

from __future__ import annotations

import codecs
import math
import operator
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from configctl.core.model import Finding, Severity, SourceLocation

try:  # the libyaml-backed parser; the pure-Python one is the fallback
    _BaseLoader: type[Any] = yaml.CSafeLoader
    LIBYAML = True
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _BaseLoader = yaml.SafeLoader
    LIBYAML = False

_MAX_RESOLVED: Final = 50_000
"""Plain scalar texts whose implicit tag is remembered (see :class:`_Loader`)."""
_MAX_REMEMBERED_TEXT: Final = 128
"""Only texts this short are remembered (by both caches): what repeats is short, and the
caches stay small whatever the files hold."""
_resolved: dict[str, str] = {}


class _Loader(_BaseLoader):  # type: ignore[misc]  # a class chosen at import time
    """The safe loader, its implicit tags remembered per plain scalar text.

    The composer asks the resolver for the tag of every node; for a plain scalar the
    answer (PyYAML's YAML 1.1 regular expressions, tried in turn) depends on the text
    alone, and config files repeat the same keys and values thousands of times. Any other
    node gets the resolver's own answer.
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is _ScalarKind and implicit[0]:
            tag = _resolved.get(value)
            if tag is None:
                tag = _base_resolve(self, kind, value, implicit)
                if len(value) <= _MAX_REMEMBERED_TEXT:
                    if len(_resolved) >= _MAX_RESOLVED:
                        _resolved.clear()
                    _resolved[value] = tag
            return tag
        return _base_resolve(self, kind, value, implicit)


_ScalarKind: Final = yaml.ScalarNode
_base_resolve: Final = _BaseLoader.resolve

if not _BaseLoader.yaml_path_resolvers:
    # Without path resolvers (the safe loader has none) the composer's two calls per node
    # to track the path do nothing; C callables taking the same arguments do nothing
    # without a Python frame each (some 800,000 calls for a 1,000-app tree).
    _Loader.descend_resolver = staticmethod(operator.is_)  # (parent, index) -> ignored
    _Loader.ascend_resolver = staticmethod(tuple)  # () -> ignored


MAX_FILE_BYTES: Final = 1024 * 1024
"""A config file larger than this is refused before it is read (1 MiB is ~20k lines)."""
MAX_DEPTH: Final = 64
"""Nesting deeper than this is refused; real config trees rarely pass 10."""
MAX_NODES: Final = 200_000
"""Nodes one file may build, aliases expanded."""
MAX_ALIAS_NODES: Final = 10_000
"""Nodes that alias expansion may add to one file: enough for sharing a few blocks,
far below what a billion-laughs document needs."""

Path = tuple[str | int, ...]

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_VALUE = "tag:yaml.org,2002:value"
UNSET_TAG: Final = "!unset"


class Unset:
    """The ``!unset`` marker: remove this key inherited from an earlier layer."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "!unset"


UNSET: Final = Unset()


@dataclass(frozen=True, slots=True, kw_only=True)
class PlainScalar:
    """A plain (unquoted) scalar that YAML read as something other than a string."""

    text: str
    tag: str
    value: Any

    @property
    def read_as(self) -> str:
        """What YAML made of the text, in words (computed only when a message needs it)."""
        return _describe(self.tag, self.value, self.text)


def _pack(mark: Any) -> int:
    """A mark's 1-based line and column in one int (see :class:`_Locations`)."""
    line: int = mark.line
    column: int = mark.column
    return ((line + 1) << 32) | (column + 1)


class _Locations(Mapping[Path, SourceLocation]):
    """Where each path of a parsed file was written, as a read-only mapping.

    A tree of 1,000 apps has some 200,000 written keys and a run reads the location of a
    handful (those a message names), so each is kept as one int (line and column packed)
    and its :class:`SourceLocation` made when it is read.
    """

    __slots__ = ("_file", "_packed")

    def __init__(self, file: str, packed: dict[Path, int]) -> None:
        self._file = file
        self._packed = packed

    def _at(self, packed: int) -> SourceLocation:
        return SourceLocation(file=self._file, line=packed >> 32, column=packed & 0xFFFFFFFF)

    def __getitem__(self, path: Path) -> SourceLocation:
        return self._at(self._packed[path])

    def get(self, path: Path, default: Any = None) -> Any:
        packed = self._packed.get(path)
        return default if packed is None else self._at(packed)

    def __contains__(self, path: object) -> bool:
        return path in self._packed

    def __iter__(self) -> Iterator[Path]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self)!r})"


class _Plains(Mapping[Path, PlainScalar]):
    """The plain scalars YAML read as something other than a string, by path; kept as
    ``(text, tag, value)`` and made :class:`PlainScalar` when read (a message needs one)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: dict[Path, tuple[str, str, Any]]) -> None:
        self._raw = raw

    def __getitem__(self, path: Path) -> PlainScalar:
        text, tag, value = self._raw[path]
        return PlainScalar(text=text, tag=tag, value=value)

    def __contains__(self, path: object) -> bool:
        return path in self._raw

    def __iter__(self) -> Iterator[Path]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self)!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """One parsed file.

    ``value`` is ``None`` when the file is empty or could not be read at all (see
    ``findings``). ``locations`` maps a path (mapping keys and sequence indices) to where
    its key or item was written; paths inside an expanded alias fall back to the alias.
    """

    file: str
    value: Any
    locations: Mapping[Path, SourceLocation] = field(default_factory=dict)
    plain: Mapping[Path, PlainScalar] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    empty: bool = False
    has_unset: bool = False
    """The file uses `!unset` (resolution then reports removals of nothing)."""

    @property
    def ok(self) -> bool:
        return not any(f.severity is Severity.ERROR for f in self.findings)

    def location(self, path: Path) -> SourceLocation:
        """Where ``path`` (or its nearest written ancestor) was written."""
        for i in range(len(path), -1, -1):
            loc = self.locations.get(path[:i])
            if loc is not None:
                return loc
        return SourceLocation(file=self.file)


class _Stop(Exception):
    """A fatal problem: the rest of the file is not read."""


_resolver = yaml.resolver.Resolver()
_TRUE: Final = frozenset({"yes", "true", "on"})


def _yaml_int(text: str) -> int:
    """YAML 1.1 integers as PyYAML's safe constructor reads them (signs, _, 0b, 0x, 0 octal, base 60)."""
    value = text.replace("_", "")
    sign = -1 if value[:1] == "-" else 1
    if value[:1] in "+-":
        value = value[1:]
    if value == "0":
        return 0
    if value.startswith("0b"):
        return sign * int(value[2:], 2)
    if value.startswith("0x"):
        return sign * int(value[2:], 16)
    if value.startswith("0"):
        return sign * int(value, 8)
    if ":" in value:
        total = 0
        for part in value.split(":"):
            total = total * 60 + int(part)
        return sign * total
    return sign * int(value)


def _yaml_float(text: str) -> float:
    """YAML 1.1 floats as PyYAML's safe constructor reads them (_, .inf, .nan, base 60)."""
    value = text.replace("_", "").lower()
    sign = -1.0 if value[:1] == "-" else 1.0
    if value[:1] in "+-":
        value = value[1:]
    if value == ".inf":
        return sign * math.inf
    if value == ".nan":
        return math.nan
    if ":" in value:
        total = 0.0
        for part in value.split(":"):
            total = total * 60 + float(part)
        return sign * total
    return sign * float(value)


def _resolve_tag(value: str) -> str:
    """The tag YAML 1.1 (PyYAML's safe resolver) gives a plain scalar."""
    tag: str = _resolver.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]  # untyped in the stubs
    return tag


def _describe(tag: str, value: Any, text: str) -> str:
    if tag == _BOOL:
        return f"the boolean {'true' if value else 'false'}"
    if tag == _NULL:
        return "null (no value)"
    if tag == _INT:
        stripped = text.lstrip("+-").replace("_", "")
        if ":" in text:
            return f"the number {value} (YAML 1.1 base-60)"
        if stripped.startswith("0") and len(stripped) > 1 and stripped[1] not in "xXbB":
            return f"the integer {value} (YAML 1.1 octal)"
        return f"the integer {value}"
    if tag == _FLOAT:
        return f"the number {value!r}"
    return f"a {tag.rsplit(':', 1)[-1]}"


class _BadKey:
    pass


_NOT_BUILT: Final = object()
_MAX_CONSTRUCTED: Final = 50_000
_constructed: dict[tuple[str, str], Any] = {}
"""Numbers, booleans and nulls read without a problem, by (tag, text): immutable values,
and config files repeat many (``true``, ``0``, ``1.5``)."""


_BAD_KEY: Final = _BadKey()
_ScalarNode = yaml.ScalarNode
_MappingNode = yaml.MappingNode
_SequenceNode = yaml.SequenceNode
_ALLOWED_SCALAR_TAGS: Final = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP, _VALUE, _MERGE})


class _Builder:
    """Builds values from a composed node graph (libyaml composes; we construct).

    The composer shares one node object between an anchor and its aliases, so a node seen
    twice is an alias: its already-built value is reused and its size counted against the
    alias bound, which stops a billion-laughs document without ever expanding it.
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.findings: list[Finding] = []
        self.locations: dict[Path, int] = {}
        """Where each path was written, packed (see :class:`_Locations`)."""
        self.plain: dict[Path, tuple[str, str, Any]] = {}
        self.nodes = 0
        self.alias_nodes = 0
        self.built: dict[int, tuple[Any, int]] = {}
        self.scalars: set[int] = set()
        self.has_unset = False
        """Ids of scalar nodes already used: one seen again is an alias."""

    def loc(self, mark: Any) -> SourceLocation:
        return SourceLocation(file=self.file, line=mark.line + 1, column=mark.column + 1)

    def error(self, mark: Any, rule: str, message: str, hint: str | None = None) -> None:
        self.findings.append(Finding.at(self.loc(mark), rule, message, hint=hint))

    def bad_tag(self, node: Any) -> None:
        tag = node.tag
        if tag.startswith(("tag:yaml.org,2002:python/", "!!python/")):
            message = f"the Python tag {tag} is not allowed (it could run code)"
        else:
            message = f"unknown tag {tag}"
        self.error(node.start_mark, "unknown-tag", message, hint="only plain YAML values and `!unset` are allowed")

    def construct(self, tag: str, node: Any, *, report: bool = True) -> Any:
        text = node.value
        if tag == _INT:
            if len(text) > 100:
                if report:
                    self.error(node.start_mark, "number-out-of-range", "integer out of range")
                return text
            try:
                return _yaml_int(text)
            except ValueError:
                if report:
                    self.error(node.start_mark, "bad-number", f"`{text}` is not a valid integer")
                return text
        if tag == _FLOAT:
            try:
                number = _yaml_float(text)
            except ValueError:
                if report:
                    self.error(node.start_mark, "bad-number", f"`{text}` is not a valid number")
                return text
            if report and not math.isfinite(number):
                self.error(
                    node.start_mark,
                    "non-finite-number",
                    f"`{text}` is not a finite number; NaN and infinities are not allowed",
                    hint="use a string or a large finite number",
                )
                return text
            return number
        if tag == _BOOL:
            return text.lower() in _TRUE
        if tag == _NULL:
            return None
        return text

    def scalar(self, node: Any, path: Path) -> Any:
        tag = node.tag
        if tag == UNSET_TAG:
            if node.value != "":
                self.error(node.start_mark, "unset-with-value", "`!unset` takes no value")
            if not path or isinstance(path[-1], int):
                self.error(
                    node.start_mark,
                    "unset-not-in-mapping",
                    "`!unset` removes a mapping key; it cannot stand in a list or alone",
                    hint="to drop list items, write the whole list without them",
                )
                return None
            self.has_unset = True
            return UNSET
        if tag not in _ALLOWED_SCALAR_TAGS:
            self.bad_tag(node)
            return node.value
        if tag in (_STR, _TIMESTAMP, _MERGE, _VALUE):
            return node.value  # dates stay strings; a schema with format: date checks them
        text = node.value
        value = _constructed.get((tag, text), _NOT_BUILT)
        if value is _NOT_BUILT:
            found = len(self.findings)
            value = self.construct(tag, node)
            if len(self.findings) == found and len(text) <= _MAX_REMEMBERED_TEXT:  # read without a problem
                if len(_constructed) >= _MAX_CONSTRUCTED:
                    _constructed.clear()
                _constructed[(tag, text)] = value
        if not node.style:  # plain: None from PyYAML, '' from libyaml's composer
            self.plain[path] = (text, tag, value)
        return value

    def key(self, node: Any) -> Any:
        """Check a mapping key; return it, or _BAD_KEY."""
        if not isinstance(node, _ScalarNode):
            self.error(node.start_mark, "key-not-string", "a mapping or list cannot be a key; keys are strings")
            return _BAD_KEY
        if id(node) in self.scalars:
            self.error(node.start_mark, "alias-key", "an alias cannot be a key")
            return _BAD_KEY
        self.scalars.add(id(node))
        tag = node.tag
        value = node.value
        if tag == _MERGE:
            self.error(
                node.start_mark,
                "merge-key",
                "merge keys (<<) are not supported",
                hint="write the keys out, or move shared values to a lower layer (global.yaml or environments/<env>.yaml)",
            )
            return _BAD_KEY
        if tag not in (_STR, _TIMESTAMP, _VALUE):
            if not node.style and tag in (_INT, _FLOAT, _BOOL, _NULL):
                read_as = _describe(tag, self.construct(tag, node, report=False), value)
                self.error(
                    node.start_mark,
                    "key-not-string",
                    f"the key `{value}` is read as {read_as}; keys must be strings",
                    hint=f"quote it: '{value}':",
                )
            else:
                self.error(node.start_mark, "key-not-string", f"a key with tag {tag} is not allowed; keys are strings")
            return _BAD_KEY
        if value == "":
            self.error(node.start_mark, "key-empty", "empty key")
            return _BAD_KEY
        if not value.isprintable():
            bad = [c for c in value if unicodedata.category(c) in ("Cc", "Cf")]
            if bad:
                self.error(
                    node.start_mark,
                    "key-invisible-character",
                    f"the key contains the invisible character U+{ord(bad[0]):04X}",
                )
                return _BAD_KEY
        return value

    def build(self, node: Any, path: Path, depth: int) -> tuple[Any, int]:
        """The value of ``node`` and the number of nodes it holds (aliases expanded)."""
        if isinstance(node, _ScalarNode):
            self.scalars.add(id(node))
            self.nodes += 1
            if self.nodes > MAX_NODES:
                self.error(node.start_mark, "too-many-nodes", f"the file has more than {MAX_NODES} values")
                raise _Stop
            return self.scalar(node, path), 1
        seen = self.built.get(id(node))
        if seen is not None:
            value, size = seen
            self.alias_nodes += size
            if self.alias_nodes > MAX_ALIAS_NODES:
                self.error(
                    node.start_mark,
                    "alias-bomb",
                    f"aliases expand to more than {MAX_ALIAS_NODES} values",
                    hint="write the shared values out or move them to a lower layer",
                )
                raise _Stop
            self.nodes += size
            if self.nodes > MAX_NODES:
                self.error(node.start_mark, "too-many-nodes", f"the file has more than {MAX_NODES} values")
                raise _Stop
            return value, size
        if depth >= MAX_DEPTH:
            self.error(node.start_mark, "too-deep", f"nesting deeper than {MAX_DEPTH} levels")
            raise _Stop
        self.nodes += 1
        size = 1
        # Below, a scalar item is built in place (what `build` does for it, without the
        # call), and a string key or value taken as it is: most of a config file is those.
        locations = self.locations
        scalars = self.scalars
        if isinstance(node, _MappingNode):
            if node.tag != _MAP:
                self.bad_tag(node)
            out: dict[str, Any] = {}
            self.built[id(node)] = (out, 1)  # a self-referencing alias sees a small size
            for key_node, value_node in node.value:
                if (
                    type(key_node) is _ScalarNode
                    and key_node.tag == _STR
                    and id(key_node) not in scalars
                    and (key := key_node.value)
                    and key.isprintable()
                ):
                    scalars.add(id(key_node))  # what `key` does for a good key
                else:
                    key = self.key(key_node)
                    if key is _BAD_KEY:
                        continue
                child = (*path, key)
                if key in out:  # an earlier entry of this mapping set it, and its location
                    self.error(
                        key_node.start_mark,
                        "duplicate-key",
                        f"duplicate key `{key}` (first defined at line {locations[child] >> 32})",
                    )
                    continue
                locations[child] = _pack(key_node.start_mark)
                if type(value_node) is _ScalarNode:
                    scalars.add(id(value_node))
                    self.nodes += 1
                    if self.nodes > MAX_NODES:
                        self.error(value_node.start_mark, "too-many-nodes", f"the file has more than {MAX_NODES} values")
                        raise _Stop
                    out[key] = value_node.value if value_node.tag == _STR else self.scalar(value_node, child)
                    size += 1
                else:
                    value, n = self.build(value_node, child, depth + 1)
                    out[key] = value
                    size += n
            self.built[id(node)] = (out, size)
            return out, size
        if node.tag != _SEQ:
            self.bad_tag(node)
        items: list[Any] = []
        self.built[id(node)] = (items, 1)
        for i, item in enumerate(node.value):
            child = (*path, i)
            locations[child] = _pack(item.start_mark)
            if type(item) is _ScalarNode:
                scalars.add(id(item))
                self.nodes += 1
                if self.nodes > MAX_NODES:
                    self.error(item.start_mark, "too-many-nodes", f"the file has more than {MAX_NODES} values")
                    raise _Stop
                items.append(item.value if item.tag == _STR else self.scalar(item, child))
                size += 1
            else:
                value, n = self.build(item, child, depth + 1)
                items.append(value)
                size += n
        self.built[id(node)] = (items, size)
        return items, size


def _relocate_alias_findings(text: str, findings: list[Finding]) -> list[Finding]:
    """Point alias errors at the alias itself.

    libyaml's composer hands back the anchored node for an alias, so the builder only
    knows where the anchor was written. On the rare file with such an error, one pass over
    the events finds the alias: the first one in key position, and the one at which the
    expansion passed the bound (sizes counted as the builder counts them).
    """
    wanted = {f.rule for f in findings}
    if not wanted & {"alias-key", "alias-bomb"}:
        return findings
    key_mark: Any = None
    bomb_mark: Any = None
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = []  # [is_mapping, expecting_key, size, anchor]
    expanded = 0

    def added(size: int) -> None:
        if stack:
            top = stack[-1]
            top[2] += size
            if top[0]:
                top[1] = not top[1]

    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent):
                if stack and stack[-1][0] and stack[-1][1] and key_mark is None:
                    key_mark = event.start_mark
                size = sizes.get(event.anchor or "", 1)
                expanded += size
                if expanded > MAX_ALIAS_NODES and bomb_mark is None:
                    bomb_mark = event.start_mark
                added(size)
            elif isinstance(event, yaml.ScalarEvent):
                if event.anchor:
                    sizes[event.anchor] = 1
                added(1)
            elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                stack.append([isinstance(event, yaml.MappingStartEvent), True, 1, event.anchor])
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                _, _, size, anchor = stack.pop()
                if anchor:
                    sizes[anchor] = size
                added(size)
            if key_mark is not None and bomb_mark is not None:
                break
    except yaml.YAMLError:
        return findings
    out = []
    for f in findings:
        mark = key_mark if f.rule == "alias-key" else bomb_mark if f.rule == "alias-bomb" else None
        if mark is not None:
            f = Finding(
                file=f.file,
                line=mark.line + 1,
                column=mark.column + 1,
                rule="key-not-string" if f.rule == "alias-key" else f.rule,
                message=f.message,
                severity=f.severity,
                hint=f.hint,
            )
        elif f.rule == "alias-key":
            f = Finding(file=f.file, line=f.line, column=f.column, rule="key-not-string", message=f.message, hint=f.hint)
        out.append(f)
    return out


def _decode(file: str, data: bytes) -> tuple[str | None, list[Finding]]:
    """Bytes to text: UTF-8 only (a UTF-8 BOM is dropped), nothing else guessed."""
    for bom, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if data.startswith(bom):
            return None, [
                Finding(
                    file=file,
                    line=1,
                    column=1,
                    rule="encoding",
                    message=f"the file is {name}; config files must be UTF-8",
                    hint="re-save the file as UTF-8",
                )
            ]
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    nul = data.find(b"\0")
    if nul >= 0:
        before = data[:nul]
        line = before.count(b"\n") + 1
        column = nul - (before.rfind(b"\n") + 1) + 1
        wide = nul < 4 and data[:64].count(b"\0") * 3 >= min(len(data), 64)
        return None, [
            Finding(
                file=file,
                line=line,
                column=column,
                rule="encoding",
                message=(
                    "the file looks like UTF-16 or UTF-32 (NUL bytes, no byte-order mark); config files must be UTF-8"
                    if wide
                    else f"NUL byte at offset {nul}: not a text file"
                ),
                hint="re-save the file as UTF-8",
            )
        ]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        return None, [
            Finding(
                file=file,
                line=line,
                column=column,
                rule="encoding",
                message=f"byte 0x{data[exc.start]:02X} at offset {exc.start} is not UTF-8",
                hint="re-save the file as UTF-8",
            )
        ]
    return text, []


def parse(file: str, data: bytes) -> Document:
    """Parse one YAML file strictly. Never raises for bad input; see ``Document.findings``."""
    if len(data) > MAX_FILE_BYTES:
        return Document(
            file=file,
            value=None,
            findings=(
                Finding(
                    file=file,
                    line=1,
                    column=1,
                    rule="file-too-large",
                    message=f"the file is {len(data)} bytes; the limit is {MAX_FILE_BYTES}",
                ),
            ),
        )
    text, problems = _decode(file, data)
    if text is None:
        return Document(file=file, value=None, findings=tuple(problems))
    builder = _Builder(file)
    root: Any = None
    try:
        node = yaml.compose(text, Loader=_Loader)
        if node is not None:
            root, _ = builder.build(node, (), 0)
    except _Stop:
        return Document(file=file, value=None, findings=tuple(_relocate_alias_findings(text, builder.findings)))
    except yaml.composer.ComposerError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        if "undefined alias" in (exc.problem or ""):
            builder.findings.append(
                Finding(file=file, line=line, column=column, rule="unknown-alias", message=exc.problem or "undefined alias")
            )
        elif "single document" in (exc.problem or "") or "single document" in (exc.context or ""):
            builder.findings.append(
                Finding(
                    file=file,
                    line=line,
                    column=column,
                    rule="multiple-documents",
                    message="several YAML documents in one file; a config file holds one",
                    hint="remove the `---` separator or split the file",
                )
            )
        else:
            message = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
            builder.findings.append(Finding(file=file, line=line, column=column, rule="yaml-syntax", message=message))
        return Document(file=file, value=None, findings=tuple(builder.findings))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        message = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        builder.findings.append(
            Finding(file=file, line=line, column=column, rule="yaml-syntax", message=message)
        )
        return Document(file=file, value=None, findings=tuple(builder.findings))
    except yaml.YAMLError as exc:  # reader errors: control characters and the like
        position = getattr(exc, "position", None)
        line, column = _line_col(text, position) if isinstance(position, int) else (1, 1)
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        builder.findings.append(
            Finding(file=file, line=line, column=column, rule="yaml-syntax", message=str(reason))
        )
        return Document(file=file, value=None, findings=tuple(builder.findings))
    except RecursionError:
        # libyaml's composer recurses once per level; far past MAX_DEPTH it runs out of stack.
        builder.findings.append(
            Finding(file=file, line=1, column=1, rule="too-deep", message=f"nesting deeper than {MAX_DEPTH} levels")
        )
        return Document(file=file, value=None, findings=tuple(builder.findings))
    except (ValueError, MemoryError) as exc:  # belt and braces: never a traceback
        builder.findings.append(
            Finding(file=file, line=1, column=1, rule="yaml-syntax", message=f"cannot read the file: {type(exc).__name__}")
        )
        return Document(file=file, value=None, findings=tuple(builder.findings))
    have_root = node is not None
    empty = not have_root or root is None
    if empty:
        builder.findings.append(
            Finding(
                file=file,
                line=1,
                column=1,
                rule="empty-file",
                message="the file is empty or holds only comments",
                severity=Severity.WARNING,
            )
        )
    if have_root:
        builder.locations.setdefault((), (1 << 32) | 1)  # line 1, column 1
    return Document(
        file=file,
        value=None if empty else root,
        locations=_Locations(file, builder.locations),
        plain=_Plains(builder.plain),
        findings=tuple(_relocate_alias_findings(text, builder.findings)),
        empty=empty,
        has_unset=builder.has_unset,
    )


def _line_col(text: str, position: int) -> tuple[int, int]:
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1
