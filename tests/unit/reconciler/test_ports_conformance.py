"""The adapters satisfy the ports (checked by mypy on this file; constructors do no I/O)."""

from __future__ import annotations

from pathlib import Path

from configctl.adapters.amqp import AmqpPublisher
from configctl.adapters.leader.advisory import PgAdvisoryLeader
from configctl.adapters.leader.file import FileLeader
from configctl.adapters.leader.lease import KubernetesLeaseLeader
from configctl.adapters.log_notifier import LogNotifier
from configctl.adapters.redis_cache import RedisCache
from configctl.adapters.snapshot_dir import SnapshotDir
from configctl.core.cache import SnapshotCache
from configctl.core.ports import Leader, PublisherPort


def test_caches_publishers_and_leaders_fit_their_ports(tmp_path: Path) -> None:
    caches: list[SnapshotCache] = [
        RedisCache("redis://127.0.0.1:1/0"),  # no connection is made until first use
        SnapshotDir(tmp_path),
    ]
    publishers: list[PublisherPort] = [AmqpPublisher("amqp://guest:guest@127.0.0.1:1/%2F"), LogNotifier()]
    leaders: list[Leader] = [
        PgAdvisoryLeader("postgresql://postgres@127.0.0.1:1/postgres", "x"),
        FileLeader(tmp_path / "lock"),
        KubernetesLeaseLeader("x", "ns", "me"),
    ]
    assert len(caches) == 2
    assert len(publishers) == 2
    assert all(not leader.is_leader and leader.epoch is None for leader in leaders)
