"""Remote operations: clone, fetch and the checks on what a remote may be.

A clone is made under a temporary name and renamed into place, so a killed process never
leaves a half-made clone that would later pass for a good one; a fetch first removes ref
locks a killed git left behind. URLs and branch names are checked before git sees them
(:func:`check_url`, :func:`check_branch`) and passed after ``--``. Every call goes through
:mod:`configctl.adapters.git.runner` (hard timeout, process group, no prompts).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

from configctl.adapters.git import objects, runner
from configctl.adapters.git.revisions import OBJECT_ID, rev_parse
from configctl.adapters.git.runner import LOCAL_TIMEOUT, NETWORK_TIMEOUT
from configctl.errors import UsageError

__all__ = ["check_branch", "check_url", "clone", "fetch", "origin_url", "remove_stale_locks"]

# user@host:path (scp-like ssh); the host part may not contain "/" and the whole thing may
# not contain "::" (transport helper syntax) -- checked separately.
_SCP_LIKE = re.compile(r"^(?!-)[A-Za-z0-9._-]+@(?!-)[A-Za-z0-9.-]+:[^\s]+$")
_BRANCH = re.compile(
    r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)(?!.*\.lock$)(?!/)(?!.*/$)[A-Za-z0-9._/-]{1,200}$"
)


def check_url(url: str) -> str:
    """Return ``url`` if it is an allowed repository location, else raise UsageError.

    Allowed: ``https://``, ``ssh://``, scp-like ``git@host:path``, ``file://`` and
    absolute local paths. Refused: anything starting with ``-`` (would be read as an
    option), transport-helper syntax (``ext::…``, ``fd::…``), cleartext ``http://`` and
    ``git://``, relative paths, and control characters.
    """
    if not url or url != url.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UsageError("repository URL is empty or contains whitespace or control characters")
    if url.startswith("-"):
        raise UsageError("repository URL must not start with '-'")
    if "::" in url:
        raise UsageError(
            "repository URL uses a git transport helper ('<transport>::'), which is not allowed"
        )
    lowered = url.lower()
    if lowered.startswith(("https://", "ssh://", "file://")):
        rest = url.split("://", 1)[1]
        if not rest:
            raise UsageError("repository URL has no host or path")
        host = rest.split("/", 1)[0].rpartition("@")[2]
        if host.startswith("-"):
            # ssh would read "-oProxyCommand=..." as an option (CVE-2017-1000117)
            raise UsageError("repository URL host must not start with '-'")
        return url
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise UsageError(
            f"repository URL scheme {scheme!r} is not allowed",
            hint="use https://, ssh://, git@host:path, file:// or an absolute path",
        )
    if url.startswith("/"):
        return url
    if _SCP_LIKE.match(url):
        return url
    raise UsageError(
        "repository URL is not an allowed form",
        hint="use https://, ssh://, git@host:path, file:// or an absolute path",
    )


def check_branch(branch: str) -> str:
    """Return ``branch`` if it is a plain branch name we are willing to pass to git."""
    if not _BRANCH.match(branch):
        raise UsageError(f"not an acceptable branch name: {branch!r}")
    return branch


def clone(
    url: str, dest: str | os.PathLike[str], branch: str, *, timeout: float = NETWORK_TIMEOUT
) -> str:
    """Clone ``branch`` of ``url`` into ``dest`` (which must not exist); return its head.

    The clone is made next to ``dest`` under a temporary name and renamed into place when
    complete, so ``dest`` either does not exist or is a whole clone -- even if this
    process is killed half-way (a half-made clone would otherwise be taken for a good one
    at the next start and fail every fetch). Leftovers of such a kill are removed first.
    """
    check_url(url)
    check_branch(branch)
    target = Path(dest)
    if target.exists():
        raise UsageError(f"clone target {target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in target.parent.glob(f".{target.name}.tmp-*"):
        _remove_tree(leftover)
    partial = target.parent / f".{target.name}.tmp-{os.getpid()}"
    try:
        runner.run_git(
            [
                "clone",
                "--quiet",
                "--no-tags",
                "--single-branch",
                "--branch",
                branch,
                "--",
                url,
                str(partial),
            ],
            timeout=timeout,
        )
        os.rename(partial, target)
    except BaseException:
        _remove_tree(partial)
        raise
    return rev_parse(target, "HEAD")


def origin_url(repo: str | os.PathLike[str], *, timeout: float = LOCAL_TIMEOUT) -> str | None:
    """The URL of ``origin`` in ``repo``, or None if it has none (or is no repository)."""
    done = runner.run(["config", "--get", "remote.origin.url"], cwd=repo, timeout=timeout)
    url = done.out.decode("utf-8", "replace").strip()
    return url if done.code == 0 and url else None


def fetch(repo: str | os.PathLike[str], branch: str, *, timeout: float = NETWORK_TIMEOUT) -> str:
    """Fetch ``branch`` from ``origin`` into ``refs/remotes/origin/<branch>``; return its head.

    The working tree is not touched; the caller reads the returned commit. A ref lock
    left behind by a git that was killed mid-update (older than ``timeout``, so no live
    fetch of ours can own it) is removed first; otherwise every later fetch would fail.
    """
    check_branch(branch)
    remove_stale_locks(repo, older_than=timeout)
    runner.run_git(
        [
            "fetch",
            "--quiet",
            "--prune",
            "--no-tags",
            "--",
            "origin",
            f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
        ],
        cwd=repo,
        timeout=timeout,
    )
    return _read_loose_ref(repo, f"refs/remotes/origin/{branch}") or rev_parse(
        repo, f"refs/remotes/origin/{branch}"
    )


def _read_loose_ref(repo: str | os.PathLike[str], ref: str) -> str | None:
    """The commit id in a loose ref file, or None (packed, symbolic, absent: ask git).

    A loose ref takes precedence over ``packed-refs`` in git itself, and a fetch that
    moves a ref writes it loose, so reading the file saves a ``rev-parse`` process per
    poll -- on the path every webhook takes.
    """
    try:
        text = (objects.git_dir(repo) / ref).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if OBJECT_ID.fullmatch(text) else None


def remove_stale_locks(repo: str | os.PathLike[str], *, older_than: float) -> list[Path]:
    """Delete ``*.lock`` files a fetch takes (refs, packed-refs, shallow, FETCH_HEAD) that
    are older than ``older_than`` seconds; return what was removed."""
    root = Path(repo)
    gitdir = root / ".git" if (root / ".git").is_dir() else root
    candidates = [gitdir / "packed-refs.lock", gitdir / "shallow.lock", gitdir / "FETCH_HEAD.lock"]
    refs = gitdir / "refs"
    if refs.is_dir():
        candidates += list(refs.rglob("*.lock"))
    removed: list[Path] = []
    now = time.time()
    for lock in candidates:
        try:
            if now - lock.stat().st_mtime > older_than:
                lock.unlink()
                removed.append(lock)
        except FileNotFoundError:
            continue
    return removed


def _remove_tree(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
