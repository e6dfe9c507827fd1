"""The outbox relay against the fakes: in order, marked only after the confirm, stops at
the first failure and leaves later rows for the next pass."""

from __future__ import annotations

import json

from tests.fakes import FakeClock, FakePublisher, FakeStore, SequentialIds

from configctl.services.record import notification
from configctl.services.relay import relay_outbox


def queue(store: FakeStore, versions: int) -> None:
    ids = SequentialIds()
    with store.unit_of_work() as uow:
        for version in range(1, versions + 1):
            message = notification(
                app="web", env="prod", version=version, previous=version - 1 or None, commit=None,
                keys=["a"], reason="commit", now=store.clock(), new_id=ids,
            )  # fmt: skip
            uow.add_outbox(event_id=message["id"], routing_key="web.prod", payload=message)


def test_rows_are_published_in_order_then_marked() -> None:
    store = FakeStore()
    queue(store, 3)
    publisher = FakePublisher()
    result = relay_outbox(outbox=store, publisher=publisher, batch=2, now=FakeClock())
    assert (result.published, result.ok, result.more) == (2, True, True)
    assert [json.loads(body)["version"] for _key, body, _id in publisher.published] == [1, 2]
    assert [row.published_at is not None for row in store.outbox] == [True, True, False]
    assert relay_outbox(outbox=store, publisher=publisher, now=FakeClock()).published == 1


def test_a_broker_failure_stops_the_pass_and_counts_an_attempt() -> None:
    store = FakeStore()
    queue(store, 3)
    publisher = FakePublisher(fail_after=1)
    result = relay_outbox(outbox=store, publisher=publisher, now=FakeClock())
    assert (result.published, result.failed_id, result.failed_attempts) == (1, 2, 1)
    assert [(row.attempts, row.published_at is None) for row in store.outbox] == [
        (0, False),
        (1, True),
        (0, True),
    ]
    publisher.fail_after = None
    again = relay_outbox(outbox=store, publisher=publisher, now=FakeClock())
    assert (again.published, again.ok) == (2, True)
    assert [json.loads(body)["version"] for _key, body, _id in publisher.published] == [1, 2, 3]
