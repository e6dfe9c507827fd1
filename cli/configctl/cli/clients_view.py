"""The "running clients" section of ``configctl status APP ENV`` (kept apart from the rest
of ``status`` so the two evolve separately).

Clients report to Redis (``<prefix>:clients:<app>:<env>``), so the section needs the
Redis URL: ``--redis`` or ``CONFIGCTL_REDIS``, the same variable the reconciler and the
SDK read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from configctl.services.clients import ClientsSummary

RedisOption = Annotated[
    str | None,
    typer.Option("--redis", envvar="CONFIGCTL_REDIS", help="Redis URL where running clients report (status APP ENV).", show_default=False),
]
RedisPrefixOption = Annotated[
    str,
    typer.Option("--redis-prefix", envvar="CONFIGCTL_REDIS_PREFIX", help="Prefix of the Redis keys."),
]


def clients_summary(app: str, env: str, redis: str | None, prefix: str, served_version: int | None) -> ClientsSummary | None:
    """The running clients of (app, env), or None without a Redis URL."""
    if not redis:
        return None
    from configctl.adapters.client_reports import RedisClientSide
    from configctl.services.clients import clients_summary as summarize

    side = RedisClientSide(redis, prefix=prefix)
    try:
        return summarize(side, app, env, now=datetime.now(UTC), served_version=served_version)
    finally:
        side.close()


def _ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "-"
    seconds = max(0, int((now - at).total_seconds()))
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


def clients_text(app: str, env: str, summary: ClientsSummary | None) -> list[str]:
    """Lines for the text form of ``status``."""
    if summary is None:
        return [f"clients of {app}/{env}: unknown (client reports are in Redis: pass --redis or set CONFIGCTL_REDIS)"]
    if not summary.reachable:
        return [f"clients of {app}/{env}: unknown ({summary.error})"]
    now = datetime.now(UTC)
    held = ", ".join(f"v{v}: {n}" if v is not None else f"none: {n}" for v, n in sorted(summary.versions.items(), key=lambda kv: kv[0] or 0))
    lines = [f"clients of {app}/{env}:  {len(summary.instances)} running" + (f" ({held})" if held else "")]
    for r in summary.instances:
        extra = ""
        if r.state != "fresh":
            extra += f", stale since {_ago(r.stale_since, now)}"
        if r.refused_version is not None:
            extra += f", REFUSED v{r.refused_version}: {r.refused_reason}"
        lines.append(f"  {r.instance}  v{r.version if r.version is not None else '-'} since {_ago(r.since, now)}{extra}")
    if summary.behind:
        lines.append(f"  {len(summary.behind)} client(s) behind the served version v{summary.served_version}")
    return lines
