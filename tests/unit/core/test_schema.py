"""core.schema: secret keys of an app schema and local `$ref` inlining."""

from __future__ import annotations

from configctl.core import schema as S


def test_secret_paths() -> None:
    schema = {
        "properties": {
            "password": {"x-secret": True},
            "db": {"properties": {"token": {"writeOnly": True}, "host": {}}},
            "alt": {"anyOf": [{"x-secret": True}]},
        }
    }
    assert S.secret_paths(schema) == {("password",), ("db", "token"), ("alt",)}


def test_is_secret_wants_true_not_truthy() -> None:
    assert S.is_secret({"x-secret": True})
    assert S.is_secret({"writeOnly": True})
    assert not S.is_secret({"x-secret": "yes"})
    assert not S.is_secret(True)


def test_a_mark_behind_a_local_ref_is_found_after_inlining() -> None:
    schema = {
        "$defs": {"db": {"properties": {"password": {"x-secret": True}}}},
        "properties": {"database": {"$ref": "#/$defs/db", "description": "kept"}},
    }
    assert S.secret_paths(schema) == set()
    inlined = S.inline_local_refs(schema)
    assert S.secret_paths(inlined) == {("database", "password")}
    assert inlined["properties"]["database"]["allOf"][1] == {"description": "kept"}


def test_remote_and_dangling_refs_are_left_alone_and_recursion_is_bounded() -> None:
    remote = {"$ref": "https://example.invalid/s.json"}
    assert S.inline_local_refs(remote) == {}
    assert S.inline_local_refs({"$ref": "#/$defs/missing"}) == {}
    recursive = {
        "$defs": {"node": {"properties": {"next": {"$ref": "#/$defs/node"}}}},
        "$ref": "#/$defs/node",
    }
    depth = 0
    node = S.inline_local_refs(recursive, depth=3)
    while isinstance(node, dict) and "allOf" in node:
        depth += 1
        node = node["allOf"][0]["properties"]["next"]
    assert depth == 3
