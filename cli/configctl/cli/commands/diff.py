"""`configctl diff [BASE [HEAD]]`: what a change does to every resolved (app, env)."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from configctl.cli import context
from configctl.cli.exit_codes import ExitCode
from configctl.cli.output import FORMAT_ALIASES, OUTPUT_NAMES

if TYPE_CHECKING:
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
        return "\n".join(lines)
    s = d.summary()
    lines += [
        "**Blast radius**",
        "",
        f"- **{s['apps']}** app(s): {', '.join(s['app_names'])}",
        f"- **{s['environments']}** environment(s): {', '.join(s['environment_names'])}",
        f"- **{s['pairs']}** app/environment pair(s), **{s['keys']}** key change(s)",
        f"- rollouts touched: {', '.join(result.rollouts_touched) if result.rollouts_touched else 'none'}",
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
        "Needs only the git repository: no database, no cluster credentials."
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
) -> None:
    """Show the resolved, key-by-key difference of every app and environment between two revisions."""
    from configctl.adapters import schemas
    from configctl.cli import output, sources
    from configctl.services import diff as diff_service
    from configctl.services.inspect import Evaluator

    root = context.repo_path(repo)
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
    if exit_code and not result.diff.empty:
        raise typer.Exit(ExitCode.FINDINGS)
