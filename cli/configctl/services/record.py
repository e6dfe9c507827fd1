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
changes the pair) are kept in sync state under ``quarantine:<app>:<env>`` until the store
has a table for them; :func:`get_quarantine`, :func:`set_quarantine` and
:func:`lift_quarantine` are the only code that knows the encoding.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from configctl.core.diff import KeyDiff
from configctl.core.ports import IdFactory, UnitOfWork
from configctl.core.records import (
    ChangeKind,
    CommitInfo,
    CommitStatus,
    JsonObject,
    JsonValue,
    KeyChange,
    Notification,
    QuarantineRecord,
    VersionReason,
)

__all__ = [
    "LAST_APPLIED",
    "LAST_ATTEMPTED",
    "QUARANTINE_PREFIX",
    "NewVersion",
    "announce",
    "get_quarantine",
    "iso_time",
    "key_changes",
    "lift_quarantine",
    "new_event_id",
    "notification",
    "record_version",
    "reject_commit",
    "set_quarantine",
    "stored_quarantine",
]

QUARANTINE_PREFIX = "quarantine:"
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
    return [KeyChange(key=d.key, change=ChangeKind(d.change), old=d.old, new=d.new) for d in diffs]


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
    """Write ``new``, announce it and audit it as ``action``; return the message.

    The audit row names ``audit_commit`` when given (a rollback names the commit it
    quarantines), else the version's commit. ``control`` is the (rollout, action) of a
    rollout control, which its message names.
    """
    number = uow.add_version(
        app=new.app,
        env=new.env,
        values=new.values,
        checksum=new.checksum,
        commit_sha=new.commit_sha,
        reason=new.reason,
        actor=actor,
        changes=new.changes,
        rolled_back_to=new.rolled_back_to,
        rollouts=new.rollouts,
    )
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
    if control is not None:
        message["rollout"], message["action"] = control
    announce(uow, message)
    uow.add_audit(
        action=action,
        actor=actor,
        host=host,
        app=new.app,
        env=new.env,
        commit_sha=new.commit_sha if audit_commit is None else audit_commit,
        version=number,
        details=details,
    )
    return message


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


def _quarantine_name(app: str, env: str) -> str:
    return f"{QUARANTINE_PREFIX}{app}:{env}"


def get_quarantine(uow: UnitOfWork, app: str, env: str) -> QuarantineRecord | None:
    """The quarantine of (app, env), or None."""
    raw = uow.get_sync_state(_quarantine_name(app, env))
    if not isinstance(raw, dict) or not raw:
        return None
    commit, digest, version = raw.get("commit"), raw.get("checksum"), raw.get("version")
    return QuarantineRecord(
        app=app,
        env=env,
        commit=commit if isinstance(commit, str) else None,
        checksum=digest if isinstance(digest, str) else "",
        version=version if isinstance(version, int) else 0,
    )


def set_quarantine(uow: UnitOfWork, record: QuarantineRecord) -> None:
    """Quarantine ``record.checksum`` for its pair (replaces an earlier quarantine)."""
    uow.set_sync_state(
        _quarantine_name(record.app, record.env),
        {"commit": record.commit, "checksum": record.checksum, "version": record.version},
    )


def lift_quarantine(uow: UnitOfWork, app: str, env: str) -> None:
    """Forget the quarantine of (app, env): a newer commit changed the pair."""
    uow.set_sync_state(_quarantine_name(app, env), None)


def stored_quarantine(uow: UnitOfWork, app: str, env: str) -> JsonValue:
    """The quarantine of (app, env) in its stored JSON form, as ``release`` reports it."""
    return uow.get_sync_state(_quarantine_name(app, env))
