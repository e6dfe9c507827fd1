"""The action and the GitLab job, run end to end on a pull request that breaks production.

A config repository in a monorepo folder (``config/``); a pull request that sets
``replicas: 0`` in production (against the app's schema) and turns a feature on. The job
checks out one commit (as actions/checkout and a shallow GitLab clone do), so it must
fetch the base itself. First push: the job fails, the error is annotated (GitHub) or in
the code-quality report (GitLab) at the file and line that set it, and one comment with
the diff -- the failure on top, then the blast radius -- is created. Second push fixes
it: the job passes and the same comment is updated, not duplicated.

The comment APIs are played by ``forge_server``; steps run under ``runner``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from tests.ci import forge_server, runner, tools
from tests.ci.forge_server import GITHUB_TOKEN, GITLAB_TOKEN, Forge
from tests.ci.tools import configctl
from tests.support.gitrepo import GitRepo, git_env

MARKER = "<!-- configctl-diff -->"
BROKEN_FILE = "config/apps/example/envs/production.yaml"


@pytest.fixture
def forge() -> Iterator[Forge]:
    with forge_server.running() as server:
        yield server


@pytest.fixture
def origin(tmp_path: Path) -> GitRepo:
    """main: a valid config in config/; branch pr: the breaking change."""
    repo = GitRepo.init(tmp_path / "origin")
    assert configctl("init", repo.path / "config").returncode == 0
    repo.commit("config")
    repo.git("config", "uploadpack.allowAnySHA1InWant", "true")  # GitHub and GitLab serve any commit
    repo.git("checkout", "-q", "-b", "pr")
    repo.replace("config/apps/example/envs/production.yaml", "replicas: 3", "replicas: 0")
    repo.replace("config/apps/example/values.yaml", "new_checkout: false", "new_checkout: true")
    repo.commit("production: scale to zero, new checkout on")
    return repo


def _shallow_clone(origin: GitRepo, dest: Path) -> Path:
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", "--branch", "pr", f"file://{origin.path}", str(dest)],
        check=True,
        env=git_env(),
    )
    return dest


def _fix(origin: GitRepo) -> None:
    origin.replace("config/apps/example/envs/production.yaml", "replicas: 0", "replicas: 5")
    origin.commit("production: five replicas")


# --- GitHub ------------------------------------------------------------------------------


def _run_action(origin: GitRepo, forge: Forge, tmp: Path, base: str) -> runner.JobResult:
    tmp.mkdir()
    workspace = _shallow_clone(origin, tmp / "workspace")
    runner_temp = tmp / "runner"
    runner_temp.mkdir()
    runner.configctl_venv(runner_temp)
    return runner.run_action(
        tools.ROOT / "action.yml",
        workspace=workspace,
        runner_temp=runner_temp,
        inputs={"path": "config"},
        event={"pull_request": {"number": 7, "base": {"sha": base}}},
        env=git_env()
        | {"GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_API_URL": forge.url, "GITHUB_REPOSITORY": "acme/config"},
    )


def test_action_annotates_comments_and_updates_in_place(origin: GitRepo, forge: Forge, tmp_path: Path) -> None:
    base = origin.rev("main")
    first = _run_action(origin, forge, tmp_path / "push1", base)
    assert first.failed
    assert [s.name for s in first.steps][-1] == "Fail on validation errors", first.steps
    assert first.steps[-1].returncode == 1
    assert any(a.startswith(f"::error file={BROKEN_FILE},line=1,") for a in first.annotations()), first.stdout

    comments = forge.thread("github", "acme/config", 7)
    assert len(comments) == 1
    body = comments[0]["body"]
    assert body.startswith(f"{MARKER}\n> [!CAUTION]\n> **configctl validate failed**")
    assert body.index("**Blast radius**") < body.index("<details>")
    assert "| `replicas` | changed | `3` | `0` |" in body
    assert "| `feature.new_checkout` | changed | `false` | `true` |" in body
    assert first.summary.strip() == body.removeprefix(MARKER + "\n").strip()

    _fix(origin)
    second = _run_action(origin, forge, tmp_path / "push2", base)
    assert not second.failed, second.steps
    assert second.annotations() == []
    assert len(comments) == 1  # updated, not duplicated
    assert "[!CAUTION]" not in comments[0]["body"]
    assert "| `replicas` | changed | `3` | `5` |" in comments[0]["body"]
    assert ("PATCH", f"/repos/acme/config/issues/comments/{comments[0]['id']}") in forge.requests


def test_action_without_comment_still_writes_the_summary(origin: GitRepo, forge: Forge, tmp_path: Path) -> None:
    _fix(origin)
    workspace = _shallow_clone(origin, tmp_path / "workspace")
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    runner.configctl_venv(runner_temp)
    result = runner.run_action(
        tools.ROOT / "action.yml",
        workspace=workspace,
        runner_temp=runner_temp,
        inputs={"path": "config", "comment": "false", "base": origin.rev("main")},
        event={"pull_request": {"number": 7}},
        env=git_env() | {"GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_API_URL": forge.url, "GITHUB_REPOSITORY": "acme/config"},
    )
    assert not result.failed, result.steps
    assert "**Blast radius**" in result.summary
    assert forge.requests == []


# --- GitLab ------------------------------------------------------------------------------


def _run_job(origin: GitRepo, forge: Forge, tmp: Path, base: str) -> tuple[runner.StepResult, Path]:
    tmp.mkdir()
    workdir = _shallow_clone(origin, tmp / "build")
    bin_dir = Path(tools.BIN)
    env = git_env() | {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "CONFIGCTL_PATH": "config",
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": base,
        "CI_MERGE_REQUEST_IID": "3",
        "CI_API_V4_URL": f"{forge.url}/api/v4",
        "CI_PROJECT_ID": "42",
        "CI_JOB_TOKEN": "job-token",
        "CONFIGCTL_GITLAB_TOKEN": GITLAB_TOKEN,
    }
    return runner.run_gitlab_job(tools.ROOT / "templates/configctl.gitlab-ci.yml", "configctl", workdir=workdir, env=env), workdir


def test_gitlab_job_reports_code_quality_and_updates_one_note(origin: GitRepo, forge: Forge, tmp_path: Path) -> None:
    schema = json.loads((tools.ROOT / "tests/data/ci/gitlab-code-quality.schema.json").read_text(encoding="utf-8"))
    base = origin.rev("main")
    first, workdir = _run_job(origin, forge, tmp_path / "push1", base)
    assert first.returncode == 1, first.stdout + first.stderr
    report = json.loads((workdir / "gl-code-quality-report.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(report)
    assert [(i["location"]["path"], i["location"]["lines"]["begin"], i["severity"]) for i in report] == [
        (BROKEN_FILE, 1, "major")
    ]
    notes = forge.thread("gitlab", "42", 3)
    assert len(notes) == 1
    assert notes[0]["body"].startswith(f"{MARKER}\n:x: **configctl validate failed**")
    assert "| `replicas` | changed | `3` | `0` |" in notes[0]["body"]
    assert (workdir / "configctl-diff.md").read_text(encoding="utf-8") in notes[0]["body"]

    _fix(origin)
    second, workdir = _run_job(origin, forge, tmp_path / "push2", base)
    assert second.returncode == 0, second.stdout + second.stderr
    assert json.loads((workdir / "gl-code-quality-report.json").read_text(encoding="utf-8")) == []
    assert len(notes) == 1
    assert ":x:" not in notes[0]["body"]
    assert "| `replicas` | changed | `3` | `5` |" in notes[0]["body"]


def test_gitlab_job_without_a_token_validates_and_warns(origin: GitRepo, forge: Forge, tmp_path: Path) -> None:
    _fix(origin)
    tmp = tmp_path / "push"
    tmp.mkdir()
    workdir = _shallow_clone(origin, tmp / "build")
    env = git_env() | {
        "PATH": f"{tools.BIN}:/usr/local/bin:/usr/bin:/bin",
        "CONFIGCTL_PATH": "config",
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": origin.rev("main"),
        "CI_MERGE_REQUEST_IID": "3",
        "CI_API_V4_URL": f"{forge.url}/api/v4",
        "CI_PROJECT_ID": "42",
        "CI_JOB_TOKEN": "job-token",
    }
    result = runner.run_gitlab_job(tools.ROOT / "templates/configctl.gitlab-ci.yml", "configctl", workdir=workdir, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no merge-request note written (set CONFIGCTL_GITLAB_TOKEN" in result.stdout
    assert forge.thread("gitlab", "42", 3) == []
