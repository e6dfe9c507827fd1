"""`apply` as a use case: one commit becomes versions, key changes, audit rows and outbox
messages, in one transaction.

Shared by `configctl apply` and the reconciler. The order of the steps matters:

1. evaluate the snapshot (cached per blob and per pair: work follows the change);
2. open the unit of work: it serialises writers and, for the reconciler, checks the
   fencing epoch, so two appliers never write duplicate or skipped version numbers;
3. an invalid tree writes only a rejected-commit record and its audit row;
4. each (app, env) whose resolved checksum differs from the version in service gets a new
   version, unless it is pinned by a rollback or its values are those of a quarantined
   commit (rolled back and not yet superseded in git);
5. the commit is recorded as applied. Applying the same commit twice writes nothing.

Secret values never leave through key changes, audit rows or messages: the store keeps the
real snapshot (it must serve it), everything else is redacted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from configctl.core import diff as diff_mod
from configctl.core.model import FileEntry, Report
from configctl.core.records import CommitInfo, KeyChange, VersionRecord, checksum
from configctl.services.inspect import Evaluator, secret_keys

QUARANTINE_PREFIX = "quarantine:"


class UnitOfWork(Protocol):
    def latest_versions(self) -> dict[tuple[str, str], VersionRecord]: ...
    def commit_status(self, sha: str) -> str | None: ...
    def record_commit(self, info: CommitInfo, status: str, reason: str | None) -> None: ...
    def add_version(
        self,
        *,
        app: str,
        env: str,
        values: Mapping[str, Any],
        checksum: str,
        commit_sha: str | None,
        reason: str,
        actor: str,
        changes: Sequence[KeyChange],
        rolled_back_to: int | None = None,
    ) -> int: ...
    def add_audit(
        self,
        *,
        action: str,
        actor: str,
        host: str,
        app: str | None = None,
        env: str | None = None,
        commit_sha: str | None = None,
        version: int | None = None,
        details: Mapping[str, Any],
    ) -> None: ...
    def add_outbox(self, *, event_id: str, routing_key: str, payload: Mapping[str, Any]) -> None: ...
    def get_pins(self) -> Any: ...
    def set_sync_state(self, name: str, value: Any) -> None: ...
    def get_sync_state(self, name: str) -> Any: ...


class VersionStore(Protocol):
    def unit_of_work(self, fence: tuple[str, int] | None = None) -> AbstractContextManager[Any]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PairOutcome:
    app: str
    env: str
    version: int | None
    previous: int | None
    added: int
    changed: int
    removed: int
    changed_keys: tuple[str, ...]
    skipped: str | None = None
    """Why a changed pair got no version: "pinned" or "quarantined"."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyResult:
    commit: str
    status: str  # "applied" | "already-applied" | "rejected" | "planned"
    report: Report
    pairs: tuple[PairOutcome, ...] = ()
    new_versions: int = 0
    notifications: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def written(self) -> tuple[PairOutcome, ...]:
        return tuple(p for p in self.pairs if p.version is not None)


def _message(
    *, app: str, env: str, version: int, previous: int | None, commit: str | None, keys: Sequence[str], reason: str, now: datetime
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "app": app,
        "env": env,
        "version": version,
        "previous_version": previous,
        "commit": commit,
        "changed_keys": list(keys),
        "time": now.isoformat(),
        "reason": reason,
    }


def _rejection_reason(report: Report) -> str:
    lines = [f"{f.file}:{f.line}:{f.column}: [{f.rule}] {f.message}" for f in report.errors[:20]]
    more = len(report.errors) - 20
    if more > 0:
        lines.append(f"… and {more} more")
    return "\n".join(lines)


def plan_pairs(
    values: Mapping[tuple[str, str], dict[str, Any]],
    checksums: Mapping[tuple[str, str], str],
    latest: Mapping[tuple[str, str], VersionRecord],
) -> Iterator[tuple[str, str]]:
    """The pairs whose resolved values differ from the version in service (or vanished)."""
    for pair in sorted(values.keys() | latest.keys()):
        prev = latest.get(pair)
        if pair not in values:
            if prev is not None and prev.values:
                yield pair
            continue
        if prev is None or prev.checksum != checksums[pair]:
            yield pair


