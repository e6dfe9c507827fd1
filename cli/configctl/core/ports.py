"""Ports: what the use cases and the reconciler need from the outside, as typing.Protocol.

Adapters (``configctl.adapters``, ``configctl_reconciler``) satisfy these structurally;
tests satisfy them with small fakes. Nothing here does I/O.

Error contract: implementations raise only ``configctl.errors`` types for backend
failures (``StoreError`` for the outbox, ``BrokerError`` for a publisher), so a use case
can tell "retry later" from a bug without knowing the library underneath.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from configctl.core.cache import SnapshotCache
from configctl.core.clients import ClientReport
from configctl.core.model import FileEntry
from configctl.core.records import (
    AuditRecord,
    CommitInfo,
    CommitRecord,
    HistoryEntry,
    JsonObject,
    JsonValue,
    KeyChange,
    NewVersion,
    Notification,
    OutboxRecord,
    PairKey,
    PinRecord,
    ReviewComment,
    VersionEntry,
    VersionHead,
    VersionRecord,
)

__all__ = [
    "AuditReader",
    "ChangeLog",
    "ClientReportsPort",
    "Clock",
    "CommentThread",
    "Fence",
    "GitReader",
    "GitSourcePort",
    "IdFactory",
    "Leader",
    "OutboxPort",
    "PublisherPort",
    "ReadAhead",
    "ReconcilerStorePort",
    "RolloutHead",
    "SnapshotCache",
    "SnapshotSource",
    "StatusReader",
    "StoreReads",
    "UnitOfWork",
    "VersionReader",
    "VersionStore",
]

Fence = tuple[str, int]
"""(lease name, epoch): the fencing token a reconciler's writes carry."""


@dataclass(frozen=True, slots=True)
class ReadAhead:
    """What a unit of work reads first, asked for when it opens (see
    :meth:`UnitOfWork.read_ahead`): sent with its ``BEGIN`` and writer lock where the
    backend allows, so the reads cost no round trip of their own."""

    commits: Collection[str] = ()
    cursors: Collection[str] = ()
    apps: Collection[str] | None = None
    checksums: Mapping[PairKey, str] = field(default_factory=dict)
    """The checksums the writer will compare the heads of ``apps`` with: a backend that
    reads the heads' snapshots ahead may leave out those of the heads that match (their
    pairs do not change; a snapshot left out is read when asked for)."""


RolloutHead = tuple[int, str | None, tuple[JsonObject, ...]]
"""(version number, commit, rollouts) of a pair whose version in service has rollouts."""


class Clock(Protocol):
    """The time now, timezone-aware, in UTC (``datetime.now(UTC)``; a fixed one in tests)."""

    def __call__(self) -> datetime: ...


class IdFactory(Protocol):
    """A new unique event id (a UUID 4 string; a counter in tests)."""

    def __call__(self) -> str: ...


