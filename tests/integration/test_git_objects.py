"""One new commit read from its loose objects is exactly what ``git log --raw`` says.

On the webhook's path the reconciler lists the new commit and its raw diff; when the fetch
left them loose (a small fetch does), ``adapters/git/objects`` reads them without a git
process. Every kind of change is compared with git's own answer, and every case git must
handle itself (packed objects, merges, signatures, an ``encoding`` header, more than one
commit) is left to git.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.support.gitrepo import GitRepo

from configctl.adapters.git import objects, revisions
from configctl.adapters.git.revisions import Change
from configctl.core.records import CommitInfo


def _git_log(
    repo: Path, base: str, head: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[CommitInfo], list[Change]]:
    """What ``revisions.log_range`` reports with git itself (the loose path switched off)."""
    seen: list[Change] = []
    with monkeypatch.context() as m:
        m.setattr(objects, "loose_log", lambda *_a: None)
        listed = revisions.log_range(repo, base, head, on_changes=lambda _s, _p, c: seen.extend(c))
    assert listed is not None
    return listed, seen


def _loose(repo: Path, base: str, head: str) -> tuple[list[CommitInfo], list[Change]] | None:
    seen: list[Change] = []
    got = objects.loose_log(repo, base, head)
    if got is None:
        return None
    listed = revisions.log_range(repo, base, head, on_changes=lambda _s, _p, c: seen.extend(c))
    assert listed == [got[0]]
    assert sorted(seen) == sorted(got[1])
    return listed, seen


def test_each_kind_of_change_reads_as_git_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = GitRepo.init(tmp_path / "r")
    repo.write("apps/a/values.yaml", "x: 1\n")
    repo.write("apps/b/values.yaml", "y: 1\n")
    repo.write("global.yaml", "g: 1\n")
    repo.write("tool.sh", "#!/bin/sh\n")
    steps = [
        lambda: repo.write("apps/a/values.yaml", "x: 2\n"),  # modified, two trees deep
        lambda: repo.write("apps/c/envs/prod.yaml", "z: 1\n"),  # a new folder with a file
        lambda: repo.remove("apps/b"),  # a folder deleted
        lambda: os.chmod(repo.path / "tool.sh", 0o755),  # noqa: S103 - an executable script: the mode-only change under test
        lambda: (
            repo.remove("global.yaml"),
            repo.write("global.yaml/inner.yaml", "g: 2\n"),
        ),  # file -> folder
        lambda: os.symlink("apps/a/values.yaml", repo.path / "link.yaml"),  # a symlink
        lambda: (repo.remove("link.yaml"), repo.write("link.yaml", "now a file\n")),  # link -> file
        lambda: None,  # an empty commit
    ]
    messages = ["one line", "subject\n\nbody with ünïcode\n\n\n", "x", "y", "z", "w", "v", "empty"]
    previous = repo.commit("initial")
    for step, message in zip(steps, messages, strict=True):
        step()
        sha = repo.commit(message, author=("Zoë <Q> Author", "zoe@example.invalid"))
        loose = _loose(repo.path, previous, sha)
        assert loose is not None, f"commit {message!r} was not read from loose objects"
        listed, changes = _git_log(repo.path, previous, sha, monkeypatch)
        assert loose[0] == listed
        assert sorted(loose[1]) == sorted(changes)
        previous = sha


def test_what_git_must_answer_is_left_to_git(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "r")
    repo.write("a.yaml", "a: 1\n")
    first = repo.commit("first")
    repo.write("a.yaml", "a: 2\n")
    second = repo.commit("second")
    repo.write("a.yaml", "a: 3\n")
    third = repo.commit("third")
    assert objects.loose_log(repo.path, first, third) is None  # two commits: git log lists them
    assert objects.loose_log(repo.path, third, second) is None  # not its parent

    repo.git("checkout", "-q", "-b", "side", first)
    repo.write("b.yaml", "b: 1\n")
    repo.commit("side")
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-edit", "side")
    merge = repo.head()
    assert objects.loose_log(repo.path, third, merge) is None  # a merge

    signed = _write_commit(
        repo, third, header="gpgsig -----BEGIN PGP SIGNATURE-----\n \n -----END PGP SIGNATURE-----"
    )
    assert objects.loose_log(repo.path, third, signed) is None  # git checks signatures
    encoded = _write_commit(repo, third, header="encoding ISO-8859-1")
    assert objects.loose_log(repo.path, third, encoded) is None  # git converts the message

    repo.git("gc", "-q", "--prune=now")
    assert objects.loose_log(repo.path, second, third) is None  # packed
    listed = revisions.log_range(repo.path, second, third)
    assert listed is not None
    assert [c.sha for c in listed] == [third]


def _write_commit(repo: GitRepo, parent: str, *, header: str) -> str:
    tree = repo.git("rev-parse", f"{parent}^{{tree}}").strip()
    body = (
        f"tree {tree}\nparent {parent}\n"
        "author A <a@example.invalid> 1700000000 +0000\n"
        "committer A <a@example.invalid> 1700000000 +0000\n"
        f"{header}\n\nmessage\n"
    )
    path = repo.path / "commit.txt"
    path.write_text(body, encoding="utf-8")
    try:
        return repo.git("hash-object", "-t", "commit", "-w", str(path)).strip()
    finally:
        path.unlink()
