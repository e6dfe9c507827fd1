"""`configctl ci comment`: the one pull-request comment that CI keeps up to date.

The GitHub Action and the GitLab job call this after `configctl diff --format markdown`;
it is a command (not shell with curl) so the create-or-update logic is typed and tested
against a local server that plays both APIs (tests/ci/).
"""

from __future__ import annotations

import enum
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from configctl.cli import context

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
