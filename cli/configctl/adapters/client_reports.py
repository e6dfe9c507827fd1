"""Redis side of the client SDK: cheap version probes and per-instance client reports.

Keys (documented in docs/redis-layout.md):

- ``<prefix>:version:<app>:<env>`` -- read by :meth:`SnapshotProbe.version`, the cheap
  "is my copy current?" probe of a TTL refresh (the snapshot itself is fetched only when
  the version moved, through :class:`configctl.adapters.redis_cache.RedisCache`).
- ``<prefix>:clients:<app>:<env>`` -- a hash, field = instance id, value = the JSON of
  :class:`configctl.core.clients.ClientReport`. Each write renews the key's ``EXPIRE``
  (the report TTL); a field whose ``seen + ttl`` has passed is dead and dropped by the
  reader, so a crashed client vanishes without anyone deleting it.

Every redis-py and socket error becomes :class:`configctl.errors.CacheError`.
One instance is thread-safe (redis-py's connection pool is).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from configctl.adapters.redis_cache import _wrapped
from configctl.core.cache import require_name
from configctl.core.clients import ClientReport, decode_report, encode_report, live_reports

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = ["AsyncRedisClientSide", "RedisClientSide", "reports_key"]

log = logging.getLogger(__name__)


def reports_key(prefix: str, app: str, env: str) -> str:
    return f"{prefix}:clients:{require_name('app', app)}:{require_name('env', env)}"


def _version_key(prefix: str, app: str, env: str) -> str:
    return f"{prefix}:version:{require_name('app', app)}:{require_name('env', env)}"


def _snapshot_key(prefix: str, app: str, env: str) -> str:
    return f"{prefix}:snapshot:{require_name('app', app)}:{require_name('env', env)}"


def _decode_all(raw: dict[Any, Any], now: datetime) -> tuple[list[ClientReport], list[str]]:
    reports: list[ClientReport] = []
    dead: list[str] = []
    for field, text in raw.items():
        try:
            report = decode_report(text)
        except ValueError:
            log.warning("a malformed client report (instance %r) was ignored", field)
            dead.append(str(field))
            continue
        if report.alive(now):
            reports.append(report)
        else:
            dead.append(str(field))
    return live_reports(reports, now), dead


def _options(timeout: float) -> dict[str, Any]:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # One attempt per command (see RedisCache): the SDK's refresh has its own backoff,
    # and a get() never waits on Redis at all.
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
        "decode_responses": True,
        "client_name": "configctl-sdk",
    }


class RedisClientSide:
    """The version probe, snapshot text and client reports, over one connection pool."""

    def __init__(self, url: str, *, prefix: str = "configctl", timeout: float = 2.0) -> None:
        import redis

        self.prefix = prefix
        self._client: redis.Redis = redis.Redis.from_url(url, **_options(timeout))

    def version(self, app: str, env: str) -> int | None:
        """The version hint of (app, env), or None if absent or unreadable."""
        with _wrapped("read"):
            raw: Any = self._client.get(_version_key(self.prefix, app, env))
        try:
            return None if raw is None else int(raw)
        except ValueError:
            return None

    def snapshot_text(self, app: str, env: str) -> str | None:
        with _wrapped("read"):
            raw: Any = self._client.get(_snapshot_key(self.prefix, app, env))
        return None if raw is None else str(raw)

    def report(self, app: str, env: str, report: ClientReport) -> None:
        key = reports_key(self.prefix, app, env)
        with _wrapped("write"):
            pipe = self._client.pipeline(transaction=False)
            pipe.hset(key, report.instance, encode_report(report))
            pipe.expire(key, max(1, round(report.ttl)))
            pipe.execute()

    def withdraw(self, app: str, env: str, instance: str) -> None:
        with _wrapped("write"):
            self._client.hdel(reports_key(self.prefix, app, env), instance)

    def reports(self, app: str, env: str, now: datetime) -> list[ClientReport]:
        """The live reports of (app, env); dead fields are deleted on the way."""
        key = reports_key(self.prefix, app, env)
        with _wrapped("read"):
            raw: Any = self._client.hgetall(key)
        live, dead = _decode_all(dict(raw), now)
        if dead:
            with contextlib.suppress(Exception), _wrapped("write"):
                self._client.hdel(key, *dead)
        return live

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


class AsyncRedisClientSide:
    """:class:`RedisClientSide` on ``redis.asyncio`` (for :class:`AsyncConfigClient`)."""

    def __init__(self, url: str, *, prefix: str = "configctl", timeout: float = 2.0) -> None:
        import redis.asyncio

        self.prefix = prefix
        self._client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(url, **_options(timeout))

    async def version(self, app: str, env: str) -> int | None:
        with _wrapped("read"):
            raw: Any = await self._client.get(_version_key(self.prefix, app, env))
        try:
            return None if raw is None else int(raw)
        except ValueError:
            return None

    async def snapshot_text(self, app: str, env: str) -> str | None:
        with _wrapped("read"):
            raw: Any = await self._client.get(_snapshot_key(self.prefix, app, env))
        return None if raw is None else str(raw)

    async def report(self, app: str, env: str, report: ClientReport) -> None:
        key = reports_key(self.prefix, app, env)
        with _wrapped("write"):
            pipe = self._client.pipeline(transaction=False)
            pipe.hset(key, report.instance, encode_report(report))
            pipe.expire(key, max(1, round(report.ttl)))
            await pipe.execute()

    async def withdraw(self, app: str, env: str, instance: str) -> None:
        with _wrapped("write"):
            await self._client.hdel(reports_key(self.prefix, app, env), instance)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.aclose()
