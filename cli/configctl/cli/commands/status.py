"""`configctl status`: the store against git HEAD (and, with APP ENV, the running clients).

JSON field names are a documented contract (README, "JSON output").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from configctl.cli import clients_view, context, sources
from configctl.cli.output import Format, OutputOption

if TYPE_CHECKING:
    from configctl.services.drift import Drift
    from configctl.services.status import StatusReport

app = typer.Typer()


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
    app_name: Annotated[
        str | None,
        typer.Argument(
            metavar="APP",
            help="With ENV: also the running SDK clients of APP/ENV.",
            show_default=False,
        ),
    ] = None,
    env_name: Annotated[str | None, typer.Argument(metavar="ENV", show_default=False)] = None,
    *,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
    redis: clients_view.RedisOption = None,
    redis_prefix: clients_view.RedisPrefixOption = "configctl",
    out: OutputOption = Format.text,
    exit_code: Annotated[
        bool,
        typer.Option(
            "--exit-code",
            help="Exit 1 when anything is pending, drifting or rejected, like `diff --exit-code`.",
        ),
    ] = False,
) -> None:
    """Last applied commit, commits not yet applied, rejected commits, pins and drift from git HEAD;
    with APP ENV, which versions the running clients hold and which refused one."""
    from configctl.cli import output
    from configctl.cli.exit_codes import ExitCode
    from configctl.services import status as status_service

    root = context.repo_path(repo)
    with sources.store_for(root, db, mode="read", missing_ok=True) as store:
        report = status_service.status(store, lambda: sources.git_source(root))
    payload = _payload(report)
    clients = None
    if app_name and env_name:
        served = report.heads.get((app_name, env_name))
        clients = clients_view.clients_summary(
            app_name, env_name, redis, redis_prefix, served.number if served else None
        )
        payload["clients"] = clients.to_dict() if clients is not None else None
    if not output.emit(payload, out):
        extra = (
            clients_view.clients_text(app_name, env_name, clients) if app_name and env_name else []
        )
        _status_text(payload, list(report.drift), known=report.drift_known, extra=extra)
    if exit_code and not report.in_sync:
        raise typer.Exit(ExitCode.FINDINGS)


def _payload(report: StatusReport) -> dict[str, Any]:
    """The JSON form (documented in the README)."""
    from configctl.cli.output import iso

    pin_rows: list[dict[str, Any]] = [
        {
            "app": s.pin.app,
            "env": s.pin.env,
            "pinned_version": s.pin.version,
            "served_version": s.served_version,
            "quarantined_commit": s.pin.quarantined_commit,
            "reason": s.pin.reason,
            "actor": s.pin.actor,
            "since": iso(s.pin.created_at),
            # key names only: no values, so no secret can show here
            "drift_keys": list(s.drift_keys) if s.drift_keys is not None else None,
        }
        for s in report.pins
    ]
    return {
        "head": report.head,
        "last_applied_commit": report.last_applied,
        "last_attempted_commit": report.last_attempted,
        "pending_commits": [
            {
                "commit": c.sha,
                "author": c.author_email,
                "message": c.message.splitlines()[0] if c.message else "",
            }
            for c in report.pending
        ],
        "rejected_commits": [
            {
                "commit": c.info.sha,
                "author": c.info.author_email,
                "reason": c.reason,
                "recorded_at": iso(c.recorded_at),
                "blocking": True,
            }
            for c in report.rejected
        ],
        "pins": pin_rows,
        "versions": len(report.heads),
        "history_rewritten": report.history_rewritten,
        "drift": [d.to_dict() for d in report.drift],
        "in_sync": report.in_sync,
    }


def _status_text(
    payload: dict[str, Any], drifts: list[Drift], *, known: bool, extra: list[str]
) -> None:
    from configctl.cli.output import short

    head, pending, rejected_rows, pins = (
        payload["head"],
        payload["pending_commits"],
        payload["rejected_commits"],
        payload["pins"],
    )
    lines = [
        f"HEAD:                 {short(head)}",
        f"last applied commit:  {short(payload['last_applied_commit'])}"
        + ("  (no longer in HEAD's history: force push)" if payload["history_rewritten"] else ""),
        f"last attempted:       {short(payload['last_attempted_commit'])}",
        f"app/env pairs served: {payload['versions']}",
        f"commits not applied:  {len(pending)}",
    ]
    lines += [f"  {short(c['commit'])} {c['author']} {c['message']}" for c in pending[:20]]
    lines.append(f"rejected commits:     {len(rejected_rows)}")
    lines += [
        f"  {short(c['commit'])} {(c['reason'] or '').splitlines()[0] if c['reason'] else ''}"
        for c in rejected_rows[:20]
    ]
    lines.append(f"pins (drift from git): {len(pins)}")
    for d in pins:
        lines.append(
            f"  {d['app']}/{d['env']} pinned at v{d['pinned_version']} by {d['actor']} ({d['reason']}); quarantined commit {short(d['quarantined_commit'])}"
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
            lines.append(
                f"  {dr.app}/{dr.env}: {dr.reason}, serves {served}, {len(dr.keys)} key(s) differ: {shown}"
            )
        if len(drifts) > 50:
            lines.append(f"  … and {len(drifts) - 50} more (configctl status -o json)")
    lines.append("in sync with git HEAD: " + ("yes" if payload["in_sync"] else "no"))
    lines += extra
    context.write("\n".join(lines))
