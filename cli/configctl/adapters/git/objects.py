"""git objects read from their loose files, without a git process.

A fetch of a few commits stores the new objects loose (fewer than ``fetch.unpackLimit``,
100 by default), so what a webhook brings -- the commit, the trees it changed, the blobs
-- can be read here, saving a ``git`` process each on the webhook's path. Only the simple
case is taken: a SHA-1 object in its loose file, whose id is checked against its content
as git itself would. Anything else (packed, SHA-256, damaged) answers None and the caller
asks git, which also says what is wrong.

- :func:`read_loose` one object's body, if it is loose and of the kind asked for;
- :func:`loose_commit` a commit with one parent and no signature, encoding or merge tag,
  as ``git log`` (:data:`~configctl.adapters.git.revisions.LOG_FIELDS`) would report it;
- :func:`diff_trees` the raw diff of two trees (``git diff-tree -r --no-renames``), when
  every tree it must open is loose.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from configctl.core.records import CommitInfo

__all__ = ["Change", "diff_trees", "git_dir", "loose_commit", "loose_log", "read_loose"]

Change = tuple[str, str, str, str]
"""One line of a raw diff: (path, new mode, new blob id, status letter)."""

TREE_MODE = "40000"
_ZERO = "0" * 40
_UNSIGNED_HEADERS = (b"tree", b"parent", b"author", b"committer")


def git_dir(repo: str | os.PathLike[str]) -> Path:
    """The git directory of ``repo``: its ``.git`` folder, or ``repo`` itself when bare."""
    root = Path(repo)
    return root / ".git" if (root / ".git").is_dir() else root


def loose_log(
    repo: str | os.PathLike[str], base: str, head: str
) -> tuple[CommitInfo, list[Change]] | None:
    """``git log --raw base..head`` when that is the one commit ``head`` on top of
    ``base``, read from loose objects (see :func:`loose_commit`, :func:`diff_trees`);
    None when git must be asked."""
    objects = git_dir(repo) / "objects"
    found = loose_commit(objects, head, base)
    if found is None:
        return None
    info, tree, parent_tree = found
    changes = diff_trees(objects, parent_tree, tree)
    return (info, changes) if changes is not None else None


def read_loose(objects: Path, oid: str, kind: bytes) -> bytes | None:
    """The body of object ``oid`` of ``kind`` (``b"blob"``, ``b"tree"``, ``b"commit"``)
    from its loose file under ``objects``, or None if it is not loose, not SHA-1, not of
    that kind, or does not hash to its id."""
    if len(oid) != 40:
        return None
    try:
        raw = zlib.decompress((objects / oid[:2] / oid[2:]).read_bytes())
    except (OSError, zlib.error):
        return None
    header, sep, body = raw.partition(b"\0")
    if not sep or header != kind + b" %d" % len(body):
        return None
    if hashlib.sha1(raw).hexdigest() != oid:  # noqa: S324 - git's object id, not security
        return None
    return body


def _person(value: bytes) -> tuple[str, str, datetime] | None:
    """(name, email, time) of an ``author``/``committer`` header value."""
    name, sep, rest = value.partition(b" <")
    email, sep2, when = rest.partition(b"> ")
    parts = when.split()
    if not (sep and sep2 and parts and parts[0].isdigit()):
        return None
    return _text(name), _text(email), datetime.fromtimestamp(int(parts[0]), UTC)


def _text(raw: bytes) -> str:
    """Bytes of a commit as the reading of ``git log``'s output decodes them."""
    return raw.decode("utf-8", "replace")


