"""relay_outbox with an in-memory outbox and a real RabbitMQ publisher and consumer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from tests.integration.reconciler_infra._support import FakeOutbox
from tests.servers import free_port

from configctl.adapters.amqp import AmqpConsumer, AmqpPublisher
from configctl.errors import BrokerError, StoreError
from configctl.services.relay import relay_outbox

pytestmark = pytest.mark.integration

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "schemas" / "v1" / "notification.schema.json").read_text()
)


def now() -> datetime:
    return datetime.now(UTC)


class Recording:
    """Wraps a publisher; appends ("confirmed", message_id) to the shared log after each return."""

    def __init__(self, inner: Any, log: list[tuple[str, Any]], ids: dict[str, int]) -> None:
        self.inner = inner
        self.log = log
        self.ids = ids

    def publish(self, routing_key: str, body: bytes, message_id: str) -> None:
        self.inner.publish(routing_key, body, message_id)
        self.log.append(("confirmed", self.ids[message_id]))


@pytest.fixture
def publisher(amqp_url: str, amqp_exchange: str) -> Iterator[AmqpPublisher]:
    p = AmqpPublisher(amqp_url, amqp_exchange)
    yield p
    p.close()


@pytest.fixture
def consumer(amqp_url: str, amqp_exchange: str) -> Iterator[AmqpConsumer]:
    with AmqpConsumer(amqp_url, amqp_exchange, binding_key="#") as c:
        yield c


def test_rows_are_marked_only_after_their_confirm(publisher: AmqpPublisher, consumer: AmqpConsumer) -> None:
    outbox = FakeOutbox()
    rows = [outbox.add("billing", "prod", v) for v in (1, 2, 3)] + [outbox.add("search", "dev", 1)]
    ids = {r.event_id: r.id for r in rows}
    result = relay_outbox(outbox=outbox, publisher=Recording(publisher, outbox.log, ids), now=now)
    assert result.ok
    assert result.published == 4
    assert not result.more
    assert outbox.published() == [r.id for r in rows]
    for row in rows:
        assert outbox.log.index(("confirmed", row.id)) < outbox.log.index(("marked", row.id))

    got = consumer.drain(timeout=1.0)
    assert [m.message_id for m in got] == [r.event_id for r in rows]
    assert [m.routing_key for m in got] == ["billing.prod"] * 3 + ["search.dev"]
    validator = Draft202012Validator(SCHEMA)
    for message, row in zip(got, rows, strict=True):
        payload = json.loads(message.body)
        validator.validate(payload)
        assert payload == row.payload
        assert payload["id"] == message.message_id


def test_unreachable_broker_marks_nothing_and_records_the_error(consumer: AmqpConsumer, amqp_url: str, amqp_exchange: str) -> None:
    outbox = FakeOutbox()
    rows = [outbox.add("billing", "prod", v) for v in (1, 2)]
    dead = AmqpPublisher(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", amqp_exchange)
    result = relay_outbox(outbox=outbox, publisher=dead, now=now)
    dead.close()
    assert not result.ok
    assert result.published == 0
    assert result.failed_id == rows[0].id
    assert result.failed_attempts == 1
    assert result.error
    assert outbox.published() == []
    assert outbox.log == [("failed", rows[0].id)]  # stopped at the first row: order kept
    assert outbox.rows[rows[0].id].attempts == 1
    assert outbox.rows[rows[0].id].last_error
    assert outbox.rows[rows[1].id].attempts == 0

    # the broker is back: everything goes out, in order
    live = AmqpPublisher(amqp_url, amqp_exchange)
    try:
        result = relay_outbox(outbox=outbox, publisher=live, now=now)
    finally:
        live.close()
    assert result.ok
    assert result.published == 2
    assert [m.message_id for m in consumer.drain(timeout=1.0)] == [r.event_id for r in rows]


def test_failure_in_the_middle_keeps_order(publisher: AmqpPublisher) -> None:
    outbox = FakeOutbox()
    rows = [outbox.add("billing", "prod", v) for v in (1, 2, 3)]

    class FailSecond:
        calls = 0

        def publish(self, routing_key: str, body: bytes, message_id: str) -> None:
            self.calls += 1
            if self.calls == 2:
                raise BrokerError("nacked")
            publisher.publish(routing_key, body, message_id)

    result = relay_outbox(outbox=outbox, publisher=FailSecond(), now=now)
    assert result.published == 1
    assert result.failed_id == rows[1].id
    assert outbox.published() == [rows[0].id]  # row 3 was not tried


def test_crash_between_confirm_and_mark_duplicates_never_loses(publisher: AmqpPublisher, consumer: AmqpConsumer) -> None:
    outbox = FakeOutbox()
    row = outbox.add("billing", "prod", 1)
    outbox.fail_marks = 1
    with pytest.raises(StoreError):
        relay_outbox(outbox=outbox, publisher=publisher, now=now)
    assert outbox.published() == []
    result = relay_outbox(outbox=outbox, publisher=publisher, now=now)
    assert result.published == 1
    got = consumer.drain(timeout=1.0)
    assert [m.message_id for m in got] == [row.event_id, row.event_id]  # delivered twice...
    assert len({m.message_id for m in got}) == 1  # ...one event after de-duplication by id


def test_batches(publisher: AmqpPublisher, consumer: AmqpConsumer) -> None:
    outbox = FakeOutbox()
    for v in range(1, 6):
        outbox.add("billing", "prod", v)
    first = relay_outbox(outbox=outbox, publisher=publisher, batch=3, now=now)
    assert (first.published, first.more) == (3, True)
    second = relay_outbox(outbox=outbox, publisher=publisher, batch=3, now=now)
    assert (second.published, second.more) == (2, False)
    assert len(consumer.drain(timeout=1.0)) == 5
