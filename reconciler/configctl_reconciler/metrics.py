"""The reconciler's Prometheus metrics, defined once on a dedicated registry.

A dedicated :class:`~prometheus_client.CollectorRegistry` (not the library's global one)
so two reconcilers in one test process do not collide and ``/metrics`` shows exactly
what is listed here, plus the standard ``process_*`` metrics.

| Metric | Type | Meaning |
|---|---|---|
| ``configctl_commits_applied_total`` | counter | commits recorded in the store |
| ``configctl_commits_rejected_total{reason}`` | counter | commits refused; ``reason`` is ``validation``, ``signature`` or ``other`` |
| ``configctl_sync_duration_seconds`` | histogram | one sync pass (fetch, apply, warm, relay) |
| ``configctl_last_sync_success_timestamp_seconds`` | gauge | Unix time of the last successful sync (0 = none yet) |
| ``configctl_seconds_since_last_sync`` | gauge | seconds since the last successful sync (since start if none yet), computed at scrape time |
| ``configctl_outbox_backlog`` | gauge | outbox rows not yet published |
| ``configctl_redis_repairs_total`` | counter | Redis entries written or deleted by a check |
| ``configctl_leader`` | gauge | 1 while this replica leads, else 0 |
| ``configctl_dependency_up{dependency}`` | gauge | 1 if the dependency answered its last check; ``postgresql``, ``redis``, ``rabbitmq``, ``git`` |

Labels are closed sets (STYLE.md §12): never an app, key or revision. Alert on
``configctl_seconds_since_last_sync`` (computed from a monotonic clock, so a wall-clock
jump cannot hide a stalled loop) and on ``configctl_outbox_backlog``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.process_collector import ProcessCollector

__all__ = ["DEPENDENCIES", "REJECT_REASONS", "ReconcilerMetrics"]

DEPENDENCIES: Final = ("postgresql", "redis", "rabbitmq", "git")
REJECT_REASONS: Final = ("validation", "signature", "other")

# A pass is usually well under a second; a big tree or a slow git server takes tens of
# seconds, and the git timeout bounds it at a few minutes.
_SYNC_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class ReconcilerMetrics:
    """Every metric of the reconciler, with small methods the loop calls.

    ``clock`` (monotonic seconds) and ``wall_clock`` (Unix seconds) are inputs so tests
    can drive them.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        process_metrics: bool = True,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._wall_clock = wall_clock
        self._started = clock()
        self._last_success: float | None = None
        r = self.registry
        self.commits_applied = Counter(
            "configctl_commits_applied", "Commits recorded in the store.", registry=r
        )
        self.commits_rejected = Counter(
            "configctl_commits_rejected",
            "Commits refused (invalid tree, missing or unknown signature).",
            ["reason"],
            registry=r,
        )
        self.webhook_syncs = Counter(
            "configctl_webhook_syncs",
            "Verified pushes to the followed branch that woke the loop for a sync.",
            registry=r,
        )
        self.sync_duration = Histogram(
            "configctl_sync_duration_seconds",
            "Duration of one sync pass (fetch, apply, cache warm, outbox relay).",
            buckets=_SYNC_BUCKETS,
            registry=r,
        )
        self.last_sync_success = Gauge(
            "configctl_last_sync_success_timestamp_seconds",
            "Unix time of the last successful sync; 0 before the first.",
            registry=r,
        )
        self.seconds_since_last_sync = Gauge(
            "configctl_seconds_since_last_sync",
            "Seconds since the last successful sync (since process start if none yet).",
            registry=r,
        )
        self.seconds_since_last_sync.set_function(self._since_last_sync)
        self.outbox_backlog = Gauge(
            "configctl_outbox_backlog", "Outbox rows not yet confirmed by the broker.", registry=r
        )
        self.redis_repairs = Counter(
            "configctl_redis_repairs", "Redis entries written or deleted by a consistency check.", registry=r
        )
        self.leader = Gauge("configctl_leader", "1 while this replica is the leader, else 0.", registry=r)
        self.dependency_up = Gauge(
            "configctl_dependency_up",
            "1 if the dependency answered its last check, else 0.",
            ["dependency"],
            registry=r,
        )
        for reason in REJECT_REASONS:
            self.commits_rejected.labels(reason=reason)
        for dependency in DEPENDENCIES:
            self.dependency_up.labels(dependency=dependency).set(0)
        if process_metrics:
            ProcessCollector(registry=r)

    # -- what the loop calls ------------------------------------------------------------

    def commit_applied(self, count: int = 1) -> None:
        self.commits_applied.inc(count)

    def commit_rejected(self, reason: str = "validation") -> None:
        if reason not in REJECT_REASONS:
            reason = "other"
        self.commits_rejected.labels(reason=reason).inc()

    def webhook_sync(self) -> None:
        self.webhook_syncs.inc()

    def observe_sync(self, seconds: float, *, ok: bool) -> None:
        """Record one sync pass; a successful one also resets the "since last sync" clock."""
        self.sync_duration.observe(seconds)
        if ok:
            self._last_success = self._clock()
            self.last_sync_success.set(self._wall_clock())

    def set_outbox_backlog(self, rows: int) -> None:
        self.outbox_backlog.set(rows)

    def redis_repaired(self, entries: int) -> None:
        if entries > 0:
            self.redis_repairs.inc(entries)

    def set_leader(self, leader: bool) -> None:
        self.leader.set(1 if leader else 0)

    def set_dependency_up(self, dependency: str, up: bool) -> None:
        if dependency not in DEPENDENCIES:
            raise ValueError(f"unknown dependency {dependency!r}; expected one of {DEPENDENCIES}")
        self.dependency_up.labels(dependency=dependency).set(1 if up else 0)

    # -- exposition -----------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _since_last_sync(self) -> float:
        reference = self._last_success if self._last_success is not None else self._started
        return max(0.0, self._clock() - reference)
