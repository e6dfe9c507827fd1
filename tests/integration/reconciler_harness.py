"""Helpers for ``test_reconciler.py`` and ``bench/propagation.py`` (not collected as tests).

- :class:`ConfigRepo`: a bare "remote" repository plus a working clone that commits and
  pushes small config trees, optionally SSH-signed;
- :class:`ReconcilerProcess`: ``configctl reconcile`` as a real subprocess (JSON logs to a
  file, HTTP on a port picked here), with webhook posting, probes and signals;
- :class:`StoreView`: read-only SQL over the store's tables (their names are a contract,
  see ``configctl.adapters.store.models``), straight through psycopg so a check never
  goes through the code under test;
- :func:`wait_for`: every wait in these tests is bounded in time.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SECRET = "test-webhook-secret"

CONFIGCTL = str(Path(sys.executable).with_name("configctl"))

_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
    "GIT_TERMINAL_PROMPT": "0",
}


class TimedOut(AssertionError):
    """A bounded wait ran out; the message says what was awaited and what was last seen."""


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Call ``probe`` until it returns something truthy; TimedOut after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except Exception as exc:  # noqa: BLE001 - a probe may fail while a server is down
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise TimedOut(f"{what}: not within {timeout:g} s (last: {last!r})")
        time.sleep(interval)


# --------------------------------------------------------------------------- git


def git(*args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 30) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **_GIT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def app_files(app: str, envs: Sequence[str], *, counter: int = 0) -> dict[str, str]:
    files = {
        f"apps/{app}/app.yaml": f"description: {app} service\nowners: [team-{app}]\n",
        f"apps/{app}/values.yaml": f"service:\n  name: {app}\n  replicas: 2\ncounter: {counter}\n",
    }
    for env in envs:
        files[f"apps/{app}/envs/{env}.yaml"] = f"counter: {counter}\n"
    return files


def base_tree(apps: Sequence[str], envs: Sequence[str]) -> dict[str, str]:
    """A small valid tree: every app has a values file and one file per environment."""
    files = {
        "configctl.yaml": "version: 1\nenvironments:\n" + "".join(f"  - {e}\n" for e in envs),
        "global.yaml": "log:\n  level: info\n",
    }
    for app in apps:
        files.update(app_files(app, envs))
    return files


class ConfigRepo:
    """``<base>/remote.git`` (what the reconciler follows) and ``<base>/work`` (the author)."""

    def __init__(
        self,
        base: Path,
        *,
        apps: Sequence[str] = ("billing", "search"),
        envs: Sequence[str] = ("dev", "prod"),
        files: Mapping[str, str] | None = None,
    ) -> None:
        self.base = base
        self.bare = base / "remote.git"
        self.work = base / "work"
        self.apps = tuple(apps)
        self.envs = tuple(envs)
        self.counter = 0
        base.mkdir(parents=True, exist_ok=True)
        git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=base)
        git("init", "-q", "-b", "main", str(self.work), cwd=base)
        git("remote", "add", "origin", str(self.bare), cwd=self.work)
        self.signing_key: Path | None = None
        self.initial = self.commit("initial tree", files if files is not None else base_tree(apps, envs))

    @property
    def url(self) -> str:
        return str(self.bare)

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work).strip()

    def commit(
        self,
        message: str,
        files: Mapping[str, str | None],
        *,
        sign_with: Path | None = None,
        push: bool = True,
    ) -> str:
        """Write ``files`` (None deletes), commit, push; return the new commit id."""
        for rel, text in files.items():
            path = self.work / rel
            if text is None:
                path.unlink(missing_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        git("add", "-A", cwd=self.work)
        args = ["commit", "-q", "--allow-empty", "-m", message]
        if sign_with is not None:
            args = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={sign_with}", *args[:1], "-S", *args[1:]]
        git(*args, cwd=self.work)
        if push:
            self.push()
        return self.head()

    def push(self, *, force: bool = False) -> None:
        git("push", "-q", *(["--force"] if force else []), "origin", "HEAD:main", cwd=self.work)

    def bump(self, app: str, env: str, *, sign_with: Path | None = None) -> str:
        """One commit that changes exactly one key of exactly one (app, env)."""
        self.counter += 1
        return self.commit(
            f"{app}/{env}: counter {self.counter}",
            {f"apps/{app}/envs/{env}.yaml": f"counter: {self.counter}\n"},
            sign_with=sign_with,
        )

    def reset_hard(self, rev: str) -> None:
        git("reset", "-q", "--hard", rev, cwd=self.work)


def make_ssh_key(path: Path, email: str = "committer@example.com") -> tuple[Path, str]:
    """An ed25519 key at ``path``; returns the private key path and its allowed-signers line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", email, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    public = path.with_suffix(".pub") if path.suffix else Path(str(path) + ".pub")
    return path, f'{email} namespaces="git" {public.read_text().strip()}\n'


# --------------------------------------------------------------------------- HTTP


def http(method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None, timeout: float = 5) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))  # noqa: S310 - http://127.0.0.1 only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http://127.0.0.1 only
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def push_payload(after: str, ref: str = "refs/heads/main") -> bytes:
    return json.dumps({"ref": ref, "after": after, "before": "0" * 40}).encode()


