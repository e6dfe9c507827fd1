"""The outbox relay: publish pending change notifications, mark each only after its confirm.

The outbox rows were written in the same transaction as the versions they announce, so a
notification can be late but never lost. The relay closes the loop:

1. read up to ``batch`` pending rows, oldest first;
2. publish each (body = the payload as compact JSON, message id = the event id) and wait
   for the publisher's return, which for RabbitMQ means the broker's confirm;
3. only then mark that row published. A crash between 2 and 3 publishes it again on the
   next run: delivery is at-least-once and consumers drop duplicates by id
   (reliability-notes §2.1, §4.1 -- the reverse order, "mark then send", is the bug that
   loses notifications);
4. on the first failure, record the error on that row and stop. Later rows are not
   tried: they may belong to the same (app, env), and a consumer must not see version 8
   before version 7. The caller retries after a backoff (``configctl.core.backoff``).

Rows are marked one by one, right after their confirm, so a crash re-sends at most one
message. The relay talks to ports only; the store and the broker are injected.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from configctl.core.ports import OutboxPort, PublisherPort
from configctl.core.records import OutboxRecord
from configctl.errors import BrokerError

__all__ = ["RelayResult", "encode_payload", "relay_outbox"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayResult:
    """What one relay pass did."""

    published: int
    """Rows confirmed by the broker and marked published in this pass."""
    failed_id: int | None = None
    """The row that could not be published (the pass stopped there), if any."""
    failed_attempts: int = 0
    """That row's attempts including this one: the input to the caller's backoff."""
    error: str | None = None
    """Why it failed (no configuration values in it)."""
    more: bool = False
    """The batch was full and nothing failed: call again at once, more rows may wait."""

    @property
    def ok(self) -> bool:
        return self.failed_id is None


def encode_payload(record: OutboxRecord) -> bytes:
    """The message body of ``record``: its payload as compact, key-sorted UTF-8 JSON.

    Deterministic, so a re-published duplicate is byte-for-byte the same message.
    """
    return json.dumps(
        dict(record.payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def relay_outbox(
    *,
    outbox: OutboxPort,
    publisher: PublisherPort,
    batch: int = 100,
    now: Callable[[], datetime],
    before: Callable[[Sequence[OutboxRecord]], None] | None = None,
) -> RelayResult:
    """Publish up to ``batch`` pending outbox rows in order; see the module docstring.

    Raises only what the outbox raises (``StoreError``): a store failure is the caller's
    backend error to retry. A publisher failure (``BrokerError``) is recorded on the row
    and reported in the result instead, because it is the expected way for this to fail.
    ``before`` sees each batch of rows before any of them is published.
    """
    if batch < 1:
        raise ValueError("batch must be >= 1")
    rows = outbox.pending_outbox(batch)
    if before is not None and rows:
        before(rows)  # e.g. the reconciler warms the cache with what the rows announce
    published = 0
    for row in rows:
        try:
            publisher.publish(row.routing_key, encode_payload(row), row.event_id)
        except BrokerError as exc:
            error = exc.message
            log.warning(
                "outbox row %d (%s, event %s) not published: %s",
                row.id, row.routing_key, row.event_id, error,
            )
            outbox.mark_outbox_failed(row.id, error)
            return RelayResult(
                published=published,
                failed_id=row.id,
                failed_attempts=row.attempts + 1,
                error=error,
            )
        # Confirmed: only now may the row be marked. If this raises, the message goes out
        # again next time -- a duplicate, never a loss.
        outbox.mark_outbox_published([row.id], now())
        published += 1
    return RelayResult(published=published, more=len(rows) >= batch)
