"""`configctl reconcile`: run the reconciler (the one place the CLI reaches into it, lazily)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from configctl.cli import context

app = typer.Typer()


@app.command(
    epilog=(
        "Examples:\n\n"
        "  configctl reconcile --repo https://git.example.com/platform/config.git \\\n"
        "      --db postgresql://configctl@db/configctl --redis redis://redis:6379/0 \\\n"
        "      --amqp amqp://user:pass@rabbitmq:5672/%2F\n\n"
        "  configctl reconcile --repo ./config --once      # embedded: SQLite, snapshot dir, log lines\n\n"
        "Every flag has a CONFIGCTL_* environment variable (README, 'Reconciler')."
    )
)
@context.boundary
def reconcile(
    *,
    repo: Annotated[str | None, typer.Option("--repo", help="Git URL or path of the config repository.")] = None,
    branch: Annotated[str | None, typer.Option("--branch", help="Branch to follow (default main).")] = None,
    path: Annotated[str | None, typer.Option("--path", help="The config tree's folder inside the repository.")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Store URL (default: SQLite in --workdir).")] = None,
    redis: Annotated[str | None, typer.Option("--redis", help="Redis URL (default: a snapshot directory).")] = None,
    amqp: Annotated[str | None, typer.Option("--amqp", help="RabbitMQ URL (default: log lines).")] = None,
    exchange: Annotated[str | None, typer.Option("--exchange", help="Topic exchange for notifications.")] = None,
    redis_prefix: Annotated[str | None, typer.Option("--redis-prefix", help="Prefix of every Redis key (default configctl).")] = None,
    webhook_secret: Annotated[str | None, typer.Option("--webhook-secret", help="Webhook secret (better: CONFIGCTL_WEBHOOK_SECRET).", show_default=False)] = None,
    workdir: Annotated[str | None, typer.Option("--workdir", help="Clone, lock and snapshot folder.")] = None,
    interval: Annotated[float | None, typer.Option("--interval", help="Seconds between polls (jittered; default 30).")] = None,
    git_timeout: Annotated[float | None, typer.Option("--git-timeout", help="Hard timeout of one git call, seconds.")] = None,
    lease: Annotated[str | None, typer.Option("--lease", help="Kubernetes Lease name for leader election.")] = None,
    lease_namespace: Annotated[str | None, typer.Option("--lease-namespace")] = None,
    http_host: Annotated[str | None, typer.Option("--http-host")] = None,
    http_port: Annotated[int | None, typer.Option("--http-port", help="Probes, metrics, webhook (default 8080).")] = None,
    require_signed: Annotated[bool | None, typer.Option("--require-signed/--no-require-signed", help="Apply only signed commits.")] = None,
    allowed_signers: Annotated[str | None, typer.Option("--allowed-signers", help="SSH allowed-signers file.")] = None,
    gnupg_home: Annotated[str | None, typer.Option("--gnupg-home", help="GnuPG home holding only the allowed keys.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Apply what is pending and exit.")] = False,
    log_format: Annotated[str | None, typer.Option("--log-format", help="text or json.")] = None,
) -> None:
    """Follow a git branch: apply every new commit, warm the cache, announce changes."""
    from configctl_reconciler import runner, settings

    cfg = settings.from_env(
        os.environ,
        repo=repo, branch=branch, path=path, db=db, redis=redis, amqp=amqp, exchange=exchange,
        redis_prefix=redis_prefix, webhook_secret=webhook_secret,
        workdir=workdir, interval=interval, git_timeout=git_timeout, lease=lease,
        lease_namespace=lease_namespace, http_host=http_host, http_port=http_port,
        require_signed=require_signed, allowed_signers=allowed_signers, gnupg_home=gnupg_home,
        once=once or None, log_format=log_format,
    )
    code = runner.main(cfg)
    if code:
        raise typer.Exit(code)
