"""The `audit` read use case: the audit log filtered by pair, actor and time.

``--since`` takes a date, an ISO time or a duration back from ``now`` (an input, so the
parsing is testable without a clock).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from configctl.core.ports import AuditReader
from configctl.core.records import AuditRecord
from configctl.errors import UsageError

__all__ = ["audit", "parse_since"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, *, now: datetime) -> datetime:
    """`2026-11-01`, an ISO time, or a duration back from ``now``: `30m`, `12h`, `7d`.

    A time without a zone is UTC.
    """
    if text and text[-1] in _UNITS and text[:-1].isdigit():
        return now - timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(
            f"--since {text!r}: use a date (2026-11-01), an ISO time or a duration (30m, 12h, 7d)"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def audit(
    store: AuditReader,
    *,
    app: str | None = None,
    env: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[AuditRecord]:
    """Audit rows matching every given filter, newest first."""
    return store.audit(app=app, env=env, actor=actor, since=since, limit=limit)
