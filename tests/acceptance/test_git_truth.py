"""Serve exactly what git says (issue 7, items 2-5), through the real `configctl` command.

Same set-up as ``test_versions``: a real git repository in ``tmp_path`` and a real store,
a SQLite file and a fresh PostgreSQL database; what the store holds is read with plain SQL.

Covered: a version records the commit that changed its pair when one apply covers
several commits (a comment-only edit is never blamed), and `rollback --revert` undoes
that change and nothing else; a rollback whose revert conflicts (exit 1, files named) or
whose branch is taken (exit 2) writes nothing; `--branch`; `status` drift with every
reason, `--exit-code`, commits outside the config folder, superseded rejections;
`diff --served`; `apply --rev` backwards refused without `--allow-backwards`, force
pushes audited; a rollback that changes nothing writes nothing.
"""

from __future__ import annotations

from typing import Any

from tests.support import cli as cli_support
from tests.support import sql
from tests.support.cli import ACTOR, Cli, show, written
from tests.support.gitrepo import GitRepo
from tests.support.sql import Backend

# The store and repository fixtures shared with the other acceptance tests.
backend = sql.backend
example = cli_support.example
cli = cli_support.cli

BOB = ("Bob Builder", "bob@example.invalid")
CID = ("Cid Clerk", "cid@example.invalid")
DAN = ("Dan Doc", "dan@example.invalid")
PROD_FILE = "apps/checkout/envs/production.yaml"


def version_commits(backend: Backend) -> dict[tuple[str, str], list[str | None]]:
    out: dict[tuple[str, str], list[str | None]] = {}
    for app, env, commit in backend.probe.rows("SELECT app, env, commit_sha FROM versions ORDER BY app, env, number"):
        out.setdefault((app, env), []).append(commit)
    return out


def drift_of(status: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["app"], d["env"]): d for d in status["drift"]}


# =========================================================================== item 2


def test_a_version_records_the_commit_that_changed_its_pair(cli: Cli, backend: Backend, example: GitRepo) -> None:
    base = example.head()
    cli.apply()
    example.replace(PROD_FILE, "max: 50", "max: 80")
    pool = example.commit("bigger checkout pool", author=BOB)
    example.replace("apps/billing/values.yaml", "due_days: 30", "due_days: 45")
    billing = example.commit("billing due days", author=CID)
    # touches the pair's file, changes none of its values: never blamed
    example.write(PROD_FILE, example.read(PROD_FILE) + "# reviewed by the platform team\n")
    comment = example.commit("a comment", author=DAN)

    result = cli.apply()  # one apply covers the three commits
    assert result["commit"] == comment
    assert written(result) == {("checkout", "production")} | {("billing", e) for e in ("dev", "staging", "production")}
    commits = version_commits(backend)
    assert commits[("checkout", "production")] == [base, pool]
    assert commits[("billing", "staging")] == [base, billing]
    assert commits[("search", "dev")] == [base]
    assert show(cli, "checkout", "production")["commit"] == pool

    top = cli.json("history", "checkout", "production")[0]
    assert (top["version"], top["commit"], top["author"]) == (2, pool, "Bob Builder <bob@example.invalid>")
    assert cli.json("history", "billing", "dev")[0]["author"] == "Cid Clerk <cid@example.invalid>"
    created = [a for a in cli.json("audit", "--app", "checkout", "--env", "production") if a["action"] == "version.created"]
    assert created[0]["commit"] == pool
    assert cli.json("status")["in_sync"] is True

    # the revert undoes the pool change only: not billing's, not the later comment
    done = cli.run("rollback", "checkout", "production", "--to", "1", "--revert")
    branch = f"configctl/revert-{pool[:12]}"
    assert branch in done.stdout
    assert example.parents(branch) == [comment]
    assert "max: 50" in example.show(branch, PROD_FILE)
    assert "# reviewed by the platform team" in example.show(branch, PROD_FILE)
    diff = cli.json("diff", comment, branch, db=False)
    assert [(c["app"], c["env"]) for c in diff["changes"]] == [("checkout", "production")]
    assert [k["key"] for k in diff["changes"][0]["keys"]] == ["database.pool.max"]
    pin = cli.json("status")["pins"][0]
    assert pin["quarantined_commit"] == pool


# =========================================================================== item 3


