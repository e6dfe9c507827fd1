"""A rollout control or a rollback keeps the embedded default's snapshot folder current, as
`apply` does: a ConfigClient reading the folder (no server up) sees the new version at once."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.cli import configctl_argv
from tests.support.gitrepo import GitRepo, git_env

from configctl.client import ConfigClient

ROOT = Path(__file__).resolve().parents[2]
TREE = ROOT / "tests" / "data" / "trees" / "positive" / "rollouts-every-part"


def _configctl(repo: GitRepo, *args: str) -> str:
    done = subprocess.run(
        [*configctl_argv(), *args, "--repo", str(repo.path)],
        env={**git_env(), "CONFIGCTL_ACTOR": "test-operator"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_pause_updates_the_snapshot_folder_a_client_reads(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "config", from_tree=TREE)
    (repo.path / "expected.json").unlink()
    repo.commit("rollouts")
    _configctl(repo, "apply")
    with ConfigClient("checkout", "prod", repo=repo.path, cache_dir=tmp_path / "lkg", environ={}, auto_refresh=False) as client:
        assert client.version == 1
        _configctl(repo, "rollout", "pause", "checkout", "prod", "faster-timeout")
        assert client.refresh() is True
        assert client.version == 2
        assert client.state.source == "snapshot_dir"


def test_rollback_updates_the_snapshot_folder_a_client_reads(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "config", from_tree=TREE)
    (repo.path / "expected.json").unlink()
    repo.commit("rollouts")
    _configctl(repo, "apply")
    values = repo.path / "apps" / "checkout" / "values.yaml"
    values.write_text(values.read_text().replace("banner: hello", "banner: bad release"))
    repo.commit("a change to roll back")
    _configctl(repo, "apply")
    with ConfigClient("checkout", "prod", repo=repo.path, cache_dir=tmp_path / "lkg", environ={}, auto_refresh=False) as client:
        assert (client.version, client.get("banner")) == (2, "bad release")
        _configctl(repo, "rollback", "checkout", "prod", "--to", "1")
        assert client.refresh() is True
        assert (client.version, client.get("banner")) == (3, "hello")
