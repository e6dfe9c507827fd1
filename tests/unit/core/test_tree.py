"""The tree: which file is which, and the cross-file rules, on in-memory snapshots."""

from __future__ import annotations

from collections import Counter

import pytest

from configctl.core import parse as parse_mod
from configctl.core import tree as tree_mod
from configctl.core.model import FileEntry
from configctl.core.parse import Document

REPO = "version: 1\nenvironments: [dev, prod]\n"
MANIFEST = "description: Web\nowners: [team-web]\n"


def snapshot(files: dict[str, str | FileEntry | None]) -> dict[str, FileEntry]:
    base: dict[str, str | FileEntry | None] = {
        "configctl.yaml": REPO,
        "apps/web/app.yaml": MANIFEST,
        **files,
    }
    out = {}
    for path, content in base.items():
        if content is None:
            continue
        if isinstance(content, FileEntry):
            out[path] = content
        else:
            data = content.encode("utf-8")
            out[path] = FileEntry(data=data, size=len(data))
    return out


def build(files: dict[str, str | FileEntry | None]) -> tree_mod.ConfigTree:
    return tree_mod.build(snapshot(files))


def rules(t: tree_mod.ConfigTree) -> list[tuple[str, int, str]]:
    # a set: the report de-duplicates (app.yml is flagged by the manifest check and the file loop)
    return sorted({(f.file, f.line, f.rule) for f in t.findings})


def test_classifies_every_layer() -> None:
    t = build(
        {
            "global.yaml": "a: 1\n",
            "environments/dev.yaml": "a: 2\n",
            "environments/prod.yaml": "a: 3\n",
            "apps/web/values.yaml": "a: 4\n",
            "apps/web/envs/prod.yaml": "a: 5\n",
            "apps/web/rollouts.yaml": "rollouts: []\n",
            "apps/api/app.yaml": MANIFEST,
        }
    )
    assert t.findings == ()
    assert t.environments == ("dev", "prod")
    assert sorted(t.apps) == ["api", "web"]
    assert [(name, d.file) for name, d in t.layers("web", "prod")] == [
        ("global", "global.yaml"),
        ("environment", "environments/prod.yaml"),
        ("app", "apps/web/values.yaml"),
        ("app-environment", "apps/web/envs/prod.yaml"),
    ]
    assert [name for name, _ in t.layers("web", "dev")] == ["global", "environment", "app"]
    assert [name for name, _ in t.layers("api", "dev")] == ["global", "environment"]
    assert t.apps["web"].rollouts is not None
    assert {d.file for d in t.documents()} == {
        "configctl.yaml",
        "global.yaml",
        "environments/dev.yaml",
        "environments/prod.yaml",
        "apps/web/app.yaml",
        "apps/web/values.yaml",
        "apps/web/envs/prod.yaml",
        "apps/web/rollouts.yaml",
        "apps/api/app.yaml",
    }


def test_parse_is_injected_and_called_once_per_file() -> None:
    calls: Counter[str] = Counter()

    def counting(path: str, data: bytes) -> Document:
        calls[path] += 1
        return parse_mod.parse(path, data)

    files = snapshot(
        {
            "global.yaml": "a: 1\n",
            "apps/web/values.yaml": "a: 2\n",
            "apps/web/envs/dev.yaml": "a: 3\n",
        }
    )
    tree_mod.build(files, parse_file=counting)
    assert calls == Counter(dict.fromkeys(files, 1))


def test_schema_path_is_resolved_relative_to_the_app() -> None:
    t = build(
        {
            "apps/web/app.yaml": MANIFEST + "schema: ../../schemas/web.json\n",
            "schemas/web.json": "{}",
        }
    )
    assert t.findings == ()
    assert t.apps["web"].schema_path == "schemas/web.json"
    t = build(
        {
            "apps/web/app.yaml": MANIFEST + "schema: ./s/schema.yaml\n",
            "apps/web/s/schema.yaml": "{}\n",
        }
    )
    assert t.apps["web"].schema_path == "apps/web/s/schema.yaml"
    assert t.findings == ()  # the schema is not an unknown file


