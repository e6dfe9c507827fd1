"""One reconcile pass, as an explicit ordered list of small steps.

:data:`PASS_STEPS`: fetch the head → check the layout (once) → for each pending commit, in
order, :data:`COMMIT_STEPS` (verify its signature (optional) → read its tree → apply it
exactly as `configctl apply` does (one transaction: versions, key changes, audit, outbox;
fenced by the leader epoch) → warm the cache with each new version → relay the outbox to
the broker → move the cursor) → judge the head (and serve an older valid commit on a first
start) → advance rollouts → catch up.

Each step returns an :class:`Outcome`, which decides what happens next (Flux's stall/retry
split): DONE goes on; STALL is a user error -- a bad commit (invalid tree, bad signature)
is recorded as rejected, the cursor moves past it and the pass goes on to the next commit,
so it waits for a new commit and the last good configuration stays in service; RETRY is a
backend error of the store or git -- the pass stops and the loop (``loop.py``) retries it
with capped, jittered backoff. Redis and RabbitMQ being down never stops a
commit from landing in the store: the cache is repaired and the outbox relayed when they
return (:func:`catch_up`, which the loop also runs on a retry timer between passes, and
which runs even when the fetch failed -- notifications already in the outbox do not wait
for git).

Within one pass a dependency that failed once is not tried again for every further
commit: with a broker or Redis that times out instead of refusing, a backlog of N commits
would otherwise stall the pass N times the timeout. The rest is left to the catch-up.

Signed commits (``--require-signed``): every commit is verified on its own, so a rejected
commit never lets a later unsigned one through -- each later commit must carry a valid
signature itself, and the first that does is applied with its whole tree (the signer
vouches for the tree, which includes the changes of the rejected commits before it).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from configctl.core.cache import CachedSnapshot, SnapshotCache
from configctl.core.model import FileEntry
from configctl.core.ports import (
    ChangeLog,
    GitSourcePort,
    PublisherPort,
    ReconcilerStorePort,
    UnitOfWork,
)
from configctl.core.records import CommitInfo, JsonObject, OutboxRecord, VersionRecord
from configctl.errors import BackendError, CacheError, GitError, UsageError
from configctl.services import apply as apply_service
from configctl.services import relay as relay_service
from configctl.services import rollouts as rollouts_service
from configctl.services.record import reject_commit
from configctl.services.resolution import Evaluator

if TYPE_CHECKING:
    from configctl_reconciler.metrics import ReconcilerMetrics

log = logging.getLogger(__name__)

ACTOR = "reconciler"

RELAY_BATCH = 500
"""Outbox rows read per relay round; rounds repeat while batches come back full."""

RELAY_ROUNDS = 20
"""At most this many full batches per relay call, so one call stays bounded."""


class Verdict(NamedTuple):
    """A signature check's outcome, as the pass needs it."""

    ok: bool
    status: str
    """git's ``%G?`` letter (``G`` good, ``N`` unsigned, ...), ``?`` if git could not say."""
    reason: str
    signer: str | None


@dataclass(slots=True)
class PassResult:
    head: str | None = None
    applied: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    last_rejected: tuple[str, str] | None = None
    """(commit, why) of the last commit this pass rejected."""
    new_versions: int = 0
    published: int = 0
    cache_errors: int = 0
    broker_errors: int = 0
    git_error: bool = False
    force_push: bool = False
    backlog: int | None = None
    """Outbox rows still unpublished after the pass (None if it could not be read)."""
    drained: bool = False
    """A relay in this pass found nothing more to publish after its last commit."""
    head_rejected: tuple[str, str] | None = None
    """(commit, why) when the branch head is recorded as rejected, whichever pass did it."""
    fallback: str | None = None
    """The older commit applied because the head was rejected and nothing was served yet."""
    warmed: dict[tuple[str, str], int] = field(default_factory=dict)
    """The version of each pair this pass wrote to the cache."""

    @property
    def behind(self) -> bool:
        """Redis or RabbitMQ did not get everything: the loop retries on a timer."""
        return bool(self.cache_errors or self.broker_errors)


