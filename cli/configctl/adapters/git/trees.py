"""Reading a commit's config files from git objects: one path rule, one blob cache, one
size bound, for the CLI's whole-tree reads and the reconciler's incremental ones.

The rules, all local to a path (so a diff can apply them as well as a listing):

- **config files only**: ``*.yaml``, ``*.yml``, ``*.json`` outside folders whose name
  starts with a dot (``.github``, ``.configctl``), as the filesystem adapter reads them;
- **symlinks** are reported (``FileEntry(symlink=True)``), never followed; **gitlinks**
  (submodules) are skipped;
- a blob above the parser's size bound (:data:`configctl.core.parse.MAX_FILE_BYTES`) is
  reported by its size and not read.

Blob bytes are kept in one bounded LRU by blob id (:class:`BlobCache`), so reading the next
commit costs the blobs that changed. :class:`TreeReader` goes further for the reconciler:
it keeps the file map of the last commit it read and moves it to the next one with the
commit's raw diff (from the ``git log --raw`` that listed it, else one ``git diff-tree``);
new blobs come from their loose object files (a small fetch leaves its objects loose),
else from one ``git cat-file --batch``: one or two git processes per commit, whatever the
size of the repository. Its result is *exactly* a full read's, because the reconciler must
apply the same files as ``configctl apply``; ``tests/integration/test_reconciler_trees.py``
compares both commit by commit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from configctl.adapters.git.objects import read_loose
from configctl.adapters.git.revisions import Change, parse_raw
from configctl.core.model import FileEntry
from configctl.errors import GitError

if TYPE_CHECKING:
    from configctl.adapters.git.source import GitSource

__all__ = ["SUFFIXES", "BlobCache", "Entry", "TreeReader", "entry", "max_file_bytes", "wanted"]

SUFFIXES = (".yaml", ".yml", ".json")
SYMLINK_MODE = "120000"
GITLINK_MODE = "160000"

DEFAULT_BLOB_CACHE_BYTES = 64 * 1024 * 1024
"""Bytes of blob content kept in memory per repository (the LRU evicts beyond this)."""

Entry = tuple[str, FileEntry]
"""(blob id, file entry)."""

GitBytes = Callable[[Sequence[str], bytes | None], bytes]
"""Run ``git <args>`` in the repository with these stdin bytes; its stdout (GitError on failure)."""


def wanted(path: str) -> bool:
    """The path rule: a config suffix, and no folder whose name starts with '.'."""
    if not path.endswith(SUFFIXES):
        return False
    return not any(part.startswith(".") for part in path.split("/")[:-1])


def max_file_bytes() -> int:
    """The size bound: the parser's (imported late, so importing git stays cheap)."""
    from configctl.core.parse import MAX_FILE_BYTES

    return int(MAX_FILE_BYTES)


def entry(mode: str, size: int, data: bytes) -> FileEntry:
    """The FileEntry of a listed blob (``data`` is ignored for symlinks and big blobs)."""
    if mode == SYMLINK_MODE:
        return FileEntry(symlink=True)
    if size > max_file_bytes():
        return FileEntry(size=size)  # not read; the core reports the size
    return FileEntry(data=data, size=len(data))


class BlobCache:
    """LRU of blob id -> bytes, bounded by total size."""

    def __init__(self, max_bytes: int = DEFAULT_BLOB_CACHE_BYTES) -> None:
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes

    def get(self, sha: str) -> bytes | None:
        data = self._data.get(sha)
        if data is not None:
            self._data.move_to_end(sha)
        return data

    def put(self, sha: str, data: bytes) -> None:
        if sha in self._data or len(data) > self._max:
            return
        self._data[sha] = data
        self._bytes += len(data)
        while self._bytes > self._max:
            _, old = self._data.popitem(last=False)
            self._bytes -= len(old)


def cat_blobs(git: GitBytes, shas: Sequence[str], cache: BlobCache) -> dict[str, tuple[int, bytes]]:
    """``{id: (size, bytes)}`` of blobs in one ``git cat-file --batch``; bytes only up to
    the size bound (else ``b""``); what is read is cached."""
    raw = git(["cat-file", "--batch"], ("\n".join(shas) + "\n").encode())
    limit = max_file_bytes()
    found: dict[str, tuple[int, bytes]] = {}
    pos = 0
    for sha in shas:
        end = raw.find(b"\n", pos)
        header = raw[pos:end].split() if end >= 0 else []
        if len(header) != 3 or header[1] != b"blob":
            raise GitError(f"git cat-file: object {sha} is missing or not a blob")
        size = int(header[2])
        data = raw[end + 1 : end + 1 + size]
        pos = end + 1 + size + 1
        if size > limit:
            found[sha] = (size, b"")
        else:
            found[sha] = (size, data)
            cache.put(sha, data)
    return found


def list_tree(git: GitBytes, sha: str, prefix: str = "") -> dict[str, tuple[str, str, int]]:
    """``{path: (mode, blob id, size)}`` of the wanted files of commit ``sha``'s tree,
    under ``prefix`` (a folder; paths stay repository-relative)."""
    args = ["ls-tree", "-r", "-z", "-l", "--full-tree", sha]
    if prefix.strip("/"):
        args += ["--", prefix.strip("/") + "/"]
    found: dict[str, tuple[str, str, int]] = {}
    for raw in git(args, None).split(b"\0"):
        if not raw:
            continue
        meta, _, raw_path = raw.partition(b"\t")
        mode, kind, blob, size_text = meta.decode().split()
        path = raw_path.decode("utf-8", "surrogateescape")
        if kind != "blob" or mode == GITLINK_MODE or not wanted(path):
            continue
        found[path] = (mode, blob, int(size_text) if size_text.isdigit() else 0)
    return found


