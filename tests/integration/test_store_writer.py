"""The writer costs what the change costs, and quarantines live in their own table.

Each test runs on a fresh SQLite file and a fresh PostgreSQL database (``store_url``).

- ``apply_snapshot`` issues the same number of SQL statements for 12 pairs as for 102
  (counted with SQLAlchemy's ``before_cursor_execute``), for a first apply and for an
  apply that changes every pair;
- ``add_versions`` numbers, stores and reads back like ``add_version``; a batch of
  thousands of key changes reads back the same as a small one;
- migration 0003 moves ``quarantine:<app>:<env>`` cursor rows into ``quarantines`` and the
  downgrade moves them back;
- migration 0004 moves ``key_changes`` rows into their versions' ``changes`` arrays (what
  ``history`` shows is the same before and after) and the downgrade makes the rows again.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event, text
from tests.fakes import commit_info, new_version

from configctl.adapters import schemas
from configctl.adapters.filesystem import read_tree
from configctl.adapters.store import SqlStore
from configctl.adapters.store.models import SCHEMA_REVISION, JsonType, UtcDateTime
from configctl.core.records import CommitInfo, KeyChange, NewVersion
from configctl.services.apply import ApplyResult, apply_snapshot
from configctl.services.resolution import Evaluator

ENVS = ("dev", "staging", "prod")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_SYNC_STATE = sa.table(
    "sync_state",
    sa.column("name", sa.String),
    sa.column("value", JsonType),
    sa.column("updated_at", UtcDateTime),
)


def _tree(root: Path, apps: int, generation: int) -> Path:
    """``apps`` apps in three environments (3 x ``apps`` pairs), five keys each; every key
    depends on ``generation``, so a new generation changes every pair."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "configctl.yaml").write_text(f"version: 1\nenvironments: [{', '.join(ENVS)}]\n")
    (root / "global.yaml").write_text(f"log:\n  level: info{generation}\n")
    for i in range(apps):
        app = root / "apps" / f"app-{i:03d}"
        (app / "envs").mkdir(parents=True, exist_ok=True)
        (app / "app.yaml").write_text(f"description: app {i}\nowners: [team]\n")
        (app / "values.yaml").write_text(
            f"svc:\n  port: {8000 + i}\n  name: app-{i}-{generation}\n  replicas: {generation}\n"
        )
        (app / "envs" / "prod.yaml").write_text(f"svc:\n  zone: prod-{generation}\n")
    return root


def _commit(sha: str, parent: str | None) -> CommitInfo:
    return commit_info(sha, parents=(parent,) if parent else (), message=f"commit {sha[:7]}", at=T0)


def _fields(v: NewVersion) -> dict[str, Any]:
    """``add_version``'s keyword arguments for ``v``."""
    return {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}


def _counted_apply(store: SqlStore, root: Path, commit: CommitInfo) -> tuple[int, ApplyResult]:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    files = read_tree(root)
    evaluator = Evaluator(file_schemas=schemas.file_schemas())
    event.listen(store.engine, "before_cursor_execute", count)
    try:
        result = apply_snapshot(
            store=store,
            files=files,
            commit=commit,
            evaluator=evaluator,
            actor="test",
            host="h",
            now=lambda: T0,
            cursor="reconciler_cursor",
        )
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    return len(statements), result


def _two_applies(url: str, tmp: Path, apps: int) -> tuple[int, int]:
    """Statements of a first apply of ``apps`` apps and of a commit changing every pair."""
    store = SqlStore(url)
    store.upgrade()
    try:
        first, result = _counted_apply(store, _tree(tmp, apps, 1), _commit("a" * 40, None))
        assert result.status == "applied"
        assert result.new_versions == 3 * apps
        second, result = _counted_apply(store, _tree(tmp, apps, 2), _commit("b" * 40, "a" * 40))
        assert result.new_versions == 3 * apps
        assert {p.version for p in result.pairs} == {2}
        assert store.sync_state("reconciler_cursor") == "b" * 40
        assert store.sync_state("last_applied_commit") == "b" * 40
        assert len(store.audit(action="version.created")) == 6 * apps
        assert store.outbox_backlog() == 6 * apps
        entries = store.list_versions("app-000", "prod")
        assert [e.number for e in entries] == [2, 1]
        assert {c.key for c in entries[0].changes} == {
            "log.level",
            "svc.name",
            "svc.replicas",
            "svc.zone",
        }
        return first, second
    finally:
        store.close()


