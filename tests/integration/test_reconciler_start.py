"""The reconciler's first start cannot wedge it (issue 7, items 6, 7, 8 and 10), through the
real ``configctl reconcile`` process and the real ``configctl`` command.

- mistakes an operator makes at start (a wrong ``--path``, a missing key file or GnuPG
  home, a busy port, a workdir that is a file, the extra not installed) are exit 2 and
  record nothing -- and once fixed, the commit they held back is applied;
- a rejected head on an empty store still gets something served; ``--once`` says 1 and
  ``/healthz`` says ``degraded`` for as long as the head is rejected;
- one start-up line (passwords masked) and one shutdown line; the cache check keeps its
  own timer; SIGTERM kills a git fetch that hangs; the snapshot API is off by default;
- GPG: a key imported into configctl's GnuPG home may sign, no ownertrust step; nothing
  ever reads or creates the user's ``~/.gnupg``.

Tests that need gpg or ssh-keygen fail (they do not skip) where those are missing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from tests.integration.reconciler_harness import (
    CONFIGCTL,
    ConfigRepo,
    ReconcilerProcess,
    StoreView,
    git,
    http,
    make_ssh_key,
    running,
    wait_for,
)

pytestmark = pytest.mark.integration

BAD_YAML = "counter: [\n"


@pytest.fixture
def repo(tmp_path: Path) -> ConfigRepo:
    return ConfigRepo(tmp_path / "repo")


def finish(rec: ReconcilerProcess, timeout: float = 60) -> int:
    """Start ``rec`` and wait for it to exit by itself; its exit code."""
    rec.start()
    assert rec.proc is not None
    try:
        return rec.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        rec.kill()
        raise AssertionError(f"the reconciler did not exit within {timeout:g} s:\n{rec.log_tail()}") from None
    finally:
        rec.stop()


def output(rec: ReconcilerProcess) -> str:
    """Everything the process wrote (logs and the error boundary's lines)."""
    return rec.log_path.read_text(errors="replace") if rec.log_path.exists() else ""


def recorded_commits(store: StoreView) -> int:
    if not store.has_tables():
        return 0
    return int(store.rows("SELECT count(*) FROM commits")[0][0])


# --------------------------------------------------------------------------- item 6: first start


def test_path_without_configctl_yaml_is_a_usage_error_that_records_nothing(
    tmp_path: Path, repo: ConfigRepo, pg_db_url: str
) -> None:
    store = StoreView(pg_db_url)
    once = ReconcilerProcess(repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, extra=["--once", "--path", "config"])
    assert finish(once) == 2, output(once)
    assert "config/configctl.yaml" in output(once)
    # the daemon, too, stops at once instead of rejecting the head and polling forever
    daemon = ReconcilerProcess(repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, extra=["--path", "config"], name="d")
    assert finish(daemon, timeout=30) == 2, output(daemon)
    assert recorded_commits(store) == 0
    assert store.commit_status(repo.initial) is None
    # the right path (the root) then applies that head
    fixed = ReconcilerProcess(repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, extra=["--once"], name="f")
    assert finish(fixed) == 0, output(fixed)
    assert store.commit_status(repo.initial) == "applied"


def test_first_start_with_a_rejected_head_serves_the_newest_valid_commit(
    tmp_path: Path, repo: ConfigRepo, pg_db_url: str
) -> None:
    store = StoreView(pg_db_url)
    good = repo.bump("billing", "dev")  # counter 1
    repo.commit("broken dev", {"apps/billing/envs/dev.yaml": BAD_YAML})
    bad = repo.commit("still broken", {"apps/search/envs/dev.yaml": BAD_YAML})

    def once(name: str) -> int:
        return finish(ReconcilerProcess(repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, extra=["--once"], name=name))

    assert once("1") == 1
    assert store.commit_status(bad) == "rejected"
    # something is served: the newest valid ancestor, not nothing
    assert store.commit_status(good) == "applied"
    assert len(store.versions()) == 4  # one per (app, env), with the good commit's values
    # every run says so while the head is rejected, not only the run that rejected it
    assert once("2") == 1
    assert once("3") == 1
    assert len(store.versions()) == 4

    rec = ReconcilerProcess(repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, interval=600)
    with running(rec):
        rec.wait_role("leader")
        code, doc = wait_for(
            lambda: (h := rec.healthz())[1].get("head_rejected") and h, timeout=15, what="/healthz reports the rejected head"
        )
        assert code == 200
        assert doc["status"] == "degraded"
        assert doc["head_rejected"]["commit"] == bad
        fix = repo.commit("fixed", {"apps/billing/envs/dev.yaml": "counter: 5\n", "apps/search/envs/dev.yaml": "counter: 5\n"})
        assert rec.webhook(fix) == 202
        wait_for(lambda: store.commit_status(fix) == "applied", timeout=15, what="the fix applied")
        code, doc = wait_for(lambda: (h := rec.healthz())[1]["status"] == "ok" and h, timeout=10, what="/healthz ok again")
        assert doc["head_rejected"] is None
    ok = ReconcilerProcess(repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, extra=["--once"], name="ok")
    assert finish(ok) == 0


def test_start_and_shutdown_lines_name_the_setup_with_passwords_masked(
    tmp_path: Path, repo: ConfigRepo, pg_db_url: str, amqp_url: str, amqp_exchange: str
) -> None:
    # trust authentication: a password in the URL is accepted and must never be logged
    db = pg_db_url.replace("://postgres@", "://postgres:hunter2-db@", 1)
    assert "hunter2-db" in db
    rec = ReconcilerProcess(
        repo=repo.url, workdir=tmp_path / "wd", db=db, amqp=amqp_url, exchange=amqp_exchange
    )
    with running(rec):
        rec.wait_role("leader")
    assert rec.proc is not None
    assert rec.proc.returncode == 0
    lines = rec.logs()
    text = rec.log_path.read_text()
    assert "hunter2-db" not in text
    amqp_password = amqp_url.split("://", 1)[1].split("@", 1)[0].partition(":")[2]
    assert amqp_password
    assert f":{amqp_password}@" not in text
    starts = [line for line in lines if line["message"].startswith("starting")]
    assert len(starts) == 1
    start = starts[0]
    assert start["repository"] == repo.url
    assert start["branch"] == "main"
    assert start["path"] == "/"
    assert "postgres:***@" in start["store"]
    assert "snapshot directory" in start["cache"]
    assert ":***@" in start["broker"]
    assert amqp_exchange in start["broker"]
    for word in ("repository", "branch", "path", "store", "cache", "broker"):
        assert word in start["message"]
    stops = [line for line in lines if line["message"].startswith("stopped")]
    assert len(stops) == 1
    assert "SIGTERM" in stops[0]["message"]
    assert lines.index(stops[0]) == len(lines) - 1


def test_cache_check_runs_on_its_own_timer(tmp_path: Path, repo: ConfigRepo, pg_db_url: str, redis_url: str, redis_prefix: str) -> None:
    """Keys deleted from Redis come back within one interval (plus a margin), every time:
    the check does not wait for the next jittered poll (before: up to 2.4 intervals)."""
    interval = 2.0
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    key = f"{redis_prefix}:snapshot:billing:dev"
    rec = ReconcilerProcess(
        repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, redis=redis_url, redis_prefix=redis_prefix, interval=interval
    )
    with running(rec):
        wait_for(lambda: client.get(key), timeout=20, what="warm")
        waits: list[float] = []
        for _ in range(6):
            keys = list(client.scan_iter(match=f"{redis_prefix}*", count=500))
            client.delete(*keys)
            gone = time.monotonic()
            wait_for(lambda: client.get(key), timeout=4 * interval, what="refilled", interval=0.02)
            waits.append(time.monotonic() - gone)
        # Deleting right after a refill, the next check is one interval away: the waits
        # are the check's cadence (the first one depends on where the loop stood). Before,
        # it ran at the first jittered poll after an interval: 1.0-1.2 or 1.6-2.4 intervals.
        shown = f"refill delays {[round(w, 2) for w in waits]} s with --interval {interval:g}"
        # Margins for a loaded CI machine: the old cadence averaged 1.4-1.7 intervals.
        assert sum(waits[1:]) / len(waits[1:]) < interval * 1.3, shown
        assert max(waits) < interval * 1.9, shown


def test_sigterm_ends_a_fetch_from_a_remote_that_hangs(tmp_path: Path, repo: ConfigRepo) -> None:
    """A remote that accepts and never answers (an ssh that sleeps): SIGTERM kills the
    fetch's whole process group and the reconciler exits in seconds, not --git-timeout."""
    workdir = tmp_path / "wd"
    first = ReconcilerProcess(repo=repo.url, workdir=workdir, extra=["--once"])
    assert finish(first) == 0
    url = "ssh://git.invalid/platform/config.git"
    git("config", "remote.origin.url", url, cwd=workdir / "clone")
    pidfile = tmp_path / "ssh.pid"
    fake_ssh = tmp_path / "hanging-ssh"
    fake_ssh.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 300\n")
    fake_ssh.chmod(0o755)
    rec = ReconcilerProcess(
        repo=url, workdir=workdir, extra=["--git-timeout", "120"], env={"GIT_SSH_COMMAND": str(fake_ssh)}, name="hang"
    )
    with running(rec):
        rec.wait_http()
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=15, what="the fetch is in flight")
        ssh_pid = int(pidfile.read_text())
        started = time.monotonic()
        rec.signal(15)
        assert rec.proc is not None
        code = rec.proc.wait(25)
        took = time.monotonic() - started
    assert code == 0, rec.log_tail()
    assert took < 5.0, f"SIGTERM took {took:.1f} s"
    assert not running_process(ssh_pid), "the hanging ssh outlived the reconciler"


