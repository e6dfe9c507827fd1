"""The `status` read use case: where the store stands against git HEAD.

It reads the sync cursor (last applied and last attempted commit), the commits not yet
applied, the rejected commits that still block, the pins, and the drift of every pair
from what HEAD resolves to (``services.drift``). Git is optional: without a repository
(or HEAD) the report says what the store knows and marks drift as unknown.

A rejected commit blocks only while it is HEAD or on the way to it: one that an applied
commit has superseded is history (the audit log keeps it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from configctl.core.ports import GitReader, StatusReader
from configctl.core.records import CommitInfo, CommitRecord, PinRecord, VersionHead, VersionRecord
from configctl.errors import ConfigctlError
from configctl.services import drift as drift_service
from configctl.services.resolution import strip_prefix

__all__ = ["PinStatus", "StatusReport", "status"]

GitOpener = Callable[[], tuple[GitReader, str]]
"""Opens the repository holding the config folder: the reader and the folder's prefix.
May raise ``ConfigctlError`` (no repository): status then reports without git."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PinStatus:
    pin: PinRecord
    served_version: int | None
    drift_keys: tuple[str, ...] | None
    """Key names (never values) where the served snapshot differs from HEAD's; None when
    HEAD is unknown."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReport:
    head: str | None
    """None without a repository, without commits, or when git could not be read."""
    last_applied: object
    last_attempted: object
    pending: tuple[CommitInfo, ...]
    """Commits (that change config) between the last applied one and HEAD, oldest first."""
    rejected: tuple[CommitRecord, ...]
    """The rejected commits that block (all of them when HEAD is unknown)."""
    pins: tuple[PinStatus, ...]
    heads: Mapping[tuple[str, str], VersionHead]
    history_rewritten: bool
    """The last applied commit is no longer in HEAD's history (a force push)."""
    drift: tuple[drift_service.Drift, ...]
    drift_known: bool
    """False when HEAD could not be resolved: drift is then unknown, not absent."""

    @property
    def in_sync(self) -> bool:
        return not self.pending and not self.drift and not self.rejected


@dataclass(slots=True)
class _GitSide:
    head: str | None = None
    pending: tuple[CommitInfo, ...] = ()
    between: frozenset[str] = frozenset()
    rewritten: bool = False
    in_git: dict[tuple[str, str], dict[str, Any]] | None = None


def _read_git(open_git: GitOpener, last_applied: object) -> _GitSide:
    """HEAD, the commits on the way to it and what it resolves to, as far as git answers."""
    side = _GitSide()
    try:
        git, prefix = open_git()
        side.head = head = git.head()
        if head is not None and head != last_applied:
            if isinstance(last_applied, str):
                try:
                    side.rewritten = not git.is_ancestor(last_applied, head)
                except ConfigctlError:  # the commit is gone from the repository
                    side.rewritten = True
            base = None if side.rewritten or not isinstance(last_applied, str) else last_applied
            if side.rewritten:
                side.pending = (git.commit_info(head),)
                side.between = frozenset({head})
            else:
                side.pending = tuple(git.commits_between(base, head, prefix=prefix))
                side.between = frozenset(c.sha for c in git.commits_between(base, head))
        if head is not None:
            side.in_git = drift_service.resolve_all(strip_prefix(git.read_tree(head), prefix))
    except ConfigctlError:
        side.head = None
    return side


def status(store: StatusReader, open_git: GitOpener) -> StatusReport:
    """The store's state against git HEAD (see the module docstring)."""
    last_applied = store.sync_state("last_applied_commit")
    last_attempted = store.sync_state("last_attempted_commit")
    rejected = store.commits(status="rejected")
    pins = store.pins()
    heads = store.latest_heads()
    quarantines = store.quarantines()
    side = _read_git(open_git, last_applied)
    head = side.head
    blocking = [c for c in rejected if c.info.sha in side.between] if head is not None else rejected
    head_reason: str | None = None
    if head is not None and head != last_applied:
        head_rejected = any(c.info.sha == head for c in rejected)
        head_reason = "rejected" if head_rejected else "force-push" if side.rewritten else "pending"
    latest: dict[tuple[str, str], VersionRecord | None] = {}

    def load(app: str, env: str) -> Mapping[str, Any] | None:
        record = store.get_version(app, env)
        latest[(app, env)] = record
        return record.values if record is not None else None

    drifts: list[drift_service.Drift] = []
    if side.in_git is not None:
        quarantined = set(quarantines)
        drifts = drift_service.find_drift(
            served=heads, in_git=side.in_git, load_served=load, pinned={(p.app, p.env) for p in pins},
            quarantined=quarantined, head_reason=head_reason,
        )  # fmt: skip
    for p in pins:
        if (p.app, p.env) not in latest:
            latest[(p.app, p.env)] = store.get_version(p.app, p.env)
    drift_keys_of = {(d.app, d.env): d.keys for d in drifts}
    pin_states = []
    for p in pins:
        served = latest.get((p.app, p.env))
        keys = drift_keys_of.get((p.app, p.env), ()) if side.in_git is not None else None
        pin_states.append(
            PinStatus(pin=p, served_version=served.number if served else None, drift_keys=keys)
        )
    return StatusReport(
        head=head,
        last_applied=last_applied,
        last_attempted=last_attempted,
        pending=side.pending,
        rejected=tuple(blocking),
        pins=tuple(pin_states),
        heads=heads,
        history_rewritten=side.rewritten,
        drift=tuple(drifts),
        drift_known=side.in_git is not None,
    )
