"""The pure apply planner (core.plan): no store, no git, no clock."""

from __future__ import annotations

import json

from tests.fakes import T0, commit_info

from configctl.core import plan
from configctl.core.model import FileEntry, Finding, Report, SourceLocation
from configctl.core.records import (
    JsonObject,
    PairKey,
    QuarantineRecord,
    VersionHead,
    VersionRecord,
    checksum,
)

A = {"replicas": 2}
B = {"replicas": 3}


def head(values: dict[str, int], number: int = 1, env: str = "prod") -> VersionHead:
    return VersionHead(
        app="web", env=env, number=number, checksum=checksum(values), commit_sha="a" * 40
    )


def record(values: dict[str, int], number: int = 1, env: str = "prod") -> VersionRecord:
    return VersionRecord(
        app="web", env=env, number=number, values=values, checksum=checksum(values), commit_sha="a" * 40,
        reason="commit", actor="t", created_at=T0,
    )  # fmt: skip


def test_changed_pairs_new_changed_unchanged_and_removed() -> None:
    values = {("web", "dev"): A, ("web", "prod"): B, ("web", "qa"): A}
    sums = {pair: checksum(v) for pair, v in values.items()}
    latest = {
        ("web", "dev"): head(A, env="dev"),  # unchanged
        ("web", "prod"): head(A),  # changed
        ("web", "old"): head(A, env="old"),  # removed
        ("web", "gone"): head({}, env="gone"),  # removed long ago: stays empty
    }
    assert plan.changed_pairs(values, sums, latest) == [
        ("web", "old"),
        ("web", "prod"),
        ("web", "qa"),
    ]
    assert plan.changed_pairs(values, sums, latest, only=("web", "qa")) == [("web", "qa")]


def test_plan_writes_skips_and_lifts() -> None:
    pairs = [("web", "dev"), ("web", "prod"), ("web", "qa"), ("web", "stage")]
    values = dict.fromkeys(pairs, B)
    sums = {p: checksum(B) for p in pairs}
    latest = {p: head(A, env=p[1]) for p in pairs}
    previous = {p: record(A, env=p[1]) for p in pairs}
    quarantines = {
        ("web", "qa"): QuarantineRecord(
            app="web", env="qa", commit="b" * 40, checksum=checksum(B), version=2
        ),
        ("web", "stage"): QuarantineRecord(
            app="web", env="stage", commit="b" * 40, checksum="old", version=2
        ),
    }
    result = plan.plan_apply(
        pairs=pairs, values=values, checksums=sums, rollouts={}, latest=latest, previous=previous,
        pins={("web", "prod")}, quarantines=quarantines, secrets={},
    )  # fmt: skip
    assert [(p.env, p.skipped, p.lift_quarantine) for p in result.pairs] == [
        ("dev", None, False),
        ("prod", plan.SkipReason.PINNED, False),
        ("qa", plan.SkipReason.QUARANTINED, False),
        ("stage", None, True),
    ]
    assert [p.env for p in result.writes] == ["dev", "stage"]
    dev = result.pairs[0]
    assert (dev.previous, dev.changed, dev.changed_keys) == (1, 1, ("replicas",))
    assert [(c.key, c.change, c.old, c.new) for c in dev.changes] == [("replicas", "changed", 2, 3)]


def test_secrets_are_redacted_and_rollout_keys_named() -> None:
    pair = ("web", "prod")
    rollout: JsonObject = {"name": "r", "key": "feature", "value": True}
    result = plan.plan_apply(
        pairs=[pair], values={pair: {"password": "new"}}, checksums={pair: "x"}, rollouts={pair: (rollout,)},
        latest={}, previous={}, pins=set(), quarantines={}, secrets={"web": {"password"}},
    )  # fmt: skip
    [item] = result.pairs
    assert item.previous is None
    assert [(c.key, c.new) for c in item.changes] == [("password", "<redacted>")]
    assert item.changed_keys == ("feature", "password")


def test_changed_apps_only_for_values_files() -> None:
    base = {
        "apps/web/app.yaml": FileEntry(data=b"x"),
        "apps/web/values.yaml": FileEntry(data=b"a: 1"),
    }
    assert plan.changed_apps(base, {**base, "apps/web/values.yaml": FileEntry(data=b"a: 2")}) == {
        "web"
    }
    assert plan.changed_apps(base, {**base, "global.yaml": FileEntry(data=b"")}) is None
    assert plan.changed_apps(base, base) == set()


def test_changed_apps_sees_files_read_again_added_and_removed() -> None:
    web, api = FileEntry(data=b"x"), FileEntry(data=b"x")
    base = {
        "apps/web/app.yaml": web,
        "apps/web/values.yaml": FileEntry(data=b"a: 1"),
        "apps/api/app.yaml": api,
        "apps/api/envs/dev.yaml": FileEntry(data=b"a: 1"),
    }
    # equal entries that are other objects (a full read): nothing changed
    assert plan.changed_apps(base, {p: FileEntry(data=e.data) for p, e in base.items()}) == set()
    # one file goes and another comes: as many files as before, both apps changed
    swapped = {p: e for p, e in base.items() if p != "apps/api/envs/dev.yaml"}
    swapped["apps/web/envs/prod.yaml"] = FileEntry(data=b"a: 2")
    assert plan.changed_apps(base, swapped) == {"api", "web"}
    # a removed app.yaml may reach the whole app: everything is evaluated
    assert (
        plan.changed_apps(base, {p: e for p, e in base.items() if p != "apps/api/app.yaml"}) is None
    )