@dataclass(slots=True)
class Deps:
    """What a pass needs; built by the runner, faked in unit tests."""

    store: ReconcilerStorePort
    git: GitSourcePort
    """A GitSource over the local clone."""
    fetch: Callable[[], str]
    """Fetches and returns the branch head."""
    cache: SnapshotCache | None
    publisher: PublisherPort | None
    evaluator: Evaluator
    prefix: str = ""
    changelog: ChangeLog | None = None
    """Which commit last changed each pair (see services.attribution); None blames the applied commit."""
    host: str = "reconciler"
    verify: Callable[[str], Verdict] | None = None
    """``sha -> Verdict`` when signed commits are required."""
    is_ancestor: Callable[[str, str], bool] | None = None
    """``(a, b) -> a is an ancestor of b``; raises GitError when git cannot tell (the
    default, ``git.is_ancestor``, answers False for any git failure)."""
    log_range: Callable[[str | None, str], list[CommitInfo] | None] | None = None
    """``(base, head) -> commits after base up to head`` (first parents, oldest first) in
    one git call, None if ``base`` is unknown to the clone; default: ``git.commits_between``."""
    read_tree: Callable[[str], dict[str, FileEntry]] | None = None
    """``sha -> {path: FileEntry}``; default ``git.read_tree``. The runner passes the
    incremental :class:`configctl.adapters.git.trees.TreeReader` (same result, cost of the change)."""
    changed_paths: Callable[[str, str], list[str] | None] | None = None
    """``(base, sha) -> the config paths that may differ between the two trees`` when the
    tree reader knows them (it read ``sha`` right after ``base``), else None: apply then
    compares only those paths with its baseline, not every path."""
    cursor: tuple[int | None, str] | None = None
    """(epoch, commit) the cursor was last written as under that epoch: no store read on
    the next pass. Only a replica with a newer epoch could have moved it, and then every
    write of ours fails its fencing check anyway."""
    metrics: ReconcilerMetrics | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    history: Callable[[str, int], list[CommitInfo]] | None = None
    """``(head, n) -> head and its first-parent ancestors, newest first, at most n``: where
    the first start looks for something valid to serve when the head is rejected."""
    layout_checked: bool = False
    """The first fetched head was checked to hold ``<prefix>/configctl.yaml``."""
    fallback_tried: bool = False
    """This process already looked for an older valid commit to serve (once is enough)."""
    head_status: tuple[str, tuple[str, str] | None] | None = None
    """(head, (commit, why) if rejected): the store's verdict on the head, read once per head."""
    last_applied: apply_service.Baseline | None = None
    """The tree of the last commit this process applied: the next apply evaluates only
    what changed since (apply re-checks, inside the writer lock, that the store still
    serves it, and falls back to the whole tree otherwise)."""


def _files(deps: Deps, sha: str) -> dict[str, FileEntry]:
    """The config files of commit ``sha``, relative to ``--path`` (through the incremental
    tree reader when there is one)."""
    read_tree = deps.read_tree if deps.read_tree is not None else deps.git.read_tree
    return _strip(read_tree(sha), deps.prefix)


def _audit(uow: UnitOfWork, deps: Deps, action: str, sha: str, details: JsonObject) -> None:
    uow.add_audit(action=action, actor=ACTOR, host=deps.host, commit_sha=sha, details=details)


def _count_applied(
    deps: Deps, result: PassResult, sha: str, files: dict[str, FileEntry], applied: apply_service.ApplyResult
) -> None:
    """Book an applied commit: the next apply's baseline, the pass result, the metric."""
    deps.last_applied = applied.baseline or apply_service.Baseline(commit=sha, files=files)
    result.applied.append(sha)
    result.new_versions += applied.new_versions
    if deps.metrics is not None:
        deps.metrics.commit_applied()


def _changed(deps: Deps, sha: str) -> list[str] | None:
    """The paths (relative to ``--path``) that may differ between the last applied tree and
    ``sha``'s, when the tree reader knows them."""
    base = deps.last_applied
    if deps.changed_paths is None or base is None:
        return None
    paths = deps.changed_paths(base.commit, sha)
    if paths is None:
        return None
    p = _folder(deps.prefix)
    return [path[len(p) :] for path in paths if path.startswith(p)]


