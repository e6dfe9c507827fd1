"""Leadership as a Kubernetes ``coordination.k8s.io/v1`` Lease (``--lease``).

Needs the ``kubernetes`` client, which is the ``lease`` extra (``pip install
'configctl[lease]'``): it brings aiohttp and pydantic along, so ``[reconciler]`` does not
pull it. :func:`require_client` says so at start (a usage error, exit 2) instead of
failing at the first campaign.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from configctl.adapters.leader import AcquireEpoch, default_identity
from configctl.errors import BackendError, UsageError

__all__ = ["INSTALL_HINT", "KubernetesLeaseLeader", "require_client"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'configctl[lease]'"


def require_client() -> None:
    """UsageError unless the Kubernetes client is installed (the ``lease`` extra)."""
    if importlib.util.find_spec("kubernetes") is None:
        raise UsageError(
            f"--lease needs the Kubernetes client, which is not installed: {INSTALL_HINT}",
            hint="or leave --lease out: with --db the leader holds a PostgreSQL advisory lock",
        )


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
        background: bool = True,
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
        self._background = background
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
        """Start campaigning in the background (once); return whether we lead right now.

        With ``background=False`` (tests with an injected clock) there is no thread: each
        call is one campaign round (:meth:`campaign_once`).
        """
        with self._state:
            if self._elector is None:
                self._elector = self._make_elector()
                self._stop.clear()
            if not self._background:
                self.campaign_once()
            elif self._thread is None:
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
            self._elector = None
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
                raise BackendError(
                    "cannot load the Kubernetes configuration for the Lease"
                ) from exc
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
            self.campaign_once()
            self._stop.wait(self.retry_period)

    def campaign_once(self) -> None:
        """One round of the election: acquire or renew the Lease, then lead or stand down."""
        try:
            renewed = bool(self._elector.try_acquire_or_renew())
        except Exception:
            log.warning(
                "Lease %s/%s: acquire or renew failed", self.namespace, self.name, exc_info=True
            )
            renewed = False
        with self._state:
            if self._stop.is_set():
                return
            now = self._clock()
            if renewed:
                self._last_renew = now
                if not self.leading.is_set():
                    self._become_leader_locked()
            elif self.leading.is_set() and now - self._last_renew >= self.renew_deadline:
                self._lose_locked("the Lease could not be renewed within renew_deadline")

    def _become_leader_locked(self) -> None:
        try:
            epoch = self._acquire_epoch() if self._acquire_epoch is not None else None
        except Exception:
            # We hold the Lease but have no fencing epoch: do not lead; retry next period.
            log.warning(
                "Lease %s acquired but the store epoch could not be taken", self.name, exc_info=True
            )
            return
        self._epoch = epoch
        self.lost.clear()
        self.leading.set()
        log.info(
            "Lease %s/%s acquired by %s (epoch %s)", self.namespace, self.name, self.identity, epoch
        )

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
                self.namespace,
                self.name,
                exc_info=True,
            )


def _nothing() -> None:
    """Callbacks for the client's Config, which we never let run (we do not call run())."""


def _load_kube_config() -> None:
    from kubernetes import config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]  # kubernetes ships py.typed, but this is unannotated
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]  # kubernetes ships py.typed, but this is unannotated
