"""KubernetesLeaseLeader without a cluster: a fake lock implementing the resourcelock interface.

The official client's election step (LeaderElection.try_acquire_or_renew) runs for real;
only the Lease API calls (get/create/update) are served from memory. What is *not*
tested here: a real LeaseLock against an API server (no cluster on this machine).
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

import pytest

from configctl.adapters.leader.lease import KubernetesLeaseLeader
from configctl.errors import BackendError


class NotFound(Exception):
    """What LeaseLock.get returns for a missing Lease: an ApiException-like with a JSON body."""

    body = json.dumps({"code": 404})
    reason = "Not Found"


class Unavailable(Exception):
    """A proxy's HTML error page instead of the API server's JSON."""

    body = "<html>502 Bad Gateway</html>"
    reason = "Bad Gateway"


class LeaseStore:
    """One in-memory Lease shared by the candidates' locks, with optimistic concurrency."""

    def __init__(self) -> None:
        self.record: Any = None
        self.version = 0
        self.mutex = threading.Lock()


class FakeLock:
    """The resourcelock interface: name, namespace, identity, get, create, update."""

    def __init__(self, store: LeaseStore, identity: str) -> None:
        self.store = store
        self.name = "configctl-reconciler"
        self.namespace = "configctl"
        self.identity = identity
        self.seen_version = -1
        self.fail = False

    def get(self, name: str, namespace: str) -> tuple[bool, Any]:
        if self.fail:
            return False, Unavailable()
        with self.store.mutex:
            if self.store.record is None:
                return False, NotFound()
            self.seen_version = self.store.version
            return True, copy.copy(self.store.record)

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        with self.store.mutex:
            if self.fail or self.store.record is not None:
                return False
            self.store.record = copy.copy(election_record)
            self.store.version += 1
            self.seen_version = self.store.version
            return True

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        with self.store.mutex:
            if self.fail or self.seen_version != self.store.version:
                return False  # 409 Conflict in the real API
            record = copy.copy(updated_record)
            if not record.holder_identity:
                record.holder_identity = None  # an empty holder reads back as "no holder"
            self.store.record = record
            self.store.version += 1
            self.seen_version = self.store.version
            return True


