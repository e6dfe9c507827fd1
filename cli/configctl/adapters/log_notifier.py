"""The embedded mode's notifier: change notifications as log lines, no broker.

It satisfies ``PublisherPort`` (``core.ports``) like ``AmqpPublisher``, so the outbox
relay runs unchanged whichever one is wired in.
"""

from __future__ import annotations

import json
import logging

__all__ = ["LogNotifier"]


class LogNotifier:
    """The embedded mode's notifier: one log line per change instead of a broker message.

    Satisfies the same publisher port, so the outbox relay runs unchanged. The payload
    names changed keys, never values, so logging it is safe.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("configctl.notifications")

    def publish(self, routing_key: str, body: bytes, message_id: str) -> None:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            self._log.info(
                "config changed: %s version %s (previous %s, reason %s, %d keys) id=%s",
                routing_key,
                payload.get("version"),
                payload.get("previous_version"),
                payload.get("reason"),
                len(payload.get("changed_keys") or ()),
                message_id,
            )
        else:
            self._log.info("config changed: %s id=%s", routing_key, message_id)

    def close(self) -> None:
        """Nothing to release."""
