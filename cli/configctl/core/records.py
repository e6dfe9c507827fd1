"""Records of the version store: commits, versions, key changes, audit, outbox, pins.

These are the values that travel between the services and the store port: frozen,
slotted, keyword-only dataclasses with no behaviour beyond small conveniences. The
invariants every adapter keeps:

- every ``datetime`` is timezone-aware and in UTC (a backend that returns naive values,
  like SQLite, is normalised at the edge);
- JSON-valued fields (``values``, ``old``/``new``, ``details``, ``payload``) hold plain JSON
  data: ``dict``/``list``/``str``/``int``/``float``/``bool``/``None``;
- secret values never reach a record: the caller redacts them before building one.

The closed sets (commit status, version reason, change kind, signature status) are
``StrEnum`` so their members *are* strings: a record built from a plain ``"added"`` and one
built from ``ChangeKind.ADDED`` compare equal and serialise the same.

:func:`checksum` is the one definition of a snapshot's checksum: SHA-256 of its canonical
JSON, so the same resolved values give the same checksum on every machine and backend.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NotRequired, TypeAlias, TypedDict

JsonScalar: TypeAlias = str | int | float | bool | None
JsonValue: TypeAlias = JsonScalar | Sequence["JsonValue"] | Mapping[str, "JsonValue"]
"""Plain JSON data, as the store keeps it in its JSON columns (read-only container types,
so a ``list[str]`` or a ``dict[str, int]`` is JSON too)."""
JsonObject: TypeAlias = Mapping[str, JsonValue]
"""A JSON object: snapshot values, audit details, rollout state, a rollout's JSON form."""
PairKey: TypeAlias = tuple[str, str]
"""(app, env)."""


class CommitStatus(enum.StrEnum):
    """What happened to a commit the reconciler (or ``configctl apply``) looked at."""

    APPLIED = "applied"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"
    QUARANTINED = "quarantined"


class VersionReason(enum.StrEnum):
    """Why a version exists: a commit changed values, or an operator acted."""

    COMMIT = "commit"
    ROLLBACK = "rollback"
    RELEASE = "release"
    ROLLOUT = "rollout"
    """A rollout control (pause, resume, promote, abort) changed the runtime state."""


class ChangeKind(enum.StrEnum):
    """How one dotted key differs between two consecutive versions."""

    ADDED = "added"
    CHANGED = "changed"
    REMOVED = "removed"


