"""RedisCache against a real Redis: atomic snapshots, never backwards, repair after loss.

Every key lives under the test's own prefix (``redis_prefix``); the tests delete only
those keys, never FLUSHDB/FLUSHALL (the server is shared).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from tests.servers import free_port

from configctl.core.cache import CachedSnapshot
from configctl.errors import CacheError

pytestmark = pytest.mark.integration


def snap(app: str = "billing", env: str = "prod", version: int = 1, *, checksum: str | None = None, values: dict[str, object] | None = None) -> CachedSnapshot:
    return CachedSnapshot(
        app=app,
        env=env,
        version=version,
        commit=f"{version:040x}",
        checksum=checksum or f"sha256:{app}:{env}:{version}",
        values=values if values is not None else {"v": version, "database": {"host": f"db{version}"}},
        updated_at=datetime.now(UTC),
    )


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix.rstrip(":")


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def cache(redis_url: str, prefix: str) -> Iterator[object]:
    from configctl.adapters.redis_cache import RedisCache

    c = RedisCache(redis_url, prefix=prefix)
    yield c
    c.close()


def delete_prefix(raw: redis.Redis, prefix: str) -> int:
    keys = list(raw.scan_iter(match=prefix + ":*", count=500))
    return int(raw.delete(*keys)) if keys else 0


def test_put_get_and_layout(cache: object, raw: redis.Redis, prefix: str) -> None:
    from configctl.adapters.redis_cache import RedisCache

    assert isinstance(cache, RedisCache)
    s = snap(version=3)
    assert cache.put(s) is True
    got = cache.get("billing", "prod")
    assert got is not None
    assert got.version == 3
    assert got.values == s.values
    assert got.checksum == s.checksum
    assert got.commit == s.commit
    # the documented layout
    doc = json.loads(raw.get(f"{prefix}:snapshot:billing:prod") or "")
    assert set(doc) == {"app", "env", "version", "commit", "checksum", "values", "rollouts", "updated_at"}
    assert raw.get(f"{prefix}:version:billing:prod") == "3"
    assert raw.get(f"{prefix}:checksum:billing:prod") == s.checksum
    assert raw.smembers(f"{prefix}:index") == {"billing:prod"}
    assert raw.type(f"{prefix}:snapshot:billing:prod") == "string"
    assert raw.ttl(f"{prefix}:snapshot:billing:prod") == -1
    assert cache.get("billing", "staging") is None
    assert cache.versions() == {("billing", "prod"): 3}
    cache.ping()


def test_never_moves_backwards(cache: object, raw: redis.Redis, prefix: str) -> None:
    from configctl.adapters.redis_cache import RedisCache

    assert isinstance(cache, RedisCache)
    assert cache.put(snap(version=5))
    assert cache.put(snap(version=4)) is False
    assert cache.put(snap(version=1)) is False
    got = cache.get("billing", "prod")
    assert got is not None
    assert got.version == 5
    # identical write: nothing to do
    assert cache.put(snap(version=5)) is False
    # same version, different checksum (damaged or foreign entry): the store wins
    assert cache.put(snap(version=5, checksum="sha256:fixed", values={"v": "fixed"})) is True
    got = cache.get("billing", "prod")
    assert got is not None
    assert got.values == {"v": "fixed"}
    assert cache.put(snap(version=6))
    # the hint keys are gone (deleted by hand): the script reads the snapshot itself
    raw.delete(f"{prefix}:version:billing:prod", f"{prefix}:checksum:billing:prod")
    assert cache.put(snap(version=2)) is False
    got = cache.get("billing", "prod")
    assert got is not None
    assert got.version == 6


def test_reader_never_sees_a_mix(cache: object, redis_url: str, prefix: str) -> None:
    """A reader polling while versions advance always gets one whole, self-consistent snapshot."""
    from configctl.adapters.redis_cache import RedisCache

    assert isinstance(cache, RedisCache)
    reader = RedisCache(redis_url, prefix=prefix)
    big = {f"key{i}": "x" * 200 for i in range(300)}  # ~60 KB per snapshot
    cache.put(snap(version=1, values={"v": 1, **big}))
    stop = threading.Event()
    seen: list[int] = []
    problems: list[str] = []

    def read() -> None:
        last = 0
        while not stop.is_set():
            got = reader.get("billing", "prod")
            if got is None:
                problems.append("vanished")
                continue
            if got.values["v"] != got.version or got.checksum != f"sha256:billing:prod:{got.version}":
                problems.append(f"mixed: version {got.version} with values of {got.values['v']}")
            if got.version < last:
                problems.append(f"went back from {last} to {got.version}")
            last = got.version
            seen.append(got.version)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for version in range(2, 80):
            cache.put(snap(version=version, values={"v": version, **big}))
    finally:
        stop.set()
        thread.join()
        reader.close()
    assert not problems, problems[:5]
    assert len(set(seen)) > 1


def test_repair_refills_after_loss(cache: object, raw: redis.Redis, prefix: str) -> None:
    from configctl.adapters.redis_cache import RedisCache

    assert isinstance(cache, RedisCache)
    expected = {(a, e): snap(a, e, v) for (a, e, v) in [("billing", "prod", 3), ("billing", "dev", 1), ("search", "prod", 7)]}
    for s in expected.values():
        cache.put(s)
    assert cache.repair(expected) == 0  # in sync: nothing to do

    assert delete_prefix(raw, prefix) > 0  # Redis lost everything (restart without persistence)
    assert cache.versions() == {}
    assert cache.repair(expected) == 3
    assert cache.versions() == {k: s.version for k, s in expected.items()}
    for key, s in expected.items():
        got = cache.get(*key)
        assert got is not None
        assert got.values == s.values
    assert raw.smembers(f"{prefix}:index") == {"billing:prod", "billing:dev", "search:prod"}
    assert cache.repair(expected) == 0


def test_repair_fixes_stale_missing_damaged_and_unexpected(cache: object, raw: redis.Redis, prefix: str) -> None:
    from configctl.adapters.redis_cache import RedisCache

    assert isinstance(cache, RedisCache)
    cache.put(snap("billing", "prod", 2))  # stale: store says 4
    cache.put(snap("old", "prod", 1))  # no longer served: must go
    cache.put(snap("search", "prod", 9))  # newer than the store: left alone
    cache.put(snap("auth", "prod", 5))
    raw.set(f"{prefix}:snapshot:auth:prod", "{not json")  # damaged content, hints intact
    raw.set(f"{prefix}:checksum:auth:prod", "sha256:whatever")  # ...and its checksum hint differs
    cache.put(snap("mail", "prod", 1))
    raw.srem(f"{prefix}:index", "mail:prod")  # index lost a member
    raw.sadd(f"{prefix}:index", "ghost:prod")  # index member without a snapshot
    raw.set(f"{prefix}:unrelated", "keep me")  # not a cache key: untouched

    expected = {
        ("billing", "prod"): snap("billing", "prod", 4),
        ("search", "prod"): snap("search", "prod", 8),
        ("auth", "prod"): snap("auth", "prod", 5),
        ("mail", "prod"): snap("mail", "prod", 1),
        ("new", "prod"): snap("new", "prod", 1),
    }
    repaired = cache.repair(expected)
    # billing (stale), auth (damaged), mail (index), new (missing), old + ghost (deleted)
    assert repaired == 6
    assert cache.versions() == {
        ("billing", "prod"): 4,
        ("search", "prod"): 9,
        ("auth", "prod"): 5,
        ("mail", "prod"): 1,
        ("new", "prod"): 1,
    }
    auth = cache.get("auth", "prod")
    assert auth is not None
    assert auth.values == expected[("auth", "prod")].values
    assert cache.get("old", "prod") is None
    assert raw.exists(f"{prefix}:version:old:prod") == 0
    assert raw.smembers(f"{prefix}:index") == {"billing:prod", "search:prod", "auth:prod", "mail:prod", "new:prod"}
    assert raw.get(f"{prefix}:unrelated") == "keep me"
    assert cache.repair(expected) == 0
    # an operator who knows the store was reset may move it back explicitly
    assert cache.repair(expected, allow_backwards=True) == 1
    assert cache.versions()[("search", "prod")] == 8


def test_malformed_entry_is_a_cache_error(cache: object, raw: redis.Redis, prefix: str) -> None:
    from configctl.adapters.redis_cache import RedisCache

    assert isinstance(cache, RedisCache)
    raw.set(f"{prefix}:snapshot:billing:prod", '{"password": "hunter2"')
    with pytest.raises(CacheError) as info:
        cache.get("billing", "prod")
    assert "hunter2" not in str(info.value)


def test_names_are_checked(cache: object) -> None:
    from configctl.adapters.redis_cache import RedisCache

    assert isinstance(cache, RedisCache)
    with pytest.raises(ValueError, match="DNS label"):
        cache.get("billing:prod", "x")


def test_unreachable_redis_fails_fast_with_cache_error() -> None:
    from configctl.adapters.redis_cache import RedisCache

    c = RedisCache(f"redis://:topsecret@127.0.0.1:{free_port()}/0", socket_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(CacheError) as info:
        c.ping()
    assert time.monotonic() - started < 2
    assert "topsecret" not in str(info.value)
    with pytest.raises(CacheError):
        c.put(snap())
    with pytest.raises(CacheError):
        c.repair({})


def test_a_stalled_redis_surfaces_as_timeout_not_silent_retries(cache: object, redis_url: str, raw: redis.Redis) -> None:
    """reliability-notes §5.2: with redis-py's default retry a 2 s stall never surfaced."""
    from configctl.adapters.redis_cache import RedisCache

    c = RedisCache(redis_url, prefix="configctl-test-stall", socket_timeout=0.3)
    c.ping()
    raw.client_pause(1200, all=True)
    try:
        started = time.monotonic()
        with pytest.raises(CacheError):
            c.get("billing", "prod")
        elapsed = time.monotonic() - started
    finally:
        raw.client_unpause()
        c.close()
    assert elapsed < 0.9, f"took {elapsed:.2f} s: retried silently"
