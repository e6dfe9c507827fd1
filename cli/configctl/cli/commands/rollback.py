"""`configctl rollback`: put an earlier version back into service now, pinned until
`configctl release` (and, with --revert, prepare the git commit that makes git agree)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from configctl.cli import context, sources

if TYPE_CHECKING:
    from collections.abc import Callable

    from configctl.services.rollback import PreparedRevert, RevertPlan

app = typer.Typer()


def _secrets(root: Path | None, app_name: str) -> dict[str, set[str]] | None:
    """The app's secret keys from its schema at HEAD (else the working tree); None if unknown.

    The rollback's key changes go into history, so they must be redacted like apply's.
    """
    from configctl.errors import ConfigctlError
    from configctl.services.resolution import app_secret_keys

    if root is None:
        return None
    for rev in ("HEAD", None):
        try:
            keys = app_secret_keys(sources.snapshot(root, rev), app_name)
        except ConfigctlError:
            continue
        if keys is not None:
            return {app_name: keys}
    return None


@app.command(
    epilog=(
        "Examples:\n\n"
        "  configctl rollback checkout production --to 7\n\n"
        "  configctl rollback checkout production --to 7 --revert   # also prepare the git revert\n\n"
        "  configctl rollback checkout production --to 7 --revert --branch fix/pool\n\n"
        "The pair stays pinned (apply leaves it alone) until `configctl release`. With\n"
        "--revert the branch is made first: a conflict (exit 1) or a taken branch name\n"
        "(exit 2) writes nothing. A version whose values are in service writes nothing."
    )
)
@context.boundary
def rollback(
    app_name: context.AppArgument,
    env: context.EnvArgument,
    *,
    to: Annotated[int, typer.Option("--to", help="The version whose values go back into service.")],
    revert: Annotated[bool, typer.Option("--revert", help="Also prepare a git revert commit on a new branch.")] = False,
    branch: Annotated[
        str | None,
        typer.Option("--branch", help="With --revert: the branch to create (default: configctl/revert-<sha>)."),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the audit log).")] = None,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
) -> None:
    """Put version N's values back into service now, as a new version, pinned until released."""
    from configctl.errors import UsageError
    from configctl.services import rollback as rollback_service

    if branch is not None and not revert:
        raise UsageError("--branch names the branch of the git revert: use it with --revert")
    # with --db (and no --revert) a rollback works outside any checkout (every value is then redacted)
    root = context.optional_repo_path(repo) if db and not revert else context.repo_path(repo)
    prepare = _preparer(root, app_name, env, branch) if revert and root is not None else None
    with sources.store_for(root, db, mode="write", app=app_name, env=env) as store:
        secrets = _secrets(root, app_name)
        result = rollback_service.rollback(
            store=store, app=app_name, env=env, to=to, actor=sources.actor(), host=sources.host(),
            now=lambda: datetime.now(UTC), reason=reason, secrets=secrets, prepare=prepare,
        )
        if result.version is not None and root is not None:
            # a client reading the embedded snapshot folder serves the rollback at once
            sources.export_snapshots(root, db, store, [(app_name, env)])
    if result.version is None:
        context.write(
            f"{app_name}/{env}: version {to} has the values in service (version {result.previous}): "
            "nothing to roll back, nothing written"
        )
        return
    context.write(
        f"{app_name}/{env}: version {result.version} now serves the values of version {to} "
        f"(was {result.previous}); pinned until `configctl release {app_name} {env}`"
    )
    if result.quarantined_commit:
        context.write(f"commit {result.quarantined_commit[:12]} is quarantined for {app_name}/{env}")
    if result.revert is not None:
        context.write(
            f"prepared revert commit {result.revert.commit[:12]} on branch {result.revert.branch}: "
            "push it and open a pull request"
        )


def _preparer(root: Path, app_name: str, env: str, branch: str | None) -> Callable[[RevertPlan], PreparedRevert]:
    """The git side of `rollback --revert`, run before the store writes anything.

    It undoes, in the files that resolve APP/ENV only, the commits of the versions being
    rolled back (newest first), on a new branch; other changes of those commits stay.
    """
    from configctl.services.attribution import pair_paths
    from configctl.services.rollback import PreparedRevert

    git, prefix = sources.git_source(root)
    p = prefix.strip("/") + "/" if prefix.strip("/") else ""
    paths = [p + path for path in pair_paths(app_name, env)]

    def prepare(plan: RevertPlan) -> PreparedRevert:
        name = branch or f"configctl/revert-{plan.commits[0][:12]}"
        shorts = ", ".join(c[:12] for c in plan.commits)
        new = git.prepare_path_revert(
            plan.commits,
            paths=paths,
            branch=name,
            message=f"Revert {shorts} for {app_name}/{env} (rolled back to version {plan.to})",
        )
        return PreparedRevert(branch=name, commit=new, reverted=plan.commits, undo=lambda: git.delete_branch(name, new))

    return prepare