def _folder(prefix: str) -> str:
    """``--path`` as the start of the repository paths under it ("" for the whole tree)."""
    return prefix.rstrip("/") + "/" if prefix else ""


def _strip(files: dict[str, FileEntry], prefix: str) -> dict[str, FileEntry]:
    p = _folder(prefix)
    if not p:
        return files
    return {k[len(p) :]: v for k, v in files.items() if k.startswith(p)}


CURSOR = "reconciler_cursor"
"""Sync-state name of the last commit this loop processed (applied or rejected)."""


def _cursor(deps: Deps, fence: tuple[str, int] | None) -> str | None:
    epoch = fence[1] if fence is not None else None
    if deps.cursor is not None and deps.cursor[0] == epoch and epoch is not None:
        return deps.cursor[1]
    last = deps.store.sync_state(CURSOR) or deps.store.sync_state("last_applied_commit")
    return last if isinstance(last, str) else None


def pending_commits(deps: Deps, head: str, result: PassResult, *, fence: tuple[str, int] | None = None) -> list[CommitInfo]:
    """The commits to process, oldest first; records a history rewrite (force push)."""
    last = _cursor(deps, fence)
    if last == head:
        return []
    if last is None:
        # First start: the branch's history before now is not replayed.
        return [deps.git.commit_info(head)]
    if deps.log_range is not None:
        listed = deps.log_range(last, head)
        # The common case needs no second git call: the oldest new commit's parent *is*
        # the cursor, which proves the cursor is an ancestor of head.
        if listed and last in listed[0].parents:
            return listed
        rewritten = listed is None or not _is_ancestor(deps, last, head)
        commits = listed or []
    else:
        rewritten = not _is_ancestor(deps, last, head)
        commits = [] if rewritten else list(deps.git.commits_between(last, head))
    if rewritten:
        # History was rewritten (force push): record it, keep every version, apply HEAD.
        result.force_push = True
        apply_service.record_force_push(deps.store, previous=last, head=head, actor=ACTOR, host=deps.host, fence=fence)
        log.warning("history rewritten: %s is not an ancestor of %s; applying the new head", last[:12], head[:12])
        return [deps.git.commit_info(head)]
    return commits


def _is_ancestor(deps: Deps, a: str, b: str) -> bool:
    check = deps.is_ancestor if deps.is_ancestor is not None else deps.git.is_ancestor
    return bool(check(a, b))


def _reject(result: PassResult, deps: Deps, commit: CommitInfo, kind: str, why: str) -> None:
    result.rejected.append(commit.sha)
    result.last_rejected = (commit.sha, why)
    if deps.metrics is not None:
        deps.metrics.commit_rejected(kind)
    log.warning("commit %s rejected (%s): %s", commit.sha[:12], kind, why)


class Outcome(enum.StrEnum):
    """What a step's result means for the rest of the pass."""

    DONE = "done"
    """Go on with the next step."""
    STALL = "stall"
    """A user error (bad commit): recorded; nothing more for this commit until a new one."""
    RETRY = "retry"
    """A backend error: the pass stops; the loop retries with capped, jittered backoff."""


@dataclass(slots=True)
class Pass:
    """What the steps of one pass share."""

    deps: Deps
    fence: tuple[str, int] | None
    result: PassResult = field(default_factory=PassResult)
    head: str = ""
    error: BackendError | None = None
    """The backend error behind a RETRY, raised to the loop at the end of the pass."""


@dataclass(slots=True)
class CommitRun:
    """One pending commit on its way through :data:`COMMIT_STEPS`."""

    commit: CommitInfo
    files: dict[str, FileEntry] = field(default_factory=dict)
    notifications: list[tuple[str, str]] = field(default_factory=list)
    """(app, env) of each new version, for the cache and the relay."""
    versions: tuple[VersionRecord, ...] = ()
    """The new versions themselves: the cache is warmed without reading them back."""


