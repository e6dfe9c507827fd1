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
the reads a writer needs inside its transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import Engine, delete, func, insert, inspect, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from configctl.adapters.store import models as m
from configctl.adapters.store.engine import (
    SQLITE_BEGIN,
    WRITER_LOCK_TIMEOUT_S,
    default_sqlite_url,
    describe_url,
    make_engine,
    normalize_url,
    parse_url,
)
from configctl.core.records import (
    AuditRecord,
    ChangeKind,
    CommitInfo,
    CommitRecord,
    CommitStatus,
    HistoryEntry,
    KeyChange,
    OutboxRecord,
    PinRecord,
    VersionEntry,
    VersionHead,
    VersionReason,
    VersionRecord,
)
from configctl.errors import FencingError, StoreError, UsageError

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
_MAX_ERROR_TEXT = 2000

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _subject(message: str | None) -> str | None:
    """The first line of a commit message; None for a version without a recorded commit
    (the outer join gives NULL)."""
    return message.split("\n", 1)[0] if message is not None else None


def _check_member(kind: type[Any], value: str, what: str) -> None:
    allowed = {str(v) for v in kind}
    if value not in allowed:
        raise ValueError(f"{what} must be one of {sorted(allowed)}, not {value!r}")


# --------------------------------------------------------------------------- row -> record


def _version_record(row: m.Version) -> VersionRecord:
    return VersionRecord(
        app=row.app,
        env=row.env,
        number=row.number,
        values=row.values,
        checksum=row.checksum,
        commit_sha=row.commit_sha,
        reason=row.reason,
        actor=row.actor,
        created_at=row.created_at,
        rolled_back_to=row.rolled_back_to,
        rollouts=tuple(row.rollouts or ()),
    )


def _pin_record(row: m.Pin) -> PinRecord:
    return PinRecord(
        app=row.app,
        env=row.env,
        version=row.version,
        reason=row.reason,
        actor=row.actor,
        created_at=row.created_at,
        quarantined_commit=row.quarantined_commit,
    )


def _commit_record(row: m.Commit) -> CommitRecord:
    return CommitRecord(
        info=CommitInfo(
            sha=row.sha,
            parents=tuple(row.parents or ()),
            author_name=row.author_name,
            author_email=row.author_email,
            authored_at=row.authored_at,
            committer_name=row.committer_name,
            committer_email=row.committer_email,
            committed_at=row.committed_at,
            message=row.message,
            signature_status=row.signature_status,
            signer=row.signer,
        ),
        status=row.status,
        reason=row.reason,
        recorded_at=row.recorded_at,
    )


def _audit_record(row: m.AuditRow) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        at=row.at,
        actor=row.actor,
        host=row.host,
        action=row.action,
        app=row.app,
        env=row.env,
        commit_sha=row.commit_sha,
        version=row.version,
        details=row.details if row.details is not None else {},
    )


def _outbox_record(row: m.OutboxRow) -> OutboxRecord:
    return OutboxRecord(
        id=row.id,
        event_id=row.event_id,
        routing_key=row.routing_key,
        payload=row.payload,
        created_at=row.created_at,
        published_at=row.published_at,
        attempts=row.attempts,
        last_error=row.last_error,
    )


# --------------------------------------------------------------------------- shared queries


def _latest_versions(s: Session) -> dict[tuple[str, str], VersionRecord]:
    newest = (
        select(m.Version.app, m.Version.env, func.max(m.Version.number).label("number"))
        .group_by(m.Version.app, m.Version.env)
        .subquery()
    )
    rows = s.scalars(
        select(m.Version).join(
            newest,
            (m.Version.app == newest.c.app)
            & (m.Version.env == newest.c.env)
            & (m.Version.number == newest.c.number),
        )
    )
    return {(r.app, r.env): _version_record(r) for r in rows}


