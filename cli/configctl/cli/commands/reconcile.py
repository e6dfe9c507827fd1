"""`configctl reconcile`: run the reconciler (the one place the CLI reaches into it, lazily).

Every flag names its ``CONFIGCTL_*`` environment variable (shown in ``--help``), with the
same names as the other commands (``CONFIGCTL_REPO``, ``CONFIGCTL_DB``). Precedence (flag
> environment > default) is decided once, in ``configctl_reconciler.settings``.
"""

from __future__ import annotations

import importlib
import os
from typing import Annotated

import typer

from configctl.cli import context
from configctl.errors import UsageError

app = typer.Typer()

EXTRA_MODULES = ("redis", "pika", "prometheus_client")
"""What the ``[reconciler]`` extra installs and the reconciler needs."""

SNAPSHOTS_HELP = (
    "Serve GET /api/v1/snapshots/<app>/<env>: every resolved value of any app and "
    "environment, secrets in clear, with no authentication. Off by default (404); "
    "expose it only inside the cluster."
)


def require_extra() -> None:
    """Exit 2 naming the extra when its libraries are missing (not a traceback, exit 70)."""
    missing: list[str] = []
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UsageError(
            f"configctl reconcile needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed",
            hint="pip install 'configctl[reconciler]'",
        )


