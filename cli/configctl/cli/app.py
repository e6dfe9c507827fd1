"""The `configctl` command: wiring, global options and the last-resort error boundary.

This module is the only place that knows the list of commands. Command modules import
nothing heavy at import time, so `configctl --version` and `--help` start fast; each
command imports what it needs when it runs.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from configctl import __version__
from configctl.cli.commands import (
    apply,
    audit,
    ci,
    db,
    diff,
    get,
    history,
    init,
    ls,
    reconcile,
    release,
    revert,
    rollback,
    rollout,
    schema,
    show,
    status,
    validate,
)
from configctl.cli.exit_codes import ExitCode

app = typer.Typer(
    name="configctl",
    help="Centralized configuration management the GitOps way: validate, explain, diff and apply YAML config trees.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"configctl {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[  # noqa: ARG001 - handled by its eager callback
        bool,
        typer.Option("--version", "-V", help="Print the version and exit.", callback=_version, is_eager=True),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show tracebacks of internal errors.", envvar="CONFIGCTL_DEBUG"),
    ] = False,
) -> None:
    """configctl: versioned, validated, explained configuration from git."""
    if debug:
        os.environ["CONFIGCTL_DEBUG"] = "1"


app.add_typer(init.app)
app.add_typer(validate.app)
app.add_typer(get.app)
app.add_typer(ls.app)
app.add_typer(diff.app)
app.add_typer(apply.app)
app.add_typer(history.app)
app.add_typer(show.app)
app.add_typer(audit.app)
app.add_typer(status.app)
app.add_typer(rollback.app)
app.add_typer(release.app)
app.add_typer(revert.app)
app.add_typer(reconcile.app)
app.add_typer(rollout.app, name="rollout")
app.add_typer(schema.app, name="schema")
app.add_typer(db.app, name="db")
app.add_typer(ci.app, name="ci")


def _lift_debug(argv: list[str]) -> list[str]:
    """``argv`` without ``--debug``, which is then on for the run, wherever it was written.

    Click binds an option to the command it follows; `configctl get a b --debug` is as
    natural as `configctl --debug get a b`, so the flag is taken out before parsing (up to a
    ``--``, after which everything is an argument).
    """
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            out.extend(argv[i:])
            break
        if arg == "--debug":
            os.environ["CONFIGCTL_DEBUG"] = "1"
            continue
        out.append(arg)
    return out


def main() -> None:
    """Console-script entry point: the last resort for anything unexpected."""
    try:
        app(args=_lift_debug(sys.argv[1:]), prog_name="configctl")
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:
        if os.environ.get("CONFIGCTL_DEBUG", "") not in ("", "0", "false"):
            raise
        sys.stderr.write(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in configctl; run again with --debug for the traceback.\n"
        )
        sys.exit(ExitCode.INTERNAL)
