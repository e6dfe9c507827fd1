"""The unit of work of :class:`~configctl.adapters.store.store.SqlStore`: one write
transaction holding the writer lock, what a writer reads inside it, and what it queues to
write as it ends (see the store module for the invariants it keeps)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from configctl.adapters.store import audit as audit_sql
from configctl.adapters.store import commits as commits_sql
from configctl.adapters.store import leases as leases_sql
from configctl.adapters.store import outbox as outbox_sql
from configctl.adapters.store import pg_batch
from configctl.adapters.store import pins as pins_sql
from configctl.adapters.store import rollouts as rollouts_sql
from configctl.adapters.store import versions as versions_sql
from configctl.adapters.store._sql import Clock
from configctl.adapters.store.memory import WriterMemory
from configctl.core.ports import ReadAhead
from configctl.core.records import (
    CommitInfo,
    KeyChange,
    NewVersion,
    PinRecord,
    VersionHead,
    VersionRecord,
)
from configctl.errors import StoreError

if TYPE_CHECKING:
    import psycopg

__all__ = ["UnitOfWork"]


class UnitOfWork:
    """One write transaction holding the writer lock; see :meth:`SqlStore.unit_of_work`.

    Commit rows, audit rows, outbox messages and sync cursors are queued and written when
    the unit of work ends (a duplicate outbox event then fails the whole unit of work);
    every other method writes at once, so a constraint violation surfaces at the call that
    caused it (as :class:`StoreError`). Reads see the queued rows.

    What the writer lock keeps anyone else from changing is read once and kept until a
    write of this unit of work changes it: commit statuses, cursors, heads, rollout states,
    pins and quarantines. :meth:`read_ahead` reads the lot at once (on PostgreSQL in one
    statement, ``pg_batch``).
    """

    def __init__(
        self,
        session: Session | Callable[[], Session],
        *,
        clock: Clock,
        errors: Callable[[], Any],
        driver: psycopg.Connection[tuple[Any, ...]] | None = None,
        memory: WriterMemory | None = None,
    ) -> None:
        # A session, or (PostgreSQL) how to make one on the unit of work's connection
        # when a read or write needs SQLAlchemy: most units of work never do.
        self._s = session if isinstance(session, Session) else None
        self._make_session = session if callable(session) else lambda: session
        # PostgreSQL: the driver connection pg_batch runs on, fetched once (asking
        # SQLAlchemy for it each time costs as much as a small statement).
        self._pg = driver
        self._clock = clock
        self._errors = errors
        self._open = True
        self._audit: list[dict[str, Any]] = []
        self._outbox: list[dict[str, Any]] = []
        self._commits: dict[str, dict[str, Any]] = {}
        # Sync-state values as this unit of work sees them (read once, written at the end)
        # and which of them to write.
        self._sync: dict[str, Any] = {}
        self._sync_dirty: set[str] = set()
        self._statuses: dict[str, str | None] = {}
        self._heads: dict[
            tuple[frozenset[str] | None, bool], dict[tuple[str, str], VersionHead]
        ] = {}
        self._all_rollout_states: dict[tuple[str, str], dict[str, dict[str, Any]]] | None = None
        self._pins: list[PinRecord] | None = None
        self._versions: dict[tuple[str, str, int], VersionRecord] = {}
        # Versions queued by add_versions (written at the end, or before a read of versions)
        # and the newest number of each pair as this unit of work knows it.
        self._pending: list[tuple[NewVersion, int, datetime]] = []
        self._numbers: dict[tuple[str, str], int] = {}
        self._numbered_apps: set[str] = set()
        self._all_numbers = False
        self._quarantines: dict[tuple[str, str], dict[str, Any]] | None = None
        # PostgreSQL: what the store remembers (``adapters.store.memory``). When it answered
        # the reads, BEGIN, the lock and the guard wait (``_deferred``) to go with the
        # writes, or before anything else this unit of work sends (``_begun``).
        self._memory = memory
        self._deferred: pg_batch.WriterLock | None = None
        self._fence: tuple[str, int] | None = None
        self._absent: list[str] = []
        self._flushed = False  # a writes' statement ran: the generation moved on (once)
        # The generation this transaction began at, when known (read, or checked by the
        # guard; its writes move it on by one), and what it wrote that a memory follows;
        # a write it does not follow (a pin, a quarantine, a rollout state) forgets it.
        self._generation: str | None = None
        self._written: list[tuple[NewVersion, int, datetime]] = []
        self._written_statuses: dict[str, str | None] = {}
        self._written_cursors: dict[str, Any] = {}
        self._untracked = False

    def _check_open(self) -> None:
        if not self._open:
            raise StoreError("this unit of work has ended; open a new one")

    def _session(self) -> Session:
        self._check_open()
        if self._s is None:
            self._begun()
            self._s = self._make_session()
        return self._s

    def _begun(self) -> None:
        """Send what a unit of work answered from memory left waiting (``BEGIN``, the lock
        and the guard) before anything else it sends; the guard raises
        :class:`~configctl.errors.StoreMovedOn` if the store moved on (nothing written)."""
        guard, self._deferred = self._guard(), None
        if guard is not None and self._pg is not None:
            with self._errors():
                pg_batch.run(self._pg, pg_batch.opening(guard))

    def _guard(self) -> pg_batch.Guard | None:
        """The guard of what this unit of work answered from memory, if not yet sent."""
        if self._deferred is None or self._generation is None:
            return None
        return pg_batch.Guard(self._deferred, self._generation, tuple(self._absent), self._fence)

    def _flush(self) -> None:
        """Write the queued rows as the unit of work ends: one statement on PostgreSQL,
        sent with the ``COMMIT`` when it is small (``pg_batch.COMMIT_WITH_AT_MOST``; the
        driver's commit then has nothing left to do)."""
        cursors = {n: self._sync[n] for n in sorted(self._sync_dirty)}
        commits = list(self._commits.values())
        if self._pg is None:
            self._write_pending()
        with self._errors():
            self._check_open()
            if self._pg is not None:
                if self._s is not None:
                    self._s.flush()  # anything a session queued goes before the COMMIT
                guard, self._deferred = self._guard(), None
                self._written.extend(self._pending)
                self._written_statuses.update({sha: row["status"] for sha, row in self._commits.items()})
                self._written_cursors.update(cursors)
                self._flushed |= bool(self._pending or commits or self._audit or self._outbox or cursors)
                pg_batch.flush(
                    self._pg,
                    versions=self._pending,
                    commits=commits,
                    audit=self._audit,
                    outbox=self._outbox,
                    cursors=cursors,
                    now=self._clock(),
                    commit=True,
                    guard=guard,
                )
            else:
                s = self._session()
                commits_sql.add_commit_rows(s, commits)
                audit_sql.add_audit_rows(s, self._audit)
                outbox_sql.add_outbox_rows(s, self._outbox)
                commits_sql.set_sync_states(s, cursors, clock=self._clock)
        self._pending.clear()
        self._commits.clear()
        self._audit.clear()
        self._outbox.clear()
        self._sync_dirty.clear()

    def _close(self) -> None:
        self._open = False

    def _begin(
        self,
        writer: pg_batch.WriterLock,
        fence: tuple[str, int] | None,
        reads: ReadAhead | None,
    ) -> None:
        """Open this unit of work: on PostgreSQL ``BEGIN``, the writer lock and ``reads``
        (if any) in one round trip, then the fence check, before anything else happens in
        it. SQLite holds the lock since ``BEGIN IMMEDIATE`` and has checked the fence."""
        if self._pg is None:
            if reads is not None:
                self.read_ahead(commits=reads.commits, cursors=reads.cursors, apps=reads.apps)
            return
        got: pg_batch.WriterReads | None = None
        answer = None if reads is None or self._memory is None else self._memory.answer(reads)
        if answer is not None and reads is not None:
            # Answered from memory: BEGIN, the lock and the guard go with the writes.
            self._generation, self._fence = answer.reads.generation, fence
            self._absent.extend(answer.absent)
            self._deferred = writer
            self._keep(answer.reads, reads.apps)
            return
        with self._errors():
            if reads is None:
                epoch = pg_batch.begin(self._pg, writer)
            else:
                got = pg_batch.read_ahead(
                    self._pg,
                    commits=reads.commits,
                    cursors=reads.cursors,
                    apps=reads.apps,
                    unchanged=reads.checksums,
                    begin=writer,
                )
                epoch = got.epoch
        if fence is not None:
            leases_sql.require_epoch(*fence, epoch)
        if got is not None and reads is not None:
            self._keep(got, reads.apps)
            self._generation = got.generation
            self._memory = WriterMemory.of(got, reads.apps, self._memory)

    def _wrote(self) -> bool:
        """Whether this unit of work moved the store's generation on (a writes' statement,
        whatever it wrote, or a write through a session)."""
        return self._flushed or self._untracked

    def _memory_after(self) -> WriterMemory | None:
        """What the store remembers once this unit of work has committed (see
        ``adapters.store.memory``): the memory it began with, moved on by its own writes
        when it knows the generation it began at and wrote nothing a memory does not
        follow; none if it wrote otherwise."""
        if self._untracked:
            return None
        if not self._flushed:
            return self._memory
        if self._generation is None or self._memory is None:
            return None
        return self._memory.after(
            pg_batch.next_generation(self._generation),
            versions=self._written,
            commits=self._written_statuses,
            cursors=self._written_cursors,
        )

    # -- reads inside the transaction ---------------------------------------------------

    def read_ahead(
        self, *, commits: Collection[str], cursors: Collection[str], apps: Collection[str] | None
    ) -> None:
        """Read at once what a writer reads first; the reads that follow answer from it:
        :meth:`commit_status` of ``commits``, :meth:`get_sync_state` of ``cursors``,
        :meth:`latest_heads` of ``apps`` ``with_rollbacks`` (of every pair when None), and
        every rollout state, pin and quarantine. One statement on PostgreSQL."""
        self._write_pending()
        if self._pg is not None:
            self._check_open()
            self._begun()
            with self._errors():
                got = pg_batch.read_ahead(self._pg, commits=commits, cursors=cursors, apps=apps)
            self._keep(got, apps)
            return
        for sha in commits:
            self.commit_status(sha)
        for name in cursors:
            self.get_sync_state(name)
        self.latest_heads(apps, with_rollbacks=apps is not None)
        self.rollout_states()
        self.get_pins()
        self.quarantines()

    def _keep(self, got: pg_batch.WriterReads, apps: Collection[str] | None) -> None:
        """Keep what :func:`pg_batch.read_ahead` read for the reads that follow."""
        for sha, status in got.statuses.items():
            self._statuses.setdefault(sha, status)
        for name, value in got.cursors.items():
            self._sync.setdefault(name, value)
        self._heads[(None if apps is None else frozenset(apps), apps is not None)] = got.heads
        self._note_heads(got.heads, apps)
        for (app, env), record in got.versions.items():
            self._versions[(app, env, record.number)] = record
        if self._all_rollout_states is None:
            self._all_rollout_states = got.rollout_states
        if self._pins is None:
            self._pins = got.pins
        if self._quarantines is None:
            self._quarantines = got.quarantines

    def latest_versions(self) -> dict[tuple[str, str], VersionRecord]:
        """The newest version of every (app, env), as this transaction sees it."""
        self._write_pending()
        with self._errors():
            found = versions_sql.latest_versions(self._session())
        self._note_heads(found, None)
        return found

    def latest_heads(
        self, apps: Collection[str] | None = None, *, with_rollbacks: bool = False
    ) -> dict[tuple[str, str], VersionHead]:
        """The newest version of every (app, env) without its snapshot (cheap at any size);
        with ``apps`` only theirs (and, ``with_rollbacks``, any pair a rollback holds)."""
        key = (None if apps is None else frozenset(apps), with_rollbacks and apps is not None)
        if key not in self._heads:
            self._write_pending()
            with self._errors():
                self._heads[key] = versions_sql.latest_heads(
                    self._session(), apps, with_rollbacks=with_rollbacks
                )
            self._note_heads(self._heads[key], apps)
        return dict(self._heads[key])

    def get_version(self, app: str, env: str, number: int | None = None) -> VersionRecord | None:
        """Version ``number`` of (app, env), or the newest when ``number`` is None."""
        self._write_pending()
        with self._errors():
            return versions_sql.get_version(self._session(), app, env, number)

    def get_versions(
        self, wanted: Iterable[tuple[str, str, int]]
    ) -> dict[tuple[str, str], VersionRecord]:
        """Version ``number`` of each ``(app, env, number)``, keyed by (app, env), in one query
        (none when :meth:`read_ahead` read them all)."""
        wanted = list(wanted)
        if all(w in self._versions for w in wanted):
            return {(app, env): self._versions[(app, env, n)] for app, env, n in wanted}
        self._write_pending()
        with self._errors():
            return versions_sql.get_versions(self._session(), wanted)

    def commit_status(self, sha: str) -> str | None:
        """``applied``/``rejected``/``superseded``/``quarantined``, or None if never recorded."""
        queued = self._commits.get(sha)
        if queued is not None:
            return str(queued["status"])
        if sha not in self._statuses and self._deferred is not None:
            # Answered from memory, not yet begun: taken as never recorded, which the
            # guard checks as the transaction begins.
            self._absent.append(sha)
            self._statuses[sha] = None
        if sha not in self._statuses:
            with self._errors():
                self._statuses[sha] = commits_sql.commit_status(self._session(), sha)
        return self._statuses[sha]

    def get_pins(self) -> list[PinRecord]:
        if self._pins is None:
            with self._errors():
                self._pins = pins_sql.pins(self._session())
        return list(self._pins)

    def get_sync_state(self, name: str) -> Any:
        """The JSON value stored under ``name``, or None (as set in this unit of work)."""
        self._check_open()
        if name not in self._sync:
            with self._errors():
                self._sync[name] = commits_sql.sync_state(self._session(), name)
        return self._sync[name]

    def get_quarantine(self, app: str, env: str) -> dict[str, Any] | None:
        """The quarantine of (app, env): ``{"commit", "checksum", "version"}``, or None."""
        if self._quarantines is not None:
            found = self._quarantines.get((app, env))
            return dict(found) if found is not None else None
        with self._errors():
            return pins_sql.get_quarantine(self._session(), app, env)

    def quarantines(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every quarantine, by (app, env), in one query."""
        if self._quarantines is None:
            with self._errors():
                self._quarantines = pins_sql.quarantines(self._session())
        return {pair: dict(q) for pair, q in self._quarantines.items()}

    def rollout_states(
        self, app: str | None = None, env: str | None = None
    ) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
        """Runtime state of rollouts: ``{(app, env): {name: state}}``, optionally one pair."""
        with self._errors():
            if app is not None or env is not None:
                return rollouts_sql.rollout_states(self._session(), app, env)
            if self._all_rollout_states is None:  # read once, until this unit of work sets one
                self._all_rollout_states = rollouts_sql.rollout_states(self._session(), None, None)
            return copy.deepcopy(self._all_rollout_states)

    def rollout_heads(
        self,
    ) -> dict[tuple[str, str], tuple[int, str | None, tuple[dict[str, Any], ...]]]:
        """(number, commit, rollouts) of every pair whose version in service has rollouts."""
        self._write_pending()
        with self._errors():
            return rollouts_sql.rollout_heads(self._session())

    # -- writes -------------------------------------------------------------------------

    def record_commit(self, info: CommitInfo, status: str, reason: str | None) -> None:
        """Insert or update the commit row (a rejected commit may be recorded again later);
        written, with the others, when the unit of work ends."""
        self._check_open()
        self._commits[info.sha] = commits_sql.commit_row(
            info, status, reason, recorded_at=self._clock()
        )

    def add_version(
        self,
        *,
        app: str,
        env: str,
        values: Mapping[str, Any],
        checksum: str,
        commit_sha: str | None,
        reason: str,
        actor: str,
        changes: Sequence[KeyChange],
        rolled_back_to: int | None = None,
        rollouts: Sequence[Mapping[str, Any]] = (),
    ) -> int:
        """Write the next version of (app, env) with its key changes; return its number.

        The number is ``max + 1`` read inside this locked transaction: dense, from 1.
        """
        new = NewVersion(
            app=app,
            env=env,
            values=values,
            checksum=checksum,
            commit_sha=commit_sha,
            reason=reason,
            actor=actor,
            changes=changes,
            rolled_back_to=rolled_back_to,
            rollouts=rollouts,
        )
        return self.add_versions([new])[0]

    def add_versions(self, versions: Sequence[NewVersion]) -> list[int]:
        """Number ``versions`` (each the next of its pair: ``max + 1`` under the writer lock,
        so dense from 1) and queue them with their key changes; return their numbers, in
        order. They are written with the other queued rows, or before any read of versions.

        The numbers come from the heads this unit of work has read; a pair it has not read
        costs one query for all such pairs.
        """
        versions_sql.check_versions(versions)
        self._check_open()
        unknown = {(v.app, v.env) for v in versions} - self._numbers.keys()
        unknown = {pair for pair in unknown if not self._known(pair[0])}
        if unknown:
            with self._errors():
                found = versions_sql.current_numbers(self._session(), unknown)
            self._numbers.update({pair: found.get(pair, 0) for pair in unknown})
        now = self._clock()
        numbers: list[int] = []
        for v in versions:
            number = self._numbers.get((v.app, v.env), 0) + 1
            self._numbers[(v.app, v.env)] = number
            numbers.append(number)
            self._pending.append((v, number, now))
        if versions:
            self._heads.clear()
        return numbers

    def _known(self, app: str) -> bool:
        """Whether every head of ``app`` is in ``_numbers`` (a pair not there has none)."""
        return self._all_numbers or app in self._numbered_apps

    def _note_heads(
        self,
        heads: Mapping[tuple[str, str], VersionHead | VersionRecord],
        apps: Collection[str] | None,
    ) -> None:
        """Remember the newest number of each pair read (and that ``apps``, or every app
        when None, have no other pair), so versions are numbered without another query."""
        for pair, head in heads.items():
            self._numbers[pair] = head.number
        if apps is None:
            self._all_numbers = True
        else:
            self._numbered_apps.update(apps)

    def _write_pending(self) -> None:
        """Write the queued versions now (before a read that may see them)."""
        if not self._pending:
            return
        self._begun()
        with self._errors():
            self._check_open()
            if self._pg is not None:
                self._written.extend(self._pending)
                self._flushed = True
                pg_batch.flush(self._pg, versions=self._pending, now=self._clock())
            else:
                versions_sql.write_versions(self._session(), self._pending)
        self._pending.clear()

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
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one audit row (``details`` is JSON; no secret values in it); written
        with the others when the unit of work ends."""
        self._check_open()
        self._audit.append(
            audit_sql.audit_row(
                at=self._clock(),
                action=action,
                actor=actor,
                host=host,
                app=app,
                env=env,
                commit_sha=commit_sha,
                version=version,
                details=details,
            )
        )

    def add_outbox(self, *, event_id: str, routing_key: str, payload: Mapping[str, Any]) -> None:
        """Queue a notification; the relay publishes it after this transaction commits."""
        self._check_open()
        self._outbox.append(
            outbox_sql.outbox_row(
                event_id=event_id,
                routing_key=routing_key,
                payload=payload,
                created_at=self._clock(),
            )
        )

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
        """Hold (app, env) at ``version`` until :meth:`clear_pin` (replaces an existing pin)."""
        self._pins = None
        self._untracked = True  # a write a memory does not follow: it is forgotten
        with self._errors():
            pins_sql.set_pin(
                self._session(),
                app=app,
                env=env,
                version=version,
                reason=reason,
                actor=actor,
                quarantined_commit=quarantined_commit,
                clock=self._clock,
            )

    def clear_pin(self, app: str, env: str) -> bool:
        """Remove the pin of (app, env); False if there was none."""
        self._pins = None
        self._untracked = True  # a write a memory does not follow: it is forgotten
        with self._errors():
            return pins_sql.clear_pin(self._session(), app, env)

    def quarantine(
        self, app: str, env: str, commit: str | None, checksum: str, version: int
    ) -> None:
        """Keep the values of ``checksum`` (version ``version``, made by ``commit``) out of
        service for (app, env) until a newer commit changes the pair (replaces one)."""
        self._quarantines = None
        self._untracked = True  # a write a memory does not follow: it is forgotten
        with self._errors():
            pins_sql.quarantine(
                self._session(),
                app=app,
                env=env,
                commit=commit,
                checksum=checksum,
                version=version,
                clock=self._clock,
            )

    def lift_quarantine(self, app: str, env: str) -> bool:
        """End the quarantine of (app, env); False if there was none."""
        self._quarantines = None
        self._untracked = True  # a write a memory does not follow: it is forgotten
        with self._errors():
            return pins_sql.lift_quarantine(self._session(), app, env)

    def set_rollout_state(self, app: str, env: str, name: str, state: Mapping[str, Any]) -> None:
        """Replace the runtime state of rollout ``name`` of (app, env)."""
        self._all_rollout_states = None
        self._untracked = True  # a write a memory does not follow: it is forgotten
        with self._errors():
            rollouts_sql.set_rollout_state(
                self._session(), app, env, name, state, clock=self._clock
            )

    def set_sync_state(self, name: str, value: Any) -> None:
        """Store a JSON value under ``name``; ``None`` removes it. Written, with the other
        cursors, in one statement when the unit of work ends."""
        self._check_open()
        self._sync[name] = value
        self._sync_dirty.add(name)