def test_scoped_keeps_shared_files_and_the_apps_asked_for() -> None:
    files = {
        p: FileEntry(data=b"")
        for p in (
            "configctl.yaml",
            "global.yaml",
            "apps/web/app.yaml",
            "apps/web-2/app.yaml",
            "apps/api/values.yaml",
        )
    }
    assert sorted(plan.scoped(files, {"web"})) == [
        "apps/web/app.yaml",
        "configctl.yaml",
        "global.yaml",
    ]
    assert sorted(plan.scoped(files, set())) == ["configctl.yaml", "global.yaml"]


def test_a_file_index_scopes_as_a_walk_does_and_follows_every_kind_of_change() -> None:
    def files(*paths: str) -> dict[str, FileEntry]:
        return {p: FileEntry(data=p.encode()) for p in paths}

    base = files(
        "configctl.yaml",
        "global.yaml",
        "environments/prod.yaml",
        "apps/web/app.yaml",
        "apps/web/values.yaml",
        "apps/web-2/app.yaml",
        "apps/api/app.yaml",
        "apps/api/envs/dev.yaml",
        "apps/api/envs/prod.yaml",
    )
    index = plan.FileIndex.of(base)
    for apps in (set(), {"web"}, {"api", "web-2"}, {"nope"}):
        assert index.scoped(base, apps) == plan.scoped(base, apps)
    changes = [
        # a values file added, one changed, one gone; a shared file added; an app gone
        {**base, "apps/web/envs/prod.yaml": FileEntry(data=b"a: 1")},
        {**base, "apps/web/values.yaml": FileEntry(data=b"a: 2")},
        {p: e for p, e in base.items() if p != "apps/api/envs/dev.yaml"},
        {**base, "environments/dev.yaml": FileEntry(data=b"")},
        {p: e for p, e in base.items() if not p.startswith("apps/api/")},
        {**base, "apps/new/app.yaml": FileEntry(data=b"")},
    ]
    for head in changes:
        paths = plan.differing_paths(base, head)
        moved = index.moved(paths, head)
        assert moved == plan.FileIndex.of(head), paths
        assert plan.changed_apps(base, head, paths=paths) == plan.changed_apps(base, head)
        for apps in ({"web"}, {"api"}, {"new", "web-2"}):
            assert moved.scoped(head, apps) == plan.scoped(head, apps)


def test_rejection_reason_and_details() -> None:
    errors = tuple(
        Finding.at(SourceLocation(file="f.yaml", line=i, column=1), "dup", f"m{i}")
        for i in range(1, 23)
    )
    report = Report(errors=errors)
    reason = plan.rejection_reason(report)
    assert reason.splitlines()[0] == "f.yaml:1:1: [dup] m1"
    assert reason.splitlines()[-1] == "… and 2 more"
    details = plan.rejection_details(report, commit_info("c" * 40, message="fix\nbody"))
    assert details == {
        "errors": 22,
        "first_error": "f.yaml:1:1: [dup] m1",
        "author": "dev@example.com",
        "message": "fix",
    }


def test_first_version_changes_equal_those_of_the_general_diff() -> None:
    """A pair with no previous version skips the diff walk; its key changes, counts and
    named keys are exactly those of the general path (a diff against an old snapshot
    whose only key is unrelated, that removal left out)."""
    from configctl.core import diff

    pair = ("web", "prod")
    values: JsonObject = {
        "db": {"password": "p", "host": "h", "pool": {"max": 5, "min": {}}},
        "hosts": ["a", "b"],
        "flag": False,
        "none": None,
    }
    secrets = {"web": {"db.password"}}
    first = plan.plan_apply(
        pairs=[pair], values={pair: values}, checksums={pair: "x"}, rollouts={}, latest={},
        previous={}, pins=set(), quarantines={}, secrets=secrets,
    ).pairs[0]  # fmt: skip
    general = plan._changes(diff.diff_values({"\0": 1}, values, secrets=secrets["web"]))[0]
    expected = tuple(c for c in general if c.key != "\0")
    assert first.changes == expected
    assert [(c.key, c.change, c.old, c.new) for c in first.changes][:2] == [
        ("db.host", "added", None, "h"),
        ("db.password", "added", None, "<redacted>"),
    ]
    assert (first.added, first.changed, first.removed) == (len(expected), 0, 0)
    assert first.changed_keys == tuple(c.key for c in expected)


def test_first_versions_share_equal_key_changes_but_never_confuse_values() -> None:
    """Pairs share the key change of an equal added value, never one of a value that is
    only equal in Python (1, 1.0, True; 0.0 and -0.0) or of a list."""
    a, b, c = ("web", "dev"), ("web", "prod"), ("web", "qa")
    values: dict[PairKey, JsonObject] = {
        a: {"n": 1, "z": 0.0, "s": "x", "l": [1]},
        b: {"n": 1.0, "z": -0.0, "s": "x", "l": [1]},
        c: {"n": True, "z": 0.0, "s": "x", "l": [1]},
    }
    result = plan.plan_apply(
        pairs=[a, b, c], values=values, checksums=dict.fromkeys(values, "x"), rollouts={}, latest={},
        previous={}, pins=set(), quarantines={}, secrets={},
    )  # fmt: skip
    by_pair = {p.pair: {ch.key: ch for ch in p.changes} for p in result.pairs}
    for pair, expected in values.items():
        got = {key: ch.new for key, ch in by_pair[pair].items()}
        assert got == expected
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}
        assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)  # -0.0 stays
    assert by_pair[a]["s"] is by_pair[b]["s"] is by_pair[c]["s"]
    assert by_pair[a]["n"] is not by_pair[b]["n"]
    assert by_pair[a]["l"] is not by_pair[b]["l"]