def _latest_heads(
    s: Session, apps: Collection[str] | None = None, *, with_rollbacks: bool = False
) -> dict[tuple[str, str], VersionHead]:
    """Number, checksum and commit of the newest version of every pair; no snapshots read.

    With ``apps``, only those apps' pairs (plus, ``with_rollbacks``, every pair whose
    version in service was made by a rollback or release).
    """
    newest = select(m.Version.app, m.Version.env, func.max(m.Version.number).label("number")).group_by(
        m.Version.app, m.Version.env
    )
    if apps is not None and not with_rollbacks:
        newest = newest.where(m.Version.app.in_(sorted(apps)))
    sub = newest.subquery()
    q = select(
        m.Version.app, m.Version.env, m.Version.number, m.Version.checksum, m.Version.commit_sha, m.Version.reason
    ).join(
        sub,
        (m.Version.app == sub.c.app) & (m.Version.env == sub.c.env) & (m.Version.number == sub.c.number),
    )
    if apps is not None:
        wanted = m.Version.app.in_(sorted(apps))
        q = q.where(wanted | (m.Version.reason != "commit")) if with_rollbacks else q.where(wanted)
    return {
        (app, env): VersionHead(app=app, env=env, number=number, checksum=digest, commit_sha=sha, reason=reason)
        for app, env, number, digest, sha, reason in s.execute(q)
    }


def _get_version(s: Session, app: str, env: str, number: int | None) -> VersionRecord | None:
    q = select(m.Version).where(m.Version.app == app, m.Version.env == env)
    if number is None:
        q = q.order_by(m.Version.number.desc()).limit(1)
    else:
        q = q.where(m.Version.number == number)
    row = s.scalars(q).first()
    return _version_record(row) if row is not None else None


def _rollout_heads(s: Session) -> dict[tuple[str, str], tuple[int, str | None, tuple[dict[str, Any], ...]]]:
    """(number, commit, rollouts) of every pair whose version in service has rollouts."""
    sub = (
        select(m.Version.app, m.Version.env, func.max(m.Version.number).label("number"))
        .group_by(m.Version.app, m.Version.env)
        .subquery()
    )
    q = (
        select(m.Version.app, m.Version.env, m.Version.number, m.Version.commit_sha, m.Version.rollouts)
        .join(sub, (m.Version.app == sub.c.app) & (m.Version.env == sub.c.env) & (m.Version.number == sub.c.number))
        .where(m.Version.rollouts.is_not(None))
    )
    return {
        (app, env): (number, sha, tuple(rollouts))
        for app, env, number, sha, rollouts in s.execute(q)
        if rollouts
    }


def _rollout_states(s: Session, app: str | None, env: str | None) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    q = select(m.RolloutState)
    if app is not None:
        q = q.where(m.RolloutState.app == app)
    if env is not None:
        q = q.where(m.RolloutState.env == env)
    out: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for row in s.scalars(q.order_by(m.RolloutState.app, m.RolloutState.env, m.RolloutState.key)):
        out.setdefault((row.app, row.env), {})[row.key] = dict(row.state or {})
    return out


def _pins(s: Session) -> list[PinRecord]:
    return [_pin_record(r) for r in s.scalars(select(m.Pin).order_by(m.Pin.app, m.Pin.env))]


def _sync_state(s: Session, name: str) -> Any:
    row = s.get(m.SyncState, name)
    return row.value if row is not None else None


# --------------------------------------------------------------------------- unit of work


