"""Layered resolution with provenance: the rules, by example and as properties.

Properties (hypothesis), over random layers written as YAML and read with the real
loader: resolution is deterministic; an empty layer changes nothing; a later layer
always wins for every leaf it sets (and removes every key it unsets); the result equals
a small reference model; ``resolve`` never mutates its inputs; ``merge`` equals
``resolve().values``; provenance names the layer whose value is in service.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from configctl.core import resolve as R
from configctl.core.model import Severity, SourceLocation
from configctl.core.parse import UNSET, Document, parse

LAYER_NAMES = ("global", "environment", "app", "app-environment")
LAYER_FILES = (
    "global.yaml",
    "environments/dev.yaml",
    "apps/web/values.yaml",
    "apps/web/envs/dev.yaml",
)


def layers(*texts: str) -> list[tuple[str, Document]]:
    out = []
    for name, file, text in zip(LAYER_NAMES, LAYER_FILES, texts, strict=False):
        d = parse(file, text.encode("utf-8"))
        assert d.ok, d.findings
        out.append((name, d))
    return out


def history(r: R.Resolution, dotted: str) -> list[tuple[str, int, Any]]:
    return [
        (s.location.file, s.location.line, s.value) for s in r.provenance[tuple(dotted.split("."))]
    ]


# --- the rules by example -------------------------------------------------------------


def test_later_layers_override_key_by_key() -> None:
    r = R.resolve(
        layers(
            "log:\n  level: info\n  format: text\nreplicas: 1\n",
            "log:\n  level: warning\n",
            "replicas: 2\nlog:\n  format: json\n",
            "replicas: 5\n",
        )
    )
    assert r.values == {"log": {"level": "warning", "format": "json"}, "replicas": 5}
    assert history(r, "replicas") == [
        ("global.yaml", 4, 1),
        ("apps/web/values.yaml", 1, 2),
        ("apps/web/envs/dev.yaml", 1, 5),
    ]
    assert history(r, "log.level") == [
        ("global.yaml", 2, "info"),
        ("environments/dev.yaml", 2, "warning"),
    ]
    winner = r.winner(("log", "format"))
    assert winner is not None
    assert (winner.layer, winner.location) == (
        "app",
        SourceLocation(file="apps/web/values.yaml", line=3, column=3),
    )
    assert r.findings == ()


def test_lists_and_scalars_replace() -> None:
    r = R.resolve(layers("hosts: [a, b]\nport: 1\n", "hosts: [c]\n"))
    assert r.values == {"hosts": ["c"], "port": 1}


def test_scalar_replaces_a_mapping_and_back() -> None:
    r = R.resolve(layers("db:\n  host: x\n  port: 1\n", "db: primary\n"))
    assert r.values == {"db": "primary"}
    assert list(r.provenance) == [("db",)]
    r = R.resolve(layers("db: primary\n", "db:\n  host: y\n"))
    assert r.values == {"db": {"host": "y"}}
    assert list(r.provenance) == [("db", "host")]


def test_unset_removes_an_inherited_key_and_its_subtree() -> None:
    r = R.resolve(layers("db:\n  host: x\n  port: 1\nkeep: 1\n", "db: !unset\n"))
    assert r.values == {"keep": 1}
    assert list(r.provenance) == [("keep",)]
    removed = r.removed[("db",)]
    assert (removed.layer, removed.location.file, removed.location.line) == (
        "environment",
        "environments/dev.yaml",
        1,
    )
    assert r.findings == ()


def test_unset_then_set_again() -> None:
    r = R.resolve(layers("a: 1\n", "a: !unset\n", "a: 3\n"))
    assert r.values == {"a": 3}
    assert ("a",) not in r.removed
    assert history(r, "a") == [("apps/web/values.yaml", 1, 3)]


def test_unset_of_nothing_is_a_warning() -> None:
    r = R.resolve(layers("a: 1\n", "b: !unset\nc:\n  d: !unset\n"))
    assert r.values == {"a": 1, "c": {}}  # writing `c:` as a mapping creates it
    assert [(f.rule, f.file, f.line, f.severity) for f in r.findings] == [
        ("unset-nothing", "environments/dev.yaml", 1, Severity.WARNING),
        ("unset-nothing", "environments/dev.yaml", 3, Severity.WARNING),
    ]
    assert "`c.d: !unset`" in r.findings[1].message


def test_empty_mapping_is_a_value() -> None:
    r = R.resolve(layers("limits: {}\n"))
    assert r.values == {"limits": {}}
    assert history(r, "limits") == [("global.yaml", 1, {})]
    # and merges like any mapping: an empty mapping over a full one keeps it
    r = R.resolve(layers("limits:\n  cpu: 1\n", "limits: {}\n"))
    assert r.values == {"limits": {"cpu": 1}}
    # over a scalar it replaces it
    r = R.resolve(layers("limits: none\n", "limits: {}\n"))
    assert r.values == {"limits": {}}
    assert history(r, "limits") == [("global.yaml", 1, "none"), ("environments/dev.yaml", 1, {})]


def test_mapping_emptied_by_unset_keeps_provenance() -> None:
    r = R.resolve(layers("a:\n  b: 1\n", "a:\n  b: !unset\n"))
    assert r.values == {"a": {}}
    assert R.flatten(r.values) == {"a": {}}
    assert r.winner(("a",)) is not None


def test_mapping_replacing_a_scalar_takes_over_its_provenance() -> None:
    r = R.resolve(layers("a: 0\n", "a:\n  b: !unset\n"))
    assert r.values == {"a": {}}
    winner = r.winner(("a",))
    assert winner is not None
    assert (winner.layer, winner.value) == ("environment", {})


def test_non_mapping_layers_are_skipped() -> None:
    empty = parse("environments/dev.yaml", b"# nothing\n")
    listed = parse("apps/web/values.yaml", b"- a\n")
    base = parse("global.yaml", b"a: 1\n")
    r = R.resolve([("global", base), ("environment", empty), ("app", listed)])
    assert r.values == {"a": 1}
    assert R.merge([base, empty, listed]) == {"a": 1}


def test_winner_and_settings_under() -> None:
    r = R.resolve(layers("db:\n  host: x\n  port: 1\n", "db:\n  port: 2\n"))
    assert r.winner(("db", "port", "deeper")) == r.winner(("db", "port"))
    assert r.winner(("nope",)) is None
    assert r.winner(("db",)) is None  # a mapping is not a leaf
    assert [p for p, _ in r.settings_under(("db",))] == [("db", "host"), ("db", "port")]


def test_flatten_lookup_count() -> None:
    values = {"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}, "f": None}
    assert R.flatten(values) == {"a.b": 1, "a.c.d": [1, 2], "e": {}, "f": None}
    assert R.lookup(values, "a.c") == (True, {"d": [1, 2]})
    assert R.lookup(values, "a.c.d") == (True, [1, 2])
    assert R.lookup(values, "a.x") == (False, None)
    assert R.lookup(values, "a.b.c") == (False, None)
    assert R.lookup(values, "f") == (True, None)
    assert R.count_keys(values) == 4


# --- properties -----------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "d", "e"])
SCALARS = st.one_of(
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.text(alphabet="xyz", max_size=3),
    st.lists(st.integers(0, 3), max_size=3),
)


def _values(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return SCALARS
    return st.one_of(
        SCALARS, st.dictionaries(KEYS, st.one_of(_values(depth - 1), st.just(UNSET)), max_size=4)
    )


LAYER = st.dictionaries(KEYS, st.one_of(_values(3), st.just(UNSET)), max_size=5)
STACK = st.lists(LAYER, min_size=1, max_size=4)


def to_yaml(value: dict[str, Any], indent: int = 0) -> str:
    """A tiny emitter: keys and scalars as JSON (valid YAML), `!unset` as the tag."""
    pad = " " * indent
    lines = []
    for key, item in value.items():
        k = json.dumps(key)
        if item is UNSET:
            lines.append(f"{pad}{k}: !unset\n")
        elif isinstance(item, dict) and item:
            lines.append(f"{pad}{k}:\n{to_yaml(item, indent + 2)}")
        else:
            lines.append(f"{pad}{k}: {json.dumps(item)}\n")
    return "".join(lines)


def as_layers(stack: list[dict[str, Any]]) -> list[tuple[str, Document]]:
    out = []
    for i, value in enumerate(stack):
        d = parse(f"layer{i}.yaml", to_yaml(value).encode("utf-8"))
        assert d.ok, d.findings
        assert d.value == value or (d.value is None and value == {})
        out.append((f"layer{i}", d))
    return out


def model(stack: list[dict[str, Any]]) -> dict[str, Any]:
    """The reference: mappings merge, anything else replaces, UNSET removes."""

    def merge(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, item in layer.items():
            if item is UNSET:
                out.pop(key, None)
            elif isinstance(item, dict):
                current = out.get(key)
                out[key] = merge(current if isinstance(current, dict) else {}, item)
            else:
                out[key] = item
        return out

    result: dict[str, Any] = {}
    for layer in stack:
        result = merge(result, layer)
    return result


def leaves(value: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, item in value.items():
        if isinstance(item, dict) and item:
            out.extend(leaves(item, (*path, key)))
        else:
            out.append(((*path, key), item))
    return out


def at(values: dict[str, Any], path: tuple[str | int, ...]) -> tuple[bool, Any]:
    return R.lookup(values, ".".join(map(str, path)))


@settings(max_examples=150, deadline=None)
@given(STACK)
def test_resolution_equals_the_reference_model(stack: list[dict[str, Any]]) -> None:
    assert R.resolve(as_layers(stack)).values == model(stack)


@settings(max_examples=150, deadline=None)
@given(STACK)
def test_deterministic(stack: list[dict[str, Any]]) -> None:
    first = R.resolve(as_layers(stack))
    second = R.resolve(as_layers(stack))
    assert json.dumps(first.values) == json.dumps(second.values)  # same keys, same order
    assert first.provenance == second.provenance
    assert list(first.provenance) == list(second.provenance)
    assert first.removed == second.removed
    assert first.findings == second.findings


@settings(max_examples=150, deadline=None)
@given(STACK, st.integers(0, 4), st.sampled_from([b"", b"# only a comment\n", b"{}\n"]))
def test_an_empty_layer_changes_nothing(
    stack: list[dict[str, Any]], where: int, empty: bytes
) -> None:
    base = as_layers(stack)
    with_empty = list(base)
    with_empty.insert(min(where, len(base)), ("empty", parse("empty.yaml", empty)))
    a, b = R.resolve(base), R.resolve(with_empty)
    assert a.values == b.values
    assert a.provenance == b.provenance
    assert a.removed == b.removed
    assert R.merge([d for _, d in base]) == R.merge([d for _, d in with_empty])


@settings(max_examples=150, deadline=None)
@given(STACK)
def test_a_later_layer_always_wins(stack: list[dict[str, Any]]) -> None:
    docs = as_layers(stack)
    for i in range(1, len(stack) + 1):
        # resolve the first i layers: layer i-1 is the latest
        r = R.resolve(docs[:i])
        last = stack[i - 1]
        for path, value in leaves(last):
            present, got = at(r.values, path)
            if value is UNSET:
                assert not present, path
            elif isinstance(value, dict):  # an empty mapping: a mapping is there
                assert present, path
                assert isinstance(got, dict), path
            else:
                assert (present, got) == (True, value), path
                winner = r.winner(path)
                assert winner is not None
                assert winner.layer == f"layer{i - 1}"
                assert winner.location.file == f"layer{i - 1}.yaml"


@settings(max_examples=150, deadline=None)
@given(STACK)
def test_resolve_never_mutates_its_inputs(stack: list[dict[str, Any]]) -> None:
    docs = as_layers(stack)
    before = [copy.deepcopy(d.value) for _, d in docs]
    locations = [dict(d.locations) for _, d in docs]
    result = R.resolve(docs)
    R.merge([d for _, d in docs])
    # mutating the result must not reach the documents either
    result.values.clear()
    assert [d.value for _, d in docs] == before
    assert [dict(d.locations) for _, d in docs] == locations


@settings(max_examples=150, deadline=None)
@given(STACK)
def test_merge_equals_resolve_values(stack: list[dict[str, Any]]) -> None:
    docs = as_layers(stack)
    merged = R.merge([d for _, d in docs])
    assert merged == R.resolve(docs).values
    assert json.dumps(merged) == json.dumps(R.resolve(docs).values)  # same keys, same order
    # its mappings are its own: changing them does not reach the documents
    before = [copy.deepcopy(d.value) for _, d in docs]

    def clear(node: dict[str, Any]) -> None:
        for item in node.values():
            if isinstance(item, dict):
                clear(item)
        node.clear()

    clear(merged)
    assert [d.value for _, d in docs] == before


@settings(max_examples=150, deadline=None)
@given(STACK)
def test_provenance_names_the_value_in_service(stack: list[dict[str, Any]]) -> None:
    r = R.resolve(as_layers(stack))
    leaf_paths = {p for p, _ in leaves(r.values)}
    for path, settings_ in r.provenance.items():
        assert path in leaf_paths
        assert settings_, path
        present, got = at(r.values, path)
        assert present
        assert settings_[-1].value == got
        # every setting is where its layer wrote that key
        for s in settings_:
            assert s.location.file == f"{s.layer}.yaml"
            assert s.path == path
    # every leaf has provenance, empty mappings included
    for path, _ in leaves(r.values):
        assert path in r.provenance, path
    # removed keys are absent
    for path in r.removed:
        assert not at(r.values, path)[0]
