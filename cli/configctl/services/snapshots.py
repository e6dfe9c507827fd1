"""Keep a snapshot cache equal to the store's versions in service (the embedded mode's half
of what the reconciler does for Redis).

``configctl apply`` calls :func:`export_snapshots` after it wrote versions, so the
embedded default's snapshot folder (``<repo>/.configctl/snapshots``) always holds what
the store serves (values and rollouts, as the reconciler writes them to Redis) and a
:class:`configctl.client.ConfigClient` can read it with no server running. Cheap at any size: only version heads are read from the store, and a snapshot
only for pairs that were just written or are missing or older in the cache.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from configctl.core.cache import CachedSnapshot, SnapshotCache
from configctl.core.ports import SnapshotSource

__all__ = ["SnapshotSource", "export_snapshots"]

def export_snapshots(
    store: SnapshotSource,
    cache: SnapshotCache,
    *,
    now: datetime,
    written: Collection[tuple[str, str]] = (),
) -> int:
    """Write every pair the cache lacks or holds older, plus ``written``; return the count."""
    present = cache.versions()
    count = 0
    for (app, env), head in sorted(store.latest_heads().items()):
        if (app, env) not in written and present.get((app, env), 0) >= head.number:
            continue
        record = store.get_version(app, env, head.number)
        if record is None:
            continue
        snapshot = CachedSnapshot(
            app=app,
            env=env,
            version=record.number,
            commit=record.commit_sha,
            checksum=record.checksum,
            values=record.values,
            updated_at=now,
            rollouts=tuple(record.rollouts),
        )
        if cache.put(snapshot):
            count += 1
    return count