@app.command(
    epilog=(
        "Examples:\n\n"
        "  configctl reconcile --repo https://git.example.com/platform/config.git \\\n"
        "      --db postgresql://configctl@db/configctl --redis redis://redis:6379/0 \\\n"
        "      --amqp amqp://user:pass@rabbitmq:5672/%2F\n\n"
        "  configctl reconcile --repo ./config --once      # embedded: SQLite, snapshot dir, log lines\n\n"
        "Every flag but --once has the environment variable shown with it. "
        "CONFIGCTL_ALLOWED_FINGERPRINTS (comma-separated GPG or SHA256: SSH fingerprints) "
        "narrows --require-signed to those keys. README, 'Reconciler'."
    )
)
@context.boundary
def reconcile(
    *,
    repo: Annotated[str | None, typer.Option("--repo", envvar="CONFIGCTL_REPO", help="Git URL (https://, ssh://, git@host:path, file://) or absolute path of the config repository. CONFIGCTL_REPO_URL is still read (deprecated).")] = None,
    branch: Annotated[str | None, typer.Option("--branch", envvar="CONFIGCTL_BRANCH", help="Branch to follow (default main).")] = None,
    path: Annotated[str | None, typer.Option("--path", envvar="CONFIGCTL_PATH", help="The folder inside the repository that holds configctl.yaml (default: the root).")] = None,
    db: Annotated[str | None, typer.Option("--db", envvar="CONFIGCTL_DB", help="Store URL (default: SQLite in --workdir).")] = None,
    redis: Annotated[str | None, typer.Option("--redis", envvar="CONFIGCTL_REDIS", help="Redis URL (default: a snapshot directory).")] = None,
    amqp: Annotated[str | None, typer.Option("--amqp", envvar="CONFIGCTL_AMQP", help="RabbitMQ URL (default: log lines).")] = None,
    exchange: Annotated[str | None, typer.Option("--exchange", envvar="CONFIGCTL_EXCHANGE", help="Topic exchange for notifications (default configctl.changes).")] = None,
    redis_prefix: Annotated[str | None, typer.Option("--redis-prefix", envvar="CONFIGCTL_REDIS_PREFIX", help="Prefix of every Redis key (default configctl).")] = None,
    webhook_secret: Annotated[str | None, typer.Option("--webhook-secret", envvar="CONFIGCTL_WEBHOOK_SECRET", help="Webhook secret (better in the environment than on the command line).", show_default=False)] = None,
    workdir: Annotated[str | None, typer.Option("--workdir", envvar="CONFIGCTL_WORKDIR", help="Clone, lock and snapshot folder (default .configctl/reconciler).")] = None,
    snapshot_dir: Annotated[str | None, typer.Option("--snapshot-dir", envvar="CONFIGCTL_SNAPSHOT_DIR", help="Snapshot folder without --redis (default <workdir>/snapshots).")] = None,
    interval: Annotated[float | None, typer.Option("--interval", envvar="CONFIGCTL_INTERVAL", help="Seconds between polls (±20% jitter; default 30). The cache is checked on this interval too.")] = None,
    git_timeout: Annotated[float | None, typer.Option("--git-timeout", envvar="CONFIGCTL_GIT_TIMEOUT", help="Hard timeout of one git call, seconds (default 60).")] = None,
    lease: Annotated[str | None, typer.Option("--lease", envvar="CONFIGCTL_LEASE", help="Kubernetes Lease name for leader election.")] = None,
    lease_namespace: Annotated[str | None, typer.Option("--lease-namespace", envvar="CONFIGCTL_LEASE_NAMESPACE", help="Namespace of the Lease (default default).")] = None,
    lock_name: Annotated[str | None, typer.Option("--lock-name", envvar="CONFIGCTL_LOCK_NAME", help="Name of the leadership lock (default configctl-reconciler).")] = None,
    http_host: Annotated[str | None, typer.Option("--http-host", envvar="CONFIGCTL_HTTP_HOST", help="Address of the HTTP server (default 0.0.0.0).")] = None,
    http_port: Annotated[int | None, typer.Option("--http-port", envvar="CONFIGCTL_HTTP_PORT", help="Probes, metrics, webhook (default 8080; 0 picks a free port).")] = None,
    require_signed: Annotated[bool | None, typer.Option("--require-signed", envvar="CONFIGCTL_REQUIRE_SIGNED", help="Apply only commits signed by an allowed key (--allowed-signers and/or --gnupg-home).", show_default=False)] = None,
    allowed_signers: Annotated[str | None, typer.Option("--allowed-signers", envvar="CONFIGCTL_ALLOWED_SIGNERS", help="SSH allowed-signers file (ssh-keygen ALLOWED SIGNERS format): the SSH keys that may sign.")] = None,
    gnupg_home: Annotated[str | None, typer.Option("--gnupg-home", envvar="CONFIGCTL_GNUPG_HOME", help="GnuPG home holding only the allowed keys: every public key imported there may sign (no ownertrust step).")] = None,
    serve_snapshots: Annotated[bool | None, typer.Option("--serve-snapshots", envvar="CONFIGCTL_SERVE_SNAPSHOTS", help=SNAPSHOTS_HELP, show_default=False)] = None,
    once: Annotated[bool, typer.Option("--once", help="Apply what is pending and exit (1 while the head is rejected).")] = False,
    log_format: Annotated[str | None, typer.Option("--log-format", envvar="CONFIGCTL_LOG_FORMAT", help="text or json (default text).")] = None,
) -> None:
    """Follow a git branch: apply every new commit, warm the cache, announce changes."""
    require_extra()
    from configctl_reconciler import runner, settings

    for warning in settings.deprecations(os.environ):
        context.print_warning(warning)
    cfg = settings.from_env(
        os.environ,
        repo=repo, branch=branch, path=path, db=db, redis=redis, amqp=amqp, exchange=exchange,
        redis_prefix=redis_prefix, webhook_secret=webhook_secret, snapshot_dir=snapshot_dir,
        workdir=workdir, interval=interval, git_timeout=git_timeout, lease=lease,
        lease_namespace=lease_namespace, lock_name=lock_name, http_host=http_host, http_port=http_port,
        require_signed=require_signed, allowed_signers=allowed_signers, gnupg_home=gnupg_home,
        serve_snapshots=serve_snapshots, once=once or None, log_format=log_format,
    )  # fmt: skip
    code = runner.main(cfg)
    if code:
        raise typer.Exit(code)
