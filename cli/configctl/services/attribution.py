"""Which commit changed an (app, env): the commit a version records.

One `apply` may cover several commits (the store was at C1, HEAD is C4). Each new version
records the commit that last changed *its* pair, so `history`, quarantine and
`rollback --revert` name the commit that made the values, not whatever HEAD was.

The rule (chosen over "the last commit that touched a file feeding the pair", and
documented in the README): **the newest commit on HEAD's first-parent line whose resolved
values of the pair differ from its first parent's.** A commit that only reformats a file,
edits a comment, or changes a layer the pair overrides does not change the pair and is
never blamed. The walk:

1. one `git log --name-only` lists the newest config commits with the files they changed;
2. for each pair, newest first, only the commits changing a file that feeds it are looked
   at (``configctl.yaml``, ``global.yaml``, ``environments/<env>.yaml``, ``apps/<app>/``
   except other environments' files);
3. such a commit is the one if the pair resolves differently in its first parent's tree.
   Since no commit in between touched the pair's files, the pair's values *at* each
   candidate are those of HEAD, so one tree read per candidate is enough.

Cost is bounded: a fast path needs no git at all when HEAD's parent is the last applied
commit and the version in service came from a commit (the pair was in sync with the
parent, so HEAD changed it); otherwise at most :data:`MAX_TREES` trees are read, scoped to
one app, after which the file rule answers. With no answer (the pair's values come from
what the store served, e.g. a commit beside the last applied one) the applied commit is
recorded, as before.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from configctl.core import resolve as resolve_mod
from configctl.core import tree as tree_mod
from configctl.core.model import FileEntry
from configctl.core.ports import ChangeLog
from configctl.core.records import CommitInfo, checksum, snapshot_checksum
from configctl.errors import ConfigctlError
from configctl.services import rollouts as rollouts_service

RolloutStates = Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]]
"""Runtime state of rollouts per pair, as the store keeps it (see services.rollouts)."""

MAX_TREES = 24
"""Trees read per apply to tell a real change from a file touch; beyond, the file rule."""

LOG_LIMIT = 200
"""Config commits looked back from HEAD; a pair unchanged in all of them gets HEAD."""


def feeds(path: str, app: str, env: str) -> bool:
    """Whether a change to ``path`` can change the resolved values of (app, env)."""
    if path in (tree_mod.REPO_FILE, tree_mod.GLOBAL_FILE, f"environments/{env}.yaml"):
        return True
    prefix = f"apps/{app}/"
    if not path.startswith(prefix):
        return False
    rest = path[len(prefix) :]
    return not rest.startswith("envs/") or rest == f"envs/{env}.yaml"


@dataclass(frozen=True, slots=True)
class _Touched:
    """The pairs one commit's changed paths can reach, answerable in O(1) per pair."""

    everything: bool
    envs: frozenset[str]
    apps: Mapping[str, frozenset[str] | None]
    """app -> the environments whose app file changed; None: every environment."""

    @classmethod
    def of(cls, paths: Collection[str]) -> _Touched:
        everything = False
        envs: set[str] = set()
        apps: dict[str, set[str] | None] = {}
        for path in paths:
            if path in (tree_mod.REPO_FILE, tree_mod.GLOBAL_FILE):
                everything = True
            elif path.startswith("environments/") and path.endswith(".yaml"):
                envs.add(path[len("environments/") : -len(".yaml")])
            elif path.startswith("apps/") and path.count("/") >= 2:
                _, app, rest = path.split("/", 2)
                if rest.startswith("envs/"):
                    current = apps.setdefault(app, set())
                    if current is not None and rest.endswith(".yaml") and rest.count("/") == 1:
                        current.add(rest[len("envs/") : -len(".yaml")])
                else:
                    apps[app] = None
        return cls(
            everything=everything,
            envs=frozenset(envs),
            apps={a: (frozenset(e) if e is not None else None) for a, e in apps.items()},
        )

    def reaches(self, app: str, env: str) -> bool:
        if self.everything or env in self.envs:
            return True
        if app not in self.apps:
            return False
        only = self.apps[app]
        return only is None or env in only


