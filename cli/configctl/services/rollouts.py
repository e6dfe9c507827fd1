"""Rollout use cases: what a version carries, runtime controls, schedule ticks, and reads.

Where rollouts live:

- **definitions** in git (``apps/<app>/rollouts.yaml``), turned into one JSON list per
  (app, env) by :mod:`configctl.core.rollout_spec`;
- **runtime state** (pause, resume, promote, abort; the last announced stage) in the
  store's ``rollout_state`` table, by (app, env, rollout name);
- **the version** of a pair stores the definitions with the state folded in
  (:func:`configctl.core.rollout_spec.fold_state`), and its checksum covers both
  (:func:`configctl.core.records.snapshot_checksum`). So a change of ``rollouts.yaml`` or
  a control makes a new version, and the existing machinery (outbox notification, cache
  warm and repair, the SDK's reload) carries it to every client. Clients then evaluate
  locally with :mod:`configctl.core.rollouts`; schedules need no new version, since the
  percentage is a function of ``now``.

A control is audited (``rollout.<action>``) and announced (reason ``rollout``). The
reconciler's tick (:func:`advance_stages`) records and announces each schedule or window
stage a rollout reaches (reason ``rollout-stage``; such a message repeats the version in
service: there is nothing new to load, the clients' clocks already moved).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from configctl.core import rollout_spec
from configctl.core.ports import Fence, VersionStore
from configctl.core.records import JsonValue, VersionReason, snapshot_checksum
from configctl.core.rollouts import BUCKETS, RolloutSet, parse_time
from configctl.core.tree import ConfigTree
from configctl.errors import ConflictError, UsageError
from configctl.services.record import NewVersion, announce, iso_time, notification, record_version

__all__ = [
    "ACTIONS",
    "ControlResult",
    "StageChange",
    "advance_stages",
    "control",
    "pair_rollouts",
    "with_rollouts",
]

ACTIONS: Final = ("pause", "resume", "promote", "abort")

#: Allowed runtime transitions: action -> states it may start from. The same action on a
#: rollout already in its target state is a no-op (scripts may repeat it).
_FROM: Final[dict[str, frozenset[str]]] = {
    "pause": frozenset({"active"}),
    "resume": frozenset({"paused", "aborted"}),
    "promote": frozenset({"active", "paused"}),
    "abort": frozenset({"active", "paused", "promoted"}),
}
_TO: Final = {"pause": "paused", "resume": "active", "promote": "promoted", "abort": "aborted"}


# --------------------------------------------------------------------------- apply


def pair_rollouts(
    tree: ConfigTree,
    pairs: Sequence[tuple[str, str]],
    states: Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]],
) -> dict[tuple[str, str], tuple[dict[str, Any], ...]]:
    """The JSON form of each pair's rollouts with runtime state folded in (pairs with none left out)."""
    out: dict[tuple[str, str], tuple[dict[str, Any], ...]] = {}
    definitions: dict[str, list[rollout_spec.RolloutDef]] = {}
    for app, env in pairs:
        a = tree.apps.get(app)
        if a is None or a.rollouts is None:
            continue
        if app not in definitions:
            definitions[app] = rollout_spec.read(a.rollouts)
        entries = rollout_spec.for_env(definitions[app], env)
        if entries:
            out[(app, env)] = tuple(rollout_spec.fold_state(entries, states.get((app, env), {})))
    return out


def with_rollouts(
    checksums: Mapping[tuple[str, str], str],
    values: Mapping[tuple[str, str], Mapping[str, Any]],
    rollouts: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]],
) -> dict[tuple[str, str], str]:
    """``checksums`` with the pairs that have rollouts re-computed over values + rollouts."""
    out = dict(checksums)
    for pair, items in rollouts.items():
        if pair in values:
            out[pair] = snapshot_checksum(values[pair], items)
    return out


# --------------------------------------------------------------------------- controls


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlResult:
    app: str
    env: str
    rollout: str
    action: str
    previous_status: str
    status: str
    version: int | None
    """The new version written, None when nothing changed (already in that state)."""
    previous_version: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "env": self.env,
            "rollout": self.rollout,
            "action": self.action,
            "previous_status": self.previous_status,
            "status": self.status,
            "version": self.version,
            "previous_version": self.previous_version,
            "changed": self.version is not None,
        }


