"""The one way a use case writes what happened: versions, rejections, notifications.

Apply, rollback, the rollout controls and ticks, and the reconciler all end in the same
few writes, inside the caller's unit of work:

- :func:`record_version`: the version with its key changes, the outbox message that
  announces it, and its audit row. All three or none (one transaction), so a version is
  never served unannounced and a notification never names a version that does not exist;
- :func:`reject_commit`: the commit recorded as rejected, with its audit row and the
  last attempted commit, unless the commit was applied before (a commit once served is
  never reported as rejected);
- :func:`notification` / :func:`announce`: the one builder of the notification message
  (``schemas/v1/notification.schema.json``) and the one way it enters the outbox.

Quarantines (the values of a rolled-back commit, not served again until a newer commit
changes the pair) have a table of their own; :func:`get_quarantine`, :func:`set_quarantine`
and :func:`lift_quarantine` turn its rows into :class:`QuarantineRecord` values.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from configctl.core.diff import KeyDiff
from configctl.core.ports import IdFactory, UnitOfWork
from configctl.core.records import (
    CommitInfo,
    CommitStatus,
    JsonObject,
    JsonValue,
    KeyChange,
    Notification,
    QuarantineRecord,
    VersionReason,
)
from configctl.core.records import NewVersion as StoreVersion

__all__ = [
    "LAST_APPLIED",
    "LAST_ATTEMPTED",
    "NewVersion",
    "Recorded",
    "all_quarantines",
    "announce",
    "get_quarantine",
    "iso_time",
    "key_changes",
    "lift_quarantine",
    "new_event_id",
    "notification",
    "record_version",
    "record_versions",
    "reject_commit",
    "set_quarantine",
    "stored_quarantine",
]

LAST_APPLIED = "last_applied_commit"
LAST_ATTEMPTED = "last_attempted_commit"


def new_event_id() -> str:
    """A fresh event id: a UUID 4, the consumers' de-duplication key."""
    return str(uuid.uuid4())


def iso_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as the notification schema's examples write it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def key_changes(diffs: Iterable[KeyDiff]) -> list[KeyChange]:
    """The store's key changes for the (already redacted) diffs of a version."""
    return [KeyChange(key=d.key, change=d.change, old=d.old, new=d.new) for d in diffs]


def notification(
    *,
    app: str,
    env: str,
    version: int,
    previous: int | None,
    commit: str | None,
    keys: Sequence[str],
    reason: str,
    now: datetime,
    new_id: IdFactory = new_event_id,
) -> Notification:
    """The change notification of (app, env) at ``version`` (key names only, never values)."""
    return {
        "id": new_id(),
        "app": app,
        "env": env,
        "version": version,
        "previous_version": previous,
        "commit": commit,
        "changed_keys": list(keys),
        "time": iso_time(now),
        "reason": reason,
    }


