"""`diff` as a use case: the resolved difference between two snapshots of a tree.

Needs nothing but two snapshots (from git objects or the working tree): no database, no
cluster credentials, so it runs in a pull request's CI job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from configctl.core import diff as diff_mod
from configctl.core import rollout_spec
from configctl.core.model import FileEntry, Finding, Report
from configctl.services.resolution import Checked, Evaluator, secret_keys


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffResult:
    diff: diff_mod.TreeDiff
    base_report: Report
    head_report: Report
    rollouts_touched: tuple[str, ...]
    """Apps whose rollouts.yaml changed."""
    rollout_changes: tuple[dict[str, str | None], ...] = ()
    """Per (app, env) and rollout: ``{app, env, rollout, kind, key, change}`` with change
    added, changed or removed (definitions only; runtime state lives in the store)."""
    unreadable_base: tuple[Finding, ...] = ()
    """Why layer files of the base tree could not be read (syntax, encoding, size)."""
    unreadable_head: tuple[Finding, ...] = ()
    unreadable_pairs: tuple[tuple[str, str], ...] = ()
    """Pairs left out of ``diff``: a layer they need is unreadable on one side, so any key
    change computed for them would be an artefact of the missing layer."""

    @property
    def complete(self) -> bool:
        return not (self.unreadable_base or self.unreadable_head)


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
    skipped = {
        pair
        for pair in before.values.keys() | after.values.keys()
        if before.tree.unreadable_for(*pair) or after.tree.unreadable_for(*pair)
    }
    tree_diff = diff_mod.diff_trees(
        {p: v for p, v in before.values.items() if p not in skipped},
        {p: v for p, v in after.values.items() if p not in skipped},
        secrets=secrets,
        changed_files=files,
    )
    rollouts = tuple(
        sorted({p.split("/")[1] for p in files if p.startswith("apps/") and p.endswith("/rollouts.yaml")})
    )
    return DiffResult(
        diff=tree_diff,
        base_report=before.report,
        head_report=after.report,
        rollouts_touched=rollouts,
        rollout_changes=rollout_changes(before, after, rollouts),
        unreadable_base=before.tree.unreadable_layers(),
        unreadable_head=after.tree.unreadable_layers(),
        unreadable_pairs=tuple(sorted(skipped)),
    )


def rollout_changes(before: Checked, after: Checked, apps: tuple[str, ...]) -> tuple[dict[str, str | None], ...]:
    """The rollouts added, changed or removed in each environment of ``apps``."""
    out: list[dict[str, str | None]] = []
    for app in apps:
        sides = []
        for checked in (before, after):
            a = checked.tree.apps.get(app)
            sides.append(rollout_spec.read(a.rollouts if a is not None else None))
        envs = sorted(set(before.tree.environments) | set(after.tree.environments))
        for env in envs:
            old = {str(e["name"]): e for e in rollout_spec.for_env(sides[0], env)} if env in before.tree.environments else {}
            new = {str(e["name"]): e for e in rollout_spec.for_env(sides[1], env)} if env in after.tree.environments else {}
            for name in sorted(old.keys() | new.keys()):
                a_entry, b_entry = old.get(name), new.get(name)
                if a_entry == b_entry:
                    continue
                change = "added" if a_entry is None else "removed" if b_entry is None else "changed"
                entry = b_entry or a_entry or {}
                key = entry.get("key")
                out.append(
                    {"app": app, "env": env, "rollout": name, "kind": str(entry.get("kind")), "key": key if isinstance(key, str) else None, "change": change}
                )
    return tuple(out)


def _secrets(checked: Checked) -> dict[str, set[str]]:
    return secret_keys(checked.tree)
