"""A unit of work costs a handful of round trips, and its reads and queued writes agree.

Each test that takes ``store`` runs on a fresh SQLite file and a fresh PostgreSQL database.

- On PostgreSQL, the apply of a one-app commit is two round trips, one less than the least
  transaction that writes a row: ``BEGIN`` with the writer lock, the fence and the
  read-ahead, then one write of everything with the ``COMMIT`` (it was sixteen statements
  and eighteen round trips, then five, then three); the read-ahead leaves out the
  snapshots of the heads whose checksum the writer already has (their pairs do not
  change). A writer that remembers what it read and wrote (``adapters.store.memory``)
  makes it one statement in a transaction of its own: the lock, the writes, the guard;
  when another writer wrote since, the guard fails it whole and it runs again, reading;
- ``read_ahead`` answers exactly what the individual reads answer (heads of the apps in
  scope and of every pair a rollback holds, snapshots, statuses, cursors, rollout states,
  pins, quarantines), and writes of the same unit of work are seen by the reads after them;
- versions are numbered from the heads read, or from one query for pairs not read;
- a read transaction ends with ``COMMIT`` (a ``ROLLBACK`` makes psycopg drop its prepared
  statements), and a pooled connection is pinged only after being idle.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event
from tests.fakes import commit_info, new_version
from tests.servers import libpq_url

from configctl.adapters import schemas
from configctl.adapters.filesystem import read_tree
from configctl.adapters.store import SqlStore
from configctl.adapters.store import engine as engine_mod
from configctl.core.ports import ReadAhead
from configctl.core.records import CommitStatus, KeyChange
from configctl.errors import FencingError, StoreError, StoreMovedOn
from configctl.services.apply import ApplyResult, Baseline, apply_snapshot
from configctl.services.resolution import Evaluator

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _tree(root: Path, apps: int, generation: int, changed: int | None = None) -> Path:
    """``apps`` apps in dev and prod; ``changed`` (or every app) depends on ``generation``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "configctl.yaml").write_text("version: 1\nenvironments: [dev, prod]\n")
    (root / "global.yaml").write_text("log:\n  level: info\n")
    for i in range(apps):
        gen = generation if changed is None or changed == i else 1
        app = root / "apps" / f"app-{i:03d}"
        (app / "envs").mkdir(parents=True, exist_ok=True)
        (app / "app.yaml").write_text(f"description: app {i}\nowners: [team]\n")
        (app / "values.yaml").write_text(f"svc:\n  port: {8000 + i}\n  replicas: {gen}\n")
        (app / "envs" / "prod.yaml").write_text(f"svc:\n  zone: prod-{gen}\n")
    return root


