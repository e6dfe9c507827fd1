"""`apply` against the fakes of tests/fakes.py: every branch of the planner, the writer's
records (version, key changes, audit row, outbox message), and the history checks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from tests.fakes import FakeGit, FakeStore

from configctl.adapters.schemas import file_schemas
from configctl.core import plan
from configctl.core.records import VersionReason
from configctl.errors import FencingError, StoreMovedOn
from configctl.services import apply as apply_service
from configctl.services import rollback as rollback_service
from configctl.services.apply import ApplyResult, Baseline, apply_snapshot
from configctl.services.resolution import Evaluator

SCHEMA = Path(__file__).resolve().parents[3] / "schemas" / "v1" / "notification.schema.json"
CONFIG = "version: 1\nenvironments: [dev, prod]\n"
APP = "description: Web\nowners: [team-web]\n"


def tree(replicas: int = 2, **extra: str) -> dict[str, str]:
    files = {
        "configctl.yaml": CONFIG,
        "apps/web/app.yaml": APP,
        "apps/web/values.yaml": f"replicas: {replicas}\nlog:\n  level: info\n",
    }
    files.update(
        {path.replace("__", "/").replace("_yaml", ".yaml"): text for path, text in extra.items()}
    )
    return files


class World:
    """A fake repository and store, and the one evaluator a reconciler would keep."""

    def __init__(self) -> None:
        self.git = FakeGit()
        self.store = FakeStore()
        self.evaluator = Evaluator(file_schemas=file_schemas())

    def apply(
        self, sha: str, files: Mapping[str, str] | None = None, **options: Any
    ) -> ApplyResult:
        if files is not None:
            self.git.commit(sha, files)
        return apply_snapshot(
            store=self.store,
            files=self.git.read_tree(sha),
            commit=self.git.commit_info(sha),
            evaluator=self.evaluator,
            actor="tester",
            host="h",
            now=self.store.clock,
            **options,
        )

    def actions(self) -> list[str]:
        return [row.action for row in self.store.audit]


@pytest.fixture
def world() -> World:
    return World()


def test_new_pairs_get_version_one_with_key_changes_audit_and_message(world: World) -> None:
    result = world.apply("a" * 40, tree())
    assert result.status == "applied"
    assert [(p.app, p.env, p.version, p.previous, p.added) for p in result.pairs] == [
        ("web", "dev", 1, None, 2),
        ("web", "prod", 1, None, 2),
    ]
    [v1] = world.store.versions("web", "prod")
    assert (v1.values, v1.commit_sha, v1.reason) == (
        {"replicas": 2, "log": {"level": "info"}},
        "a" * 40,
        "commit",
    )
    assert [(c.key, c.change, c.new) for c in world.store.key_changes("web", "prod", 1)] == [
        ("log.level", "added", "info"),
        ("replicas", "added", 2),
    ]
    assert world.actions() == ["version.created", "version.created", "commit.applied"]
    assert world.store.audit[-1].details["versions"] == 2
    assert [row.routing_key for row in world.store.outbox] == ["web.dev", "web.prod"]
    assert world.store.sync_state("last_applied_commit") == "a" * 40
    assert world.store.get_commit("a" * 40) is not None


def test_messages_follow_the_notification_schema(world: World) -> None:
    result = world.apply("a" * 40, tree())
    validator = Draft202012Validator(
        json.loads(SCHEMA.read_text()), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    for message in result.notifications:
        validator.validate(message)
    assert result.notifications[0]["time"] == "2026-12-01T08:00:00Z"
    assert result.notifications[0]["changed_keys"] == ["log.level", "replicas"]
    assert [row.payload for row in world.store.outbox] == list(result.notifications)


def test_unchanged_pairs_and_a_second_apply_write_nothing(world: World) -> None:
    world.apply("a" * 40, tree())
    before = (len(world.store.audit), len(world.store.outbox))
    again = world.apply("a" * 40)
    assert (again.status, again.pairs, again.new_versions) == ("already-applied", (), 0)
    assert (len(world.store.audit), len(world.store.outbox)) == before
    touch = world.apply("b" * 40, {**tree(), "README.md": "notes\n"})
    assert (touch.status, touch.new_versions) == ("applied", 0)
    assert world.actions()[-1] == "commit.applied"


def test_a_change_diffs_against_the_version_in_service(world: World) -> None:
    world.apply("a" * 40, tree(2))
    result = world.apply("b" * 40, tree(3))
    assert [(p.env, p.version, p.previous, p.changed, p.changed_keys) for p in result.pairs] == [
        ("dev", 2, 1, 1, ("replicas",)),
        ("prod", 2, 1, 1, ("replicas",)),
    ]
    assert [(c.key, c.change, c.old, c.new) for c in world.store.key_changes("web", "prod", 2)] == [
        ("replicas", "changed", 2, 3)
    ]
    assert world.store.audit[-2].details == {
        "changed_keys": ["replicas"],
        "previous_version": 1,
        "applied_commit": "b" * 40,
        "added": 0,
        "changed": 1,
        "removed": 0,
    }


def test_only_limits_the_plan_to_one_pair(world: World) -> None:
    result = world.apply("a" * 40, tree(), only=("web", "prod"))
    assert [(p.env, p.version) for p in result.pairs] == [("prod", 1)]
    assert world.store.versions("web", "dev") == []


def test_dry_run_plans_and_writes_nothing(world: World) -> None:
    result = world.apply("a" * 40, tree(), dry_run=True)
    assert result.status == "planned"
    assert [(p.env, p.version, p.added) for p in result.pairs] == [
        ("dev", None, 2),
        ("prod", None, 2),
    ]
    assert world.store.transactions == 1  # the read-only unit of work
    assert (world.store.audit, world.store.outbox, world.store.versions("web", "prod")) == (
        [],
        [],
        [],
    )


def test_a_removed_pair_gets_an_empty_version(world: World) -> None:
    world.apply("a" * 40, tree())
    files = tree()
    files["configctl.yaml"] = "version: 1\nenvironments: [dev]\n"
    result = world.apply("b" * 40, files)
    assert [(p.env, p.version, p.removed) for p in result.pairs] == [("prod", 2, 2)]
    assert world.store.versions("web", "prod")[-1].values == {}
    assert world.apply("c" * 40, files).new_versions == 0  # an empty head stays empty


def test_an_invalid_tree_is_rejected_and_recorded_once(world: World) -> None:
    world.apply("a" * 40, tree())
    bad = {**tree(), "apps/web/values.yaml": "replicas: 2\nreplicas: 3\n"}
    result = world.apply("b" * 40, bad)
    assert result.status == "rejected"
    record = world.store.get_commit("b" * 40)
    assert record is not None
    assert record.status == "rejected"
    assert record.reason is not None
    assert "apps/web/values.yaml" in record.reason
    assert world.actions()[-1] == "commit.rejected"
    details = world.store.audit[-1].details
    assert (details["errors"], details["author"], details["message"]) == (
        1,
        "dev@example.com",
        "change",
    )
    assert world.store.sync_state("last_attempted_commit") == "b" * 40
    assert world.store.sync_state("last_applied_commit") == "a" * 40
    assert len(world.store.versions("web", "prod")) == 1


def test_an_applied_commit_is_never_recorded_as_rejected(world: World) -> None:
    world.apply("a" * 40, tree())
    with world.store.unit_of_work() as uow:
        from configctl.services.record import reject_commit

        written = reject_commit(
            uow, world.git.commit_info("a" * 40), reason="late", details={}, actor="t", host="h"
        )
    assert written is False
    record = world.store.get_commit("a" * 40)
    assert record is not None
    assert record.status == "applied"


def test_pinned_and_quarantined_pairs_are_skipped_until_a_newer_commit(world: World) -> None:
    world.apply("a" * 40, tree(2))
    world.apply("b" * 40, tree(3))  # v2 of each pair: the bad values
    rolled = rollback_service.rollback(
        store=world.store, app="web", env="prod", to=1, actor="ops", host="h", now=world.store.clock
    )
    assert (rolled.version, rolled.quarantined_commit) == (3, "b" * 40)

    pinned = world.apply("c" * 40, tree(4))
    assert [(p.env, p.version, p.skipped) for p in pinned.pairs] == [
        ("dev", 3, None),
        ("prod", None, "pinned"),
    ]

    rollback_service.release(store=world.store, app="web", env="prod", actor="ops", host="h")
    # The bad values come back in git: still quarantined for prod, served for dev.
    quarantined = world.apply("d" * 40, tree(3))
    assert [(p.env, p.version, p.skipped) for p in quarantined.pairs] == [
        ("dev", 4, None),
        ("prod", None, "quarantined"),
    ]
    assert world.store.quarantine_of("web", "prod") is not None

    fixed = world.apply("e" * 40, tree(5))
    assert [(p.env, p.version, p.skipped) for p in fixed.pairs] == [
        ("dev", 5, None),
        ("prod", 4, None),
    ]
    assert world.store.quarantine_of("web", "prod") is None  # superseded by a newer commit


def test_a_dry_run_does_not_lift_a_quarantine(world: World) -> None:
    world.apply("a" * 40, tree(2))
    world.apply("b" * 40, tree(3))
    rollback_service.rollback(
        store=world.store, app="web", env="prod", to=1, actor="ops", host="h", now=world.store.clock
    )
    rollback_service.release(store=world.store, app="web", env="prod", actor="ops", host="h")
    world.apply("c" * 40, tree(5), dry_run=True)
    assert world.store.quarantine_of("web", "prod") is not None


def test_a_rollouts_only_change_makes_a_version_naming_the_rollout_key(world: World) -> None:
    world.apply("a" * 40, tree())
    rollouts = "rollouts:\n  more-replicas:\n    key: replicas\n    value: 5\n    environments: [prod]\n    percentage: 10%\n"
    result = world.apply("b" * 40, {**tree(), "apps/web/rollouts.yaml": rollouts})
    assert [(p.env, p.version, p.changed, p.changed_keys) for p in result.pairs] == [
        ("prod", 2, 0, ("replicas",))
    ]
    head = world.store.versions("web", "prod")[-1]
    assert [r["name"] for r in head.rollouts] == ["more-replicas"]
    assert world.store.key_changes("web", "prod", 2) == ()


def test_a_baseline_limits_the_work_to_the_apps_that_changed(world: World) -> None:
    two_apps = {**tree(), "apps/api/app.yaml": APP, "apps/api/values.yaml": "workers: 1\n"}
    world.apply("a" * 40, two_apps)
    baseline = Baseline(commit="a" * 40, files=world.git.read_tree("a" * 40))
    result = world.apply(
        "b" * 40, {**two_apps, "apps/api/values.yaml": "workers: 2\n"}, baseline=baseline
    )
    assert [(p.app, p.env, p.version) for p in result.pairs] == [
        ("api", "dev", 2),
        ("api", "prod", 2),
    ]
    # A baseline the store does not serve is noticed inside the unit of work: this one
    # claims nothing changed, yet the whole tree is compared.
    head = {
        **two_apps,
        "apps/api/values.yaml": "workers: 2\n",
        "apps/web/values.yaml": "replicas: 9\n",
    }
    world.git.commit("c" * 40, head)
    stale = Baseline(commit="f" * 40, files=world.git.read_tree("c" * 40))
    again = world.apply("c" * 40, baseline=stale)
    assert [(p.app, p.env, p.version) for p in again.pairs] == [
        ("web", "dev", 2),
        ("web", "prod", 2),
    ]


def test_an_applied_commit_is_the_next_baseline_with_its_file_index(world: World) -> None:
    """The next apply finds the files of the apps it changes through the index its
    predecessor left, at the cost of the paths the commit changed, and answers the same
    as with a plain baseline."""
    two_apps = {**tree(), "apps/api/app.yaml": APP, "apps/api/values.yaml": "workers: 1\n"}
    world.apply("a" * 40, two_apps)
    plain = Baseline(commit="a" * 40, files=world.git.read_tree("a" * 40))
    second = world.apply("b" * 40, {**two_apps, "apps/api/values.yaml": "workers: 2\n"}, baseline=plain)
    assert second.baseline is not None
    assert second.baseline.commit == "b" * 40
    assert second.baseline.index == plan.FileIndex.of(world.git.read_tree("b" * 40))
    third_tree = {**two_apps, "apps/api/values.yaml": "workers: 2\n", "apps/web/envs/prod.yaml": "replicas: 7\n"}
    third = world.apply("c" * 40, third_tree, baseline=second.baseline)
    assert [(p.app, p.env, p.version) for p in third.pairs] == [("web", "prod", 2)]
    assert world.store.versions("web", "prod")[-1].values["replicas"] == 7
    assert third.baseline is not None
    assert third.baseline.index == plan.FileIndex.of(world.git.read_tree("c" * 40))
    assert world.apply("d" * 40, tree(), dry_run=True).baseline is None


def test_a_fenced_apply_by_a_deposed_leader_writes_nothing(world: World) -> None:
    world.store.epochs["reconciler"] = 2
    with pytest.raises(FencingError):
        world.apply("a" * 40, tree(), fence=("reconciler", 1))
    assert (world.store.audit, world.store.versions("web", "prod")) == ([], [])
    assert world.apply("a" * 40, fence=("reconciler", 2)).new_versions == 2


def test_moves_backwards_and_history_rewritten(world: World) -> None:
    world.git.commit("a" * 40, tree(1))
    world.git.commit("b" * 40, tree(2))
    is_ancestor = world.git.is_ancestor
    assert apply_service.moves_backwards(last="b" * 40, target="a" * 40, is_ancestor=is_ancestor)
    assert not apply_service.moves_backwards(
        last="a" * 40, target="b" * 40, is_ancestor=is_ancestor
    )
    assert not apply_service.moves_backwards(last=None, target="a" * 40, is_ancestor=is_ancestor)
    assert not apply_service.history_rewritten(
        last="a" * 40, target="b" * 40, is_ancestor=is_ancestor
    )
    world.git.head_sha = "a" * 40
    world.git.commit("c" * 40, tree(3))  # a side branch: b is not its ancestor
    assert apply_service.history_rewritten(last="b" * 40, target="c" * 40, is_ancestor=is_ancestor)


def test_a_force_push_is_audited_and_deletes_nothing(world: World) -> None:
    world.apply("a" * 40, tree())
    apply_service.record_force_push(
        world.store, previous="a" * 40, head="c" * 40, actor="t", host="h"
    )
    row = world.store.audit[-1]
    assert (row.action, row.commit_sha, row.details) == (
        "force-push",
        "c" * 40,
        {"previous_head": "a" * 40, "new_head": "c" * 40},
    )
    assert len(world.store.versions("web", "prod")) == 1


def test_version_reasons_are_the_closed_set(world: World) -> None:
    world.apply("a" * 40, tree())
    assert {v.reason for v in world.store.versions("web", "prod")} <= set(VersionReason)


def test_a_unit_of_work_that_finds_the_store_moved_on_is_run_again(world: World) -> None:
    """A PostgreSQL writer that answered its reads from memory fails whole when another
    writer wrote since (StoreMovedOn: nothing written); apply runs it once more and the
    result is the one a writer that read under the lock gets."""
    world.apply("a" * 40, tree())
    world.store.moved_on = 1
    before = world.store.transactions
    result = world.apply("b" * 40, tree(replicas=3))
    assert world.store.moved_on == 0
    assert world.store.transactions == before + 1  # the failed one committed nothing
    assert (result.status, result.new_versions) == ("applied", 2)
    assert [v.number for v in world.store.versions("web", "prod")] == [1, 2]
    assert world.actions().count("commit.applied") == 2
    assert len(world.store.outbox) == 4


def test_a_store_that_moves_on_twice_running_is_an_error(world: World) -> None:
    """The second run reads under the lock and cannot find the store moved on; if it
    did, the error leaves (no loop)."""
    world.apply("a" * 40, tree())
    world.store.moved_on = 2
    with pytest.raises(StoreMovedOn):
        world.apply("b" * 40, tree(replicas=3))
    assert [v.number for v in world.store.versions("web", "prod")] == [1]


def test_the_paths_a_caller_knows_changed_are_all_that_is_compared(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reconciler's tree reader knows what a commit changed: apply compares only
    those paths with the baseline (a path listed but equal is no change), never every
    path, and decides as a full comparison would."""
    two_apps = {**tree(), "apps/api/app.yaml": APP, "apps/api/values.yaml": "workers: 1\n"}
    world.apply("a" * 40, two_apps)
    baseline = Baseline(commit="a" * 40, files=world.git.read_tree("a" * 40))

    def compare_everything(*_args: object) -> list[str]:
        raise AssertionError("every path compared")

    monkeypatch.setattr(plan, "differing_paths", compare_everything)
    result = world.apply(
        "b" * 40, {**two_apps, "apps/api/values.yaml": "workers: 2\n"}, baseline=baseline,
        changed=["apps/api/values.yaml", "apps/web/values.yaml"],
    )  # fmt: skip
    assert [(p.app, p.env, p.version) for p in result.pairs] == [
        ("api", "dev", 2),
        ("api", "prod", 2),
    ]
