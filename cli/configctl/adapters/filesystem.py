"""The working tree of a config repository as a snapshot ``{relative path: FileEntry}``.

Reads every ``.yaml``, ``.yml`` and ``.json`` file below the root, skipping hidden
folders (``.git``, ``.configctl``) and never following symlinks: a symlink is reported as
such (the core rejects it) and its target is not read. Files above the size bound are
reported by size, not read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from configctl.core.model import FileEntry
from configctl.core.parse import MAX_FILE_BYTES
from configctl.errors import UsageError

SUFFIXES = (".yaml", ".yml", ".json")


def read_tree(root: Path) -> dict[str, FileEntry]:
    if not root.exists():
        raise UsageError(f"{root}: no such directory")
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory")
    out: dict[str, FileEntry] = {}

    def unreadable(exc: OSError) -> None:
        # os.walk skips a folder it cannot list unless told otherwise: never silently.
        raise UsageError(f"{exc.filename or root}: cannot read: {exc.strerror}") from exc

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        base = Path(dirpath)
        for d in list(dirnames):
            if (base / d).is_symlink():
                rel = (base / d).relative_to(root).as_posix()
                out[rel + "/"] = FileEntry(symlink=True)
                dirnames.remove(d)
        for name in filenames:
            if not name.endswith(SUFFIXES):
                continue
            full = base / name
            rel = full.relative_to(root).as_posix()
            try:
                st = full.lstat()
                if stat.S_ISLNK(st.st_mode):
                    out[rel] = FileEntry(symlink=True)
                    continue
                if st.st_size > MAX_FILE_BYTES:
                    out[rel] = FileEntry(size=st.st_size)  # not read; the core reports the size
                    continue
                fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
                with os.fdopen(fd, "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                raise UsageError(f"{rel}: cannot read: {exc.strerror}") from exc
            out[rel] = FileEntry(data=data, size=len(data))
    return out


def find_root(start: Path) -> Path:
    """The repository root: ``start`` itself (the CLI never walks upward silently)."""
    return start
