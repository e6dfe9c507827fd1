"""Validation of whole trees: file schemas, app schemas on resolved values, located at the
file and line that set the value, with the YAML 1.1 quote hint; the jsonschema-rs fast
path agrees with jsonschema."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from configctl.core import tree as tree_mod
from configctl.core import validate as V
from configctl.core.model import FileEntry, Report, Severity

ROOT = Path(__file__).resolve().parents[3]
FILE_SCHEMAS = {
    (s := json.loads(p.read_text(encoding="utf-8")))["$id"]: s
    for p in sorted((ROOT / "schemas" / "v1").glob("*.json"))
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["replicas"],
    "properties": {
        "replicas": {"type": "integer", "minimum": 1, "maximum": 20},
        "host": {"type": "string"},
        "country": {"type": "string"},
        "version": {"type": "string"},
        "timeout": {"type": "string"},
        "release": {"type": "string", "format": "date"},
        "password": {"type": "string", "minLength": 12, "x-secret": True},
        "token": {"type": "string", "pattern": "^t-", "writeOnly": True},
        "log": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "level": {"enum": ["debug", "info", "warning"]},
                "format": {"enum": ["json", "text"]},
            },
        },
        "database": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"host": {"type": "string"}, "port": {"type": "integer", "minimum": 1}},
        },
    },
}

BASE: dict[str, str] = {
    "configctl.yaml": "version: 1\nenvironments: [dev, prod]\n",
    "global.yaml": "log:\n  level: info\n",
    "apps/web/app.yaml": "description: Web\nowners: [team-web]\nschema: schema.json\n",
    "apps/web/schema.json": json.dumps(SCHEMA),
    "apps/web/values.yaml": "replicas: 2\nhost: web.internal\n",
    "apps/web/envs/prod.yaml": "replicas: 4\n",
}


def snapshot(files: Mapping[str, str | None]) -> dict[str, FileEntry]:
    merged = {**BASE, **files}
    return {
        p: FileEntry(data=t.encode("utf-8"), size=len(t.encode("utf-8")))
        for p, t in merged.items()
        if t is not None
    }


def validate(files: Mapping[str, str | None], **kwargs: Any) -> Report:
    return V.validate_tree(tree_mod.build(snapshot(files)), file_schemas=FILE_SCHEMAS, **kwargs)


def triples(report: Report) -> list[tuple[str, int, str]]:
    return [(f.file, f.line, f.rule) for f in report.errors]


def test_the_base_tree_is_valid() -> None:
    report = validate({})
    assert report.valid
    assert report.errors == ()
    assert report.warnings == ()


# --- where a schema error is reported -----------------------------------------------


@pytest.mark.parametrize(
    ("files", "where"),
    [
        pytest.param({"global.yaml": "log:\n  level: loud\n"}, ("global.yaml", 2), id="global"),
        pytest.param(
            {"environments/prod.yaml": "log:\n  level: loud\n"},
            ("environments/prod.yaml", 2),
            id="environment",
        ),
        pytest.param(
            {"apps/web/values.yaml": "replicas: 2\nlog:\n  level: loud\n"},
            ("apps/web/values.yaml", 3),
            id="app",
        ),
        pytest.param(
            {"apps/web/envs/prod.yaml": "replicas: 4\nlog:\n  format: xml\n"},
            ("apps/web/envs/prod.yaml", 3),
            id="app-environment",
        ),
    ],
)
def test_schema_error_points_at_the_file_that_set_the_value(
    files: dict[str, str], where: tuple[str, int]
) -> None:
    report = validate(files)
    assert triples(report) == [(*where, "schema")]


def test_an_override_hides_the_bad_value_below() -> None:
    report = validate(
        {
            "global.yaml": "log:\n  level: loud\n",
            "apps/web/values.yaml": "replicas: 2\nlog:\n  level: info\n",
        }
    )
    assert report.valid


def test_a_shared_error_is_reported_once_naming_the_pairs() -> None:
    (one,) = validate({"global.yaml": "log:\n  level: loud\n"}).errors
    assert one.message.endswith("(for 2 app/environment pairs: web/dev, web/prod)")
    (single,) = validate({"environments/prod.yaml": "log:\n  level: loud\n"}).errors
    assert single.message.endswith("(for app web in environment prod)")


def test_many_pairs_are_abbreviated() -> None:
    apps = {
        f"apps/a{i}/app.yaml": "description: x\nowners: [o]\nschema: ../web/schema.json\n"
        for i in range(3)
    }
    apps.update({f"apps/a{i}/values.yaml": "replicas: 1\n" for i in range(3)})
    (finding,) = validate({**apps, "global.yaml": "log:\n  level: loud\n"}).errors
    assert "8 app/environment pairs: a0/dev, a0/prod, a1/dev, a1/prod, a2/dev, …" in finding.message


def test_required_key_missing() -> None:
    (finding,) = validate(
        {"apps/web/values.yaml": "host: x\n", "apps/web/envs/prod.yaml": None}
    ).errors
    assert (finding.file, finding.line, finding.rule) == ("apps/web/values.yaml", 1, "required")
    assert finding.message.startswith("`replicas` is required but no layer sets it")


def test_required_falls_back_to_the_manifest_without_app_layers() -> None:
    report = validate({"apps/web/values.yaml": None, "apps/web/envs/prod.yaml": None})
    assert triples(report) == [("apps/web/app.yaml", 1, "required")]


@pytest.mark.parametrize(
    ("files", "expected", "hint"),
    [
        pytest.param(
            {"apps/web/values.yaml": "replicas: 2\nhsot: x\n"},
            ("apps/web/values.yaml", 2),
            "did you mean `host`?",
            id="root",
        ),
        pytest.param(
            {"environments/dev.yaml": "log:\n  levle: debug\n"},
            ("environments/dev.yaml", 2),
            "did you mean `log.level`?",
            id="nested",
        ),
        pytest.param(
            {"apps/web/values.yaml": "replicas: 2\nzzz: 1\n"},
            ("apps/web/values.yaml", 2),
            None,
            id="no-suggestion",
        ),
    ],
)
def test_unknown_key(files: dict[str, str], expected: tuple[str, int], hint: str | None) -> None:
    (finding,) = validate(files).errors
    assert (finding.file, finding.line, finding.rule) == (*expected, "unknown-key")
    assert finding.hint == hint


# --- the YAML 1.1 quote hint ----------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        (
            "country: no",
            '`no` was read as the boolean false; if you meant the text, quote it: "no"',
        ),
        (
            "country: Yes",
            '`Yes` was read as the boolean true; if you meant the text, quote it: "Yes"',
        ),
        (
            "country: OFF",
            '`OFF` was read as the boolean false; if you meant the text, quote it: "OFF"',
        ),
        (
            "version: 010",
            '`010` was read as the integer 8 (YAML 1.1 octal); if you meant the text, quote it: "010"',
        ),
        (
            "timeout: 1:30",
            '`1:30` was read as the number 90 (YAML 1.1 base-60); if you meant the text, quote it: "1:30"',
        ),
        (
            "version: 3.10",
            '`3.10` was read as the number 3.1; if you meant the text, quote it: "3.10"',
        ),
        ("host: ~", '`~` was read as null (no value); if you meant the text, quote it: "~"'),
    ],
)
def test_quote_hint(line: str, hint: str) -> None:
    (finding,) = validate({"apps/web/values.yaml": f"replicas: 2\n{line}\n"}).errors
    assert (finding.file, finding.line, finding.rule) == ("apps/web/values.yaml", 2, "schema")
    assert "is not of type 'string'" in finding.message
    assert finding.hint == hint


def test_no_quote_hint_for_a_quoted_value() -> None:
    (finding,) = validate({"apps/web/values.yaml": 'replicas: "3"\n'}).errors
    assert finding.hint is None


@pytest.mark.parametrize(
    "files",
    [
        pytest.param({"apps/web/values.yaml": "replicas: 0\n"}, id="minimum"),
        pytest.param({"configctl.yaml": "version: 2\nenvironments: [dev, prod]\n"}, id="const"),
    ],
)
def test_no_quote_hint_when_a_string_would_not_help(files: dict[str, str]) -> None:
    (finding,) = validate(files).errors
    assert finding.hint is None


# --- secrets, formats, file schemas -------------------------------------------------


@pytest.mark.parametrize("line", ["password: hunter2", "token: abc-secret"])
def test_secret_values_are_not_quoted(line: str) -> None:
    (finding,) = validate({"apps/web/values.yaml": f"replicas: 2\n{line}\n"}).errors
    value = line.split(": ")[1]
    assert value not in finding.message
    assert "secret value hidden" in finding.message
    assert finding.hint is None


def test_format_is_asserted() -> None:
    report = validate({"apps/web/values.yaml": "replicas: 2\nrelease: 2024-02-30\n"})
    assert triples(report) == [("apps/web/values.yaml", 2, "schema")]
    assert validate({"apps/web/values.yaml": "replicas: 2\nrelease: 2024-02-29\n"}).valid


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {"configctl.yaml": "version: 2\nenvironments: [dev, prod]\n"},
            [("configctl.yaml", 1, "schema")],
            id="version",
        ),
        pytest.param(
            {"configctl.yaml": "version: 1\n", "apps/web/envs/prod.yaml": None},
            [("configctl.yaml", 1, "schema")],
            id="no-environments",
        ),
        pytest.param(
            {"configctl.yaml": "version: 1\nenvironments: [dev, prod]\nenvs: []\n"},
            [("configctl.yaml", 3, "unknown-key")],
            id="unknown-key",
        ),
        pytest.param(
            {"apps/web/app.yaml": "description: Web\nschema: schema.json\n"},
            [("apps/web/app.yaml", 1, "schema")],
            id="no-owners",
        ),
        pytest.param(
            {"apps/web/app.yaml": "description: Web\nowners: []\nschema: schema.json\n"},
            [("apps/web/app.yaml", 2, "schema")],
            id="empty-owners",
        ),
        pytest.param(
            {"apps/web/app.yaml": "# nothing\n"},
            [("apps/web/app.yaml", 1, "schema")],
            id="empty-manifest",
        ),
    ],
)
def test_file_schemas(files: dict[str, str], expected: list[tuple[str, int, str]]) -> None:
    assert triples(validate(files)) == expected


def test_a_broken_file_does_not_echo_schema_errors() -> None:
    # the duplicate key is the error; `replicas: 0` in the same (broken) file is not reported
    report = validate({"apps/web/values.yaml": "replicas: 0\nreplicas: 0\n"})
    assert triples(report) == [("apps/web/values.yaml", 2, "duplicate-key")]


def test_errors_are_sorted_by_file_and_line() -> None:
    report = validate(
        {
            "global.yaml": "log:\n  level: loud\n",
            "apps/web/values.yaml": "replicas: 2\nhost: 1\nzzz: 1\n",
            "environments/dev.yaml": "- x\n",
        }
    )
    keys = [(f.file, f.line, f.column) for f in report.errors]
    assert keys == sorted(keys)
    assert len(report.errors) == 4


def test_unset_of_nothing_is_reported() -> None:
    report = validate({"apps/web/envs/prod.yaml": "replicas: 4\ntimeout: !unset\n"})
    assert [(w.file, w.line, w.rule) for w in report.warnings] == [
        ("apps/web/envs/prod.yaml", 2, "unset-nothing")
    ]


def test_error_on_a_mapping_value_points_at_its_line() -> None:
    report = validate({"global.yaml": "log:\n  level: info\ncountry:\n  name: x\n"})
    assert triples(report) == [("global.yaml", 3, "schema")]


# --- app schemas --------------------------------------------------------------------


def test_compile_schema_json_and_yaml() -> None:
    compiled, findings = V.compile_schema("s.json", json.dumps(SCHEMA).encode())
    assert findings == []
    assert compiled is not None
    assert compiled.fast is not None
    compiled, findings = V.compile_schema(
        "s.yaml", b"type: object\nproperties:\n  a: {type: string}\n"
    )
    assert findings == []
    assert compiled is not None


@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [
        pytest.param(
            "s.json",
            '{"type": "object",\n "properties": {\n}\n',
            [("json-syntax", 4, Severity.ERROR)],
            id="json-syntax",
        ),
        pytest.param(
            "s.json", "[1, 2]", [("schema-invalid", 1, Severity.ERROR)], id="not-an-object"
        ),
        pytest.param(
            "s.yaml",
            "type: object\nproperties:\n  a:\n    type: strin\n",
            [("schema-invalid", 4, Severity.ERROR)],
            id="bad-type",
        ),
        pytest.param(
            "s.yaml",
            "type: object\nrequired: a\n",
            [("schema-invalid", 2, Severity.ERROR)],
            id="bad-required",
        ),
        pytest.param(
            "s.yaml",
            "type: object\nproperties:\n  a: {type: integer, maximun: 3}\n",
            [("schema-unknown-keyword", 3, Severity.WARNING)],
            id="typo-keyword",
        ),
        pytest.param(
            "s.yaml",
            "type: object\nx-owner: me\nproperties:\n  a: {x-secret: true}\n",
            [],
            id="x-annotations",
        ),
        pytest.param(
            "s.yaml",
            "$schema: http://json-schema.org/draft-07/schema#\ntype: object\n",
            [("schema-draft", 1, Severity.WARNING)],
            id="other-draft",
        ),
        pytest.param(
            "s.yaml",
            "type: object\ntype: string\n",
            [("duplicate-key", 2, Severity.ERROR)],
            id="strict-yaml",
        ),
    ],
)
def test_compile_schema_findings(
    file: str, text: str, expected: list[tuple[str, int, Severity]]
) -> None:
    compiled, findings = V.compile_schema(file, text.encode())
    assert [(f.rule, f.line, f.severity) for f in findings] == expected
    if any(rule.startswith(("schema-invalid", "json-syntax")) for rule, _, _ in expected):
        assert compiled is None


def test_remote_ref_is_never_fetched() -> None:
    schema = {
        "type": "object",
        "properties": {"replicas": {"$ref": "https://example.invalid/r.json"}},
    }
    report = validate({"apps/web/schema.json": json.dumps(schema)})
    assert triples(report) == [("apps/web/schema.json", 1, "schema-unresolvable-ref")]


def test_schema_cache_compiles_once_per_content(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = V.compile_schema

    def counting(file: str, data: bytes, **kwargs: Any) -> Any:
        calls.append(file)
        return real(file, data, **kwargs)

    monkeypatch.setattr(V, "compile_schema", counting)
    cache: dict[str, Any] = {}
    validate({}, schema_cache=cache)
    validate({"global.yaml": "log:\n  level: debug\n"}, schema_cache=cache)
    assert calls == ["apps/web/schema.json"]
    validate(
        {"apps/web/schema.json": json.dumps({**SCHEMA, "title": "changed"})}, schema_cache=cache
    )
    assert calls == ["apps/web/schema.json", "apps/web/schema.json"]


# --- the fast path ------------------------------------------------------------------

TREES = [
    {},
    {"global.yaml": "log:\n  level: loud\n"},
    {"apps/web/values.yaml": "replicas: 2\ncountry: no\nhsot: x\n"},
    {"apps/web/values.yaml": "host: x\n", "apps/web/envs/prod.yaml": None},
    {"apps/web/values.yaml": "replicas: 2\npassword: short\nrelease: 2024-13-01\n"},
    {"environments/prod.yaml": "database:\n  port: 0\n  extra: 1\n"},
]


@pytest.mark.parametrize("files", TREES)
def test_the_fast_path_changes_nothing(
    files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_rs = validate(files)
    monkeypatch.setattr(V, "_rs", None)
    without_rs = validate(files)
    assert with_rs == without_rs


DIFF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["i"],
    "properties": {
        "s": {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^\\w+$"},
        "d": {"type": "string", "format": "date"},
        "t": {"type": "string", "format": "date-time"},
        "i": {"type": "integer", "minimum": 0, "maximum": 10, "multipleOf": 2},
        "n": {"type": "number", "exclusiveMaximum": 1.5},
        "e": {"enum": ["a", 1, True, None]},
        "ip": {"type": "string", "format": "ipv4"},
        "em": {"type": "string", "format": "email"},
        "l": {"type": "array", "uniqueItems": True, "items": {"type": ["integer", "boolean"]}},
        "o": {"type": "object", "minProperties": 1, "propertyNames": {"pattern": "^[a-z]+$"}},
    },
}
_COMPILED, _ = V.compile_schema("diff.json", json.dumps(DIFF_SCHEMA).encode())
TRICKY = ["2024-01-01", "20240101", "2024-02-30", "2024-01-01T10:00:00Z", "2024-01-01T10:00:00", "1.2.3.4",
          "01.2.3.4", "256.1.1.1", "a@b", "ab", "٣٣", "a b", "1:30", "", "é"]  # fmt: skip
SCALAR = st.one_of(
    st.text(max_size=5),
    st.sampled_from(TRICKY),
    st.integers(-3, 12),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.none(),
)
VALUE = st.one_of(
    SCALAR, st.lists(SCALAR, max_size=3), st.dictionaries(st.text(max_size=3), SCALAR, max_size=2)
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(DIFF_SCHEMA["properties"])), VALUE, max_size=4))
def test_the_fast_path_never_accepts_what_jsonschema_rejects(instance: dict[str, Any]) -> None:
    # jsonschema-rs may be stricter (the precise validator then decides), never laxer
    assert _COMPILED is not None
    assert _COMPILED.fast is not None
    if V._fast_valid(_COMPILED.fast, instance):
        assert list(_COMPILED.python.iter_errors(instance)) == []


def test_unknown_keywords_found_deep_and_only_there() -> None:
    """The quick look (any unknown keyword at all?) and the walk that names them agree."""
    clean: dict[str, Any] = {
        "type": "object",
        "x-owner": "me",
        "properties": {"a": {"type": "integer", "x-secret": True}, "maximun": {"type": "string"}},
        "allOf": [{"if": {"properties": {"b": {"const": 1}}}, "then": {"required": ["b"]}}],
        "$defs": {"d": {"items": {"type": "string"}}},
    }
    assert not V._has_unknown_keywords(clean)
    assert V._walk_keywords(clean) == []
    for where in (("properties", "a"), ("allOf", 0, "then"), ("$defs", "d", "items"), ()):
        schema = json.loads(json.dumps(clean))
        node: Any = schema
        for part in where:
            node = node[part]
        node["maximun"] = 3
        assert V._has_unknown_keywords(schema)
        assert V._walk_keywords(schema) == [((*where, "maximun"), "maximun")]
