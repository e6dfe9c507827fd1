"""Suite-wide pytest setup: the real-server fixtures and the no-silent-skip rule.

The server fixtures (``pg_url``, ``pg_db_url``, ``redis_url``, ``redis_prefix``,
``amqp_url``, ``amqp_exchange``, ``store_url``) live in ``tests/servers.py`` and are
registered here so unit, acceptance and integration tests can all ask for them.

Under ``CI=true`` a skipped ``integration`` test is reported as a failure (STYLE.md §13):
a CI run that quietly skipped every database test would prove nothing.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

pytest_plugins = ["tests.servers"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and os.environ.get("CI", "").lower() == "true"
        and item.get_closest_marker("integration") is not None
    ):
        report.outcome = "failed"
        report.longrepr = f"integration test skipped under CI=true: {report.longrepr}"
    return report
