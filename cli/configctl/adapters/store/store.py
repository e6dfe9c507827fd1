"""The version store over SQLAlchemy 2: PostgreSQL (psycopg 3) in production, SQLite embedded.

:class:`SqlStore` is the one implementation for both backends. Its invariants:

- **One writer at a time.** A unit of work is one transaction that first takes the writer
  lock: ``pg_advisory_xact_lock(WRITER_LOCK_KEY)`` on PostgreSQL, ``BEGIN IMMEDIATE`` on
  SQLite. Version numbers (``max + 1``) are computed after the lock, so two appliers in two
  processes never write a duplicate or skip a number (the ``(app, env, number)`` unique
  constraint is the backstop). The lock ends with the transaction, whatever ends it.
- **All or nothing.** Versions, key changes, audit rows and outbox messages of one unit of
  work commit together; an exception rolls everything back, and a process killed mid-way
  leaves nothing, because nothing was committed.
- **Fencing.** ``unit_of_work(fence=(name, epoch))`` re-reads ``leader_lease.epoch`` inside
  the transaction (``FOR SHARE`` on PostgreSQL, so a new leader's epoch bump waits for this
  transaction) and raises :class:`FencingError` before anything is written if it changed.
- **Edges wrap.** Every SQLAlchemy, psycopg or sqlite3 exception leaves as
  :class:`StoreError` with the original chained; messages name the host and database or the
  file, never the password.
- **Migrated or refused.** Only :meth:`SqlStore.upgrade`, :meth:`SqlStore.ensure_schema` and
  :meth:`SqlStore.current_revision` work on a database without the expected schema; every
  other method says "the store is not migrated: run `configctl db upgrade`".
- Times are timezone-aware UTC in and out (see ``models.UtcDateTime``); ``clock`` is an
  input so tests can fix it.

Reads on :class:`SqlStore` run in their own short transactions; :class:`UnitOfWork` offers
the reads a writer needs inside its transaction. The SQL lives by aggregate, one module
each: ``versions`` (versions and history), ``commits`` (commits and the sync cursor),
``outbox``, ``audit``, ``pins`` (pins and quarantines), ``rollouts`` (rollout state) and
``leases``; this module only wires them to sessions, transactions and errors.

**Writes cost what the change costs.** A unit of work issues a number of statements that
does not grow with the number of pairs it writes: :meth:`UnitOfWork.add_versions` writes
any number of versions and key changes in a handful; audit rows, outbox messages and sync
cursors are queued and written in one statement each when the unit of work ends (no
unit-of-work read looks at the first two; cursor reads see the queued values); commits,
pins and quarantines are upserts. Reads a writer repeats (a cursor, every rollout state)
are read once per unit of work.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from configctl.adapters.store import audit as audit_sql
from configctl.adapters.store import commits as commits_sql
from configctl.adapters.store import leases as leases_sql
from configctl.adapters.store import models as m
from configctl.adapters.store import outbox as outbox_sql
from configctl.adapters.store import pg_batch
from configctl.adapters.store import pins as pins_sql
from configctl.adapters.store import rollouts as rollouts_sql
from configctl.adapters.store import versions as versions_sql
from configctl.adapters.store._sql import Clock, utc_now
from configctl.adapters.store.engine import (
    SQLITE_BEGIN,
    WRITER_LOCK_TIMEOUT_S,
    default_sqlite_url,
    describe_url,
    make_engine,
    normalize_url,
    parse_url,
)
from configctl.core.ports import ReadAhead
from configctl.core.records import (
    AuditRecord,
    CommitInfo,
    CommitRecord,
    HistoryEntry,
    KeyChange,
    NewVersion,
    OutboxRecord,
    PinRecord,
    VersionEntry,
    VersionHead,
    VersionRecord,
)
from configctl.errors import StoreError, UsageError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "WRITER_LOCK_KEY",
    "SqlStore",
    "UnitOfWork",
    "default_sqlite_url",
    "make_engine",
    "normalize_url",
]

#: The PostgreSQL advisory lock key of the store's writer lock (a signed 64-bit constant
#: derived from a fixed string, so every configctl version agrees on it).
WRITER_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"configctl.store.writer").digest()[:8], "big", signed=True
)

NOT_MIGRATED = "the store is not migrated: run `configctl db upgrade`"


# --------------------------------------------------------------------------- unit of work


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

    def _check_open(self) -> None:
        if not self._open:
            raise StoreError("this unit of work has ended; open a new one")

    def _session(self) -> Session:
        self._check_open()
        if self._s is None:
            self._s = self._make_session()
        return self._s

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
                pg_batch.flush(
                    self._pg,
                    versions=self._pending,
                    commits=commits,
                    audit=self._audit,
                    outbox=self._outbox,
                    cursors=cursors,
                    now=self._clock(),
                    commit=True,
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
        with self._errors():
            self._check_open()
            if self._pg is not None:
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
        with self._errors():
            return pins_sql.clear_pin(self._session(), app, env)

    def quarantine(
        self, app: str, env: str, commit: str | None, checksum: str, version: int
    ) -> None:
        """Keep the values of ``checksum`` (version ``version``, made by ``commit``) out of
        service for (app, env) until a newer commit changes the pair (replaces one)."""
        self._quarantines = None
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
        with self._errors():
            return pins_sql.lift_quarantine(self._session(), app, env)

    def set_rollout_state(self, app: str, env: str, name: str, state: Mapping[str, Any]) -> None:
        """Replace the runtime state of rollout ``name`` of (app, env)."""
        self._all_rollout_states = None
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


# --------------------------------------------------------------------------- the store


class SqlStore:
    """The version store for ``url`` (``postgresql://...`` or ``sqlite:///...``).

    Cheap to construct: nothing connects until the first call. Call :meth:`close` when done.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        lock_timeout: float = WRITER_LOCK_TIMEOUT_S,
    ) -> None:
        self._parsed = parse_url(url)
        self.url = self._parsed.render_as_string(hide_password=False)
        self.where = describe_url(self._parsed)
        self._clock: Clock = clock or utc_now
        self.lock_timeout = lock_timeout
        self._engine: Engine | None = None
        self._schema_checked = False

    def __repr__(self) -> str:
        return f"SqlStore({self.where})"

    @classmethod
    def empty(cls) -> SqlStore:
        """A store with nothing in it, in memory: what a read sees before the first apply.

        Reading a repository's embedded store before it exists must not create it (no stray
        ``.configctl/`` folder); this answers every read as an empty store would. The tables
        come from the models, not the migrations: same schema, a fraction of the start-up.
        """
        store = cls("sqlite://")
        with store._errors(), store.engine.begin() as conn:
            m.Base.metadata.create_all(conn)
            conn.execute(
                text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
            )
            conn.execute(
                text("INSERT INTO alembic_version (version_num) VALUES (:r)"),
                {"r": m.SCHEMA_REVISION},
            )
        store._schema_checked = True
        return store

    @property
    def backend(self) -> str:
        """``postgresql`` or ``sqlite``."""
        return str(self._parsed.get_backend_name())

    @property
    def is_postgres(self) -> bool:
        return self.backend == "postgresql"

    @property
    def engine(self) -> Engine:
        """The engine, made on first use (never at import time)."""
        if self._engine is None:
            self._engine = make_engine(self.url, lock_timeout=self.lock_timeout)
        return self._engine

    def close(self) -> None:
        """Close every pooled connection; the store can be used again afterwards."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- errors -------------------------------------------------------------------------

    def _raise(self, exc: BaseException) -> NoReturn:
        orig = getattr(exc, "orig", None) or exc
        detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        if self._parsed.password:
            detail = detail.replace(str(self._parsed.password), "***")
        lowered = detail.lower()
        if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
            raise StoreError(f"{NOT_MIGRATED} ({self.where})") from exc
        if not self.is_postgres and (
            "unable to open database file" in lowered or "readonly database" in lowered
        ):
            # a local path that cannot be opened or written: the user's to fix, not an outage
            raise UsageError(
                f"cannot use the store at {self.where}: {detail}",
                hint="check that the folder exists and that you may read and write it",
            ) from exc
        if "lock timeout" in lowered or "database is locked" in lowered:
            raise StoreError(
                f"the store at {self.where} is busy: another writer held its write lock for "
                f"more than {self.lock_timeout:g} s",
                hint="retry later; look for a stuck `configctl apply` or reconciler",
            ) from exc
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) and self.is_postgres:
            raise StoreError(
                f"cannot use the store at {self.where}: {detail}",
                hint="check that PostgreSQL is running and reachable, and the URL",
            ) from exc
        if isinstance(exc, sa_exc.IntegrityError):
            raise StoreError(f"the store at {self.where} refused a write: {detail}") from exc
        raise StoreError(f"store error at {self.where}: {detail}") from exc

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sa_exc.SQLAlchemyError, sqlite3.Error) as exc:
            self._raise(exc)

    # -- schema -------------------------------------------------------------------------

    def _alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        return cfg

    def _lock(
        self, s: Session | Connection, fence: tuple[str, int] | None = None, *, begin: bool = False
    ) -> None:
        """Take the writer lock for the rest of the transaction (PostgreSQL; SQLite already
        holds it since ``BEGIN IMMEDIATE``), waiting at most ``lock_timeout`` seconds; with
        ``fence`` check the leader epoch (in the same round trip on PostgreSQL); ``begin``:
        send the ``BEGIN`` too (a session in autocommit mode)."""
        if self.is_postgres:
            # One round trip: the lock, its timeout and the fence (``pg_batch.lock``), with
            # the BEGIN when the session is in autocommit mode (``pg_batch.begin``).
            writer = self._writer_lock(fence)
            epoch = pg_batch.begin(s, writer) if begin else pg_batch.lock(s, writer)
            if fence is not None:
                leases_sql.require_epoch(*fence, epoch)
        elif fence is not None:
            leases_sql.check_fence(s, *fence, postgres=False)

    def _writer_lock(self, fence: tuple[str, int] | None) -> pg_batch.WriterLock:
        return pg_batch.WriterLock(
            WRITER_LOCK_KEY, int(self.lock_timeout * 1000), fence[0] if fence else None
        )

    def upgrade(self) -> None:
        """Migrate the schema to the newest revision (idempotent; concurrent calls queue)."""
        from alembic import command

        with self._errors(), self.engine.connect() as conn:
            conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            with conn.begin():
                self._lock(conn)
                cfg = self._alembic_config()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        self._schema_checked = False

    def current_revision(self) -> str | None:
        """The schema revision of the database, or None if it was never migrated."""
        with self._errors(), self.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            return str(rev) if rev is not None else None

    def _has_tables(self) -> bool:
        with self._errors(), self.engine.connect() as conn:
            return bool(inspect(conn).get_table_names())

    def ensure_schema(self, *, upgrade_existing: bool = False) -> None:
        """Migrate an empty database; accept one at the expected revision.

        A database at another revision is an error unless ``upgrade_existing`` (migrating a
        shared server is an operator's decision: `configctl db upgrade`).

        A SQLite file that does not exist yet is created under a lock file beside it, so
        two processes creating one store (two first applies) take turns: racing the switch
        to WAL and the first migration, SQLite answers "database is locked" at once
        instead of waiting.
        """
        path = self._new_sqlite_file()
        if path is None:
            self._ensure_schema(upgrade_existing=upgrade_existing)
            return
        from filelock import FileLock, Timeout

        try:
            with FileLock(str(path) + ".lock", timeout=self.lock_timeout):
                self._ensure_schema(upgrade_existing=upgrade_existing)
        except Timeout as exc:
            raise StoreError(
                f"the store at {self.where} is busy: another process has been creating it "
                f"for more than {self.lock_timeout:g} s",
                hint="retry later; look for a stuck `configctl apply` or reconciler",
            ) from exc

    def _new_sqlite_file(self) -> Path | None:
        """The SQLite file of this store when it does not exist yet (or is empty)."""
        if self.is_postgres:
            return None
        database = self._parsed.database
        if not database or database == ":memory:":
            return None
        path = Path(database)
        return None if path.exists() and path.stat().st_size > 0 else path

    def _ensure_schema(self, *, upgrade_existing: bool) -> None:
        revision = self.current_revision()
        if revision == m.SCHEMA_REVISION:
            self._schema_checked = True
            return
        if upgrade_existing or (revision is None and not self._has_tables()):
            self.upgrade()
            self._require_schema()
            return
        self._require_schema()

    def _require_schema(self) -> None:
        if self._schema_checked:
            return
        revision = self.current_revision()
        if revision is None:
            raise StoreError(f"{NOT_MIGRATED} ({self.where})")
        if revision != m.SCHEMA_REVISION:
            raise StoreError(
                f"the store at {self.where} has schema revision {revision}, this configctl "
                f"needs {m.SCHEMA_REVISION}",
                hint="run `configctl db upgrade`, or use the configctl version that migrated it",
            )
        self._schema_checked = True

    # -- transactions -------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(
        self,
        *,
        write: bool,
        lock: bool,
        fence: tuple[str, int] | None = None,
    ) -> Iterator[Session]:
        """A session in one transaction: committed on normal exit, rolled back otherwise.

        A read ends with a commit too: it has nothing to undo, and on PostgreSQL a
        ``ROLLBACK`` makes psycopg forget its prepared statements (a statement run five
        times on a connection is prepared: parsed and planned once, not at every call).

        On PostgreSQL a read runs in autocommit mode: at READ COMMITTED each statement
        sees its own snapshot inside a transaction too, so ``BEGIN`` and ``COMMIT`` would
        only add two round trips. On SQLite a read is one transaction, one snapshot.

        On PostgreSQL a transaction that takes the writer lock runs in autocommit mode too,
        with a ``BEGIN`` of its own sent with the lock in one round trip (the driver would
        send it alone); the driver's commit and rollback still end it. A unit of work does
        the same without a session (:meth:`_pg_transaction`).
        """
        self._require_schema()
        with self._errors():
            session = Session(self.engine, expire_on_commit=False, autoflush=False)
        options: dict[str, str] = {SQLITE_BEGIN: "IMMEDIATE" if write else "DEFERRED"}
        if (lock or not write) and self.is_postgres:
            options["isolation_level"] = "AUTOCOMMIT"
        try:
            with self._errors():
                session.connection(execution_options=options)
                if lock:
                    self._lock(session, fence, begin=self.is_postgres)
            yield session
            with self._errors():
                session.commit()
        except BaseException:
            with contextlib.suppress(sa_exc.SQLAlchemyError, sqlite3.Error):
                session.rollback()
            raise
        finally:
            with contextlib.suppress(sa_exc.SQLAlchemyError, sqlite3.Error):
                session.close()

    @contextlib.contextmanager
    def unit_of_work(
        self, fence: tuple[str, int] | None = None, *, reads: ReadAhead | None = None
    ) -> Iterator[UnitOfWork]:
        """One write transaction holding the writer lock: commit on exit, roll back on error.

        With ``fence=(name, epoch)`` the leader epoch ``name`` must still be ``epoch``
        inside the transaction, else :class:`FencingError` is raised before the body runs
        and nothing is written. With ``reads`` the unit of work reads them ahead
        (:meth:`UnitOfWork.read_ahead`) as it opens: on PostgreSQL ``BEGIN``, the lock and
        the reads are one round trip.
        """
        with contextlib.ExitStack() as stack:
            if self.is_postgres:
                conn = stack.enter_context(self._pg_transaction())
                uow = UnitOfWork(
                    lambda: stack.enter_context(self._joined_session(conn)),
                    clock=self._clock,
                    errors=self._errors,
                    driver=pg_batch.driver(conn),
                )
            else:
                session = stack.enter_context(self._transaction(write=True, lock=True, fence=fence))
                uow = UnitOfWork(session, clock=self._clock, errors=self._errors)
            try:
                uow._begin(self._writer_lock(fence), fence, reads)
                yield uow
                uow._flush()
            finally:
                uow._close()

    @contextlib.contextmanager
    def _pg_transaction(self) -> Iterator[Connection]:
        """PostgreSQL: a connection in autocommit mode, in a transaction whose ``BEGIN`` the
        caller sends with its first statements (one round trip, where the driver would
        send it alone); committed on normal exit (the driver sends the ``COMMIT`` unless
        the caller sent it with its last writes), rolled back otherwise.

        A plain connection, not a session: a unit of work runs on the driver connection
        (``pg_batch``) and makes a session only when a read or write needs one
        (:meth:`_joined_session`); a session's own bookkeeping cost a tenth of a one-app
        apply."""
        self._require_schema()
        with self._errors():
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            with self._errors():
                transaction = conn.begin()
            yield conn
            with self._errors():
                transaction.commit()
        except BaseException:
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                conn.rollback()
            raise
        finally:
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                conn.close()

    @contextlib.contextmanager
    def _joined_session(self, conn: Connection) -> Iterator[Session]:
        """A session on ``conn``, in its transaction (committing or rolling back stays the
        transaction's); the unit of work writes what it queued before its own writes."""
        with self._errors():
            session = Session(bind=conn, expire_on_commit=False, autoflush=False)
        try:
            yield session
        finally:
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                session.close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with self._transaction(write=False, lock=False) as session, self._errors():
            yield session

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        """A short write transaction without the writer lock (outbox marks, lease renewal)."""
        with self._transaction(write=True, lock=False) as session, self._errors():
            yield session

    # -- reads --------------------------------------------------------------------------

    def latest_versions(self) -> dict[tuple[str, str], VersionRecord]:
        """The newest version of every (app, env)."""
        with self._read() as s:
            return versions_sql.latest_versions(s)

    def latest_heads(self) -> dict[tuple[str, str], VersionHead]:
        """The newest version of every (app, env) without its snapshot."""
        with self._read() as s:
            return versions_sql.latest_heads(s)

    def get_version(self, app: str, env: str, number: int | None = None) -> VersionRecord | None:
        """Version ``number`` of (app, env), or the newest when ``number`` is None."""
        with self._read() as s:
            return versions_sql.get_version(s, app, env, number)

    def rollout_states(
        self, app: str | None = None, env: str | None = None
    ) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
        """Runtime state of rollouts: ``{(app, env): {name: state}}``, optionally one pair."""
        with self._read() as s:
            return rollouts_sql.rollout_states(s, app, env)

    def list_versions(self, app: str, env: str, limit: int | None = None) -> list[VersionEntry]:
        """Versions of (app, env), newest first, with commit author and changed keys."""
        with self._read() as s:
            return versions_sql.list_versions(s, app, env, limit)

    def key_history(self, app: str, env: str, key: str) -> list[HistoryEntry]:
        """Every version of (app, env) that changed ``key`` or a key below it, newest first."""
        with self._read() as s:
            return versions_sql.key_history(s, app, env, key)

    def audit(
        self,
        app: str | None = None,
        env: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        *,
        action: str | None = None,
    ) -> list[AuditRecord]:
        """Audit rows matching every given filter, newest first."""
        with self._read() as s:
            return audit_sql.audit(
                s, app=app, env=env, actor=actor, since=since, limit=limit, action=action
            )

    def commits(self, status: str | None = None, limit: int | None = None) -> list[CommitRecord]:
        """Recorded commits (optionally of one status), most recently recorded first."""
        with self._read() as s:
            return commits_sql.commits(s, status, limit)

    def get_commit(self, sha: str) -> CommitRecord | None:
        with self._read() as s:
            return commits_sql.get_commit(s, sha)

    def pins(self) -> list[PinRecord]:
        with self._read() as s:
            return pins_sql.pins(s)

    def quarantines(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every quarantine, by (app, env): ``{"commit", "checksum", "version"}``."""
        with self._read() as s:
            return pins_sql.quarantines(s)

    def sync_state(self, name: str) -> Any:
        """The JSON value stored under ``name``, or None."""
        with self._read() as s:
            return commits_sql.sync_state(s, name)

    def sync_states(self, prefix: str) -> dict[str, Any]:
        """Every non-null sync-state value whose name starts with ``prefix``, in one query."""
        with self._read() as s:
            return commits_sql.sync_states(s, prefix)

    # -- outbox -------------------------------------------------------------------------

    def pending_outbox(self, limit: int) -> list[OutboxRecord]:
        """Up to ``limit`` unpublished messages, oldest first (ascending id).

        Meant for one relay (the leader): rows are not locked while being published.
        """
        with self._read() as s:
            return outbox_sql.pending_outbox(s, limit)

    def mark_outbox_published(self, ids: Sequence[int], at: datetime) -> None:
        """Record that the broker confirmed messages ``ids`` at ``at``."""
        if not ids:
            return
        with self._write() as s:
            outbox_sql.mark_published(s, ids, at)

    def mark_outbox_failed(self, id: int, error: str) -> None:
        """Count one failed publish of message ``id`` and keep the (truncated) error."""
        with self._write() as s:
            outbox_sql.mark_failed(s, id, error)

    def outbox_backlog(self) -> int:
        """How many messages wait to be published."""
        with self._read() as s:
            return outbox_sql.backlog(s)

    def outbox_oldest_pending(self) -> datetime | None:
        """When the oldest unpublished message was written (for the relay-lag alert)."""
        with self._read() as s:
            return outbox_sql.oldest_pending(s)

    # -- leadership ---------------------------------------------------------------------

    def acquire_epoch(self, name: str, holder: str) -> int:
        """Become the holder of lease ``name``: increment its epoch (the fencing token) in
        its own transaction, creating the row at epoch 1, and return the new epoch."""
        with self._transaction(write=True, lock=True) as s, self._errors():
            return leases_sql.acquire_epoch(
                s, name, holder, postgres=self.is_postgres, clock=self._clock
            )

    def renew_lease(self, name: str, holder: str, epoch: int) -> bool:
        """Touch ``renewed_at`` if ``holder`` still holds ``name`` at ``epoch``."""
        with self._write() as s:
            return leases_sql.renew_lease(s, name, holder, epoch, clock=self._clock)

    def current_epoch(self, name: str) -> int | None:
        """The epoch of lease ``name``, or None if nobody ever acquired it."""
        with self._read() as s:
            return leases_sql.current_epoch(s, name)
