"""The resolved snapshot as a cache holds it, and the port every snapshot cache satisfies.

A :class:`CachedSnapshot` is what the reconciler warms and the SDK reads: the resolved
values of one (app, env) together with the version, commit and checksum they belong to.
It is written and read as one JSON document, so a reader gets one whole version or
nothing, never the values of one version with the number of another.

Invariants every :class:`SnapshotCache` keeps:

- ``put`` never moves an entry backwards: it writes only when the stored version is lower
  or absent, or when the version is the same but the checksum differs (a damaged or
  foreign entry; the store is the authority for a version's content).
- ``repair`` makes the cache equal to what it is given: missing, stale and damaged
  entries are written, entries not given are deleted.

The JSON encoding (:func:`encode_snapshot`/:func:`decode_snapshot`) is shared by the Redis
cache, the snapshot directory and the SDK so the three cannot drift apart. It is pure:
no I/O, no clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

__all__ = [
    "NAME_RE",
    "CacheKey",
    "CachedSnapshot",
    "SnapshotCache",
    "decode_snapshot",
    "encode_snapshot",
    "require_name",
]

#: App and environment names are DNS labels (ARCHITECTURE.md). Caches build keys and
#: file names from them, so they check them again instead of trusting the caller: a name
#: with ``:``, ``/`` or ``..`` would address another entry.
NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")

CacheKey = tuple[str, str]
"""(app, env)."""


def require_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a DNS label, else raise ValueError naming ``kind``."""
    if NAME_RE.fullmatch(name) is None:
        raise ValueError(f"{kind} name is not a DNS label: {name!r}")
    return name


def is_name(text: str) -> bool:
    """Whether ``text`` is a DNS label (an app or environment name a cache key may hold)."""
    return NAME_RE.fullmatch(text) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedSnapshot:
    """One (app, env) at one version, as the cache stores it.

    ``values`` is the resolved configuration exactly as the store recorded it for this
    version (it may hold secrets: never log it). ``checksum`` is the store's checksum of
    those values; caches compare it, they never recompute it. ``updated_at`` is when the
    cache entry was written (timezone-aware, UTC), not when the version was created.
    """

    app: str
    env: str
    version: int
    commit: str | None
    checksum: str
    values: Mapping[str, Any]
    updated_at: datetime
    rollouts: tuple[Mapping[str, object], ...] = ()
    """The rollouts and flags of this (app, env) in their JSON form with runtime state
    folded in (:mod:`configctl.core.rollouts`), so a reader evaluates locally."""

    def __post_init__(self) -> None:
        require_name("app", self.app)
        require_name("env", self.env)
        if isinstance(self.version, bool) or self.version < 1:
            raise ValueError("version must be an integer >= 1")
        if not self.checksum:
            raise ValueError("checksum must not be empty")
        if self.updated_at.tzinfo is None:
            raise ValueError("updated_at must be timezone-aware")

    @property
    def key(self) -> CacheKey:
        return (self.app, self.env)


def encode_snapshot(snapshot: CachedSnapshot) -> str:
    """The one JSON text a cache stores for ``snapshot`` (sorted keys, compact, UTF-8 safe)."""
    doc = {
        "app": snapshot.app,
        "env": snapshot.env,
        "version": snapshot.version,
        "commit": snapshot.commit,
        "checksum": snapshot.checksum,
        "values": snapshot.values,
        "updated_at": snapshot.updated_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "rollouts": list(snapshot.rollouts),
    }
    # allow_nan=False: NaN/Infinity are not JSON and other readers (the SDK in another
    # language, jq) would choke on them; the store never records them.
    return json.dumps(
        doc,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_plain,
    )


def _plain(value: object) -> object:
    """Read-only mappings (``MappingProxyType`` and friends) encode as JSON objects."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def decode_snapshot(text: str | bytes) -> CachedSnapshot:
    """Parse what :func:`encode_snapshot` wrote; ValueError if it is not a whole snapshot.

    The message never quotes the text (it holds configuration values).
    """
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("snapshot is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise ValueError("snapshot is not a JSON object")
    missing = {"app", "env", "version", "commit", "checksum", "values", "updated_at"} - doc.keys()
    if missing:
        raise ValueError(f"snapshot lacks fields: {', '.join(sorted(missing))}")
    values = doc["values"]
    if not isinstance(values, dict):
        raise ValueError("snapshot values are not a JSON object")
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError("snapshot version is not an integer >= 1")
    app, env = doc["app"], doc["env"]
    if not (isinstance(app, str) and isinstance(env, str)):
        raise ValueError("snapshot app and env are not strings")
    commit = doc["commit"]
    if commit is not None and not isinstance(commit, str):
        raise ValueError("snapshot commit is not a string or null")
    checksum = doc["checksum"]
    if not isinstance(checksum, str):
        raise ValueError("snapshot checksum is not a string")
    try:
        updated_at = datetime.fromisoformat(str(doc["updated_at"]))
    except ValueError as exc:
        raise ValueError("snapshot updated_at is not an ISO 8601 time") from exc
    if updated_at.tzinfo is None:
        raise ValueError("snapshot updated_at has no time zone")
    # Absent in entries written before rollouts existed: those pairs have none.
    rollouts = doc.get("rollouts", [])
    if not isinstance(rollouts, list) or not all(isinstance(r, dict) for r in rollouts):
        raise ValueError("snapshot rollouts are not a JSON array of objects")
    return CachedSnapshot(
        app=app,
        env=env,
        version=version,
        commit=commit,
        checksum=checksum,
        values=values,
        updated_at=updated_at,
        rollouts=tuple(rollouts),
    )


class SnapshotCache(Protocol):
    """Where resolved snapshots are kept for readers: Redis, or a directory when embedded.

    Implementations raise :class:`configctl.errors.CacheError` when the backend fails.
    """

    def put(self, snapshot: CachedSnapshot) -> bool:
        """Store ``snapshot`` unless that would move the entry backwards.

        Returns True if written, False if the stored entry is newer or identical.
        """
        ...

    def get(self, app: str, env: str) -> CachedSnapshot | None:
        """The stored snapshot of (app, env), or None if there is none."""
        ...

    def versions(self) -> dict[CacheKey, int]:
        """The stored version of every (app, env) present."""
        ...

    def repair(self, expected: Mapping[CacheKey, CachedSnapshot]) -> int:
        """Make the cache hold exactly ``expected``; return how many entries were changed.

        Missing, older and same-version-different-checksum entries are written; entries
        whose (app, env) is not in ``expected`` are deleted. An entry that is *newer* than
        expected is left alone (a deposed leader must not roll the cache back); it is
        reported in the log and not counted.
        """
        ...

    def ping(self) -> None:
        """Raise CacheError unless the backend is reachable and usable."""
        ...
