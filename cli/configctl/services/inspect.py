"""Read-only use cases over one snapshot of a tree: validate, resolve one pair, the matrix.

Shared by the CLI (working tree or a git revision) and the reconciler (git objects).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from configctl.core import parse as parse_mod
from configctl.core import resolve as resolve_mod
from configctl.core import tree as tree_mod
from configctl.core import validate as validate_mod
from configctl.core.model import FileEntry, Report
from configctl.core.parse import Document
from configctl.errors import UsageError


@dataclass(frozen=True, slots=True, kw_only=True)
class Checked:
    tree: tree_mod.ConfigTree
    report: Report


def check(
    files: Mapping[str, FileEntry],
    *,
    file_schemas: Mapping[str, Any],
    parse_file: Callable[[str, bytes], Document] = parse_mod.parse,
    schema_cache: dict[str, Any] | None = None,
) -> Checked:
    """Build the tree and validate all of it."""
    tree = tree_mod.build(files, parse_file=parse_file)
    report = validate_mod.validate_tree(
        tree, file_schemas=file_schemas, parse_file=parse_file, schema_cache=schema_cache
    )
    return Checked(tree=tree, report=report)


def _suggest(name: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(name, choices, n=1)
    return f"did you mean `{close[0]}`?" if close else None


def require_pair(tree: tree_mod.ConfigTree, app: str, env: str) -> None:
    if app not in tree.apps:
        raise UsageError(
            f"no app `{app}` in this repository (apps: {', '.join(sorted(tree.apps)) or 'none'})",
            hint=_suggest(app, sorted(tree.apps)),
        )
    if env not in tree.environments:
        raise UsageError(
            f"no environment `{env}` in configctl.yaml (environments: {', '.join(tree.environments) or 'none'})",
            hint=_suggest(env, list(tree.environments)),
        )


def resolve_pair(tree: tree_mod.ConfigTree, app: str, env: str) -> resolve_mod.Resolution:
    require_pair(tree, app, env)
    return resolve_mod.resolve(tree.layers(app, env))


def resolve_all(tree: tree_mod.ConfigTree) -> dict[tuple[str, str], dict[str, Any]]:
    """Resolved values of every (app, env), without provenance (the fast path)."""
    return {
        (app, env): resolve_mod.merge([doc for _, doc in tree.layers(app, env)])
        for app in sorted(tree.apps)
        for env in tree.environments
    }


def matrix(tree: tree_mod.ConfigTree) -> list[dict[str, Any]]:
    """One row per app: the number of resolved keys in each environment."""
    rows = []
    for (app, env), values in resolve_all(tree).items():
        rows.append({"app": app, "env": env, "keys": resolve_mod.count_keys(values)})
    return rows


def secret_paths(tree: tree_mod.ConfigTree, app: str) -> set[tuple[str | int, ...]]:
    """Paths the app's schema marks secret; empty without a (valid) schema."""
    a = tree.apps.get(app)
    if a is None or a.schema_path is None or a.schema_path not in tree.files:
        return set()
    compiled, _ = validate_mod.compile_schema(a.schema_path, tree.files[a.schema_path].data)
    if compiled is None:
        return set()
    return validate_mod.secret_paths(compiled.schema)
