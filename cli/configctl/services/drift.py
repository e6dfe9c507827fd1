"""Drift: every (app, env) whose served values differ from what git HEAD resolves to.

`status` and `diff --served` never hide a difference, whatever its cause. Each drifting
pair gets one reason, the first that holds:

``pinned``        a rollback holds the pair (until `configctl release`);
``quarantined``   released, but HEAD still has the values of the rolled-back commit;
``rejected``      HEAD was rejected (invalid, or not signed as required): the last good
                  values stay in service;
``force-push``    the store's last applied commit is no longer in HEAD's history;
``pending``       HEAD (or a commit before it) is not applied yet;
``out-of-sync``   none of the above: the store serves something git does not say (e.g.
                  a commit applied from another branch).

Only key *names* leave this module through :class:`Drift`; values go through
:func:`served_diff`, which redacts secrets.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from configctl.core import diff as diff_mod
from configctl.core import resolve as resolve_mod
from configctl.core import tree as tree_mod
from configctl.core.model import FileEntry
from configctl.core.records import VersionHead, checksum

REASONS = ("pinned", "quarantined", "rejected", "force-push", "pending", "out-of-sync")


@dataclass(frozen=True, slots=True, kw_only=True)
class Drift:
    app: str
    env: str
    reason: str
    served_version: int | None
    """None when nothing is served yet (a pair new in git)."""
    keys: tuple[str, ...]
    """Dotted keys whose served value differs from HEAD's (names only)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "env": self.env,
            "reason": self.reason,
            "served_version": self.served_version,
            "keys": list(self.keys),
        }


def resolve_all(files: Mapping[str, FileEntry]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every (app, env) of a snapshot, resolved without validating (what git says)."""
    tree = tree_mod.build(files)
    return {
        (app, env): resolve_mod.merge(tuple(doc for _, doc in tree.layers(app, env)))
        for app in tree.apps
        for env in tree.environments
    }


def find_drift(
    *,
    served: Mapping[tuple[str, str], VersionHead],
    in_git: Mapping[tuple[str, str], Mapping[str, Any]],
    load_served: Any,
    pinned: Collection[tuple[str, str]],
    quarantined: Collection[tuple[str, str]],
    head_reason: str | None,
) -> list[Drift]:
    """The pairs whose served checksum differs from HEAD's, with reason and key names.

    ``load_served(app, env)`` returns the served snapshot (read only for drifting pairs);
    ``head_reason`` is why HEAD as a whole is not served (``rejected``, ``force-push``,
    ``pending``), None if HEAD is the last applied commit.
    """
    empty = checksum({})
    out: list[Drift] = []
    for pair in sorted(served.keys() | in_git.keys()):
        head = served.get(pair)
        values = in_git.get(pair)
        want = checksum(values) if values is not None else empty
        have = head.checksum if head is not None else None
        if have == want or (head is None and values is None):
            continue
        if head is None and not values:
            continue  # nothing served, nothing to serve
        old = load_served(*pair) if head is not None else None
        keys = tuple(k.key for k in diff_mod.diff_values(old, values))
        if head is not None and not keys:
            continue  # same values, only the checksum's canonical form differed
        if pair in pinned:
            reason = "pinned"
        elif pair in quarantined:
            reason = "quarantined"
        else:
            reason = head_reason or "out-of-sync"
        out.append(
            Drift(app=pair[0], env=pair[1], reason=reason, served_version=head.number if head else None, keys=keys)
        )
    return out


def served_diff(
    *,
    app: str,
    env: str,
    served: Mapping[str, Any] | None,
    in_git: Mapping[str, Any] | None,
    secrets: Iterable[str] | None,
) -> diff_mod.TreeDiff:
    """Served values (old) against git's (new) for one pair, as a one-pair tree diff.

    ``secrets`` None (the app's schema is not at hand) redacts every value.
    """
    hidden: Iterable[str]
    if secrets is None:
        hidden = set(resolve_mod.flatten(served or {})) | set(resolve_mod.flatten(in_git or {}))
    else:
        hidden = secrets
    old = {(app, env): dict(served)} if served is not None else {}
    new = {(app, env): dict(in_git)} if in_git is not None else {}
    return diff_mod.diff_trees(old, new, secrets={app: hidden})
