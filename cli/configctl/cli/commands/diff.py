"""`configctl diff [BASE [HEAD]]`: what a change does to every resolved (app, env)."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from configctl.cli import context
from configctl.cli.exit_codes import ExitCode
from configctl.cli.output import FORMAT_ALIASES, OUTPUT_NAMES

if TYPE_CHECKING:
    from pathlib import Path

    from configctl.services.diff import DiffResult

app = typer.Typer()


class Format(enum.StrEnum):
    text = "text"
    markdown = "markdown"
    json = "json"
    yaml = "yaml"


def _fmt(value: Any) -> str:
    from configctl.cli.output import scalar_text

    text = scalar_text(value)
    return text if len(text) <= 120 else text[:119] + "…"


def render_text(result: DiffResult, base_label: str, head_label: str) -> None:
    from rich.markup import escape

    console = context.stdout()
    d = result.diff
    if d.empty and not result.complete:
        console.print(
            f"No key change shown between {escape(base_label)} and {escape(head_label)}: "
            f"{len(result.unreadable_pairs)} app/environment pair(s) cannot be resolved (see the errors)."
        )
        return
    for rc in result.rollout_changes:
        target = f" ({rc['key']})" if rc["key"] else " (flag)"
        console.print(f"rollout {escape(str(rc['rollout']))}{escape(target)} {rc['change']} in {rc['app']}/{rc['env']}")
    if d.empty:
        console.print(f"No change to any resolved configuration between {escape(base_label)} and {escape(head_label)}.")
        return
    s = d.summary()
    console.print(
        f"[bold]{s['pairs']} app/environment pair(s) change[/] "
        f"({s['apps']} app(s), {s['environments']} environment(s), {s['keys']} key(s)) "
        f"between {escape(base_label)} and {escape(head_label)}"
    )
    for pair in d.pairs:
        c = pair.counts
        status = "" if pair.status == "changed" else f" [bold]({pair.status})[/]"
        console.print(
            f"\n[bold]{pair.app}/{pair.env}[/]{status}  "
            f"[green]+{c['added']}[/] [yellow]~{c['changed']}[/] [red]-{c['removed']}[/]"
        )
        for k in pair.keys:
            if k.change == "added":
                console.print(f"  [green]+ {escape(k.key)}: {escape(_fmt(k.new))}[/]")
            elif k.change == "removed":
                console.print(f"  [red]- {escape(k.key)}: {escape(_fmt(k.old))}[/]")
            else:
                console.print(f"  [yellow]~ {escape(k.key)}: {escape(_fmt(k.old))} → {escape(_fmt(k.new))}[/]")


def _print_unreadable(result: DiffResult, base_label: str, head_label: str) -> None:
    """Name every unreadable file on stderr, with its side, line and cause."""
    from rich.markup import escape

    err = context.stderr()
    for label, found in ((base_label, result.unreadable_base), (head_label, result.unreadable_head)):
        for f in found:
            err.print(
                f"{escape(label)}: [bold]{escape(f.file)}:{f.line}:{f.column}[/]: "
                f"[red]error[/] [dim]\\[{f.rule}][/] {escape(f.message)}"
            )
    pairs = ", ".join(f"{a}/{e}" for a, e in result.unreadable_pairs)
    context.print_error(
        f"{len(result.unreadable_pairs)} app/environment pair(s) cannot be resolved "
        f"and are left out of the diff: {pairs}",
        "a file they need cannot be read; fix it (`configctl validate` lists every problem)",
    )


def _md(value: Any) -> str:
    return "`" + _fmt(value).replace("`", "'").replace("|", "\\|") + "`"


def render_markdown(result: DiffResult, base_label: str, head_label: str) -> str:
    d = result.diff
    lines = [f"### configctl diff `{base_label}` → `{head_label}`", ""]
    for label, found in ((base_label, result.unreadable_base), (head_label, result.unreadable_head)):
        for finding in found:
            lines.append(
                f"- :x: `{label}`: `{finding.file}:{finding.line}:{finding.column}` cannot be read "
                f"[{finding.rule}] {finding.message}"
            )
    if not result.complete:
        left_out = ", ".join(f"{a}/{e}" for a, e in result.unreadable_pairs) or "none"
        lines += [f"- :x: no key changes shown for the pair(s) that need these files: {left_out}", ""]
    if d.empty:
        lines.append("No change to any resolved configuration.")
        lines += [
            f"- rollout `{rc['rollout']}` ({'`' + str(rc['key']) + '`' if rc['key'] else 'flag'}) {rc['change']} in {rc['app']}/{rc['env']}"
            for rc in result.rollout_changes
        ]
        return "\n".join(lines)
    s = d.summary()
    lines += [
        "**Blast radius**",
        "",
        f"- **{s['apps']}** app(s): {', '.join(s['app_names'])}",
        f"- **{s['environments']}** environment(s): {', '.join(s['environment_names'])}",
        f"- **{s['pairs']}** app/environment pair(s), **{s['keys']}** key change(s)",
        f"- rollouts touched: {', '.join(result.rollouts_touched) if result.rollouts_touched else 'none'}",
        *[f"  - `{rc['rollout']}` ({'`' + str(rc['key']) + '`' if rc['key'] else 'flag'}) {rc['change']} in {rc['app']}/{rc['env']}" for rc in result.rollout_changes],
        f"- files changed: {', '.join(f'`{f}`' for f in d.changed_files) if d.changed_files else 'none'}",
    ]
    if not result.head_report.valid:
        lines.append(f"- :warning: the new tree has **{len(result.head_report.errors)} validation error(s)**: run `configctl validate`")
    lines.append("")
    by_app: dict[str, list[Any]] = {}
    for pair in d.pairs:
        by_app.setdefault(pair.app, []).append(pair)
    for app_name, pairs in by_app.items():
        keys = sum(len(p.keys) for p in pairs)
        envs = ", ".join(p.env for p in pairs)
        lines += [f"<details><summary><b>{app_name}</b>: {keys} key change(s) in {envs}</summary>", ""]
        for pair in pairs:
            lines += [f"**{pair.env}**" + ("" if pair.status == "changed" else f" ({pair.status})"), ""]
            lines += ["| key | change | old | new |", "| --- | --- | --- | --- |"]
            for k in pair.keys:
                old = _md(k.old) if k.change != "added" else ""
                new = _md(k.new) if k.change != "removed" else ""
                lines.append(f"| `{k.key}` | {k.change} | {old} | {new} |")
            lines.append("")
        lines += ["</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


@app.command(
    epilog=(
        "Examples:\n\n"
        "  configctl diff                      # working tree against HEAD\n\n"
        "  configctl diff main                 # main against the working tree\n\n"
        "  configctl diff main my-branch --format markdown > comment.md\n\n"
        "  configctl diff origin/main HEAD --exit-code   # exit 1 when something changes\n\n"
        "  configctl diff --served checkout production   # what is served vs git HEAD\n\n"
        "Needs only the git repository (--served reads the store too): no cluster credentials."
    )
)
@context.boundary
def diff(
    base: Annotated[str | None, typer.Argument(metavar="[BASE]", help="Base revision (default: HEAD).", show_default=False)] = None,
    head: Annotated[str | None, typer.Argument(metavar="[HEAD]", help="Head revision (default: the working tree).", show_default=False)] = None,
    *,
    repo: context.RepoOption = None,
    fmt: Annotated[Format, typer.Option(*OUTPUT_NAMES, *FORMAT_ALIASES, help="Output format (--format is the same option).")] = Format.text,
    exit_code: Annotated[bool, typer.Option("--exit-code", help="Exit 1 when something changes, like `git diff --exit-code`.")] = False,
    served: Annotated[
        bool,
        typer.Option(
            "--served",
            help="Compare what the store serves for APP ENV (the two arguments) with what git HEAD resolves to.",
        ),
    ] = False,
    db: Annotated[
        str | None,
        typer.Option("--db", envvar="CONFIGCTL_DB", help="With --served: the store URL (see `configctl apply --help`).", show_default=False),
    ] = None,
) -> None:
    """Show the resolved, key-by-key difference of every app and environment between two revisions."""
    from configctl.adapters import schemas
    from configctl.cli import output, sources
    from configctl.services import diff as diff_service
    from configctl.services.resolution import Evaluator

    root = context.repo_path(repo)
    if served:
        _served(root, base, head, db=db, fmt=fmt, exit_code=exit_code)
        return
    base_rev = base if base is not None else "HEAD"
    base_files = sources.snapshot(root, base_rev)
    head_files = sources.snapshot(root, head)
    head_label = head if head is not None else "working tree"
    evaluator = Evaluator(file_schemas=schemas.file_schemas())
    result = diff_service.diff_snapshots(base_files, head_files, evaluator=evaluator)
    if fmt in (Format.json, Format.yaml):
        payload = result.diff.to_dict()
        payload["base"] = base_rev
        payload["head"] = head if head is not None else None
        payload["rollouts_touched"] = list(result.rollouts_touched)
        payload["rollout_changes"] = list(result.rollout_changes)
        payload["head_valid"] = result.head_report.valid
        payload["unreadable"] = {
            "base": [f.to_dict() for f in result.unreadable_base],
            "head": [f.to_dict() for f in result.unreadable_head],
            "pairs": [{"app": a, "env": e} for a, e in result.unreadable_pairs],
        }
        output.emit(payload, fmt)
    elif fmt is Format.markdown:
        context.write(render_markdown(result, base_rev, head_label))
    else:
        render_text(result, base_rev, head_label)
        if not result.head_report.valid:
            context.print_error(
                f"{head_label} has {len(result.head_report.errors)} validation error(s); run `configctl validate`"
            )
    if not result.complete:
        # A diff that lacks a layer is not the diff of the change: never let it pass as one.
        _print_unreadable(result, base_rev, head_label)
        raise typer.Exit(ExitCode.FINDINGS)
    if exit_code and not (result.diff.empty and not result.rollout_changes):
        raise typer.Exit(ExitCode.FINDINGS)


def _served(root: Path, app_name: str | None, env: str | None, *, db: str | None, fmt: Format, exit_code: bool) -> None:
    """`diff --served APP ENV`: the store's snapshot in service (old) against git HEAD (new),
    like `kubectl diff` (live against desired). Secret values are redacted; with the
    app's schema not at HEAD, every value is."""
    from configctl.cli import output, sources
    from configctl.core import tree as tree_mod
    from configctl.core.model import Report
    from configctl.errors import UsageError
    from configctl.services import drift as drift_service
    from configctl.services.diff import DiffResult
    from configctl.services.resolution import require_pair, secret_keys

    if app_name is None or env is None:
        raise UsageError("--served needs APP and ENV: configctl diff --served APP ENV")
    git, prefix = sources.git_source(root)
    head_sha = git.head()
    if head_sha is None:
        raise UsageError(f"{root}: the git repository has no commits yet")
    files = sources.strip_prefix(git.read_tree(head_sha), prefix)
    tree = tree_mod.build(files)
    store = sources.open_store(root, db)
    try:
        record = store.get_version(app_name, env)
    finally:
        store.close()
    if record is None:
        require_pair(tree, app_name, env)  # an unknown pair is a usage error, with a did-you-mean
    in_git = (
        drift_service.resolve_all({p: e for p, e in files.items() if not p.startswith("apps/") or p.startswith(f"apps/{app_name}/")}).get(
            (app_name, env)
        )
        if app_name in tree.apps and env in tree.environments
        else None
    )
    secrets = secret_keys(tree, apps=[app_name]).get(app_name) if app_name in tree.apps else None
    if secrets is None and app_name in tree.apps and tree.apps[app_name].schema_path is None:
        secrets = set()  # no schema: nothing is marked secret
    tree_diff = drift_service.served_diff(
        app=app_name, env=env, served=record.values if record is not None else None, in_git=in_git, secrets=secrets
    )
    result = DiffResult(diff=tree_diff, base_report=Report(), head_report=Report(), rollouts_touched=())
    served_label = f"served v{record.number}" if record is not None else "served (nothing)"
    head_label = f"HEAD {head_sha[:12]}"
    if fmt in (Format.json, Format.yaml):
        payload = tree_diff.to_dict()
        payload["base"] = "served"
        payload["head"] = head_sha
        payload["app"] = app_name
        payload["env"] = env
        payload["served"] = (
            {"version": record.number, "commit": record.commit_sha, "reason": record.reason} if record is not None else None
        )
        payload["in_sync"] = tree_diff.empty
        output.emit(payload, fmt)
    elif fmt is Format.markdown:
        context.write(render_markdown(result, served_label, head_label))
    else:
        render_text(result, served_label, head_label)
    if exit_code and not tree_diff.empty:
        raise typer.Exit(ExitCode.FINDINGS)