class UnitOfWork(Protocol):
    """One write transaction of the version store, holding the writer lock.

    Reads see this transaction; writes become visible together when it commits, or not at
    all. Raises ``StoreError`` (``FencingError`` when the fencing epoch moved on).
    """

    def read_ahead(
        self, *, commits: Collection[str], cursors: Collection[str], apps: Collection[str] | None
    ) -> None:
        """Read at once (one round trip where the backend allows) what a writer reads first:
        ``commit_status`` of ``commits``, ``get_sync_state`` of ``cursors``,
        ``latest_heads(apps, with_rollbacks=True)`` (every pair when None), every rollout
        state, pin and quarantine. Only a hint: every read answers the same without it."""
        ...

    # -- versions -------------------------------------------------------------------------
    def latest_versions(self) -> Mapping[PairKey, VersionRecord]:
        """The newest version of every (app, env), with its snapshot."""
        ...

    def latest_heads(
        self, apps: Collection[str] | None = None, *, with_rollbacks: bool = False
    ) -> Mapping[PairKey, VersionHead]:
        """The newest version of every (app, env) (of ``apps`` only, plus with
        ``with_rollbacks`` any pair a rollback holds), without its snapshot."""
        ...

    def get_version(self, app: str, env: str, number: int | None = None) -> VersionRecord | None:
        """Version ``number`` of (app, env), or the newest when ``number`` is None."""
        ...

    def add_version(
        self,
        *,
        app: str,
        env: str,
        values: JsonObject,
        checksum: str,
        commit_sha: str | None,
        reason: str,
        actor: str,
        changes: Sequence[KeyChange],
        rolled_back_to: int | None = None,
        rollouts: Sequence[JsonObject] = (),
    ) -> int:
        """Write the next version of (app, env) with its key changes; return its number."""
        ...

    # -- commits --------------------------------------------------------------------------
    def commit_status(self, sha: str) -> str | None:
        """A ``CommitStatus`` value, or None when the commit was never recorded."""
        ...

    def record_commit(self, info: CommitInfo, status: str, reason: str | None) -> None:
        """Insert or update the commit row (``status`` a ``CommitStatus`` value)."""
        ...

    # -- pins -----------------------------------------------------------------------------
    def get_pins(self) -> Sequence[PinRecord]: ...

    def set_pin(
        self,
        *,
        app: str,
        env: str,
        version: int,
        reason: str,
        actor: str,
        quarantined_commit: str | None = None,
    ) -> None: ...

    def clear_pin(self, app: str, env: str) -> bool:
        """Remove the pin of (app, env); False if there was none."""
        ...

    # -- rollouts -------------------------------------------------------------------------
    def rollout_states(
        self, app: str | None = None, env: str | None = None
    ) -> Mapping[PairKey, Mapping[str, JsonObject]]:
        """Runtime state of rollouts: ``{(app, env): {name: state}}``."""
        ...

    def rollout_heads(self) -> Mapping[PairKey, RolloutHead]: ...

    def set_rollout_state(self, app: str, env: str, name: str, state: JsonObject) -> None: ...

    # -- sync state (cursor, last applied / attempted commit) ----------------------------
    def get_sync_state(self, name: str) -> JsonValue:
        """The JSON value stored under ``name``, or None."""
        ...

    def set_sync_state(self, name: str, value: JsonValue) -> None:
        """Store a JSON value under ``name``; None removes it."""
        ...

    # -- audit and outbox -----------------------------------------------------------------
    def add_audit(
        self,
        *,
        action: str,
        actor: str,
        host: str,
        app: str | None = None,
        env: str | None = None,
        commit_sha: str | None = None,
        version: int | None = None,
        details: JsonObject,
    ) -> None:
        """Append one audit row (no secret values in ``details``)."""
        ...

    def add_outbox(self, *, event_id: str, routing_key: str, payload: Notification) -> None:
        """Queue a notification; the relay publishes it after this transaction commits."""
        ...

    # -- batches (the statements of a unit of work do not grow with the pairs) ------------
    def get_versions(self, wanted: Iterable[tuple[str, str, int]]) -> Mapping[PairKey, VersionRecord]:
        """Version ``number`` of each ``(app, env, number)``, keyed by (app, env), in one read."""
        ...

    def add_versions(self, versions: Sequence[NewVersion]) -> list[int]:
        """Write ``versions`` (each the next of its pair) with their key changes in one
        batch; return their numbers, in order."""
        ...

    # -- quarantines ----------------------------------------------------------------------
    def quarantine(self, app: str, env: str, commit: str | None, checksum: str, version: int) -> None:
        """Keep the values of ``checksum`` out of service for (app, env) until a newer
        commit changes the pair (replaces an earlier quarantine)."""
        ...

    def get_quarantine(self, app: str, env: str) -> Mapping[str, JsonValue] | None:
        """The quarantine of (app, env): ``{"commit", "checksum", "version"}``, or None."""
        ...

    def lift_quarantine(self, app: str, env: str) -> bool:
        """End the quarantine of (app, env); False if there was none."""
        ...

    def quarantines(self) -> Mapping[PairKey, Mapping[str, JsonValue]]:
        """Every quarantine, by (app, env), in one read."""
        ...


class VersionStore(Protocol):
    """The version store as the write use cases see it: units of work."""

    def unit_of_work(
        self, fence: Fence | None = None, *, reads: ReadAhead | None = None
    ) -> AbstractContextManager[UnitOfWork]:
        """A write transaction holding the writer lock; with ``fence``, the store checks
        inside it that the epoch is still current (``FencingError`` otherwise) before the
        body runs; with ``reads``, :meth:`UnitOfWork.read_ahead` of them is done too."""
        ...


