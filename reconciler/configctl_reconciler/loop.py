"""The reconciler's loop: leadership, passes, catch-ups and retries, one thread (the caller's).

* standby: try to become leader every second (or at once on a webhook); stay ready
  (``/readyz``);
* leader: re-check leadership before every round (a lock is not leadership on its own:
  the store also fences every write with the epoch taken at acquisition); at start and on
  every interval repair the cache from the store (on every round while Redis is
  degraded); run a full pass (:func:`configctl_reconciler.reconcile.reconcile_once`) when
  the jittered interval is up or a verified webhook arrived;
* between passes, while Redis or RabbitMQ is behind, retry on a capped, jittered backoff
  timer *without* waiting for a new commit or the next poll: the catch-up repairs the
  cache and relays the outbox (and answers the broker's heartbeats);
* a backend error (store, git: a pass that ended in RETRY) is logged and the pass retried
  with capped, jittered backoff; so is an unexpected exception (logged with its
  traceback). The process never exits because a dependency is down or misbehaves; only a
  configuration error found before the first successful start (exit 2), ``--once`` or
  SIGTERM end it. Exit codes are :class:`configctl.cli.exit_codes.ExitCode`.

What the loop runs on comes from :meth:`Loop.build` and :meth:`Loop.make_leader`, which
the runner (``runner.py``, wiring only) provides.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from configctl.cli.exit_codes import ExitCode
from configctl.core.backoff import backoff
from configctl.core.ports import Leader
from configctl.errors import (
    BackendError,
    ConfigctlError,
    FencingError,
    GitError,
    StoreError,
    UserError,
)
from configctl_reconciler.reconcile import Deps, PassResult, catch_up, reconcile_once, repair_cache
from configctl_reconciler.settings import ReconcilerSettings

if TYPE_CHECKING:
    from configctl_reconciler.metrics import ReconcilerMetrics

__all__ = ["CATCH_UP_CAP", "LEADER_CHECK", "STANDBY_POLL", "Loop", "State"]

log = logging.getLogger("configctl_reconciler")

STANDBY_POLL = 1.0
"""Seconds between a standby's attempts to take the lock: the takeover delay after the
leader dies (PostgreSQL frees the lock when the dead leader's connection closes)."""

LEADER_CHECK = 1.0
"""Seconds a leader trusts its last lock check (see ``Reconciler._lead``)."""

CATCH_UP_CAP = 5.0
"""Longest wait (seconds) before retrying Redis or RabbitMQ while they are behind."""


@dataclass(slots=True)
class State:
    role: str = "standby"
    store_reachable: bool = False
    degraded: set[str] = field(default_factory=set)
    heartbeat: float = field(default_factory=time.monotonic)
    last: PassResult | None = None
    last_error: str | None = None
    last_rejected: dict[str, str] | None = None
    head_rejected: dict[str, str] | None = None
    """The branch head, while the store records it as rejected: /healthz says degraded."""
    backlog: int | None = None


class Loop:
    """Runs passes while this replica leads; ``stop()`` from any thread."""

    def __init__(self, settings: ReconcilerSettings, metrics: ReconcilerMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.state = State()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._deps: Deps | None = None
        self._checked_at = 0.0
        self.leader: Leader | None = None

    def build(self) -> Deps:
        """The adapters of a pass; also sets :attr:`leader`. Called until it succeeds."""
        raise NotImplementedError

    def abort_io(self) -> None:
        """Cut short whatever I/O the loop is blocked in (called by :meth:`stop`)."""

    def _leader(self) -> Leader:
        if self.leader is None:
            raise RuntimeError("build() did not set a leader")
        return self.leader

    # -- the loop ---------------------------------------------------------------------------

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until woken (webhook, stop); True if woken by a webhook."""
        woken = self.wake.wait(max(0.0, seconds))
        self.wake.clear()
        return woken and not self.stopping.is_set()

    def _lead(self) -> bool:
        """Whether this replica leads now (taking the lock if free); may raise StoreError.

        A leader re-checks its lock at most every ``LEADER_CHECK`` seconds (a round trip
        on the webhook's path otherwise); the check is the courtesy that stops a deposed
        leader early, the fencing epoch in every write is the guarantee.
        """
        leader = self._leader()
        if leader.is_leader:
            now = time.monotonic()
            if self.state.role == "leader" and now - self._checked_at < LEADER_CHECK:
                return True
            if leader.check():
                # a Lease is won in the background: leadership may arrive between rounds
                return self._became_leader() if self.state.role != "leader" else self._checked(now)
        if leader.is_leader or self.state.role == "leader":
            log.warning("lost leadership; standing by")
            self._standby()
        if not leader.try_acquire():
            self._standby()
            self.state.store_reachable = True  # the lock query reached it
            return False
        return self._became_leader()

    def _checked(self, at: float) -> bool:
        self._checked_at = at
        return True

    def _became_leader(self) -> bool:
        log.info("became leader (epoch %s)", self._leader().epoch)
        self._checked_at = time.monotonic()
        self.state.role = "leader"
        self.metrics.set_leader(True)
        return True

    def _standby(self) -> None:
        self.state.role = "standby"
        self.metrics.set_leader(False)

    def _mark(self, dependency: str, up: bool) -> None:
        if up:
            self.state.degraded.discard(dependency)
        else:
            self.state.degraded.add(dependency)

    def _record(self, result: PassResult, *, full: bool) -> None:
        if full:
            self.state.last = result
            self._mark("git", not result.git_error)
        if result.cache_errors:
            self._mark("redis", False)
        if result.broker_errors:
            self._mark("rabbitmq", False)
        elif self._deps is not None and self._deps.publisher is not None:
            self._mark("rabbitmq", True)
        if result.backlog is not None:
            self.state.backlog = result.backlog
        if result.last_rejected is not None:
            sha, why = result.last_rejected
            self.state.last_rejected = {"commit": sha, "reason": why}
        if full and not result.git_error:
            before = (self.state.head_rejected or {}).get("commit")
            if result.head_rejected is None:
                self.state.head_rejected = None
            else:
                sha, why = result.head_rejected
                self.state.head_rejected = {"commit": sha, "reason": why}
                if sha != before:
                    log.warning(
                        "the branch head %s is rejected (%s); the last good configuration stays in service",
                        sha[:12],
                        why,
                    )
        if result.applied or result.rejected:
            log.info(
                "head %s: applied %d, rejected %d, new versions %d, published %d",
                (result.head or "")[:12],
                len(result.applied),
                len(result.rejected),
                result.new_versions,
                result.published,
            )
        elif result.published:
            log.info("published %d queued notifications", result.published)

    def run(self) -> int:
        s = self.settings
        rng = random.Random()  # noqa: S311 - jitter, not security
        failures = 0  # consecutive failed rounds (store, git, unexpected)
        behind = 0  # consecutive rounds that left Redis or RabbitMQ behind
        next_pass = 0.0  # monotonic time of the next full pass; 0 = now
        next_repair = 0.0
        started = False  # a first full pass has run: configuration errors are behind us
        while not self.stopping.is_set():
            self.state.heartbeat = time.monotonic()
            try:
                deps = self._deps if self._deps is not None else self.build()
                if not self._lead():
                    if s.once:
                        log.info("another replica is the leader; nothing to do")
                        return ExitCode.OK
                    next_pass = next_repair = 0.0
                    self._sleep(STANDBY_POLL)
                    continue
                epoch = self._leader().epoch
                fence = (s.lock_name, int(epoch)) if epoch is not None else None
                now = time.monotonic()
                if now >= next_repair or "redis" in self.state.degraded:
                    repaired = repair_cache(deps)
                    # Its own fixed cadence, not the jittered poll's: a flushed Redis is
                    # refilled within one interval, whenever the next pass happens to be.
                    next_repair = (
                        max(next_repair + s.interval, now) if next_repair else now + s.interval
                    )
                    self._mark("redis", repaired is not None)
                    if repaired:
                        log.info("cache repaired: %d entries", repaired)
                full = now >= next_pass
                if full:
                    result = reconcile_once(deps, fence=fence)
                    next_pass = time.monotonic() + s.interval * rng.uniform(0.8, 1.2)
                    started = True
                else:
                    result = catch_up(deps)
                self._record(result, full=full)
                self.state.store_reachable = True
                self.state.last_error = None
                self.metrics.set_dependency_up("postgresql", True)
                failures = 0
                if s.once:
                    # findings while the head is rejected, on every run (not only the run
                    # that rejected it), or when this run rejected a commit
                    return (
                        ExitCode.FINDINGS
                        if result.rejected or result.head_rejected
                        else ExitCode.OK
                    )
                delay = min(next_pass, next_repair) - time.monotonic()
                if result.behind or "redis" in self.state.degraded:
                    behind += 1
                    delay = min(
                        delay,
                        backoff(behind, base=0.25, cap=min(CATCH_UP_CAP, s.interval), rng=rng),
                    )
                else:
                    behind = 0
                if self._sleep(delay):
                    next_pass = 0.0  # a verified webhook: fetch now
            except FencingError as exc:
                log.error("fenced: %s; standing by", exc.message)
                if self.leader is not None:
                    self.leader.release()
                self._standby()
            except BackendError as exc:
                if self.stopping.is_set():
                    break  # SIGTERM aborted the git call in flight: not a failure
                failures += 1
                self.state.last_error = exc.message
                if isinstance(exc, StoreError):
                    self.state.store_reachable = False
                    self.metrics.set_dependency_up("postgresql", False)
                if isinstance(exc, GitError):
                    self._mark("git", False)
                if s.once and failures >= 3:
                    log.error("giving up (--once): %s", exc.message)
                    return ExitCode.BACKEND
                delay = backoff(
                    failures, base=0.5, cap=min(30.0, max(1.0, 2 * s.interval)), rng=rng
                )
                log.warning("backend error (retry in %.1fs): %s", delay, exc.message)
                next_pass = 0.0
                self._sleep(delay)
            except ConfigctlError as exc:
                if self.stopping.is_set():
                    break
                if not started and isinstance(exc, UserError):
                    # a wrong URL, branch or path: retrying cannot help
                    log.error("%s%s", exc.message, f" ({exc.hint})" if exc.hint else "")
                    return ExitCode.USAGE
                failures += 1
                self.state.last_error = exc.message
                delay = backoff(
                    failures, base=0.5, cap=min(30.0, max(1.0, 2 * s.interval)), rng=rng
                )
                log.error("pass failed (retry in %.1fs): %s", delay, exc.message)
                if s.once:
                    return ExitCode.USAGE if isinstance(exc, UserError) else ExitCode.INTERNAL
                next_pass = 0.0
                self._sleep(delay)
            except Exception as exc:
                failures += 1
                self.state.last_error = f"internal error: {type(exc).__name__}"
                delay = backoff(
                    failures, base=0.5, cap=min(30.0, max(1.0, 2 * s.interval)), rng=rng
                )
                log.exception("unexpected error (retry in %.1fs)", delay)
                if s.once:
                    return ExitCode.INTERNAL
                next_pass = 0.0
                self._sleep(delay)
        return ExitCode.OK

    def stop(self) -> None:
        """Stop the loop from any thread or a signal handler (see :meth:`abort_io`)."""
        self.stopping.set()
        self.wake.set()
        self.abort_io()
