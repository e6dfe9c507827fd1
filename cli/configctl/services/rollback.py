"""Rollback and release: break-glass changes of what is served, never of git history.

``rollback`` puts version N's values back into service at once as a new version (reason
"rollback"), pins the pair so `apply` leaves it alone, and quarantines the commit whose
values were rolled back: after `release`, that commit's values for the pair are not
served again unless a newer commit changes the pair (in git, the revert or a fix).

A rollback either happens whole or not at all: with ``prepare`` (the git revert of
`--revert`) the revert branch is made first, inside the store's unit of work and before
anything is written, so a conflict or a taken branch name leaves the store untouched; if
the store write then fails, the branch is deleted again. A rollback to values already in
service writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from configctl.core import diff as diff_mod
from configctl.core.ports import UnitOfWork, VersionStore
from configctl.core.records import JsonValue, QuarantineRecord, VersionReason, VersionRecord
from configctl.core.resolve import flatten
from configctl.errors import UsageError
from configctl.services.record import (
    NewVersion,
    key_changes,
    record_version,
    set_quarantine,
    stored_quarantine,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RevertPlan:
    """What `--revert` must undo in git: the commits of the versions after the target
    (newest first), each of which changed the pair."""

    app: str
    env: str
    to: int
    commits: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedRevert:
    """A revert commit made on its own branch, and how to take it back."""

    branch: str
    commit: str
    reverted: tuple[str, ...]
    undo: Callable[[], None] = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class RollbackResult:
    app: str
    env: str
    version: int | None
    """None when version ``rolled_back_to`` holds the values in service: nothing written."""
    rolled_back_to: int
    previous: int
    quarantined_commit: str | None
    changed_keys: tuple[str, ...]
    revert: PreparedRevert | None = None


def rollback(
    *,
    store: VersionStore,
    app: str,
    env: str,
    to: int,
    actor: str,
    host: str,
    now: Callable[[], datetime],
    secrets: Mapping[str, Iterable[str]] | None = None,
    reason: str | None = None,
    prepare: Callable[[RevertPlan], PreparedRevert] | None = None,
) -> RollbackResult:
    """Serve version ``to`` again as a new version, pinned; quarantine the commit it replaces.

    ``secrets`` maps an app to its secret dotted keys, whose values the recorded key
    changes redact; ``None`` (unknown, e.g. no schema at hand) redacts every value.
    ``prepare`` makes the git revert before anything is written (see the module docstring).
    """
    made: list[PreparedRevert] = []
    try:
        with store.unit_of_work() as uow:
            latest = uow.latest_versions().get((app, env))
            if latest is None:
                raise UsageError(f"{app}/{env} has no versions yet; nothing to roll back")
            target = uow.get_version(app, env, to)
            if target is None:
                raise UsageError(f"{app}/{env} has no version {to} (latest is {latest.number})")
            if to == latest.number:
                raise UsageError(f"version {to} is already in service for {app}/{env}")
            if target.checksum == latest.checksum:
                # Nothing would change: no version, no pin, no quarantine, no revert.
                return RollbackResult(
                    app=app, env=env, version=None, rolled_back_to=to, previous=latest.number,
                    quarantined_commit=None, changed_keys=(),
                )
            if prepare is not None:
                made.append(prepare(_revert_plan(uow, app=app, env=env, to=to, latest=latest.number)))
            result = _write(
                uow, app=app, env=env, to=to, latest=latest, target=target, actor=actor, host=host,
                now=now, secrets=secrets, reason=reason, revert=made[0] if made else None,
            )
    except BaseException:
        for prepared in made:
            prepared.undo()
        raise
    return result


def _revert_plan(uow: UnitOfWork, *, app: str, env: str, to: int, latest: int) -> RevertPlan:
    """The commits of the versions after ``to`` that came from git, newest first."""
    commits: list[str] = []
    for number in range(latest, to, -1):
        record = uow.get_version(app, env, number)
        if record is not None and record.reason == VersionReason.COMMIT and record.commit_sha and record.commit_sha not in commits:
            commits.append(record.commit_sha)
    if not commits:
        raise UsageError(
            f"no commit to revert: the versions of {app}/{env} after {to} were not made from git",
            hint="roll back without --revert",
        )
    return RevertPlan(app=app, env=env, to=to, commits=tuple(commits))


def _write(
    uow: UnitOfWork,
    *,
    app: str,
    env: str,
    to: int,
    latest: VersionRecord,
    target: VersionRecord,
    actor: str,
    host: str,
    now: Callable[[], datetime],
    secrets: Mapping[str, Iterable[str]] | None,
    reason: str | None,
    revert: PreparedRevert | None,
) -> RollbackResult:
    if secrets is None:
        # Which keys are secret is unknown: redact every value of the recorded changes.
        hidden: Iterable[str] = set(flatten(latest.values)) | set(flatten(target.values))
    else:
        hidden = secrets.get(app, ())
    keys = diff_mod.diff_values(latest.values, target.values, secrets=hidden)
    changed = tuple(k.key for k in keys)
    bad_commit = latest.commit_sha
    details: dict[str, JsonValue] = {
        "to": to, "from": latest.number, "changed_keys": list(changed), "quarantined_commit": bad_commit, "reason": reason
    }
    if revert is not None:
        details.update(revert_branch=revert.branch, revert_commit=revert.commit, reverted_commits=list(revert.reverted))
    message = record_version(
        uow,
        NewVersion(
            app=app,
            env=env,
            values=target.values,
            checksum=target.checksum,
            commit_sha=target.commit_sha,
            reason=VersionReason.ROLLBACK,
            previous=latest.number,
            changes=key_changes(keys),
            changed_keys=changed,
            rollouts=target.rollouts,
            rolled_back_to=to,
        ),
        actor=actor,
        host=host,
        now=now(),
        action="rollback",
        details=details,
        audit_commit=bad_commit,
    )
    version = message["version"]
    uow.set_pin(app=app, env=env, version=version, reason=reason or f"rollback to version {to}", actor=actor, quarantined_commit=bad_commit)
    set_quarantine(uow, QuarantineRecord(app=app, env=env, commit=bad_commit, checksum=latest.checksum, version=latest.number))
    uow.add_audit(
        action="pin",
        actor=actor,
        host=host,
        app=app,
        env=env,
        version=version,
        details={"reason": reason or f"rollback to version {to}"},
    )
    return RollbackResult(
        app=app, env=env, version=version, rolled_back_to=to, previous=latest.number,
        quarantined_commit=bad_commit, changed_keys=changed, revert=revert,
    )


def release(*, store: VersionStore, app: str, env: str, actor: str, host: str) -> dict[str, Any]:
    """Remove the pin; the quarantine stays until a newer commit changes the pair."""
    with store.unit_of_work() as uow:
        pins = {(p.app, p.env): p for p in uow.get_pins()}
        pin = pins.get((app, env))
        if pin is None:
            raise UsageError(f"{app}/{env} is not pinned")
        uow.clear_pin(app, env)
        quarantine = stored_quarantine(uow, app, env)
        uow.add_audit(
            action="release",
            actor=actor,
            host=host,
            app=app,
            env=env,
            version=pin.version,
            details={"quarantine": quarantine},
        )
    return {"app": app, "env": env, "version": pin.version, "quarantine": quarantine}
