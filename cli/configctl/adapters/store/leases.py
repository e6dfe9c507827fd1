"""Leader leases: the fencing epoch of each lease name, bumped at every change of leader
and checked inside every fenced unit of work."""

from __future__ import annotations

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from configctl.adapters.store import models as m
from configctl.adapters.store._sql import Clock
from configctl.errors import FencingError


def check_fence(s: Session | Connection, name: str, epoch: int, *, postgres: bool) -> None:
    """Raise :class:`FencingError` unless lease ``name`` is still at ``epoch`` (read ``FOR
    SHARE`` on PostgreSQL, so a new leader's epoch bump waits for this transaction)."""
    q = select(m.LeaderLease.epoch).where(m.LeaderLease.name == name)
    if postgres:
        q = q.with_for_update(read=True)
    require_epoch(name, epoch, s.scalar(q))


def require_epoch(name: str, epoch: int, current: int | None) -> None:
    """Raise :class:`FencingError` unless the epoch read for lease ``name`` is ``epoch``."""
    if current != epoch:
        raise FencingError(
            f"leader epoch {epoch} of {name!r} is stale (the store has {current}): "
            "another replica has taken over; nothing was written"
        )


def acquire_epoch(s: Session, name: str, holder: str, *, postgres: bool, clock: Clock) -> int:
    now = clock()
    row = s.get(m.LeaderLease, name, with_for_update=postgres)
    if row is None:
        row = m.LeaderLease(name=name, holder=holder, epoch=1, acquired_at=now, renewed_at=now)
        s.add(row)
    else:
        row.epoch += 1
        row.holder = holder
        row.acquired_at = now
        row.renewed_at = now
    s.flush()
    return int(row.epoch)


def renew_lease(s: Session, name: str, holder: str, epoch: int, *, clock: Clock) -> bool:
    result = s.execute(
        update(m.LeaderLease)
        .where(
            m.LeaderLease.name == name, m.LeaderLease.holder == holder, m.LeaderLease.epoch == epoch
        )
        .values(renewed_at=clock())
    )
    return bool(getattr(result, "rowcount", 0))


def current_epoch(s: Session, name: str) -> int | None:
    epoch = s.scalar(select(m.LeaderLease.epoch).where(m.LeaderLease.name == name))
    return int(epoch) if epoch is not None else None