def verify_signature(p: Pass, c: CommitRun) -> Outcome:
    """With ``--require-signed``: a commit not signed by an allowed key is rejected."""
    deps = p.deps
    if deps.verify is None:
        return Outcome.DONE
    verdict = deps.verify(c.commit.sha)
    # Record what *our* check said, not what git log said with its ambient config.
    commit = c.commit = dataclasses.replace(c.commit, signature_status=verdict.status, signer=verdict.signer)
    if verdict.ok:
        return Outcome.DONE
    # One transaction: the record, its audit row and the cursor move together.
    with deps.store.unit_of_work(fence=p.fence) as uow:
        reject_commit(
            uow,
            commit,
            reason=f"signature: {verdict.reason}",
            details={
                "signature": verdict.reason,
                "signature_status": verdict.status,
                "signer": verdict.signer,
                "author": commit.author_email,
                "message": commit.subject,
            },
            actor=ACTOR,
            host=deps.host,
        )
        uow.set_sync_state(CURSOR, commit.sha)
    deps.cursor = (p.fence[1] if p.fence is not None else None, commit.sha)
    _reject(p.result, deps, commit, "signature", verdict.reason)
    return Outcome.STALL


def read_files(p: Pass, c: CommitRun) -> Outcome:
    """The commit's config files, relative to ``--path``."""
    c.files = _files(p.deps, c.commit.sha)
    return Outcome.DONE


def apply_files(p: Pass, c: CommitRun) -> Outcome:
    """Apply as ``configctl apply`` does; an invalid tree is rejected (and passed over)."""
    deps, result, commit = p.deps, p.result, c.commit
    outcome = apply_service.apply_snapshot(
        store=deps.store,
        files=c.files,
        commit=commit,
        evaluator=deps.evaluator,
        actor=ACTOR,
        host=deps.host,
        now=deps.now,
        fence=p.fence,
        baseline=deps.last_applied,
        changelog=deps.changelog,
        cursor=CURSOR,  # moved in the apply's own transaction, applied or rejected
        changed=_changed(deps, commit.sha),
    )
    deps.cursor = (p.fence[1] if p.fence is not None else None, commit.sha)
    if outcome.status == "rejected":
        first = outcome.report.errors[0] if outcome.report.errors else None
        why = f"{len(outcome.report.errors)} validation errors" + (
            f", first {first.file}:{first.line}: [{first.rule}]" if first is not None else ""
        )
        _reject(result, deps, commit, "validation", why)
        return Outcome.STALL
    _count_applied(deps, result, commit.sha, c.files, outcome)
    c.notifications = [(m["app"], m["env"]) for m in outcome.notifications]
    c.versions = outcome.versions
    return Outcome.DONE


def warm_cache(p: Pass, c: CommitRun) -> Outcome:
    """Redis first, then the broker: a subscriber told of version N finds N in Redis."""
    warm(p.deps, c.notifications, p.result, written=c.versions)
    return Outcome.DONE


def relay_changes(p: Pass, c: CommitRun) -> Outcome:
    if c.notifications:
        relay(p.deps, p.result)
    return Outcome.DONE


CommitStep = Callable[[Pass, CommitRun], Outcome]

COMMIT_STEPS: tuple[CommitStep, ...] = (
    verify_signature,
    read_files,
    apply_files,
    warm_cache,
    relay_changes,
)
"""What happens to each pending commit, in this order."""


def run_steps(p: Pass, steps: Sequence[Callable[[], Outcome]]) -> Outcome:
    """Run ``steps`` in order until one does not return DONE; a backend error is RETRY
    (kept in ``p.error`` for the loop)."""
    for step in steps:
        try:
            outcome = step()
        except BackendError as exc:
            p.error = exc
            return Outcome.RETRY
        if outcome is not Outcome.DONE:
            return outcome
    return Outcome.DONE


def run_commit(p: Pass, commit: CommitInfo) -> Outcome:
    """:data:`COMMIT_STEPS` for one commit."""
    c = CommitRun(commit)
    return run_steps(p, [functools.partial(step, p, c) for step in COMMIT_STEPS])


