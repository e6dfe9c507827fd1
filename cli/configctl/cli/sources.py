"""Wiring of the CLI to its sources: the working tree, git revisions and the store.

The config repository may be the root of a git work tree or a folder inside one (a
monorepo's `config/`): git revisions are read from objects under that folder's prefix.
"""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from configctl.core.model import FileEntry

if TYPE_CHECKING:
    from configctl.adapters.git import GitSource
    from configctl.adapters.store import SqlStore

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="CONFIGCTL_DB",
        help="Store URL: postgresql://user@host/db, or sqlite:///path (default: <repo>/.configctl/configctl.db).",
        show_default=False,
    ),
]


def git_source(root: Path) -> tuple[GitSource, str]:
    """The git repository holding ``root`` and ``root``'s path inside it ('' at the top)."""
    from configctl.adapters.git import GitSource

    return GitSource.discover(root)


def snapshot(root: Path, rev: str | None) -> dict[str, FileEntry]:
    """The tree at ``rev`` (None: the working tree), paths relative to ``root``."""
    if rev is None:
        from configctl.adapters import filesystem

        return filesystem.read_tree(root)
    source, prefix = git_source(root)
    return strip_prefix(source.read_tree(rev), prefix)


def strip_prefix(files: dict[str, FileEntry], prefix: str) -> dict[str, FileEntry]:
    if not prefix:
        return files
    p = prefix.rstrip("/") + "/"
    return {path[len(p) :]: entry for path, entry in files.items() if path.startswith(p)}


def store_url(root: Path, db: str | None) -> str:
    if db:
        return db
    from configctl.adapters.store import default_sqlite_url

    return default_sqlite_url(root)


def open_store(root: Path, db: str | None, *, migrate: bool = True) -> SqlStore:
    """Open the store; the embedded SQLite default migrates itself on first use."""
    from configctl.adapters.store import SqlStore

    url = store_url(root, db)
    store = SqlStore(url)
    if migrate and url.startswith("sqlite"):
        store.ensure_schema()
    return store


def actor() -> str:
    """Who runs the command: CONFIGCTL_ACTOR, else the OS user."""
    explicit = os.environ.get("CONFIGCTL_ACTOR")
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def host() -> str:
    return socket.gethostname()


def export_snapshots(root: Path, db: str | None, store: SqlStore, written: list[tuple[str, str]]) -> None:
    """Keep the embedded default's snapshot folder current, so a ConfigClient started in
    ``root`` (or with ``CONFIGCTL_REPO``) reads what the store serves with no server up.

    Only for the embedded store (no ``--db``), or when ``CONFIGCTL_SNAPSHOT_DIR`` names a
    folder; a failure is a warning, never a failed apply (the store is the authority).
    """
    from datetime import UTC, datetime

    from configctl.adapters.redis_cache import SnapshotDir
    from configctl.errors import ConfigctlError
    from configctl.services.snapshots import export_snapshots as export

    folder = os.environ.get("CONFIGCTL_SNAPSHOT_DIR")
    if not folder and db:
        return
    try:
        export(store, SnapshotDir(Path(folder) if folder else root / ".configctl" / "snapshots"), now=datetime.now(UTC), written=written)
    except ConfigctlError as exc:
        from configctl.cli import context

        context.print_warning(f"the snapshot folder was not updated: {exc.message}")