def running_process(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for init to reap it is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def test_snapshot_api_is_off_unless_asked_for(tmp_path: Path, repo: ConfigRepo) -> None:
    path = "/api/v1/snapshots/billing/dev"
    off = ReconcilerProcess(repo=repo.url, workdir=tmp_path / "wd")
    with running(off):
        off.wait_role("leader")
        wait_for(lambda: (off.healthz()[1]["detail"].get("head")), timeout=15, what="first pass")
        assert http("GET", off.url + path)[0] == 404
    on = ReconcilerProcess(repo=repo.url, workdir=tmp_path / "wd", extra=["--serve-snapshots"], name="on")
    with running(on):
        on.wait_role("leader")
        _code, body = wait_for(lambda: (r := http("GET", on.url + path))[0] == 200 and r, timeout=15, what="snapshot served")
        assert json.loads(body)["values"]["counter"] == 0
    helptext = subprocess.run(
        [CONFIGCTL, "reconcile", "--help"], capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"}, check=True
    ).stdout
    assert "--serve-snapshots" in helptext
    assert "secrets in clear" in helptext


# --------------------------------------------------------------------------- item 7: usage errors


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONFIGCTL, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False
    )


def test_without_the_reconciler_extra_is_a_usage_error(tmp_path: Path, repo: ConfigRepo) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "prometheus_client.py").write_text("raise ModuleNotFoundError(\"No module named 'prometheus_client'\")\n")
    done = run_cli("reconcile", "--repo", repo.url, "--workdir", str(tmp_path / "wd"), "--once", env={"PYTHONPATH": str(shim)})
    assert done.returncode == 2, done.stderr
    assert "pip install 'configctl[reconciler]'" in done.stderr
    assert "prometheus_client" in done.stderr
    assert not (tmp_path / "wd").exists()


