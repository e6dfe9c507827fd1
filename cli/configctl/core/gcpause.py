"""The cyclic garbage collector paused around work that builds many objects and keeps them.

CPython runs a full collection, a walk over every object of the process, each time the
objects that survived grow by a quarter. Parsing a tree of 1,000 apps or planning its
first versions keeps a few hundred thousand objects, so the process walks everything
several times while building them, costing about as much as the building. Paused, the
building is followed by one collection at most. The results are the same; only garbage
that forms reference cycles (none is made here) waits for the collector a little longer.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["collection_paused"]


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Pause the collector for the block, unless someone already did (then leave it so)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