class StoreReads(Protocol):
    """Reads of the version store outside any unit of work (each its own snapshot)."""

    def latest_heads(self) -> Mapping[PairKey, VersionHead]: ...

    def get_version(
        self, app: str, env: str, number: int | None = None
    ) -> VersionRecord | None: ...

    def get_commit(self, sha: str) -> CommitRecord | None: ...

    def pins(self) -> Sequence[PinRecord]: ...

    def sync_state(self, name: str) -> JsonValue: ...


class SnapshotSource(Protocol):
    """The part of the store that exporting snapshots to a cache needs."""

    def latest_heads(self) -> Mapping[PairKey, VersionHead]: ...

    def get_version(
        self, app: str, env: str, number: int | None = None
    ) -> VersionRecord | None: ...


class ChangeLog(Protocol):
    """What attribution (``services.attribution``) needs from git; paths relative to the
    config folder."""

    def changes(self, head: str) -> Sequence[tuple[str, str | None, frozenset[str]]]:
        """``(commit, first parent, changed config paths)``, newest first."""
        ...

    def tree(self, sha: str) -> Mapping[str, FileEntry]:
        """The config files of ``sha``."""
        ...

    def commit_info(self, sha: str) -> CommitInfo:
        """One commit's record."""
        ...


class GitSourcePort(Protocol):
    """A git repository as the use cases read it. Raises ``GitError``."""

    def resolve(self, rev: str) -> str:
        """The full sha of ``rev``."""
        ...

    def is_ancestor(self, a: str, b: str) -> bool:
        """Whether ``a`` is an ancestor of ``b`` (False when git cannot tell)."""
        ...

    def read_tree(self, rev: str, prefix: str = "") -> dict[str, FileEntry]:
        """``{path: FileEntry}`` of the tree of ``rev`` under ``prefix``."""
        ...

    def commit_info(self, rev: str) -> CommitInfo: ...

    def commits_between(
        self, base: str | None, head: str, *, prefix: str | None = None
    ) -> list[CommitInfo]:
        """The first-parent commits after ``base`` up to ``head``, oldest first."""
        ...


class OutboxPort(Protocol):
    """The transactional outbox as the relay sees it."""

    def pending_outbox(self, limit: int) -> list[OutboxRecord]:
        """Up to ``limit`` unpublished rows, oldest first (ascending ``id``).

        The order matters: the relay publishes in this order and stops at the first
        failure, which is what keeps messages of one (app, env) in version order.
        """
        ...

    def mark_outbox_published(self, ids: Sequence[int], at: datetime) -> None:
        """Record that the broker confirmed the rows ``ids`` at ``at``."""
        ...

    def mark_outbox_failed(self, id: int, error: str) -> None:
        """Count a failed attempt on row ``id`` and keep ``error`` (no config values in it)."""
        ...


class PublisherPort(Protocol):
    """Something that delivers one message and returns only once it is safely accepted.

    For RabbitMQ that means after the publisher confirm. Raises ``BrokerError`` when the
    message may not have been accepted; the caller will publish it again (at-least-once),
    consumers de-duplicate by ``message_id``.
    """

    def publish(self, routing_key: str, body: bytes, message_id: str) -> None: ...


class Leader(Protocol):
    """Single-leader election for the reconciler.

    Leadership is a hint, never a guarantee: a lock can be lost without the holder
    noticing until its next round trip. Every write therefore also carries ``epoch`` (a
    fencing token the store checks inside the write transaction); ``check`` is called
    before each unit of work so a deposed leader stops early, and the fencing epoch stops
    it for sure.
    """

    @property
    def is_leader(self) -> bool:
        """What this replica last knew, without a round trip."""
        ...

    @property
    def epoch(self) -> int | None:
        """The fencing epoch obtained when leadership was acquired, None when not leader."""
        ...

    def try_acquire(self) -> bool:
        """Try once, without blocking for long; True if this replica now leads."""
        ...

    def check(self) -> bool:
        """Re-verify leadership now (a round trip where the backend allows); False if lost."""
        ...

    def release(self) -> None:
        """Give leadership up (idempotent); a rival may acquire at once."""
        ...


class ClientReportsPort(Protocol):
    """Where running SDK clients report the version they hold (Redis; see core.clients)."""

    def reports(self, app: str, env: str, now: datetime) -> list[ClientReport]:
        """The live reports of (app, env) at ``now``; raises CacheError when unreachable."""
        ...