def test_http_port_in_use_is_a_usage_error_naming_it(tmp_path: Path, repo: ConfigRepo) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rec = ReconcilerProcess(repo=repo.url, workdir=tmp_path / "wd", extra=["--http-port", str(port)])
        assert finish(rec, timeout=30) == 2, output(rec)
    assert f"--http-port {port}" in output(rec)
    assert "Traceback" not in output(rec)


def test_workdir_that_is_no_writable_directory_is_a_usage_error_naming_it(tmp_path: Path, repo: ConfigRepo) -> None:
    a_file = tmp_path / "workdir-file"
    a_file.write_text("")
    for workdir in (a_file, a_file / "below"):
        done = run_cli("reconcile", "--repo", repo.url, "--workdir", str(workdir), "--once")
        assert done.returncode == 2, done.stderr
        assert str(workdir) in done.stderr
    if os.geteuid() == 0:
        read_only = Path("/sys")  # sysfs: no new files, not even for root
    else:
        read_only = tmp_path / "read-only"
        read_only.mkdir(mode=0o500)
    done = run_cli("reconcile", "--repo", repo.url, "--workdir", str(read_only), "--once")
    assert done.returncode == 2, done.stderr
    assert str(read_only) in done.stderr
    assert "not writable" in done.stderr


# --------------------------------------------------------------------------- item 8: one vocabulary


