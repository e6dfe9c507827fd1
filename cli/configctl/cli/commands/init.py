"""`configctl init [DIR] [--ci github|gitlab]`: scaffold a valid config repository, and its CI."""

from __future__ import annotations

import enum
import shlex
from pathlib import Path
from typing import Annotated

import typer

from configctl.cli import context

app = typer.Typer()

FILES: dict[str, str] = {
    "configctl.yaml": """\
# configctl repository: https://configctl.dev/schemas/v1/configctl.schema.json
version: 1
environments: [dev, staging, production]
""",
    "global.yaml": """\
# Values for every app in every environment (the lowest layer).
log:
  level: info
  format: json
""",
    "environments/dev.yaml": "log:\n  level: debug\n",
    "environments/staging.yaml": "# Values for every app in staging.\n{}\n",
    "environments/production.yaml": "log:\n  level: warning\n",
    "apps/example/app.yaml": """\
description: An example app; copy this folder for each service.
owners: [platform-team]
schema: schema.json
""",
    "apps/example/values.yaml": """\
# The app's values in every environment.
replicas: 1
feature:
  new_checkout: false
""",
    "apps/example/envs/production.yaml": """\
replicas: 3
""",
    "apps/example/schema.json": """\
{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "https://example.invalid/schemas/example.json",
  "type": "object",
  "additionalProperties": false,
  "required": ["replicas", "log"],
  "properties": {
    "replicas": {"type": "integer", "minimum": 1, "maximum": 50},
    "log": {
      "type": "object",
      "additionalProperties": false,
      "properties": {
        "level": {"enum": ["debug", "info", "warning", "error"]},
        "format": {"enum": ["json", "text"]}
      }
    },
    "feature": {
      "type": "object",
      "additionalProperties": {"type": "boolean"}
    }
  }
}
""",
    ".gitignore": ".configctl/\n",
}


#: Where configctl's GitHub Action and GitLab template live (``uses:`` / ``include: remote:``).
ACTION_REPOSITORY = "configctl/configctl"
TEMPLATE_URL = "https://raw.githubusercontent.com/{repo}/v{version}/templates/configctl.gitlab-ci.yml"
PRE_COMMIT_URL = "https://github.com/{repo}"


class CI(enum.StrEnum):
    github = "github"
    gitlab = "gitlab"


def github_workflow(version: str, config_path: str) -> str:
    """The pull-request workflow: checkout (pinned by hash, no persisted token) and the action."""
    with_path = f"        with:\n          path: {config_path}\n" if config_path != "." else ""
    return f"""\
# Written by `configctl init --ci github` (configctl {version}). On every pull request:
# validate the config tree (errors annotated on the lines that set them), and keep one
# comment with the resolved diff -- its blast radius first -- up to date.
name: configctl
on:
  pull_request:
permissions: {{}}
jobs:
  configctl:
    name: validate and diff
    runs-on: ubuntu-latest
    permissions:
      contents: read
      pull-requests: write
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with:
          persist-credentials: false
      # configctl's own action at the version that wrote this file; pin it to the release's
      # commit SHA instead if your policy requires hashes
      - uses: {ACTION_REPOSITORY}@v{version} # zizmor: ignore[unpinned-uses]
{with_path}"""


def gitlab_job(version: str, config_path: str) -> str:
    """The merge-request pipeline: the configctl template, included at this version."""
    variables = f"\nvariables:\n  CONFIGCTL_PATH: {config_path}\n" if config_path != "." else ""
    url = TEMPLATE_URL.format(repo=ACTION_REPOSITORY, version=version)
    return f"""\
# Written by `configctl init --ci gitlab` (configctl {version}). On every merge request:
# validate the config tree (a code-quality report on the lines that set bad values), and
# keep one note with the resolved diff up to date. The note needs a CI/CD variable
# CONFIGCTL_GITLAB_TOKEN (masked): a project access token with the api scope.
include:
  - remote: {url}
{variables}"""


def pre_commit_config(version: str, config_path: str) -> str:
    args = f", args: [{config_path}]" if config_path != "." else ""
    url = PRE_COMMIT_URL.format(repo=ACTION_REPOSITORY)
    return f"""\
# Written by `configctl init --ci` (configctl {version}); run `pre-commit install` once.
repos:
  - {{repo: {url}, rev: v{version}, hooks: [{{id: configctl-validate{args}}}]}}
"""