class CommentThread(Protocol):
    """The conversation of one pull request (GitHub) or merge request (GitLab).

    Raises ``ForgeError`` when the API refuses or cannot be reached. ``max_body`` is the
    longest body the platform accepts, in characters (GitHub: 65,536).
    """

    @property
    def max_body(self) -> int: ...

    def comments(self) -> list[ReviewComment]:
        """Every comment of the thread, oldest first (all pages)."""
        ...

    def create(self, body: str) -> ReviewComment:
        """Post a new comment."""
        ...

    def update(self, comment_id: int, body: str) -> None:
        """Replace the body of comment ``comment_id``."""
        ...


# --- the reconciler ----------------------------------------------------------------------
# What one reconcile pass needs (configctl_reconciler.reconcile.Deps): the store's units of
# work are the use cases' UnitOfWork, plus the reads the pass makes outside them. The cache
# is core.cache.SnapshotCache; the git source is GitSourcePort.


class ReconcilerStorePort(OutboxPort, Protocol):
    """The store as the reconcile pass sees it (``SqlStore``); raises ``StoreError``."""

    def unit_of_work(
        self, fence: Fence | None = None, *, reads: ReadAhead | None = None
    ) -> AbstractContextManager[UnitOfWork]:
        """One transaction, refused (``FencingError``) when ``fence`` is stale; see
        :meth:`VersionStore.unit_of_work`."""
        ...

    def sync_state(self, name: str) -> object:
        """A sync-state value (a commit id for the cursors), None when unset."""
        ...

    def get_commit(self, sha: str) -> CommitRecord | None: ...

    def get_version(self, app: str, env: str, number: int | None = None) -> VersionRecord | None: ...

    def latest_versions(self) -> dict[tuple[str, str], VersionRecord]: ...

    def outbox_backlog(self) -> int: ...


# -- the read side (status, history, show, audit) ----------------------------------------


class VersionReader(Protocol):
    """The versions of the store as the read use cases see them (`history`, `show`)."""

    def latest_heads(self) -> Mapping[tuple[str, str], VersionHead]:
        """The newest version of every (app, env), without its snapshot."""
        ...

    def get_version(self, app: str, env: str, number: int | None = None) -> VersionRecord | None:
        """Version ``number`` of (app, env), or the newest when ``number`` is None."""
        ...

    def list_versions(self, app: str, env: str, limit: int | None = None) -> list[VersionEntry]:
        """Versions of (app, env), newest first, with commit author and changed keys."""
        ...

    def key_history(self, app: str, env: str, key: str) -> list[HistoryEntry]:
        """Every version of (app, env) that changed ``key`` or a key below it, newest first."""
        ...


class AuditReader(Protocol):
    """The audit log, filtered (`audit`)."""

    def audit(
        self,
        app: str | None = None,
        env: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Audit rows matching every given filter, newest first."""
        ...


class StatusReader(VersionReader, Protocol):
    """What `status` reads: versions, the sync cursor, rejected commits and pins."""

    def sync_state(self, name: str) -> object:
        """The JSON value stored under ``name``, or None."""
        ...

    def quarantines(self) -> Mapping[tuple[str, str], Mapping[str, object]]:
        """Every quarantine by (app, env): ``{"commit", "checksum", "version"}``."""
        ...

    def commits(self, status: str | None = None, limit: int | None = None) -> list[CommitRecord]:
        """Recorded commits (optionally of one status), most recently recorded first."""
        ...

    def pins(self) -> list[PinRecord]:
        """Every pair a rollback holds."""
        ...


class GitReader(Protocol):
    """The git history a read use case compares the store with (`status`)."""

    def head(self) -> str | None:
        """The commit HEAD points at, or None in a repository without commits."""
        ...

    def is_ancestor(self, a: str, b: str) -> bool:
        """Whether commit ``a`` is ``b`` or one of its ancestors."""
        ...

    def commit_info(self, rev: str) -> CommitInfo:
        """One commit."""
        ...

    def commits_between(
        self, base: str | None, head: str, *, prefix: str | None = None
    ) -> list[CommitInfo]:
        """Commits after ``base`` up to ``head``, oldest first (``prefix``: config changes only)."""
        ...

    def read_tree(self, rev: str, prefix: str = "") -> Mapping[str, FileEntry]:
        """Every config file of ``rev``'s tree, paths relative to the repository root."""
        ...
