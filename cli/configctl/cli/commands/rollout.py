"""`configctl rollout ...`: list, status, explain, simulate, and the runtime controls.

Where the rollouts come from (``--source``):

- ``store``: the version in service of APP/ENV (what clients evaluate, runtime state
  included);
- ``tree``: the working tree (``--repo``), runtime state from the store when it has some:
  what clients would evaluate once this tree is applied;
- ``auto`` (the default of list, status and explain): the store when it holds a version
  of the pair, else the tree. ``simulate`` defaults to ``tree``: it answers "what would
  this change do", before shipping.

The controls (``pause``, ``resume``, ``promote``, ``abort``) act on the store: each is an
audited new version announced through the outbox (see :mod:`configctl.services.rollouts`).
"""

from __future__ import annotations

import csv
import enum
import io
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from configctl.cli import context, sources

if TYPE_CHECKING:
    from configctl.core.tree import ConfigTree
    from configctl.services.rollouts import RolloutView

app = typer.Typer(
    name="rollout",
    help="Rollouts and feature flags: list, status, explain, simulate, and pause/resume/promote/abort.",
    no_args_is_help=True,
)


class Output(enum.StrEnum):
    text = "text"
    json = "json"


class Source(enum.StrEnum):
    auto = "auto"
    store = "store"
    tree = "tree"


AppArg = Annotated[str, typer.Argument(metavar="APP", help="The app.")]
EnvArg = Annotated[str, typer.Argument(metavar="ENV", help="The environment.")]
OutputOption = Annotated[Output, typer.Option("--output", "-o", help="Output format.")]
SourceOption = Annotated[
    Source, typer.Option("--source", help="store (in service), tree (working tree) or auto (store if it has the pair).")
]
AtOption = Annotated[
    str | None,
    typer.Option("--at", help="Evaluate at this RFC 3339 time instead of now (2026-12-02T10:00:00Z).", show_default=False),
]
InstanceOption = Annotated[
    str | None, typer.Option("--instance", help="The client instance id (for canary parts).", show_default=False)
]


# --------------------------------------------------------------------------- helpers