CROSS_FILE = [
    pytest.param(
        {"configctl.yaml": None}, [("configctl.yaml", 1, "missing-repo-file")], id="no-repo-file"
    ),
    pytest.param(
        {"environments/qa.yaml": "a: 1\n"},
        [("environments/qa.yaml", 1, "undeclared-environment")],
        id="undeclared-env",
    ),
    pytest.param(
        {"apps/web/envs/qa.yaml": "a: 1\n"},
        [("apps/web/envs/qa.yaml", 1, "undeclared-environment")],
        id="undeclared-app-env",
    ),
    pytest.param(
        {"apps/api/values.yaml": "a: 1\n"},
        [("apps/api/app.yaml", 1, "missing-app-manifest")],
        id="missing-app-yaml",
    ),
    pytest.param(
        {"apps/api/envs/dev.yaml": "a: 1\n"},
        [("apps/api/app.yaml", 1, "missing-app-manifest")],
        id="missing-app-yaml-env-only",
    ),
    pytest.param(
        {"apps/Billing/app.yaml": MANIFEST},
        [("apps/Billing/app.yaml", 1, "invalid-name")],
        id="uppercase-app",
    ),
    pytest.param(
        {"apps/my_app/app.yaml": MANIFEST},
        [("apps/my_app/app.yaml", 1, "invalid-name")],
        id="underscore-app",
    ),
    pytest.param(
        {"apps/-web/app.yaml": MANIFEST},
        [("apps/-web/app.yaml", 1, "invalid-name")],
        id="leading-dash",
    ),
    pytest.param(
        {f"apps/{'a' * 64}/app.yaml": MANIFEST},
        [(f"apps/{'a' * 64}/app.yaml", 1, "invalid-name")],
        id="64-characters",
    ),
    pytest.param(
        {"apps/x.y/values.yaml": "a: 1\n"},
        [("apps/x.y/values.yaml", 1, "invalid-name")],
        id="dotted-app-without-manifest",
    ),
    pytest.param(
        {"environments/Dev.yaml": "a: 1\n"},
        [("environments/Dev.yaml", 1, "invalid-name")],
        id="uppercase-env-file",
    ),
    pytest.param(
        {"apps/Web/app.yaml": MANIFEST},
        [
            ("apps/Web/app.yaml", 1, "invalid-name"),
            ("apps/web", 1, "case-collision"),
        ],
        id="app-case-collision",
    ),
    pytest.param(
        {"apps/web/Values.yaml": "a: 1\n", "apps/web/values.yaml": "a: 1\n"},
        [
            ("apps/web/Values.yaml", 1, "unknown-file"),
            ("apps/web/values.yaml", 1, "case-collision"),
        ],
        id="file-case-collision",
    ),
    pytest.param(
        {"apps/web/values.yml": "a: 1\n"},
        [("apps/web/values.yml", 1, "yml-extension")],
        id="yml-values",
    ),
    pytest.param(
        {"environments/dev.yml": "a: 1\n"},
        [("environments/dev.yml", 1, "yml-extension")],
        id="yml-env",
    ),
    pytest.param(
        {"apps/web/app.yaml": None, "apps/web/app.yml": MANIFEST},
        [
            ("apps/web/app.yaml", 1, "missing-app-manifest"),
            ("apps/web/app.yml", 1, "yml-extension"),
        ],
        id="yml-manifest",
    ),
    pytest.param(
        {"apps/web/valeus.yaml": "a: 1\n"},
        [("apps/web/valeus.yaml", 1, "unknown-file")],
        id="unknown-app-file",
    ),
    pytest.param(
        {"apps/web/envs/eu/dev.yaml": "a: 1\n"},
        [("apps/web/envs/eu/dev.yaml", 1, "unknown-file")],
        id="nested-app-env",
    ),
    pytest.param(
        {"environments/eu/dev.yaml": "a: 1\n"},
        [("environments/eu/dev.yaml", 1, "unknown-file")],
        id="nested-env",
    ),
    pytest.param(
        {"global.yaml": "- a\n"}, [("global.yaml", 1, "values-not-mapping")], id="global-list"
    ),
    pytest.param(
        {"apps/web/values.yaml": "just text\n"},
        [("apps/web/values.yaml", 1, "values-not-mapping")],
        id="values-scalar",
    ),
    pytest.param(
        {"apps/web/values.yaml": 'a:\n  b:\n    "c.d": 1\n'},
        [("apps/web/values.yaml", 3, "key-dot")],
        id="nested-key-dot",
    ),
    pytest.param(
        {"apps/web/envs/dev.yaml": '"a.b": 1\n'},
        [("apps/web/envs/dev.yaml", 1, "key-dot")],
        id="key-dot-app-env",
    ),
    pytest.param(
        {"apps/web/envs/dev.yaml": FileEntry(symlink=True)},
        [("apps/web/envs/dev.yaml", 1, "symlink")],
        id="symlink-file",
    ),
    pytest.param(
        {"apps/linked/": FileEntry(symlink=True)}, [("apps/linked", 1, "symlink")], id="symlink-dir"
    ),
    pytest.param(
        {"global.yaml": FileEntry(size=parse_mod.MAX_FILE_BYTES + 1)},
        [("global.yaml", 1, "file-too-large")],
        id="too-large",
    ),
    pytest.param(
        {"apps/web/app.yaml": MANIFEST + "schema: nope.json\n"},
        [("apps/web/app.yaml", 3, "schema-not-found")],
        id="schema-not-found",
    ),
    pytest.param(
        {"apps/web/app.yaml": MANIFEST + "schema: /etc/passwd\n"},
        [("apps/web/app.yaml", 3, "schema-outside-repo")],
        id="schema-absolute",
    ),
    pytest.param(
        {"apps/web/app.yaml": MANIFEST + "schema: ../../../x.json\n"},
        [("apps/web/app.yaml", 3, "schema-outside-repo")],
        id="schema-escapes",
    ),
    pytest.param(
        {"configctl.yaml": "version: 1\nenvironments:\n  - dev\n  - Dev\n"},
        [("configctl.yaml", 4, "duplicate-environment")],
        id="duplicate-env-case",
    ),
    pytest.param(
        {"configctl.yaml": "version: 1\nenvironments:\n  - dev\n  - pr od\n"},
        [("configctl.yaml", 4, "invalid-name")],
        id="invalid-env-name",
    ),
]


