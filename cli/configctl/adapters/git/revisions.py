"""Revisions and commit listings: the one revision check, ``rev-parse``, ancestry, and
``git log`` read into :class:`~configctl.core.records.CommitInfo` records.

User input never reaches git as an option: :func:`check_rev` refuses what starts with
``-`` or holds control characters, and revisions go after ``--end-of-options``. Listings
are first-parent (what the branch went through) and parsed from NUL/unit-separated
fields, so a commit message may hold anything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from configctl.adapters.git import objects, runner
from configctl.adapters.git.runner import LOCAL_TIMEOUT
from configctl.core.records import CommitInfo
from configctl.errors import GitError, RevisionNotFound

__all__ = [
    "EMPTY_TREE",
    "LOG_ARGS",
    "LOG_FIELDS",
    "Change",
    "check_rev",
    "commit_from_fields",
    "first_parents",
    "is_ancestor",
    "log_range",
    "parse_log",
    "parse_raw",
    "rev_parse",
]

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
"""git's empty tree (SHA-1 repositories): what a root commit is compared against."""

LOG_FIELDS = ("%H", "%P", "%an", "%ae", "%at", "%cn", "%ce", "%ct", "%G?", "%GF", "%GS", "%B")
"""The ``git log --format`` fields :func:`commit_from_fields` reads, in order; the message
comes last because only it may hold newlines."""

OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
"""A full object id (SHA-1 or SHA-256)."""

Change = objects.Change


def check_rev(rev: str) -> str:
    """``rev`` if it may be handed to git as a revision, else RevisionNotFound."""
    if not rev or rev.startswith("-") or any(ord(ch) < 32 for ch in rev):
        raise RevisionNotFound(f"revision {rev!r} is not valid")
    return rev


def commit_from_fields(fields: Sequence[str]) -> CommitInfo:
    """A commit from one ``git log`` record printed with :data:`LOG_FIELDS`."""
    sha, parents, an, ae, at, cn, ce, ct, status, fpr, signer, message = fields
    return CommitInfo(
        sha=sha.strip(),
        parents=tuple(parents.split()),
        author_name=an,
        author_email=ae,
        authored_at=datetime.fromtimestamp(int(at), UTC),
        committer_name=cn,
        committer_email=ce,
        committed_at=datetime.fromtimestamp(int(ct), UTC),
        message=message.rstrip("\n"),
        signature_status=status or "N",
        signer=signer or fpr or None,
    )


def rev_parse(repo: str | os.PathLike[str], rev: str, *, timeout: float = LOCAL_TIMEOUT) -> str:
    """The full commit id ``rev`` names in ``repo``; RevisionNotFound if it names none."""
    done = runner.run(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{check_rev(rev)}^{{commit}}"],
        cwd=repo,
        timeout=timeout,
    )
    sha = done.out.decode().strip()
    if done.code != 0 or not sha:
        raise RevisionNotFound(f"revision {rev!r} does not name a commit in {os.fspath(repo)}")
    return sha


def is_ancestor(
    repo: str | os.PathLike[str], ancestor: str, descendant: str, *, timeout: float = LOCAL_TIMEOUT
) -> bool:
    """Whether commit ``ancestor`` is an ancestor of (or equal to) ``descendant``.

    False when ``ancestor`` is not in the repository at all (a rewritten history whose
    old commits were never fetched here). Any *other* failure raises GitError: a git that
    cannot answer must not be mistaken for a force push, which would skip commits.
    """
    args = [
        "merge-base",
        "--is-ancestor",
        "--end-of-options",
        check_rev(ancestor),
        check_rev(descendant),
    ]
    done = runner.run(args, cwd=repo, timeout=timeout)
    if done.code in (0, 1):
        return done.code == 0
    if not has_commit(repo, ancestor, timeout=timeout):
        return False
    raise runner.failure(args, done.code, done.err)


def has_commit(repo: str | os.PathLike[str], rev: str, *, timeout: float = LOCAL_TIMEOUT) -> bool:
    """Whether ``rev`` names a commit present in ``repo`` (GitError if ``repo`` is none)."""
    args = ["cat-file", "-e", "--end-of-options", f"{rev}^{{commit}}"]
    done = runner.run(args, cwd=repo, timeout=timeout)
    if done.code != 0 and b"not a git repository" in done.err.lower():
        raise runner.failure(args, done.code, done.err)
    return done.code == 0


