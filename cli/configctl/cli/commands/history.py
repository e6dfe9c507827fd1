"""`configctl history`: the versions of one pair, or one key's values over time.

JSON field names are a documented contract (README, "JSON output").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from configctl.cli import context, sources
from configctl.cli.output import Format, OutputOption

app = typer.Typer()


def _by(row: dict[str, Any]) -> str:
    """Who made a version: the person who rolled back, else the commit's author (by name)."""
    if row["reason"] != "commit" and row.get("actor"):
        return str(row["actor"])
    author = row["author"] or row.get("actor") or "-"
    return str(author).split(" <", 1)[0]


@app.command(
    epilog=(
        "Examples:\n\n"
        "  configctl history checkout production\n\n"
        "  configctl history checkout production database.pool.max\n\n"
        "  configctl history checkout production -o json | jq '.[0]'"
    )
)
@context.boundary
def history(
    app_name: context.AppArgument,
    env: context.EnvArgument,
    key: Annotated[
        str | None,
        typer.Argument(
            metavar="[KEY]", help="One dotted key: its values over time.", show_default=False
        ),
    ] = None,
    *,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", help="At most this many entries, newest first.")
    ] = None,
    out: OutputOption = Format.text,
) -> None:
    """The versions of APP in ENV, newest first (or one KEY's values over time)."""
    from configctl.cli import output
    from configctl.services import history as history_service

    root = context.optional_repo_path(repo)
    with sources.store_for(root, db, mode="read", app=app_name, env=env) as store:
        if key is None:
            entries = history_service.versions(store, app_name, env, limit=limit)
            rows: list[dict[str, Any]] = [
                {
                    "version": e.number,
                    "commit": e.commit_sha,
                    "author": output.author(e.author_name, e.author_email),
                    "created_at": output.iso(e.created_at),
                    "reason": e.reason,
                    "actor": e.actor,
                    "rolled_back_to": e.rolled_back_to,
                    "message": e.subject,
                    "changed_keys": [c.key for c in e.changes],
                }
                for e in entries
            ]
            times = [e.created_at for e in entries]
        else:
            entries_k = history_service.key_history(store, app_name, env, key, limit=limit)
            rows = [
                {
                    "version": e.version,
                    "commit": e.commit_sha,
                    "author": output.author(e.author_name, e.author_email),
                    "created_at": output.iso(e.created_at),
                    "reason": e.reason,
                    "change": e.change,
                    "old": e.old,
                    "new": e.new,
                    "key": e.key,
                    "changed_keys": [e.key],
                    "actor": e.actor,
                }
                for e in entries_k
            ]
            times = [e.created_at for e in entries_k]
    if output.emit(rows, out):
        return
    if not rows:
        context.write(f"no versions of {app_name}/{env}" + (f" changed `{key}`" if key else ""))
        return
    now = datetime.now(UTC)
    if key is None:
        output.table(
            ["VERSION", "COMMIT", "AGE", "BY", "REASON", "CHANGED KEYS"],
            [
                [
                    r["version"],
                    output.short_sha(r["commit"]),
                    output.age(at, now),
                    _by(r),
                    r["reason"] + (f" to v{r['rolled_back_to']}" if r["rolled_back_to"] else ""),
                    f"{len(r['changed_keys'])}: "
                    + ", ".join(r["changed_keys"][:3])
                    + (" …" if len(r["changed_keys"]) > 3 else ""),
                ]
                for r, at in zip(rows, times, strict=True)
            ],
        )
    else:
        output.table(
            ["VERSION", "COMMIT", "AGE", "BY", "CHANGE", "VALUE"],
            [
                [
                    r["version"],
                    output.short_sha(r["commit"]),
                    output.age(at, now),
                    _by(r),
                    r["change"],
                    output.scalar_text(r["new"]) if r["change"] != "removed" else "(removed)",
                ]
                for r, at in zip(rows, times, strict=True)
            ],
        )
