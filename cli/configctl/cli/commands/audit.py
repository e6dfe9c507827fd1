"""`configctl audit`: applied and rejected commits, rollbacks, pins and releases.

JSON field names are a documented contract (README, "JSON output").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from configctl.cli import context, sources
from configctl.cli.output import Format, OutputOption

app = typer.Typer()


@app.command(
    epilog=(
        "Examples:\n\n"
        "  configctl audit --since 7d\n\n"
        "  configctl audit --app checkout --env production --actor alice -o json"
    )
)
@context.boundary
def audit(
    *,
    app_name: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
    env: Annotated[str | None, typer.Option("--env", help="Only this environment.")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="A date, ISO time or duration (7d, 12h).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n")] = None,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
    out: OutputOption = Format.text,
) -> None:
    """The audit log: applied and rejected commits, rollbacks, pins and releases."""
    from configctl.cli import output
    from configctl.services import audit as audit_service

    since_at = audit_service.parse_since(since, now=datetime.now(UTC)) if since else None
    root = context.optional_repo_path(repo)
    with sources.store_for(root, db, mode="read", app=app_name, env=env) as store:
        records = audit_service.audit(
            store, app=app_name, env=env, actor=actor, since=since_at, limit=limit
        )
    rows = [
        {
            "at": output.iso(r.at),
            "actor": r.actor,
            "host": r.host,
            "action": r.action,
            "app": r.app,
            "env": r.env,
            "commit": r.commit_sha,
            "version": r.version,
            "details": r.details,
        }
        for r in records
    ]
    if output.emit(rows, out):
        return
    now = datetime.now(UTC)
    output.table(
        ["AGE", "ACTOR", "ACTION", "APP/ENV", "COMMIT", "VERSION"],
        [
            [
                output.age(rec.at, now),
                r["actor"],
                r["action"],
                f"{r['app']}/{r['env']}" if r["app"] else "-",
                output.short_sha(r["commit"]),
                r["version"] or "-",
            ]
            for r, rec in zip(rows, records, strict=True)
        ],
        flexible=["ACTOR", "APP/ENV"],
    )