@pytest.mark.parametrize(("files", "expected"), CROSS_FILE)
def test_cross_file_rules(
    files: dict[str, str | FileEntry | None], expected: list[tuple[str, int, str]]
) -> None:
    assert rules(build(files)) == sorted(expected)


def test_undeclared_environment_suggests_the_closest() -> None:
    (finding,) = build({"apps/web/envs/prd.yaml": "a: 1\n"}).findings
    assert finding.hint == "did you mean `prod`?"


def test_unknown_app_file_suggests_the_closest() -> None:
    (finding,) = build({"apps/web/rollout.yaml": "a: 1\n"}).findings
    assert finding.hint == "did you mean `rollouts.yaml`?"


def test_key_dot_hint_shows_the_nested_form() -> None:
    (finding,) = build({"global.yaml": '"a.b.c": 1\n'}).findings
    assert finding.hint == "nest it instead: a: {b: {c: …}}"


def test_rejected_files_are_not_layers() -> None:
    t = build(
        {
            "environments/qa.yaml": "a: 1\n",
            "apps/web/envs/qa.yaml": "a: 1\n",
            "apps/web/values.yml": "a: 1\n",
            "apps/Api/app.yaml": MANIFEST,
            "apps/web/envs/dev.yaml": FileEntry(symlink=True),
        }
    )
    assert "qa" not in t.env_layers
    assert t.apps["web"].envs == {}
    assert t.apps["web"].values is None
    assert "Api" not in t.apps


def test_parse_findings_are_tree_findings_and_the_document_is_kept() -> None:
    t = build({"apps/web/values.yaml": "a: 1\na: 2\n"})
    assert rules(t) == [("apps/web/values.yaml", 2, "duplicate-key")]
    assert t.apps["web"].values is not None
    assert t.apps["web"].values.value == {"a": 1}


def test_files_outside_the_layout_are_ignored() -> None:
    # the repository may hold docs, CI files and the like at the top level
    t = build({"README.yaml": "a: 1\n", "docs/example.yaml": "- x\n", "renovate.json": "{}"})
    assert t.findings == ()


@pytest.mark.parametrize(
    ("path", "hint"),
    [
        pytest.param("globals.yaml", "did you mean `global.yaml`?", id="root-file"),
        pytest.param("environment/dev.yaml", "did you mean `environments/`?", id="folder"),
    ],
)
def test_near_misses_of_the_layout_are_warned_about(path: str, hint: str) -> None:
    t = build({path: "a: 1\n"})
    (warning,) = [f for f in t.findings if f.rule == "unknown-file"]
    assert (warning.file, warning.severity.value, warning.hint) == (path, "warning", hint)


def test_unrelated_files_are_left_alone() -> None:
    t = build({"docs/readme.yaml": "a: 1\n", ".github/workflows/ci.yaml": "on: push\n", "mkdocs.yaml": "x: 1\n"})
    assert not [f for f in t.findings if f.rule == "unknown-file"]


def test_key_dots_found_at_every_depth_in_walk_order() -> None:
    """Mappings without a dotted key are only gone through; the findings and their order
    are those of the key-by-key walk."""
    text = 'a:\n  "x.y": 1\n  b:\n    "c.d": 1\n    e: {f: 1}\n  g:\n    "h.i": {"j.k": 2}\n"l.m": 3\nn: {o: {"p.q": 4}}\n'
    found = tree_mod._check_values(parse_mod.parse("v.yaml", text.encode()))
    assert [(f.line, f.column, f.message.split("`")[1]) for f in found] == [
        (8, 1, "l.m"),
        (9, 9, "p.q"),
        (2, 3, "x.y"),
        (7, 5, "h.i"),
        (7, 13, "j.k"),
        (4, 5, "c.d"),
    ]
