"""Pins and quarantines: an (app, env) held at a version by a rollback until released, and
the values of the commit that rollback replaced, kept out of service until a newer commit
changes the pair (table ``quarantines``, one row per pair)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from configctl.adapters.store import models as m
from configctl.adapters.store._sql import Clock, upsert
from configctl.core.records import PinRecord


def pin_record(row: m.Pin) -> PinRecord:
    return PinRecord(
        app=row.app,
        env=row.env,
        version=row.version,
        reason=row.reason,
        actor=row.actor,
        created_at=row.created_at,
        quarantined_commit=row.quarantined_commit,
    )


def pins(s: Session) -> list[PinRecord]:
    return [
        pin_record(r)
        for r in s.scalars(
            select(m.Pin).order_by(m.Pin.app, m.Pin.env).execution_options(populate_existing=True)
        )
    ]


def set_pin(
    s: Session,
    *,
    app: str,
    env: str,
    version: int,
    reason: str,
    actor: str,
    quarantined_commit: str | None,
    clock: Clock,
) -> None:
    row = {
        "app": app,
        "env": env,
        "version": version,
        "reason": reason,
        "actor": actor,
        "created_at": clock(),
        "quarantined_commit": quarantined_commit,
    }
    upsert(s, m.Pin, [row], keys=["app", "env"])


def clear_pin(s: Session, app: str, env: str) -> bool:
    result = s.execute(delete(m.Pin).where(m.Pin.app == app, m.Pin.env == env))
    return bool(getattr(result, "rowcount", 0))


def quarantine_value(row: m.Quarantine) -> dict[str, Any]:
    """A quarantine as the services and outputs show it: ``{commit, checksum, version}``."""
    return {"commit": row.commit_sha, "checksum": row.checksum, "version": row.version}


def quarantine(
    s: Session, *, app: str, env: str, commit: str | None, checksum: str, version: int, clock: Clock
) -> None:
    row = {
        "app": app,
        "env": env,
        "commit_sha": commit,
        "checksum": checksum,
        "version": version,
        "created_at": clock(),
    }
    upsert(s, m.Quarantine, [row], keys=["app", "env"])


def get_quarantine(s: Session, app: str, env: str) -> dict[str, Any] | None:
    row = s.scalars(
        select(m.Quarantine)
        .where(m.Quarantine.app == app, m.Quarantine.env == env)
        .execution_options(populate_existing=True)
    ).first()
    return quarantine_value(row) if row is not None else None


def lift_quarantine(s: Session, app: str, env: str) -> bool:
    result = s.execute(delete(m.Quarantine).where(m.Quarantine.app == app, m.Quarantine.env == env))
    return bool(getattr(result, "rowcount", 0))


def quarantines(s: Session) -> dict[tuple[str, str], dict[str, Any]]:
    rows = s.scalars(
        select(m.Quarantine)
        .order_by(m.Quarantine.app, m.Quarantine.env)
        .execution_options(populate_existing=True)
    )
    return {(r.app, r.env): quarantine_value(r) for r in rows}
