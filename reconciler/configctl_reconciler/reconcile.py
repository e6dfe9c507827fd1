"""One reconcile pass, as an ordered list of small steps.

fetch → list the commits since the last applied one → for each commit, in order:
verify its signature (optional) → apply it exactly as `configctl apply` does (one
transaction: versions, key changes, audit, outbox; fenced by the leader epoch) → warm the
cache with each new version → relay the outbox to the broker.

Error kinds decide what happens next (Flux's stall/retry split): a bad commit (invalid
tree, bad signature) is recorded as rejected and the pass goes on to the next commit —
the last good configuration stays in service. A backend error stops the pass; the loop
retries with backoff. Redis and RabbitMQ being down never stops a commit from landing in
the store: the cache is repaired and the outbox relayed when they return.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from configctl.core.cache import CachedSnapshot
from configctl.core.records import CommitInfo
from configctl.errors import BackendError, BrokerError, CacheError
from configctl.services import apply as apply_service
from configctl.services import relay as relay_service
from configctl.services.inspect import Evaluator

log = logging.getLogger(__name__)

ACTOR = "reconciler"


@dataclass(slots=True)
class PassResult:
    head: str | None = None
    applied: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    new_versions: int = 0
    published: int = 0
    cache_errors: int = 0
    broker_errors: int = 0
    force_push: bool = False


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
    host: str = "reconciler"
    verify: Callable[[str], tuple[bool, str, str | None]] | None = None
    """``sha -> (ok, reason, signer)`` when signed commits are required."""
    metrics: Any = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def _strip(files: dict[str, Any], prefix: str) -> dict[str, Any]:
    if not prefix:
        return files
    p = prefix.rstrip("/") + "/"
    return {k[len(p) :]: v for k, v in files.items() if k.startswith(p)}


CURSOR = "reconciler_cursor"
"""Sync-state name of the last commit this loop processed (applied or rejected)."""


def pending_commits(deps: Deps, head: str, result: PassResult) -> list[CommitInfo]:
    last = deps.store.sync_state(CURSOR) or deps.store.sync_state("last_applied_commit")
    if last == head:
        return []
    if last is not None and not deps.git.is_ancestor(last, head):
        # History was rewritten (force push): record it, keep every version, apply HEAD.
        result.force_push = True
        with deps.store.unit_of_work() as uow:
            uow.add_audit(
                action="force-push",
                actor=ACTOR,
                host=deps.host,
                commit_sha=head,
                details={"previous_head": last, "new_head": head},
            )
        return [deps.git.commit_info(head)]
    if last is None:
        # First start: the branch's history before now is not replayed.
        return [deps.git.commit_info(head)]
    return list(deps.git.commits_between(last, head))


def apply_commit(deps: Deps, commit: CommitInfo, *, fence: tuple[str, int] | None, result: PassResult) -> None:
    if deps.verify is not None:
        ok, reason, signer = deps.verify(commit.sha)
        if not ok:
            with deps.store.unit_of_work(fence=fence) as uow:
                if uow.commit_status(commit.sha) != "applied":
                    uow.record_commit(commit, "rejected", f"signature: {reason}")
                    uow.add_audit(
                        action="commit.rejected",
                        actor=ACTOR,
                        host=deps.host,
                        commit_sha=commit.sha,
                        details={"signature": reason, "signer": signer, "author": commit.author_email},
                    )
                    uow.set_sync_state("last_attempted_commit", commit.sha)
            result.rejected.append(commit.sha)
            if deps.metrics is not None:
                deps.metrics.commit_rejected("signature")
            log.warning("commit %s rejected: %s", commit.sha[:12], reason)
            _advance(deps, commit.sha, fence)
            return
    files = _strip(deps.git.read_tree(commit.sha), deps.prefix)
    outcome = apply_service.apply_snapshot(
        store=deps.store,
        files=files,
        commit=commit,
        evaluator=deps.evaluator,
        actor=ACTOR,
        host=deps.host,
        now=deps.now,
        fence=fence,
    )
    if outcome.status == "rejected":
        result.rejected.append(commit.sha)
        if deps.metrics is not None:
            deps.metrics.commit_rejected("validation")
        log.warning("commit %s rejected: %d validation errors", commit.sha[:12], len(outcome.report.errors))
        _advance(deps, commit.sha, fence)
        return
    _advance(deps, commit.sha, fence)
    result.applied.append(commit.sha)
    result.new_versions += outcome.new_versions
    if deps.metrics is not None:
        deps.metrics.commit_applied()
    warm(deps, [(m["app"], m["env"]) for m in outcome.notifications], result)


def _advance(deps: Deps, sha: str, fence: tuple[str, int] | None) -> None:
    """Move the cursor past a processed commit: a rejected one is not retried."""
    with deps.store.unit_of_work(fence=fence) as uow:
        uow.set_sync_state(CURSOR, sha)


def warm(deps: Deps, pairs: list[tuple[str, str]], result: PassResult) -> None:
    """Write each changed (app, env) snapshot to the cache (one atomic SET each)."""
    if deps.cache is None or not pairs:
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
    )


def repair_cache(deps: Deps) -> int:
    """Make the cache equal to the store's versions in service; returns entries repaired."""
    if deps.cache is None:
        return 0
    latest = deps.store.latest_versions()
    now = deps.now()
    expected = {pair: to_cached(rec, now) for pair, rec in latest.items() if rec.values is not None}
    try:
        repaired = int(deps.cache.repair(expected))
        _up(deps, "redis", True)
    except CacheError as exc:
        _up(deps, "redis", False)
        log.warning("cache repair failed: %s", exc.message)
        return 0
    if repaired and deps.metrics is not None:
        deps.metrics.redis_repaired(repaired)
    return repaired


def relay(deps: Deps, result: PassResult) -> None:
    if deps.publisher is None:
        return
    outcome = relay_service.relay_outbox(outbox=deps.store, publisher=deps.publisher, now=deps.now, batch=500)
    result.published += outcome.published
    failed = not outcome.ok
    if failed:
        result.broker_errors += 1
    _up(deps, "rabbitmq", not failed)
    if deps.metrics is not None:
        with contextlib.suppress(BackendError):
            deps.metrics.set_outbox_backlog(deps.store.outbox_backlog())


def _up(deps: Deps, dependency: str, up: bool) -> None:
    if deps.metrics is not None:
        deps.metrics.set_dependency_up(dependency, up)


def reconcile_once(deps: Deps, *, fence: tuple[str, int] | None) -> PassResult:
    """One pass: fetch, apply every pending commit in order, warm, relay."""
    result = PassResult()
    started = time.monotonic()
    ok = False
    try:
        head = deps.fetch()
        _up(deps, "git", True)
        result.head = head
        for commit in pending_commits(deps, head, result):
            apply_commit(deps, commit, fence=fence, result=result)
            try:
                relay(deps, result)
            except BrokerError as exc:
                log.warning("relay failed (will retry): %s", exc.message)
        relay(deps, result)
        ok = True
        return result
    finally:
        if deps.metrics is not None:
            deps.metrics.observe_sync(time.monotonic() - started, ok=ok)
