"""What a running SDK client reports about itself, and its JSON form (pure).

Each client writes one report per instance into Redis (``<prefix>:clients:<app>:<env>``,
a hash: field = instance id, value = :func:`encode_report`), renewed on every refresh, so
``configctl status APP ENV`` can show which versions the running clients hold and which
refused a version. A report older than its ``ttl`` is dead (the client stopped or lost
Redis); readers drop it (:func:`live_reports`). No configuration value ever appears here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

__all__ = ["ClientReport", "decode_report", "encode_report", "live_reports"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientReport:
    """One client instance's view of one (app, env)."""

    instance: str
    """The instance id (canary rollouts select on it)."""
    version: int | None
    """The version it serves (None: it has nothing yet)."""
    since: datetime | None
    """When it adopted that version (UTC)."""
    state: str
    """``fresh`` (its source answered on the last refresh) or ``stale``."""
    stale_since: datetime | None
    """When it lost its source, while stale."""
    refused_version: int | None
    """The newest version it refused (it failed the app's schema), if any."""
    refused_reason: str | None
    """Why, in one line (the schema error; never a value)."""
    seen: datetime
    """When the report was written (UTC)."""
    ttl: float
    """Seconds after ``seen`` at which the report counts as dead."""
    host: str = ""
    pid: int = 0

    def alive(self, now: datetime) -> bool:
        return self.seen + timedelta(seconds=self.ttl) >= now


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def _time(raw: object) -> datetime | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ValueError("time is not a string")
    at = datetime.fromisoformat(raw)
    if at.tzinfo is None:
        raise ValueError("time has no zone")
    return at


def encode_report(report: ClientReport) -> str:
    doc = asdict(report)
    for name in ("since", "stale_since", "seen"):
        doc[name] = _iso(getattr(report, name))
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def decode_report(text: str | bytes) -> ClientReport:
    """Parse :func:`encode_report`'s output; ValueError if it is not a report."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("report is not an object")
    seen = _time(doc.get("seen"))
    if seen is None:
        raise ValueError("report has no time")

    def opt_int(name: str) -> int | None:
        value = doc.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"report {name} is not an integer")
        return value

    return ClientReport(
        instance=str(doc.get("instance", "")),
        version=opt_int("version"),
        since=_time(doc.get("since")),
        state=str(doc.get("state", "")),
        stale_since=_time(doc.get("stale_since")),
        refused_version=opt_int("refused_version"),
        refused_reason=None if doc.get("refused_reason") is None else str(doc["refused_reason"]),
        seen=seen,
        ttl=float(doc.get("ttl", 0)),
        host=str(doc.get("host", "")),
        pid=int(doc.get("pid", 0) or 0),
    )


def live_reports(reports: Iterable[ClientReport], now: datetime) -> list[ClientReport]:
    """The reports still alive at ``now``, by instance id."""
    return sorted((r for r in reports if r.alive(now)), key=lambda r: r.instance)
