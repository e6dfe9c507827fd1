"""pre-commit runs configctl's two hooks on sample config repositories.

The hook repository is a snapshot of this checkout (tracked and untracked, not ignored
files) committed in a temporary git repository, because pre-commit installs hooks from a
commit. Both hooks are ``language: python``: pre-commit pip-installs configctl from that
commit into an environment of its own, exactly as it does for a user's
``.pre-commit-config.yaml`` line.

That install costs a minute or more here (venv creation and unpacking under load, not
downloads), and ``pre-commit try-repo`` would pay it on every call: it always installs
into a new temporary store. So the tests do what try-repo does, with one store for the
session: a config naming the hook repository at its commit and every hook of its
manifest (the config try-repo writes), installed once with ``pre-commit install-hooks``
into a session ``PRE_COMMIT_HOME``, then ``pre-commit run --config`` on the staged files
of each sample repository, as `git commit` would run them.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from tests.ci import tools
from tests.ci.tools import configctl
from tests.support.gitrepo import GitRepo, git_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

FIXED_DATE = "2026-01-01T00:00:00+00:00"


@pytest.fixture(scope="session")
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


@dataclass(frozen=True)
class Hooks:
    """configctl's hooks at one commit, installed once in a pre-commit store of their own."""

    config: Path
    """A ``.pre-commit-config.yaml`` naming every hook of the hook repository's manifest."""
    home: Path
    """The ``PRE_COMMIT_HOME`` holding the installed hook environment."""

    def env(self) -> dict[str, str]:
        return git_env() | {"PRE_COMMIT_COLOR": "never", "PRE_COMMIT_HOME": str(self.home)}


@pytest.fixture(scope="session")
def hooks(hook_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Hooks:
    """The config try-repo would write for ``hook_repo``, its environment installed once."""
    folder = tmp_path_factory.mktemp("pre-commit")
    rev = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=hook_repo,
        env=git_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    manifest = yaml.safe_load((hook_repo / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    ids = sorted(hook["id"] for hook in manifest)
    assert ids == ["configctl-diff-check", "configctl-validate"]
    config = folder / ".pre-commit-config.yaml"
    repo = {"repo": str(hook_repo), "rev": rev, "hooks": [{"id": i} for i in ids]}
    config.write_text(yaml.safe_dump({"repos": [repo]}), encoding="utf-8")
    found = Hooks(config=config, home=folder / "home")
    installed = subprocess.run(
        [tools.python_tool("pre-commit"), "install-hooks", "--config", str(config)],
        cwd=hook_repo,
        env=found.env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=800,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return found


@pytest.fixture
def config_repo(tmp_path: Path) -> GitRepo:
    """A valid config repository (the `init` scaffold) with one commit."""
    assert configctl("init", tmp_path / "config").returncode == 0
    repo = GitRepo.init(tmp_path / "config")
    repo.commit("initial configuration")
    return repo


def run_hooks(repo: GitRepo, hooks: Hooks) -> subprocess.CompletedProcess[str]:
    """Both hooks on the staged files, as `git commit` would run them."""
    return subprocess.run(
        [tools.python_tool("pre-commit"), "run", "--config", str(hooks.config)],
        cwd=repo.path,
        env=hooks.env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=800,
    )


def _outcome(output: str, name: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith(name + "."))
    return line.rsplit(".", 1)[1].strip()


def test_both_hooks_pass_a_valid_change_outside_production(
    config_repo: GitRepo, hooks: Hooks
) -> None:
    config_repo.replace("environments/dev.yaml", "level: debug", "level: info")
    config_repo.git("add", "-A")
    result = run_hooks(config_repo, hooks)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _outcome(result.stdout, "configctl validate") == "Passed"
    assert _outcome(result.stdout, "configctl diff-check") == "Passed"


def test_both_hooks_stop_a_broken_change_to_production(config_repo: GitRepo, hooks: Hooks) -> None:
    # the staged file is valid YAML; the error is found by resolving the whole tree
    config_repo.replace("apps/example/envs/production.yaml", "replicas: 3", "replicas: 0")
    config_repo.git("add", "-A")
    result = run_hooks(config_repo, hooks)
    assert result.returncode == 1, result.stdout + result.stderr
    assert _outcome(result.stdout, "configctl validate") == "Failed"
    assert "apps/example/envs/production.yaml:1:" in result.stdout
    assert "[schema]" in result.stdout
    assert _outcome(result.stdout, "configctl diff-check") == "Failed"
    assert "protected environment(s) production" in result.stdout
    assert "example/production: replicas" in result.stdout