def test_apply_statements_do_not_grow_with_the_pairs(store_url: str, tmp_path: Path) -> None:
    small = _two_applies(store_url, tmp_path / "small", 4)  # 12 pairs
    with SqlStore(store_url) as s, s.engine.begin() as conn:
        for table in ("versions", "audit_log", "outbox", "commits", "sync_state"):
            conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed table names
    large = _two_applies(store_url, tmp_path / "large", 34)  # 102 pairs
    assert small == large, f"12 pairs: {small} statements, 102 pairs: {large}"


def test_add_versions_numbers_each_pair_and_reads_back(store: SqlStore) -> None:
    def new(app: str, env: str, n: int, reason: str = "commit") -> NewVersion:
        return new_version(app, env, n, [KeyChange(key="n", change="added", new=n)], reason=reason)

    with store.unit_of_work() as uow:
        assert uow.add_version(**_fields(new("a", "prod", 0))) == 1
        numbers = uow.add_versions([new("a", "prod", 1), new("b", "prod", 2), new("a", "prod", 3)])
        assert numbers == [2, 1, 3]
        assert uow.add_versions([]) == []
        got = uow.get_versions([("a", "prod", 2), ("b", "prod", 1), ("c", "prod", 1)])
    assert set(got) == {("a", "prod"), ("b", "prod")}
    assert got["a", "prod"].values == {"n": 1}
    assert got["b", "prod"].values == {"n": 2}
    assert [e.number for e in store.list_versions("a", "prod")] == [3, 2, 1]
    with pytest.raises(ValueError, match="version reason"), store.unit_of_work() as uow:
        uow.add_versions([new("x", "y", 1, reason="nope")])


def test_a_large_batch_of_key_changes_reads_back_like_a_small_one(store: SqlStore) -> None:
    """Thousands of key changes of every JSON shape read back as written, in key order."""
    odd: list[Any] = [None, {"nested": ["ü", 1.5, True]}, "tab\tand\nnewline\\", 0, "", [None]]
    changes = [
        KeyChange(
            key=f"k{i:05d}", change="changed", old=odd[i % len(odd)], new=odd[(i + 1) % len(odd)]
        )
        for i in range(2010)
    ]
    with store.unit_of_work() as uow:
        numbers = uow.add_versions(
            [new_version("big", "prod", 1, changes), new_version("small", "prod", 1, changes[:7])]
        )
    assert numbers == [1, 1]
    assert list(store.list_versions("big", "prod")[0].changes) == changes
    assert list(store.list_versions("small", "prod")[0].changes) == changes[:7]
    history = store.key_history("big", "prod", "k00001")
    assert [(h.old, h.new) for h in history] == [(odd[1], odd[2])]


def test_quarantines_have_their_own_table(store: SqlStore) -> None:
    with store.unit_of_work() as uow:
        assert uow.quarantines() == {}
        uow.quarantine("checkout", "prod", "b" * 40, "sum-3", 3)
        uow.quarantine("search", "dev", None, "sum-1", 1)
        uow.quarantine("checkout", "prod", "c" * 40, "sum-4", 4)  # replaces
        assert uow.get_quarantine("checkout", "prod") == {
            "commit": "c" * 40,
            "checksum": "sum-4",
            "version": 4,
        }
    assert store.quarantines() == {
        ("checkout", "prod"): {"commit": "c" * 40, "checksum": "sum-4", "version": 4},
        ("search", "dev"): {"commit": None, "checksum": "sum-1", "version": 1},
    }
    assert store.sync_states("quarantine:") == {}
    with store.unit_of_work() as uow:
        assert uow.lift_quarantine("checkout", "prod") is True
        assert uow.lift_quarantine("checkout", "prod") is False
        assert uow.get_quarantine("checkout", "prod") is None
    assert list(store.quarantines()) == [("search", "dev")]


