"""Single-leader election: a PostgreSQL advisory lock, a file lock, or a Kubernetes Lease.

All three satisfy :class:`configctl.core.ports.Leader`. None of them is *safety* on its
own -- a lock can vanish without the holder noticing until its next round trip
(reliability-notes §0.6, §2.2): ``pg_terminate_backend``, a server restart, an idle-session
timeout or a network partition frees a session lock at once while the old holder's
connection still looks open. So:

1. on acquiring, each calls the injected ``acquire_epoch()`` -- the store's
   ``SqlStore.acquire_epoch(name, holder)``, which increments the leader epoch -- and
   keeps the epoch; every write transaction of the reconciler carries it and the store
   refuses a stale one (``FencingError``). That is the guarantee;
2. ``check()`` re-verifies the lock before each unit of work, so a deposed leader stops
   early instead of failing at its next write. That is the courtesy.

The lock name is a compatibility contract: two versions of the reconciler that derive
different locks from it would both lead (cert-manager PR #3187). The advisory-lock key
is ``sha256("configctl:leader:" + name)`` truncated to a signed 64-bit integer; never
change that derivation.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from configctl.errors import BackendError, StoreError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "FileLeader",
    "KubernetesLeaseLeader",
    "PgAdvisoryLeader",
    "advisory_lock_key",
    "default_identity",
]

log = logging.getLogger(__name__)

AcquireEpoch = Callable[[], int]


def default_identity() -> str:
    """``<hostname>-<pid>``: unique per process, readable in ``pg_stat_activity`` and Leases."""
    return f"{socket.gethostname()}-{os.getpid()}"


def advisory_lock_key(name: str) -> int:
    """The 64-bit advisory-lock key of leader lock ``name`` (see the module docstring)."""
    digest = hashlib.sha256(f"configctl:leader:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _libpq_url(url: str) -> str:
    """Accept SQLAlchemy-style URLs (``postgresql+psycopg://``) as well as libpq ones."""
    scheme, sep, rest = url.partition("://")
    if sep and (scheme.startswith("postgresql+") or scheme == "postgres"):
        return "postgresql://" + rest
    return url


class PgAdvisoryLeader:
    """Leadership = holding ``pg_try_advisory_lock(key)`` on a dedicated connection.

    The connection is opened by this object alone -- never from a pool, which could
    recycle it and silently drop the lock (leoflow#1199) or, behind a transaction pooler,
    never hold it at all (electric-sql PR #2682). It is in autocommit mode (a session
    lock, not ``pg_advisory_xact_lock``, which ends with the transaction -- open-ace
    PR #2862) and has TCP keepalives plus ``tcp_user_timeout`` so a dead server or
    partition is noticed in seconds, ``statement_timeout`` so no query hangs, and
    ``idle_session_timeout=0`` so a server-wide idle timeout cannot end the session.

    :meth:`check` asks ``pg_locks`` whether *this backend* still holds the lock. After
    ``pg_terminate_backend`` the lock is free at once and a rival can take it; our
    connection learns it on that query (AdminShutdown), and check returns False.
    """

    def __init__(
        self,
        url: str,
        name: str = "configctl-reconciler",
        *,
        acquire_epoch: AcquireEpoch | None = None,
        connect_timeout: int = 5,
        statement_timeout_ms: int = 5000,
        tcp_user_timeout_ms: int = 15000,
        application_name: str = "configctl-leader",
    ) -> None:
        self._url = _libpq_url(url)
        self.name = name
        self.key = advisory_lock_key(name)
        self._acquire_epoch = acquire_epoch
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": connect_timeout,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": tcp_user_timeout_ms,
            "application_name": application_name,
            # The tcp_keepalives_* settings are the *server's* side of the same idea: when
            # the leader's host vanishes without closing the connection (power loss, a
            # partition), the server notices within ~25 s and ends the session, which frees
            # the lock for a standby; with the server's defaults (the kernel's, often 2 h)
            # the lock would stay held by a dead session for hours.
            "options": f"-c statement_timeout={statement_timeout_ms} -c idle_session_timeout=0 "
            "-c idle_in_transaction_session_timeout=0 "
            "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3",
        }
        self._conn: psycopg.Connection[Any] | None = None
        self._leading = False
        self._epoch: int | None = None
        self._mutex = threading.Lock()

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def epoch(self) -> int | None:
        return self._epoch

    @property
    def backend_pid(self) -> int | None:
        """The server process holding our session (for ``pg_terminate_backend`` in tests)."""
        conn = self._conn
        return None if conn is None or conn.closed else conn.info.backend_pid

    def try_acquire(self) -> bool:
        """Take the lock if it is free. Raises StoreError if PostgreSQL is unreachable."""
        import psycopg

        with self._mutex:
            if self._leading:
                return self._check_locked()
            try:
                conn = self._connection()
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            except psycopg.Error as exc:
                self._close()
                raise StoreError(f"cannot reach PostgreSQL for leader lock {self.name!r}") from exc
            if not (row and row[0]):
                return False
            try:
                epoch = self._acquire_epoch() if self._acquire_epoch is not None else None
            except BaseException:
                # Without an epoch we must not lead: give the lock back (closing the
                # session releases it even if the unlock cannot be sent).
                self._close()
                raise
            self._epoch = epoch
            self._leading = True
            log.info("leader lock %r acquired (epoch %s)", self.name, epoch)
            return True

    def check(self) -> bool:
        with self._mutex:
            return self._check_locked()

    def _check_locked(self) -> bool:
        import psycopg

        if not self._leading or self._conn is None:
            return False
        try:
            row = self._conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks"
                " WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1)",
                ((self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF),
            ).fetchone()
            held = bool(row and row[0])
        except psycopg.Error:
            held = False
        if not held:
            log.warning("leader lock %r lost", self.name)
            self._close()
        return held

    def release(self) -> None:
        import psycopg

        with self._mutex:
            if self._leading and self._conn is not None:
                with contextlib.suppress(psycopg.Error):
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            self._close()

    def _connection(self) -> psycopg.Connection[Any]:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, **self._connect_kwargs)
        return self._conn

    def _close(self) -> None:
        """Forget leadership and end the session (which frees any lock it still holds)."""
        self._leading = False
        self._epoch = None
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


