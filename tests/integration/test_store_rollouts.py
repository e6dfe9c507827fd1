"""The store's rollout columns and table on SQLite and PostgreSQL: versions keep their
rollouts (NULL when none), runtime states by (app, env, name), the heads that carry
rollouts, and a database at revision 0001 upgrading to 0002 with its versions intact."""

from __future__ import annotations

from pathlib import Path

from configctl.adapters.store import SqlStore
from configctl.adapters.store.models import SCHEMA_REVISION
from configctl.core.records import checksum, snapshot_checksum

ROLLOUT = {"name": "r", "kind": "value", "key": "a", "value": 2, "percentage": 500}


def test_versions_keep_rollouts_and_states_round_trip(store_url: str) -> None:
    with SqlStore(store_url) as store:
        store.upgrade()
        with store.unit_of_work() as uow:
            uow.add_version(
                app="web",
                env="prod",
                values={"a": 1},
                checksum=checksum({"a": 1}),
                commit_sha=None,
                reason="commit",
                actor="t",
                changes=[],
            )
            uow.add_version(
                app="web",
                env="prod",
                values={"a": 1},
                checksum=snapshot_checksum({"a": 1}, [ROLLOUT]),
                commit_sha=None,
                reason="rollout",
                actor="t",
                changes=[],
                rollouts=[ROLLOUT],
            )
            uow.add_version(
                app="web",
                env="dev",
                values={"a": 1},
                checksum=checksum({"a": 1}),
                commit_sha=None,
                reason="commit",
                actor="t",
                changes=[],
            )
            uow.set_rollout_state(
                "web", "prod", "r", {"status": "paused", "paused_at": "2026-12-01T00:00:00Z"}
            )
            uow.set_rollout_state("web", "prod", "r", {"status": "active", "stage": 1})
            assert uow.rollout_heads() == {("web", "prod"): (2, None, (ROLLOUT,))}
        first = store.get_version("web", "prod", 1)
        second = store.get_version("web", "prod", 2)
        assert first is not None
        assert second is not None
        assert first.rollouts == ()
        assert second.rollouts == (ROLLOUT,)
        assert second.reason == "rollout"
        assert store.rollout_states() == {("web", "prod"): {"r": {"status": "active", "stage": 1}}}
        assert store.rollout_states("web", "dev") == {}


def test_a_0001_database_upgrades_and_keeps_its_versions(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}"
    with SqlStore(url) as store:
        cfg = store._alembic_config()
        with store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.exec_driver_sql(
                'INSERT INTO versions (app, env, number, "values", checksum, reason, actor, created_at) '
                "VALUES ('web', 'prod', 1, '{\"a\": 1}', 'c', 'commit', 't', '2026-01-01 00:00:00')"
            )
        assert store.current_revision() == "0001"
        store.upgrade()
        assert store.current_revision() == SCHEMA_REVISION  # the head: 0002 then 0003 (quarantines)
        old = store.get_version("web", "prod", 1)
        assert old is not None
        assert old.values == {"a": 1}
        assert old.rollouts == ()
