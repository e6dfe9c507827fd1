"""What a PostgreSQL writer remembers of the store between units of work (pure: no I/O).

A writer reads, under the writer lock, what it may change: heads, commit statuses,
cursors, rollout states, pins and quarantines (``pg_batch.read_ahead``). On PostgreSQL that
read is a round trip of its own. Every write to those tables moves the store's generation
on (migration 0005), so a writer that remembers what it read and what it wrote since, at
which generation, can answer the next read itself: its unit of work is then one round trip
(``BEGIN``, the writer lock, a guard that the generation is still the remembered one, the
writes, ``COMMIT``). When another writer wrote in between, the guard fails, nothing is
written, the memory is forgotten and the unit of work runs again the ordinary way
(:class:`~configctl.errors.StoreMovedOn`).

A memory holds only facts true at its generation:

- **heads**: every pair a rollback or release holds (any read gives them all) and every
  pair of the apps in ``apps`` (all apps when ``all_apps``); a read for another app is a
  miss;
- **snapshots**: the head version of some pairs, values included (those read or written);
  a read that needs another is a miss;
- **statuses**: of some commits; a commit it does not know is taken as never recorded, and
  the guard checks that it is not (``absent``);
- **cursors**: of some names; a read of another is a miss;
- rollout states, pins and quarantines: all of them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from configctl.adapters.store.pg_batch import WriterReads
from configctl.core.ports import ReadAhead
from configctl.core.records import NewVersion, PinRecord, VersionHead, VersionReason, VersionRecord

__all__ = ["Answer", "WriterMemory"]

Pair = tuple[str, str]

STATUSES_KEPT = 4096
"""At most this many commit statuses are remembered (the oldest go first): one not
remembered is checked by the guard instead, so forgetting costs nothing but that check."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A read answered from memory: what the read would have given, and the commits taken
    as never recorded (the guard checks them)."""

    reads: WriterReads
    absent: tuple[str, ...]


@dataclass(slots=True)
class WriterMemory:
    generation: str
    all_apps: bool
    apps: set[str]
    heads: dict[Pair, VersionHead]
    snapshots: dict[Pair, VersionRecord]
    statuses: dict[str, str | None]
    cursors: dict[str, Any]
    rollout_states: dict[Pair, dict[str, dict[str, Any]]]
    pins: list[PinRecord]
    quarantines: dict[Pair, dict[str, Any]]
    by_app: dict[str, set[Pair]] = field(default_factory=dict)
    """The pairs in ``heads`` of each app (a read of a few apps costs what they have)."""
    held: set[Pair] = field(default_factory=set)
    """The pairs in ``heads`` a rollback or release holds (reason other than commit)."""

    def __post_init__(self) -> None:
        for pair, head in self.heads.items():
            self._index(pair, head)

    def _index(self, pair: Pair, head: VersionHead) -> None:
        self.by_app.setdefault(pair[0], set()).add(pair)
        if head.reason != VersionReason.COMMIT:
            self.held.add(pair)
        else:
            self.held.discard(pair)

    def _set_head(self, pair: Pair, head: VersionHead) -> None:
        self.heads[pair] = head
        self._index(pair, head)

    # -- made from a read -------------------------------------------------------------

    @classmethod
    def of(
        cls,
        got: WriterReads,
        apps: Collection[str] | None,
        previous: WriterMemory | None = None,
    ) -> WriterMemory | None:
        """The memory after ``got`` (read under the writer lock for ``apps``, every app when
        None): ``previous`` with it added when both are of the same generation, else a new
        one; None when the store keeps no generation (not migrated to 0005)."""
        if got.generation is None:
            return None
        snapshots = dict(got.versions)
        fresh = cls(
            generation=got.generation,
            all_apps=apps is None,
            apps=set(apps or ()),
            heads=dict(got.heads),
            snapshots=snapshots,
            statuses=dict(got.statuses),
            cursors=dict(got.cursors),
            rollout_states=got.rollout_states,
            pins=list(got.pins),
            quarantines=dict(got.quarantines),
        )
        if previous is None or previous.generation != got.generation:
            return fresh
        previous.all_apps |= fresh.all_apps
        previous.apps |= fresh.apps
        for pair, head in fresh.heads.items():
            previous._set_head(pair, head)
        for pair, record in snapshots.items():
            if previous.heads[pair].number == record.number:
                previous.snapshots[pair] = record
        previous.statuses.update(fresh.statuses)
        previous.cursors.update(fresh.cursors)
        return previous

    # -- answering a read -------------------------------------------------------------

    def answer(self, reads: ReadAhead) -> Answer | None:
        """What ``pg_batch.read_ahead`` would read for ``reads`` at this generation, or None
        when this memory does not know enough (a miss: read the ordinary way). The fence's
        epoch is not read: the guard checks it."""
        apps = None if reads.apps is None else set(reads.apps)
        if apps is None and not self.all_apps:
            return None
        if apps is not None and not self.all_apps and not apps <= self.apps:
            return None
        if any(name not in self.cursors for name in reads.cursors):
            return None
        if apps is None:
            heads = dict(self.heads)
            versions: dict[Pair, VersionRecord] = {}
        else:
            wanted = set(self.held)
            for app in apps:
                wanted |= self.by_app.get(app, set())
            heads = {pair: self.heads[pair] for pair in wanted}
            versions = {}
            for pair, head in heads.items():
                if pair[0] not in apps or reads.checksums.get(pair) == head.checksum:
                    continue
                snapshot = self.snapshots.get(pair)
                if snapshot is None or snapshot.number != head.number:
                    return None
                versions[pair] = snapshot
        statuses = {sha: self.statuses.get(sha) for sha in reads.commits}
        absent = tuple(sha for sha in reads.commits if sha not in self.statuses)
        return Answer(
            reads=WriterReads(
                statuses=statuses,
                cursors={name: self.cursors[name] for name in reads.cursors},
                heads=heads,
                versions=versions,
                rollout_states=self.rollout_states,
                pins=list(self.pins),
                quarantines=dict(self.quarantines),
                generation=self.generation,
            ),
            absent=absent,
        )

    # -- after the writer's own writes --------------------------------------------------

    def after(
        self,
        generation: str,
        *,
        versions: Iterable[tuple[NewVersion, int, datetime]],
        commits: Mapping[str, str | None],
        cursors: Mapping[str, Any],
    ) -> WriterMemory:
        """This memory moved on by the writer's own writes (nothing else written in their
        transaction): ``versions`` (each with its number and time), the commit statuses
        and cursors written; ``generation`` as the transaction left it."""
        for v, number, made_at in versions:
            pair = (v.app, v.env)
            self._set_head(
                pair,
                VersionHead(
                    app=v.app, env=v.env, number=number, checksum=v.checksum, commit_sha=v.commit_sha, reason=v.reason
                ),
            )
            self.snapshots[pair] = VersionRecord(
                app=v.app,
                env=v.env,
                number=number,
                values=v.values,
                checksum=v.checksum,
                commit_sha=v.commit_sha,
                reason=v.reason,
                actor=v.actor,
                created_at=made_at,
                rolled_back_to=v.rolled_back_to,
                rollouts=tuple(dict(r) for r in v.rollouts),
            )
        self.statuses.update(commits)
        if len(self.statuses) > STATUSES_KEPT:
            for sha in list(self.statuses)[: len(self.statuses) - STATUSES_KEPT // 2]:
                del self.statuses[sha]
        self.cursors.update(cursors)
        self.generation = generation
        return self