def warm(
    deps: Deps,
    pairs: list[tuple[str, str]],
    result: PassResult,
    *,
    written: Sequence[VersionRecord] = (),
) -> None:
    """Write each changed (app, env) snapshot to the cache (one atomic SET each): the
    version just ``written`` for its pair, else the store's newest.

    After a cache failure in this pass nothing more is tried: the loop repairs the cache
    from the store as soon as it answers again.
    """
    if deps.cache is None or not pairs or result.cache_errors:
        return
    known = {(v.app, v.env): v for v in written}
    try:
        for app, env in pairs:
            record = known.get((app, env)) or deps.store.get_version(app, env, None)
            if record is not None:
                deps.cache.put(to_cached(record, deps.now()))
                result.warmed[(app, env)] = record.number
        _up(deps, "redis", True)
    except CacheError as exc:
        result.cache_errors += 1
        _up(deps, "redis", False)
        log.warning("cache write failed (will repair): %s", exc.message)


def warm_announced(deps: Deps, rows: Sequence[OutboxRecord], result: PassResult) -> None:
    """Before a batch goes out: warm every pair whose message announces a version this
    pass has not written to the cache yet. Versions written elsewhere (a rollback, release
    or rollout control from the CLI on the shared store) reach the outbox without a cache
    write; a subscriber told of version N must find N in the cache, not wait for a repair."""
    pairs: list[tuple[str, str]] = []
    for row in rows:
        app, env, version = row.payload.get("app"), row.payload.get("env"), row.payload.get("version")
        if not (isinstance(app, str) and isinstance(env, str) and isinstance(version, int)):
            continue
        if result.warmed.get((app, env), 0) < version and (app, env) not in pairs:
            pairs.append((app, env))
    warm(deps, pairs, result)


def to_cached(record: VersionRecord, now: datetime) -> CachedSnapshot:
    return CachedSnapshot(
        app=record.app,
        env=record.env,
        version=record.number,
        commit=record.commit_sha,
        checksum=record.checksum,
        values=record.values,
        updated_at=now,
        rollouts=tuple(getattr(record, "rollouts", ())),
    )


def repair_cache(deps: Deps) -> int | None:
    """Make the cache equal to the store's versions in service.

    Returns the number of entries repaired, or None if the cache could not be reached
    (a store failure raises: that is the loop's backend error).
    """
    if deps.cache is None:
        return 0
    try:
        # First the cheap question: while Redis is down this runs on every retry, and
        # reading every snapshot from the store for nothing would be the expensive part.
        deps.cache.ping()
    except CacheError as exc:
        _up(deps, "redis", False)
        log.warning("cache unreachable: %s", exc.message)
        return None
    latest = deps.store.latest_versions()
    now = deps.now()
    # a version whose values the store no longer holds (None at run time, whatever the
    # record's type says) is not served from the cache
    held: dict[tuple[str, str], object] = {pair: rec.values for pair, rec in latest.items()}
    expected = {pair: to_cached(rec, now) for pair, rec in latest.items() if held[pair] is not None}
    try:
        repaired = int(deps.cache.repair(expected))
        _up(deps, "redis", True)
    except CacheError as exc:
        _up(deps, "redis", False)
        log.warning("cache repair failed: %s", exc.message)
        return None
    if repaired and deps.metrics is not None:
        deps.metrics.redis_repaired(repaired)
    return repaired


def advance_rollouts(deps: Deps, *, fence: tuple[str, int] | None) -> int:
    """The schedule tick: record and announce each rollout stage reached since the last
    pass (the outbox message goes out with this pass's relay). Returns how many."""
    changes = rollouts_service.advance_stages(store=deps.store, now=deps.now(), actor=ACTOR, host=deps.host, fence=fence)
    for change in changes:
        log.info(
            "rollout %s of %s/%s reached stage %d (window %s, %s basis points)",
            change.rollout, change.app, change.env, change.stage, change.window, change.percentage,
        )
    return len(changes)


