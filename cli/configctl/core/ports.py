"""Ports: what the use cases and the reconciler need from the outside, as typing.Protocol.

Adapters (``configctl.adapters``, ``configctl_reconciler``) satisfy these structurally;
tests satisfy them with small fakes. Nothing here does I/O.

Error contract: implementations raise only ``configctl.errors`` types for backend
failures (``StoreError`` for the outbox, ``BrokerError`` for a publisher), so a use case
can tell "retry later" from a bug without knowing the library underneath.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from configctl.core.clients import ClientReport
from configctl.core.model import FileEntry
from configctl.core.records import (
    AuditRecord,
    CommitInfo,
    CommitRecord,
    HistoryEntry,
    OutboxRecord,
    PinRecord,
    ReviewComment,
    VersionEntry,
    VersionHead,
    VersionRecord,
)

__all__ = [
    "AuditReader",
    "ClientReportsPort",
    "CommentThread",
    "GitReader",
    "GitSourcePort",
    "Leader",
    "OutboxPort",
    "PublisherPort",
    "ReconcilerStorePort",
    "ReconcilerUnitOfWork",
    "StatusReader",
    "VersionReader",
]


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


# --- reconciler ports ---------------------------------------------------------------------
# What one reconcile pass needs (configctl_reconciler.reconcile.Deps). The store's unit of
# work is narrowed to the calls the pass makes itself; apply, rollouts and the relay take
# the same store object through their own ports. The cache is core.cache.SnapshotCache.


class GitSourcePort(Protocol):
    """Commits and trees of one repository (``configctl.adapters.git.GitSource``)."""

    def commit_info(self, rev: str) -> CommitInfo:
        """One commit; RevisionNotFound if ``rev`` names none."""
        ...

    def commits_between(self, base: str | None, head: str, *, prefix: str | None = None) -> list[CommitInfo]:
        """Commits after ``base`` up to ``head``, first parents, oldest first."""
        ...

    def is_ancestor(self, a: str, b: str) -> bool:
        """Whether ``a`` is ``b`` or one of its ancestors."""
        ...

    def read_tree(self, rev: str, prefix: str = "") -> dict[str, FileEntry]:
        """``{repository-relative path: FileEntry}`` of the config files of ``rev``."""
        ...


class ReconcilerUnitOfWork(Protocol):
    """The writes one reconcile step makes itself, in one transaction."""

    def commit_status(self, sha: str) -> str | None: ...

    def record_commit(self, info: CommitInfo, status: str, reason: str | None) -> None: ...

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
        details: Mapping[str, object] | None = None,
    ) -> None: ...

    def set_sync_state(self, name: str, value: str | None) -> None: ...


class ReconcilerStorePort(OutboxPort, Protocol):
    """The store as the reconcile pass sees it (``SqlStore``); raises ``StoreError``."""

    def unit_of_work(self, fence: tuple[str, int] | None = None) -> AbstractContextManager[ReconcilerUnitOfWork]:
        """One transaction, refused (``FencingError``) when ``fence`` is stale."""
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
