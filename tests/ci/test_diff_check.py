"""`configctl ci diff-check`: the optional pre-commit warning for protected environments."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.ci.tools import configctl
from tests.support.gitrepo import GitRepo, git_env


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    assert configctl("init", tmp_path / "config").returncode == 0
    repo = GitRepo.init(tmp_path / "config")
    repo.commit("initial configuration")
    return repo


def _check(repo: GitRepo, *args: str) -> tuple[int, str]:
    result = configctl("ci", "diff-check", "--repo", repo.path, *args, env=git_env())
    return result.returncode, result.stdout + result.stderr


def test_the_last_declared_environment_is_protected_by_default(repo: GitRepo) -> None:
    repo.replace("global.yaml", "format: json", "format: text")  # every environment changes
    code, out = _check(repo)
    assert code == 1
    assert "protected environment(s) production" in out
    assert "example/production: log.format" in out
    assert "example/dev" not in out
    assert "example/staging" not in out


def test_a_change_elsewhere_passes(repo: GitRepo) -> None:
    repo.replace("environments/dev.yaml", "level: debug", "level: info")
    assert _check(repo) == (0, "No change to the resolved values of production.\n")


def test_env_chooses_the_protected_environments(repo: GitRepo) -> None:
    repo.replace("environments/dev.yaml", "level: debug", "level: info")
    code, out = _check(repo, "--env", "staging", "--env", "dev")
    assert code == 1
    assert "example/dev: log.level" in out


def test_a_repository_without_commits_has_nothing_to_compare(tmp_path: Path) -> None:
    assert configctl("init", tmp_path / "config").returncode == 0
    GitRepo.init(tmp_path / "config")
    result = configctl("ci", "diff-check", "--repo", tmp_path / "config", env=git_env())
    assert result.returncode == 0, result.stderr
    assert "No commit yet" in result.stdout