def relay(deps: Deps, result: PassResult) -> None:
    """Publish pending outbox rows in order until none is left or the broker fails.

    Once the broker failed in this pass it is not tried again in the same pass. A store
    failure raises (StoreError): the pass stops and the loop retries.
    """
    if deps.publisher is None or result.broker_errors:
        return
    for _ in range(RELAY_ROUNDS):
        outcome = relay_service.relay_outbox(
            outbox=deps.store,
            publisher=deps.publisher,
            now=deps.now,
            batch=RELAY_BATCH,
            before=lambda rows: warm_announced(deps, rows, result),
        )
        result.published += outcome.published
        if not outcome.ok:
            result.broker_errors += 1
            _up(deps, "rabbitmq", False)
            break
        _up(deps, "rabbitmq", True)
        if not outcome.more:
            result.drained = True
            break


def catch_up(deps: Deps, result: PassResult | None = None) -> PassResult:
    """Relay what the outbox holds (no fetch, no apply): the end of every pass, and the
    loop's retry between passes. Also measures the backlog for the metric and /healthz."""
    result = result if result is not None else PassResult()
    if not result.drained:
        relay(deps, result)
    if deps.publisher is not None:
        try:
            result.backlog = int(deps.store.outbox_backlog())
        except BackendError:
            result.backlog = None
        if deps.metrics is not None and result.backlog is not None:
            deps.metrics.set_outbox_backlog(result.backlog)
    keepalive = getattr(deps.publisher, "keepalive", None)
    if keepalive is not None and not result.broker_errors:
        keepalive()
    return result


def _up(deps: Deps, dependency: str, up: bool) -> None:
    if deps.metrics is not None:
        deps.metrics.set_dependency_up(dependency, up)


CONFIG_FILE = "configctl.yaml"

FALLBACK_DEPTH = 100
"""How many first-parent ancestors of a rejected head the first start looks through."""


def check_layout(deps: Deps, head: str) -> None:
    """The fetched head holds ``<prefix>/configctl.yaml``, or the ``--path`` is wrong.

    Checked once, on the first fetch: a wrong ``--path`` (or a repository that is no
    configctl repository) is the operator's mistake to fix, a usage error that records
    nothing -- not a rejected commit that would then never be applied.
    """
    files = _files(deps, head)
    if CONFIG_FILE not in files:
        where = f"{deps.prefix.strip('/')}/{CONFIG_FILE}" if deps.prefix.strip("/") else CONFIG_FILE
        raise UsageError(
            f"--path {deps.prefix or '/'}: the branch head {head[:12]} has no {where}",
            hint="--path (CONFIGCTL_PATH) names the folder of the repository that holds configctl.yaml",
        )


def head_verdict(deps: Deps, head: str, result: PassResult) -> tuple[str, str] | None:
    """(head, why) if the store records the branch head as rejected, else None."""
    if head in result.applied:
        verdict = None
    elif (
        head in result.rejected
        and result.last_rejected is not None
        and result.last_rejected[0] == head
    ):
        verdict = result.last_rejected
    elif deps.head_status is not None and deps.head_status[0] == head:
        return deps.head_status[1]
    else:
        record = deps.store.get_commit(head)
        verdict = (
            (head, record.reason or "rejected")
            if record is not None and record.status == "rejected"
            else None
        )
    deps.head_status = (head, verdict)
    return verdict


