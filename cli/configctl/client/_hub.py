"""What all clients of one process share: one refresh thread and one RabbitMQ connection.

- :class:`Worker` -- one daemon thread running timed tasks from a heap: every client's
  TTL refresh, the fetches a notification triggers, report renewals. Listeners run on it
  too (keep them short). One thread for every client keeps a process with hundreds of
  clients at two threads.
- :class:`Notifier` -- one pika connection per (AMQP URL, exchange) per process, one
  exclusive auto-delete queue bound to ``<app>.<env>`` for every subscribed pair. It
  reconnects with capped, jittered backoff and, after every (re)connect, asks every
  subscriber for a version check: messages published while it was away are gone with
  the old queue, the check catches what they announced.
- :class:`Hub` -- the registry: which clients watch which (app, env), and the coalesced
  fetch: a notification makes *one* Redis read per (source, app, env) per process, shared
  by every client of the pair in it (a fan-out to 200 clients in 4 processes is 4
  reads, not 200 in the same millisecond).

After ``fork`` the child gets a new hub (threads do not survive a fork).
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from configctl.core.backoff import backoff

__all__ = ["Hub", "Subscriber", "hub"]

log = logging.getLogger("configctl.client")

T = TypeVar("T")


class Subscriber(Protocol):
    """A client as the hub sees it."""

    app: str
    env: str

    @property
    def source_key(self) -> tuple[str, ...]:
        """Clients with equal keys read the same snapshot (a fetch is shared among them)."""
        ...

    @property
    def watermark(self) -> int:
        """The version it serves (0: none)."""
        ...

    @property
    def refused_version(self) -> int | None:
        """The newest version it refused, if any."""
        ...

    def fetch_text(self) -> str | None:
        """Read the snapshot text from the source (raises CacheError)."""
        ...

    def offer_text(self, text: str | None, *, error: str | None, wanted: int | None) -> None:
        """Consider a fetched snapshot (or the fetch's error) and maybe adopt it."""
        ...

    def notified(self, version: int | None) -> bool:
        """Handle a notification itself (True), or let the hub fetch for it (False)."""
        ...


class Worker:
    """One thread running ``fn()`` at given monotonic times; tasks never overlap."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="configctl-client-worker", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], None], delay: float = 0.0) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._heap:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # a task failing must not stop every client's refresh
                log.exception("configctl client task failed")

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    @property
    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread


class Notifier:
    """One RabbitMQ consumer connection for every subscribed (app, env) of a process."""

    def __init__(
        self,
        url: str,
        exchange: str,
        *,
        on_message: Callable[[str, int | None], None],
        on_connected: Callable[[], None],
        rng: random.Random | None = None,
    ) -> None:
        from configctl.adapters.amqp import _parameters

        self._params = _parameters(url)
        # a notification consumer must notice a dead broker quickly to re-check versions
        self._params.heartbeat = min(int(self._params.heartbeat or 10), 10)
        self.exchange = exchange
        self._on_message = on_message
        self._on_connected = on_connected
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._keys: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connection: Any = None
        self._channel: Any = None
        self._queue: str | None = None
        self.connected = threading.Event()
        self.connects = 0
        self._thread = threading.Thread(target=self._run, name="configctl-client-notifier", daemon=True)
        self._thread.start()

    # -- subscriptions (any thread) --------------------------------------------------------

    def subscribe(self, routing_key: str) -> None:
        with self._lock:
            if routing_key in self._keys:
                return
            self._keys.add(routing_key)
            connection = self._connection
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.add_callback_threadsafe(lambda: self._bind(routing_key))

    def unsubscribe(self, routing_key: str) -> None:
        with self._lock:
            self._keys.discard(routing_key)
            connection = self._connection
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.add_callback_threadsafe(lambda: self._unbind(routing_key))

    def _bind(self, key: str) -> None:
        if self._channel is not None and self._queue is not None:
            with contextlib.suppress(Exception):
                self._channel.queue_bind(queue=self._queue, exchange=self.exchange, routing_key=key)
            # a change between the client's first load and this bind would be missed
            self._on_connected()

    def _unbind(self, key: str) -> None:
        if self._channel is not None and self._queue is not None:
            with contextlib.suppress(Exception):
                self._channel.queue_unbind(queue=self._queue, exchange=self.exchange, routing_key=key)

    # -- the connection thread -------------------------------------------------------------

    def _run(self) -> None:
        import pika
        import pika.exceptions

        attempt = 0
        while not self._stop.is_set():
            try:
                connection = pika.BlockingConnection(self._params)
                channel = connection.channel()
                channel.exchange_declare(exchange=self.exchange, exchange_type="topic", durable=True, auto_delete=False)
                queue = channel.queue_declare(queue="", exclusive=True, auto_delete=True).method.queue
                with self._lock:
                    keys = set(self._keys)
                for key in keys:
                    channel.queue_bind(queue=queue, exchange=self.exchange, routing_key=key)
                channel.basic_consume(queue=queue, on_message_callback=self._deliver, auto_ack=True)
                with self._lock:
                    self._connection, self._channel, self._queue = connection, channel, queue
                    missed = self._keys - keys
                for key in missed:  # subscribed while we were binding
                    channel.queue_bind(queue=queue, exchange=self.exchange, routing_key=key)
                attempt = 0
                self.connects += 1
                self.connected.set()
                log.info("configctl client: notifications connected (%d pairs)", len(keys))
                self._on_connected()
                while not self._stop.is_set():
                    connection.process_data_events(time_limit=0.5)
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.info("configctl client: notification connection lost or refused: %s", type(exc).__name__)
            except Exception:
                log.exception("configctl client: notifier failed")
            finally:
                self.connected.clear()
                with self._lock:
                    connection, self._connection, self._channel, self._queue = self._connection, None, None, None
                if connection is not None:
                    with contextlib.suppress(Exception):
                        if connection.is_open:
                            connection.close()
            if self._stop.is_set():
                return
            delay = backoff(attempt, base=0.2, cap=15.0, rng=self._rng)
            attempt += 1
            self._stop.wait(delay)

    def _deliver(self, _channel: Any, method: Any, _properties: Any, body: bytes) -> None:
        version: int | None = None
        try:
            doc = json.loads(body)
            raw = doc.get("version") if isinstance(doc, dict) else None
            version = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
        except ValueError:
            log.warning("configctl client: a notification that is not JSON was ignored")
        self._on_message(str(method.routing_key), version)

    def stop(self) -> None:
        self._stop.set()
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.add_callback_threadsafe(lambda: None)  # wake process_data_events
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


class Hub:
    """The process-wide registry of clients (see the module docstring)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._lock = threading.RLock()
        self._worker: Worker | None = None
        self._notifiers: dict[tuple[str, str], Notifier] = {}
        self._subs: dict[tuple[str, str], list[Subscriber]] = {}
        self._by_notifier: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._owners: dict[int, tuple[tuple[str, str] | None, tuple[str, str]]] = {}
        self._shared: dict[tuple[str, ...], Any] = {}
        self._shared_refs: dict[tuple[str, ...], int] = {}
        self._lkg: dict[str, tuple[int, str]] = {}
        self._validated: dict[tuple[str, str, int, str], str | None] = {}
        self._memo: dict[tuple[object, ...], Any] = {}
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        self.spread = 0.0
        """Seconds: the longest random delay before the fetch a notification triggers."""

    @property
    def worker(self) -> Worker:
        with self._lock:
            if self._worker is None:
                self._worker = Worker()
            return self._worker

    # -- shared resources (Redis pools) ------------------------------------------------------

    def acquire(self, key: tuple[str, ...], make: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._shared:
                self._shared[key] = make()
                self._shared_refs[key] = 0
            self._shared_refs[key] += 1
            return self._shared[key]

    def release(self, key: tuple[str, ...]) -> Any | None:
        """Drop one reference; the resource if that was the last (the caller closes it)."""
        with self._lock:
            self._shared_refs[key] -= 1
            if self._shared_refs[key] > 0:
                return None
            del self._shared_refs[key]
            return self._shared.pop(key)

    # -- per-process memo: one LKG write and one schema check per version --------------------

    def lkg_needed(self, path: str, version: int, checksum: str) -> bool:
        with self._lock:
            if self._lkg.get(path) == (version, checksum):
                return False
            self._lkg[path] = (version, checksum)
            return True

    def memo(self, key: tuple[object, ...], make: Callable[[], T]) -> T:
        """One computation per process for what every client of a pair computes alike
        (parse the fetched text, build the view, diff two versions): a notification to 50
        clients in a process costs one of each, not 50. A failure is not memoized."""
        with self._lock:
            if key in self._memo:
                found: T = self._memo[key]
                return found
        value = make()
        with self._lock:
            if len(self._memo) > 64:
                self._memo.clear()
            self._memo[key] = value
        return value

    def validated(self, key: tuple[str, str, int, str], check: Callable[[], str | None]) -> str | None:
        with self._lock:
            if key in self._validated:
                return self._validated[key]
        result = check()
        with self._lock:
            if len(self._validated) > 256:
                self._validated.clear()
            self._validated[key] = result
        return result

    # -- registration ---------------------------------------------------------------------------

    def register(self, sub: Subscriber, *, amqp: str | None, exchange: str, spread: float = 0.0) -> None:
        pair = (sub.app, sub.env)
        self.spread = spread
        nkey = (amqp, exchange) if amqp else None
        with self._lock:
            self._subs.setdefault(pair, []).append(sub)
            self._owners[id(sub)] = (nkey, pair)
            if nkey is None:
                return
            self._by_notifier.setdefault(nkey, set()).add(pair)
            notifier = self._notifiers.get(nkey)
            if notifier is None:
                notifier = Notifier(
                    nkey[0],
                    exchange,
                    on_message=self._on_message,
                    on_connected=functools.partial(self._on_connected, nkey),
                )
                self._notifiers[nkey] = notifier
        notifier.subscribe(f"{sub.app}.{sub.env}")

    def unregister(self, sub: Subscriber) -> None:
        stop: list[Notifier] = []
        worker: Worker | None = None
        with self._lock:
            nkey, pair = self._owners.pop(id(sub), (None, (sub.app, sub.env)))
            subs = self._subs.get(pair, [])
            with contextlib.suppress(ValueError):
                subs.remove(sub)
            if not subs:
                self._subs.pop(pair, None)
            if nkey is not None:
                still = any(o[0] == nkey and o[1] == pair for o in self._owners.values())
                notifier = self._notifiers.get(nkey)
                if not still and notifier is not None:
                    notifier.unsubscribe(f"{pair[0]}.{pair[1]}")
                    self._by_notifier.get(nkey, set()).discard(pair)
                if notifier is not None and not any(o[0] == nkey for o in self._owners.values()):
                    stop.append(self._notifiers.pop(nkey))
                    self._by_notifier.pop(nkey, None)
            if not self._owners and self._worker is not None:
                worker, self._worker = self._worker, None
        for notifier in stop:
            notifier.stop()
        if worker is not None:
            worker.stop()

    def notifier_connected(self, amqp: str, exchange: str) -> threading.Event | None:
        with self._lock:
            notifier = self._notifiers.get((amqp, exchange))
        return notifier.connected if notifier is not None else None

    # -- notifications -------------------------------------------------------------------------

    def _on_message(self, routing_key: str, version: int | None) -> None:
        app, _, env = routing_key.partition(".")
        # Every process gets the message in the same millisecond; a random delay of up to
        # ``spread`` seconds before its one fetch keeps a fleet's reads off one instant.
        delay = self._rng.uniform(0.0, self.spread) if self.spread > 0 else 0.0
        self.worker.submit(lambda: self.notify((app, env), version), delay=delay)

    def _on_connected(self, nkey: tuple[str, str]) -> None:
        with self._lock:
            pairs = list(self._by_notifier.get(nkey, set()))
        for pair in pairs:
            self.worker.submit(functools.partial(self.notify, pair, None))

    def notify(self, pair: tuple[str, str], version: int | None, attempt: int = 0) -> None:
        """A change of ``pair`` to ``version`` (None: unknown, check) was announced.

        One fetch per source for every client of the pair that is behind; a snapshot
        older than announced (Redis not yet warmed) is retried a few times.
        """
        with self._lock:
            subs = list(self._subs.get(pair, ()))
        groups: dict[tuple[str, ...], list[Subscriber]] = {}
        for sub in subs:
            if version is not None and sub.watermark >= version:
                continue
            if sub.notified(version):
                continue
            groups.setdefault(sub.source_key, []).append(sub)
        for members in groups.values():
            text: str | None = None
            error: str | None = None
            try:
                text = members[0].fetch_text()
            except Exception as exc:  # noqa: BLE001 - the error is recorded by each client, whatever it is
                error = getattr(exc, "message", type(exc).__name__)
            for sub in members:
                sub.offer_text(text, error=error, wanted=version)
            # behind: the snapshot read is older than announced (Redis not warmed yet); a
            # client that refused the announced version is not behind, it said no
            behind = version is not None and any(
                s.watermark < version and (s.refused_version or 0) < version for s in members
            )
            if behind and error is None and attempt < 6:
                self.worker.submit(lambda: self.notify(pair, version, attempt + 1), delay=0.05 * 2**attempt)


_HUB: Hub | None = None
_HUB_LOCK = threading.Lock()


def hub() -> Hub:
    """This process's hub (a new one after ``fork``)."""
    global _HUB
    with _HUB_LOCK:
        if _HUB is None or _HUB.pid != os.getpid():
            _HUB = Hub()
        return _HUB
