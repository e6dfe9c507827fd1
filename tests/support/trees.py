"""Config trees on disk: files from a mapping, copies of the data trees, generated trees.

Paths are relative to the tree's root; ``None`` as content removes the file.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

__all__ = ["DATA_TREES", "copy_data_tree", "write_files", "write_generated_tree"]

DATA_TREES = Path(__file__).resolve().parents[1] / "data" / "trees"


def write_files(root: Path, files: Mapping[str, str | bytes | None]) -> None:
    """Write (or, for ``None``, remove) each file of ``files`` under ``root``."""
    for rel, content in files.items():
        target = root / rel
        if content is None:
            target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")


def copy_data_tree(case: str, dest: Path) -> Path:
    """A copy of ``tests/data/trees/<case>`` (e.g. ``positive/baseline``) at ``dest``,
    without the case's ``expected.json`` (what the test expects is no config file)."""
    shutil.copytree(DATA_TREES / case, dest, dirs_exist_ok=True)
    (dest / "expected.json").unlink(missing_ok=True)
    return dest


def write_generated_tree(root: Path, *, apps: int, groups: int, marker: str = "a") -> int:
    """``apps`` apps without schemas, ``groups`` x 10 keys each, 20 global keys; returns keys per pair.

    Cheap to validate (no app schemas to compile) and heavy to store: the time of `apply`
    is spent inside its transaction, which is what the kill and concurrency tests need.
    """
    files: dict[str, str | bytes | None] = {
        "configctl.yaml": "version: 1\nenvironments: [dev, staging, production]\n",
        "global.yaml": "".join(f"g{i}: {i}\n" for i in range(20)),
    }
    for a in range(apps):
        files[f"apps/app-{a:04d}/app.yaml"] = "description: generated\nowners: [team]\n"
        files[f"apps/app-{a:04d}/values.yaml"] = "".join(
            f"group{g}:\n" + "".join(f"  key{i}: {marker}-{a}-{g}-{i}\n" for i in range(10))
            for g in range(groups)
        )
    write_files(root, files)
    return 20 + groups * 10
