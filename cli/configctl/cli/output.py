"""Reporters: one Rich text form for people, one stable JSON form for machines.

Text goes through Rich only on a terminal (colour and tables); piped output is plain,
tab- or line-oriented text, so scripts and CI logs stay greppable. JSON is never coloured
and its field names are documented in the README.
"""

from __future__ import annotations

import enum
import json
import shlex
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from configctl.cli import context
from configctl.core.model import Finding, Report

if TYPE_CHECKING:
    from rich.console import Console


class Format(enum.StrEnum):
    """The output vocabulary shared by every command that prints data (``-o/--output``)."""

    text = "text"
    json = "json"
    yaml = "yaml"


OUTPUT_NAMES = ("--output", "-o")
"""The option's names; `validate` and `diff` add their historical ``--format``/``-f``."""
FORMAT_ALIASES = ("--format", "-f")

OutputOption = Annotated[Format, typer.Option(*OUTPUT_NAMES, help="Output format.")]
"""``-o/--output`` as most commands declare it (default: text)."""


def dumps_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def dumps_yaml(value: Any) -> str:
    """The same document as ``dumps_json``, as YAML (block style, keys in their order)."""
    import yaml

    plain = json.loads(dumps_json(value))  # the JSON form's types: datetimes as strings
    text: str = yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text.rstrip("\n")


def emit(value: Any, fmt: str) -> bool:
    """Write ``value`` as JSON or YAML when ``fmt`` asks for one; False for a text form."""
    if fmt == Format.json:
        context.write(dumps_json(value))
        return True
    if fmt == Format.yaml:
        context.write(dumps_yaml(value))
        return True
    return False


def age(at: datetime | None, now: datetime) -> str:
    """How long ago, as a person reads a table: ``42s``, ``3m``, ``5h``, ``2d``, then a date."""
    if at is None:
        return "-"
    seconds = int((now - at).total_seconds())
    if seconds < 0:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            if unit == "d" and seconds >= 60 * 86400:
                return at.date().isoformat()
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def short_sha(sha: Any) -> str:
    """A commit as git abbreviates it in a table (7 characters)."""
    return str(sha)[:7] if sha else "-"


def short(sha: Any) -> str:
    """A commit in a line of text (12 characters, as `git log --abbrev=12`), ``-`` for none."""
    return str(sha)[:12] if sha else "-"


def iso(value: datetime | None) -> str | None:
    """A time in the JSON form: ISO 8601, or null."""
    return value.isoformat() if value is not None else None


def author(name: str | None, email: str | None) -> str | None:
    """``Name <email>`` as git writes it, else whichever of the two is known."""
    if name and email:
        return f"{name} <{email}>"
    return name or email or None


def _finding_line(f: Finding, level: str) -> str:
    return f"{f.file}:{f.line}:{f.column}: {level} [{f.rule}] {f.message}"


def print_report_text(report: Report, *, stream: Console | None = None, summary: str | None = None) -> None:
    from rich.markup import escape

    console = stream if stream is not None else context.stdout()
    for f in report.errors:
        console.print(f"[bold]{escape(f.file)}:{f.line}:{f.column}[/]: [red]error[/] [dim]\\[{f.rule}][/] {escape(f.message)}")
        if f.hint:
            console.print(f"    [dim]hint: {escape(f.hint)}[/]")
    for f in report.warnings:
        console.print(f"[bold]{escape(f.file)}:{f.line}:{f.column}[/]: [yellow]warning[/] [dim]\\[{f.rule}][/] {escape(f.message)}")
        if f.hint:
            console.print(f"    [dim]hint: {escape(f.hint)}[/]")
    if summary is not None:
        console.print(summary)


def report_json(report: Report) -> str:
    return dumps_json(report.to_dict())


