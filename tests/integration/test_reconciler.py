"""The reconciler end to end, as a user runs it: ``configctl reconcile`` subprocesses against
the real PostgreSQL, Redis and RabbitMQ (issue 4, item 8).

Nothing here is mocked. The shared servers are never stopped or flushed: tests that stop
Redis or RabbitMQ, or PostgreSQL, start a throwaway instance of their own
(``tests.servers``) and stop and start *that* one. Every wait is bounded.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from jsonschema import Draft202012Validator
from tests.integration.reconciler_harness import (
    ConfigRepo,
    ReconcilerProcess,
    StoreView,
    make_ssh_key,
    running,
    wait_for,
)

from configctl.adapters.amqp import AmqpConsumer, Received

pytestmark = pytest.mark.integration

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "v1" / "notification.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)


@pytest.fixture
def repo(tmp_path: Path) -> ConfigRepo:
    return ConfigRepo(tmp_path / "repo")


@pytest.fixture
def consumer(amqp_url: str, amqp_exchange: str) -> Iterator[AmqpConsumer]:
    """A subscriber bound to every (app, env) before anything is published."""
    with AmqpConsumer(amqp_url, amqp_exchange, binding_key="#") as c:
        yield c


def snapshot_version(client: redis.Redis, prefix: str, app: str, env: str) -> int:
    raw = client.get(f"{prefix}:snapshot:{app}:{env}")
    return 0 if raw is None else int(json.loads(raw)["version"])


def collect(consumer: AmqpConsumer, into: list[Received], *, until: float = 0.3) -> list[Received]:
    into.extend(consumer.drain(timeout=until))
    return into


# --------------------------------------------------------------------------- commit → everywhere


def test_commit_reaches_store_redis_and_a_real_consumer(
    tmp_path: Path, repo: ConfigRepo, pg_db_url: str, redis_url: str, redis_prefix: str,
    amqp_url: str, amqp_exchange: str, consumer: AmqpConsumer,
) -> None:  # fmt: skip
    store = StoreView(pg_db_url)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    rec = ReconcilerProcess(
        repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, redis=redis_url, redis_prefix=redis_prefix,
        amqp=amqp_url, exchange=amqp_exchange, interval=60,
    )  # fmt: skip
    with running(rec):
        rec.wait_role("leader")
        # the first pass applies the branch head: 2 apps x 2 envs
        wait_for(lambda: len(store.versions()) == 4, timeout=10, what="initial versions")
        received = wait_for(lambda: len(got := collect(consumer, [])) >= 4 and got, timeout=10, what="initial messages")
        assert sorted(m.routing_key for m in received) == ["billing.dev", "billing.prod", "search.dev", "search.prod"]

        # a merge: with a 60 s poll interval only the webhook can make this quick
        sha = repo.bump("billing", "prod")
        started = time.monotonic()
        assert rec.webhook(sha) == 202
        messages = wait_for(lambda: consumer.drain(timeout=0.05), timeout=5, what="the change notification")
        elapsed = time.monotonic() - started
        assert len(messages) == 1
        msg = messages[0]
        payload = json.loads(msg.body)
        VALIDATOR.validate(payload)
        assert msg.routing_key == "billing.prod"
        assert msg.message_id == payload["id"]
        assert payload["version"] == 2
        assert payload["previous_version"] == 1
        assert payload["commit"] == sha
        assert payload["changed_keys"] == ["counter"]
        assert snapshot_version(r, redis_prefix, "billing", "prod") == 2
        snap = json.loads(r.get(f"{redis_prefix}:snapshot:billing:prod") or "{}")
        assert snap["values"]["counter"] == 1
        assert snap["commit"] == sha
        assert elapsed < 1.0, f"commit → consumer took {elapsed:.2f} s"

        # PostgreSQL holds the version with its audit trail
        assert store.latest("billing", "prod") == 2
        assert store.commit_status(sha) == "applied"
        assert [(a["action"], a["app"], a["env"], a["version"]) for a in store.audit() if a["commit"] == sha] == [
            ("version.created", "billing", "prod", 2),
            ("commit.applied", None, None, None),
        ]
        assert all(published for _, _, published in store.outbox())

        ready = rec.readyz()
        assert ready == {"ready": True, "role": "leader", "store_reachable": True, "degraded": []}
        assert rec.metric("configctl_leader") == 1
        assert rec.metric("configctl_commits_applied_total") == 2
        assert rec.metric("configctl_outbox_backlog") == 0
        # the logs are JSON, one object per line
        assert any(line.get("message", "").startswith("became leader") for line in rec.logs())
    assert rec.proc is not None
    assert rec.proc.returncode == 0  # SIGTERM is a clean stop


# --------------------------------------------------------------------------- webhook


def test_webhook_good_signatures_trigger_a_sync_bad_ones_are_refused(
    tmp_path: Path, repo: ConfigRepo, pg_db_url: str,
) -> None:  # fmt: skip
    store = StoreView(pg_db_url)
    rec = ReconcilerProcess(repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, interval=600)
    with running(rec):
        rec.wait_role("leader")
        wait_for(lambda: len(store.versions()) == 4, timeout=10, what="initial versions")

        # Wrong secret, tampered body, missing proof: 401, and nothing is fetched.
        sha = repo.bump("billing", "dev")
        assert rec.webhook(sha, provider="github", secret="wrong") == 401
        assert rec.webhook(sha, provider="gitea", secret="wrong") == 401
        assert rec.webhook(sha, provider="gitlab", secret="wrong") == 401
        from tests.integration.reconciler_harness import http, push_payload, webhook_headers

        body = push_payload(sha)
        headers = webhook_headers("github", body, "test-webhook-secret")
        assert http("POST", rec.url + "/hooks/git", body + b" ", headers)[0] == 401  # body changed after signing
        assert http("POST", rec.url + "/hooks/git", body, {"X-GitHub-Event": "push"})[0] == 401
        # A webhook wakes the loop inside its request, before the answer: counted there, so
        # a refused one that woke it would show here already (no waiting needed).
        assert rec.metric("configctl_webhook_syncs_total") == 0, "a refused webhook triggered a sync"
        assert store.latest("billing", "dev") == 1, "a refused webhook triggered a sync"

        # Each provider's valid proof triggers a sync at once (the poll interval is 10 minutes).
        for n, provider in enumerate(("github", "gitlab", "gitea"), start=2):
            if n > 2:
                sha = repo.bump("billing", "dev")
            assert rec.webhook(sha, provider=provider) == 202
            wait_for(lambda n=n: store.latest("billing", "dev") == n, timeout=5, what=f"{provider} push applied")
            assert rec.metric("configctl_webhook_syncs_total") == n - 1
        # a push to another branch is accepted but does not matter; a ping is ignored
        assert rec.webhook(sha, ref="refs/heads/feature") == 202
        code, _ = http("POST", rec.url + "/hooks/git", b"{}", {"X-GitHub-Event": "ping", **{
            k: v for k, v in webhook_headers("github", b"{}", "test-webhook-secret").items() if k != "X-GitHub-Event"}})
        assert code == 200


# --------------------------------------------------------------------------- two replicas


def _leaders(*procs: ReconcilerProcess) -> list[ReconcilerProcess]:
    return [p for p in procs if p.alive() and p.role() == "leader"]


def _assert_each_commit_applied_once(store: StoreView, commits: list[str]) -> None:
    """Each of ``commits`` changed one key of one (app, env): exactly one version each."""
    versions = store.versions()
    per_commit = Counter(c for _, _, _, c in versions)
    twice = {c: n for c, n in per_commit.items() if c in commits and n > 1}
    assert not twice, f"commits applied more than once: {twice}"
    missing = [c for c in commits if per_commit[c] != 1]
    assert not missing, f"commits without their version: {missing}"
    by_pair: dict[tuple[str, str], list[int]] = {}
    for app, env, number, _ in versions:
        by_pair.setdefault((app, env), []).append(number)
    for pair, numbers in by_pair.items():
        assert numbers == list(range(1, len(numbers) + 1)), f"{pair}: versions {numbers}"
    for sha in commits:
        assert store.commit_status(sha) == "applied"


def test_two_replicas_one_leader_and_takeover_after_sigkill(
    tmp_path: Path, repo: ConfigRepo, pg_db_url: str, redis_url: str, redis_prefix: str,
    amqp_url: str, amqp_exchange: str, consumer: AmqpConsumer,
) -> None:  # fmt: skip
    store = StoreView(pg_db_url)
    common = {"repo": repo.url, "db": pg_db_url, "redis": redis_url, "redis_prefix": redis_prefix,
              "amqp": amqp_url, "exchange": amqp_exchange, "interval": 0.5}  # fmt: skip
    a = ReconcilerProcess(workdir=tmp_path / "a", name="a", **common)  # type: ignore[arg-type]
    b = ReconcilerProcess(workdir=tmp_path / "b", name="b", **common)  # type: ignore[arg-type]
    with running(a, b):
        a.wait_http()
        b.wait_http()
        first = wait_for(lambda: _leaders(a, b), timeout=15, what="a leader")
        assert len(first) == 1
        leader = first[0]
        standby = b if leader is a else a
        # a standby is ready (it serves reads) and says it is a standby
        wait_for(lambda: (standby.readyz() or {}).get("ready"), timeout=10, what="the standby ready")
        assert standby.role() == "standby"

        commits = [repo.bump(app, env) for app, env in (("billing", "dev"), ("search", "prod"), ("billing", "dev"))]
        wait_for(lambda: store.latest("billing", "dev") == 3, timeout=10, what="commits applied by the leader")
        time.sleep(1.0)  # several poll intervals: the standby must still not apply anything
        assert _leaders(a, b) == [leader]
        assert standby.metric("configctl_commits_applied_total") == 0

        leader.kill()
        killed_at = time.monotonic()
        standby.wait_role("leader", timeout=10)
        takeover = time.monotonic() - killed_at
        assert takeover < 5, f"takeover took {takeover:.1f} s"
        commits += [repo.bump("search", "prod"), repo.bump("billing", "prod")]
        wait_for(lambda: store.latest("billing", "prod") == 2, timeout=10, what="commits applied by the new leader")
        _assert_each_commit_applied_once(store, commits)
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        assert snapshot_version(r, redis_prefix, "search", "prod") == 3
        got = collect(consumer, [], until=0.5)
        ids = {m.message_id for m in got}
        assert ids >= {i for i, _, _ in store.outbox()}
        epochs = store.rows("SELECT epoch FROM leader_lease")
        assert epochs == [(2,)]


# --------------------------------------------------------------------------- chaos


def test_leader_killed_at_random_points_during_a_stream_of_commits(
    tmp_path: Path, repo: ConfigRepo, pg_db_url: str, redis_url: str, redis_prefix: str,
    amqp_url: str, amqp_exchange: str, consumer: AmqpConsumer,
) -> None:  # fmt: skip
    """Two replicas; the leader gets SIGKILL at random moments and is restarted (same
    workdir). Afterwards every commit has been applied exactly once, versions are
    contiguous, Redis serves the newest, and every notification arrived at least once."""
    rng = random.Random(4)
    store = StoreView(pg_db_url)
    common = {"repo": repo.url, "db": pg_db_url, "redis": redis_url, "redis_prefix": redis_prefix,
              "amqp": amqp_url, "exchange": amqp_exchange, "interval": 0.3}  # fmt: skip
    procs = [ReconcilerProcess(workdir=tmp_path / name, name=name, **common) for name in "ab"]  # type: ignore[arg-type]
    received: list[Received] = []
    commits: list[str] = []
    kills = 0
    with running(*procs):
        wait_for(lambda: _leaders(*procs), timeout=15, what="a leader")
        wait_for(lambda: len(store.versions()) == 4, timeout=10, what="initial versions")
        deadline = time.monotonic() + 14
        pairs = [(a, e) for a in repo.apps for e in repo.envs]
        while time.monotonic() < deadline and len(commits) < 60:
            commits.append(repo.bump(*rng.choice(pairs)))
            leaders = _leaders(*procs)
            if leaders and rng.random() < 0.6:
                leaders[0].webhook(commits[-1])
            time.sleep(rng.uniform(0.0, 0.25))  # somewhere in fetch, apply, warm, relay...
            if rng.random() < 0.3:
                victims = _leaders(*procs)
                if victims:
                    victim = victims[0]
                    victim.kill()
                    kills += 1
                    victim.stop()
                    victim.start()
            collect(consumer, received, until=0.0)
        assert kills >= 3
        head = commits[-1]
        wait_for(lambda: store.commit_status(head) == "applied", timeout=20, what="the last commit applied")
        wait_for(lambda: all(p for _, _, p in store.outbox()), timeout=15, what="the outbox drained")
        _assert_each_commit_applied_once(store, commits)

        r = redis.Redis.from_url(redis_url, decode_responses=True)
        for app, env in pairs:
            expected = store.latest(app, env)
            wait_for(lambda a=app, e=env, x=expected: snapshot_version(r, redis_prefix, a, e) == x,
                     timeout=10, what=f"Redis {app}/{env} at version {expected}")  # fmt: skip

        outbox_ids = {i for i, _, _ in store.outbox()}
        wait_for(lambda: outbox_ids <= {m.message_id for m in collect(consumer, received, until=0.2)},
                 timeout=10, what="every notification delivered")  # fmt: skip
        by_id = {m.message_id: json.loads(m.body) for m in received}
        # each message names the version the store recorded for its commit
        for app, env, number, sha in store.versions():
            matching = [p for p in by_id.values() if (p["app"], p["env"], p["version"]) == (app, env, number)]
            assert len(matching) == 1, (app, env, number, sha)
            assert matching[0]["commit"] == sha
        duplicates = len(received) - len(by_id)
        print(f"{len(commits)} commits, {kills} leader kills, {duplicates} duplicate deliveries")  # noqa: T201


# --------------------------------------------------------------------------- Redis


def test_redis_flushed_or_stopped_is_refilled(
    tmp_path: Path, repo: ConfigRepo, pg_db_url: str,
) -> None:  # fmt: skip
    """A private redis-server (the shared one is never flushed or stopped): FLUSHALL → the
    next check refills it; stopped → commits still land in PostgreSQL, /readyz says
    degraded; started again, empty → refilled with the newest versions."""
    from tests.servers import RedisServer

    server = RedisServer()
    url = server.start()
    store = StoreView(pg_db_url)
    rec = ReconcilerProcess(repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, redis=url, interval=0.5)
    try:
        with running(rec):
            r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2)
            wait_for(lambda: snapshot_version(r, "configctl", "search", "prod") == 1, timeout=15, what="warm")
            r.flushall()
            wait_for(lambda: snapshot_version(r, "configctl", "search", "prod") == 1, timeout=5, what="refilled after FLUSHALL")
            assert r.smembers("configctl:index") == {"billing:dev", "billing:prod", "search:dev", "search:prod"}

            server.stop()
            sha = repo.bump("search", "prod")
            rec.webhook(sha)
            wait_for(lambda: store.latest("search", "prod") == 2, timeout=10, what="commit in PostgreSQL without Redis")
            wait_for(lambda: "redis" in (rec.readyz() or {}).get("degraded", []), timeout=10, what="degraded: redis")
            ready = rec.readyz() or {}
            assert ready["ready"] is True  # degraded, not down
            assert rec.metric("configctl_dependency_up", 'dependency="redis"') == 0
            time.sleep(1.0)
            assert rec.alive()

            server.start()  # same port, no persistence: an empty Redis
            r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2)
            wait_for(lambda: snapshot_version(r, "configctl", "search", "prod") == 2, timeout=10, what="refilled after restart")
            assert snapshot_version(r, "configctl", "billing", "dev") == 1
            wait_for(lambda: (rec.readyz() or {}).get("degraded") == [], timeout=5, what="redis no longer degraded")
            assert rec.metric("configctl_redis_repairs_total") >= 8
    finally:
        server.cleanup()


# --------------------------------------------------------------------------- RabbitMQ


def test_rabbitmq_stopped_and_started_the_backlog_arrives(
    tmp_path: Path, repo: ConfigRepo, pg_db_url: str, redis_url: str, redis_prefix: str,
) -> None:  # fmt: skip
    """A private RabbitMQ node with a durable subscriber queue. While it is down commits
    land in PostgreSQL and Redis; when it is back the outbox backlog is published, in
    order, without waiting for a new commit or the (long) poll interval."""
    from tests.servers import RabbitServer

    server = RabbitServer()
    url = server.start()
    exchange = "configctl.changes"
    store = StoreView(pg_db_url)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    with AmqpConsumer(url, exchange, binding_key="#", queue="subscriber", durable=True) as c:
        pass  # declared and bound: it collects messages while nobody is connected
    rec = ReconcilerProcess(
        repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, redis=redis_url, redis_prefix=redis_prefix,
        amqp=url, exchange=exchange, interval=30,
    )  # fmt: skip
    try:
        with running(rec):
            wait_for(lambda: len(store.outbox()) == 4 and all(p for _, _, p in store.outbox()), timeout=15, what="initial notifications")
            server.stop()
            commits = [repo.bump("billing", "prod"), repo.bump("search", "dev"), repo.bump("billing", "prod")]
            assert rec.webhook(commits[-1]) == 202
            wait_for(lambda: store.latest("billing", "prod") == 3, timeout=10, what="commits in PostgreSQL without RabbitMQ")
            assert snapshot_version(r, redis_prefix, "billing", "prod") == 3  # Redis is not held back either
            wait_for(lambda: "rabbitmq" in (rec.readyz() or {}).get("degraded", []), timeout=10, what="degraded: rabbitmq")
            assert [p for _, _, p in store.outbox()][4:] == [False, False, False]
            assert rec.metric("configctl_outbox_backlog") == 3

            server.start()
            back = time.monotonic()
            # no new commit, no webhook, a 30 s poll interval: the retry timer alone publishes
            wait_for(lambda: all(p for _, _, p in store.outbox()), timeout=15, what="backlog published")
            assert time.monotonic() - back < 12
            assert rec.alive()
            with AmqpConsumer(url, exchange, binding_key="#", queue="subscriber", durable=True) as c:
                got = c.drain(timeout=1.0)
            ids = [m.message_id for m in got]
            outbox_ids = [i for i, _, _ in store.outbox()]
            assert set(ids) == set(outbox_ids)  # the 4 from before the stop survived it too
            backlog = [json.loads(m.body) for m in got if m.message_id in outbox_ids[4:]]
            assert [(p["app"], p["env"], p["version"]) for p in backlog] == [
                ("billing", "prod", 2), ("search", "dev", 2), ("billing", "prod", 3),
            ]
            wait_for(lambda: (rec.readyz() or {}).get("degraded") == [], timeout=5, what="rabbitmq no longer degraded")
    finally:
        server.cleanup()


# --------------------------------------------------------------------------- bad commits


def test_invalid_commit_between_two_valid_ones(
    tmp_path: Path, repo: ConfigRepo, pg_db_url: str, redis_url: str, redis_prefix: str,
) -> None:  # fmt: skip
    store = StoreView(pg_db_url)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    rec = ReconcilerProcess(
        repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, redis=redis_url, redis_prefix=redis_prefix, interval=0.3,
    )  # fmt: skip
    with running(rec):
        wait_for(lambda: len(store.versions()) == 4, timeout=15, what="initial versions")
        good1 = repo.bump("billing", "prod")
        bad = repo.commit("duplicate key", {"apps/billing/envs/prod.yaml": "counter: 5\ncounter: 6\n"})
        good2 = repo.bump("billing", "prod")
        wait_for(lambda: store.commit_status(good2) == "applied", timeout=10, what="the valid commit after the bad one")
        assert store.commit_status(good1) == "applied"
        assert store.commit_status(bad) == "rejected"
        assert [(c, n) for a, e, n, c in store.versions() if (a, e) == ("billing", "prod")] == [
            (repo.initial, 1), (good1, 2), (good2, 3),
        ]
        rejected = store.audit("commit.rejected")
        assert [a["commit"] for a in rejected] == [bad]
        assert rejected[0]["details"]["errors"] >= 1
        assert snapshot_version(r, redis_prefix, "billing", "prod") == 3
        assert rec.metric("configctl_commits_rejected_total", 'reason="validation"') == 1
        code, health = rec.healthz()
        assert code == 200
        assert health["detail"]["last_rejected"]["commit"] == bad

        # an invalid head: the last good configuration stays in service
        bad2 = repo.commit("not a mapping", {"apps/search/envs/dev.yaml": "- a list\n"})
        wait_for(lambda: store.commit_status(bad2) == "rejected", timeout=10, what="the invalid head rejected")
        assert snapshot_version(r, redis_prefix, "search", "dev") == 1
        assert store.latest("search", "dev") == 1
        assert rec.alive()


def test_signed_commits_only(tmp_path: Path, pg_db_url: str) -> None:
    """--require-signed: an unsigned commit, or one signed by a key not in the allowed
    signers, is rejected and recorded; commits after it are not applied until a validly
    signed one arrives, which is applied with its whole tree."""
    key, line = make_ssh_key(tmp_path / "key")
    stranger, _ = make_ssh_key(tmp_path / "stranger")
    signers = tmp_path / "allowed_signers"
    signers.write_text(line)
    repo = ConfigRepo(tmp_path / "repo")
    repo.commit("signed initial", {}, sign_with=key)
    store = StoreView(pg_db_url)
    rec = ReconcilerProcess(
        repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, interval=0.3,
        extra=["--require-signed", "--allowed-signers", str(signers)],
    )  # fmt: skip
    with running(rec):
        wait_for(lambda: len(store.versions()) == 4, timeout=15, what="the signed head applied")
        unsigned = repo.bump("billing", "dev")
        foreign = repo.bump("billing", "dev", sign_with=stranger)
        unsigned2 = repo.bump("search", "dev")
        wait_for(lambda: store.commit_status(unsigned2) == "rejected", timeout=10, what="unsigned commits rejected")
        for sha in (unsigned, foreign):
            assert store.commit_status(sha) == "rejected"
        assert store.latest("billing", "dev") == 1
        assert store.latest("search", "dev") == 1
        reasons = {a["commit"]: a["details"]["signature"] for a in store.audit("commit.rejected")}
        assert set(reasons) == {unsigned, foreign, unsigned2}
        assert "not signed" in reasons[unsigned]
        assert "not trusted" in reasons[foreign] or "allowed" in reasons[foreign]
        assert rec.metric("configctl_commits_rejected_total", 'reason="signature"') == 3

        good = repo.bump("billing", "prod", sign_with=key)
        wait_for(lambda: store.commit_status(good) == "applied", timeout=10, what="the signed commit applied")
        # its tree includes the unsigned changes before it: a signer vouches for the tree
        assert store.latest("billing", "dev") == 2
        assert store.latest("search", "dev") == 2
        assert store.latest("billing", "prod") == 2


# --------------------------------------------------------------------------- PostgreSQL


def test_postgresql_unreachable_nothing_applied_never_exits(tmp_path: Path, repo: ConfigRepo) -> None:
    """A private PostgreSQL: the reconciler starts while it is down and waits; when it is
    stopped mid-run nothing is applied, /readyz says not ready, and the process stays up;
    when it is back the leader lock is taken again (a new epoch) and the backlog applied."""
    from tests.servers import PostgresServer, create_database

    server = PostgresServer()
    db = f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/configctl"
    rec = ReconcilerProcess(repo=repo.url, workdir=tmp_path / "wd", db=db, interval=0.3)
    try:
        with running(rec):
            rec.wait_http()
            # several failed attempts (a counter in the log), and the process is still up
            wait_for(lambda: _backend_errors(rec) >= 3, timeout=15, what="retries while PostgreSQL is down")
            assert rec.alive()
            assert (rec.readyz() or {}).get("ready") is False
            server.start()
            create_database(server.url, "configctl")
            store = StoreView(db)
            wait_for(lambda: store.has_tables() and len(store.versions()) == 4, timeout=15, what="applied once PostgreSQL is up")
            rec.wait_role("leader")

            server.stop()
            sha = repo.bump("billing", "prod")
            rec.webhook(sha)
            wait_for(lambda: (rec.readyz() or {}).get("ready") is False, timeout=10, what="not ready without the store")
            before = _backend_errors(rec)
            wait_for(lambda: _backend_errors(rec) >= before + 3, timeout=15, what="retries while PostgreSQL is down")
            assert rec.alive()

            server.start()
            wait_for(lambda: store.commit_status(sha) == "applied", timeout=15, what="applied after PostgreSQL returned")
            assert store.latest("billing", "prod") == 2
            rec.wait_role("leader")
            assert store.rows("SELECT epoch FROM leader_lease") == [(2,)]
            assert any("backend error" in line.get("message", "") for line in rec.logs())
    finally:
        server.cleanup()


# --------------------------------------------------------------------------- git


def test_force_push_is_recorded_and_keeps_every_version(tmp_path: Path, repo: ConfigRepo, pg_db_url: str) -> None:
    store = StoreView(pg_db_url)
    rec = ReconcilerProcess(repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, interval=0.3)
    with running(rec):
        wait_for(lambda: len(store.versions()) == 4, timeout=15, what="initial versions")
        gone = [repo.bump("billing", "dev"), repo.bump("billing", "dev")]
        wait_for(lambda: store.commit_status(gone[-1]) == "applied", timeout=10, what="commits applied")
        repo.reset_hard(repo.initial)
        rewritten = repo.commit("rewritten", {"apps/billing/envs/dev.yaml": "counter: 40\n"}, push=False)
        repo.push(force=True)
        wait_for(lambda: store.commit_status(rewritten) == "applied", timeout=10, what="the rewritten head applied")
        audit = store.audit("force-push")
        assert len(audit) == 1
        assert audit[0]["details"] == {"previous_head": gone[-1], "new_head": rewritten}
        # nothing deleted: the rewritten-away versions stay in the history
        assert [(n, c) for a, e, n, c in store.versions() if (a, e) == ("billing", "dev")] == [
            (1, repo.initial), (2, gone[0]), (3, gone[1]), (4, rewritten),
        ]
        after = repo.bump("billing", "dev")
        wait_for(lambda: store.commit_status(after) == "applied", timeout=10, what="normal service after the rewrite")
        assert len(store.audit("force-push")) == 1


def test_once_applies_what_is_pending_and_resumes_after_a_restart(tmp_path: Path, repo: ConfigRepo, pg_db_url: str) -> None:
    import subprocess

    store = StoreView(pg_db_url)

    def once() -> int:
        rec = ReconcilerProcess(repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, extra=["--once"])
        rec.start()
        assert rec.proc is not None
        try:
            return rec.proc.wait(60)
        except subprocess.TimeoutExpired:
            rec.kill()
            raise
        finally:
            rec.stop()

    assert once() == 0
    assert len(store.versions()) == 4
    commits = [repo.bump("billing", "dev"), repo.bump("search", "prod"), repo.bump("billing", "dev")]
    assert once() == 0
    _assert_each_commit_applied_once(store, commits)
    assert once() == 0  # nothing pending: nothing written
    assert len(store.versions()) == 7
    bad = repo.commit("bad", {"apps/billing/envs/dev.yaml": "counter: [\n"})
    assert once() == 1  # findings: the head was rejected
    assert store.commit_status(bad) == "rejected"


def _backend_errors(rec: ReconcilerProcess) -> int:
    """How many rounds the reconciler logged as failed on a backend (each one retried)."""
    return sum("backend error" in line.get("message", "") for line in rec.logs())
