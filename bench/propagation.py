"""Benchmark: how fast a merged commit reaches subscribers and Redis, beside the floor.

Part 1 -- propagation (``configctl reconcile`` as a real subprocess, webhook-driven, against
the real PostgreSQL, Redis and RabbitMQ). For each of ``--commits`` commits to a local bare
repository (a synthetic ``--apps``-app tree from ``bench/gen_tree.py``; each commit changes
one key of one app in ``prod``): push it (not timed), then time from the webhook POST until
a RabbitMQ consumer holds the change message *and* Redis holds the new version.

Right after each sample, on the same machine state, the floor -- the least any
implementation must do for one commit -- is timed:

* one ``git fetch`` of that one commit from the same repository (a second clone),
* one PostgreSQL transaction writing a 50-key snapshot (JSONB),
* one Redis ``SET`` of that snapshot,
* one RabbitMQ publish with publisher confirm, until a consumer holds it.

Both are printed as p50 / p90 / p99 / max. Goals: reconciler p50 within 1.5x of the floor
p50 (issue 8; it was 2x), reconciler p99 under 250 ms.

Part 2 -- scale. In process, with the reconciler's own wiring (``runner.Reconciler.build``)
and the real servers: the cost of a pass *after the fetch* (list commits, read the tree,
validate and resolve, the apply transaction, Redis, publish with confirm, cursor) for a
one-app commit, in a 10-app and a 1,000-app repository. Goal: 1,000 apps within 3x of 10.
A table splits that cost by step, so a miss points at the code to fix.

Exit status 0 when every goal is met, 1 otherwise. On a shared 2-CPU machine the numbers
move with the load; compare the ratios of one run, not absolute times across runs.

Servers come from ``CONFIGCTL_TEST_DATABASE_URL`` (an admin URL; a database is created and
dropped), ``CONFIGCTL_TEST_REDIS_URL`` and ``CONFIGCTL_TEST_AMQP_URL``, defaulting to the
local ones on their standard ports. Only unique Redis keys, exchanges and databases are
used, and removed afterwards.

    python bench/propagation.py                          # 200 commits; scale at 10 and 1,000 apps
    python bench/propagation.py --commits 50 --scale-commits 10 --sizes 10,100   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gen_tree  # noqa: E402 - the sibling generator, found through the path set just above

DB_ADMIN = os.environ.get("CONFIGCTL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CONFIGCTL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("CONFIGCTL_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
SECRET = "bench-webhook-secret"  # noqa: S105 - a throwaway secret for a local benchmark
CONFIGCTL = str(Path(sys.executable).with_name("configctl"))
GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
_TIMEOUT_LINE = re.compile(r"^(  timeout: )[0-9.]+$", re.MULTILINE)


# --------------------------------------------------------------------------- plumbing


def libpq(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return "postgresql://" + rest if scheme.startswith("postgres") else url


def with_database(url: str, name: str) -> str:
    base, _, _ = libpq(url).rpartition("/")
    return f"{base}/{name}"


@contextlib.contextmanager
def database(prefix: str) -> Iterator[str]:
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq(DB_ADMIN), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(DB_ADMIN, name)
    finally:
        with psycopg.connect(libpq(DB_ADMIN), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def redis_prefix() -> Iterator[str]:
    import redis

    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


class Repo:
    """A generated tree committed to ``work`` and pushed to the bare ``remote.git``."""

    def __init__(self, base: Path, n_apps: int) -> None:
        self.work = base / "work"
        self.bare = base / "remote.git"
        gen_tree.generate(self.work, n_apps, inject=False)
        git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=base)
        git("init", "-q", "-b", "main", cwd=self.work)
        git("remote", "add", "origin", str(self.bare), cwd=self.work)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", "generated tree", cwd=self.work)
        git("push", "-q", "origin", "HEAD:main", cwd=self.work)
        self.n_apps = n_apps
        self.serial = 0

    def change_one_app(self) -> tuple[str, str]:
        """Change one key (``svc.timeout``) of one app in prod; commit and push. -> (app, sha)"""
        self.serial += 1
        app = gen_tree.app_name(self.serial % self.n_apps)
        path = self.work / "apps" / app / "envs" / "prod.yaml"
        text, n = _TIMEOUT_LINE.subn(rf"\g<1>{self.serial}.5", path.read_text(), count=1)
        if n != 1:
            raise RuntimeError(f"no timeout line in {path}")
        path.write_text(text)
        git("commit", "-q", "-am", f"{app}: svc.timeout {self.serial}.5", cwd=self.work)
        git("push", "-q", "origin", "HEAD:main", cwd=self.work)
        return app, git("rev-parse", "HEAD", cwd=self.work).strip()


class Consumer:
    """A subscriber queue bound to ``#``; :meth:`wait` returns as soon as a matching message
    arrives (pika dispatches on arrival, no polling interval)."""

    def __init__(self, exchange: str) -> None:
        import pika

        self.conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self.ch = self.conn.channel()
        self.ch.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
        self.queue = self.ch.queue_declare(queue="", exclusive=True).method.queue
        self.ch.queue_bind(queue=self.queue, exchange=exchange, routing_key="#")
        self.got: list[tuple[float, str, dict[str, Any]]] = []
        self.ch.basic_consume(self.queue, self._on_message, auto_ack=True)

    def _on_message(self, _ch: Any, method: Any, _props: Any, body: bytes) -> None:
        self.got.append((time.perf_counter(), str(method.routing_key), json.loads(body) if body[:1] == b"{" else {}))

    def wait(self, match: Callable[[str, dict[str, Any]], bool], timeout: float) -> float:
        """perf_counter() at which a matching message arrived (consumed from ``got``)."""
        deadline = time.perf_counter() + timeout
        while True:
            for i, (at, key, payload) in enumerate(self.got):
                if match(key, payload):
                    del self.got[: i + 1]
                    return at
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError("no matching message")
            self.conn.process_data_events(time_limit=remaining)

    def drain(self, seconds: float) -> int:
        self.conn.process_data_events(time_limit=seconds)
        n = len(self.got)
        self.got.clear()
        return n

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def post_webhook(port: int, sha: str) -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/git", data=body, method="POST",
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - http://127.0.0.1 only
        if response.status != 202:
            raise RuntimeError(f"webhook answered {response.status}")


def wait_until(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


@dataclass
class Stats:
    name: str
    samples: list[float]

    def q(self, p: float) -> float:
        xs = sorted(self.samples)
        return xs[min(len(xs) - 1, max(0, round(p * (len(xs) - 1))))]

    def row(self) -> str:
        ms = [self.q(p) * 1000 for p in (0.5, 0.9, 0.99)] + [max(self.samples) * 1000]
        return f"| {self.name} | {len(self.samples)} | " + " | ".join(f"{v:.1f}" for v in ms) + " |"


# --------------------------------------------------------------------------- the floor


class Floor:
    """The four irreducible steps of one commit's propagation, with clients kept open."""

    def __init__(self, base: Path, bare: Path, exchange: str, prefix: str, db: str) -> None:
        import pika
        import psycopg
        import redis

        self.clone = base / "floor-clone"
        git("clone", "-q", "--no-tags", "--single-branch", "--branch", "main", str(bare), str(self.clone), cwd=base)
        self.pg = psycopg.connect(libpq(db))
        with self.pg.transaction():
            self.pg.execute("CREATE TABLE floor_snapshot (id bigserial PRIMARY KEY, app text, env text, v int, values jsonb)")
        self.redis = redis.Redis.from_url(REDIS_URL)
        self.key = f"{prefix}:floor"
        self.pub_conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self.pub = self.pub_conn.channel()
        self.pub.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
        self.pub.confirm_delivery()
        self.exchange = exchange
        self.props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        self.snapshot = {f"group{g}.key{k}": f"value-{g}-{k}" for g in range(10) for k in range(5)}  # 50 keys
        self.n = 0

    def measure(self, consumer: Consumer) -> tuple[float, dict[str, float]]:
        self.n += 1
        parts: dict[str, float] = {}
        t = time.perf_counter()
        git("fetch", "-q", "--no-tags", "origin", "+refs/heads/main:refs/remotes/origin/main", cwd=self.clone)
        parts["git fetch"] = time.perf_counter() - t
        t = time.perf_counter()
        with self.pg.transaction():
            self.pg.execute(
                "INSERT INTO floor_snapshot (app, env, v, values) VALUES (%s, %s, %s, %s::jsonb)",
                ("floor", "prod", self.n, json.dumps(self.snapshot)),
            )
        parts["PostgreSQL txn"] = time.perf_counter() - t
        doc = json.dumps({"version": self.n, "values": self.snapshot})
        t = time.perf_counter()
        self.redis.set(self.key, doc)
        parts["Redis SET"] = time.perf_counter() - t
        marker = uuid.uuid4().hex
        t = time.perf_counter()
        self.pub.basic_publish(self.exchange, "floor.prod", json.dumps({"floor": marker}).encode(), self.props)
        arrived = consumer.wait(lambda key, p: key == "floor.prod" and p.get("floor") == marker, timeout=10)
        parts["publish+confirm+consume"] = arrived - t
        return sum(parts.values()), parts

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.pg.close()
        with contextlib.suppress(Exception):
            self.pub_conn.close()
        self.redis.close()


