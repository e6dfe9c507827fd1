"""Small in-memory fakes of the ports in ``configctl.core.ports``, for unit tests of the use
cases (no database, broker, cache server or git).

Each fake keeps what it was asked to do in plain attributes so a test can assert on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from configctl.core.cache import CachedSnapshot
from configctl.core.model import FileEntry
from configctl.core.records import (
    CommitInfo,
    CommitRecord,
    KeyChange,
    OutboxRecord,
    PinRecord,
    VersionHead,
    VersionRecord,
)
from configctl.errors import FencingError, RevisionNotFound

# --- reconciler fakes ---------------------------------------------------------------------

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def commit_info(sha: str, parents: Sequence[str] = (), message: str = "change") -> CommitInfo:
    """A commit as git would list it (authored and committed at :data:`EPOCH`)."""
    return CommitInfo(
        sha=sha, parents=tuple(parents), author_name="Ann", author_email="ann@example.com",
        authored_at=EPOCH, committer_name="Ann", committer_email="ann@example.com",
        committed_at=EPOCH, message=message,
    )  # fmt: skip


class FakeGit:
    """:class:`configctl.core.ports.GitSourcePort` over commits and trees held in memory."""

    def __init__(self) -> None:
        self.commits: dict[str, CommitInfo] = {}
        self.trees: dict[str, dict[str, bytes]] = {}
        self.head: str | None = None

    def commit(self, sha: str, files: Mapping[str, str], message: str = "change") -> CommitInfo:
        """Add a commit on top of the head whose tree is ``files`` (path -> text)."""
        info = commit_info(sha, [self.head] if self.head else [], message)
        self.commits[sha] = info
        self.trees[sha] = {path: text.encode() for path, text in files.items()}
        self.head = sha
        return info

    def commit_info(self, rev: str) -> CommitInfo:
        if rev not in self.commits:
            raise RevisionNotFound(f"revision {rev!r} does not name a commit")
        return self.commits[rev]

    def commits_between(
        self, base: str | None, head: str, *, prefix: str | None = None
    ) -> list[CommitInfo]:
        out: list[CommitInfo] = []
        sha: str | None = head
        while sha is not None and sha != base:
            info = self.commit_info(sha)
            out.append(info)
            sha = info.parents[0] if info.parents else None
        return out[::-1]

    def is_ancestor(self, a: str, b: str) -> bool:
        return a == b or any(c.sha == a for c in self.commits_between(None, b))

    def read_tree(self, rev: str, prefix: str = "") -> dict[str, FileEntry]:
        return {
            path: FileEntry(data=data, size=len(data)) for path, data in self.trees[rev].items()
        }


class FakeUnitOfWork:
    """The writes of one transaction, applied to its :class:`FakeStore` on commit."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    # reads
    def latest_versions(self) -> dict[tuple[str, str], VersionRecord]:
        return self.store.latest_versions()

    def latest_heads(
        self, apps: Collection[str] | None = None, *, with_rollbacks: bool = False
    ) -> dict[tuple[str, str], VersionHead]:
        return {
            pair: VersionHead(
                app=v.app,
                env=v.env,
                number=v.number,
                checksum=v.checksum,
                commit_sha=v.commit_sha,
                reason=v.reason,
            )
            for pair, v in self.store.latest_versions().items()
            if apps is None or pair[0] in apps
        }

    def get_version(self, app: str, env: str, number: int | None = None) -> VersionRecord | None:
        return self.store.get_version(app, env, number)

    def commit_status(self, sha: str) -> str | None:
        record = self.store.commits.get(sha)
        return record.status if record is not None else None

    def rollout_states(
        self, app: str | None = None, env: str | None = None
    ) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
        return {}

    def rollout_heads(self) -> list[VersionRecord]:
        return []

    def get_pins(self) -> list[PinRecord]:
        return []

    def get_sync_state(self, name: str) -> Any:
        return self.store.state.get(name)

    # writes
    def record_commit(self, info: CommitInfo, status: str, reason: str | None) -> None:
        self.store.commits[info.sha] = CommitRecord(
            info=info, status=status, reason=reason, recorded_at=EPOCH
        )

    def add_version(
        self, *, app: str, env: str, values: Mapping[str, Any], checksum: str, commit_sha: str | None,
        reason: str, actor: str, changes: Sequence[KeyChange], rolled_back_to: int | None = None,
        rollouts: Sequence[Mapping[str, Any]] = (),
    ) -> int:  # fmt: skip
        versions = self.store.versions.setdefault((app, env), [])
        versions.append(
            VersionRecord(
                app=app, env=env, number=len(versions) + 1, values=dict(values), checksum=checksum,
                commit_sha=commit_sha, reason=reason, actor=actor, created_at=EPOCH,
                rolled_back_to=rolled_back_to, rollouts=tuple(rollouts),
            )
        )  # fmt: skip
        return len(versions)

    def add_audit(self, *, action: str, actor: str, host: str, **fields: Any) -> None:
        self.store.audit.append({"action": action, "actor": actor, "host": host, **fields})

    def add_outbox(self, *, event_id: str, routing_key: str, payload: Mapping[str, Any]) -> None:
        self.store.outbox.append(
            OutboxRecord(
                id=len(self.store.outbox) + 1, event_id=event_id, routing_key=routing_key, payload=payload,
                created_at=EPOCH, published_at=None, attempts=0, last_error=None,
            )
        )  # fmt: skip

    def set_sync_state(self, name: str, value: Any) -> None:
        if value is None:
            self.store.state.pop(name, None)
        else:
            self.store.state[name] = value


