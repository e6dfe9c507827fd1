"""Read each new commit's tree at the cost of its change, not of the repository.

``GitSource.read_tree`` lists the whole tree (``git ls-tree -r``) for every commit: fine for
one ``configctl apply``, but in the reconciler a one-file commit in a 1,000-app repository
(5,000+ files) then costs ~100 ms of listing and parsing before anything else happens.
:class:`TreeReader` keeps the file map of the last commit it read and moves it to the next
one with ``git diff-tree`` (the changed paths and their new blob ids); the blobs it has
not seen come from their loose object files (a small fetch leaves its objects loose), else
from one ``git cat-file --batch``: one or two git processes per commit, whatever the size
of the repository. The first read, and any read after a failure, is a
full ``GitSource.read_tree_with_ids``.

The result must be *exactly* what ``GitSource.read_tree_with_ids`` returns, because apply
must see the same files as ``configctl apply``. The rules it applies per path are few and
local to the path (so a diff can apply them): config suffixes only, no dot folders,
symlinks reported and not followed, gitlinks skipped, blobs above the parser's size bound
reported by size and not read. ``tests/integration/test_reconciler_trees.py`` compares
both readers commit by commit so they cannot drift apart.

Every git call goes through :mod:`configctl_reconciler.gitproc`: a hard timeout, its own
process group, killed with its children when it runs over.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from configctl.core.model import FileEntry
from configctl.errors import GitError
from configctl_reconciler import gitproc
from configctl_reconciler.gitproc import Change, parse_raw

__all__ = ["TreeReader"]

_SYMLINK = "120000"
_GITLINK = "160000"
_SUFFIXES = (".yaml", ".yml", ".json")

Entry = tuple[str, FileEntry]
"""(blob id, file entry)."""

def wanted(path: str) -> bool:
    """The path rule of GitSource: a config suffix, and no folder whose name starts with '.'."""
    if not path.endswith(_SUFFIXES):
        return False
    return not any(part.startswith(".") for part in path.split("/")[:-1])


def _max_file_bytes() -> int:
    from configctl.core.parse import MAX_FILE_BYTES

    return int(MAX_FILE_BYTES)


class TreeReader:
    """``read(sha) -> {path: FileEntry}``, incrementally from the previous read."""

    def __init__(
        self,
        repo: str | os.PathLike[str],
        *,
        full_read: Callable[[str], dict[str, Entry]],
        timeout: float = gitproc.LOCAL_TIMEOUT,
        max_blob_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.repo = Path(repo)
        gitdir = self.repo / ".git" if (self.repo / ".git").is_dir() else self.repo
        self._objects = gitdir / "objects"
        self._full_read = full_read
        self.timeout = timeout
        self._last: tuple[str, dict[str, Entry]] | None = None
        self._hints: dict[str, tuple[str, list[Change]]] = {}
        self._blobs: OrderedDict[str, bytes] = OrderedDict()
        self._blob_bytes = 0
        self._max_blob_bytes = max_blob_bytes
        self.full_reads = 0
        """How many reads listed the whole tree (for tests and the benchmark)."""
        self.diff_calls = 0
        """How many diffs needed their own ``git diff-tree`` (no hint from the listing)."""
        self.cat_file_calls = 0
        """How many times blobs had to come from ``git cat-file`` (not loose)."""

    def read(self, sha: str) -> dict[str, FileEntry]:
        return {path: entry for path, (_, entry) in self.read_with_ids(sha).items()}

    def read_with_ids(self, sha: str) -> dict[str, Entry]:
        last = self._last
        if last is not None and last[0] == sha:
            return dict(last[1])
        files: dict[str, Entry] | None = None
        if last is not None:
            try:
                files = self._advance(last[1], last[0], sha)
            except GitError:
                # Start again from a full listing; if git is really broken that raises too.
                self._last = None
        if files is None:
            self.full_reads += 1
            files = dict(self._full_read(sha))
            for blob, entry in files.values():
                if entry.data:
                    self._remember(blob, entry.data)
        self._last = (sha, files)
        return dict(files)

    # -- internals ------------------------------------------------------------------------

    def hint(self, sha: str, parent: str, changes: list[Change]) -> None:
        """What commit ``sha`` changed against its (only) parent, already known from the
        ``git log --raw`` that listed it: the next read of ``sha`` then needs no git call
        for the diff. Only the latest few hints are kept."""
        self._hints[sha] = (parent, changes)
        while len(self._hints) > 256:
            self._hints.pop(next(iter(self._hints)))

    def _advance(self, base: dict[str, Entry], old: str, new: str) -> dict[str, Entry]:
        hinted = self._hints.pop(new, None)
        if hinted is not None and hinted[0] == old:
            changes = hinted[1]
        else:
            self.diff_calls += 1
            out = gitproc.run_git(
                ["diff-tree", "-r", "-z", "--no-renames", "--no-commit-id", "--end-of-options", old, new],
                cwd=self.repo,
                timeout=self.timeout,
            )
            changes = parse_raw(out.split("\0"))
        files = dict(base)
        changed: dict[str, tuple[str, str]] = {}  # path -> (mode, blob) after the commit
        for path, new_mode, new_blob, status in changes:
            files.pop(path, None)
            if not status.startswith("D"):
                changed[path] = (new_mode, new_blob)
        limit = _max_file_bytes()
        sizes = self._sizes_and_data({blob for mode, blob in changed.values() if mode not in (_SYMLINK, _GITLINK)})
        for path, (mode, blob) in changed.items():
            if mode == _GITLINK or not wanted(path):
                continue
            if mode == _SYMLINK:
                files[path] = (blob, FileEntry(symlink=True))
                continue
            size, data = sizes[blob]
            if size > limit:
                files[path] = (blob, FileEntry(size=size))
            else:
                files[path] = (blob, FileEntry(data=data, size=len(data)))
        return files

    def _sizes_and_data(self, blobs: set[str]) -> dict[str, tuple[int, bytes]]:
        """(size, bytes) of each blob; bytes only up to the size bound (else b'')."""
        found: dict[str, tuple[int, bytes]] = {}
        missing = []
        for blob in sorted(blobs):
            data = self._blobs.get(blob)
            if data is not None:
                self._blobs.move_to_end(blob)
                found[blob] = (len(data), data)
            else:
                missing.append(blob)
        still = []
        for blob in missing:
            loose = self._loose_blob(blob)
            if loose is None:
                still.append(blob)
                continue
            found[blob] = (len(loose), loose if len(loose) <= _max_file_bytes() else b"")
            if len(loose) <= _max_file_bytes():
                self._remember(blob, loose)
        missing = still
        if not missing:
            return found
        self.cat_file_calls += 1
        raw = gitproc.run_git_bytes(
            ["cat-file", "--batch"], cwd=self.repo, timeout=self.timeout, input=("\n".join(missing) + "\n").encode()
        )
        limit = _max_file_bytes()
        pos = 0
        for blob in missing:
            end = raw.find(b"\n", pos)
            header = raw[pos:end].split() if end >= 0 else []
            if len(header) != 3 or header[1] != b"blob":
                raise GitError(f"git cat-file: object {blob} is missing or not a blob")
            size = int(header[2])
            data = raw[end + 1 : end + 1 + size]
            pos = end + 1 + size + 1
            if size > limit:
                found[blob] = (size, b"")
            else:
                found[blob] = (size, data)
                self._remember(blob, data)
        return found

    def _loose_blob(self, blob: str) -> bytes | None:
        """The blob from its loose object file, or None if it is not loose (packed).

        A fetch of a few commits stores the new objects loose (fewer than
        ``fetch.unpackLimit``, 100 by default), so reading them here saves the
        ``cat-file`` process on the webhook's path. The object id is checked against the
        content, as git itself would, so a damaged file is never taken for the blob.
        """
        if len(blob) != 40:  # SHA-256 repositories: let git read them
            return None
        path = self._objects / blob[:2] / blob[2:]
        try:
            raw = zlib.decompress(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, zlib.error):
            return None  # unreadable: git will say what is wrong
        header, sep, body = raw.partition(b"\0")
        if not sep or header != b"blob %d" % len(body) or hashlib.sha1(raw).hexdigest() != blob:  # noqa: S324 - git's object id, not security
            return None
        return body

    def _remember(self, blob: str, data: bytes) -> None:
        if blob in self._blobs or len(data) > self._max_blob_bytes:
            return
        self._blobs[blob] = data
        self._blob_bytes += len(data)
        while self._blob_bytes > self._max_blob_bytes:
            _, old = self._blobs.popitem(last=False)
            self._blob_bytes -= len(old)


def full_reader(git: Any) -> Callable[[str], dict[str, Entry]]:
    """``GitSource.read_tree_with_ids`` as the full-read fallback."""

    def read(sha: str) -> dict[str, Entry]:
        result: dict[str, Entry] = git.read_tree_with_ids(sha)
        return result

    return read