def _worktree_top(directory: Path) -> tuple[Path, str]:
    """The git work tree holding ``directory`` (or ``directory`` itself) and the config's path in it."""
    prefix = context.worktree_prefix(directory)
    if not prefix:
        top = directory.resolve()
        for parent in (top, *top.parents):
            if (parent / ".git").exists():
                return parent, "."
        return directory, "."
    top = directory.resolve()
    for _ in prefix.rstrip("/").split("/"):
        top = top.parent
    return top, prefix.rstrip("/")


def ci_files(ci: CI, directory: Path) -> dict[Path, str]:
    """What ``init --ci`` writes: the CI file and the pre-commit configuration, at the git top."""
    from configctl import __version__

    top, config_path = _worktree_top(directory)
    main = (
        {top / ".github/workflows/configctl.yml": github_workflow(__version__, config_path)}
        if ci is CI.github
        else {top / ".gitlab-ci.yml": gitlab_job(__version__, config_path)}
    )
    return {**main, top / ".pre-commit-config.yaml": pre_commit_config(__version__, config_path)}


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  configctl init my-config\n\n"
        "  cd my-config && configctl validate\n\n"
        "  configctl init --ci github      # add the pull-request workflow and pre-commit hook here\n\n"
        "  configctl init config --ci gitlab   # a config folder in a monorepo: files go to the git top\n\n"
        "Exit codes: 0 written, 2 a file exists (use --force) or a bad argument."
    ),
)
@context.boundary
def init(
    directory: Annotated[Path, typer.Argument(metavar="[DIR]", help="Where to create the repository.")] = Path("."),
    *,
    ci: Annotated[
        CI | None,
        typer.Option(
            "--ci",
            help="Also write the CI job (github: .github/workflows/configctl.yml; gitlab: .gitlab-ci.yml) "
            "and .pre-commit-config.yaml. In an existing repository only these are written.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Write into a folder that already holds a configctl.yaml; with --ci, overwrite the CI files."),
    ] = False,
) -> None:
    """Create a new, valid config repository with one example app and three environments."""
    from configctl.errors import UsageError

    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: exists and is not a directory")
    existing = (directory / "configctl.yaml").exists()
    if ci is not None:
        planned = ci_files(ci, directory)
        taken = [path for path in planned if path.exists()]
        if taken and not force:
            raise UsageError(
                f"{', '.join(_shown(p) for p in taken)}: already exist{'s' * (len(taken) == 1)}; nothing written",
                hint="use --force to overwrite it",
            )
    elif existing and not force:
        raise UsageError(
            f"{directory}: already holds a configctl.yaml",
            hint="use --force to write the scaffold over it",
        )
    if ci is None or not existing:
        for rel, text in FILES.items():
            target = directory / rel
            if target.exists() and not force:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        context.write(f"Created a configctl repository in {directory}")
    if ci is None:
        context.write("Next: configctl validate" + (f" {directory}" if str(directory) != "." else ""))
        return
    for path, text in planned.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    scaffolded = not existing
    to_add = ([directory] if scaffolded else []) + [
        p for p in planned if not (scaffolded and p.resolve().is_relative_to(directory.resolve()))
    ]
    context.write("Wrote " + ", ".join(_shown(p) for p in planned) + ".")
    context.write("Commit them:")
    if _in_worktree(directory):
        add = "git add " + " ".join(shlex.quote(_shown(p)) for p in to_add)
    else:  # a new repository: the CI files sit at its top, beside configctl.yaml
        add = ("" if str(directory) == "." else f"cd {shlex.quote(str(directory))} && ") + "git init && git add ."
    context.write(f"  {add} && git commit -m 'configctl: validate and diff every {_review(ci)}'")
    if ci is CI.gitlab:
        context.write(
            "Then add a masked CI/CD variable CONFIGCTL_GITLAB_TOKEN (a project access token, scope api, "
            "role Reporter): GitLab's job token cannot write the merge-request note."
        )
    context.write("And once per clone: pre-commit install")


def _in_worktree(directory: Path) -> bool:
    top = directory.resolve()
    return any((parent / ".git").exists() for parent in (top, *top.parents))


def _review(ci: CI) -> str:
    return "pull request" if ci is CI.github else "merge request"
