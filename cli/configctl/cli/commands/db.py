"""`configctl db upgrade`: migrate the store's schema (PostgreSQL or SQLite)."""

from __future__ import annotations

import typer

from configctl.cli import context, sources

app = typer.Typer(help="The version store.", no_args_is_help=True)


@app.command(epilog="Examples:\n\n  configctl db upgrade\n\n  configctl db upgrade --db postgresql://configctl@db/configctl")
@context.boundary
def upgrade(*, repo: context.RepoOption = None, db: sources.DbOption = None) -> None:
    """Create or migrate the store's tables to the current schema."""
    # with --db the repository plays no part: an operator migrates a server from anywhere
    root = None if db else context.repo_path(repo)
    store = sources.open_store(root, db, migrate=False, mode="create")
    try:
        store.upgrade()
        revision = store.current_revision()
    finally:
        store.close()
    context.write(f"store at revision {revision}")
