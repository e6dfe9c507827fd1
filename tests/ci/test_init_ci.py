"""`configctl init --ci github|gitlab`: the CI job and the pre-commit hook, written once.

New or existing repository, never overwriting without --force (exit 2 naming the file,
nothing written), and it prints what to commit.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from tests.support.cli import configctl

from configctl import __version__

WORKFLOW = ".github/workflows/configctl.yml"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and ".git/" not in str(p)}


def test_github_in_a_new_folder_scaffolds_and_writes_the_workflow(tmp_path: Path) -> None:
    result = configctl("init", "new", "--ci", "github", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    repo = tmp_path / "new"
    assert (repo / "configctl.yaml").is_file()
    workflow = yaml.safe_load((repo / WORKFLOW).read_text(encoding="utf-8"))
    steps = workflow["jobs"]["configctl"]["steps"]
    assert steps[-1] == {"uses": f"configctl/configctl@v{__version__}"}
    assert steps[0]["with"] == {"persist-credentials": False}
    assert workflow["jobs"]["configctl"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    hooks = yaml.safe_load((repo / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    assert hooks["repos"][0]["rev"] == f"v{__version__}"
    assert hooks["repos"][0]["hooks"] == [{"id": "configctl-validate"}]
    assert "Commit them:" in result.stdout
    assert "cd new && git init && git add . && git commit" in result.stdout
    assert configctl("validate", repo).returncode == 0


def test_gitlab_in_an_existing_repository_adds_only_the_ci_files(tmp_path: Path) -> None:
    repo = tmp_path / "config"
    assert configctl("init", repo).returncode == 0
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "global.yaml").write_text("log:\n  level: error\n", encoding="utf-8")
    before = _tree(repo)
    result = configctl("init", "--ci", "gitlab", cwd=repo)
    assert result.returncode == 0, result.stderr
    after = _tree(repo)
    assert set(after) - set(before) == {".gitlab-ci.yml", ".pre-commit-config.yaml"}
    assert all(after[name] == data for name, data in before.items())  # nothing else touched
    job = yaml.safe_load((repo / ".gitlab-ci.yml").read_text(encoding="utf-8"))
    assert job["include"] == [
        {"remote": f"https://raw.githubusercontent.com/configctl/configctl/v{__version__}/templates/configctl.gitlab-ci.yml"}
    ]
    assert "git add .gitlab-ci.yml .pre-commit-config.yaml && git commit" in result.stdout
    assert "CONFIGCTL_GITLAB_TOKEN" in result.stdout
    assert "Created a configctl repository" not in result.stdout


def test_a_config_folder_in_a_monorepo_gets_its_ci_at_the_git_top(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    result = configctl("init", "deploy/config", "--ci", "github", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    workflow = yaml.safe_load((tmp_path / WORKFLOW).read_text(encoding="utf-8"))
    assert workflow["jobs"]["configctl"]["steps"][-1]["with"] == {"path": "deploy/config"}
    hooks = yaml.safe_load((tmp_path / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    assert hooks["repos"][0]["hooks"] == [{"id": "configctl-validate", "args": ["deploy/config"]}]
    assert not (tmp_path / "deploy/config/.github").exists()
    gitlab = configctl("init", "deploy/config", "--ci", "gitlab", "--force", cwd=tmp_path)
    assert gitlab.returncode == 0, gitlab.stderr
    assert yaml.safe_load((tmp_path / ".gitlab-ci.yml").read_text(encoding="utf-8"))["variables"] == {
        "CONFIGCTL_PATH": "deploy/config"
    }


@pytest.mark.parametrize(("ci", "taken"), [("github", WORKFLOW), ("gitlab", ".gitlab-ci.yml"), ("github", ".pre-commit-config.yaml")])
def test_an_existing_file_is_never_overwritten_without_force(tmp_path: Path, ci: str, taken: str) -> None:
    repo = tmp_path / "config"
    assert configctl("init", repo).returncode == 0
    (repo / taken).parent.mkdir(parents=True, exist_ok=True)
    (repo / taken).write_text("# mine\n", encoding="utf-8")
    before = _tree(repo)
    result = configctl("init", repo, "--ci", ci)
    assert result.returncode == 2
    assert taken in result.stderr
    assert "--force" in result.stderr
    assert _tree(repo) == before  # nothing written, not even the other file

    forced = configctl("init", repo, "--ci", ci, "--force")
    assert forced.returncode == 0, forced.stderr
    assert (repo / taken).read_text(encoding="utf-8") != "# mine\n"
    assert (repo / "global.yaml").read_bytes() == before["global.yaml"]  # --force touches only the CI files


def test_a_new_folder_with_a_taken_ci_file_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text("# mine\n", encoding="utf-8")
    result = configctl("init", "--ci", "gitlab", cwd=tmp_path)
    assert result.returncode == 2
    assert ".gitlab-ci.yml" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitlab-ci.yml"]


def test_an_unknown_ci_is_a_usage_error(tmp_path: Path) -> None:
    result = configctl("init", tmp_path / "x", "--ci", "jenkins")
    assert result.returncode == 2
    assert not (tmp_path / "x").exists()
