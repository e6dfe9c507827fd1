"""`diff` as a use case: the resolved difference between two snapshots of a tree.

Needs nothing but two snapshots (from git objects or the working tree): no database, no
cluster credentials, so it runs in a pull request's CI job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from configctl.core import diff as diff_mod
from configctl.core.model import FileEntry, Report
from configctl.services.inspect import Checked, Evaluator, secret_keys


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffResult:
    diff: diff_mod.TreeDiff
    base_report: Report
    head_report: Report
    rollouts_touched: tuple[str, ...]
    """Apps whose rollouts.yaml changed."""


def changed_files(base: Mapping[str, FileEntry], head: Mapping[str, FileEntry]) -> list[str]:
    return sorted(
        path
        for path in base.keys() | head.keys()
        if path not in base or path not in head or base[path].data != head[path].data
    )


def diff_snapshots(
    base: Mapping[str, FileEntry],
    head: Mapping[str, FileEntry],
    *,
    evaluator: Evaluator,
) -> DiffResult:
    before = evaluator.check(base, keep_pairs=False)
    after = evaluator.check(head, keep_pairs=False)
    # A key secret on either side stays hidden: a schema that drops a mark (or breaks)
    # must not reveal the old value.
    secrets: dict[str, set[str]] = {}
    for side in (_secrets(before), _secrets(after)):
        for app, keys in side.items():
            secrets.setdefault(app, set()).update(keys)
    files = changed_files(base, head)
    tree_diff = diff_mod.diff_trees(before.values, after.values, secrets=secrets, changed_files=files)
    rollouts = tuple(
        sorted({p.split("/")[1] for p in files if p.startswith("apps/") and p.endswith("/rollouts.yaml")})
    )
    return DiffResult(
        diff=tree_diff,
        base_report=before.report,
        head_report=after.report,
        rollouts_touched=rollouts,
    )


def _secrets(checked: Checked) -> dict[str, set[str]]:
    return secret_keys(checked.tree)
