"""`configctl revert`: prepare a git commit that undoes a commit (or some keys of it) on a
new branch, for review. It changes git only; the store follows when the commit is applied."""

from __future__ import annotations

from typing import Annotated

import typer

from configctl.cli import context, sources

app = typer.Typer()


@app.command(
    epilog=(
        "Examples:\n\n"
        "  configctl revert 3f2a9c1                     # undo a whole commit\n\n"
        "  configctl revert 3f2a9c1 --keys database.pool.max,replicas"
    )
)
@context.boundary
def revert(
    commit: Annotated[str, typer.Argument(metavar="COMMIT")],
    *,
    keys: Annotated[
        str | None, typer.Option("--keys", help="Undo only these dotted keys (comma-separated).")
    ] = None,
    branch: Annotated[
        str | None,
        typer.Option("--branch", help="Branch to create (default: configctl/revert-<sha>)."),
    ] = None,
    repo: context.RepoOption = None,
) -> None:
    """Prepare a git commit that undoes COMMIT (or only some keys of it) on a new branch, for review."""
    from configctl.services import revert as revert_service

    root = context.repo_path(repo)
    git, prefix = sources.git_source(root)
    sha = git.resolve(commit)
    target = branch or f"configctl/revert-{sha[:12]}"
    if keys is None:
        new = git.prepare_revert(sha, branch=target, message=f"Revert {sha[:12]}")
    else:
        wanted = [k.strip() for k in keys.split(",") if k.strip()]
        parent = git.resolve(f"{sha}^")
        before = git.read_tree(parent)
        after = git.read_tree(sha)
        head = git.read_tree(git.resolve("HEAD"))
        patch = revert_service.revert_keys(
            before=before, after=after, head=head, keys=wanted, prefix=prefix
        )
        new = git.prepare_revert(
            sha,
            branch=target,
            message=f"Revert {', '.join(wanted)} of {sha[:12]}",
            paths_patch=patch,
        )
    context.write(f"prepared commit {new[:12]} on branch {target}: push it and open a pull request")
