"""Benchmark: the SDK's read path beside its floors and beside two feature-flag SDKs.

In one run, nanoseconds per call (the median of ``--repeat`` interleaved rounds of
``--number`` calls each, cycling through 1,000 user ids so no result is cached by
accident; each goal's ratio is paired round by round and its median reported):

* ``dict.get`` on a flat dict -- the floor of a plain ``get``;
* a bare bucketing function, ``mmh3.hash(f"{seed}:{user}", 0, False) % 10_000 < pct`` --
  the floor of any sticky percentage rollout (the evaluator's documented hash);
* ``ConfigClient.get`` of a plain key; ``get`` of a key under a 50 % rollout with a
  context; ``is_enabled`` of a 50 % flag with a context (the embedded mode: a snapshot
  folder, no server, no background refresh);
* UnleashClient's ``is_enabled`` on a 50 % gradual rollout (``flexibleRollout``) loaded
  offline from a bootstrap, in its pure-Python 5.x line and its current release;
* GrowthBook's ``is_on`` for a 50 % rollout (one instance per user, built beforehand:
  only the evaluation is timed).

The peers are installed by this script into temporary venvs (``pip install`` from the
package index; not project dependencies) and timed there by the same harness. Goals:
plain ``get`` within 4x of the dict lookup; rollout ``get`` within 4x of the bucketing
floor and under half of the fastest peer. Exit status 0 when met. Ratios matter, not
absolute times: the machine may be shared.

    python bench/sdk.py                  # everything (the venvs take a minute the first time)
    python bench/sdk.py --no-peers       # configctl and the floors only
    python bench/sdk.py --keep-venvs DIR # reuse peer venvs across runs
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import timeit
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

USERS = [f"user-{i:05d}" for i in range(1000)]

# The harness, run in this interpreter and in each peer venv: `stmt` cycles through users.
HARNESS = r'''
import itertools, json, sys, timeit
USERS = [f"user-{i:05d}" for i in range(1000)]
def raw(fn, number):
    """Seconds for ``number`` calls of fn(next user), the harness included."""
    nxt = itertools.cycle(USERS).__next__
    return timeit.timeit(lambda: fn(nxt()), number=number)
def nothing(u):
    return None
def measure(fn, number, repeat):
    """ns per call without the harness: best of fn's rounds minus best of an empty call's."""
    best = min(raw(fn, number) for _ in range(repeat))
    loop = min(raw(nothing, number) for _ in range(repeat))
    return max(0.0, (best - loop) / number * 1e9)
'''

UNLEASH = HARNESS + r'''
import tempfile
from UnleashClient import UnleashClient
from UnleashClient.cache import FileCache
number, repeat = int(sys.argv[1]), int(sys.argv[2])
cache = FileCache("bench", directory=tempfile.mkdtemp())
cache.bootstrap_from_dict({"version": 1, "features": [{
    "name": "bench-flag", "enabled": True, "type": "release",
    "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "50", "stickiness": "userId", "groupId": "bench-flag"}, "constraints": []}],
}]})
client = UnleashClient(url="http://127.0.0.1:9", app_name="bench", cache=cache, disable_metrics=True,
                       disable_registration=True, refresh_interval=3600)
client.initialize_client(fetch_toggles=False)
assert any(client.is_enabled("bench-flag", {"userId": u}) for u in USERS[:50])
ns = measure(lambda u: client.is_enabled("bench-flag", {"userId": u}), number, repeat)
share = sum(client.is_enabled("bench-flag", {"userId": u}) for u in USERS) / len(USERS)
client.destroy()
print(json.dumps({"ns": ns, "share": share}))
'''

GROWTHBOOK = HARNESS + r'''
from growthbook import GrowthBook
number, repeat = int(sys.argv[1]), int(sys.argv[2])
features = {"bench-flag": {"defaultValue": False, "rules": [{"force": True, "coverage": 0.5, "hashAttribute": "id"}]}}
books = {u: GrowthBook(attributes={"id": u}, features=features) for u in USERS}
ns = measure(lambda u: books[u].is_on("bench-flag"), number, repeat)
share = sum(books[u].is_on("bench-flag") for u in USERS) / len(USERS)
print(json.dumps({"ns": ns, "share": share}))
'''

PEERS = [
    ("UnleashClient 5.x (pure Python)", "UnleashClient>=5,<6", UNLEASH),
    ("UnleashClient current", "UnleashClient", UNLEASH),
    ("GrowthBook current", "growthbook", GROWTHBOOK),
]


def venv_python(base: Path, name: str, requirement: str) -> Path:
    folder = base / name
    python = folder / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", requirement], check=True)
    return python


def version_of(python: Path, dist: str) -> str:
    done = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip() or "?"


def ours(number: int, repeat: int) -> dict[str, float]:
    import mmh3

    from configctl.adapters.snapshot_dir import SnapshotDir
    from configctl.client import ConfigClient
    from configctl.core.cache import CachedSnapshot

    values = {"database": {"host": "db", "timeout": 5, "pool": {"max": 10}}, "features": {"new_cart": True}}
    values.update({f"group{g}": {f"key{k}": k for k in range(10)} for g in range(20)})
    rollouts = (
        {"name": "timeout-50", "key": "database.timeout", "value": 30, "percentage": 5000},
        {"name": "bench-flag", "kind": "flag", "percentage": 5000},
    )
    folder = Path(tempfile.mkdtemp(prefix="configctl-bench-sdk-"))
    try:
        SnapshotDir(folder / "snaps").put(
            CachedSnapshot(app="bench", env="prod", version=1, commit=None, checksum="c1", values=values,
                           updated_at=datetime.now(UTC), rollouts=rollouts)
        )
        client = ConfigClient("bench", "prod", snapshot_dir=folder / "snaps", cache_dir=folder / "lkg", environ={}, auto_refresh=False)
        flat = {"database.host": "db", "database.timeout": 5}
        contexts = {u: {"user_id": u} for u in USERS}
        seed = "timeout-50"

        def floor_bucket(u: str) -> bool:
            return bool(mmh3.hash(f"{seed}:{u}", 0, False) % 10_000 < 5000)

        get = client.get
        enabled = client.is_enabled
        # Each candidate is a statement timed inline by timeit (no wrapper call to subtract:
        # a subtracted harness dwarfs a 15 ns dict lookup and made the ratio swing with load).
        # `nxt()` cycles through the users; both sides of each ratio pay for it alike.
        candidates = {
            "dict.get (floor of get)": 'flat.get("database.host")',
            "mmh3 bucketing (floor of a rollout)": "floor_bucket(nxt())",
            "configctl get, plain key": 'get("database.host")',
            "configctl get, 50% rollout + context": 'get("database.timeout", None, contexts[nxt()])',
            "configctl is_enabled, 50% flag + context": 'enabled("bench-flag", contexts[nxt()])',
        }
        names = {
            "flat": flat, "floor_bucket": floor_bucket, "get": get, "enabled": enabled, "contexts": contexts,
            "nxt": itertools.cycle(USERS).__next__,
        }  # fmt: skip
        # Interleaved rounds: each round times every candidate once, so a burst of load from
        # elsewhere on a shared machine hits all of them alike; each keeps its median round.
        rounds: dict[str, list[float]] = {name: [] for name in candidates}
        for _ in range(repeat):
            for name, stmt in candidates.items():
                rounds[name].append(timeit.timeit(stmt, globals=names, number=number) / number * 1e9)
        out = {name: statistics.median(times) for name, times in rounds.items()}
        # the ratios of the goals, paired round by round, then the median over the rounds
        out["ratio plain"] = statistics.median(
            a / b for a, b in zip(rounds["configctl get, plain key"], rounds["dict.get (floor of get)"], strict=True)
        )
        out["ratio rollout"] = statistics.median(
            a / b
            for a, b in zip(
                rounds["configctl get, 50% rollout + context"], rounds["mmh3 bucketing (floor of a rollout)"], strict=True
            )
        )
        share = sum(get("database.timeout", None, contexts[u]) == 30 for u in USERS) / len(USERS)
        flag_share = sum(enabled("bench-flag", contexts[u]) for u in USERS) / len(USERS)
        client.close()
        print(f"(configctl: {share:.0%} of users get the rollout value, {flag_share:.0%} have the flag)")
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--keep-venvs", type=Path, help="create (or reuse) the peer venvs here")
    args = parser.parse_args()

    rows = ours(args.number, args.repeat)
    peers: dict[str, float] = {}
    if not args.no_peers:
        base = args.keep_venvs or Path(tempfile.mkdtemp(prefix="configctl-bench-peers-"))
        base.mkdir(parents=True, exist_ok=True)
        try:
            for i, (label, requirement, script) in enumerate(PEERS):
                python = venv_python(base, f"peer{i}", requirement)
                dist = "UnleashClient" if "Unleash" in label else "growthbook"
                done = subprocess.run(
                    [str(python), "-c", script, str(max(1, args.number // 10)), str(args.repeat)],
                    capture_output=True, text=True, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"},
                )  # fmt: skip
                if done.returncode != 0:
                    print(f"{label}: failed: {done.stderr.strip()[-500:]}")
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                name = f"{label.replace('current', version_of(python, dist))}"
                peers[name] = result["ns"]
                print(f"({name}: {result['share']:.0%} of users enabled)")
        finally:
            if args.keep_venvs is None:
                shutil.rmtree(base, ignore_errors=True)

    print("\n| what | ns per call | x dict.get | x bucketing floor |\n|---|---|---|---|")
    plain, rollout = rows.pop("ratio plain"), rows.pop("ratio rollout")
    dict_ns = rows["dict.get (floor of get)"]
    floor_ns = rows["mmh3 bucketing (floor of a rollout)"]
    for name, ns in [*rows.items(), *peers.items()]:
        print(f"| {name} | {ns:.0f} | {ns / dict_ns:.1f} | {ns / floor_ns:.2f} |")
    ok = plain <= 4 and rollout <= 4
    line = f"\nplain get / dict.get = {plain:.2f} (goal <= 4); rollout get / bucketing floor = {rollout:.2f} (goal <= 4)"
    if peers:
        fastest_name, fastest = min(peers.items(), key=lambda kv: kv[1])
        vs = rows["configctl get, 50% rollout + context"] / fastest
        ok = ok and vs < 0.5
        line += f"; rollout get / fastest peer ({fastest_name}) = {vs:.2f} (goal < 0.5)"
    print(line + f" -> {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