def pair_paths(app: str, env: str) -> tuple[str, ...]:
    """The files whose content resolves (app, env): what `rollback --revert` may touch."""
    return (tree_mod.GLOBAL_FILE, f"environments/{env}.yaml", f"apps/{app}/values.yaml", f"apps/{app}/envs/{env}.yaml")


class _Trees:
    """Resolved pair values per (commit, app), reading at most ``budget`` trees."""

    def __init__(self, log: ChangeLog, budget: int, states: RolloutStates) -> None:
        self._log = log
        self._budget = budget
        self._states = states
        self._files: dict[str, Mapping[str, FileEntry] | None] = {}
        self._built: dict[tuple[str, str], tree_mod.ConfigTree] = {}

    def checksum(self, sha: str | None, app: str, env: str) -> str | None:
        """The pair's checksum at ``sha`` ({} when absent); None when over budget or unreadable."""
        if sha is None:
            return checksum({})
        if (sha, app) not in self._built:
            if sha not in self._files:
                if self._budget <= 0:
                    return None
                self._budget -= 1
                try:
                    self._files[sha] = self._log.tree(sha)
                except ConfigctlError:
                    self._files[sha] = None
            files = self._files[sha]
            if files is None:
                return None
            scoped = {p: e for p, e in files.items() if not p.startswith("apps/") or p.startswith(f"apps/{app}/")}
            self._built[(sha, app)] = tree_mod.build(scoped)
        tree = self._built[(sha, app)]
        if app not in tree.apps or env not in tree.environments:
            return checksum({})
        values: Any = resolve_mod.merge(tuple(doc for _, doc in tree.layers(app, env)))
        # the same checksum as a version's: values, and the pair's rollouts (with the
        # runtime state in service folded in, as at head) when it has any
        rollouts = rollouts_service.pair_rollouts(tree, [(app, env)], self._states).get((app, env), ())
        return snapshot_checksum(values, rollouts)


def attribute(
    log: ChangeLog | None,
    *,
    head: CommitInfo,
    pairs: Mapping[tuple[str, str], str],
    in_sync_with_parent: Collection[tuple[str, str]] = (),
    max_trees: int = MAX_TREES,
    rollout_states: RolloutStates | None = None,
) -> dict[tuple[str, str], CommitInfo]:
    """The commit to record for each of ``pairs`` (pair -> its checksum at ``head``; they
    resolve differently at ``head`` than what is served); see the module docstring.

    ``in_sync_with_parent``: pairs known to serve the values of ``head``'s first parent
    (the last applied commit, version from a commit): ``head`` itself changed them.
    """
    out = dict.fromkeys(pairs, head)
    todo = [p for p in sorted(pairs) if p not in set(in_sync_with_parent)]
    if log is None or not todo:
        return out
    try:
        commits = log.changes(head.sha)
    except ConfigctlError:
        return out
    trees = _Trees(log, max_trees, rollout_states or {})
    infos: dict[str, CommitInfo] = {head.sha: head}
    touched = [(sha, parent, _Touched.of(paths)) for sha, parent, paths in commits]
    for app, env in todo:
        found: str | None = None
        for sha, parent, reach in touched:
            if not reach.reaches(app, env):
                continue
            # The pair's values at this commit are HEAD's: no newer commit touched its files.
            before = trees.checksum(parent, app, env)
            if before is None or before != pairs[(app, env)]:
                found = sha  # a real change, or (over budget) the file rule
                break
        if found is not None and found != head.sha:
            try:
                infos.setdefault(found, log.commit_info(found))
            except ConfigctlError:
                continue
        if found is not None:
            out[(app, env)] = infos[found]
    return out
