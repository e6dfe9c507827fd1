"""Composition root of the reconciler: settings → adapters → the loop, the HTTP server.

The loop (one thread, the caller's):

* standby: try to become leader every couple of seconds; stay ready (``/readyz``);
* leader: re-check leadership before every pass (a lock is not leadership on its own: the
  store also fences every write with the epoch taken at acquisition); run a pass; at start
  and on every interval, repair the cache from the store; wait ``interval`` ±20 % or until
  a verified webhook wakes it;
* a backend error (store, git) is logged and retried with capped, jittered backoff: the
  process never exits because a dependency is down; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from configctl.core.backoff import backoff
from configctl.errors import BackendError, ConfigctlError, FencingError
from configctl_reconciler.reconcile import Deps, PassResult, reconcile_once, repair_cache
from configctl_reconciler.settings import ReconcilerSettings

log = logging.getLogger("configctl_reconciler")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("alembic", "pika"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@dataclass(slots=True)
class State:
    role: str = "standby"
    store_reachable: bool = False
    degraded: set[str] = field(default_factory=set)
    heartbeat: float = field(default_factory=time.monotonic)
    last: PassResult | None = None
    last_error: str | None = None


class Reconciler:
    """Owns the adapters and runs the loop; ``stop()`` from any thread."""

    def __init__(self, settings: ReconcilerSettings) -> None:
        self.settings = settings
        self.state = State()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.workdir = Path(settings.workdir).absolute()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.identity = f"{socket.gethostname()}-{os.getpid()}"
        from configctl_reconciler.metrics import ReconcilerMetrics

        self.metrics = ReconcilerMetrics()
        self._deps: Deps | None = None
        self.leader: Any = None
        self.http: Any = None

    # -- wiring -------------------------------------------------------------------------

    def _store_url(self) -> str:
        if self.settings.db:
            return self.settings.db
        return f"sqlite:///{self.workdir / 'configctl.db'}"

    def build(self) -> Deps:
        from configctl.adapters import schemas
        from configctl.adapters.git import GitSource
        from configctl.adapters.store.store import SqlStore
        from configctl.services.inspect import Evaluator
        from configctl_reconciler import gitproc

        s = self.settings
        store = SqlStore(self._store_url())
        store.ensure_schema()
        clone_dir = self.workdir / "clone"
        if not (clone_dir / ".git").exists() and not (clone_dir / "HEAD").exists():
            gitproc.clone(s.repo, clone_dir, s.branch, timeout=s.git_timeout)
        git = GitSource(clone_dir)

        def fetch() -> str:
            return gitproc.fetch(clone_dir, s.branch, timeout=s.git_timeout)

        cache: Any
        if s.redis:
            from configctl.adapters.redis_cache import RedisCache

            cache = RedisCache(s.redis, prefix=s.redis_prefix)
        else:
            from configctl.adapters.redis_cache import SnapshotDir

            cache = SnapshotDir(Path(s.snapshot_dir) if s.snapshot_dir else self.workdir / "snapshots")
        publisher: Any
        if s.amqp:
            from configctl.adapters.amqp import AmqpPublisher

            publisher = AmqpPublisher(s.amqp, s.exchange)
        else:
            from configctl.adapters.amqp import LogNotifier

            publisher = LogNotifier()
        verify = None
        if s.require_signed:
            from configctl_reconciler.signatures import verify_commit

            def verify(sha: str) -> tuple[bool, str, str | None]:
                verdict = verify_commit(
                    clone_dir,
                    sha,
                    allowed_signers_file=s.allowed_signers,
                    gnupg_home=s.gnupg_home,
                    allowed_fingerprints=s.allowed_fingerprints,
                )
                return verdict.ok, verdict.reason, verdict.signer

        deps = Deps(
            store=store,
            git=git,
            fetch=fetch,
            cache=cache,
            publisher=publisher,
            evaluator=Evaluator(file_schemas=schemas.file_schemas()),
            prefix=s.path,
            host=self.identity,
            verify=verify,
            metrics=self.metrics,
        )
        self._deps = deps
        self.leader = self._make_leader(store)
        return deps

    def _make_leader(self, store: Any) -> Any:
        from configctl_reconciler import leader

        s = self.settings

        def acquire_epoch() -> int:
            return int(store.acquire_epoch(s.lock_name, self.identity))

        if s.lease:
            return leader.KubernetesLeaseLeader(
                s.lease, s.lease_namespace, self.identity, acquire_epoch=acquire_epoch, on_lost=self.wake.set
            )
        url = self._store_url()
        if url.startswith("sqlite"):
            return leader.FileLeader(self.workdir / "leader.lock", acquire_epoch=acquire_epoch)
        return leader.PgAdvisoryLeader(url, s.lock_name, acquire_epoch=acquire_epoch)

    # -- HTTP ---------------------------------------------------------------------------

    def status(self) -> Any:
        from configctl_reconciler.http import HealthStatus

        alive = time.monotonic() - self.state.heartbeat < max(120.0, 4 * self.settings.interval)
        last = self.state.last
        return HealthStatus(
            role=self.state.role,
            store_reachable=self.state.store_reachable,
            degraded=tuple(sorted(self.state.degraded)),
            alive=alive,
            detail={
                "head": last.head if last else None,
                "last_error": self.state.last_error,
                "identity": self.identity,
            },
        )

    def start_http(self) -> None:
        from configctl_reconciler.http import ReconcilerHTTPServer
        from configctl_reconciler.webhook import WebhookSecrets

        def on_push(event: Any) -> None:
            branch = getattr(event, "branch", None)
            if branch in (None, self.settings.branch):
                self.wake.set()

        def get_snapshot(app: str, env: str) -> Any:
            if self._deps is None or self._deps.cache is None:
                return None
            snap = self._deps.cache.get(app, env)
            if snap is None:
                return None
            return {
                "app": snap.app,
                "env": snap.env,
                "version": snap.version,
                "commit": snap.commit,
                "checksum": snap.checksum,
                "values": dict(snap.values),
            }

        self.http = ReconcilerHTTPServer(
            self.settings.http_host,
            self.settings.http_port,
            status=self,
            render_metrics=self.metrics.render,
            webhook_secrets=WebhookSecrets.shared(self.settings.webhook_secret),
            on_push=on_push,
            get_snapshot=get_snapshot,
        )
        self.http.start()
        log.info("http listening on %s", self.http.url)

    # -- loop ---------------------------------------------------------------------------

    def _sleep(self, seconds: float) -> None:
        self.wake.wait(seconds)
        self.wake.clear()

    def run(self) -> int:
        s = self.settings
        attempt = 0
        rng = random.Random()  # noqa: S311 - jitter, not security
        deps: Deps | None = None
        repaired_at = 0.0
        while not self.stopping.is_set():
            self.state.heartbeat = time.monotonic()
            try:
                if deps is None:
                    deps = self.build()
                self.state.store_reachable = True
                if not self.leader.is_leader:
                    if not self.leader.try_acquire():
                        self.state.role = "standby"
                        self.metrics.set_leader(False)
                        if s.once:
                            log.info("another replica is the leader; nothing to do")
                            return 0
                        self._sleep(2.0)
                        continue
                    log.info("became leader (epoch %s)", self.leader.epoch)
                    repaired_at = 0.0
                elif not self.leader.check():
                    log.warning("lost leadership; standing by")
                    self.state.role = "standby"
                    self.metrics.set_leader(False)
                    continue
                self.state.role = "leader"
                self.metrics.set_leader(True)
                fence = (s.lock_name, int(self.leader.epoch)) if self.leader.epoch is not None else None
                if time.monotonic() - repaired_at >= s.interval:
                    repaired = repair_cache(deps)
                    repaired_at = time.monotonic()
                    if repaired:
                        log.info("cache repaired: %d entries", repaired)
                result = reconcile_once(deps, fence=fence)
                self.state.last = result
                self.state.last_error = None
                self._degraded(result)
                if result.applied or result.rejected:
                    log.info(
                        "head %s: applied %d, rejected %d, new versions %d, published %d",
                        (result.head or "")[:12], len(result.applied), len(result.rejected), result.new_versions, result.published,
                    )
                attempt = 0
                if s.once:
                    return 1 if result.rejected else 0
                self._sleep(s.interval * rng.uniform(0.8, 1.2))
            except FencingError as exc:
                log.error("fenced: %s; standing by", exc.message)
                if self.leader is not None:
                    self.leader.release()
                self.state.role = "standby"
                self.metrics.set_leader(False)
            except BackendError as exc:
                attempt += 1
                self.state.last_error = exc.message
                from configctl.errors import StoreError

                if isinstance(exc, StoreError):
                    self.state.store_reachable = False
                delay = backoff(attempt, base=1.0, cap=min(60.0, s.interval * 2), rng=rng)
                log.warning("backend error (retry in %.1fs): %s", delay, exc.message)
                if s.once and attempt >= 3:
                    return 3
                self._sleep(delay)
            except ConfigctlError as exc:
                log.error("%s", exc.message)
                return 2
        return 0

    def _degraded(self, result: PassResult) -> None:
        self.state.degraded.discard("redis") if not result.cache_errors else self.state.degraded.add("redis")
        self.state.degraded.discard("rabbitmq") if not result.broker_errors else self.state.degraded.add("rabbitmq")

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def close(self) -> None:
        if self.http is not None:
            self.http.stop()
        if self.leader is not None:
            with contextlib.suppress(ConfigctlError):
                self.leader.release()
        if self._deps is not None:
            for closer in (getattr(self._deps.publisher, "close", None), getattr(self._deps.store, "close", None)):
                if closer is not None:
                    with contextlib.suppress(ConfigctlError):
                        closer()


def main(settings: ReconcilerSettings) -> int:
    setup_logging(settings.log_format)
    rec = Reconciler(settings)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: rec.stop())
    try:
        if not settings.once:
            rec.start_http()
        return rec.run()
    except KeyboardInterrupt:
        return 130
    finally:
        rec.close()