class SignatureStatus(enum.StrEnum):
    """git's ``%G?`` letters, plus ``unchecked`` when nobody asked git.

    G good, B bad, U good but unknown validity, X good but expired, Y good but made by an
    expired key, R good but made by a revoked key, E cannot be checked (missing key),
    N no signature.
    """

    GOOD = "G"
    BAD = "B"
    UNKNOWN_VALIDITY = "U"
    EXPIRED = "X"
    EXPIRED_KEY = "Y"
    REVOKED_KEY = "R"
    CANNOT_CHECK = "E"
    NONE = "N"
    UNCHECKED = "unchecked"


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value``: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def checksum(values: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of a resolved snapshot."""
    return hashlib.sha256(canonical_json(values).encode("utf-8")).hexdigest()


def snapshot_checksum(values: Any, rollouts: Sequence[Mapping[str, Any]] = ()) -> str:
    """The checksum of a version: its values, and its rollouts when it has any.

    A pair without rollouts keeps exactly :func:`checksum` of its values (stores written
    before rollouts existed stay valid); with rollouts, both go into one canonical
    document, so a change to either makes a new version.
    """
    if not rollouts:
        return checksum(values)
    return checksum({"values": values, "rollouts": list(rollouts)})


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitInfo:
    """One git commit as git reports it; signature status is reported, not judged."""

    sha: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    authored_at: datetime
    committer_name: str
    committer_email: str
    committed_at: datetime
    message: str
    signature_status: str = SignatureStatus.UNCHECKED
    signer: str | None = None

    @property
    def subject(self) -> str:
        """The first line of the message."""
        return self.message.split("\n", 1)[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitRecord:
    """A commit as recorded in the store, with what configctl did about it."""

    info: CommitInfo
    status: str
    reason: str | None
    recorded_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyChange:
    """One dotted key that differs from the previous version (values already redacted).

    ``old`` is ``None`` for an added key and ``new`` is ``None`` for a removed one.
    """

    key: str
    change: str
    old: Any = None
    new: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionRecord:
    """One version of one (app, env): the whole resolved snapshot and where it came from.

    ``commit_sha`` is ``None`` for a rollback or release made by an operator;
    ``rolled_back_to`` names the version a rollback put back into service.
    """

    app: str
    env: str
    number: int
    values: Mapping[str, Any]
    checksum: str
    commit_sha: str | None
    reason: str
    actor: str
    created_at: datetime
    rolled_back_to: int | None = None
    rollouts: tuple[Mapping[str, Any], ...] = ()
    """The rollouts of this version in their JSON form, runtime state folded in."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NewVersion:
    """A version to write (``UnitOfWork.add_versions``): the store numbers it ``max + 1``."""

    app: str
    env: str
    values: Mapping[str, Any]
    checksum: str
    commit_sha: str | None
    reason: str
    actor: str
    changes: Sequence[KeyChange] = ()
    rolled_back_to: int | None = None
    rollouts: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionHead:
    """The version in service of one (app, env), without its snapshot: enough to tell
    whether a newly resolved snapshot differs (compare checksums)."""

    app: str
    env: str
    number: int
    checksum: str
    commit_sha: str | None
    reason: str = "commit"


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionEntry:
    """A line of ``configctl history``: a version without its snapshot, with its commit
    author and the keys it changed (sorted by key)."""

    app: str
    env: str
    number: int
    checksum: str
    commit_sha: str | None
    reason: str
    actor: str
    created_at: datetime
    rolled_back_to: int | None
    author_name: str | None
    author_email: str | None
    committed_at: datetime | None
    subject: str | None
    changes: tuple[KeyChange, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One version in which a given key changed (``configctl history APP ENV --key K``)."""

    app: str
    env: str
    key: str
    version: int
    change: str
    old: Any
    new: Any
    commit_sha: str | None
    author_name: str | None
    author_email: str | None
    actor: str
    reason: str
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One audited action: who (actor, host), what (action), where (app, env, commit)."""

    id: int
    at: datetime
    actor: str
    host: str
    action: str
    app: str | None = None
    env: str | None = None
    commit_sha: str | None = None
    version: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxRecord:
    """A notification written with its version, waiting to be (or already) published."""

    id: int
    event_id: str
    routing_key: str
    payload: Mapping[str, Any]
    created_at: datetime
    published_at: datetime | None
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PinRecord:
    """An (app, env) held at a version by an operator until released."""

    app: str
    env: str
    version: int
    reason: str
    actor: str
    created_at: datetime
    quarantined_commit: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineRecord:
    """The values of a rolled-back commit, not served again for (app, env) until a newer
    commit changes the pair (``checksum`` is the checksum of the version rolled back)."""

    app: str
    env: str
    commit: str | None
    checksum: str
    version: int


class Notification(TypedDict):
    """A change notification as it sits in the outbox and travels on the broker
    (``schemas/v1/notification.schema.json``; the rollout fields only for their reasons)."""

    id: str
    app: str
    env: str
    version: int
    previous_version: int | None
    commit: str | None
    changed_keys: list[str]
    time: str
    reason: str
    rollout: NotRequired[str]
    action: NotRequired[str]
    stage: NotRequired[int]
    window: NotRequired[str]
    percentage: NotRequired[int | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewComment:
    """One comment of a pull or merge request, as far as configctl cares: id and text."""

    id: int
    body: str
