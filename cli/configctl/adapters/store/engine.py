"""Engines for the store: one function, both backends, no module-level engine.

SQLite (the embedded default) is set up for several processes writing one file:

- WAL journal (readers never block the writer), ``busy_timeout`` (a writer waits for the
  lock instead of failing at once), foreign keys on;
- pysqlite's own transaction handling is switched off (``isolation_level = None``) and
  SQLAlchemy's ``begin`` event issues the ``BEGIN`` itself, as the SQLAlchemy docs'
  "Serializable isolation / Savepoints / Transactional DDL" recipe for pysqlite does. That
  is what lets a unit of work start with ``BEGIN IMMEDIATE`` (the write lock taken up front,
  so two writers queue instead of deadlocking on a lock upgrade), chosen per connection with
  the execution option :data:`SQLITE_BEGIN`. Reads begin ``DEFERRED``.

PostgreSQL URLs are spelt with the psycopg 3 driver (``postgresql://`` and ``postgres://``
become ``postgresql+psycopg://``); connections get a connect timeout and an
``application_name`` unless the URL sets them. A pooled connection idle for more than
:data:`PING_AFTER_IDLE_S` is pinged before reuse (and replaced, with every older one, if the
server has gone); one used just before is not: a restart or failover takes longer than that,
and the ping was a round trip on every unit of work of a busy writer. A connection lost
within that second fails its transaction, which the caller retries (the reconciler's
backend-error backoff).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError

from configctl.errors import UsageError

#: Execution option naming the SQLite ``BEGIN`` mode: "DEFERRED" (default) or "IMMEDIATE".
SQLITE_BEGIN = "configctl_sqlite_begin"
#: Seconds a writer waits for another writer's lock before failing (both backends): long
#: enough for any real apply, short enough that a stuck writer surfaces as an error.
WRITER_LOCK_TIMEOUT_S = 60
#: Seconds to wait for a PostgreSQL connection before giving up.
PG_CONNECT_TIMEOUT_S = 10
#: Seconds a pooled PostgreSQL connection may sit idle and still be reused without a ping.
PING_AFTER_IDLE_S = 1.0
_IDLE_SINCE = "configctl_idle_since"


def json_dumps(value: object) -> str:
    """The text of every JSON column (both engines, and ``pg_batch``'s documents): orjson,
    about ten times the standard encoder, which was a tenth of a first apply (the values
    and key changes of 3,000 versions). UTF-8 as is, datetimes in ISO 8601; NaN and
    infinities never get here (the parser refuses them)."""
    return orjson.dumps(value).decode()


def normalize_url(url: str) -> str:
    """``url`` with the driver configctl uses: psycopg 3 for PostgreSQL."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def parse_url(url: str) -> URL:
    """The parsed, normalised URL; a malformed or unsupported one is a ``UsageError``
    (exit 2: retrying cannot help), whose message leaves out the URL (it may hold a password)."""
    try:
        parsed = make_url(normalize_url(url))
        # the port is parsed lazily: `postgresql://u@:x:y/db` fails only here
        _ = parsed.port
    except (ArgumentError, ValueError) as exc:
        raise UsageError(
            "the store URL (--db) is malformed",
            hint="use postgresql://user@host:5432/db or sqlite:///path/to/file.db",
        ) from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise UsageError(
            f"unsupported store backend {parsed.get_backend_name()!r} (--db)",
            hint="use postgresql://... or sqlite:///...",
        )
    return parsed


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite store URL; None for PostgreSQL and in-memory SQLite."""
    parsed = url if isinstance(url, URL) else parse_url(url)
    database = parsed.database
    if (
        parsed.get_backend_name() != "sqlite"
        or not database
        or database == ":memory:"
        or database.startswith("file:")
    ):
        return None
    return Path(database)


def default_sqlite_path(repo_root: Path) -> Path:
    """Where a repository's embedded store lives: ``<repo>/.configctl/configctl.db``."""
    return Path(repo_root).resolve() / ".configctl" / "configctl.db"


def describe_url(url: str | URL) -> str:
    """Where the store is, for messages: never the password."""
    try:
        parsed = url if isinstance(url, URL) else make_url(normalize_url(url))
    except ArgumentError:
        return "the configured store"
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite {parsed.database or ':memory:'}"
    host = parsed.host or "localhost"
    port = f":{parsed.port}" if parsed.port else ""
    return f"PostgreSQL {host}{port}/{parsed.database or ''}"


def default_sqlite_url(repo_root: Path) -> str:
    """The embedded store of a repository: ``<repo>/.configctl/configctl.db`` (folder created)."""
    path = default_sqlite_path(repo_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def make_engine(
    url: str, *, echo: bool = False, lock_timeout: float = WRITER_LOCK_TIMEOUT_S
) -> Engine:
    """A new engine for ``url`` (SQLite or PostgreSQL); the caller disposes of it.

    ``lock_timeout`` (seconds) is SQLite's ``busy_timeout``; on PostgreSQL the store sets it
    per write transaction.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, echo=echo, busy_timeout_ms=int(lock_timeout * 1000))
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    if "application_name" not in parsed.query:
        connect_args["application_name"] = "configctl"
    engine = create_engine(parsed, echo=echo, connect_args=connect_args, json_serializer=json_dumps)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout only if it sat idle for more than
    :data:`PING_AFTER_IDLE_S` (SQLAlchemy's custom pessimistic disconnect handling: a
    ``DisconnectionError`` raised at checkout makes the pool replace the connection)."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        mark_idle(record.info)

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        ping_if_idle(engine, dbapi_connection, record.info)


def mark_idle(info: dict[Any, Any]) -> None:
    """Note in a connection's ``info`` that it is idle from now on (see :func:`ping_if_idle`)."""
    info[_IDLE_SINCE] = time.monotonic()


def ping_if_idle(engine: Engine, dbapi_connection: Any, info: dict[Any, Any]) -> None:
    """Ping ``dbapi_connection`` if it has been idle (:func:`mark_idle`) for more than
    :data:`PING_AFTER_IDLE_S`; ``InvalidatePoolError`` if the server has gone (at a pool
    checkout it replaces the connection and every one pooled before it)."""
    since = info.get(_IDLE_SINCE)
    if since is None or time.monotonic() - since <= PING_AFTER_IDLE_S:
        return
    try:
        engine.dialect.do_ping(dbapi_connection)
    except engine.dialect.loaded_dbapi.Error as exc:
        # the server went away while this connection was idle: replace it and every
        # connection pooled before it
        raise sa_exc.InvalidatePoolError(str(exc)) from exc


def _sqlite_engine(parsed: URL, *, echo: bool, busy_timeout_ms: int) -> Engine:
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        # `--db sqlite:///new/dir/x.db` creates its folder, like the embedded default does.
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, echo=echo, json_serializer=json_dumps)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" listener below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"bad {SQLITE_BEGIN}: {mode!r}")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
