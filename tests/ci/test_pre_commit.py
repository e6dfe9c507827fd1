"""`pre-commit try-repo` runs configctl's two hooks on sample config repositories.

The hook repository is a snapshot of this checkout (tracked and untracked, not ignored
files) committed in a temporary git repository, because pre-commit installs hooks from a
commit. Both hooks are ``language: python``: pre-commit pip-installs configctl from that
commit into an environment of its own, exactly as it does for a user's
``.pre-commit-config.yaml`` line. try-repo installs into a temporary store each time
(about a minute here, mostly venv creation and unpacking under load, not downloads: a
local wheelhouse saved only seconds), so the tests make two calls, each running both hooks.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from tests.ci import tools
from tests.support.cli import configctl
from tests.support.gitrepo import GitRepo, git_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

FIXED_DATE = "2026-01-01T00:00:00+00:00"


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's files as one commit in a fresh repository."""
    dest = tmp_path_factory.mktemp("hook-repo")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=tools.ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        rel = raw.decode()
        source = tools.ROOT / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    env = git_env() | {"GIT_AUTHOR_DATE": FIXED_DATE, "GIT_COMMITTER_DATE": FIXED_DATE}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "configctl hooks"]):
        subprocess.run(["git", *args], cwd=dest, env=env, check=True, capture_output=True)
    return dest


@pytest.fixture
def config_repo(tmp_path: Path) -> GitRepo:
    """A valid config repository (the `init` scaffold) with one commit."""
    assert configctl("init", tmp_path / "config").returncode == 0
    repo = GitRepo.init(tmp_path / "config")
    repo.commit("initial configuration")
    return repo


def try_repo(repo: GitRepo, hook_repo: Path) -> subprocess.CompletedProcess[str]:
    """Both hooks on the staged files, as `git commit` would run them."""
    env = git_env() | {"PRE_COMMIT_COLOR": "never"}
    return subprocess.run(
        [tools.python_tool("pre-commit"), "try-repo", str(hook_repo)],
        cwd=repo.path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=800,
    )


def _outcome(output: str, name: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith(name + "."))
    return line.rsplit(".", 1)[1].strip()


def test_both_hooks_pass_a_valid_change_outside_production(config_repo: GitRepo, hook_repo: Path) -> None:
    config_repo.replace("environments/dev.yaml", "level: debug", "level: info")
    config_repo.git("add", "-A")
    result = try_repo(config_repo, hook_repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _outcome(result.stdout, "configctl validate") == "Passed"
    assert _outcome(result.stdout, "configctl diff-check") == "Passed"


def test_both_hooks_stop_a_broken_change_to_production(config_repo: GitRepo, hook_repo: Path) -> None:
    # the staged file is valid YAML; the error is found by resolving the whole tree
    config_repo.replace("apps/example/envs/production.yaml", "replicas: 3", "replicas: 0")
    config_repo.git("add", "-A")
    result = try_repo(config_repo, hook_repo)
    assert result.returncode == 1, result.stdout + result.stderr
    assert _outcome(result.stdout, "configctl validate") == "Failed"
    assert "apps/example/envs/production.yaml:1:" in result.stdout
    assert "[schema]" in result.stdout
    assert _outcome(result.stdout, "configctl diff-check") == "Failed"
    assert "protected environment(s) production" in result.stdout
    assert "example/production: replicas" in result.stdout
