"""`configctl ci comment` against a local server playing the GitHub and GitLab APIs.

The contract of the CI step: the first push creates one comment, every later push updates
that same comment (found by its hidden marker), other comments are never touched, and a
missing variable or a refused token ends with a message that says what to set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.ci import forge_server
from tests.ci.forge_server import GITHUB_TOKEN, GITLAB_TOKEN, Forge
from tests.support.cli import configctl

MARKER = "<!-- configctl-diff -->"


@pytest.fixture
def forge() -> Iterator[Forge]:
    with forge_server.running() as server:
        yield server


def _github_env(forge: Forge, tmp_path: Path, number: int = 7) -> dict[str, str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": number}}), encoding="utf-8")
    return {
        "GITHUB_ACTIONS": "true",
        "GITLAB_CI": "",
        "GITHUB_API_URL": forge.url,
        "GITHUB_REPOSITORY": "acme/config",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_TOKEN": GITHUB_TOKEN,
    }


def _gitlab_env(forge: Forge, **extra: str) -> dict[str, str]:
    return {
        "GITHUB_ACTIONS": "",
        "GITLAB_CI": "true",
        "CI_API_V4_URL": f"{forge.url}/api/v4",
        "CI_PROJECT_ID": "42",
        "CI_MERGE_REQUEST_IID": "3",
        "CI_JOB_TOKEN": "job-token",
        "CONFIGCTL_GITLAB_TOKEN": GITLAB_TOKEN,
        **extra,
    }


def _body(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "diff.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_github_first_push_creates_second_push_updates_the_same_comment(forge: Forge, tmp_path: Path) -> None:
    env = _github_env(forge, tmp_path)
    human = forge.add("github", "acme/config", 7, "LGTM once the diff is green")
    quoting = forge.add("github", "acme/config", 7, f"> {MARKER}\n> quoted by a reviewer")

    first = configctl("ci", "comment", _body(tmp_path, "### diff one\n"), env=env)
    assert first.returncode == 0, first.stderr
    comments = forge.thread("github", "acme/config", 7)
    assert len(comments) == 3
    ours = comments[-1]
    assert first.stdout.strip() == f"created comment {ours['id']}"
    assert ours["body"] == f"{MARKER}\n### diff one\n"

    second = configctl("ci", "comment", _body(tmp_path, "### diff two\n"), env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == f"updated comment {ours['id']}"
    assert len(comments) == 3
    assert ours["body"] == f"{MARKER}\n### diff two\n"
    assert [c["id"] for c in comments[:2]] == [human, quoting]
    assert comments[0]["body"] == "LGTM once the diff is green"
    assert ("PATCH", f"/repos/acme/config/issues/comments/{ours['id']}") in forge.requests

    third = configctl("ci", "comment", _body(tmp_path, "### diff two\n"), env=env)
    assert third.stdout.strip() == f"unchanged comment {ours['id']}"


def test_github_finds_its_comment_on_a_later_page(forge: Forge, tmp_path: Path) -> None:
    for n in range(130):
        forge.add("github", "acme/config", 7, f"chatter {n}")
    ours = forge.add("github", "acme/config", 7, f"{MARKER}\nold diff\n")
    result = configctl("ci", "comment", _body(tmp_path, "new diff"), env=_github_env(forge, tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"updated comment {ours}"
    assert len(forge.thread("github", "acme/config", 7)) == 131
    assert ("GET", "/repos/acme/config/issues/7/comments?per_page=100&page=2") in forge.requests


def test_github_cuts_a_body_longer_than_github_accepts(forge: Forge, tmp_path: Path) -> None:
    body = "".join(f"| `key.{n}` | changed | `a` | `b` |\n" for n in range(5000))
    result = configctl("ci", "comment", _body(tmp_path, body), env=_github_env(forge, tmp_path))
    assert result.returncode == 0, result.stderr
    posted = forge.thread("github", "acme/config", 7)[0]["body"]
    assert len(posted) <= 65_536
    assert posted.startswith(MARKER + "\n| `key.0`")
    assert "cut: the comment is longer than the platform accepts" in posted


def test_github_refused_token_names_the_permission(forge: Forge, tmp_path: Path) -> None:
    env = _github_env(forge, tmp_path) | {"GITHUB_TOKEN": "wrong"}
    result = configctl("ci", "comment", _body(tmp_path, "x"), env=env)
    assert result.returncode == 3
    assert "HTTP 401: Bad credentials" in result.stderr
    assert "pull-requests: write" in result.stderr
    assert "wrong" not in result.stderr


def test_gitlab_first_push_creates_second_push_updates_the_same_note(forge: Forge, tmp_path: Path) -> None:
    env = _gitlab_env(forge)
    forge.add("gitlab", "42", 3, f"{MARKER} mentioned in a system note", system=True)
    forge.add("gitlab", "42", 3, "a reviewer's note", system=False)

    first = configctl("ci", "comment", _body(tmp_path, "diff one"), env=env)
    assert first.returncode == 0, first.stderr
    notes = forge.thread("gitlab", "42", 3)
    assert len(notes) == 3
    ours = notes[-1]
    assert first.stdout.strip() == f"created comment {ours['id']}"
    assert ours["body"] == f"{MARKER}\ndiff one\n"

    second = configctl("ci", "comment", _body(tmp_path, "diff two"), env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == f"updated comment {ours['id']}"
    assert len(notes) == 3
    assert ours["body"] == f"{MARKER}\ndiff two\n"
    assert notes[1]["body"] == "a reviewer's note"
    assert ("PUT", f"/api/v4/projects/42/merge_requests/3/notes/{ours['id']}") in forge.requests


def test_gitlab_job_token_alone_is_refused_with_what_to_set(forge: Forge, tmp_path: Path) -> None:
    env = _gitlab_env(forge, CONFIGCTL_GITLAB_TOKEN="")
    result = configctl("ci", "comment", _body(tmp_path, "x"), env=env)
    assert result.returncode == 3
    assert "HTTP 403" in result.stderr
    assert "CONFIGCTL_GITLAB_TOKEN" in result.stderr


@pytest.mark.parametrize(
    ("platform", "unset", "named"),
    [
        ("github", "GITHUB_REPOSITORY", "GITHUB_REPOSITORY"),
        ("github", "GITHUB_TOKEN", "GITHUB_TOKEN"),
        ("gitlab", "CI_MERGE_REQUEST_IID", "CI_MERGE_REQUEST_IID"),
        ("gitlab", "CI_API_V4_URL", "CI_API_V4_URL"),
    ],
)
def test_a_missing_variable_is_a_usage_error_naming_it(
    forge: Forge, tmp_path: Path, platform: str, unset: str, named: str
) -> None:
    env = _github_env(forge, tmp_path) if platform == "github" else _gitlab_env(forge)
    env[unset] = ""
    result = configctl("ci", "comment", _body(tmp_path, "x"), env=env)
    assert result.returncode == 2
    assert named in result.stderr
    assert forge.requests == []


def test_outside_ci_the_platform_must_be_named(tmp_path: Path) -> None:
    result = configctl("ci", "comment", _body(tmp_path, "x"), env={"GITHUB_ACTIONS": "", "GITLAB_CI": ""})
    assert result.returncode == 2
    assert "--platform" in result.stderr