# --------------------------------------------------------------------------- part 1


def propagation(n_commits: int, n_apps: int, warmup: int) -> bool:
    import redis

    base = Path(tempfile.mkdtemp(prefix="configctl-bench-prop-"))
    exchange = f"bench-{uuid.uuid4().hex[:10]}"
    proc: subprocess.Popen[bytes] | None = None
    consumer: Consumer | None = None
    floor: Floor | None = None
    try:
        with database("bench_prop") as db, redis_prefix() as prefix:
            repo = Repo(base / "repo", n_apps)
            consumer = Consumer(exchange)
            from tests.servers import free_port

            port = free_port()
            log = open(base / "reconciler.log", "wb")  # noqa: SIM115 - closed with the process
            proc = subprocess.Popen(
                [CONFIGCTL, "reconcile", "--repo", str(repo.bare), "--branch", "main", "--workdir", str(base / "wd"),
                 "--db", db, "--redis", REDIS_URL, "--redis-prefix", prefix, "--amqp", AMQP_URL, "--exchange", exchange,
                 "--interval", "300", "--http-host", "127.0.0.1", "--http-port", str(port), "--log-format", "json"],
                env={**os.environ, "CONFIGCTL_WEBHOOK_SECRET": SECRET}, stdout=log, stderr=log,
            )  # fmt: skip
            r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
            pairs = n_apps * len(gen_tree.ENVIRONMENTS)
            wait_until(lambda: len(r.smembers(f"{prefix}:index")) >= pairs or proc.poll() is not None, 60, "initial apply")
            if proc.poll() is not None:
                raise RuntimeError(f"reconciler exited: {(base / 'reconciler.log').read_text()[-2000:]}")
            consumer.drain(1.0)
            floor = Floor(base, repo.bare, exchange, prefix, db)

            def one() -> float:
                app, sha = repo.change_one_app()
                key = f"{prefix}:snapshot:{app}:prod"
                t0 = time.perf_counter()
                post_webhook(port, sha)
                at = consumer.wait(lambda k, p: k == f"{app}.prod" and p.get("commit") == sha, timeout=10)

                def in_redis() -> bool:
                    return bool(json.loads(r.get(key) or "{}").get("commit") == sha)

                # The reconciler writes Redis before it publishes, so Redis normally holds the
                # version when the message arrives; if not, the sample ends when it does.
                if in_redis():
                    return at - t0
                wait_until(in_redis, 5, f"Redis {app}/prod at {sha[:12]}")
                return time.perf_counter() - t0

            for _ in range(warmup):
                one()
                floor.measure(consumer)
            latencies: list[float] = []
            floors: list[float] = []
            parts: dict[str, list[float]] = {}
            for _ in range(n_commits):
                latencies.append(one())
                total, split = floor.measure(consumer)
                floors.append(total)
                for k, v in split.items():
                    parts.setdefault(k, []).append(v)
    finally:
        if floor is not None:
            floor.close()
        if consumer is not None:
            consumer.close()
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        _delete_exchange(exchange)
        shutil.rmtree(base, ignore_errors=True)

    rec, flo = Stats("reconciler: webhook → consumer + Redis", latencies), Stats("floor: fetch + PG txn + Redis SET + publish/confirm/consume", floors)
    print(f"\n## Propagation ({n_commits} commits, {n_apps}-app repository, {warmup} warm-up commits not counted)\n")
    print("| what | n | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    print(rec.row())
    print(flo.row())
    for name, xs in parts.items():
        print(Stats(f"  floor part: {name}", xs).row())
    ratio = rec.q(0.5) / flo.q(0.5)
    ok_p50 = ratio <= P50_GOAL
    ok_p99 = rec.q(0.99) < 0.250
    print(f"\np50 ratio reconciler/floor: {ratio:.2f} (goal <= {P50_GOAL}: {'met' if ok_p50 else 'NOT met'}); "
          f"p99 {rec.q(0.99) * 1000:.1f} ms (goal < 250 ms: {'met' if ok_p99 else 'NOT met'})")  # fmt: skip
    return ok_p50 and ok_p99


P50_GOAL = 1.5
"""The reconciler's p50 beside the floor's (issue 8)."""


def _delete_exchange(name: str) -> None:
    import pika

    with contextlib.suppress(Exception):
        conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        conn.channel().exchange_delete(name)
        conn.close()


# --------------------------------------------------------------------------- part 2


class StepTimer:
    """Wraps the steps of a pass (module functions and bound methods) to total their time."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.enabled = False
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                if self.enabled:
                    self.totals[label] = self.totals.get(label, 0.0) + time.perf_counter() - started

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


STEPS = (
    "list commits (git log)",
    "read tree (incremental)",
    "apply: evaluate (validate + resolve)",
    "apply: secret keys",
    "apply: attribution (git: the commit that changed each pair)",
    "apply: everything else (plan, diff, the transaction)",
    "warm Redis",
    "relay (read outbox, publish+confirm, mark)",
    "move cursor (inside the apply transaction: 0)",
    "count outbox backlog",
)


def _instrument(deps: Any, timer: StepTimer) -> None:
    import configctl.services.apply as apply_module
    from configctl_reconciler import reconcile

    timer.wrap(reconcile, "pending_commits", STEPS[0])
    timer.wrap(deps, "read_tree", STEPS[1])
    timer.wrap(deps.evaluator, "check", STEPS[2])
    timer.wrap(apply_module, "secret_keys", STEPS[3])
    timer.wrap(apply_module, "attribute", STEPS[4])
    timer.wrap(apply_module, "apply_snapshot", "apply (all)")
    timer.wrap(reconcile, "warm", STEPS[6])
    timer.wrap(reconcile, "relay", "relay (all)")
    timer.wrap(deps.store, "outbox_backlog", STEPS[9])


def _transaction(spent: dict[str, float]) -> float:
    """The apply's own work: apply_snapshot without evaluation, secret keys and attribution."""
    return spent.get("apply (all)", 0.0) - sum(spent.get(STEPS[i], 0.0) for i in (2, 3, 4))


def _breakdown(totals: dict[str, float], n: int) -> dict[str, float]:
    """Milliseconds per commit of each of STEPS."""
    t = {k: v / n * 1000 for k, v in totals.items()}
    out = {step: t.get(step, 0.0) for step in STEPS[:5]}
    out[STEPS[5]] = _transaction(t)
    out[STEPS[6]] = t.get(STEPS[6], 0.0)
    out[STEPS[7]] = t.get("relay (all)", 0.0)
    out[STEPS[8]] = 0.0
    out[STEPS[9]] = t.get(STEPS[9], 0.0)
    return out


class FloorTxn:
    """The floor's PostgreSQL transaction (part 1): one row holding a 50-key JSONB snapshot."""

    def __init__(self, db: str) -> None:
        import psycopg

        self.pg = psycopg.connect(libpq(db))
        with self.pg.transaction():
            self.pg.execute("CREATE TABLE floor_snapshot (id bigserial PRIMARY KEY, app text, env text, v int, values jsonb)")
        self.snapshot = {f"group{g}.key{k}": f"value-{g}-{k}" for g in range(10) for k in range(5)}
        self.n = 0

    def measure(self) -> float:
        self.n += 1
        t = time.perf_counter()
        with self.pg.transaction():
            self.pg.execute(
                "INSERT INTO floor_snapshot (app, env, v, values) VALUES (%s, %s, %s, %s::jsonb)",
                ("floor", "prod", self.n, json.dumps(self.snapshot)),
            )
        return time.perf_counter() - t

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.pg.close()


@dataclass
class ScaleRun:
    samples: list[float]
    """Seconds of each measured pass after its fetch."""
    initial: float
    """Seconds of the first pass (the first apply of the whole tree)."""
    steps: dict[str, float]
    """Mean milliseconds per commit of each of STEPS."""
    txn: list[float]
    """Seconds of each measured commit's apply transaction (apply minus evaluation)."""
    floor_txn: list[float]
    """Seconds of the floor's transaction, timed right after each measured commit."""


def after_fetch_cost(n_apps: int, n_commits: int) -> ScaleRun:
    """Per-commit seconds of a pass after its fetch, the initial apply's seconds, the
    per-step breakdown (ms per commit) and, side by side, the apply transaction of each
    commit against the floor's transaction."""
    from configctl_reconciler.reconcile import reconcile_once
    from configctl_reconciler.runner import Reconciler
    from configctl_reconciler.settings import ReconcilerSettings

    base = Path(tempfile.mkdtemp(prefix=f"configctl-bench-scale{n_apps}-"))
    exchange = f"bench-{uuid.uuid4().hex[:10]}"
    consumer: Consumer | None = None
    rec: Reconciler | None = None
    floor: FloorTxn | None = None
    try:
        with database("bench_scale") as db, redis_prefix() as prefix:
            repo = Repo(base / "repo", n_apps)
            consumer = Consumer(exchange)  # a subscriber, so every publish is routed and confirmed
            settings = ReconcilerSettings(
                repo=str(repo.bare), workdir=str(base / "wd"), db=db, redis=REDIS_URL, redis_prefix=prefix,
                amqp=AMQP_URL, exchange=exchange,
            )  # fmt: skip
            rec = Reconciler(settings)
            deps = rec.build()
            epoch = deps.store.acquire_epoch(settings.lock_name, "bench")
            fence = (settings.lock_name, epoch)
            t = time.perf_counter()
            reconcile_once(deps, fence=fence)
            initial = time.perf_counter() - t
            consumer.drain(0.5)
            fetch = deps.fetch
            floor = FloorTxn(db)
            samples: list[float] = []
            txn: list[float] = []
            floor_txn: list[float] = []
            timer = StepTimer()
            _instrument(deps, timer)
            try:
                for i in range(n_commits + 2):
                    repo.change_one_app()
                    head = fetch()
                    deps.fetch = lambda head=head: head  # the fetch is done: time the rest
                    timer.enabled = i >= 2  # two warm-up commits
                    before = dict(timer.totals)
                    t = time.perf_counter()
                    result = reconcile_once(deps, fence=fence)
                    elapsed = time.perf_counter() - t
                    timer.enabled = False
                    if len(result.applied) != 1 or result.new_versions != 1:
                        raise RuntimeError(f"expected one applied commit with one version, got {result}")
                    consumer.drain(0.0)
                    floor_seconds = floor.measure()
                    if i >= 2:
                        samples.append(elapsed)
                        spent = {k: v - before.get(k, 0.0) for k, v in timer.totals.items()}
                        txn.append(_transaction(spent))
                        floor_txn.append(floor_seconds)
            finally:
                timer.restore()
            return ScaleRun(samples, initial, _breakdown(timer.totals, len(samples)), txn, floor_txn)
    finally:
        if floor is not None:
            floor.close()
        if rec is not None:
            rec.close()
        if consumer is not None:
            consumer.close()
        _delete_exchange(exchange)
        shutil.rmtree(base, ignore_errors=True)


def scale(sizes: list[int], n_commits: int) -> bool:
    print(f"\n## Work after the fetch for a one-app commit ({n_commits} commits per size, in process)\n")
    print("| apps | files | initial apply s | p50 ms | p90 ms | max ms | p50 vs smallest |")
    print("|---|---|---|---|---|---|---|")
    medians: dict[int, float] = {}
    steps: dict[int, dict[str, float]] = {}
    runs: dict[int, ScaleRun] = {}
    for n in sizes:
        runs[n] = run = after_fetch_cost(n, n_commits)
        samples, initial, steps[n] = run.samples, run.initial, run.steps
        st = Stats(str(n), samples)
        medians[n] = st.q(0.5)
        files = round(n * 5.33)
        print(f"| {n} | ~{files} | {initial:.1f} | {st.q(0.5) * 1000:.1f} | {st.q(0.9) * 1000:.1f} | "
              f"{max(samples) * 1000:.1f} | {st.q(0.5) / medians[sizes[0]]:.2f}x |")  # fmt: skip
    ratio = medians[sizes[-1]] / medians[sizes[0]]
    ok = ratio <= 3.0
    print(f"\n{sizes[-1]} apps vs {sizes[0]}: {ratio:.2f}x (goal <= 3x: {'met' if ok else 'NOT met'})")
    print("\nThe apply transaction of a one-app commit beside the floor's transaction (a 50-key JSONB")
    print("snapshot in one PostgreSQL transaction), timed right after each commit. The apply side is")
    print("apply_snapshot less evaluation, secret keys and attribution (its git calls, in the table below):\n")
    print("| apps | apply txn p50 ms | p90 ms | floor txn p50 ms | p90 ms | p50 ratio | goal <= 5x |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        a, f = Stats("apply", runs[n].txn), Stats("floor", runs[n].floor_txn)
        r = a.q(0.5) / f.q(0.5)
        ok &= r <= 5.0
        print(f"| {n} | {a.q(0.5) * 1000:.2f} | {a.q(0.9) * 1000:.2f} | {f.q(0.5) * 1000:.2f} | {f.q(0.9) * 1000:.2f} | "
              f"{r:.1f}x | {'met' if r <= 5.0 else 'NOT met'} |")  # fmt: skip
    print("\nWhere a pass spends its time (mean ms per commit):\n")
    print("| step | " + " | ".join(f"{n} apps" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for step in STEPS:
        print(f"| {step} | " + " | ".join(f"{steps[n][step]:.1f}" for n in sizes) + " |")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=200, help="measured commits in part 1 (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured commits first (default 10)")
    parser.add_argument("--apps", type=int, default=10, help="apps in part 1's repository (default 10)")
    parser.add_argument("--sizes", default="10,1000", help="repository sizes (apps) of part 2 (default 10,1000)")
    parser.add_argument("--scale-commits", type=int, default=20, help="measured commits per size in part 2")
    parser.add_argument("--skip-propagation", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    print(f"# configctl propagation benchmark\n\n{platform.platform()}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs; PostgreSQL, Redis, RabbitMQ on 127.0.0.1")  # fmt: skip
    ok = True
    if not args.skip_propagation:
        ok &= propagation(args.commits, args.apps, args.warmup)
    if not args.skip_scale:
        ok &= scale([int(x) for x in args.sizes.split(",")], args.scale_commits)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