def _gh_escape(text: str, *, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def report_github(report: Report, *, prefix: str = "") -> str:
    """GitHub Actions workflow commands: one annotation per finding.

    ``prefix`` is the config repository's folder inside the git work tree (``""`` at its
    top): GitHub places an annotation by its path from the checkout's root.
    """
    lines = []
    for level, findings in (("error", report.errors), ("warning", report.warnings)):
        for f in findings:
            message = f.message + (f" (hint: {f.hint})" if f.hint else "")
            lines.append(
                f"::{level} file={_gh_escape(prefix + f.file, prop=True)},line={f.line},col={f.column},"
                f"title={_gh_escape(f.rule, prop=True)}::{_gh_escape(message)}"
            )
    return "\n".join(lines)


#: Code Climate severities GitLab shows; an error fails the job, a warning does not
#: (the mapping ESLint's and most linters' GitLab formatters use).
_GITLAB_SEVERITY = {"error": "major", "warning": "minor"}


def report_gitlab(report: Report, *, prefix: str = "") -> str:
    """A GitLab code-quality report: the Code Climate JSON array of issues GitLab reads.

    Each issue has ``description``, ``check_name`` (``configctl/<rule>``), ``fingerprint``,
    ``severity`` and ``location.path`` / ``location.lines.begin``, plus Code Climate's
    ``type`` and ``categories``. ``prefix`` is the config folder inside the git work tree:
    GitLab matches ``location.path`` against the repository root.

    The fingerprint is how GitLab tells a new finding from one the target branch already
    has, so it must survive unrelated edits: it is the SHA-256 of the file, the rule and the
    message (never the line or column, which move whenever a line is added above), plus the
    finding's rank among identical (file, rule, message) findings so two of them on
    different lines stay two issues.
    """
    import hashlib

    seen: dict[tuple[str, str, str], int] = {}
    issues: list[dict[str, Any]] = []
    for level, findings in (("error", report.errors), ("warning", report.warnings)):
        for f in findings:
            path = prefix + f.file
            ident = (path, f.rule, f.message)
            rank = seen.get(ident, 0)
            seen[ident] = rank + 1
            digest = hashlib.sha256("\0".join((*ident, str(rank))).encode("utf-8")).hexdigest()
            issues.append(
                {
                    "type": "issue",
                    "check_name": f"configctl/{f.rule}",
                    "description": f.message + (f" (hint: {f.hint})" if f.hint else ""),
                    "categories": ["Bug Risk"],
                    "severity": _GITLAB_SEVERITY[level],
                    "fingerprint": digest,
                    "location": {"path": path, "lines": {"begin": max(f.line, 1)}},
                }
            )
    return dumps_json(issues)


def scalar_text(value: Any) -> str:
    """A leaf as a person reads it: strings raw, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def values_yaml(value: Any) -> str:
    import yaml

    if not isinstance(value, dict | list):
        return scalar_text(value)
    text: str = yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text.rstrip("\n")


def env_name(dotted: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in dotted).upper()


def values_env(flat: Mapping[str, Any]) -> str:
    return "\n".join(f"{env_name(k)}={shlex.quote(scalar_text(v))}" for k, v in flat.items())


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    flexible: Sequence[str] | None = None,
) -> None:
    """A Rich table on a terminal; tab-separated plain text when piped.

    On a terminal, only the ``flexible`` columns (default: the last) give way when the
    table is wider than the screen, folding or ending in "…"; the others are never cut, so
    an action name or a commit stays whole at 80 columns.
    """
    console = context.stdout()
    if not console.is_terminal:
        lines = ["\t".join(headers)] + ["\t".join(str(c) for c in row) for row in rows]
        context.write("\n".join(lines))
        return
    from rich import box
    from rich.table import Table

    give = set(flexible) if flexible is not None else {headers[-1]}
    t = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for h in headers:
        if h in give:
            t.add_column(h, overflow="fold")
        else:
            t.add_column(h, no_wrap=True)
    for row in rows:
        t.add_row(*(str(c) for c in row))
    console.print(t)
