"""The `configctl` command end to end, each call a new process: init -> validate -> get -> ls,
the three report formats, the exit codes and `schema export`.

The scaffold written by `configctl init` is the fixture: its layers are known line by
line (``cli/configctl/cli/commands/init.py``), so ``--explain`` can be checked to name the
exact file and line that set each value and every layer it overrode.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from tests.support.cli import configctl

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scaffold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository created by `configctl init`; tests must not change it."""
    repo = tmp_path_factory.mktemp("cli") / "config"
    result = configctl("init", repo)
    assert result.returncode == 0, result.stderr
    assert "Created a configctl repository" in result.stdout
    return repo


@pytest.fixture
def repo(scaffold: Path, tmp_path: Path) -> Path:
    """A private copy of the scaffold that a test may break."""
    copy = tmp_path / "config"
    shutil.copytree(scaffold, copy)
    return copy


# --- init and validate --------------------------------------------------------------


def test_init_writes_a_valid_repository(scaffold: Path) -> None:
    for rel in (
        "configctl.yaml",
        "global.yaml",
        "apps/example/app.yaml",
        "apps/example/schema.json",
    ):
        assert (scaffold / rel).is_file(), rel
    result = configctl("validate", scaffold)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_init_refuses_an_existing_repository(scaffold: Path) -> None:
    result = configctl("init", scaffold)
    assert result.returncode == 2
    assert "already holds a configctl.yaml" in result.stderr


def test_validate_defaults_to_the_current_directory_and_honours_repo(
    scaffold: Path, tmp_path: Path
) -> None:
    assert configctl("validate", cwd=scaffold).returncode == 0
    assert configctl("validate", "--repo", scaffold, cwd=tmp_path).returncode == 0
    assert (
        configctl("validate", cwd=tmp_path, env={"CONFIGCTL_REPO": str(scaffold)}).returncode == 0
    )


