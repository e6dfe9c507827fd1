"""Real servers for integration tests: PostgreSQL, Redis and RabbitMQ, by URL or throwaway.

Each server comes from an environment variable when it is set, otherwise from a throwaway
process started from the installed binaries on a free port in a temporary directory and
stopped at the end of the session:

- ``CONFIGCTL_TEST_DATABASE_URL`` (``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``),
  else ``initdb`` + ``pg_ctl`` (on PATH or ``/usr/lib/postgresql/*/bin``);
- ``CONFIGCTL_TEST_REDIS_URL`` (``redis://127.0.0.1:6379/0``), else ``redis-server``;
- ``CONFIGCTL_TEST_AMQP_URL`` (``amqp://guest:guest@127.0.0.1:5672/%2F``), else ``rabbitmq-server``.

Neither available is a test *failure* saying what to install, never a skip: an integration
test that silently skips proves nothing. PostgreSQL and RabbitMQ refuse to run as root, so
when we are root the throwaway runs as the ``postgres`` / ``rabbitmq`` OS user (``runuser``)
in a directory that user owns.

Fixtures (registered for the whole suite by ``tests/conftest.py``):

- ``pg_url`` (session): an admin URL of a server (``postgresql+psycopg://``).
- ``pg_db_url`` (function): a fresh, empty database ``t_<random>``, dropped with FORCE after.
- ``redis_url`` (session) and ``redis_prefix`` (function: a unique key prefix, keys deleted after).
- ``amqp_url`` (session) and ``amqp_exchange`` (function: a unique exchange name, deleted after).
- ``store_url`` (function, parametrised ``sqlite`` / ``postgresql``): a fresh, empty store URL.

The server classes (:class:`PostgresServer`, :class:`RedisServer`, :class:`RabbitServer`)
are public so a fault-injection test can start a private server it may stop and restart.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

DATABASE_URL_VAR = "CONFIGCTL_TEST_DATABASE_URL"
REDIS_URL_VAR = "CONFIGCTL_TEST_REDIS_URL"
AMQP_URL_VAR = "CONFIGCTL_TEST_AMQP_URL"

_START_TIMEOUT = 90.0


class _Server(Protocol):
    """A throwaway server started from an installed binary."""

    INSTALL_HINT: str

    def start(self) -> str: ...

    def cleanup(self) -> None: ...


class ServerUnavailable(RuntimeError):
    """A throwaway server could not be started; the message says what to install."""


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def unique_name(prefix: str) -> str:
    """``prefix`` plus 12 random hex digits: a safe database, key or exchange name."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def _is_root() -> bool:
    return os.geteuid() == 0


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _as_user(user: str | None, argv: list[str]) -> list[str]:
    """Prefix ``argv`` with ``runuser`` when we are root and a service user is given."""
    if user is None:
        return argv
    return ["runuser", "-u", user, "--", *argv]


def _chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def _run(argv: list[str], *, what: str, timeout: float = _START_TIMEOUT, **kw: Any) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, **kw
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerUnavailable(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        raise ServerUnavailable(
            f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}"
        )
    out: str = done.stdout
    return out