class Clock:
    """The monotonic clock the leader's renew deadline is measured on, moved by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def candidate(
    store: LeaseStore, identity: str, *, clock: Clock | None = None, **kw: Any
) -> tuple[KubernetesLeaseLeader, FakeLock]:
    """A leader with fast timings (lease 4 s, renew deadline 2 s, retry 1 s) on a fake lock,
    without a campaign thread: each ``try_acquire`` / ``campaign_once`` is one round, at
    the time ``clock`` says (time passes only when a test moves it)."""
    lock = FakeLock(store, identity)
    leader = KubernetesLeaseLeader(
        "l", "ns", identity, lock=lock, lease_duration=4, renew_deadline=2, retry_period=1,
        clock=clock or Clock(), background=False, **kw,
    )  # fmt: skip
    return leader, lock


def epoch_of(leader: KubernetesLeaseLeader) -> int | None:
    """Read through a call so mypy does not narrow the property between steps."""
    return leader.epoch


def test_construction_does_not_touch_a_cluster() -> None:
    leader = KubernetesLeaseLeader("configctl-reconciler", "configctl", "pod-a")
    assert not leader.is_leader
    assert leader.epoch is None
    assert leader.identity == "pod-a"
    assert not leader.check()
    leader.release()  # never started: harmless


@pytest.mark.parametrize(
    ("lease", "renew", "retry"),
    [(10, 10, 2), (15, 2, 2), (15, 10, 0)],
)
def test_bad_timings_raise_instead_of_sys_exit(lease: int, renew: int, retry: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        KubernetesLeaseLeader("x", "ns", "me", lease_duration=lease, renew_deadline=renew, retry_period=retry)


def test_without_cluster_config_the_error_is_a_backend_error() -> None:
    def no_config() -> None:
        raise RuntimeError("no in-cluster config and no kubeconfig")

    leader = KubernetesLeaseLeader("x", "ns", "me", load_config=no_config)
    with pytest.raises(BackendError, match="Kubernetes configuration"):
        leader.try_acquire()


def test_one_of_two_candidates_leads_and_gets_an_epoch() -> None:
    store = LeaseStore()
    epochs = iter(range(1, 100))
    clock = Clock()
    a, _ = candidate(store, "pod-a", clock=clock, acquire_epoch=lambda: next(epochs))
    b, _ = candidate(store, "pod-b", clock=clock, acquire_epoch=lambda: next(epochs))
    try:
        assert a.try_acquire()
        assert a.is_leader
        assert not b.try_acquire()
        for _ in range(3):  # b campaigns for a while: the lease is held and renewed
            clock.t += 1.0
            a.campaign_once()
            b.campaign_once()
        assert a.is_leader
        assert a.check()
        assert not b.is_leader
        assert a.epoch == 1
        assert b.epoch is None
        assert store.record.holder_identity == "pod-a"
    finally:
        a.release()
        b.release()


def test_losing_the_lease_stops_leadership_and_signals() -> None:
    store = LeaseStore()
    lost_calls: list[float] = []
    clock = Clock()
    a, lock = candidate(store, "pod-a", clock=clock, acquire_epoch=lambda: 7, on_lost=lambda: lost_calls.append(clock()))
    try:
        a.try_acquire()
        assert a.is_leader
        assert a.leading.is_set()
        assert not a.lost.is_set()
        assert a.epoch == 7
        lock.fail = True  # the API server is unreachable from here on
        started = clock()
        while not a.lost.is_set() and clock() - started < 8:  # one round per retry period
            clock.t += 1.0
            a.campaign_once()
        assert a.lost.is_set()
        assert not a.is_leader
        assert not a.leading.is_set()
        assert not a.check()
        assert epoch_of(a) is None
        assert len(lost_calls) == 1
        # not before renew_deadline (2 s) of failed renewals; retry_period granularity
        assert lost_calls[0] - started >= 0.9
        assert lost_calls[0] - started == a.renew_deadline
    finally:
        a.release()


def test_check_alone_notices_a_stalled_renewal() -> None:
    """Even if the campaign thread is stuck, check() refuses after renew_deadline."""

    clock = Clock()
    store = LeaseStore()
    a, _ = candidate(store, "pod-a", clock=clock)
    try:
        a.try_acquire()
        assert a.is_leader
        # no further campaign round runs (as if the thread were wedged)
        clock.t += 1.2
        assert a.check()
        clock.t += 2.0
        assert not a.check()
        assert a.lost.is_set()
    finally:
        a.release()


def test_release_hands_over_at_once() -> None:
    store = LeaseStore()
    clock = Clock()
    a, _ = candidate(store, "pod-a", clock=clock)
    b, _ = candidate(store, "pod-b", clock=clock)
    try:
        a.try_acquire()
        assert a.is_leader
        b.try_acquire()
        clock.t += 1.2
        b.campaign_once()
        assert not b.is_leader
        released = clock()
        a.release()
        assert not a.is_leader
        # b takes over at its next round (a retry period), not after a whole lease_duration
        # (the client measures the lease on the wall clock, which barely moved here)
        clock.t += 1.0
        b.campaign_once()
        assert b.is_leader
        assert clock() - released < 3.9
    finally:
        a.release()
        b.release()


def test_no_epoch_no_leadership() -> None:
    store = LeaseStore()
    attempts: list[int] = []

    def failing_epoch() -> int:
        attempts.append(1)
        raise BackendError("store down")

    a, _ = candidate(store, "pod-a", acquire_epoch=failing_epoch)
    try:
        a.try_acquire()
        a.campaign_once()
        assert len(attempts) >= 2
        assert not a.is_leader
        assert a.epoch is None
    finally:
        a.release()
