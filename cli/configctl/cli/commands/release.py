"""`configctl release`: remove a rollback's pin, so the next apply serves git again."""

from __future__ import annotations

import typer

from configctl.cli import context, sources

app = typer.Typer()


@app.command(epilog="Example:\n\n  configctl release checkout production")
@context.boundary
def release(
    app_name: context.AppArgument,
    env: context.EnvArgument,
    *,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
) -> None:
    """Remove a rollback's pin: the next apply serves git again (except the quarantined commit)."""
    from configctl.services import rollback as rollback_service

    root = context.optional_repo_path(repo)
    with sources.store_for(root, db, mode="write", app=app_name, env=env) as store:
        result = rollback_service.release(
            store=store, app=app_name, env=env, actor=sources.actor(), host=sources.host()
        )
    context.write(
        f"{app_name}/{env}: released (version {result['version']} stays in service until git changes it)"
    )