def webhook_headers(provider: str, body: bytes, secret: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if provider == "github":
        return {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}"}
    if provider == "gitea":
        return {"X-Gitea-Event": "push", "X-Gitea-Signature": digest}
    if provider == "gitlab":
        return {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret}
    raise ValueError(provider)


# --------------------------------------------------------------------------- reconciler


def free_port() -> int:
    from tests.servers import free_port as _free_port

    return _free_port()


class ReconcilerProcess:
    """``configctl reconcile`` in a subprocess; logs (JSON lines) go to ``<workdir>.log``."""

    def __init__(
        self,
        *,
        repo: str,
        workdir: Path,
        db: str | None = None,
        redis: str | None = None,
        redis_prefix: str | None = None,
        amqp: str | None = None,
        exchange: str | None = None,
        interval: float = 0.5,
        secret: str | None = SECRET,
        extra: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        name: str = "r",
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir.parent / f"{workdir.name}.{name}.log"
        self.argv = [
            CONFIGCTL, "reconcile", "--repo", repo, "--branch", "main", "--workdir", str(workdir),
            "--interval", str(interval), "--http-host", "127.0.0.1", "--http-port", str(self.port),
            "--log-format", "json", "--git-timeout", "20",
        ]  # fmt: skip
        for flag, value in (
            ("--db", db), ("--redis", redis), ("--redis-prefix", redis_prefix),
            ("--amqp", amqp), ("--exchange", exchange),
        ):  # fmt: skip
            if value is not None:
                self.argv += [flag, value]
        self.argv += list(extra)
        self.env = {**os.environ, **(env or {})}
        if secret is not None:
            self.env["CONFIGCTL_WEBHOOK_SECRET"] = secret
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> ReconcilerProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            start_new_session=True,
        )  # fmt: skip
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def readyz(self) -> dict[str, Any] | None:
        """The /readyz body, or None if the server does not answer (yet)."""
        try:
            _, body = http("GET", self.url + "/readyz", timeout=2)
        except OSError:
            return None
        doc: dict[str, Any] = json.loads(body)
        return doc

    def healthz(self) -> tuple[int, dict[str, Any]]:
        code, body = http("GET", self.url + "/healthz", timeout=2)
        return code, json.loads(body)

    def role(self) -> str | None:
        doc = self.readyz()
        return None if doc is None else doc.get("role")

    def wait_role(self, role: str, timeout: float = 15) -> None:
        wait_for(lambda: self.role() == role or self._died(), timeout=timeout, what=f"{self.argv[0]} role {role}")
        self._died()

    def wait_http(self, timeout: float = 15) -> None:
        wait_for(lambda: self.readyz() is not None or self._died(), timeout=timeout, what="reconciler HTTP up")
        self._died()

    def _died(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"reconciler exited with {self.proc.returncode}:\n{self.log_tail()}")
        return False

    def metrics(self) -> str:
        _, body = http("GET", self.url + "/metrics")
        return body.decode()

    def metric(self, name: str, labels: str = "") -> float:
        """The value of one sample (``name{labels}``), 0 if absent."""
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            if sample == wanted:
                return float(value)
        return 0.0

    def webhook(self, after: str, *, provider: str = "github", secret: str = SECRET, ref: str = "refs/heads/main") -> int:
        body = push_payload(after, ref)
        headers = {"Content-Type": "application/json", **webhook_headers(provider, body, secret)}
        code, _ = http("POST", self.url + "/hooks/git", body, headers)
        return code

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, like an OOM kill or a node loss."""
        if self.proc is not None and self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def logs(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    doc = json.loads(line)
                    if isinstance(doc, dict):
                        out.append(doc)
        return out

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@contextlib.contextmanager
def running(*procs: ReconcilerProcess) -> Iterator[None]:
    """Start every process; on exit stop them all and print the tail of each log on failure."""
    for p in procs:
        p.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        for p in procs:
            p.stop()
        if not ok:
            for p in procs:
                print(f"--- {p.log_path.name}\n{p.log_tail(60)}", file=sys.stderr)  # noqa: T201 - shown by pytest on failure


# --------------------------------------------------------------------------- store


class StoreView:
    """Read-only SQL over the store's tables, through psycopg (not the code under test)."""

    def __init__(self, url: str) -> None:
        from tests.servers import libpq_url

        self.url = libpq_url(url)

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url, connect_timeout=5, autocommit=True) as conn:
            return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]

    def versions(self) -> list[tuple[str, str, int, str | None]]:
        """(app, env, number, commit) of every version, in creation order."""
        return [
            (str(a), str(e), int(n), c)
            for a, e, n, c in self.rows("SELECT app, env, number, commit_sha FROM versions ORDER BY id")
        ]

    def latest(self, app: str, env: str) -> int:
        got = self.rows("SELECT max(number) FROM versions WHERE app = %s AND env = %s", app, env)
        return int(got[0][0] or 0)

    def commit_status(self, sha: str) -> str | None:
        got = self.rows("SELECT status FROM commits WHERE sha = %s", sha)
        return str(got[0][0]) if got else None

    def audit(self, action: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT action, app, env, commit_sha, version, details FROM audit_log"
        rows = self.rows(sql + " WHERE action = %s ORDER BY id", action) if action else self.rows(sql + " ORDER BY id")
        return [dict(zip(("action", "app", "env", "commit", "version", "details"), r, strict=True)) for r in rows]

    def outbox(self) -> list[tuple[str, str, bool]]:
        """(event id, routing key, published) of every outbox row."""
        return [
            (str(i), str(k), p is not None)
            for i, k, p in self.rows("SELECT event_id, routing_key, published_at FROM outbox ORDER BY id")
        ]

    def has_tables(self) -> bool:
        try:
            return bool(self.rows("SELECT to_regclass('public.versions') IS NOT NULL")[0][0])
        except Exception:  # noqa: BLE001 - not there yet
            return False
