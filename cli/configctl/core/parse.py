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
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from configctl.core.model import Finding, Severity, SourceLocation

try:  # the libyaml-backed parser; the pure-Python one is the fallback
    _Loader: type[Any] = yaml.CSafeLoader
    LIBYAML = True
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader
    LIBYAML = False

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
    read_as: str


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
_constructor = yaml.constructor.SafeConstructor()


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


class _Builder:
    """Builds one document from the event stream with an explicit stack."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.findings: list[Finding] = []
        self.locations: dict[Path, SourceLocation] = {}
        self.plain: dict[Path, PlainScalar] = {}
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.nodes = 0
        self.alias_nodes = 0
        # frames: [kind, container, path, pending_key, seen_keys, node_count_at_start, anchor]
        self.stack: list[list[Any]] = []
        self.root: Any = None
        self.have_root = False
        self.skip_depth = 0  # > 0 while skipping a complex (non-scalar) mapping key

    def loc(self, mark: Any) -> SourceLocation:
        return SourceLocation(file=self.file, line=mark.line + 1, column=mark.column + 1)

    def error(self, mark: Any, rule: str, message: str, hint: str | None = None) -> None:
        self.findings.append(Finding.at(self.loc(mark), rule, message, hint=hint))

    # --- values -------------------------------------------------------------------

    def child_path(self) -> Path | None:
        """The path of the next value, or None when it is a mapping key."""
        if not self.stack:
            return ()
        frame = self.stack[-1]
        if frame[0] == "map":
            if frame[3] is None:
                return None
            return (*frame[2], frame[3][0])
        return (*frame[2], len(frame[1]))

    def attach(self, value: Any, event: Any, path: Path) -> None:
        if not self.stack:
            self.root = value
            self.have_root = True
            return
        frame = self.stack[-1]
        if frame[0] == "seq":
            self.locations[path] = self.loc(event.start_mark)
            frame[1].append(value)
            return
        key, key_mark = frame[3]
        frame[3] = None
        if key is _BAD_KEY:
            return
        self.locations[path] = self.loc(key_mark)
        frame[1][key] = value

    def count(self, n: int, mark: Any) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES:
            self.error(mark, "too-many-nodes", f"the file has more than {MAX_NODES} values")
            raise _Stop

    def key_from_scalar(self, event: Any) -> Any:
        """Check a scalar in key position; return the key or _BAD_KEY."""
        value = event.value
        if event.tag not in (None, "!") and event.tag != _STR:
            self.error(
                event.start_mark, "key-not-string", f"a key with tag {event.tag} is not allowed; keys are strings"
            )
            return _BAD_KEY
        if event.style in (None, "") and event.implicit[0] and event.tag in (None,):
            tag = _resolve_tag(value)
            if tag == _MERGE:
                self.error(
                    event.start_mark,
                    "merge-key",
                    "merge keys (<<) are not supported",
                    hint="write the keys out, or move shared values to a lower layer (global.yaml or environments/<env>.yaml)",
                )
                return _BAD_KEY
            if tag not in (_STR, _TIMESTAMP, _VALUE):
                read_as = _describe(tag, self.construct(tag, event, report=False), value)
                self.error(
                    event.start_mark,
                    "key-not-string",
                    f"the key `{value}` is read as {read_as}; keys must be strings",
                    hint=f"quote it: '{value}':",
                )
                return _BAD_KEY
        if value == "":
            self.error(event.start_mark, "key-empty", "empty key")
            return _BAD_KEY
        bad = [c for c in value if unicodedata.category(c) in ("Cc", "Cf")]
        if bad:
            self.error(
                event.start_mark,
                "key-invisible-character",
                f"the key contains the invisible character U+{ord(bad[0]):04X}",
            )
            return _BAD_KEY
        return value

    def construct(self, tag: str, event: Any, *, report: bool = True) -> Any:
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        if tag == _INT:
            digits = event.value.lstrip("+-")
            if len(digits) > 100:
                if report:
                    self.error(event.start_mark, "number-out-of-range", "integer out of range")
                return event.value
            try:
                return _constructor.construct_yaml_int(node)
            except ValueError:
                if report:
                    self.error(event.start_mark, "bad-number", f"`{event.value}` is not a valid integer")
                return event.value
        if tag == _FLOAT:
            try:
                number = _constructor.construct_yaml_float(node)
            except ValueError:
                if report:
                    self.error(event.start_mark, "bad-number", f"`{event.value}` is not a valid number")
                return event.value
            if report and not math.isfinite(number):
                self.error(
                    event.start_mark,
                    "non-finite-number",
                    f"`{event.value}` is not a finite number; NaN and infinities are not allowed",
                    hint="use a string or a large finite number",
                )
                return event.value
            return number
        if tag == _BOOL:
            return _constructor.construct_yaml_bool(node)
        if tag == _NULL:
            return None
        return event.value

    def scalar(self, event: Any) -> None:
        path = self.child_path()
        if path is None:  # a mapping key
            frame = self.stack[-1]
            key = self.key_from_scalar(event)
            if key is not _BAD_KEY:
                seen: dict[str, SourceLocation] = frame[4]
                first = seen.get(key)
                if first is not None:
                    self.error(
                        event.start_mark,
                        "duplicate-key",
                        f"duplicate key `{key}` (first defined at line {first.line})",
                    )
                    key = _BAD_KEY
                else:
                    seen[key] = self.loc(event.start_mark)
            frame[3] = (key, event.start_mark)
            return
        self.count(1, event.start_mark)
        tag = event.tag
        plain = event.style in (None, "") and event.implicit[0]
        if tag in (None, "!"):
            tag = _resolve_tag(event.value) if plain and tag is None else _STR
        elif tag == UNSET_TAG:
            if event.value != "":
                self.error(event.start_mark, "unset-with-value", "`!unset` takes no value")
            value: Any = UNSET
            self.finish_value(value, event, path)
            return
        elif tag not in (_STR, _INT, _FLOAT, _BOOL, _NULL):
            self.bad_tag(event)
            self.finish_value(event.value, event, path)
            return
        if tag in (_TIMESTAMP, _MERGE, _VALUE):
            tag = _STR  # dates stay strings; a schema with format: date checks them
        value = self.construct(tag, event)
        if plain and event.tag is None and tag != _STR and isinstance(value, bool | int | float | type(None)):
            self.plain[path] = PlainScalar(text=event.value, read_as=_describe(tag, value, event.value))
        self.finish_value(value, event, path)

    def bad_tag(self, event: Any) -> None:
        tag = event.tag
        if tag.startswith(("tag:yaml.org,2002:python/", "!!python/")):
            message = f"the Python tag {tag} is not allowed (it could run code)"
        else:
            message = f"unknown tag {tag}"
        self.error(
            event.start_mark,
            "unknown-tag",
            message,
            hint="only plain YAML values and `!unset` are allowed",
        )

    def finish_value(self, value: Any, event: Any, path: Path) -> None:
        if event.anchor:
            self.anchors[event.anchor] = (value, 1)
        self.attach(value, event, path)

    def start(self, kind: str, event: Any) -> None:
        path = self.child_path()
        if path is None:
            self.error(
                event.start_mark,
                "key-not-string",
                "a mapping or list cannot be a key; keys are strings",
            )
            self.skip_depth = 1
            return
        if len(self.stack) >= MAX_DEPTH:
            self.error(event.start_mark, "too-deep", f"nesting deeper than {MAX_DEPTH} levels")
            raise _Stop
        self.count(1, event.start_mark)
        tag = event.tag
        expected = _MAP if kind == "map" else _SEQ
        if tag not in (None, "!", expected):
            self.bad_tag(event)
        container: Any = {} if kind == "map" else []
        self.stack.append([kind, container, path, None, {}, self.nodes, event.anchor, event])

    def end(self) -> None:
        _, container, path, _, _, start_nodes, anchor, start_event = self.stack.pop()
        if anchor:
            self.anchors[anchor] = (container, self.nodes - start_nodes + 1)
        self.attach(container, start_event, path)

    def alias(self, event: Any) -> None:
        path = self.child_path()
        if path is None:
            self.error(event.start_mark, "key-not-string", "an alias cannot be a key")
            self.stack[-1][3] = (_BAD_KEY, event.start_mark)
            return
        found = self.anchors.get(event.anchor)
        if found is None:
            self.error(event.start_mark, "unknown-alias", f"alias *{event.anchor} has no anchor")
            raise _Stop
        value, size = found
        self.alias_nodes += size
        if self.alias_nodes > MAX_ALIAS_NODES:
            self.error(
                event.start_mark,
                "alias-bomb",
                f"aliases expand to more than {MAX_ALIAS_NODES} values",
                hint="write the shared values out or move them to a lower layer",
            )
            raise _Stop
        self.count(size, event.start_mark)
        self.attach(value, event, path)

    def skip(self, event: Any) -> None:
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            self.skip_depth += 1
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            self.skip_depth -= 1
            if self.skip_depth == 0:
                self.stack[-1][3] = (_BAD_KEY, event.start_mark)


class _BadKey:
    pass


_BAD_KEY: Final = _BadKey()


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
    documents = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if builder.skip_depth:
                builder.skip(event)
                continue
            if isinstance(event, yaml.ScalarEvent):
                builder.scalar(event)
            elif isinstance(event, yaml.MappingStartEvent):
                builder.start("map", event)
            elif isinstance(event, yaml.SequenceStartEvent):
                builder.start("seq", event)
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                builder.end()
            elif isinstance(event, yaml.AliasEvent):
                builder.alias(event)
            elif isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    builder.error(
                        event.start_mark,
                        "multiple-documents",
                        "several YAML documents in one file; a config file holds one",
                        hint="remove the `---` separator or split the file",
                    )
                    raise _Stop
    except _Stop:
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
        mark = getattr(exc, "position", None)
        line, column = _line_col(text, mark) if isinstance(mark, int) else (1, 1)
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        builder.findings.append(
            Finding(file=file, line=line, column=column, rule="yaml-syntax", message=str(reason))
        )
        return Document(file=file, value=None, findings=tuple(builder.findings))
    except (RecursionError, ValueError, MemoryError) as exc:  # belt and braces: never a traceback
        builder.findings.append(
            Finding(file=file, line=1, column=1, rule="yaml-syntax", message=f"cannot read the file: {type(exc).__name__}")
        )
        return Document(file=file, value=None, findings=tuple(builder.findings))
    empty = not builder.have_root or builder.root is None
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
    if builder.have_root:
        builder.locations.setdefault((), SourceLocation(file=file))
    return Document(
        file=file,
        value=None if empty else builder.root,
        locations=builder.locations,
        plain=builder.plain,
        findings=tuple(builder.findings),
        empty=empty,
    )


def _line_col(text: str, position: int) -> tuple[int, int]:
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1
