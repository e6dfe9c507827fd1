"""Client SDK settings: typed, documented once, read from arguments or ``CONFIGCTL_*``.

The SDK reads the same environment variables as the CLI and the reconciler
(``CONFIGCTL_REDIS``, ``CONFIGCTL_REDIS_PREFIX``, ``CONFIGCTL_AMQP``, ``CONFIGCTL_EXCHANGE``,
``CONFIGCTL_SNAPSHOT_DIR``, ``CONFIGCTL_REPO``), so a service deployed next to a reconciler
needs no SDK-specific configuration. Precedence is written here and nowhere else:
constructor argument (given, not None) > environment variable > default.
:func:`from_env` is a pure function of a mapping so it is tested without ``os.environ``.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from configctl.errors import UsageError

__all__ = ["ClientSettings", "from_env"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    """Where a client reads its snapshot, how often it refreshes, where it keeps its copy."""

    redis: str | None = None
    """Redis URL (``CONFIGCTL_REDIS``). Without it the client reads the snapshot folder."""
    redis_prefix: str = "configctl"
    """Prefix of every Redis key (``CONFIGCTL_REDIS_PREFIX``; docs/redis-layout.md)."""
    amqp: str | None = None
    """RabbitMQ URL (``CONFIGCTL_AMQP``). Without it changes are noticed on the TTL only."""
    exchange: str = "configctl.changes"
    """The reconciler's topic exchange (``CONFIGCTL_EXCHANGE``)."""
    repo: str | None = None
    """The config repository (``CONFIGCTL_REPO``): the embedded default's snapshot folder
    is ``<repo>/.configctl/snapshots``, and the app's JSON schema is read from it."""
    snapshot_dir: str | None = None
    """Snapshot folder (``CONFIGCTL_SNAPSHOT_DIR``); default ``<repo or cwd>/.configctl/snapshots``."""
    cache_dir: str | None = None
    """Where the last-known-good file lives (``CONFIGCTL_CACHE_DIR``); default
    ``$XDG_CACHE_HOME/configctl`` (``~/.cache/configctl``)."""
    refresh_interval: float = 30.0
    """Seconds between TTL refreshes (``CONFIGCTL_REFRESH_INTERVAL``), jittered by ±20 %
    so replicas do not poll in step. Notifications make changes arrive sooner; the TTL
    bounds the staleness when RabbitMQ is down or a message was missed."""
    report_ttl: float = 90.0
    """Seconds a client's report in Redis lives unless renewed (``CONFIGCTL_REPORT_TTL``);
    reports are renewed every ``refresh_interval``, so a dead client vanishes from
    ``configctl status`` within this time. 0 disables reporting."""
    notify_spread: float = 0.03
    """Seconds (``CONFIGCTL_NOTIFY_SPREAD``): after a notification each process waits a random
    0..this before its one Redis read, so a fleet's reads do not land in one instant (a
    process makes one read for all its clients). 0 fetches at once."""
    instance_id: str | None = None
    """This instance's id (``CONFIGCTL_INSTANCE_ID``): canary rollouts select on it and
    reports are keyed by it. Default: ``<hostname>-<pid>-<random>``."""
    timeout: float = 2.0
    """Socket timeout of one Redis command, seconds. Short, so a stalled Redis delays a
    refresh (never a ``get``) by at most this much."""

    def __post_init__(self) -> None:
        if self.refresh_interval <= 0:
            raise UsageError("refresh_interval must be positive seconds")
        if self.report_ttl < 0:
            raise UsageError("report_ttl must be >= 0 seconds")
        if not 0 <= self.notify_spread <= 5:
            raise UsageError("notify_spread must be between 0 and 5 seconds")
        if self.timeout <= 0:
            raise UsageError("timeout must be positive seconds")
        if not self.redis_prefix or any(ch.isspace() for ch in self.redis_prefix):
            raise UsageError("the Redis prefix must be non-empty and contain no whitespace")

    @property
    def snapshot_path(self) -> Path:
        """The snapshot folder of the embedded mode (what ``configctl apply`` keeps current)."""
        if self.snapshot_dir:
            return Path(self.snapshot_dir)
        return Path(self.repo or os.getcwd()) / ".configctl" / "snapshots"

    @property
    def cache_path(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir)
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "configctl"

    @property
    def source_tag(self) -> str:
        """A short, secret-free tag of where snapshots come from.

        The last-known-good file name carries it, so two clients of the same (app, env)
        reading different Redis prefixes or folders never start from each other's copy
        (a copy from elsewhere could hold a higher version and block every real one).
        """
        where = f"redis:{_redact(self.redis)}:{self.redis_prefix}" if self.redis else f"dir:{self.snapshot_path.absolute()}"
        return hashlib.sha256(where.encode()).hexdigest()[:10]

    def lkg_file(self, app: str, env: str) -> Path:
        return self.cache_path / f"{app}.{env}.{self.source_tag}.json"

    def resolved_instance_id(self) -> str:
        return self.instance_id or _default_instance_id()


_INSTANCE_ID: str | None = None


def _default_instance_id() -> str:
    """One id per process: every client in it reports under the same instance."""
    global _INSTANCE_ID
    if _INSTANCE_ID is None:
        _INSTANCE_ID = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return _INSTANCE_ID


def _redact(url: str | None) -> str:
    """The URL without user info (the tag is a hash, but keep secrets out of it anyway)."""
    if not url:
        return ""
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.rpartition("@")[2]


_ENV: Mapping[str, tuple[str, type]] = {
    "redis": ("CONFIGCTL_REDIS", str),
    "redis_prefix": ("CONFIGCTL_REDIS_PREFIX", str),
    "amqp": ("CONFIGCTL_AMQP", str),
    "exchange": ("CONFIGCTL_EXCHANGE", str),
    "repo": ("CONFIGCTL_REPO", str),
    "snapshot_dir": ("CONFIGCTL_SNAPSHOT_DIR", str),
    "cache_dir": ("CONFIGCTL_CACHE_DIR", str),
    "refresh_interval": ("CONFIGCTL_REFRESH_INTERVAL", float),
    "report_ttl": ("CONFIGCTL_REPORT_TTL", float),
    "instance_id": ("CONFIGCTL_INSTANCE_ID", str),
    "notify_spread": ("CONFIGCTL_NOTIFY_SPREAD", float),
}


def from_env(environ: Mapping[str, str], **arguments: object) -> ClientSettings:
    """Settings from arguments (given, not None) over environment variables over defaults."""
    known = {f.name for f in fields(ClientSettings)}
    unknown = set(arguments) - known
    if unknown:
        raise TypeError(f"unknown client setting(s): {', '.join(sorted(unknown))}")
    values: dict[str, object] = {}
    for name, (var, kind) in _ENV.items():
        raw = environ.get(var, "")
        if raw != "":
            try:
                values[name] = kind(raw)
            except ValueError as exc:
                raise UsageError(f"{var}={raw!r} is not a valid {kind.__name__}") from exc
    for name, value in arguments.items():
        if value is not None:
            values[name] = str(value) if isinstance(value, os.PathLike) else value
    return ClientSettings(**values)  # type: ignore[arg-type]  # keys and types checked above