class TreeReader:
    """``read(sha) -> {path: FileEntry}``, incrementally from the previous read of ``source``
    (sharing its blob cache; a first read, or any read after a failure, is a full read)."""

    def __init__(self, source: GitSource) -> None:
        self.source = source
        self._objects = source.git_dir / "objects"
        self._last: tuple[str, dict[str, Entry]] | None = None
        self._hints: dict[str, tuple[str, list[Change]]] = {}
        self.full_reads = 0
        """How many reads listed the whole tree (for tests and the benchmark)."""
        self.diff_calls = 0
        """How many diffs needed their own ``git diff-tree`` (no hint from the listing)."""
        self.cat_file_calls = 0
        """How many times blobs had to come from ``git cat-file`` (not loose)."""
        self._change: tuple[str, str, tuple[str, ...]] | None = None

    def read(self, sha: str) -> dict[str, FileEntry]:
        return {path: entry for path, (_, entry) in self.read_with_ids(sha).items()}

    def read_with_ids(self, sha: str) -> dict[str, Entry]:
        last = self._last
        if last is not None and last[0] == sha:
            return dict(last[1])
        files: dict[str, Entry] | None = None
        self._change = None
        if last is not None:
            try:
                files, paths = self._advance(last[1], last[0], sha)
                self._change = (last[0], sha, paths)
            except GitError:
                # Start again from a full listing; if git is really broken that raises too.
                self._last = None
        if files is None:
            self.full_reads += 1
            files = dict(self.source.read_tree_with_ids(sha))
        self._last = (sha, files)
        return dict(files)

    def changed_paths(self, base: str, sha: str) -> list[str] | None:
        """The config paths (the path rule's) that may differ between the trees of ``base``
        and ``sha``: what the read of ``sha`` changed, when it came right after the read
        of ``base``; else None (the caller compares the trees)."""
        change = self._change
        if change is None or change[0] != base or change[1] != sha:
            return None
        return list(change[2])

    def hint(self, sha: str, parent: str, changes: list[Change]) -> None:
        """What commit ``sha`` changed against its (only) parent, already known from the
        ``git log --raw`` that listed it: the next read of ``sha`` then needs no git call
        for the diff. Only the latest few hints are kept."""
        self._hints[sha] = (parent, changes)
        while len(self._hints) > 256:
            self._hints.pop(next(iter(self._hints)))

    # -- internals ------------------------------------------------------------------------

    def _advance(
        self, base: dict[str, Entry], old: str, new: str
    ) -> tuple[dict[str, Entry], tuple[str, ...]]:
        """The tree of ``new`` from ``base``, the tree of ``old``, and the config paths
        the commit touched (added, changed, gone)."""
        hinted = self._hints.pop(new, None)
        if hinted is not None and hinted[0] == old:
            changes = hinted[1]
        else:
            self.diff_calls += 1
            out = self.source.git_bytes(
                [
                    "diff-tree",
                    "-r",
                    "-z",
                    "--no-renames",
                    "--no-commit-id",
                    "--end-of-options",
                    old,
                    new,
                ],
                None,
            )
            changes = parse_raw(out.decode("utf-8", "replace").split("\0"))
        files = dict(base)
        changed: dict[str, tuple[str, str]] = {}  # path -> (mode, blob) after the commit
        for path, new_mode, new_blob, status in changes:
            files.pop(path, None)
            if not status.startswith("D") and new_mode != GITLINK_MODE and wanted(path):
                changed[path] = (new_mode, new_blob)
        blobs = self._sizes_and_data(
            {blob for mode, blob in changed.values() if mode != SYMLINK_MODE}
        )
        for path, (mode, blob) in changed.items():
            size, data = blobs.get(blob, (0, b""))
            files[path] = (blob, entry(mode, size, data))
        return files, tuple(sorted({path for path, *_ in changes if wanted(path)}))

    def _sizes_and_data(self, blobs: set[str]) -> dict[str, tuple[int, bytes]]:
        """(size, bytes) of each blob: from the cache, its loose object file, or git."""
        cache = self.source.blobs
        limit = max_file_bytes()
        found: dict[str, tuple[int, bytes]] = {}
        missing = []
        for blob in sorted(blobs):
            data = cache.get(blob)
            if data is None:
                data = self._loose_blob(blob)
                if data is not None and len(data) <= limit:
                    cache.put(blob, data)
            if data is None:
                missing.append(blob)
            else:
                found[blob] = (len(data), data if len(data) <= limit else b"")
        if missing:
            self.cat_file_calls += 1
            found |= cat_blobs(self.source.git_bytes, missing, cache)
        return found

    def _loose_blob(self, blob: str) -> bytes | None:
        """The blob from its loose object file, or None if it is not loose (packed).

        A fetch of a few commits stores the new objects loose (fewer than
        ``fetch.unpackLimit``, 100 by default), so reading them here saves the
        ``cat-file`` process on the webhook's path. The object id is checked against the
        content, as git itself would, so a damaged file is never taken for the blob.
        """
        return read_loose(self._objects, blob, b"blob")
