"""GitSource against real git repositories built in tmp_path.

The git environment is isolated (no system or global config, a fixed identity), so the
machine's git settings (signing, hooks, templates) cannot change the results.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from datetime import UTC
from pathlib import Path

import pytest

from configctl.adapters.git import GitSource
from configctl.core.model import FileEntry
from configctl.core.parse import MAX_FILE_BYTES
from configctl.errors import GitError, RevertConflict, RevisionNotFound, UsageError

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "gitconfig"
    config.write_text("[init]\n\tdefaultBranch = main\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Ann Author")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "ann@example.invalid")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Cy Committer")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "cy@example.invalid")


def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, input=input, capture_output=True, check=True, timeout=30
    )
    return done.stdout.decode().strip()


def write(repo: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "--no-verify", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "--quiet")
    return path


@pytest.fixture
def history(repo: Path) -> list[str]:
    """Three commits on main: c1 creates files, c2 changes checkout, c3 adds search."""
    write(
        repo,
        {
            "configctl.yaml": "version: 1\nenvironments: [prod, staging]\n",
            "global.yaml": "log_level: info\n",
            "apps/checkout/app.yaml": "description: checkout\n",
            "apps/checkout/values.yaml": "replicas: 2\ndb:\n  host: h1\n",
        },
    )
    c1 = commit_all(repo, "c1: start")
    write(repo, {"apps/checkout/values.yaml": "replicas: 3\ndb:\n  host: h1\n"})
    c2 = commit_all(repo, "c2: more replicas\n\nbecause of load")
    write(repo, {"apps/search/app.yaml": "description: search\n"})
    c3 = commit_all(repo, "c3: add search")
    return [c1, c2, c3]


# --------------------------------------------------------------------------- trees


def test_read_tree_equals_the_committed_files(repo: Path) -> None:
    big = b"k: " + b"x" * (MAX_FILE_BYTES + 10) + b"\n"
    files: dict[str, str | bytes] = {
        "configctl.yaml": "version: 1\n",
        "global.yaml": "a: 1\n",
        "apps/checkout/app.yaml": "description: é\n",
        "apps/checkout/values.yml": "b: 2\n",
        "apps/checkout/schema.json": '{"type": "object"}\n',
        "apps/checkout/big.yaml": big,
        "README.md": "# not config\n",
        ".github/workflows/ci.yml": "on: push\n",  # hidden folder: skipped like the filesystem
        ".pre-commit-config.yaml": "repos: []\n",  # a hidden *file* at the top is kept
    }
    write(repo, files)
    (repo / "apps/checkout/envs").mkdir(parents=True)
    os.symlink("../../../../etc/hostname", repo / "apps/checkout/envs/prod.yaml")
    sha = commit_all(repo, "files")

    tree = GitSource(repo).read_tree(sha)
    expected = {
        path: FileEntry(data=data.encode() if isinstance(data, str) else data, size=len(data))
        for path, data in files.items()
        if path.endswith((".yaml", ".yml", ".json"))
        and not path.startswith(".github/")
        and path != "apps/checkout/big.yaml"
    }
    expected["apps/checkout/values.yml"] = FileEntry(data=b"b: 2\n", size=5)
    expected["apps/checkout/app.yaml"] = FileEntry(
        data="description: é\n".encode(), size=len("description: é\n".encode())
    )
    expected["apps/checkout/big.yaml"] = FileEntry(size=len(big))  # reported, not read
    expected["apps/checkout/envs/prod.yaml"] = FileEntry(symlink=True)
    assert tree == expected


def test_read_tree_ignores_the_work_tree_and_index(repo: Path, history: list[str]) -> None:
    source = GitSource(repo)
    committed = source.read_tree("HEAD")
    write(repo, {"global.yaml": "log_level: debug\n", "apps/new/app.yaml": "x: 1\n"})
    git(repo, "add", "apps/new/app.yaml")
    (repo / "configctl.yaml").unlink()
    assert source.read_tree("HEAD") == committed
    assert committed["global.yaml"].data == b"log_level: info\n"
    old = source.read_tree(history[0])
    assert old["apps/checkout/values.yaml"].data == b"replicas: 2\ndb:\n  host: h1\n"
    assert "apps/search/app.yaml" not in old


def test_blob_ids_and_cache_follow_the_change(
    repo: Path, history: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = GitSource(repo)
    fetched: list[list[str]] = []
    real = source._cat_blobs

    def spy(shas: list[str]) -> dict[str, bytes]:
        fetched.append(list(shas))
        return real(shas)

    monkeypatch.setattr(source, "_cat_blobs", spy)
    first = source.read_tree_with_ids(history[1])
    for path, (blob, _entry) in first.items():
        assert blob == git(repo, "rev-parse", f"{history[1]}:{path}")
    assert len(fetched) == 1
    second = source.read_tree_with_ids(history[2])
    # Only the one new blob of c3 was read from git; the rest came from the cache.
    assert fetched[1] == [second["apps/search/app.yaml"][0]]
    assert source.read_tree_with_ids(history[2]) == second
    assert len(fetched) == 2


def test_read_tree_under_a_prefix(repo: Path, history: list[str]) -> None:
    tree = GitSource(repo).read_tree("HEAD", prefix="apps/checkout")
    assert sorted(tree) == ["apps/checkout/app.yaml", "apps/checkout/values.yaml"]


# --------------------------------------------------------------------------- revisions


def test_resolve_and_head(repo: Path, history: list[str]) -> None:
    source = GitSource(repo)
    assert source.head() == history[2]
    assert source.resolve("main") == history[2]
    assert source.resolve("HEAD~2") == history[0]
    assert source.resolve(history[1][:10]) == history[1]
    for bad in ("no-such-branch", "HEAD~9", "-x", "", "deadbeef" * 5):
        with pytest.raises(RevisionNotFound):
            source.resolve(bad)
    with pytest.raises(RevisionNotFound):
        source.read_tree("no-such-branch")


def test_empty_repository_has_no_head(repo: Path) -> None:
    assert GitSource(repo).head() is None


def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a git repository"):
        GitSource(tmp_path)
    with pytest.raises(UsageError, match="not inside a git repository"):
        GitSource.discover(tmp_path)


def test_discover_from_a_subfolder(repo: Path, history: list[str]) -> None:
    source, prefix = GitSource.discover(repo / "apps" / "checkout")
    assert prefix == "apps/checkout"
    assert source.path == repo.resolve()
    assert GitSource.discover(repo)[1] == ""


def test_commits_between_oldest_first(repo: Path, history: list[str]) -> None:
    c1, c2, c3 = history
    source = GitSource(repo)
    assert [c.sha for c in source.commits_between(c1, c3)] == [c2, c3]
    assert [c.sha for c in source.commits_between(None, c3)] == [c1, c2, c3]
    assert source.commits_between(c3, c3) == []
    info = source.commits_between(c1, c2)[0]
    assert info.parents == (c1,)
    assert (info.author_name, info.author_email) == ("Ann Author", "ann@example.invalid")
    assert (info.committer_name, info.committer_email) == ("Cy Committer", "cy@example.invalid")
    assert info.message == "c2: more replicas\n\nbecause of load"
    assert info.committed_at.tzinfo == UTC
    assert (info.signature_status, info.signer) == ("N", None)
    assert source.commit_info(c2) == info


def test_commits_between_follows_first_parents(repo: Path, history: list[str]) -> None:
    git(repo, "checkout", "--quiet", "-b", "feature", history[2])
    write(repo, {"apps/search/values.yaml": "a: 1\n"})
    feature = commit_all(repo, "feature work")
    git(repo, "checkout", "--quiet", "main")
    git(repo, "merge", "--quiet", "--no-ff", "--no-edit", "feature")
    merge = git(repo, "rev-parse", "HEAD")
    source = GitSource(repo)
    between = source.commits_between(history[2], merge)
    assert [c.sha for c in between] == [merge]
    assert between[0].parents == (history[2], feature)
    assert source.is_ancestor(history[0], merge)
    assert source.is_ancestor(feature, merge)
    assert not source.is_ancestor(merge, history[0])


def test_every_git_call_has_a_timeout(repo: Path, history: list[str]) -> None:
    with pytest.raises(GitError, match="timed out"):
        GitSource(repo, timeout=1e-6).read_tree("HEAD")


# --------------------------------------------------------------------------- reverts


def _checkout_state(repo: Path) -> tuple[str, str, str, str, bytes]:
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "symbolic-ref", "HEAD"),
        git(repo, "status", "--porcelain=v1", "--untracked-files=all"),
        git(repo, "worktree", "list", "--porcelain"),
        (repo / "global.yaml").read_bytes(),
    )


def test_prepare_revert_leaves_the_checkout_untouched(repo: Path, history: list[str]) -> None:
    _c1, c2, c3 = history
    # The user is mid-edit: a modified file, a staged file and an untracked file.
    write(repo, {"global.yaml": "log_level: debug\n", "notes.txt": "wip\n"})
    write(repo, {"apps/staged/app.yaml": "x: 1\n"})
    git(repo, "add", "apps/staged/app.yaml")
    before = _checkout_state(repo)

    source = GitSource(repo)
    new = source.prepare_revert(c2, branch="configctl/revert-c2", message="Revert c2")

    assert _checkout_state(repo) == before
    assert git(repo, "rev-parse", "configctl/revert-c2") == new
    assert git(repo, "rev-parse", f"{new}^") == c3
    reverted = source.read_tree(new)
    assert reverted["apps/checkout/values.yaml"].data == b"replicas: 2\ndb:\n  host: h1\n"
    assert "apps/search/app.yaml" in reverted  # c3 is kept
    info = source.commit_info(new)
    assert info.message == f"Revert c2\n\nThis reverts commit {c2}."
    assert not list(Path(tempfile.gettempdir()).glob("configctl-revert-*/worktree"))


def test_prepare_revert_with_a_patch_writes_exactly_those_files(
    repo: Path, history: list[str]
) -> None:
    before = _checkout_state(repo)
    source = GitSource(repo)
    new = source.prepare_revert(
        history[1],
        branch="fix-replicas",
        message="Revert replicas of c2",
        paths_patch={"apps/checkout/values.yaml": b"replicas: 2\ndb:\n  host: h1\n"},
    )
    assert _checkout_state(repo) == before
    changed = git(repo, "diff", "--name-only", f"{history[2]}..{new}")
    assert changed == "apps/checkout/values.yaml"
    assert (
        source.read_tree(new)["apps/checkout/values.yaml"].data == b"replicas: 2\ndb:\n  host: h1\n"
    )
    assert source.commit_info(new).message == "Revert replicas of c2"


def test_prepare_revert_failures_leave_nothing_behind(repo: Path, history: list[str]) -> None:
    _c1, c2, c3 = history
    # A later commit rewrote the same lines: reverting c2 conflicts.
    write(repo, {"apps/checkout/values.yaml": "replicas: 5\ndb:\n  host: h9\n"})
    commit_all(repo, "c4: rewrite")
    before = _checkout_state(repo)
    source = GitSource(repo)
    # a conflict is the user's to resolve (exit 1), not a git failure (exit 3): files named
    with pytest.raises(RevertConflict, match="conflicts") as conflict:
        source.prepare_revert(c2, branch="revert-c2", message="Revert c2")
    assert conflict.value.files == ("apps/checkout/values.yaml",)
    assert not isinstance(conflict.value, GitError)
    assert _checkout_state(repo) == before
    assert git(repo, "branch", "--list", "revert-c2") == ""

    with pytest.raises(UsageError, match="already exists"):
        source.prepare_revert(c3, branch="main", message="x")
    with pytest.raises(UsageError, match="not a valid branch name"):
        source.prepare_revert(c3, branch="bad..name", message="x")
    with pytest.raises(UsageError, match="plain repository-relative path"):
        source.prepare_revert(c3, branch="evil", message="x", paths_patch={"../x.yaml": b""})
    with pytest.raises(UsageError, match="nothing to commit"):
        source.prepare_revert(
            c3,
            branch="same",
            message="x",
            paths_patch={"global.yaml": (repo / "global.yaml").read_bytes()},
        )
    assert git(repo, "branch", "--list", "same", "evil") == ""
    assert _checkout_state(repo) == before
