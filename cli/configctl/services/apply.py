"""`apply` as a use case: one commit becomes versions, key changes, audit rows and outbox
messages, in one transaction.

Shared by `configctl apply` and the reconciler. The order of the steps matters:

1. evaluate the snapshot (cached per blob and per pair; given the tree of the last
   applied commit, only the apps whose values files changed: work follows the change);
2. open the unit of work: it serialises writers and, for the reconciler, checks the
   fencing epoch, so two appliers never write duplicate or skipped version numbers;
3. an invalid tree writes only a rejected-commit record and its audit row;
4. each (app, env) whose resolved checksum differs from the version in service gets a new
   version, unless it is pinned by a rollback or its values are those of a quarantined
   commit (rolled back and not yet superseded in git);
5. each new version records the commit that last changed its pair (see
   ``services.attribution``; given no change log, the applied commit), and such a commit,
   not applied on its own, is recorded as ``superseded``;
6. the commit is recorded as applied. Applying the same commit twice writes nothing.

Secret values never leave through key changes, audit rows or messages: the store keeps the
real snapshot (it must serve it), everything else is redacted.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from configctl.core import diff as diff_mod
from configctl.core.model import FileEntry, Report
from configctl.core.records import (
    CommitInfo,
    KeyChange,
    NewVersion,
    VersionHead,
    VersionRecord,
    checksum,
)
from configctl.services import rollouts as rollouts_service
from configctl.services.attribution import ChangeLog, attribute
from configctl.services.resolution import Checked, Evaluator, secret_keys


class UnitOfWork(Protocol):
    def latest_versions(self) -> dict[tuple[str, str], VersionRecord]: ...
    def latest_heads(
        self, apps: Collection[str] | None = None, *, with_rollbacks: bool = False
    ) -> dict[tuple[str, str], VersionHead]: ...
    def get_version(self, app: str, env: str, number: int | None = None) -> VersionRecord | None: ...
    def get_versions(self, wanted: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str], VersionRecord]: ...
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
        rollouts: Sequence[Mapping[str, Any]] = (),
    ) -> int: ...
    def add_versions(self, versions: Sequence[NewVersion]) -> list[int]: ...
    def rollout_states(
        self, app: str | None = None, env: str | None = None
    ) -> dict[tuple[str, str], dict[str, dict[str, Any]]]: ...
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
    def quarantine(self, app: str, env: str, commit: str | None, checksum: str, version: int) -> None: ...
    def get_quarantine(self, app: str, env: str) -> dict[str, Any] | None: ...
    def lift_quarantine(self, app: str, env: str) -> bool: ...
    def quarantines(self) -> dict[tuple[str, str], dict[str, Any]]: ...


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
    latest: Mapping[tuple[str, str], VersionHead | VersionRecord],
) -> Iterator[tuple[str, str]]:
    """The pairs whose resolved values differ from the version in service (or vanished)."""
    empty = checksum({})
    for pair in sorted(values.keys() | latest.keys()):
        prev = latest.get(pair)
        if pair not in values:
            if prev is not None and prev.checksum != empty:
                yield pair
            continue
        if prev is None or prev.checksum != checksums[pair]:
            yield pair


@dataclass(frozen=True, slots=True, kw_only=True)
class Baseline:
    """The tree of the commit the store last applied (``last_applied_commit``).

    Given one, `apply_snapshot` evaluates only the apps whose values files differ from
    it: every other app's files are the very bytes of a commit that was valid and applied,
    so their resolved values are those already in service. Work follows the change.
    """

    commit: str
    files: Mapping[str, FileEntry]


def _values_file_app(path: str) -> str | None:
    """The app of ``apps/<app>/values.yaml`` or ``apps/<app>/envs/<env>.yaml``, else None."""
    parts = path.split("/")
    if parts[0] != "apps":
        return None
    if len(parts) == 3 and parts[2] == "values.yaml":
        return parts[1]
    if len(parts) == 4 and parts[2] == "envs" and parts[3].endswith(".yaml"):
        return parts[1]
    return None


def changed_apps(base: Mapping[str, FileEntry], head: Mapping[str, FileEntry]) -> set[str] | None:
    """The apps whose values files are all that differs between two snapshots.

    None when anything else differs (``configctl.yaml``, ``global.yaml``, an environment
    layer, an ``app.yaml``, a schema, an app folder appearing or going, any other file):
    such a change may reach every app, so the whole tree is evaluated.
    """
    out: set[str] = set()
    for path in base.keys() | head.keys():
        before, after = base.get(path), head.get(path)
        if before == after:
            continue
        app = _values_file_app(path)
        if app is None or f"apps/{app}/app.yaml" not in base or f"apps/{app}/app.yaml" not in head:
            return None
        out.add(app)
    return out


def _scoped(files: Mapping[str, FileEntry], apps: set[str]) -> dict[str, FileEntry]:
    """The snapshot without the folders of apps outside ``apps`` (shared files all kept)."""
    return {p: e for p, e in files.items() if not p.startswith("apps/") or p.split("/", 2)[1] in apps}


def _evaluate(evaluator: Evaluator, files: Mapping[str, FileEntry], scope: set[str] | None) -> tuple[Checked, set[str] | None]:
    """Evaluate ``scope``'s apps (all when None); an invalid scoped tree is judged whole.

    Whether a commit is rejected is always decided, and reported, on the whole tree.
    """
    if scope is not None:
        checked = evaluator.check(_scoped(files, scope))
        if checked.report.valid:
            return checked, scope
    return evaluator.check(files), None


def _reject(uow: Any, *, commit: CommitInfo, report: Report, actor: str, host: str) -> None:
    if uow.commit_status(commit.sha) != "applied":
        uow.record_commit(commit, "rejected", _rejection_reason(report))
        uow.add_audit(
            action="commit.rejected",
            actor=actor,
            host=host,
            commit_sha=commit.sha,
            details={
                "errors": len(report.errors),
                "first_error": _rejection_reason(Report(errors=report.errors[:1])),
                "author": commit.author_email,
                "message": commit.message.splitlines()[0] if commit.message else "",
            },
        )
        uow.set_sync_state("last_attempted_commit", commit.sha)


def _checksums(checked: Checked) -> dict[tuple[str, str], str]:
    # Checksums are cached with each pair's evaluation, so unchanged pairs cost nothing.
    out: dict[tuple[str, str], str] = {}
    for pair, result in checked.pairs.items():
        if result.checksum is None:
            result.checksum = checksum(result.values)
        out[pair] = result.checksum
    return out


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
    baseline: Baseline | None = None,
    changelog: ChangeLog | None = None,
    cursor: str | None = None,
) -> ApplyResult:
    """Apply one commit's tree (see the module docstring for the steps).

    With ``cursor`` the sync-state cursor of that name is set to this commit in the same
    unit of work (applied or rejected; not on a dry run), so the commit and the cursor
    past it commit together.

    With ``baseline`` (the tree of the store's last applied commit) only the apps whose
    values files changed since are evaluated; see :class:`Baseline`. With ``changelog``
    each version records the commit that changed its pair (``services.attribution``).
    """
    scope = changed_apps(baseline.files, files) if baseline is not None else None
    checked, scope = _evaluate(evaluator, files, scope)
    if not checked.report.valid:
        if not dry_run:
            with store.unit_of_work(fence=fence) as uow:
                _reject(uow, commit=commit, report=checked.report, actor=actor, host=host)
                if cursor is not None:
                    uow.set_sync_state(cursor, commit.sha)
        return ApplyResult(commit=commit.sha, status="rejected", report=checked.report)

    checksums = _checksums(checked)

    with store.unit_of_work(fence=None if dry_run else fence) as uow:
        previous_status = uow.commit_status(commit.sha)
        # Heads only (number, checksum): snapshots are read just for the pairs that change,
        # and with a baseline only the heads of the apps in scope.
        baseline_holds = (
            scope is not None
            and baseline is not None
            and uow.get_sync_state("last_applied_commit") == baseline.commit
        )
        latest = uow.latest_heads(scope, with_rollbacks=True) if baseline_holds and scope is not None else uow.latest_heads()
        if scope is not None and baseline is not None:
            # Inside the writer lock: is the baseline still what the store serves?
            widened: set[str] | None = scope
            if not baseline_holds:
                widened = None  # another apply moved the store on: compare every pair
            else:
                # A pair held by a rollback (pinned, or quarantined after release) does not
                # serve the baseline's values; it must be looked at whatever changed.
                widened = scope | {app for (app, _env), v in latest.items() if v.reason != "commit"}
            if widened != scope:
                latest = uow.latest_heads(widened) if widened is not None else uow.latest_heads()
                checked, scope = _evaluate(evaluator, files, widened)
                if not checked.report.valid:  # only if the baseline was not valid after all
                    if not dry_run:
                        _reject(uow, commit=commit, report=checked.report, actor=actor, host=host)
                        if cursor is not None:
                            uow.set_sync_state(cursor, commit.sha)
                    return ApplyResult(commit=commit.sha, status="rejected", report=checked.report)
                checksums = _checksums(checked)
        in_scope = latest if scope is None else {pair: v for pair, v in latest.items() if pair[0] in scope}
        # Rollouts (runtime state folded in) are part of a version and of its checksum.
        pair_rollouts = rollouts_service.pair_rollouts(checked.tree, list(checked.values), uow.rollout_states())
        checksums = rollouts_service.with_rollouts(checksums, checked.values, pair_rollouts)
        pins = {(p.app, p.env) for p in uow.get_pins()}
        outcomes: list[PairOutcome] = []
        messages: list[dict[str, Any]] = []
        plan = [pair for pair in plan_pairs(checked.values, checksums, in_scope) if only is None or pair == only]
        # Secrets of the apps that changed only: work follows the change.
        secrets = secret_keys(checked.tree, apps={app for app, _ in plan})
        origin: dict[tuple[str, str], CommitInfo] = {}
        if not dry_run and any(pair not in pins for pair in plan):
            last_applied = uow.get_sync_state("last_applied_commit")
            parent_applied = last_applied is not None and commit.parents[:1] == (last_applied,)
            in_sync = [
                pair
                for pair in plan
                if parent_applied and (head := latest.get(pair)) is not None and head.reason == "commit"
            ]
            digests = {
                pair: checksums.get(pair) or checksum(checked.values.get(pair, {})) for pair in plan if pair not in pins
            }
            origin = attribute(
                changelog, head=commit, pairs=digests, in_sync_with_parent=in_sync, rollout_states=uow.rollout_states()
            )
        # Reads and writes in batches: the statements of this unit of work do not grow
        # with the number of pairs (previous snapshots in one query, versions in one batch).
        previous = uow.get_versions([(app, env, head.number) for app, env in plan if (head := latest.get((app, env)))])
        quarantines = uow.quarantines() if plan else {}
        written: list[tuple[int, NewVersion, CommitInfo, tuple[str, ...], dict[str, int]]] = []
        for app, env in plan:
            prev = latest.get((app, env))
            prev_record = previous.get((app, env)) if prev is not None else None
            values = checked.values.get((app, env), {})
            digest = checksums.get((app, env)) or checksum(values)
            keys = diff_mod.diff_values(
                prev_record.values if prev_record else None, values, secrets=secrets.get(app, ())
            )
            counts = {c: sum(1 for k in keys if k.change == c) for c in ("added", "changed", "removed")}
            skipped: str | None = None
            if (app, env) in pins:
                skipped = "pinned"
            else:
                quarantine = quarantines.get((app, env))
                if quarantine:
                    if quarantine.get("checksum") == digest:
                        skipped = "quarantined"
                    elif not dry_run:
                        # A newer commit changed this pair: the quarantine is superseded.
                        uow.lift_quarantine(app, env)
            changed_keys = rollouts_service.changed_keys(
                [k.key for k in keys], prev_record.rollouts if prev_record else None, pair_rollouts.get((app, env), ())
            )
            if skipped is None and not dry_run:
                made_by = origin.get((app, env), commit)
                new = NewVersion(
                    app=app,
                    env=env,
                    values=values,
                    checksum=digest,
                    commit_sha=made_by.sha,
                    reason="commit",
                    actor=actor,
                    changes=[KeyChange(key=k.key, change=str(k.change), old=k.old, new=k.new) for k in keys],
                    rollouts=pair_rollouts.get((app, env), ()),
                )
                written.append((len(outcomes), new, made_by, changed_keys, counts))
            outcomes.append(
                PairOutcome(
                    app=app,
                    env=env,
                    version=None,
                    previous=prev.number if prev else None,
                    changed_keys=changed_keys,
                    skipped=skipped,
                    **counts,
                )
            )
        supersede = {made_by.sha: made_by for _, _, made_by, _, _ in written if made_by.sha != commit.sha}
        for made_by in supersede.values():
            if uow.commit_status(made_by.sha) is None:
                # Not applied on its own: a later commit (this one) carried its change.
                uow.record_commit(made_by, "superseded", f"applied as part of {commit.sha}")
        numbers = uow.add_versions([new for _, new, _, _, _ in written])
        for (index, new, made_by, changed_keys, counts), version in zip(written, numbers, strict=True):
            outcome = outcomes[index]
            outcomes[index] = dataclasses.replace(outcome, version=version)
            message = _message(
                app=new.app,
                env=new.env,
                version=version,
                previous=outcome.previous,
                commit=made_by.sha,
                keys=changed_keys,
                reason="commit",
                now=now(),
            )
            uow.add_outbox(event_id=message["id"], routing_key=f"{new.app}.{new.env}", payload=message)
            uow.add_audit(
                action="version.created",
                actor=actor,
                host=host,
                app=new.app,
                env=new.env,
                commit_sha=made_by.sha,
                version=version,
                details={
                    "changed_keys": list(changed_keys),
                    "previous_version": outcome.previous,
                    "applied_commit": commit.sha,
                    **counts,
                },
            )
            messages.append(message)
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
        if cursor is not None:
            uow.set_sync_state(cursor, commit.sha)
    status = "already-applied" if previous_status == "applied" and not messages else "applied"
    return ApplyResult(
        commit=commit.sha,
        status=status,
        report=checked.report,
        pairs=tuple(outcomes),
        new_versions=len(messages),
        notifications=tuple(messages),
    )


FORCE_PUSH = "force-push"
"""Audit action of a history rewrite: the commit applied next does not descend from the
last one (a force push, a reset, `apply --rev` of an older or a side commit)."""


def moves_backwards(*, last: str | None, target: str, is_ancestor: Callable[[str, str], bool]) -> bool:
    """Whether ``target`` is an older commit of the history already applied (``last``'s
    ancestor): serving it means going back on purpose (``--allow-backwards``)."""
    return last is not None and last != target and is_ancestor(target, last)


def history_rewritten(*, last: str | None, target: str, is_ancestor: Callable[[str, str], bool]) -> bool:
    """Whether applying ``target`` after ``last`` leaves the line of history (``last`` is
    not an ancestor of ``target``); ``is_ancestor`` answers False when git cannot tell."""
    return last is not None and last != target and not is_ancestor(last, target)


def record_force_push(
    store: VersionStore,
    *,
    previous: str,
    head: str,
    actor: str,
    host: str,
    fence: tuple[str, int] | None = None,
) -> None:
    """Audit a history rewrite; no version is deleted. One code path for `configctl
    apply` and the reconciler, so both write the same row."""
    with store.unit_of_work(fence=fence) as uow:
        uow.add_audit(
            action=FORCE_PUSH,
            actor=actor,
            host=host,
            commit_sha=head,
            details={"previous_head": previous, "new_head": head},
        )