def test_a_rollback_whose_revert_conflicts_writes_nothing(cli: Cli, backend: Backend, example: GitRepo) -> None:
    cli.apply()
    example.replace(PROD_FILE, "max: 50", "max: 80")
    bad = example.commit("bigger pool")
    cli.apply()
    example.replace(PROD_FILE, "max: 80", "max: 90")
    example.commit("even bigger, not applied yet")
    before = backend.probe.counts()
    branches = example.branches()

    done = cli.run("rollback", "checkout", "production", "--to", "1", "--revert", rc=1)
    assert PROD_FILE in done.stderr
    assert "conflict" in done.stderr
    assert backend.probe.counts() == before  # no version, no pin, no audit row
    assert example.branches() == branches
    assert len(example.git("worktree", "list").splitlines()) == 1
    assert show(cli, "checkout", "production")["version"] == 2

    # `revert` of the same commit: a conflict is exit 1 naming the file, never 3
    done = cli.run("revert", bad, db=False, rc=1)
    assert PROD_FILE in done.stderr
    assert example.branches() == branches


def test_rollback_revert_branch_name(cli: Cli, backend: Backend, example: GitRepo) -> None:
    cli.apply()
    example.replace(PROD_FILE, "max: 50", "max: 80")
    example.commit("bigger pool")
    cli.apply()
    example.git("branch", "taken")
    before = backend.probe.counts()

    done = cli.run("rollback", "checkout", "production", "--to", "1", "--revert", "--branch", "taken", rc=2)
    assert "taken" in done.stderr
    assert backend.probe.counts() == before
    cli.run("rollback", "checkout", "production", "--to", "1", "--branch", "fix/pool", rc=2)  # no --revert
    assert backend.probe.counts() == before

    done = cli.run("rollback", "checkout", "production", "--to", "1", "--revert", "--branch", "fix/pool")
    assert "fix/pool" in done.stdout
    assert "fix/pool" in example.branches()
    assert "max: 50" in example.show("fix/pool", PROD_FILE)
    assert show(cli, "checkout", "production")["version"] == 3
    rollback = next(a for a in cli.json("audit") if a["action"] == "rollback")
    assert rollback["details"]["revert_branch"] == "fix/pool"


# =========================================================================== item 4


def test_status_shows_every_drift_with_its_reason(cli: Cli, backend: Backend, example: GitRepo) -> None:
    # nothing applied yet: every pair is pending
    status = cli.json("status")
    assert status["in_sync"] is False
    assert len(status["drift"]) == 9
    assert {d["reason"] for d in status["drift"]} == {"pending"}
    assert {d["served_version"] for d in status["drift"]} == {None}
    cli.run("status", "--exit-code", rc=1)
    cli.run("status")  # exit 0 without --exit-code

    cli.apply()
    status = cli.json("status")
    assert (status["in_sync"], status["drift"], status["pending_commits"]) == (True, [], [])
    cli.run("status", "--exit-code")
    assert "in sync with git HEAD: yes" in cli.run("status").stdout

    # a commit outside the config files is nothing to apply
    example.write("docs/notes.md", "how we run configctl\n")
    example.commit("docs")
    status = cli.json("status")
    assert (status["pending_commits"], status["in_sync"]) == ([], True)
    cli.run("status", "--exit-code")

    # apply not yet run
    example.replace(PROD_FILE, "max: 50", "max: 80")
    bad = example.commit("bigger pool")
    status = cli.json("status")
    assert [c["commit"] for c in status["pending_commits"]] == [bad]
    drift = drift_of(status)
    assert list(drift) == [("checkout", "production")]
    assert drift[("checkout", "production")] == {
        "app": "checkout", "env": "production", "reason": "pending", "served_version": 1, "keys": ["database.pool.max"]
    }
    cli.run("status", "--exit-code", rc=1)

    # pinned, then quarantined after the release
    cli.apply()
    cli.run("rollback", "checkout", "production", "--to", "1")
    assert drift_of(cli.json("status"))[("checkout", "production")]["reason"] == "pinned"
    cli.run("release", "checkout", "production")
    cli.apply()
    status = cli.json("status")
    assert drift_of(status)[("checkout", "production")]["reason"] == "quarantined"
    assert drift_of(status)[("checkout", "production")]["served_version"] == 3
    assert status["pending_commits"] == []
    text = cli.run("status").stdout
    assert "checkout/production: quarantined" in text
    cli.run("status", "--exit-code", rc=1)
    example.replace(PROD_FILE, "max: 80", "max: 50")
    example.commit("revert the pool")
    cli.apply()
    assert cli.json("status")["in_sync"] is True

    # HEAD rejected: its changes drift, and it blocks
    example.replace("apps/search/envs/dev.yaml", "enabled: false", "enabled: true")
    example.write("apps/search/envs/qa.yaml", "replicas: 1\n")  # qa is not declared
    rejected = example.commit("search cache in dev, and a typo")
    cli.apply(rc=1)
    status = cli.json("status")
    assert [c["commit"] for c in status["rejected_commits"]] == [rejected]
    assert drift_of(status)[("search", "dev")]["reason"] == "rejected"
    cli.run("status", "--exit-code", rc=1)
    # superseded by an applied commit: no longer blocking
    example.remove("apps/search/envs/qa.yaml")
    fixed = example.commit("fix")
    cli.apply()
    status = cli.json("status")
    assert (status["rejected_commits"], status["drift"], status["in_sync"]) == ([], [], True)

    # the store's last applied commit is no longer in the history (force push)
    example.git("reset", "-q", "--hard", f"{fixed}~2")
    example.replace("apps/search/envs/production.yaml", "shards: 6", "shards: 7")
    example.commit("rewritten history")
    status = cli.json("status")
    assert status["history_rewritten"] is True
    drift = drift_of(status)
    assert drift[("search", "production")]["reason"] == "force-push"
    assert drift[("search", "dev")]["reason"] == "force-push"
    cli.run("status", "--exit-code", rc=1)


