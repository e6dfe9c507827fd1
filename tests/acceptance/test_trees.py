"""The catalogue of example trees, checked through the real `configctl validate` command.

Every case under ``tests/data/trees/{positive,negative}/<case>/`` is a complete small
repository with an ``expected.json``::

    {"exit_code": 1,
     "errors":   [{"file": ..., "line": ..., "rule": ...,
                   "message_contains": ..., "hint_contains": ..., "message_excludes": ...}],
     "warnings": [...],
     "get":      [{"app": ..., "env": ..., "key": ..., "value": ...}],   (positive cases)
     "xfail":    "BUG: ..."}                                             (a known core bug)

The (file, line, rule) lists must match exactly and in order (the report is sorted by
file and line); the ``*_contains`` / ``*_excludes`` fields are substring checks of the
finding's message or hint. ``expected.json`` itself sits at the case root, where
configctl ignores unknown top-level files.

Inputs that should not live in git (non-UTF-8 bytes, UTF-16, NUL bytes, symlinks, a file
over the 1 MiB bound, CRLF) are built in a temporary directory from the ``baseline``
case by :data:`GENERATED`.

Each case runs in its own process (the console script next to ``sys.executable``), all of
them at once on a thread pool in a session fixture: about 0.3 s of CPU per case, most of
it the interpreter importing jsonschema and friends, so ~15 s for the catalogue on two
cores. ``get`` checks of positive cases run in-process through Typer's runner.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.support.cli import configctl_argv
from tests.support.trees import copy_data_tree

TREES = Path(__file__).resolve().parents[1] / "data" / "trees"
BASELINE = TREES / "positive" / "baseline"
VALUES = "apps/web/values.yaml"


@dataclass(frozen=True)
class Case:
    id: str
    root: Path
    expected: dict[str, Any]


# --- cases built in a temporary directory ------------------------------------------


def _write_bytes(rel: str, data: bytes) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)

    return make


def _symlink(
    rel: str, target: Callable[[Path], Path], *, directory: bool = False
) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        link = root / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(target(root), target_is_directory=directory)

    return make


def _outside_dir(root: Path) -> Path:
    outside = root.parent / f"{root.name}-outside"
    outside.mkdir(exist_ok=True)
    (outside / "values.yaml").write_text("replicas: 99\n", encoding="utf-8")
    return outside


def _err(file: str, line: int, rule: str, **contains: str) -> dict[str, Any]:
    return {
        "file": file,
        "line": line,
        "rule": rule,
        **{f"{k}_contains": v for k, v in contains.items()},
    }


GENERATED: dict[str, tuple[Callable[[Path], None], dict[str, Any]]] = {
    "latin-1": (
        _write_bytes(VALUES, "replicas: 2\nhost: caf\xe9.internal\n".encode("latin-1")),
        {"exit_code": 1, "errors": [_err(VALUES, 2, "encoding", message="byte 0xE9")]},
    ),
    "utf-16-bom": (
        _write_bytes(VALUES, "replicas: 2\n".encode("utf-16")),
        {"exit_code": 1, "errors": [_err(VALUES, 1, "encoding", message="UTF-16")]},
    ),
    "utf-32-bom": (
        _write_bytes(VALUES, "replicas: 2\n".encode("utf-32")),
        {"exit_code": 1, "errors": [_err(VALUES, 1, "encoding", message="UTF-32")]},
    ),
    "utf-16-no-bom": (
        # no BOM: the NUL bytes give it away; the message names the likely encoding
        _write_bytes(VALUES, "replicas: 2\n".encode("utf-16-le")),
        {"exit_code": 1, "errors": [_err(VALUES, 1, "encoding", message="UTF-16")]},
    ),
    "nul-byte": (
        _write_bytes(VALUES, b"replicas: 2\nhost: web\x00.internal\n"),
        {"exit_code": 1, "errors": [_err(VALUES, 2, "encoding", message="NUL byte")]},
    ),
    "symlink-outside": (
        _symlink("apps/web/envs/dev.yaml", lambda root: _outside_dir(root) / "values.yaml"),
        {"exit_code": 1, "errors": [_err("apps/web/envs/dev.yaml", 1, "symlink")]},
    ),
    "symlink-inside": (
        _symlink("environments/dev.yaml", lambda root: Path("..") / "global.yaml"),
        {"exit_code": 1, "errors": [_err("environments/dev.yaml", 1, "symlink")]},
    ),
    "symlink-dangling": (
        _symlink("environments/prod.yaml", lambda root: root / "no-such-file.yaml"),
        {"exit_code": 1, "errors": [_err("environments/prod.yaml", 1, "symlink")]},
    ),
    "symlink-directory": (
        _symlink("apps/linked", _outside_dir, directory=True),
        {"exit_code": 1, "errors": [_err("apps/linked", 1, "symlink")]},
    ),
    "oversize-file": (
        # over the 1 MiB bound: refused by size before it is read
        _write_bytes(
            "environments/dev.yaml", b"log:\n  level: debug\n# " + b"x" * (1024 * 1024) + b"\n"
        ),
        {
            "exit_code": 1,
            "errors": [_err("environments/dev.yaml", 1, "file-too-large", message="1048576")],
        },
    ),
    "utf-8-bom-and-crlf": (
        _write_bytes(VALUES, b"\xef\xbb\xbfreplicas: 2\r\nhost: web.internal\r\n"),
        {"exit_code": 0, "errors": []},
    ),
}


def _data_cases() -> list[Case]:
    out = []
    for kind in ("negative", "positive"):
        for root in sorted((TREES / kind).iterdir()):
            if root.is_dir():
                expected = json.loads((root / "expected.json").read_text(encoding="utf-8"))
                out.append(Case(f"{kind}/{root.name}", root, expected))
    return out


DATA_CASES = _data_cases()
ALL_IDS = [c.id for c in DATA_CASES] + [f"generated/{name}" for name in GENERATED]


@dataclass
class Outcome:
    case: Case
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None = field(default=None)


def _run(case: Case) -> Outcome:
    proc = subprocess.run(
        [*configctl_argv(), "validate", str(case.root), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1", "CONFIGCTL_DEBUG": ""},
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = None
    return Outcome(case, proc.returncode, proc.stdout, proc.stderr, report)


@pytest.fixture(scope="session")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case, run once through the real command, in parallel."""
    generated_root = tmp_path_factory.mktemp("generated-trees")
    cases = list(DATA_CASES)
    for name, (make, expected) in GENERATED.items():
        root = generated_root / name
        copy_data_tree("positive/baseline", root)
        make(root)
        cases.append(Case(f"generated/{name}", root, expected))
    with ThreadPoolExecutor(max_workers=max(4, (os.cpu_count() or 2) * 2)) as pool:
        return {o.case.id: o for o in pool.map(_run, cases)}