def apply_snapshot(
    *,
    store: VersionStore,
    files: Mapping[str, FileEntry],
    commit: CommitInfo,
    evaluator: Evaluator,
    actor: str,
    host: str,
    now: Callable[[], datetime],
    fence: tuple[str, int] | None = None,
    dry_run: bool = False,
    only: tuple[str, str] | None = None,
) -> ApplyResult:
    """Apply one commit's tree (see the module docstring for the steps)."""
    checked = evaluator.check(files)
    if not checked.report.valid:
        if not dry_run:
            with store.unit_of_work(fence=fence) as uow:
                if uow.commit_status(commit.sha) != "applied":
                    uow.record_commit(commit, "rejected", _rejection_reason(checked.report))
                    uow.add_audit(
                        action="commit.rejected",
                        actor=actor,
                        host=host,
                        commit_sha=commit.sha,
                        details={
                            "errors": len(checked.report.errors),
                            "first_error": _rejection_reason(Report(errors=checked.report.errors[:1])),
                            "author": commit.author_email,
                            "message": commit.message.splitlines()[0] if commit.message else "",
                        },
                    )
                    uow.set_sync_state("last_attempted_commit", commit.sha)
        return ApplyResult(commit=commit.sha, status="rejected", report=checked.report)

    # Checksums are cached with each pair's evaluation, so unchanged pairs cost nothing.
    checksums: dict[tuple[str, str], str] = {}
    for pair, result in checked.pairs.items():
        if result.checksum is None:
            result.checksum = checksum(result.values)
        checksums[pair] = result.checksum
    secrets = secret_keys(checked.tree)

    with store.unit_of_work(fence=None if dry_run else fence) as uow:
        previous_status = uow.commit_status(commit.sha)
        latest = uow.latest_versions()
        pins = {(p.app, p.env) for p in uow.get_pins()}
        outcomes: list[PairOutcome] = []
        messages: list[dict[str, Any]] = []
        for app, env in plan_pairs(checked.values, checksums, latest):
            if only is not None and (app, env) != only:
                continue
            prev = latest.get((app, env))
            values = checked.values.get((app, env), {})
            digest = checksums.get((app, env)) or checksum(values)
            keys = diff_mod.diff_values(prev.values if prev else None, values, secrets=secrets.get(app, ()))
            counts = {c: sum(1 for k in keys if k.change == c) for c in ("added", "changed", "removed")}
            skipped: str | None = None
            if (app, env) in pins:
                skipped = "pinned"
            else:
                quarantine = uow.get_sync_state(f"{QUARANTINE_PREFIX}{app}:{env}")
                if quarantine:
                    if quarantine.get("checksum") == digest:
                        skipped = "quarantined"
                    elif not dry_run:
                        # A newer commit changed this pair: the quarantine is superseded.
                        uow.set_sync_state(f"{QUARANTINE_PREFIX}{app}:{env}", None)
            version: int | None = None
            changed_keys = tuple(k.key for k in keys)
            if skipped is None and not dry_run:
                version = uow.add_version(
                    app=app,
                    env=env,
                    values=values,
                    checksum=digest,
                    commit_sha=commit.sha,
                    reason="commit",
                    actor=actor,
                    changes=[KeyChange(key=k.key, change=str(k.change), old=k.old, new=k.new) for k in keys],
                )
                message = _message(
                    app=app,
                    env=env,
                    version=version,
                    previous=prev.number if prev else None,
                    commit=commit.sha,
                    keys=changed_keys,
                    reason="commit",
                    now=now(),
                )
                uow.add_outbox(event_id=message["id"], routing_key=f"{app}.{env}", payload=message)
                uow.add_audit(
                    action="version.created",
                    actor=actor,
                    host=host,
                    app=app,
                    env=env,
                    commit_sha=commit.sha,
                    version=version,
                    details={"changed_keys": list(changed_keys), "previous_version": prev.number if prev else None, **counts},
                )
                messages.append(message)
            outcomes.append(
                PairOutcome(
                    app=app,
                    env=env,
                    version=version,
                    previous=prev.number if prev else None,
                    changed_keys=changed_keys,
                    skipped=skipped,
                    **counts,
                )
            )
        if dry_run:
            return ApplyResult(commit=commit.sha, status="planned", report=checked.report, pairs=tuple(outcomes))
        if previous_status != "applied":
            uow.record_commit(commit, "applied", None)
            uow.add_audit(
                action="commit.applied",
                actor=actor,
                host=host,
                commit_sha=commit.sha,
                details={
                    "author": commit.author_email,
                    "committer": commit.committer_email,
                    "signature": commit.signature_status,
                    "message": commit.message.splitlines()[0] if commit.message else "",
                    "versions": len(messages),
                    "changed_keys": sorted({k for m in messages for k in m["changed_keys"]}),
                },
            )
        uow.set_sync_state("last_applied_commit", commit.sha)
        uow.set_sync_state("last_attempted_commit", commit.sha)
    status = "already-applied" if previous_status == "applied" and not messages else "applied"
    return ApplyResult(
        commit=commit.sha,
        status=status,
        report=checked.report,
        pairs=tuple(outcomes),
        new_versions=len(messages),
        notifications=tuple(messages),
    )
