"""Resolution: validate and resolve one snapshot of a config tree (every pair, one pair
with provenance, the matrix), check the names a user gives, and find the secret keys.

Shared by the CLI (working tree or a git revision) and the reconciler (git objects).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from configctl.core import parse as parse_mod
from configctl.core import resolve as resolve_mod
from configctl.core import schema as schema_mod
from configctl.core import tree as tree_mod
from configctl.core import validate as validate_mod
from configctl.core.gcpause import collection_paused
from configctl.core.model import FileEntry, Finding, Report
from configctl.core.parse import Document
from configctl.errors import UsageError, ValidationFailed


@dataclass(frozen=True, slots=True, kw_only=True)
class Checked:
    tree: tree_mod.ConfigTree
    report: Report
    values: Mapping[tuple[str, str], dict[str, Any]]
    """Resolved values of every (app, env)."""
    pairs: Mapping[tuple[str, str], validate_mod.PairResult]


class Evaluator:
    """Validates and resolves snapshots, keeping caches between calls.

    Each file is parsed once per content (a git blob that did not change is not parsed
    again), each app schema compiled once per content, and each (app, env) resolved and
    validated again only when one of its layer documents or its schema changed. A
    long-running caller (the reconciler, a diff of two revisions) keeps one Evaluator.
    """

    def __init__(self, *, file_schemas: Mapping[str, Any], max_parsed: int = 100_000) -> None:
        self.file_schemas = file_schemas
        self.max_parsed = max_parsed
        self._parsed: dict[tuple[str, bytes], Document] = {}
        self._schemas: dict[str, Any] = {}
        self._pairs: dict[tuple[str, str], validate_mod.PairResult] = {}
        self._memo: tree_mod.Memo = {}

    def parse(self, path: str, data: bytes) -> Document:
        key = (path, data)
        doc = self._parsed.get(key)
        if doc is None:
            if len(self._parsed) >= self.max_parsed:
                self._parsed.clear()
                self._memo.clear()
            doc = parse_mod.parse(path, data)
            self._parsed[key] = doc
        return doc

    def check(
        self, files: Mapping[str, FileEntry], *, keep_pairs: bool = True, partial: bool = False
    ) -> Checked:
        """Validate and resolve ``files``; ``partial``: they are some apps of a snapshot
        (``core.plan.scoped``), the others unchanged: their cached pairs are kept."""
        # Every file parsed and every pair resolved is kept: see core.gcpause.
        with collection_paused():
            tree = tree_mod.build(files, parse_file=self.parse, memo=self._memo)
            pair_cache = self._pairs if keep_pairs else {}
            evaluation = validate_mod.evaluate(
                tree,
                file_schemas=self.file_schemas,
                parse_file=self.parse,
                schema_cache=self._schemas,
                pair_cache=pair_cache,
                memo=self._memo,
                partial=partial,
            )
        return Checked(
            tree=tree, report=evaluation.report, values=evaluation.values, pairs=evaluation.pairs
        )


def check(
    files: Mapping[str, FileEntry],
    *,
    file_schemas: Mapping[str, Any],
    parse_file: Callable[[str, bytes], Document] = parse_mod.parse,
) -> Checked:
    """Build the tree, validate all of it and resolve every (app, env), once."""
    tree = tree_mod.build(files, parse_file=parse_file)
    evaluation = validate_mod.evaluate(tree, file_schemas=file_schemas, parse_file=parse_file)
    return Checked(
        tree=tree, report=evaluation.report, values=evaluation.values, pairs=evaluation.pairs
    )


def _suggest(name: str, choices: list[str]) -> str | None:
    """The closest known name: a near spelling, else one the name abbreviates (`prod`)."""
    close = difflib.get_close_matches(name, choices, n=1)
    if not close and name:
        close = [c for c in choices if c.startswith(name) or name.startswith(c)][:1]
    return f"did you mean `{close[0]}`?" if close else None


def require_known(
    app: str | None, env: str | None, *, apps: Iterable[str], environments: Iterable[str]
) -> None:
    """A usage error (exit 2) for an app or environment not in ``apps``/``environments``,
    listing the known names and suggesting the closest one."""
    app_names, env_names = sorted(apps), list(environments)
    if app is not None and app not in app_names:
        raise UsageError(
            f"no app `{app}` in this repository (apps: {', '.join(app_names) or 'none'})",
            hint=_suggest(app, app_names),
        )
    if env is not None and env not in env_names:
        raise UsageError(
            f"no environment `{env}` in configctl.yaml (environments: {', '.join(env_names) or 'none'})",
            hint=_suggest(env, env_names),
        )


def require_pair(tree: tree_mod.ConfigTree, app: str, env: str) -> None:
    require_known(app, env, apps=tree.apps, environments=tree.environments)


def _refuse_unreadable(found: tuple[Finding, ...], what: str) -> None:
    if found:
        files = sorted({f.file for f in found})
        raise ValidationFailed(
            f"cannot resolve {what}: {len(files)} file(s) it needs cannot be read ({', '.join(files)})",
            report=Report.of(found),
            hint="fix the file(s) above; without them the lower layers' values would be shown instead",
        )


def require_readable(tree: tree_mod.ConfigTree, app: str, env: str) -> None:
    """Refuse (app, env) when a layer it needs could not be read.

    A layer that failed to parse contributes nothing, so resolving without it would show
    (and serve) the values of the lower layers as if they were meant: a broken
    ``apps/<app>/envs/production.yaml`` would silently give production the defaults.
    """
    _refuse_unreadable(tree.unreadable_for(app, env), f"{app} in {env}")


def require_tree_readable(tree: tree_mod.ConfigTree) -> None:
    """Refuse a whole-tree resolution (`ls`) when any layer of any pair could not be read."""
    _refuse_unreadable(tree.unreadable_layers(), "the tree")


def resolve_pair(tree: tree_mod.ConfigTree, app: str, env: str) -> resolve_mod.Resolution:
    """Resolve one pair with provenance: a known app and environment, every layer readable."""
    if tree_mod.REPO_FILE in tree.unreadable:
        require_readable(tree, app, env)  # its environments are unknown: say why first
    require_pair(tree, app, env)
    require_readable(tree, app, env)
    return resolve_mod.resolve(tree.layers(app, env))


def matrix(checked: Checked) -> list[dict[str, Any]]:
    """One row per (app, env): the number of resolved keys."""
    return [
        {"app": app, "env": env, "keys": resolve_mod.count_keys(values)}
        for (app, env), values in sorted(checked.values.items())
    ]


_SECRET_MARKS = (b"x-secret", b"writeOnly")


def _may_mark_secrets(data: bytes) -> bool:
    """Whether a schema file can mark anything secret: only a key spelled ``x-secret`` or
    ``writeOnly`` does, and without a backslash (an escape) it can only be spelled so
    (most schemas mark nothing: then no read or walk is needed to know it)."""
    return b"\\" in data or any(mark in data for mark in _SECRET_MARKS)


def secret_keys(
    tree: tree_mod.ConfigTree, apps: Iterable[str] | None = None
) -> dict[str, set[str]]:
    """Dotted keys each app's schema marks secret (``x-secret`` / ``writeOnly``).

    ``apps`` limits the work to those apps (`apply` needs the secrets of the pairs that
    changed only: reading every schema of a large tree would cost more than the change).
    """
    out: dict[str, set[str]] = {}
    names = tree.apps.keys() if apps is None else [a for a in apps if a in tree.apps]
    for name in names:
        a = tree.apps[name]
        if a.schema_path is None or a.schema_path not in tree.files:
            continue
        data = tree.files[a.schema_path].data
        if a.schema_path in tree.schemas_read and not _may_mark_secrets(data):
            out[name] = set()  # a schema validation could read, marking nothing
            continue
        schema = validate_mod.load_schema_value(a.schema_path, data)
        if schema is not None:
            # A mark often sits in `$defs` behind a `$ref` (configs-example's checkout does
            # this for database.password); secret_paths walks `properties` only.
            if b"$ref" in data:
                schema = schema_mod.inline_local_refs(schema)
            out[name] = {".".join(map(str, p)) for p in schema_mod.secret_paths(schema)}
    return out


def app_secret_keys(files: Mapping[str, FileEntry], app: str) -> set[str] | None:
    """The secret keys of one app, reading only what that needs; None if it has no such app.

    For commands that act on one (app, env) of the store and must redact what they record
    (`rollback`): the app's folder, ``configctl.yaml`` and the files outside ``apps/`` and
    the values layers (a schema may live in a shared folder).
    """
    prefix = f"apps/{app}/"
    wanted = {
        path: entry
        for path, entry in files.items()
        if path.startswith(prefix)
        or not (path.startswith(("apps/", "environments/")) or path == tree_mod.GLOBAL_FILE)
    }
    tree = tree_mod.build(wanted)
    if app not in tree.apps:
        return None
    return secret_keys(tree).get(app, set())


def resolved_values(
    files: Mapping[str, FileEntry], pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The resolved values of some (app, env) pairs of a snapshot, without validating it.

    A pair whose app or environment the snapshot does not have resolves to ``{}`` (nothing
    would be served). Used by `status` to show how a pinned pair drifts from git.
    """
    tree = tree_mod.build(files)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for app, env in pairs:
        if app not in tree.apps or env not in tree.environments:
            out[(app, env)] = {}
            continue
        out[(app, env)] = resolve_mod.merge(tuple(doc for _, doc in tree.layers(app, env)))
    return out


def strip_prefix(files: Mapping[str, FileEntry], prefix: str) -> dict[str, FileEntry]:
    """A snapshot read from a repository whose config folder is ``prefix`` (a monorepo's
    ``config/``; '' at the top), with paths relative to that folder."""
    if not prefix:
        return dict(files)
    p = prefix.rstrip("/") + "/"
    return {path[len(p) :]: entry for path, entry in files.items() if path.startswith(p)}