def parse_raw(fields: list[str]) -> list[Change]:
    """The ``-z --raw`` diff lines in ``fields`` (``:old new oldid newid S``, path, ...)."""
    changes: list[Change] = []
    i = 0
    while i + 1 < len(fields):
        meta, path = fields[i].lstrip("\n"), fields[i + 1]
        i += 2
        parts = meta[1:].split(" ") if meta.startswith(":") else []
        if len(parts) != 5:
            raise GitError("git printed a raw diff line that cannot be read")
        _, new_mode, _, new_blob, status = parts
        changes.append((path, new_mode, new_blob, status))
    return changes


def _full_id(rev: str) -> str:
    if not OBJECT_ID.fullmatch(rev):
        raise RevisionNotFound(f"not a full commit id: {rev!r}")
    return rev


LOG_ARGS = ("log", "-z", "--no-color", "--no-show-signature", "--format=" + "%x1f".join(LOG_FIELDS))
"""``git log`` printing the records :func:`parse_log` reads."""


def parse_log(out: str) -> list[CommitInfo]:
    """The commits of a ``git log`` run with :data:`LOG_ARGS` (no diff)."""
    return [_commit_record(token) for token in out.split("\0") if token.strip()]


def log_range(
    repo: str | os.PathLike[str],
    base: str | None,
    head: str,
    *,
    timeout: float = LOCAL_TIMEOUT,
    on_changes: Callable[[str, str, list[Change]], None] | None = None,
) -> list[CommitInfo] | None:
    """The commits after ``base`` up to ``head``, oldest first, first parents only, in one
    ``git log`` process; ``base=None`` lists ``head`` alone.

    Returns None when ``base`` is not in the repository (history rewritten before this
    clone ever saw it). With ``on_changes``, the same process also reports each
    single-parent commit's raw diff, ``on_changes(sha, parent, changes)`` (the tree reader
    then needs no diff of its own); merges are left out -- older gits print no diff for them.
    """
    if base is not None and (one := objects.loose_log(repo, _full_id(base), _full_id(head))) is not None:
        # The webhook's usual case, one new commit fetched loose: no git process.
        info, changes = one
        if on_changes is not None:
            on_changes(info.sha, base, changes)
        return [info]
    spec = (
        ["-1", _full_id(head)]
        if base is None
        else ["--first-parent", "--reverse", f"{_full_id(base)}..{_full_id(head)}"]
    )
    raw = (
        ["--raw", "--no-renames", "--no-abbrev"]
        if on_changes is not None and base is not None
        else []
    )
    done = runner.run([*LOG_ARGS, *raw, *spec, "--"], cwd=repo, timeout=timeout)
    if done.code != 0:
        if base is not None and not has_commit(repo, base, timeout=timeout):
            return None
        raise runner.failure(["log"], done.code, done.err)
    tokens = done.out.decode("utf-8", "replace").split("\0")
    commits: list[CommitInfo] = []
    diffs: list[list[str]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.lstrip("\n").startswith(":") and diffs:
            diffs[-1] += tokens[i : i + 2]  # the diff line and its path
            i += 2
            continue
        i += 1
        if not token.strip():
            continue
        commits.append(_commit_record(token))
        diffs.append([])
    if on_changes is not None and raw:
        for info, fields in zip(commits, diffs, strict=True):
            if len(info.parents) == 1:
                on_changes(info.sha, info.parents[0], parse_raw(fields))
    return commits


def first_parents(
    repo: str | os.PathLike[str], head: str, limit: int, *, timeout: float = LOCAL_TIMEOUT
) -> list[CommitInfo]:
    """``head`` and its first-parent ancestors, newest first, at most ``limit`` of them."""
    out = runner.run_git(
        [*LOG_ARGS, "--first-parent", f"--max-count={int(limit)}", _full_id(head), "--"],
        cwd=repo,
        timeout=timeout,
    )
    return parse_log(out)


def _commit_record(record: str) -> CommitInfo:
    parts = record.split("\x1f", len(LOG_FIELDS) - 1)
    if len(parts) != len(LOG_FIELDS) or not OBJECT_ID.fullmatch(parts[0].strip()):
        raise GitError("git log printed a record that cannot be read")
    return commit_from_fields(parts)