class RoundTrips:
    """Counts the exchanges of psycopg connections with the server, and the statements:
    a statement run outside a pipeline is one (two when the driver sends a ``BEGIN`` of
    its own first), a pipeline is one whatever it holds, and so is a ``COMMIT`` or
    ``ROLLBACK`` the driver sends (not when there is no transaction to end)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.statements: list[str] = []
        execute, pipeline = psycopg.Cursor.execute, psycopg.Connection.pipeline
        commit, rollback = psycopg.Connection.commit, psycopg.Connection.rollback
        trips = self

        def counted_execute(cur: psycopg.Cursor[Any], query: Any, *a: Any, **k: Any) -> Any:
            text = query if isinstance(query, str) else bytes(query).decode()
            trips.statements.append(" ".join(text.split())[:60])
            conn = cur.connection
            if conn._pipeline is None:
                idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                trips.count += 2 if idle and not conn.autocommit else 1
            return execute(cur, query, *a, **k)

        def counted_pipeline(conn: psycopg.Connection[Any]) -> Any:
            trips.count += 1
            return pipeline(conn)

        def ending(real: Any) -> Any:
            def end(conn: psycopg.Connection[Any]) -> None:
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    trips.count += 1
                real(conn)

            return end

        monkeypatch.setattr(psycopg.Cursor, "execute", counted_execute)
        monkeypatch.setattr(psycopg.Connection, "pipeline", counted_pipeline)
        monkeypatch.setattr(psycopg.Connection, "commit", ending(commit))
        monkeypatch.setattr(psycopg.Connection, "rollback", ending(rollback))


def _first_apply(store: SqlStore, tmp_path: Path, evaluator: Evaluator) -> tuple[int, dict[str, Any], ApplyResult]:
    """``store`` applies a first commit (5 apps, 10 pairs) as leader: the epoch, the tree
    (the next apply's baseline) and the result."""
    epoch = store.acquire_epoch("reconciler", "me")
    first = read_tree(_tree(tmp_path / "t", 5, 1))
    result = apply_snapshot(
        store=store, files=first, commit=commit_info("a" * 40, at=T0), evaluator=evaluator,
        actor="t", host="h", now=lambda: T0, fence=("reconciler", epoch),
    )  # fmt: skip
    return epoch, dict(first), result


def _second_apply(
    store: SqlStore, tmp_path: Path, evaluator: Evaluator, epoch: int, first: dict[str, Any], *, cursor: str | None = None
) -> ApplyResult:
    """The next commit, which changes app-003 only, applied by ``store`` on the first's tree."""
    second = read_tree(_tree(tmp_path / "t", 5, 2, changed=3))
    return apply_snapshot(
        store=store, files=second, commit=commit_info("b" * 40, parents=("a" * 40,), at=T0),
        evaluator=evaluator, actor="t", host="h", now=lambda: T0, fence=("reconciler", epoch),
        baseline=Baseline(commit="a" * 40, files=first), cursor=cursor,
    )  # fmt: skip


def test_a_one_app_commit_is_two_round_trips_on_postgresql(
    pg_store: SqlStore, tmp_path: Path
) -> None:
    store = pg_store
    evaluator = Evaluator(file_schemas=schemas.file_schemas())
    epoch, first, result = _first_apply(store, tmp_path, evaluator)
    assert result.new_versions == 10
    with pytest.MonkeyPatch.context() as patch:  # every statement, SQLAlchemy's or not
        trips = RoundTrips(patch)
        result = _second_apply(store, tmp_path, evaluator, epoch, first, cursor="reconciler_cursor")
    assert [(p.app, p.env, p.version) for p in result.written] == [
        ("app-003", "dev", 2),
        ("app-003", "prod", 2),
    ]
    # The writer remembers what it read and wrote (adapters.store.memory): the lock, the
    # writes and the guard are one statement, in a transaction of its own (no BEGIN, no
    # COMMIT): one round trip.
    assert trips.count == 1, trips.statements
    assert [s.split()[0] for s in trips.statements] == ["WITH"]
    assert "pg_advisory_xact_lock" in trips.statements[0]
    assert store.sync_state("reconciler_cursor") == "b" * 40
    assert store.get_commit("b" * 40) is not None
    assert [e.number for e in store.list_versions("app-003", "prod")] == [2, 1]
    assert store.outbox_backlog() == 12


def test_a_writer_that_remembers_nothing_reads_under_the_lock_first(
    pg_store: SqlStore, tmp_path: Path
) -> None:
    """Another store on the same database (a restarted reconciler, the CLI) remembers
    nothing: BEGIN, the lock and the reads, then the writes and COMMIT: two round trips."""
    evaluator = Evaluator(file_schemas=schemas.file_schemas())
    epoch, first, _ = _first_apply(pg_store, tmp_path, evaluator)
    with SqlStore(pg_store.url) as other, pytest.MonkeyPatch.context() as patch:
        assert other.sync_state("last_applied_commit") == "a" * 40  # connected
        trips = RoundTrips(patch)
        result = _second_apply(other, tmp_path, evaluator, epoch, first)
    assert [(p.app, p.env, p.version) for p in result.written] == [
        ("app-003", "dev", 2),
        ("app-003", "prod", 2),
    ]
    assert trips.count == 2, trips.statements
    assert [s.split()[0] for s in trips.statements] == ["BEGIN", "SELECT", "WITH", "WITH", "COMMIT"]


def test_read_ahead_answers_what_the_reads_answer(store: SqlStore) -> None:
    with store.unit_of_work() as uow:
        for app in ("a", "b", "c"):
            for env in ("dev", "prod"):
                uow.add_versions([new_version(app, env, 1), new_version(app, env, 2)])
        uow.add_versions([new_version("c", "prod", 3, reason="rollback")])
        uow.record_commit(commit_info("a" * 40, at=T0), CommitStatus.APPLIED, None)
        uow.set_sync_state("last_applied_commit", "a" * 40)
        uow.set_pin(app="c", env="prod", version=3, reason="incident", actor="t")
        uow.quarantine("b", "dev", "b" * 40, "c2", 2)
        uow.set_rollout_state("a", "prod", "svc.port", {"status": "paused", "actor": "t"})

    def reads(ahead: bool) -> tuple[object, ...]:
        with store.unit_of_work() as uow:
            if ahead:
                uow.read_ahead(
                    commits=["a" * 40, "f" * 40],
                    cursors=["last_applied_commit", "nope"],
                    apps=["a"],
                )
            return (
                uow.commit_status("a" * 40),
                uow.commit_status("f" * 40),
                uow.get_sync_state("last_applied_commit"),
                uow.get_sync_state("nope"),
                uow.latest_heads(["a"], with_rollbacks=True),
                uow.get_versions([("a", "dev", 2), ("a", "prod", 2)]),
                uow.rollout_states(),
                [
                    (p.app, p.env, p.version, p.reason, p.actor, p.created_at, p.quarantined_commit)
                    for p in uow.get_pins()
                ],
                uow.quarantines(),
                uow.get_quarantine("b", "dev"),
            )

    plain, ahead = reads(False), reads(True)
    assert ahead == plain
    heads = plain[4]
    assert isinstance(heads, dict)
    assert sorted(heads) == [
        ("a", "dev"),
        ("a", "prod"),
        ("c", "prod"),
    ]  # c/prod: a rollback holds it
    assert heads[("c", "prod")].number == 3


def test_read_ahead_leaves_out_the_snapshots_the_writer_has(
    pg_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pg_store.unit_of_work() as uow:
        uow.add_versions([new_version("a", env, n) for env in ("dev", "prod") for n in (1, 2)])
    with pg_store.unit_of_work() as uow:
        expected = uow.get_versions([("a", "dev", 2), ("a", "prod", 2)])
    # the writer has a/dev's checksum (c2): only a/prod's snapshot comes with the heads
    reads = ReadAhead(apps=["a"], checksums={("a", "dev"): "c2", ("a", "prod"): "other"})
    with pg_store.unit_of_work(reads=reads) as uow:
        trips = RoundTrips(monkeypatch)
        assert uow.get_versions([("a", "prod", 2)]) == {("a", "prod"): expected[("a", "prod")]}
        assert trips.count == 0, trips.statements
        # a snapshot left out is still read when asked for
        assert uow.get_versions([("a", "dev", 2)]) == {("a", "dev"): expected[("a", "dev")]}
        assert trips.count == 1, trips.statements
        assert uow.latest_heads(["a"], with_rollbacks=True)[("a", "dev")].checksum == "c2"
        monkeypatch.undo()


def test_writes_of_a_unit_of_work_are_seen_by_its_reads(store: SqlStore) -> None:
    with store.unit_of_work() as uow:
        uow.add_versions([new_version("a", "prod", 1)])
    with store.unit_of_work() as uow:
        uow.read_ahead(commits=["a" * 40], cursors=[], apps=["a"])
        assert uow.commit_status("a" * 40) is None
        assert uow.get_pins() == []
        assert uow.quarantines() == {}
        # numbered from the heads read ahead (a), and from one query for a pair not read (b)
        assert uow.add_versions(
            [new_version("a", "prod", 2), new_version("b", "prod", 1), new_version("a", "prod", 3)]
        ) == [2, 1, 3]
        assert uow.latest_heads(["a"])[("a", "prod")].number == 3
        assert uow.get_version("b", "prod") is not None
        assert uow.add_versions([new_version("a", "dev", 1)]) == [1]
        uow.record_commit(commit_info("a" * 40, at=T0), CommitStatus.SUPERSEDED, "x")
        assert uow.commit_status("a" * 40) == CommitStatus.SUPERSEDED
        uow.record_commit(commit_info("a" * 40, at=T0), CommitStatus.APPLIED, None)
        assert uow.commit_status("a" * 40) == CommitStatus.APPLIED
        uow.set_pin(app="a", env="prod", version=2, reason="r", actor="t")
        assert [(p.app, p.version) for p in uow.get_pins()] == [("a", 2)]
        uow.quarantine("a", "prod", None, "c3", 3)
        assert uow.quarantines() == {
            ("a", "prod"): {"commit": None, "checksum": "c3", "version": 3}
        }
        uow.clear_pin("a", "prod")
        uow.lift_quarantine("a", "prod")
        assert uow.get_pins() == []
        assert uow.quarantines() == {}
    assert [e.number for e in store.list_versions("a", "prod")] == [3, 2, 1]
    assert [e.number for e in store.list_versions("a", "dev")] == [1]
    record = store.get_commit("a" * 40)
    assert record is not None
    assert record.status == CommitStatus.APPLIED
    assert store.list_versions("a", "prod")[0].changes[0] == KeyChange(
        key="n", change="added", new=3
    )


def test_a_unit_of_work_that_fails_writes_none_of_its_queued_rows(store: SqlStore) -> None:
    def fail_after_queueing() -> None:
        with store.unit_of_work() as uow:
            uow.add_versions([new_version("a", "prod", 1)])
            uow.record_commit(commit_info("a" * 40, at=T0), CommitStatus.APPLIED, None)
            uow.set_sync_state("last_applied_commit", "a" * 40)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_after_queueing()
    assert store.latest_heads() == {}
    assert store.get_commit("a" * 40) is None
    assert store.sync_state("last_applied_commit") is None


def test_writes_that_fail_with_their_commit_leave_nothing_and_the_store_works_on(
    store: SqlStore,
) -> None:
    """On PostgreSQL a small unit of work sends its writes and ``COMMIT`` together: when a
    write fails, the server skips the ``COMMIT`` and nothing of it stays."""
    from configctl.errors import StoreError

    def write() -> None:
        with store.unit_of_work() as uow:
            uow.add_versions([new_version("a", "prod", 1)])
            uow.record_commit(commit_info("a" * 40, at=T0), CommitStatus.APPLIED, None)
            uow.set_sync_state("last_applied_commit", "a" * 40)
            uow.add_outbox(event_id="same", routing_key="a.prod", payload={})
            uow.add_outbox(event_id="same", routing_key="a.prod", payload={})

    with pytest.raises(StoreError, match="refused a write"):
        write()
    assert store.latest_heads() == {}
    assert store.get_commit("a" * 40) is None
    assert store.sync_state("last_applied_commit") is None
    for _ in range(3):  # on every pooled connection: none is left inside a transaction
        with store.unit_of_work() as uow:
            number = uow.add_versions([new_version("a", "prod", 1)])[0]
        assert store.latest_heads()[("a", "prod")].number == number
    assert [e.number for e in store.list_versions("a", "prod")] == [3, 2, 1]


def test_a_read_ends_with_commit_so_prepared_statements_survive(pg_store: SqlStore) -> None:
    store = pg_store
    store.latest_heads()  # the schema check is behind us
    ends: list[str] = []
    event.listen(store.engine, "commit", lambda _conn: ends.append("commit"))
    event.listen(store.engine, "rollback", lambda _conn: ends.append("rollback"))
    for _ in range(6):
        store.commits()
    assert ends == ["commit"] * 6
    # psycopg prepares a statement run five times on a connection, and keeps it
    with store.engine.connect() as conn:
        prepared = conn.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar()
    assert prepared is not None
    assert prepared >= 1


def test_a_pooled_connection_is_pinged_only_after_being_idle(
    pg_store: SqlStore, pg_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = pg_store
    pings: list[object] = []
    dialect = store.engine.dialect
    real = dialect.do_ping

    def ping(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return real(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", ping)
    store.latest_heads()
    store.latest_heads()
    assert pings == []  # used a moment ago: no round trip spent on a ping
    with store.engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    monkeypatch.setattr(engine_mod, "PING_AFTER_IDLE_S", 0.0)  # idle long enough now
    with psycopg.connect(libpq_url(pg_db_url), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert store.latest_heads() == {}  # the dead connection was replaced, not used
    assert len(pings) == 1


def _backends(url: str) -> list[int]:
    """The server processes connected to the database of ``url``, ours aside."""
    with psycopg.connect(libpq_url(url), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for (pid,) in rows]


def _terminate_backends(url: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_units_of_work_keep_one_connection_between_them(pg_store: SqlStore, pg_db_url: str) -> None:
    """A pool checkout and checkin (with autocommit switched on and back) cost a tenth of a
    one-app apply: the writer keeps its connection from one unit of work to the next."""
    store = pg_store
    with store.unit_of_work() as uow:
        uow.set_sync_state("x", 0)
    checkouts: list[object] = []
    event.listen(store.engine, "checkout", lambda *_args: checkouts.append(1))
    for i in range(1, 4):
        with store.unit_of_work() as uow:
            uow.set_sync_state("x", i)
    assert checkouts == []
    assert store.sync_state("x") == 3
    store.close()  # hands it back with the rest
    assert _backends(pg_db_url) == []


def test_a_kept_writer_connection_lost_while_idle_is_replaced(
    pg_store: SqlStore, pg_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = pg_store
    with store.unit_of_work() as uow:
        uow.set_sync_state("x", 1)
    _terminate_backends(pg_db_url)  # a server restart while the writer was idle
    monkeypatch.setattr(engine_mod, "PING_AFTER_IDLE_S", 0.0)  # idle long enough for a ping
    with store.unit_of_work() as uow:
        uow.set_sync_state("x", 2)
    assert store.sync_state("x") == 2


def test_a_kept_writer_connection_lost_just_after_use_fails_one_unit_of_work_only(
    pg_store: SqlStore, pg_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the ping-free second a lost connection fails its transaction (the caller
    retries, as with a pooled one); the next unit of work runs on a new connection."""
    store = pg_store
    monkeypatch.setattr(engine_mod, "PING_AFTER_IDLE_S", 3600.0)
    with store.unit_of_work() as uow:
        uow.set_sync_state("x", 1)
    _terminate_backends(pg_db_url)
    with pytest.raises(StoreError), store.unit_of_work() as uow:
        uow.set_sync_state("x", 2)
    with store.unit_of_work() as uow:
        uow.set_sync_state("x", 3)
    assert store.sync_state("x") == 3


def test_a_unit_of_work_on_another_thread_gets_a_connection_of_its_own(pg_store: SqlStore) -> None:
    store = pg_store
    with store.unit_of_work() as uow:
        uow.set_sync_state("a", 0)
    checkouts: list[object] = []
    event.listen(store.engine, "checkout", lambda *_args: checkouts.append(1))
    inside, leave = threading.Event(), threading.Event()

    def first() -> None:
        with store.unit_of_work() as uow:
            uow.set_sync_state("a", 1)
            inside.set()
            assert leave.wait(30)

    def second() -> None:
        with store.unit_of_work() as uow:  # waits for the writer lock
            uow.set_sync_state("b", 2)

    with ThreadPoolExecutor(max_workers=2) as pool:
        one = pool.submit(first)
        assert inside.wait(30)
        two = pool.submit(second)
        leave.set()
        one.result(timeout=30)
        two.result(timeout=30)
    assert checkouts == [1]  # the second thread's; the first used the kept connection
    assert (store.sync_state("a"), store.sync_state("b")) == (1, 2)


def test_a_read_on_postgresql_is_not_wrapped_in_begin_and_commit(pg_store: SqlStore) -> None:
    """At READ COMMITTED every statement has its own snapshot anyway: a read is one round
    trip per statement (autocommit), a unit of work stays one transaction."""
    store = pg_store
    with store._read() as s:
        s.connection().exec_driver_sql("SELECT 1")
        assert s.connection().connection.driver_connection.info.transaction_status.name == "IDLE"
    with store.unit_of_work() as uow:
        uow.commit_status("a" * 40)
        assert (
            uow._s.connection().connection.driver_connection.info.transaction_status.name
            == "INTRANS"
        )
    store.latest_heads()
    assert store.latest_heads() == {}  # the pooled connection is back in transaction mode
    with store.unit_of_work() as uow:
        uow.set_sync_state("x", 1)
    assert store.sync_state("x") == 1


# --------------------------------------------------------------------------- memory


def _generation(store: SqlStore) -> str:
    with psycopg.connect(libpq_url(store.url), autocommit=True) as conn:
        row = conn.execute("SELECT token || ':' || n FROM writer_generation WHERE id = 1").fetchone()
    assert row is not None
    return str(row[0])


def test_the_remembered_generation_is_the_stores(pg_store: SqlStore, tmp_path: Path) -> None:
    evaluator = Evaluator(file_schemas=schemas.file_schemas())
    epoch, first, _ = _first_apply(pg_store, tmp_path, evaluator)
    assert pg_store._memory is not None
    assert pg_store._memory.generation == _generation(pg_store)
    _second_apply(pg_store, tmp_path, evaluator, epoch, first)
    assert pg_store._memory is not None
    assert pg_store._memory.generation == _generation(pg_store)


def test_another_writer_in_between_is_seen_and_counted(pg_store: SqlStore, tmp_path: Path) -> None:
    """Another writer adds a version of a pair the remembering writer is about to change:
    the guard fails its one-round-trip unit of work (nothing written), and it runs again
    reading under the lock, so the numbers stay dense and nothing is lost."""
    evaluator = Evaluator(file_schemas=schemas.file_schemas())
    epoch, first, _ = _first_apply(pg_store, tmp_path, evaluator)
    with SqlStore(pg_store.url) as other, other.unit_of_work() as uow:
        uow.add_versions([new_version("app-003", "prod", 7)])
    with pytest.MonkeyPatch.context() as patch:
        trips = RoundTrips(patch)
        result = _second_apply(pg_store, tmp_path, evaluator, epoch, first)
    # one failed round trip (its statement fails whole), then the ordinary two
    assert [s.split()[0] for s in trips.statements] == ["WITH", "BEGIN", "SELECT", "WITH", "WITH", "COMMIT"]
    assert [(p.app, p.env, p.version) for p in result.written] == [
        ("app-003", "dev", 2),
        ("app-003", "prod", 3),
    ]
    assert [e.number for e in pg_store.list_versions("app-003", "prod")] == [3, 2, 1]
    assert pg_store.get_commit("b" * 40) is not None
    assert pg_store._memory is not None
    assert pg_store._memory.generation == _generation(pg_store)


def test_a_commit_recorded_before_the_memory_is_not_taken_as_new(pg_store: SqlStore) -> None:
    """A commit the memory never saw is taken as never recorded, and the guard checks
    that: recorded by another writer before, the unit of work fails whole."""
    with SqlStore(pg_store.url) as other, other.unit_of_work() as uow:
        uow.record_commit(commit_info("c" * 40, at=T0), CommitStatus.REJECTED, "bad tree")
    with pg_store.unit_of_work(reads=ReadAhead(commits=["a" * 40], cursors=["x"], apps=None)) as uow:
        uow.set_sync_state("x", 1)
    assert pg_store._memory is not None  # remembered: the next unit of work reads nothing
    seen: list[str | None] = []

    def take_it_as_new() -> None:
        with pg_store.unit_of_work(reads=ReadAhead(commits=["c" * 40], cursors=["x"], apps=None)) as uow:
            seen.append(uow.commit_status("c" * 40))  # taken as new, from memory
            uow.record_commit(commit_info("c" * 40, at=T0), CommitStatus.APPLIED, None)
            uow.set_sync_state("x", 2)

    with pytest.raises(StoreMovedOn):
        take_it_as_new()
    assert seen == [None]
    assert pg_store._memory is None  # forgotten
    assert pg_store.sync_state("x") == 1  # nothing written
    with pg_store.unit_of_work(reads=ReadAhead(commits=["c" * 40], cursors=["x"], apps=None)) as uow:
        assert uow.commit_status("c" * 40) == CommitStatus.REJECTED


def test_a_remembering_writer_replaced_as_leader_writes_nothing(pg_store: SqlStore, tmp_path: Path) -> None:
    """The guard checks the fence too: a new leader's epoch fails the remembering writer
    (fenced out, as one that reads under the lock is) and nothing is written."""
    evaluator = Evaluator(file_schemas=schemas.file_schemas())
    epoch, first, _ = _first_apply(pg_store, tmp_path, evaluator)
    with SqlStore(pg_store.url) as other:
        assert other.acquire_epoch("reconciler", "them") == epoch + 1
    with pytest.raises(FencingError):
        _second_apply(pg_store, tmp_path, evaluator, epoch, first)
    assert pg_store.get_commit("b" * 40) is None
    assert [e.number for e in pg_store.list_versions("app-003", "prod")] == [1]


def test_a_write_the_memory_does_not_follow_forgets_it(pg_store: SqlStore) -> None:
    """A pin, a quarantine, a rollout state: written through a session, not followed; the
    next unit of work reads under the lock (and sees the pin)."""
    reads = ReadAhead(commits=["a" * 40], cursors=["x"], apps=None)
    with pg_store.unit_of_work(reads=reads) as uow:
        uow.add_versions([new_version("web", "prod", 1)])
    assert pg_store._memory is not None
    with pg_store.unit_of_work(reads=reads) as uow:
        uow.set_pin(app="web", env="prod", version=1, reason="hold", actor="t")
    assert pg_store._memory is None
    with pg_store.unit_of_work(reads=reads) as uow:
        assert [(p.app, p.env) for p in uow.get_pins()] == [("web", "prod")]


def test_every_write_to_what_a_writer_reads_moves_the_generation_on(pg_store: SqlStore) -> None:
    """Any writer, any statement (migration 0005): once per transaction, whatever it
    changed; the audit log and the outbox are not read ahead and move nothing."""
    pg_store.ensure_schema()
    statements = {
        "versions": "DELETE FROM versions",
        "commits": "DELETE FROM commits",
        "sync_state": "INSERT INTO sync_state (name, value, updated_at) VALUES ('k', '1', now())",
        "rollout_state": "DELETE FROM rollout_state",
        "pins": "DELETE FROM pins",
        "quarantines": "TRUNCATE quarantines",
    }
    with psycopg.connect(libpq_url(pg_store.url), autocommit=True) as conn:
        for table, sql in statements.items():
            before = _generation(pg_store)
            conn.execute(sql)
            assert _generation(pg_store) != before, table
        before = _generation(pg_store)
        conn.execute("DELETE FROM audit_log")
        conn.execute("DELETE FROM outbox")
        assert _generation(pg_store) == before
        with conn.transaction():
            conn.execute("DELETE FROM versions")
            conn.execute("DELETE FROM pins")
            conn.execute("DELETE FROM sync_state")
        token, _, n = before.rpartition(":")
        assert _generation(pg_store) == f"{token}:{int(n) + 1}"


def test_a_writer_that_committed_while_the_remembering_one_waited_for_the_lock_is_seen(
    pg_store: SqlStore, tmp_path: Path
) -> None:
    """The one statement's snapshot is older than the lock it waits for: the guard checks
    the generation by moving it on (an UPDATE finds the row's newest version), so another
    writer that committed in between is seen, the statement fails whole, and the apply
    runs again reading. Read from the snapshot, the guard would pass and the version
    number would clash."""
    evaluator = Evaluator(file_schemas=schemas.file_schemas())
    epoch, first, _ = _first_apply(pg_store, tmp_path, evaluator)

    def remembering_apply() -> list[tuple[str, str, int | None]]:
        result = _second_apply(pg_store, tmp_path, evaluator, epoch, first)
        return [(p.app, p.env, p.version) for p in result.written]

    with SqlStore(pg_store.url) as other, ThreadPoolExecutor(1) as pool:
        with other.unit_of_work() as uow:  # holds the writer lock
            uow.add_versions([new_version("app-003", "prod", 7)])
            pending = pool.submit(remembering_apply)
            with psycopg.connect(libpq_url(pg_store.url), autocommit=True) as probe:
                for _ in range(500):  # until its statement waits for the advisory lock
                    waiting = probe.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
                    ).fetchone()
                    if waiting is not None and waiting[0] == 1:
                        break
                    threading.Event().wait(0.01)
                else:
                    pytest.fail("the remembering writer never waited for the lock")
        written = pending.result(timeout=30)
    assert written == [("app-003", "dev", 2), ("app-003", "prod", 3)]
    assert [e.number for e in pg_store.list_versions("app-003", "prod")] == [3, 2, 1]


def test_a_big_unit_of_work_answered_from_memory_is_guarded_before_its_first_part(
    pg_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many versions go in parts (``pg_batch.SPLIT_AFTER``), each of which moves the
    generation on; the guard rides with the first part, so it sees the generation the
    writer remembers (with the last, it would find its own writes and fail every time)."""
    from configctl.adapters.store import pg_batch

    monkeypatch.setattr(pg_batch, "SPLIT_AFTER", 5)
    reads = ReadAhead(commits=["a" * 40], cursors=["x"], apps=None)
    with pg_store.unit_of_work(reads=reads) as uow:
        uow.set_sync_state("x", 0)
    assert pg_store._memory is not None
    with pytest.MonkeyPatch.context() as patch:
        trips = RoundTrips(patch)
        with pg_store.unit_of_work(reads=reads) as uow:
            uow.add_versions([new_version(f"app-{i:02d}", "prod", 1) for i in range(11)])
            uow.set_sync_state("x", 1)
    assert [s.split()[0] for s in trips.statements] == ["BEGIN", "SELECT", "WITH", "WITH", "WITH", "WITH", "COMMIT"]
    assert pg_store.sync_state("x") == 1
    assert pg_store._memory is not None
    assert pg_store._memory.generation == _generation(pg_store)
