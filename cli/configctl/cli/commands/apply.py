"""`configctl apply`: turn a commit into versions in the store."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from configctl.cli import context, sources
from configctl.cli.exit_codes import ExitCode
from configctl.cli.output import Format, OutputOption
from configctl.core.gcpause import collection_paused

if TYPE_CHECKING:
    from configctl.adapters.git import GitSource
    from configctl.services.apply import Baseline

app = typer.Typer()


Output = Format


def _baseline(git: GitSource, prefix: str, last_applied: object) -> Baseline | None:
    """The tree of the store's last applied commit, when git still has it."""
    from configctl.errors import ConfigctlError
    from configctl.services.apply import Baseline

    if not isinstance(last_applied, str):
        return None
    try:
        return Baseline(commit=last_applied, files=sources.strip_prefix(git.read_tree(last_applied), prefix))
    except ConfigctlError:  # rewritten history, a shallow clone: evaluate the whole tree
        return None


def _check_direction(git: GitSource, *, last: object, target: str, allow_backwards: bool) -> bool:
    """Refuse going back in history unless asked; True when ``target`` leaves the line of
    history the store followed (a force push, a reset, a side commit: audited)."""
    from configctl.errors import ConfigctlError, UsageError
    from configctl.services import apply as apply_service

    if not isinstance(last, str):
        return False

    def is_ancestor(a: str, b: str) -> bool:
        try:
            return git.is_ancestor(a, b)
        except ConfigctlError:  # a commit git no longer has (rewritten away)
            return False

    if apply_service.moves_backwards(last=last, target=target, is_ancestor=is_ancestor):
        if not allow_backwards:
            raise UsageError(
                f"{target[:12]} is older than the last applied commit {last[:12]} (one of its ancestors): "
                "applying it would serve older values; nothing was written",
                hint="pass --allow-backwards to go back on purpose, or `configctl rollback` one app",
            )
        return True
    return apply_service.history_rewritten(last=last, target=target, is_ancestor=is_ancestor)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  configctl apply                       # HEAD, into .configctl/configctl.db\n\n"
        "  configctl apply --rev v1.4.0 --dry-run\n\n"
        "  configctl apply --db postgresql://configctl@db/configctl\n\n"
        "Applying the same commit twice writes nothing; an invalid tree writes only a\n"
        "rejected-commit record and exits 1. A commit older than the last applied one is\n"
        "refused (exit 2) unless --allow-backwards; one that does not descend from it is\n"
        "recorded as a force-push in the audit log, as the reconciler does."
    )
)
@context.boundary
@collection_paused()  # reading, applying and printing a whole tree: see core.gcpause
def apply(
    *,
    rev: Annotated[str, typer.Option("--rev", help="The git revision to apply.")] = "HEAD",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; write nothing.")] = False,
    allow_backwards: Annotated[
        bool,
        typer.Option("--allow-backwards", help="Apply a commit older than the last applied one (an ancestor of it)."),
    ] = False,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
    out: OutputOption = Output.text,
) -> None:
    """Validate and resolve a commit, and write a new version for every app/env that changed."""
    from configctl.adapters import schemas
    from configctl.adapters.git import GitChangeLog
    from configctl.cli import output
    from configctl.services import apply as apply_service
    from configctl.services.resolution import Evaluator

    root = context.repo_path(repo)
    git, prefix = sources.git_source(root)
    sha = git.resolve(rev)
    commit = git.commit_info(sha)
    files = sources.strip_prefix(git.read_tree(sha), prefix)
    store = sources.open_store(root, db, mode="create")
    try:
        last_applied = store.sync_state("last_applied_commit")
        rewritten = _check_direction(git, last=last_applied, target=sha, allow_backwards=allow_backwards)
        if rewritten and not dry_run:
            apply_service.record_force_push(store, previous=last_applied, head=sha, actor=sources.actor(), host=sources.host())
            context.print_warning(
                f"{sha[:12]} does not descend from the last applied commit {str(last_applied)[:12]}: "
                "recorded as a history rewrite (force-push) in the audit log; no version is deleted"
            )
        baseline = _baseline(git, prefix, last_applied)
        evaluator = Evaluator(file_schemas=schemas.file_schemas())
        err = context.stderr()
        status = err.status(f"validating and resolving {len(files)} files at {sha[:12]}…") if err.is_terminal and len(files) > 200 else contextlib.nullcontext()
        with status:
            result = apply_service.apply_snapshot(
                store=store, files=files, commit=commit, evaluator=evaluator, actor=sources.actor(),
                host=sources.host(), now=lambda: datetime.now(UTC), dry_run=dry_run, baseline=baseline,
                changelog=GitChangeLog(git, prefix),
            )
        if not dry_run and result.status != "rejected":
            sources.export_snapshots(root, db, store, [(p.app, p.env) for p in result.pairs if p.version is not None])
    finally:
        store.close()

    if out is not Output.text:
        output.emit(
            {
                "commit": result.commit,
                "status": result.status,
                "dry_run": dry_run,
                "valid": result.report.valid,
                "errors": [f.to_dict() for f in result.report.errors],
                "versions": [
                    {
                        "app": p.app,
                        "env": p.env,
                        "version": p.version,
                        "previous_version": p.previous,
                        "added": p.added,
                        "changed": p.changed,
                        "removed": p.removed,
                        "changed_keys": list(p.changed_keys),
                        "skipped": p.skipped,
                    }
                    for p in result.pairs
                ],
            },
            out,
        )
    else:
        if result.status == "rejected":
            output.print_report_text(result.report, stream=context.stderr())
            context.print_error(
                f"commit {sha[:12]} is invalid ({len(result.report.errors)} errors): recorded as rejected, nothing applied"
                if not dry_run
                else f"commit {sha[:12]} is invalid ({len(result.report.errors)} errors)"
            )
        elif not result.pairs:
            context.write(f"{sha[:12]}: nothing to apply, every app and environment is up to date")
        else:
            verb = "would write" if dry_run else "applied"
            rows = [
                [
                    p.app,
                    p.env,
                    ("v" + str(p.version)) if p.version is not None else (p.skipped or ("(plan)" if dry_run else "-")),
                    p.added,
                    p.changed,
                    p.removed,
                ]
                for p in result.pairs
            ]
            output.table(["APP", "ENV", "VERSION", "ADDED", "CHANGED", "REMOVED"], rows, title=f"{sha[:12]}: {verb}")
            skipped = [p for p in result.pairs if p.skipped]
            for p in skipped:
                context.print_warning(f"{p.app}/{p.env} differs from git but is {p.skipped}: not applied (see `configctl status`)")
    if result.status == "rejected":
        raise typer.Exit(ExitCode.FINDINGS)