def control(
    *,
    store: VersionStore,
    app: str,
    env: str,
    name: str,
    action: str,
    actor: str,
    host: str,
    now: Callable[[], datetime],
) -> ControlResult:
    """Pause, resume, promote or abort rollout ``name`` of (app, env), as a new version.

    One transaction: the runtime state, the new version (same values, the rollouts with
    the new state folded in, reason ``rollout``), the audit row and the outbox message.
    Pausing freezes a schedule where it stands; resuming continues it from there (the time
    spent paused is added to ``shift_seconds``, which delays every later step).
    """
    if action not in _TO:
        raise UsageError(f"unknown rollout action {action!r} (one of {', '.join(ACTIONS)})")
    with store.unit_of_work() as uow:
        head = uow.get_version(app, env, None)
        if head is None:
            raise UsageError(
                f"{app}/{env} has no version in the store",
                hint="apply the repository first: `configctl apply`",
            )
        entries = [dict(r) for r in head.rollouts]
        index = next((i for i, r in enumerate(entries) if r.get("name") == name), None)
        if index is None:
            names = ", ".join(sorted(str(r.get("name")) for r in entries)) or "none"
            raise UsageError(f"{app}/{env} has no rollout or flag `{name}` in service (it has: {names})")
        if (app, env) in {(p.app, p.env) for p in uow.get_pins()}:
            raise ConflictError(
                f"{app}/{env} is pinned by a rollback; its version in service cannot change",
                hint=f"`configctl release {app} {env}` first",
            )
        stored = uow.rollout_states(app, env).get((app, env), {}).get(name, {})
        folded = entries[index].get("state") or {}
        state: dict[str, Any] = {
            "status": "active",
            "paused_at": None,
            "shift_seconds": 0,
            **{k: v for k, v in folded.items() if k in {"status", "paused_at", "shift_seconds"}},
            **stored,
        }
        previous = str(state.get("status", "active"))
        target = _TO[action]
        if previous == target:
            return ControlResult(
                app=app,
                env=env,
                rollout=name,
                action=action,
                previous_status=previous,
                status=previous,
                version=None,
                previous_version=head.number,
            )
        if previous not in _FROM[action]:
            raise ConflictError(
                f"cannot {action} rollout `{name}` of {app}/{env}: it is {previous}",
                hint=f"{action} applies to a rollout that is {' or '.join(sorted(_FROM[action]))}",
            )
        moment = now()
        if action == "pause":
            state["paused_at"] = iso_time(moment)
        else:
            if action == "resume" and previous == "paused" and state.get("paused_at"):
                # The schedule continues where it stopped: later steps move by the pause.
                paused_for = moment.timestamp() - parse_time(state["paused_at"], "paused_at")
                state["shift_seconds"] = float(state.get("shift_seconds") or 0) + max(0.0, paused_for)
            state["paused_at"] = None
        state["status"] = target
        state["actor"] = actor
        state["at"] = iso_time(moment)
        uow.set_rollout_state(app, env, name, state)
        bare = dict(entries[index])
        bare.pop("state", None)
        entries[index] = rollout_spec.fold_state([bare], {name: state})[0]
        digest = snapshot_checksum(head.values, entries)
        key = entries[index].get("key")
        keys = [str(key)] if isinstance(key, str) else []
        message = record_version(
            uow,
            NewVersion(
                app=app,
                env=env,
                values=head.values,
                checksum=digest,
                commit_sha=head.commit_sha,
                reason=VersionReason.ROLLOUT,
                previous=head.number,
                changes=(),
                changed_keys=keys,
                rollouts=entries,
            ),
            actor=actor,
            host=host,
            now=moment,
            action=f"rollout.{action}",
            details={"rollout": name, "from": previous, "to": target, "previous_version": head.number},
            control=(name, action),
        )
        version = message["version"]
    return ControlResult(
        app=app,
        env=env,
        rollout=name,
        action=action,
        previous_status=previous,
        status=target,
        version=version,
        previous_version=head.number,
    )


# --------------------------------------------------------------------------- ticks


@dataclass(frozen=True, slots=True, kw_only=True)
class StageChange:
    app: str
    env: str
    rollout: str
    stage: int
    window: str
    percentage: int | None
    version: int


def stage_of(rollouts: RolloutSet, name: str, now: datetime) -> tuple[int, str]:
    """(schedule stage, window state) of rollout ``name`` at ``now``.

    The stage counts the schedule steps reached; the window is ``pending`` before
    ``start``, ``closed`` from ``end`` on, ``open`` otherwise.
    """
    entry = rollouts.entry(name)
    t = now.timestamp()
    window = "open"
    if entry.get("start") is not None and t < parse_time(entry["start"], "start"):
        window = "pending"
    elif entry.get("end") is not None and t >= parse_time(entry["end"], "end"):
        window = "closed"
    return rollouts.stage(name, now=now), window


def _number(value: JsonValue) -> int:
    """A stage as stored (JSON): an integer."""
    return int(value) if isinstance(value, int | float | str) else 0


def _initial(entry: Mapping[str, Any]) -> tuple[int, str]:
    """The stage a rollout starts in: before any step, window pending if it has a start."""
    return 0, "pending" if entry.get("start") is not None else "open"