def test_validate_json_of_a_valid_tree(scaffold: Path) -> None:
    result = configctl("validate", scaffold, "--format", "json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"valid": True, "errors": [], "warnings": []}


def _break(repo: Path) -> None:
    """Three problems in three files, plus a warning."""
    (repo / "apps/example/envs/dev.yaml").write_text("replicas: 0\n", encoding="utf-8")
    (repo / "global.yaml").write_text("log:\n  level: info\n  level: debug\n", encoding="utf-8")
    (repo / "apps/example/envs/qa.yaml").write_text("replicas: 2\n", encoding="utf-8")
    (repo / "environments/staging.yaml").write_text("# nothing yet\n", encoding="utf-8")


EXPECTED_ERRORS = [
    ("apps/example/envs/dev.yaml", 1, "schema"),
    ("apps/example/envs/qa.yaml", 1, "undeclared-environment"),
    ("global.yaml", 3, "duplicate-key"),
]


def test_validate_json_lists_every_error_sorted(repo: Path) -> None:
    _break(repo)
    result = configctl("validate", repo, "--format", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert [(e["file"], e["line"], e["rule"]) for e in report["errors"]] == EXPECTED_ERRORS
    assert [(w["file"], w["line"], w["rule"]) for w in report["warnings"]] == [
        ("environments/staging.yaml", 1, "empty-file")
    ]
    for finding in report["errors"]:
        assert set(finding) >= {"file", "line", "column", "rule", "message"}


def test_validate_text_names_file_line_column(repo: Path) -> None:
    _break(repo)
    result = configctl("validate", repo)
    assert result.returncode == 1
    located = re.findall(
        r"^(\S+):(\d+):(\d+): error \[([a-z-]+)\]", result.stdout, flags=re.MULTILINE
    )
    assert [(f, int(line), rule) for f, line, _, rule in located] == EXPECTED_ERRORS
    assert re.search(
        r"^environments/staging\.yaml:1:1: warning \[empty-file\]",
        result.stdout,
        flags=re.MULTILINE,
    )
    assert "3 errors" in result.stdout


def test_validate_github_annotations(repo: Path) -> None:
    _break(repo)
    result = configctl("validate", repo, "--format", "github")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    pattern = re.compile(
        r"^::(error|warning) file=([^,]+),line=(\d+),col=(\d+),title=([a-z-]+)::(.+)$"
    )
    parsed = [pattern.match(line) for line in lines]
    assert all(parsed), lines
    errors = [
        (m.group(2), int(m.group(3)), m.group(5)) for m in parsed if m and m.group(1) == "error"
    ]
    warnings = [
        (m.group(2), int(m.group(3)), m.group(5)) for m in parsed if m and m.group(1) == "warning"
    ]
    assert errors == EXPECTED_ERRORS
    assert warnings == [("environments/staging.yaml", 1, "empty-file")]
    # the hint travels with the annotation, on one line
    (undeclared,) = [line for line in lines if "title=undeclared-environment" in line]
    assert "(hint: add it to `environments:` in configctl.yaml)" in undeclared


def test_validate_github_prints_nothing_for_a_valid_tree(scaffold: Path) -> None:
    result = configctl("validate", scaffold, "--format", "github")
    assert result.returncode == 0
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["validate", "/nonexistent/configctl-repo"], id="missing-path"),
        pytest.param(["validate", "--format", "xml"], id="bad-format"),
        pytest.param(["validate", "a", "b"], id="extra-argument"),
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    result = configctl(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr


def test_validate_a_file_is_a_usage_error(scaffold: Path) -> None:
    result = configctl("validate", scaffold / "configctl.yaml")
    assert result.returncode == 2
    assert "not a directory" in result.stderr


def test_validate_an_empty_folder_is_invalid(tmp_path: Path) -> None:
    result = configctl("validate", tmp_path, "--format", "json")
    assert result.returncode == 2  # not a configctl repository: a usage error (issue 7)
    assert [e["rule"] for e in json.loads(result.stdout)["errors"]] == ["missing-repo-file"]


# --- get ----------------------------------------------------------------------------


def test_get_yaml(scaffold: Path) -> None:
    result = configctl("get", "example", "production", "--repo", scaffold)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "log:",
        "  level: warning",
        "  format: json",
        "replicas: 3",
        "feature:",
        "  new_checkout: false",
    ]


def test_get_json(scaffold: Path) -> None:
    result = configctl("get", "example", "dev", "--repo", scaffold, "-o", "json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {
        "log": {"level": "debug", "format": "json"},
        "replicas": 1,
        "feature": {"new_checkout": False},
    }


def test_get_env(scaffold: Path) -> None:
    result = configctl("get", "example", "production", "--repo", scaffold, "-o", "env")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "LOG_LEVEL=warning",
        "LOG_FORMAT=json",
        "REPLICAS=3",
        "FEATURE_NEW_CHECKOUT=false",
    ]


def test_get_table_names_the_source_of_each_value(scaffold: Path) -> None:
    result = configctl("get", "example", "production", "--repo", scaffold, "-o", "table")
    assert result.returncode == 0
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert rows[0] == ["KEY", "VALUE", "SOURCE"]
    assert ["replicas", "3", "apps/example/envs/production.yaml:1"] in rows
    assert ["log.level", "warning", "environments/production.yaml:2"] in rows
    assert ["log.format", "json", "global.yaml:4"] in rows


def test_get_dotted_key(scaffold: Path) -> None:
    leaf = configctl("get", "example", "staging", "log.level", "--repo", scaffold)
    assert (leaf.returncode, leaf.stdout.strip()) == (0, "info")
    subtree = configctl("get", "example", "staging", "log", "--repo", scaffold, "-o", "json")
    assert json.loads(subtree.stdout) == {"level": "info", "format": "json"}
    env = configctl("get", "example", "staging", "log", "--repo", scaffold, "-o", "env")
    assert env.stdout.splitlines() == ["LOG_LEVEL=info", "LOG_FORMAT=json"]


def test_get_explain_names_the_winner_and_the_overridden_layers(scaffold: Path) -> None:
    result = configctl("get", "example", "production", "log.level", "--repo", scaffold, "--explain")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "log.level = warning",
        "  set by     environments/production.yaml:2 (environment)",
        "  overrides  global.yaml:3 (global) = info",
    ]


