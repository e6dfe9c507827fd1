"""Shared command plumbing: consoles, the per-command error boundary, the repository option.

Every command body runs under :func:`boundary`, which turns a ``ConfigctlError`` into one
line on stderr (what happened, a hint) and the exit code from ``exit_codes``. Anything
else escapes to ``app.main``, the last resort.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from configctl import errors
from configctl.cli import exit_codes

if TYPE_CHECKING:
    from rich.console import Console

P = ParamSpec("P")
R = TypeVar("R")

RepoOption = Annotated[
    Path | None,
    typer.Option(
        "--repo",
        envvar="CONFIGCTL_REPO",
        help="The config repository (default: the current directory).",
        show_default=False,
    ),
]


def repo_path(repo: Path | None) -> Path:
    return (repo if repo is not None else Path.cwd()).absolute()


def worktree_prefix(root: Path) -> str:
    """The config repository's folder inside its git work tree, as a path prefix.

    ``"config/"`` for ``<worktree>/config``; ``""`` at the top of a work tree or outside of
    one. CI annotations and code-quality reports place findings by their path from the
    checkout's root, while findings name files from the config root. Only looks for the
    ``.git`` entry (a folder, or a file in a linked work tree), so it runs no git.
    """
    root = root.resolve()
    for parent in (root, *root.parents):
        if (parent / ".git").exists():
            rel = root.relative_to(parent).as_posix()
            return "" if rel == "." else rel + "/"
    return ""


@functools.cache
def stdout() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@functools.cache
def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a command builds a whole tree.

    Parsing allocates hundreds of thousands of small objects and no cycles; the collector's
    generation scans cost about a fifth of `validate` on a 5,000-file tree. A command is
    short-lived; the long-running reconciler does not use this.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def debug_enabled() -> bool:
    return os.environ.get("CONFIGCTL_DEBUG", "") not in ("", "0", "false")


def print_error(message: str, hint: str | None = None) -> None:
    from rich.markup import escape

    err = stderr()
    err.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err.print(f"  [dim]hint:[/] {escape(hint)}")


def print_warning(message: str) -> None:
    from rich.markup import escape

    stderr().print(f"[bold yellow]warning:[/] {escape(message)}")


def boundary(fn: Callable[P, R]) -> Callable[P, R]:
    """Render ConfigctlError as one line on stderr and exit with its code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except errors.ValidationFailed as exc:
            from configctl.cli import output

            output.print_report_text(exc.report, stream=stderr())
            print_error(exc.message, exc.hint)
            raise typer.Exit(exit_codes.for_error(exc)) from None
        except errors.ConfigctlError as exc:
            if debug_enabled():
                raise
            print_error(exc.message, exc.hint)
            raise typer.Exit(exit_codes.for_error(exc)) from None

    return wrapper


def write(text: str) -> None:
    """Plain text to stdout, untouched by Rich markup."""
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


def exit_with(code: exit_codes.ExitCode) -> Any:
    raise typer.Exit(int(code))
