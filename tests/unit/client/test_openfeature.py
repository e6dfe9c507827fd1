"""The OpenFeature provider, driven through the OpenFeature API itself (issue 9, item 5).

The snapshot comes from a snapshot folder (the embedded mode), so no server is needed;
the provider serves the same ConfigClient either way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.flag_evaluation import ErrorCode, Reason

from configctl.adapters.snapshot_dir import SnapshotDir
from configctl.core.cache import CachedSnapshot
from configctl.openfeature import ConfigctlProvider

ROLLOUTS: tuple[dict[str, object], ...] = (
    {"name": "new-checkout", "kind": "flag", "rules": [{"attribute": "country", "op": "in", "value": ["DE"]}]},
    {"name": "half", "kind": "flag", "percentage": 5000},
    {"name": "vip-timeout", "key": "database.timeout", "value": 99, "users": ["vip"], "percentage": 0},
)


def put(folder: Path, version: int, values: dict[str, Any] | None = None) -> None:
    SnapshotDir(folder).put(
        CachedSnapshot(
            app="checkout", env="production", version=version, commit=None, checksum=f"c{version}",
            values=values or {"database": {"timeout": 5, "host": "db"}, "ratio": 0.25, "theme": "dark", "beta": True, "limits": {"rps": 10}},
            updated_at=datetime.now(UTC), rollouts=ROLLOUTS,
        )
    )


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[ConfigctlProvider]:
    put(tmp_path / "snaps", 1)
    p = ConfigctlProvider(
        "checkout", "production", snapshot_dir=tmp_path / "snaps", cache_dir=tmp_path / "lkg", environ={},
        refresh_interval=0.2,
    )  # fmt: skip
    api.set_provider_and_wait(p)
    yield p
    api.shutdown()
    api.clear_providers()


def test_boolean_flags_with_targeting_and_split(provider: ConfigctlProvider) -> None:
    flags = api.get_client()
    de = flags.get_boolean_details("new-checkout", False, EvaluationContext("u1", {"country": "DE"}))
    assert (de.value, de.reason, de.variant, de.error_code) == (True, Reason.TARGETING_MATCH, "on", None)
    assert de.flag_metadata["version"] == 1
    assert de.flag_metadata["rollout"] == "new-checkout"
    fr = flags.get_boolean_details("new-checkout", True, EvaluationContext("u1", {"country": "FR"}))
    assert fr.value is False
    # a percentage flag splits on the targeting key (user_id), stickily
    split = [flags.get_boolean_details("half", False, EvaluationContext(f"user-{i}")) for i in range(200)]
    assert {d.reason for d in split} <= {Reason.SPLIT, Reason.DEFAULT}
    share = sum(d.value for d in split) / len(split)
    assert 0.3 < share < 0.7
    again = [flags.get_boolean_value("half", False, EvaluationContext(f"user-{i}")) for i in range(200)]
    assert again == [d.value for d in split]
    # a plain boolean key is a static flag
    beta = flags.get_boolean_details("beta", False)
    assert (beta.value, beta.reason) == (True, Reason.STATIC)


def test_typed_values_static_and_rollout(provider: ConfigctlProvider) -> None:
    flags = api.get_client()
    assert flags.get_string_details("theme", "light").value == "dark"
    timeout = flags.get_integer_details("database.timeout", 1)
    assert (timeout.value, timeout.reason) == (5, Reason.DEFAULT)
    vip = flags.get_integer_details("database.timeout", 1, EvaluationContext("vip"))
    assert (vip.value, vip.reason, vip.flag_metadata["rollout"]) == (99, Reason.TARGETING_MATCH, "vip-timeout")
    assert flags.get_float_details("ratio", 0.0).value == 0.25
    assert flags.get_float_value("database.timeout", 0.0) == 5.0
    obj = flags.get_object_details("limits", {})
    assert (obj.value, obj.reason) == ({"rps": 10}, Reason.STATIC)


def test_errors_flag_not_found_and_type_mismatch(provider: ConfigctlProvider) -> None:
    flags = api.get_client()
    missing = flags.get_boolean_details("no-such-flag", True)
    assert (missing.value, missing.reason, missing.error_code) == (True, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
    wrong = flags.get_integer_details("theme", 3)
    assert (wrong.value, wrong.reason, wrong.error_code) == (3, Reason.ERROR, ErrorCode.TYPE_MISMATCH)
    flag_as_string = flags.get_string_details("new-checkout", "x")
    assert flag_as_string.error_code == ErrorCode.TYPE_MISMATCH


def test_configuration_changed_event_when_a_new_version_is_adopted(provider: ConfigctlProvider, tmp_path: Path) -> None:
    got: list[EventDetails] = []
    done = threading.Event()

    def handler(details: EventDetails) -> None:
        got.append(details)
        done.set()

    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, handler)
    try:
        put(tmp_path / "snaps", 2, {"database": {"timeout": 7, "host": "db"}, "theme": "dark"})
        assert done.wait(10)
        assert got[0].flags_changed is not None
        assert "database.timeout" in got[0].flags_changed
        assert got[0].metadata["version"] == 2
        assert api.get_client().get_integer_value("database.timeout", 0) == 7
    finally:
        api.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, handler)


def test_stale_and_ready_events_follow_the_client_state(provider: ConfigctlProvider, tmp_path: Path) -> None:
    events: list[tuple[ProviderEvent, EventDetails]] = []
    stale, ready = threading.Event(), threading.Event()

    def on_stale(details: EventDetails) -> None:
        events.append((ProviderEvent.PROVIDER_STALE, details))
        stale.set()

    def on_ready(details: EventDetails) -> None:
        events.append((ProviderEvent.PROVIDER_READY, details))
        ready.set()

    api.add_handler(ProviderEvent.PROVIDER_STALE, on_stale)
    try:
        snapshot = next((tmp_path / "snaps").rglob("*.json"))
        good = snapshot.read_bytes()
        snapshot.write_bytes(b"{ not a snapshot")  # the source answers with something unusable
        assert provider.client.refresh() is True
        assert stale.wait(10)
        assert events[-1][1].message is not None
        assert "stale" in events[-1][1].message
        # evaluation goes on from the version held
        assert api.get_client().get_integer_value("database.timeout", 0) == 5
        api.add_handler(ProviderEvent.PROVIDER_READY, on_ready)
        ready.clear()
        snapshot.write_bytes(good)
        provider.client.refresh()
        assert ready.wait(10)
        assert events[-1][0] == ProviderEvent.PROVIDER_READY
    finally:
        api.remove_handler(ProviderEvent.PROVIDER_STALE, on_stale)
        api.remove_handler(ProviderEvent.PROVIDER_READY, on_ready)
