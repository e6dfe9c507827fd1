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

    def parse(self, path: str, data: bytes) -> Document:
        key = (path, data)
        doc = self._parsed.get(key)
        if doc is None:
            if len(self._parsed) >= self.max_parsed:
                self._parsed.clear()
            doc = parse_mod.parse(path, data)
            self._parsed[key] = doc
        return doc

    def check(self, files: Mapping[str, FileEntry], *, keep_pairs: bool = True) -> Checked:
        tree = tree_mod.build(files, parse_file=self.parse)
        pair_cache = self._pairs if keep_pairs else {}
        evaluation = validate_mod.evaluate(
            tree,
            file_schemas=self.file_schemas,
            parse_file=self.parse,
            schema_cache=self._schemas,
            pair_cache=pair_cache,
        )
        return Checked(tree=tree, report=evaluation.report, values=evaluation.values, pairs=evaluation.pairs)


def check(
    files: Mapping[str, FileEntry],
    *,
    file_schemas: Mapping[str, Any],
    parse_file: Callable[[str, bytes], Document] = parse_mod.parse,
) -> Checked:
    """Build the tree, validate all of it and resolve every (app, env), once."""
    tree = tree_mod.build(files, parse_file=parse_file)
    evaluation = validate_mod.evaluate(tree, file_schemas=file_schemas, parse_file=parse_file)
    return Checked(tree=tree, report=evaluation.report, values=evaluation.values, pairs=evaluation.pairs)


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


def matrix(checked: Checked) -> list[dict[str, Any]]:
    """One row per (app, env): the number of resolved keys."""
    return [
        {"app": app, "env": env, "keys": resolve_mod.count_keys(values)}
        for (app, env), values in sorted(checked.values.items())
    ]


def secret_keys(tree: tree_mod.ConfigTree) -> dict[str, set[str]]:
    """Dotted keys each app's schema marks secret (``x-secret`` / ``writeOnly``)."""
    out: dict[str, set[str]] = {}
    for name, a in tree.apps.items():
        if a.schema_path is None or a.schema_path not in tree.files:
            continue
        schema = validate_mod.load_schema_value(a.schema_path, tree.files[a.schema_path].data)
        if schema is not None:
            out[name] = {".".join(map(str, p)) for p in validate_mod.secret_paths(schema)}
    return out
