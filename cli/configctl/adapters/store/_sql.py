"""Small helpers shared by the store's aggregate modules: the clock, closed-set checks and
one dialect-aware upsert (``INSERT ... ON CONFLICT DO UPDATE``, the same on PostgreSQL and
SQLite), so a write costs one statement whatever was there before."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session

from configctl.adapters.store.engine import json_dumps

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def subject(message: str | None) -> str | None:
    """The first line of a commit message; None for a version without a recorded commit
    (the outer join gives NULL)."""
    return message.split("\n", 1)[0] if message is not None else None


@functools.cache
def members(kind: type[enum.StrEnum]) -> frozenset[str]:
    """The values of a closed set (computed once: checked for every key change written)."""
    return frozenset(str(v) for v in kind)


def check_member(kind: type[enum.StrEnum], value: str, what: str) -> None:
    allowed = members(kind)
    if value not in allowed:
        raise ValueError(f"{what} must be one of {sorted(allowed)}, not {value!r}")


def dump_json(value: Any) -> str | None:
    """A JSON column's text as the engines write it (``engine.json_dumps``); None is NULL."""
    return None if value is None else json_dumps(value)


def upsert(
    s: Session,
    model: type[DeclarativeBase],
    rows: Sequence[Mapping[str, Any]],
    *,
    keys: Sequence[str],
) -> None:
    """Insert ``rows`` into ``model``'s table; a row whose ``keys`` exist replaces every other column.

    One statement for any number of rows (``executemany``, batched by the driver). The
    session's identity map is bypassed: ORM reads of such a table in a unit of work use
    ``populate_existing`` so they never return a row as it was before an upsert.
    """
    if not rows:
        return
    table = cast("Table", model.__table__)
    dialect = s.get_bind().dialect.name
    stmt = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    columns = [c for c in rows[0] if c not in keys]
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in columns}
    )
    s.execute(stmt, [dict(r) for r in rows])
