"""Read the store: `history`, `show`, `audit`, `status`.

JSON field names are a documented contract (README, "JSON output").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from configctl.cli import context, sources
from configctl.cli.output import OUTPUT_NAMES
from configctl.cli.output import Format as Output

app = typer.Typer()


OutputOption = Annotated[Output, typer.Option(*OUTPUT_NAMES, help="Output format.")]




def _by(row: dict[str, Any]) -> str:
    """Who made a version: the person who rolled back, else the commit's author (by name)."""
    if row["reason"] != "commit" and row.get("actor"):
        return str(row["actor"])
    author = row["author"] or row.get("actor") or "-"
    return str(author).split(" <", 1)[0]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _author(name: str | None, email: str | None) -> str | None:
    if name and email:
        return f"{name} <{email}>"
    return name or email or None


def _short(sha: Any) -> str:
    return str(sha)[:12] if sha else "-"


def parse_since(text: str) -> datetime:
    """`2026-11-01`, an ISO time, or a duration back from now: `30m`, `12h`, `7d`."""
    from configctl.errors import UsageError

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if text and text[-1] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"--since {text!r}: use a date (2026-11-01), an ISO time or a duration (30m, 12h, 7d)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    env: Annotated[str, typer.Argument(metavar="ENV")],
    key: Annotated[str | None, typer.Argument(metavar="[KEY]", help="One dotted key: its values over time.", show_default=False)] = None,
    *,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="At most this many entries, newest first.")] = None,
    out: OutputOption = Output.text,
) -> None:
    """The versions of APP in ENV, newest first (or one KEY's values over time)."""
    from configctl.cli import output

    root = context.optional_repo_path(repo)
    store = sources.open_store(root, db, mode="read")
    try:
        sources.require_names(root, store, app_name, env)
        if key is None:
            entries = store.list_versions(app_name, env, limit=limit)
            rows: list[dict[str, Any]] = [
                {
                    "version": e.number,
                    "commit": e.commit_sha,
                    "author": _author(e.author_name, e.author_email),
                    "created_at": _iso(e.created_at),
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
            entries_k = store.key_history(app_name, env, key)
            rows = [
                {
                    "version": e.version,
                    "commit": e.commit_sha,
                    "author": _author(e.author_name, e.author_email),
                    "created_at": _iso(e.created_at),
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
            if limit is not None:
                rows = rows[:limit]
    finally:
        store.close()
    if output.emit(rows, out):
        return
    for r, at in zip(rows, times, strict=False):
        r["_at"] = at  # the text form shows ages; JSON keeps ISO times
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
                    output.age(r["_at"], now),
                    _by(r),
                    r["reason"] + (f" to v{r['rolled_back_to']}" if r["rolled_back_to"] else ""),
                    f"{len(r['changed_keys'])}: " + ", ".join(r["changed_keys"][:3])
                    + (" …" if len(r["changed_keys"]) > 3 else ""),
                ]
                for r in rows
            ],
        )
    else:
        output.table(
            ["VERSION", "COMMIT", "AGE", "BY", "CHANGE", "VALUE"],
            [
                [
                    r["version"],
                    output.short_sha(r["commit"]),
                    output.age(r["_at"], now),
                    _by(r),
                    r["change"],
                    output.scalar_text(r["new"]) if r["change"] != "removed" else "(removed)",
                ]
                for r in rows
            ],
        )


@app.command(
    epilog="Examples:\n\n  configctl show checkout production\n\n  configctl show checkout production --version 3 -o json",
)
@context.boundary
def show(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    env: Annotated[str, typer.Argument(metavar="ENV")],
    *,
    version: Annotated[int | None, typer.Option("--version", "-v", help="A version number (default: the one in service).")] = None,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
    out: Annotated[
        Output | None,
        typer.Option(*OUTPUT_NAMES, help="Output format [default: text, the values as YAML with a header on stderr].", show_default=False),
    ] = None,
) -> None:
    """The snapshot in service for APP in ENV, or version N."""
    from configctl.cli import output
    from configctl.errors import UsageError

    root = context.optional_repo_path(repo)
    store = sources.open_store(root, db, mode="read")
    try:
        sources.require_names(root, store, app_name, env)
        record = store.get_version(app_name, env, version)
    finally:
        store.close()
    if record is None:
        what = f"no version {version}" if version is not None else "no version"
        raise UsageError(f"{app_name}/{env} has {what} in the store", hint="run `configctl apply` first")
    document = {
        "app": record.app,
        "env": record.env,
        "version": record.number,
        "commit": record.commit_sha,
        "checksum": record.checksum,
        "reason": record.reason,
        "created_at": _iso(record.created_at),
        "values": record.values,
    }
    if out is not None and output.emit(document, out):
        return
    context.stderr().print(
        f"# {record.app}/{record.env} version {record.number} (commit {_short(record.commit_sha)}, {record.reason}, {_iso(record.created_at)})"
    )
    context.write(output.values_yaml(record.values))


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
    since: Annotated[str | None, typer.Option("--since", help="A date, ISO time or duration (7d, 12h).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n")] = None,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
    out: OutputOption = Output.text,
) -> None:
    """The audit log: applied and rejected commits, rollbacks, pins and releases."""
    from configctl.cli import output

    since_at = parse_since(since) if since else None
    root = context.optional_repo_path(repo)
    store = sources.open_store(root, db, mode="read")
    try:
        sources.require_names(root, store, app_name, env)
        records = store.audit(app=app_name, env=env, actor=actor, since=since_at, limit=limit)
    finally:
        store.close()
    rows = [
        {
            "at": _iso(r.at),
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


@app.command(
    epilog="Examples:\n\n  configctl status\n\n  configctl status -o json",
)
@context.boundary
def status(
    *,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
    out: OutputOption = Output.text,
) -> None:
    """Last applied commit, commits not yet applied, rejected commits, pins and drift."""
    from configctl.cli import output
    from configctl.errors import ConfigctlError

    root = context.repo_path(repo)
    store = sources.open_store(root, db, mode="read", missing_ok=True)
    try:
        last_applied = store.sync_state("last_applied_commit")
        last_attempted = store.sync_state("last_attempted_commit")
        rejected = store.commits(status="rejected")
        pins = store.pins()
        latest = store.latest_versions()
    finally:
        store.close()
    head: str | None = None
    pending: list[dict[str, Any]] = []
    in_git: dict[tuple[str, str], dict[str, Any]] | None = None
    try:
        git, prefix = sources.git_source(root)
        head = git.head()
        if head is not None and head != last_applied:
            for c in git.commits_between(last_applied, head):
                pending.append({"commit": c.sha, "author": c.author_email, "message": c.message.splitlines()[0] if c.message else ""})
        if head is not None and pins:
            # What git says each pinned pair should serve: the drift is the difference.
            from configctl.services.inspect import resolved_values

            files = sources.strip_prefix(git.read_tree(head), prefix)
            in_git = resolved_values(files, [(p.app, p.env) for p in pins])
    except ConfigctlError:
        head = None
    drift: list[dict[str, Any]] = []
    for p in pins:
        served = latest.get((p.app, p.env))
        drift_keys: list[str] | None = None
        if in_git is not None:
            from configctl.core.diff import diff_values

            # key names only: no values, so no secret can show here
            drift_keys = [k.key for k in diff_values(served.values if served else None, in_git[(p.app, p.env)])]
        drift.append(
            {
                "app": p.app,
                "env": p.env,
                "pinned_version": p.version,
                "served_version": served.number if served else None,
                "quarantined_commit": p.quarantined_commit,
                "reason": p.reason,
                "actor": p.actor,
                "since": _iso(p.created_at),
                "drift_keys": drift_keys,
            }
        )
    rejected_rows = [
        {"commit": c.info.sha, "author": c.info.author_email, "reason": c.reason, "recorded_at": _iso(c.recorded_at)}
        for c in rejected
    ]
    payload = {
        "head": head,
        "last_applied_commit": last_applied,
        "last_attempted_commit": last_attempted,
        "pending_commits": pending,
        "rejected_commits": rejected_rows,
        "pins": drift,
        "versions": len(latest),
    }
    if output.emit(payload, out):
        return
    lines = [
        f"HEAD:                 {_short(head)}",
        f"last applied commit:  {_short(last_applied)}",
        f"last attempted:       {_short(last_attempted)}",
        f"app/env pairs served: {len(latest)}",
        f"commits not applied:  {len(pending)}",
    ]
    lines += [f"  {_short(c['commit'])} {c['author']} {c['message']}" for c in pending[:20]]
    lines.append(f"rejected commits:     {len(rejected_rows)}")
    lines += [f"  {_short(c['commit'])} {(c['reason'] or '').splitlines()[0] if c['reason'] else ''}" for c in rejected_rows[:20]]
    lines.append(f"pins (drift from git): {len(drift)}")
    for d in drift:
        lines.append(
            f"  {d['app']}/{d['env']} pinned at v{d['pinned_version']} by {d['actor']} ({d['reason']}); quarantined commit {_short(d['quarantined_commit'])}"
        )
        if d["drift_keys"] is None:
            lines.append("    drift from git: unknown (no git HEAD)")
        elif d["drift_keys"]:
            shown = ", ".join(d["drift_keys"][:10]) + (" …" if len(d["drift_keys"]) > 10 else "")
            lines.append(f"    differs from git HEAD in {len(d['drift_keys'])} key(s): {shown}")
        else:
            lines.append("    same values as git HEAD")
    context.write("\n".join(lines))
