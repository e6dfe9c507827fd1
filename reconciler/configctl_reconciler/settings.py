"""Reconciler settings: typed, grouped, documented once (STYLE.md rule 10).

Precedence is written here and nowhere else (:func:`from_env`): command-line flag >
``CONFIGCTL_*`` environment variable > default; the reconciler reads no settings file.
``from_env`` is a pure function of a mapping, so it is unit-tested without touching
``os.environ``.

The variable names are the ones every configctl entry point reads: ``CONFIGCTL_REPO``,
``CONFIGCTL_DB``, ``CONFIGCTL_REDIS``, ``CONFIGCTL_REDIS_PREFIX``, ``CONFIGCTL_AMQP``,
``CONFIGCTL_EXCHANGE`` and ``CONFIGCTL_SNAPSHOT_DIR`` mean the same in the CLI and the
client SDK (``configctl.client.settings``), and the signature keys are
``configctl.adapters.signing``'s (``CONFIGCTL_GNUPG_HOME``, ``CONFIGCTL_ALLOWED_SIGNERS``),
so ``configctl status`` judges signatures as the reconciler does.
``tests/unit/reconciler/test_settings.py`` checks that the shared names agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from configctl.adapters import signing


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcilerSettings:
    # -- the source: what is followed -----------------------------------------------------
    repo: str
    """Git URL (https://, ssh://, file://) or local path of the config repository. No
    default: following "some" repository by accident is worse than not starting."""
    branch: str = "main"
    """The branch whose commits are applied, in order; ``main`` is git's default name."""
    path: str = ""
    """The config tree's folder inside the repository ('' = the root, where ``configctl
    init`` puts ``configctl.yaml``)."""
    git_timeout: float = 60.0
    """Seconds one git call may run before it is killed with its process group: long
    enough for a large first clone over a slow link, short enough that a hung fetch does
    not stop the loop for long."""

    # -- where versions go: store, cache, broker ------------------------------------------
    db: str | None = None
    """Store URL. PostgreSQL in a cluster; the default, SQLite in ``workdir``, is for one
    machine (no server to run)."""
    redis: str | None = None
    """Redis URL; without it snapshots go to ``snapshot_dir`` (the embedded mode)."""
    redis_prefix: str = "configctl"
    """Prefix of every Redis key (docs/redis-layout.md); change it to share one Redis."""
    snapshot_dir: str | None = None
    """Snapshot directory of the embedded mode (default ``<workdir>/snapshots``)."""
    amqp: str | None = None
    """RabbitMQ URL; without it notifications are log lines."""
    exchange: str = "configctl.changes"
    """Durable topic exchange for change notifications (routing key ``<app>.<env>``); the
    name the client SDK binds to by default."""
    workdir: str = ".configctl/reconciler"
    """Where the clone, the SQLite file lock and the snapshot directory live; under the
    git-ignored ``.configctl`` folder of a checkout."""

    # -- the loop ---------------------------------------------------------------------------
    interval: float = 30.0
    """Seconds between polls, each wait jittered by ±20% so replicas do not herd; also the
    cache check's period. 30 s bounds the delay without a webhook and keeps a git server
    with many reconcilers unbothered."""
    once: bool = False
    """Apply what is pending and exit (a CI job or a cron job instead of a service)."""

    # -- leadership -------------------------------------------------------------------------
    lock_name: str = "configctl-reconciler"
    """Name of the leadership lock and of its fencing epoch in the store: a compatibility
    contract between versions (see configctl.adapters.leader)."""
    lease: str | None = None
    """Kubernetes Lease name: elect the leader through coordination.k8s.io (the ``lease``
    extra) instead of a PostgreSQL advisory lock."""
    lease_namespace: str = "default"
    """Namespace of the Lease; Kubernetes' own default namespace."""

    # -- HTTP: probes, metrics, webhook ------------------------------------------------------
    http_host: str = "0.0.0.0"  # noqa: S104 - the probes must be reachable by the kubelet
    """Address of the HTTP server (probes, metrics, webhook); every interface, because the
    kubelet and Prometheus reach the pod from outside."""
    http_port: int = 8080
    """Port of the HTTP server; 0 picks a free one. 8080: unprivileged, the usual one."""
    webhook_secret: str | None = field(default=None, repr=False)
    """Shared secret for GitHub/Gitea HMAC signatures and GitLab's token; without it every
    webhook is refused (the poll still runs)."""
    serve_snapshots: bool = False
    """Serve ``GET /api/v1/snapshots/<app>/<env>``: every resolved value of any (app, env),
    secrets in clear, without authentication. Off by default; only behind a NetworkPolicy."""

    # -- signed commits ---------------------------------------------------------------------
    require_signed: bool = False
    """Apply only commits signed by an allowed key. Off by default: most repositories are
    not signed, and turning it on needs the keys below."""
    allowed_signers: str | None = None
    """SSH allowed-signers file for signature checks."""
    gnupg_home: str | None = None
    """GnuPG home holding only the allowed keys."""
    allowed_fingerprints: tuple[str, ...] = ()
    """GPG (hex) or SSH (``SHA256:...``) fingerprints allowed to sign; narrows the above."""

    # -- output -----------------------------------------------------------------------------
    log_format: str = "text"
    """``text`` for people or ``json`` (one object per line) for a log pipeline."""


ENV: Mapping[str, tuple[str, type]] = {
    "repo": ("CONFIGCTL_REPO", str),
    "branch": ("CONFIGCTL_BRANCH", str),
    "path": ("CONFIGCTL_PATH", str),
    "db": ("CONFIGCTL_DB", str),
    "redis": ("CONFIGCTL_REDIS", str),
    "amqp": ("CONFIGCTL_AMQP", str),
    "exchange": ("CONFIGCTL_EXCHANGE", str),
    "redis_prefix": ("CONFIGCTL_REDIS_PREFIX", str),
    "workdir": ("CONFIGCTL_WORKDIR", str),
    "snapshot_dir": ("CONFIGCTL_SNAPSHOT_DIR", str),
    "interval": ("CONFIGCTL_INTERVAL", float),
    "git_timeout": ("CONFIGCTL_GIT_TIMEOUT", float),
    "lease": ("CONFIGCTL_LEASE", str),
    "lease_namespace": ("CONFIGCTL_LEASE_NAMESPACE", str),
    "lock_name": ("CONFIGCTL_LOCK_NAME", str),
    "http_host": ("CONFIGCTL_HTTP_HOST", str),
    "http_port": ("CONFIGCTL_HTTP_PORT", int),
    "webhook_secret": ("CONFIGCTL_WEBHOOK_SECRET", str),
    "require_signed": ("CONFIGCTL_REQUIRE_SIGNED", bool),
    "allowed_signers": (signing.ALLOWED_SIGNERS_VAR, str),
    "gnupg_home": (signing.GNUPG_HOME_VAR, str),
    "serve_snapshots": ("CONFIGCTL_SERVE_SNAPSHOTS", bool),
    "log_format": ("CONFIGCTL_LOG_FORMAT", str),
}
"""Each setting's environment variable (``allowed_fingerprints`` has no flag: see below)."""


DEPRECATED: Mapping[str, str] = {"CONFIGCTL_REPO_URL": "CONFIGCTL_REPO"}
"""Old spellings still read (with a warning), mapped to the name every command uses."""

ALLOWED_FINGERPRINTS = "CONFIGCTL_ALLOWED_FINGERPRINTS"
"""Comma-separated GPG (hex) or SSH (``SHA256:...``) fingerprints that may sign; no flag."""


def deprecations(environ: Mapping[str, str]) -> list[str]:
    """One warning per deprecated variable that is set (and not overridden by its new name)."""
    return [
        f"{old} is deprecated; use {new} (the name every configctl command reads)"
        for old, new in DEPRECATED.items()
        if environ.get(old) and not environ.get(new)
    ]


def _convert(kind: type, raw: str) -> Any:
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return kind(raw)


def from_env(environ: Mapping[str, str], **flags: Any) -> ReconcilerSettings:
    """Settings from flags (given, not None) over environment variables over defaults."""
    values: dict[str, Any] = {}
    environ = {
        **{new: environ[old] for old, new in DEPRECATED.items() if environ.get(old)},
        **environ,
    }
    for name, (var, kind) in ENV.items():
        if var in environ and environ[var] != "":
            values[name] = _convert(kind, environ[var])
    if ALLOWED_FINGERPRINTS in environ:
        values["allowed_fingerprints"] = tuple(
            f.strip() for f in environ[ALLOWED_FINGERPRINTS].split(",") if f.strip()
        )
    for name, value in flags.items():
        if value is not None:
            values[name] = value
    if "repo" not in values:
        from configctl.errors import UsageError

        raise UsageError("the reconciler needs a repository: --repo URL or CONFIGCTL_REPO")
    settings = ReconcilerSettings(**values)
    from configctl.errors import UsageError

    if settings.interval <= 0:
        raise UsageError("--interval must be positive")
    if settings.git_timeout <= 0:
        raise UsageError("--git-timeout must be positive")
    if settings.log_format not in ("text", "json"):
        raise UsageError(f"--log-format must be text or json, not {settings.log_format!r}")
    if settings.require_signed and not (
        settings.allowed_signers or settings.gnupg_home or settings.allowed_fingerprints
    ):
        # Every commit would be rejected; say so at start instead of failing every commit.
        raise UsageError(
            "--require-signed needs the allowed keys",
            hint=(
                "pass --allowed-signers FILE (CONFIGCTL_ALLOWED_SIGNERS, SSH signatures) and/or "
                "--gnupg-home DIR (CONFIGCTL_GNUPG_HOME, GPG signatures); "
                "CONFIGCTL_ALLOWED_FINGERPRINTS narrows either to the listed keys"
            ),
        )
    return replace(settings)
