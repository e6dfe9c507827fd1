"""Integration tests talk to real PostgreSQL, Redis, RabbitMQ and git.

Every test collected under ``tests/integration`` carries the ``integration`` marker, so
``pytest -m "not integration"`` runs without servers and ``-m integration`` selects these.
The fixtures themselves are in ``tests/servers.py`` (registered by ``tests/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)
