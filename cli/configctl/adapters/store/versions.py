"""Versions and their history: the newest version of each pair, one version, the versions
of a pair with their commits and key changes, and writing a batch of versions.

:func:`add_versions` costs the same number of statements for one version or a thousand:
one read of the current numbers, one ``executemany`` insert of the versions, one read of
their ids and one batch of key changes (``executemany``; ``COPY`` on PostgreSQL for a
large batch). Drivers may split an ``executemany`` into pages of rows (SQLAlchemy's
"insertmanyvalues", 1,000 rows a page): a statement per page, never one per row.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from configctl.adapters.store import models as m
from configctl.adapters.store._sql import check_member, members, subject
from configctl.adapters.store.engine import json_dumps
from configctl.core.records import (
    ChangeKind,
    HistoryEntry,
    KeyChange,
    NewVersion,
    VersionEntry,
    VersionHead,
    VersionReason,
    VersionRecord,
)

#: Key changes from this many rows up go to PostgreSQL with ``COPY`` (streamed rows); fewer
#: go with the unit of work's one statement (``pg_batch.flush``).
COPY_FROM_ROWS = 2000
_VERSIONS = cast("Table", m.Version.__table__)
#: Apps per ``IN (...)`` list when reading current numbers (SQLite caps bound parameters).
_IN_CHUNK = 5000


def version_record(row: m.Version) -> VersionRecord:
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


def latest_versions(s: Session) -> dict[tuple[str, str], VersionRecord]:
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
    return {(r.app, r.env): version_record(r) for r in rows}


def latest_heads(
    s: Session, apps: Collection[str] | None = None, *, with_rollbacks: bool = False
) -> dict[tuple[str, str], VersionHead]:
    """Number, checksum and commit of the newest version of every pair; no snapshots read.

    With ``apps``, only those apps' pairs (plus, ``with_rollbacks``, every pair whose
    version in service was made by a rollback or release).
    """
    newest = select(
        m.Version.app, m.Version.env, func.max(m.Version.number).label("number")
    ).group_by(m.Version.app, m.Version.env)
    if apps is not None and not with_rollbacks:
        newest = newest.where(m.Version.app.in_(sorted(apps)))
    sub = newest.subquery()
    q = select(
        m.Version.app,
        m.Version.env,
        m.Version.number,
        m.Version.checksum,
        m.Version.commit_sha,
        m.Version.reason,
    ).join(
        sub,
        (m.Version.app == sub.c.app)
        & (m.Version.env == sub.c.env)
        & (m.Version.number == sub.c.number),
    )
    if apps is not None:
        wanted = m.Version.app.in_(sorted(apps))
        q = q.where(wanted | (m.Version.reason != "commit")) if with_rollbacks else q.where(wanted)
    return {
        (app, env): VersionHead(
            app=app, env=env, number=number, checksum=digest, commit_sha=sha, reason=reason
        )
        for app, env, number, digest, sha, reason in s.execute(q)
    }


def get_version(s: Session, app: str, env: str, number: int | None) -> VersionRecord | None:
    q = select(m.Version).where(m.Version.app == app, m.Version.env == env)
    if number is None:
        q = q.order_by(m.Version.number.desc()).limit(1)
    else:
        q = q.where(m.Version.number == number)
    row = s.scalars(q).first()
    return version_record(row) if row is not None else None


def get_versions(
    s: Session, wanted: Iterable[tuple[str, str, int]]
) -> dict[tuple[str, str], VersionRecord]:
    """Version ``number`` of each ``(app, env, number)``, by pair, in one query per 5,000
    apps (the apps' rows are narrowed by number in SQL, by pair here)."""
    by_pair = {(app, env): number for app, env, number in wanted}
    out: dict[tuple[str, str], VersionRecord] = {}
    apps = sorted({app for app, _ in by_pair})
    numbers = sorted(set(by_pair.values()))
    for i in range(0, len(apps), _IN_CHUNK):
        q = select(m.Version).where(
            m.Version.app.in_(apps[i : i + _IN_CHUNK]), m.Version.number.in_(numbers)
        )
        for row in s.scalars(q):
            if by_pair.get((row.app, row.env)) == row.number:
                out[(row.app, row.env)] = version_record(row)
    return out


def _version_ids(
    s: Session, wanted: Sequence[tuple[str, str, int]]
) -> dict[tuple[str, str, int], int]:
    apps = sorted({app for app, _, _ in wanted})
    numbers = sorted({number for _, _, number in wanted})
    keys = set(wanted)
    out: dict[tuple[str, str, int], int] = {}
    for i in range(0, len(apps), _IN_CHUNK):
        q = select(m.Version.id, m.Version.app, m.Version.env, m.Version.number).where(
            m.Version.app.in_(apps[i : i + _IN_CHUNK]), m.Version.number.in_(numbers)
        )
        out.update({(a, e, n): int(vid) for vid, a, e, n in s.execute(q) if (a, e, n) in keys})
    return out


def current_numbers(s: Session, pairs: Collection[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The newest version number of each of ``pairs`` that has one."""
    apps = sorted({app for app, _ in pairs})
    out: dict[tuple[str, str], int] = {}
    for i in range(0, len(apps), _IN_CHUNK):
        q = (
            select(m.Version.app, m.Version.env, func.max(m.Version.number))
            .where(m.Version.app.in_(apps[i : i + _IN_CHUNK]))
            .group_by(m.Version.app, m.Version.env)
        )
        out.update({(app, env): int(number) for app, env, number in s.execute(q)})
    return out


def check_versions(versions: Sequence[NewVersion]) -> None:
    """Refuse a version whose reason, or a key change whose kind, is not of its closed set."""
    kinds = members(ChangeKind)
    for v in versions:
        check_member(VersionReason, v.reason, "version reason")
        for change in v.changes:
            if change.change not in kinds:
                check_member(ChangeKind, change.change, f"change of key {change.key!r}")


def version_row(v: NewVersion, number: int, now: datetime) -> dict[str, Any]:
    """The row of version ``number`` of ``v``'s pair, made at ``now``."""
    return {
        "app": v.app,
        "env": v.env,
        "number": number,
        "values": dict(v.values),
        "checksum": v.checksum,
        "commit_sha": v.commit_sha,
        "reason": str(v.reason),
        "rolled_back_to": v.rolled_back_to,
        "actor": v.actor,
        "created_at": now,
        "rollouts": [dict(r) for r in v.rollouts] or None,
    }


def write_versions(s: Session, pending: Sequence[tuple[NewVersion, int, datetime]]) -> None:
    """Write each ``(version, number, made at)`` as that number of its pair (numbered by
    the caller under the writer lock; the ``(app, env, number)`` constraint is the
    backstop), with its key changes: a few statements whatever their number (``COPY`` for
    many key changes on PostgreSQL)."""
    if not pending:
        return
    versions = [v for v, _, _ in pending]
    numbers = [n for _, n, _ in pending]
    rows = [version_row(v, n, at) for v, n, at in pending]
    dialect = s.get_bind().dialect.name
    # Core inserts (one executemany each); the new ids come back with RETURNING on
    # PostgreSQL, and from one query on SQLite, where an executemany cannot return rows.
    wanted = [(v.app, v.env, n) for v, n in zip(versions, numbers, strict=True)]
    if dialect == "postgresql":  # one round trip: RETURNING, batched ("insertmanyvalues")
        t = _VERSIONS.c
        new_ids = {
            (app, env, number): int(vid)
            for vid, app, env, number in s.execute(
                insert(_VERSIONS).returning(t.id, t.app, t.env, t.number), rows
            )
        }
    else:
        s.execute(insert(_VERSIONS), rows)
        new_ids = _version_ids(s, wanted)
    ids = [new_ids[key] for key in wanted]
    count = sum(len(v.changes) for v in versions)
    if not count:
        return
    # Rows straight to the driver (an executemany, or COPY for many rows on PostgreSQL):
    # SQLAlchemy's per-row parameter and JSON type processing was most of a first apply's
    # writing time (300,000 rows); the JSON is written by the engines' one encoder.
    rows_out = (
        (version_id, c.key, str(c.change), None if c.old is None else json_dumps(c.old),
         None if c.new is None else json_dumps(c.new))
        for version_id, v in zip(ids, versions, strict=True)
        for c in v.changes
    )  # fmt: skip
    if dialect == "postgresql":
        _copy_key_changes(s, rows_out)
    else:
        s.connection().exec_driver_sql(
            'INSERT INTO key_changes (version_id, "key", change, old_value, new_value) VALUES (?, ?, ?, ?, ?)',
            list(rows_out),
        )


def _copy_key_changes(
    s: Session, changes: Iterable[tuple[int, str, str, str | None, str | None]]
) -> None:
    """``COPY key_changes FROM STDIN`` on the session's psycopg connection (same
    transaction); the values are JSON text already."""
    import psycopg

    dbapi = cast("psycopg.Connection[Any]", s.connection().connection.dbapi_connection)

    with (
        dbapi.cursor() as cur,
        cur.copy(
            "COPY key_changes (version_id, key, change, old_value, new_value) FROM STDIN"
        ) as copy,
    ):
        for row in changes:
            copy.write_row(row)


def list_versions(s: Session, app: str, env: str, limit: int | None) -> list[VersionEntry]:
    """Versions of (app, env), newest first, with commit author and changed keys."""
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
            subject=subject(message),
            changes=tuple(changes.get(v.id, ())),
        )
        for v, author_name, author_email, committed_at, message in rows
    ]


def key_history(s: Session, app: str, env: str, key: str) -> list[HistoryEntry]:
    """Every version of (app, env) that changed ``key`` or a key below it, newest first."""
    q = (
        select(m.Version, m.KeyChangeRow, m.Commit.author_name, m.Commit.author_email)
        .join(m.KeyChangeRow, m.KeyChangeRow.version_id == m.Version.id)
        .outerjoin(m.Commit, m.Commit.sha == m.Version.commit_sha)
        .where(m.Version.app == app, m.Version.env == env)
        .where(
            (m.KeyChangeRow.key == key) | m.KeyChangeRow.key.startswith(key + ".", autoescape=True)
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
