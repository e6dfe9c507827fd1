"""rollback and release against the fake store: one transaction, pin, quarantine, revert."""

from __future__ import annotations

import pytest
from tests.fakes import FakeStore, FakeUnitOfWork

from configctl.core.diff import REDACTED
from configctl.core.records import JsonValue, checksum
from configctl.errors import StoreError, UsageError
from configctl.services import rollback as service
from configctl.services.rollback import PreparedRevert, RevertPlan


def seed(store: FakeStore, *snapshots: dict[str, JsonValue]) -> None:
    """Versions 1..n of checkout/prod, version i made by commit "<i>" * 40."""
    with store.unit_of_work() as uow:
        for i, values in enumerate(snapshots, start=1):
            uow.add_version(
                app="checkout", env="prod", values=values, checksum=checksum(values),
                commit_sha=str(i) * 40, reason="commit", actor="t", changes=[],
            )  # fmt: skip


def rollback(store: FakeStore, to: int, **options: object) -> service.RollbackResult:
    return service.rollback(
        store=store,
        app="checkout",
        env="prod",
        to=to,
        actor="ops",
        host="h",
        now=store.clock,
        **options,  # type: ignore[arg-type]  # options of rollback, checked by the call
    )


def test_rollback_writes_version_pin_quarantine_audit_and_message() -> None:
    store = FakeStore()
    seed(store, {"timeout": 1, "password": "a"}, {"timeout": 2, "password": "b"})
    result = rollback(store, 1, secrets={"checkout": ["password"]}, reason="incident 42")
    assert (result.version, result.previous, result.quarantined_commit, result.changed_keys) == (
        3,
        2,
        "2" * 40,
        ("password", "timeout"),
    )
    v3 = store.versions("checkout", "prod")[-1]
    assert (v3.values, v3.reason, v3.rolled_back_to, v3.commit_sha) == (
        {"timeout": 1, "password": "a"},
        "rollback",
        1,
        "1" * 40,
    )
    assert [(c.key, c.old, c.new) for c in store.key_changes("checkout", "prod", 3)] == [
        ("password", REDACTED, REDACTED),
        ("timeout", 2, 1),
    ]
    [pin] = store.pins()
    assert (pin.version, pin.reason, pin.quarantined_commit) == (3, "incident 42", "2" * 40)
    assert store.quarantine_of("checkout", "prod") == {
        "commit": "2" * 40,
        "checksum": checksum({"timeout": 2, "password": "b"}),
        "version": 2,
    }
    assert [(a.action, a.commit_sha) for a in store.audit] == [
        ("rollback", "2" * 40),
        ("pin", None),
    ]
    [row] = store.outbox
    assert (row.payload["reason"], row.payload["commit"], row.payload["previous_version"]) == (
        "rollback",
        "1" * 40,
        2,
    )


def test_unknown_secrets_redact_every_value() -> None:
    store = FakeStore()
    seed(store, {"timeout": 1}, {"timeout": 2})
    rollback(store, 1)
    assert [(c.old, c.new) for c in store.key_changes("checkout", "prod", 3)] == [
        (REDACTED, REDACTED)
    ]


def test_a_rollback_to_the_values_in_service_writes_nothing() -> None:
    store = FakeStore()
    seed(store, {"timeout": 1}, {"timeout": 2}, {"timeout": 1})
    result = rollback(store, 1)
    assert result.version is None
    assert (store.audit, store.outbox, store.pins()) == ([], [], [])


@pytest.mark.parametrize(
    ("to", "message"),
    [(2, "already in service"), (7, "has no version 7")],
)
def test_bad_targets_are_usage_errors(to: int, message: str) -> None:
    store = FakeStore()
    seed(store, {"timeout": 1}, {"timeout": 2})
    with pytest.raises(UsageError, match=message):
        rollback(store, to)
    with pytest.raises(UsageError, match="no versions yet"):
        service.rollback(
            store=FakeStore(), app="x", env="y", to=1, actor="a", host="h", now=store.clock
        )


def test_revert_is_prepared_first_and_undone_when_the_write_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = FakeStore()
    seed(store, {"timeout": 1}, {"timeout": 2}, {"timeout": 3})
    plans: list[RevertPlan] = []
    undone: list[str] = []

    def prepare(plan: RevertPlan) -> PreparedRevert:
        plans.append(plan)
        return PreparedRevert(
            branch=f"revert-{len(plans)}",
            commit="f" * 40,
            reverted=plan.commits,
            undo=lambda: undone.append(plan.app),
        )

    result = rollback(store, 1, prepare=prepare)
    assert plans == [RevertPlan(app="checkout", env="prod", to=1, commits=("3" * 40, "2" * 40))]
    assert result.revert is not None
    assert store.audit[0].details["revert_branch"] == "revert-1"
    assert undone == []

    service.release(store=store, app="checkout", env="prod", actor="ops", host="h")
    before = (store.versions("checkout", "prod"), store.audit, store.outbox)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(FakeUnitOfWork, "set_pin", refuse)
    with pytest.raises(StoreError):
        rollback(store, 2, prepare=prepare)
    assert undone == ["checkout"]  # the revert branch is taken back
    assert (store.versions("checkout", "prod"), store.audit, store.outbox) == before


def test_release_removes_the_pin_and_keeps_the_quarantine() -> None:
    store = FakeStore()
    seed(store, {"timeout": 1}, {"timeout": 2})
    rollback(store, 1)
    released = service.release(store=store, app="checkout", env="prod", actor="ops", host="h")
    assert released["version"] == 3
    assert released["quarantine"] == store.quarantine_of("checkout", "prod")
    assert store.pins() == []
    assert store.audit[-1].action == "release"
    with pytest.raises(UsageError, match="not pinned"):
        service.release(store=store, app="checkout", env="prod", actor="ops", host="h")
