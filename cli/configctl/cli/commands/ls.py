"""`configctl ls`: the apps x environments matrix with the number of keys in each."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from configctl.cli import context
from configctl.cli.output import OUTPUT_NAMES

app = typer.Typer()


class Output(enum.StrEnum):
    text = "text"
    json = "json"
    yaml = "yaml"
    table = "table"
    """The text form's historical name."""


@app.command(
    "ls",
    epilog="Examples:\n\n  configctl ls\n\n  configctl ls --repo configs-example --output json",
)
@context.boundary
def ls(
    *,
    repo: context.RepoOption = None,
    out: Annotated[Output, typer.Option(*OUTPUT_NAMES, help="Output format (table is the text form).")] = Output.text,
) -> None:
    """List apps and environments with the number of resolved keys in each."""
    from configctl.adapters import filesystem, schemas
    from configctl.cli import output
    from configctl.services import resolution as resolution_service

    with context.gc_paused():
        checked = resolution_service.check(filesystem.read_tree(context.repo_path(repo)), file_schemas=schemas.file_schemas())
    tree = checked.tree
    resolution_service.require_tree_readable(tree)
    rows = resolution_service.matrix(checked)
    if out in (Output.json, Output.yaml):
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            counts.setdefault(row["app"], {})[row["env"]] = row["keys"]
        output.emit(
            {
                "environments": list(tree.environments),
                "apps": [{"app": a, "keys": counts.get(a, {})} for a in sorted(tree.apps)],
                "valid": checked.report.valid,
            },
            out,
        )
        return
    by_app: dict[str, dict[str, int]] = {}
    for row in rows:
        by_app.setdefault(row["app"], {})[row["env"]] = row["keys"]
    output.table(
        ["APP", *tree.environments],
        [[a, *(by_app.get(a, {}).get(e, 0) for e in tree.environments)] for a in sorted(tree.apps)],
    )
    if not checked.report.valid:
        context.print_warning(
            f"the tree has {len(checked.report.errors)} errors; run `configctl validate`",
        )
