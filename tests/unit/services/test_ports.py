"""The store and git adapters satisfy the ports of ``core.ports`` (mypy checks this file:
``mypy tests/unit/services/test_ports.py``; constructors do no I/O)."""

from __future__ import annotations

from pathlib import Path

from configctl.adapters.git import GitSource
from configctl.adapters.store.store import SqlStore
from configctl.core.ports import GitSourcePort, StoreReads, VersionStore


def test_store_and_git_fit_their_ports(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'store.db'}")
    writer: VersionStore = store
    reads: StoreReads = store
    git: type[GitSourcePort] = GitSource
    assert [writer, reads] == [store, store]
    assert git is GitSource
    store.close()


def test_fakes_fit_the_ports() -> None:
    from tests.fakes import FakeCache, FakeClock, FakeGit, FakePublisher, FakeStore, SequentialIds

    from configctl.core.ports import Clock, IdFactory, OutboxPort, PublisherPort, SnapshotCache

    store = FakeStore()
    ports: tuple[
        VersionStore,
        StoreReads,
        OutboxPort,
        GitSourcePort,
        PublisherPort,
        SnapshotCache,
        Clock,
        IdFactory,
    ] = (
        store,
        store,
        store,
        FakeGit(),
        FakePublisher(),
        FakeCache(),
        FakeClock(),
        SequentialIds(),
    )
    assert len(ports) == 8
