"""Commits and the sync cursor: what configctl did about each commit it looked at, and the
named cursors of the sync loop (``last_applied_commit``, the reconciler's cursor...).

Both writes are upserts: one statement whether or not the row exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from configctl.adapters.store import models as m
from configctl.adapters.store._sql import Clock, check_member, upsert
from configctl.core.records import CommitInfo, CommitRecord, CommitStatus


def commit_record(row: m.Commit) -> CommitRecord:
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


def commit_row(
    info: CommitInfo, status: str, reason: str | None, *, recorded_at: datetime
) -> dict[str, Any]:
    """The row of a commit with what configctl did about it (``status`` checked)."""
    check_member(CommitStatus, status, "commit status")
    return {
        "sha": info.sha,
        "parents": list(info.parents),
        "author_name": info.author_name,
        "author_email": info.author_email,
        "authored_at": info.authored_at,
        "committer_name": info.committer_name,
        "committer_email": info.committer_email,
        "committed_at": info.committed_at,
        "message": info.message,
        "signature_status": str(info.signature_status),
        "signer": info.signer,
        "status": str(status),
        "reason": reason,
        "recorded_at": recorded_at,
    }


def add_commit_rows(s: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert or update commit rows (of :func:`commit_row`; a rejected commit may be
    recorded again later), in one statement."""
    upsert(s, m.Commit, rows, keys=["sha"])


def commit_status(s: Session, sha: str) -> str | None:
    """``applied``/``rejected``/``superseded``/``quarantined``, or None if never recorded."""
    return s.scalar(select(m.Commit.status).where(m.Commit.sha == sha))


def commits(s: Session, status: str | None, limit: int | None) -> list[CommitRecord]:
    """Recorded commits (optionally of one status), most recently recorded first."""
    q = select(m.Commit).order_by(m.Commit.recorded_at.desc(), m.Commit.sha)
    if status is not None:
        q = q.where(m.Commit.status == status)
    if limit is not None:
        q = q.limit(limit)
    return [commit_record(r) for r in s.scalars(q)]


def get_commit(s: Session, sha: str) -> CommitRecord | None:
    row = s.scalars(select(m.Commit).where(m.Commit.sha == sha)).first()
    return commit_record(row) if row is not None else None


def sync_state(s: Session, name: str) -> Any:
    """The JSON value stored under ``name``, or None."""
    return s.scalar(select(m.SyncState.value).where(m.SyncState.name == name))


def sync_states(s: Session, prefix: str) -> dict[str, Any]:
    """Every non-null sync-state value whose name starts with ``prefix``, in one query."""
    rows = s.execute(
        select(m.SyncState.name, m.SyncState.value).where(
            m.SyncState.name.startswith(prefix, autoescape=True)
        )
    )
    return {name: value for name, value in rows if value is not None}


def set_sync_state(s: Session, name: str, value: Any, *, clock: Clock) -> None:
    """Store a JSON value under ``name``; ``None`` removes it."""
    if value is None:
        s.execute(delete(m.SyncState).where(m.SyncState.name == name))
        return
    upsert(
        s,
        m.SyncState,
        [{"name": name, "value": value, "updated_at": clock()}],
        keys=["name"],
    )


def set_sync_states(s: Session, values: Mapping[str, Any], *, clock: Clock) -> None:
    """Store several cursors: one upsert for the values, one delete for the ``None`` ones."""
    gone = [name for name, value in values.items() if value is None]
    if gone:
        s.execute(delete(m.SyncState).where(m.SyncState.name.in_(gone)))
    now = clock()
    rows = [{"name": n, "value": v, "updated_at": now} for n, v in values.items() if v is not None]
    upsert(s, m.SyncState, rows, keys=["name"])
