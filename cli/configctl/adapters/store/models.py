"""Tables of the version store (SQLAlchemy 2 declarative), one schema for SQLite and PostgreSQL.

Table and column names are a contract: the leader election writes ``leader_lease`` with raw
SQL and the relay reads ``outbox``. The schema itself is created by the alembic migrations
(``migrations/versions``), never by ``create_all``; a test compares these models with the
migrated schema on both backends, so the two cannot drift apart.

Portable types, chosen once here:

- :data:`JsonType` is ``JSON`` everywhere and ``JSONB`` on PostgreSQL;
- :data:`JsonTextType` is ``JSON`` everywhere (``json``, text, on PostgreSQL);
- :class:`UtcDateTime` stores timezone-aware UTC: ``timestamptz`` on PostgreSQL, and on
  SQLite (which has no time zones) the UTC wall time as text, given back as aware UTC;
- :data:`IdType` is ``BIGINT`` on PostgreSQL and ``INTEGER`` on SQLite, where only an
  ``INTEGER PRIMARY KEY`` is the autoincrementing rowid.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: The alembic revision this code reads and writes; ``SqlStore`` refuses other revisions.
#: A test checks it is the head of ``migrations/versions``.
SCHEMA_REVISION = "0005"

#: Deterministic constraint and index names on both backends (alembic can then alter them).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
JsonTextType = JSON(none_as_null=True)
"""JSON kept as text on PostgreSQL too (``json``): for documents only ever read whole,
where parsing into ``jsonb`` on the way in would be work for nothing."""
IdType = BigInteger().with_variant(Integer(), "sqlite")
SHA_LENGTH = 64  # SHA-1 repositories use 40 hex digits, SHA-256 repositories 64
NAME_LENGTH = 63  # app and environment names are DNS labels


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC ``datetime`` on every backend; naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: the store keeps timezone-aware UTC times only")
        value = value.astimezone(UTC)
        # SQLite stores text: the UTC wall time, so ordering and comparisons stay textual.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self,
        value: Any,
        dialect: Dialect,  # noqa: ARG002  # the TypeDecorator signature; same on every backend
    ) -> datetime | None:
        if value is None:
            return None
        # Raw SQL on SQLite may hand back the stored text instead of a datetime.
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Commit(Base):
    """Every commit configctl looked at, with what it did about it (upserted)."""

    __tablename__ = "commits"
    __table_args__ = (Index(None, "status", "recorded_at"),)

    sha: Mapped[str] = mapped_column(String(SHA_LENGTH), primary_key=True)
    parents: Mapped[Any] = mapped_column(JsonType, nullable=False)
    author_name: Mapped[str] = mapped_column(String(255), nullable=False)
    author_email: Mapped[str] = mapped_column(String(255), nullable=False)
    authored_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    committer_name: Mapped[str] = mapped_column(String(255), nullable=False)
    committer_email: Mapped[str] = mapped_column(String(255), nullable=False)
    committed_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    signature_status: Mapped[str] = mapped_column(String(16), nullable=False)
    signer: Mapped[str | None] = mapped_column(String(512), nullable=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


HELD_INDEX = "ix_versions_held"
HELD_WHERE = "reason <> 'commit'"
"""The partial index of the versions not made by a commit (rollbacks, releases)."""


class Version(Base):
    """One version of one (app, env). ``commit_sha`` is deliberately not a foreign key:
    a version may be written before its commit row in the same unit of work, and a
    rollback carries the commit of the version it restores."""

    __tablename__ = "versions"
    # The unique constraint is also the (app, env, number) index every lookup uses; the
    # partial index finds the pairs a rollback or release wrote to (few) without a scan.
    __table_args__ = (
        UniqueConstraint("app", "env", "number"),
        Index(
            HELD_INDEX,
            "app",
            "env",
            postgresql_where=text(HELD_WHERE),
            sqlite_where=text(HELD_WHERE),
        ),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    app: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    env: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    values: Mapped[Any] = mapped_column(JsonType, nullable=False)
    checksum: Mapped[str] = mapped_column(String(64), nullable=False)
    commit_sha: Mapped[str | None] = mapped_column(String(SHA_LENGTH), nullable=True)
    reason: Mapped[str] = mapped_column(String(16), nullable=False)
    rolled_back_to: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    rollouts: Mapped[Any] = mapped_column(JsonType, nullable=True)
    """The JSON form of the pair's rollouts (state folded in); NULL when it has none."""
    changes: Mapped[Any] = mapped_column(JsonTextType, nullable=False)
    """The dotted keys this version changed, in key order: ``[{"key", "change", "old",
    "new"}]`` (values redacted by the caller; ``old``/``new`` absent when None). They travel
    with their version (revision 0004): they are read by version, or by key within one
    (app, env), never across pairs."""


class AuditRow(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "at"), Index(None, "app", "env"), Index(None, "actor"))

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    actor: Mapped[str] = mapped_column(String(255), nullable=False)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    app: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    env: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    commit_sha: Mapped[str | None] = mapped_column(String(SHA_LENGTH), nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    details: Mapped[Any] = mapped_column(JsonType, nullable=False)


class OutboxRow(Base):
    """A notification written in the same transaction as its version (§4.1 of the notes)."""

    __tablename__ = "outbox"
    __table_args__ = (Index(None, "published_at", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    routing_key: Mapped[str] = mapped_column(String(255), nullable=False)
    payload: Mapped[Any] = mapped_column(JsonType, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class Pin(Base):
    __tablename__ = "pins"

    app: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    env: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    actor: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    quarantined_commit: Mapped[str | None] = mapped_column(String(SHA_LENGTH), nullable=True)


class Quarantine(Base):
    """The values of a rolled-back commit, kept out of service for (app, env) until a newer
    commit changes the pair: ``checksum`` is the checksum of the version the rollback
    replaced, ``commit_sha`` its commit (NULL for a version without one)."""

    __tablename__ = "quarantines"

    app: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    env: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    commit_sha: Mapped[str | None] = mapped_column(String(SHA_LENGTH), nullable=True)
    checksum: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class RolloutState(Base):
    """Runtime state of one rollout or flag of (app, env); ``key`` holds its name.

    ``state`` is JSON: ``status`` (active, paused, promoted, aborted), ``paused_at``,
    ``shift_seconds`` (time spent paused, which delays the schedule), ``stage`` (the last
    schedule stage announced), ``actor``. Versions fold in status, paused_at and shift."""

    __tablename__ = "rollout_state"

    app: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    env: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    state: Mapped[Any] = mapped_column(JsonType, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class SyncState(Base):
    """Named cursors of the sync loop: last applied / attempted commit, branch head...
    (quarantines have a table of their own since revision 0003)."""

    __tablename__ = "sync_state"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[Any] = mapped_column(JsonType, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class LeaderLease(Base):
    """The fencing token: ``epoch`` grows by one at every change of leader."""

    __tablename__ = "leader_lease"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255), nullable=False)
    epoch: Mapped[int] = mapped_column(BigInteger, nullable=False)
    acquired_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    renewed_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class WriterGeneration(Base):
    """One row: the generation of what a writer reads (revision 0005). On PostgreSQL every
    write to those tables moves ``n`` on (a trigger), so a writer that remembers them can
    tell, under the writer lock, whether anyone wrote since (``adapters.store.memory``);
    ``token`` tells two databases apart. SQLite keeps the row and no trigger (its writer
    reads in process and remembers nothing)."""

    __tablename__ = "writer_generation"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    token: Mapped[str] = mapped_column(Text, nullable=False)
    n: Mapped[int] = mapped_column(BigInteger, nullable=False)