def advance_stages(
    *,
    store: VersionStore,
    now: datetime,
    actor: str,
    host: str,
    fence: Fence | None = None,
) -> list[StageChange]:
    """Record and announce every rollout whose schedule stage or window changed.

    Cheap when nothing moved: one query for the pairs whose version carries rollouts,
    one for their runtime states, evaluation in memory, and a write only for a change.
    Idempotent: the stage announced is stored, so a second tick announces nothing.
    """
    with store.unit_of_work(fence=fence) as uow:
        heads = uow.rollout_heads()
        if not heads:
            return []
        states = uow.rollout_states()
        changes: list[StageChange] = []
        for (app, env), (number, commit, entries) in sorted(heads.items()):
            try:
                compiled = RolloutSet.from_json(list(entries))
            except ValueError:
                continue  # a version the evaluator refuses is served as it is; nothing to tick
            pair_states = states.get((app, env), {})
            for entry in entries:
                name = str(entry.get("name"))
                folded = entry.get("state")
                status = str(folded.get("status", "active")) if isinstance(folded, Mapping) else "active"
                if status != "active":
                    continue  # paused, promoted or aborted rollouts do not move
                stage, window = stage_of(compiled, name, now)
                stored = pair_states.get(name, {})
                before = (
                    _number(stored["stage"]) if "stage" in stored else _initial(entry)[0],
                    str(stored["window"]) if "window" in stored else _initial(entry)[1],
                )
                if (stage, window) == before:
                    continue
                state = {**stored, "stage": stage, "window": window, "stage_at": iso_time(now)}
                uow.set_rollout_state(app, env, name, state)
                percentage = compiled.percentage(name, now=now)
                key = entry.get("key")
                message = notification(
                    app=app,
                    env=env,
                    version=number,
                    previous=number,
                    commit=commit,
                    keys=[str(key)] if isinstance(key, str) else [],
                    reason="rollout-stage",
                    now=now,
                )
                message["rollout"], message["stage"] = name, stage
                message["window"], message["percentage"] = window, percentage
                announce(uow, message)
                uow.add_audit(
                    action="rollout.stage",
                    actor=actor,
                    host=host,
                    app=app,
                    env=env,
                    version=number,
                    details={"rollout": name, "stage": stage, "window": window, "from": list(before), "percentage": percentage},
                )
                changes.append(
                    StageChange(app=app, env=env, rollout=name, stage=stage, window=window, percentage=percentage, version=number)
                )
    return changes


# --------------------------------------------------------------------------- reads


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutView:
    """The rollouts of one pair as a command shows them."""

    app: str
    env: str
    source: str
    """``store`` (the version in service) or ``tree`` (the working tree, not applied)."""
    version: int | None
    values: Mapping[str, Any]
    rollouts: RolloutSet
    states: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def describe(view: RolloutView, now: datetime) -> list[dict[str, Any]]:
    """One row per rollout or flag: its parts, runtime status, percentage and stage now."""
    rows: list[dict[str, Any]] = []
    for name in view.rollouts.names():
        entry = view.rollouts.entry(name)
        state = entry.get("state") or {}
        stored = view.states.get(name, {})
        stage, window = stage_of(view.rollouts, name, now)
        schedule = entry.get("schedule") or {}
        steps = schedule.get("steps") if isinstance(schedule, dict) else None
        next_step = None
        if isinstance(steps, list) and entry.get("schedule"):
            shift = float(state.get("shift_seconds") or 0) if isinstance(state, dict) else 0.0
            upcoming = [s for s in steps if parse_time(s["at"], "at") + shift > now.timestamp()]
            if upcoming:
                at = datetime.fromtimestamp(parse_time(upcoming[0]["at"], "at") + shift, UTC)
                next_step = {"at": iso_time(at), "percentage": upcoming[0]["percentage"]}
        parts = [
            part
            for part, present in (
                ("percentage", entry.get("percentage") is not None),
                ("schedule", bool(entry.get("schedule"))),
                ("window", entry.get("start") is not None or entry.get("end") is not None),
                ("users", bool(entry.get("users"))),
                ("rules", bool(entry.get("rules"))),
                ("canary", bool(entry.get("canary"))),
            )
            if present
        ]
        rows.append(
            {
                "name": name,
                "kind": entry.get("kind"),
                "key": entry.get("key"),
                "value": entry.get("value") if entry.get("kind") == "value" else True,
                "priority": entry.get("priority"),
                "stickiness": entry.get("stickiness"),
                "parts": parts,
                "status": state.get("status", "active") if isinstance(state, dict) else "active",
                "enabled": entry.get("enabled", True),
                "percentage": view.rollouts.percentage(name, now=now),
                "stage": stage,
                "steps": len(steps) if isinstance(steps, list) else 0,
                "window": window,
                "next_step": next_step,
                "paused_at": state.get("paused_at") if isinstance(state, dict) else None,
                "updated_by": stored.get("actor"),
                "updated_at": stored.get("at"),
            }
        )
    return rows


def share_of(percentage: int | None) -> str | None:
    """Basis points as a percent text (1250 -> "12.5%")."""
    if percentage is None:
        return None
    text = f"{percentage * 100 / BUCKETS:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"
