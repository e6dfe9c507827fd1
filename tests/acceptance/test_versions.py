"""Versions, history, rollback and diff through the real `configctl` command (issue 3).

Every test drives the `configctl` command against a real git repository built in
``tmp_path`` (``gitrepo.GitRepo``: several commits, a fixed identity, no global git
configuration) and a real store, once on a SQLite file and once on a fresh
PostgreSQL database (``pg_db_url`` from ``tests/servers.py``; the PostgreSQL cases carry
the ``integration`` marker). What the store holds afterwards is read back with plain SQL
on the documented table names, so a check never trusts the code it checks.

Most commands run in this process (``run_in_process``: the console script's ``main()``
with its own argv, environment, stdout and stderr, and the exit code it leaves), which
costs milliseconds where a new interpreter costs about a second. The cases whose point is
the process itself run the installed console script in a subprocess: two applies racing
each other, an apply killed with SIGKILL inside its transaction, the actor taken from the
environment, a command run from another working directory, and the exit code and clean
stderr of a store that needs `db upgrade`.

Covered: idempotent apply; a change through every layer reaching exactly the pairs under
it; an invalid commit rejected with nothing but its record stored; two applies at once;
a process killed inside its transaction; one key's history over many commits; rollback,
pin, quarantine, release and `--revert`; `revert --keys`; `diff` of a global change in
text, JSON and Markdown; `--dry-run`, exit codes and the JSON field names of the README;
secret values absent from every output of `history`, `audit`, `diff` and `apply`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.servers import libpq_url
from tests.support import trees
from tests.support.cli import (
    ACTOR,
    Cli,
    cli,
    configctl_argv,
    example,
    make_cli,
    show,
    written,
)
from tests.support.gitrepo import DEFAULT_AUTHOR, GitRepo, git_env
from tests.support.sql import Backend, backend

__all__ = ["backend", "cli", "example"]  # fixtures shared from tests/support

APPS = ("billing", "checkout", "search")
ENVS = ("dev", "staging", "production")
PAIRS = frozenset((a, e) for a in APPS for e in ENVS)
REDACTED = "<redacted>"


def by_pair(result: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(v["app"], v["env"]): v for v in result["versions"]}


def write_generated_tree(repo: GitRepo, *, apps: int, groups: int, marker: str = "a") -> int:
    """The generated tree of ``tests.support.trees`` in ``repo``; returns keys per pair."""
    return trees.write_generated_tree(repo.path, apps=apps, groups=groups, marker=marker)


# =========================================================================== apply


def test_apply_is_idempotent_and_records_everything(cli: Cli, backend: Backend, example: GitRepo) -> None:
    sha = example.head()
    first = cli.apply()
    assert set(first) >= {"commit", "status", "dry_run", "valid", "errors", "versions"}
    assert (first["commit"], first["status"], first["dry_run"], first["valid"], first["errors"]) == (
        sha, "applied", False, True, [],
    )
    assert written(first) == PAIRS
    for v in first["versions"]:
        assert set(v) >= {"app", "env", "version", "previous_version", "added", "changed", "removed", "changed_keys", "skipped"}
        assert (v["version"], v["previous_version"], v["changed"], v["removed"], v["skipped"]) == (1, None, 0, 0, None)
        assert v["added"] == len(v["changed_keys"]) > 0
    probe = backend.probe
    after_first = probe.counts()
    assert after_first["versions"] == 9
    assert after_first["outbox"] == 9  # one message per new version, same transaction
    assert after_first["key_changes"] == sum(v["added"] for v in first["versions"])
    assert probe.commit_status(sha) == "applied"
    actions = [a["action"] for a in cli.json("audit")]
    assert actions.count("version.created") == 9
    assert actions.count("commit.applied") == 1

    # the same commit again: nothing at all is written
    again = cli.apply()
    assert again["status"] == "already-applied"
    assert again["versions"] == []
    assert probe.counts() == after_first
    text = cli.run("apply").stdout
    assert "nothing to apply" in text
    assert probe.counts() == after_first

    # the values in service are the resolved values of the commit
    served = show(cli, "checkout", "production")
    assert set(served) >= {"app", "env", "version", "commit", "checksum", "reason", "created_at", "values"}
    assert (served["version"], served["commit"], served["reason"]) == (1, sha, "commit")
    assert served["values"]["database"]["pool"] == {"min": 1, "max": 50}
    assert "new_cart" not in served["values"]["features"]  # removed by !unset in production
    assert served["values"]["log"] == {"level": "warning", "format": "json"}


def test_apply_prints_a_summary_table(cli: Cli, example: GitRepo) -> None:
    out = cli.run("apply").stdout
    lines = out.splitlines()
    assert lines[0].split("\t") == ["APP", "ENV", "VERSION", "ADDED", "CHANGED", "REMOVED"]
    rows = {tuple(line.split("\t")[:2]): line.split("\t")[2:] for line in lines[1:]}
    assert set(rows) == PAIRS
    assert rows[("checkout", "production")][0] == "v1"

    example.replace("global.yaml", "timeout_ms: 2000", "timeout_ms: 2500")
    example.commit("longer http timeout")
    lines = cli.run("apply").stdout.splitlines()
    rows = {tuple(line.split("\t")[:2]): line.split("\t")[2:] for line in lines[1:]}
    assert rows[("search", "dev")] == ["v2", "0", "1", "0"]


def test_dry_run_prints_the_plan_and_writes_nothing(cli: Cli, backend: Backend, example: GitRepo) -> None:
    plan = cli.apply("--dry-run")
    assert (plan["status"], plan["dry_run"], plan["valid"]) == ("planned", True, True)
    assert {(v["app"], v["env"]) for v in plan["versions"]} == PAIRS
    assert all(v["version"] is None and v["previous_version"] is None for v in plan["versions"])
    assert backend.probe.counts() == dict.fromkeys(backend.probe.counts(), 0)
    cli.run("apply", "--dry-run")  # the text form too
    assert sum(backend.probe.counts().values()) == 0
    assert cli.json("status")["last_applied_commit"] is None

    cli.apply()
    before = backend.probe.counts()
    example.replace("apps/search/values.yaml", "ttl_seconds: 60", "ttl_seconds: 90")
    sha = example.commit("search cache ttl")
    plan = cli.apply("--dry-run")
    assert plan["status"] == "planned"
    # production overrides the ttl, so only dev and staging would change
    assert {(v["app"], v["env"]) for v in plan["versions"]} == {("search", "dev"), ("search", "staging")}
    assert all(v["version"] is None and v["previous_version"] == 1 and v["changed"] == 1 for v in plan["versions"])
    text = cli.run("apply", "--dry-run").stdout
    assert "search\tdev" in text
    assert backend.probe.counts() == before
    assert backend.probe.commit_status(sha) is None

    # an invalid commit under --dry-run: exit 1, and not even the rejection is recorded
    example.replace("apps/checkout/envs/production.yaml", "replicas: 6", "replicas: many")
    bad = example.commit("bad replicas")
    result = cli.apply("--dry-run", rc=1)
    assert (result["status"], result["valid"]) == ("rejected", False)
    assert backend.probe.counts() == before
    assert backend.probe.commit_status(bad) is None


def test_changes_through_every_layer_reach_exactly_the_pairs_under_them(
    cli: Cli, backend: Backend, example: GitRepo
) -> None:
    cli.apply()

    def step(message: str) -> dict[tuple[str, str], dict[str, Any]]:
        example.commit(message)
        result = cli.apply()
        assert result["status"] == "applied"
        assert all(v["version"] is not None for v in result["versions"])
        return by_pair(result)

    # global.yaml: every app in every environment
    example.replace("global.yaml", "timeout_ms: 2000", "timeout_ms: 2500")
    got = step("global: http timeout")
    assert set(got) == PAIRS
    assert all((v["changed"], v["changed_keys"], v["version"]) == (1, ["http.timeout_ms"], 2) for v in got.values())
    assert show(cli, "billing", "dev")["values"]["http"]["timeout_ms"] == 2500

    # global.yaml, a key that dev and production override: only staging sees it
    example.replace("global.yaml", "level: info", "level: error")
    got = step("global: log level")
    assert set(got) == {(a, "staging") for a in APPS}
    assert all(v["changed_keys"] == ["log.level"] for v in got.values())

    # environments/<env>.yaml: every app in that environment
    example.replace("environments/staging.yaml", "sample_ratio: 0.5", "sample_ratio: 0.25")
    got = step("staging: sampling")
    assert set(got) == {(a, "staging") for a in APPS}
    assert all(v["changed_keys"] == ["telemetry.sample_ratio"] for v in got.values())

    # apps/<app>/values.yaml: that app in the environments that do not override the key
    example.replace("apps/search/values.yaml", "ttl_seconds: 60", "ttl_seconds: 90")
    got = step("search: ttl")
    assert set(got) == {("search", "dev"), ("search", "staging")}

    # apps/<app>/envs/<env>.yaml: one pair
    example.replace("apps/search/envs/production.yaml", "shards: 6", "shards: 8")
    got = step("search production: shards")
    assert set(got) == {("search", "production")}
    assert got[("search", "production")]["changed_keys"] == ["index.shards"]
    assert show(cli, "search", "production")["values"]["index"]["shards"] == 8

    # a key added in the app layer, and an inherited key removed with !unset
    example.replace("apps/search/values.yaml", "  ttl_seconds: 90\n", "  ttl_seconds: 90\n  max_entries: 1000\n")
    example.write("apps/billing/envs/production.yaml", "queue:\n  concurrency: 16\nsmtp:\n  host: !unset\n")
    got = step("search entries, billing production without smtp host")
    assert set(got) == {("search", e) for e in ENVS} | {("billing", "production")}
    assert all(got[("search", e)]["added"] == 1 for e in ENVS)
    assert (got[("billing", "production")]["removed"], got[("billing", "production")]["changed_keys"]) == (1, ["smtp.host"])
    assert "host" not in show(cli, "billing", "production")["values"]["smtp"]

    # a new app: three pairs at version 1
    example.write("apps/ledger/app.yaml", "description: Ledger\nowners: [team-finance]\n")
    example.write("apps/ledger/values.yaml", "ledger:\n  currency: EUR\n")
    got = step("new app ledger")
    assert set(got) == {("ledger", e) for e in ENVS}
    assert all((v["version"], v["previous_version"]) == (1, None) for v in got.values())

    # a change that resolves to the same values: the commit is applied, no version written
    before = backend.probe.counts()
    example.replace("global.yaml", "# Values every app", "# The values every app")
    sha = example.commit("comment only")
    result = cli.apply()
    assert (result["status"], result["versions"]) == ("applied", [])
    assert backend.probe.commit_status(sha) == "applied"
    assert backend.probe.counts()["versions"] == before["versions"]

    # an app removed: its pairs get an empty version (nothing served any more)
    example.remove("apps/ledger")
    got = step("drop ledger")
    assert set(got) == {("ledger", e) for e in ENVS}
    for (app, env), v in got.items():
        keys_before = cli.json("history", app, env)[-1]["changed_keys"]  # all added at version 1
        assert (v["version"], v["added"], v["changed"]) == (2, 0, 0)
        assert v["changed_keys"] == keys_before
        assert v["removed"] == len(keys_before)
        assert "ledger.currency" in keys_before
    assert show(cli, "ledger", "dev")["values"] == {}

    versions = backend.probe.versions()
    assert all(numbers == list(range(1, len(numbers) + 1)) for numbers in versions.values())
    assert len(versions[("billing", "staging")]) == 4


def test_an_invalid_commit_is_rejected_with_nothing_stored(cli: Cli, backend: Backend, example: GitRepo) -> None:
    good = example.head()
    cli.apply()
    before = backend.probe.counts()
    example.replace("apps/checkout/envs/production.yaml", "replicas: 6", "replicas: many")
    example.write("apps/search/envs/qa.yaml", "index:\n  shards: 2\n")  # an undeclared environment
    bad = example.commit("two mistakes")

    done = cli.run("apply", rc=1)
    assert "apps/checkout/envs/production.yaml:1:" in done.stderr
    assert "apps/search/envs/qa.yaml" in done.stderr
    assert "rejected" in done.stderr
    after = backend.probe.counts()
    for table in ("versions", "key_changes", "outbox", "pins"):
        assert after[table] == before[table], table
    assert backend.probe.commit_status(bad) == "rejected"
    assert after["commits"] == before["commits"] + 1
    assert show(cli, "checkout", "production")["values"]["replicas"] == 6  # the last good one stays

    result = cli.apply(rc=1)
    assert (result["status"], result["valid"], result["versions"]) == ("rejected", False, [])
    assert {e["file"] for e in result["errors"]} >= {"apps/checkout/envs/production.yaml", "apps/search/envs/qa.yaml"}
    assert backend.probe.counts()["commits"] == after["commits"]  # one record per commit

    status = cli.json("status")
    assert set(status) >= {"head", "last_applied_commit", "last_attempted_commit", "pending_commits", "rejected_commits", "pins", "versions"}
    assert (status["head"], status["last_applied_commit"], status["last_attempted_commit"]) == (bad, good, bad)
    assert [c["commit"] for c in status["rejected_commits"]] == [bad]
    assert "apps/checkout/envs/production.yaml" in status["rejected_commits"][0]["reason"]
    rejected = [a for a in cli.json("audit") if a["action"] == "commit.rejected"]
    assert rejected
    assert {a["commit"] for a in rejected} == {bad}

    # the fix is applied as usual
    example.replace("apps/checkout/envs/production.yaml", "replicas: many", "replicas: 8")
    example.remove("apps/search/envs/qa.yaml")
    fixed = example.commit("fix")
    result = cli.apply()
    assert written(result) == {("checkout", "production")}
    assert cli.json("status")["last_applied_commit"] == fixed


def test_status_lists_commits_not_yet_applied(cli: Cli, example: GitRepo) -> None:
    status = cli.json("status")
    assert status["last_applied_commit"] is None
    assert [c["commit"] for c in status["pending_commits"]] == [example.head()]
    cli.apply()
    example.replace("global.yaml", "retries: 2", "retries: 4")
    c2 = example.commit("retries", author=("Bob Builder", "bob@example.invalid"))
    example.replace("global.yaml", "retries: 4", "retries: 5")
    c3 = example.commit("more retries")
    status = cli.json("status")
    assert status["head"] == c3
    assert [c["commit"] for c in status["pending_commits"]] == [c2, c3]
    assert status["pending_commits"][0]["author"] == "bob@example.invalid"
    assert status["versions"] == 9
    assert "commits not applied:  2" in cli.run("status").stdout


@pytest.mark.integration
def test_a_postgresql_store_is_migrated_by_db_upgrade_only(example: GitRepo, pg_db_url: str) -> None:
    cli = Cli(repo=example, db=libpq_url(pg_db_url), env=dict(git_env(), CONFIGCTL_ACTOR=ACTOR))
    # the refusal in a subprocess: its exit code, and stderr without a traceback
    done = Cli(repo=cli.repo, db=cli.db, env=cli.env, in_subprocess=True).run("apply", rc=3)
    assert "configctl db upgrade" in done.stderr
    assert "Traceback" not in done.stderr
    assert "store at revision" in cli.run("db", "upgrade").stdout
    assert cli.apply()["status"] == "applied"
    cli.run("db", "upgrade")  # again: nothing to do
    assert cli.apply()["status"] == "already-applied"


# =========================================================================== concurrency and crashes


def test_two_applies_at_once_never_duplicate_or_skip_a_version(tmp_path: Path, backend: Backend) -> None:
    repo = GitRepo.init(tmp_path / "config")
    per_pair = write_generated_tree(repo, apps=40, groups=4)
    repo.commit("base")
    cli = make_cli(repo, backend)
    rounds = 3
    for r in range(rounds):
        # two commits that both change every pair, applied by two processes at once
        repo.write("global.yaml", "".join(f"g{i}: {i + 100 * r + 1}\n" for i in range(20)))
        first = repo.commit(f"round {r} a")
        repo.write("global.yaml", "".join(f"g{i}: {i + 100 * r + 2}\n" for i in range(20)))
        second = repo.commit(f"round {r} b")
        # Either may finish before the other starts (a loaded machine starts one process
        # late): going back to `first` after `second` is allowed here, the numbering is
        # what is under test, not the guard against serving older values.
        procs = [
            cli.popen("apply", "--rev", rev, "--allow-backwards", "--output", "json")
            for rev in (first, second)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        for p, (out, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err
            assert json.loads(out)["status"] == "applied"
    versions = backend.probe.versions()
    assert len(versions) == 40 * 3
    for pair, numbers in versions.items():
        # each round's two commits differ from each other and from before, in either order
        assert numbers == list(range(1, 2 * rounds + 1)), pair
    counts = backend.probe.counts()
    assert counts["outbox"] == counts["versions"] == 40 * 3 * 2 * rounds
    dup = backend.probe.rows(
        "SELECT app, env, number, count(*) FROM versions GROUP BY app, env, number HAVING count(*) > 1"
    )
    assert dup == []
    assert per_pair == 60


def test_two_first_applies_on_an_empty_store(tmp_path: Path, backend: Backend) -> None:
    """The very first applies race each other (on SQLite, also the self-migration)."""
    repo = GitRepo.init(tmp_path / "config")
    write_generated_tree(repo, apps=20, groups=2)
    first = repo.commit("a")
    write_generated_tree(repo, apps=20, groups=2, marker="b")
    second = repo.commit("b")
    cli = make_cli(repo, backend)
    # Either may finish first: the parent after its child is going back, which is not
    # what this race is about (the self-migration and the numbering are).
    procs = [
        cli.popen("apply", "--rev", rev, "--allow-backwards", "--output", "json")
        for rev in (first, second)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    versions = backend.probe.versions()
    assert len(versions) == 60
    assert all(numbers == [1, 2] for numbers in versions.values())
    assert {backend.probe.commit_status(first), backend.probe.commit_status(second)} == {"applied"}


def _writing_transaction_open(backend: Backend, wal_before: int) -> bool:
    """Is another process inside a write transaction that has written something?"""
    if backend.name == "postgresql":
        rows = backend.probe.rows(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL"
        )
        return int(rows[0][0]) > 0
    path = backend.cli_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        # locked by a writer; and pages of its transaction spill into the WAL
        wal = Path(path + "-wal")
        return wal.exists() and wal.stat().st_size > wal_before + 256 * 1024
    else:
        conn.execute("ROLLBACK")
        return False
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_process_killed_inside_apply_leaves_nothing_and_the_next_apply_completes(
    tmp_path: Path, backend: Backend
) -> None:
    repo = GitRepo.init(tmp_path / "config")
    apps = 150
    pairs = apps * 3
    cli = make_cli(repo, backend)
    cli.run("db", "upgrade")
    probe = backend.probe
    killed_inside = False
    for attempt in range(5):
        # each attempt applies a new commit that changes every key of every pair
        per_pair = write_generated_tree(repo, apps=apps, groups=10, marker=f"attempt{attempt}")
        sha = repo.commit(f"a big tree, attempt {attempt}")
        before = probe.counts()
        wal = Path(backend.cli_url.removeprefix("sqlite:///") + "-wal")
        wal_before = wal.stat().st_size if backend.name == "sqlite" and wal.exists() else 0
        proc = cli.popen("apply", "--output", "json")
        deadline = time.monotonic() + 120
        saw_transaction = False
        while proc.poll() is None and time.monotonic() < deadline:
            if _writing_transaction_open(backend, wal_before):
                saw_transaction = True
                break
            time.sleep(0.01)
        if saw_transaction:
            time.sleep(0.1 * attempt)  # a little deeper into the transaction each time
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        if backend.name == "postgresql":
            # the server rolls the dead client's transaction back once it notices
            deadline = time.monotonic() + 30
            while _writing_transaction_open(backend, 0) and time.monotonic() < deadline:
                time.sleep(0.05)

        after = probe.counts()
        status = probe.commit_status(sha)
        if after == before:
            # nothing of the commit: no version, key change, message, audit row or record
            assert status is None
            killed_inside = saw_transaction and proc.returncode == -signal.SIGKILL
            if killed_inside:
                break
        else:
            # everything of the commit: the process committed before the kill landed
            assert after["versions"] - before["versions"] == pairs
            assert after["outbox"] - before["outbox"] == pairs
            assert after["key_changes"] - before["key_changes"] == pairs * (per_pair if attempt == 0 else per_pair - 20)
            assert status == "applied"
    assert killed_inside, "never caught apply inside its transaction"

    # the next apply completes the commit the killed one had started
    versions_before = probe.versions()
    result = cli.apply()
    assert result["commit"] == sha
    assert result["status"] == "applied"
    assert len(written(result)) == pairs
    after = probe.counts()
    assert after["versions"] - before["versions"] == after["outbox"] - before["outbox"] == pairs
    for pair, numbers in probe.versions().items():
        assert numbers == [*versions_before.get(pair, []), len(versions_before.get(pair, [])) + 1]
        assert numbers == list(range(1, len(numbers) + 1))
    assert probe.commit_status(sha) == "applied"
    assert cli.apply()["status"] == "already-applied"


# =========================================================================== history


def test_history_of_one_key_across_many_commits(cli: Cli, example: GitRepo) -> None:
    authors = [("Ann", "ann@example.invalid"), ("Ben", "ben@example.invalid"), ("Cid", "cid@example.invalid")]
    commits = [example.head()]
    cli.apply()
    expected: list[tuple[int, str, Any, Any, str]] = [(1, "added", None, 50, commits[0])]  # version, change, old, new, commit
    version = 1
    pool = 50
    for i in range(9):
        author = authors[i % 3]
        if i % 3 == 2:
            # a commit that does not touch the key: a version, but no history entry
            example.replace("environments/production.yaml", f"retries: {3 + i // 3}", f"retries: {4 + i // 3}")
            commits.append(example.commit(f"retries {i}", author=author))
            cli.apply()
            version += 1
            continue
        new = pool + 5
        example.replace("apps/checkout/envs/production.yaml", f"max: {pool}", f"max: {new}")
        commits.append(example.commit(f"pool {new}", author=author))
        cli.apply()
        version += 1
        expected.append((version, "changed", pool, new, commits[-1]))
        pool = new
    # the key removed from the app-env layer falls back to the app layer's value (10)
    example.replace("apps/checkout/envs/production.yaml", f"  pool:\n    max: {pool}\n", "")
    commits.append(example.commit("pool from values.yaml", author=authors[0]))
    cli.apply()
    version += 1
    expected.append((version, "changed", pool, 10, commits[-1]))
    # and removed altogether with !unset
    example.write(
        "apps/checkout/envs/production.yaml",
        example.read("apps/checkout/envs/production.yaml").replace("database:\n", "database:\n  pool:\n    max: !unset\n", 1),
    )
    commits.append(example.commit("no pool max", author=authors[1]))
    cli.apply()
    version += 1
    expected.append((version, "removed", 10, None, commits[-1]))

    rows = cli.json("history", "checkout", "production", "database.pool.max")
    assert [(r["version"], r["change"], r["old"], r["new"], r["commit"]) for r in rows] == expected[::-1]
    for r in rows:
        assert set(r) >= {"version", "commit", "author", "created_at", "reason", "change", "old", "new", "changed_keys"}
        assert "database.pool.max" in r["changed_keys"]
        assert r["reason"] == "commit"
    author_of = dict(zip(commits, [DEFAULT_AUTHOR] + [authors[i % 3] for i in range(9)] + authors[:2], strict=True))
    for r in rows:
        name, email = author_of[r["commit"]]
        assert r["author"] == f"{name} <{email}>"
    assert [r["created_at"] for r in rows] == sorted((r["created_at"] for r in rows), reverse=True)

    # the version list: every version, newest first, with the documented fields
    versions = cli.json("history", "checkout", "production")
    assert [v["version"] for v in versions] == list(range(version, 0, -1))
    for v in versions:
        assert set(v) >= {"version", "commit", "author", "created_at", "reason", "actor", "rolled_back_to", "changed_keys"}
        assert v["actor"] == ACTOR
    assert versions[-1]["commit"] == commits[0]
    assert "Ada Operator" in versions[-1]["author"]
    assert versions[-1]["changed_keys"] == sorted(versions[-1]["changed_keys"])
    assert {"database.pool.max", "replicas", "log.level"} <= set(versions[-1]["changed_keys"])
    assert cli.json("history", "checkout", "production", "--limit", "2") == versions[:2]
    # the text form and an unknown pair
    assert "database.pool.max" in cli.run("history", "checkout", "production").stdout
    # an unknown app is a usage error with a did-you-mean (issue 7)
    assert "did you mean" in cli.run("history", "chekout", "production", rc=2).stderr
    # an older version is still there to show
    assert show(cli, "checkout", "production", 1)["values"]["database"]["pool"]["max"] == 50


def test_audit_filters(cli: Cli, example: GitRepo) -> None:
    cli.apply()
    example.replace("apps/search/envs/production.yaml", "shards: 6", "shards: 7")
    example.commit("shards")
    other = dict(cli.env, CONFIGCTL_ACTOR="someone-else")
    done = subprocess.run(
        [*configctl_argv(), "apply", "--repo", str(example.path), "--db", cli.db],
        env=other, capture_output=True, text=True, check=False, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = cli.json("audit")
    for r in rows:
        assert set(r) >= {"at", "actor", "host", "action", "app", "env", "commit", "version", "details"}
    assert [r["at"] for r in rows] == sorted((r["at"] for r in rows), reverse=True)
    search = cli.json("audit", "--app", "search", "--env", "production")
    assert [(r["action"], r["version"]) for r in search] == [("version.created", 2), ("version.created", 1)]
    mine = cli.json("audit", "--actor", "someone-else")
    assert {r["action"] for r in mine} == {"commit.applied", "version.created"}
    assert {r["actor"] for r in mine} == {"someone-else"}
    assert len(cli.json("audit", "--since", "1h")) == len(rows)
    assert cli.json("audit", "--since", "2999-01-01") == []
    cli.run("audit", "--since", "yesterday-ish", rc=2)


# =========================================================================== rollback


def test_rollback_pin_quarantine_release_round_trip(cli: Cli, backend: Backend, example: GitRepo) -> None:
    cli.apply()
    example.replace("apps/checkout/envs/production.yaml", "max: 50", "max: 80")
    bad = example.commit("bigger pool (a mistake)")
    cli.apply()
    assert show(cli, "checkout", "production")["values"]["database"]["pool"]["max"] == 80

    head_before, branch_before, status_before = example.head(), example.current_branch(), example.status()
    file_before = example.read("apps/checkout/envs/production.yaml")
    done = cli.run("rollback", "checkout", "production", "--to", "1", "--revert", "--reason", "pool exhaustion")
    assert "version 3" in done.stdout
    # the checkout is untouched; the revert waits on its own branch, one commit on HEAD
    assert (example.head(), example.current_branch(), example.status()) == (head_before, branch_before, status_before)
    assert example.read("apps/checkout/envs/production.yaml") == file_before
    branch = f"configctl/revert-{bad[:12]}"
    assert branch in example.branches()
    assert example.parents(branch) == [bad]
    assert "max: 50" in example.show(branch, "apps/checkout/envs/production.yaml")
    assert len(example.git("worktree", "list").splitlines()) == 1

    served = show(cli, "checkout", "production")
    assert (served["version"], served["reason"]) == (3, "rollback")
    assert served["values"] == show(cli, "checkout", "production", 1)["values"]
    top = cli.json("history", "checkout", "production")[0]
    assert (top["version"], top["reason"], top["rolled_back_to"], top["actor"]) == (3, "rollback", 1, ACTOR)
    assert top["changed_keys"] == ["database.pool.max"]

    # while pinned: status shows the pin, the drift from git and the quarantined commit
    status = cli.json("status")
    assert len(status["pins"]) == 1
    pin = status["pins"][0]
    assert (pin["app"], pin["env"], pin["pinned_version"], pin["served_version"]) == ("checkout", "production", 3, 3)
    assert pin["quarantined_commit"] == bad
    assert pin["reason"] == "pool exhaustion"
    assert pin["drift_keys"] == ["database.pool.max"]
    text = cli.run("status").stdout
    assert "checkout/production pinned at v3" in text
    assert bad[:12] in text
    assert "database.pool.max" in text

    # apply leaves a pinned pair alone, even for a newer commit that changes it
    again = cli.apply()
    assert by_pair(again)[("checkout", "production")]["skipped"] == "pinned"
    assert "pinned" in cli.run("apply").stderr
    example.replace("apps/search/envs/production.yaml", "shards: 6", "shards: 7")
    example.replace("apps/checkout/envs/production.yaml", "replicas: 6", "replicas: 7")
    newer = example.commit("search shards, checkout replicas")
    result = by_pair(cli.apply())
    assert result[("search", "production")]["version"] == 2
    assert (result[("checkout", "production")]["version"], result[("checkout", "production")]["skipped"]) == (None, "pinned")
    assert show(cli, "checkout", "production")["version"] == 3
    assert cli.json("status")["pins"][0]["drift_keys"] == ["database.pool.max", "replicas"]

    # release: the newer commit changed the pair, so it supersedes the quarantine
    assert "released" in cli.run("release", "checkout", "production").stdout
    cli.run("release", "checkout", "production", rc=2)  # not pinned any more
    assert cli.json("status")["pins"] == []
    result = by_pair(cli.apply())
    assert result[("checkout", "production")]["version"] == 4
    values = show(cli, "checkout", "production")["values"]
    assert (values["replicas"], values["database"]["pool"]["max"]) == (7, 80)
    assert backend.probe.commit_status(newer) == "applied"

    actions = [a["action"] for a in cli.json("audit", "--app", "checkout", "--env", "production")]
    assert {"rollback", "pin", "release"} <= set(actions)
    rollback_row = next(a for a in cli.json("audit") if a["action"] == "rollback")
    assert rollback_row["actor"] == ACTOR
    assert rollback_row["version"] == 3
    assert rollback_row["host"]


def test_a_quarantined_commit_is_not_applied_again_until_superseded(cli: Cli, example: GitRepo) -> None:
    cli.apply()
    example.replace("apps/checkout/envs/production.yaml", "max: 50", "max: 80")
    bad = example.commit("bigger pool (a mistake)")
    cli.apply()
    cli.run("rollback", "checkout", "production", "--to", "1")
    cli.run("release", "checkout", "production")

    # released, but git still says 80: that commit's values stay out of service
    result = by_pair(cli.apply())
    assert result[("checkout", "production")]["skipped"] == "quarantined"
    assert result[("checkout", "production")]["version"] is None
    assert cli.apply("--rev", bad)["versions"][0]["skipped"] == "quarantined"
    assert "quarantined" in cli.run("apply").stderr
    assert show(cli, "checkout", "production")["version"] == 3

    # a newer commit that changes other pairs only does not lift it
    example.replace("apps/checkout/envs/staging.yaml", "checkout-db.staging.internal", "checkout-db2.staging.internal")
    example.commit("staging db host")
    result = by_pair(cli.apply())
    assert result[("checkout", "staging")]["version"] == 2
    assert result[("checkout", "production")]["skipped"] == "quarantined"
    assert show(cli, "checkout", "production")["values"]["database"]["pool"]["max"] == 50

    # a newer commit that changes the pair supersedes it
    example.replace("apps/checkout/envs/production.yaml", "max: 80", "max: 60")
    example.commit("a measured pool")
    result = by_pair(cli.apply())
    assert result[("checkout", "production")]["version"] == 4
    assert show(cli, "checkout", "production")["values"]["database"]["pool"]["max"] == 60
    # and the quarantine is gone for good: going back to 80 in git is served again
    example.replace("apps/checkout/envs/production.yaml", "max: 60", "max: 80")
    example.commit("80 after all")
    assert by_pair(cli.apply())[("checkout", "production")]["version"] == 5


def test_rollback_errors(cli: Cli) -> None:
    cli.run("rollback", "checkout", "production", "--to", "1", rc=2)  # nothing applied yet
    cli.apply()
    cli.run("rollback", "checkout", "production", "--to", "1", rc=2)  # already in service
    cli.run("rollback", "checkout", "production", "--to", "7", rc=2)  # no such version
    cli.run("rollback", "nope", "production", "--to", "1", rc=2)
    cli.run("release", "checkout", "production", rc=2)
    cli.run("show", "checkout", "production", "--version", "9", rc=2)
    cli.run("apply", "--rev", "no-such-revision", rc=2)
    assert cli.json("status")["pins"] == []


# =========================================================================== revert


def test_revert_a_whole_commit_or_only_some_keys(example: GitRepo) -> None:
    cli = Cli(repo=example, db="unused", env=git_env())  # revert needs git only
    example.replace("apps/checkout/envs/production.yaml", "max: 50", "max: 80")
    example.replace("apps/checkout/envs/production.yaml", "replicas: 6", "replicas: 9")
    example.replace("apps/billing/values.yaml", "due_days: 30", "due_days: 45")
    change = example.commit("three changes")
    example.replace("global.yaml", "retries: 2", "retries: 3")
    later = example.commit("a later, unrelated change")
    head, status = example.head(), example.status()

    done = cli.run("revert", change[:10], "--keys", "database.pool.max,due_days", db=False, rc=2)
    assert "due_days" in done.stderr  # not a dotted key the commit changed
    done = cli.run("revert", change[:10], "--keys", "database.pool.max,invoice.due_days", db=False)
    branch = f"configctl/revert-{change[:12]}"
    assert branch in done.stdout
    assert (example.head(), example.status(), example.current_branch()) == (head, status, "main")
    assert example.parents(branch) == [later]
    # only the named keys went back; the other change of the commit and the later commit stay
    diff = cli.json("diff", later, branch, db=False)
    changes = {(c["app"], c["env"]): {k["key"]: (k["old"], k["new"]) for k in c["keys"]} for c in diff["changes"]}
    assert changes[("checkout", "production")] == {"database.pool.max": (80, 50)}
    assert {p for p, keys in changes.items() if "invoice.due_days" in keys} == {("billing", e) for e in ENVS}
    assert diff["summary"]["pairs"] == 4
    # the rewritten production file keeps its `!unset` marker
    prod = example.show(branch, "apps/checkout/envs/production.yaml")
    assert "!unset" in prod
    assert "replicas: 9" in prod

    # the whole commit, on a branch of its own name
    done = cli.run("revert", change, "--branch", "undo-all", db=False)
    assert "undo-all" in done.stdout
    diff = cli.json("diff", later, "undo-all", db=False)
    keys = {k["key"] for c in diff["changes"] for k in c["keys"]}
    assert keys == {"database.pool.max", "replicas", "invoice.due_days"}
    assert (example.head(), example.status()) == (head, status)
    cli.run("revert", "no-such-commit", db=False, rc=2)


# =========================================================================== diff


def test_diff_of_a_global_change_reaches_every_app(tmp_path: Path, example: GitRepo) -> None:
    # diff needs nothing but git: a store URL that cannot work must not matter
    cli = Cli(repo=example, db="unused", env=dict(git_env(), CONFIGCTL_DB="postgresql://nobody@127.0.0.1:1/none"))
    base = example.head()
    assert cli.run("diff", "--exit-code", db=False).stdout.startswith("No change")
    assert cli.json("diff", db=False)["changes"] == []

    example.replace("global.yaml", "timeout_ms: 2000", "timeout_ms: 2500")
    example.replace("global.yaml", "level: info", "level: error")  # dev and production override it

    # the working tree against HEAD (the default)
    payload = cli.json("diff", db=False)
    assert set(payload) >= {"summary", "changed_files", "changes", "base", "head", "rollouts_touched", "head_valid"}
    assert set(payload["summary"]) >= {"apps", "environments", "pairs", "keys", "app_names", "environment_names"}
    assert (payload["base"], payload["head"], payload["head_valid"]) == ("HEAD", None, True)
    assert payload["changed_files"] == ["global.yaml"]
    assert payload["summary"]["pairs"] == 9
    assert (payload["summary"]["apps"], payload["summary"]["environments"]) == (3, 3)
    assert payload["summary"]["app_names"] == sorted(APPS)
    assert payload["summary"]["keys"] == 9 + 3
    changes = {(c["app"], c["env"]): c for c in payload["changes"]}
    assert set(changes) == PAIRS
    for (_app, env), c in changes.items():
        assert set(c) >= {"app", "env", "status", "counts", "keys"}
        keys = {k["key"]: k for k in c["keys"]}
        assert keys["http.timeout_ms"] == {"key": "http.timeout_ms", "change": "changed", "old": 2000, "new": 2500}
        assert ("log.level" in keys) == (env == "staging")
        assert c["status"] == "changed"
        assert c["counts"] == {"added": 0, "changed": len(keys), "removed": 0}

    text = cli.run("diff", "--exit-code", db=False, rc=1).stdout
    assert "9 app/environment pair(s) change" in text
    assert "http.timeout_ms: 2000 → 2500" in text
    for app in APPS:
        for env in ENVS:
            assert f"{app}/{env}" in text

    markdown = cli.run("diff", "--format", "markdown", db=False).stdout
    assert markdown.index("Blast radius") < markdown.index("<details>")
    assert "**3** app(s): billing, checkout, search" in markdown
    assert "**3** environment(s)" in markdown
    assert "**9** app/environment pair(s), **12** key change(s)" in markdown
    assert "`global.yaml`" in markdown
    assert markdown.count("<details>") == markdown.count("</details>") == 3
    for app in APPS:
        assert f"<summary><b>{app}</b>" in markdown
    assert "| `http.timeout_ms` | changed | `2000` | `2500` |" in markdown

    # between two commits; the working tree is then clean
    head = example.commit("global http timeout and log level")
    assert cli.run("diff", "--exit-code", db=False).stdout.startswith("No change")
    between = cli.json("diff", base, head, db=False)
    assert (between["base"], between["head"], between["summary"]["pairs"]) == (base, head, 9)
    cli.run("diff", base, head, "--exit-code", db=False, rc=1)
    cli.run("diff", head, head, "--exit-code", db=False, rc=0)
    # BASE alone: against the working tree
    assert cli.json("diff", base, db=False)["summary"]["pairs"] == 9
    cli.run("diff", "no-such-rev", db=False, rc=2)
    assert not (example.path / ".configctl").exists()


def test_diff_shows_an_invalid_head_and_pairs_that_appear(example: GitRepo) -> None:
    cli = Cli(repo=example, db="unused", env=git_env())
    example.write("apps/ledger/app.yaml", "description: Ledger\nowners: [team-finance]\n")
    example.write("apps/ledger/values.yaml", "ledger:\n  currency: EUR\n")
    payload = cli.json("diff", db=False)
    assert {(c["app"], c["env"], c["status"]) for c in payload["changes"]} == {("ledger", e, "added") for e in ENVS}
    example.replace("apps/checkout/envs/production.yaml", "replicas: 6", "replicas: many")
    payload = cli.json("diff", db=False)
    assert payload["head_valid"] is False
    assert "validation error" in cli.run("diff", "--format", "markdown", db=False).stdout


# =========================================================================== secrets


SECRETS = ("S3CRET-pw-one", "S3CRET-pw-two", "S3CRET-key-one", "S3CRET-key-two")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_secret_values_never_appear_in_history_audit_diff_or_apply(
    cli: Cli, backend: Backend, example: GitRepo
) -> None:
    original_pw = "ref+vault://secret/checkout/db#password"
    original_key = "ref+vault://secret/billing/smtp#api_key"
    v1 = example.head()
    cli.apply()
    example.replace("apps/checkout/values.yaml", original_pw, SECRETS[0])
    example.replace("apps/billing/values.yaml", original_key, SECRETS[2])
    # the diff of the working tree, before the commit
    for fmt in ("text", "json", "markdown"):
        cli.run("diff", "--format", fmt, db=False)
    v2 = example.commit("rotate secrets")
    cli.apply()
    example.replace("apps/checkout/values.yaml", SECRETS[0], SECRETS[1])
    example.replace("apps/billing/values.yaml", SECRETS[2], SECRETS[3])
    example.replace("apps/checkout/envs/production.yaml", "max: 50", "max: 60")
    v3 = example.commit("rotate again, and a pool")
    cli.apply("--dry-run")
    cli.run("apply")
    cli.run("rollback", "checkout", "production", "--to", "2")
    cli.run("rollback", "billing", "dev", "--to", "1")

    diff = cli.json("diff", v1, v3, db=False)
    pw = next(k for c in diff["changes"] if c["app"] == "checkout" for k in c["keys"] if k["key"] == "database.password")
    assert pw == {"key": "database.password", "change": "changed", "old": REDACTED, "new": REDACTED, "secret": True}
    key = next(k for c in diff["changes"] if c["app"] == "billing" for k in c["keys"] if k["key"] == "smtp.api_key")
    assert key["secret"] is True
    assert key["old"] == key["new"] == REDACTED
    cli.many(
        [("diff", a, b, "--format", fmt) for a, b in ((v1, v3), (v2, v3)) for fmt in ("text", "json", "markdown")],
        db=False,
    )
    reads: list[tuple[str, ...]] = [("audit",), ("audit", "-o", "json"), ("status",), ("status", "-o", "json")]
    for app, env, key in (("checkout", "production", "database"), ("checkout", "dev", "database.password"), ("billing", "dev", "smtp")):
        for out in ("text", "json"):
            reads += [("history", app, env, "-o", out), ("history", app, env, key, "-o", out)]
    cli.many(reads)
    rows = cli.json("history", "checkout", "production", "database.password")
    assert [r["version"] for r in rows] == [4, 3, 2, 1]  # the rollback changed it back, too
    assert {r["new"] for r in rows} == {REDACTED}
    assert {r["old"] for r in rows} == {REDACTED, None}

    everything = "\n".join(cli.outputs)
    for secret in (*SECRETS, original_pw, original_key):
        assert secret not in everything, f"{secret} leaked into command output"
        assert secret not in backend.probe.dump(), f"{secret} leaked into the store's history, audit or outbox"
    # the store still serves the real value: it must
    assert show(cli, "checkout", "dev")["values"]["database"]["password"] == SECRETS[1]


def test_diff_keeps_a_key_secret_when_the_schema_drops_the_mark(example: GitRepo) -> None:
    cli = Cli(repo=example, db="unused", env=git_env())
    old_key = "ref+vault://secret/billing/smtp#api_key"
    example.replace("apps/billing/schema.yaml", "api_key: {type: string, x-secret: true}", "api_key: {type: string}")
    example.replace("apps/billing/values.yaml", old_key, "now-a-plain-value")
    payload = cli.json("diff", db=False)
    keys = [k for c in payload["changes"] for k in c["keys"] if k["key"] == "smtp.api_key"]
    assert len(keys) == 3
    assert all((k["old"], k["new"], k.get("secret")) == (REDACTED, REDACTED, True) for k in keys)
    assert old_key not in cli.run("diff", "--format", "markdown", db=False).stdout


def test_a_rollback_without_the_schema_at_hand_redacts_every_value(
    tmp_path: Path, cli: Cli, backend: Backend, example: GitRepo
) -> None:
    cli.apply()
    example.replace("apps/checkout/envs/production.yaml", "max: 50", "max: 80")
    example.commit("bigger pool")
    cli.apply()
    elsewhere = tmp_path / "not-a-repository"
    elsewhere.mkdir()
    # outside any checkout, with --db only (an explicit --repo that is no repository is a
    # usage error since issue 7)
    done = subprocess.run(
        [*configctl_argv(), "rollback", "checkout", "production", "--to", "1", "--db", cli.db],
        cwd=elsewhere, env=cli.env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    top = cli.json("history", "checkout", "production", "database.pool.max")[0]
    assert (top["version"], top["reason"], top["old"], top["new"]) == (3, "rollback", REDACTED, REDACTED)
    # with the repository, a key that is not secret is recorded as it is
    cli.run("release", "checkout", "production")
    cli.run("rollback", "checkout", "production", "--to", "2")
    top = cli.json("history", "checkout", "production", "database.pool.max")[0]
    assert (top["version"], top["old"], top["new"]) == (4, 50, 80)


# =========================================================================== work follows the change


def test_apply_of_a_commit_beside_the_last_applied_one(cli: Cli, backend: Backend, example: GitRepo) -> None:
    """`apply` evaluates only the apps whose values changed since the last applied commit:
    a commit on another branch, which lacks a change the store serves, must undo it."""
    base = example.head()
    cli.apply()
    example.git("checkout", "-q", "-b", "billing-change")
    example.replace("apps/billing/values.yaml", "due_days: 30", "due_days: 45")
    billing = example.commit("billing due days")
    cli.apply("--rev", billing)
    example.git("checkout", "-q", "main")
    example.replace("apps/search/envs/dev.yaml", "enabled: false", "enabled: true")
    search = example.commit("search cache in dev")
    assert example.parents(search) == [base]

    result = cli.apply("--rev", search)
    assert written(result) == {("search", "dev")} | {("billing", e) for e in ENVS}
    assert show(cli, "billing", "staging")["values"]["invoice"]["due_days"] == 30
    assert show(cli, "search", "dev")["values"]["cache"]["enabled"] is True
    assert cli.apply("--rev", search)["status"] == "already-applied"


def test_a_stale_baseline_is_noticed_inside_the_transaction(tmp_path: Path, backend: Backend, example: GitRepo) -> None:
    """In process: a baseline that is no longer the store's last applied commit (another
    apply got there first) makes `apply_snapshot` compare every pair."""
    from configctl.adapters import schemas
    from configctl.adapters.git import GitSource
    from configctl.adapters.store import SqlStore
    from configctl.services.apply import Baseline, apply_snapshot
    from configctl.services.resolution import Evaluator

    cli = make_cli(example, backend)
    base = example.head()
    cli.apply()
    example.replace("apps/billing/values.yaml", "due_days: 30", "due_days: 45")
    billing = example.commit("billing due days")
    cli.apply()  # the store moves on to `billing`
    example.git("checkout", "-q", "-b", "side", base)
    example.replace("apps/search/envs/dev.yaml", "enabled: false", "enabled: true")
    search = example.commit("search cache in dev")
    assert billing not in example.git("rev-list", search)

    git = GitSource(example.path)
    store = SqlStore(backend.probe.url)
    try:
        result = apply_snapshot(
            store=store,
            files=git.read_tree(search),
            commit=git.commit_info(search),
            evaluator=Evaluator(file_schemas=schemas.file_schemas()),
            actor=ACTOR,
            host="test",
            now=lambda: datetime.now(UTC),
            baseline=Baseline(commit=base, files=git.read_tree(base)),  # stale on purpose
        )
    finally:
        store.close()
    assert result.status == "applied"
    assert {(p.app, p.env) for p in result.written} == {("search", "dev")} | {("billing", e) for e in ENVS}
    assert show(cli, "billing", "dev")["values"]["invoice"]["due_days"] == 30
