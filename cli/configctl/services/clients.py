"""Which versions the running SDK clients of one (app, env) hold, for ``configctl status``.

Read from the reports the clients write with a TTL (``core.clients``); a client that
stopped or lost Redis drops out when its report expires. Pure apart from the port.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from configctl.core.clients import ClientReport
from configctl.core.ports import ClientReportsPort
from configctl.errors import CacheError

__all__ = ["ClientsSummary", "clients_summary"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientsSummary:
    app: str
    env: str
    reachable: bool
    """False when Redis could not be read (``error`` says why)."""
    error: str | None
    instances: tuple[ClientReport, ...]
    served_version: int | None
    """The version the store serves, when known: clients behind it are lagging."""

    @property
    def versions(self) -> dict[int | None, int]:
        """How many instances hold each version."""
        return dict(Counter(r.version for r in self.instances))

    @property
    def refusals(self) -> tuple[ClientReport, ...]:
        return tuple(r for r in self.instances if r.refused_version is not None)

    @property
    def behind(self) -> tuple[ClientReport, ...]:
        if self.served_version is None:
            return ()
        return tuple(r for r in self.instances if (r.version or 0) < self.served_version)

    def to_dict(self) -> dict[str, object]:
        def iso(at: datetime | None) -> str | None:
            return None if at is None else at.isoformat().replace("+00:00", "Z")

        return {
            "app": self.app,
            "env": self.env,
            "reachable": self.reachable,
            "error": self.error,
            "served_version": self.served_version,
            "count": len(self.instances),
            "versions": {str(v) if v is not None else "none": n for v, n in sorted(self.versions.items(), key=lambda kv: kv[0] or 0)},
            "refused": len(self.refusals),
            "behind": len(self.behind),
            "instances": [
                {
                    "instance": r.instance,
                    "version": r.version,
                    "since": iso(r.since),
                    "state": r.state,
                    "stale_since": iso(r.stale_since),
                    "refused_version": r.refused_version,
                    "refused_reason": r.refused_reason,
                    "seen": iso(r.seen),
                    "host": r.host,
                    "pid": r.pid,
                }
                for r in self.instances
            ],
        }


def clients_summary(
    port: ClientReportsPort, app: str, env: str, *, now: datetime, served_version: int | None = None
) -> ClientsSummary:
    """The live client reports of (app, env); an unreachable Redis is a value, not an error."""
    try:
        reports = port.reports(app, env, now)
    except CacheError as exc:
        return ClientsSummary(app=app, env=env, reachable=False, error=exc.message, instances=(), served_version=served_version)
    return ClientsSummary(app=app, env=env, reachable=True, error=None, instances=tuple(reports), served_version=served_version)
