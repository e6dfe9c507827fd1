"""ConfigClient and AsyncConfigClient without servers: the embedded mode (a snapshot folder),
the last-known-good file, the adoption rules, settings, listeners and thread safety.
The Redis and RabbitMQ paths are in ``tests/integration/test_client*.py``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from configctl.adapters.snapshot_dir import SnapshotDir
from configctl.client import ChangeEvent, ConfigClient
from configctl.client.settings import ClientSettings, from_env
from configctl.core.cache import CachedSnapshot
from configctl.errors import UsageError

APP, ENV = "checkout", "production"


def put(folder: Path, version: int, values: dict[str, Any] | None = None, *, allow_backwards: bool = False) -> None:
    snap = CachedSnapshot(
        app=APP, env=ENV, version=version, commit=None, checksum=f"c{version}-{json.dumps(values, sort_keys=True)}",
        values=values if values is not None else {"a": version, "b": version, "db": {"timeout": version}},
        updated_at=datetime.now(UTC),
    )  # fmt: skip
    d = SnapshotDir(folder)
    if allow_backwards:
        d.repair({(APP, ENV): snap}, allow_backwards=True)
    else:
        d.put(snap)


def client(tmp_path: Path, **kwargs: Any) -> ConfigClient:
    args: dict[str, Any] = {"snapshot_dir": tmp_path / "snaps", "cache_dir": tmp_path / "lkg", "environ": {}, "auto_refresh": False}
    args.update(kwargs)
    return ConfigClient(APP, ENV, **args)


# --------------------------------------------------------------------------- settings


def test_settings_arguments_over_environment_over_defaults(tmp_path: Path) -> None:
    env = {"CONFIGCTL_REDIS": "redis://r:6379/0", "CONFIGCTL_REDIS_PREFIX": "p", "CONFIGCTL_REFRESH_INTERVAL": "5", "CONFIGCTL_REPO": str(tmp_path)}
    s = from_env(env, redis_prefix="q")
    assert (s.redis, s.redis_prefix, s.refresh_interval, s.exchange) == ("redis://r:6379/0", "q", 5.0, "configctl.changes")
    assert s.snapshot_path == tmp_path / ".configctl" / "snapshots"
    assert from_env({}).redis is None
    with pytest.raises(UsageError, match="CONFIGCTL_REFRESH_INTERVAL"):
        from_env({"CONFIGCTL_REFRESH_INTERVAL": "soon"})
    with pytest.raises(UsageError):
        from_env({}, refresh_interval=0)
    with pytest.raises(TypeError, match="nonsense"):
        from_env({}, nonsense=1)
    # the last-known-good file is per source: another prefix never starts from this copy
    a = ClientSettings(redis="redis://u:secret@h/0", redis_prefix="a", cache_dir=str(tmp_path))
    b = ClientSettings(redis="redis://u:secret@h/0", redis_prefix="b", cache_dir=str(tmp_path))
    assert a.lkg_file(APP, ENV) != b.lkg_file(APP, ENV)
    assert "secret" not in str(a.lkg_file(APP, ENV))


# --------------------------------------------------------------------------- the embedded mode


def test_embedded_reads_refresh_and_never_backwards(tmp_path: Path) -> None:
    put(tmp_path / "snaps", 2)
    with client(tmp_path) as c:
        assert (c.version, c.get("a"), c.get("db.timeout"), c.get("db")) == (2, 2, 2, {"timeout": 2})
        assert "db.timeout" in c
        assert "nope" not in c
        seen: list[ChangeEvent] = []
        assert c.on_change(seen.append) is not None
        put(tmp_path / "snaps", 1, allow_backwards=True)
        assert c.refresh() is True
        assert c.version == 2  # an older version is never adopted
        put(tmp_path / "snaps", 3, {"a": 3, "c": 1})
        assert c.refresh() is True
        assert c.get("b", "gone") == "gone"
        assert [(e.old_version, e.new_version, e.changed_keys) for e in seen] == [(2, 3, ("a", "b", "c", "db.timeout"))]


def test_nothing_anywhere_serves_defaults_and_never_raises(tmp_path: Path) -> None:
    with client(tmp_path) as c:
        assert c.version is None
        assert c.get("a", 7) == 7
        assert c.get_all() == {}
        assert c.is_enabled("x") is False
        state = c.state
        assert (state.version, state.fresh) == (None, False)


def test_redis_down_at_start_is_not_an_error(tmp_path: Path) -> None:
    from tests.servers import free_port

    with ConfigClient(APP, ENV, redis=f"redis://127.0.0.1:{free_port()}/0", cache_dir=tmp_path, environ={}, auto_refresh=False) as c:
        assert c.get("a", "default") == "default"
        state = c.state
        assert state.fresh is False
        assert state.error is not None
        assert "Redis" in state.error


def test_last_known_good_file_is_written_and_used_when_the_source_has_nothing(tmp_path: Path) -> None:
    put(tmp_path / "snaps", 4)
    with client(tmp_path) as c:
        assert c.version == 4
    (tmp_path / "snaps" / f"{APP}.{ENV}.json").unlink()
    with client(tmp_path) as c:
        state = c.state
        assert (state.version, state.source) == (4, "last_known_good")
        assert c.get("a") == 4
    # a damaged last-known-good file is ignored, not fatal
    (lkg,) = (tmp_path / "lkg").glob("*.json")
    lkg.write_text("{not json")
    with client(tmp_path) as c:
        assert c.version is None


def test_typed_getters(tmp_path: Path) -> None:
    put(tmp_path / "snaps", 1, {"s": "x", "i": 3, "f": 1.5, "b": False, "l": [1], "d": {"k": 1}, "n": None})
    with client(tmp_path) as c:
        assert (c.get_str("s"), c.get_int("i"), c.get_float("i"), c.get_float("f"), c.get_bool("b")) == ("x", 3, 3.0, 1.5, False)
        assert c.get_list("l") == [1]
        assert c.get_dict("d") == {"k": 1}
        copy = c.get_list("l")
        assert copy is not None
        copy.append(2)
        assert c.get("l") == [1]  # typed getters hand out copies
        assert c.get_int("n", 5) == 5  # null counts as missing
        for getter, key in ((c.get_int, "s"), (c.get_str, "i"), (c.get_bool, "i"), (c.get_int, "b"), (c.get_dict, "l")):
            with pytest.raises(TypeError):
                getter(key)


def test_listener_that_raises_is_logged_and_the_others_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    put(tmp_path / "snaps", 1)
    with client(tmp_path) as c:
        got: list[int] = []

        @c.on_change
        def bad(event: ChangeEvent) -> None:
            raise RuntimeError("boom")

        c.on_change(lambda e: got.append(e.new_version))
        put(tmp_path / "snaps", 2)
        c.refresh()
        assert got == [2]
        assert "on_change listener raised" in caplog.text
        c.remove_listener(bad)


def test_schema_from_the_repository_refuses_a_bad_version(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "apps" / APP).mkdir(parents=True)
    (repo / "apps" / APP / "app.yaml").write_text("description: x\nowners: [a]\nschema: schema.json\n")
    (repo / "apps" / APP / "schema.json").write_text(json.dumps({"type": "object", "properties": {"a": {"type": "integer"}}}))
    folder = repo / ".configctl" / "snapshots"
    put(folder, 1)
    with ConfigClient(APP, ENV, repo=repo, cache_dir=tmp_path / "lkg", environ={}, auto_refresh=False) as c:
        assert c.version == 1
        put(folder, 2, {"a": "two"})
        c.refresh()
        state = c.state
        assert (state.version, state.refused_version) == (1, 2)
        assert state.refused_reason is not None
        assert state.refused_reason.startswith("a: fails `type`")
        put(folder, 3, {"a": 3})
        c.refresh()
        assert (c.version, c.state.refused_version) == (3, None)


def test_explain_names_the_file_and_line_from_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "apps" / APP / "envs").mkdir(parents=True)
    (repo / "configctl.yaml").write_text(f"version: 1\nenvironments: [{ENV}]\n")
    (repo / "apps" / APP / "app.yaml").write_text("description: x\nowners: [a]\n")
    (repo / "apps" / APP / "values.yaml").write_text("db:\n  timeout: 1\n")
    (repo / "apps" / APP / "envs" / f"{ENV}.yaml").write_text("a: 1\ndb:\n  timeout: 2\n")
    put(repo / ".configctl" / "snapshots", 1, {"a": 1, "db": {"timeout": 2}})
    with ConfigClient(APP, ENV, repo=repo, cache_dir=tmp_path / "lkg", environ={}, auto_refresh=False) as c:
        why = c.explain("db.timeout")
        assert why.source is not None
        assert (why.value, why.source.file, why.source.line, why.source.overrides) == (2, f"apps/{APP}/envs/{ENV}.yaml", 3, (f"apps/{APP}/values.yaml:2",))
        assert c.explain("nope").found is False


def test_readers_never_see_a_mix_of_two_versions(tmp_path: Path) -> None:
    put(tmp_path / "snaps", 1)
    with client(tmp_path) as c:
        stop = threading.Event()
        mixed: list[dict[str, Any]] = []

        def reader() -> None:
            while not stop.is_set():
                everything = c.get_all()
                if everything and everything["a"] != everything["b"]:
                    mixed.append(everything)

        threads = [threading.Thread(target=reader) for _ in range(4)]
        for t in threads:
            t.start()
        for v in range(2, 40):
            put(tmp_path / "snaps", v)
            c.refresh()
        stop.set()
        for t in threads:
            t.join()
        assert mixed == []
        assert c.version == 39


def test_auto_refresh_on_the_ttl(tmp_path: Path) -> None:
    put(tmp_path / "snaps", 1)
    with client(tmp_path, auto_refresh=True, refresh_interval=0.1) as c:
        done = threading.Event()
        c.on_change(lambda e: done.set())
        put(tmp_path / "snaps", 2)
        assert done.wait(10)
        assert c.version == 2


def test_async_client_on_the_snapshot_folder(tmp_path: Path) -> None:
    from configctl.client import AsyncConfigClient

    put(tmp_path / "snaps", 1)

    async def main() -> None:
        c = AsyncConfigClient(APP, ENV, snapshot_dir=tmp_path / "snaps", cache_dir=tmp_path / "lkg", environ={}, auto_refresh=False)
        await c.initialize()
        assert c.get("a") == 1
        changed = asyncio.Event()
        c.on_change(lambda e: changed.set())
        await c.start_auto_refresh(interval=0.1)
        put(tmp_path / "snaps", 2)
        await asyncio.wait_for(changed.wait(), 10)
        assert c.get_int("a") == 2
        assert c.state.source == "snapshot_dir"
        await c.close()

    asyncio.run(main())


def test_listener_shapes_event_or_three_arguments(tmp_path: Path) -> None:
    put(tmp_path / "snaps", 1)
    with client(tmp_path) as c:
        got: list[tuple[object, ...]] = []

        def three(changed_keys: tuple[str, ...], old: int | None, new: int) -> None:
            got.append((changed_keys, old, new))

        c.on_change(three)
        c.on_change(lambda event: got.append((event.version, event.previous_version)))
        put(tmp_path / "snaps", 2)
        c.refresh()
        assert got == [(("a", "b", "db.timeout"), 1, 2), (2, 1)]
        c.remove_listener(three)
        put(tmp_path / "snaps", 3)
        c.refresh()
        assert got[-1] == (3, 2)
        assert len(got) == 3


# --------------------------------------------------------------------------- rollouts on the read path


def _put_with_rollouts(folder: Path, rollouts: tuple[dict[str, Any], ...]) -> None:
    SnapshotDir(folder).put(
        CachedSnapshot(
            app=APP, env=ENV, version=3, commit=None, checksum=f"c3-{json.dumps(rollouts, sort_keys=True)}",
            values={"db": {"timeout": 5, "host": "db"}, "plain": 1}, updated_at=datetime.now(UTC), rollouts=rollouts,
        )
    )  # fmt: skip


def test_a_section_above_a_rollout_key_carries_the_rollout(tmp_path: Path) -> None:
    # Everyone is in (100 %): the leaf, its section, get_all and get_dict agree; the served
    # section is a copy, so the base snapshot is never changed by a read.
    _put_with_rollouts(tmp_path / "snaps", ({"name": "t", "key": "db.timeout", "value": 30, "percentage": 10_000},))
    with client(tmp_path) as c:
        ctx = {"user_id": "u1"}
        assert c.get("db.timeout", context=ctx) == 30
        assert c.get("db", context=ctx) == {"timeout": 30, "host": "db"}
        assert c.get_dict("db", context=ctx) == {"timeout": 30, "host": "db"}
        assert c.get_all(ctx)["db.timeout"] == 30
        assert c.get("db") == {"timeout": 5, "host": "db"}  # no context: the base value
        assert c.get("plain") == 1
        assert c.get("missing", "d") == "d"


def test_rollout_reads_agree_with_explain_for_many_users(tmp_path: Path) -> None:
    rollouts = (
        {"name": "t", "key": "db.timeout", "value": 30, "percentage": 3000},
        {"name": "f", "kind": "flag", "percentage": 5000},
    )
    _put_with_rollouts(tmp_path / "snaps", rollouts)
    with client(tmp_path) as c:
        for i in range(300):
            ctx = {"user_id": f"user-{i}"}
            assert c.get("db.timeout", context=ctx) == c.explain("db.timeout", ctx).value
            assert c.is_enabled("f", ctx) == c.details("f", ctx).value
        assert c.get("db.timeout", context={"user_id": 7}) in (5, 30)  # an integer unit buckets too
        assert c.get("db.timeout", context={"user_id": 1.5}) == 5  # an odd unit: the base value
        assert c.is_enabled("f", {"country": "DE"}) is False  # no unit: off


def test_a_section_or_list_a_caller_changes_does_not_change_what_is_served(tmp_path: Path) -> None:
    put(tmp_path / "snaps", 4, {"db": {"hosts": ["a", "b"], "port": 5432}})
    with client(tmp_path) as c:
        section = c.get("db")
        section["port"] = 1
        section["hosts"].append("evil")
        hosts = c.get("db.hosts")
        hosts.clear()
        assert c.get("db") == {"hosts": ["a", "b"], "port": 5432}
        assert c.get("db.hosts") == ["a", "b"]
        assert c.get("db.port") == 5432