def loose_commit(objects: Path, oid: str, parent: str) -> tuple[CommitInfo, str, str] | None:
    """Commit ``oid`` as ``git log`` reports it, with its tree and its parent's tree, if it
    is loose, its only parent is ``parent`` (also loose) and it carries no signature, no
    ``encoding`` and no merge tag (git would check or convert those); else None."""
    body = read_loose(objects, oid, b"commit")
    parent_body = read_loose(objects, parent, b"commit") if body is not None else None
    if body is None or parent_body is None:
        return None
    head, sep, message = body.partition(b"\n\n")
    if not sep and not body.endswith(b"\n"):
        return None
    fields: dict[bytes, list[bytes]] = {}
    for line in head.split(b"\n"):
        key, _, value = line.partition(b" ")
        if line.startswith(b" ") or key not in _UNSIGNED_HEADERS:
            return None  # a signature, encoding, mergetag or anything git might act on
        fields.setdefault(key, []).append(value)
    parents = [p.decode() for p in fields.get(b"parent", [])]
    trees = fields.get(b"tree", [])
    author = _person(fields[b"author"][0]) if len(fields.get(b"author", [])) == 1 else None
    committer = _person(fields[b"committer"][0]) if len(fields.get(b"committer", [])) == 1 else None
    parent_tree = next(
        (
            line[5:].decode()
            for line in parent_body.split(b"\n\n", 1)[0].split(b"\n")
            if line.startswith(b"tree ")
        ),
        None,
    )
    if (
        parents != [parent]
        or len(trees) != 1
        or author is None
        or committer is None
        or parent_tree is None
    ):
        return None
    info = CommitInfo(
        sha=oid,
        parents=(parent,),
        author_name=author[0],
        author_email=author[1],
        authored_at=author[2],
        committer_name=committer[0],
        committer_email=committer[1],
        committed_at=committer[2],
        message=message.decode("utf-8", "replace").rstrip("\n"),
        signature_status="N",
        signer=None,
    )
    return info, trees[0].decode(), parent_tree


def _entries(body: bytes) -> dict[str, tuple[str, str]] | None:
    """``{name: (mode, oid)}`` of a tree object's body."""
    out: dict[str, tuple[str, str]] = {}
    i = 0
    while i < len(body):
        space = body.find(b" ", i)
        nul = body.find(b"\0", space + 1)
        if space < 0 or nul < 0 or nul + 21 > len(body):
            return None
        mode = body[i:space].decode()
        name = body[space + 1 : nul].decode("utf-8", "replace")
        out[name] = (mode, body[nul + 1 : nul + 21].hex())
        i = nul + 21
    return out


class _NotLoose(Exception):
    pass


def diff_trees(objects: Path, old: str, new: str) -> list[Change] | None:
    """The changes from tree ``old`` to tree ``new``, file by file (``git diff-tree -r
    --no-renames``: added ``A``, deleted ``D`` with a zero id, modified ``M`` or type
    changed ``T``), or None if a tree it must open is not loose."""

    def tree(oid: str) -> dict[str, tuple[str, str]]:
        body = read_loose(objects, oid, b"tree")
        entries = _entries(body) if body is not None else None
        if entries is None:
            raise _NotLoose(oid)
        return entries

    out: list[Change] = []

    def every(oid: str, prefix: str, emit: Callable[[str, str, str], None]) -> None:
        for name, (mode, child) in tree(oid).items():
            if mode == TREE_MODE:
                every(child, f"{prefix}{name}/", emit)
            else:
                emit(f"{prefix}{name}", mode, child)

    def walk(a: str, b: str, prefix: str) -> None:
        left, right = tree(a), tree(b)
        for name in sorted(left.keys() | right.keys()):
            path = f"{prefix}{name}"
            was, now = left.get(name), right.get(name)
            if was == now:
                continue
            was_tree = was is not None and was[0] == TREE_MODE
            now_tree = now is not None and now[0] == TREE_MODE
            if was_tree and now_tree and was is not None and now is not None:
                walk(was[1], now[1], f"{path}/")
                continue
            if was is not None and (now is None or was_tree != now_tree):
                if was_tree:
                    every(
                        was[1], f"{path}/", lambda p, _m, _o: out.append((p, "000000", _ZERO, "D"))
                    )
                else:
                    out.append((path, "000000", _ZERO, "D"))
            if now is not None and (was is None or was_tree != now_tree):
                if now_tree:
                    every(now[1], f"{path}/", lambda p, m, o: out.append((p, m, o, "A")))
                else:
                    out.append((path, now[0], now[1], "A"))
            elif was is not None and now is not None:
                same_kind = _kind(was[0]) == _kind(now[0])
                out.append((path, now[0], now[1], "M" if same_kind else "T"))

    try:
        walk(old, new, "")
    except _NotLoose:
        return None
    return out


def _kind(mode: str) -> str:
    """Regular file, symlink or gitlink: a change between them is a type change."""
    return {"120000": "link", "160000": "gitlink"}.get(mode, "file")
