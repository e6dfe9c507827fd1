"""`configctl get APP ENV [KEY]`: the resolved configuration, and where each value came from."""

from __future__ import annotations

import enum
from typing import Annotated, Any

import typer

from configctl.cli import context
from configctl.cli.output import OUTPUT_NAMES

app = typer.Typer()


class Output(enum.StrEnum):
    yaml = "yaml"
    json = "json"
    text = "text"
    """Values as YAML; with --explain, the readable lines (both are the default)."""
    env = "env"
    table = "table"


def _setting_dict(s: Any) -> dict[str, Any]:
    return {
        "layer": s.layer,
        "file": s.location.file,
        "line": s.location.line,
        "column": s.location.column,
        "value": s.value,
    }


@app.command(
    epilog=(
        "Examples:\n\n"
        "  configctl get checkout production\n\n"
        "  configctl get checkout production database.host\n\n"
        "  configctl get checkout production --explain\n\n"
        "  configctl get checkout production -o env > .env"
    )
)
@context.boundary
def get(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="The app.")],
    env: Annotated[str, typer.Argument(metavar="ENV", help="The environment.")],
    key: Annotated[str | None, typer.Argument(metavar="[KEY]", help="A dotted key (database.host); a prefix gives a sub-tree.", show_default=False)] = None,
    *,
    repo: context.RepoOption = None,
    explain: Annotated[bool, typer.Option("--explain", "-e", help="Show the file and line that set each value and every layer it overrode.")] = False,
    out: Annotated[
        Output | None,
        typer.Option(*OUTPUT_NAMES, help="Output format [default: yaml; with --explain: text].", show_default=False),
    ] = None,
) -> None:
    """Print the resolved configuration of APP in ENV (or one KEY of it)."""
    from configctl.adapters import filesystem, schemas
    from configctl.cli import output
    from configctl.core import resolve as resolve_mod
    from configctl.errors import UserError
    from configctl.services import resolution as resolution_service

    with context.gc_paused():
        checked = resolution_service.check(filesystem.read_tree(context.repo_path(repo)), file_schemas=schemas.file_schemas())
    tree = checked.tree
    resolution = resolution_service.resolve_pair(tree, app_name, env)
    layer_files = {doc.file for _, doc in tree.layers(app_name, env)}
    broken = sorted({f.file for f in checked.report.errors if f.file in layer_files or f.file == "configctl.yaml"})
    if broken:
        context.print_warning(
            f"{len(broken)} file(s) of this configuration have errors ({', '.join(broken)}); run `configctl validate`"
        )

    values: Any = resolution.values
    prefix: tuple[str | int, ...] = ()
    if key is not None:
        found, values = resolve_mod.lookup(resolution.values, key)
        prefix = tuple(key.split("."))
        if not found:
            removed = resolution.removed.get(prefix)
            if removed is not None:
                raise UserError(f"`{key}` is not set for {app_name} in {env}: removed by `!unset` at {removed.location}")
            raise UserError(f"`{key}` is not set for {app_name} in {env}")

    if explain:
        leaves = resolution.settings_under(prefix)
        if out in (Output.json, Output.yaml):
            output.emit(
                [
                    {
                        "key": ".".join(map(str, path)),
                        "value": settings[-1].value,
                        "source": _setting_dict(settings[-1]),
                        "overrides": [_setting_dict(s) for s in reversed(settings[:-1])],
                    }
                    for path, settings in leaves
                ],
                out,
            )
            return
        if out is Output.table:
            output.table(
                ["KEY", "VALUE", "SET BY", "OVERRIDES"],
                [
                    [
                        ".".join(map(str, path)),
                        output.scalar_text(settings[-1].value),
                        f"{settings[-1].location.file}:{settings[-1].location.line}",
                        ", ".join(f"{s.location.file}:{s.location.line}" for s in reversed(settings[:-1])) or "-",
                    ]
                    for path, settings in leaves
                ],
                flexible=["VALUE", "OVERRIDES"],
            )
            return
        lines: list[str] = []
        for path, settings in leaves:
            win = settings[-1]
            lines.append(f"{'.'.join(map(str, path))} = {output.scalar_text(win.value)}")
            lines.append(f"  set by     {win.location.file}:{win.location.line} ({win.layer})")
            for s in reversed(settings[:-1]):
                lines.append(f"  overrides  {s.location.file}:{s.location.line} ({s.layer}) = {output.scalar_text(s.value)}")
        context.write("\n".join(lines))
        return

    if out is Output.json:
        context.write(output.dumps_json(values))
    elif out is Output.env:
        flat = resolve_mod.flatten(values) if isinstance(values, dict) else {key or "value": values}
        if key is not None and isinstance(values, dict):
            flat = {f"{key}.{k}": v for k, v in flat.items()}
        context.write(output.values_env(flat))
    elif out is Output.table:
        flat = resolve_mod.flatten(values) if isinstance(values, dict) else {key or "value": values}
        rows = []
        for k, v in flat.items():
            full = f"{key}.{k}" if key is not None and isinstance(values, dict) else k
            winner = resolution.winner(tuple(full.split(".")))
            rows.append([full, output.scalar_text(v), f"{winner.location.file}:{winner.location.line}" if winner else "-"])
        output.table(["KEY", "VALUE", "SOURCE"], rows, flexible=["VALUE"])
    else:
        context.write(output.values_yaml(values))
