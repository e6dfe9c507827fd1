"""`configctl validate`: every problem of a config tree at once, with file, line and cause."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from configctl.cli import context
from configctl.cli.exit_codes import ExitCode
from configctl.cli.output import FORMAT_ALIASES, OUTPUT_NAMES

app = typer.Typer()


class Format(enum.StrEnum):
    """One line per choice: ``-o/--output`` and ``-f/--format`` are one option."""

    text = "text"
    json = "json"
    yaml = "yaml"
    github = "github"
    gitlab = "gitlab"


@app.command(
    epilog=(
        "Examples:\n\n"
        "  configctl validate\n\n"
        "  configctl validate configs-example --format json\n\n"
        "  configctl validate --format github   # annotations in a GitHub Actions job\n\n"
        "  configctl validate --format gitlab > gl-code-quality-report.json   # GitLab code quality\n\n"
        "Exit codes: 0 valid, 1 invalid, 2 usage or I/O error."
    )
)
@context.boundary
def validate(
    path: Annotated[
        Path | None,
        typer.Argument(help="The config repository (default: --repo, or the current directory).", show_default=False),
    ] = None,
    *,
    repo: context.RepoOption = None,
    fmt: Annotated[Format, typer.Option(*OUTPUT_NAMES, *FORMAT_ALIASES, help="Output format (--format is the same option).")] = Format.text,
) -> None:
    """Validate a config repository: strict YAML, schemas, resolution and cross-file rules."""
    from configctl.adapters import filesystem, schemas
    from configctl.cli import output
    from configctl.services import resolution as resolution_service

    explicit = path if path is not None else repo
    # An explicit folder is validated even without configctl.yaml, so the report says what
    # is missing (and hints at a configctl.yml); it still exits 2: it is no repository.
    root = context.existing_dir(explicit, "path") if explicit is not None else context.repo_path(None)
    files = filesystem.read_tree(root)
    with context.gc_paused():
        checked = resolution_service.check(files, file_schemas=schemas.file_schemas())
    report = checked.report
    if fmt is Format.json:
        context.write(output.report_json(report))
    elif fmt is Format.yaml:
        output.emit(report.to_dict(), fmt)
    elif fmt is Format.github:
        text = output.report_github(report, prefix=context.worktree_prefix(root))
        if text:
            context.write(text)
    elif fmt is Format.gitlab:
        context.write(output.report_gitlab(report, prefix=context.worktree_prefix(root)))
    else:
        tree = checked.tree
        n_err, n_warn = len(report.errors), len(report.warnings)
        if report.valid:
            summary = (
                f"[green]✓[/] valid: {len(tree.apps)} apps, {len(tree.environments)} environments, "
                f"{len(files)} files" + (f", {n_warn} warning{'s' * (n_warn != 1)}" if n_warn else "")
            )
        else:
            summary = (
                f"[red]✗[/] {n_err} error{'s' * (n_err != 1)}"
                + (f", {n_warn} warning{'s' * (n_warn != 1)}" if n_warn else "")
                + f" in {len(files)} files"
            )
        output.print_report_text(report, summary=summary)
    if context.REPO_FILE not in files:
        context.print_error(f"{explicit}: not a configctl repository (no {context.REPO_FILE})")
        raise typer.Exit(ExitCode.USAGE)
    if not report.valid:
        raise typer.Exit(ExitCode.FINDINGS)