def _now(at: str | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    from configctl.core.rollouts import parse_time
    from configctl.errors import UsageError

    try:
        return datetime.fromtimestamp(parse_time(at, "--at"), UTC)
    except ValueError as exc:
        raise UsageError(str(exc), hint="like 2026-12-02T10:00:00Z") from None


def _coerce(text: str) -> object:
    """A context value from text: canonical integers, numbers and true/false as such."""
    if text in ("true", "false"):
        return text == "true"
    try:
        number = int(text)
    except ValueError:
        pass
    else:
        if str(number) == text:
            return number
    try:
        real = float(text)
    except ValueError:
        return text
    return real if repr(real) == text else text


def parse_context(raw: list[str] | None) -> dict[str, object]:
    """``user_id=u1,country=DE`` (the option may repeat) as a context mapping."""
    from configctl.errors import UsageError

    out: dict[str, object] = {}
    for chunk in raw or []:
        for item in chunk.split(","):
            if not item.strip():
                continue
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise UsageError(f"--context takes name=value pairs, not {item!r}", hint="--context user_id=u1,country=DE")
            out[name.strip()] = _coerce(value.strip())
    return out


def _open_store(root: Path, db: str | None, *, create: bool) -> Any:
    """The store, or None when there is no --db and no embedded database yet."""
    if db is None and not create and not (root / ".configctl" / "configctl.db").exists():
        return None
    return sources.open_store(root, db)


def _tree(root: Path) -> Any:
    from configctl.adapters import filesystem, schemas
    from configctl.services import resolution as resolution_service

    with context.gc_paused():
        return resolution_service.check(filesystem.read_tree(root), file_schemas=schemas.file_schemas())


def _load(
    root: Path, db: str | None, app_name: str, env: str, source: Source
) -> tuple[RolloutView, ConfigTree | None]:
    """The pair's rollouts from the chosen source, and the working tree when it was read."""
    from configctl.core.rollouts import RolloutSet
    from configctl.errors import UsageError, ValidationFailed
    from configctl.services import resolution as resolution_service
    from configctl.services import rollouts as service

    store = _open_store(root, db, create=source is Source.store)
    states: dict[str, dict[str, Any]] = {}
    try:
        if store is not None:
            states = store.rollout_states(app_name, env).get((app_name, env), {})
            if source is not Source.tree:
                head = store.get_version(app_name, env, None)
                if head is not None:
                    tree = None
                    try:
                        tree = _tree(root).tree
                    except Exception:  # noqa: BLE001 - provenance is optional; the store answers
                        tree = None
                    return (
                        service.RolloutView(
                            app=app_name,
                            env=env,
                            source="store",
                            version=head.number,
                            values=head.values,
                            rollouts=RolloutSet.from_json(list(head.rollouts)),
                            states=states,
                        ),
                        tree,
                    )
                if source is Source.store:
                    raise UsageError(
                        f"{app_name}/{env} has no version in the store",
                        hint="apply the repository first (`configctl apply`), or use --source tree",
                    )
    finally:
        if store is not None:
            store.close()
    checked = _tree(root)
    resolution_service.require_pair(checked.tree, app_name, env)
    if not checked.report.valid:
        raise ValidationFailed(
            f"the working tree is invalid ({len(checked.report.errors)} errors); run `configctl validate`",
            report=checked.report,
        )
    entries = service.pair_rollouts(checked.tree, [(app_name, env)], {(app_name, env): states})
    return (
        service.RolloutView(
            app=app_name,
            env=env,
            source="tree",
            version=None,
            values=checked.values.get((app_name, env), {}),
            rollouts=RolloutSet.from_json(list(entries.get((app_name, env), ()))),
            states=states,
        ),
        checked.tree,
    )


def _text(value: object) -> str:
    from configctl.cli import output

    return output.scalar_text(value)


# --------------------------------------------------------------------------- list / status


@app.command(
    "list",
    epilog="Examples:\n\n  configctl rollout list checkout production\n\n  configctl rollout list checkout production -o json",
)
@context.boundary
def list_(
    app_name: AppArg,
    env: EnvArg,
    *,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
    source: SourceOption = Source.auto,
    out: OutputOption = Output.text,
) -> None:
    """The rollouts and flags of APP in ENV: key, value, parts, priority."""
    from configctl.services import rollouts as service

    view, _ = _load(context.repo_path(repo), db, app_name, env, source)
    rows = service.describe(view, datetime.now(UTC))
    if out is Output.json:
        context.write(
            json.dumps(
                {
                    "app": app_name,
                    "env": env,
                    "source": view.source,
                    "version": view.version,
                    "rollouts": [
                        {k: r[k] for k in ("name", "kind", "key", "value", "priority", "stickiness", "parts", "status")}
                        for r in rows
                    ],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    if not rows:
        context.write(f"{app_name}/{env}: no rollouts or flags ({view.source})")
        return
    lines = [f"{app_name}/{env}: {len(rows)} rollout(s) and flag(s) ({_where(view)})"]
    for r in rows:
        target = f"{r['key']} = {_text(r['value'])}" if r["kind"] == "value" else "flag"
        lines.append(
            f"  {r['name']:<24} {target:<32} {', '.join(r['parts']) or 'everyone'}"
            f"  priority {r['priority']}  {r['status']}"
        )
    context.write("\n".join(lines))


def _where(view: RolloutView) -> str:
    return f"version {view.version} in service" if view.version is not None else "working tree, not applied"


@app.command(epilog="Example:\n\n  configctl rollout status checkout production")
@context.boundary
def status(
    app_name: AppArg,
    env: EnvArg,
    *,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
    source: SourceOption = Source.auto,
    at: AtOption = None,
    out: OutputOption = Output.text,
) -> None:
    """Where each rollout stands now: runtime status, percentage, schedule stage, next step."""
    from configctl.services import rollouts as service

    view, _ = _load(context.repo_path(repo), db, app_name, env, source)
    now = _now(at)
    rows = service.describe(view, now)
    if out is Output.json:
        context.write(
            json.dumps(
                {"app": app_name, "env": env, "source": view.source, "version": view.version, "at": now.isoformat().replace("+00:00", "Z"), "rollouts": rows},
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    if not rows:
        context.write(f"{app_name}/{env}: no rollouts or flags ({view.source})")
        return
    lines = [f"{app_name}/{env}: {_where(view)}"]
    for r in rows:
        share = service.share_of(r["percentage"])
        what = f"{share} of {r['stickiness']}" if share is not None else (", ".join(r["parts"]) or "everyone")
        extra = []
        if r["steps"]:
            extra.append(f"stage {r['stage']}/{r['steps']}")
        if r["next_step"]:
            extra.append(f"next {service.share_of(r['next_step']['percentage'])} at {r['next_step']['at']}")
        if r["window"] != "open":
            extra.append(f"window {r['window']}")
        if r["paused_at"]:
            extra.append(f"paused at {r['paused_at']}")
        if not r["enabled"]:
            extra.append("disabled")
        lines.append(f"  {r['name']:<24} {r['status']:<9} {what:<20} {'  '.join(extra)}".rstrip())
    context.write("\n".join(lines))


# --------------------------------------------------------------------------- explain


@app.command(
    epilog=(
        "Examples:\n\n"
        "  configctl rollout explain checkout production database.timeout --context user_id=u1,country=DE\n\n"
        "  configctl rollout explain checkout production new-checkout --context user_id=u1 -o json   # a flag"
    )
)
@context.boundary
def explain(
    app_name: AppArg,
    env: EnvArg,
    key: Annotated[str, typer.Argument(metavar="KEY", help="A dotted key, or a flag name.")],
    *,
    context_: Annotated[
        list[str] | None,
        typer.Option("--context", "-c", help="Context attributes: user_id=u1,country=DE (repeatable)."),
    ] = None,
    instance: InstanceOption = None,
    at: AtOption = None,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
    source: SourceOption = Source.auto,
    out: OutputOption = Output.text,
) -> None:
    """The value a context gets for KEY: the rule that decided it, the bucket and the layer."""
    from configctl.core import resolve as resolve_mod
    from configctl.errors import UserError
    from configctl.services import rollouts as service

    ctx = parse_context(context_)
    now = _now(at)
    view, tree = _load(context.repo_path(repo), db, app_name, env, source)
    rs = view.rollouts
    flag = key in rs.flags and key not in rs.keys
    found, base = resolve_mod.lookup(dict(view.values), key)
    if flag:
        ev = rs.evaluate_flag(key, ctx, now=now, instance_id=instance)
    else:
        if not found and key not in rs.keys:
            raise UserError(f"`{key}` is not set for {app_name} in {env} and no rollout or flag has that name")
        ev = rs.evaluate(key, base if found else None, ctx, now=now, instance_id=instance)
    layer: dict[str, Any] | None = None
    served_by_rollout = ev.rollout is not None and ev.variant == "on"
    if served_by_rollout and ev.rollout is not None:
        layer = {"layer": "rollout", "file": f"apps/{app_name}/rollouts.yaml", "line": None}
        doc = tree.apps[app_name].rollouts if tree is not None and app_name in tree.apps else None
        if doc is not None:
            section = "flags" if flag else "rollouts"
            loc = doc.location((section, ev.rollout, "value") if not flag else (section, ev.rollout))
            layer["line"] = loc.line
    elif not flag and tree is not None and app_name in tree.apps and env in tree.environments:
        winner = resolve_mod.resolve(tree.layers(app_name, env)).winner(tuple(key.split(".")))
        if winner is not None:
            layer = {"layer": winner.layer, "file": winner.location.file, "line": winner.location.line}
    percentage = rs.percentage(ev.rollout, now=now) if ev.rollout is not None else None
    payload = {
        "app": app_name,
        "env": env,
        "key": key,
        "kind": "flag" if flag else "value",
        "context": ctx,
        "instance": instance,
        "at": now.isoformat().replace("+00:00", "Z"),
        "source": view.source,
        "version": view.version,
        **ev.to_dict(),
        "base": None if flag else (base if found else None),
        "percentage": percentage,
        "layer": layer,
    }
    if out is Output.json:
        context.write(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    lines = [f"{key} = {_text(ev.value)}"]
    how = str(ev.reason)
    if ev.rollout is not None:
        how += f" (rollout {ev.rollout}" + (f", rule {ev.rule}" if ev.rule else "") + ")"
    lines.append(f"  reason   {how}")
    if ev.bucket is not None:
        share = service.share_of(percentage)
        inside = "in" if ev.variant == "on" else "out"
        lines.append(f"  bucket   {ev.bucket} of 10000 ({inside}: the rollout serves buckets under {percentage}, {share})")
    if layer is not None:
        where = f"{layer['file']}:{layer['line']}" if layer["line"] is not None else layer["file"]
        lines.append(f"  layer    {layer['layer']}  {where}")
    if not flag and served_by_rollout:
        lines.append(f"  base     {_text(payload['base'])}")
    lines.append(f"  from     {_where(view)}")
    context.write("\n".join(lines))


# --------------------------------------------------------------------------- simulate


def read_sample(path: Path) -> list[dict[str, object]]:
    """Contexts from JSON lines (one object a line) or CSV (a header row of attribute names).

    CSV cells are text, with canonical integers, numbers and true/false read as such;
    an empty cell is a missing attribute.
    """
    from configctl.errors import UsageError

    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    stripped = text.lstrip()
    out: list[dict[str, object]] = []
    if path.suffix.lower() == ".csv" or (stripped and not stripped.startswith("{")):
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise UsageError(f"{path}: a CSV sample needs a header row of attribute names")
        for row in reader:
            out.append({k: _coerce(v) for k, v in row.items() if k and v not in (None, "")})
        return out
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: not JSON: {exc.msg}") from None
        if not isinstance(item, dict):
            raise UsageError(f"{path}:{number}: a context is a JSON object")
        out.append(item)
    return out


@app.command(
    epilog=(
        "Examples:\n\n"
        "  configctl rollout simulate checkout production database.timeout --sample users.jsonl\n\n"
        "  configctl rollout simulate checkout production new-checkout --sample users.csv -o json"
    )
)
@context.boundary
def simulate(
    app_name: AppArg,
    env: EnvArg,
    key: Annotated[str, typer.Argument(metavar="KEY", help="A dotted key, or a flag name.")],
    *,
    sample: Annotated[Path, typer.Option("--sample", help="Contexts: JSON lines, or CSV with a header row.")],
    instance: InstanceOption = None,
    at: AtOption = None,
    repo: context.RepoOption = None,
    db: sources.DbOption = None,
    source: Annotated[
        Source, typer.Option("--source", help="tree (the working tree, default), store (in service) or auto.")
    ] = Source.tree,
    out: OutputOption = Output.text,
) -> None:
    """The share of a sample of contexts that would get each value of KEY."""
    from configctl.core import resolve as resolve_mod
    from configctl.errors import UserError

    contexts = read_sample(sample)
    now = _now(at)
    view, _ = _load(context.repo_path(repo), db, app_name, env, source)
    rs = view.rollouts
    flag = key in rs.flags and key not in rs.keys
    found, base = resolve_mod.lookup(dict(view.values), key)
    if not flag and not found and key not in rs.keys:
        raise UserError(f"`{key}` is not set for {app_name} in {env} and no rollout or flag has that name")
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    values: dict[str, object] = {}
    for ctx in contexts:
        if flag:
            ev = rs.evaluate_flag(key, ctx, now=now, instance_id=instance)
        else:
            ev = rs.evaluate(key, base if found else None, ctx, now=now, instance_id=instance)
        canonical = json.dumps(ev.value, sort_keys=True, ensure_ascii=False)
        values.setdefault(canonical, ev.value)
        counts[canonical] += 1
        reasons[str(ev.reason)] += 1
    total = len(contexts)
    rows: list[dict[str, Any]] = [
        {"value": values[c], "count": n, "share": round(n / total, 6) if total else 0.0}
        for c, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]
    if out is Output.json:
        context.write(
            json.dumps(
                {
                    "app": app_name,
                    "env": env,
                    "key": key,
                    "kind": "flag" if flag else "value",
                    "source": view.source,
                    "version": view.version,
                    "at": now.isoformat().replace("+00:00", "Z"),
                    "contexts": total,
                    "values": rows,
                    "reasons": dict(sorted(reasons.items())),
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    lines = [f"{key} over {total} context(s) ({_where(view)}):"]
    for r in rows:
        lines.append(f"  {r['share'] * 100:6.2f}%  {r['count']:>8}  {_text(r['value'])}")
    lines.append("  reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
    context.write("\n".join(lines))


# --------------------------------------------------------------------------- controls


def _control(action: str, app_name: str, env: str, name: str, repo: Path | None, db: str | None, out: Output) -> None:
    from configctl.services import rollouts as service

    root = context.repo_path(repo)
    store = sources.open_store(root, db)
    try:
        result = service.control(
            store=store,
            app=app_name,
            env=env,
            name=name,
            action=action,
            actor=sources.actor(),
            host=sources.host(),
            now=lambda: datetime.now(UTC),
        )
        if result.version is not None:
            # a client reading the embedded snapshot folder sees the new state at once
            sources.export_snapshots(root, db, store, [(app_name, env)])
    finally:
        store.close()
    if out is Output.json:
        context.write(json.dumps(result.to_dict(), indent=2))
        return
    if result.version is None:
        context.write(f"{app_name}/{env}: rollout {name} is already {result.status}; nothing changed")
    else:
        context.write(
            f"{app_name}/{env}: rollout {name} {result.previous_status} -> {result.status} "
            f"(version {result.version}; announced to clients)"
        )


NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The rollout or flag.")]


def _control_command(action: str, summary: str) -> None:
    """Register ``configctl rollout ACTION APP ENV NAME`` (the four controls share one body)."""

    def command(
        app_name: AppArg,
        env: EnvArg,
        name: NameArg,
        *,
        repo: context.RepoOption = None,
        db: sources.DbOption = None,
        out: OutputOption = Output.text,
    ) -> None:
        _control(action, app_name, env, name, repo, db, out)

    command.__doc__ = summary
    command.__name__ = action
    app.command(name=action, epilog=f"Example:\n\n  configctl rollout {action} checkout production faster-timeout")(
        context.boundary(command)
    )


_control_command("pause", "Freeze a rollout where it stands (its schedule stops; resume continues from there).")
_control_command("resume", "Continue a paused (or aborted) rollout; a schedule resumes where it was paused.")
_control_command("promote", "Serve the rollout's value (or turn the flag on) for everyone, now.")
_control_command("abort", "Stop serving the rollout's value (or turn the flag off) for everyone, now.")
