"""Rollouts through the real `configctl` command and a real store (SQLite and PostgreSQL).

`apply` stores each pair's rollouts in its version (and a change of rollouts.yaml makes a
new version announcing the rolled-out key); `configctl rollout list|status|explain|simulate`
read them; `pause|resume|promote|abort` are audited new versions announced through the
outbox, kept across later commits. What the store holds is read back with plain SQL.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from tests.support.cli import Cli, make_cli
from tests.support.gitrepo import GitRepo
from tests.support.sql import Backend, backend

__all__ = ["backend"]  # the store fixture (SQLite, PostgreSQL), shared with the other tests

ROOT = Path(__file__).resolve().parents[2]
TREE = ROOT / "tests" / "data" / "trees" / "positive" / "rollouts-every-part"
NOTIFICATION = json.loads((ROOT / "schemas" / "v1" / "notification.schema.json").read_text())
DAY2 = "2026-12-02T10:00:00Z"  # the faster-timeout schedule is at 50 % then


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    """The rollouts data tree, committed (without the case's expected.json)."""
    repo = GitRepo.init(tmp_path / "config", from_tree=TREE)
    (repo.path / "expected.json").unlink()
    repo.commit("rollouts")
    return repo


@pytest.fixture
def cli(repo: GitRepo, backend: Backend) -> Cli:
    return make_cli(repo, backend)


@pytest.fixture
def store_less(repo: GitRepo) -> Cli:
    """`configctl` on ``repo`` with no store at hand (commands run without --db)."""
    return Cli(repo=repo, db="", env={})


def _explain(cli: Cli, key: str, *context: str, at: str | None = None) -> Any:
    """`rollout explain checkout prod KEY [-c CONTEXT] [--at AT] -o json`."""
    args = ["rollout", "explain", "checkout", "prod", key]
    for c in context:
        args += ["-c", c]
    return cli.json(*args, *(["--at", at] if at else []))


def _simulate(cli: Cli, sample: Path) -> Any:
    """`rollout simulate checkout prod database.timeout --sample SAMPLE --at DAY2 -o json`."""
    return cli.json(
        "rollout",
        "simulate",
        "checkout",
        "prod",
        "database.timeout",
        "--sample",
        str(sample),
        "--at",
        DAY2,
    )


def _outbox(backend: Backend) -> list[dict[str, Any]]:
    rows = backend.probe.rows("SELECT payload FROM outbox ORDER BY id")
    return [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]


def _rollouts_of(backend: Backend, env: str, number: int) -> list[dict[str, Any]]:
    raw = backend.probe.rows(
        "SELECT rollouts FROM versions WHERE app = 'checkout' AND env = :env AND number = :n",
        env=env,
        n=number,
    )[0][0]
    return list(raw if isinstance(raw, list) else json.loads(raw))


def test_apply_stores_rollouts_and_the_read_commands_explain_them(
    cli: Cli, backend: Backend, tmp_path: Path
) -> None:
    cli.apply()
    stored = {r["name"]: r for r in _rollouts_of(backend, "prod", 1)}
    assert set(stored) == {
        "faster-timeout",
        "timeout-for-testers",
        "debug-logs-on-canaries",
        "german-banner",
        "new-checkout",
        "dark-mode",
        "linear-search",
    }
    assert stored["new-checkout"]["percentage"] == 1250  # "12.5%" in the file
    dev = {r["name"] for r in _rollouts_of(backend, "dev", 1)}
    assert "faster-timeout" not in dev  # environments: [staging, prod]

    listed = cli.json("rollout", "list", "checkout", "prod")
    assert (listed["source"], listed["version"]) == ("store", 1)
    by_name = {r["name"]: r for r in listed["rollouts"]}
    assert by_name["faster-timeout"]["key"] == "database.timeout"
    assert by_name["faster-timeout"]["parts"] == ["schedule"]
    assert by_name["dark-mode"]["kind"] == "flag"

    status = cli.json("rollout", "status", "checkout", "prod", "--at", DAY2)
    row = {r["name"]: r for r in status["rollouts"]}["faster-timeout"]
    assert (row["status"], row["percentage"], row["stage"], row["steps"]) == ("active", 5000, 2, 3)
    assert row["next_step"] == {"at": "2026-12-03T09:00:00Z", "percentage": 10000}

    # u1's bucket for faster-timeout is 133 (rollout-vectors.json): in at 10 % already.
    ex = _explain(cli, "database.timeout", "user_id=u1,country=DE", at=DAY2)
    assert (ex["value"], ex["base"], ex["reason"], ex["rollout"], ex["rule"], ex["bucket"]) == (
        5,
        10,
        "split",
        "faster-timeout",
        "percentage",
        133,
    )
    assert ex["layer"] == {"layer": "rollout", "file": "apps/checkout/rollouts.yaml", "line": 6}
    assert ex["percentage"] == 5000
    tester = _explain(cli, "database.timeout", "user_id=qa-1")
    assert (tester["value"], tester["reason"], tester["rule"]) == (30, "targeting_match", "users")
    nobody = _explain(cli, "database.timeout", at=DAY2)
    assert (nobody["value"], nobody["reason"], nobody["bucket"]) == (10, "default", None)
    assert nobody["layer"] == {"layer": "app", "file": "apps/checkout/values.yaml", "line": 2}
    flag = _explain(cli, "new-checkout", "user_id=qa-1")
    assert (flag["kind"], flag["value"], flag["reason"]) == ("flag", True, "targeting_match")
    text = cli.run(
        "rollout",
        "explain",
        "checkout",
        "prod",
        "database.timeout",
        "-c",
        "user_id=u1",
        "--at",
        DAY2,
    ).stdout
    assert "database.timeout = 5" in text
    assert "bucket   133 of 10000" in text
    assert "apps/checkout/rollouts.yaml:6" in text

    sample = tmp_path / "users.jsonl"
    sample.write_text(
        "".join(json.dumps({"user_id": f"user-{i}"}) + "\n" for i in range(4000)), encoding="utf-8"
    )
    sim = _simulate(cli, sample)
    shares = {json.dumps(v["value"]): v["share"] for v in sim["values"]}
    assert sim["contexts"] == 4000
    assert 0.46 < shares["5"] < 0.54
    assert shares["5"] + shares["10"] == pytest.approx(1.0)
    csv = tmp_path / "users.csv"
    csv.write_text(
        "user_id,country\n" + "".join(f"user-{i},DE\n" for i in range(4000)), encoding="utf-8"
    )
    from_csv = _simulate(cli, csv)
    assert from_csv["values"] == sim["values"]


def test_controls_are_audited_versions_announced_and_kept_across_commits(
    cli: Cli, backend: Backend
) -> None:
    cli.apply()
    before = len(_outbox(backend))
    paused = cli.json("rollout", "pause", "checkout", "prod", "faster-timeout")
    assert paused == {
        "app": "checkout",
        "env": "prod",
        "rollout": "faster-timeout",
        "action": "pause",
        "previous_status": "active",
        "status": "paused",
        "version": 2,
        "previous_version": 1,
        "changed": True,
    }
    again = cli.json("rollout", "pause", "checkout", "prod", "faster-timeout")
    assert (again["changed"], again["version"]) == (False, None)

    state = {r["name"]: r for r in _rollouts_of(backend, "prod", 2)}["faster-timeout"]["state"]
    assert state["status"] == "paused"
    assert state["paused_at"]
    reason = backend.probe.rows(
        "SELECT reason FROM versions WHERE app = 'checkout' AND env = 'prod' AND number = 2"
    )
    assert reason == [("rollout",)]
    message = _outbox(backend)[before]
    jsonschema.validate(message, NOTIFICATION)
    assert (message["reason"], message["rollout"], message["action"], message["version"]) == (
        "rollout",
        "faster-timeout",
        "pause",
        2,
    )
    assert message["changed_keys"] == ["database.timeout"]
    audit = backend.probe.rows(
        "SELECT action, actor, version FROM audit_log WHERE action LIKE 'rollout.%' ORDER BY id"
    )
    assert audit == [("rollout.pause", "test-operator", 2)]
    assert backend.probe.rows(
        "SELECT key FROM rollout_state WHERE app = 'checkout' AND env = 'prod'"
    ) == [("faster-timeout",)]

    # Promote serves the value to everyone, the schedule notwithstanding.
    cli.json("rollout", "promote", "checkout", "prod", "faster-timeout")
    promoted = _explain(cli, "database.timeout", "user_id=u7", at="2026-11-01T00:00:00Z")
    assert (promoted["value"], promoted["reason"], promoted["rule"]) == (5, "static", "promoted")
    cli.json("rollout", "abort", "checkout", "prod", "faster-timeout")
    aborted = _explain(cli, "database.timeout", "user_id=u1", at=DAY2)
    # timeout-for-testers (not u1's) still shares the key: the base value, by default.
    assert (aborted["value"], aborted["reason"]) == (10, "default")
    # An impossible transition is refused (exit 1), an unknown name is a usage error.
    refused = cli.run("rollout", "pause", "checkout", "prod", "faster-timeout", rc=1)
    assert "cannot pause rollout `faster-timeout` of checkout/prod: it is aborted" in refused.stderr
    unknown = cli.run("rollout", "pause", "checkout", "prod", "fastr-timeout", rc=2)
    assert "no rollout or flag `fastr-timeout`" in unknown.stderr
    assert cli.run("rollout", "pause", "checkout", "nope", "x", rc=2).returncode == 2
    versions = backend.probe.versions()[("checkout", "prod")]
    assert versions == [1, 2, 3, 4]

    # The same commit again writes nothing: its rollouts with the state folded in are
    # exactly what is in service.
    cli.apply()
    assert backend.probe.versions()[("checkout", "prod")] == [1, 2, 3, 4]
    # A commit changing a rollout's value: a new version, the key announced, the abort kept.
    cli.repo.replace("apps/checkout/rollouts.yaml", "    value: 5\n", "    value: 6\n")
    cli.repo.commit("faster-timeout: 6")
    outcome = cli.apply()
    assert backend.probe.versions()[("checkout", "prod")] == [1, 2, 3, 4, 5]
    changed = {(p["app"], p["env"]): p for p in outcome["versions"]}
    assert ("checkout", "dev") not in changed  # faster-timeout is not in dev
    assert changed[("checkout", "prod")]["changed_keys"] == ["database.timeout"]
    assert changed[("checkout", "prod")]["changed"] == 0  # no value changed, a rollout did
    last = _outbox(backend)[-1]
    jsonschema.validate(last, NOTIFICATION)
    assert "database.timeout" in last["changed_keys"]
    kept = {r["name"]: r for r in _rollouts_of(backend, "prod", 5)}["faster-timeout"]
    assert (kept["value"], kept["state"]["status"]) == (6, "aborted")
    resumed = cli.json("rollout", "resume", "checkout", "prod", "faster-timeout")
    assert (resumed["previous_status"], resumed["status"], resumed["version"]) == (
        "aborted",
        "active",
        6,
    )


def test_read_commands_fall_back_to_the_working_tree(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "config", from_tree=TREE)
    shutil.rmtree(repo.path / ".configctl", ignore_errors=True)
    cli = Cli(repo=repo, db="", env={})
    listed = json.loads(
        cli.run("rollout", "list", "checkout", "prod", "-o", "json", db=False).stdout
    )
    assert (listed["source"], listed["version"]) == ("tree", None)
    assert not (repo.path / ".configctl").exists()  # reading never creates a store
    missing = cli.run("rollout", "status", "checkout", "prod", "--source", "store", rc=2, db=False)
    assert "no version in the store" in missing.stderr


def test_diff_lists_the_rollouts_a_change_touches(repo: GitRepo, store_less: Cli) -> None:
    cli = store_less
    repo.replace("apps/checkout/rollouts.yaml", "    percentage: 2500\n", "    percentage: 3000\n")
    repo.replace("apps/checkout/rollouts.yaml", "  dark-mode:\n    enabled: false\n", "")
    payload = json.loads(cli.run("diff", "--format", "json", db=False).stdout)
    assert payload["rollouts_touched"] == ["checkout"]
    assert {
        (c["env"], c["rollout"], c["key"], c["change"]) for c in payload["rollout_changes"]
    } == {
        (env, name, key, change)
        for env in ("dev", "staging", "prod")
        for name, key, change in (
            ("german-banner", "banner", "changed"),
            ("dark-mode", None, "removed"),
        )
    }
    text = cli.run("diff", db=False).stdout
    assert "rollout german-banner (banner) changed in checkout/prod" in text
    # Only rollouts changed, no resolved value: still a change for --exit-code.
    assert cli.run("diff", "--exit-code", rc=1, db=False).returncode == 1
