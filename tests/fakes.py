"""Small in-memory fakes of the ports in ``configctl.core.ports``, for fast unit tests.

Each fake keeps the contract of its port that the use cases rely on, and nothing more:

- :class:`FakeStore` is a :class:`~configctl.core.ports.VersionStore` and
  :class:`~configctl.core.ports.StoreReads`: a unit of work commits all its writes or
  none (a copy of the state is restored when the block raises), version numbers are dense
  from 1 per (app, env), a fence whose epoch is not the current one raises
  ``FencingError``, and the closed sets are checked as the real store checks them;
- :class:`FakeClock` and :class:`SequentialIds` make time and event ids inputs;
- :class:`FakePublisher`, :class:`FakeCache` and :class:`FakeGit` stand for the broker,
  the snapshot cache and a git repository.

Concurrency and crash proofs stay at the store and acceptance level (real databases).
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from configctl.core.cache import CachedSnapshot, CacheKey
from configctl.core.model import FileEntry
from configctl.core.ports import Fence, ReadAhead, RolloutHead
from configctl.core.records import (
    AuditRecord,
    ChangeKind,
    CommitInfo,
    CommitRecord,
    CommitStatus,
    JsonObject,
    JsonValue,
    KeyChange,
    NewVersion,
    Notification,
    OutboxRecord,
    PairKey,
    PinRecord,
    VersionHead,
    VersionReason,
    VersionRecord,
)
from configctl.errors import BrokerError, FencingError, StoreError, StoreMovedOn

__all__ = [
    "FakeCache",
    "FakeClock",
    "FakeGit",
    "FakePublisher",
    "FakeStore",
    "FakeUnitOfWork",
    "SequentialIds",
    "commit_info",
    "new_version",
]

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class SequentialIds:
    """Event ids 1, 2, 3... written as UUIDs (the notification schema wants UUIDs)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return f"00000000-0000-4000-8000-{self.count:012d}"


def commit_info(
    sha: str, *, parents: Sequence[str] = (), message: str = "change", at: datetime = T0
) -> CommitInfo:
    """A commit as git would report it (author and committer ``dev``)."""
    return CommitInfo(
        sha=sha,
        parents=tuple(parents),
        author_name="Dev",
        author_email="dev@example.com",
        authored_at=at,
        committer_name="Dev",
        committer_email="dev@example.com",
        committed_at=at,
        message=message,
    )


def new_version(
    app: str, env: str, n: int, changes: Sequence[KeyChange] | None = None, *, reason: str = "commit"
) -> NewVersion:
    """A version to write whose values are ``{"n": n}`` (checksum ``c<n>``); by default
    its one key change adds ``n``."""
    return NewVersion(
        app=app,
        env=env,
        values={"n": n},
        checksum=f"c{n}",
        commit_sha="c" * 40,
        reason=reason,
        actor="t",
        changes=[KeyChange(key="n", change="added", new=n)] if changes is None else changes,
    )


@dataclass(slots=True)
class _State:
    versions: dict[PairKey, list[VersionRecord]] = field(default_factory=dict)
    changes: dict[tuple[str, str, int], tuple[KeyChange, ...]] = field(default_factory=dict)
    commits: dict[str, CommitRecord] = field(default_factory=dict)
    pins: dict[PairKey, PinRecord] = field(default_factory=dict)
    sync: dict[str, JsonValue] = field(default_factory=dict)
    rollout_state: dict[PairKey, dict[str, JsonObject]] = field(default_factory=dict)
    audit: list[AuditRecord] = field(default_factory=list)
    outbox: list[OutboxRecord] = field(default_factory=list)
    event_ids: set[str] = field(default_factory=set)
    quarantines: dict[PairKey, dict[str, JsonValue]] = field(default_factory=dict)


