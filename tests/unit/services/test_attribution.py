"""Which commit a version records (``services.attribution``), against a fake change log."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from tests.fakes import commit_info

from configctl.core.model import FileEntry
from configctl.core.records import CommitInfo, checksum
from configctl.services.attribution import _Touched, attribute, feeds

CONFIG = b"version: 1\nenvironments: [dev, prod]\n"
APP = b"description: a\nowners: [t]\n"


def info(sha: str, parent: str | None) -> CommitInfo:
    return commit_info(sha, parents=(parent,) if parent else (), message=sha)


class FakeLog:
    """Commits c0..cN on one line, each a full tree; ``changes`` as git log would list them."""

    def __init__(self, trees: list[dict[str, bytes]]) -> None:
        self.trees = {f"c{i}": {p: FileEntry(data=d, size=len(d)) for p, d in t.items()} for i, t in enumerate(trees)}
        self.reads: list[str] = []

    def changes(self, head: str) -> list[tuple[str, str | None, frozenset[str]]]:
        out = []
        for i in range(int(head[1:]), -1, -1):
            sha, parent = f"c{i}", (f"c{i - 1}" if i else None)
            before = self.trees[parent] if parent else {}
            after = self.trees[sha]
            paths = frozenset(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
            if paths:
                out.append((sha, parent, paths))
        return out

    def tree(self, sha: str) -> Mapping[str, FileEntry]:
        self.reads.append(sha)
        return self.trees[sha]

    def commit_info(self, sha: str) -> CommitInfo:
        i = int(sha[1:])
        return info(sha, f"c{i - 1}" if i else None)


def head_digest(log: FakeLog, head: str, app: str, env: str) -> str:
    from configctl.services.drift import resolve_all

    return checksum(resolve_all(log.trees[head]).get((app, env), {}))


def test_the_newest_commit_that_changed_the_values_is_named() -> None:
    base = {"configctl.yaml": CONFIG, "apps/a/app.yaml": APP, "apps/a/values.yaml": b"x: 1\n", "apps/b/app.yaml": APP}
    log = FakeLog(
        [
            base,
            {**base, "apps/a/values.yaml": b"x: 2\n"},  # c1 changes a/*
            {**base, "apps/a/values.yaml": b"x: 2\n", "apps/b/values.yaml": b"y: 1\n"},  # c2 changes b/*
            {**base, "apps/a/values.yaml": b"x: 2  # a comment\n", "apps/b/values.yaml": b"y: 1\n"},  # c3: a comment
        ]
    )
    head = info("c3", "c2")
    pairs = {(a, e): head_digest(log, "c3", a, e) for a in ("a", "b") for e in ("dev", "prod")}
    got = attribute(log, head=head, pairs=pairs)
    assert {pair: c.sha for pair, c in got.items()} == {
        ("a", "dev"): "c1",
        ("a", "prod"): "c1",
        ("b", "dev"): "c2",
        ("b", "prod"): "c2",
    }
    # over the tree budget, the file rule answers: the comment commit touched a's file
    got = attribute(log, head=head, pairs=pairs, max_trees=0)
    assert got[("a", "dev")].sha == "c3"
    # pairs known in sync with the parent need no git at all
    log.reads.clear()
    got = attribute(log, head=head, pairs=pairs, in_sync_with_parent=list(pairs))
    assert {c.sha for c in got.values()} == {"c3"}
    assert log.reads == []
    # no change log: the applied commit, as before
    assert {c.sha for c in attribute(None, head=head, pairs=pairs).values()} == {"c3"}


@pytest.mark.parametrize(
    "path",
    [
        "configctl.yaml",
        "global.yaml",
        "environments/dev.yaml",
        "environments/prod.yaml",
        "apps/a/values.yaml",
        "apps/a/app.yaml",
        "apps/a/envs/dev.yaml",
        "apps/a/envs/prod.yaml",
        "apps/a/envs/deep/x.yaml",
        "apps/b/values.yaml",
        "apps/b/envs/dev.yaml",
        "schemas/shared.json",
    ],
)
def test_which_pairs_a_path_reaches(path: str) -> None:
    touched = _Touched.of([path])
    for app in ("a", "b"):
        for env in ("dev", "prod"):
            assert touched.reaches(app, env) == feeds(path, app, env), (path, app, env)
