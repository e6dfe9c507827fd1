"""SnapshotDir (the embedded mode's cache): atomic files, never backwards, repair."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from configctl.adapters.snapshot_dir import SnapshotDir, atomic_write
from configctl.core.cache import CachedSnapshot
from configctl.errors import CacheError

pytestmark = pytest.mark.integration


def snap(app: str = "billing", env: str = "prod", version: int = 1, *, checksum: str | None = None, values: dict[str, object] | None = None) -> CachedSnapshot:
    return CachedSnapshot(
        app=app,
        env=env,
        version=version,
        commit=None,
        checksum=checksum or f"c{version}",
        values=values if values is not None else {"v": version},
        updated_at=datetime.now(UTC),
    )


def test_put_get_layout_and_mode(tmp_path: Path) -> None:
    cache = SnapshotDir(tmp_path / "snapshots")
    cache.ping()  # not created yet, but creatable
    assert cache.put(snap(version=2))
    file = tmp_path / "snapshots" / "billing.prod.json"
    assert json.loads(file.read_text())["version"] == 2
    assert stat.S_IMODE(file.stat().st_mode) == 0o600  # snapshots may hold secrets
    got = cache.get("billing", "prod")
    assert got is not None
    assert got.version == 2
    assert cache.get("billing", "dev") is None
    assert cache.versions() == {("billing", "prod"): 2}
    assert [p.name for p in (tmp_path / "snapshots").iterdir() if p.name.startswith(".tmp-")] == []
    cache.ping()


def test_never_backwards(tmp_path: Path) -> None:
    cache = SnapshotDir(tmp_path)
    assert cache.put(snap(version=5))
    assert cache.put(snap(version=4)) is False
    assert cache.put(snap(version=5)) is False
    assert cache.put(snap(version=5, checksum="other", values={"v": "fixed"}))
    got = cache.get("billing", "prod")
    assert got is not None
    assert got.values == {"v": "fixed"}


def test_readers_never_see_a_torn_file(tmp_path: Path) -> None:
    cache = SnapshotDir(tmp_path)
    big = {f"k{i}": "y" * 500 for i in range(400)}  # ~200 KB: many write() calls
    cache.put(snap(version=1, values={"v": 1, **big}))
    stop = threading.Event()
    problems: list[str] = []

    def read() -> None:
        while not stop.is_set():
            try:
                got = cache.get("billing", "prod")
            except CacheError as exc:
                problems.append(exc.message)
                continue
            if got is None or got.values["v"] != got.version:
                problems.append("missing or mixed")

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for version in range(2, 60):
            cache.put(snap(version=version, values={"v": version, **big}))
    finally:
        stop.set()
        thread.join()
    assert not problems, problems[:3]


def test_repair(tmp_path: Path) -> None:
    cache = SnapshotDir(tmp_path)
    cache.put(snap("billing", "prod", 1))
    cache.put(snap("old", "prod", 1))
    cache.put(snap("search", "prod", 9))
    (tmp_path / "auth.prod.json").write_text("{torn")
    (tmp_path / ".tmp-crashed.json").write_text("leftover of a crash")
    (tmp_path / "README").write_text("not ours")
    expected = {
        ("billing", "prod"): snap("billing", "prod", 3),
        ("auth", "prod"): snap("auth", "prod", 2),
        ("search", "prod"): snap("search", "prod", 8),
        ("new", "dev"): snap("new", "dev", 1),
    }
    assert cache.repair(expected) == 4  # billing, auth, new written; old deleted; search left alone
    assert cache.versions() == {("billing", "prod"): 3, ("auth", "prod"): 2, ("search", "prod"): 9, ("new", "dev"): 1}
    assert not (tmp_path / "old.prod.json").exists()
    assert not (tmp_path / ".tmp-crashed.json").exists()
    assert (tmp_path / "README").exists()
    assert cache.repair(expected) == 0


def test_empty_directory_is_refilled(tmp_path: Path) -> None:
    cache = SnapshotDir(tmp_path / "gone")
    expected = {("a", "b"): snap("a", "b", 1)}
    assert cache.versions() == {}
    assert cache.repair(expected) == 1
    assert cache.versions() == {("a", "b"): 1}


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.json"
    atomic_write(target, b"old")

    class Boom(Exception):
        pass

    def failing_replace(*args: object) -> None:
        raise Boom

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(Boom):
        atomic_write(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = SnapshotDir(blocker / "sub")
    with pytest.raises(CacheError):
        cache.ping()
    with pytest.raises(CacheError):
        cache.put(snap())