class UnitOfWork:
    """One write transaction holding the writer lock; see :meth:`SqlStore.unit_of_work`.

    Every method flushes at once, so a constraint violation surfaces at the call that
    caused it (as :class:`StoreError`), not at commit time.
    """

    def __init__(self, session: Session, *, clock: Clock, errors: Callable[[], Any]) -> None:
        self._s = session
        self._clock = clock
        self._errors = errors
        self._open = True

    def _session(self) -> Session:
        if not self._open:
            raise StoreError("this unit of work has ended; open a new one")
        return self._s

    def _close(self) -> None:
        self._open = False

    # -- reads inside the transaction ---------------------------------------------------

    def latest_versions(self) -> dict[tuple[str, str], VersionRecord]:
        """The newest version of every (app, env), as this transaction sees it."""
        with self._errors():
            return _latest_versions(self._session())

    def latest_heads(
        self, apps: Collection[str] | None = None, *, with_rollbacks: bool = False
    ) -> dict[tuple[str, str], VersionHead]:
        """The newest version of every (app, env) without its snapshot (cheap at any size);
        with ``apps`` only theirs (and, ``with_rollbacks``, any pair a rollback holds)."""
        with self._errors():
            return _latest_heads(self._session(), apps, with_rollbacks=with_rollbacks)

    def get_version(self, app: str, env: str, number: int | None = None) -> VersionRecord | None:
        """Version ``number`` of (app, env), or the newest when ``number`` is None."""
        with self._errors():
            return _get_version(self._session(), app, env, number)

    def commit_status(self, sha: str) -> str | None:
        """``applied``/``rejected``/``superseded``/``quarantined``, or None if never recorded."""
        with self._errors():
            row = self._session().get(m.Commit, sha)
            return row.status if row is not None else None

    def get_pins(self) -> list[PinRecord]:
        with self._errors():
            return _pins(self._session())

    def get_sync_state(self, name: str) -> Any:
        """The JSON value stored under ``name``, or None."""
        with self._errors():
            return _sync_state(self._session(), name)

    # -- writes -------------------------------------------------------------------------

    def record_commit(self, info: CommitInfo, status: str, reason: str | None) -> None:
        """Insert or update the commit row (a rejected commit may be recorded again later)."""
        _check_member(CommitStatus, status, "commit status")
        with self._errors():
            s = self._session()
            row = s.get(m.Commit, info.sha)
            if row is None:
                row = m.Commit(sha=info.sha)
                s.add(row)
            row.parents = list(info.parents)
            row.author_name = info.author_name
            row.author_email = info.author_email
            row.authored_at = info.authored_at
            row.committer_name = info.committer_name
            row.committer_email = info.committer_email
            row.committed_at = info.committed_at
            row.message = info.message
            row.signature_status = str(info.signature_status)
            row.signer = info.signer
            row.status = str(status)
            row.reason = reason
            row.recorded_at = self._clock()
            s.flush()

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
        _check_member(VersionReason, reason, "version reason")
        for change in changes:
            _check_member(ChangeKind, change.change, f"change of key {change.key!r}")
        with self._errors():
            s = self._session()
            current = s.scalar(
                select(func.max(m.Version.number)).where(m.Version.app == app, m.Version.env == env)
            )
            number = (current or 0) + 1
            row = m.Version(
                app=app,
                env=env,
                number=number,
                values=dict(values),
                checksum=checksum,
                commit_sha=commit_sha,
                reason=str(reason),
                rolled_back_to=rolled_back_to,
                actor=actor,
                created_at=self._clock(),
                rollouts=[dict(r) for r in rollouts] or None,
            )
            s.add(row)
            s.flush()
            if changes:
                s.execute(
                    insert(m.KeyChangeRow),
                    [
                        {
                            "version_id": row.id,
                            "key": c.key,
                            "change": str(c.change),
                            "old_value": c.old,
                            "new_value": c.new,
                        }
                        for c in changes
                    ],
                )
            return number

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
        """Append one audit row (``details`` is JSON; no secret values in it)."""
        with self._errors():
            s = self._session()
            s.add(
                m.AuditRow(
                    at=self._clock(),
                    actor=actor,
                    host=host,
                    action=action,
                    app=app,
                    env=env,
                    commit_sha=commit_sha,
                    version=version,
                    details=dict(details or {}),
                )
            )
            s.flush()

    def add_outbox(self, *, event_id: str, routing_key: str, payload: Mapping[str, Any]) -> None:
        """Queue a notification; the relay publishes it after this transaction commits."""
        with self._errors():
            s = self._session()
            s.add(
                m.OutboxRow(
                    event_id=event_id,
                    routing_key=routing_key,
                    payload=dict(payload),
                    created_at=self._clock(),
                    published_at=None,
                    attempts=0,
                    last_error=None,
                )
            )
            s.flush()

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
        with self._errors():
            s = self._session()
            row = s.get(m.Pin, (app, env))
            if row is None:
                row = m.Pin(app=app, env=env)
                s.add(row)
            row.version = version
            row.reason = reason
            row.actor = actor
            row.created_at = self._clock()
            row.quarantined_commit = quarantined_commit
            s.flush()

    def clear_pin(self, app: str, env: str) -> bool:
        """Remove the pin of (app, env); False if there was none."""
        with self._errors():
            s = self._session()
            result = s.execute(delete(m.Pin).where(m.Pin.app == app, m.Pin.env == env))
            return bool(getattr(result, "rowcount", 0))

    def rollout_states(self, app: str | None = None, env: str | None = None) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
        """Runtime state of rollouts: ``{(app, env): {name: state}}``, optionally one pair."""
        with self._errors():
            return _rollout_states(self._session(), app, env)

    def rollout_heads(self) -> dict[tuple[str, str], tuple[int, str | None, tuple[dict[str, Any], ...]]]:
        """(number, commit, rollouts) of every pair whose version in service has rollouts."""
        with self._errors():
            return _rollout_heads(self._session())

    def set_rollout_state(self, app: str, env: str, name: str, state: Mapping[str, Any]) -> None:
        """Replace the runtime state of rollout ``name`` of (app, env)."""
        with self._errors():
            s = self._session()
            row = s.get(m.RolloutState, (app, env, name))
            if row is None:
                row = m.RolloutState(app=app, env=env, key=name)
                s.add(row)
            row.state = dict(state)
            row.updated_at = self._clock()
            s.flush()

    def set_sync_state(self, name: str, value: Any) -> None:
        """Store a JSON value under ``name``; ``None`` removes it."""
        with self._errors():
            s = self._session()
            row = s.get(m.SyncState, name)
            if value is None:
                if row is not None:
                    s.delete(row)
                    s.flush()
                return
            if row is None:
                row = m.SyncState(name=name)
                s.add(row)
            row.value = value
            row.updated_at = self._clock()
            s.flush()


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
        self._clock: Clock = clock or _utc_now
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
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:r)"), {"r": m.SCHEMA_REVISION})
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
        if not self.is_postgres and ("unable to open database file" in lowered or "readonly database" in lowered):
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

    def _lock(self, s: Session | Any) -> None:
        """Take the writer lock for the rest of the transaction (PostgreSQL; SQLite already
        holds it since ``BEGIN IMMEDIATE``), waiting at most ``lock_timeout`` seconds."""
        if self.is_postgres:
            s.execute(text(f"SET LOCAL lock_timeout = '{max(1, int(self.lock_timeout * 1000))}ms'"))
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITER_LOCK_KEY})

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
        """
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
    def _transaction(self, *, write: bool, lock: bool) -> Iterator[Session]:
        """A session in one transaction: committed on normal exit, rolled back otherwise."""
        self._require_schema()
        with self._errors():
            session = Session(self.engine, expire_on_commit=False, autoflush=False)
        try:
            with self._errors():
                session.connection(
                    execution_options={SQLITE_BEGIN: "IMMEDIATE" if write else "DEFERRED"}
                )
                if lock:
                    self._lock(session)
            yield session
            with self._errors():
                if write:
                    session.commit()
                else:
                    session.rollback()
        except BaseException:
            with contextlib.suppress(sa_exc.SQLAlchemyError, sqlite3.Error):
                session.rollback()
            raise
        finally:
            with contextlib.suppress(sa_exc.SQLAlchemyError, sqlite3.Error):
                session.close()

    @contextlib.contextmanager
    def unit_of_work(self, fence: tuple[str, int] | None = None) -> Iterator[UnitOfWork]:
        """One write transaction holding the writer lock: commit on exit, roll back on error.

        With ``fence=(name, epoch)`` the leader epoch ``name`` must still be ``epoch``
        inside the transaction, else :class:`FencingError` is raised and nothing is written.
        """
        with self._transaction(write=True, lock=True) as session:
            if fence is not None:
                self._check_fence(session, *fence)
            uow = UnitOfWork(session, clock=self._clock, errors=self._errors)
            try:
                yield uow
            finally:
                uow._close()

    def _check_fence(self, session: Session, name: str, epoch: int) -> None:
        with self._errors():
            q = select(m.LeaderLease.epoch).where(m.LeaderLease.name == name)
            if self.is_postgres:
                q = q.with_for_update(read=True)  # FOR SHARE: an epoch bump waits for us
            current = session.scalar(q)
        if current != epoch:
            raise FencingError(
                f"leader epoch {epoch} of {name!r} is stale (the store has {current}): "
                "another replica has taken over; nothing was written"
            )

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with self._transaction(write=False, lock=False) as session, self._errors():
            yield session

    # -- reads --------------------------------------------------------------------------

    def latest_versions(self) -> dict[tuple[str, str], VersionRecord]:
        """The newest version of every (app, env)."""
        with self._read() as s:
            return _latest_versions(s)

    def latest_heads(self) -> dict[tuple[str, str], VersionHead]:
        """The newest version of every (app, env) without its snapshot."""
        with self._read() as s:
            return _latest_heads(s)

    def get_version(self, app: str, env: str, number: int | None = None) -> VersionRecord | None:
        """Version ``number`` of (app, env), or the newest when ``number`` is None."""
        with self._read() as s:
            return _get_version(s, app, env, number)

    def rollout_states(self, app: str | None = None, env: str | None = None) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
        """Runtime state of rollouts: ``{(app, env): {name: state}}``, optionally one pair."""
        with self._read() as s:
            return _rollout_states(s, app, env)

    def list_versions(self, app: str, env: str, limit: int | None = None) -> list[VersionEntry]:
        """Versions of (app, env), newest first, with commit author and changed keys."""
        with self._read() as s:
            q = (
                select(
                    m.Version,
                    m.Commit.author_name,
                    m.Commit.author_email,
                    m.Commit.committed_at,
                    m.Commit.message,
                )
                .outerjoin(m.Commit, m.Commit.sha == m.Version.commit_sha)
                .where(m.Version.app == app, m.Version.env == env)
                .order_by(m.Version.number.desc())
            )
            if limit is not None:
                q = q.limit(limit)
            rows = s.execute(q).all()
            changes: dict[int, list[KeyChange]] = {}
            ids = [row[0].id for row in rows]
            if ids:
                for c in s.scalars(
                    select(m.KeyChangeRow)
                    .where(m.KeyChangeRow.version_id.in_(ids))
                    .order_by(m.KeyChangeRow.version_id, m.KeyChangeRow.key)
                ):
                    changes.setdefault(c.version_id, []).append(
                        KeyChange(key=c.key, change=c.change, old=c.old_value, new=c.new_value)
                    )
            return [
                VersionEntry(
                    app=v.app,
                    env=v.env,
                    number=v.number,
                    checksum=v.checksum,
                    commit_sha=v.commit_sha,
                    reason=v.reason,
                    actor=v.actor,
                    created_at=v.created_at,
                    rolled_back_to=v.rolled_back_to,
                    author_name=author_name,
                    author_email=author_email,
                    committed_at=committed_at,
                    subject=_subject(message),
                    changes=tuple(changes.get(v.id, ())),
                )
                for v, author_name, author_email, committed_at, message in rows
            ]

    def key_history(self, app: str, env: str, key: str) -> list[HistoryEntry]:
        """Every version of (app, env) that changed ``key`` or a key below it, newest first."""
        with self._read() as s:
            q = (
                select(m.Version, m.KeyChangeRow, m.Commit.author_name, m.Commit.author_email)
                .join(m.KeyChangeRow, m.KeyChangeRow.version_id == m.Version.id)
                .outerjoin(m.Commit, m.Commit.sha == m.Version.commit_sha)
                .where(m.Version.app == app, m.Version.env == env)
                .where(
                    (m.KeyChangeRow.key == key)
                    | m.KeyChangeRow.key.startswith(key + ".", autoescape=True)
                )
                .order_by(m.Version.number.desc(), m.KeyChangeRow.key)
            )
            return [
                HistoryEntry(
                    app=v.app,
                    env=v.env,
                    key=c.key,
                    version=v.number,
                    change=c.change,
                    old=c.old_value,
                    new=c.new_value,
                    commit_sha=v.commit_sha,
                    author_name=author_name,
                    author_email=author_email,
                    actor=v.actor,
                    reason=v.reason,
                    created_at=v.created_at,
                )
                for v, c, author_name, author_email in s.execute(q).all()
            ]

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
            q = select(m.AuditRow).order_by(m.AuditRow.id.desc())
            if app is not None:
                q = q.where(m.AuditRow.app == app)
            if env is not None:
                q = q.where(m.AuditRow.env == env)
            if actor is not None:
                q = q.where(m.AuditRow.actor == actor)
            if action is not None:
                q = q.where(m.AuditRow.action == action)
            if since is not None:
                q = q.where(m.AuditRow.at >= since)
            if limit is not None:
                q = q.limit(limit)
            return [_audit_record(r) for r in s.scalars(q)]

    def commits(self, status: str | None = None, limit: int | None = None) -> list[CommitRecord]:
        """Recorded commits (optionally of one status), most recently recorded first."""
        with self._read() as s:
            q = select(m.Commit).order_by(m.Commit.recorded_at.desc(), m.Commit.sha)
            if status is not None:
                q = q.where(m.Commit.status == status)
            if limit is not None:
                q = q.limit(limit)
            return [_commit_record(r) for r in s.scalars(q)]

    def get_commit(self, sha: str) -> CommitRecord | None:
        with self._read() as s:
            row = s.get(m.Commit, sha)
            return _commit_record(row) if row is not None else None

    def pins(self) -> list[PinRecord]:
        with self._read() as s:
            return _pins(s)

    def sync_state(self, name: str) -> Any:
        """The JSON value stored under ``name``, or None."""
        with self._read() as s:
            return _sync_state(s, name)

    def sync_states(self, prefix: str) -> dict[str, Any]:
        """Every non-null sync-state value whose name starts with ``prefix`` (e.g. the
        quarantines, ``quarantine:<app>:<env>``), in one query."""
        with self._read() as s:
            rows = s.execute(
                select(m.SyncState.name, m.SyncState.value).where(m.SyncState.name.startswith(prefix, autoescape=True))
            )
            return {name: value for name, value in rows if value is not None}

    # -- outbox -------------------------------------------------------------------------

    def pending_outbox(self, limit: int) -> list[OutboxRecord]:
        """Up to ``limit`` unpublished messages, oldest first (ascending id).

        Meant for one relay (the leader): rows are not locked while being published.
        """
        with self._read() as s:
            q = (
                select(m.OutboxRow)
                .where(m.OutboxRow.published_at.is_(None))
                .order_by(m.OutboxRow.id)
                .limit(limit)
            )
            return [_outbox_record(r) for r in s.scalars(q)]

    def mark_outbox_published(self, ids: Sequence[int], at: datetime) -> None:
        """Record that the broker confirmed messages ``ids`` at ``at``."""
        if not ids:
            return
        with self._transaction(write=True, lock=False) as s, self._errors():
            s.execute(
                update(m.OutboxRow)
                .where(m.OutboxRow.id.in_(list(ids)))
                .values(published_at=at, last_error=None)
            )

    def mark_outbox_failed(self, id: int, error: str) -> None:
        """Count one failed publish of message ``id`` and keep the (truncated) error."""
        with self._transaction(write=True, lock=False) as s, self._errors():
            s.execute(
                update(m.OutboxRow)
                .where(m.OutboxRow.id == id)
                .values(attempts=m.OutboxRow.attempts + 1, last_error=error[:_MAX_ERROR_TEXT])
            )

    def outbox_backlog(self) -> int:
        """How many messages wait to be published."""
        with self._read() as s:
            count = s.scalar(
                select(func.count())
                .select_from(m.OutboxRow)
                .where(m.OutboxRow.published_at.is_(None))
            )
            return int(count or 0)

    def outbox_oldest_pending(self) -> datetime | None:
        """When the oldest unpublished message was written (for the relay-lag alert)."""
        with self._read() as s:
            oldest: datetime | None = s.scalar(
                select(func.min(m.OutboxRow.created_at)).where(m.OutboxRow.published_at.is_(None))
            )
            if oldest is not None and oldest.tzinfo is None:  # func.min loses the column type
                oldest = oldest.replace(tzinfo=UTC)
            return oldest

    # -- leadership ---------------------------------------------------------------------

    def acquire_epoch(self, name: str, holder: str) -> int:
        """Become the holder of lease ``name``: increment its epoch (the fencing token) in
        its own transaction, creating the row at epoch 1, and return the new epoch."""
        with self._transaction(write=True, lock=True) as s, self._errors():
            now = self._clock()
            row = s.get(m.LeaderLease, name, with_for_update=self.is_postgres)
            if row is None:
                row = m.LeaderLease(
                    name=name, holder=holder, epoch=1, acquired_at=now, renewed_at=now
                )
                s.add(row)
            else:
                row.epoch += 1
                row.holder = holder
                row.acquired_at = now
                row.renewed_at = now
            s.flush()
            return int(row.epoch)

    def renew_lease(self, name: str, holder: str, epoch: int) -> bool:
        """Touch ``renewed_at`` if ``holder`` still holds ``name`` at ``epoch``."""
        with self._transaction(write=True, lock=False) as s, self._errors():
            result = s.execute(
                update(m.LeaderLease)
                .where(
                    m.LeaderLease.name == name,
                    m.LeaderLease.holder == holder,
                    m.LeaderLease.epoch == epoch,
                )
                .values(renewed_at=self._clock())
            )
            return bool(getattr(result, "rowcount", 0))

    def current_epoch(self, name: str) -> int | None:
        """The epoch of lease ``name``, or None if nobody ever acquired it."""
        with self._read() as s:
            epoch = s.scalar(select(m.LeaderLease.epoch).where(m.LeaderLease.name == name))
            return int(epoch) if epoch is not None else None
