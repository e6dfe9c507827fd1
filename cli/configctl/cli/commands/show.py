"""`configctl show`: the snapshot in service for one pair, or one of its versions.

JSON field names are a documented contract (README, "JSON output").
"""

from __future__ import annotations

from typing import Annotated

import typer

from configctl.cli import context, sources
from configctl.cli.output import OUTPUT_NAMES, Format

app = typer.Typer()


@app.command(
    epilog="Examples:\n\n  configctl show checkout production\n\n  configctl show checkout production --version 3 -o json",
)
@context.boundary
def show(
    app_name: context.AppArgument,
    env: context.EnvArgument,
    *,
    version: Annotated[
        int | None,
        typer.Option("--version", "-v", help="A version number (default: the one in service)."),
    ] = None,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
    out: Annotated[
        Format | None,
        typer.Option(
            *OUTPUT_NAMES,
            help="Output format [default: text, the values as YAML with a header on stderr].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """The snapshot in service for APP in ENV, or version N."""
    from configctl.cli import output
    from configctl.services import history as history_service

    root = context.optional_repo_path(repo)
    with sources.store_for(root, db, mode="read", app=app_name, env=env) as store:
        record = history_service.version(store, app_name, env, version)
    document = {
        "app": record.app,
        "env": record.env,
        "version": record.number,
        "commit": record.commit_sha,
        "checksum": record.checksum,
        "reason": record.reason,
        "created_at": output.iso(record.created_at),
        "values": record.values,
    }
    if out is not None and output.emit(document, out):
        return
    context.stderr().print(
        f"# {record.app}/{record.env} version {record.number} "
        f"(commit {output.short(record.commit_sha)}, {record.reason}, {output.iso(record.created_at)})"
    )
    context.write(output.values_yaml(record.values))