def announce(uow: UnitOfWork, message: Notification) -> None:
    """Queue ``message`` in the outbox, routed to ``<app>.<env>``."""
    uow.add_outbox(
        event_id=message["id"], routing_key=f"{message['app']}.{message['env']}", payload=message
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class NewVersion:
    """A version to write: the snapshot, where it came from and what it changed."""

    app: str
    env: str
    values: JsonObject
    checksum: str
    commit_sha: str | None
    reason: VersionReason
    previous: int | None
    """The number of the version it replaces (None for the first)."""
    changes: Sequence[KeyChange]
    changed_keys: Sequence[str]
    """What the notification names: the changed keys plus those whose rollouts changed."""
    rollouts: Sequence[JsonObject] = ()
    rolled_back_to: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """One version to record with :func:`record_versions`: what to write and how to audit it."""

    new: NewVersion
    action: str
    details: JsonObject
    audit_commit: str | None = None
    """The commit the audit row names (a rollback names the one it quarantines); by
    default the version's commit."""
    control: tuple[str, str] | None = None
    """The (rollout, action) of a rollout control, which its message names."""


def record_versions(
    uow: UnitOfWork,
    items: Sequence[Recorded],
    *,
    actor: str,
    host: str,
    now: datetime,
    new_id: IdFactory = new_event_id,
) -> list[Notification]:
    """Write every version of ``items`` in one batch, announce each and audit each; return
    the messages in order. The statements do not grow with the number of versions (the
    store batches the versions, the outbox and the audit rows)."""
    if not items:
        return []
    numbers = uow.add_versions(
        [
            StoreVersion(
                app=i.new.app,
                env=i.new.env,
                values=i.new.values,
                checksum=i.new.checksum,
                commit_sha=i.new.commit_sha,
                reason=i.new.reason,
                actor=actor,
                changes=i.new.changes,
                rolled_back_to=i.new.rolled_back_to,
                rollouts=i.new.rollouts,
            )
            for i in items
        ]
    )
    messages: list[Notification] = []
    for item, number in zip(items, numbers, strict=True):
        new = item.new
        message = notification(
            app=new.app,
            env=new.env,
            version=number,
            previous=new.previous,
            commit=new.commit_sha,
            keys=new.changed_keys,
            reason=new.reason,
            now=now,
            new_id=new_id,
        )
        if item.control is not None:
            message["rollout"], message["action"] = item.control
        announce(uow, message)
        uow.add_audit(
            action=item.action,
            actor=actor,
            host=host,
            app=new.app,
            env=new.env,
            commit_sha=new.commit_sha if item.audit_commit is None else item.audit_commit,
            version=number,
            details=item.details,
        )
        messages.append(message)
    return messages


def record_version(
    uow: UnitOfWork,
    new: NewVersion,
    *,
    actor: str,
    host: str,
    now: datetime,
    action: str,
    details: JsonObject,
    audit_commit: str | None = None,
    control: tuple[str, str] | None = None,
    new_id: IdFactory = new_event_id,
) -> Notification:
    """Write ``new``, announce it and audit it as ``action``; return the message (one
    version: :func:`record_versions` of one item)."""
    item = Recorded(new=new, action=action, details=details, audit_commit=audit_commit, control=control)
    return record_versions(uow, [item], actor=actor, host=host, now=now, new_id=new_id)[0]


def reject_commit(
    uow: UnitOfWork,
    commit: CommitInfo,
    *,
    reason: str,
    details: JsonObject,
    actor: str,
    host: str,
) -> bool:
    """Record ``commit`` as rejected (``reason``) with its audit row; False, and nothing
    written, when the commit was applied before."""
    if uow.commit_status(commit.sha) == CommitStatus.APPLIED:
        return False
    uow.record_commit(commit, CommitStatus.REJECTED, reason)
    uow.add_audit(
        action="commit.rejected", actor=actor, host=host, commit_sha=commit.sha, details=details
    )
    uow.set_sync_state(LAST_ATTEMPTED, commit.sha)
    return True


# --------------------------------------------------------------------------- quarantine


def _record(app: str, env: str, raw: Mapping[str, object] | None) -> QuarantineRecord | None:
    if not raw:
        return None
    commit, digest, version = raw.get("commit"), raw.get("checksum"), raw.get("version")
    return QuarantineRecord(
        app=app,
        env=env,
        commit=commit if isinstance(commit, str) else None,
        checksum=digest if isinstance(digest, str) else "",
        version=version if isinstance(version, int) else 0,
    )


def get_quarantine(uow: UnitOfWork, app: str, env: str) -> QuarantineRecord | None:
    """The quarantine of (app, env), or None."""
    return _record(app, env, uow.get_quarantine(app, env))


def all_quarantines(uow: UnitOfWork) -> dict[tuple[str, str], QuarantineRecord]:
    """Every quarantine, by (app, env), in one read."""
    out: dict[tuple[str, str], QuarantineRecord] = {}
    for (app, env), raw in uow.quarantines().items():
        record = _record(app, env, raw)
        if record is not None:
            out[(app, env)] = record
    return out


def set_quarantine(uow: UnitOfWork, record: QuarantineRecord) -> None:
    """Quarantine ``record.checksum`` for its pair (replaces an earlier quarantine)."""
    uow.quarantine(record.app, record.env, record.commit, record.checksum, record.version)


def lift_quarantine(uow: UnitOfWork, app: str, env: str) -> None:
    """Forget the quarantine of (app, env): a newer commit changed the pair."""
    uow.lift_quarantine(app, env)


def stored_quarantine(uow: UnitOfWork, app: str, env: str) -> JsonValue:
    """The quarantine of (app, env) in its stored JSON form, as ``release`` reports it."""
    raw = uow.get_quarantine(app, env)
    return dict(raw) if raw else None
