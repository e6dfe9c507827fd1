"""Leadership as a PostgreSQL session advisory lock (the reconciler with ``--db``).

The lock name is a compatibility contract: two versions of the reconciler that derive
different locks from it would both lead (cert-manager PR #3187). The advisory-lock key
is ``sha256("configctl:leader:" + name)`` truncated to a signed 64-bit integer; never
change that derivation.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from typing import TYPE_CHECKING, Any

from configctl.adapters.leader import AcquireEpoch
from configctl.errors import StoreError

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgAdvisoryLeader", "advisory_lock_key"]

log = logging.getLogger(__name__)


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
