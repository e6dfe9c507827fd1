"""The exit-code table (issue 7, item 7): an ordinary mistake is a usage error, exit 2.

Every command is walked, through the real console script, with an unknown app, an unknown
environment, a missing path and a malformed ``--db``. Each must exit 2 with a message
naming the mistake, never 70 ("a bug in configctl") nor 3 ("a backend is down"), and must
create nothing: no ``.configctl/`` folder, no SQLite file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.support.cli import configctl
from tests.support.gitrepo import GitRepo, git_env

#: Commands that name an app and an environment; ``{app}``/``{env}`` are filled in.
PAIR_COMMANDS: dict[str, list[str]] = {
    "get": ["get", "{app}", "{env}"],
    "get-explain": ["get", "{app}", "{env}", "--explain"],
    "history": ["history", "{app}", "{env}"],
    "history-key": ["history", "{app}", "{env}", "replicas"],
    "show": ["show", "{app}", "{env}"],
    "rollback": ["rollback", "{app}", "{env}", "--to", "1"],
    "release": ["release", "{app}", "{env}"],
    "audit": ["audit", "--app", "{app}", "--env", "{env}"],
}

#: Every command with a repository or store, as it is called with nothing else wrong.
ALL_COMMANDS: dict[str, list[str]] = {
    **PAIR_COMMANDS,
    "validate": ["validate"],
    "ls": ["ls"],
    "diff": ["diff"],
    "apply": ["apply"],
    "status": ["status"],
    "revert": ["revert", "HEAD"],
    "db-upgrade": ["db", "upgrade"],
}

#: Commands that open the store, for the malformed --db rows.
STORE_COMMANDS = ("history", "history-key", "show", "rollback", "release", "audit", "apply", "status", "db-upgrade")


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> GitRepo:
    """configs-example, applied once into its default store; tests must not change it."""
    repo = GitRepo.example(tmp_path_factory.mktemp("exit-codes") / "config")
    result = configctl("apply", "--repo", repo.path, env=git_env())
    assert result.returncode == 0, result.stderr
    return repo


def _fill(args: list[str], app: str = "checkout", env: str = "production") -> list[str]:
    return [a.format(app=app, env=env) for a in args]


def _assert_usage(result: object, *needles: str) -> None:
    stderr = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 2, (result.returncode, stderr)  # type: ignore[attr-defined]
    assert "internal error" not in stderr
    for needle in needles:
        assert needle in stderr, stderr


@pytest.mark.parametrize("command", sorted(PAIR_COMMANDS))
def test_unknown_app_is_a_usage_error_with_did_you_mean(applied: GitRepo, command: str) -> None:
    result = configctl(*_fill(PAIR_COMMANDS[command], app="chekout"), "--repo", applied.path, env=git_env())
    _assert_usage(result, "no app `chekout`", "billing, checkout, search", "did you mean `checkout`?")


@pytest.mark.parametrize("command", sorted(PAIR_COMMANDS))
def test_unknown_environment_is_a_usage_error_with_did_you_mean(applied: GitRepo, command: str) -> None:
    result = configctl(*_fill(PAIR_COMMANDS[command], env="prod"), "--repo", applied.path, env=git_env())
    _assert_usage(result, "no environment `prod`", "dev, staging, production", "did you mean `production`?")


@pytest.mark.parametrize("command", sorted(ALL_COMMANDS))
def test_a_missing_repo_path_is_a_usage_error_that_creates_nothing(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing" / "config"
    result = configctl(*_fill(ALL_COMMANDS[command]), "--repo", missing, env=git_env())
    _assert_usage(result, str(missing), "no such directory")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", sorted(ALL_COMMANDS))
def test_a_folder_that_is_not_a_repository_is_a_usage_error(command: str, tmp_path: Path) -> None:
    (tmp_path / "notes.yaml").write_text("a: 1\n", encoding="utf-8")
    result = configctl(*_fill(ALL_COMMANDS[command]), "--repo", tmp_path, env=git_env())
    _assert_usage(result, "not a configctl repository")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.yaml"]


@pytest.mark.parametrize("command", sorted(ALL_COMMANDS))
def test_a_file_as_repo_is_a_usage_error(command: str, tmp_path: Path) -> None:
    target = tmp_path / "configctl.yaml"
    target.write_text("version: 1\n", encoding="utf-8")
    result = configctl(*_fill(ALL_COMMANDS[command]), "--repo", target, env=git_env())
    _assert_usage(result, str(target), "not a directory")


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("nonsense", id="no-scheme"),
        pytest.param("mysql://u@h/db", id="unsupported"),
        pytest.param("postgresql://u@:bad:port/db", id="bad-port"),
    ],
)
@pytest.mark.parametrize("command", STORE_COMMANDS)
def test_a_malformed_db_url_is_a_usage_error(applied: GitRepo, command: str, url: str) -> None:
    before = sorted(p.name for p in (applied.path / ".configctl").iterdir())
    result = configctl(*_fill(ALL_COMMANDS[command]), "--repo", applied.path, "--db", url, env=git_env())
    _assert_usage(result, "--db")
    assert "u@" not in result.stderr  # the URL (it may hold a password) is not echoed
    assert sorted(p.name for p in (applied.path / ".configctl").iterdir()) == before


@pytest.mark.parametrize("command", STORE_COMMANDS)
def test_a_db_file_in_a_missing_folder_is_a_usage_error_that_creates_nothing(
    applied: GitRepo, command: str, tmp_path: Path
) -> None:
    target = tmp_path / "missing" / "store.db"
    result = configctl(*_fill(ALL_COMMANDS[command]), "--repo", applied.path, "--db", f"sqlite:///{target}", env=git_env())
    _assert_usage(result, str(target))
    assert not target.parent.exists()


def test_status_reads_a_db_file_still_to_be_created_as_empty(applied: GitRepo, tmp_path: Path) -> None:
    target = tmp_path / "store.db"
    result = configctl("status", "--repo", applied.path, "--db", f"sqlite:///{target}", env=git_env())
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["history", "show", "audit", "rollback", "release"])
def test_reading_a_db_file_that_does_not_exist_creates_nothing(applied: GitRepo, command: str, tmp_path: Path) -> None:
    target = tmp_path / "store.db"
    result = configctl(*_fill(ALL_COMMANDS[command]), "--repo", applied.path, "--db", f"sqlite:///{target}", env=git_env())
    _assert_usage(result, str(target), "no such store file")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["history", "show", "audit", "status", "ls", "get", "diff", "validate"])
def test_reading_before_the_first_apply_creates_no_store(command: str, tmp_path: Path) -> None:
    repo = GitRepo.example(tmp_path / "config")
    result = configctl(*_fill(ALL_COMMANDS[command]), "--repo", repo.path, env=git_env())
    assert result.returncode in (0, 2), result.stderr  # `show` has nothing to show: exit 2
    assert "internal error" not in result.stderr
    assert not (repo.path / ".configctl").exists()


def test_a_directory_as_db_file_is_a_usage_error(applied: GitRepo, tmp_path: Path) -> None:
    result = configctl("history", "checkout", "production", "--repo", applied.path, "--db", f"sqlite:///{tmp_path}", env=git_env())
    _assert_usage(result, str(tmp_path), "is a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes through any permission")
def test_an_unreadable_folder_is_a_usage_error_naming_it(applied: GitRepo, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        result = configctl("apply", "--repo", applied.path, "--db", f"sqlite:///{locked}/store.db", env=git_env())
        _assert_usage(result, str(locked))
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["ls"], 0),
        (["get", "checkout", "production", "replicas"], 0),
        (["validate"], 0),
        (["history", "checkout", "production", "-n", "1"], 0),
    ],
)
def test_commands_run_from_a_subfolder_find_the_repository_root(applied: GitRepo, command: list[str], expected: int) -> None:
    result = configctl(*command, cwd=applied.path / "apps" / "checkout" / "envs", env=git_env())
    assert result.returncode == expected, result.stderr
    assert not (applied.path / "apps" / "checkout" / "envs" / ".configctl").exists()


def test_outside_any_repository_is_a_usage_error(tmp_path: Path) -> None:
    result = configctl("ls", cwd=tmp_path, env=git_env())
    _assert_usage(result, "not inside a configctl repository")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_is_accepted_before_and_after_the_command(applied: GitRepo, where: str) -> None:
    args = ["ls", "--repo", str(applied.path)]
    argv = ["--debug", *args] if where == "before" else [*args, "--debug"]
    result = configctl(*argv, env=git_env())
    assert result.returncode == 0, result.stderr
    assert "checkout" in result.stdout


@pytest.mark.parametrize("command", ["apply", "db-upgrade"])
def test_a_db_file_under_a_file_is_a_usage_error_naming_it(applied: GitRepo, command: str, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    result = configctl(*ALL_COMMANDS[command], "--repo", applied.path, "--db", f"sqlite:///{blocker}/store.db", env=git_env())
    _assert_usage(result, str(blocker), "not a directory")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder nobody may create files in)")
def test_a_db_file_that_cannot_be_created_is_a_usage_error(applied: GitRepo) -> None:
    result = configctl("db", "upgrade", "--repo", applied.path, "--db", "sqlite:////proc/configctl-test.db", env=git_env())
    _assert_usage(result, "/proc/configctl-test.db")
