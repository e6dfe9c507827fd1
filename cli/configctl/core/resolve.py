"""Layered resolution of one (app, env), with provenance.

Layers, later overriding earlier: ``global.yaml`` → ``environments/<env>.yaml`` →
``apps/<app>/values.yaml`` → ``apps/<app>/envs/<env>.yaml``.

Rules:

* mappings merge key by key; scalars and lists replace whatever was there;
* ``key: !unset`` removes the key (and everything under it) inherited from earlier
  layers; removing a key that nothing set is a warning;
* an empty mapping is a value of its own (``limits: {}`` sets ``limits``), merged like any
  mapping.

Every resolved leaf keeps the ordered list of :class:`Setting` values that wrote it,
earliest first, the last one being the value in service. Resolution is a pure function
of its input documents and never mutates them; lists are shared, not copied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from configctl.core.model import Finding, Severity, SourceLocation
from configctl.core.parse import UNSET, Document

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """One layer writing one key."""

    layer: str
    location: SourceLocation
    value: Any
    path: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolution:
    values: dict[str, Any]
    provenance: Mapping[Path, tuple[Setting, ...]] = field(default_factory=dict)
    """Leaf path -> the settings that wrote it, earliest first; the last one won."""
    removed: Mapping[Path, Setting] = field(default_factory=dict)
    """Path -> the ``!unset`` that removed it (for keys absent from ``values``)."""
    findings: tuple[Finding, ...] = ()

    def winner(self, path: Path) -> Setting | None:
        """The setting in service for ``path`` or its nearest ancestor that is a leaf."""
        for i in range(len(path), 0, -1):
            settings = self.provenance.get(path[:i])
            if settings:
                return settings[-1]
        return None

    def settings_under(self, path: Path) -> list[tuple[Path, tuple[Setting, ...]]]:
        """Every leaf at or below ``path`` with its settings, in key order."""
        n = len(path)
        return [(p, s) for p, s in self.provenance.items() if p[:n] == path]


class _Tracker:
    __slots__ = ("doc", "findings", "layer", "provenance", "removed", "track")

    def __init__(self, track: bool) -> None:
        self.track = track
        self.provenance: dict[Path, list[Setting]] = {}
        self.removed: dict[Path, Setting] = {}
        self.findings: list[Finding] = []
        self.layer = ""
        self.doc: Document | None = None

    def setting(self, path: Path, value: Any) -> Setting:
        loc = self.doc.location(path) if self.doc is not None else SourceLocation(file="")
        return Setting(layer=self.layer, location=loc, value=value, path=path)

    def clear_below(self, path: Path, *, inclusive: bool) -> None:
        n = len(path)
        doomed = [p for p in self.provenance if p[:n] == path and (inclusive or len(p) > n)]
        for p in doomed:
            del self.provenance[p]


def _merge(base: dict[str, Any], layer: Mapping[str, Any], path: Path, t: _Tracker) -> None:
    for key, value in layer.items():
        p = (*path, key)
        if value is UNSET:
            if key in base:
                del base[key]
                if t.track:
                    t.clear_below(p, inclusive=True)
                    t.removed[p] = t.setting(p, None)
            elif t.track:
                t.findings.append(
                    Finding.at(
                        t.setting(p, None).location,
                        "unset-nothing",
                        f"`{'.'.join(map(str, p))}: !unset` removes nothing: no earlier layer sets it",
                        severity=Severity.WARNING,
                    )
                )
            continue
        current = base.get(key)
        if isinstance(value, dict):
            if isinstance(current, dict):
                target = current
            else:
                target = {}
                base[key] = target
            _merge(target, value, p, t)
            if t.track:
                t.removed.pop(p, None)
                if not value:
                    # `key: {}` written here: an empty mapping is a value of its own.
                    t.provenance.setdefault(p, []).append(t.setting(p, {}))
                elif not target:
                    # Every key was removed here: this layer leaves the mapping empty.
                    t.provenance[p] = [t.setting(p, {})]
            continue
        if t.track:
            if isinstance(current, dict):
                t.clear_below(p, inclusive=True)
            t.removed.pop(p, None)
            t.provenance.setdefault(p, []).append(t.setting(p, value))
        base[key] = value


def _copy(layer: Mapping[str, Any]) -> dict[str, Any]:
    """What :func:`_merge` makes of ``layer`` merged into nothing, without provenance:
    mappings copied, ``!unset`` keys dropped (they remove nothing)."""
    return {
        key: _copy(value) if isinstance(value, dict) else value
        for key, value in layer.items()
        if value is not UNSET
    }


def _merge_values(base: dict[str, Any], layer: Mapping[str, Any]) -> None:
    """:func:`_merge` without provenance (the same values, none of the bookkeeping)."""
    for key, value in layer.items():
        if value is UNSET:
            base.pop(key, None)
        elif isinstance(value, dict):
            current = base.get(key)
            if isinstance(current, dict):
                _merge_values(current, value)
            else:
                base[key] = _copy(value)
        else:
            base[key] = value


def merge(docs: Sequence[Document]) -> dict[str, Any]:
    """The resolved values only: the fast path used by validation and apply."""
    result: dict[str, Any] = {}
    for doc in docs:
        if isinstance(doc.value, dict):
            _merge_values(result, doc.value)
    return result


def resolve(layers: Sequence[tuple[str, Document]]) -> Resolution:
    """Resolve with provenance; ``layers`` are ``(layer name, document)``, earliest first."""
    result: dict[str, Any] = {}
    t = _Tracker(track=True)
    for name, doc in layers:
        if not isinstance(doc.value, dict):
            continue
        t.layer = name
        t.doc = doc
        _merge(result, doc.value, (), t)
    ordered = {p: tuple(t.provenance[p]) for p in _leaf_paths(result) if p in t.provenance}
    return Resolution(
        values=result,
        provenance=ordered,
        removed=dict(t.removed),
        findings=tuple(t.findings),
    )


def _leaf_paths(values: Mapping[str, Any], path: Path = ()) -> list[Path]:
    out: list[Path] = []
    for key, value in values.items():
        p = (*path, key)
        if isinstance(value, dict) and value:
            out.extend(_leaf_paths(value, p))
        else:
            out.append(p)
    return out


def flatten(values: Mapping[str, Any]) -> dict[str, Any]:
    """Nested values -> ``{dotted.key: leaf}`` (lists and empty mappings are leaves)."""
    return {".".join(map(str, p)): _get(values, p) for p in _leaf_paths(values)}


def _get(values: Mapping[str, Any], path: Path) -> Any:
    node: Any = values
    for part in path:
        node = node[part]
    return node


def lookup(values: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """``(found, value)`` for a dotted key; the value may be a whole sub-mapping."""
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def count_keys(values: Mapping[str, Any]) -> int:
    """Number of leaf keys."""
    return len(_leaf_paths(values))
