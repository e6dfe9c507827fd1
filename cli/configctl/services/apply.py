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

This module is the writer: it reads what step 4 needs inside the unit of work, lets the
pure planner (``core.plan``) decide every pair, and carries the plan out through
``services.record`` (the one ``record_version`` and ``reject_commit`` of every use case).
A dry run stops at the plan.

Secret values never leave through key changes, audit rows or messages: the store keeps the
real snapshot (it must serve it), everything else is redacted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from configctl.core import plan as plan_mod
from configctl.core.gcpause import collection_paused
from configctl.core.model import FileEntry, Report
from configctl.core.ports import ChangeLog, Fence, ReadAhead, UnitOfWork, VersionStore
from configctl.core.records import (
    CommitInfo,
    CommitStatus,
    Notification,
    PairKey,
    QuarantineRecord,
    VersionHead,
    VersionReason,
    VersionRecord,
    checksum,
)
from configctl.errors import StoreMovedOn
from configctl.services import rollouts as rollouts_service
from configctl.services.attribution import attribute
from configctl.services.record import (
    LAST_APPLIED,
    LAST_ATTEMPTED,
    NewVersion,
    Recorded,
    all_quarantines,
    lift_quarantine,
    record_versions,
    reject_commit,
)
from configctl.services.resolution import Checked, Evaluator, secret_keys

