"""Client reports (core.clients) and the status summary (services.clients) against a fake port."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from configctl.core.clients import ClientReport, decode_report, encode_report, live_reports
from configctl.errors import CacheError
from configctl.services.clients import clients_summary

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def report(instance: str, version: int | None, *, refused: int | None = None, seen: datetime = NOW) -> ClientReport:
    return ClientReport(
        instance=instance, version=version, since=NOW - timedelta(minutes=5), state="fresh", stale_since=None,
        refused_version=refused, refused_reason="counter: fails `type` of the schema (given schema)" if refused else None,
        seen=seen, ttl=90, host="h", pid=1,
    )  # fmt: skip


def test_report_round_trip_and_expiry() -> None:
    r = report("pod-a", 3, refused=4)
    assert decode_report(encode_report(r)) == r
    dead = report("pod-b", 2, seen=NOW - timedelta(seconds=91))
    assert live_reports([dead, r], NOW) == [r]
    with pytest.raises(ValueError):  # noqa: PT011 - any malformed report
        decode_report('{"instance": "x"}')


class FakePort:
    def __init__(self, reports: list[ClientReport] | None, error: bool = False) -> None:
        self._reports = reports or []
        self._error = error

    def reports(self, app: str, env: str, now: datetime) -> list[ClientReport]:
        if self._error:
            raise CacheError("Redis read failed: ConnectionError")
        return live_reports(self._reports, now)


def test_summary_counts_versions_refusals_and_laggards() -> None:
    s = clients_summary(FakePort([report("a", 3), report("b", 3, refused=4), report("c", 2)]), "checkout", "prod", now=NOW, served_version=3)
    assert s.versions == {3: 2, 2: 1}
    assert [r.instance for r in s.refusals] == ["b"]
    assert [r.instance for r in s.behind] == ["c"]
    doc = s.to_dict()
    assert (doc["count"], doc["versions"], doc["refused"], doc["behind"]) == (3, {"2": 1, "3": 2}, 1, 1)
    down = clients_summary(FakePort(None, error=True), "checkout", "prod", now=NOW)
    assert (down.reachable, down.error) == (False, "Redis read failed: ConnectionError")
