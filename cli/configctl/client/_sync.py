"""``ConfigClient``: the configuration of one (app, env), served from memory.

Start-up, in order: the source (Redis when configured, else the snapshot folder); if it
fails or has nothing, the last-known-good file; if that is missing too, nothing (every
``get`` returns its default) until the source answers. The constructor never raises
because a server is down: it logs, marks the client stale and keeps retrying.

Background work runs on the process-wide worker thread (see ``_hub``): a TTL refresh
with ±20 % jitter (a cheap version probe, the snapshot only when it moved), an immediate
fetch on a RabbitMQ notification, and report renewals. The read path (``get`` and
friends) takes no lock: it reads one immutable view.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from configctl.client._reader import Reader
from configctl.client.settings import from_env
from configctl.core.backoff import backoff
from configctl.core.cache import CachedSnapshot
from configctl.errors import CacheError

__all__ = ["ConfigClient"]

log = logging.getLogger("configctl.client")


class ConfigClient(Reader):
    """The configuration of one (app, env) for a synchronous program (thread-safe).

    ``ConfigClient("checkout", "production")`` reads its settings from ``CONFIGCTL_*``
    environment variables (see :class:`~configctl.client.settings.ClientSettings`);
    keyword arguments override them. ``schema`` is the app's JSON schema (a mapping or a
    file path) that every new version must pass; by default the one named in the
    repository's ``apps/<app>/app.yaml``, when the client knows the repository.
    ``auto_refresh=False`` disables the background refresh (call :meth:`refresh`).
    """

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
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        self._attempt = 0
        self._closed = False
        self._auto = auto_refresh
        self._side: Any = None
        self._side_key: tuple[str, ...] | None = None
        if settings.redis:
            from configctl.adapters.client_reports import RedisClientSide

            key = ("redis", settings.redis, settings.redis_prefix)
            self._side_key = key
            self._side = self._hub.acquire(
                key,
                lambda: RedisClientSide(
                    settings.redis or "", prefix=settings.redis_prefix, timeout=settings.timeout
                ),
            )
            self._report_key = (
                "report",
                self._core.instance_id,
                settings.redis,
                settings.redis_prefix,
                app,
                env,
            )
            self._hub.acquire(self._report_key, object)
        self._start()

    # -- start ------------------------------------------------------------------------------------

    @property
    def source_key(self) -> tuple[str, ...]:
        return self._side_key or ("dir", str(self.settings.snapshot_path.absolute()))

    @property
    def watermark(self) -> int:
        return self._core.watermark

    @property
    def refused_version(self) -> int | None:
        refused = self._core.refused
        return refused[0] if refused else None

    def _start(self) -> None:
        if not self._refresh_now(fresh_start=True):
            lkg = self._core.read_lkg()
            if lkg is not None:
                event, _ = self._core.consider(lkg, "last_known_good")
                if event is not None:
                    log.warning(
                        "configctl client %s/%s: source unavailable, serving version %d from the last-known-good file",
                        self.app,
                        self.env,
                        lkg.version,
                    )
        if self._auto:
            self._hub.register(
                self,
                amqp=self.settings.amqp,
                exchange=self.settings.exchange,
                spread=self.settings.notify_spread,
            )
            self._schedule(self._next_delay())
        self._report_soon()

    # -- the source -------------------------------------------------------------------------------

    def fetch_text(self) -> str | None:
        """The snapshot text from Redis or the snapshot folder (None: there is none)."""
        if self._side is not None:
            text: str | None = self._side.snapshot_text(self.app, self.env)
            return text
        file = self.settings.snapshot_path / f"{self.app}.{self.env}.json"
        try:
            return file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise CacheError(f"cannot read the snapshot file {file}: {type(exc).__name__}") from exc

    @property
    def _source_name(self) -> str:
        return "redis" if self._side is not None else "snapshot_dir"

    def _refresh_now(self, *, fresh_start: bool = False, probe: bool = False) -> bool:
        """One refresh; True if the source answered. Adopts, fires listeners, writes the LKG."""
        try:
            if probe and self._side is not None and self._core.view.snapshot is not None:
                hint = self._side.version(self.app, self.env)
                if hint is not None and hint <= self._core.watermark:
                    self._core.mark_fresh()
                    return True
            text = self.fetch_text()
        except CacheError as exc:
            self._core.mark_stale(exc.message)
            return False
        self.offer_text(text, error=None, wanted=None)
        return not (fresh_start and text is None)

    def offer_text(self, text: str | None, *, error: str | None, wanted: int | None) -> None:  # noqa: ARG002 - the hub retries
        """Consider a fetched snapshot; called by :meth:`refresh` and by the hub."""
        if error is not None:
            self._core.mark_stale(error)
            return
        snapshot = self._core.take(text)
        if snapshot is not None:
            self._adopt(snapshot, self._source_name)

    def _adopt(self, snapshot: CachedSnapshot, source: str) -> None:
        event, report = self._core.consider(snapshot, source)
        if event is not None:
            self._core.fire(event)
            if self._auto and self._hub.worker.on_thread:
                # after every client of this notification has adopted: an fsync takes ms
                self._hub.worker.submit(self._core.write_lkg)
            else:
                self._core.write_lkg()
        if report:
            self._report_soon()

    def notified(self, version: int | None) -> bool:  # noqa: ARG002 - the hub compares versions
        return False  # the hub fetches once for every sync client of the pair

    # -- the TTL ----------------------------------------------------------------------------------

    def _next_delay(self) -> float:
        interval = self.settings.refresh_interval
        if self._core.fresh:
            self._attempt = 0
            return interval * self._rng.uniform(0.8, 1.2)
        delay = max(0.05, backoff(self._attempt, base=0.5, cap=interval, rng=self._rng))
        self._attempt += 1
        return delay

    def _schedule(self, delay: float) -> None:
        if not self._closed:
            self._hub.worker.submit(self._tick, delay)

    def _tick(self) -> None:
        if self._closed:
            return
        self._refresh_now(probe=True)
        self._report()
        self._schedule(self._next_delay())

    # -- reports ----------------------------------------------------------------------------------

    def _report_soon(self) -> None:
        if self._side is None or self.settings.report_ttl <= 0 or self._closed:
            return
        if self._auto:
            self._hub.worker.submit(self._report)
        else:
            self._report()

    def _report(self) -> None:
        if self._side is None or self.settings.report_ttl <= 0 or self._closed:
            return
        try:
            self._side.report(self.app, self.env, self._core.report())
        except CacheError as exc:
            log.debug("configctl client: report not written: %s", exc.message)

    # -- public API -------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Check the source now; True if it answered (a newer good version is adopted)."""
        ok = self._refresh_now()
        self._report()
        return ok

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Wait until the shared notification connection is up (True), e.g. in tests."""
        if not self.settings.amqp or not self._auto:
            return False
        event = self._hub.notifier_connected(self.settings.amqp, self.settings.exchange)
        return event.wait(timeout) if event is not None else False

    def close(self) -> None:
        """Stop refreshing, withdraw this client's report, release shared connections."""
        if self._closed:
            return
        self._closed = True
        if self._auto:
            self._hub.unregister(self)
        if self._side is not None and self._side_key is not None:
            # the instance id is per process: withdraw when its last client of the pair closes
            if self._hub.release(self._report_key) is not None and self.settings.report_ttl > 0:
                with contextlib.suppress(CacheError):
                    self._side.withdraw(self.app, self.env, self._core.instance_id)
            last = self._hub.release(self._side_key)
            if last is not None:
                last.close()

    def __enter__(self) -> ConfigClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ConfigClient({self.app!r}, {self.env!r}, version={self.version})"
