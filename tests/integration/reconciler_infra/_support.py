"""Helpers for the reconciler-infrastructure integration tests (not collected as tests).

- :class:`FakeOutbox`: an in-memory :class:`configctl.core.ports.OutboxPort` that records
  the order of events, so a test can prove "marked only after the confirm".
- :class:`TcpProxy`: a loopback TCP proxy whose live connections a test can cut, to
  make a real client lose its connection to a real server (reliability-notes §5.2:
  no toxiproxy here).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from configctl.core.records import OutboxRecord
from configctl.errors import StoreError


def notification(app: str, env: str, version: int, *, changed: Sequence[str] = ("a.b",)) -> dict[str, Any]:
    """A payload valid against schemas/v1/notification.schema.json."""
    return {
        "id": str(uuid.uuid4()),
        "app": app,
        "env": env,
        "version": version,
        "previous_version": version - 1 if version > 1 else None,
        "commit": uuid.uuid4().hex + uuid.uuid4().hex[:8],
        "changed_keys": sorted(changed),
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "reason": "commit",
    }


class FakeOutbox:
    """Outbox rows in memory; ``log`` lists ("marked", id) / ("failed", id) in order."""

    def __init__(self) -> None:
        self.rows: dict[int, OutboxRecord] = {}
        self.log: list[tuple[str, Any]] = []
        self.fail_marks = 0
        """Make the next N ``mark_outbox_published`` calls raise StoreError (a crash stand-in)."""
        self._next = 1

    def add(self, app: str, env: str, version: int) -> OutboxRecord:
        payload = notification(app, env, version)
        row = OutboxRecord(
            id=self._next,
            event_id=payload["id"],
            routing_key=f"{app}.{env}",
            payload=payload,
            created_at=datetime.now(UTC),
            published_at=None,
            attempts=0,
            last_error=None,
        )
        self.rows[row.id] = row
        self._next += 1
        return row

    # -- OutboxPort --------------------------------------------------------------------

    def pending_outbox(self, limit: int) -> list[OutboxRecord]:
        pending = [r for r in sorted(self.rows.values(), key=lambda r: r.id) if r.published_at is None]
        return pending[:limit]

    def mark_outbox_published(self, ids: Sequence[int], at: datetime) -> None:
        if self.fail_marks:
            self.fail_marks -= 1
            raise StoreError("store went away before the mark")
        for i in ids:
            self.rows[i] = replace(self.rows[i], published_at=at)
            self.log.append(("marked", i))

    def mark_outbox_failed(self, id: int, error: str) -> None:
        row = self.rows[id]
        self.rows[id] = replace(row, attempts=row.attempts + 1, last_error=error)
        self.log.append(("failed", id))

    # -- helpers -------------------------------------------------------------------------

    def published(self) -> list[int]:
        return [r.id for r in sorted(self.rows.values(), key=lambda r: r.id) if r.published_at is not None]


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; :meth:`cut` resets every live connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()
