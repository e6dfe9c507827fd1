"""Read the store: `history`, `show`, `audit`, `status`.

JSON field names are a documented contract (README, "JSON output").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from configctl.cli import clients_view, context, sources
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
    epilog=(
        "Examples:\n\n  configctl status\n\n  configctl status -o json\n\n"
        "  configctl status --exit-code   # exit 1 when anything is pending, drifting or rejected\n\n"
        "Drift lists every app/env whose served values differ from what git HEAD resolves to,\n"
        "with the reason: pinned, quarantined, rejected, force-push, pending or out-of-sync.\n\n"
        "  configctl status checkout production --redis redis://localhost:6379/0   # and the SDK clients"
    ),
)
@context.boundary
def status(
    app_name: Annotated[str | None, typer.Argument(metavar="APP", help="With ENV: also the running SDK clients of APP/ENV.", show_default=False)] = None,
    env_name: Annotated[str | None, typer.Argument(metavar="ENV", show_default=False)] = None,
    *,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
    redis: clients_view.RedisOption = None,
    redis_prefix: clients_view.RedisPrefixOption = "configctl",
    out: OutputOption = Output.text,
    exit_code: Annotated[
        bool,
        typer.Option("--exit-code", help="Exit 1 when anything is pending, drifting or rejected, like `diff --exit-code`."),
    ] = False,
) -> None:
    """Last applied commit, commits not yet applied, rejected commits, pins and drift from git HEAD;
    with APP ENV, which versions the running clients hold and which refused one."""
    from configctl.cli import output
    from configctl.cli.exit_codes import ExitCode
    from configctl.errors import ConfigctlError
    from configctl.services import drift as drift_service

    root = context.repo_path(repo)
    store = sources.open_store(root, db, mode="read", missing_ok=True)
    try:
        last_applied = store.sync_state("last_applied_commit")
        last_attempted = store.sync_state("last_attempted_commit")
        rejected = store.commits(status="rejected")
        pins = store.pins()
        heads = store.latest_heads()
        quarantines = store.quarantines()
        head: str | None = None
        pending: list[dict[str, Any]] = []
        between: set[str] = set()
        rewritten = False
        in_git: dict[tuple[str, str], dict[str, Any]] | None = None
        try:
            git, prefix = sources.git_source(root)
            head = git.head()
            if head is not None and head != last_applied:
                if isinstance(last_applied, str):
                    try:
                        rewritten = not git.is_ancestor(last_applied, head)
                    except ConfigctlError:  # the commit is gone from the repository
                        rewritten = True
                base = None if rewritten or not isinstance(last_applied, str) else last_applied
                if rewritten:
                    listed = [git.commit_info(head)]
                    between = {head}
                else:
                    listed = git.commits_between(base, head, prefix=prefix)
                    between = {c.sha for c in git.commits_between(base, head)}
                for c in listed:
                    pending.append({"commit": c.sha, "author": c.author_email, "message": c.message.splitlines()[0] if c.message else ""})
            if head is not None:
                in_git = drift_service.resolve_all(sources.strip_prefix(git.read_tree(head), prefix))
        except ConfigctlError:
            head = None
        # A rejected commit blocks only while it is HEAD or on the way to it: one that an
        # applied commit has superseded is history (the audit log keeps it).
        blocking = [c for c in rejected if c.info.sha in between] if head is not None else rejected
        head_rejected = head is not None and any(c.info.sha == head for c in rejected)
        head_reason: str | None = None
        if head is not None and head != last_applied:
            head_reason = "rejected" if head_rejected else "force-push" if rewritten else "pending"
        drifts: list[drift_service.Drift] = []
        latest: dict[tuple[str, str], Any] = {}

        def load(app_name: str, env_name: str) -> Any:
            record = store.get_version(app_name, env_name)
            latest[(app_name, env_name)] = record
            return record.values if record is not None else None

        if in_git is not None:
            quarantined = set(quarantines)
            drifts = drift_service.find_drift(
                served=heads, in_git=in_git, load_served=load, pinned={(p.app, p.env) for p in pins},
                quarantined=quarantined, head_reason=head_reason,
            )
        for p in pins:
            if (p.app, p.env) not in latest:
                latest[(p.app, p.env)] = store.get_version(p.app, p.env)
    finally:
        store.close()
    drift_keys_of = {(d.app, d.env): list(d.keys) for d in drifts}
    pin_rows: list[dict[str, Any]] = []
    for p in pins:
        served = latest.get((p.app, p.env))
        pin_rows.append(
            {
                "app": p.app,
                "env": p.env,
                "pinned_version": p.version,
                "served_version": served.number if served else None,
                "quarantined_commit": p.quarantined_commit,
                "reason": p.reason,
                "actor": p.actor,
                "since": _iso(p.created_at),
                # key names only: no values, so no secret can show here
                "drift_keys": drift_keys_of.get((p.app, p.env), []) if in_git is not None else None,
            }
        )
    rejected_rows = [
        {"commit": c.info.sha, "author": c.info.author_email, "reason": c.reason, "recorded_at": _iso(c.recorded_at), "blocking": True}
        for c in blocking
    ]
    in_sync = not pending and not drifts and not rejected_rows
    payload = {
        "head": head,
        "last_applied_commit": last_applied,
        "last_attempted_commit": last_attempted,
        "pending_commits": pending,
        "rejected_commits": rejected_rows,
        "pins": pin_rows,
        "versions": len(heads),
        "history_rewritten": rewritten,
        "drift": [d.to_dict() for d in drifts],
        "in_sync": in_sync,
    }
    clients = None
    if app_name and env_name:
        served = heads.get((app_name, env_name))
        clients = clients_view.clients_summary(app_name, env_name, redis, redis_prefix, served.number if served else None)
        payload["clients"] = clients.to_dict() if clients is not None else None
    if not output.emit(payload, out):
        extra = clients_view.clients_text(app_name, env_name, clients) if app_name and env_name else []
        _status_text(payload, drifts, known=in_git is not None, extra=extra)
    if exit_code and not in_sync:
        raise typer.Exit(ExitCode.FINDINGS)


def _status_text(payload: dict[str, Any], drifts: list[Any], *, known: bool, extra: list[str]) -> None:
    head, pending, rejected_rows, pins = payload["head"], payload["pending_commits"], payload["rejected_commits"], payload["pins"]
    lines = [
        f"HEAD:                 {_short(head)}",
        f"last applied commit:  {_short(payload['last_applied_commit'])}"
        + ("  (no longer in HEAD's history: force push)" if payload["history_rewritten"] else ""),
        f"last attempted:       {_short(payload['last_attempted_commit'])}",
        f"app/env pairs served: {payload['versions']}",
        f"commits not applied:  {len(pending)}",
    ]
    lines += [f"  {_short(c['commit'])} {c['author']} {c['message']}" for c in pending[:20]]
    lines.append(f"rejected commits:     {len(rejected_rows)}")
    lines += [f"  {_short(c['commit'])} {(c['reason'] or '').splitlines()[0] if c['reason'] else ''}" for c in rejected_rows[:20]]
    lines.append(f"pins (drift from git): {len(pins)}")
    for d in pins:
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
    if not known:
        lines.append("drift from git HEAD:  unknown (no git HEAD)")
    else:
        lines.append(f"drift from git HEAD:  {len(drifts)}")
        for dr in drifts[:50]:
            served = f"v{dr.served_version}" if dr.served_version is not None else "nothing"
            shown = ", ".join(dr.keys[:6]) + (" …" if len(dr.keys) > 6 else "")
            lines.append(f"  {dr.app}/{dr.env}: {dr.reason}, serves {served}, {len(dr.keys)} key(s) differ: {shown}")
        if len(drifts) > 50:
            lines.append(f"  … and {len(drifts) - 50} more (configctl status -o json)")
    lines.append("in sync with git HEAD: " + ("yes" if payload["in_sync"] else "no"))
    lines += extra
    context.write("\n".join(lines))
