"""`configctl init [DIR]`: scaffold a valid config repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from configctl.cli import context

app = typer.Typer()

FILES: dict[str, str] = {
    "configctl.yaml": """\
# configctl repository: https://configctl.dev/schemas/v1/configctl.schema.json
version: 1
environments: [dev, staging, production]
""",
    "global.yaml": """\
# Values for every app in every environment (the lowest layer).
log:
  level: info
  format: json
""",
    "environments/dev.yaml": "log:\n  level: debug\n",
    "environments/staging.yaml": "# Values for every app in staging.\n{}\n",
    "environments/production.yaml": "log:\n  level: warning\n",
    "apps/example/app.yaml": """\
description: An example app; copy this folder for each service.
owners: [platform-team]
schema: schema.json
""",
    "apps/example/values.yaml": """\
# The app's values in every environment.
replicas: 1
feature:
  new_checkout: false
""",
    "apps/example/envs/production.yaml": """\
replicas: 3
""",
    "apps/example/schema.json": """\
{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "https://example.invalid/schemas/example.json",
  "type": "object",
  "additionalProperties": false,
  "required": ["replicas", "log"],
  "properties": {
    "replicas": {"type": "integer", "minimum": 1, "maximum": 50},
    "log": {
      "type": "object",
      "additionalProperties": false,
      "properties": {
        "level": {"enum": ["debug", "info", "warning", "error"]},
        "format": {"enum": ["json", "text"]}
      }
    },
    "feature": {
      "type": "object",
      "additionalProperties": {"type": "boolean"}
    }
  }
}
""",
    ".gitignore": ".configctl/\n",
}


@app.command(
    epilog="Examples:\n\n  configctl init my-config\n\n  cd my-config && configctl validate",
)
@context.boundary
def init(
    directory: Annotated[Path, typer.Argument(metavar="[DIR]", help="Where to create the repository.")] = Path("."),
    *,
    force: Annotated[bool, typer.Option("--force", help="Write into a folder that already holds a configctl.yaml.")] = False,
) -> None:
    """Create a new, valid config repository with one example app and three environments."""
    from configctl.errors import UsageError

    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: exists and is not a directory")
    if (directory / "configctl.yaml").exists() and not force:
        raise UsageError(
            f"{directory}: already holds a configctl.yaml",
            hint="use --force to write the scaffold over it",
        )
    for rel, text in FILES.items():
        target = directory / rel
        if target.exists() and not force:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    context.write(f"Created a configctl repository in {directory}")
    context.write("Next: configctl validate" + (f" {directory}" if str(directory) != "." else ""))
