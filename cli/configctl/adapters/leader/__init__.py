"""Single-leader election: a PostgreSQL advisory lock (:mod:`.advisory`), a file lock
(:mod:`.file`), or a Kubernetes Lease (:mod:`.lease`, the ``lease`` extra).

All three satisfy :class:`configctl.core.ports.Leader`. None of them is *safety* on its
own -- a lock can vanish without the holder noticing until its next round trip
(reliability-notes §0.6, §2.2): ``pg_terminate_backend``, a server restart, an idle-session
timeout or a network partition frees a session lock at once while the old holder's
connection still looks open. So:

1. on acquiring, each calls the injected ``acquire_epoch()`` -- the store's
   ``SqlStore.acquire_epoch(name, holder)``, which increments the leader epoch -- and
   keeps the epoch; every write transaction of the reconciler carries it and the store
   refuses a stale one (``FencingError``). That is the guarantee;
2. ``check()`` re-verifies the lock before each unit of work, so a deposed leader stops
   early instead of failing at its next write. That is the courtesy.

The lock name is a compatibility contract: two versions of the reconciler that derive
different locks from it would both lead (cert-manager PR #3187); see
:func:`configctl.adapters.leader.advisory.advisory_lock_key`.

Each module imports its client library (psycopg, kubernetes) only where it is used, so
importing this package stays cheap and the Lease needs its extra only when chosen.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

__all__ = ["AcquireEpoch", "default_identity"]

AcquireEpoch = Callable[[], int]
"""Takes the store's next leader epoch (``SqlStore.acquire_epoch``) on acquiring."""


def default_identity() -> str:
    """``<hostname>-<pid>``: unique per process, readable in ``pg_stat_activity`` and Leases."""
    return f"{socket.gethostname()}-{os.getpid()}"
