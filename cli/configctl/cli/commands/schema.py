"""`configctl schema export DIR`: write configctl's JSON Schemas for editors and CI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from configctl.cli import context

app = typer.Typer(help="configctl's own JSON Schemas (draft 2020-12).", no_args_is_help=True)


@app.command(
    "export",
    epilog="Example:\n\n  configctl schema export .schemas   # then point your editor's YAML plugin at them",
)
@context.boundary
def export(
    dest: Annotated[Path, typer.Argument(help="Folder to write the schemas into (created if missing).")],
) -> None:
    """Write every file-kind schema (configctl.yaml, app.yaml, values layers, notifications)."""
    from configctl.adapters import schemas
    from configctl.errors import UsageError

    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest}: exists and is not a directory")
    try:
        written = schemas.export(dest)
    except OSError as exc:
        raise UsageError(f"{dest}: cannot write: {exc.strerror}") from exc
    for path in written:
        context.write(str(path))
