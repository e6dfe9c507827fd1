"""The version store on SQLite and on PostgreSQL: schema, records, serialised writers, fencing.

Every test runs twice through the ``store_url`` fixture (a fresh SQLite file, a fresh
PostgreSQL database). The concurrency tests use real OS processes (``spawn``), because
the guarantees are about processes: two appliers never write duplicate or skipped version
numbers, and a process killed inside a unit of work leaves nothing behind.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from configctl.adapters.store import SqlStore, default_sqlite_url, normalize_url
from configctl.adapters.store import models as m
from configctl.core.records import CommitInfo, KeyChange, checksum
from configctl.errors import FencingError, StoreError, UsageError

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class Clock:
    """A settable clock, so stored times are known."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def tick(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(store_url: str, clock: Clock) -> Iterator[SqlStore]:
    s = SqlStore(store_url, clock=clock)
    s.upgrade()
    yield s
    s.close()


def commit(
    sha_char: str, *, message: str = "change things\n\nbody", author: str = "Ann"
) -> CommitInfo:
    return CommitInfo(
        sha=sha_char * 40,
        parents=("0" * 40,),
        author_name=author,
        author_email=f"{author.lower()}@example.invalid",
        authored_at=T0,
        committer_name="Bot",
        committer_email="bot@example.invalid",
        committed_at=T0 + timedelta(minutes=1),
        message=message,
        signature_status="G",
        signer="Ann <ann@example.invalid>",
    )


def add(
    uow: Any, values: dict[str, Any], *, app: str = "checkout", env: str = "prod", **kw: Any
) -> int:
    changes = kw.pop(
        "changes", [KeyChange(key=k, change="added", new=v) for k, v in values.items()]
    )
    number: int = uow.add_version(
        app=app,
        env=env,
        values=values,
        checksum=checksum(values),
        commit_sha=kw.pop("commit_sha", None),
        reason=kw.pop("reason", "commit"),
        actor=kw.pop("actor", "tester"),
        changes=changes,
        **kw,
    )
    return number


# --------------------------------------------------------------------------- schema


def test_upgrade_is_idempotent_and_reports_revision(store_url: str) -> None:
    s = SqlStore(store_url)
    try:
        assert s.current_revision() is None
        s.upgrade()
        assert s.current_revision() == m.SCHEMA_REVISION
        s.upgrade()
        s.ensure_schema()
        assert s.current_revision() == m.SCHEMA_REVISION
        assert s.latest_versions() == {}
    finally:
        s.close()


def test_unmigrated_store_is_refused_with_a_clear_message(store_url: str) -> None:
    s = SqlStore(store_url)
    try:
        for call in (
            s.latest_versions,
            lambda: s.audit(),
            lambda: s.pending_outbox(10),
            lambda: s.acquire_epoch("x", "me"),
        ):
            with pytest.raises(StoreError, match=r"not migrated: run `configctl db upgrade`"):
                call()
        with pytest.raises(StoreError, match="not migrated"), s.unit_of_work():
            pass
    finally:
        s.close()


def test_ensure_schema_migrates_an_empty_database(store_url: str) -> None:
    s = SqlStore(store_url)
    try:
        s.ensure_schema()
        assert s.current_revision() == m.SCHEMA_REVISION
        with s.unit_of_work() as uow:
            assert add(uow, {"a": 1}) == 1
    finally:
        s.close()


def test_migrated_schema_equals_the_models(store: SqlStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, m.Base.metadata) == []