class FakeUnitOfWork:
    """The writes and reads of one transaction of :class:`FakeStore`."""

    def __init__(self, state: _State, clock: FakeClock) -> None:
        self._state = state
        self._clock = clock

    # -- versions
    def latest_versions(self) -> dict[PairKey, VersionRecord]:
        return {pair: rows[-1] for pair, rows in self._state.versions.items() if rows}

    def latest_heads(
        self, apps: Collection[str] | None = None, *, with_rollbacks: bool = False
    ) -> dict[PairKey, VersionHead]:
        heads = {
            pair: VersionHead(
                app=v.app,
                env=v.env,
                number=v.number,
                checksum=v.checksum,
                commit_sha=v.commit_sha,
                reason=v.reason,
            )
            for pair, v in self.latest_versions().items()
        }
        if apps is None:
            return heads
        return {
            pair: h
            for pair, h in heads.items()
            if pair[0] in apps or (with_rollbacks and h.reason != VersionReason.COMMIT)
        }

    def get_version(self, app: str, env: str, number: int | None = None) -> VersionRecord | None:
        rows = self._state.versions.get((app, env), [])
        if number is None:
            return rows[-1] if rows else None
        return rows[number - 1] if 0 < number <= len(rows) else None

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
        VersionReason(reason)
        for change in changes:
            ChangeKind(change.change)
        rows = self._state.versions.setdefault((app, env), [])
        number = len(rows) + 1
        rows.append(
            VersionRecord(
                app=app,
                env=env,
                number=number,
                values=copy.deepcopy(dict(values)),
                checksum=checksum,
                commit_sha=commit_sha,
                reason=reason,
                actor=actor,
                created_at=self._clock(),
                rolled_back_to=rolled_back_to,
                rollouts=tuple(copy.deepcopy(dict(r)) for r in rollouts),
            )
        )
        self._state.changes[(app, env, number)] = tuple(changes)
        return number

    def get_versions(self, wanted: Iterable[tuple[str, str, int]]) -> dict[PairKey, VersionRecord]:
        out: dict[PairKey, VersionRecord] = {}
        for app, env, number in wanted:
            record = self.get_version(app, env, number)
            if record is not None:
                out[(app, env)] = record
        return out

    def add_versions(self, versions: Sequence[NewVersion]) -> list[int]:
        return [
            self.add_version(
                app=v.app, env=v.env, values=v.values, checksum=v.checksum, commit_sha=v.commit_sha,
                reason=v.reason, actor=v.actor, changes=v.changes, rolled_back_to=v.rolled_back_to,
                rollouts=v.rollouts,
            )
            for v in versions
        ]  # fmt: skip

    # -- quarantines
    def quarantine(self, app: str, env: str, commit: str | None, checksum: str, version: int) -> None:
        self._state.quarantines[(app, env)] = {"commit": commit, "checksum": checksum, "version": version}

    def get_quarantine(self, app: str, env: str) -> dict[str, JsonValue] | None:
        found = self._state.quarantines.get((app, env))
        return dict(found) if found is not None else None

    def lift_quarantine(self, app: str, env: str) -> bool:
        return self._state.quarantines.pop((app, env), None) is not None

    def quarantines(self) -> dict[PairKey, dict[str, JsonValue]]:
        return {pair: dict(q) for pair, q in self._state.quarantines.items()}

    # -- commits
    def read_ahead(
        self, *, commits: Collection[str], cursors: Collection[str], apps: Collection[str] | None
    ) -> None:
        """A hint for a store with round trips; a dict has none."""

    def commit_status(self, sha: str) -> str | None:
        record = self._state.commits.get(sha)
        return record.status if record is not None else None

    def record_commit(self, info: CommitInfo, status: str, reason: str | None) -> None:
        self._state.commits[info.sha] = CommitRecord(
            info=info, status=CommitStatus(status), reason=reason, recorded_at=self._clock()
        )

    # -- pins
    def get_pins(self) -> list[PinRecord]:
        return list(self._state.pins.values())

    def set_pin(
        self,
        *,
        app: str,
        env: str,
        version: int,
        reason: str,
        actor: str,
        quarantined_commit: str | None = None,
    ) -> None:
        self._state.pins[(app, env)] = PinRecord(
            app=app,
            env=env,
            version=version,
            reason=reason,
            actor=actor,
            created_at=self._clock(),
            quarantined_commit=quarantined_commit,
        )

    def clear_pin(self, app: str, env: str) -> bool:
        return self._state.pins.pop((app, env), None) is not None

    # -- rollouts
    def rollout_states(
        self, app: str | None = None, env: str | None = None
    ) -> dict[PairKey, dict[str, JsonObject]]:
        return {
            pair: dict(states)
            for pair, states in self._state.rollout_state.items()
            if (app is None or pair[0] == app) and (env is None or pair[1] == env)
        }

    def rollout_heads(self) -> dict[PairKey, RolloutHead]:
        return {
            pair: (v.number, v.commit_sha, v.rollouts)
            for pair, v in self.latest_versions().items()
            if v.rollouts
        }

    def set_rollout_state(self, app: str, env: str, name: str, state: JsonObject) -> None:
        self._state.rollout_state.setdefault((app, env), {})[name] = copy.deepcopy(dict(state))

    # -- sync state
    def get_sync_state(self, name: str) -> JsonValue:
        return copy.deepcopy(self._state.sync.get(name))

    def set_sync_state(self, name: str, value: JsonValue) -> None:
        if value is None:
            self._state.sync.pop(name, None)
        else:
            self._state.sync[name] = copy.deepcopy(value)

    # -- audit and outbox
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
        self._state.audit.append(
            AuditRecord(
                id=len(self._state.audit) + 1,
                at=self._clock(),
                actor=actor,
                host=host,
                action=action,
                app=app,
                env=env,
                commit_sha=commit_sha,
                version=version,
                details=copy.deepcopy(dict(details)),
            )
        )

    def add_outbox(self, *, event_id: str, routing_key: str, payload: Notification) -> None:
        if event_id in self._state.event_ids:
            raise StoreError(f"duplicate event id {event_id}")
        self._state.event_ids.add(event_id)
        self._state.outbox.append(
            OutboxRecord(
                id=len(self._state.outbox) + 1,
                event_id=event_id,
                routing_key=routing_key,
                payload=copy.deepcopy(dict(payload)),
                created_at=self._clock(),
                published_at=None,
                attempts=0,
                last_error=None,
            )
        )


