"""The client SDK with the real reconciler: ``configctl reconcile`` as a subprocess writes
PostgreSQL, Redis and RabbitMQ; ``ConfigClient`` instances in this process follow it
(issue 9, item 6). ``configctl status APP ENV`` shows what the clients hold.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from tests.integration.reconciler_harness import (
    CONFIGCTL,
    ConfigRepo,
    ReconcilerProcess,
    running,
    wait_for,
)

from configctl.client import ChangeEvent, ConfigClient

pytestmark = pytest.mark.integration

#: The schema the *application* was built for: counter must be an integer. The repository
#: has no schema, so the reconciler accepts a string there; deployed clients must not.
APP_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"counter": {"type": "integer"}}}


def status_json(*args: str) -> dict[str, Any]:
    done = subprocess.run([CONFIGCTL, "status", *args, "-o", "json"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_change_reaches_50_live_clients_and_a_version_failing_the_schema_is_refused(
    tmp_path: Path, pg_db_url: str, redis_url: str, redis_prefix: str, amqp_url: str, amqp_exchange: str,
) -> None:  # fmt: skip
    repo = ConfigRepo(tmp_path / "repo")
    rec = ReconcilerProcess(
        repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, redis=redis_url, redis_prefix=redis_prefix,
        amqp=amqp_url, exchange=amqp_exchange, interval=60,
    )  # fmt: skip
    clients: list[ConfigClient] = []
    with running(rec):
        rec.wait_role("leader")
        args: dict[str, Any] = {
            "redis": redis_url, "redis_prefix": redis_prefix, "amqp": amqp_url, "exchange": amqp_exchange,
            "cache_dir": tmp_path / "lkg", "environ": {}, "refresh_interval": 120, "schema": APP_SCHEMA,
        }  # fmt: skip
        try:
            first = ConfigClient("billing", "prod", **args)
            clients.append(first)
            wait_for(lambda: first.refresh() and first.version == 1, timeout=15, what="the first version in Redis")
            clients += [ConfigClient("billing", "prod", instance_id=f"pod-{i}", **args) for i in range(1, 50)]
            assert all(c.version == 1 for c in clients)
            assert first.wait_connected(10)

            lock = threading.Lock()
            reached: dict[int, ChangeEvent] = {}
            for i, c in enumerate(clients):
                c.on_change(lambda e, i=i: (lock.acquire(), reached.__setitem__(i, e), lock.release()))

            sha = repo.bump("billing", "prod")
            assert rec.webhook(sha) == 202
            wait_for(lambda: len(reached) == 50, timeout=10, what="all 50 clients on version 2")
            assert {e.new_version for e in reached.values()} == {2}
            assert {e.changed_keys for e in reached.values()} == {("counter",)}
            assert all(c.get("counter") == 1 and c.state.fresh for c in clients)

            # status shows the running clients and the versions they hold
            doc = wait_for(
                lambda: (d := status_json("billing", "prod", "--db", pg_db_url, "--redis", redis_url, "--redis-prefix", redis_prefix, "--repo", str(repo.work)))["clients"]["versions"] == {"2": 50} and d,
                timeout=10, what="50 reports of version 2",
            )  # fmt: skip
            assert doc["clients"]["count"] == 50
            assert doc["clients"]["served_version"] == 2
            assert doc["clients"]["refused"] == 0

            # a commit the reconciler accepts but the application's schema does not
            reached.clear()
            bad = repo.commit("billing/prod: counter becomes a word", {"apps/billing/envs/prod.yaml": "counter: soon\n"})
            assert rec.webhook(bad) == 202
            wait_for(lambda: all(c.state.refused_version == 3 for c in clients), timeout=10, what="every client refusing v3")
            assert reached == {}
            assert all(c.version == 2 and c.get("counter") == 1 for c in clients)
            doc = wait_for(
                lambda: (d := status_json("billing", "prod", "--db", pg_db_url, "--redis", redis_url, "--redis-prefix", redis_prefix, "--repo", str(repo.work)))["clients"]["refused"] == 50 and d,
                timeout=10, what="50 refusals in status",
            )  # fmt: skip
            one = doc["clients"]["instances"][0]
            assert (one["version"], one["refused_version"]) == (2, 3)
            assert "counter" in one["refused_reason"]
            assert doc["clients"]["behind"] == 50  # the store serves v3
            text = subprocess.run(
                [CONFIGCTL, "status", "billing", "prod", "--db", pg_db_url, "--redis", redis_url, "--redis-prefix", redis_prefix, "--repo", str(repo.work)],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert text.returncode == 0, text.stderr
            assert "clients of billing/prod:  50 running (v2: 50)" in text.stdout
            assert "REFUSED v3" in text.stdout
        finally:
            for c in clients:
                c.close()