__all__ = [
    "FORCE_PUSH",
    "ApplyResult",
    "Baseline",
    "PairOutcome",
    "apply_snapshot",
    "history_rewritten",
    "moves_backwards",
    "record_force_push",
]


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
    skipped: plan_mod.SkipReason | None = None
    """Why a changed pair got no version: "pinned" or "quarantined"."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyResult:
    commit: str
    status: str  # "applied" | "already-applied" | "rejected" | "planned"
    report: Report
    pairs: tuple[PairOutcome, ...] = ()
    new_versions: int = 0
    notifications: tuple[Notification, ...] = field(default_factory=tuple)
    versions: tuple[VersionRecord, ...] = ()
    """The versions written, as the store now serves them (so a cache can be warmed
    without reading them back)."""
    baseline: Baseline | None = None
    """This commit's tree, once applied, as the next apply's :class:`Baseline` (with the
    file index the next scoped apply finds its apps' files with)."""

    @property
    def written(self) -> tuple[PairOutcome, ...]:
        return tuple(p for p in self.pairs if p.version is not None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Baseline:
    """The tree of the commit the store last applied (``last_applied_commit``).

    Given one, `apply_snapshot` evaluates only the apps whose values files differ from
    it: every other app's files are the very bytes of a commit that was valid and applied,
    so their resolved values are those already in service. Work follows the change.
    """

    commit: str
    files: Mapping[str, FileEntry]
    index: plan_mod.FileIndex | None = None
    """The paths of ``files`` by app (``core.plan.FileIndex``), when known: the next
    apply's index then follows the paths its commit changed, no walk over every path."""


def _evaluate(
    evaluator: Evaluator,
    files: Mapping[str, FileEntry],
    scope: set[str] | None,
    index: plan_mod.FileIndex | None = None,
) -> tuple[Checked, set[str] | None]:
    """Evaluate ``scope``'s apps (all when None); an invalid scoped tree is judged whole.
    ``index``: the file index of ``files``, to find the apps' files with.

    Whether a commit is rejected is always decided, and reported, on the whole tree.
    """
    if scope is not None:
        checked = evaluator.check(plan_mod.scoped(files, scope, index), partial=True)
        if checked.report.valid:
            return checked, scope
    return evaluator.check(files), None


def _reject(
    uow: UnitOfWork, *, commit: CommitInfo, report: Report, actor: str, host: str, cursor: str | None
) -> None:
    reject_commit(
        uow,
        commit,
        reason=plan_mod.rejection_reason(report),
        details=plan_mod.rejection_details(report, commit),
        actor=actor,
        host=host,
    )
    if cursor is not None:
        uow.set_sync_state(cursor, commit.sha)


def _checksums(checked: Checked) -> dict[PairKey, str]:
    # Checksums are cached with each pair's evaluation, so unchanged pairs cost nothing.
    out: dict[PairKey, str] = {}
    for pair, result in checked.pairs.items():
        if result.checksum is None:
            result.checksum = checksum(result.values)
        out[pair] = result.checksum
    return out


@collection_paused()  # the whole apply keeps what it builds: see core.gcpause
def apply_snapshot(
    *,
    store: VersionStore,
    files: Mapping[str, FileEntry],
    commit: CommitInfo,
    evaluator: Evaluator,
    actor: str,
    host: str,
    now: Callable[[], datetime],
    fence: Fence | None = None,
    dry_run: bool = False,
    only: PairKey | None = None,
    baseline: Baseline | None = None,
    changelog: ChangeLog | None = None,
    cursor: str | None = None,
    changed: Collection[str] | None = None,
) -> ApplyResult:
    """Apply one commit's tree (see the module docstring for the steps).

    With ``baseline`` (the tree of the store's last applied commit) only the apps whose
    values files changed since are evaluated; see :class:`Baseline`. With ``changelog``
    each version records the commit that changed its pair (``services.attribution``).
    With ``cursor`` the sync-state cursor of that name is set to this commit in the same
    unit of work (applied or rejected; not on a dry run), so the commit and the cursor
    move together. ``changed``: the paths that may differ between ``baseline``'s files and
    ``files``, when the caller knows them (the reconciler's incremental tree reader does):
    then no path is compared but those.
    """
    scope: set[str] | None = None
    index: plan_mod.FileIndex | None = None
    if baseline is not None:
        paths = (
            plan_mod.differing_paths(baseline.files, files)
            if changed is None
            else [path for path in changed if baseline.files.get(path) != files.get(path)]
        )
        scope = plan_mod.changed_apps(baseline.files, files, paths=paths)
        # The index follows the commit (made once, the first time; then at the cost of
        # the paths the commit changed), for this apply's scope and the next one's.
        if baseline.index is not None:
            index = baseline.index.moved(paths, files)
        if scope is not None and (index is None or index.size != len(files)):
            index = plan_mod.FileIndex.of(files)  # the first time (or one that lost count)
    checked, scope = _evaluate(evaluator, files, scope, index)
    if not checked.report.valid:
        if not dry_run:
            with store.unit_of_work(fence=fence) as uow:
                _reject(uow, commit=commit, report=checked.report, actor=actor, host=host, cursor=cursor)
        return ApplyResult(commit=commit.sha, status="rejected", report=checked.report)

    def attempt() -> ApplyResult:
        return _apply_checked(
            store=store, files=files, commit=commit, evaluator=evaluator, actor=actor, host=host, now=now,
            fence=fence, dry_run=dry_run, only=only, baseline=baseline, changelog=changelog, cursor=cursor,
            checked=checked, scope=scope, index=index,
        )  # fmt: skip

    try:
        return attempt()
    except StoreMovedOn:
        # The store's writer answered the reads from memory (adapters.store.memory) and
        # another writer had written since: nothing was written. Once more, reading under
        # the writer lock (the store has forgotten what it remembered).
        return attempt()


def _apply_checked(
    *,
    store: VersionStore,
    files: Mapping[str, FileEntry],
    commit: CommitInfo,
    evaluator: Evaluator,
    actor: str,
    host: str,
    now: Callable[[], datetime],
    fence: Fence | None,
    dry_run: bool,
    only: PairKey | None,
    baseline: Baseline | None,
    changelog: ChangeLog | None,
    cursor: str | None,
    checked: Checked,
    scope: set[str] | None,
    index: plan_mod.FileIndex | None,
) -> ApplyResult:
    """The rest of :func:`apply_snapshot` once the tree is valid: one unit of work."""
    checksums = _checksums(checked)

    # Everything read below up to the previous snapshots, at once, as the unit of work
    # opens (with its BEGIN and lock: one round trip on PostgreSQL); with a baseline, the
    # heads of the apps in scope only.
    reads = ReadAhead(
        commits=[commit.sha],
        cursors=[LAST_APPLIED],
        apps=scope,
        # the snapshots of the heads these match are not needed: those pairs do not change
        checksums=checksums if scope is not None else {},
    )
    with store.unit_of_work(fence=None if dry_run else fence, reads=reads) as uow:
        previous_status = uow.commit_status(commit.sha)
        # Heads only (number, checksum): snapshots are read just for the pairs that change,
        # and with a baseline only the heads of the apps in scope.
        baseline_holds = (
            scope is not None and baseline is not None and uow.get_sync_state(LAST_APPLIED) == baseline.commit
        )
        latest: Mapping[PairKey, VersionHead] = (
            uow.latest_heads(scope, with_rollbacks=True) if baseline_holds and scope is not None else uow.latest_heads()
        )
        if scope is not None and baseline is not None:
            # Inside the writer lock: is the baseline still what the store serves?
            widened: set[str] | None = scope
            if not baseline_holds:
                widened = None  # another apply moved the store on: compare every pair
            else:
                # A pair held by a rollback (pinned, or quarantined after release) does not
                # serve the baseline's values; it must be looked at whatever changed.
                widened = scope | {app for (app, _env), v in latest.items() if v.reason != VersionReason.COMMIT}
            if widened != scope:
                latest = uow.latest_heads(widened) if widened is not None else uow.latest_heads()
                checked, scope = _evaluate(evaluator, files, widened, index)
                if not checked.report.valid:  # only if the baseline was not valid after all
                    if not dry_run:
                        _reject(uow, commit=commit, report=checked.report, actor=actor, host=host, cursor=cursor)
                    return ApplyResult(commit=commit.sha, status="rejected", report=checked.report)
                checksums = _checksums(checked)
        in_scope = latest if scope is None else {pair: v for pair, v in latest.items() if pair[0] in scope}
        # Rollouts (runtime state folded in) are part of a version and of its checksum.
        states = uow.rollout_states()
        pair_rollouts = rollouts_service.pair_rollouts(checked.tree, list(checked.values), states)
        checksums = rollouts_service.with_rollouts(checksums, checked.values, pair_rollouts)
        pins = {(p.app, p.env) for p in uow.get_pins()}
        pairs = plan_mod.changed_pairs(checked.values, checksums, in_scope, only=only)
        # Reads in batches: the statements of this unit of work do not grow with the number
        # of pairs (the previous snapshots in one query, the quarantines in one).
        wanted = [(app, env, head.number) for app, env in pairs if (head := latest.get((app, env))) is not None]
        previous: Mapping[PairKey, VersionRecord] = uow.get_versions(wanted) if wanted else {}
        quarantines: dict[PairKey, QuarantineRecord] = {}
        if wanted:  # a new pair was never rolled back
            quarantines = {pair: q for pair, q in all_quarantines(uow).items() if pair in previous and pair not in pins}
        plan = plan_mod.plan_apply(
            pairs=pairs,
            values=checked.values,
            checksums=checksums,
            rollouts=pair_rollouts,
            latest=latest,
            previous=previous,
            pins=pins,
            quarantines=quarantines,
            # Secrets of the apps that changed only: work follows the change.
            secrets=secret_keys(checked.tree, apps={app for app, _ in pairs}),
        )
        if dry_run:
            return ApplyResult(
                commit=commit.sha, status="planned", report=checked.report, pairs=tuple(_outcome(p, None) for p in plan.pairs)
            )
        origin = _origins(uow, plan, commit=commit, latest=latest, changelog=changelog, states=states)
        recorded: list[Recorded] = []
        for item in plan.pairs:
            if item.lift_quarantine:
                # A newer commit changed this pair: the quarantine is superseded.
                lift_quarantine(uow, item.app, item.env)
            if item.skipped is not None:
                continue
            made_by = origin.get(item.pair, commit)
            if made_by.sha != commit.sha and uow.commit_status(made_by.sha) is None:
                # Not applied on its own: a later commit (this one) carried its change.
                uow.record_commit(made_by, CommitStatus.SUPERSEDED, f"applied as part of {commit.sha}")
            recorded.append(
                Recorded(
                    new=NewVersion(
                        app=item.app,
                        env=item.env,
                        values=item.values,
                        checksum=item.checksum,
                        commit_sha=made_by.sha,
                        reason=VersionReason.COMMIT,
                        previous=item.previous,
                        changes=item.changes,
                        changed_keys=item.changed_keys,
                        rollouts=item.rollouts,
                    ),
                    action="version.created",
                    details={
                        "changed_keys": list(item.changed_keys),
                        "previous_version": item.previous,
                        "applied_commit": commit.sha,
                        "added": item.added,
                        "changed": item.changed,
                        "removed": item.removed,
                    },
                )
            )
        at = now()
        messages: list[Notification] = record_versions(uow, recorded, actor=actor, host=host, now=at)
        versions = {(m["app"], m["env"]): m["version"] for m in messages}
        written = tuple(
            VersionRecord(
                app=r.new.app,
                env=r.new.env,
                number=m["version"],
                values=r.new.values,
                checksum=r.new.checksum,
                commit_sha=r.new.commit_sha,
                reason=r.new.reason,
                actor=actor,
                created_at=at,
                rollouts=tuple(r.new.rollouts),
            )
            for r, m in zip(recorded, messages, strict=True)
        )
        outcomes = [_outcome(item, None if item.skipped is not None else versions.get(item.pair)) for item in plan.pairs]
        if previous_status != CommitStatus.APPLIED:
            uow.record_commit(commit, CommitStatus.APPLIED, None)
            uow.add_audit(
                action="commit.applied",
                actor=actor,
                host=host,
                commit_sha=commit.sha,
                details={
                    "author": commit.author_email,
                    "committer": commit.committer_email,
                    "signature": commit.signature_status,
                    "message": plan_mod.first_line(commit.message),
                    "versions": len(messages),
                    "changed_keys": sorted({k for m in messages for k in m["changed_keys"]}),
                },
            )
        uow.set_sync_state(LAST_APPLIED, commit.sha)
        uow.set_sync_state(LAST_ATTEMPTED, commit.sha)
        if cursor is not None:
            uow.set_sync_state(cursor, commit.sha)
    status = "already-applied" if previous_status == CommitStatus.APPLIED and not messages else "applied"
    return ApplyResult(
        commit=commit.sha,
        status=status,
        report=checked.report,
        pairs=tuple(outcomes),
        new_versions=len(messages),
        notifications=tuple(messages),
        versions=written,
        baseline=Baseline(commit=commit.sha, files=files, index=index),
    )


def _outcome(item: plan_mod.PairPlan, version: int | None) -> PairOutcome:
    return PairOutcome(
        app=item.app,
        env=item.env,
        version=version,
        previous=item.previous,
        added=item.added,
        changed=item.changed,
        removed=item.removed,
        changed_keys=item.changed_keys,
        skipped=item.skipped,
    )


def _origins(
    uow: UnitOfWork,
    plan: plan_mod.ApplyPlan,
    *,
    commit: CommitInfo,
    latest: Mapping[PairKey, VersionHead],
    changelog: ChangeLog | None,
    states: Mapping[PairKey, Mapping[str, Mapping[str, Any]]],
) -> dict[PairKey, CommitInfo]:
    """The commit that last changed each pair the plan does not skip as pinned."""
    digests = {p.pair: p.checksum for p in plan.pairs if p.skipped is not plan_mod.SkipReason.PINNED}
    if not digests:
        return {}
    last_applied = uow.get_sync_state(LAST_APPLIED)
    parent_applied = last_applied is not None and commit.parents[:1] == (last_applied,)
    in_sync = [
        p.pair
        for p in plan.pairs
        if parent_applied and (head := latest.get(p.pair)) is not None and head.reason == VersionReason.COMMIT
    ]
    return attribute(changelog, head=commit, pairs=digests, in_sync_with_parent=in_sync, rollout_states=states)


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
    fence: Fence | None = None,
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
