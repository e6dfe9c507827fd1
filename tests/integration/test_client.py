"""The client SDK against the real Redis and RabbitMQ (issue 9, items 4 and 6).

Snapshots are written with the reconciler's own cache adapter and announced with its own
publisher, so the client reads exactly what the reconciler writes; the end-to-end tests
with a running reconciler are in ``test_client_reconciler.py``. Tests that stop a server
start a private throwaway one (``tests.servers``). Every wait is bounded and waits on an
event (a listener, a state), never on a sleep.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from tests.integration.reconciler_harness import wait_for

from configctl.adapters.amqp import AmqpPublisher
from configctl.adapters.redis_cache import RedisCache
from configctl.client import AsyncConfigClient, ChangeEvent, ConfigClient
from configctl.core.cache import CachedSnapshot

pytestmark = pytest.mark.integration

APP, ENV = "checkout", "production"

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "database": {
            "type": "object",
            "properties": {"timeout": {"type": "integer", "minimum": 1}, "host": {"type": "string"}},
        }
    },
}


def snap(version: int, values: dict[str, Any] | None = None, *, rollouts: tuple[dict[str, object], ...] = ()) -> CachedSnapshot:
    return CachedSnapshot(
        app=APP,
        env=ENV,
        version=version,
        commit=None,
        checksum=f"sha256:{version}:{uuid.uuid4().hex[:6]}",
        values=values if values is not None else {"database": {"host": "db", "timeout": version}, "ratio": 0.5, "on": True, "hosts": ["a"]},
        updated_at=datetime.now(UTC),
        rollouts=rollouts,
    )


def announce(publisher: AmqpPublisher, version: int, changed: list[str] | None = None) -> None:
    """A notification exactly as the reconciler's outbox sends it (schemas/v1)."""
    body = {
        "id": str(uuid.uuid4()),
        "app": APP,
        "env": ENV,
        "version": version,
        "previous_version": version - 1 if version > 1 else None,
        "commit": None,
        "changed_keys": changed or ["database.timeout"],
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "reason": "commit",
    }
    publisher.publish(f"{APP}.{ENV}", json.dumps(body).encode(), body["id"])


class Seen:
    """Collects change events; ``wait(version)`` blocks until one reaches it."""

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: ChangeEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait(self, version: int, timeout: float = 10) -> ChangeEvent:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(e.new_version >= version for e in self.events), timeout)
        assert ok, f"no change to version {version} within {timeout} s (seen {self.events})"
        return next(e for e in self.events if e.new_version >= version)


@pytest.fixture
def cache(redis_url: str, redis_prefix: str) -> Iterator[RedisCache]:
    c = RedisCache(redis_url, prefix=redis_prefix)
    yield c
    c.close()


@pytest.fixture
def publisher(amqp_url: str, amqp_exchange: str) -> Iterator[AmqpPublisher]:
    with AmqpPublisher(amqp_url, amqp_exchange) as p:
        yield p


@pytest.fixture
def settings(redis_url: str, redis_prefix: str, amqp_url: str, amqp_exchange: str, tmp_path: Path) -> dict[str, Any]:
    """Everything explicit: the test process's CONFIGCTL_* variables must not leak in."""
    return {
        "redis": redis_url, "redis_prefix": redis_prefix, "amqp": amqp_url, "exchange": amqp_exchange,
        "cache_dir": tmp_path / "lkg", "environ": {}, "refresh_interval": 60,
    }  # fmt: skip


# --------------------------------------------------------------------------- reads


def test_reads_from_redis_typed_getters_get_all_and_state(cache: RedisCache, settings: dict[str, Any], redis_url: str, redis_prefix: str) -> None:
    cache.put(snap(3))
    with ConfigClient(APP, ENV, **settings) as client:
        assert client.get("database.timeout") == 3
        assert client.get("database") == {"host": "db", "timeout": 3}
        assert client.get("missing", "dflt") == "dflt"
        assert client["database.host"] == "db"
        with pytest.raises(KeyError):
            client["nope"]
        assert client.get_int("database.timeout") == 3
        assert client.get_str("database.host") == "db"
        assert client.get_float("database.timeout") == 3.0
        assert client.get_float("ratio") == 0.5
        assert client.get_bool("on") is True
        assert client.get_list("hosts") == ["a"]
        assert client.get_dict("database") == {"host": "db", "timeout": 3}
        assert client.get_int("missing", 7) == 7
        with pytest.raises(TypeError, match=r"database\.host"):
            client.get_int("database.host")
        with pytest.raises(TypeError):
            client.get_int("on")  # a boolean is not an integer
        assert client.get_all() == {"database.host": "db", "database.timeout": 3, "ratio": 0.5, "on": True, "hosts": ["a"]}
        assert client.is_enabled("on") is True
        assert client.is_enabled("not-a-flag") is False
        state = client.state
        assert (state.version, state.source, state.fresh, state.stale_since) == (3, "redis", True, None)
        # the client reports what it holds, with a TTL
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        key = f"{redis_prefix}:clients:{APP}:{ENV}"
        reports = wait_for(lambda: r.hgetall(key), timeout=5, what="a client report")
        (report,) = (json.loads(v) for v in reports.values())
        assert report["version"] == 3
        assert report["state"] == "fresh"
        assert 0 < r.ttl(key) <= 90
    assert r.hgetall(key) == {}  # withdrawn on close