def serve_newest_valid(
    deps: Deps, head: str, *, fence: tuple[str, int] | None, result: PassResult
) -> None:
    """On a store that serves nothing yet, apply the newest valid ancestor of a rejected head.

    A first start on a branch whose head is invalid (or not signed by an allowed key)
    would otherwise serve nothing at all until someone fixes the branch. Only first
    parents are looked at, newest first, at most :data:`FALLBACK_DEPTH`; a candidate is
    judged without writing anything (signature, then the whole tree), so the commits
    passed over are not recorded. The cursor stays at the head: the next new commit is
    applied as usual, and the head stays reported as rejected.
    """
    if deps.store.sync_state("last_applied_commit") is not None or deps.history is None:
        return
    for commit in deps.history(head, FALLBACK_DEPTH + 1)[1:]:
        if deps.verify is not None:
            verdict = deps.verify(commit.sha)
            if not verdict.ok:
                continue
            commit = dataclasses.replace(
                commit, signature_status=verdict.status, signer=verdict.signer
            )
        files = _files(deps, commit.sha)
        if not deps.evaluator.check(files).report.valid:
            continue
        outcome = apply_service.apply_snapshot(
            store=deps.store, files=files, commit=commit, evaluator=deps.evaluator, actor=ACTOR,
            host=deps.host, now=deps.now, fence=fence,
        )  # fmt: skip
        if outcome.status == "rejected":
            continue
        with deps.store.unit_of_work(fence=fence) as uow:
            # what was last attempted is still the head; the cursor never left it
            uow.set_sync_state("last_attempted_commit", head)
            _audit(uow, deps, "commit.fallback", commit.sha, {
                "rejected_head": head,
                "reason": "first start: the head is rejected and nothing was served",
            })  # fmt: skip
        _count_applied(deps, result, commit.sha, files, outcome)
        result.fallback = commit.sha
        log.warning(
            "nothing was served and the head %s is rejected: serving %s, its newest valid ancestor",
            head[:12],
            commit.sha[:12],
        )
        warm(deps, [(m["app"], m["env"]) for m in outcome.notifications], result, written=outcome.versions)
        if outcome.notifications:
            relay(deps, result)
        return
    log.error(
        "nothing is served: the head %s is rejected and none of its last %d ancestors is valid",
        head[:12],
        FALLBACK_DEPTH,
    )


def fetch_head(p: Pass) -> Outcome:
    """Fetch the branch; when git is down, still relay what the outbox holds."""
    deps = p.deps
    try:
        p.head = deps.fetch()
    except GitError as exc:
        p.result.git_error = True
        _up(deps, "git", False)
        # git is down, the broker may not be: what is already in the outbox goes out.
        try:
            catch_up(deps, p.result)
        except BackendError as relay_exc:
            log.warning("relay after a failed fetch failed too: %s", relay_exc.message)
        p.error = exc
        return Outcome.RETRY
    _up(deps, "git", True)
    p.result.head = p.head
    return Outcome.DONE


def check_layout_once(p: Pass) -> Outcome:
    if not p.deps.layout_checked:
        check_layout(p.deps, p.head)
        p.deps.layout_checked = True
    return Outcome.DONE


def apply_pending(p: Pass) -> Outcome:
    """Every commit since the cursor, oldest first; a stalled one is passed over."""
    for commit in pending_commits(p.deps, p.head, p.result, fence=p.fence):
        p.result.drained = False  # rows may be written from now on
        if run_commit(p, commit) is Outcome.RETRY:
            return Outcome.RETRY
    return Outcome.DONE


def judge_head(p: Pass) -> Outcome:
    """Whether the head is rejected; on a first start, serve its newest valid ancestor."""
    deps = p.deps
    p.result.head_rejected = head_verdict(deps, p.head, p.result)
    if p.result.head_rejected is not None and not deps.fallback_tried:
        deps.fallback_tried = True
        serve_newest_valid(deps, p.head, fence=p.fence, result=p.result)
    return Outcome.DONE


def tick_rollouts(p: Pass) -> Outcome:
    advance_rollouts(p.deps, fence=p.fence)
    return Outcome.DONE


def finish(p: Pass) -> Outcome:
    catch_up(p.deps, p.result)
    return Outcome.DONE


PassStep = Callable[[Pass], Outcome]

PASS_STEPS: tuple[PassStep, ...] = (
    fetch_head,
    check_layout_once,
    apply_pending,
    judge_head,
    tick_rollouts,
    finish,
)
"""One pass, in this order."""


def reconcile_once(deps: Deps, *, fence: tuple[str, int] | None) -> PassResult:
    """One pass (:data:`PASS_STEPS`); raises the backend error that stopped it (RETRY)."""
    p = Pass(deps=deps, fence=fence)
    started = time.monotonic()
    outcome = Outcome.RETRY
    try:
        outcome = run_steps(p, [functools.partial(step, p) for step in PASS_STEPS])
        if p.error is not None:
            raise p.error
        return p.result
    finally:
        if deps.metrics is not None:
            deps.metrics.observe_sync(time.monotonic() - started, ok=outcome is Outcome.DONE)
