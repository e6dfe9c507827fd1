"""Key-by-key diff of resolved snapshots, secrets redacted."""

from __future__ import annotations

from configctl.core import diff
from configctl.core.records import ChangeKind


def test_added_changed_removed_sorted_by_key() -> None:
    old = {"a": 1, "db": {"host": "x", "port": 5432}, "gone": True}
    new = {"a": 1, "db": {"host": "y", "port": 5432, "pool": {"max": 5}}}
    keys = diff.diff_values(old, new)
    assert [(k.key, k.change.value, k.old, k.new) for k in keys] == [
        ("db.host", "changed", "x", "y"),
        ("db.pool.max", "added", None, 5),
        ("gone", "removed", True, None),
    ]


def test_type_change_is_a_change_even_when_equal_in_python() -> None:
    keys = diff.diff_values({"flag": 1}, {"flag": True})
    assert [k.change for k in keys] == [ChangeKind.CHANGED]


def test_lists_compare_whole() -> None:
    keys = diff.diff_values({"hosts": ["a", "b"]}, {"hosts": ["a", "c"]})
    assert [(k.key, k.old, k.new) for k in keys] == [("hosts", ["a", "b"], ["a", "c"])]


def test_secret_values_never_leave() -> None:
    keys = diff.diff_values(
        {"db": {"password": "hunter2"}}, {"db": {"password": "s3cret!"}}, secrets=["db.password"]
    )
    assert keys[0].old == diff.REDACTED
    assert keys[0].new == diff.REDACTED
    assert keys[0].secret
    assert "hunter2" not in repr(keys)
    assert "s3cret!" not in repr(keys)


def test_diff_trees_reports_every_pair_a_shared_change_reaches() -> None:
    old = {("a", "prod"): {"log": "info"}, ("b", "prod"): {"log": "info"}, ("b", "dev"): {"log": "debug"}}
    new = {("a", "prod"): {"log": "warn"}, ("b", "prod"): {"log": "warn"}, ("b", "dev"): {"log": "debug"}}
    result = diff.diff_trees(old, new, changed_files=["environments/prod.yaml"])
    assert [(p.app, p.env) for p in result.pairs] == [("a", "prod"), ("b", "prod")]
    assert result.summary()["apps"] == 2
    assert result.summary()["keys"] == 2
    assert diff.diff_trees(old, old).empty


def test_added_and_removed_pairs() -> None:
    result = diff.diff_trees({("a", "dev"): {"x": 1}}, {("b", "dev"): {"x": 1}})
    assert [(p.app, p.status) for p in result.pairs] == [("a", "removed"), ("b", "added")]


def test_redact_copies() -> None:
    values = {"db": {"password": "p", "host": "h"}}
    out = diff.redact(values, ["db.password"])
    assert out == {"db": {"password": diff.REDACTED, "host": "h"}}
    assert values["db"]["password"] == "p"


NESTED = {
    "zeta": 1,
    "db": {"password": "hunter2", "host": "h", "pool": {"max": 5, "min": {}}},
    "a": {"b.c": [1, {"x": 2}], "empty": {}},
    "a.b": None,
    "flag": False,
}


def test_diff_against_nothing_equals_the_general_walk() -> None:
    """The first-version fast path (every key added) gives what comparing key by key does."""
    secrets = ["db.password", "a"]
    general = diff.diff_values({"\0": 0}, NESTED, secrets=secrets)  # one unrelated old key
    expected = tuple(k for k in general if k.key != "\0")
    assert [k.change for k in general if k.key == "\0"] == [ChangeKind.REMOVED]
    assert diff.diff_values(None, NESTED, secrets=secrets) == expected
    assert diff.diff_values({}, NESTED, secrets=secrets) == expected
    assert [(k, v, s) for k, v, s in diff.added_keys(NESTED, secrets=secrets)] == [
        (d.key, d.new, d.secret) for d in expected
    ]
    assert diff.added_keys(None) == []
    assert "hunter2" not in repr(diff.added_keys(NESTED, secrets=secrets))
