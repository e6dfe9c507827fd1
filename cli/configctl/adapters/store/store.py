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

Reads on :class:`SqlStore` run in their own short transactions; :class:`UnitOfWork`
(``unit_of_work``) offers the reads a writer needs inside its transaction and queues its
writes. The SQL lives by aggregate, one module each: ``versions`` (versions and history),
``commits`` (commits and the sync cursor), ``outbox``, ``audit``, ``pins`` (pins and
quarantines), ``rollouts`` (rollout state) and ``leases``, with ``pg_batch`` for a unit
of work's few statements on PostgreSQL; this module only wires them to sessions,
transactions and errors.

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
import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
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
    mark_idle,
    normalize_url,
    parse_url,
    ping_if_idle,
)
from configctl.adapters.store.memory import WriterMemory
from configctl.adapters.store.pg_batch import MOVED_ON
from configctl.adapters.store.unit_of_work import UnitOfWork
from configctl.core.ports import ReadAhead
from configctl.core.records import (
    AuditRecord,
    CommitRecord,
    HistoryEntry,
    OutboxRecord,
    PinRecord,
    VersionEntry,
    VersionHead,
    VersionRecord,
)
from configctl.errors import StoreError, StoreMovedOn, UsageError

if TYPE_CHECKING:
    pass

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
        # PostgreSQL: the connection units of work run on, kept between them (see
        # _writer_connection); the lock says whether a unit of work is using it.
        self._writer: Connection | None = None
        # PostgreSQL: what the writer remembers of the store (adapters.store.memory).
        self._memory: WriterMemory | None = None
        self._writer_free = threading.Lock()

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
        self._memory = None
        if self._writer_free.acquire(blocking=False):  # else a unit of work is using it
            try:
                self._drop_writer()
            finally:
                self._writer_free.release()
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
        if getattr(orig, "sqlstate", None) == MOVED_ON:
            raise StoreMovedOn(
                f"the store at {self.where} changed since this writer last read it: "
                "nothing was written",
                hint="run it again: the next unit of work reads under the writer lock",
            ) from exc
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
        with self._committed(session):
            with self._errors():
                session.connection(execution_options=options)
                if lock:
                    self._lock(session, fence, begin=self.is_postgres)
            yield session

    @contextlib.contextmanager
    def _committed(self, tx: Session | Connection, *, close: bool = True) -> Iterator[None]:
        """Commit ``tx`` when the block ends normally, roll it back otherwise; close it
        either way unless not ``close`` (a failure to roll back or close hides nothing: the
        first error leaves)."""
        try:
            yield
            with self._errors():
                tx.commit()
        except BaseException:
            with contextlib.suppress(sa_exc.SQLAlchemyError, sqlite3.Error):
                tx.rollback()
            raise
        finally:
            if close:
                with contextlib.suppress(sa_exc.SQLAlchemyError, sqlite3.Error):
                    tx.close()

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
        kept = False
        try:
            with contextlib.ExitStack() as stack:
                if self.is_postgres:
                    conn = stack.enter_context(self._pg_transaction())
                    kept = conn is self._writer
                    uow = UnitOfWork(
                        lambda: stack.enter_context(self._joined_session(conn)),
                        clock=self._clock,
                        errors=self._errors,
                        driver=pg_batch.driver(conn),
                        memory=self._memory if kept else None,
                    )
                else:
                    session = stack.enter_context(
                        self._transaction(write=True, lock=True, fence=fence)
                    )
                    uow = UnitOfWork(session, clock=self._clock, errors=self._errors)
                try:
                    uow._begin(self._writer_lock(fence), fence, reads)
                    yield uow
                    uow._flush()
                finally:
                    uow._close()
        except BaseException:
            self._memory = None  # whatever happened, the next writer reads under the lock
            raise
        if kept:
            self._memory = uow._memory_after()
        elif uow._wrote():
            self._memory = None  # another thread's unit of work wrote

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
        with self._writer_connection() as conn, self._committed(conn, close=False):
            with self._errors():
                conn.begin()  # so that the commit reaches the driver (it sends COMMIT if due)
            yield conn

    @contextlib.contextmanager
    def _writer_connection(self) -> Iterator[Connection]:
        """PostgreSQL: the connection a unit of work runs on, in autocommit mode.

        One is kept from one unit of work to the next (not handed back to the pool): a
        pool checkout and checkin, with the switch to autocommit and back, cost a tenth of
        a one-app apply's transaction (``bench/propagation.py``, part 2). It keeps the
        pool's rule: pinged before use after :data:`~engine.PING_AFTER_IDLE_S` idle, and
        replaced if the server has gone. A unit of work that fails drops it (the next
        takes a fresh one), as does :meth:`close`. While one thread's unit of work uses
        it, another thread's gets a pooled connection of its own."""
        if not self._writer_free.acquire(blocking=False):
            conn = self._autocommit_connection()
            try:
                yield conn
            finally:
                with contextlib.suppress(sa_exc.SQLAlchemyError):
                    conn.close()
            return
        try:
            conn = self._kept_writer()
            try:
                yield conn
            except BaseException:
                self._drop_writer()  # a failed transaction may have left it in any state
                raise
            mark_idle(conn.info)
        finally:
            self._writer_free.release()

    def _kept_writer(self) -> Connection:
        """The kept writer connection (:meth:`_writer_connection`), pinged if it sat idle,
        or a new one from the pool (also after :meth:`close`, which disposed of its engine)."""
        conn = self._writer
        if conn is not None and conn.engine is self._engine:
            try:
                ping_if_idle(self.engine, conn.connection.dbapi_connection, conn.info)
                return conn
            except sa_exc.InvalidatePoolError:  # the server went away while it was idle
                with contextlib.suppress(sa_exc.SQLAlchemyError):
                    conn.invalidate()
        self._drop_writer()
        self._writer = conn = self._autocommit_connection()
        return conn

    def _autocommit_connection(self) -> Connection:
        with self._errors():
            return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def _drop_writer(self) -> None:
        """Hand the kept writer connection back to the pool (an invalidated one is closed)."""
        conn, self._writer = self._writer, None
        if conn is not None:
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
