"""Rollout controls and the stage tick against the fake store: one version per control,
announced and audited; a tick announces each stage once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.fakes import T0, FakeStore
from tests.support.rollouts import RAMP

from configctl.core.records import snapshot_checksum
from configctl.errors import ConflictError, UsageError
from configctl.services import rollouts as service

ROLLOUT = RAMP


@pytest.fixture
def store() -> FakeStore:
    fake = FakeStore()
    with fake.unit_of_work() as uow:
        uow.add_version(
            app="web", env="prod", values={"limit": 10}, checksum=snapshot_checksum({"limit": 10}, [ROLLOUT]),
            commit_sha="a" * 40, reason="commit", actor="t", changes=[], rollouts=[ROLLOUT],
        )  # fmt: skip
    return fake


def control(store: FakeStore, action: str, name: str = "ramp") -> service.ControlResult:
    return service.control(
        store=store,
        app="web",
        env="prod",
        name=name,
        action=action,
        actor="ops",
        host="h",
        now=store.clock,
    )


def test_pause_writes_a_version_its_audit_row_and_message(store: FakeStore) -> None:
    store.clock.now = T0 + timedelta(hours=2)
    result = control(store, "pause")
    assert result.to_dict() == {
        "app": "web",
        "env": "prod",
        "rollout": "ramp",
        "action": "pause",
        "previous_status": "active",
        "status": "paused",
        "version": 2,
        "previous_version": 1,
        "changed": True,
    }
    v2 = store.versions("web", "prod")[-1]
    assert (v2.reason, v2.values, v2.commit_sha) == ("rollout", {"limit": 10}, "a" * 40)
    assert v2.rollouts[0]["state"]["status"] == "paused"
    assert v2.checksum == snapshot_checksum(v2.values, list(v2.rollouts))
    [row] = store.outbox
    assert {k: row.payload[k] for k in ("reason", "rollout", "action", "changed_keys", "time")} == {
        "reason": "rollout",
        "rollout": "ramp",
        "action": "pause",
        "changed_keys": ["limit"],
        "time": "2026-12-01T10:00:00Z",
    }
    assert [(a.action, a.details["from"], a.details["to"]) for a in store.audit] == [
        ("rollout.pause", "active", "paused")
    ]


def test_repeating_a_control_is_a_no_op_and_a_wrong_one_a_conflict(store: FakeStore) -> None:
    control(store, "pause")
    again = control(store, "pause")
    assert (again.version, again.status) == (None, "paused")
    assert control(store, "promote").status == "promoted"
    with pytest.raises(
        ConflictError, match="cannot pause rollout `ramp` of web/prod: it is promoted"
    ):
        control(store, "pause")
    assert len(store.versions("web", "prod")) == 3


def test_unknown_actions_rollouts_and_pins_are_refused(store: FakeStore) -> None:
    with pytest.raises(UsageError, match="unknown rollout action"):
        control(store, "explode")
    with pytest.raises(UsageError, match="no rollout or flag `other`"):
        control(store, "pause", name="other")
    with store.unit_of_work() as uow:
        uow.set_pin(app="web", env="prod", version=1, reason="r", actor="ops")
    with pytest.raises(ConflictError, match="pinned"):
        control(store, "pause")
    assert store.outbox == []


def test_the_tick_announces_each_stage_once_and_never_while_paused(store: FakeStore) -> None:
    def tick(hours: float) -> list[tuple[str, int, str]]:
        changes = service.advance_stages(
            store=store, now=T0 + timedelta(hours=hours), actor="r", host="h"
        )
        return [(c.rollout, c.stage, c.window) for c in changes]

    assert tick(0) == []
    assert tick(1.01) == [("ramp", 1, "open")]
    assert tick(2) == []
    [row] = store.outbox
    assert (row.payload["reason"], row.payload["version"], row.payload["previous_version"]) == (
        "rollout-stage",
        1,
        1,
    )
    assert row.payload.get("percentage") == 1000
    control(store, "pause")
    assert tick(5) == []
