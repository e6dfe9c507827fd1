"""The reconciler's incremental tree reader gives exactly what GitSource.read_tree gives.

Real git repositories; every kind of change a diff can carry (add, modify, delete, type
change, symlink, dot folder, non-config file, a blob over the size bound, a folder
replaced by a file), read commit by commit, out of order and after a rewrite.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.integration.reconciler_harness import git

from configctl.adapters.git import GitSource
from configctl.adapters.git.trees import TreeReader
from configctl.core.parse import MAX_FILE_BYTES
from configctl.core.plan import differing_paths

pytestmark = pytest.mark.integration


def commit(work: Path, message: str, files: dict[str, str | bytes | None], *, symlinks: dict[str, str] | None = None) -> str:
    for rel, content in files.items():
        path = work / rel
        if content is None:
            if path.is_dir():
                import shutil

                shutil.rmtree(path)
            else:
                path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            import shutil

            shutil.rmtree(path)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    for rel, target in (symlinks or {}).items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        os.symlink(target, path)
    git("add", "-A", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def test_incremental_reads_equal_full_reads(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    shas = [
        commit(work, "initial", {
            "configctl.yaml": "version: 1\nenvironments: [dev]\n",
            "global.yaml": "a: 1\n",
            "apps/x/app.yaml": "description: x\n",
            "apps/x/values.yaml": "k: 1\n",
            "apps/x/schema.json": "{}",
            "apps/x/README.md": "not config\n",
            ".github/workflows/ci.yaml": "on: push\n",
            "apps/.hidden/values.yaml": "hidden: true\n",
        }),
        commit(work, "modify + add", {"apps/x/values.yaml": "k: 2\n", "apps/y/values.yml": "k: 3\n"}),
        commit(work, "symlink + delete", {"global.yaml": None}, symlinks={"apps/y/envs/dev.yaml": "../values.yml"}),
        commit(work, "too big", {"apps/y/big.yaml": b"k: " + b"x" * (MAX_FILE_BYTES + 10) + b"\n"}),
        commit(work, "symlink becomes a file", {"apps/y/envs/dev.yaml": "k: 4\n"}),
        commit(work, "folder becomes a file", {"apps/y/envs": None, "apps/y/envs.yaml": "k: 5\n"}),
        commit(work, "same content elsewhere", {"apps/z/values.yaml": "k: 2\n", "apps/x/values.yaml": None}),
        commit(work, "empty commit", {}),
        commit(work, "hidden again", {".configctl/x.yaml": "a: 1\n", "apps/z/.dot/y.yaml": "b: 2\n"}),
    ]
    source = GitSource(work)
    reader = TreeReader(GitSource(work))
    order = shas + list(reversed(shas)) + [shas[0], shas[5], shas[2], shas[8]]
    previous: str | None = None
    for sha in order:
        assert reader.read_with_ids(sha) == source.read_tree_with_ids(sha), sha
        if previous is not None and previous != sha:
            # what the read changed covers every path that differs (apply compares only those)
            paths = reader.changed_paths(previous, sha)
            assert paths is not None, sha
            truth = differing_paths(source.read_tree(previous), source.read_tree(sha))
            assert set(truth) <= set(paths), sha
            assert reader.changed_paths(sha, previous) is None
        previous = sha
    assert reader.full_reads == 1
    assert TreeReader(GitSource(work)).changed_paths(shas[0], shas[1]) is None  # nothing read yet
    assert reader.cat_file_calls == 0  # every new blob was loose: read without git
    assert reader.read(shas[3])["apps/y/big.yaml"].data == b""
    assert reader.read(shas[3])["apps/y/big.yaml"].size > MAX_FILE_BYTES

    # a rewritten history: the old commits are gone from the branch but diff-tree still
    # compares any two trees; an unknown commit falls back to a full read (and fails there)
    git("reset", "-q", "--hard", shas[1], cwd=work)
    rewritten = commit(work, "rewritten", {"apps/x/values.yaml": "k: 9\n"})
    assert reader.read_with_ids(rewritten) == source.read_tree_with_ids(rewritten)
    from configctl.errors import ConfigctlError

    with pytest.raises(ConfigctlError):
        reader.read("0" * 40)
    assert reader.read_with_ids(shas[4]) == source.read_tree_with_ids(shas[4])


def test_loose_and_packed_objects_read_alike(tmp_path: Path) -> None:
    """New blobs come from loose object files when they are loose, from git when packed."""
    work = tmp_path / "repo"
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    shas = [commit(work, "c0", {"configctl.yaml": "version: 1\n", "apps/a/values.yaml": "k: 0\n"})]
    git("repack", "-q", "-a", "-d", cwd=work)
    git("prune-packed", cwd=work)
    source = GitSource(work)
    reader = TreeReader(GitSource(work))
    assert reader.read_with_ids(shas[0]) == source.read_tree_with_ids(shas[0])
    for i in range(1, 4):
        shas.append(commit(work, f"c{i}", {"apps/a/values.yaml": f"k: {i}\n", f"apps/b{i}/values.yaml": f"n: {i}\n"}))
        if i == 2:  # these new objects are packed before the reader sees them
            git("repack", "-q", "-a", "-d", cwd=work)
            git("prune-packed", cwd=work)
        if i == 3:  # a damaged loose object is not taken for the blob: git reads the packed one
            blob = git("rev-parse", f"{shas[-1]}:apps/a/values.yaml", cwd=work).strip()
            git("repack", "-q", "-a", "-d", cwd=work)
            loose = work / ".git" / "objects" / blob[:2] / blob[2:]
            loose.parent.mkdir(exist_ok=True)
            loose.write_bytes(b"not zlib")
        assert reader.read_with_ids(shas[-1]) == source.read_tree_with_ids(shas[-1]), i
    assert reader.full_reads == 1
    assert reader.cat_file_calls == 2  # the packed commit, the damaged loose object


def test_the_listing_tells_the_reader_what_changed(tmp_path: Path) -> None:
    """As the reconciler runs it: ``git log --raw`` lists the new commits and hands their
    diffs to the reader, so a read costs no ``diff-tree``; a merge gets no hint (older
    gits print no diff for merges) and is diffed by the reader itself."""
    from configctl.adapters.git import revisions

    work = tmp_path / "repo"
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    base = commit(work, "c0", {"configctl.yaml": "version: 1\n", "apps/a/values.yaml": "k: 0\n", "apps/b/values.yaml": "k: 0\n"})
    source = GitSource(work)
    reader = TreeReader(GitSource(work))
    reader.read(base)
    # three plain commits, then a merge of a side branch into main
    plain = [
        commit(work, "modify", {"apps/a/values.yaml": "k: 1\n"}),
        commit(work, "add + delete", {"apps/c/values.yml": "k: 2\n", "apps/b/values.yaml": None}),
        commit(work, "message with\n\nseveral lines and a : colon\n", {"apps/a/values.yaml": "k: 3\n"}),
    ]
    git("checkout", "-q", "-b", "side", cwd=work)
    commit(work, "side", {"apps/d/values.yaml": "k: 4\n"})
    git("checkout", "-q", "main", cwd=work)
    commit(work, "main moves", {"apps/a/values.yaml": "k: 5\n"})
    git("merge", "-q", "--no-ff", "-m", "merge side", "side", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work).strip()

    listed = revisions.log_range(work, base, head, on_changes=reader.hint)
    assert listed is not None
    assert [c.sha for c in listed][:3] == plain
    assert listed[2].message == "message with\n\nseveral lines and a : colon"
    assert [c.subject for c in listed] == ["modify", "add + delete", "message with", "main moves", "merge side"]
    for info in listed:
        assert reader.read_with_ids(info.sha) == source.read_tree_with_ids(info.sha), info.subject
    assert reader.diff_calls == 1  # the merge only
    assert reader.full_reads == 1
    # the same listing as GitSource's
    assert listed == source.commits_between(base, head)
