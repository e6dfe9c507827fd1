"""The audit log: appending rows (a batch in one statement) and reading them back filtered."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from configctl.adapters.store import models as m
from configctl.core.records import AuditRecord


def audit_record(row: m.AuditRow) -> AuditRecord:
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


def audit_row(
    *,
    at: datetime,
    action: str,
    actor: str,
    host: str,
    app: str | None,
    env: str | None,
    commit_sha: str | None,
    version: int | None,
    details: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The row of one audit entry (``details`` is JSON; no secret values in it)."""
    return {
        "at": at,
        "actor": actor,
        "host": host,
        "action": action,
        "app": app,
        "env": env,
        "commit_sha": commit_sha,
        "version": version,
        "details": dict(details or {}),
    }


def add_audit_rows(s: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert audit rows (of :func:`audit_row`), in order, in one statement."""
    if rows:
        s.execute(insert(cast("Table", m.AuditRow.__table__)), [dict(r) for r in rows])


def audit(
    s: Session,
    *,
    app: str | None,
    env: str | None,
    actor: str | None,
    since: datetime | None,
    limit: int | None,
    action: str | None,
) -> list[AuditRecord]:
    """Audit rows matching every given filter, newest first."""
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
    return [audit_record(r) for r in s.scalars(q)]