def test_diff_served_against_git_head(cli: Cli, backend: Backend, example: GitRepo) -> None:
    cli.apply()
    cli.run("diff", "--served", "checkout", "production", "--exit-code")
    assert cli.json("diff", "--served", "checkout", "production")["changes"] == []

    example.replace(PROD_FILE, "max: 50", "max: 80")
    example.replace("apps/checkout/values.yaml", "db#password", "db2#password")
    example.commit("bigger pool, new password")
    payload = cli.json("diff", "--served", "checkout", "production")
    assert (payload["app"], payload["env"], payload["base"], payload["head"]) == ("checkout", "production", "served", example.head())
    assert payload["served"]["version"] == 1
    keys = {k["key"]: k for k in payload["changes"][0]["keys"]}
    assert (keys["database.pool.max"]["old"], keys["database.pool.max"]["new"]) == (50, 80)
    assert keys["database.password"]["new"] == "<redacted>"
    text = cli.run("diff", "--served", "checkout", "production").stdout
    assert "database.pool.max" in text
    assert "served v1" in text
    markdown = cli.run("diff", "--served", "checkout", "production", "--format", "markdown").stdout
    assert "`database.pool.max`" in markdown
    for out in cli.outputs:
        assert "db2#password" not in out
        assert "ref+vault" not in out
    cli.run("diff", "--served", "checkout", "production", "--exit-code", rc=1)
    cli.run("diff", "--served", "chekout", "production", rc=2)  # unknown app
    cli.apply()
    cli.run("diff", "--served", "checkout", "production", "--exit-code")


# =========================================================================== item 5


def test_apply_moves_forward_only_unless_asked(cli: Cli, backend: Backend, example: GitRepo) -> None:
    first = example.head()
    cli.apply()
    example.replace(PROD_FILE, "max: 50", "max: 80")
    second = example.commit("bigger pool")
    cli.apply()
    before = backend.probe.counts()

    done = cli.run("apply", "--rev", first, rc=2)
    assert "--allow-backwards" in done.stderr
    assert backend.probe.counts() == before
    cli.run("apply", "--rev", first, "--dry-run", rc=2)

    result = cli.apply("--rev", first, "--allow-backwards")
    assert written(result) == {("checkout", "production")}
    assert show(cli, "checkout", "production")["values"]["database"]["pool"]["max"] == 50
    pushes = [a for a in cli.json("audit") if a["action"] == "force-push"]
    assert len(pushes) == 1
    assert pushes[0]["details"] == {"previous_head": second, "new_head": first}
    assert pushes[0]["commit"] == first
    assert pushes[0]["actor"] == ACTOR

    # a force push seen by the CLI is recorded as the reconciler records it
    cli.apply()  # forward again, to `second`
    example.git("reset", "-q", "--hard", first)
    example.replace("apps/search/envs/dev.yaml", "enabled: false", "enabled: true")
    rewritten = example.commit("rewritten")
    cli.apply()
    pushes = [a for a in cli.json("audit") if a["action"] == "force-push"]
    assert pushes[0]["details"] == {"previous_head": second, "new_head": rewritten}

    # a rollback to the values in service writes nothing
    versions = backend.probe.versions()[("checkout", "production")]
    assert versions == [1, 2, 3, 4, 5]  # 50, 80, 50 (back), 80 (forward), 50 (rewritten)
    before = backend.probe.counts()
    done = cli.run("rollback", "checkout", "production", "--to", "3")
    assert "nothing" in done.stdout
    assert backend.probe.counts() == before
    assert cli.json("status")["pins"] == []
    assert cli.apply()["versions"] == []
    assert backend.probe.counts() == before