def test_migration_0003_moves_quarantines_out_of_the_cursor_table_and_back(store_url: str) -> None:
    from alembic import command

    legacy = {
        "quarantine:checkout:prod": {"commit": "b" * 40, "checksum": "sum-3", "version": 3},
        "quarantine:search:dev": {"commit": None, "checksum": "sum-1", "version": 1},
        "last_applied_commit": "a" * 40,
    }
    with SqlStore(store_url) as store:
        cfg = store._alembic_config()
        with store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0002")
        with store.engine.begin() as conn:
            conn.execute(
                sa.insert(_SYNC_STATE),
                [{"name": n, "value": v, "updated_at": T0} for n, v in legacy.items()],
            )
        store.upgrade()
        assert store.current_revision() == SCHEMA_REVISION
        assert store.quarantines() == {
            ("checkout", "prod"): legacy["quarantine:checkout:prod"],
            ("search", "dev"): legacy["quarantine:search:dev"],
        }
        assert store.sync_states("quarantine:") == {}
        assert store.sync_state("last_applied_commit") == "a" * 40
        with store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002")
        with store.engine.connect() as conn:
            assert not sa.inspect(conn).has_table("quarantines")
            back = {n: v for n, v, _ in conn.execute(sa.select(_SYNC_STATE)).all()}
        assert back == legacy


_VERSIONS_0003 = sa.table(
    "versions",
    sa.column("id", sa.Integer),
    sa.column("app", sa.String),
    sa.column("env", sa.String),
    sa.column("number", sa.Integer),
    sa.column("values", JsonType),
    sa.column("checksum", sa.String),
    sa.column("commit_sha", sa.String),
    sa.column("reason", sa.String),
    sa.column("actor", sa.String),
    sa.column("created_at", UtcDateTime),
)
_KEY_CHANGES_0003 = sa.table(
    "key_changes",
    sa.column("version_id", sa.Integer),
    sa.column("key", sa.String),
    sa.column("change", sa.String),
    sa.column("old_value", JsonType),
    sa.column("new_value", JsonType),
)


def test_migration_0004_moves_key_changes_onto_their_versions_and_back(store_url: str) -> None:
    from alembic import command

    odd: list[Any] = [{"nested": ["ü", 1.5, True, None]}, "tab\tand\nnewline", 0, "", [None], False]
    # Rows in an order that is not the key order, one version without any.
    legacy = [
        (1, "svc.port", "added", None, 8080),
        (1, "db.host", "added", None, "db-1"),
        (2, "svc.port", "changed", 8080, 8081),
        (2, "db.host", "removed", "db-1", None),
        *[(2, f"x.k{i}", "changed", odd[i], odd[(i + 1) % len(odd)]) for i in range(len(odd))],
    ]
    with SqlStore(store_url) as store:
        cfg = store._alembic_config()
        with store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003")
        with store.engine.begin() as conn:
            conn.execute(
                sa.insert(_VERSIONS_0003),
                [
                    {"id": n, "app": "web", "env": "prod", "number": n, "values": {"n": n},
                     "checksum": f"sum-{n}", "commit_sha": None, "reason": "commit", "actor": "ci",
                     "created_at": T0}
                    for n in (1, 2, 3)
                ],
            )  # fmt: skip
            conn.execute(
                sa.insert(_KEY_CHANGES_0003),
                [{"version_id": v, "key": k, "change": c, "old_value": o, "new_value": n} for v, k, c, o, n in legacy],
            )  # fmt: skip
        store.upgrade()
        assert store.current_revision() == SCHEMA_REVISION
        with store.engine.connect() as conn:
            assert not sa.inspect(conn).has_table("key_changes")
        by_version = {e.number: list(e.changes) for e in store.list_versions("web", "prod")}
        expected = {
            n: sorted(
                (
                    KeyChange(key=k, change=c, old=o, new=new)
                    for v, k, c, o, new in legacy
                    if v == n
                ),
                key=lambda c: c.key,
            )
            for n in (1, 2, 3)
        }
        assert by_version == expected
        assert [
            (h.version, h.change, h.old, h.new) for h in store.key_history("web", "prod", "svc")
        ] == [
            (2, "changed", 8080, 8081),
            (1, "added", None, 8080),
        ]
        assert [h.key for h in store.key_history("web", "prod", "x")] == [
            f"x.k{i}" for i in range(len(odd))
        ]
        with store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003")
        with store.engine.connect() as conn:
            back = conn.execute(
                sa.select(
                    _KEY_CHANGES_0003.c.version_id, _KEY_CHANGES_0003.c.key, _KEY_CHANGES_0003.c.change,
                    _KEY_CHANGES_0003.c.old_value, _KEY_CHANGES_0003.c.new_value,
                )
            ).all()  # fmt: skip
            assert "changes" not in {c["name"] for c in sa.inspect(conn).get_columns("versions")}
        assert sorted(map(tuple, back), key=repr) == sorted(legacy, key=repr)