def _triples(findings: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    return [(f["file"], f["line"], f["rule"]) for f in findings]


def _check_texts(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> None:
    for want, have in zip(expected, got, strict=True):
        for key, text in want.items():
            if key.endswith("_contains"):
                field_name = key.removesuffix("_contains")
                assert text in (have.get(field_name) or ""), (
                    f"{field_name} of {_triples([have])}: {have.get(field_name)!r}"
                )
            elif key.endswith("_excludes"):
                field_name = key.removesuffix("_excludes")
                assert text not in (have.get(field_name) or ""), (
                    f"{field_name} of {_triples([have])} must not say {text!r}"
                )


def _params() -> list[Any]:
    out = []
    for case in DATA_CASES:
        reason = case.expected.get("xfail")
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(case.id, id=case.id, marks=marks))
    out.extend(pytest.param(f"generated/{name}", id=f"generated/{name}") for name in GENERATED)
    return out


@pytest.mark.parametrize("case_id", _params())
def test_tree(case_id: str, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[case_id]
    expected = outcome.case.expected
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert "internal error" not in outcome.stderr, outcome.stderr
    assert outcome.report is not None, f"not JSON on stdout: {outcome.stdout!r} {outcome.stderr!r}"
    report = outcome.report
    assert _triples(report["errors"]) == _triples(expected["errors"])
    assert _triples(report["warnings"]) == _triples(expected.get("warnings", []))
    assert outcome.returncode == expected["exit_code"]
    assert report["valid"] is (expected["exit_code"] == 0)
    _check_texts(expected["errors"], report["errors"])
    _check_texts(expected.get("warnings", []), report["warnings"])
    for finding in report["errors"] + report["warnings"]:
        assert set(finding) >= {"file", "line", "column", "rule", "message"}
        assert not Path(finding["file"]).is_absolute()
        assert finding["line"] >= 1
        assert finding["column"] >= 1


def test_reports_are_sorted_by_file_and_line(outcomes: dict[str, Outcome]) -> None:
    for outcome in outcomes.values():
        assert outcome.report is not None, outcome.case.id
        for kind in ("errors", "warnings"):
            keys = [(f["file"], f["line"], f["column"]) for f in outcome.report[kind]]
            assert keys == sorted(keys), f"{outcome.case.id}: {kind} not sorted"


def test_negative_cases_are_negative() -> None:
    for case in DATA_CASES:
        if case.id.startswith("negative/"):
            assert case.expected["errors"] or case.expected.get("warnings"), case.id
        else:
            assert case.expected["exit_code"] == 0, case.id
            assert not case.expected["errors"], case.id


# Every rule the catalogue and the cross-file rules name has at least one case.
REQUIRED_RULES = {
    "duplicate-key", "key-not-string", "unknown-tag", "multiple-documents", "alias-bomb",
    "encoding", "non-finite-number", "merge-key", "too-deep", "symlink", "file-too-large",
    "empty-file", "yaml-syntax", "number-out-of-range", "key-empty", "key-invisible-character",
    "unknown-alias", "unset-with-value", "undeclared-environment", "missing-app-manifest",
    "invalid-name", "case-collision", "yml-extension", "unknown-file", "values-not-mapping",
    "key-dot", "schema", "required", "unknown-key", "schema-not-found", "schema-outside-repo",
    "schema-unresolvable-ref", "schema-invalid", "json-syntax", "schema-unknown-keyword",
    "schema-draft", "missing-repo-file", "duplicate-environment", "unset-nothing",
}  # fmt: skip


def test_catalogue_covers_every_rule() -> None:
    covered = set()
    for case in DATA_CASES:
        for finding in case.expected["errors"] + case.expected.get("warnings", []):
            covered.add(finding["rule"])
    for _, expected in GENERATED.values():
        covered.update(f["rule"] for f in expected["errors"])
    assert REQUIRED_RULES - covered == set()
    negatives = [c for c in DATA_CASES if c.id.startswith("negative/")]
    assert len(negatives) + sum(1 for _, e in GENERATED.values() if e["errors"]) >= 40


# --- positive cases: the resolved values, through `configctl get` in-process ---------


def _get_params() -> list[Any]:
    out = []
    for case in DATA_CASES:
        for check in case.expected.get("get", []):
            out.append(
                pytest.param(
                    case, check, id=f"{case.id}:{check['app']}/{check['env']}/{check['key']}"
                )
            )
    return out


@pytest.mark.parametrize(("case", "check"), _get_params())
def test_positive_get(case: Case, check: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from configctl.cli.app import app

    result = CliRunner().invoke(
        app,
        ["get", check["app"], check["env"], check["key"], "--repo", str(case.root), "-o", "json"],
    )
    if check["value"] is None:  # the key must be absent
        assert result.exit_code == 1, result.output
        return
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == check["value"]


# --- the benchmark's generator: every error it injects is reported --------------------


def test_bench_tree_errors_are_all_reported(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gen_tree", TREES.parents[2] / "bench" / "gen_tree.py"
    )
    assert spec is not None
    assert spec.loader is not None
    gen_tree = importlib.util.module_from_spec(spec)
    sys.modules["gen_tree"] = gen_tree  # dataclasses look the module up while the class is built
    try:
        spec.loader.exec_module(gen_tree)
        injected = gen_tree.generate(tmp_path / "tree", 10)
    finally:
        del sys.modules["gen_tree"]
    case = Case("bench", tmp_path / "tree", {})
    outcome = _run(case)
    assert outcome.returncode == 1, outcome.stderr
    assert outcome.report is not None
    assert _triples(outcome.report["errors"]) == [(e.file, e.line, e.rule) for e in injected]
