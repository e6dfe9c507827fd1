"""``AsyncConfigClient``: :class:`ConfigClient`'s API for asyncio programs, on ``redis.asyncio``.

Reads (``get``, the typed getters, ``get_all``, ``is_enabled``, ``explain``) are plain
methods: they never do I/O. Loading and refreshing are coroutines. Notifications come
from the same process-wide RabbitMQ connection as the threaded client (one per process);
the notifier thread hands each one to the client's event loop, where the fetch runs on
``redis.asyncio``. Listeners run on the event loop; a coroutine listener is awaited.

The call shape users of classic config services know works as is::

    client = AsyncConfigClient("checkout", "production")
    await client.initialize()
    client.on_change(callback)
    await client.start_auto_refresh(interval=60)
    ...
    await client.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from configctl.client._core import ChangeEvent
from configctl.client._reader import Reader
from configctl.client.settings import from_env
from configctl.core.backoff import backoff
from configctl.core.cache import CachedSnapshot
from configctl.errors import CacheError

__all__ = ["AsyncConfigClient"]

log = logging.getLogger("configctl.client")


class AsyncConfigClient(Reader):
    """The configuration of one (app, env) for an asyncio program."""

    def __init__(
        self,
        app: str,
        env: str,
        *,
        redis: str | None = None,
        redis_prefix: str | None = None,
        amqp: str | None = None,
        exchange: str | None = None,
        repo: str | os.PathLike[str] | None = None,
        snapshot_dir: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        refresh_interval: float | None = None,
        report_ttl: float | None = None,
        instance_id: str | None = None,
        schema: Mapping[str, Any] | str | os.PathLike[str] | None = None,
        auto_refresh: bool = True,
        clock: Callable[[], datetime] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        settings = from_env(
            os.environ if environ is None else environ,
            redis=redis, redis_prefix=redis_prefix, amqp=amqp, exchange=exchange, repo=repo,
            snapshot_dir=snapshot_dir, cache_dir=cache_dir, refresh_interval=refresh_interval,
            report_ttl=report_ttl, instance_id=instance_id,
        )  # fmt: skip
        self._bind(app, env, settings, schema=schema, clock=clock)
        self._auto = auto_refresh
        self._interval = settings.refresh_interval
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        self._side: Any = None
        self._report_key: tuple[str, ...] = ()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ttl_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._registered = False
        self._initialized = False
        self._closed = False
        self._refresh_lock: asyncio.Lock | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    async def initialize(self) -> AsyncConfigClient:
        """Load the snapshot (or the last-known-good file) and subscribe to notifications.

        Never raises because a server is down: the client then serves the last-known-good
        version (or defaults) and keeps trying.
        """
        if self._initialized:
            return self
        self._initialized = True
        self._loop = asyncio.get_running_loop()
        self._refresh_lock = asyncio.Lock()
        if self.settings.redis:
            from configctl.adapters.client_reports import AsyncRedisClientSide

            self._side = AsyncRedisClientSide(
                self.settings.redis,
                prefix=self.settings.redis_prefix,
                timeout=self.settings.timeout,
            )
            self._report_key = (
                "report",
                self._core.instance_id,
                self.settings.redis,
                self.settings.redis_prefix,
                self.app,
                self.env,
            )
            self._hub.acquire(self._report_key, object)
        answered = await self._refresh_now(fresh_start=True)
        if not answered and self._core.view.snapshot is None:
            lkg = await asyncio.to_thread(self._core.read_lkg)
            if lkg is not None:
                self._core.consider(lkg, "last_known_good")
                log.warning(
                    "configctl client %s/%s: source unavailable, serving version %d from the last-known-good file",
                    self.app,
                    self.env,
                    lkg.version,
                )
        if self.settings.amqp:
            self._hub.register(
                self,
                amqp=self.settings.amqp,
                exchange=self.settings.exchange,
                spread=self.settings.notify_spread,
            )
            self._registered = True
        if self._auto:
            await self.start_auto_refresh()
        await self._report()
        return self

    async def start_auto_refresh(self, interval: float | None = None) -> None:
        """Refresh every ``interval`` seconds (default: the settings'), jittered by ±20 %."""
        if not self._initialized:
            await self.initialize()
        if interval is not None:
            if interval <= 0:
                raise ValueError("interval must be positive seconds")
            self._interval = interval
        await self.stop_auto_refresh()
        self._ttl_task = asyncio.create_task(
            self._ttl_loop(), name=f"configctl-refresh-{self.app}-{self.env}"
        )

    async def stop_auto_refresh(self) -> None:
        task, self._ttl_task = self._ttl_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Stop refreshing, withdraw the report, close the Redis connection."""
        if self._closed:
            return
        self._closed = True
        await self.stop_auto_refresh()
        if self._registered:
            await asyncio.to_thread(self._hub.unregister, self)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._side is not None:
            if self._hub.release(self._report_key) is not None and self.settings.report_ttl > 0:
                with contextlib.suppress(CacheError):
                    await self._side.withdraw(self.app, self.env, self._core.instance_id)
            await self._side.close()

    async def __aenter__(self) -> AsyncConfigClient:
        return await self.initialize()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- refresh ----------------------------------------------------------------------------------

    async def refresh(self) -> bool:
        """Check the source now; True if it answered (a newer good version is adopted)."""
        ok = await self._refresh_now()
        await self._report()
        return ok

    async def _fetch_text(self) -> str | None:
        if self._side is not None:
            text: str | None = await self._side.snapshot_text(self.app, self.env)
            return text
        file = self.settings.snapshot_path / f"{self.app}.{self.env}.json"

        def read() -> str | None:
            try:
                return file.read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
            except (OSError, UnicodeDecodeError) as exc:
                raise CacheError(
                    f"cannot read the snapshot file {file}: {type(exc).__name__}"
                ) from exc

        return await asyncio.to_thread(read)

    async def _refresh_now(self, *, fresh_start: bool = False, probe: bool = False) -> bool:
        if self._refresh_lock is None:
            self._refresh_lock = asyncio.Lock()
        async with self._refresh_lock:
            try:
                if probe and self._side is not None and self._core.view.snapshot is not None:
                    hint = await self._side.version(self.app, self.env)
                    if hint is not None and hint <= self._core.watermark:
                        self._core.mark_fresh()
                        return True
                text = await self._fetch_text()
            except CacheError as exc:
                self._core.mark_stale(exc.message)
                return False
            snapshot = self._core.take(text)
            if snapshot is None:
                return text is None and not fresh_start
            await self._adopt(snapshot, "redis" if self._side is not None else "snapshot_dir")
            return True

    async def _adopt(self, snapshot: CachedSnapshot, source: str) -> None:
        event, report = self._core.consider(snapshot, source)
        if event is not None:
            await self._fire(event)
            await asyncio.to_thread(self._core.write_lkg)
        if report:
            await self._report()

    async def _fire(self, event: ChangeEvent) -> None:
        for listener in list(self._core.listeners):
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception(
                    "configctl client %s/%s: an on_change listener raised", self.app, self.env
                )

    async def _ttl_loop(self) -> None:
        attempt = 0
        while not self._closed:
            if self._core.fresh:
                attempt = 0
                delay = self._interval * self._rng.uniform(0.8, 1.2)
            else:
                delay = max(0.05, backoff(attempt, base=0.5, cap=self._interval, rng=self._rng))
                attempt += 1
            await asyncio.sleep(delay)
            await self._refresh_now(probe=True)
            await self._report()

    async def _report(self) -> None:
        if self._side is None or self.settings.report_ttl <= 0 or self._closed:
            return
        try:
            await self._side.report(self.app, self.env, self._core.report())
        except CacheError as exc:
            log.debug("configctl client: report not written: %s", exc.message)

    # -- the hub's side (called on the notifier/worker thread) --------------------------------------

    @property
    def source_key(self) -> tuple[str, ...]:
        return ("async", str(id(self)))

    @property
    def watermark(self) -> int:
        return self._core.watermark

    @property
    def refused_version(self) -> int | None:
        refused = self._core.refused
        return refused[0] if refused else None

    def fetch_text(self) -> str | None:
        raise NotImplementedError  # notified() always handles it on the event loop

    def offer_text(self, text: str | None, *, error: str | None, wanted: int | None) -> None:
        raise NotImplementedError

    def notified(self, version: int | None) -> bool:  # noqa: ARG002 - the fetch shows the version
        loop = self._loop
        if loop is None or self._closed or loop.is_closed():
            return True

        def start() -> None:
            if not self._closed:
                task = loop.create_task(self._refresh_now())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(start)
        return True

    # -- reads (no I/O) ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"AsyncConfigClient({self.app!r}, {self.env!r}, version={self.version})"
