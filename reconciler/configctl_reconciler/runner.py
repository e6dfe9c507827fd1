"""Composition root of the reconciler, wiring only: settings → adapters (store, git,
cache, broker, leader) → the loop (``loop.py``), the HTTP server (``http.py``), logging
and signals. What a pass does is ``reconcile.py``; how passes repeat is ``loop.py``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from configctl.cli.exit_codes import ExitCode
from configctl.core.cache import SnapshotCache
from configctl.core.ports import Leader, PublisherPort
from configctl.core.records import CommitInfo
from configctl.errors import (
    UsageError,
)
from configctl_reconciler.loop import Loop
from configctl_reconciler.reconcile import (
    Deps,
    Verdict,
)
from configctl_reconciler.settings import ReconcilerSettings

if TYPE_CHECKING:
    from configctl.adapters.store.store import SqlStore

log = logging.getLogger("configctl_reconciler")

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


class Reconciler(Loop):
    """Builds the adapters the loop (:class:`configctl_reconciler.loop.Loop`) runs on, and
    the HTTP server; ``stop()`` from any thread."""

    def __init__(self, settings: ReconcilerSettings) -> None:
        from configctl_reconciler.metrics import ReconcilerMetrics

        super().__init__(settings, ReconcilerMetrics())
        self.workdir = Path(settings.workdir).absolute()
        self.identity = f"{socket.gethostname()}-{os.getpid()}"
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

    def _build(self, store: SqlStore) -> Deps:
        from configctl.adapters import schemas, signing
        from configctl.adapters.git import remote, revisions
        from configctl.adapters.git.source import GitChangeLog, GitSource
        from configctl.adapters.git.trees import TreeReader
        from configctl.services.resolution import Evaluator

        s = self.settings
        store.ensure_schema()
        clone_dir = self.workdir / "clone"
        self._ensure_clone(clone_dir)
        checks = signing.verification(gnupg_home=s.gnupg_home, allowed_signers=s.allowed_signers)
        git = GitSource(clone_dir, config=checks.config, env=checks.env, timeout=s.git_timeout)
        trees = TreeReader(git)

        def fetch() -> str:
            return remote.fetch(clone_dir, s.branch, timeout=s.git_timeout)

        def is_ancestor(a: str, b: str) -> bool:
            return revisions.is_ancestor(clone_dir, a, b)

        def log_range(base: str | None, head: str) -> list[CommitInfo] | None:
            # one git log both lists the commits and tells the tree reader what they changed
            return revisions.log_range(clone_dir, base, head, on_changes=trees.hint)

        def history(head: str, limit: int) -> list[CommitInfo]:
            return revisions.first_parents(clone_dir, head, limit)

        cache: SnapshotCache
        if s.redis:
            from configctl.adapters.redis_cache import RedisCache

            cache = RedisCache(s.redis, prefix=s.redis_prefix)
        else:
            from configctl.adapters.snapshot_dir import SnapshotDir

            cache = SnapshotDir(Path(s.snapshot_dir) if s.snapshot_dir else self.workdir / "snapshots")
        publisher: PublisherPort
        if s.amqp:
            from configctl.adapters.amqp import AmqpPublisher

            publisher = AmqpPublisher(s.amqp, s.exchange)
        else:
            from configctl.adapters.log_notifier import LogNotifier

            publisher = LogNotifier()
        verify = None
        if s.require_signed:
            from configctl.adapters.git.signatures import verify_commit

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
            changed_paths=trees.changed_paths,
            metrics=self.metrics,
        )
        self.leader = self._make_leader(store)
        self._deps = deps
        return deps

    def _ensure_clone(self, clone_dir: Path) -> None:
        """A whole clone of ``--repo`` at ``clone_dir``: kept if it is one, else made anew."""
        from configctl.adapters.git import remote, runner

        s = self.settings
        if clone_dir.exists():
            url = remote.origin_url(clone_dir)
            if url == s.repo:
                return
            log.warning("the clone in %s does not follow %s (origin %s); cloning again", clone_dir, runner.redact(s.repo), url and runner.redact(url))
            shutil.rmtree(clone_dir)
        remote.clone(s.repo, clone_dir, s.branch, timeout=s.git_timeout)

    def _make_leader(self, store: SqlStore) -> Leader:
        s = self.settings

        def acquire_epoch() -> int:
            return int(store.acquire_epoch(s.lock_name, self.identity))

        if s.lease:
            from configctl.adapters.leader import lease

            return lease.KubernetesLeaseLeader(
                s.lease, s.lease_namespace, self.identity, acquire_epoch=acquire_epoch, on_lost=self.wake.set
            )
        url = self._store_url()
        if url.startswith("sqlite"):
            from configctl.adapters.leader.file import FileLeader

            return FileLeader(self.workdir / "leader.lock", acquire_epoch=acquire_epoch)
        from configctl.adapters.leader.advisory import PgAdvisoryLeader

        return PgAdvisoryLeader(url, s.lock_name, acquire_epoch=acquire_epoch)

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
                self.metrics.webhook_sync()
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

    def abort_io(self) -> None:
        """A git call in flight (a fetch from a remote that hangs) is killed with its
        process group, so shutdown takes a moment, not ``--git-timeout``."""
        from configctl.adapters.git import runner

        runner.abort_all()

    def close(self) -> None:
        from configctl.adapters.git import runner

        runner.resume()  # stop() aborted git for the loop's sake, not for the process
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
    from configctl.adapters.git.runner import redact

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
    from configctl.adapters.git import runner

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
    code: int = ExitCode.INTERNAL  # until we know better: an exception escaping is a bug
    signals: list[str] = []
    try:
        check_workdir(workdir)
        check_keys(settings)
        if settings.lease:
            from configctl.adapters.leader.lease import require_client

            require_client()
        runner.use_signature_keys(
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
            code = ExitCode.INTERRUPTED
        finally:
            rec.close()
        return int(code)
    except UsageError:
        code = ExitCode.USAGE
        raise
    finally:
        why = f"on {signals[0]}" if signals else ("interrupted" if code == ExitCode.INTERRUPTED else "")
        log.info(
            "stopped%s, exit code %d",
            f" {why}" if why else "",
            code,
            extra={"fields": {"exit_code": code}},
        )
