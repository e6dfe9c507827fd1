"""One reconcile pass against small fakes of the ports (tests/fakes.py): the steps' order and
outcomes without git, a database, Redis or RabbitMQ."""

from __future__ import annotations

import pytest
from tests.fakes import FakeCache, FakeGit, FakePublisher, FakeStore

from configctl.adapters import schemas
from configctl.errors import StoreError
from configctl.services.resolution import Evaluator
from configctl.services.rollback import rollback
from configctl_reconciler import reconcile
from configctl_reconciler.reconcile import CURSOR, Deps, Outcome, reconcile_once

TREE = {
    "configctl.yaml": "version: 1\nenvironments:\n  - dev\n  - prod\n",
    "apps/billing/app.yaml": "description: billing service\nowners: [team-billing]\n",
    "apps/billing/values.yaml": "replicas: 2\n",
    "apps/billing/envs/prod.yaml": "replicas: 4\n",
}


def deps_for(git: FakeGit, store: FakeStore) -> tuple[Deps, FakeCache, FakePublisher]:
    cache, publisher = FakeCache(), FakePublisher()
    deps = Deps(
        store=store,
        git=git,
        fetch=lambda: git.head_sha or "",
        cache=cache,
        publisher=publisher,
        evaluator=Evaluator(file_schemas=schemas.file_schemas()),
        host="test",
    )
    return deps, cache, publisher


def test_the_steps_are_in_the_documented_order() -> None:
    assert [s.__name__ for s in reconcile.PASS_STEPS] == [
        "fetch_head", "check_layout_once", "apply_pending", "judge_head", "tick_rollouts", "finish",
    ]  # fmt: skip
    assert [s.__name__ for s in reconcile.COMMIT_STEPS] == [
        "verify_signature", "read_files", "apply_files", "warm_cache", "relay_changes",
    ]  # fmt: skip


def test_reconcile_one_commit() -> None:
    git, store = FakeGit(), FakeStore()
    store.epochs["lock"] = 1
    first = git.commit("a" * 40, TREE)
    deps, cache, publisher = deps_for(git, store)
    reconcile_once(deps, fence=("lock", 1))  # first start: the head only

    second = git.commit("b" * 40, {**TREE, "apps/billing/envs/prod.yaml": "replicas: 6\n"})
    result = reconcile_once(deps, fence=("lock", 1))

    assert result.head == second.sha
    assert result.applied == [second.sha]
    assert result.rejected == []
    assert result.new_versions == 1  # only billing/prod changed
    assert store.get_version("billing", "prod") is not None
    assert store.get_version("billing", "prod").values["replicas"] == 6  # type: ignore[union-attr]  # asserted just above
    assert store.get_commit(second.sha).status  # type: ignore[union-attr]  # recorded by the pass == "applied"
    assert store.sync_state(CURSOR) == second.sha
    assert cache.entries[("billing", "prod")].version == 2  # warmed before the relay
    assert [key for key, _, _ in publisher.published] == [
        "billing.dev",
        "billing.prod",
        "billing.prod",
    ]
    assert store.outbox_backlog() == 0
    assert store.get_commit(first.sha) is not None


def test_an_invalid_commit_stalls_and_the_next_one_applies() -> None:
    git, store = FakeGit(), FakeStore()
    git.commit("a" * 40, TREE)
    deps, _, publisher = deps_for(git, store)
    reconcile_once(deps, fence=None)
    bad = git.commit("b" * 40, {**TREE, "apps/billing/values.yaml": "replicas: [unclosed\n"})
    good = git.commit("c" * 40, {**TREE, "apps/billing/values.yaml": "replicas: 3\n"})

    result = reconcile_once(deps, fence=None)

    assert result.rejected == [bad.sha]  # STALL: recorded, cursor moved past it
    assert store.get_commit(bad.sha).status  # type: ignore[union-attr]  # recorded by the pass == "rejected"
    assert result.applied == [good.sha]  # the pass went on
    assert store.sync_state(CURSOR) == good.sha
    assert store.get_version("billing", "dev").values["replicas"] == 3  # type: ignore[union-attr]  # written by this pass
    assert len(publisher.published) == 3  # billing/prod keeps its own replicas: 4


