"""Read use cases over one pair's versions: `history` (every version, or one key's values
over time) and `show` (one version's snapshot).

The store has already been opened and the names checked by the caller; this decides what
is read and what "no such version" means.
"""

from __future__ import annotations

from configctl.core.ports import VersionReader
from configctl.core.records import HistoryEntry, VersionEntry, VersionRecord
from configctl.errors import UsageError

__all__ = ["key_history", "version", "versions"]


def versions(
    store: VersionReader, app: str, env: str, *, limit: int | None = None
) -> list[VersionEntry]:
    """The versions of (app, env), newest first, at most ``limit``."""
    return store.list_versions(app, env, limit=limit)


def key_history(
    store: VersionReader, app: str, env: str, key: str, *, limit: int | None = None
) -> list[HistoryEntry]:
    """The versions of (app, env) that changed ``key`` (or a key below it), newest first."""
    entries = store.key_history(app, env, key)
    return entries[:limit] if limit is not None else entries


def version(store: VersionReader, app: str, env: str, number: int | None = None) -> VersionRecord:
    """Version ``number`` of (app, env), or the one in service; a usage error if none."""
    record = store.get_version(app, env, number)
    if record is None:
        what = f"no version {number}" if number is not None else "no version"
        raise UsageError(f"{app}/{env} has {what} in the store", hint="run `configctl apply` first")
    return record