def test_a_big_flush_goes_in_parts_and_keeps_every_row_in_order(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many versions are sent in a few statements (the server inserts one part while the
    next is encoded; ``pg_batch.SPLIT_AFTER``) and then analyzed: ids follow the queue,
    every version keeps its key changes, and the rows queued with them are all there."""
    from configctl.adapters.store import pg_batch

    monkeypatch.setattr(pg_batch, "SPLIT_AFTER", 5)
    monkeypatch.setattr(pg_batch, "ANALYZE_AFTER", 5)
    sent: list[str] = []
    real = pg_batch._flush_statements

    def spy(*args: Any) -> Any:
        for statement in real(*args):
            sent.append(statement[0].split()[0])
            yield statement

    monkeypatch.setattr(pg_batch, "_flush_statements", spy)
    apps = [f"app-{i:02d}" for i in range(11)]
    change = [KeyChange(key="k", change="added", new=1)]
    with store.unit_of_work() as uow:
        uow.add_versions([new_version(app, "prod", 1, change) for app in apps])
        uow.record_commit(commit_info("a" * 40, at=T0), "applied", None)
        uow.add_outbox(event_id="e1", routing_key="r", payload={"n": 1})
        uow.set_sync_state("last_applied_commit", "a" * 40)
    with store.engine.connect() as conn:
        written = [row[0] for row in conn.execute(text("SELECT app FROM versions ORDER BY id"))]
    assert written == apps
    if store.is_postgres:  # 11 versions in parts of 3, then the rest; SQLite: executemany
        assert sent == ["WITH", "WITH", "WITH", "WITH", "ANALYZE"]
    assert all(list(store.list_versions(app, "prod")[0].changes) == change for app in apps)
    assert store.get_commit("a" * 40) is not None
    assert [m.event_id for m in store.pending_outbox(10)] == ["e1"]
    assert store.sync_state("last_applied_commit") == "a" * 40


def test_migration_0005_adds_the_writer_generation_and_takes_it_back(store_url: str) -> None:
    """Both backends get the one row (a token and a count); PostgreSQL the triggers that
    move it on and the function the guard raises with; the downgrade leaves 0004's schema."""
    from alembic import command

    postgres = store_url.startswith("postgresql")
    with SqlStore(store_url) as store:
        cfg = store._alembic_config()
        with store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0004")
        store.upgrade()
        assert store.current_revision() == SCHEMA_REVISION
        with store.engine.connect() as conn:
            [(token, n)] = conn.execute(sa.text("SELECT token, n FROM writer_generation")).all()
            assert (len(token), n) == (32, 0)
            if postgres:
                triggers = conn.execute(
                    sa.text("SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%\\_generation%'")
                ).scalar()
                assert triggers == 12  # six tables: writes, and truncate
        with store.unit_of_work() as uow:
            uow.set_sync_state("x", 1)
        with store.engine.connect() as conn:
            moved = conn.execute(sa.text("SELECT n FROM writer_generation")).scalar()
        assert moved == (1 if postgres else 0)  # SQLite: no trigger, no memory
        with store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0004")
        with store.engine.connect() as conn:
            assert not sa.inspect(conn).has_table("writer_generation")
            if postgres:
                left = conn.execute(
                    sa.text(
                        "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%\\_generation%')"
                        " + (SELECT count(*) FROM pg_proc WHERE proname LIKE 'configctl\\_%')"
                    )
                ).scalar()
                assert left == 0
        store.upgrade()
        assert store.current_revision() == SCHEMA_REVISION
        assert store.sync_state("x") == 1