class FileLeader:
    """Leadership = an exclusive ``flock`` on a file: one writer per machine (SQLite mode).

    The lock belongs to the open file description, so it is released when the process
    dies, however it dies. :meth:`check` also makes sure the lock file is still the one
    we locked: if someone deleted or replaced it, a rival could lock the new file while
    we hold the old one, so that counts as lost. ``flock`` is unreliable on network file
    systems; keep the lock file on a local disk next to the SQLite database.
    """

    def __init__(self, path: str | os.PathLike[str], *, acquire_epoch: AcquireEpoch | None = None) -> None:
        self.path = Path(path)
        self._acquire_epoch = acquire_epoch
        self._fd: int | None = None
        self._epoch: int | None = None
        self._mutex = threading.Lock()

    @property
    def is_leader(self) -> bool:
        return self._fd is not None

    @property
    def epoch(self) -> int | None:
        return self._epoch

    def try_acquire(self) -> bool:
        with self._mutex:
            if self._fd is not None:
                return self._check_locked()
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise StoreError(f"cannot open leader lock file {self.path}: {exc.strerror}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError as exc:
                os.close(fd)
                raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from exc
            try:
                # who holds it, for an operator looking at the file; not used for locking
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{default_identity()}\n".encode(), 0)
                epoch = self._acquire_epoch() if self._acquire_epoch is not None else None
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            self._epoch = epoch
            log.info("leader lock file %s acquired (epoch %s)", self.path, epoch)
            return True

    def check(self) -> bool:
        with self._mutex:
            return self._check_locked()

    def _check_locked(self) -> bool:
        if self._fd is None:
            return False
        try:
            ours = os.fstat(self._fd)
            now = os.stat(self.path)
            same = (ours.st_dev, ours.st_ino) == (now.st_dev, now.st_ino)
        except OSError:
            same = False
        if not same:
            log.warning("leader lock file %s was removed or replaced; leadership lost", self.path)
            self._close()
        return same

    def release(self) -> None:
        with self._mutex:
            self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        self._epoch = None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class KubernetesLeaseLeader:
    """Leadership = holding a ``coordination.k8s.io/v1`` Lease (kubernetes>=37 ``LeaseLock``).

    We drive the official client's election step (``LeaderElection.try_acquire_or_renew``,
    which reads, creates and updates the Lease with resourceVersion concurrency) from our
    own thread instead of calling ``LeaderElection.run()``, because of the caveats read in
    the 37.0.2 source (reliability-notes §4.3):

    - ``run()`` calls ``onstopped_leading`` when renewal fails but does **not** stop the
      work started by ``onstarted_leading``; a deposed leader would keep writing. Here a
      failed renewal (nothing renewed for ``renew_deadline`` seconds) clears
      :attr:`is_leader` and the :attr:`leading` event, sets :attr:`lost`, and calls
      ``on_lost``. **The loop must stop work when that happens**: it calls :meth:`check`
      before each unit of work, and the store's fencing epoch stops whatever slips through.
      A deployment that prefers a restart passes ``on_lost=lambda: os._exit(1)``;
    - ``run()`` never returns while a follower and cannot be stopped; our thread stops on
      :meth:`release`, which also gives the Lease up (empty holder) so a successor need not
      wait a whole lease (python-base#278);
    - ``electionconfig.Config`` calls ``sys.exit()`` on bad timings; we check them first and
      raise ValueError;
    - the client measures lease expiry with the wall clock (a clock jump shortens or
      extends leases); our renew deadline uses the monotonic clock. A paused process can
      still outlive its lease -- the epoch is the guarantee, not the Lease.

    RBAC: ``get``, ``create``, ``update`` on ``leases.coordination.k8s.io`` in ``namespace``.

    ``lock`` may be any object with the resourcelock interface (``name``, ``namespace``,
    ``identity``, ``get``, ``create``, ``update``); by default a ``LeaseLock`` is built on
    first use after ``load_config()`` (in-cluster config, else ``~/.kube/config``).
    """

    def __init__(
        self,
        name: str,
        namespace: str,
        identity: str | None = None,
        *,
        lease_duration: int = 15,
        renew_deadline: int = 10,
        retry_period: int = 2,
        acquire_epoch: AcquireEpoch | None = None,
        on_lost: Callable[[], None] | None = None,
        lock: Any = None,
        load_config: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(lease_duration, renew_deadline, retry_period) < 1:
            raise ValueError("lease_duration, renew_deadline and retry_period must be >= 1 s")
        if lease_duration <= renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if renew_deadline <= 1.2 * retry_period:
            raise ValueError("renew_deadline must be greater than 1.2 * retry_period")
        self.name = name
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._acquire_epoch = acquire_epoch
        self._on_lost = on_lost
        self._lock_obj = lock
        self._load_config = load_config or _load_kube_config
        self._clock = clock
        self.leading = threading.Event()
        """Set while this replica leads."""
        self.lost = threading.Event()
        """Set when leadership was lost after having been held (cleared on re-acquiring)."""
        self._epoch: int | None = None
        self._last_renew = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._elector: Any = None
        # re-entrant: on_lost runs under it and may well call check() or is_leader
        self._state = threading.RLock()

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    @property
    def epoch(self) -> int | None:
        return self._epoch

    def try_acquire(self) -> bool:
        """Start campaigning in the background (once); return whether we lead right now."""
        with self._state:
            if self._thread is None:
                self._elector = self._make_elector()
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._campaign, name=f"lease-{self.name}", daemon=True
                )
                self._thread.start()
        return self.check()

    def check(self) -> bool:
        with self._state:
            if self.leading.is_set() and self._clock() - self._last_renew >= self.renew_deadline:
                self._lose_locked("the Lease was not renewed within renew_deadline")
            return self.leading.is_set()

    def release(self) -> None:
        thread = self._thread
        self._stop.set()
        if thread is not None:
            thread.join(timeout=self.retry_period + 5)
        with self._state:
            self._thread = None
            if self.leading.is_set():
                self._give_up_lease()
                self.leading.clear()
                self._epoch = None

    # -- internals ------------------------------------------------------------------------

    def _make_elector(self) -> Any:
        from kubernetes.leaderelection import electionconfig, leaderelection

        lock = self._lock_obj
        if lock is None:
            try:
                self._load_config()
                from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock
            except Exception as exc:
                raise BackendError("cannot load the Kubernetes configuration for the Lease") from exc
            lock = LeaseLock(self.name, self.namespace, self.identity)  # type: ignore[no-untyped-call]  # kubernetes ships py.typed, but this is unannotated
            self._lock_obj = lock
        config = electionconfig.Config(  # type: ignore[no-untyped-call]  # unannotated upstream
            lock,
            self.lease_duration,
            self.renew_deadline,
            self.retry_period,
            onstarted_leading=_nothing,
            onstopped_leading=_nothing,
        )
        return leaderelection.LeaderElection(config)  # type: ignore[no-untyped-call]  # kubernetes ships py.typed, but this is unannotated

    def _campaign(self) -> None:
        while not self._stop.is_set():
            try:
                renewed = bool(self._elector.try_acquire_or_renew())
            except Exception:
                log.warning("Lease %s/%s: acquire or renew failed", self.namespace, self.name, exc_info=True)
                renewed = False
            with self._state:
                if self._stop.is_set():
                    break
                now = self._clock()
                if renewed:
                    self._last_renew = now
                    if not self.leading.is_set():
                        self._become_leader_locked()
                elif self.leading.is_set() and now - self._last_renew >= self.renew_deadline:
                    self._lose_locked("the Lease could not be renewed within renew_deadline")
            self._stop.wait(self.retry_period)

    def _become_leader_locked(self) -> None:
        try:
            epoch = self._acquire_epoch() if self._acquire_epoch is not None else None
        except Exception:
            # We hold the Lease but have no fencing epoch: do not lead; retry next period.
            log.warning("Lease %s acquired but the store epoch could not be taken", self.name, exc_info=True)
            return
        self._epoch = epoch
        self.lost.clear()
        self.leading.set()
        log.info("Lease %s/%s acquired by %s (epoch %s)", self.namespace, self.name, self.identity, epoch)

    def _lose_locked(self, reason: str) -> None:
        log.warning("Lease %s/%s lost: %s", self.namespace, self.name, reason)
        self.leading.clear()
        self._epoch = None
        self.lost.set()
        if self._on_lost is not None:
            try:
                self._on_lost()
            except Exception:
                log.exception("on_lost callback failed")

    def _give_up_lease(self) -> None:
        """Best effort: write an empty holder so a successor takes over at once."""
        from kubernetes.leaderelection.leaderelectionrecord import LeaderElectionRecord

        now = str(datetime.now())  # noqa: DTZ005 - the client's record format is naive local time
        record = LeaderElectionRecord("", str(self.lease_duration), now, now)  # type: ignore[no-untyped-call]  # kubernetes ships py.typed, but this is unannotated
        try:
            self._lock_obj.update(self.name, self.namespace, record)
        except Exception:
            log.info(
                "Lease %s/%s could not be released; it expires by itself",
                self.namespace, self.name, exc_info=True,
            )


def _nothing() -> None:
    """Callbacks for the client's Config, which we never let run (we do not call run())."""


def _load_kube_config() -> None:
    from kubernetes import config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]  # kubernetes ships py.typed, but this is unannotated
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]  # kubernetes ships py.typed, but this is unannotated