@dataclass
class FakeStore:
    """The store (versions, commits, audit, outbox, sync state) in memory; fenced like the
    real one: a unit of work with an epoch older than :attr:`epoch` raises FencingError."""

    versions: dict[tuple[str, str], list[VersionRecord]] = field(default_factory=dict)
    commits: dict[str, CommitRecord] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[OutboxRecord] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    transactions: int = 0

    @contextlib.contextmanager
    def unit_of_work(self, fence: tuple[str, int] | None = None) -> Iterator[FakeUnitOfWork]:
        if fence is not None and fence[1] < self.epoch:
            raise FencingError(f"epoch {fence[1]} is stale (now {self.epoch})")
        self.transactions += 1
        yield FakeUnitOfWork(self)

    def sync_state(self, name: str) -> Any:
        return self.state.get(name)

    def get_commit(self, sha: str) -> CommitRecord | None:
        return self.commits.get(sha)

    def get_version(self, app: str, env: str, number: int | None = None) -> VersionRecord | None:
        versions = self.versions.get((app, env), [])
        if not versions:
            return None
        return (
            versions[-1]
            if number is None
            else next((v for v in versions if v.number == number), None)
        )

    def latest_versions(self) -> dict[tuple[str, str], VersionRecord]:
        return {pair: versions[-1] for pair, versions in self.versions.items() if versions}

    def outbox_backlog(self) -> int:
        return sum(1 for row in self.outbox if row.published_at is None)

    def pending_outbox(self, limit: int) -> list[OutboxRecord]:
        return [row for row in self.outbox if row.published_at is None][:limit]

    def mark_outbox_published(self, ids: Sequence[int], at: datetime) -> None:
        self.outbox = [
            replace(row, published_at=at) if row.id in ids else row for row in self.outbox
        ]

    def mark_outbox_failed(self, id: int, error: str) -> None:
        self.outbox = [
            replace(row, attempts=row.attempts + 1, last_error=error) if row.id == id else row
            for row in self.outbox
        ]


@dataclass
class FakeCache:
    """:class:`configctl.core.cache.SnapshotCache` as a dict."""

    entries: dict[tuple[str, str], CachedSnapshot] = field(default_factory=dict)

    def put(self, snapshot: CachedSnapshot) -> bool:
        self.entries[(snapshot.app, snapshot.env)] = snapshot
        return True

    def get(self, app: str, env: str) -> CachedSnapshot | None:
        return self.entries.get((app, env))

    def versions(self) -> dict[tuple[str, str], int]:
        return {pair: snap.version for pair, snap in self.entries.items()}

    def ping(self) -> None:
        return None

    def repair(self, expected: Mapping[tuple[str, str], CachedSnapshot]) -> int:
        changed = sum(1 for pair, snap in expected.items() if self.entries.get(pair) != snap)
        self.entries = dict(expected)
        return changed


@dataclass
class FakePublisher:
    """:class:`configctl.core.ports.PublisherPort` that keeps what it was given."""

    published: list[tuple[str, str]] = field(default_factory=list)
    """(routing key, message id), in order."""

    def publish(self, routing_key: str, body: bytes, message_id: str) -> None:
        self.published.append((routing_key, message_id))