def test_notification_refreshes_at_once_and_listeners_that_raise_do_not_stop_others(
    cache: RedisCache, publisher: AmqpPublisher, settings: dict[str, Any]
) -> None:
    cache.put(snap(1))
    with ConfigClient(APP, ENV, **settings) as client:
        assert client.wait_connected(10)
        calls: list[str] = []

        def broken(_: ChangeEvent) -> None:
            calls.append("broken")
            raise RuntimeError("listener bug")

        seen = Seen()
        client.on_change(broken)
        client.on_change(seen)
        cache.put(snap(2))
        announce(publisher, 2)
        event = seen.wait(2, timeout=5)
        assert calls == ["broken"]
        assert (event.old_version, event.new_version, event.changed_keys) == (1, 2, ("database.timeout",))
        assert client.get("database.timeout") == 2
        # a duplicate or older announcement changes nothing
        announce(publisher, 2)
        announce(publisher, 1)
        cache.put(snap(3))
        announce(publisher, 3)
        seen.wait(3, timeout=5)
        assert [e.new_version for e in seen.events] == [2, 3]


def test_a_version_failing_the_schema_is_refused_and_the_last_good_one_kept(
    cache: RedisCache, publisher: AmqpPublisher, settings: dict[str, Any], redis_url: str, redis_prefix: str
) -> None:
    cache.put(snap(1))
    with ConfigClient(APP, ENV, schema=SCHEMA, **settings) as client:
        assert client.wait_connected(10)
        seen = Seen()
        client.on_change(seen)
        cache.put(snap(2, {"database": {"host": "db", "timeout": "soon"}}))
        announce(publisher, 2)
        wait_for(lambda: client.state.refused_version == 2, timeout=5, what="the refusal")
        state = client.state
        assert state.version == 1
        assert client.get("database.timeout") == 1
        assert state.refused_reason is not None
        assert "database.timeout" in state.refused_reason
        assert "soon" not in state.refused_reason  # never a value
        assert seen.events == []
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        report = wait_for(
            lambda: [json.loads(v) for v in r.hgetall(f"{redis_prefix}:clients:{APP}:{ENV}").values() if json.loads(v)["refused_version"] == 2],
            timeout=5, what="the refusal in the report",
        )  # fmt: skip
        assert report[0]["version"] == 1
        # the next good version is adopted
        cache.put(snap(3))
        announce(publisher, 3)
        assert seen.wait(3).old_version == 1
        assert client.state.refused_version is None  # superseded by a newer good version
    # the last-known-good file holds the good version, not the refused one
    lkg = list((Path(settings["cache_dir"])).glob(f"{APP}.{ENV}.*.json"))
    assert len(lkg) == 1
    assert json.loads(lkg[0].read_text())["version"] == 3


def test_rollouts_are_evaluated_locally_and_explained(cache: RedisCache, settings: dict[str, Any]) -> None:
    rollouts = (
        {"name": "timeout-99", "key": "database.timeout", "value": 99, "users": ["vip"], "percentage": 0},
        {"name": "new-checkout", "kind": "flag", "rules": [{"attribute": "country", "op": "in", "value": ["DE"]}]},
    )
    cache.put(snap(4, rollouts=rollouts))
    with ConfigClient(APP, ENV, **settings) as client:
        assert client.get("database.timeout") == 4  # no context: the base value
        assert client.get("database.timeout", context={"user_id": "someone"}) == 4
        assert client.get("database.timeout", context={"user_id": "vip"}) == 99
        assert client.get_int("database.timeout", context={"user_id": "vip"}) == 99
        assert client.get_all({"user_id": "vip"})["database.timeout"] == 99
        assert client.is_enabled("new-checkout", {"country": "DE"}) is True
        assert client.is_enabled("new-checkout", {"country": "FR"}) is False
        assert client.is_enabled("new-checkout") is False
        why = client.explain("database.timeout", {"user_id": "vip"})
        assert (why.value, why.base_value, why.version, why.rollout, why.reason) == (99, 4, 4, "timeout-99", "targeting_match")
        assert why.rule == "users"
        plain = client.explain("database.host")
        assert (plain.value, plain.reason, plain.rollout) == ("db", "static", None)