def test_flags_show_their_environment_variables_with_the_common_names(tmp_path: Path, repo: ConfigRepo) -> None:
    helptext = run_cli("reconcile", "--help", env={"COLUMNS": "200"}).stdout
    for var in (
        "CONFIGCTL_REPO", "CONFIGCTL_BRANCH", "CONFIGCTL_PATH", "CONFIGCTL_DB", "CONFIGCTL_REDIS", "CONFIGCTL_AMQP",
        "CONFIGCTL_EXCHANGE", "CONFIGCTL_REDIS_PREFIX", "CONFIGCTL_WEBHOOK_SECRET", "CONFIGCTL_WORKDIR",
        "CONFIGCTL_INTERVAL", "CONFIGCTL_GIT_TIMEOUT", "CONFIGCTL_LEASE", "CONFIGCTL_LEASE_NAMESPACE",
        "CONFIGCTL_HTTP_HOST", "CONFIGCTL_HTTP_PORT", "CONFIGCTL_REQUIRE_SIGNED", "CONFIGCTL_ALLOWED_SIGNERS",
        "CONFIGCTL_GNUPG_HOME", "CONFIGCTL_ALLOWED_FINGERPRINTS", "CONFIGCTL_SERVE_SNAPSHOTS", "CONFIGCTL_LOG_FORMAT",
    ):  # fmt: skip
        assert var in helptext, var
    # CONFIGCTL_REPO, as every other command reads it
    done = run_cli("reconcile", "--workdir", str(tmp_path / "a"), "--once", env={"CONFIGCTL_REPO": repo.url})
    assert done.returncode == 0, done.stderr
    assert "deprecated" not in done.stderr
    # the old spelling still works, with a warning
    done = run_cli("reconcile", "--workdir", str(tmp_path / "b"), "--once", env={"CONFIGCTL_REPO_URL": repo.url})
    assert done.returncode == 0, done.stderr
    assert "CONFIGCTL_REPO_URL is deprecated" in done.stderr


# --------------------------------------------------------------------------- item 10: signed commits


def test_missing_allowed_signers_file_is_a_usage_error_and_the_commit_is_applied_once_fixed(
    tmp_path: Path, pg_db_url: str
) -> None:
    repo = ConfigRepo(tmp_path / "repo")
    key, line = make_ssh_key(tmp_path / "key")  # needs ssh-keygen: fails, never skips, without it
    signed = repo.commit("signed head", {}, sign_with=key)
    store = StoreView(pg_db_url)
    signers = tmp_path / "keys" / "allowed_signers"

    def once(name: str) -> tuple[int, ReconcilerProcess]:
        rec = ReconcilerProcess(
            repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, name=name,
            extra=["--once", "--require-signed", "--allowed-signers", str(signers)],
        )  # fmt: skip
        return finish(rec), rec

    code, rec = once("missing")
    assert code == 2, output(rec)
    assert str(signers) in output(rec)
    assert recorded_commits(store) == 0  # nothing recorded, the commit is not rejected
    signers.parent.mkdir()
    signers.write_text(line)
    code, rec = once("fixed")
    assert code == 0, output(rec)
    assert store.commit_status(signed) == "applied"


def test_missing_gnupg_home_is_a_usage_error(tmp_path: Path, repo: ConfigRepo, pg_db_url: str) -> None:
    home = tmp_path / "no-such-gnupg-home"
    rec = ReconcilerProcess(
        repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, extra=["--once", "--require-signed", "--gnupg-home", str(home)]
    )
    assert finish(rec) == 2, output(rec)
    assert str(home) in output(rec)
    assert recorded_commits(StoreView(pg_db_url)) == 0
    assert not home.exists()


def _gpg(home: Path, *args: str, stdin: str | None = None) -> str:
    """gpg in ``home`` (needs gpg: fails, never skips, without it)."""
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", "", *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip


