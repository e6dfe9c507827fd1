"""The transactional outbox: messages queued with their versions (a batch in one
statement), read and marked by the relay."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.orm import Session

from configctl.adapters.store import models as m
from configctl.core.records import OutboxRecord

MAX_ERROR_TEXT = 2000


def outbox_record(row: m.OutboxRow) -> OutboxRecord:
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


def outbox_row(
    *, event_id: str, routing_key: str, payload: Mapping[str, Any], created_at: datetime
) -> dict[str, Any]:
    """The row of a new, unpublished message."""
    return {
        "event_id": event_id,
        "routing_key": routing_key,
        "payload": dict(payload),
        "created_at": created_at,
        "published_at": None,
        "attempts": 0,
        "last_error": None,
    }


def add_outbox_rows(s: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert messages (rows of :func:`outbox_row`), in order, in one statement."""
    if rows:
        s.execute(insert(cast("Table", m.OutboxRow.__table__)), [dict(r) for r in rows])


def pending_outbox(s: Session, limit: int) -> list[OutboxRecord]:
    q = (
        select(m.OutboxRow)
        .where(m.OutboxRow.published_at.is_(None))
        .order_by(m.OutboxRow.id)
        .limit(limit)
    )
    return [outbox_record(r) for r in s.scalars(q)]


def mark_published(s: Session, ids: Sequence[int], at: datetime) -> None:
    s.execute(
        update(m.OutboxRow)
        .where(m.OutboxRow.id.in_(list(ids)))
        .values(published_at=at, last_error=None)
    )


def mark_failed(s: Session, id: int, error: str) -> None:
    s.execute(
        update(m.OutboxRow)
        .where(m.OutboxRow.id == id)
        .values(attempts=m.OutboxRow.attempts + 1, last_error=error[:MAX_ERROR_TEXT])
    )


def backlog(s: Session) -> int:
    count = s.scalar(
        select(func.count()).select_from(m.OutboxRow).where(m.OutboxRow.published_at.is_(None))
    )
    return int(count or 0)


def oldest_pending(s: Session) -> datetime | None:
    oldest: datetime | None = s.scalar(
        select(func.min(m.OutboxRow.created_at)).where(m.OutboxRow.published_at.is_(None))
    )
    if oldest is not None and oldest.tzinfo is None:  # func.min loses the column type
        oldest = oldest.replace(tzinfo=UTC)
    return oldest
