"""Versions and their history: the newest version of each pair, one version, the versions
of a pair with their commits and key changes, and writing a batch of versions.

A version carries its key changes (``versions.changes``, a JSON array in key order; see
:func:`change_items`), so writing a batch of versions is one ``executemany`` insert
whatever their number (on PostgreSQL the unit of work writes them in its one statement,
``pg_batch.flush``). Drivers may split an ``executemany`` into pages of rows (SQLAlchemy's
"insertmanyvalues", 1,000 rows a page): a statement per page, never one per row.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from configctl.adapters.store import models as m
from configctl.adapters.store._sql import check_member, members, subject
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


_BY_KEY = attrgetter("key")


def change_items(
    changes: Sequence[KeyChange], made: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The JSON form of a version's key changes (``versions.changes``): in key order, each
    ``{"key", "change", "old", "new"}`` with ``old``/``new`` left out when None.

    Pairs share equal key changes (``core.plan``): each object is made into an item once
    (``made``, by object id, shared by the versions of one write; the objects outlive
    it, so an id is not reused meanwhile)."""
    out: list[dict[str, Any]] = []
    for c in sorted(changes, key=_BY_KEY):
        item = made.get(id(c))
        if item is None:
            item = made[id(c)] = {"key": c.key, "change": str(c.change)}
            if c.old is not None:
                item["old"] = c.old
            if c.new is not None:
                item["new"] = c.new
        out.append(item)
    return out


def stored_changes(items: Iterable[Mapping[str, Any]] | None) -> tuple[KeyChange, ...]:
    """The key changes of a ``versions.changes`` array."""
    return tuple(
        KeyChange(key=i["key"], change=i["change"], old=i.get("old"), new=i.get("new"))
        for i in items or ()
    )


def version_rows(pending: Sequence[tuple[NewVersion, int, datetime]]) -> list[dict[str, Any]]:
    """The rows of ``(version, number, made at)`` (key changes shared: :func:`change_items`)."""
    made: dict[int, dict[str, Any]] = {}
    return [version_row(v, n, at, made) for v, n, at in pending]


def version_row(
    v: NewVersion, number: int, now: datetime, made: dict[int, dict[str, Any]]
) -> dict[str, Any]:
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
        "changes": change_items(v.changes, made),
    }


def write_versions(s: Session, pending: Sequence[tuple[NewVersion, int, datetime]]) -> None:
    """Write each ``(version, number, made at)`` as that number of its pair (numbered by
    the caller under the writer lock; the ``(app, env, number)`` constraint is the
    backstop), key changes included: one ``executemany`` whatever their number."""
    if pending:
        s.execute(insert(_VERSIONS), version_rows(pending))


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
            changes=stored_changes(v.changes),
        )
        for v, author_name, author_email, committed_at, message in s.execute(q)
    ]


def key_history(s: Session, app: str, env: str, key: str) -> list[HistoryEntry]:
    """Every version of (app, env) that changed ``key`` or a key below it, newest first
    (the pair's versions are read without their snapshots; their changes are filtered here)."""
    below = key + "."
    q = (
        select(
            m.Version.number,
            m.Version.changes,
            m.Version.commit_sha,
            m.Version.actor,
            m.Version.reason,
            m.Version.created_at,
            m.Commit.author_name,
            m.Commit.author_email,
        )
        .outerjoin(m.Commit, m.Commit.sha == m.Version.commit_sha)
        .where(m.Version.app == app, m.Version.env == env)
        .order_by(m.Version.number.desc())
    )
    return [
        HistoryEntry(
            app=app,
            env=env,
            key=c.key,
            version=number,
            change=c.change,
            old=c.old,
            new=c.new,
            commit_sha=sha,
            author_name=author_name,
            author_email=author_email,
            actor=actor,
            reason=reason,
            created_at=created_at,
        )
        for number, items, sha, actor, reason, created_at, author_name, author_email in s.execute(q)
        for c in stored_changes(
            i for i in items or () if i["key"] == key or i["key"].startswith(below)
        )
    ]