def test_a_backend_error_is_a_retry_raised_to_the_loop() -> None:
    git, store = FakeGit(), FakeStore()
    store.epochs["lock"] = 1
    git.commit("a" * 40, TREE)
    deps, _, _ = deps_for(git, store)
    reconcile_once(deps, fence=("lock", 1))
    sha = git.commit("b" * 40, {**TREE, "apps/billing/values.yaml": "replicas: 3\n"}).sha
    store.epochs["lock"] = 2  # another replica took over: every write of ours is fenced off

    with pytest.raises(StoreError):
        reconcile_once(deps, fence=("lock", 1))
    assert store.get_commit(sha) is None
    assert store.sync_state(CURSOR) == "a" * 40

    p = reconcile.Pass(deps=deps, fence=("lock", 1))
    p.head = sha
    assert reconcile.run_commit(p, git.commit_info(sha)) is Outcome.RETRY
    assert isinstance(p.error, StoreError)


def test_a_version_written_elsewhere_is_in_the_cache_before_it_is_announced() -> None:
    # A rollback from the CLI on the shared store writes a version and its outbox row, but
    # no cache entry: the relay warms the pair before the message goes out.
    git, store = FakeGit(), FakeStore()
    git.commit("a" * 40, TREE)
    deps, cache, publisher = deps_for(git, store)
    reconcile_once(deps, fence=None)
    git.commit("b" * 40, {**TREE, "apps/billing/envs/prod.yaml": "replicas: 6\n"})
    reconcile_once(deps, fence=None)
    assert cache.entries[("billing", "prod")].version == 2
    rollback(store=store, app="billing", env="prod", to=1, actor="ops", host="cli", now=store.clock, reason="test")
    seen: list[int | None] = []
    publish = publisher.publish

    def publish_and_look(routing_key: str, body: bytes, message_id: str) -> None:
        held = cache.entries.get(("billing", "prod"))
        seen.append(held.version if held is not None else None)
        publish(routing_key, body, message_id)

    publisher.publish = publish_and_look  # type: ignore[method-assign]  # a spy on the fake
    reconcile.catch_up(deps)
    assert seen == [3]  # the cache held version 3 when its message was published
    assert store.outbox_backlog() == 0


def test_the_cache_is_warmed_with_the_versions_just_written_not_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    git, store = FakeGit(), FakeStore()
    store.epochs["lock"] = 1
    git.commit("a" * 40, TREE)
    deps, cache, _ = deps_for(git, store)
    reconcile_once(deps, fence=("lock", 1))
    git.commit("b" * 40, {**TREE, "apps/billing/envs/prod.yaml": "replicas: 6\n"})
    reads: list[tuple[str, str]] = []
    real = store.get_version

    def counted(app: str, env: str, number: int | None = None) -> object:
        reads.append((app, env))
        return real(app, env, number)

    monkeypatch.setattr(store, "get_version", counted)
    reconcile_once(deps, fence=("lock", 1))
    assert reads == []  # a round trip to the store per pair saved on the way to subscribers
    warmed = cache.entries[("billing", "prod")]
    assert (warmed.version, warmed.values["replicas"]) == (2, 6)
    served = real("billing", "prod")
    assert served is not None
    assert (warmed.checksum, warmed.commit, warmed.values) == (served.checksum, served.commit_sha, served.values)


def test_the_paths_the_tree_reader_saw_change_are_handed_to_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the first commit, apply compares only the paths the tree reader saw change
    between the last applied commit and this one (relative to ``--path``), not every path."""
    from configctl.core import plan

    git, store = FakeGit(), FakeStore()
    store.epochs["lock"] = 1
    first = git.commit("a" * 40, {f"cfg/{path}": text for path, text in TREE.items()})
    deps, _, _ = deps_for(git, store)
    deps.prefix = "cfg"
    asked: list[tuple[str, str]] = []

    def changed_paths(base: str, sha: str) -> list[str] | None:
        asked.append((base, sha))
        return ["cfg/apps/billing/envs/prod.yaml", "elsewhere/x.yaml"]

    deps.changed_paths = changed_paths
    reconcile_once(deps, fence=("lock", 1))
    assert asked == []  # a first apply has no baseline: nothing to compare with

    def compare_everything(*_args: object) -> list[str]:
        raise AssertionError("every path compared")

    monkeypatch.setattr(plan, "differing_paths", compare_everything)
    second = git.commit("b" * 40, {f"cfg/{path}": text for path, text in {**TREE, "apps/billing/envs/prod.yaml": "replicas: 6\n"}.items()})
    result = reconcile_once(deps, fence=("lock", 1))
    assert asked == [(first.sha, second.sha)]
    assert (result.applied, result.new_versions) == ([second.sha], 1)