class FakeStore:
    """An in-memory version store: units of work commit whole or not at all."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock if clock is not None else FakeClock()
        self.state = _State()
        self.epochs: dict[str, int] = {}
        self.transactions = 0
        """Units of work committed: a test can prove that nothing was written."""
        self.moved_on = 0
        """How many of the next units of work opened with reads end in
        :class:`StoreMovedOn` (nothing written), as a PostgreSQL writer's does when it
        answered its reads from memory and another writer had written since."""

    @contextmanager
    def unit_of_work(
        self, fence: Fence | None = None, *, reads: ReadAhead | None = None
    ) -> Iterator[FakeUnitOfWork]:
        if fence is not None and self.epochs.get(fence[0]) != fence[1]:
            raise FencingError(f"epoch {fence[1]} of {fence[0]} is not current")
        saved = copy.deepcopy(self.state)
        try:
            uow = FakeUnitOfWork(self.state, self.clock)
            if reads is not None:
                uow.read_ahead(commits=reads.commits, cursors=reads.cursors, apps=reads.apps)
            yield uow
            if reads is not None and self.moved_on > 0:
                self.moved_on -= 1
                raise StoreMovedOn("the store moved on (fake): nothing was written")
        except BaseException:
            self.state = saved
            raise
        self.transactions += 1

    def _reader(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.state, self.clock)

    # -- StoreReads
    def latest_heads(self) -> dict[PairKey, VersionHead]:
        return self._reader().latest_heads()

    def get_version(self, app: str, env: str, number: int | None = None) -> VersionRecord | None:
        return self._reader().get_version(app, env, number)

    def get_commit(self, sha: str) -> CommitRecord | None:
        return self.state.commits.get(sha)

    def pins(self) -> list[PinRecord]:
        return list(self.state.pins.values())

    def sync_state(self, name: str) -> JsonValue:
        return self._reader().get_sync_state(name)

    def quarantine_of(self, app: str, env: str) -> dict[str, JsonValue] | None:
        """The quarantine of (app, env) as stored, or None."""
        return self._reader().get_quarantine(app, env)

    # -- what tests look at
    def versions(self, app: str, env: str) -> list[VersionRecord]:
        return list(self.state.versions.get((app, env), []))

    def key_changes(self, app: str, env: str, number: int) -> tuple[KeyChange, ...]:
        return self.state.changes.get((app, env, number), ())

    @property
    def audit(self) -> list[AuditRecord]:
        return list(self.state.audit)

    @property
    def outbox(self) -> list[OutboxRecord]:
        return list(self.state.outbox)

    def latest_versions(self) -> dict[PairKey, VersionRecord]:
        return self._reader().latest_versions()

    def outbox_backlog(self) -> int:
        return sum(1 for row in self.state.outbox if row.published_at is None)

    # -- OutboxPort
    def pending_outbox(self, limit: int) -> list[OutboxRecord]:
        return [row for row in self.state.outbox if row.published_at is None][:limit]

    def mark_outbox_published(self, ids: Sequence[int], at: datetime) -> None:
        wanted = set(ids)
        self.state.outbox = [
            replace(r, published_at=at) if r.id in wanted else r for r in self.state.outbox
        ]

    def mark_outbox_failed(self, id: int, error: str) -> None:
        self.state.outbox = [
            replace(r, attempts=r.attempts + 1, last_error=error) if r.id == id else r
            for r in self.state.outbox
        ]


class FakePublisher:
    """Keeps what it was given; ``fail_after`` messages, it raises ``BrokerError``."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.published: list[tuple[str, bytes, str]] = []
        self.fail_after = fail_after

    def publish(self, routing_key: str, body: bytes, message_id: str) -> None:
        if self.fail_after is not None and len(self.published) >= self.fail_after:
            raise BrokerError("broker unavailable (fake)")
        self.published.append((routing_key, body, message_id))


