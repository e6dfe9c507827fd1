"""`configctl validate --format gitlab`: the code-quality report GitLab reads.

Checked against ``tests/data/ci/gitlab-code-quality.schema.json`` (GitLab's documented
report format; see the schema's ``$comment`` for where its shape comes from).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from tests.acceptance.test_cli import EXPECTED_ERRORS, _break
from tests.support.cli import configctl

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "data/ci/gitlab-code-quality.schema.json").read_text(encoding="utf-8")
)


def _report(repo: Path, expect: int = 1) -> list[dict[str, Any]]:
    result = configctl("validate", repo, "--format", "gitlab")
    assert result.returncode == expect, result.stderr
    issues = json.loads(result.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(issues)
    return issues  # type: ignore[no-any-return]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    assert configctl("init", path).returncode == 0
    return path


def test_a_valid_tree_gives_an_empty_report(repo: Path) -> None:
    assert _report(repo, expect=0) == []


def test_each_finding_is_an_issue_with_file_line_and_a_stable_fingerprint(repo: Path) -> None:
    _break(repo)
    issues = _report(repo)
    errors = [i for i in issues if i["severity"] == "major"]
    assert [(i["location"]["path"], i["location"]["lines"]["begin"], i["check_name"]) for i in errors] == [
        (file, line, f"configctl/{rule}") for file, line, rule in EXPECTED_ERRORS
    ]
    warnings = [i for i in issues if i["severity"] == "minor"]
    assert [i["location"]["path"] for i in warnings] == ["environments/staging.yaml"]
    assert len({i["fingerprint"] for i in issues}) == len(issues)
    assert all(i["type"] == "issue" and i["description"] for i in issues)

    # a line added above a finding moves it, but GitLab must still see the same finding
    (repo / "apps/example/envs/dev.yaml").write_text("# moved down\n\nreplicas: 0\n", encoding="utf-8")
    moved = _report(repo)
    before = {i["check_name"]: i for i in errors}
    after = {i["check_name"]: i for i in moved if i["severity"] == "major"}
    assert after["configctl/schema"]["location"]["lines"]["begin"] == 3
    assert after["configctl/schema"]["fingerprint"] == before["configctl/schema"]["fingerprint"]


def test_identical_findings_on_two_lines_stay_two_issues(repo: Path) -> None:
    (repo / "apps/example/envs/dev.yaml").write_text("replicas: 0\n", encoding="utf-8")
    (repo / "apps/example/envs/staging.yaml").write_text("replicas: 0\n", encoding="utf-8")
    shutil.copy(repo / "apps/example/envs/dev.yaml", repo / "apps/example/envs/production.yaml")
    issues = _report(repo)
    assert len({i["fingerprint"] for i in issues}) == len(issues) >= 3


def test_paths_are_from_the_git_work_tree_root(tmp_path: Path) -> None:
    """GitLab (and GitHub) place a finding by its path from the checkout, not the config root."""
    top = tmp_path / "monorepo"
    assert configctl("init", top / "deploy/config").returncode == 0
    subprocess.run(["git", "init", "-q", str(top)], check=True)
    (top / "deploy/config/apps/example/envs/dev.yaml").write_text("replicas: 0\n", encoding="utf-8")
    issues = _report(top / "deploy/config")
    assert [i["location"]["path"] for i in issues] == ["deploy/config/apps/example/envs/dev.yaml"]
    github = configctl("validate", top / "deploy/config", "--format", "github")
    assert github.stdout.startswith("::error file=deploy/config/apps/example/envs/dev.yaml,line=1,")