def test_get_explain_json(scaffold: Path) -> None:
    result = configctl(
        "get", "example", "production", "--repo", scaffold, "--explain", "-o", "json"
    )
    assert result.returncode == 0
    explained = {item["key"]: item for item in json.loads(result.stdout)}
    replicas = explained["replicas"]
    assert replicas["value"] == 3
    assert replicas["source"] == {
        "layer": "app-environment",
        "file": "apps/example/envs/production.yaml",
        "line": 1,
        "column": 1,
        "value": 3,
    }
    assert [(o["file"], o["line"], o["layer"], o["value"]) for o in replicas["overrides"]] == [
        ("apps/example/values.yaml", 2, "app", 1)
    ]
    assert explained["log.format"]["overrides"] == []
    assert explained["log.format"]["source"]["file"] == "global.yaml"


def test_get_explain_after_unset_names_the_unset(repo: Path) -> None:
    (repo / "apps/example/envs/production.yaml").write_text(
        "replicas: 3\nfeature: !unset\n", encoding="utf-8"
    )
    assert configctl("validate", repo).returncode == 0
    result = configctl("get", "example", "production", "feature.new_checkout", "--repo", repo)
    assert result.returncode == 1
    assert "not set" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["nope", "production"], 2, "no app `nope`", id="unknown-app"),
        pytest.param(["example", "prod"], 2, "no environment `prod`", id="unknown-env"),
        pytest.param(["example", "production", "no.such.key"], 1, "not set", id="unset-key"),
    ],
)
def test_get_errors(scaffold: Path, args: list[str], code: int, message: str) -> None:
    result = configctl("get", *args, "--repo", scaffold)
    assert result.returncode == code
    assert message in result.stderr
    assert result.stdout == ""


# --- ls -----------------------------------------------------------------------------


def test_ls_table_and_json(scaffold: Path) -> None:
    table = configctl("ls", "--repo", scaffold)
    assert table.returncode == 0
    assert [line.split("\t") for line in table.stdout.splitlines()] == [
        ["APP", "dev", "staging", "production"],
        ["example", "4", "4", "4"],
    ]
    as_json = json.loads(configctl("ls", "--repo", scaffold, "-o", "json").stdout)
    assert as_json["environments"] == ["dev", "staging", "production"]
    assert as_json["apps"] == [
        {"app": "example", "keys": {"dev": 4, "staging": 4, "production": 4}}
    ]
    assert as_json["valid"] is True


# --- schema export, version, the example repository -----------------------------------


def test_schema_export_writes_every_schema(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "schemas"
    result = configctl("schema", "export", dest)
    assert result.returncode == 0, result.stderr
    written = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.json"))
    shipped = sorted(
        p.relative_to(ROOT / "schemas").as_posix() for p in (ROOT / "schemas").rglob("*.json")
    )
    assert written == shipped
    assert {"v1/configctl.schema.json", "v1/app.schema.json", "v1/values.schema.json"} <= set(
        written
    )
    for rel in written:
        exported = json.loads((dest / rel).read_text(encoding="utf-8"))
        assert exported == json.loads((ROOT / "schemas" / rel).read_text(encoding="utf-8"))
        assert exported["$id"].startswith("https://configctl.dev/schemas/v1/")
    assert sorted(result.stdout.splitlines()) == sorted(str(dest / rel) for rel in written)


def test_schema_export_onto_a_file_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x", encoding="utf-8")
    assert configctl("schema", "export", target).returncode == 2


def test_version() -> None:
    result = configctl("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"configctl \d+\.\d+\.\d+\S*\n", result.stdout)


def test_configs_example_is_valid() -> None:
    result = configctl("validate", ROOT / "configs-example", "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is True
    assert report["errors"] == []


def test_unset_in_a_list_is_an_error_and_get_does_not_crash(repo: Path) -> None:
    (repo / "apps/example/values.yaml").write_text(
        "replicas: 1\nfeature:\n  new_checkout: false\nhosts:\n  - a\n  - !unset\n",
        encoding="utf-8",
    )
    report = json.loads(configctl("validate", repo, "--format", "json").stdout)
    assert [(e["file"], e["line"], e["rule"]) for e in report["errors"]] == [
        ("apps/example/values.yaml", 6, "unset-not-in-mapping")
    ]
    for out in ("yaml", "json", "env", "table"):
        result = configctl("get", "example", "dev", "--repo", repo, "-o", out)
        assert result.returncode == 0, (out, result.stderr)
        assert "internal error" not in result.stderr
        assert "have errors" in result.stderr  # the broken file is named
