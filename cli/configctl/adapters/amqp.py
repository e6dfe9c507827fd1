"""RabbitMQ (AMQP 0-9-1 via pika): the change-notification publisher and a small consumer.

Topology: one durable topic exchange (``configctl.changes`` by default), routing key
``<app>.<env>``; a subscriber binds its own queue with a pattern such as ``billing.*``
or ``#``. Messages are JSON (``schemas/v1/notification.schema.json``), persistent
(``delivery_mode=2``) and carry the event id as ``message_id``.

Delivery is at-least-once: :meth:`AmqpPublisher.publish` returns only after the broker's
publisher confirm, and the outbox relay marks a row published only after that return.
A crash between the confirm and the mark re-publishes the message; consumers drop the
duplicate by ``message_id``.

pika's ``BlockingConnection`` is not thread-safe: use one publisher per thread (the
relay runs in the reconcile loop's thread). pika is imported inside the classes so that
commands which never publish do not pay for it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from configctl.errors import BrokerError

if TYPE_CHECKING:
    import pika
    from pika.adapters.blocking_connection import BlockingChannel

__all__ = ["DEFAULT_EXCHANGE", "AmqpConsumer", "AmqpPublisher", "Received"]

log = logging.getLogger(__name__)

DEFAULT_EXCHANGE = "configctl.changes"

#: Connection settings applied unless the URL's query string sets them.
#: heartbeat: a dead peer (half-open TCP after a broker crash or a partition) is noticed
#: within ~2 heartbeats instead of the kernel's hours-long keepalive.
#: blocked_connection_timeout: when the broker blocks publishers (memory or disk alarm),
#: basic_publish would wait for the confirm forever; after this many seconds the
#: connection is torn down and publish raises BrokerError, so the loop stays responsive.
#: socket_timeout / stack_timeout: bound connection establishment.
_DEFAULTS: dict[str, int | float] = {
    "heartbeat": 30,
    "blocked_connection_timeout": 30.0,
    "socket_timeout": 5.0,
    "stack_timeout": 10.0,
    "connection_attempts": 1,
}


def _parameters(url: str) -> pika.URLParameters:
    import pika

    try:
        params = pika.URLParameters(url)
    except Exception as exc:  # pika raises ValueError, TypeError or KeyError for bad URLs
        raise BrokerError("the AMQP URL is malformed") from exc
    given = set(parse_qs(urlsplit(url).query))
    for name, value in _DEFAULTS.items():
        if name not in given:
            setattr(params, name, value)
    return params


def _describe(exc: BaseException) -> str:
    """A short, secret-free description of a pika failure (never the URL or body)."""
    name = type(exc).__name__
    text = str(exc)
    # pika messages carry reply codes and texts (e.g. "(404, NOT_FOUND - no exchange ...)"),
    # which help; the URL and credentials never appear in them. Keep it short anyway.
    return f"{name}: {text[:200]}" if text else name


class _Stale(Exception):
    """A publish failed because the channel or connection did; args[0] says how."""


class AmqpPublisher:
    """Publishes persistent messages to a durable topic exchange with publisher confirms.

    ``mandatory``: we publish with ``mandatory=True``. A topic exchange may have no
    queue bound for an (app, env) yet -- nobody subscribes to it -- and then RabbitMQ
    returns the message before confirming it, which pika reports as ``UnroutableError``.
    That is *not* a failure: the broker has accepted the message and there is simply no
    one to deliver it to, which is exactly what ``mandatory=False`` would have done
    silently. Raising would be wrong: the relay stops at the first failure to keep order,
    so one (app, env) without subscribers would hold back every later notification
    forever. So an unroutable message counts as published, but it is counted in
    :attr:`unroutable` and logged at INFO, which ``mandatory=False`` could not tell us
    (reliability-notes §4.1: without ``mandatory`` an unroutable publish vanishes
    without a trace). Subscribers that must not miss anything declare a durable queue
    before the first publish; everyone else re-reads the snapshot on connect.

    A nack, a closed channel or a lost connection raises :class:`BrokerError`; the
    connection is dropped and the next call reconnects (after a broker restart pika only
    notices on the next publish, with ``StreamLostError``).

    A kept connection goes stale while idle: ``BlockingConnection`` answers heartbeats
    only while it does I/O, so after two missed heartbeats without a publish the broker
    closes it, and the next publish would fail with ``StreamLostError`` although the
    broker is fine -- delaying the first notification after every quiet minute by a whole
    retry. So :meth:`publish` services the connection first (heartbeats, a close the
    broker sent) and, if a *reused* connection fails anyway, reconnects and publishes
    once more at once. A fresh connection that fails is a real outage: BrokerError.
    :meth:`keepalive` lets an idle caller answer heartbeats between passes.
    """

    def __init__(
        self,
        url: str,
        exchange: str = DEFAULT_EXCHANGE,
        *,
        app_id: str = "configctl",
    ) -> None:
        self._params = _parameters(url)
        self.exchange = exchange
        self.app_id = app_id
        self.unroutable = 0
        """Messages the broker accepted but routed to no queue (see the class docstring)."""
        self._connection: Any = None
        self._channel: BlockingChannel | None = None
        # BlockingConnection is not thread-safe; the lock turns accidental sharing into
        # serialisation instead of a corrupted frame stream.
        self._lock = threading.Lock()

    def connect(self) -> None:
        """Open the connection, declare the exchange and enable confirms (idempotent)."""
        with self._lock:
            self._ensure_channel()

    def _ensure_channel(self) -> BlockingChannel:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self._drop()
        import pika
        import pika.exceptions

        try:
            connection = pika.BlockingConnection(self._params)
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise BrokerError(
                f"cannot connect to RabbitMQ: {_describe(exc)}",
                hint="notifications wait in the outbox and are sent when RabbitMQ is back",
            ) from exc
        try:
            channel = connection.channel()
            channel.exchange_declare(
                exchange=self.exchange, exchange_type="topic", durable=True, auto_delete=False
            )
            channel.confirm_delivery()
        except (pika.exceptions.AMQPError, OSError) as exc:
            with contextlib.suppress(Exception):
                connection.close()
            raise BrokerError(f"cannot set up the exchange {self.exchange!r}: {_describe(exc)}") from exc
        self._connection = connection
        self._channel = channel
        return channel

    def publish(self, routing_key: str, body: bytes, message_id: str) -> None:
        """Publish one message and return once the broker has confirmed it.

        Raises BrokerError if the broker nacks it, or the channel or connection fails
        before the confirm; the message may or may not have been delivered then, and the
        caller publishes it again.
        """
        import pika

        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message_id,
            app_id=self.app_id,
            timestamp=int(time.time()),
        )
        with self._lock:
            reused = self._channel is not None and self._service()
            try:
                self._publish_once(routing_key, body, message_id, properties)
            except _Stale as exc:
                if not reused:
                    raise BrokerError(f"publishing message {message_id} failed: {exc.args[0]}") from exc.__cause__
                log.info("the kept RabbitMQ connection was stale; reconnecting")
                try:
                    self._publish_once(routing_key, body, message_id, properties)
                except _Stale as again:
                    raise BrokerError(f"publishing message {message_id} failed: {again.args[0]}") from again.__cause__

    def _publish_once(self, routing_key: str, body: bytes, message_id: str, properties: Any) -> None:
        """One attempt; ``_Stale`` if the channel or connection failed (it is dropped)."""
        import pika.exceptions

        channel = self._ensure_channel()
        try:
            channel.basic_publish(
                exchange=self.exchange,
                routing_key=routing_key,
                body=body,
                properties=properties,
                mandatory=True,
            )
        except pika.exceptions.UnroutableError:
            # Returned, then acked: accepted, but no queue is bound for this key.
            self.unroutable += 1
            log.info("notification %s for %s reached no queue", message_id, routing_key)
        except pika.exceptions.NackError as exc:
            raise BrokerError(f"RabbitMQ refused (nacked) message {message_id}") from exc
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._drop()
            raise _Stale(_describe(exc)) from exc

    def _service(self) -> bool:
        """Process pending frames of the kept connection (heartbeats, a close from the
        broker); True if it is still usable, else it is dropped and False."""
        import pika.exceptions

        connection = self._connection
        if connection is None or self._channel is None or not self._channel.is_open:
            self._drop()
            return False
        try:
            connection.process_data_events(time_limit=0)
        except (pika.exceptions.AMQPError, OSError):
            self._drop()
            return False
        if not (connection.is_open and self._channel is not None and self._channel.is_open):
            self._drop()
            return False
        return True

    def keepalive(self) -> bool:
        """Answer heartbeats on an idle connection; True if one is open and healthy.

        Never connects and never raises: a caller that publishes rarely calls this
        between passes so the broker does not close the connection as dead.
        """
        with self._lock:
            return self._service()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                if connection.is_open:
                    connection.close()

    def __enter__(self) -> AmqpPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Received(NamedTuple):
    """One message taken off a queue."""

    routing_key: str
    body: bytes
    message_id: str | None


class AmqpConsumer:
    """Reads notifications from a queue bound to the exchange with ``binding_key``.

    A helper for tests, the benchmark and (later) the SDK. By default it declares a
    server-named, exclusive, auto-deleted queue that lives as long as the connection; pass
    ``queue`` (and ``durable=True``) for a named queue that survives restarts and
    collects messages while nobody is connected. Each message is acknowledged when
    :meth:`get` returns it.
    """

    def __init__(
        self,
        url: str,
        exchange: str = DEFAULT_EXCHANGE,
        *,
        binding_key: str = "#",
        queue: str = "",
        durable: bool = False,
    ) -> None:
        import pika
        import pika.exceptions

        self.exchange = exchange
        self._connection: Any = None
        try:
            self._connection = pika.BlockingConnection(_parameters(url))
            channel = self._connection.channel()
            channel.exchange_declare(
                exchange=exchange, exchange_type="topic", durable=True, auto_delete=False
            )
            result = channel.queue_declare(
                queue=queue, durable=durable, exclusive=not queue, auto_delete=not queue
            )
            self.queue: str = result.method.queue
            channel.queue_bind(queue=self.queue, exchange=exchange, routing_key=binding_key)
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.close()
            raise BrokerError(f"cannot set up a consumer queue: {_describe(exc)}") from exc
        self._channel = channel

    def get(self, timeout: float = 5.0) -> Received | None:
        """The next message, or None if none arrives within ``timeout`` seconds."""
        import pika.exceptions

        deadline = time.monotonic() + timeout
        try:
            while True:
                method, properties, body = self._channel.basic_get(self.queue, auto_ack=False)
                if method is not None:
                    self._channel.basic_ack(method.delivery_tag)
                    return Received(
                        routing_key=str(method.routing_key),
                        body=bytes(body),
                        message_id=properties.message_id,
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                # process_data_events keeps heartbeats going while we wait
                self._connection.process_data_events(time_limit=min(0.05, remaining))
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise BrokerError(f"reading from queue failed: {_describe(exc)}") from exc

    def drain(self, timeout: float = 0.5) -> list[Received]:
        """Every message that arrives until ``timeout`` seconds pass without one."""
        out: list[Received] = []
        while (msg := self.get(timeout)) is not None:
            out.append(msg)
        return out

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                if connection.is_open:
                    connection.close()

    def __enter__(self) -> AmqpConsumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
