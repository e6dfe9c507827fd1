"""The served view: one adopted snapshot, precomputed for dictionary-speed reads.

A :class:`View` is immutable and replaced whole (one reference assignment, atomic under
the GIL), so a reader on any thread sees one version or the next, never a mix, without
a lock on the read path. ``flat`` maps every dotted path -- leaves *and* sections --
to its value, so ``get("database.host")`` is one dict lookup and ``get("database")``
returns the section. ``plain`` is ``flat`` without the keys that need evaluation (a key
under a rollout, and every section above one) and without sections and lists (served as
copies): a key found there is served as is (the fast path, one dict lookup); ``pickers`` and ``flag_checks`` hold the core evaluator's
compiled function of each rollout key and flag, so a rollout read is one more call.
A view depends only on the snapshot, so clients of one (app, env) share it.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from configctl.core.cache import CachedSnapshot
from configctl.core.rollouts import EMPTY_ROLLOUTS, Pick, RolloutSet, Served

__all__ = ["EMPTY_VIEW", "View", "changed_keys", "flatten_all", "load_rollouts"]


NO_ROLLOUTS: RolloutSet = EMPTY_ROLLOUTS


def load_rollouts(raw: Sequence[Mapping[str, object]]) -> RolloutSet:
    """The snapshot's rollouts as the shared core evaluator (ValueError if malformed)."""
    if not raw:
        return NO_ROLLOUTS
    return RolloutSet.from_json(raw)


def flatten_all(
    values: Mapping[str, Any], prefix: str = "", out: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every dotted path of ``values``, sections included (``a`` and ``a.b`` and ``a.b.c``)."""
    if out is None:
        out = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        out[dotted] = value
        if isinstance(value, Mapping) and value:
            flatten_all(value, dotted + ".", out)
    return out


def leaves(
    values: Mapping[str, Any], prefix: str = "", out: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Dotted leaf keys only (an empty mapping counts as a leaf)."""
    if out is None:
        out = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            leaves(value, dotted + ".", out)
        else:
            out[dotted] = value
    return out


def changed_keys(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> tuple[str, ...]:
    """Dotted leaf keys added, changed or removed between two value trees, sorted."""
    a = leaves(old) if old is not None else {}
    b = leaves(new)
    return tuple(sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING)))


_MISSING = object()


@dataclass(frozen=True, slots=True)
class View:
    """One adopted snapshot as the client serves it."""

    snapshot: CachedSnapshot | None
    flat: dict[str, Any]
    rollouts: RolloutSet = NO_ROLLOUTS
    rollout_keys: frozenset[str] = frozenset()
    raw_rollouts: tuple[Mapping[str, object], ...] = field(default=())
    plain: dict[str, Any] = field(default_factory=dict)
    pickers: dict[str, Pick] = field(default_factory=dict)
    flag_checks: dict[str, Served] = field(default_factory=dict)

    @classmethod
    def of(cls, snapshot: CachedSnapshot) -> View:
        raw = tuple(snapshot.rollouts)
        rollouts = load_rollouts(raw)
        flat = flatten_all(snapshot.values)
        keys = frozenset(rollouts.keys)
        pickers: dict[str, Pick] = {}
        for key in keys:
            pick = rollouts.picker(key)
            if pick is not None:
                pickers[key] = pick
        evaluated = set(keys)
        for (
            key
        ) in keys:  # a section above a rollout key is evaluated too (its copy carries the rollout)
            parts = key.split(".")
            evaluated.update(".".join(parts[:i]) for i in range(1, len(parts)))
        return cls(
            snapshot=snapshot,
            flat=flat,
            rollouts=rollouts,
            rollout_keys=keys,
            raw_rollouts=raw,
            # Only immutable values are served as they are; a section or a list is copied on
            # each read (``ClientCore.value``), so no caller can change what every client of
            # this (app, env) serves.
            plain={k: v for k, v in flat.items() if k not in evaluated and not isinstance(v, dict | list)},
            pickers=pickers,
            flag_checks={name: rollouts.flag(name) for name in rollouts.flags},
        )

    @property
    def version(self) -> int:
        return self.snapshot.version if self.snapshot is not None else 0


EMPTY_VIEW = View(snapshot=None, flat={})
