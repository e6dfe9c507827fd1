"""AmqpPublisher / AmqpConsumer against a real RabbitMQ."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pika
import pytest
from tests.integration.reconciler_infra._support import TcpProxy
from tests.servers import free_port

from configctl.adapters.amqp import AmqpConsumer, AmqpPublisher
from configctl.adapters.log_notifier import LogNotifier
from configctl.errors import BrokerError

pytestmark = pytest.mark.integration


@pytest.fixture
def publisher(amqp_url: str, amqp_exchange: str) -> Iterator[AmqpPublisher]:
    p = AmqpPublisher(amqp_url, amqp_exchange)
    yield p
    p.close()


def test_publish_confirm_consume(publisher: AmqpPublisher, amqp_url: str, amqp_exchange: str) -> None:
    with AmqpConsumer(amqp_url, amqp_exchange, binding_key="billing.*") as consumer:
        ids = [str(uuid.uuid4()) for _ in range(3)]
        for i, mid in enumerate(ids):
            publisher.publish("billing.prod", json.dumps({"n": i}).encode(), mid)
        publisher.publish("search.prod", b"{}", str(uuid.uuid4()))  # not bound by this consumer
        got = consumer.drain(timeout=1.0)
    assert [m.message_id for m in got] == ids  # in order
    assert [json.loads(m.body)["n"] for m in got] == [0, 1, 2]
    assert {m.routing_key for m in got} == {"billing.prod"}


def test_exchange_is_durable_topic_and_messages_persistent(publisher: AmqpPublisher, amqp_url: str, amqp_exchange: str) -> None:
    publisher.connect()
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        ch = conn.channel()
        # passive re-declare with the same attributes succeeds only if they match
        ch.exchange_declare(amqp_exchange, exchange_type="topic", durable=True, passive=True)
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, amqp_exchange, routing_key="#")
        mid = str(uuid.uuid4())
        publisher.publish("billing.prod", b'{"x":1}', mid)
        method: Any = None
        props: Any = None
        body: Any = None
        deadline = time.monotonic() + 5
        while method is None and time.monotonic() < deadline:
            method, props, body = ch.basic_get(q, auto_ack=True)
            if method is None:
                conn.sleep(0.05)
        assert method is not None
        assert props.delivery_mode == 2
        assert props.message_id == mid
        assert props.content_type == "application/json"
        assert body == b'{"x":1}'
    finally:
        conn.close()


def test_duplicate_ids_are_visible_to_consumers(publisher: AmqpPublisher, amqp_url: str, amqp_exchange: str) -> None:
    """At-least-once: a re-published message arrives twice with the same id; consumers dedupe."""
    with AmqpConsumer(amqp_url, amqp_exchange) as consumer:
        mid = str(uuid.uuid4())
        publisher.publish("billing.prod", b"{}", mid)
        publisher.publish("billing.prod", b"{}", mid)
        got = consumer.drain(timeout=1.0)
    assert [m.message_id for m in got] == [mid, mid]
    assert len({m.message_id for m in got}) == 1


def test_unroutable_is_accepted_and_counted(publisher: AmqpPublisher) -> None:
    # nobody is bound to this fresh exchange: accepted by the broker, routed nowhere
    publisher.publish("nobody.listens", b"{}", str(uuid.uuid4()))
    assert publisher.unroutable == 1


def test_durable_named_queue_collects_while_consumer_is_away(publisher: AmqpPublisher, amqp_url: str, amqp_exchange: str) -> None:
    queue = f"{amqp_exchange}.sdk"
    first = AmqpConsumer(amqp_url, amqp_exchange, binding_key="billing.#", queue=queue, durable=True)
    first.close()  # the queue stays, nobody consumes
    mid = str(uuid.uuid4())
    publisher.publish("billing.prod", b"{}", mid)
    second = AmqpConsumer(amqp_url, amqp_exchange, binding_key="billing.#", queue=queue, durable=True)
    try:
        got = second.get(timeout=3)
        assert got is not None
        assert got.message_id == mid
    finally:
        second._channel.queue_delete(queue)
        second.close()


def test_closed_port_raises_broker_error_without_secrets() -> None:
    p = AmqpPublisher(f"amqp://guest:sup3rsecret@127.0.0.1:{free_port()}/%2F")
    started = time.monotonic()
    with pytest.raises(BrokerError) as info:
        p.publish("a.b", b"{}", str(uuid.uuid4()))
    assert time.monotonic() - started < 10
    assert "sup3rsecret" not in str(info.value)
    p.close()


def test_connection_loss_is_healed_on_the_next_publish_and_an_outage_raises(amqp_url: str, amqp_exchange: str) -> None:
    parts = urlsplit(amqp_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5672))
    proxied = parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}").geturl()
    p = AmqpPublisher(proxied, amqp_exchange)
    try:
        with AmqpConsumer(amqp_url, amqp_exchange) as consumer:
            p.publish("a.b", b"{}", "m1")
            proxy.cut()  # the broker "restarts" under an open connection
            time.sleep(0.1)
            # the dead kept connection is noticed and replaced: no error, nothing lost
            p.publish("a.b", b"{}", "m2")
            proxy.target = ("127.0.0.1", free_port())  # now the broker is really unreachable
            proxy.cut()
            time.sleep(0.1)
            with pytest.raises(BrokerError):
                p.publish("a.b", b"{}", "m3")
            got = [m.message_id for m in consumer.drain(timeout=1.0)]
        assert got == ["m1", "m2"]
    finally:
        p.close()
        proxy.close()


def test_an_idle_connection_closed_by_missed_heartbeats_does_not_fail_a_publish(amqp_url: str, amqp_exchange: str) -> None:
    """BlockingConnection answers heartbeats only during I/O: idle for two heartbeats, the
    broker closes it. The next publish must still go through (reconnect), not fail."""
    sep = "&" if "?" in amqp_url else "?"
    p = AmqpPublisher(f"{amqp_url}{sep}heartbeat=1", amqp_exchange)
    try:
        with AmqpConsumer(amqp_url, amqp_exchange) as consumer:
            p.publish("a.b", b"{}", "m1")
            time.sleep(4)
            p.publish("a.b", b"{}", "m2")
            assert [m.message_id for m in consumer.drain(timeout=1.0)] == ["m1", "m2"]
            # keepalive() answers heartbeats, so an idle caller keeps its connection
            for _ in range(8):
                time.sleep(0.5)
                assert p.keepalive()
            p.publish("a.b", b"{}", "m3")
            assert [m.message_id for m in consumer.drain(timeout=1.0)] == ["m3"]
    finally:
        p.close()


def test_log_notifier(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="configctl.notifications")
    n = LogNotifier()
    n.publish("billing.prod", json.dumps({"version": 4, "previous_version": 3, "reason": "commit", "changed_keys": ["a", "b"]}).encode(), "id-1")
    n.publish("billing.prod", b"garbage", "id-2")
    assert "billing.prod version 4 (previous 3, reason commit, 2 keys) id=id-1" in caplog.text
    assert "id=id-2" in caplog.text
