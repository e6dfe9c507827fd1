"""PgAdvisoryLeader against a real PostgreSQL; FileLeader across real processes."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tests.servers import free_port, libpq_url

from configctl.adapters.leader.advisory import PgAdvisoryLeader, advisory_lock_key
from configctl.adapters.leader.file import FileLeader
from configctl.errors import StoreError

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def leading(leader: PgAdvisoryLeader | FileLeader) -> bool:
    """Read through a call so mypy does not narrow the property between steps."""
    return leader.is_leader


@pytest.fixture
def lock_name() -> str:
    return f"configctl-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def admin(pg_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        yield conn


@pytest.fixture
def leaders(pg_url: str, lock_name: str) -> Iterator[tuple[PgAdvisoryLeader, PgAdvisoryLeader, list[int]]]:
    counter = itertools.count(1)
    epochs: list[int] = []

    def acquire_epoch() -> int:
        epochs.append(next(counter))
        return epochs[-1]

    a = PgAdvisoryLeader(pg_url, lock_name, acquire_epoch=acquire_epoch)
    b = PgAdvisoryLeader(pg_url, lock_name, acquire_epoch=acquire_epoch)
    yield a, b, epochs
    a.release()
    b.release()


def test_key_is_stable() -> None:
    # a compatibility contract: changing it would let two versions lead at once
    assert advisory_lock_key("configctl-reconciler") == advisory_lock_key("configctl-reconciler")
    assert advisory_lock_key("a") != advisory_lock_key("b")
    assert -(2**63) <= advisory_lock_key("configctl-reconciler") < 2**63


def test_only_one_of_two_acquires(leaders: tuple[PgAdvisoryLeader, PgAdvisoryLeader, list[int]]) -> None:
    a, b, epochs = leaders
    assert a.try_acquire() is True
    assert b.try_acquire() is False
    assert a.is_leader
    assert not b.is_leader
    assert a.check() is True
    assert b.check() is False
    assert a.epoch == 1
    assert b.epoch is None
    assert a.try_acquire() is True  # re-asking does not stack the lock or take a new epoch
    assert epochs == [1]
    a.release()
    assert not leading(a)
    assert b.try_acquire() is True
    assert b.epoch == 2


def test_terminated_backend_loses_leadership_and_rival_takes_over(
    leaders: tuple[PgAdvisoryLeader, PgAdvisoryLeader, list[int]], admin: psycopg.Connection[tuple[object, ...]]
) -> None:
    a, b, _ = leaders
    assert a.try_acquire()
    pid = a.backend_pid
    assert pid is not None
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # the lock is free at once on the server, although a has not noticed yet
    assert b.try_acquire() is True
    assert b.epoch == 2
    # a notices on its next round trip
    assert a.is_leader  # the cached flag: exactly why check() exists
    assert a.check() is False
    assert not leading(a)
    assert a.epoch is None
    assert b.check() is True
    # and a cannot take it back while b holds it
    assert a.try_acquire() is False


def test_lock_is_held_on_a_dedicated_session(
    leaders: tuple[PgAdvisoryLeader, PgAdvisoryLeader, list[int]], admin: psycopg.Connection[tuple[object, ...]]
) -> None:
    a, _, _ = leaders
    assert a.try_acquire()
    row = admin.execute(
        "SELECT application_name, state FROM pg_stat_activity WHERE pid = %s", (a.backend_pid,)
    ).fetchone()
    assert row is not None
    assert row[0] == "configctl-leader"
    key = advisory_lock_key(a.name)
    held = admin.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = %s"
        " AND classid = %s::bigint::oid AND objid = %s::bigint::oid",
        (a.backend_pid, (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
    ).fetchone()
    assert held == (1,)


def test_failed_epoch_gives_the_lock_back(pg_url: str, lock_name: str) -> None:
    def broken() -> int:
        raise StoreError("leader_lease table unavailable")

    a = PgAdvisoryLeader(pg_url, lock_name, acquire_epoch=broken)
    b = PgAdvisoryLeader(pg_url, lock_name)
    try:
        with pytest.raises(StoreError):
            a.try_acquire()
        assert not a.is_leader
        assert b.try_acquire() is True
    finally:
        a.release()
        b.release()


def test_unreachable_database_raises_store_error(lock_name: str) -> None:
    a = PgAdvisoryLeader(f"postgresql://postgres:pw-secret@127.0.0.1:{free_port()}/postgres", lock_name, connect_timeout=2)
    with pytest.raises(StoreError) as info:
        a.try_acquire()
    assert "pw-secret" not in str(info.value)
    assert a.check() is False


def test_sqlalchemy_style_url_is_accepted(pg_url: str, lock_name: str) -> None:
    url = pg_url if pg_url.startswith("postgresql+") else pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    a = PgAdvisoryLeader(url, lock_name)
    try:
        assert a.try_acquire()
    finally:
        a.release()


# -- FileLeader --------------------------------------------------------------------------------

HOLDER = """
import sys, time
from configctl.adapters.leader.file import FileLeader
leader = FileLeader(sys.argv[1])
print("acquired" if leader.try_acquire() else "refused", flush=True)
sys.stdin.readline()
leader.release()
print("released", flush=True)
"""


def spawn_holder(path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'cli'}{os.pathsep}{ROOT / 'reconciler'}"}
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_file_leader_excludes_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "leader.lock"
    with spawn_holder(path) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdin is not None
            assert holder.stdout.readline().strip() == "acquired"
            me = FileLeader(path, acquire_epoch=lambda: 42)
            assert me.try_acquire() is False
            assert not me.is_leader
            # a second process is refused too
            with spawn_holder(path) as other:
                out, _ = other.communicate("\n", timeout=10)
            assert out.splitlines()[0] == "refused"
            # the holder lets go: we get it
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "released"
            assert me.try_acquire() is True
            assert me.epoch == 42
            assert me.check()
            me.release()
        finally:
            holder.kill()


def test_file_lock_is_freed_when_the_holder_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "leader.lock"
    with spawn_holder(path) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "acquired"
        me = FileLeader(path)
        assert me.try_acquire() is False
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    deadline = time.monotonic() + 5
    while not me.try_acquire() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert me.is_leader
    me.release()


def test_file_leader_notices_a_replaced_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "leader.lock"
    me = FileLeader(path)
    assert me.try_acquire()
    path.unlink()  # someone "cleaned up": a rival could now lock a fresh file
    rival = FileLeader(path)
    assert rival.try_acquire()
    assert me.check() is False
    assert not me.is_leader
    rival.release()


def test_two_file_leaders_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    path = tmp_path / "leader.lock"
    a, b = FileLeader(path), FileLeader(path)
    assert a.try_acquire()
    assert not b.try_acquire()
    a.release()
    assert b.try_acquire()
    b.release()
