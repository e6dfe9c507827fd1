"""One reconcile pass, as an ordered list of small steps.

fetch → list the commits since the last processed one → for each commit, in order:
verify its signature (optional) → apply it exactly as `configctl apply` does (one
transaction: versions, key changes, audit, outbox; fenced by the leader epoch) → warm the
cache with each new version → relay the outbox to the broker → move the cursor.

Error kinds decide what happens next (Flux's stall/retry split): a bad commit (invalid
tree, bad signature) is recorded as rejected and the pass goes on to the next commit --
the last good configuration stays in service. A backend error of the store or git stops
the pass; the loop retries with backoff. Redis and RabbitMQ being down never stops a
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
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from configctl.core.cache import CachedSnapshot
from configctl.core.ports import ChangeLog
from configctl.core.records import CommitInfo
from configctl.errors import BackendError, CacheError, GitError, UsageError
from configctl.services import apply as apply_service
from configctl.services import relay as relay_service
from configctl.services import rollouts as rollouts_service
from configctl.services.inspect import Evaluator
from configctl.services.record import reject_commit

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

    @property
    def behind(self) -> bool:
        """Redis or RabbitMQ did not get everything: the loop retries on a timer."""
        return bool(self.cache_errors or self.broker_errors)


@dataclass(slots=True)
class Deps:
    """What a pass needs; built by the runner, faked in unit tests."""

    store: Any
    git: Any
    """A GitSource over the local clone."""
    fetch: Callable[[], str]
    """Fetches and returns the branch head."""
    cache: Any
    publisher: Any
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
    read_tree: Callable[[str], dict[str, Any]] | None = None
    """``sha -> {path: FileEntry}``; default ``git.read_tree``. The runner passes the
    incremental :class:`configctl_reconciler.trees.TreeReader` (same result, cost of the change)."""
    cursor: tuple[int | None, str] | None = None
    """(epoch, commit) the cursor was last written as under that epoch: no store read on
    the next pass. Only a replica with a newer epoch could have moved it, and then every
    write of ours fails its fencing check anyway."""
    metrics: Any = None
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


def _strip(files: dict[str, Any], prefix: str) -> dict[str, Any]:
    if not prefix:
        return files
    p = prefix.rstrip("/") + "/"
    return {k[len(p) :]: v for k, v in files.items() if k.startswith(p)}


CURSOR = "reconciler_cursor"
"""Sync-state name of the last commit this loop processed (applied or rejected)."""


def _cursor(deps: Deps, fence: tuple[str, int] | None) -> str | None:
    epoch = fence[1] if fence is not None else None
    if deps.cursor is not None and deps.cursor[0] == epoch and epoch is not None:
        return deps.cursor[1]
    last: str | None = deps.store.sync_state(CURSOR) or deps.store.sync_state("last_applied_commit")
    return last


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


def apply_commit(deps: Deps, commit: CommitInfo, *, fence: tuple[str, int] | None, result: PassResult) -> None:
    if deps.verify is not None:
        verdict = deps.verify(commit.sha)
        # Record what *our* check said, not what git log said with its ambient config.
        commit = dataclasses.replace(commit, signature_status=verdict.status, signer=verdict.signer)
        if not verdict.ok:
            # One transaction: the record, its audit row and the cursor move together.
            with deps.store.unit_of_work(fence=fence) as uow:
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
            deps.cursor = (fence[1] if fence is not None else None, commit.sha)
            _reject(result, deps, commit, "signature", verdict.reason)
            return
    read_tree = deps.read_tree if deps.read_tree is not None else deps.git.read_tree
    files = _strip(read_tree(commit.sha), deps.prefix)
    outcome = apply_service.apply_snapshot(
        store=deps.store,
        files=files,
        commit=commit,
        evaluator=deps.evaluator,
        actor=ACTOR,
        host=deps.host,
        now=deps.now,
        fence=fence,
        baseline=deps.last_applied,
        changelog=deps.changelog,
    )
    if outcome.status == "rejected":
        first = outcome.report.errors[0] if outcome.report.errors else None
        why = f"{len(outcome.report.errors)} validation errors" + (
            f", first {first.file}:{first.line}: [{first.rule}]" if first is not None else ""
        )
        _advance(deps, commit.sha, fence)
        _reject(result, deps, commit, "validation", why)
        return
    deps.last_applied = apply_service.Baseline(commit=commit.sha, files=files)
    result.applied.append(commit.sha)
    result.new_versions += outcome.new_versions
    if deps.metrics is not None:
        deps.metrics.commit_applied()
    # Redis first, then the broker: a subscriber told of version N finds N in Redis.
    warm(deps, [(m["app"], m["env"]) for m in outcome.notifications], result)
    if outcome.notifications:
        relay(deps, result)
    # The cursor last: a crash before it re-applies this commit, which writes nothing
    # (the versions already match), instead of skipping it.
    _advance(deps, commit.sha, fence)


def _advance(deps: Deps, sha: str, fence: tuple[str, int] | None) -> None:
    """Move the cursor past a processed commit: a rejected one is not retried."""
    with deps.store.unit_of_work(fence=fence) as uow:
        uow.set_sync_state(CURSOR, sha)
    deps.cursor = (fence[1] if fence is not None else None, sha)


def warm(deps: Deps, pairs: list[tuple[str, str]], result: PassResult) -> None:
    """Write each changed (app, env) snapshot to the cache (one atomic SET each).

    After a cache failure in this pass nothing more is tried: the loop repairs the cache
    from the store as soon as it answers again.
    """
    if deps.cache is None or not pairs or result.cache_errors:
        return
    try:
        for app, env in pairs:
            record = deps.store.get_version(app, env, None)
            if record is not None:
                deps.cache.put(to_cached(record, deps.now()))
        _up(deps, "redis", True)
    except CacheError as exc:
        result.cache_errors += 1
        _up(deps, "redis", False)
        log.warning("cache write failed (will repair): %s", exc.message)


def to_cached(record: Any, now: datetime) -> CachedSnapshot:
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
    expected = {pair: to_cached(rec, now) for pair, rec in latest.items() if rec.values is not None}
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
        outcome = relay_service.relay_outbox(outbox=deps.store, publisher=deps.publisher, now=deps.now, batch=RELAY_BATCH)
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
    read_tree = deps.read_tree if deps.read_tree is not None else deps.git.read_tree
    files = _strip(read_tree(head), deps.prefix)
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
        read_tree = deps.read_tree if deps.read_tree is not None else deps.git.read_tree
        files = _strip(read_tree(commit.sha), deps.prefix)
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
            uow.add_audit(
                action="commit.fallback",
                actor=ACTOR,
                host=deps.host,
                commit_sha=commit.sha,
                details={
                    "rejected_head": head,
                    "reason": "first start: the head is rejected and nothing was served",
                },
            )
        deps.last_applied = apply_service.Baseline(commit=commit.sha, files=files)
        result.applied.append(commit.sha)
        result.fallback = commit.sha
        result.new_versions += outcome.new_versions
        if deps.metrics is not None:
            deps.metrics.commit_applied()
        log.warning(
            "nothing was served and the head %s is rejected: serving %s, its newest valid ancestor",
            head[:12],
            commit.sha[:12],
        )
        warm(deps, [(m["app"], m["env"]) for m in outcome.notifications], result)
        if outcome.notifications:
            relay(deps, result)
        return
    log.error(
        "nothing is served: the head %s is rejected and none of its last %d ancestors is valid",
        head[:12],
        FALLBACK_DEPTH,
    )


def reconcile_once(deps: Deps, *, fence: tuple[str, int] | None) -> PassResult:
    """One pass: fetch, apply every pending commit in order, warm, relay."""
    result = PassResult()
    started = time.monotonic()
    ok = False
    try:
        try:
            head = deps.fetch()
        except GitError:
            result.git_error = True
            _up(deps, "git", False)
            # git is down, the broker may not be: what is already in the outbox goes out.
            try:
                catch_up(deps, result)
            except BackendError as exc:
                log.warning("relay after a failed fetch failed too: %s", exc.message)
            raise
        _up(deps, "git", True)
        result.head = head
        if not deps.layout_checked:
            check_layout(deps, head)
            deps.layout_checked = True
        for commit in pending_commits(deps, head, result, fence=fence):
            result.drained = False  # rows may be written from now on
            apply_commit(deps, commit, fence=fence, result=result)
        result.head_rejected = head_verdict(deps, head, result)
        if result.head_rejected is not None and not deps.fallback_tried:
            deps.fallback_tried = True
            serve_newest_valid(deps, head, fence=fence, result=result)
        advance_rollouts(deps, fence=fence)
        catch_up(deps, result)
        ok = True
        return result
    finally:
        if deps.metrics is not None:
            deps.metrics.observe_sync(time.monotonic() - started, ok=ok)
