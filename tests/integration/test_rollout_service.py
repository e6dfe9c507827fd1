"""services.rollouts against a real store (SQLite and PostgreSQL), with the clock as input:
pause then resume shifts the schedule by the pause, and the stage tick announces each
stage once, never while paused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support.rollouts import RAMP

from configctl.adapters.store import SqlStore
from configctl.core.records import snapshot_checksum
from configctl.core.rollouts import RolloutSet
from configctl.services import rollouts as service

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
ROLLOUT = RAMP


def _seed(store: SqlStore) -> None:
    with store.unit_of_work() as uow:
        uow.add_version(
            app="web", env="prod", values={"limit": 10}, checksum=snapshot_checksum({"limit": 10}, [ROLLOUT]),
            commit_sha=None, reason="commit", actor="t", changes=[], rollouts=[ROLLOUT],
        )  # fmt: skip


def _tick(store: SqlStore, at: datetime) -> list[tuple[str, int, str]]:
    changes = service.advance_stages(store=store, now=at, actor="reconciler", host="h")
    return [(c.rollout, c.stage, c.window) for c in changes]


def test_stage_tick_announces_each_stage_once(store_url: str) -> None:
    with SqlStore(store_url) as store:
        store.upgrade()
        _seed(store)
        assert _tick(store, T0) == []  # not started: stage 0 is where it starts
        assert _tick(store, T0 + timedelta(hours=1, seconds=1)) == [("ramp", 1, "open")]
        assert _tick(store, T0 + timedelta(hours=2)) == []
        assert _tick(store, T0 + timedelta(hours=5)) == [("ramp", 2, "open")]
        assert _tick(store, T0 + timedelta(hours=6)) == []
        messages = [r.payload for r in store.pending_outbox(10)]
        assert [
            (m["reason"], m["stage"], m["version"], m["previous_version"]) for m in messages
        ] == [
            ("rollout-stage", 1, 1, 1),
            ("rollout-stage", 2, 1, 1),
        ]


def test_pause_freezes_and_resume_shifts_the_schedule(store_url: str) -> None:
    with SqlStore(store_url) as store:
        store.upgrade()
        _seed(store)
        paused_at = T0 + timedelta(hours=2)  # at 10 %
        result = service.control(
            store=store,
            app="web",
            env="prod",
            name="ramp",
            action="pause",
            actor="ops",
            host="h",
            now=lambda: paused_at,
        )
        assert (result.previous_status, result.status, result.version) == ("active", "paused", 2)
        head = store.get_version("web", "prod")
        assert head is not None
        rs = RolloutSet.from_json(list(head.rollouts))
        assert rs.percentage("ramp", now=T0 + timedelta(days=3)) == 1000  # frozen
        assert _tick(store, T0 + timedelta(days=3)) == []  # a paused rollout does not move
        resumed_at = paused_at + timedelta(hours=3)
        service.control(
            store=store,
            app="web",
            env="prod",
            name="ramp",
            action="resume",
            actor="ops",
            host="h",
            now=lambda: resumed_at,
        )
        head = store.get_version("web", "prod")
        assert head is not None
        assert head.number == 3
        state = head.rollouts[0]["state"]
        assert state["status"] == "active"
        assert state["shift_seconds"] == 3 * 3600
        rs = RolloutSet.from_json(list(head.rollouts))
        # The 12:00 step now falls at 15:00.
        assert rs.percentage("ramp", now=T0 + timedelta(hours=6, minutes=59)) == 1000
        assert rs.percentage("ramp", now=T0 + timedelta(hours=7)) == 5000
        assert head.checksum == snapshot_checksum(head.values, list(head.rollouts))
        audit = [
            (a.action, a.details["from"], a.details["to"]) for a in reversed(store.audit(app="web"))
        ]  # newest first
        assert audit == [
            ("rollout.pause", "active", "paused"),
            ("rollout.resume", "paused", "active"),
        ]
