"""The reconciler's Prometheus metrics (configctl_reconciler.metrics)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from configctl_reconciler.metrics import DEPENDENCIES, ReconcilerMetrics


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def samples(m: ReconcilerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_all_metrics_exist_on_a_dedicated_registry() -> None:
    m = ReconcilerMetrics(process_metrics=False)
    names = {name for name, _ in samples(m)}
    for expected in (
        "configctl_commits_applied_total",
        "configctl_commits_rejected_total",
        "configctl_webhook_syncs_total",
        "configctl_sync_duration_seconds_count",
        "configctl_last_sync_success_timestamp_seconds",
        "configctl_seconds_since_last_sync",
        "configctl_outbox_backlog",
        "configctl_redis_repairs_total",
        "configctl_leader",
        "configctl_dependency_up",
    ):
        assert expected in names
    # a second instance does not collide (no global registry)
    ReconcilerMetrics(process_metrics=False)


def test_updates() -> None:
    clock, wall = Clock(), Clock()
    m = ReconcilerMetrics(clock=clock, wall_clock=wall, process_metrics=False)
    m.commit_applied()
    m.commit_applied(2)
    m.commit_rejected("signature")
    m.commit_rejected("something-new")  # folded into "other": labels stay a closed set
    m.set_outbox_backlog(7)
    m.redis_repaired(3)
    m.redis_repaired(0)
    m.set_leader(True)
    m.set_dependency_up("redis", True)
    s = samples(m)
    assert s[("configctl_commits_applied_total", ())] == 3
    assert s[("configctl_commits_rejected_total", (("reason", "signature"),))] == 1
    assert s[("configctl_commits_rejected_total", (("reason", "other"),))] == 1
    assert s[("configctl_commits_rejected_total", (("reason", "validation"),))] == 0
    assert s[("configctl_outbox_backlog", ())] == 7
    assert s[("configctl_redis_repairs_total", ())] == 3
    assert s[("configctl_leader", ())] == 1
    assert s[("configctl_dependency_up", (("dependency", "redis"),))] == 1
    assert s[("configctl_dependency_up", (("dependency", "git"),))] == 0
    assert {dep for (name, labels) in s if name == "configctl_dependency_up" for _, dep in labels} == set(DEPENDENCIES)


def test_seconds_since_last_sync_is_computed_at_scrape() -> None:
    clock, wall = Clock(), Clock()
    wall.t = 1_700_000_000.0
    m = ReconcilerMetrics(clock=clock, wall_clock=wall, process_metrics=False)
    clock.t += 42
    assert samples(m)[("configctl_seconds_since_last_sync", ())] == 42  # since start
    m.observe_sync(1.5, ok=True)
    assert samples(m)[("configctl_last_sync_success_timestamp_seconds", ())] == 1_700_000_000.0
    clock.t += 10
    m.observe_sync(0.2, ok=False)  # a failed pass does not reset it
    clock.t += 5
    s = samples(m)
    assert s[("configctl_seconds_since_last_sync", ())] == 15
    assert s[("configctl_sync_duration_seconds_count", ())] == 2


def test_unknown_dependency_is_a_bug() -> None:
    m = ReconcilerMetrics(process_metrics=False)
    with pytest.raises(ValueError, match="unknown dependency"):
        m.set_dependency_up("mysql", True)


def test_process_metrics_included_by_default() -> None:
    m = ReconcilerMetrics()
    assert any(name.startswith("process_") for name, _ in samples(m))