@pytest.fixture
def gpg_signer() -> Iterator[tuple[Path, str, str]]:
    """(signer's GnuPG home, key fingerprint, armored public key); short /tmp path for the agent socket."""
    home = Path(tempfile.mkdtemp(prefix="cfgst-", dir="/tmp"))
    home.chmod(0o700)
    try:
        _gpg(home, "--quick-gen-key", "Release Bot <committer@example.com>", "ed25519", "sign", "never")
        listing = _gpg(home, "--with-colons", "--list-secret-keys")
        fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        yield home, fpr, _gpg(home, "--armor", "--export", fpr)
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ, "GNUPGHOME": str(home)}, check=False, capture_output=True)
        subprocess.run(["rm", "-rf", str(home)], check=False)


def gpg_commit(repo: ConfigRepo, signer: tuple[Path, str, str], message: str, files: dict[str, str]) -> str:
    home, fpr, _ = signer
    for rel, text in files.items():
        (repo.work / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo.work / rel).write_text(text)
    git("add", "-A", cwd=repo.work)
    git(
        "-c", "gpg.format=openpgp", "-c", f"user.signingkey={fpr}", "commit", "-q", "-S", "--allow-empty", "-m", message,
        cwd=repo.work, env={"GNUPGHOME": str(home)},
    )  # fmt: skip
    repo.push()
    return repo.head()


def test_a_key_imported_into_the_gnupg_home_may_sign_without_an_ownertrust_step(
    tmp_path: Path, pg_db_url: str, gpg_signer: tuple[Path, str, str]
) -> None:
    """``gpg --import`` into configctl's home is all it takes, as ``--help`` promises."""
    repo = ConfigRepo(tmp_path / "repo")
    signed = gpg_commit(repo, gpg_signer, "gpg-signed head", {"apps/billing/envs/dev.yaml": "counter: 7\n"})
    keys = tmp_path / "configctl-gnupg"
    keys.mkdir(mode=0o700)
    _gpg(keys, "--import", stdin=gpg_signer[2])  # imported, never marked trusted
    store = StoreView(pg_db_url)

    def once(name: str) -> int:
        return finish(
            ReconcilerProcess(
                repo=repo.url, workdir=tmp_path / "wd", db=pg_db_url, name=name,
                extra=["--once", "--require-signed", "--gnupg-home", str(keys)],
            )
        )  # fmt: skip

    assert once("signed") == 0
    assert store.commit_status(signed) == "applied"
    applied = [a for a in store.audit("commit.applied") if a["commit"] == signed]
    assert applied
    assert applied[0]["details"]["signature"] == "G"
    # an unsigned commit after it is still refused
    unsigned = repo.bump("billing", "dev")
    assert once("unsigned") == 1
    assert store.commit_status(unsigned) == "rejected"


def test_reading_signatures_never_touches_the_users_gnupg(
    tmp_path: Path, pg_db_url: str, gpg_signer: tuple[Path, str, str]
) -> None:
    """A GPG-signed commit read by the reconciler (with and without --require-signed) and
    by ``configctl apply`` and ``status``: ``~/.gnupg`` is neither read nor created."""
    repo = ConfigRepo(tmp_path / "repo")
    gpg_commit(repo, gpg_signer, "gpg-signed head", {"apps/billing/envs/dev.yaml": "counter: 7\n"})
    keys = tmp_path / "configctl-gnupg"
    keys.mkdir(mode=0o700)
    _gpg(keys, "--import", stdin=gpg_signer[2])
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    for name, extra in (("plain", ["--once"]), ("signed", ["--once", "--require-signed", "--gnupg-home", str(keys)])):
        rec = ReconcilerProcess(
            repo=repo.url, workdir=tmp_path / f"wd-{name}", db=f"sqlite:///{tmp_path / f'{name}.db'}", name=name,
            env={"HOME": str(user_home)}, extra=extra,
        )  # fmt: skip
        rec.env.pop("GNUPGHOME", None)
        assert finish(rec) == 0, output(rec)
        assert not (user_home / ".gnupg").exists(), name
    env = {k: v for k, v in os.environ.items() if k != "GNUPGHOME"} | {"HOME": str(user_home)}
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    for args in (["apply", "--repo", str(repo.work), "--db", db], ["status", "--repo", str(repo.work), "--db", db]):
        done = subprocess.run([CONFIGCTL, *args], capture_output=True, text=True, timeout=60, env=env, check=False)
        assert done.returncode in (0, 1), done.stderr
        assert not (user_home / ".gnupg").exists(), args[0]
