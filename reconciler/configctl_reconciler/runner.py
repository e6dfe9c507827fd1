"""Composition root of the reconciler: settings → adapters → the loop, the HTTP server.

The loop (one thread, the caller's):

* standby: try to become leader every second (or at once on a webhook); stay ready
  (``/readyz``);
* leader: re-check leadership before every round (a lock is not leadership on its own:
  the store also fences every write with the epoch taken at acquisition); at start and on
  every interval repair the cache from the store (on every round while Redis is
  degraded); run a full pass (fetch, apply, warm, relay) when the jittered interval is
  up or a verified webhook arrived;
* between passes, while Redis or RabbitMQ is behind, retry on a capped, jittered backoff
  timer *without* waiting for a new commit or the next poll: the catch-up repairs the
  cache and relays the outbox (and answers the broker's heartbeats);
* a backend error (store, git) is logged and the pass retried with capped, jittered
  backoff; so is an unexpected exception (logged with its traceback). The process never
  exits because a dependency is down or misbehaves; only a configuration error found
  before the first successful start (exit 2), ``--once`` or SIGTERM end it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from configctl.core.backoff import backoff
from configctl.errors import (
    BackendError,
    ConfigctlError,
    FencingError,
    GitError,
    StoreError,
    UsageError,
    UserError,
)
from configctl_reconciler.reconcile import (
    Deps,
    PassResult,
    Verdict,
    catch_up,
    reconcile_once,
    repair_cache,
)
from configctl_reconciler.settings import ReconcilerSettings

log = logging.getLogger("configctl_reconciler")

STANDBY_POLL = 1.0
"""Seconds between a standby's attempts to take the lock: the takeover delay after the
leader dies (PostgreSQL frees the lock when the dead leader's connection closes)."""

LEADER_CHECK = 1.0
"""Seconds a leader trusts its last lock check (see ``Reconciler._lead``)."""

CATCH_UP_CAP = 5.0
"""Longest wait (seconds) before retrying Redis or RabbitMQ while they are behind."""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            # structured facts of a line (the start-up line's settings), never overriding the above
            doc.update({k: v for k, v in fields.items() if k not in doc})
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # pika logs every failed connection attempt at ERROR with a stack trace, and every
    # returned (unroutable) message at WARNING with the start of its body. The publisher
    # turns each failure into one BrokerError that we log ourselves.
    logging.getLogger("pika").setLevel(logging.CRITICAL)


@dataclass(slots=True)
class State:
    role: str = "standby"
    store_reachable: bool = False
    degraded: set[str] = field(default_factory=set)
    heartbeat: float = field(default_factory=time.monotonic)
    last: PassResult | None = None
    last_error: str | None = None
    last_rejected: dict[str, str] | None = None
    head_rejected: dict[str, str] | None = None
    """The branch head, while the store records it as rejected: /healthz says degraded."""
    backlog: int | None = None


class Reconciler:
    """Owns the adapters and runs the loop; ``stop()`` from any thread."""

    def __init__(self, settings: ReconcilerSettings) -> None:
        self.settings = settings
        self.state = State()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.workdir = Path(settings.workdir).absolute()
        self.identity = f"{socket.gethostname()}-{os.getpid()}"
        from configctl_reconciler.metrics import ReconcilerMetrics

        self.metrics = ReconcilerMetrics()
        self._deps: Deps | None = None
        self._checked_at = 0.0
        self.leader: Any = None
        self.http: Any = None

    # -- wiring -------------------------------------------------------------------------

    def _store_url(self) -> str:
        if self.settings.db:
            return self.settings.db
        return f"sqlite:///{self.workdir / 'configctl.db'}"

    def build(self) -> Deps:
        from configctl.adapters.store.store import SqlStore

        store = SqlStore(self._store_url())
        try:
            return self._build(store)
        except BaseException:
            # a failed start is retried: do not leak an engine (and its pool) per attempt
            store.close()
            raise

    def _build(self, store: Any) -> Deps:
        from configctl.adapters import schemas, signing
        from configctl.adapters.git import GitChangeLog, GitSource
        from configctl.services.resolution import Evaluator
        from configctl_reconciler import gitproc

        s = self.settings
        store.ensure_schema()
        clone_dir = self.workdir / "clone"
        self._ensure_clone(clone_dir)
        checks = signing.verification(gnupg_home=s.gnupg_home, allowed_signers=s.allowed_signers)
        git = GitSource(clone_dir, config=checks.config, env=checks.env)
        from configctl_reconciler.trees import TreeReader, full_reader

        trees = TreeReader(clone_dir, full_read=full_reader(git), timeout=s.git_timeout)

        def fetch() -> str:
            return gitproc.fetch(clone_dir, s.branch, timeout=s.git_timeout)

        def is_ancestor(a: str, b: str) -> bool:
            return gitproc.is_ancestor(clone_dir, a, b)

        def log_range(base: str | None, head: str) -> Any:
            # one git log both lists the commits and tells the tree reader what they changed
            return gitproc.log_range(clone_dir, base, head, on_changes=trees.hint)

        def history(head: str, limit: int) -> list[Any]:
            return gitproc.first_parents(clone_dir, head, limit)

        cache: Any
        if s.redis:
            from configctl.adapters.redis_cache import RedisCache

            cache = RedisCache(s.redis, prefix=s.redis_prefix)
        else:
            from configctl.adapters.snapshot_dir import SnapshotDir

            cache = SnapshotDir(Path(s.snapshot_dir) if s.snapshot_dir else self.workdir / "snapshots")
        publisher: Any
        if s.amqp:
            from configctl.adapters.amqp import AmqpPublisher

            publisher = AmqpPublisher(s.amqp, s.exchange)
        else:
            from configctl.adapters.log_notifier import LogNotifier

            publisher = LogNotifier()
        verify = None
        if s.require_signed:
            from configctl_reconciler.signatures import verify_commit

            def verify(sha: str) -> Verdict:
                verdict = verify_commit(
                    clone_dir,
                    sha,
                    allowed_signers_file=s.allowed_signers,
                    gnupg_home=s.gnupg_home,
                    allowed_fingerprints=s.allowed_fingerprints,
                )
                return Verdict(ok=verdict.ok, status=verdict.status, reason=verdict.reason, signer=verdict.signer)

        deps = Deps(
            store=store,
            git=git,
            fetch=fetch,
            cache=cache,
            publisher=publisher,
            evaluator=Evaluator(file_schemas=schemas.file_schemas()),
            prefix=s.path,
            changelog=GitChangeLog(git, s.path),
            host=self.identity,
            verify=verify,
            is_ancestor=is_ancestor,
            log_range=log_range,
            history=history,
            read_tree=trees.read,
            metrics=self.metrics,
        )
        self.leader = self._make_leader(store)
        self._deps = deps
        return deps

    def _ensure_clone(self, clone_dir: Path) -> None:
        """A whole clone of ``--repo`` at ``clone_dir``: kept if it is one, else made anew."""
        from configctl_reconciler import gitproc

        s = self.settings
        if clone_dir.exists():
            url = gitproc.origin_url(clone_dir)
            if url == s.repo:
                return
            log.warning("the clone in %s does not follow %s (origin %s); cloning again", clone_dir, gitproc.redact(s.repo), url and gitproc.redact(url))
            shutil.rmtree(clone_dir)
        gitproc.clone(s.repo, clone_dir, s.branch, timeout=s.git_timeout)

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
        leader = self.leader
        return HealthStatus(
            role=self.state.role,
            store_reachable=self.state.store_reachable,
            degraded=tuple(sorted(self.state.degraded)),
            alive=alive,
            head_rejected=self.state.head_rejected,
            detail={
                "head": last.head if last else None,
                "last_rejected": self.state.last_rejected,
                "last_error": self.state.last_error,
                "outbox_backlog": self.state.backlog,
                "epoch": leader.epoch if leader is not None and self.state.role == "leader" else None,
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

        try:
            server = ReconcilerHTTPServer(
                self.settings.http_host,
                self.settings.http_port,
                status=self,
                render_metrics=self.metrics.render,
                webhook_secrets=WebhookSecrets.shared(self.settings.webhook_secret),
                on_push=on_push,
                get_snapshot=get_snapshot if self.settings.serve_snapshots else None,
            )
        except OSError as exc:
            # a port in use, an address not on this host, a privileged port: the operator's to fix
            where = f"{self.settings.http_host}:{self.settings.http_port}"
            raise UsageError(
                f"--http-port {self.settings.http_port}: cannot listen on {where}: {exc.strerror or exc}",
                hint="choose a free port with --http-port (CONFIGCTL_HTTP_PORT), or stop what holds it",
            ) from exc
        self.http = server
        self.http.start()
        log.info("http listening on %s", self.http.url)

    # -- loop ---------------------------------------------------------------------------

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until woken (webhook, stop); True if woken by a webhook."""
        woken = self.wake.wait(max(0.0, seconds))
        self.wake.clear()
        return woken and not self.stopping.is_set()

    def _lead(self) -> bool:
        """Whether this replica leads now (taking the lock if free); may raise StoreError.

        A leader re-checks its lock at most every ``LEADER_CHECK`` seconds (a round trip
        on the webhook's path otherwise); the check is the courtesy that stops a deposed
        leader early, the fencing epoch in every write is the guarantee.
        """
        leader = self.leader
        if leader.is_leader:
            now = time.monotonic()
            if self.state.role == "leader" and now - self._checked_at < LEADER_CHECK:
                return True
            if leader.check():
                # a Lease is won in the background: leadership may arrive between rounds
                return self._became_leader() if self.state.role != "leader" else self._checked(now)
        if leader.is_leader or self.state.role == "leader":
            log.warning("lost leadership; standing by")
            self._standby()
        if not leader.try_acquire():
            self._standby()
            self.state.store_reachable = True  # the lock query reached it
            return False
        return self._became_leader()

    def _checked(self, at: float) -> bool:
        self._checked_at = at
        return True

    def _became_leader(self) -> bool:
        log.info("became leader (epoch %s)", self.leader.epoch)
        self._checked_at = time.monotonic()
        self.state.role = "leader"
        self.metrics.set_leader(True)
        return True

    def _standby(self) -> None:
        self.state.role = "standby"
        self.metrics.set_leader(False)

    def _mark(self, dependency: str, up: bool) -> None:
        if up:
            self.state.degraded.discard(dependency)
        else:
            self.state.degraded.add(dependency)

    def _record(self, result: PassResult, *, full: bool) -> None:
        if full:
            self.state.last = result
            self._mark("git", not result.git_error)
        if result.cache_errors:
            self._mark("redis", False)
        if result.broker_errors:
            self._mark("rabbitmq", False)
        elif self._deps is not None and self._deps.publisher is not None:
            self._mark("rabbitmq", True)
        if result.backlog is not None:
            self.state.backlog = result.backlog
        if result.last_rejected is not None:
            sha, why = result.last_rejected
            self.state.last_rejected = {"commit": sha, "reason": why}
        if full and not result.git_error:
            before = (self.state.head_rejected or {}).get("commit")
            if result.head_rejected is None:
                self.state.head_rejected = None
            else:
                sha, why = result.head_rejected
                self.state.head_rejected = {"commit": sha, "reason": why}
                if sha != before:
                    log.warning(
                        "the branch head %s is rejected (%s); the last good configuration stays in service",
                        sha[:12],
                        why,
                    )
        if result.applied or result.rejected:
            log.info(
                "head %s: applied %d, rejected %d, new versions %d, published %d",
                (result.head or "")[:12], len(result.applied), len(result.rejected), result.new_versions, result.published,
            )
        elif result.published:
            log.info("published %d queued notifications", result.published)

    def run(self) -> int:
        s = self.settings
        rng = random.Random()  # noqa: S311 - jitter, not security
        failures = 0  # consecutive failed rounds (store, git, unexpected)
        behind = 0  # consecutive rounds that left Redis or RabbitMQ behind
        next_pass = 0.0  # monotonic time of the next full pass; 0 = now
        next_repair = 0.0
        started = False  # a first full pass has run: configuration errors are behind us
        while not self.stopping.is_set():
            self.state.heartbeat = time.monotonic()
            try:
                deps = self._deps if self._deps is not None else self.build()
                if not self._lead():
                    if s.once:
                        log.info("another replica is the leader; nothing to do")
                        return 0
                    next_pass = next_repair = 0.0
                    self._sleep(STANDBY_POLL)
                    continue
                epoch = self.leader.epoch
                fence = (s.lock_name, int(epoch)) if epoch is not None else None
                now = time.monotonic()
                if now >= next_repair or "redis" in self.state.degraded:
                    repaired = repair_cache(deps)
                    # Its own fixed cadence, not the jittered poll's: a flushed Redis is
                    # refilled within one interval, whenever the next pass happens to be.
                    next_repair = (
                        max(next_repair + s.interval, now) if next_repair else now + s.interval
                    )
                    self._mark("redis", repaired is not None)
                    if repaired:
                        log.info("cache repaired: %d entries", repaired)
                full = now >= next_pass
                if full:
                    result = reconcile_once(deps, fence=fence)
                    next_pass = time.monotonic() + s.interval * rng.uniform(0.8, 1.2)
                    started = True
                else:
                    result = catch_up(deps)
                self._record(result, full=full)
                self.state.store_reachable = True
                self.state.last_error = None
                self.metrics.set_dependency_up("postgresql", True)
                failures = 0
                if s.once:
                    # findings while the head is rejected, on every run (not only the run
                    # that rejected it), or when this run rejected a commit
                    return 1 if result.rejected or result.head_rejected else 0
                delay = min(next_pass, next_repair) - time.monotonic()
                if result.behind or "redis" in self.state.degraded:
                    behind += 1
                    delay = min(delay, backoff(behind, base=0.25, cap=min(CATCH_UP_CAP, s.interval), rng=rng))
                else:
                    behind = 0
                if self._sleep(delay):
                    next_pass = 0.0  # a verified webhook: fetch now
            except FencingError as exc:
                log.error("fenced: %s; standing by", exc.message)
                if self.leader is not None:
                    self.leader.release()
                self._standby()
            except BackendError as exc:
                if self.stopping.is_set():
                    break  # SIGTERM aborted the git call in flight: not a failure
                failures += 1
                self.state.last_error = exc.message
                if isinstance(exc, StoreError):
                    self.state.store_reachable = False
                    self.metrics.set_dependency_up("postgresql", False)
                if isinstance(exc, GitError):
                    self._mark("git", False)
                if s.once and failures >= 3:
                    log.error("giving up (--once): %s", exc.message)
                    return 3
                delay = backoff(failures, base=0.5, cap=min(30.0, max(1.0, 2 * s.interval)), rng=rng)
                log.warning("backend error (retry in %.1fs): %s", delay, exc.message)
                next_pass = 0.0
                self._sleep(delay)
            except ConfigctlError as exc:
                if self.stopping.is_set():
                    break
                if not started and isinstance(exc, UserError):
                    # a wrong URL, branch or path: retrying cannot help
                    log.error("%s%s", exc.message, f" ({exc.hint})" if exc.hint else "")
                    return 2
                failures += 1
                self.state.last_error = exc.message
                delay = backoff(failures, base=0.5, cap=min(30.0, max(1.0, 2 * s.interval)), rng=rng)
                log.error("pass failed (retry in %.1fs): %s", delay, exc.message)
                if s.once:
                    return 2 if isinstance(exc, UserError) else 70
                next_pass = 0.0
                self._sleep(delay)
            except Exception as exc:
                failures += 1
                self.state.last_error = f"internal error: {type(exc).__name__}"
                delay = backoff(failures, base=0.5, cap=min(30.0, max(1.0, 2 * s.interval)), rng=rng)
                log.exception("unexpected error (retry in %.1fs)", delay)
                if s.once:
                    return 70
                next_pass = 0.0
                self._sleep(delay)
        return 0

    def stop(self) -> None:
        """Stop the loop from any thread or a signal handler: a git call in flight (a fetch
        from a remote that hangs) is killed with its process group, so shutdown takes a
        moment, not ``--git-timeout``."""
        from configctl_reconciler import gitproc

        self.stopping.set()
        self.wake.set()
        gitproc.abort_all()

    def close(self) -> None:
        from configctl_reconciler import gitproc

        gitproc.resume()  # stop() aborted git for the loop's sake, not for the process
        if self.http is not None:
            self.http.stop()
        if self.leader is not None:
            try:
                self.leader.release()
            except Exception:
                log.debug("leader release failed", exc_info=True)
        if self._deps is not None:
            deps = self._deps
            for closer in (
                getattr(deps.publisher, "close", None),
                getattr(deps.cache, "close", None),
                getattr(deps.store, "close", None),
            ):
                if closer is not None:
                    try:
                        closer()
                    except Exception:
                        log.debug("close failed", exc_info=True)


def mask_url(url: str) -> str:
    """``url`` with the password of its user-info replaced by ``***`` (for logs)."""
    return _PASSWORD.sub(r"\g<head>***@", url)


_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:)[^/@\s]*@")


def check_workdir(path: Path) -> None:
    """``path`` is (or can be made) a writable directory; else UsageError naming it.

    Checked before anything is started: a workdir that is a file or read-only would
    otherwise fail every start attempt as an "internal error", over and over.
    """
    if path.exists() and not path.is_dir():
        raise UsageError(f"--workdir {path} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise UsageError(
            f"--workdir {path}: a part of the path is not a directory ({exc.filename})"
        ) from exc
    except OSError as exc:
        raise UsageError(f"--workdir {path} cannot be created: {exc.strerror or exc}") from exc
    probe = path / f".configctl-write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise UsageError(
            f"--workdir {path} is not writable: {exc.strerror or exc}",
            hint="the reconciler keeps its clone, lock and snapshots there; give it a writable folder",
        ) from exc
    os.close(fd)
    probe.unlink(missing_ok=True)


def check_keys(settings: ReconcilerSettings) -> None:
    """The signature keys named in the settings exist: a typo is a usage error at start
    (exit 2), never a rejected commit (which would never be applied once it is fixed)."""
    if settings.allowed_signers is not None and not Path(settings.allowed_signers).is_file():
        raise UsageError(
            f"--allowed-signers {settings.allowed_signers}: no such file",
            hint="an SSH allowed-signers file: one '<principal> namespaces=\"git\" <key>' per line",
        )
    if settings.gnupg_home is not None and not Path(settings.gnupg_home).is_dir():
        raise UsageError(
            f"--gnupg-home {settings.gnupg_home}: no such directory",
            hint="a GnuPG home holding the public keys that may sign (gpg --homedir DIR --import KEY.asc)",
        )


def describe(settings: ReconcilerSettings, workdir: Path) -> dict[str, Any]:
    """What the start-up line reports; every URL with its password masked."""
    from configctl_reconciler.gitproc import redact

    s = settings
    return {
        "repository": redact(s.repo),
        "branch": s.branch,
        "path": s.path or "/",
        "store": mask_url(s.db) if s.db else f"sqlite:///{workdir / 'configctl.db'}",
        "cache": f"{mask_url(s.redis)} (prefix {s.redis_prefix})"
        if s.redis
        else f"snapshot directory {Path(s.snapshot_dir) if s.snapshot_dir else workdir / 'snapshots'}",
        "broker": f"{mask_url(s.amqp)} (exchange {s.exchange})" if s.amqp else "log lines",
        "workdir": str(workdir),
        "interval": s.interval,
        "http": None if s.once else f"{s.http_host}:{s.http_port}",
        "signed_commits": "required" if s.require_signed else "not required",
        "snapshot_api": s.serve_snapshots,
        "once": s.once,
    }


def main(settings: ReconcilerSettings) -> int:
    """Run the reconciler; the exit code (0 stopped, 1 head rejected with --once, 2 usage,
    3 backends with --once, 70 bug, 130 interrupted). A usage error found before the loop
    starts is raised (UsageError) for the command's error boundary."""
    from configctl_reconciler import gitproc

    setup_logging(settings.log_format)
    workdir = Path(settings.workdir).absolute()
    facts = describe(settings, workdir)
    log.info(
        "starting: repository %s, branch %s, path %s, store %s, cache %s, broker %s",
        facts["repository"],
        facts["branch"],
        facts["path"],
        facts["store"],
        facts["cache"],
        facts["broker"],
        extra={"fields": facts},
    )
    code = 70  # until we know better: an exception escaping is a bug
    signals: list[str] = []
    try:
        check_workdir(workdir)
        check_keys(settings)
        gitproc.use_signature_keys(
            gnupg_home=settings.gnupg_home, allowed_signers=settings.allowed_signers
        )
        rec = Reconciler(settings)

        def on_sigterm(signum: int, _frame: Any) -> None:
            signals.append(signal.Signals(signum).name)
            rec.stop()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_sigterm)
        try:
            if not settings.once:
                rec.start_http()
            code = rec.run()
        except KeyboardInterrupt:
            code = 130
        finally:
            rec.close()
        return code
    except UsageError:
        code = 2
        raise
    finally:
        why = f"on {signals[0]}" if signals else ("interrupted" if code == 130 else "")
        log.info(
            "stopped%s, exit code %d",
            f" {why}" if why else "",
            code,
            extra={"fields": {"exit_code": code}},
        )
