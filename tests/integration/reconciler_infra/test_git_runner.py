"""The git adapter's runner and remote operations against real git: local fetches work; a
hung fetch is killed with all its children."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from configctl.adapters.git.remote import clone, fetch
from configctl.adapters.git.revisions import rev_parse
from configctl.adapters.git.runner import group_members, run_git
from configctl.errors import GitError, RevisionNotFound, UsageError

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git configuration leaks into these tests."""
    cfg = tmp_path / "gitconfig"
    cfg.write_text("[user]\n\tname = Test\n\temail = test@example.invalid\n[init]\n\tdefaultBranch = main\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(cfg))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def remote(tmp_path: Path) -> tuple[Path, Path]:
    """A bare repository and a working clone that pushes to it."""
    bare = tmp_path / "origin.git"
    git("init", "--bare", "-q", "-b", "main", str(bare))
    work = tmp_path / "work"
    git("clone", "-q", str(bare), str(work))
    (work / "configctl.yaml").write_text("version: 1\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return bare, work


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("form", ["path", "file-url"])
def test_clone_and_fetch_from_local_bare_repo(remote: tuple[Path, Path], tmp_path: Path, form: str) -> None:
    bare, work = remote
    url = str(bare) if form == "path" else bare.as_uri()
    dest = tmp_path / "clone"
    head = clone(url, dest, "main", timeout=30)
    assert head == git("rev-parse", "HEAD", cwd=work)
    assert fetch(dest, "main", timeout=30) == head  # nothing new
    (work / "global.yaml").write_text("a: 1\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "second", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    new = fetch(dest, "main", timeout=30)
    assert new == git("rev-parse", "HEAD", cwd=work)
    assert new != head
    assert rev_parse(dest, "refs/remotes/origin/main") == new


def test_fetch_after_force_push(remote: tuple[Path, Path], tmp_path: Path) -> None:
    bare, work = remote
    dest = tmp_path / "clone"
    clone(str(bare), dest, "main", timeout=30)
    git("commit", "-q", "--amend", "-m", "rewritten", cwd=work)
    git("push", "-q", "--force", "origin", "HEAD:main", cwd=work)
    assert fetch(dest, "main", timeout=30) == git("rev-parse", "HEAD", cwd=work)


def test_rev_parse_errors(remote: tuple[Path, Path], tmp_path: Path) -> None:
    bare, _ = remote
    dest = tmp_path / "clone"
    clone(str(bare), dest, "main", timeout=30)
    with pytest.raises(RevisionNotFound):
        rev_parse(dest, "no-such-branch")
    with pytest.raises(RevisionNotFound):
        rev_parse(dest, "--all")


def test_clone_of_missing_branch_fails_cleanly(remote: tuple[Path, Path], tmp_path: Path) -> None:
    bare, _ = remote
    dest = tmp_path / "clone"
    with pytest.raises(GitError):
        clone(str(bare), dest, "nope", timeout=30)
    assert not dest.exists()


def test_refused_url_never_runs_git(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(UsageError):
        clone(f"ext::sh -c touch% {marker}", tmp_path / "c", "main")
    assert not marker.exists()


def test_ext_transport_is_blocked_even_past_the_allow_list(tmp_path: Path) -> None:
    """Defence in depth: GIT_ALLOW_PROTOCOL stops ext:: even if a URL reached git."""
    marker = tmp_path / "pwned"
    with pytest.raises(GitError):
        run_git(["clone", f"ext::sh -c touch% {marker}", str(tmp_path / "c")], timeout=30)
    assert not marker.exists()


def _fake_ssh(tmp_path: Path) -> tuple[Path, Path]:
    """An "ssh" that hangs, with a background child of its own, recording their pids."""
    pids = tmp_path / "pids"
    script = tmp_path / "fake-ssh"
    script.write_text(
        "#!/bin/sh\n"
        f"sleep 60 &\n"
        f"echo $! >> {pids}\n"
        f"echo $$ >> {pids}\n"
        f"cut -d' ' -f5 /proc/$$/stat > {pids}.pgid\n"
        "exec sleep 61\n"
    )
    script.chmod(0o755)
    return script, pids


def _assert_group_gone(pids: Path) -> None:
    recorded = [int(p) for p in pids.read_text().split()]
    pgid = int(Path(f"{pids}.pgid").read_text())
    assert len(recorded) == 2
    assert pgid != os.getpgid(0)  # git ran in a process group of its own
    assert group_members(pgid) == []
    assert [p for p in recorded if alive(p)] == []


def test_hung_clone_is_killed_with_its_children(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script, pids = _fake_ssh(tmp_path)
    monkeypatch.setenv("GIT_SSH_COMMAND", str(script))
    dest = tmp_path / "clone"
    started = time.monotonic()
    with pytest.raises(GitError, match="timed out"):
        clone("ssh://git.example.invalid/config.git", dest, "main", timeout=1.5)
    elapsed = time.monotonic() - started
    assert 1.4 < elapsed < 8
    _assert_group_gone(pids)
    assert not dest.exists()


def test_hung_fetch_is_killed_with_its_children(remote: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare, _ = remote
    dest = tmp_path / "clone"
    clone(str(bare), dest, "main", timeout=30)
    git("remote", "set-url", "origin", "ssh://git.example.invalid/config.git", cwd=dest)
    script, pids = _fake_ssh(tmp_path)
    monkeypatch.setenv("GIT_SSH_COMMAND", str(script))
    with pytest.raises(GitError, match="timed out"):
        fetch(dest, "main", timeout=1.0)
    _assert_group_gone(pids)
    # the clone is intact and usable afterwards
    git("remote", "set-url", "origin", str(bare), cwd=dest)
    monkeypatch.delenv("GIT_SSH_COMMAND")
    assert fetch(dest, "main", timeout=30)


def test_git_error_messages_hide_credentials(tmp_path: Path) -> None:
    with pytest.raises(GitError) as info:
        run_git(["ls-remote", "--", "https://bot:tok3n@127.0.0.1:1/x.git"], timeout=20)
    assert "tok3n" not in str(info.value)
