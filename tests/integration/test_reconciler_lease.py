"""The reconciler loop with ``--lease`` (a Kubernetes Lease), against the real PostgreSQL.

There is no Kubernetes API server here, so the Lease itself is the in-memory fake lock of
``tests/unit/reconciler/test_kubernetes_lease.py`` (the official client's election step
runs for real on it). Everything else is real: two reconcilers (in threads, with distinct
identities) share one PostgreSQL store and one git repository; the leader's Lease API
becomes unreachable, it stands down when its renew deadline passes, the other takes the
Lease when it expires, bumps the fencing epoch and carries on. Not covered: a real
``LeaseLock`` against an API server, RBAC, clock skew between nodes.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from tests.integration.reconciler_harness import ConfigRepo, StoreView, wait_for
from tests.unit.reconciler.test_kubernetes_lease import FakeLock, LeaseStore

from configctl.adapters.leader import lease as leader_module
from configctl_reconciler.runner import Reconciler
from configctl_reconciler.settings import ReconcilerSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def fake_leases(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeLock]:
    """Every KubernetesLeaseLeader the runner builds gets a fake lock on one shared Lease
    and fast timings (lease 4 s, renew deadline 2 s, retry 1 s)."""
    store = LeaseStore()
    locks: dict[str, FakeLock] = {}
    real = leader_module.KubernetesLeaseLeader

    def build(name: str, namespace: str, identity: str, **kw: Any) -> Any:
        locks[identity] = FakeLock(store, identity)
        return real(name, namespace, identity, lock=locks[identity], lease_duration=4, renew_deadline=2, retry_period=1, **kw)

    monkeypatch.setattr(leader_module, "KubernetesLeaseLeader", build)
    return locks


def test_lease_leader_stands_down_and_the_other_takes_over(
    tmp_path: Path, pg_db_url: str, fake_leases: dict[str, FakeLock]
) -> None:
    repo = ConfigRepo(tmp_path / "repo")
    store = StoreView(pg_db_url)
    recs: dict[str, Reconciler] = {}
    threads: list[threading.Thread] = []
    for name in ("pod-a", "pod-b"):
        settings = ReconcilerSettings(
            repo=repo.url, workdir=str(tmp_path / name), db=pg_db_url, interval=0.3, lease="configctl", lease_namespace="ns"
        )
        rec = Reconciler(settings)
        rec.identity = name
        recs[name] = rec
        threads.append(threading.Thread(target=rec.run, name=name, daemon=True))
    for t in threads:
        t.start()
    try:
        def leaders() -> list[str]:
            return [n for n, r in recs.items() if r.state.role == "leader"]

        first = wait_for(leaders, timeout=15, what="a Lease leader")
        assert len(first) == 1
        old = first[0]
        new = "pod-b" if old == "pod-a" else "pod-a"
        wait_for(lambda: len(store.versions()) == 4, timeout=10, what="the head applied by the leader")
        assert recs[new].state.role == "standby"
        assert store.rows("SELECT epoch FROM leader_lease") == [(1,)]

        fake_leases[old].fail = True  # the API server is unreachable from the leader
        wait_for(lambda: recs[old].state.role == "standby", timeout=6, what="the old leader standing down")
        wait_for(lambda: recs[new].state.role == "leader", timeout=10, what="the other taking the Lease")
        assert store.rows("SELECT epoch FROM leader_lease") == [(2,)]
        sha = repo.bump("billing", "prod")
        wait_for(lambda: store.commit_status(sha) == "applied", timeout=10, what="the new leader applying")
        fake_leases[old].fail = False  # back, but the Lease is held: it stays a standby
        sha2 = repo.bump("search", "dev")
        wait_for(lambda: store.commit_status(sha2) == "applied", timeout=10, what="the next commit")
        assert leaders() == [new]
        assert [c for *_, c in store.versions()].count(sha) == 1
        assert [c for *_, c in store.versions()].count(sha2) == 1
    finally:
        for rec in recs.values():
            rec.stop()
        for t in threads:
            t.join(15)
        for rec in recs.values():
            rec.close()
