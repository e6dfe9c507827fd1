"""`configctl ci comment` and `ci diff-check`: what the CI templates and pre-commit hooks call.

`ci comment` keeps the one pull-request comment that CI updates on every push: the GitHub
Action and the GitLab job call it after `configctl diff --format markdown`. It is a command
(not shell with curl) so the create-or-update logic is typed and tested against a local
server that plays both APIs (tests/ci/). `ci diff-check` is the optional pre-commit hook
that stops a commit changing a protected environment's resolved values.
"""

from __future__ import annotations

import enum
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from configctl.cli import context
from configctl.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from configctl.core.model import FileEntry

app = typer.Typer(help="Helpers for CI jobs (the GitHub Action and the GitLab template use them).")


class Platform(enum.StrEnum):
    github = "github"
    gitlab = "gitlab"


def _platform(env: dict[str, str]) -> Platform:
    from configctl.errors import UsageError

    if env.get("GITHUB_ACTIONS") == "true":
        return Platform.github
    if env.get("GITLAB_CI") == "true":
        return Platform.gitlab
    raise UsageError("not in a GitHub Actions or GitLab CI job", hint="pass --platform github|gitlab")


@app.command(
    epilog=(
        "Examples:\n\n"
        "  configctl diff \"$BASE\" HEAD --format markdown > diff.md && configctl ci comment diff.md\n\n"
        "  configctl ci comment diff.md --platform gitlab --marker '<!-- configctl-diff:config -->'\n\n"
        "GitHub: GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_EVENT_PATH (or --pr) and GITHUB_TOKEN.\n\n"
        "GitLab: CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID (or --pr) and\n"
        "CONFIGCTL_GITLAB_TOKEN (an access token with the api scope; CI_JOB_TOKEN is tried without it).\n\n"
        "Exit codes: 0 posted, 2 usage (a variable missing), 3 the API refused or is unreachable."
    )
)
@context.boundary
def comment(
    body_file: Annotated[Path, typer.Argument(help="The Markdown to post; - reads stdin.")],
    *,
    platform: Annotated[
        Platform | None,
        typer.Option("--platform", help="github or gitlab (default: detected from the CI environment).", show_default=False),
    ] = None,
    marker: Annotated[
        str,
        typer.Option("--marker", help="The hidden first line that identifies the comment to update."),
    ] = "<!-- configctl-diff -->",
    pr: Annotated[
        int | None,
        typer.Option("--pr", help="The pull or merge request number (default: from the CI environment).", show_default=False),
    ] = None,
) -> None:
    """Post BODY_FILE as the pull request's configctl comment, or update the one posted before."""
    from configctl.errors import UsageError
    from configctl.services import review_comment

    if not (marker.startswith("<!--") and marker.endswith("-->")):
        raise UsageError(f"--marker {marker!r} is not an HTML comment", hint="e.g. '<!-- configctl-diff -->'")
    if str(body_file) == "-":
        body = sys.stdin.read()
    else:
        try:
            body = body_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{body_file}: cannot read: {exc.strerror}") from exc
    env = dict(os.environ)
    chosen = platform if platform is not None else _platform(env)
    if chosen is Platform.github:
        from configctl.adapters import github

        thread: review_comment.CommentThread = github.from_env(env, number=pr)
    else:
        from configctl.adapters import gitlab

        thread = gitlab.from_env(env, iid=pr)
    posted = review_comment.upsert(thread, body, marker=marker)
    context.write(f"{posted.outcome} comment {posted.comment_id}")


def _last_environment(files: dict[str, FileEntry]) -> str | None:
    """The last environment declared in configctl.yaml: promotion order ends in production."""
    import yaml

    entry = files.get("configctl.yaml")
    if entry is None:
        return None
    try:
        doc = yaml.safe_load(entry.data)
    except yaml.YAMLError:
        return None
    envs = doc.get("environments") if isinstance(doc, dict) else None
    if isinstance(envs, list) and envs and isinstance(envs[-1], str):
        return envs[-1]
    return None


@app.command(
    "diff-check",
    epilog=(
        "Examples:\n\n"
        "  configctl ci diff-check                 # the last environment in configctl.yaml\n\n"
        "  configctl ci diff-check --env production --env staging\n\n"
        "The pre-commit hook `configctl-diff-check` runs it: pre-commit stashes unstaged\n"
        "changes first, so the working tree is what is about to be committed.\n\n"
        "Exit codes: 0 no protected environment changes, 1 one does, 2 usage."
    ),
)
@context.boundary
def diff_check(
    *,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="A protected environment (repeatable; default: the last one declared).", show_default=False),
    ] = None,
    repo: context.RepoOption = None,
) -> None:
    """Fail when the working tree changes a protected environment's resolved values against HEAD."""
    from configctl.adapters import schemas
    from configctl.cli import sources
    from configctl.errors import RevisionNotFound, UsageError
    from configctl.services import diff as diff_service
    from configctl.services.resolution import Evaluator

    root = context.repo_path(repo)
    head_files = sources.snapshot(root, None)
    protected = list(env or [])
    if not protected:
        last = _last_environment(head_files)
        if last is None:
            raise UsageError(f"{root}: no environments declared in configctl.yaml", hint="pass --env NAME")
        protected = [last]
    try:
        base_files = sources.snapshot(root, "HEAD")
    except RevisionNotFound:
        context.write("No commit yet: nothing to compare with.")
        return
    with context.gc_paused():
        result = diff_service.diff_snapshots(base_files, head_files, evaluator=Evaluator(file_schemas=schemas.file_schemas()))
    hits = [pair for pair in result.diff.pairs if pair.env in protected]
    if not hits:
        context.write(f"No change to the resolved values of {', '.join(protected)}.")
        return
    lines = [f"This commit changes the resolved values of protected environment(s) {', '.join(protected)}:"]
    for pair in hits:
        keys = ", ".join(k.key for k in pair.keys[:10]) + (" …" if len(pair.keys) > 10 else "")
        state = "" if pair.status == "changed" else f" ({pair.status})"
        lines.append(f"  {pair.app}/{pair.env}{state}: {keys}")
    lines.append("Review with `configctl diff`; commit with --no-verify (or SKIP=configctl-diff-check) if intended.")
    context.write("\n".join(lines))
    raise typer.Exit(ExitCode.FINDINGS)