class FakeCache:
    """A snapshot cache in a dict, with the real one's never-backwards rule."""

    def __init__(self) -> None:
        self.entries: dict[CacheKey, CachedSnapshot] = {}

    def put(self, snapshot: CachedSnapshot) -> bool:
        key = (snapshot.app, snapshot.env)
        held = self.entries.get(key)
        if held is not None and (
            held.version > snapshot.version
            or (held.version == snapshot.version and held.checksum == snapshot.checksum)
        ):
            return False
        self.entries[key] = snapshot
        return True

    def get(self, app: str, env: str) -> CachedSnapshot | None:
        return self.entries.get((app, env))

    def versions(self) -> dict[CacheKey, int]:
        return {key: s.version for key, s in self.entries.items()}

    def repair(self, expected: Mapping[CacheKey, CachedSnapshot]) -> int:
        changed = 0
        for key in list(self.entries):
            if key not in expected:
                del self.entries[key]
                changed += 1
        for snapshot in expected.values():
            held = self.entries.get((snapshot.app, snapshot.env))
            if held is not None and held.version > snapshot.version:
                continue
            changed += int(self.put(snapshot))
        return changed

    def ping(self) -> None:
        return None


class FakeGit:
    """A git history in memory: commits and their trees, first parents only."""

    def __init__(self) -> None:
        self.commits: dict[str, CommitInfo] = {}
        self.trees: dict[str, dict[str, FileEntry]] = {}
        self.head_sha: str | None = None

    def commit(self, sha: str, files: Mapping[str, str], *, message: str = "change") -> CommitInfo:
        """Add a commit on top of the current head whose tree is ``files`` (path -> text)."""
        info = commit_info(sha, parents=(self.head_sha,) if self.head_sha else (), message=message)
        self.commits[sha] = info
        self.trees[sha] = {
            path: FileEntry(data=text.encode(), size=len(text.encode()))
            for path, text in files.items()
        }
        self.head_sha = sha
        return info

    def resolve(self, rev: str) -> str:
        sha = self.head_sha if rev == "HEAD" else rev
        if sha is None or sha not in self.commits:
            raise KeyError(rev)
        return sha

    def _line(self, sha: str) -> list[str]:
        out = [sha]
        while self.commits[out[-1]].parents:
            out.append(self.commits[out[-1]].parents[0])
        return out

    def is_ancestor(self, a: str, b: str) -> bool:
        return b in self.commits and a in self._line(b)

    def read_tree(self, rev: str, prefix: str = "") -> dict[str, FileEntry]:
        p = prefix.rstrip("/") + "/" if prefix else ""
        return {
            path[len(p) :]: e
            for path, e in self.trees[self.resolve(rev)].items()
            if path.startswith(p)
        }

    def commit_info(self, rev: str) -> CommitInfo:
        return self.commits[self.resolve(rev)]

    def commits_between(
        self, base: str | None, head: str, *, prefix: str | None = None
    ) -> list[CommitInfo]:
        line = self._line(head)
        if base is not None and base in line:
            line = line[: line.index(base)]
        return [self.commits[sha] for sha in reversed(line)]


# --- reconciler fakes ---
