"""Wiring of the CLI to its sources: the working tree, git revisions and the store.

The config repository may be the root of a git work tree or a folder inside one (a
monorepo's `config/`): git revisions are read from objects under that folder's prefix.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from configctl.core.model import FileEntry
from configctl.errors import UsageError

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
    """``files`` read from git, with paths relative to the config folder ``prefix``."""
    from configctl.services.resolution import strip_prefix as strip

    return strip(files, prefix)


def store_url(root: Path, db: str | None) -> str:
    if db:
        return db
    from configctl.adapters.store import default_sqlite_url

    return default_sqlite_url(root)


StoreMode = Literal["read", "write", "create"]
"""How a command uses the store: ``read`` it (history, show, audit, status), ``write`` to
one that must already hold versions (rollback, release), or ``create`` it on first use
(apply, db upgrade)."""


def open_store(
    root: Path | None,
    db: str | None,
    *,
    migrate: bool = True,
    mode: StoreMode = "create",
    missing_ok: bool = False,
) -> SqlStore:
    """Open the store, checking a SQLite path first so a mistake is a usage error (exit 2)
    that names the path and creates nothing.

    The embedded default (``<repo>/.configctl/configctl.db``) is created and migrated by
    the commands that create; before it exists, the others read an empty store in memory
    instead of leaving a stray ``.configctl/`` behind. An explicit ``--db`` file must
    exist unless the command creates it or is ``missing_ok`` (`status` reports "nothing
    applied yet" for a store that is still to be created), and its folder always must.
    """
    from configctl.adapters.store import SqlStore
    from configctl.adapters.store.engine import default_sqlite_path, sqlite_file

    if db:
        url = db
        path = sqlite_file(db)  # a malformed or unsupported URL is a usage error here
        explicit = True
    elif root is not None:
        path = default_sqlite_path(root)
        url = f"sqlite:///{path}"
        explicit = False
    else:
        raise UsageError(
            "no store: not inside a configctl repository and no --db given",
            hint="pass --db postgresql://... (or CONFIGCTL_DB), or --repo PATH",
        )
    if path is not None and not _check_sqlite_path(path, explicit=explicit, mode=mode, missing_ok=missing_ok):
        return SqlStore.empty()
    store = SqlStore(url)
    if migrate and url.startswith("sqlite"):
        store.ensure_schema()
    return store


@contextlib.contextmanager
def store_for(
    root: Path | None,
    db: str | None,
    *,
    mode: StoreMode,
    app: str | None = None,
    env: str | None = None,
    missing_ok: bool = False,
) -> Iterator[SqlStore]:
    """The store a command works on, closed when the command is done with it.

    ``app``/``env`` (when given) must be names the repository or the store knows: an
    unknown one is a usage error (exit 2) with a did-you-mean, before anything is read.
    """
    store = open_store(root, db, mode=mode, missing_ok=missing_ok)
    try:
        require_names(root, store, app, env)
        yield store
    finally:
        store.close()


def _check_sqlite_path(path: Path, *, explicit: bool, mode: StoreMode, missing_ok: bool) -> bool:
    """False when the store file does not exist yet and may be read as empty."""
    what = f"--db {path}" if explicit else f"store {path}"
    folder = path.parent
    if path.is_dir():
        raise UsageError(f"{what}: is a directory, not a store file")
    if not path.exists():
        if mode != "create":
            if not explicit or (missing_ok and folder.is_dir()):
                return False
            raise UsageError(
                f"{what}: no such store file",
                hint="check the path; `configctl apply --db ...` or `configctl db upgrade --db ...` creates one",
            )
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{what}: {folder} is not a directory")
        if explicit and not folder.exists():
            raise UsageError(f"{what}: no such directory {folder}", hint="create the folder first")
        if not explicit:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create {folder}: {exc.strerror}") from exc
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(f"{what}: permission denied: cannot create a file in {folder}")
        return True
    wanted = os.R_OK if mode == "read" else os.R_OK | os.W_OK
    if not os.access(path, wanted):
        raise UsageError(f"{what}: permission denied")
    if mode != "read" and not os.access(folder, os.W_OK | os.X_OK):
        # SQLite's WAL journal lives next to the file
        raise UsageError(f"{what}: permission denied: cannot write in {folder}")
    return True


def known_names(root: Path | None, store: SqlStore | None) -> tuple[list[str], list[str]]:
    """The apps and environments a user may name: the repository's and the store's.

    From the working tree (the folders under ``apps/`` and the environments declared in
    ``configctl.yaml``, in their declared order; nothing else is read, so this stays cheap
    on a large tree) and the store's (app, env) pairs, so an app removed from git keeps
    its history and a store command works with ``--db`` outside any checkout.
    """
    from configctl.core import parse as parse_mod

    apps: set[str] = set()
    envs: list[str] = []
    if root is not None:
        with contextlib.suppress(OSError):
            apps.update(p.name for p in (root / "apps").iterdir() if p.is_dir() and not p.name.startswith("."))
        with contextlib.suppress(OSError):
            doc = parse_mod.parse("configctl.yaml", (root / "configctl.yaml").read_bytes())
            declared = doc.value.get("environments") if isinstance(doc.value, dict) else None
            if isinstance(declared, list):
                envs.extend(e for e in declared if isinstance(e, str) and e not in envs)
    if store is not None:
        pairs = store.latest_heads()
        apps.update(app for app, _ in pairs)
        envs.extend(sorted({env for _, env in pairs} - set(envs)))
    return sorted(apps), envs


def require_names(
    root: Path | None, store: SqlStore | None, app: str | None, env: str | None
) -> None:
    """An unknown app or environment is a usage error (exit 2) with a did-you-mean."""
    from configctl.services.resolution import require_known

    if app is None and env is None:
        return
    apps, envs = known_names(root, store)
    require_known(app, env, apps=apps, environments=envs)


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

    from configctl.adapters.snapshot_dir import SnapshotDir
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