def test_schema_revision_is_the_head_of_the_scripts() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import configctl.adapters.store as pkg

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(pkg.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(cfg).get_heads() == [m.SCHEMA_REVISION]


# --------------------------------------------------------------------------- versions


def test_versions_are_numbered_per_app_and_env(store: SqlStore) -> None:
    with store.unit_of_work() as uow:
        assert add(uow, {"a": 1}) == 1
        assert add(uow, {"a": 2}) == 2
        assert add(uow, {"a": 1}, env="staging") == 1
    with store.unit_of_work() as uow:
        assert add(uow, {"a": 3}) == 3
        assert add(uow, {"b": 1}, app="search") == 1
    latest = store.latest_versions()
    assert {k: v.number for k, v in latest.items()} == {
        ("checkout", "prod"): 3,
        ("checkout", "staging"): 1,
        ("search", "prod"): 1,
    }
    assert latest["checkout", "prod"].values == {"a": 3}


def test_add_get_list_and_key_history(store: SqlStore, clock: Clock) -> None:
    c1, c2 = commit("a", message="first\n\nwhy"), commit("b", message="second", author="Bob")
    v1 = {"db": {"host": "h1", "port": 5432}, "replicas": 2}
    v2 = {"db": {"host": "h2", "port": 5432}, "feature_x": True}
    with store.unit_of_work() as uow:
        uow.record_commit(c1, "applied", None)
        add(
            uow,
            v1,
            commit_sha=c1.sha,
            changes=[
                KeyChange(key="db.host", change="added", new="h1"),
                KeyChange(key="db.port", change="added", new=5432),
                KeyChange(key="replicas", change="added", new=2),
            ],
        )
    clock.tick(hours=1)
    with store.unit_of_work() as uow:
        # The version may come before its commit row inside one unit of work.
        add(
            uow,
            v2,
            commit_sha=c2.sha,
            changes=[
                KeyChange(key="db.host", change="changed", old="h1", new="h2"),
                KeyChange(key="feature_x", change="added", new=True),
                KeyChange(key="replicas", change="removed", old=2),
            ],
        )
        uow.record_commit(c2, "applied", None)
        assert uow.get_version("checkout", "prod").number == 2  # type: ignore[union-attr]

    got = store.get_version("checkout", "prod", 1)
    assert got is not None
    assert (got.number, got.values, got.commit_sha, got.reason, got.actor) == (
        1,
        v1,
        c1.sha,
        "commit",
        "tester",
    )
    assert got.checksum == checksum(v1)
    assert got.created_at == T0
    assert got.created_at.tzinfo is not None
    newest = store.get_version("checkout", "prod")
    assert newest is not None
    assert newest.number == 2
    assert store.get_version("checkout", "prod", 9) is None
    assert store.get_version("nope", "prod") is None

    entries = store.list_versions("checkout", "prod")
    assert [e.number for e in entries] == [2, 1]
    assert entries[0].author_name == "Bob"
    assert entries[0].subject == "second"
    assert entries[1].subject == "first"
    assert entries[1].committed_at == c1.committed_at
    assert [(c.key, c.change) for c in entries[0].changes] == [
        ("db.host", "changed"),
        ("feature_x", "added"),
        ("replicas", "removed"),
    ]
    assert [e.number for e in store.list_versions("checkout", "prod", limit=1)] == [2]

    history = store.key_history("checkout", "prod", "db.host")
    assert [(h.version, h.change, h.old, h.new, h.commit_sha) for h in history] == [
        (2, "changed", "h1", "h2", c2.sha),
        (1, "added", None, "h1", c1.sha),
    ]
    assert history[0].author_name == "Bob"
    assert history[0].created_at == T0 + timedelta(hours=1)
    # A parent key finds the changes below it, and nothing else.
    assert {(h.version, h.key) for h in store.key_history("checkout", "prod", "db")} == {
        (2, "db.host"),
        (1, "db.host"),
        (1, "db.port"),
    }
    assert store.key_history("checkout", "prod", "d") == []


def test_rollback_version_without_commit(store: SqlStore) -> None:
    with store.unit_of_work() as uow:
        add(uow, {"a": 1})
        add(uow, {"a": 2})
        n = add(uow, {"a": 1}, reason="rollback", rolled_back_to=1, actor="ops")
    entry = store.list_versions("checkout", "prod")[0]
    assert (entry.number, entry.reason, entry.rolled_back_to, entry.author_name) == (
        n,
        "rollback",
        1,
        None,
    )


def test_bad_reason_or_change_kind_is_refused(store: SqlStore) -> None:
    with pytest.raises(ValueError, match="version reason"), store.unit_of_work() as uow:
        add(uow, {"a": 1}, reason="whim")
    with pytest.raises(ValueError, match="change of key"), store.unit_of_work() as uow:
        add(uow, {"a": 1}, changes=[KeyChange(key="a", change="mutated")])
    assert store.latest_versions() == {}


def test_record_commit_is_an_upsert(store: SqlStore, clock: Clock) -> None:
    c = commit("c")
    with store.unit_of_work() as uow:
        assert uow.commit_status(c.sha) is None
        uow.record_commit(c, "rejected", "schema: replicas must be an integer")
    assert store.commits(status="rejected")[0].reason == "schema: replicas must be an integer"
    clock.tick(minutes=5)
    with store.unit_of_work() as uow:
        assert uow.commit_status(c.sha) == "rejected"
        uow.record_commit(c, "applied", None)
    record = store.get_commit(c.sha)
    assert record is not None
    assert (record.status, record.reason, record.recorded_at) == ("applied", None, clock.now)
    assert record.info == c
    assert store.commits(status="rejected") == []
    assert [r.info.sha for r in store.commits()] == [c.sha]
    assert store.get_commit("f" * 40) is None


def test_exception_rolls_the_unit_of_work_back(store: SqlStore) -> None:
    def write_then_fail() -> None:
        with store.unit_of_work() as uow:
            add(uow, {"a": 1})
            uow.add_audit(action="commit.applied", actor="x", host="h", details={})
            uow.add_outbox(event_id="e-1", routing_key="checkout.prod", payload={})
            uow.set_sync_state("last_applied_commit", "a" * 40)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail()
    assert store.latest_versions() == {}
    assert store.audit() == []
    assert store.outbox_backlog() == 0
    assert store.sync_state("last_applied_commit") is None


def test_a_finished_unit_of_work_cannot_be_reused(store: SqlStore) -> None:
    with store.unit_of_work() as uow:
        pass
    with pytest.raises(StoreError, match="has ended"):
        uow.latest_versions()


def test_duplicate_outbox_event_is_a_store_error(store: SqlStore) -> None:
    def write_twice() -> None:
        with store.unit_of_work() as uow:
            uow.add_outbox(event_id="same", routing_key="a.b", payload={})
            uow.add_outbox(event_id="same", routing_key="a.b", payload={})

    with pytest.raises(StoreError, match="refused a write"):
        write_twice()
    assert store.outbox_backlog() == 0


# --------------------------------------------------------------------------- audit


def test_audit_filters(store: SqlStore, clock: Clock) -> None:
    with store.unit_of_work() as uow:
        uow.add_audit(
            action="commit.applied",
            actor="reconciler",
            host="pod-1",
            commit_sha="a" * 40,
            details={"n": 1},
        )
        clock.tick(days=1)
        uow.add_audit(
            action="rollback",
            actor="alice",
            host="laptop",
            app="checkout",
            env="prod",
            version=3,
            details={"to": 2},
        )
        clock.tick(days=1)
        uow.add_audit(
            action="pin", actor="alice", host="laptop", app="checkout", env="staging", details={}
        )
        clock.tick(days=1)
        uow.add_audit(action="release", actor="bob", host="laptop", app="search", env="prod")
    assert [a.action for a in store.audit()] == ["release", "pin", "rollback", "commit.applied"]
    assert [a.action for a in store.audit(app="checkout")] == ["pin", "rollback"]
    assert [a.action for a in store.audit(app="checkout", env="prod")] == ["rollback"]
    assert [a.action for a in store.audit(actor="alice")] == ["pin", "rollback"]
    assert [a.action for a in store.audit(since=T0 + timedelta(days=2))] == ["release", "pin"]
    # An aware time in another zone means the same instant.
    plus2 = T0.astimezone(timezone(timedelta(hours=2))) + timedelta(days=2)
    assert [a.action for a in store.audit(since=plus2)] == ["release", "pin"]
    assert [a.action for a in store.audit(limit=1)] == ["release"]
    assert [a.action for a in store.audit(action="pin")] == ["pin"]
    first = store.audit()[-1]
    assert (first.at, first.details, first.commit_sha, first.app) == (T0, {"n": 1}, "a" * 40, None)
    assert store.audit()[0].details == {}
    rollback = store.audit(action="rollback")[0]
    assert (rollback.version, rollback.host, rollback.details) == (3, "laptop", {"to": 2})


def test_naive_times_are_refused(store: SqlStore) -> None:
    with pytest.raises(StoreError, match="naive datetime"):
        store.audit(since=datetime(2026, 1, 1))  # noqa: DTZ001  # the point of the test


# --------------------------------------------------------------------------- outbox


def test_outbox_pending_and_marks(store: SqlStore, clock: Clock) -> None:
    with store.unit_of_work() as uow:
        for i in range(3):
            uow.add_outbox(
                event_id=f"e-{i}", routing_key="checkout.prod", payload={"version": i, "ü": "✓"}
            )
            clock.tick(seconds=1)
    assert store.outbox_backlog() == 3
    assert store.outbox_oldest_pending() == T0
    pending = store.pending_outbox(2)
    assert [p.event_id for p in pending] == ["e-0", "e-1"]
    assert pending[0].payload == {"version": 0, "ü": "✓"}
    assert (pending[0].attempts, pending[0].published_at, pending[0].created_at) == (0, None, T0)

    store.mark_outbox_failed(pending[0].id, "broker unreachable " + "x" * 5000)
    store.mark_outbox_failed(pending[0].id, "broker unreachable again")
    again = store.pending_outbox(10)
    assert [p.event_id for p in again] == ["e-0", "e-1", "e-2"]
    assert again[0].attempts == 2
    assert again[0].last_error == "broker unreachable again"

    at = T0 + timedelta(minutes=5)
    store.mark_outbox_published([pending[0].id, pending[1].id], at)
    store.mark_outbox_published([], at)
    assert [p.event_id for p in store.pending_outbox(10)] == ["e-2"]
    assert store.outbox_backlog() == 1
    assert store.outbox_oldest_pending() == T0 + timedelta(seconds=2)


# --------------------------------------------------------------------------- pins, sync state


def test_pins(store: SqlStore) -> None:
    with store.unit_of_work() as uow:
        uow.set_pin(
            app="checkout",
            env="prod",
            version=4,
            reason="rollback to 2",
            actor="alice",
            quarantined_commit="b" * 40,
        )
        uow.set_pin(app="billing", env="prod", version=1, reason="hold", actor="bob")
        assert [(p.app, p.version) for p in uow.get_pins()] == [("billing", 1), ("checkout", 4)]
    with store.unit_of_work() as uow:
        uow.set_pin(app="checkout", env="prod", version=5, reason="again", actor="alice")
    pins = {(p.app, p.env): p for p in store.pins()}
    assert pins["checkout", "prod"].version == 5
    assert pins["checkout", "prod"].quarantined_commit is None
    assert pins["billing", "prod"].created_at == T0
    with store.unit_of_work() as uow:
        assert uow.clear_pin("checkout", "prod") is True
        assert uow.clear_pin("checkout", "prod") is False
    assert [(p.app, p.env) for p in store.pins()] == [("billing", "prod")]


def test_sync_state(store: SqlStore) -> None:
    assert store.sync_state("last_applied_commit") is None
    with store.unit_of_work() as uow:
        uow.set_sync_state("last_applied_commit", "a" * 40)
        uow.set_sync_state("quarantine:checkout:prod", {"commit": "b" * 40, "version": 3})
        assert uow.get_sync_state("last_applied_commit") == "a" * 40
    with store.unit_of_work() as uow:
        uow.set_sync_state("last_applied_commit", "c" * 40)
        uow.set_sync_state("quarantine:checkout:prod", None)
    assert store.sync_state("last_applied_commit") == "c" * 40
    assert store.sync_state("quarantine:checkout:prod") is None


# --------------------------------------------------------------------------- leadership, fencing


def test_acquire_epoch_increments(store: SqlStore) -> None:
    assert store.current_epoch("reconciler") is None
    assert store.acquire_epoch("reconciler", "pod-a") == 1
    assert store.acquire_epoch("reconciler", "pod-b") == 2
    assert store.acquire_epoch("other", "pod-a") == 1
    assert store.current_epoch("reconciler") == 2
    assert store.renew_lease("reconciler", "pod-b", 2) is True
    assert store.renew_lease("reconciler", "pod-a", 1) is False


def test_stale_epoch_is_fenced_and_writes_nothing(store: SqlStore) -> None:
    old = store.acquire_epoch("reconciler", "pod-a")
    with store.unit_of_work(fence=("reconciler", old)) as uow:
        add(uow, {"a": 1})
    new = store.acquire_epoch("reconciler", "pod-b")
    assert new == old + 1

    body_ran = []

    def write_as_deposed_leader() -> None:
        with store.unit_of_work(fence=("reconciler", old)) as uow:
            body_ran.append(True)
            add(uow, {"a": 2})

    with pytest.raises(FencingError, match="stale"):
        write_as_deposed_leader()
    assert body_ran == []
    with pytest.raises(FencingError), store.unit_of_work(fence=("never-acquired", 1)):
        pass
    assert store.latest_versions()["checkout", "prod"].number == 1

    with store.unit_of_work(fence=("reconciler", new)) as uow:
        assert add(uow, {"a": 2}) == 2


def test_a_writer_waits_a_bounded_time_for_the_lock(store: SqlStore) -> None:
    impatient = SqlStore(store.url, lock_timeout=0.5)
    try:
        with store.unit_of_work() as uow:
            add(uow, {"a": 1})
            started = time.monotonic()
            with pytest.raises(StoreError, match="busy"), impatient.unit_of_work():
                pass
            assert time.monotonic() - started < 10
        with impatient.unit_of_work() as uow:
            assert add(uow, {"a": 2}) == 2
    finally:
        impatient.close()


# --------------------------------------------------------------------------- processes


def _add_versions(url: str, count: int, start: Any, tag: str) -> None:
    """Child process: ``count`` units of work, each adding one version of checkout/prod."""
    store = SqlStore(url)
    try:
        start.wait(60)
        for i in range(count):
            with store.unit_of_work() as uow:
                add(uow, {"writer": tag, "i": i}, actor=tag, changes=[])
    finally:
        store.close()


def _hang_inside_unit_of_work(url: str, ready: str) -> None:
    """Child process: write inside a unit of work, say so, then wait to be killed."""
    store = SqlStore(url)
    with store.unit_of_work() as uow:
        add(uow, {"half": "done"})
        uow.add_audit(action="commit.applied", actor="doomed", host="h", details={})
        uow.add_outbox(event_id="doomed", routing_key="checkout.prod", payload={})
        uow.set_sync_state("last_applied_commit", "d" * 40)
        Path(ready).write_text("ready")
        time.sleep(120)


def test_two_processes_never_duplicate_or_skip_numbers(store: SqlStore) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [
        ctx.Process(target=_add_versions, args=(store.url, 20, start, f"p{i}")) for i in range(2)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(90)
        assert p.exitcode == 0
    numbers = sorted(e.number for e in store.list_versions("checkout", "prod"))
    assert numbers == list(range(1, 41))
    writers = {e.actor for e in store.list_versions("checkout", "prod")}
    assert writers == {"p0", "p1"}


def test_process_killed_inside_a_unit_of_work_leaves_nothing(
    store: SqlStore, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_hang_inside_unit_of_work, args=(store.url, str(ready)))
    proc.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.is_alive(), "the child died before it was ready"
            assert time.monotonic() < deadline, "the child never got inside its unit of work"
            time.sleep(0.05)
    finally:
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
    assert proc.exitcode == -signal.SIGKILL

    assert store.latest_versions() == {}
    assert store.audit() == []
    assert store.outbox_backlog() == 0
    assert store.sync_state("last_applied_commit") is None
    # The writer lock died with the process: the next writer gets number 1, promptly.
    started = time.monotonic()
    with store.unit_of_work() as uow:
        assert add(uow, {"a": 1}) == 1
    assert time.monotonic() - started < 15


# --------------------------------------------------------------------------- errors, urls


def test_unreachable_postgres_names_the_host_but_not_the_password() -> None:
    s = SqlStore("postgresql://configctl:s3cr3t-pw@127.0.0.1:1/configctl?connect_timeout=2")
    try:
        with pytest.raises(StoreError) as info:
            s.current_revision()
    finally:
        s.close()
    text = f"{info.value.message} {info.value.hint}"
    assert "127.0.0.1" in text
    assert "s3cr3t-pw" not in text
    assert "s3cr3t-pw" not in repr(s)
    assert info.value.__cause__ is not None


def test_url_helpers(tmp_path: Path) -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    url = default_sqlite_url(tmp_path)
    assert url == f"sqlite:///{tmp_path.resolve()}/.configctl/configctl.db"
    assert (tmp_path / ".configctl").is_dir()
    # a wrong URL is a usage error (exit 2), not a backend failure (issue 7)
    with pytest.raises(UsageError, match="unsupported"):
        SqlStore("mysql://u@h/db")
    with pytest.raises(UsageError, match="malformed"):
        SqlStore("not a url")


def test_latest_heads_match_latest_versions_without_snapshots(store_url: str) -> None:
    from configctl.adapters.store.store import SqlStore
    from configctl.core.records import checksum

    store = SqlStore(store_url)
    store.upgrade()
    try:
        with store.unit_of_work() as uow:
            for n in range(3):
                values = {"n": n}
                uow.add_version(
                    app="web", env="prod", values=values, checksum=checksum(values), commit_sha=None,
                    reason="commit", actor="t", changes=[],
                )
        heads = store.latest_heads()
        latest = store.latest_versions()
        assert set(heads) == set(latest) == {("web", "prod")}
        head, full = heads[("web", "prod")], latest[("web", "prod")]
        assert (head.number, head.checksum, head.commit_sha) == (full.number, full.checksum, full.commit_sha) == (3, checksum({"n": 2}), None)
        with store.unit_of_work() as uow:
            assert uow.latest_heads() == heads
    finally:
        store.close()


def test_latest_heads_for_some_apps_and_the_pairs_rollbacks_hold(store_url: str) -> None:
    from configctl.adapters.store.store import SqlStore
    from configctl.core.records import checksum

    store = SqlStore(store_url)
    store.upgrade()
    try:
        with store.unit_of_work() as uow:
            for app, reason in (("web", "commit"), ("api", "commit"), ("db", "rollback")):
                uow.add_version(
                    app=app, env="prod", values={}, checksum=checksum({}), commit_sha=None,
                    reason=reason, actor="t", changes=[],
                )
        with store.unit_of_work() as uow:
            assert set(uow.latest_heads(["web"])) == {("web", "prod")}
            assert set(uow.latest_heads(["web"], with_rollbacks=True)) == {("web", "prod"), ("db", "prod")}
            assert set(uow.latest_heads()) == {("web", "prod"), ("api", "prod"), ("db", "prod")}
    finally:
        store.close()
