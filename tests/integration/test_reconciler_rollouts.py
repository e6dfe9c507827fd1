"""Rollouts through the real reconciler, PostgreSQL, Redis and RabbitMQ.

The reconciler's tick records and announces each schedule stage a rollout reaches (reason
``rollout-stage``, once per stage), the Redis snapshot carries the pair's rollouts, and a
runtime control made with the CLI against the same store reaches Redis and the broker as
a new version (reason ``rollout``). Every wait is bounded and waits on an event.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from jsonschema import Draft202012Validator
from tests.integration.reconciler_harness import (
    CONFIGCTL,
    ConfigRepo,
    ReconcilerProcess,
    StoreView,
    running,
    wait_for,
)
from tests.servers import libpq_url

from configctl.adapters.amqp import AmqpConsumer, Received

pytestmark = pytest.mark.integration

SCHEMA = json.loads(
    (
        Path(__file__).resolve().parents[2] / "schemas" / "v1" / "notification.schema.json"
    ).read_text()
)
VALIDATOR = Draft202012Validator(SCHEMA)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _payloads(consumer: AmqpConsumer, seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    got: list[Received] = consumer.drain(timeout=0.05)
    seen.extend(json.loads(m.body) for m in got)
    return seen


def test_stage_changes_and_controls_reach_redis_and_the_broker(
    tmp_path: Path, pg_db_url: str, redis_url: str, redis_prefix: str, amqp_url: str, amqp_exchange: str,
) -> None:  # fmt: skip
    repo = ConfigRepo(tmp_path / "repo", apps=("billing",))
    store = StoreView(pg_db_url)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    seen: list[dict[str, Any]] = []
    rec = ReconcilerProcess(
        repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, redis=redis_url, redis_prefix=redis_prefix,
        amqp=amqp_url, exchange=amqp_exchange, interval=0.5,
    )  # fmt: skip
    with (
        AmqpConsumer(amqp_url, amqp_exchange, binding_key="billing.prod") as consumer,
        running(rec),
    ):
        rec.wait_role("leader")
        wait_for(lambda: store.versions(), timeout=30, what="the first versions")
        # The rollout lands once the reconciler runs, so its next step is a known few
        # seconds after the first tick that sees it.
        now = datetime.now(UTC)
        rollouts = (
            "rollouts:\n"
            "  bigger-counter:\n"
            "    key: counter\n"
            "    value: 100\n"
            "    environments: [prod]\n"
            "    schedule:\n"
            "      steps:\n"
            f"        - at: {_iso(now - timedelta(hours=1))}\n"
            "          percentage: 1000\n"
            f"        - at: {_iso(now + timedelta(seconds=10))}\n"
            "          percentage: 5000\n"
            f"        - at: {_iso(now + timedelta(days=1))}\n"
            "          percentage: 10000\n"
        )
        sha = repo.commit("rollout bigger-counter", {"apps/billing/rollouts.yaml": rollouts})
        assert rec.webhook(sha) == 202

        def stage(n: int) -> list[dict[str, Any]]:
            return [
                p
                for p in _payloads(consumer, seen)
                if p["reason"] == "rollout-stage" and p["stage"] == n
            ]

        first = wait_for(lambda: stage(1), timeout=30, what="stage 1 announced")
        snap = json.loads(r.get(f"{redis_prefix}:snapshot:billing:prod") or "{}")
        assert [x["name"] for x in snap["rollouts"]] == ["bigger-counter"]
        assert snap["version"] == 2
        msg = first[0]
        VALIDATOR.validate(msg)
        assert (msg["rollout"], msg["version"], msg["previous_version"], msg["percentage"]) == (
            "bigger-counter",
            2,
            2,
            1000,
        )
        assert msg["changed_keys"] == ["counter"]
        # The next step is a few seconds away: its stage is announced once reached, once.
        second = wait_for(lambda: stage(2), timeout=30, what="stage 2 announced")
        assert second[0]["percentage"] == 5000
        assert [a["details"]["stage"] for a in store.audit("rollout.stage")] == [1, 2]
        # dev has no rollouts: its snapshot says so.
        dev = json.loads(r.get(f"{redis_prefix}:snapshot:billing:dev") or "{}")
        assert dev["rollouts"] == []

        # A control through the CLI on the same store: a new version, announced and cached.
        done = subprocess.run(
            [CONFIGCTL, "rollout", "pause", "billing", "prod", "bigger-counter", "--db", libpq_url(pg_db_url),
             "--repo", str(repo.work), "-o", "json"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["version"] == 3
        control = wait_for(
            lambda: [p for p in _payloads(consumer, seen) if p["reason"] == "rollout"],
            timeout=30,
            what="pause announced",
        )[0]
        VALIDATOR.validate(control)
        assert (control["version"], control["action"], control["rollout"]) == (
            3,
            "pause",
            "bigger-counter",
        )

        def cached_paused() -> bool:
            cached = json.loads(r.get(f"{redis_prefix}:snapshot:billing:prod") or "{}")
            return (
                cached.get("version") == 3 and cached["rollouts"][0]["state"]["status"] == "paused"
            )

        wait_for(cached_paused, timeout=30, what="the paused state in Redis")
    stages = [p["stage"] for p in seen if p["reason"] == "rollout-stage"]
    assert stages == [1, 2]  # each stage once, none while paused