# --------------------------------------------------------------------------- outages


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_started_while_redis_and_rabbitmq_are_down_serves_the_last_known_good_and_recovers(tmp_path: Path) -> None:
    from tests.servers import RabbitServer, RedisServer

    redis_server, rabbit = RedisServer(), RabbitServer()
    try:
        redis_url, amqp_url = redis_server.start(), rabbit.start()
        args: dict[str, Any] = {
            "redis": redis_url, "amqp": amqp_url, "cache_dir": tmp_path / "lkg", "environ": {},
            "refresh_interval": 1.0,
        }  # fmt: skip
        cache = RedisCache(redis_url)
        cache.put(snap(5))
        with ConfigClient(APP, ENV, **args) as first:
            assert first.version == 5
        redis_server.stop()
        rabbit.stop()

        with ConfigClient(APP, ENV, **args) as client:
            state = client.state
            assert (state.version, state.source, state.fresh) == (5, "last_known_good", False)
            assert state.stale_since is not None
            assert client.get("database.timeout") == 5
            assert state.error is not None
            seen = Seen()
            client.on_change(seen)
            # the servers come back (Redis empty: no persistence); the reconciler refills it
            redis_server.start()
            rabbit.start()
            RedisCache(redis_url).put(snap(6))
            seen.wait(6, timeout=30)
            wait_for(lambda: client.state.fresh, timeout=10, what="fresh again")
            assert client.state.source == "redis"
            assert client.wait_connected(30)
            # and notifications flow again
            cache2 = RedisCache(redis_url)
            cache2.put(snap(7))
            with AmqpPublisher(amqp_url) as pub:
                announce(pub, 7)
            seen.wait(7, timeout=10)
    finally:
        redis_server.cleanup()
        rabbit.cleanup()


def test_redis_restarted_keeps_serving_then_catches_up(tmp_path: Path) -> None:
    from tests.servers import RedisServer

    server = RedisServer()
    try:
        url = server.start()
        RedisCache(url).put(snap(1))
        with ConfigClient(APP, ENV, redis=url, cache_dir=tmp_path, environ={}, refresh_interval=0.5) as client:
            seen = Seen()
            client.on_change(seen)
            server.stop()
            wait_for(lambda: not client.state.fresh, timeout=10, what="stale while Redis is down")
            assert client.get("database.timeout") == 1  # served from memory
            assert client.state.stale_since is not None
            server.start()
            RedisCache(url).put(snap(2))
            seen.wait(2, timeout=15)
            wait_for(lambda: client.state.fresh, timeout=5, what="fresh again")
    finally:
        server.cleanup()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_broker_restarted_between_two_changes_the_client_ends_on_the_newest(
    cache: RedisCache, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    from tests.servers import RabbitServer

    rabbit = RabbitServer()
    try:
        amqp_url = rabbit.start()
        cache.put(snap(1))
        # a TTL of 10 minutes: only notifications and the reconnect check can move it
        with ConfigClient(
            APP, ENV, redis=redis_url, redis_prefix=redis_prefix, amqp=amqp_url, cache_dir=tmp_path,
            environ={}, refresh_interval=600,
        ) as client:  # fmt: skip
            assert client.wait_connected(15)
            seen = Seen()
            client.on_change(seen)
            cache.put(snap(2))
            with AmqpPublisher(amqp_url) as pub:
                announce(pub, 2)
            seen.wait(2)
            rabbit.stop()
            # the second change is made while the broker is down: its message is lost
            cache.put(snap(3))
            rabbit.start()
            seen.wait(3, timeout=60)
            assert client.version == 3
    finally:
        rabbit.cleanup()


# --------------------------------------------------------------------------- asyncio


def test_async_client_classic_call_shape(cache: RedisCache, publisher: AmqpPublisher, settings: dict[str, Any]) -> None:
    cache.put(snap(1))

    async def main() -> None:
        client = AsyncConfigClient(APP, ENV, **settings)
        await client.initialize()
        assert client.get("database.timeout") == 1
        assert client.state.source == "redis"
        changed = asyncio.Event()
        events: list[ChangeEvent] = []

        async def on_change(event: ChangeEvent) -> None:
            events.append(event)
            changed.set()

        client.on_change(on_change)
        await client.start_auto_refresh(interval=60)
        await asyncio.to_thread(wait_for, lambda: client._hub.notifier_connected(settings["amqp"], settings["exchange"]), timeout=10, what="notifier")
        event = client._hub.notifier_connected(settings["amqp"], settings["exchange"])
        assert event is not None
        await asyncio.to_thread(event.wait, 10)
        cache.put(snap(2))
        announce(publisher, 2)
        await asyncio.wait_for(changed.wait(), 10)
        assert events[0].new_version == 2
        assert client.get_int("database.timeout") == 2
        # an explicit refresh with nothing new answers True and changes nothing
        assert await client.refresh() is True
        await client.close()

    asyncio.run(main())


def test_async_client_as_context_manager_from_the_snapshot_folder(tmp_path: Path) -> None:
    from configctl.adapters.snapshot_dir import SnapshotDir

    SnapshotDir(tmp_path / "snaps").put(snap(9))

    async def main() -> None:
        async with AsyncConfigClient(APP, ENV, snapshot_dir=tmp_path / "snaps", cache_dir=tmp_path / "lkg", environ={}) as client:
            assert client.version == 9
            assert client.state.source == "snapshot_dir"

    asyncio.run(main())