def _wait_tcp(port: int, *, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerUnavailable(f"the server exited with code {proc.returncode} at start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise ServerUnavailable(f"nothing listened on 127.0.0.1:{port} after {timeout:.0f} s")


def _find_binary(name: str, patterns: list[str]) -> str | None:
    """``name`` on PATH, else the highest-versioned match of ``patterns`` (globs)."""
    found = shutil.which(name)
    if found:
        return found
    candidates: list[str] = []
    for pattern in patterns:
        candidates.extend(glob.glob(pattern))
    if not candidates:
        return None

    def version_key(path: str) -> tuple[int, ...]:
        return tuple(int(p) for p in Path(path).parts if p.isdigit())

    return max(candidates, key=version_key)


def _writable_tempdir(prefix: str, user: str | None) -> Path:
    """A fresh directory under the system temp dir, owned by ``user`` when given.

    Not pytest's ``tmp_path_factory``: its base directory is private to the current user, so
    a server running as another OS user could not reach it.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _chown_tree(path, user)
    return path


# --------------------------------------------------------------------------- PostgreSQL


def normalize_pg_url(url: str) -> str:
    """Spell a PostgreSQL URL with the psycopg 3 driver SQLAlchemy should use."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url.split('://', 1)[0]}://...")


def libpq_url(url: str) -> str:
    """The same URL for psycopg/libpq directly (no ``+driver``)."""
    return "postgresql://" + normalize_pg_url(url)[len("postgresql+psycopg://") :]


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _pg_check(url: str) -> None:
    import psycopg

    try:
        with psycopg.connect(libpq_url(url), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        from sqlalchemy.engine import make_url

        u = make_url(url)
        raise ServerUnavailable(
            f"cannot connect to PostgreSQL at {u.host}:{u.port or 5432}: {exc}"
        ) from exc


class PostgresServer:
    """A throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``) on a free port."""

    INSTALL_HINT = (
        "install PostgreSQL server binaries (apt-get install postgresql) "
        f"or set {DATABASE_URL_VAR}=postgresql+psycopg://user@host:5432/postgres"
    )

    def __init__(self) -> None:
        initdb = _find_binary("initdb", ["/usr/lib/postgresql/*/bin/initdb"])
        if initdb is None:
            raise ServerUnavailable(f"initdb not found: {self.INSTALL_HINT}")
        bindir = Path(initdb).resolve().parent
        self.initdb = str(bindir / "initdb")
        self.pg_ctl = str(bindir / "pg_ctl")
        if not Path(self.pg_ctl).exists():
            raise ServerUnavailable(f"pg_ctl not found next to {initdb}: {self.INSTALL_HINT}")
        self.user: str | None = None
        if _is_root():
            if not _user_exists("postgres"):
                raise ServerUnavailable(
                    "PostgreSQL refuses to run as root and there is no `postgres` OS user: "
                    f"{self.INSTALL_HINT}"
                )
            self.user = "postgres"
        self.base = _writable_tempdir("configctl-pg-", self.user)
        self.datadir = self.base / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._running = False

    def _ctl(self, *args: str, timeout: float = _START_TIMEOUT) -> str:
        return _run(
            _as_user(self.user, [self.pg_ctl, "-D", str(self.datadir), *args]),
            what=f"pg_ctl {args[-1]}",
            timeout=timeout,
            cwd=self.base,
        )

    def start(self) -> str:
        if not self.datadir.exists():
            _run(
                _as_user(
                    self.user,
                    [
                        self.initdb, "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
                    ],
                ),
                what="initdb",
                cwd=self.base,
            )  # fmt: skip
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._ctl("-l", str(self.base / "server.log"), "-o", options, "-w", "-t", "60", "start")
        self._running = True
        _pg_check(self.url)
        return self.url

    def stop(self, mode: str = "fast") -> None:
        if self._running:
            self._running = False
            self._ctl("-m", mode, "-w", "stop", timeout=60)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def create_database(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(libpq_url(admin_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(libpq_url(admin_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- Redis


class RedisServer:
    """A throwaway ``redis-server`` with no persistence on a free port."""

    INSTALL_HINT = f"install redis-server (apt-get install redis-server) or set {REDIS_URL_VAR}=redis://host:6379/0"

    def __init__(self) -> None:
        binary = _find_binary("redis-server", [])
        if binary is None:
            raise ServerUnavailable(f"redis-server not found: {self.INSTALL_HINT}")
        self.binary = binary
        self.base = Path(tempfile.mkdtemp(prefix="configctl-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        argv = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.base), "--daemonize", "no",
            "--logfile", str(self.base / "redis.log"),
        ]  # fmt: skip
        try:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError as exc:
            raise ServerUnavailable(f"redis-server failed to start: {exc}") from exc
        _wait_tcp(self.port, timeout=30, proc=self.proc)
        return self.url

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


# --------------------------------------------------------------------------- RabbitMQ


class RabbitServer:
    """A throwaway RabbitMQ node with its own name, ports and directories.

    The node gets its own config and env file, so the system's ``/etc/rabbitmq`` (which may
    pin a listener to 5672 or a node name) does not apply; ``HOME`` is the temp directory so
    the Erlang cookie is private too. It shares the host's epmd (port 4369), as every node does.
    """

    INSTALL_HINT = (
        "install rabbitmq-server (apt-get install rabbitmq-server) "
        f"or set {AMQP_URL_VAR}=amqp://guest:guest@host:5672/%2F"
    )

    def __init__(self) -> None:
        server = "/usr/lib/rabbitmq/bin/rabbitmq-server"
        ctl = "/usr/lib/rabbitmq/bin/rabbitmqctl"
        if not Path(server).exists():  # not the Debian layout: a generic install on PATH
            server = shutil.which("rabbitmq-server") or ""
            ctl = shutil.which("rabbitmqctl") or ""
        if not server or not ctl:
            raise ServerUnavailable(f"rabbitmq-server not found: {self.INSTALL_HINT}")
        self.server, self.ctl = server, ctl
        self.user = "rabbitmq" if _is_root() and _user_exists("rabbitmq") else None
        self.base = _writable_tempdir("configctl-rabbit-", None)
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"{unique_name('configctl-test-')}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self.proc: subprocess.Popen[bytes] | None = None
        (self.base / "mnesia").mkdir()
        (self.base / "log").mkdir()
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq-env.conf").write_text("")
        # A 1 MB disk limit: a nearly full test disk must not block publishers.
        (self.base / "rabbitmq.conf").write_text(
            "loopback_users.guest = true\ndisk_free_limit.absolute = 1MB\n"
        )
        _chown_tree(self.base, self.user)
        self.env = {
            **os.environ,
            "HOME": str(self.base),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self.env.pop("ERL_FLAGS", None)

    def _ctl_argv(self, *args: str) -> list[str]:
        # runuser resets HOME unless told to keep the environment (-p/--preserve-environment
        # is su's; runuser -u keeps the caller's environment except for a few login vars).
        return _as_user(self.user, ["env", f"HOME={self.base}", self.ctl, "-n", self.node, *args])

    def start(self) -> str:
        """Start the node; a node that exits while booting is started again (twice at most).

        A restart right after a stop can lose a race with the old VM's sockets and epmd
        entry and exit at once; the next attempt finds them gone. The error of the last
        attempt carries the tail of the node's log.
        """
        for attempt in range(3):
            try:
                return self._start_once()
            except ServerUnavailable as exc:
                if attempt == 2:
                    raise ServerUnavailable(f"{exc}\n--- node log ---\n{self._log_tail()}") from exc
                time.sleep(1.0 + attempt)  # let the old VM's ports and epmd entry go
        raise AssertionError("unreachable")

    def _log_tail(self, lines: int = 30) -> str:
        logs = sorted((self.base / "log").glob("*.log"), key=lambda p: p.stat().st_mtime)
        if not logs:
            return "(no log)"
        return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])

    def _start_once(self) -> str:
        argv = _as_user(self.user, ["env", f"HOME={self.base}", self.server])
        try:
            self.proc = subprocess.Popen(
                argv,
                env=self.env,
                cwd=self.base,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise ServerUnavailable(f"rabbitmq-server failed to start: {exc}") from exc
        try:
            self._await_startup()
            _wait_tcp(self.port, timeout=10, proc=self.proc)
        except ServerUnavailable:
            self.stop()
            raise
        return self.url

    def _await_startup(self) -> None:
        """``rabbitmqctl await_startup``, retried until the Erlang VM is registered in epmd.

        ``await_startup`` waits for the broker application but fails at once ("node not
        running at all") while the VM itself is still booting, so it is retried.
        """
        assert self.proc is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                _run(
                    self._ctl_argv("await_startup", "--timeout", "60"),
                    what="rabbitmqctl await_startup",
                    env=self.env,
                    cwd=self.base,
                )
            except ServerUnavailable:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
            else:
                return

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ServerUnavailable):
                _run(self._ctl_argv("stop"), what="rabbitmqctl stop", env=self.env, timeout=60)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """Admin URL (``postgresql+psycopg://``) of a PostgreSQL server for the whole session."""
    yield from _session_server(DATABASE_URL_VAR, PostgresServer, normalize=normalize_pg_url, check=_pg_check)


def _session_server(
    variable: str,
    server_class: Callable[[], _Server],
    *,
    normalize: Callable[[str], str] = str,
    check: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """The server named by ``variable`` (checked when ``check`` is given), else a throwaway
    one started from the installed binary for the session; the test fails, saying what to
    install, when neither is possible (never a silent skip)."""
    given = os.environ.get(variable)
    if given:
        url = normalize(given)
        if check is not None:
            try:
                check(url)
            except ServerUnavailable as exc:
                pytest.fail(f"{variable} is set but unusable: {exc}", pytrace=False)
        yield url
        return
    try:
        server = server_class()
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        url = server.start()
    except ServerUnavailable as exc:
        server.cleanup()
        pytest.fail(f"{exc}; {server.INSTALL_HINT}", pytrace=False)
    try:
        yield url
    finally:
        server.cleanup()


@pytest.fixture
def pg_db_url(pg_url: str) -> Iterator[str]:
    """A fresh empty database for one test (``t_<random>``), dropped with FORCE after it."""
    name = unique_name("t_")
    url = create_database(pg_url, name)
    try:
        yield url
    finally:
        drop_database(pg_url, name)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis server for the whole session."""
    yield from _session_server(REDIS_URL_VAR, RedisServer)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix (``configctl-test-<random>:``); its keys are deleted after the test."""
    prefix = unique_name("configctl-test-") + ":"
    yield prefix
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass  # the test may have stopped the server on purpose; nothing left to clean
    finally:
        client.close()


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """URL of a RabbitMQ broker for the whole session."""
    yield from _session_server(AMQP_URL_VAR, RabbitServer)


@pytest.fixture
def amqp_exchange(amqp_url: str) -> Iterator[str]:
    """A unique exchange name for one test; the exchange is deleted after it if it exists."""
    name = unique_name("configctl-test-")
    yield name
    import pika
    import pika.exceptions

    params = pika.URLParameters(amqp_url)
    params.connection_attempts = 1
    params.socket_timeout = 5
    try:
        conn = pika.BlockingConnection(params)
        try:
            conn.channel().exchange_delete(name)
        finally:
            conn.close()
    except pika.exceptions.AMQPError:
        pass  # the test may have stopped the broker on purpose; nothing left to clean


def migrated_store(url: str) -> Iterator[Any]:
    """A ``SqlStore`` for ``url``, migrated, closed afterwards."""
    from configctl.adapters.store import SqlStore

    s = SqlStore(url)
    s.upgrade()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def store(store_url: str) -> Iterator[Any]:
    """A migrated store on a fresh SQLite file and on a fresh PostgreSQL database."""
    yield from migrated_store(store_url)


@pytest.fixture
def pg_store(pg_db_url: str) -> Iterator[Any]:
    """A migrated store on a fresh PostgreSQL database."""
    yield from migrated_store(pg_db_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store URL: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'x.db'}"
    url: str = request.getfixturevalue("pg_db_url")
    return url
