"""One vocabulary for output (issue 7, item 8), through the real command.

Every command that prints data takes ``-o/--output`` with ``text``, ``json`` and ``yaml``
(YAML is the JSON document, as YAML); `validate` and `diff` keep ``--format``/``-f`` as
the same option. Tables stay whole at 80 columns on a terminal: ages such as ``3m``,
7-character commits, action names never cut; `history` names who rolled back.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from tests.support.cli import configctl
from tests.support.gitrepo import GitRepo, git_env

ANSI = re.compile(r"\x1b\[[0-9;]*m")
ROLLER = "bob-the-operator"


@pytest.fixture(scope="module")
def history_repo(tmp_path_factory: pytest.TempPathFactory) -> GitRepo:
    """configs-example applied, a change by Ada applied, then rolled back by someone else."""
    repo = GitRepo.example(tmp_path_factory.mktemp("output") / "config")
    env = git_env()
    assert configctl("apply", "--repo", repo.path, env=env).returncode == 0
    repo.replace("apps/checkout/envs/production.yaml", "replicas: 6", "replicas: 7")
    repo.commit("more replicas")
    assert configctl("apply", "--repo", repo.path, env=env).returncode == 0
    done = configctl(
        "rollback", "checkout", "production", "--to", "1", "--repo", repo.path,
        env={**env, "CONFIGCTL_ACTOR": ROLLER},
    )
    assert done.returncode == 0, done.stderr
    repo.replace("apps/billing/values.yaml", "due_days: 30", "due_days: 45")  # for `diff`
    return repo


DATA_COMMANDS = {
    "validate": ["validate"],
    "diff": ["diff"],
    "get": ["get", "billing", "production"],
    "get-explain": ["get", "billing", "production", "invoice", "--explain"],
    "ls": ["ls"],
    "history": ["history", "checkout", "production"],
    "history-key": ["history", "checkout", "production", "replicas"],
    "show": ["show", "checkout", "production"],
    "audit": ["audit"],
    "status": ["status"],
    "apply-dry-run": ["apply", "--dry-run"],
}


@pytest.mark.parametrize("command", sorted(DATA_COMMANDS))
def test_every_data_command_speaks_text_json_and_yaml(history_repo: GitRepo, command: str) -> None:
    args = [*DATA_COMMANDS[command], "--repo", str(history_repo.path)]
    as_json = configctl(*args, "-o", "json", env=git_env())
    assert as_json.returncode in (0, 1), as_json.stderr
    as_yaml = configctl(*args, "--output", "yaml", env=git_env())
    assert as_yaml.returncode == as_json.returncode, as_yaml.stderr
    assert yaml.safe_load(as_yaml.stdout) == json.loads(as_json.stdout)
    as_text = configctl(*args, "-o", "text", env=git_env())
    assert as_text.returncode == as_json.returncode, as_text.stderr
    assert as_text.stdout.strip()


@pytest.mark.parametrize("command", ["validate", "diff"])
@pytest.mark.parametrize("flag", ["--format", "-f", "--output", "-o"])
def test_validate_and_diff_keep_format_as_an_alias(history_repo: GitRepo, command: str, flag: str) -> None:
    result = configctl(command, "--repo", history_repo.path, flag, "json", env=git_env())
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), dict)


def test_existing_output_values_keep_working(history_repo: GitRepo) -> None:
    base = ["--repo", str(history_repo.path)]
    assert "INVOICE_DUE_DAYS=" in configctl("get", "billing", "production", *base, "-o", "env").stdout
    assert configctl("get", "billing", "production", *base, "-o", "table").returncode == 0
    assert configctl("ls", *base, "-o", "table").returncode == 0
    assert configctl("diff", *base, "--format", "markdown").stdout.startswith("### configctl diff")
    assert configctl("validate", *base, "--format", "github").returncode == 0


def _terminal(*args: str | Path) -> list[str]:
    """Run as on an 80-column terminal; the lines without colour codes."""
    result = configctl(*args, env={**git_env(), "COLUMNS": "80", "TTY_COMPATIBLE": "1"})
    assert result.returncode == 0, result.stderr
    lines = [ANSI.sub("", line).rstrip() for line in result.stdout.splitlines()]
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    return lines


def test_history_at_80_columns_shows_ages_short_commits_and_who_rolled_back(history_repo: GitRepo) -> None:
    head = history_repo.head()
    lines = _terminal("history", "checkout", "production", "--repo", history_repo.path)
    rows = [line.split() for line in lines if re.match(r"^\s*\d+\s", line)]
    assert [r[0] for r in rows] == ["3", "2", "1"]
    assert rows[1][1] == head[:7]
    assert all(re.fullmatch(r"\d+[smhd]|now", r[2]) for r in rows), rows
    rollback = next(line for line in lines if line.strip().startswith("3 "))
    assert ROLLER in rollback
    assert "Ada Operator" not in rollback  # the author of the commit it undid is not its author
    assert "rollback to v1" in rollback


def test_key_history_names_who_rolled_back(history_repo: GitRepo) -> None:
    lines = _terminal("history", "checkout", "production", "replicas", "--repo", history_repo.path)
    assert ROLLER in next(line for line in lines if line.strip().startswith("3 "))
    text = configctl("history", "checkout", "production", "--repo", history_repo.path, env=git_env()).stdout
    assert ROLLER in text.splitlines()[1]  # piped: tab-separated, same columns


def test_audit_at_80_columns_never_cuts_an_action_name(history_repo: GitRepo) -> None:
    lines = _terminal("audit", "--repo", history_repo.path)
    body = "\n".join(lines)
    for action in ("commit.applied", "version.created", "rollback"):
        assert re.search(rf"\s{re.escape(action)}\s", body), body
    assert "…" not in body


@pytest.mark.parametrize(
    "args",
    [
        ["ls"],
        ["get", "checkout", "production", "-o", "table"],
        ["get", "checkout", "production", "--explain", "-o", "table"],
        ["history", "checkout", "production", "database.host"],
    ],
)
def test_other_tables_fit_80_columns(history_repo: GitRepo, args: list[str]) -> None:
    _terminal(*args, "--repo", history_repo.path)
